"""The third protocol's definition (`Suite.tuning`): what a tuned suite
searches by coordinate descent, at which seeds, and what it confirms."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from layeropt_jax import COMPONENTS
from layeropt_jax.search import Grid

if TYPE_CHECKING:
  from train.benchmark.suites import Suite, Variant


Coordinates = tuple[tuple[str, Grid], ...]
SQRT2_STEPS = Grid(2 ** 0.5)


@dataclasses.dataclass(frozen=True)
class Tuning:
  """A protocol that tunes every row (method and ablation) beyond its
  learning rate: coordinate descent (`layeropt_jax.search`) at the
  selection seeds, then the row's verdicts from confirmation seeds that no
  choice has seen."""
  selection_seeds: tuple[int, ...] = (0, 1, 2)
  confirmation_seeds: tuple[int, ...] = tuple(range(100, 108))
  # Visited in order by every row: the learning rate (sqrt(2) steps around
  # its start), the weight decay (0 and its default x 1/3, 1, 3), the
  # learning rate again at the decay chosen.
  coordinates: Coordinates = (("lr", SQRT2_STEPS), ("weight_decay", Grid(3.0, zero=True)),
                              ("lr", SQRT2_STEPS))
  # Then, for the rows named, these: a hyperparameter we chose where a
  # report is silent.
  extra: dict[str, Coordinates] = dataclasses.field(default_factory=dict)
  max_extensions: int = 4  # points a stage may add past its grid's edges
  # Rows whose per-component multipliers are searched at the point their own
  # search chose (each of `multiplier_labels` in turn over MULTIPLIER_GRID,
  # a second pass over those that moved), by the optimizer named, which
  # takes the table (AdamW's: layer_adam, equal to AdamW at 1.0 everywhere).
  multipliers: dict[str, str] = dataclasses.field(default_factory=dict)
  multiplier_labels: tuple[str, ...] = ()
  # Tables confirmed at a row's chosen point beside its tuned one, by name.
  tables: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)
  # The baseline's other budgets (multiples of the suite's steps), each with
  # its learning rate searched around the 1x choice, and their seeds.
  data_multiples: tuple[float, ...] = ()
  scaling_seeds: tuple[int, ...] = ()

  def __post_init__(self):
    for name, seeds in (("confirmation", self.confirmation_seeds),
                        ("scaling", self.scaling_seeds)):
      if set(self.selection_seeds) & set(seeds):
        raise ValueError(f"selection seeds {self.selection_seeds} and {name} seeds "
                         f"{seeds} must be disjoint")
    unknown = sorted(set(self.multiplier_labels) - set(COMPONENTS))
    if unknown:
      raise ValueError(f"multiplier_labels {unknown} are not labels; valid: {COMPONENTS}")
    if set(self.tables) - set(self.multipliers):
      raise ValueError(f"tables of rows {sorted(set(self.tables) - set(self.multipliers))} "
                       "need their optimizer in multipliers")

  def coordinates_of(self, variant: Variant) -> Coordinates:
    return (*self.coordinates, *self.extra.get(variant.name, ()))

  def to_json(self) -> dict[str, Any]:
    as_json = lambda coordinates: [[name, dataclasses.asdict(grid)]
                                   for name, grid in coordinates]
    return {"selection_seeds": list(self.selection_seeds),
            "confirmation_seeds": list(self.confirmation_seeds),
            "coordinates": as_json(self.coordinates),
            "extra": {row: as_json(c) for row, c in self.extra.items()},
            "max_extensions": self.max_extensions,
            "multipliers": self.multipliers, "multiplier_labels": list(self.multiplier_labels),
            "tables": self.tables, "data_multiples": list(self.data_multiples),
            "scaling_seeds": list(self.scaling_seeds)}


@dataclasses.dataclass(frozen=True)
class Target:
  """What a tuned suite searches and then confirms at the point found: a
  row, a row's multipliers, a table at a row's point, a budget of the
  baseline."""
  variant: Variant  # what trains it; its name is the target's
  coordinates: Coordinates  # what its search tunes (none: confirmed at its start)
  seeds: tuple[int, ...]  # its confirmation seeds
  after: str | None = None  # the row whose chosen point it starts from
  passes: int = 1
  data_multiple: float = 1.0

  def tuned_keys(self, suite: Suite) -> set[str]:
    """The `opt` keys its runs set beyond `variant.opt` (a table: `scales`)."""
    names = {name for name, _ in self.coordinates}
    if self.after is not None:
      names |= {name for name, _ in suite.tuning.coordinates_of(suite.row(self.after))}
    return {"scales" if name in COMPONENTS else name for name in names} - {"lr"}
