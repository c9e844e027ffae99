"""The benchmark's report: `<suite>.json` (every run) and `<suite>.md` (tables,
verdicts on the reports' claims, ablations, the baseline's data scaling)
with three plots."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import statistics
from typing import Any

import jax
import numpy as np
import scipy.optimize
import scipy.stats

import layeropt_jax
from train import data, files, model, provenance
from train.benchmark.methods import REPORTED_ADAMW, Claim, claims
from train.benchmark.plan import Loss, LrChoice, Plan
from train.benchmark.runner import finished, reproduce_command
from train.benchmark.suites import BASELINE, Suite, run_hash

NEAR = 0.01
# The familywise error rate of the verdicts on the claims against AdamW.
ALPHA = 0.05
# The power at which the seeds a "near" claim needs are counted.
POWER = 0.8
VERDICT_HEADER = ("| claim | reported ratio | measured ratio | p | p (Holm) | verdict "
                  "| reported ratio inside our CI | AdamW data to match "
                  "| seeds a 1% equivalence test needs |")
# Draws of the simulation that gives the probability a learning-rate choice flips.
FLIP_DRAWS = 20000
# Bootstrap replicates of the data-scaling fit; a fixed seed keeps the report
# a function of the runs.
BOOTSTRAP = 1000


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  """What the report keeps of a finished run's `metrics.jsonl`."""
  steps = [r for r in records if "event" not in r]
  times = [r["step_time_s"] for r in steps if "step_time_s" in r]
  return {
      "final_val_loss": records[-1]["val_loss"],
      "tokens": records[-1]["tokens"],
      "val_curve": [[r["step"], r["val_loss"]] for r in steps if "val_loss" in r],
      "train_curve": [[r["step"], r["train_loss"]] for r in steps],
      # Other load on the machine only ever slows a step: the fastest logged
      # interval is the run's own speed.
      "step_time_s": min(times) if times else None,
      "nonfinite_steps": steps[-1].get("nonfinite_steps", 0) if steps else 0,
  }


def collect(suite: Suite, runs_dir: pathlib.Path) -> dict[str, Any]:
  """Every finished run of the suite found in `runs_dir`, by variant: its
  learning rate, seed and data multiple (of the suite's token budget)."""
  multiples = {1.0, *suite.data_multiples}
  variants = {}
  for variant in suite.methods + suite.ablations:
    runs = []
    root = runs_dir / suite.name
    for run_json in sorted(root.glob("*/run.json")):
      saved = json.loads(run_json.read_text())
      multiple = saved["steps"] / suite.train["steps"]
      if (saved["optimizer"] != variant.optimizer or saved["opt"] != variant.opt
          or multiple not in multiples):
        continue
      config = suite.config(variant, saved["lr"], saved["seed"], runs_dir, multiple)
      records = finished(config)
      if config.workdir != str(run_json.parent) or records is None:
        continue
      runs.append({"lr": config.lr, "seed": config.seed, "data_multiple": multiple,
                   "hash": run_hash(config), "command": reproduce_command(config),
                   **summarize(records)})
    variants[variant.name] = {
        "optimizer": variant.optimizer, "opt": variant.opt, "parent": variant.parent,
        "description": variant.description,
        "runs": sorted(runs, key=lambda r: (r["data_multiple"], r["seed"], r["lr"]))}
  return variants


def loss_of(variants: dict[str, Any]) -> Loss:
  """The final loss of a collected run by its configuration (`plan.Loss`)."""
  by_hash = {r["hash"]: r["final_val_loss"] for v in variants.values() for r in v["runs"]}
  return lambda config: by_hash.get(run_hash(config))


def mean_ci(values: list[float]) -> tuple[float, float]:
  """Mean and the half-width of its 95% confidence interval (Student's t)."""
  mean = statistics.fmean(values)
  if len(values) < 2:
    return mean, math.nan
  t = scipy.stats.t.ppf(0.975, len(values) - 1)
  return mean, float(t) * statistics.stdev(values) / math.sqrt(len(values))


def _loss(run: dict[str, Any]) -> float:
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
  return [_loss(runs[s]) / _loss(baseline[s]) for s in sorted(set(runs) & set(baseline))]


def paired_ratio(runs: dict[int, dict], baseline: dict[int, dict]) -> tuple[float, float, int]:
  """Mean and 95% CI half-width of `paired_ratios`, and their count."""
  ratios = paired_ratios(runs, baseline)
  mean, half = mean_ci(ratios) if ratios else (math.nan, math.nan)
  return mean, half, len(ratios)


def _t_test(values: list[float], null: float, alternative: str = "two-sided") -> float:
  """Student's one-sample t-test's p-value; NaN for fewer than 2 values."""
  if len(values) < 2 or not all(map(math.isfinite, values)):
    return math.nan
  return float(scipy.stats.ttest_1samp(values, null, alternative=alternative).pvalue)


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
    return _t_test(ratios, 1.0), "confirmed" if holds else "refuted"
  if abs(mean - 1) <= NEAR:
    return max(_t_test(ratios, 1 - NEAR, "greater"),
               _t_test(ratios, 1 + NEAR, "less")), "confirmed"
  above = mean > 1
  return _t_test(ratios, 1 + NEAR if above else 1 - NEAR,
                 "greater" if above else "less"), "refuted"


def holm(p_values: dict[str, float]) -> dict[str, float]:
  """Holm's step-down adjustment of a family of p-values (NaN ones are left
  out of the family and of the result)."""
  finite = sorted((p, key) for key, p in p_values.items() if math.isfinite(p))
  adjusted, running = {}, 0.0
  for i, (p, key) in enumerate(finite):
    running = max(running, min(1.0, (len(finite) - i) * p))
    adjusted[key] = running
  return adjusted


def equivalence_seeds(sd: float, margin: float = NEAR, alpha: float = ALPHA,
                      power: float = POWER) -> int | None:
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
  adjusted = holm({method: p for method, (p, _) in tests.items()})
  judged = {}
  for method, (claim, ratios) in measured.items():
    mean, half = mean_ci(ratios) if ratios else (math.nan, math.nan)
    if claim.kind == "best":
      verdict = best_verdict(method, rows)
      judged[method] = Judgement(mean, half, math.nan, math.nan, verdict, verdict, None)
      continue
    p, significant = tests[method]
    on = lambda p: ("not measured" if not math.isfinite(p) else
                    significant if p < ALPHA else "inconclusive")
    p_holm = adjusted.get(method, math.nan)
    sd = statistics.stdev(ratios) if len(ratios) > 1 else math.nan
    judged[method] = Judgement(mean, half, p, p_holm, on(p_holm), on(p),
                               equivalence_seeds(sd) if claim.kind == "near" else None)
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
  p = {name: _t_test(r, 1.0) for name, r in others.items()}
  mean = {name: statistics.fmean(r) for name, r in others.items()}
  if all(mean[n] > 1 and p[n] < ALPHA for n in others):
    return "confirmed"
  adjusted = holm(p)
  if any(mean[n] < 1 and adjusted.get(n, 1.0) < ALPHA for n in others):
    return "refuted"
  return "inconclusive"


def choice_flip_probability(candidates: dict[float, list[float]], chosen: float,
                            draws: int = FLIP_DRAWS) -> float:
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


def late_train_loss(run: dict[str, Any], fraction: float = 0.1) -> float:
  """The mean training loss over the last `fraction` of a run's steps."""
  last = run["train_curve"][-1][0]
  return statistics.fmean(loss for step, loss in run["train_curve"]
                          if step > (1 - fraction) * last)


def state_bytes_per_param(config_name: str, optimizer: str, opt: dict[str, Any]) -> float:
  return _state_bytes_per_param(config_name, optimizer, json.dumps(opt, sort_keys=True))


# Reports ask again for the same few: a hashable key (`opt` holds dicts).
@functools.cache
def _state_bytes_per_param(config_name: str, optimizer: str, opt_json: str) -> float:
  params = model.param_shapes(config_name)
  state = jax.eval_shape(
      layeropt_jax.get_optimizer(optimizer, 1e-3, **json.loads(opt_json)).init, params)
  size = lambda tree: sum(math.prod(x.shape) * x.dtype.itemsize
                          for x in jax.tree.leaves(tree))
  return size(state) / (size(params) / 4)


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
  rows = _rows(variants, choices, suite.train["config"])
  return Findings(rows, data_scaling(suite, variants, rows),
                  sum(loss(c) is None for c in needed), len(open_choices))


def _rows(variants: dict[str, Any], choices: dict[str, LrChoice],
          config_name: str) -> dict[str, dict[str, Any]]:
  """One row per method whose learning rate is chosen, with its seeds there,
  and per ablation whose parent's is, once a seed has finished there."""
  rows: dict[str, dict[str, Any]] = {}
  for name, v in variants.items():
    choice = choices.get(name) or choices[v["parent"]]
    if choice.lr is None:
      continue
    seeds = at_lr(v["runs"], choice.lr)
    if not seeds:
      continue
    losses = [_loss(r) for r in seeds.values()]
    mean, half = mean_ci(losses)
    grid = sorted((r["lr"], _loss(r)) for r in v["runs"]
                  if r["seed"] == 0 and r["data_multiple"] == 1.0)
    candidates = choice.candidates if name in choices else {}
    rows[name] = {"lr": choice.lr, "seeds": seeds, "mean": mean, "ci": half, "grid": grid,
                  "candidates": candidates,
                  "inside_grid": bool(candidates) and min(candidates) < choice.lr < max(candidates),
                  "flip": choice_flip_probability(candidates, choice.lr),
                  "weight_decay": {**layeropt_jax.hyperparameters(v["optimizer"]),
                                   **v["opt"]}.get("weight_decay", 0.0),
                  "val_minus_train": statistics.fmean(
                      r["final_val_loss"] - late_train_loss(r) for r in seeds.values()),
                  "state_bytes_per_param": state_bytes_per_param(
                      config_name, v["optimizer"], v["opt"])}
  for name, row in rows.items():
    row["ratio_to"] = {other: paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name and other in choices}
  return rows


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


def data_scaling(suite: Suite, variants: dict[str, Any],
                 rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
  """The baseline's final losses over `suite.data_multiples`, those from
  `suite.data_fit_from` fitted by `L(D) = a * D^-b + c` (D a multiple of the
  budget, every seed a point), and each row's loss as the data multiple the
  baseline needs to reach it, with a 95% interval from a bootstrap over the
  seeds of both (and so of the fit); None until every budget has its seeds."""
  baseline = rows.get(BASELINE)
  if not suite.data_multiples or baseline is None:
    return None
  points = {m: [_loss(r) for r in at_lr(variants[BASELINE]["runs"], baseline["lr"], m).values()]
            for m in suite.data_multiples}
  if any(len(v) < suite.data_multiple_seeds for v in points.values()):
    return None
  fitted = {m: np.array(points[m]) for m in suite.fitted_multiples()}
  x = np.repeat(list(fitted), [len(v) for v in fitted.values()]).astype(float)
  fit = power_law(x, np.concatenate(list(fitted.values())))
  losses = {name: np.array([_loss(r) for r in row["seeds"].values()])
            for name, row in rows.items()}
  rng = np.random.default_rng(0)
  draws = {name: [] for name in rows}
  for _ in range(BOOTSTRAP):
    y_star = np.concatenate([rng.choice(v, len(v)) for v in fitted.values()])
    fit_star = power_law(x, y_star)
    for name, values in losses.items():
      draws[name].append(data_multiple(rng.choice(values, len(values)).mean(), fit_star))
  multiples = {}
  for name, values in losses.items():
    lo, hi = np.percentile(draws[name], [2.5, 97.5]) if len(values) > 1 else (math.nan,) * 2
    multiples[name] = (data_multiple(values.mean(), fit), float(lo), float(hi))
  tokens = suite.train["steps"] * suite.train["batch_size"] * suite.train["seq_len"]
  return {"fit": fit, "points": points, "multiples": multiples, "tokens": tokens,
          "fitted_range": (min(fitted), max(fitted))}


def _seeds(n: int) -> str:
  return "seed 0" if n == 1 else f"seeds 0-{n - 1}"


def _multiple(scaling: dict[str, Any] | None, name: str) -> str:
  """A row's data multiple and its interval, `-` where there is none."""
  if scaling is None or name not in scaling["multiples"]:
    return "-"
  value, lo, hi = scaling["multiples"][name]
  low, high = scaling["fitted_range"]
  beyond = "" if low <= value <= high else " (extrapolated)"
  show = lambda v: "inf" if v == math.inf else _fmt(v, ".2f")
  return f"{show(value)}x [{show(lo)}, {show(hi)}]{beyond}"


def _fmt(x: float | None, spec: str = ".3f") -> str:
  return "-" if x is None or not math.isfinite(x) else format(x, spec)


def validation_set(suite: Suite, placement: dict[str, Any]) -> dict[str, Any]:
  """What the suite's validation set holds of its dataset (`data.coverage`)."""
  config = suite.config(suite.methods[0], suite.methods[0].center_lr, 0, pathlib.Path(),
                        **placement)
  tokenizer, windows, _ = data.prepare(
      config.data, config.seq_len + 1, config.model_config.vocab_size, config.cache_dir,
      config.data_dir, config.tokenizer, config.data_workers)
  held_out = data.coverage(windows["validation"], config.eval_batches * config.batch_size,
                           tokenizer.token_to_id(data.EOS))
  return {"dataset": config.data, "version": str(data.BUILDERS[config.data].VERSION),
          **held_out}


def previous_verdicts(path: pathlib.Path) -> dict[str, Any] | None:
  """The verdicts and learning rates of a superseded report of the suite,
  read from its markdown tables; None if there is none."""
  if not path.is_file():
    return None
  claims_seen, lrs, table = {}, {}, None
  for line in path.read_text().splitlines():
    if line.startswith("| claim |"):
      table = "claims"
    elif line.startswith("| method | LR |"):
      table = "methods"
    elif not line.startswith("|"):
      table = None
    elif table and not line.startswith("|---"):
      cells = [c.strip() for c in line.strip("|").split("|")]
      if table == "claims":
        verdict = next(c.strip("*") for c in cells if c.startswith("**"))
        claims_seen[cells[0]] = {"ratio": cells[2], "verdict": verdict}
      else:
        lrs[cells[0]] = float(cells[1])
  return {"report": path.name, "claims": claims_seen, "lrs": lrs}


def _validation_paragraph(validation: dict[str, Any] | None,
                          rows: dict[str, dict[str, Any]]) -> list[str]:
  if validation is None:
    return []
  gaps = [row["val_minus_train"] for row in rows.values()
          if math.isfinite(row["val_minus_train"])]
  text = (f"**Validation set**: the same {validation['windows']} windows "
          f"({validation['tokens']:,} tokens) for every run, spread evenly over the "
          f"whole validation split of `{validation['dataset']}` {validation['version']} "
          f"({validation['split_documents']} files, {validation['split_tokens']:,} "
          f"tokens, held out by a hash of their path); they hold tokens of "
          f"{validation['documents']} of its {validation['split_documents']} files.")
  if gaps:
    low, high = f"{min(gaps):+.3f}", f"{max(gaps):+.3f}"
    span = low if low == high else f"{low} to {high}"
    text += (f" At their chosen learning rates, every row's final validation loss lies "
             f"{span} nats from its mean training loss over "
             "the last 10% of steps (seed means): the held-out files against batches "
             "of a train split seen more than once.")
  return [text, ""]


def _weight_decay_paragraph(rows: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
  applied = {name: rows[name]["lr"] * rows[name]["weight_decay"] for name in methods}
  if not applied:
    return []
  low, high = min(applied, key=applied.get), max(applied, key=applied.get)
  spread = (f"is {applied[low]:.2g} for {', '.join(applied)}"
            if applied[low] == applied[high] else
            f"differs {applied[high] / applied[low]:.0f}x between {low} "
            f"({applied[low]:.2g}) and {high} ({applied[high]:.2g})")
  return ["", "**Weight decay** is each method's default 0.1, decoupled, on every tensor "
          "with two or more dimensions (norms' scales excluded) and scaled by the "
          "learning rate, as the methods define it: the decay applied at the peak "
          f"{spread}. The tied embedding "
          "is decayed too: it is also the output head, whose decay GPT-style trainers "
          "such as nanoGPT keep, and the rule is the same for every method. Decay is "
          "not tuned per method (Wen et al., 2025, tune it with the learning rate): a "
          "method whose best decay differs from 0.1 at its learning rate is "
          "disadvantaged by an amount this suite does not measure."]


def _what_changed(previous: dict[str, Any] | None, judged: dict[str, Judgement],
                  rows: dict[str, dict[str, Any]]) -> list[str]:
  """The superseded report's verdicts beside these, and why they differ."""
  if not previous or not judged:
    return []
  lines = ["", "### What changed", "",
           f"The verdicts of the suite's first protocol ({previous['report']}: the first "
           "512 windows of a 5% held-out split, the learning rate chosen between the two "
           "best points of the 2x grid, no correction for the number of claims) beside "
           "these.", "",
           "| claim | previous ratio | previous verdict | ratio now | verdict now | why |",
           "|---|---|---|---|---|---|"]
  for method, claim in claims():
    before, now = previous["claims"].get(claim.text), judged.get(method)
    if before is None or now is None:
      continue
    why = []
    if before["verdict"] == now.verdict:
      why.append("same verdict")
    elif now.uncorrected == before["verdict"]:
      why.append(f"Holm's correction: p = {now.p:.3g} is below {ALPHA:g}, "
                 f"the adjusted {now.p_holm:.3g} is not")
    else:
      why.append("the measured ratio moved (validation set, learning rate, seeds)")
    lr_before = previous["lrs"].get(method)
    if lr_before is not None and not math.isclose(lr_before, rows[method]["lr"], rel_tol=1e-3):
      why.append(f"LR {lr_before:.3g} -> {rows[method]['lr']:.3g}")
    lines.append(f"| {claim.text} | {before['ratio']} | {before['verdict']} | "
                 f"{now.ratio:.4f} +- {_fmt(now.half, '.4f')} | {now.verdict} | "
                 f"{'; '.join(why)} |")
  return lines


def markdown(suite: Suite, findings: Findings, report: dict[str, Any]) -> str:
  rows, scaling = findings.rows, findings.scaling
  methods = [m.name for m in suite.methods if m.name in rows]
  adamw = rows.get(BASELINE)
  step = suite.grid_factor ** (1 / suite.lr_refine)
  lines = [f"# Benchmark: suite `{suite.name}`", "",
           f"{suite.description}. Learning rates: a grid of {suite.grid_points} points "
           f"spaced by {suite.grid_factor:g}x per method (seed 0), extended past an edge "
           f"while the best point lies on it; then a finer grid in steps of {step:.3g}x "
           f"from one step below the {suite.lr_choice_points} best grid points to one "
           f"step above them, every point at {_seeds(suite.lr_choice_seeds)}, extended "
           "by a step while the lowest mean lies on its edge; the lowest mean is chosen. "
           f"Then {suite.seeds} seeds at each method's chosen learning rate (a seed fixes "
           "the initialisation and the data order, so methods are compared seed by "
           "seed).", "",
           f"Command: `{report['command']}` (resumable, and `--worker I/N` shares it over "
           f"machines; see `{suite.name}.json` for every run and the command that "
           "reproduces it alone).  ",
           # A resumed or shared suite's runs ran on whichever machines its
           # workers had; only the report's own writing is recorded here.
           f"Report written at revision `{report['git_commit']}` on "
           f"{report['machine']['processor']}, {report['machine']['cpus']} CPUs, "
           f"jax {report['machine']['jax']}, optax {report['machine']['optax']}.", ""]
  done = len({r["hash"] for v in report["variants"].values() for r in v["runs"]})
  if not findings.complete:
    lines += [f"**In progress**: {done} runs have finished and {findings.missing} more "
              "are needed by what is known now"
              + (f", while {findings.open_choices} methods' learning rates are still "
                 "to choose" if findings.open_choices else "")
              + "; rerun the command to continue. Rows below cover the methods whose "
              "learning rate is chosen; `n` is the number of seeds so far.", ""]
  else:
    lines += [f"Runs: {done}.", ""]
  if suite.scale_note:
    lines += ["## Scale: what this can and cannot show", "", suite.scale_note, ""]

  lines += _validation_paragraph(report.get("validation"), rows)
  lines += ["## Methods at their chosen learning rate", "",
            "Final validation loss (nats/token) as mean +- 95% CI over seeds; the "
            "difference to AdamW and the ratio are paired by seed. P(other LR): the "
            "probability that the seeds of the finer grid would have chosen another "
            "learning rate (\"Learning-rate choice\" below). AdamW data to "
            "match: the token budget, as a multiple of this suite's, at which AdamW's "
            "fitted scaling curve reaches the method's mean loss (\"Data scaling\" "
            "below), with a 95% bootstrap interval. Peak LR x wd: the weight decay each "
            "step applies at the peak learning rate (the layer-wise methods' multipliers "
            "scale it further per component). Step times are not compared here: "
            "`results/perf.md` holds the controlled optimizer-step ratios.", "",
            "| method | LR | P(other LR) | inside grid | final val loss | vs AdamW | ratio | "
            "AdamW data to match | peak LR x wd | state B/param |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for name in sorted(methods, key=lambda n: rows[n]["mean"]):
    row = rows[name]
    diff = ratio = "-"
    if adamw and name != BASELINE:
      seeds = sorted(set(row["seeds"]) & set(adamw["seeds"]))
      d_mean, d_half = mean_ci([_loss(row["seeds"][s]) - _loss(adamw["seeds"][s])
                                for s in seeds])
      r_mean, r_half = row["ratio_to"][BASELINE]
      diff = f"{d_mean:+.3f} +- {_fmt(d_half)}"
      ratio = f"{r_mean:.4f} +- {_fmt(r_half, '.4f')}"
    lines.append(
        f"| {name} | {row['lr']:.3g} | {_fmt(row['flip'], '.2f')} | "
        f"{'yes' if row['inside_grid'] else 'no'} | "
        f"{row['mean']:.4f} +- {_fmt(row['ci'], '.4f')} (n={len(row['seeds'])}) | "
        f"{diff} | {ratio} | {_multiple(scaling, name)} | "
        f"{row['lr'] * row['weight_decay']:.2g} | {row['state_bytes_per_param']:.2f} |")
  lines += _weight_decay_paragraph(rows, methods)

  judged = judge(rows)
  lines += ["", "## The reports' claims at this scale", "",
            "The reports' ratio is their loss / their AdamW's (4.927). Ours is paired by "
            "seed, with its 95% CI. Each claim against AdamW is decided by a t-test on "
            "the per-seed ratios: *better*/*worse* two-sided against 1 (confirmed or "
            "refuted by the side the mean lies on); *near* (within 1 +- "
            f"{NEAR:g}) by two one-sided tests that the ratio lies inside that band when "
            "its mean does (confirmed), else by the one-sided test that it lies beyond "
            f"the band's nearer edge (refuted). p is that test's; p (Holm) is adjusted "
            f"by Holm's method over the {sum(c.kind != 'best' for _, c in claims())} "
            f"claims against AdamW, so that all verdicts together err with probability "
            f"at most {ALPHA:g}; the verdict holds where p (Holm) < {ALPHA:g}, else it "
            "is inconclusive. *best* is confirmed when every other method's paired "
            f"ratio to it lies above 1 (each at {ALPHA:g}: all must hold, which needs no "
            "correction), refuted when one lies below 1 after Holm's correction over "
            "the others. The verdict tests the direction of a claim; the reported ratio "
            "inside our CI tests its size; AdamW data to match says what the method's "
            "loss is worth in AdamW's tokens; for a *near* claim, the last column is "
            f"the seeds a test of +- {NEAR:g} at level {ALPHA:g} would need to confirm it "
            f"with probability {POWER:g} were the ratio exactly 1, at the measured "
            "spread of the per-seed ratios.", "",
            VERDICT_HEADER, "|---|---|---|---|---|---|---|---|---|"]
  for method, claim in claims():
    reported = claim.reported / REPORTED_ADAMW
    result = judged.get(method)
    if result is None:
      lines.append(f"| {claim.text} | {reported:.3f} | - | - | - | not measured yet "
                   "| - | - | - |")
      continue
    inside = "yes" if abs(reported - result.ratio) <= result.half else "no"
    lines.append(f"| {claim.text} | {reported:.3f} | "
                 f"{result.ratio:.4f} +- {_fmt(result.half, '.4f')} | "
                 f"{_fmt(result.p, '.3g')} | {_fmt(result.p_holm, '.3g')} | "
                 f"**{result.verdict}** | {inside} | {_multiple(scaling, method)} | "
                 f"{result.seeds_needed or '-'} |")
  lines += _what_changed(report.get("previous"), judged, rows)

  ablations = [a for a in suite.ablations if a.name in rows]
  lines += ["", "## Ablations", "",
            "Each at its parent method's chosen learning rate, every seed; the ratio is "
            "ablation / parent, paired by seed (above 1: the removed part helped).", "",
            "| ablation | what changes | LR | final val loss | ratio to parent |",
            "|---|---|---|---|---|"]
  for a in ablations:
    row = rows[a.name]
    parent = rows.get(a.parent)
    ratio = "-"
    if parent:
      r_mean, r_half, _ = paired_ratio(row["seeds"], parent["seeds"])
      ratio = f"{r_mean:.4f} +- {_fmt(r_half, '.4f')}"
    lines.append(f"| {a.name} | {a.description} | {row['lr']:.3g} | "
                 f"{row['mean']:.4f} +- {_fmt(row['ci'], '.4f')} (n={len(row['seeds'])}) "
                 f"| {ratio} |")

  if suite.data_multiples:
    lines += ["", "## Data scaling of AdamW", ""]
    if scaling is None:
      lines.append("Not measured yet: AdamW's learning rate or some of its "
                   f"{suite.data_multiple_seeds} seeds at each data multiple are missing.")
    else:
      a, b, c = scaling["fit"]
      low, high = scaling["fitted_range"]
      fitted = suite.fitted_multiples()
      unfitted = [m for m in suite.data_multiples if m not in fitted]
      lines += [
          f"AdamW at its chosen learning rate ({adamw['lr']:.3g}) and this suite's "
          "schedule shape (warm-up and evaluations scaled with the steps), trained for "
          + ", ".join(f"{m:g}x" for m in suite.data_multiples)
          + f" the suite's {scaling['tokens']:,} tokens, {suite.data_multiple_seeds} seeds "
          + ("each (at 1x, every seed of AdamW's row). " if 1.0 in suite.data_multiples
             else "each. ")
          + "Every multiple draws from the same training split, so a method's data "
          "multiple counts tokens of that split (more passes over it beyond the "
          "suite's own), not new text. "
          + "Least-squares fit of the final validation loss of every seed from "
          f"{low:g}x to `L(D) = a * D^-b + c`, D in multiples of the budget: "
          f"a = {a:.4f}, b = {b:.3f}, c = {c:.4f}."
          + (" " + ", ".join(f"{m:g}x" for m in unfitted)
             + (" is" if len(unfitted) == 1 else " are") + " shown, not fitted: "
             "so short a run ends in the early transient from the initial loss "
             "(ln V), which no power law that diverges as D -> 0 describes; the fit "
             "column shows how far it lies off the curve." if unfitted else "")
          + " A method's data multiple is the D at which the fit reaches its mean "
          "loss; its interval is the 2.5-97.5 percentiles over "
          f"{BOOTSTRAP} bootstrap replicates that resample the seeds at every fitted "
          "budget (refitting the curve) and the method's seeds. Outside the fitted "
          f"{low:g}x-{high:g}x the multiple is an extrapolation; `inf` means below "
          "the fit's floor c.", "",
          "| data multiple | tokens | final val loss (seeds) | mean | fit | fitted |",
          "|---|---|---|---|---|---|"]
      for m, values in scaling["points"].items():
        lines.append(f"| {m:g}x | {round(m * scaling['tokens']):,} | "
                     + ", ".join(f"{v:.4f}" for v in values)
                     + f" | {statistics.fmean(values):.4f} | {a * m ** -b + c:.4f} | "
                     f"{'yes' if m in fitted else 'no'} |")
      lines += ["", f"![AdamW's data scaling]({suite.name}_scaling.png)"]

  lines += ["", "## Learning-rate choice", "",
            f"Every point of the finer grid with the mean +- 95% CI of "
            f"{_seeds(suite.lr_choice_seeds)}; the lowest mean is chosen. P(other LR) is "
            "the probability that another point would have been chosen: each point's "
            "mean is drawn around the measured one with the seed-to-seed noise of a "
            "two-way fit (learning rate + seed + noise, the seed's effect common to "
            f"every point and so out of the choice), {FLIP_DRAWS} draws.", "",
            "| method | finer grid (LR: mean over seeds) | chosen LR | P(other LR) |",
            "|---|---|---|---|"]
  for name in methods:
    points = ", ".join(
        f"{lr:.3g}: {_fmt(mean_ci(v)[0], '.4f')} +- {_fmt(mean_ci(v)[1], '.4f')}"
        for lr, v in sorted(rows[name]["candidates"].items()))
    lines.append(f"| {name} | {points} | {rows[name]['lr']:.3g} | "
                 f"{_fmt(rows[name]['flip'], '.2f')} |")

  lines += ["", "## Learning-rate grids (seed 0, final validation loss)", "",
            "Both grids' points, seed 0.", "",
            "| method | grid |", "|---|---|"]
  for name in methods:
    lines.append(f"| {name} | " + ", ".join(
        f"{lr:.3g}: {_fmt(loss, '.3f') if math.isfinite(loss) else 'diverged'}"
        for lr, loss in rows[name]["grid"]) + " |")
  lines += ["", f"![validation loss]({suite.name}_curves.png)", "",
            f"![final loss vs learning rate]({suite.name}_lr.png)", ""]
  return "\n".join(lines)


def plots(suite: Suite, findings: Findings, out: pathlib.Path) -> None:
  from matplotlib import colormaps
  from matplotlib.figure import Figure

  rows, scaling = findings.rows, findings.scaling
  methods = [m.name for m in suite.methods if m.name in rows]
  colors = colormaps["tab20"]
  finals = [rows[n]["mean"] for n in methods]

  def save(fig, ax, headroom: float, path: pathlib.Path) -> None:
    if finals:
      ax.set_ylim(min(finals) - 0.1, max(finals) + headroom)
      ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)

  fig = Figure(figsize=(9, 6))
  ax = fig.subplots()
  for i, name in enumerate(methods):
    curves = [r["val_curve"] for r in rows[name]["seeds"].values()]
    steps = [s for s, _ in curves[0]]
    values = np.array([[v for _, v in c] for c in curves])
    ax.plot(steps, values.mean(0), color=colors(i), label=f"{name} ({rows[name]['lr']:.2g})")
    ax.fill_between(steps, values.min(0), values.max(0), color=colors(i), alpha=0.2)
  ax.set(xlabel="step", ylabel="validation loss (nats/token)",
         title=f"suite {suite.name}: chosen LR per method, band = min..max over seeds")
  save(fig, ax, 0.8, out / f"{suite.name}_curves.png")

  fig = Figure(figsize=(9, 6))
  ax = fig.subplots()
  for i, name in enumerate(methods):
    grid = [(lr, loss) for lr, loss in rows[name]["grid"] if math.isfinite(loss)]
    ax.plot(*zip(*grid), "o-", color=colors(i), label=name)
  ax.set_xscale("log")
  ax.set(xlabel="peak learning rate", ylabel="final validation loss (seed 0)",
         title=f"suite {suite.name}: learning-rate grids")
  save(fig, ax, 1.0, out / f"{suite.name}_lr.png")

  if scaling is None:  # not measured (yet): no plot of an earlier report's runs
    (out / f"{suite.name}_scaling.png").unlink(missing_ok=True)
    return
  fig = Figure(figsize=(9, 6))
  ax = fig.subplots()
  a, b, c = scaling["fit"]
  low, high = scaling["fitted_range"]
  for m, values in scaling["points"].items():
    ax.plot([m] * len(values), values, "o", color="k", alpha=0.5,
            markerfacecolor="k" if m in suite.fitted_multiples() else "none")
  shown = [v for v, _, _ in scaling["multiples"].values() if math.isfinite(v)]
  x = np.geomspace(min(low, *shown) / 1.2, max(high, *shown) * 1.2, 200)
  ax.plot(x, a * x ** -b + c, "k-", label=f"AdamW fit: {a:.3f} D^-{b:.3f} + {c:.3f}")
  for i, name in enumerate(methods):
    value, lo, hi = scaling["multiples"][name]
    if name == BASELINE or not math.isfinite(value):
      continue
    err = [[value - lo], [hi - value]] if math.isfinite(lo) and math.isfinite(hi) else None
    ax.errorbar([value], [rows[name]["mean"]], xerr=err, fmt="s", color=colors(i),
                capsize=3, label=f"{name}: {value:.2f}x")
  ax.set_xscale("log")
  ax.set_xticks(list(scaling["points"]), [f"{m:g}x" for m in scaling["points"]])
  ax.minorticks_off()
  ax.set(xlabel="tokens, as a multiple of the suite's budget",
         ylabel="final validation loss (nats/token)",
         title=f"suite {suite.name}: AdamW's data scaling (dots: seeds; hollow: not "
               "fitted)\nand the data it needs to match each method")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(out / f"{suite.name}_scaling.png", dpi=100)


def write(suite: Suite, variants: dict[str, Any], out: pathlib.Path,
          argv: list[str], placement: dict[str, Any]) -> None:
  """Writes `<out>/<suite>.json`, `<suite>.md` and the plots; `placement`
  finds the suite's dataset, whose validation set the report describes."""
  import flax
  out.mkdir(parents=True, exist_ok=True)
  report = {"suite": suite.name, "description": suite.description,
            "train": suite.train, "grid_points": suite.grid_points,
            "grid_factor": suite.grid_factor, "lr_choice_points": suite.lr_choice_points,
            "lr_choice_seeds": suite.lr_choice_seeds, "seeds": suite.seeds,
            "data_multiples": list(suite.data_multiples),
            "data_multiple_seeds": suite.data_multiple_seeds,
            "data_fit_from": suite.data_fit_from,
            "lr_refine": suite.lr_refine,
            "validation": validation_set(suite, placement),
            "previous": (previous_verdicts(out / suite.previous_report)
                         if suite.previous_report else None),
            "git_commit": provenance.git_commit(), "flax": flax.__version__,
            "variants": variants}
  report = provenance.write_report(out / f"{suite.name}.json", "train.benchmark", argv,
                                   report)
  findings = analyse(suite, variants)
  files.write_atomically(out / f"{suite.name}.md", markdown(suite, findings, report))
  plots(suite, findings, out)
  print(f"wrote {out / (suite.name + '.md')}")
