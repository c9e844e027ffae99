"""Writes a suite's results: `<suite>.json` (every run and the protocol),
`<suite>.md` (tables, verdicts on the reports' claims, ablations, the
baseline's data scaling) and its plots."""

from __future__ import annotations

import pathlib
from typing import Any

from train import data, files, provenance
from train.benchmark import analysis, plots, render, runs, tuned, tuned_page
from train.benchmark.suites import Suite


def write(suite: Suite, variants: dict[str, Any], runs_dir: pathlib.Path,
          out: pathlib.Path, argv: list[str], placement: dict[str, Any]) -> None:
  """Writes `<out>/<suite>.json`, `<suite>.md` and the plots from the
  collected `variants` (`runs.collect` of `runs_dir`); `placement` finds the suite's
  dataset, whose validation set the results describe."""
  import flax
  first = suite.config(suite.methods[0], suite.methods[0].center_lr, 0, pathlib.Path(),
                       **placement)
  if suite.tuning is None:
    protocol = {"grid_points": suite.grid_points,
                "grid_factor": suite.grid_factor, "lr_choice_points": suite.lr_choice_points,
                "lr_choice_seeds": suite.lr_choice_seeds, "seeds": suite.seeds,
                "data_multiples": list(suite.data_multiples),
                "data_multiple_seeds": suite.data_multiple_seeds,
                "data_fit_from": suite.data_fit_from,
                "lr_refine": suite.lr_refine,
                "validation": data.validation_set(first)}
  else:
    file_tokens = runs.validation_file_tokens(variants, runs_dir, suite)
    protocol = {"tuning": suite.tuning.to_json(), "corpus": data.corpus(first),
                "validation": {**data.validation_set(first), "file_tokens": file_tokens}}
  results = {"suite": suite.name, "description": suite.description,
             "train": suite.train, **protocol,
             "previous": suite.previous.to_json() if suite.previous else None,
             "git_commit": provenance.git_commit(), "flax": flax.__version__,
             "variants": variants}
  results = provenance.write_results(out / f"{suite.name}.json", "train.benchmark", argv,
                                     results)
  findings = analyse(suite, results)
  files.write_atomically(out / f"{suite.name}.md", page(suite, findings, results))
  if suite.tuning is None:
    plots.write(suite, findings, out)
  print(f"wrote {out / (suite.name + '.md')}: {suite.description}")


def analyse(suite: Suite, results: dict[str, Any]) -> analysis.Findings | tuned.TunedFindings:
  """What the runs of `results` (what `<suite>.json` holds) show, by the
  suite's protocol."""
  if suite.tuning is None:
    return analysis.analyse(suite, results["variants"])
  return tuned.analyse(suite, results["variants"], results["validation"]["file_tokens"])


def page(suite: Suite, findings, results: dict[str, Any]) -> str:
  """`<suite>.md` of `analyse`'s findings."""
  return (render.page if suite.tuning is None else tuned_page.page)(suite, findings, results)
