"""Trains a suite: each method's grid, its seeds at the best LR, the ablations.

For every method: a learning-rate grid (`grid_points` points spaced by
`grid_factor`, seed 0), extended past an edge until the best point is inside;
then the other seeds at the best learning rate; then the ablations at their
parent method's best learning rate, every seed. The runs of one grid (or one
seed group) train together in one program (`train.train.train_sweep`); the
checkpoints of the groups in training live in `<sweeps-dir>`.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import hashlib
import math
import pathlib
import shlex
from typing import Any

import tqdm

from train import metrics
from train.benchmark.suites import Suite, Variant
from train.config import PLACEMENT, TrainConfig, fields_of, flag
from train.train import preflight, train_sweep


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


def finished(config: TrainConfig) -> list[dict[str, Any]] | None:
  """The run's records if it has finished, else None."""
  records = metrics.MetricsLog(pathlib.Path(config.workdir) / "metrics.jsonl").records()
  return records if records and records[-1].get("event") == "done" else None


def final_loss(config: TrainConfig) -> float:
  return finished(config)[-1]["val_loss"]


def best_lr(losses: Mapping[float, float]) -> float:
  """The learning rate of the lowest of `losses` (lr -> final loss); a
  diverged run (NaN) counts as the worst."""
  return min(losses, key=lambda lr: (math.isnan(losses[lr]), losses[lr]))


def next_grid_lr(losses: dict[float, float], factor: float) -> float | None:
  """The learning rate to add when the best of `losses` (lr -> final loss) is
  at an edge of the grid, else None."""
  ordered = sorted(losses)
  best = best_lr(losses)
  if best == ordered[0]:
    return best / factor
  if best == ordered[-1]:
    return best * factor
  return None


class Runner:
  """Trains a suite's runs in groups, skipping finished ones, with one
  progress bar (and ETA) over the whole suite."""

  def __init__(self, suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
               placement: dict[str, Any]):
    self.suite, self.runs_dir, self.placement = suite, runs_dir, placement
    self.sweeps_dir = sweeps_dir
    # smoothing=0: the ETA is the average rate since start over the steps
    # trained by this invocation only (see `count_earlier`).
    self.bar = tqdm.tqdm(total=suite.planned_runs * suite.train["steps"], unit="step",
                         desc=f"suite {suite.name}", smoothing=0)

  def count_earlier(self, steps: int) -> None:
    """Advances the bar by steps an earlier invocation trained, leaving them
    out of the rate: a resumed suite's ETA is not fooled by its cache."""
    self.bar.initial += steps
    self.bar.update(steps)

  def config(self, variant: Variant, lr: float, seed: int) -> TrainConfig:
    return self.suite.config(variant, lr, seed, self.runs_dir, **self.placement)

  def train(self, configs: list[TrainConfig], extra: bool = False) -> None:
    """Trains the unfinished runs of `configs` together."""
    steps = self.suite.train["steps"]
    if extra:
      self.bar.total += len(configs) * steps
    todo = [c for c in configs if finished(c) is None]
    self.count_earlier((len(configs) - len(todo)) * steps)
    if not todo:
      return
    reached = None

    def advance(step: int) -> None:
      nonlocal reached
      if reached is None:  # the step the sweep starts from: 0, or a restored one
        self.count_earlier(step * len(todo))
      else:
        self.bar.update((step - reached) * len(todo))
      reached = step

    group = hashlib.sha256("".join(sorted(c.workdir for c in todo)).encode()).hexdigest()
    train_sweep(todo, self.sweeps_dir / self.suite.name / group[:16], on_step=advance)

  def run_grid(self, method: Variant) -> float:
    """Runs the grid of `method` (seed 0), extending it past an edge."""
    lrs = self.suite.grid(method.center_lr)
    self.train([self.config(method, lr, 0) for lr in lrs])
    for _ in range(self.suite.max_extensions):
      losses = {lr: final_loss(self.config(method, lr, 0)) for lr in lrs}
      lr = next_grid_lr(losses, self.suite.grid_factor)
      if lr is None:
        break
      lrs.append(lr)
      self.train([self.config(method, lr, 0)], extra=True)
    return best_lr({lr: final_loss(self.config(method, lr, 0)) for lr in lrs})


def run_suite(suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
              placement: dict[str, Any]) -> None:
  """Each method's grid then its seeds at the best LR; then the ablations."""
  runner = Runner(suite, runs_dir, sweeps_dir, placement)
  best = {}
  for method in suite.methods:
    best[method.name] = runner.run_grid(method)
    runner.train([runner.config(method, best[method.name], seed)
                  for seed in range(1, suite.seeds)])
  for ablation in suite.ablations:
    runner.train([runner.config(ablation, best[ablation.parent], seed)
                  for seed in range(suite.seeds)])
  runner.bar.close()


def dry_run(suite: Suite, runs_dir: pathlib.Path, placement: dict[str, Any],
            batch_size: int, seq_len: int) -> None:
  """Builds and preflights every run configuration of the suite's grids
  (each optimizer built), then trains one step of its first method on a tiny
  batch."""
  for method in suite.methods:
    preflight([suite.config(method, lr, 0, runs_dir, **placement)
               for lr in suite.grid(method.center_lr)])
  for ablation in suite.ablations:
    preflight([suite.config(ablation, 1e-3, 0, runs_dir, **placement)])
  tiny = dataclasses.replace(
      suite, name=f"{suite.name}-dry-run",
      train={**suite.train, "batch_size": batch_size, "seq_len": seq_len, "steps": 1,
             "warmup": 0, "eval_every": 0, "eval_batches": 1})
  config = tiny.config(suite.methods[0], suite.methods[0].center_lr, 0, runs_dir, **placement)
  train_sweep([config], pathlib.Path(config.workdir) / "sweep")
  print(f"dry run of suite {suite.name}: {len(suite.methods)} methods and "
        f"{len(suite.ablations)} ablations configured; one step of "
        f"{suite.methods[0].name} trained in {config.workdir}")
