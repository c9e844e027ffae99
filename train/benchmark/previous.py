"""The superseded protocols' results, frozen as data: their verdicts on the
reports' claims and the learning rates they chose, for the "what changed"
tables of the suites that replaced them (tests hold them to their results
files and runs)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Previous:
  """A superseded protocol's results, frozen: its verdicts and learning rates."""
  results: str  # its results file, beside the suite's own
  protocol: str  # how it differed from the suite's protocol now
  # claim text -> {"ratio": "m +- h", "verdict": ...}, and where known
  # "fresh_seeds": the verdict on its seeds that chose no learning rate.
  claims: dict[str, dict[str, str]]
  lrs: dict[str, float]  # its chosen learning rate per method

  def to_json(self) -> dict[str, Any]:
    return {"report": self.results, "claims": self.claims, "lrs": self.lrs}


def _claims(*rows: tuple[str, ...]) -> dict[str, dict[str, str]]:
  keys = ("ratio", "verdict", "fresh_seeds")
  return {text: dict(zip(keys, values)) for text, *values in rows}


NANO_V1 = Previous(
    "nano_v1.md",
    "the first 512 windows of a 5% held-out split, the learning rate chosen between the "
    "two best points of the 2x grid, no correction for the number of claims",
    _claims(
        ("LADM beats AdamW by 11% (4.386 vs 4.927)", "1.0887 +- 0.0349", "refuted"),
        ("LAMVS beats AdamW (4.822 vs 4.927)", "1.0046 +- 0.0440", "inconclusive"),
        ("StableAdamW is near AdamW (4.918)", "0.9829 +- 0.0399", "inconclusive"),
        ("LayerAdam is near AdamW (4.945)", "1.0088 +- 0.0402", "inconclusive"),
        ("Sophia is worse than AdamW (5.091)", "1.1447 +- 0.0489", "confirmed"),
        ("AOVS is worse than AdamW (5.50)", "0.8973 +- 0.0325", "refuted"),
        ("LAMO is worse than AdamW (5.862)", "1.0608 +- 0.0417", "confirmed"),
        ("MALAO is worse than AdamW (11.71)", "0.9906 +- 0.0413", "inconclusive"),
        ("Muon is the best method (3.54)", "0.8929 +- 0.0322", "inconclusive")),
    dict(muon=0.016, aovs=0.008, stable_adamw=0.008, malao=0.004, adamw=0.008,
         lamvs=0.004, layer_adam=0.004, ademamix=0.004, lamb=0.008, lamo=0.004,
         ladm=0.004, sophia=0.0005, lion=0.001))


# The `nano` suite's second protocol (results/nano.md): its verdicts on
# seeds 0-7 and on seeds 3-7 alone (seeds 0-2 chose the learning rates), and
# the learning rates it chose, where the tuned suite's searches start.
NANO_V2 = Previous(
    "nano.md",
    "python_stdlib (its train split read 1-5.8 times), the learning rate alone tuned "
    "(weight decay 0.1, no clipping), seeds 0-2 choosing and 0-7 judging, directions "
    "only, the claims of a best method outside the Holm family",
    _claims(
        ("LADM beats AdamW by 11% (4.386 vs 4.927)", "1.0968 +- 0.0152", "refuted",
         "refuted"),
        ("LAMVS beats AdamW (4.822 vs 4.927)", "1.0202 +- 0.0128", "refuted", "inconclusive"),
        ("StableAdamW is near AdamW (4.918)", "1.0064 +- 0.0086", "inconclusive",
         "inconclusive"),
        ("LayerAdam is near AdamW (4.945)", "1.0180 +- 0.0174", "inconclusive",
         "inconclusive"),
        ("Sophia is worse than AdamW (5.091)", "1.1421 +- 0.0134", "confirmed", "confirmed"),
        ("AOVS is worse than AdamW (5.50)", "0.9306 +- 0.0095", "refuted", "refuted"),
        ("LAMO is worse than AdamW (5.862)", "1.0801 +- 0.0148", "confirmed", "confirmed"),
        ("MALAO is worse than AdamW (11.71)", "1.0074 +- 0.0093", "inconclusive",
         "inconclusive"),
        ("Muon is the best method (3.54)", "0.9357 +- 0.0086", "refuted", "refuted")),
    dict(adamw=0.00565685, ladm=0.00282843, lamvs=0.004, aovs=0.0113137, lamo=0.008,
         malao=0.00282843, layer_adam=0.00282843, stable_adamw=0.00565685, muon=0.016,
         sophia=0.000353553, lion=0.000707107, lamb=0.0113137, ademamix=0.00282843))
