"""The benchmark's statistics and verdicts, on numbers whose answers are known."""

import dataclasses
import math
import statistics

import numpy as np
import pytest
import scipy.stats

from train.benchmark import analysis, methods, stats

def test_the_power_law_fit_and_the_data_multiples():
  x = np.repeat([0.25, 0.5, 1.0, 2.0, 4.0], 3)
  y = 0.8 * x ** -0.4 + 1.5 + np.tile([-1e-3, 0.0, 1e-3], 5)
  a, b, c = stats.power_law(x, y)
  assert (a, b, c) == pytest.approx((0.8, 0.4, 1.5), rel=2e-2)
  assert stats.data_multiple(0.8 * 2 ** -0.4 + 1.5, (0.8, 0.4, 1.5)) == pytest.approx(2.0)
  assert stats.data_multiple(1.4, (0.8, 0.4, 1.5)) == math.inf  # below the floor
  assert math.isnan(stats.data_multiple(2.0, (-0.1, 0.4, 1.5)))  # loss rising with data

def test_claim_tests():
  better = methods.Claim("x", "better", 4.0)
  worse = dataclasses.replace(better, kind="worse")
  near = dataclasses.replace(better, kind="near")
  spread = [-0.01, 0.0, 0.01]  # sd 0.01: a t statistic of (mean - null) / 0.00577
  below = [0.95 + d for d in spread]
  p, verdict = analysis.claim_test(better, below)
  assert verdict == "confirmed"
  assert p == pytest.approx(scipy.stats.ttest_1samp(below, 1.0).pvalue)
  assert analysis.claim_test(worse, below)[1] == "refuted"
  # near: inside the band, TOST (the larger one-sided p); outside, the
  # one-sided test beyond the nearer edge.
  at_one = [1.0 + d / 10 for d in spread]
  p, verdict = analysis.claim_test(near, at_one)
  assert verdict == "confirmed"
  assert p == pytest.approx(max(scipy.stats.ttest_1samp(at_one, 0.99, alternative="greater").pvalue,
                                scipy.stats.ttest_1samp(at_one, 1.01, alternative="less").pvalue))
  far = [1.05 + d for d in spread]
  p, verdict = analysis.claim_test(near, far)
  assert verdict == "refuted"
  assert p == pytest.approx(scipy.stats.ttest_1samp(far, 1.01, alternative="greater").pvalue)

def test_holm_adjusts_in_steps_and_keeps_the_order():
  # m = 4: 4 * 0.01, 3 * 0.02, max(that, 2 * 0.03), min(1, max(that, 0.6)).
  adjusted = stats.holm({"a": 0.02, "b": 0.01, "c": 0.6, "d": 0.03, "e": math.nan})
  assert adjusted == pytest.approx({"b": 0.04, "a": 0.06, "d": 0.06, "c": 0.6})
  assert stats.holm({"a": 0.5, "b": 0.4}) == pytest.approx({"b": 0.8, "a": 0.8})

def test_judge_corrects_the_claims_against_adamw_and_not_the_best_one():
  """Eight seeds per method whose paired ratios to AdamW are known; LAMO's
  claim passes alone (p < 0.05) and fails once corrected."""
  offsets = [-0.02, -0.01, 0.0, 0.01, 0.02, -0.015, 0.015, 0.0]
  ratio_of = {"ladm": 0.98, "lamvs": 1.0, "aovs": 1.05, "lamo": 1.014, "malao": 1.2,
              "layer_adam": 1.0, "stable_adamw": 1.004, "sophia": 1.03, "muon": 0.9}
  rows = {"adamw": {"seeds": {s: {"final_val_loss": 2.0} for s in range(8)}}}
  for name, ratio in ratio_of.items():
    scale = 0.2 if name in ("layer_adam", "stable_adamw") else 1.0
    rows[name] = {"seeds": {s: {"final_val_loss": 2.0 * (ratio + scale * o)}
                            for s, o in enumerate(offsets)}}
  for name, row in rows.items():
    row["ratio_to"] = {other: analysis.paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name}
  judged = analysis.judge(rows)
  family = {m: j.p for m, j in judged.items() if m != "muon"}
  assert {m: j.p_holm for m, j in judged.items() if m != "muon"} == pytest.approx(
      stats.holm(family))
  assert judged["ladm"].verdict == "confirmed"
  assert judged["malao"].verdict == "confirmed" and judged["aovs"].verdict == "confirmed"
  assert judged["lamvs"].verdict == "inconclusive"  # ratio exactly 1: p = 1
  assert judged["lamo"].uncorrected == "confirmed" and judged["lamo"].p < 0.05
  assert judged["lamo"].verdict == "inconclusive" and judged["lamo"].p_holm >= 0.05
  assert judged["layer_adam"].verdict == "confirmed"  # within 1 +- 0.01, tightly
  assert judged["layer_adam"].seeds_needed == stats.equivalence_seeds(
      statistics.stdev(0.2 * o for o in offsets), 0.01, 0.05, 0.8)
  assert judged["ladm"].seeds_needed is None
  # Muon's "best": every other method's ratio to it lies above 1.
  assert judged["muon"].verdict == "confirmed" and math.isnan(judged["muon"].p)
  rows["ladm"]["seeds"] = {s: {"final_val_loss": 2.0 * (0.8 + o)} for s, o in enumerate(offsets)}
  for name, row in rows.items():
    row["ratio_to"] = {other: analysis.paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name}
  assert analysis.judge(rows)["muon"].verdict == "refuted"

def test_equivalence_seeds_solve_the_tost_power_equation():
  n = stats.equivalence_seeds(0.048, 0.01, 0.05, 0.8)
  t = lambda n: (scipy.stats.t.ppf(0.95, n - 1) + scipy.stats.t.ppf(0.9, n - 1)) ** 2
  assert t(n) * 0.048 ** 2 / 0.01 ** 2 <= n
  assert t(n - 1) * 0.048 ** 2 / 0.01 ** 2 > n - 1
  assert 150 < n < 250  # about (1.645 + 1.282)^2 * 4.8^2 = 197
  assert stats.equivalence_seeds(0.0, 0.01, 0.05, 0.8) is None

def test_the_choice_flip_probability():
  clear = {1.0: [2.0, 2.1, 2.05], 2.0: [1.5, 1.6, 1.55], 4.0: [2.2, 2.3, 2.25]}
  assert stats.choice_flip_probability(clear, 2.0, 20000) == 0.0  # no noise beyond the seed's
  noisy = {1.0: [2.0, 2.2, 1.9], 2.0: [2.0, 2.1, 1.95], 4.0: [3.0, 3.1, 3.2]}
  flip = stats.choice_flip_probability(noisy, 2.0, 20000)
  assert 0.25 < flip < 0.75  # two points within their noise of each other
  assert stats.choice_flip_probability(noisy, 2.0, 20000) == flip  # a fixed seed
  assert math.isnan(stats.choice_flip_probability({1.0: [2.0], 2.0: [1.0]}, 2.0, 20000))
  diverged = {**noisy, 8.0: [math.nan, 2.0, 2.0]}
  assert stats.choice_flip_probability(diverged, 2.0, 20000) == flip


def test_the_scaling_forms_hold_a_known_truth():
  """Losses drawn around `0.5 D^-0.3 + 2` at six budgets, five seeds each:
  the power law's parameter intervals hold the truth, a loss the truth
  reaches at 1.5x lies inside both forms' intervals, and the combined
  interval spans both."""
  truth = lambda d: 0.5 * d ** -0.3 + 2.0
  rng = np.random.default_rng(0)
  budgets = {d: truth(d) + 0.004 * rng.standard_normal(5) for d in (0.25, 0.5, 1, 2, 4, 8)}
  target = {"x": truth(1.5) + 0.004 * rng.standard_normal(8)}
  forms = stats.scaling_forms(budgets, target, 400)
  for (low, high), true in zip(forms["fit_intervals"], (0.5, 0.3, 2.0)):
    assert low < true < high
  multiples = forms["multiples"]
  for form in ("power_law", "log_linear"):
    value, low, high = multiples[form]["x"]
    assert low < 1.5 < high and value == pytest.approx(1.5, rel=0.25)
  _, low, high = multiples["combined"]["x"]
  assert low == min(multiples[f]["x"][1] for f in ("power_law", "log_linear"))
  assert high == max(multiples[f]["x"][2] for f in ("power_law", "log_linear"))
  # Outside the budgets' losses, interpolation says nothing.
  assert math.isnan(stats.log_linear_multiple(1.0, {1: 3.0, 2: 2.9}))
  assert stats.log_linear_multiple(2.95, {1: 3.0, 2: 2.9}) == pytest.approx(2 ** 0.5)
