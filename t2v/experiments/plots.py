"""Line plots of the experiments' numbers as PNG files (matplotlib's Agg canvas; no display, no pyplot state).

    save_panels("quality.png", [Panel("PSNR (dB)", [Curve(temps, psnr_mean, "mean", band=psnr_ci95)])],
                xlabel="temperature", title="...")

A Panel is one set of axes; a Curve one line, optionally with a shaded band of +- half-widths (a 95% interval).
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Sequence

try:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.ticker import MaxNLocator
except ImportError as e:  # matplotlib is an install requirement; say how to get it rather than a bare traceback
  raise ImportError(f"t2v.experiments draws its plots with matplotlib ({e}); pip install 'matplotlib>=3.8'") from e

_PANEL_SIZE_INCHES = (5.0, 3.6)
_DPI = 100
_BAND_ALPHA = 0.2
_TITLE_CHARS_PER_PANEL = 60  # a title wraps at about this many characters per panel of width


@dataclasses.dataclass
class Curve:
  """One line: y over x, `band` the half-widths of a shaded interval (None entries: no band there)."""

  x: Sequence[float]
  y: Sequence[float | None]
  label: str
  band: Sequence[float | None] | None = None
  style: str = "-"
  color: str | None = None
  marker: str | None = "o"


@dataclasses.dataclass
class Panel:
  """One set of axes."""

  ylabel: str
  curves: list[Curve]
  xlabel: str = ""
  integer_x: bool = False  # ticks on whole numbers only (frame numbers)


def _floats(values: Sequence[float | None]) -> list[float]:
  """None and non-numbers (JSON's "inf" strings) become NaN, which matplotlib leaves out."""
  out = []
  for value in values:
    try:
      out.append(float(value) if value is not None else math.nan)
    except (TypeError, ValueError):
      out.append(math.nan)
  return out


def save_panels(path: str, panels: Sequence[Panel], title: str = "") -> None:
  """Draws `panels` side by side and writes them to `path` (PNG), creating its directory."""
  if not panels:
    raise ValueError(f"save_panels({path!r}) got no panels; pass at least one Panel")
  figure = Figure(figsize=(_PANEL_SIZE_INCHES[0] * len(panels), _PANEL_SIZE_INCHES[1]), dpi=_DPI,
                  layout="constrained")
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, len(panels), squeeze=False)[0]
  for ax, panel in zip(axes, panels):
    for curve in panel.curves:
      x, y = _floats(curve.x), _floats(curve.y)
      if len(x) != len(y):
        raise ValueError(f"curve {curve.label!r} has {len(x)} x values and {len(y)} y values; give one x per y")
      (line,) = ax.plot(x, y, curve.style, color=curve.color, marker=curve.marker, markersize=3, label=curve.label)
      if curve.band is not None:
        half = _floats(curve.band)
        if len(half) != len(y):
          raise ValueError(f"curve {curve.label!r} has {len(y)} values and {len(half)} band half-widths; give one "
                           "per value (None for none)")
        ax.fill_between(x, [a - b for a, b in zip(y, half)], [a + b for a, b in zip(y, half)],
                        color=line.get_color(), alpha=_BAND_ALPHA, linewidth=0)
    ax.set_xlabel(panel.xlabel)
    if panel.integer_x:
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    if any(curve.label for curve in panel.curves):
      ax.legend(fontsize="small")
  if title:
    figure.suptitle(textwrap.fill(title, _TITLE_CHARS_PER_PANEL * len(panels)), fontsize="medium")
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  figure.savefig(path, format="png")
