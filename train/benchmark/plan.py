"""Which runs a suite needs, given the runs finished so far.

One function of the finished runs decides, for the runner and the results
alike, every method's learning rate. Learning rates are
`center * grid_factor ** (k / lr_refine)` for integers k, so the grids below
share their points exactly:

1. the grid: `grid_points` learning rates spaced by `grid_factor`, seed 0,
   extended past an edge while the best point lies on it;
2. the choice: the `lr_choice_points` best grid points and every point
   between them and one `grid_factor ** (1 / lr_refine)` step beyond (sqrt(2)
   spacing around the two best points of a 2x grid) get seeds 0 to
   `lr_choice_seeds - 1`, and the learning rate with the lowest mean over
   those seeds is chosen (on seed 0 alone the winner is biased: it was picked
   for its luck on that seed); a choice on an edge of this finer grid extends
   it by one step.

Then each method gets `seeds` seeds at its chosen learning rate, each
ablation as many at its parent's, and the baseline its data budgets.

A suite with `tuning` instead searches, by coordinate descent at the
selection seeds, every target's hyperparameters (`Plan.searches`): each row
(methods and ablations alike, from its own start), then, from a row's
chosen point, its per-component multipliers, tables and the baseline's
other budgets; each target's confirmation seeds train at the point found
(`Plan.tuned_groups`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import math
import pathlib
import statistics
from typing import Any

from layeropt_jax import COMPONENTS, UNIT_SCALES, hyperparameters
from layeropt_jax.search import Point, Search, coordinate_search
from train.benchmark.suites import BASELINE, Suite, Variant
from train.benchmark.tuning import Target
from train.config import TrainConfig

# The final validation loss of a finished run (NaN if it diverged), None
# while it has not finished.
Loss = Callable[[TrainConfig], float | None]


def ranked(losses: Mapping[Any, float]) -> list[Any]:
  """The keys of `losses` (key -> loss) from the lowest loss; a diverged run
  (NaN) counts as the worst."""
  return sorted(losses, key=lambda k: (math.isnan(losses[k]), losses[k]))


def past_edge(points: list[int], point: int, step: int) -> int | None:
  """The grid exponent one `step` beyond `point` when `point` is the lowest
  or the highest of `points`, else None."""
  if point == min(points):
    return point - step
  if point == max(points):
    return point + step
  return None


@dataclasses.dataclass(frozen=True)
class LrChoice:
  """Where a method's learning-rate choice stands."""
  grid: dict[float, float]  # seed 0's loss by learning rate, once the grid is finished
  # The finer grid's losses by learning rate and seed, once finished.
  candidates: dict[float, list[float]]
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
    lr = lambda k: suite.lr_at(method.center_lr, k)
    coarse = suite.grid_exponents()
    stage = 0
    while True:
      runs = {k: self.config(method, lr(k), 0) for k in coarse}
      if any(loss(c) is None for c in runs.values()):
        return LrChoice({}, {}, None, stage, list(runs.values()))
      grid = {k: loss(c) for k, c in runs.items()}
      stage += 1
      beyond = past_edge(coarse, ranked(grid)[0], suite.lr_refine)
      if beyond is None or len(coarse) - suite.grid_points >= suite.max_extensions:
        break
      coarse.append(beyond)
    best = ranked(grid)[:suite.lr_choice_points]
    fine = list(range(min(best) - 1, max(best) + 2))
    first_fine = len(fine)
    while True:
      runs = {k: [self.config(method, lr(k), seed) for seed in range(suite.lr_choice_seeds)]
              for k in fine}
      if any(loss(c) is None for seeds in runs.values() for c in seeds):
        return LrChoice({lr(k): v for k, v in grid.items()}, {}, None, stage,
                        [c for seeds in runs.values() for c in seeds])
      candidates = {k: [loss(c) for c in seeds] for k, seeds in runs.items()}
      chosen = ranked({k: statistics.fmean(v) for k, v in candidates.items()})[0]
      stage += 1
      beyond = past_edge(fine, chosen, 1)
      if beyond is None or len(fine) - first_fine >= suite.max_extensions:
        return LrChoice({lr(k): v for k, v in grid.items()},
                        {lr(k): v for k, v in candidates.items()}, lr(chosen), stage, [])
      fine.append(beyond)

  def start(self, target: Target, points: Mapping[str, Point]) -> Point | None:
    """Where a target's search starts. A row: its learning-rate grid's
    centre (an ablation's parent's) and the optimizer's defaults (or the
    row's own values) of the rest it tunes. A target after a row: that row's
    chosen point (None until `points` holds it), multipliers at 1."""
    variant = target.variant
    if target.after is not None:
      if target.after not in points:
        return None
      return {**points[target.after],
              **{name: 1.0 for name, _ in target.coordinates if name in COMPONENTS}}
    defaults = {**hyperparameters(variant.optimizer), **variant.opt}
    parent = next((m for m in self.suite.methods if m.name == variant.parent), variant)
    return {"lr": parent.center_lr, **{name: defaults[name] for name, _ in target.coordinates
                                       if name != "lr"}}

  def tuned_config(self, target: Target, point: Mapping[str, float],
                   seed: int) -> TrainConfig:
    """The run of `target` at the hyperparameters `point` (a label's value:
    its multiplier) and `seed`."""
    scales = {name: value for name, value in point.items() if name in COMPONENTS}
    opt = {name: value for name, value in point.items()
           if name != "lr" and name not in COMPONENTS}
    if scales:
      opt["scales"] = {**UNIT_SCALES, **scales}
    return self.suite.config(target.variant, point["lr"], seed, self.runs_dir,
                             target.data_multiple, opt=opt, **self.placement)

  def searches(self, loss: Loss) -> dict[str, tuple[Target, Search]]:
    """Every target's coordinate search whose start is known, by name,
    given the runs' losses (`Search.pending`: the (point, seed) runs it
    waits for). A target after a row waits for that row's choice."""
    tuning, points, found = self.suite.tuning, {}, {}
    for target in self.suite.targets():
      start = self.start(target, points)
      if start is None:
        continue
      search = coordinate_search(
          start, target.coordinates,
          lambda point, seed, target=target: loss(self.tuned_config(target, point, seed)),
          tuning.selection_seeds, tuning.max_extensions, target.passes)
      found[target.variant.name] = (target, search)
      if search.done:
        points[target.variant.name] = search.point
    return found

  def tuned_groups(self, loss: Loss) -> tuple[list[tuple[int, list[TrainConfig]]], bool]:
    """Each target's next runs, `(owner key, runs)`: its search's pending
    stage, or, once its search is done, its confirmation seeds at the point
    found; and whether every target is listed. A target's key is its place
    among the suite's targets plus its stages done, so that the workers
    agree on who trains what and the owner turns with each stage."""
    order = {t.variant.name: i for i, t in enumerate(self.suite.targets())}
    searches = self.searches(loss)
    groups = []
    for name, (target, search) in searches.items():
      runs = ([self.tuned_config(target, point, seed) for point, seed in search.pending]
              if not search.done else
              [self.tuned_config(target, search.point, seed) for seed in target.seeds])
      groups.append((order[name] + len(search.path), runs))
    return groups, len(searches) == len(order)

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
    """Training steps of the suite without grid extensions, its best grid
    points neighbours (a tuned suite: each target's first pass, every
    stage's grid new but for its start point, and its confirmation seeds)."""
    suite, steps = self.suite, self.suite.train["steps"]
    if suite.tuning is not None:
      tuning = suite.tuning
      return sum(
          round(steps * t.data_multiple) * (
              sum(len(grid.steps()) - (k > 0)
                  for k, (_, grid) in enumerate(t.coordinates)) * len(tuning.selection_seeds)
              + len(t.seeds))
          for t in suite.targets())
    fine = (suite.lr_choice_points - 1) * suite.lr_refine + 3
    # The points of the finer grid that seed 0 of the first grid has trained.
    trained = suite.lr_choice_points + (2 if suite.lr_refine == 1 else 0)
    choice = fine * suite.lr_choice_seeds - trained
    runs = (len(suite.methods) * (suite.grid_points + choice
                                  + max(suite.seeds - suite.lr_choice_seeds, 0))
            + len(suite.ablations) * suite.seeds)
    return (runs * steps + sum(round(m * steps) * suite.data_multiple_seeds
                               for m in suite.data_multiples if m != 1.0))
