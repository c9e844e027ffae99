"""Coordinate descent over hyperparameters, as Wen et al. (2025) tune optimizers.

One hyperparameter at a time, in a fixed order (a name may come back, e.g.
the learning rate again after the weight decay), is evaluated on a grid
around its current value at every seed; the value with the lowest mean loss
is kept, and while it lies on an edge of the grid the grid is extended one
point past that edge. A search is a pure function of the losses known so
far: it returns the evaluations it waits for, so that a caller may compute
them anywhere (processes, machines, a cache of finished runs) and ask again.
:func:`tune` runs the whole search with a callable.

References:
  Wen et al., 2025, "Fantastic Pretraining Optimizers and Where to Find
  Them" (arXiv:2509.02046).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import math
import statistics

Point = dict[str, float]
# The loss of `point` at `seed`, None while it is not known; NaN for a run
# that diverged (the worst of any grid).
Loss = Callable[[Mapping[str, float], int], "float | None"]


def _canonical(value: float) -> float:
  """`value` to 6 significant digits: a point reached along two paths (a
  centre times sqrt(2) twice, or times 2) is one point."""
  return float(f"{value:.6g}")


@dataclasses.dataclass(frozen=True)
class Grid:
  """Where a hyperparameter's values lie around a current value `v`.

  The points are `v * factor**k` for integers `k`, `-width..width` at first.
  With `complement`, they are spaced so in `1 - v` instead (a decay rate such
  as Adam's b2: 0.95 gives 0.975, 0.95, 0.9 with factor 2). With `zero`, 0 is
  a point too, below the others (a weight decay: none at all); a best point
  at 0 extends the grid between 0 and its smallest other point.
  """
  factor: float
  width: int = 1
  zero: bool = False
  complement: bool = False

  def _spaced(self, value: float) -> float:
    return 1.0 - value if self.complement else value

  def value(self, around: float, k: float, anchor: float | None = None) -> float:
    """The point `k` steps from `around` (`k = -inf`: the point 0).

    With `anchor` (a search's start value), every point is computed from it,
    `anchor * factor**n` for the integer `n` nearest `around`'s: a point
    reached along two paths is one float (5.65685 times sqrt(2) is 8, not
    7.99999), so that a later stage reuses an earlier one's runs.
    """
    if k == -math.inf:
      return 0.0
    if anchor is None:
      anchor = around
    n = round(math.log(self._spaced(around) / self._spaced(anchor)) / math.log(self.factor))
    return _canonical(self._spaced(self._spaced(anchor) * self.factor**(n + k)))

  def steps(self) -> list[float]:
    """The first grid's steps from the current value."""
    return ([-math.inf] if self.zero else []) + list(range(-self.width, self.width + 1))

  def beyond(self, around: float, steps: Sequence[float], best: float) -> float | None:
    """The step past the edge of `steps` that the `best` step lies on; None
    if it lies inside them, or past an edge no step crosses (b2's 1)."""
    if best == max(steps):
      crosses = not self.complement or self._spaced(around) * self.factor**(best + 1) < 1
      return best + 1 if crosses else None
    if best == -math.inf:  # the point 0: the next point lies between it and the smallest
      return min(k for k in steps if k > -math.inf) - 1
    return best - 1 if best == min(steps) else None

  def check(self, value: float) -> None:
    """Refuses a value no grid can lie around."""
    if not 0 < self._spaced(value) < math.inf:
      raise ValueError(f"a grid of factor {self.factor} around {value} needs "
                       f"{'1 - value' if self.complement else 'the value'} > 0")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One visit of a hyperparameter: every grid point's losses by seed (in
  the order of `seeds`), and the value chosen."""
  name: str
  losses: dict[float, list[float]]
  chosen: float
  # Whether the chosen value has grid points on both sides (else the search
  # stopped extending: `max_extensions`, or no step crosses that edge).
  inside: bool


@dataclasses.dataclass(frozen=True)
class Search:
  """Where a coordinate search stands."""
  point: Point  # the values chosen so far, the start's for the others
  path: list[Stage]  # the stages finished, in order
  # The (point, seed) evaluations the next stage waits for; empty once done.
  pending: list[tuple[Point, int]]

  @property
  def done(self) -> bool:
    return not self.pending


def _mean(losses: Sequence[float]) -> float:
  """The mean loss, +inf if any seed diverged (NaN)."""
  return math.inf if any(math.isnan(x) for x in losses) else statistics.fmean(losses)


def coordinate_search(start: Mapping[str, float],
                      coordinates: Sequence[tuple[str, Grid]], loss: Loss,
                      seeds: Sequence[int], max_extensions: int = 4,
                      passes: int = 1) -> Search:
  """Coordinate descent from `start` over `coordinates` (visited in order),
  choosing each value by its mean loss over `seeds`.

  Args:
    start: every hyperparameter's starting value.
    coordinates: `(name, grid)` in the order visited; a name may repeat.
    loss: `loss(point, seed)`, None while not known (see the module doc).
    seeds: the seeds every grid point is evaluated at (the selection seeds;
      judge the result on others).
    max_extensions: points a stage may add past its grid's edges.
    passes: with more than 1, each further pass visits again, in order, the
      coordinates whose value the pass before moved (none moved: done).

  Returns:
    A :class:`Search`: the point chosen and the path once `done`, else the
    evaluations the current stage waits for.
  """
  missing = sorted({name for name, _ in coordinates} - set(start))
  if missing:
    raise ValueError(f"coordinates {missing} have no start value; start has {sorted(start)}")
  if passes < 1:
    raise ValueError(f"passes must be >= 1, got {passes}")
  point, path = {k: _canonical(v) for k, v in start.items()}, []
  anchors, visit = dict(point), list(coordinates)
  for _ in range(passes):
    moved = []
    for name, grid in visit:
      around = point[name]
      grid.check(around)
      steps = grid.steps()
      for extension in range(max_extensions + 1):
        values = {k: grid.value(around, k, anchors[name]) for k in steps}
        known = {v: [loss({**point, name: v}, s) for s in seeds] for v in values.values()}
        pending = [({**point, name: v}, s) for v, losses in known.items()
                   for s, x in zip(seeds, losses) if x is None]
        if pending:
          return Search(point, path, pending)
        best = min(steps, key=lambda k: _mean(known[values[k]]))
        further = grid.beyond(around, steps, best)
        if further is None or extension == max_extensions:
          break
        steps = sorted({*steps, further})
      path.append(Stage(name, known, values[best], min(steps) < best < max(steps)))
      if values[best] != around:
        moved.append((name, grid))
      point = {**point, name: values[best]}
    visit = moved
  return Search(point, path, [])


def tune(objective: Callable[[Mapping[str, float], int], float],
         start: Mapping[str, float], coordinates: Sequence[tuple[str, Grid]],
         seeds: Sequence[int], max_extensions: int = 4, passes: int = 1) -> Search:
  """:func:`coordinate_search` to its end, calling `objective(point, seed)`
  (a training run's final loss, NaN if it diverged) for every evaluation it
  needs, each once.

  Args:
    objective: `objective(point, seed)`, the loss at a point of every
      hyperparameter of `start`.
    start, coordinates, seeds, max_extensions, passes: as
      :func:`coordinate_search` takes them.

  Returns:
    The finished :class:`Search`: `point` the values chosen, `path` every
    stage's grid and losses.
  """
  known: dict[tuple[tuple[tuple[str, float], ...], int], float] = {}
  key = lambda point, seed: (tuple(sorted(point.items())), seed)
  while True:
    search = coordinate_search(start, coordinates, lambda p, s: known.get(key(p, s)),
                               seeds, max_extensions, passes)
    if search.done:
      return search
    for point, seed in search.pending:
      known[key(point, seed)] = float(objective(point, seed))


# Per-component multipliers: sqrt(2) steps from 1/2 to 2 around 1.
MULTIPLIER_GRID = Grid(2 ** 0.5, width=2)


def search_multipliers(objective: Callable[[Mapping[str, float], int], float],
                       labels: Sequence[str], seeds: Sequence[int],
                       grid: Grid = MULTIPLIER_GRID, passes: int = 2,
                       max_extensions: int = 4) -> Search:
  """Per-component learning-rate multipliers for your own model, found by
  coordinate descent from 1.0 everywhere: each label in turn over `grid`
  (extended past an edge while the best point lies on it), then another pass
  over the labels whose multiplier moved.

  Example, with a training function of your own that takes a table (for
  `layeropt_jax.layer_adam(..., scales=scales)`, say)::

    search = search_multipliers(
        lambda scales, seed: train_and_validate(scales, seed),
        labels=("embedding", "attn_qkv", "attn_out", "mlp", "norm"), seeds=(0, 1, 2))
    search.point  # the table: label -> multiplier
    search.path   # every stage: the grid's losses by seed, the value chosen

  Judge the table on seeds other than `seeds`: it is chosen on them.

  Args:
    objective: `objective(scales, seed)`, the final loss of a run whose
      multiplier of each label is `scales[label]`; NaN if it diverged.
    labels: the labels to tune, in the order visited (labels your model has
      no parameters of change nothing: leave them out).
    seeds: the seeds every table is trained at.
    grid: where a multiplier's values lie around its current one.
    passes: passes over the labels (the later ones over those that moved).
    max_extensions: points a stage may add past its grid's edges.

  Returns:
    The finished :class:`Search`: `point` the table, `path` the record.
  """
  if not labels or len(set(labels)) != len(labels):
    raise ValueError(f"labels must be distinct and at least one, got {list(labels)}")
  return tune(objective, {label: 1.0 for label in labels},
              [(label, grid) for label in labels], seeds, max_extensions, passes)
