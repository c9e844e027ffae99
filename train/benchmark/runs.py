"""A suite's runs as the cache holds them: `<runs-dir>/<suite>/<hash>`.

What the runner trains and the results read back: whether a run has
finished, its final loss, the command that retrains it alone, and every
finished run of a suite collected by variant.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
from typing import Any

from train import metrics
from train.benchmark.suites import Suite, run_hash
from train.config import PLACEMENT, TrainConfig, fields_of, flag


def reproduce_command(config: TrainConfig) -> str:
  """The `python -m train.train` command that trains this one run alone."""
  defaults = TrainConfig()
  placement = fields_of(PLACEMENT)
  args = ["python", "-m", "train.train", "--workdir", config.workdir]
  for field in dataclasses.fields(TrainConfig):
    value = getattr(config, field.name)
    if field.name in placement or value == getattr(defaults, field.name):
      continue
    if field.name == "opt":
      for key, v in value.items():
        args += ["--opt", f"{key}={v!r}"]
    else:
      args += ["--" + flag(field.name), str(value)]
  return shlex.join(args)


def finished_in(workdir: pathlib.Path) -> list[dict[str, Any]] | None:
  """The records of the run in `workdir` if it has finished, else None."""
  records = metrics.MetricsLog(workdir / "metrics.jsonl").records()
  return records if records and records[-1].get("event") == "done" else None


def finished(config: TrainConfig) -> list[dict[str, Any]] | None:
  """The run's records if it has finished, else None."""
  return finished_in(pathlib.Path(config.workdir))


def final_loss(config: TrainConfig) -> float | None:
  """The final validation loss of a finished run, None if it has not finished."""
  records = finished(config)
  return records[-1]["val_loss"] if records else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  """What the results keep of a finished run's `metrics.jsonl`."""
  steps = [r for r in records if "event" not in r]
  times = [r["step_time_s"] for r in steps if "step_time_s" in r]
  by_file = [r["val_loss_by_file"] for r in steps if "val_loss_by_file" in r]
  return {
      "final_val_loss": records[-1]["val_loss"],
      "tokens": records[-1]["tokens"],
      "val_curve": [[r["step"], r["val_loss"]] for r in steps if "val_loss" in r],
      "train_curve": [[r["step"], r["train_loss"]] for r in steps],
      # Other load on the machine only ever slows a step: the fastest logged
      # interval is the run's own speed.
      "step_time_s": min(times) if times else None,
      "nonfinite_steps": steps[-1].get("nonfinite_steps", 0) if steps else 0,
      # Its last evaluation's loss in each validation file (runs from before
      # the trainer kept them have none).
      **({"val_loss_by_file": by_file[-1]} if by_file else {}),
  }


def validation_file_tokens(variants: dict[str, Any], runs_dir: pathlib.Path,
                           suite: Suite) -> list[int] | None:
  """The tokens the validation set scores in each of its files, in the
  order of every run's `val_loss_by_file` (the same held-out set for all);
  None if no collected run kept them."""
  for variant in variants.values():
    for run in variant["runs"]:
      if "val_loss_by_file" in run:
        return finished_in(runs_dir / suite.name / run["hash"])[-1]["val_file_tokens"]
  return None


def collect(suite: Suite, runs_dir: pathlib.Path) -> dict[str, Any]:
  """Every finished run of the suite found in `runs_dir`, by variant (a
  tuned suite's: by target): its learning rate, seed and data multiple (of
  the suite's token budget), and a tuned suite's the values it tuned."""
  saved = [(run_json.parent, json.loads(run_json.read_text()))
           for run_json in sorted((runs_dir / suite.name).glob("*/run.json"))]
  if suite.tuning is None:
    rows = [(v, set(), {1.0, *suite.data_multiples}) for v in suite.methods + suite.ablations]
  else:
    rows = [(t.variant, t.tuned_keys(suite), {t.data_multiple}) for t in suite.targets()]
  variants = {}
  for variant, tuned, multiples in rows:
    fixed = lambda opt: {k: v for k, v in opt.items() if k not in tuned}
    runs = []
    for workdir, run in saved:
      multiple = run["steps"] / suite.train["steps"]
      if (run["optimizer"] != variant.optimizer or fixed(run["opt"]) != fixed(variant.opt)
          or multiple not in multiples):
        continue
      values = {k: v for k, v in run["opt"].items() if k in tuned}
      config = suite.config(variant, run["lr"], run["seed"], runs_dir, multiple, opt=values)
      records = finished(config)
      if config.workdir != str(workdir) or records is None:
        continue
      runs.append({"lr": config.lr, "seed": config.seed, "data_multiple": multiple,
                   **({"tuned": values} if suite.tuning else {}),
                   "hash": run_hash(config), "command": reproduce_command(config),
                   **summarize(records)})
    variants[variant.name] = {
        "optimizer": variant.optimizer, "opt": variant.opt, "parent": variant.parent,
        "description": variant.description,
        "runs": sorted(runs, key=lambda r: (r["data_multiple"], r["seed"], r["lr"]))}
  return variants
