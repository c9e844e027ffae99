"""The statistics of the benchmark's results, as pure functions of numbers.

Confidence intervals and t-tests over seeds, Holm's correction, the seeds an
equivalence test needs, the probability that a learning-rate choice flips,
and the power-law fit of data scaling with its bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
import statistics
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
  """Mean and the half-width of its 95% confidence interval (Student's t)."""
  mean = statistics.fmean(values)
  if len(values) < 2:
    return mean, math.nan
  t = scipy.stats.t.ppf(0.975, len(values) - 1)
  return mean, float(t) * statistics.stdev(values) / math.sqrt(len(values))


def t_test(values: Sequence[float], null: float, alternative: str = "two-sided") -> float:
  """Student's one-sample t-test's p-value; NaN for fewer than 2 values or
  a non-finite one."""
  if len(values) < 2 or not all(map(math.isfinite, values)):
    return math.nan
  return float(scipy.stats.ttest_1samp(values, null, alternative=alternative).pvalue)


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
  """Holm's step-down adjustment of a family of p-values (NaN ones are left
  out of the family and of the result)."""
  finite = sorted((p, key) for key, p in p_values.items() if math.isfinite(p))
  adjusted, running = {}, 0.0
  for i, (p, key) in enumerate(finite):
    running = max(running, min(1.0, (len(finite) - i) * p))
    adjusted[key] = running
  return adjusted


def equivalence_seeds(sd: float, margin: float, alpha: float, power: float) -> int | None:
  """The seeds a TOST of `+- margin` at level `alpha` needs to confirm
  equivalence with probability `power` when the true ratio is exactly 1 and
  the per-seed ratios spread by `sd`."""
  if not math.isfinite(sd) or sd <= 0:
    return None
  n = 2
  while (scipy.stats.t.ppf(1 - alpha, n - 1) + scipy.stats.t.ppf(1 - (1 - power) / 2, n - 1)
         ) ** 2 * sd ** 2 / margin ** 2 > n:
    n += 1
  return n


def choice_flip_probability(candidates: Mapping[float, Sequence[float]], chosen: float,
                            draws: int) -> float:
  """The probability that another point of the finer grid would have been
  chosen, from the seeds: each point's mean loss is drawn around the
  measured one with the seed-to-seed noise of a two-way (learning rate x
  seed) fit, whose seed effects cancel in the choice. NaN without two
  seeds; points with a diverged seed cannot be chosen and are left out."""
  points = {lr: v for lr, v in candidates.items() if all(map(math.isfinite, v))}
  seeds = {len(v) for v in points.values()}
  if chosen not in points or len(points) < 2 or len(seeds) != 1 or min(seeds) < 2:
    return math.nan
  lrs = sorted(points)
  table = np.array([points[lr] for lr in lrs])
  residual = (table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True)
              + table.mean())
  dof = (table.shape[0] - 1) * (table.shape[1] - 1)
  noise = math.sqrt((residual ** 2).sum() / dof / table.shape[1])
  rng = np.random.default_rng(0)
  simulated = table.mean(1) + noise * rng.standard_normal((draws, len(lrs)))
  return float(np.mean(simulated.argmin(1) != lrs.index(chosen)))


def power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
  """Least-squares `(a, b, c)` of `y = a * x^-b + c`.

  For a fixed `b` the model is linear in `a` and `c`; the sum of squares is
  minimised over `b` on a grid, then refined between the grid's neighbours.
  """
  def linear(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = x[None, :] ** -np.atleast_1d(b)[:, None]
    du, dy = u - u.mean(1, keepdims=True), y - y.mean()
    a = (du * dy).sum(1) / (du * du).sum(1)
    c = y.mean() - a * u.mean(1)
    return a, c, ((y - a[:, None] * u - c[:, None]) ** 2).sum(1)

  grid = np.geomspace(1e-3, 4.0, 120)
  i = int(np.argmin(linear(grid)[2]))
  b = scipy.optimize.minimize_scalar(
      lambda b: linear(b)[2][0], method="bounded",
      bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])).x
  a, c, _ = linear(b)
  return float(a[0]), float(b), float(c[0])


def data_multiple(loss: float, fit: tuple[float, float, float]) -> float:
  """The data (a multiple of the suite's budget) at which the fitted
  baseline reaches `loss`: infinite at or below the fit's floor `c`."""
  a, b, c = fit
  if a <= 0:
    return math.nan
  return (a / (loss - c)) ** (1 / b) if loss > c else math.inf


def data_multiples(budgets: Mapping[float, np.ndarray], losses: Mapping[str, np.ndarray],
                   replicates: int) -> tuple[tuple[float, float, float],
                                             dict[str, tuple[float, float, float]]]:
  """The power law fitted to the baseline's losses at each budget (every
  seed a point), and each entry of `losses` as the data multiple at which
  the fit reaches its mean, with the 2.5-97.5 percentiles of `replicates`
  bootstrap replicates that resample the seeds of every budget (refitting)
  and of the entry; a fixed seed keeps the result a function of the losses."""
  x = np.repeat(list(budgets), [len(v) for v in budgets.values()]).astype(float)
  fit = power_law(x, np.concatenate(list(budgets.values())))
  rng = np.random.default_rng(0)
  draws = {name: [] for name in losses}
  for _ in range(replicates):
    fit_star = power_law(x, np.concatenate([rng.choice(v, len(v)) for v in budgets.values()]))
    for name, values in losses.items():
      draws[name].append(data_multiple(rng.choice(values, len(values)).mean(), fit_star))
  multiples = {}
  for name, values in losses.items():
    lo, hi = np.percentile(draws[name], [2.5, 97.5]) if len(values) > 1 else (math.nan,) * 2
    multiples[name] = (data_multiple(values.mean(), fit), float(lo), float(hi))
  return fit, multiples


def log_linear_multiple(loss: float, means: Mapping[float, float]) -> float:
  """The data multiple at which the baseline reaches `loss`, interpolated
  linearly in log(D) between the two neighbouring budgets whose mean losses
  bracket it (a form that assumes no shape of the curve); NaN outside the
  budgets' losses."""
  budgets = sorted(means)
  for low, high in zip(budgets, budgets[1:]):
    y0, y1 = means[low], means[high]
    if y0 != y1 and min(y0, y1) <= loss <= max(y0, y1):
      t = (loss - y0) / (y1 - y0)
      return math.exp(math.log(low) + t * (math.log(high) - math.log(low)))
  return math.nan


def scaling_forms(budgets: Mapping[float, np.ndarray], losses: Mapping[str, np.ndarray],
                  replicates: int) -> dict[str, Any]:
  """The baseline's data scaling under two forms, with their uncertainty
  from `replicates` bootstrap replicates that resample the seeds of every
  budget and of each entry of `losses`:

  - "power_law": `L(D) = a D^-b + c` (every seed a point): the fit, its
    parameters' 2.5-97.5 percentiles, and each entry's data multiple;
  - "log_linear": each entry's multiple interpolated between the budgets'
    mean losses (NaN outside them);
  - "combined": each entry's multiple by the power law, with an interval
    from the lowest to the highest percentile of either form: the seeds'
    and the model form's uncertainty together.
  """
  x = np.repeat(list(budgets), [len(v) for v in budgets.values()]).astype(float)
  fit = power_law(x, np.concatenate(list(budgets.values())))
  means = lambda samples: {m: float(np.mean(v)) for m, v in samples.items()}
  rng = np.random.default_rng(0)
  params, draws = [], {form: {n: [] for n in losses} for form in ("power_law", "log_linear")}
  for _ in range(replicates):
    resampled = {m: rng.choice(v, len(v)) for m, v in budgets.items()}
    fit_star = power_law(x, np.concatenate(list(resampled.values())))
    params.append(fit_star)
    for name, values in losses.items():
      loss = rng.choice(values, len(values)).mean()
      draws["power_law"][name].append(data_multiple(loss, fit_star))
      draws["log_linear"][name].append(log_linear_multiple(loss, means(resampled)))
  percentiles = lambda v: tuple(float(p) for p in np.nanpercentile(v, [2.5, 97.5]))
  multiples = {"power_law": {}, "log_linear": {}, "combined": {}}
  for name, values in losses.items():
    point = {"power_law": data_multiple(values.mean(), fit),
             "log_linear": log_linear_multiple(values.mean(), means(budgets))}
    for form in point:
      finite = [d for d in draws[form][name] if not math.isnan(d)]
      multiples[form][name] = (point[form], *(percentiles(finite) if finite
                                               else (math.nan, math.nan)))
    lows = [multiples[f][name][1] for f in point if math.isfinite(multiples[f][name][1])]
    highs = [multiples[f][name][2] for f in point if not math.isnan(multiples[f][name][2])]
    multiples["combined"][name] = (point["power_law"], min(lows, default=math.nan),
                                   max(highs, default=math.nan))
  return {"fit": fit, "fit_intervals": [percentiles([p[i] for p in params]) for i in range(3)],
          "multiples": multiples}
