"""What a tuned suite's runs show (`Suite.tuning`): each row's coordinate
search at the selection seeds, its confirmation seeds at the point found,
and the reports' claims judged on the confirmation seeds alone, on
direction and on magnitude, with one Holm family over every claim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import math
import pathlib
import statistics
from typing import Any

import numpy as np
import scipy.stats

from layeropt_jax.search import Search
from train.benchmark import stats
from train.benchmark.analysis import (ALPHA, BOOTSTRAP, claim_test, final, late_train_loss,
                                      loss_of, paired_ratios)
from train.benchmark.methods import REPORTED_ADAMW, Claim, claims
from train.benchmark.plan import Plan
from train.benchmark.suites import BASELINE, Suite, run_hash
from train.benchmark.tuning import Target
from train.optim import state_bytes_per_param

# Bootstrap replicates of the ratio over validation files.
FILE_BOOTSTRAP = 2000


@dataclasses.dataclass(frozen=True)
class Verdict:
  """A claim judged on the confirmation seeds."""
  reported: float  # the report's ratio to AdamW
  ratio: float  # ours: the mean paired ratio to AdamW
  half: float  # its 95% CI half-width over seeds
  files: tuple[float, float]  # its 95% bootstrap interval over validation files
  p: float  # the direction's test, uncorrected
  p_holm: float  # `p` adjusted over every claim
  direction: str  # confirmed / refuted / inconclusive
  magnitude: str  # whether `reported` lies inside the seed CI: consistent / excluded


@dataclasses.dataclass(frozen=True)
class TunedFindings:
  """What a tuned suite's finished runs show so far."""
  # Per target (rows, multipliers, tables, budgets): its search, and once it
  # is done its confirmation runs by seed with their mean and CI ("seeds",
  # "mean", "ci", ...).
  rows: dict[str, dict[str, Any]]
  verdicts: dict[str, Verdict]  # by method, once it and AdamW are confirmed
  multipliers: dict[str, dict[str, Any]]  # `multipliers`: by row searched
  scaling: dict[str, Any] | None  # `scaling`, once every budget has its seeds
  missing: int  # runs still needed by what is known now
  open_searches: int  # targets whose search is not done (they will need more)

  @property
  def complete(self) -> bool:
    return not self.missing and not self.open_searches


def file_ratio_interval(tokens: np.ndarray, losses: np.ndarray,
                        baseline: np.ndarray) -> tuple[float, float]:
  """The 95% percentile interval of the ratio of two token-weighted mean
  losses when the validation files are resampled (each file: its tokens and
  its loss under each of the two, paired)."""
  if len(tokens) < 2:
    return math.nan, math.nan
  ratio = lambda w, a, b, axis: (w * a).sum(axis) / (w * b).sum(axis)
  result = scipy.stats.bootstrap((tokens, losses, baseline), ratio, paired=True,
                                 vectorized=True, n_resamples=FILE_BOOTSTRAP,
                                 method="percentile", rng=np.random.default_rng(0))
  return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _by_file(runs: Mapping[int, dict[str, Any]], seeds: Sequence[int]) -> np.ndarray:
  """Each validation file's final loss, the mean over `seeds`."""
  return np.mean([runs[s]["val_loss_by_file"] for s in seeds], axis=0)


def best_test(method: str, rows: Mapping[str, dict[str, Any]]) -> tuple[float, str]:
  """"`method` has the lowest loss" as one test, for the Holm family: where
  its mean is the lowest, the intersection-union test that every other
  row's paired ratio to it lies above 1 (p: the largest one-sided p),
  "confirmed" if significant; else the one-sided test that the lowest other
  lies below it, "refuted" if significant."""
  others = {name: paired_ratios(row["seeds"], rows[method]["seeds"])
            for name, row in rows.items() if name != method}
  others = {name: r for name, r in others.items() if r}
  if not others:
    return math.nan, "not measured"
  means = {name: statistics.fmean(r) for name, r in others.items()}
  lowest = min(means, key=means.get)
  if means[lowest] > 1:
    return max(stats.t_test(r, 1.0, "greater") for r in others.values()), "confirmed"
  return stats.t_test(others[lowest], 1.0, "less"), "refuted"


def judge(claimed: Sequence[tuple[str, Claim]], rows: Mapping[str, dict[str, Any]],
          methods: Sequence[str], file_tokens: np.ndarray | None) -> dict[str, Verdict]:
  """Every claim whose method and AdamW have confirmation seeds: direction
  (Holm over all of them, "best" included), magnitude, and the ratio's
  intervals over seeds and over validation files."""
  adamw = rows.get(BASELINE)
  if adamw is None or "seeds" not in adamw:
    return {}
  measured = [(m, c) for m, c in claimed if "seeds" in rows.get(m, {})]
  competitors = {m: rows[m] for m in methods if "seeds" in rows.get(m, {})}
  tests = {m: best_test(m, competitors) if c.kind == "best"
           else claim_test(c, paired_ratios(rows[m]["seeds"], adamw["seeds"]))
           for m, c in measured}
  adjusted = stats.holm({m: p for m, (p, _) in tests.items()})
  verdicts = {}
  for method, claim in measured:
    row = rows[method]
    seeds = sorted(set(row["seeds"]) & set(adamw["seeds"]))
    ratio, half = stats.mean_ci(paired_ratios(row["seeds"], adamw["seeds"]))
    reported = claim.reported / REPORTED_ADAMW
    files = ((math.nan, math.nan) if file_tokens is None else file_ratio_interval(
        file_tokens, _by_file(row["seeds"], seeds), _by_file(adamw["seeds"], seeds)))
    p, significant = tests[method]
    p_holm = adjusted.get(method, math.nan)
    direction = ("not measured" if not math.isfinite(p_holm) else
                 significant if p_holm < ALPHA else "inconclusive")
    magnitude = ("-" if not math.isfinite(half) else
                 "consistent" if abs(reported - ratio) <= half else "excluded")
    verdicts[method] = Verdict(reported, ratio, half, files, p, p_holm, direction, magnitude)
  return verdicts


def _row(plan: Plan, target: Target, search: Search, by_hash: Mapping[str, dict[str, Any]],
         config_name: str) -> dict[str, Any]:
  """A target's row: its search, and its confirmation runs once the search
  is done."""
  row: dict[str, Any] = {"target": target, "search": search, "point": search.point}
  if not search.done:
    return row
  configs = {seed: plan.tuned_config(target, search.point, seed) for seed in target.seeds}
  hashes = {seed: run_hash(c) for seed, c in configs.items()}
  seeds = {seed: by_hash[h] for seed, h in hashes.items() if h in by_hash}
  row["pending"] = [configs[seed] for seed, h in hashes.items() if h not in by_hash]
  if not seeds:
    return row
  mean, half = stats.mean_ci([final(r) for r in seeds.values()])
  config = next(iter(configs.values()))
  return row | {
      "seeds": seeds, "mean": mean, "ci": half,
      "val_minus_train": statistics.fmean(
          r["final_val_loss"] - late_train_loss(r) for r in seeds.values()),
      "state_bytes_per_param": state_bytes_per_param(config_name, config.optimizer,
                                                     config.opt)}


def analyse(suite: Suite, variants: dict[str, Any],
            file_tokens: Sequence[int] | None = None) -> TunedFindings:
  """Every target's search, confirmation and the verdicts; `file_tokens`:
  the tokens the validation set scores in each file (`val_file_tokens`),
  for the bootstrap over files."""
  plan, loss = Plan(suite, pathlib.Path(), {}), loss_of(variants)
  by_hash = {r["hash"]: r for v in variants.values() for r in v["runs"]}
  rows = {name: _row(plan, target, search, by_hash, suite.train["config"])
          for name, (target, search) in plan.searches(loss).items()}
  missing = sum(len(row["search"].pending) + len(row.get("pending", ()))
                for row in rows.values())
  tokens = None if file_tokens is None else np.asarray(file_tokens, dtype=float)
  verdicts = judge(claims(), rows, [m.name for m in suite.methods], tokens)
  open_searches = (len(suite.targets()) - len(rows)
                   + sum(not row["search"].done for row in rows.values()))
  return TunedFindings(rows, verdicts, multipliers(suite, rows),
                       scaling(suite, rows, BOOTSTRAP), missing, open_searches)


def _compare(rows: Mapping[str, dict[str, Any]], name: str, reference: str
             ) -> dict[str, Any] | None:
  """`name`'s paired ratio to `reference` on their common seeds: mean, CI
  half-width, two-sided p against 1; None until both have seeds."""
  if "seeds" not in rows.get(name, {}) or "seeds" not in rows.get(reference, {}):
    return None
  ratios = paired_ratios(rows[name]["seeds"], rows[reference]["seeds"])
  if not ratios:
    return None
  ratio, half = stats.mean_ci(ratios)
  return {"name": name, "reference": reference, "ratio": ratio, "half": half,
          "p": stats.t_test(ratios, 1.0)}


def multipliers(suite: Suite, rows: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """For each row whose multipliers were searched: the table found, its
  comparisons on the confirmation seeds (tuned against uniform, each
  report's table against uniform, tuned against each table), and the
  verdict on "tuned per-component multipliers beat uniform ones" (Holm over
  the rows searched)."""
  found = {}
  for name, optimizer in suite.tuning.multipliers.items():
    tables = suite.tuning.tables.get(name, {})
    uniform = next((f"{name} + {t} multipliers" for t, scales in tables.items()
                    if set(scales.values()) == {1.0}), name)
    tuned = f"{name} + tuned multipliers"
    others = [f"{name} + {t} multipliers" for t in tables if f"{name} + {t} multipliers" != uniform]
    comparisons = [c for c in (_compare(rows, tuned, uniform),
                               *(_compare(rows, o, uniform) for o in others),
                               *(_compare(rows, tuned, o) for o in others)) if c]
    search = rows[tuned]["search"] if tuned in rows else None
    table = ({label: search.point[label] for label in suite.tuning.multiplier_labels}
             if search is not None and search.done else None)
    found[name] = {"optimizer": optimizer, "uniform": uniform, "tuned": tuned,
                   "table": table, "comparisons": comparisons}
  adjusted = stats.holm({name: f["comparisons"][0]["p"] for name, f in found.items()
                         if f["comparisons"] and f["comparisons"][0]["name"] == f["tuned"]})
  for name, f in found.items():
    p = adjusted.get(name, math.nan)
    first = f["comparisons"][0] if f["comparisons"] else None
    f["p_holm"] = p
    f["verdict"] = ("not measured" if first is None or first["name"] != f["tuned"]
                    or not math.isfinite(p) else
                    "inconclusive" if p >= ALPHA else
                    "confirmed" if first["ratio"] < 1 else "refuted")
  return found


def scaling(suite: Suite, rows: Mapping[str, dict[str, Any]], replicates: int
            ) -> dict[str, Any] | None:
  """The baseline's losses at every budget (1x: its row; each other: its
  learning rate searched), both forms of its data scaling, and every row's
  loss as the data the baseline needs to reach it; None until every budget
  has two seeds."""
  multiples = suite.tuning.data_multiples
  names = {1.0: BASELINE, **{m: f"{BASELINE} at {m:g}x" for m in multiples}}
  if not multiples or any(len(rows.get(n, {}).get("seeds", {})) < 2 for n in names.values()):
    return None
  budgets = {m: np.array([final(r) for r in rows[n]["seeds"].values()])
             for m, n in sorted(names.items())}
  losses = {name: np.array([final(r) for r in row["seeds"].values()])
            for name, row in rows.items()
            if "seeds" in row and row["target"].data_multiple == 1.0}
  return {"budgets": {m: {"name": n, "lr": rows[n]["point"]["lr"],
                          "seeds": sorted(rows[n]["seeds"]), "mean": float(budgets[m].mean())}
                      for m, n in sorted(names.items())},
          **stats.scaling_forms(budgets, losses, replicates)}
