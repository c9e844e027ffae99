"""Which runs a suite needs, given the runs finished so far.

One function of the finished runs decides, for the runner and the report
alike, every method's learning rate:

1. the grid: `grid_points` learning rates spaced by `grid_factor`, seed 0,
   extended past an edge while the best point lies on it;
2. the choice: the `lr_choice_points` best grid points get seeds 1 to
   `lr_choice_seeds - 1`, and the learning rate with the lowest mean over
   its seeds is chosen (on seed 0 alone the winner is biased: it was picked
   for its luck on that seed); a choice on an edge extends the grid again.

Then each method gets `seeds` seeds at its chosen learning rate, each
ablation as many at its parent's, and the baseline its data budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import math
import pathlib
import statistics
from typing import Any

from train.benchmark.suites import BASELINE, Suite, Variant
from train.config import TrainConfig

# The final validation loss of a finished run (NaN if it diverged), None
# while it has not finished.
Loss = Callable[[TrainConfig], float | None]


def ranked(losses: Mapping[float, float]) -> list[float]:
  """The learning rates of `losses` (lr -> loss) from the lowest loss; a
  diverged run (NaN) counts as the worst."""
  return sorted(losses, key=lambda lr: (math.isnan(losses[lr]), losses[lr]))


def past_edge(lrs: list[float], lr: float, factor: float) -> float | None:
  """The learning rate one grid step beyond `lr` when `lr` is the lowest or
  the highest of `lrs`, else None."""
  if lr == min(lrs):
    return lr / factor
  if lr == max(lrs):
    return lr * factor
  return None


@dataclasses.dataclass(frozen=True)
class LrChoice:
  """Where a method's learning-rate choice stands."""
  grid: dict[float, float]  # seed 0's loss by learning rate, once the grid is finished
  candidates: dict[float, list[float]]  # the best points' losses by seed, once finished
  lr: float | None  # the chosen learning rate; None while runs are missing
  stage: int  # how many stages (grids, extensions, choices) came before `pending`
  pending: list[TrainConfig]  # the runs of the stage it waits for, finished ones included


class Plan:
  """The runs of `suite` under `runs_dir`, placed by `placement`."""

  def __init__(self, suite: Suite, runs_dir: pathlib.Path, placement: dict[str, Any]):
    self.suite, self.runs_dir, self.placement = suite, runs_dir, placement
    names = [m.name for m in suite.methods]
    if suite.data_multiples and BASELINE not in names:
      raise ValueError(f"suite {suite.name}: data_multiples fit {BASELINE}, which is "
                       f"not among its methods {names}")

  def config(self, variant: Variant, lr: float, seed: int,
             data_multiple: float = 1.0) -> TrainConfig:
    return self.suite.config(variant, lr, seed, self.runs_dir, data_multiple,
                             **self.placement)

  def choose_lr(self, method: Variant, loss: Loss) -> LrChoice:
    """The learning rate of `method`, or the runs its choice waits for."""
    suite = self.suite
    lrs = suite.grid(method.center_lr)

    def beyond(lr: float) -> float | None:
      """The point to add past `lr` if it lies on an edge and the grid may grow."""
      if len(lrs) - suite.grid_points >= suite.max_extensions:
        return None
      return past_edge(lrs, lr, suite.grid_factor)

    stage = 0
    while True:
      runs = [self.config(method, lr, 0) for lr in lrs]
      if any(loss(c) is None for c in runs):
        return LrChoice({}, {}, None, stage, runs)
      grid = {lr: loss(c) for lr, c in zip(lrs, runs)}
      stage += 1
      if (extension := beyond(ranked(grid)[0])) is not None:
        lrs.append(extension)
        continue
      runs = {lr: [self.config(method, lr, seed) for seed in range(suite.lr_choice_seeds)]
              for lr in ranked(grid)[:suite.lr_choice_points]}
      if any(loss(c) is None for seeds in runs.values() for c in seeds):
        return LrChoice(grid, {}, None, stage, [c for seeds in runs.values() for c in seeds])
      candidates = {lr: [loss(c) for c in seeds] for lr, seeds in runs.items()}
      chosen = ranked({lr: statistics.fmean(v) for lr, v in candidates.items()})[0]
      stage += 1
      if (extension := beyond(chosen)) is not None:
        lrs.append(extension)
        continue
      return LrChoice(grid, candidates, chosen, stage, [])

  def final_groups(self, chosen: Mapping[str, float]) -> list[list[TrainConfig]]:
    """The runs after every learning rate is chosen, in groups that train
    together: each method's seeds at its learning rate, each ablation's at
    its parent's, the baseline's seeds at each data multiple. A run that is
    also another's (an ablation that is a baseline method, the baseline at
    multiple 1) is listed once."""
    suite = self.suite
    groups, listed = [], set()

    def add(configs: list[TrainConfig]) -> None:
      fresh = [c for c in configs if c.workdir not in listed]
      listed.update(c.workdir for c in fresh)
      if fresh:
        groups.append(fresh)

    for method in suite.methods:
      add([self.config(method, chosen[method.name], s) for s in range(suite.seeds)])
    for ablation in suite.ablations:
      add([self.config(ablation, chosen[ablation.parent], s) for s in range(suite.seeds)])
    baseline = next((m for m in suite.methods if m.name == BASELINE), None)
    for multiple in suite.data_multiples:
      add([self.config(baseline, chosen[BASELINE], s, multiple)
           for s in range(suite.data_multiple_seeds)])
    return groups

  def planned_steps(self) -> int:
    """Training steps of the suite without grid extensions."""
    suite, steps = self.suite, self.suite.train["steps"]
    choice = suite.lr_choice_points * (suite.lr_choice_seeds - 1)
    runs = (len(suite.methods) * (suite.grid_points + choice
                                  + max(suite.seeds - suite.lr_choice_seeds, 0))
            + len(suite.ablations) * suite.seeds)
    return (runs * steps + sum(round(m * steps) * suite.data_multiple_seeds
                               for m in suite.data_multiples if m != 1.0))
