"""t2v: stochastic video prediction and label/text-conditioned video generation with likelihood models."""

__version__ = "0.1.0"
