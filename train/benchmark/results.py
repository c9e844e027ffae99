"""Writes a suite's results: `<suite>.json` (every run and the protocol),
`<suite>.md` (tables, verdicts on the reports' claims, ablations, the
baseline's data scaling) and its plots."""

from __future__ import annotations

import pathlib
from typing import Any

from train import data, files, provenance
from train.benchmark import analysis, plots, render
from train.benchmark.suites import Suite


def write(suite: Suite, variants: dict[str, Any], out: pathlib.Path,
          argv: list[str], placement: dict[str, Any]) -> None:
  """Writes `<out>/<suite>.json`, `<suite>.md` and the plots from the
  collected `variants` (`runs.collect`); `placement` finds the suite's
  dataset, whose validation set the results describe."""
  import flax
  first = suite.config(suite.methods[0], suite.methods[0].center_lr, 0, pathlib.Path(),
                       **placement)
  results = {"suite": suite.name, "description": suite.description,
             "train": suite.train, "grid_points": suite.grid_points,
             "grid_factor": suite.grid_factor, "lr_choice_points": suite.lr_choice_points,
             "lr_choice_seeds": suite.lr_choice_seeds, "seeds": suite.seeds,
             "data_multiples": list(suite.data_multiples),
             "data_multiple_seeds": suite.data_multiple_seeds,
             "data_fit_from": suite.data_fit_from,
             "lr_refine": suite.lr_refine,
             "validation": data.validation_set(first),
             "previous": suite.previous.to_json() if suite.previous else None,
             "git_commit": provenance.git_commit(), "flax": flax.__version__,
             "variants": variants}
  results = provenance.write_results(out / f"{suite.name}.json", "train.benchmark", argv,
                                     results)
  findings = analysis.analyse(suite, variants)
  files.write_atomically(out / f"{suite.name}.md", render.page(suite, findings, results))
  plots.write(suite, findings, out)
  print(f"wrote {out / (suite.name + '.md')}: {suite.description}")
