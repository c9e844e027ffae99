"""The benchmark's report: `<suite>.json` (every run) and `<suite>.md` (tables,
verdicts on the reports' claims, ablations, the baseline's data scaling)
with three plots."""

from __future__ import annotations

import dataclasses
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
from train import files, model, provenance
from train.benchmark.methods import REPORTED_ADAMW, Claim, claims
from train.benchmark.plan import Loss, LrChoice, Plan
from train.benchmark.runner import finished, reproduce_command
from train.benchmark.suites import BASELINE, Suite, run_hash

NEAR = 0.01
VERDICT_HEADER = ("| claim | reported ratio | measured ratio | verdict "
                  "| reported ratio inside our CI | AdamW data to match |")
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


def paired_ratio(runs: dict[int, dict], baseline: dict[int, dict]) -> tuple[float, float, int]:
  """Mean and 95% CI half-width of loss / baseline loss over shared seeds
  (a seed fixes the initialisation and the data order of both)."""
  seeds = sorted(set(runs) & set(baseline))
  ratios = [_loss(runs[s]) / _loss(baseline[s]) for s in seeds]
  mean, half = mean_ci(ratios) if ratios else (math.nan, math.nan)
  return mean, half, len(seeds)


def steps_to_reach(curves: list[list[list[float]]], target: float) -> float | None:
  """The first step at which the seed-mean validation curve reaches
  `target`, interpolated linearly between evaluations; None if never."""
  steps = [s for s, _ in curves[0]]
  mean = [statistics.fmean(c[i][1] for c in curves) for i in range(len(steps))]
  previous = (0, math.inf)
  for step, loss in zip(steps, mean):
    if loss <= target:
      if math.isinf(previous[1]):
        return step
      frac = (previous[1] - target) / (previous[1] - loss)
      return previous[0] + frac * (step - previous[0])
    previous = (step, loss)
  return None


def verdict(method: str, claim: Claim, ratio: float, half: float,
            rows: dict[str, dict]) -> str:
  """`claim` of `method` judged on its paired ratio to AdamW (`ratio` +- `half`)."""
  lo, hi = ratio - half, ratio + half
  if not math.isfinite(half):
    return "not measured"
  if claim.kind == "better":
    return "confirmed" if hi < 1 else "refuted" if lo >= 1 else "inconclusive"
  if claim.kind == "worse":
    return "confirmed" if lo > 1 else "refuted" if hi <= 1 else "inconclusive"
  if claim.kind == "near":
    if 1 - NEAR <= lo and hi <= 1 + NEAR:
      return "confirmed"
    return "refuted" if hi < 1 - NEAR or lo > 1 + NEAR else "inconclusive"
  # "best": every other method's paired ratio to this one is above 1.
  others = [row["ratio_to"].get(method) for name, row in rows.items()
            if name != method and row.get("ratio_to")]
  others = [o for o in others if o is not None]
  if others and all(r - h > 1 for r, h in others):
    return "confirmed"
  if any(r + h < 1 for r, h in others):
    return "refuted"
  return "inconclusive"


def state_bytes_per_param(config_name: str, optimizer: str, opt: dict[str, Any]) -> float:
  params = model.param_shapes(config_name)
  state = jax.eval_shape(layeropt_jax.get_optimizer(optimizer, 1e-3, **opt).init, params)
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
  and per ablation whose parent's is."""
  rows: dict[str, dict[str, Any]] = {}
  for name, v in variants.items():
    choice = choices.get(name) or choices[v["parent"]]
    if choice.lr is None:
      continue
    seeds = at_lr(v["runs"], choice.lr)
    losses = [_loss(r) for r in seeds.values()]
    mean, half = mean_ci(losses)
    grid = sorted((r["lr"], _loss(r)) for r in v["runs"]
                  if r["seed"] == 0 and r["data_multiple"] == 1.0)
    rows[name] = {"lr": choice.lr, "seeds": seeds, "mean": mean, "ci": half, "grid": grid,
                  "candidates": choice.candidates if name in choices else {},
                  "inside_grid": len(grid) >= 3 and grid[0][0] < choice.lr < grid[-1][0],
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


def markdown(suite: Suite, findings: Findings, report: dict[str, Any]) -> str:
  rows, scaling = findings.rows, findings.scaling
  methods = [m.name for m in suite.methods if m.name in rows]
  adamw = rows.get(BASELINE)
  lines = [f"# Benchmark: suite `{suite.name}`", "",
           f"{suite.description}. Learning-rate grid of {suite.grid_points} points "
           f"spaced by {suite.grid_factor:g}x per method (seed 0), extended past an edge; "
           f"the {suite.lr_choice_points} best grid points get "
           f"{_seeds(suite.lr_choice_seeds)} and the learning rate with the lower mean is "
           f"chosen (and the grid extended again if it lies on an edge); then "
           f"{suite.seeds} seeds at each method's chosen learning rate (a seed fixes the "
           "initialisation and the data order, so methods are compared seed by seed).", "",
           f"Command: `{report['command']}` (resumable, and `--worker I/N` shares it over "
           f"machines; see `{suite.name}.json` for every run and the command that "
           "reproduces it alone).  ",
           f"Revision: `{report['git_commit']}`. Machine: {report['machine']['processor']}, "
           f"{report['machine']['cpus']} CPUs, jax {report['machine']['jax']}, "
           f"optax {report['machine']['optax']}.", ""]
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

  adamw_target = adamw["mean"] if adamw else None
  adamw_steps = None
  if adamw:
    adamw_steps = steps_to_reach([r["val_curve"] for r in adamw["seeds"].values()],
                                 adamw_target)
  lines += ["## Methods at their chosen learning rate", "",
            "Final validation loss (nats/token) as mean +- 95% CI over seeds; the "
            "difference to AdamW and the ratio are paired by seed. AdamW data to "
            "match: the token budget, as a multiple of this suite's, at which AdamW's "
            "fitted scaling curve reaches the method's mean loss (\"Data scaling\" "
            "below), with a 95% bootstrap interval. Steps to AdamW: the first step at "
            "which the seed-mean validation curve reaches AdamW's final loss (speedup = "
            "AdamW's steps / these). Step times are not compared here: this suite's "
            "runs ran on more than one machine; `results/perf.md` holds the controlled "
            "optimizer-step ratios.", "",
            "| method | LR | inside grid | final val loss | vs AdamW | ratio | "
            "AdamW data to match | state B/param | steps to AdamW's loss | speedup |",
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
    reach = steps_to_reach([r["val_curve"] for r in row["seeds"].values()],
                           adamw_target) if adamw_target else None
    lines.append(
        f"| {name} | {row['lr']:.3g} | {'yes' if row['inside_grid'] else 'no'} | "
        f"{row['mean']:.4f} +- {_fmt(row['ci'], '.4f')} (n={len(row['seeds'])}) | "
        f"{diff} | {ratio} | {_multiple(scaling, name)} | "
        f"{row['state_bytes_per_param']:.2f} | "
        f"{_fmt(reach, '.0f') if reach else 'not reached'} | "
        f"{_fmt(adamw_steps / reach, '.2f') if reach and adamw_steps else '-'} |")

  lines += ["", "## The reports' claims at this scale", "",
            "The reports' ratio is their loss / their AdamW's (4.927). Ours is paired by "
            f"seed with its 95% CI. Rules: *better*/*worse* is confirmed when the CI "
            "lies below/above 1 and refuted when it lies on the other side (or at 1); "
            f"*near* is confirmed when the CI lies within 1 +- {NEAR:g} and refuted when "
            "it lies outside; *best* is confirmed when every other method's ratio to it "
            "lies above 1. Otherwise: inconclusive. The verdict tests the direction "
            "of a claim; the reported ratio inside our CI tests its size; AdamW data to "
            "match says what the method's loss is worth in AdamW's tokens.", "",
            VERDICT_HEADER, "|---|---|---|---|---|---|"]
  for method, claim in claims():
    row = rows.get(method)
    reported = claim.reported / REPORTED_ADAMW
    if row is None or adamw is None:
      lines.append(f"| {claim.text} | {reported:.3f} | - | not measured yet | - | - |")
      continue
    r_mean, r_half = row["ratio_to"][BASELINE]
    inside = "yes" if abs(reported - r_mean) <= r_half else "no"
    lines.append(f"| {claim.text} | {reported:.3f} | "
                 f"{r_mean:.4f} +- {_fmt(r_half, '.4f')} | "
                 f"**{verdict(method, claim, r_mean, r_half, rows)}** | {inside} | "
                 f"{_multiple(scaling, method)} |")

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
            f"The {suite.lr_choice_points} best grid points (by seed 0) with the mean "
            f"+- 95% CI of {_seeds(suite.lr_choice_seeds)}; the lower mean is chosen.", "",
            "| method | points (LR: mean over seeds) | chosen LR |", "|---|---|---|"]
  for name in methods:
    points = ", ".join(
        f"{lr:.3g}: {_fmt(mean_ci(v)[0], '.4f')} +- {_fmt(mean_ci(v)[1], '.4f')}"
        for lr, v in sorted(rows[name]["candidates"].items()))
    lines.append(f"| {name} | {points} | {rows[name]['lr']:.3g} |")

  lines += ["", "## Learning-rate grids (seed 0, final validation loss)", "",
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

  if scaling is None:
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
          argv: list[str]) -> None:
  """Writes `<out>/<suite>.json`, `<suite>.md` and the plots."""
  import flax
  out.mkdir(parents=True, exist_ok=True)
  report = {"suite": suite.name, "description": suite.description,
            "train": suite.train, "grid_points": suite.grid_points,
            "grid_factor": suite.grid_factor, "lr_choice_points": suite.lr_choice_points,
            "lr_choice_seeds": suite.lr_choice_seeds, "seeds": suite.seeds,
            "data_multiples": list(suite.data_multiples),
            "data_multiple_seeds": suite.data_multiple_seeds,
            "data_fit_from": suite.data_fit_from,
            "git_commit": provenance.git_commit(), "flax": flax.__version__,
            "variants": variants}
  report = provenance.write_report(out / f"{suite.name}.json", "train.benchmark", argv,
                                   report)
  findings = analyse(suite, variants)
  files.write_atomically(out / f"{suite.name}.md", markdown(suite, findings, report))
  plots(suite, findings, out)
  print(f"wrote {out / (suite.name + '.md')}")
