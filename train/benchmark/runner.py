"""Trains a suite's runs (`plan` decides which), alone or as one of N workers.

The runs of one group (a grid, a set of seeds) train together in one program
(`train.train.train_sweep`), or as parts of at most `max_group_runs`; the
checkpoints of the groups in training live in `<sweeps-dir>` until they
finish. Worker I of N trains the groups it owns, a deterministic share, and
waits for the others' by watching the shared runs directory: N machines
sharing `<runs-dir>` run one suite together, and any of them can be restarted
(its groups resume from their checkpoints).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import pathlib
import shutil
import time
from typing import Any

import jax
import tqdm

from train.benchmark.plan import Plan
from train.benchmark.runs import final_loss, finished, finished_in
from train.benchmark.suites import Suite
from train.config import TrainConfig
from train.train import preflight, sweeps, train_sweep


class Runner:
  """Trains the groups of a suite's runs that worker `worker` of `workers`
  owns, skipping finished runs, with one progress bar (and ETA) over them."""

  def __init__(self, suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
               placement: dict[str, Any], worker: int = 0, workers: int = 1,
               poll_seconds: float = 30.0, max_group_runs: int | None = None):
    self.suite, self.sweeps_dir = suite, sweeps_dir
    self.plan = Plan(suite, runs_dir, placement)
    self.worker, self.workers, self.poll_seconds = worker, workers, poll_seconds
    self.max_group_runs = max_group_runs
    self.waiting_for = None
    name = f"suite {suite.name}" + (f" worker {worker}/{workers}" if workers > 1 else "")
    # smoothing=0: the ETA is the average rate since start over the steps
    # trained by this invocation only (see `count_earlier`).
    self.bar = tqdm.tqdm(total=self.plan.planned_steps() // workers, unit="step",
                         desc=name, smoothing=0)
    # This worker's share of the steps earlier invocations finished, so that a
    # resumed suite's bar starts where it stands.
    runs = (finished_in(workdir) for workdir in (runs_dir / suite.name).glob("*"))
    self.count_earlier(sum(records[-1]["step"] for records in runs if records) // workers)

  def count_earlier(self, steps: int) -> None:
    """Advances the bar by steps an earlier invocation trained, leaving them
    out of the rate: a resumed suite's ETA is not fooled by its cache."""
    self.bar.initial += steps
    self.bar.update(steps)

  def train(self, configs: list[TrainConfig]) -> None:
    """Trains the unfinished runs of `configs` together."""
    todo = [c for c in configs if finished(c) is None]
    self.bar.total = max(self.bar.total, self.bar.n + len(todo) * configs[0].steps)
    if not todo:
      return

    def advance(runs: int, step: int) -> None:
      nonlocal reached
      if reached is None:  # the step the sweep starts from: 0, or a restored one
        self.count_earlier(step * runs)
      else:
        self.bar.update((step - reached) * runs)
      reached = step

    for sweep in sweeps(todo):
      reached = None
      group = hashlib.sha256("".join(sorted(c.workdir for c in sweep)).encode()).hexdigest()
      sweep_dir = self.sweeps_dir / self.suite.name / group[:16]
      train_sweep(sweep, sweep_dir, on_step=functools.partial(advance, len(sweep)))
      # Its checkpoints only served resuming it (GBs per group at the reports'
      # scale). Every process's saves are final once train_sweep returns.
      if jax.process_index() == 0:
        shutil.rmtree(sweep_dir)

  def parts(self, groups: list[tuple[int, list[TrainConfig]]]
            ) -> list[tuple[int, list[TrainConfig]]]:
    """`groups` (`(owner key, runs)`) in parts of at most `max_group_runs`
    runs, as even as possible, part j of a group keyed k keyed k + j (so
    that the workers share a group's parts)."""
    if self.max_group_runs is None:
      return groups
    split = []
    for key, runs in groups:
      size = math.ceil(len(runs) / math.ceil(len(runs) / self.max_group_runs))
      split += [(key + j, runs[i:i + size]) for j, i in enumerate(range(0, len(runs), size))]
    return split

  def run_phase(self, groups: list[tuple[int, list[TrainConfig]]]) -> bool:
    """Trains the unfinished groups (or parts, see `parts`) this worker owns
    (`(owner key, runs)`: worker `key % workers` owns them). Returns whether
    it trained any."""
    mine = [runs for key, runs in self.parts(groups) if key % self.workers == self.worker
            and any(finished(c) is None for c in runs)]
    for runs in mine:
      self.train(runs)
    return bool(mine)

  def wait(self, what: str, configs: list[TrainConfig]) -> None:
    """Waits a while for other workers to finish `configs`."""
    missing = sum(finished(c) is None for c in configs)
    if missing != self.waiting_for:
      self.bar.write(f"worker {self.worker}/{self.workers}: waiting for {missing} "
                     f"runs of {what} on other workers")
      self.waiting_for = missing
    time.sleep(self.poll_seconds)


def run_suite(suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
              placement: dict[str, Any], worker: int = 0, workers: int = 1,
              poll_seconds: float = 30.0, max_group_runs: int | None = None) -> None:
  """Every method's learning-rate choice, then its seeds, the ablations and
  the baseline's data budgets; or, for a suite with `tuning`, every
  target's search and confirmation seeds. Returns once every run has finished."""
  runner = Runner(suite, runs_dir, sweeps_dir, placement, worker, workers, poll_seconds,
                  max_group_runs)
  if suite.tuning is not None:
    groups = list(enumerate(_tune(runner)))
  else:
    groups = list(enumerate(_choose_lrs(runner)))
  runner.run_phase(groups)
  everything = [c for _, runs in groups for c in runs]
  while any(finished(c) is None for c in everything):
    runner.wait("the seeds and budgets", everything)
  runner.bar.close()


def _tune(runner: Runner) -> list[list[TrainConfig]]:
  """Trains every target's search and confirmation seeds; returns the
  groups of the last."""
  while True:
    groups, complete = runner.plan.tuned_groups(final_loss)
    todo = [(key, runs) for key, runs in groups if any(finished(c) is None for c in runs)]
    if complete and not todo:
      return [runs for _, runs in groups]
    if not runner.run_phase(todo):
      runner.wait("the searches", [c for _, runs in todo for c in runs])


def _choose_lrs(runner: Runner) -> list[list[TrainConfig]]:
  """Trains every method's learning-rate choice; returns the groups after it."""
  suite = runner.suite
  while True:  # until every learning rate is chosen
    choices = [(i, runner.plan.choose_lr(m, final_loss)) for i, m in enumerate(suite.methods)]
    pending = [(i + choice.stage, choice.pending) for i, choice in choices
               if choice.lr is None]
    if not pending:
      break
    if not runner.run_phase(pending):
      runner.wait("the learning-rate choices", [c for _, runs in pending for c in runs])
  chosen = {m.name: choice.lr for m, (_, choice) in zip(suite.methods, choices)}
  return runner.plan.final_groups(chosen)


def dry_run(suite: Suite, runs_dir: pathlib.Path, placement: dict[str, Any],
            batch_size: int, seq_len: int) -> None:
  """Builds and preflights every run configuration of the suite's grids,
  seeds, ablations and data budgets (each optimizer built), then trains one
  step of its first method on a tiny batch."""
  plan = Plan(suite, runs_dir, placement)
  if suite.tuning is not None:
    # Every target's confirmation, as if every run diverged (each search then
    # ends at once, past its grid's edges).
    for target, search in plan.searches(lambda config: math.nan).values():
      preflight([plan.tuned_config(target, search.point, seed) for seed in target.seeds])
  else:
    for method in suite.methods:
      preflight([plan.config(method, lr, 0) for lr in suite.grid(method.center_lr)])
    for group in plan.final_groups({m.name: m.center_lr for m in suite.methods}):
      preflight(group)
  tiny = dataclasses.replace(
      suite, name=f"{suite.name}-dry-run",
      train={**suite.train, "batch_size": batch_size, "seq_len": seq_len, "steps": 1,
             "warmup": 0, "eval_every": 0, "eval_batches": 1})
  config = tiny.config(suite.methods[0], suite.methods[0].center_lr, 0, runs_dir, **placement)
  train_sweep([config], pathlib.Path(config.workdir) / "sweep")
  print(f"dry run of suite {suite.name}: {len(suite.methods)} methods and "
        f"{len(suite.ablations)} ablations configured; one step of "
        f"{suite.methods[0].name} trained in {config.workdir}")
  print(f"planned: {plan.planned_steps():,} run-steps without grid extensions")
  print("methods: " + ", ".join(m.name for m in suite.methods))
