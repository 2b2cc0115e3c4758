"""Runs a hub-module consumer script in a fresh Python process that cannot import t2v (shared by the hub tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np


def consume(source: str, export_dir: str, tmp_path, **data) -> dict[str, np.ndarray]:
  """Runs `source` (argv: export_dir, input .npz, output .npz) on `data` without t2v on the path; its outputs.

  Fails the calling test, with the process's stderr, when the consumer exits non-zero.
  """
  np.savez(tmp_path / "data.npz", **data)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  result = subprocess.run([sys.executable, "-c", source, export_dir, str(tmp_path / "data.npz"),
                           str(tmp_path / "out.npz")], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(np.load(tmp_path / "out.npz"))
