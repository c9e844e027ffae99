"""What a suite's finished runs show: a row per method and ablation at its
chosen learning rate, the verdicts on the reports' claims, the baseline's
data scaling, and what is still missing."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import statistics
from typing import Any

import numpy as np

import layeropt_jax
from train.benchmark import stats
from train.benchmark.methods import Claim, claims
from train.benchmark.plan import Loss, LrChoice, Plan
from train.benchmark.suites import BASELINE, Suite, run_hash
from train.optim import state_bytes_per_param

# The band of a "near" claim: a ratio to AdamW within 1 +- NEAR.
NEAR = 0.01
# The familywise error rate of the verdicts on the claims against AdamW.
ALPHA = 0.05
# The power at which the seeds a "near" claim needs are counted.
POWER = 0.8
# Draws of the simulation that gives the probability a learning-rate choice flips.
FLIP_DRAWS = 20000
# Bootstrap replicates of the data-scaling fit.
BOOTSTRAP = 1000


def loss_of(variants: dict[str, Any]) -> Loss:
  """The final loss of a collected run by its configuration (`plan.Loss`)."""
  by_hash = {r["hash"]: r["final_val_loss"] for v in variants.values() for r in v["runs"]}
  return lambda config: by_hash.get(run_hash(config))


def final(run: dict[str, Any]) -> float:
  """A collected run's final validation loss; a diverged run's (NaN) is
  infinite, so that it ranks and compares as the worst."""
  loss = run["final_val_loss"]
  return math.inf if loss != loss else loss


def at_lr(runs: list[dict[str, Any]], lr: float,
          data_multiple: float = 1.0) -> dict[int, dict[str, Any]]:
  """The runs at learning rate `lr` and `data_multiple`, by seed."""
  return {r["seed"]: r for r in runs if math.isclose(r["lr"], lr, rel_tol=1e-9)
          and r["data_multiple"] == data_multiple}


def paired_ratios(runs: dict[int, dict], baseline: dict[int, dict]) -> list[float]:
  """Loss / baseline loss for every seed both have (a seed fixes the
  initialisation and the data order of both)."""
  return [final(runs[s]) / final(baseline[s]) for s in sorted(set(runs) & set(baseline))]


def paired_ratio(runs: dict[int, dict], baseline: dict[int, dict]) -> tuple[float, float, int]:
  """Mean and 95% CI half-width of `paired_ratios`, and their count."""
  ratios = paired_ratios(runs, baseline)
  mean, half = stats.mean_ci(ratios) if ratios else (math.nan, math.nan)
  return mean, half, len(ratios)


def claim_test(claim: Claim, ratios: list[float]) -> tuple[float, str]:
  """The p-value of the test that decides `claim` on its paired ratios to
  AdamW, and the verdict a significant p gives.

  better/worse: two-sided against a ratio of 1, the verdict by the side the
  mean lies on. near: where the mean lies within 1 +- NEAR, two one-sided
  tests that it lies above 1 - NEAR and below 1 + NEAR (TOST, p the larger);
  elsewhere, the one-sided test that it lies beyond the nearer edge.
  """
  mean = statistics.fmean(ratios) if ratios else math.nan
  if claim.kind in ("better", "worse"):
    holds = mean < 1 if claim.kind == "better" else mean > 1
    return stats.t_test(ratios, 1.0), "confirmed" if holds else "refuted"
  if abs(mean - 1) <= NEAR:
    return max(stats.t_test(ratios, 1 - NEAR, "greater"),
               stats.t_test(ratios, 1 + NEAR, "less")), "confirmed"
  above = mean > 1
  return stats.t_test(ratios, 1 + NEAR if above else 1 - NEAR,
                      "greater" if above else "less"), "refuted"


@dataclasses.dataclass(frozen=True)
class Judgement:
  """A claim measured: the paired ratio to AdamW, its test, the verdict."""
  ratio: float
  half: float  # 95% CI half-width of `ratio`
  p: float  # the claim's test, uncorrected (NaN for "best", judged on its own rule)
  p_holm: float  # `p` adjusted over the claims tested against AdamW
  verdict: str
  uncorrected: str  # the verdict on `p` alone
  seeds_needed: int | None  # for "near": seeds a 1% equivalence test needs


def judge(rows: dict[str, dict]) -> dict[str, Judgement]:
  """Every claim whose method has a row, judged: the claims against AdamW
  with Holm's correction over them, the claim of a best method by
  `best_verdict`."""
  adamw = rows.get(BASELINE)
  if adamw is None:
    return {}
  measured = {method: (claim, paired_ratios(rows[method]["seeds"], adamw["seeds"]))
              for method, claim in claims() if method in rows}
  tests = {method: claim_test(claim, ratios) for method, (claim, ratios) in measured.items()
           if claim.kind != "best"}
  adjusted = stats.holm({method: p for method, (p, _) in tests.items()})
  judged = {}
  for method, (claim, ratios) in measured.items():
    mean, half = stats.mean_ci(ratios) if ratios else (math.nan, math.nan)
    if claim.kind == "best":
      verdict = best_verdict(method, rows)
      judged[method] = Judgement(mean, half, math.nan, math.nan, verdict, verdict, None)
      continue
    p, significant = tests[method]
    on = lambda p: ("not measured" if not math.isfinite(p) else
                    significant if p < ALPHA else "inconclusive")
    p_holm = adjusted.get(method, math.nan)
    sd = statistics.stdev(ratios) if len(ratios) > 1 else math.nan
    needed = stats.equivalence_seeds(sd, NEAR, ALPHA, POWER) if claim.kind == "near" else None
    judged[method] = Judgement(mean, half, p, p_holm, on(p_holm), on(p), needed)
  return judged


def best_verdict(method: str, rows: dict[str, dict]) -> str:
  """A "best" claim: confirmed when every other method's paired ratio to
  `method` lies significantly above 1 (each at ALPHA: all must hold, an
  intersection-union test, which needs no correction); refuted when some
  method lies significantly below it after Holm's correction over the
  others; else inconclusive."""
  others = {name: paired_ratios(row["seeds"], rows[method]["seeds"])
            for name, row in rows.items()
            if name != method and method in row.get("ratio_to", {})}
  if not others:
    return "not measured"
  p = {name: stats.t_test(r, 1.0) for name, r in others.items()}
  mean = {name: statistics.fmean(r) for name, r in others.items()}
  if all(mean[n] > 1 and p[n] < ALPHA for n in others):
    return "confirmed"
  adjusted = stats.holm(p)
  if any(mean[n] < 1 and adjusted.get(n, 1.0) < ALPHA for n in others):
    return "refuted"
  return "inconclusive"


def late_train_loss(run: dict[str, Any], fraction: float = 0.1) -> float:
  """The mean training loss over the last `fraction` of a run's steps."""
  last = run["train_curve"][-1][0]
  return statistics.fmean(loss for step, loss in run["train_curve"]
                          if step > (1 - fraction) * last)


@dataclasses.dataclass(frozen=True)
class Findings:
  """What a suite's finished runs show so far."""
  # A row per method whose learning rate is chosen and per ablation whose
  # parent's is: its seeds there, mean and CI, grid, paired ratios.
  rows: dict[str, dict[str, Any]]
  scaling: dict[str, Any] | None  # the baseline's data scaling (`data_scaling`), once complete
  missing: int  # runs still needed by what is known now
  open_choices: int  # methods whose learning rate is still to choose (they will need more)

  @property
  def complete(self) -> bool:
    return not self.missing and not self.open_choices


def analyse(suite: Suite, variants: dict[str, Any]) -> Findings:
  """The rows, the data scaling and what is still missing, from one
  learning-rate choice per method."""
  plan, loss = Plan(suite, pathlib.Path(), {}), loss_of(variants)
  choices = {m.name: plan.choose_lr(m, loss) for m in suite.methods}
  open_choices = [c for c in choices.values() if c.lr is None]
  if open_choices:
    needed = [c for choice in open_choices for c in choice.pending]
  else:
    needed = [c for group in plan.final_groups({n: c.lr for n, c in choices.items()})
              for c in group]
  rows = {name: row for name, v in variants.items()
          if (row := _row(v, choices.get(name) or choices[v["parent"]], name in choices,
                          suite.train["config"])) is not None}
  for name, row in rows.items():
    row["ratio_to"] = {other: paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name and other in choices}
  return Findings(rows, data_scaling(suite, variants, rows),
                  sum(loss(c) is None for c in needed), len(open_choices))


def _row(variant: dict[str, Any], choice: LrChoice, is_method: bool,
         config_name: str) -> dict[str, Any] | None:
  """A variant's row at its (or its parent's) chosen learning rate, once a
  seed has finished there; None before."""
  if choice.lr is None:
    return None
  seeds = at_lr(variant["runs"], choice.lr)
  if not seeds:
    return None
  mean, half = stats.mean_ci([final(r) for r in seeds.values()])
  candidates = choice.candidates if is_method else {}
  hyperparameters = {**layeropt_jax.hyperparameters(variant["optimizer"]), **variant["opt"]}
  return {
      "lr": choice.lr, "seeds": seeds, "mean": mean, "ci": half,
      "grid": sorted((r["lr"], final(r)) for r in variant["runs"]
                     if r["seed"] == 0 and r["data_multiple"] == 1.0),
      "candidates": candidates,
      "inside_grid": bool(candidates) and min(candidates) < choice.lr < max(candidates),
      "flip": stats.choice_flip_probability(candidates, choice.lr, FLIP_DRAWS),
      "weight_decay": hyperparameters.get("weight_decay", 0.0),
      "val_minus_train": statistics.fmean(
          r["final_val_loss"] - late_train_loss(r) for r in seeds.values()),
      "state_bytes_per_param": state_bytes_per_param(
          config_name, variant["optimizer"], variant["opt"])}


def data_scaling(suite: Suite, variants: dict[str, Any],
                 rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
  """The baseline's final losses over `suite.data_multiples`, those from
  `suite.data_fit_from` fitted by `L(D) = a * D^-b + c`, and each row's
  loss as the data multiple the baseline needs to reach it
  (`stats.data_multiples`); None until every budget has its seeds."""
  baseline = rows.get(BASELINE)
  if not suite.data_multiples or baseline is None:
    return None
  points = {m: [final(r) for r in at_lr(variants[BASELINE]["runs"], baseline["lr"], m).values()]
            for m in suite.data_multiples}
  if any(len(v) < suite.data_multiple_seeds for v in points.values()):
    return None
  fit, multiples = stats.data_multiples(
      {m: np.array(points[m]) for m in suite.fitted_multiples()},
      {name: np.array([final(r) for r in row["seeds"].values()])
       for name, row in rows.items()}, BOOTSTRAP)
  tokens = suite.train["steps"] * suite.train["batch_size"] * suite.train["seq_len"]
  fitted = suite.fitted_multiples()
  return {"fit": fit, "points": points, "multiples": multiples, "tokens": tokens,
          "fitted_range": (min(fitted), max(fitted))}
