"""The benchmark's report: `<suite>.json` (every run) and `<suite>.md` (tables,
verdicts on the reports' claims, ablations) with two plots."""

from __future__ import annotations

import json
import math
import pathlib
import statistics
from typing import Any

import jax
import numpy as np

import layeropt_jax
from train import files, model, provenance
from train.benchmark.methods import REPORTED_ADAMW, Claim, claims
from train.benchmark.runner import best_lr, finished, reproduce_command
from train.benchmark.suites import Suite, run_hash

# Two-sided 95% quantiles of Student's t by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262}
NEAR = 0.01
VERDICT_HEADER = ("| claim | reported ratio | measured ratio | verdict "
                  "| reported ratio inside our CI |")


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
  """Every finished run of the suite found in `runs_dir`, by variant: the
  grid (seed 0, every learning rate tried) and the seeds at the best LR."""
  variants = {}
  for variant in suite.methods + suite.ablations:
    runs = []
    root = runs_dir / suite.name
    for run_json in sorted(root.glob("*/run.json")):
      saved = json.loads(run_json.read_text())
      if saved["optimizer"] != variant.optimizer or saved["opt"] != variant.opt:
        continue
      config = suite.config(variant, saved["lr"], saved["seed"], runs_dir)
      records = finished(config)
      if config.workdir != str(run_json.parent) or records is None:
        continue
      runs.append({"lr": config.lr, "seed": config.seed, "hash": run_hash(config),
                   "command": reproduce_command(config), **summarize(records)})
    variants[variant.name] = {"optimizer": variant.optimizer, "opt": variant.opt,
                              "parent": variant.parent, "description": variant.description,
                              "runs": sorted(runs, key=lambda r: (r["seed"], r["lr"]))}
  return variants


def mean_ci(values: list[float]) -> tuple[float, float]:
  """Mean and the half-width of its 95% confidence interval (Student's t)."""
  mean = statistics.fmean(values)
  if len(values) < 2:
    return mean, math.nan
  return mean, _T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))


def _loss(run: dict[str, Any]) -> float:
  loss = run["final_val_loss"]
  return math.inf if loss != loss else loss


def grid_best_lr(runs: list[dict[str, Any]]) -> float | None:
  """The best learning rate of the grid (seed 0) of a variant's runs."""
  grid = {r["lr"]: r["final_val_loss"] for r in runs if r["seed"] == 0}
  return best_lr(grid) if grid else None


def at_lr(runs: list[dict[str, Any]], lr: float) -> dict[int, dict[str, Any]]:
  """The runs at learning rate `lr`, by seed."""
  return {r["seed"]: r for r in runs if math.isclose(r["lr"], lr, rel_tol=1e-9)}


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


def rows_of(suite: Suite, variants: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """One row per method with seeds at its best LR, and per ablation."""
  methods = {m.name: m for m in suite.methods}
  rows: dict[str, dict[str, Any]] = {}
  best = {name: grid_best_lr(variants[name]["runs"]) for name in methods}
  for name, v in variants.items():
    lr = best[name] if name in methods else best.get(v["parent"])
    if lr is None:
      continue
    seeds = at_lr(v["runs"], lr)
    if not seeds:
      continue
    losses = [_loss(r) for r in seeds.values()]
    mean, half = mean_ci(losses)
    grid = sorted((r["lr"], _loss(r)) for r in v["runs"] if r["seed"] == 0)
    times = [r["step_time_s"] for s, r in seeds.items() if s > 0 and r["step_time_s"]]
    rows[name] = {"lr": lr, "seeds": seeds, "mean": mean, "ci": half, "grid": grid,
                  "inside_grid": len(grid) >= 3 and grid[0][0] < lr < grid[-1][0],
                  "step_time_s": min(times) if times else None,
                  "state_bytes_per_param": state_bytes_per_param(
                      suite.train["config"], v["optimizer"], v["opt"])}
  for name, row in rows.items():
    row["ratio_to"] = {other: paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name and other in methods}
  return rows


def _fmt(x: float | None, spec: str = ".3f") -> str:
  return "-" if x is None or not math.isfinite(x) else format(x, spec)


def markdown(suite: Suite, rows: dict[str, dict], report: dict[str, Any]) -> str:
  methods = [m.name for m in suite.methods if m.name in rows]
  adamw = rows.get("adamw")
  lines = [f"# Benchmark: suite `{suite.name}`", "",
           f"{suite.description}. Learning-rate grid of {suite.grid_points} points "
           f"spaced by {suite.grid_factor:g}x per method (seed 0), extended past an edge; "
           f"{suite.seeds} seeds at each method's best learning rate (a seed fixes the "
           "initialisation and the data order, so methods are compared seed by seed).", "",
           f"Command: `{report['command']}` (resumable; see `{suite.name}.json` for every "
           "run and the command that reproduces it alone).  ",
           f"Revision: `{report['git_commit']}`. Machine: {report['machine']['processor']}, "
           f"{report['machine']['cpus']} CPUs, jax {report['machine']['jax']}, "
           f"optax {report['machine']['optax']}.", ""]
  done = len({r["hash"] for v in report["variants"].values() for r in v["runs"]})
  if done < suite.planned_runs:
    lines += [f"**In progress**: {done} of the {suite.planned_runs} planned runs (plus grid "
              "extensions) have finished; rerun the command to continue. Rows below "
              "cover the methods finished so far; `n` is the number of seeds.", ""]
  else:
    lines += [f"Runs: {done}.", ""]
  if suite.scale_note:
    lines += ["## Scale: what this can and cannot show", "", suite.scale_note, ""]

  adamw_target = adamw["mean"] if adamw else None
  adamw_steps = None
  if adamw:
    adamw_steps = steps_to_reach([r["val_curve"] for r in adamw["seeds"].values()],
                                 adamw_target)
  lines += ["## Methods at their best learning rate", "",
            "Final validation loss (nats/token) as mean +- 95% CI over seeds; the "
            "difference to AdamW and the ratio are paired by seed. Steps to AdamW: the "
            "first step at which the seed-mean validation curve reaches AdamW's final "
            "loss (speedup = AdamW's steps / these). Step time: the fastest logged "
            "interval (50 steps) of the seed runs, relative to AdamW's; a shared "
            "machine whose load varied during the suite only slows steps, but "
            "`results/perf.md` holds the controlled optimizer-step ratios.", "",
            "| method | best LR | inside grid | final val loss | vs AdamW | ratio | "
            "state B/param | step time vs AdamW | steps to AdamW's loss | speedup |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for name in sorted(methods, key=lambda n: rows[n]["mean"]):
    row = rows[name]
    diff = ratio = "-"
    if adamw and name != "adamw":
      seeds = sorted(set(row["seeds"]) & set(adamw["seeds"]))
      d_mean, d_half = mean_ci([_loss(row["seeds"][s]) - _loss(adamw["seeds"][s])
                                for s in seeds])
      r_mean, r_half = row["ratio_to"]["adamw"]
      diff = f"{d_mean:+.3f} +- {_fmt(d_half)}"
      ratio = f"{r_mean:.4f} +- {_fmt(r_half, '.4f')}"
    reach = steps_to_reach([r["val_curve"] for r in row["seeds"].values()],
                           adamw_target) if adamw_target else None
    time = (row["step_time_s"] / adamw["step_time_s"]
            if adamw and row["step_time_s"] and adamw["step_time_s"] else None)
    lines.append(
        f"| {name} | {row['lr']:.3g} | {'yes' if row['inside_grid'] else 'no'} | "
        f"{row['mean']:.4f} +- {_fmt(row['ci'], '.4f')} (n={len(row['seeds'])}) | "
        f"{diff} | {ratio} | {row['state_bytes_per_param']:.2f} | {_fmt(time, '.2f')} | "
        f"{_fmt(reach, '.0f') if reach else 'not reached'} | "
        f"{_fmt(adamw_steps / reach, '.2f') if reach and adamw_steps else '-'} |")

  lines += ["", "## The reports' claims at this scale", "",
            "The reports' ratio is their loss / their AdamW's (4.927). Ours is paired by "
            f"seed with its 95% CI. Rules: *better*/*worse* is confirmed when the CI "
            "lies below/above 1 and refuted when it lies on the other side (or at 1); "
            f"*near* is confirmed when the CI lies within 1 +- {NEAR:g} and refuted when "
            "it lies outside; *best* is confirmed when every other method's ratio to it "
            "lies above 1. Otherwise: inconclusive. The verdict tests the direction "
            "of a claim; the last column tests its size: whether the reported ratio "
            "lies inside our CI.", "",
            VERDICT_HEADER, "|---|---|---|---|---|"]
  for method, claim in claims():
    row = rows.get(method)
    reported = claim.reported / REPORTED_ADAMW
    if row is None or adamw is None:
      lines.append(f"| {claim.text} | {reported:.3f} | - | not measured yet | - |")
      continue
    r_mean, r_half = row["ratio_to"]["adamw"]
    inside = "yes" if abs(reported - r_mean) <= r_half else "no"
    lines.append(f"| {claim.text} | {reported:.3f} | "
                 f"{r_mean:.4f} +- {_fmt(r_half, '.4f')} | "
                 f"**{verdict(method, claim, r_mean, r_half, rows)}** | {inside} |")

  ablations = [a for a in suite.ablations if a.name in rows]
  lines += ["", "## Ablations", "",
            "Each at its parent method's best learning rate, every seed; the ratio is "
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
                 f"{row['mean']:.4f} +- {_fmt(row['ci'], '.4f')} | {ratio} |")

  lines += ["", "## Learning-rate grids (seed 0, final validation loss)", "",
            "| method | grid |", "|---|---|"]
  for name in methods:
    lines.append(f"| {name} | " + ", ".join(
        f"{lr:.3g}: {_fmt(loss, '.3f') if math.isfinite(loss) else 'diverged'}"
        for lr, loss in rows[name]["grid"]) + " |")
  lines += ["", f"![validation loss]({suite.name}_curves.png)", "",
            f"![final loss vs learning rate]({suite.name}_lr.png)", ""]
  return "\n".join(lines)


def plots(suite: Suite, rows: dict[str, dict], out: pathlib.Path) -> None:
  from matplotlib import colormaps
  from matplotlib.figure import Figure

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
         title=f"suite {suite.name}: best LR per method, band = min..max over seeds")
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


def write(suite: Suite, variants: dict[str, Any], out: pathlib.Path,
          argv: list[str]) -> None:
  """Writes `<out>/<suite>.json`, `<suite>.md` and the two plots."""
  import flax
  out.mkdir(parents=True, exist_ok=True)
  report = {"suite": suite.name, "description": suite.description,
            "train": suite.train, "grid_points": suite.grid_points,
            "grid_factor": suite.grid_factor, "seeds": suite.seeds,
            "git_commit": provenance.git_commit(), "flax": flax.__version__,
            "variants": variants}
  report = provenance.write_report(out / f"{suite.name}.json", "train.benchmark", argv,
                                   report)
  rows = rows_of(suite, variants)
  files.write_atomically(out / f"{suite.name}.md", markdown(suite, rows, report))
  plots(suite, rows, out)
  print(f"wrote {out / (suite.name + '.md')}")
