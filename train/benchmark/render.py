"""The suite's results as Markdown: one function per section, in the
order of the file."""

from __future__ import annotations

import math
import statistics
from typing import Any

from train.benchmark import stats
from train.benchmark.analysis import (
    ALPHA, BOOTSTRAP, FLIP_DRAWS, NEAR, POWER, Findings, Judgement, final, judge,
    paired_ratio)
from train.benchmark.methods import REPORTED_ADAMW, claims
from train.benchmark.suites import BASELINE, Suite
from train import markdown as md

VERDICT_COLUMNS = ("claim", "reported ratio", "measured ratio", "p", "p (Holm)", "verdict",
                   "reported ratio inside our CI", "AdamW data to match",
                   "seeds a 1% equivalence test needs")


def page(suite: Suite, findings: Findings, results: dict[str, Any]) -> str:
  """`results/<suite>.md`: `results` is what `<suite>.json` holds."""
  methods = [m.name for m in suite.methods if m.name in findings.rows]
  judged = judge(findings.rows)
  sections = [
      header(suite, results), progress(findings, results), scale(suite),
      validation(results.get("validation"), findings.rows),
      methods_table(findings, methods), weight_decay(findings.rows, methods),
      claims_table(judged, findings.scaling),
      what_changed(results.get("previous"), suite, judged, findings.rows),
      ablations(suite, findings.rows), data_scaling(suite, findings),
      lr_choice(suite, findings.rows, methods), lr_grids(suite, findings.rows, methods)]
  return "\n".join(line for section in sections for line in section)


def _seeds(n: int) -> str:
  return "seed 0" if n == 1 else f"seeds 0-{n - 1}"


def _mean_ci(mean: float, half: float) -> str:
  return f"{mean:.4f} +- {md.number(half, '.4f')}"


def _multiple(scaling: dict[str, Any] | None, name: str) -> str:
  """A row's data multiple and its interval, `-` where there is none."""
  if scaling is None or name not in scaling["multiples"]:
    return "-"
  value, lo, hi = scaling["multiples"][name]
  low, high = scaling["fitted_range"]
  return multiple_cell(value, lo, hi, "" if low <= value <= high else " (extrapolated)")


def multiple_cell(value: float, lo: float, hi: float, note: str = "") -> str:
  """A data multiple and its interval: `1.63x [1.41, 1.90]`."""
  show = lambda v: "inf" if v == math.inf else md.number(v, ".2f")
  return f"{show(value)}x [{show(lo)}, {show(hi)}]{note}"


def header(suite: Suite, results: dict[str, Any]) -> list[str]:
  step = suite.grid_factor ** (1 / suite.lr_refine)
  return [
      f"# Benchmark: suite `{suite.name}`", "",
      f"{suite.description}. Learning rates: a grid of {suite.grid_points} points "
      f"spaced by {suite.grid_factor:g}x per method (seed 0), extended past an edge "
      f"while the best point lies on it; then a finer grid in steps of {step:.3g}x "
      f"from one step below the {suite.lr_choice_points} best grid points to one "
      f"step above them, every point at {_seeds(suite.lr_choice_seeds)}, extended "
      "by a step while the lowest mean lies on its edge; the lowest mean is chosen. "
      f"Then {suite.seeds} seeds at each method's chosen learning rate (a seed fixes "
      "the initialisation and the data order, so methods are compared seed by "
      "seed).", "", *provenance(suite, results)]


def provenance(suite: Suite, results: dict[str, Any]) -> list[str]:
  """The command that runs the suite, and where its results were written."""
  machine = results["machine"]
  return [
      f"Command: `{results['command']}` (resumable, and `--worker I/N` shares it over "
      f"machines; see `{suite.name}.json` for every run and the command that "
      "reproduces it alone).  ",
      # A resumed or shared suite's runs ran on whichever machines its
      # workers had; only the writing of the results is recorded here.
      f"Results written at revision `{results['git_commit']}` on "
      f"{machine['processor']}, {machine['cpus']} CPUs, jax {machine['jax']}, "
      f"optax {machine['optax']}.", ""]


def progress_of(results: dict[str, Any], complete: bool, missing: int, still_open: str,
                covered: str) -> list[str]:
  """How far the suite is: its runs, and while in progress what is missing
  (`still_open`: what is still to decide, or empty) and what the tables cover."""
  done = len({r["hash"] for v in results["variants"].values() for r in v["runs"]})
  if complete:
    return [f"Runs: {done}.", ""]
  return [f"**In progress**: {done} runs have finished and {missing} more are needed by "
          "what is known now" + (f", while {still_open}" if still_open else "")
          + f"; rerun the command to continue. {covered}", ""]


def progress(findings: Findings, results: dict[str, Any]) -> list[str]:
  return progress_of(
      results, findings.complete, findings.missing,
      f"{findings.open_choices} methods' learning rates are still to choose"
      if findings.open_choices else "",
      "Rows below cover the methods whose learning rate is chosen; `n` is the number "
      "of seeds so far.")


def scale(suite: Suite) -> list[str]:
  if not suite.scale_note:
    return []
  return ["## Scale: what this can and cannot show", "", suite.scale_note, ""]


def validation(held_out: dict[str, Any] | None, rows: dict[str, dict[str, Any]]) -> list[str]:
  if held_out is None:
    return []
  gaps = [row["val_minus_train"] for row in rows.values()
          if math.isfinite(row["val_minus_train"])]
  text = (f"**Validation set**: the same {held_out['windows']} windows "
          f"({held_out['tokens']:,} tokens) for every run, spread evenly over the "
          f"whole validation split of `{held_out['dataset']}` {held_out['version']} "
          f"({held_out['split_documents']} files, {held_out['split_tokens']:,} "
          f"tokens, held out by a hash of their path); they hold tokens of "
          f"{held_out['documents']} of its {held_out['split_documents']} files.")
  if gaps:
    low, high = f"{min(gaps):+.3f}", f"{max(gaps):+.3f}"
    span = low if low == high else f"{low} to {high}"
    text += (f" At their chosen learning rates, every row's final validation loss lies "
             f"{span} nats from its mean training loss over "
             "the last 10% of steps (seed means): the held-out files against batches "
             "of a train split seen more than once.")
  return [text, ""]


def methods_table(findings: Findings, methods: list[str]) -> list[str]:
  rows, adamw = findings.rows, findings.rows.get(BASELINE)
  lines = []
  for name in sorted(methods, key=lambda n: rows[n]["mean"]):
    row = rows[name]
    diff = ratio = "-"
    if adamw and name != BASELINE:
      seeds = sorted(set(row["seeds"]) & set(adamw["seeds"]))
      d_mean, d_half = stats.mean_ci([final(row["seeds"][s]) - final(adamw["seeds"][s])
                                      for s in seeds])
      diff = f"{d_mean:+.3f} +- {md.number(d_half)}"
      ratio = _mean_ci(*row["ratio_to"][BASELINE])
    lines.append([
        name, f"{row['lr']:.3g}", md.number(row["flip"], ".2f"),
        "yes" if row["inside_grid"] else "no",
        f"{_mean_ci(row['mean'], row['ci'])} (n={len(row['seeds'])})", diff, ratio,
        _multiple(findings.scaling, name), f"{row['lr'] * row['weight_decay']:.2g}",
        f"{row['state_bytes_per_param']:.2f}"])
  return [
      "## Methods at their chosen learning rate", "",
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
      *md.table(["method", "LR", "P(other LR)", "inside grid", "final val loss", "vs AdamW",
              "ratio", "AdamW data to match", "peak LR x wd", "state B/param"], lines)]


def weight_decay(rows: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
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


def claims_table(judged: dict[str, Judgement], scaling: dict[str, Any] | None) -> list[str]:
  lines = []
  for method, claim in claims():
    reported = claim.reported / REPORTED_ADAMW
    result = judged.get(method)
    if result is None:
      lines.append([claim.text, f"{reported:.3f}", "-", "-", "-", "not measured yet",
                    "-", "-", "-"])
      continue
    inside = "yes" if abs(reported - result.ratio) <= result.half else "no"
    lines.append([claim.text, f"{reported:.3f}", _mean_ci(result.ratio, result.half),
                  md.number(result.p, ".3g"), md.number(result.p_holm, ".3g"),
                  f"**{result.verdict}**", inside, _multiple(scaling, method),
                  result.seeds_needed or "-"])
  return [
      "", "## The reports' claims at this scale", "",
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
      *md.table(VERDICT_COLUMNS, lines)]


def what_changed(previous: dict[str, Any] | None, suite: Suite,
                 judged: dict[str, Judgement], rows: dict[str, dict[str, Any]]) -> list[str]:
  """The superseded protocol's verdicts beside these, and why they differ."""
  if not previous or not judged:
    return []
  lines = []
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
    lines.append([claim.text, before["ratio"], before["verdict"],
                  _mean_ci(now.ratio, now.half), now.verdict, "; ".join(why)])
  return ["", "### What changed", "",
          f"The verdicts of the suite's first protocol ({previous['report']}: "
          f"{suite.previous.protocol}) beside these.", "",
          *md.table(["claim", "previous ratio", "previous verdict", "ratio now",
                  "verdict now", "why"], lines)]


def ablations(suite: Suite, rows: dict[str, dict[str, Any]]) -> list[str]:
  lines = []
  for a in (a for a in suite.ablations if a.name in rows):
    row, parent = rows[a.name], rows.get(a.parent)
    ratio = _mean_ci(*paired_ratio(row["seeds"], parent["seeds"])[:2]) if parent else "-"
    lines.append([a.name, a.description, f"{row['lr']:.3g}",
                  f"{_mean_ci(row['mean'], row['ci'])} (n={len(row['seeds'])})", ratio])
  return ["", "## Ablations", "",
          "Each at its parent method's chosen learning rate, every seed; the ratio is "
          "ablation / parent, paired by seed (above 1: the removed part helped).", "",
          *md.table(["ablation", "what changes", "LR", "final val loss", "ratio to parent"],
                 lines)]


def data_scaling(suite: Suite, findings: Findings) -> list[str]:
  if not suite.data_multiples:
    return []
  scaling = findings.scaling
  if scaling is None:
    return ["", "## Data scaling of AdamW", "",
            "Not measured yet: AdamW's learning rate or some of its "
            f"{suite.data_multiple_seeds} seeds at each data multiple are missing."]
  a, b, c = scaling["fit"]
  low, high = scaling["fitted_range"]
  fitted = suite.fitted_multiples()
  unfitted = [m for m in suite.data_multiples if m not in fitted]
  text = (
      f"AdamW at its chosen learning rate ({findings.rows[BASELINE]['lr']:.3g}) and this "
      "suite's schedule shape (warm-up and evaluations scaled with the steps), trained for "
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
      "the fit's floor c.")
  points = [[f"{m:g}x", f"{round(m * scaling['tokens']):,}",
             ", ".join(f"{v:.4f}" for v in values), f"{statistics.fmean(values):.4f}",
             f"{a * m ** -b + c:.4f}", "yes" if m in fitted else "no"]
            for m, values in scaling["points"].items()]
  return ["", "## Data scaling of AdamW", "", text, "",
          *md.table(["data multiple", "tokens", "final val loss (seeds)", "mean", "fit",
                  "fitted"], points),
          "", f"![AdamW's data scaling]({suite.name}_scaling.png)"]


def lr_choice(suite: Suite, rows: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
  lines = []
  for name in methods:
    means = {lr: stats.mean_ci(v) for lr, v in sorted(rows[name]["candidates"].items())}
    points = ", ".join(f"{lr:.3g}: {md.number(mean, '.4f')} +- {md.number(half, '.4f')}"
                       for lr, (mean, half) in means.items())
    lines.append([name, points, f"{rows[name]['lr']:.3g}", md.number(rows[name]["flip"], ".2f")])
  return ["", "## Learning-rate choice", "",
          f"Every point of the finer grid with the mean +- 95% CI of "
          f"{_seeds(suite.lr_choice_seeds)}; the lowest mean is chosen. P(other LR) is "
          "the probability that another point would have been chosen: each point's "
          "mean is drawn around the measured one with the seed-to-seed noise of a "
          "two-way fit (learning rate + seed + noise, the seed's effect common to "
          f"every point and so out of the choice), {FLIP_DRAWS} draws.", "",
          *md.table(["method", "finer grid (LR: mean over seeds)", "chosen LR", "P(other LR)"],
                 lines)]


def lr_grids(suite: Suite, rows: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
  lines = [[name, ", ".join(f"{lr:.3g}: {md.number(loss) if math.isfinite(loss) else 'diverged'}"
                            for lr, loss in rows[name]["grid"])] for name in methods]
  return ["", "## Learning-rate grids (seed 0, final validation loss)", "",
          "Both grids' points, seed 0.", "", *md.table(["method", "grid"], lines),
          "", f"![validation loss]({suite.name}_curves.png)", "",
          f"![final loss vs learning rate]({suite.name}_lr.png)", ""]
