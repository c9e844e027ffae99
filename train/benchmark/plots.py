"""The suite's plots: validation curves, learning-rate grids and the
baseline's data scaling, beside its Markdown."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from train.benchmark.analysis import Findings
from train.benchmark.suites import BASELINE, Suite


def write(suite: Suite, findings: Findings, out: pathlib.Path) -> None:
  """`<out>/<suite>_curves.png`, `_lr.png` and, once measured, `_scaling.png`."""
  methods = [m.name for m in suite.methods if m.name in findings.rows]
  curves(suite, findings.rows, methods, out / f"{suite.name}_curves.png")
  lr_grids(suite, findings.rows, methods, out / f"{suite.name}_lr.png")
  path = out / f"{suite.name}_scaling.png"
  if findings.scaling is None:  # not measured (yet): no plot of earlier results' runs
    path.unlink(missing_ok=True)
  else:
    data_scaling(suite, findings, methods, path)


def _figure():
  from matplotlib.figure import Figure
  fig = Figure(figsize=(9, 6))
  return fig, fig.subplots()


def _color(i: int):
  from matplotlib import colormaps
  return colormaps["tab20"](i)


def _save(fig, ax, rows: dict[str, dict[str, Any]], methods: list[str], headroom: float,
          path: pathlib.Path) -> None:
  """Saves `fig` with the y-axis from the lowest final loss to `headroom`
  above the highest."""
  finals = [rows[n]["mean"] for n in methods]
  if finals:
    ax.set_ylim(min(finals) - 0.1, max(finals) + headroom)
    ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def curves(suite: Suite, rows: dict[str, dict[str, Any]], methods: list[str],
           path: pathlib.Path) -> None:
  fig, ax = _figure()
  for i, name in enumerate(methods):
    seeds = [r["val_curve"] for r in rows[name]["seeds"].values()]
    steps = [s for s, _ in seeds[0]]
    values = np.array([[v for _, v in c] for c in seeds])
    ax.plot(steps, values.mean(0), color=_color(i), label=f"{name} ({rows[name]['lr']:.2g})")
    ax.fill_between(steps, values.min(0), values.max(0), color=_color(i), alpha=0.2)
  ax.set(xlabel="step", ylabel="validation loss (nats/token)",
         title=f"suite {suite.name}: chosen LR per method, band = min..max over seeds")
  _save(fig, ax, rows, methods, 0.8, path)


def lr_grids(suite: Suite, rows: dict[str, dict[str, Any]], methods: list[str],
             path: pathlib.Path) -> None:
  fig, ax = _figure()
  for i, name in enumerate(methods):
    grid = [(lr, loss) for lr, loss in rows[name]["grid"] if math.isfinite(loss)]
    ax.plot(*zip(*grid), "o-", color=_color(i), label=name)
  ax.set_xscale("log")
  ax.set(xlabel="peak learning rate", ylabel="final validation loss (seed 0)",
         title=f"suite {suite.name}: learning-rate grids")
  _save(fig, ax, rows, methods, 1.0, path)


def data_scaling(suite: Suite, findings: Findings, methods: list[str],
                 path: pathlib.Path) -> None:
  rows, scaling = findings.rows, findings.scaling
  fig, ax = _figure()
  a, b, c = scaling["fit"]
  low, high = scaling["fitted_range"]
  for m, values in scaling["points"].items():
    ax.plot([m] * len(values), values, "o", color="k", alpha=0.5,
            markerfacecolor="k" if m in suite.fitted_multiples() else "none")
  shown = [v for v, _, _ in scaling["multiples"].values() if math.isfinite(v)]
  x = np.geomspace(min(low, *shown) / 1.2, max(high, *shown) * 1.2, 200)
  ax.plot(x, a * x ** -b + c, "k-", label=f"AdamW fit: {a:.3f} D^-{b:.3f} + {c:.3f}")
  for i, name in enumerate(methods):
    value, lo, hi = scaling["multiples"][name]
    if name == BASELINE or not math.isfinite(value):
      continue
    err = [[value - lo], [hi - value]] if math.isfinite(lo) and math.isfinite(hi) else None
    ax.errorbar([value], [rows[name]["mean"]], xerr=err, fmt="s", color=_color(i),
                capsize=3, label=f"{name}: {value:.2f}x")
  ax.set_xscale("log")
  ax.set_xticks(list(scaling["points"]), [f"{m:g}x" for m in scaling["points"]])
  ax.minorticks_off()
  ax.set(xlabel="tokens, as a multiple of the suite's budget",
         ylabel="final validation loss (nats/token)",
         title=f"suite {suite.name}: AdamW's data scaling (dots: seeds; hollow: not "
               "fitted)\nand the data it needs to match each method")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
