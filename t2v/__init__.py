"""t2v: stochastic video prediction and label/text-conditioned video generation with likelihood models.

Importing t2v before TensorFlow turns on TensorFlow's oneDNN CPU kernels unless TF_ENABLE_ONEDNN_OPTS is already
set: TensorFlow enables them by default only on some CPUs (not, e.g., on an AVX2 AMD EPYC without AVX-512), and
they measurably pay for t2v's flows there (session 6, 2-core AMD EPYC: `videoflow_cpu_multiscale` trained at
3.2-4.7 steps/s with them against 2.4-2.5 without). TensorFlow reads the variable once, when it is first imported, so the
`python -m t2v.*` entry points get this default; a program that imports TensorFlow first keeps TensorFlow's.
Set TF_ENABLE_ONEDNN_OPTS=0 to turn them off.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
