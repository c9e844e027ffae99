"""What the benchmarks know of each method, one row per method.

A method of `layeropt_jax.get_optimizer` joins the optimizer benchmark
(every suite) and the optimizer-step benchmark's targets with one `Method`
here. Nothing here imports the trainer: `train.perf.results` reads the rows
without loading a model or a dataset.
"""

from __future__ import annotations

import dataclasses

# The reports' AdamW: validation loss 4.927 on FineWeb at 134M parameters.
REPORTED_ADAMW = 4.927


@dataclasses.dataclass(frozen=True)
class Claim:
  """A report's statement about a method against AdamW.

  kind: "better" or "worse" (than AdamW), "near" (within 1% of AdamW), or
  "best" (the lowest loss of all methods). `reported` is the report's loss.
  """
  text: str
  kind: str
  reported: float


@dataclasses.dataclass(frozen=True)
class Method:
  """One method of the benchmarks."""
  name: str  # its name in `layeropt_jax.get_optimizer`
  center_lr: float  # the middle of its learning-rate grid on the Python-corpus suites
  # The middle of its grid on the `paper` suite (the reports' setup): its
  # report's learning rate where the report gives one (as its `--preset`).
  reports_lr: float
  claim: Claim | None = None  # what a report says of it
  # Its optimizer step's time on the 134M tree at most `ratio` x `baseline`'s
  # (`python -m train.perf.optimizer_step`).
  step_time_target: tuple[str, float] | None = None


# AdamW first: every comparison needs it. Grid centres: AdamW-scale methods
# share one; sign-like updates (Lion, and Sophia's clipped ratio) take smaller
# steps, LAMB's trust ratio larger ones.
METHODS = (
    Method("adamw", 2e-3, 8e-4),
    Method("ladm", 2e-3, 8e-4,
           Claim("LADM beats AdamW by 11% (4.386 vs 4.927)", "better", 4.386),
           ("adamw", 1.35)),
    Method("lamvs", 2e-3, 8e-4,
           Claim("LAMVS beats AdamW (4.822 vs 4.927)", "better", 4.822),
           ("adamw", 1.10)),
    Method("aovs", 2e-3, 8e-4,
           Claim("AOVS is worse than AdamW (5.50)", "worse", 5.50), ("muon", 1.10)),
    Method("lamo", 2e-3, 1e-4,
           Claim("LAMO is worse than AdamW (5.862)", "worse", 5.862), ("adamw", 1.10)),
    Method("malao", 2e-3, 3e-4,
           Claim("MALAO is worse than AdamW (11.71)", "worse", 11.71), ("adamw", 1.10)),
    Method("layer_adam", 2e-3, 8e-4,
           Claim("LayerAdam is near AdamW (4.945)", "near", 4.945), ("adamw", 1.10)),
    Method("stable_adamw", 2e-3, 8e-4,
           Claim("StableAdamW is near AdamW (4.918)", "near", 4.918), ("adamw", 1.10)),
    Method("muon", 2e-3, 8e-4, Claim("Muon is the best method (3.54)", "best", 3.54)),
    Method("sophia", 5e-4, 2e-4, Claim("Sophia is worse than AdamW (5.091)", "worse", 5.091)),
    Method("lion", 2.5e-4, 1e-4),
    Method("lamb", 4e-3, 2e-3),
    Method("ademamix", 1e-3, 4e-4),
)
BY_NAME = {m.name: m for m in METHODS}


def claims() -> list[tuple[str, Claim]]:
  """`(method, claim)` in the order the report lists them: by the reported
  ratio to AdamW, the claim of a best method last."""
  return sorted(((m.name, m.claim) for m in METHODS if m.claim),
                key=lambda item: (item[1].kind == "best", item[1].reported))
