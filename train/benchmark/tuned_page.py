"""A tuned suite's results as Markdown (`Suite.tuning`): one function per
section, in the order of the file."""

from __future__ import annotations

import math
from typing import Any

from layeropt_jax.search import Stage
from train import markdown as md
from train.benchmark import render
from train.benchmark.analysis import ALPHA, paired_ratio
from train.benchmark.methods import claims
from train.benchmark.suites import BASELINE, Suite
from train.benchmark.tuned import FILE_BOOTSTRAP, TunedFindings

# How a tuned hyperparameter is written in the tables.
SHOWN = {"lr": "LR", "weight_decay": "weight decay", "b2": "b2"}


def page(suite: Suite, findings: TunedFindings, results: dict[str, Any]) -> str:
  """`results/<suite>.md`: `results` is what `<suite>.json` holds."""
  sections = [
      header(suite, results), progress(findings, results), render.scale(suite),
      corpus(suite, results["corpus"]),
      render.validation(results["validation"],
                        {n: r for n, r in findings.rows.items() if "seeds" in r}),
      rows_table(suite, findings), claims_table(findings),
      what_changed(suite, findings), multipliers(suite, findings),
      data_scaling(suite, findings), search_paths(suite, findings)]
  return "\n".join(line for section in sections for line in section)


def _seeds(seeds: tuple[int, ...]) -> str:
  contiguous = list(seeds) == list(range(seeds[0], seeds[-1] + 1))
  return (f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 2
          else ", ".join(map(str, seeds)))


def _value(name: str, value: float) -> str:
  return f"{value:.3g}" if name != "b2" else f"{value:.4g}"


def header(suite: Suite, results: dict[str, Any]) -> list[str]:
  tuning = suite.tuning
  visits = ", then ".join(SHOWN.get(name, name) for name, _ in tuning.coordinates)
  extra = "; ".join(f"{row}: {', '.join(SHOWN.get(n, n) for n, _ in coordinates)}"
                    for row, coordinates in tuning.extra.items())
  return [
      f"# Benchmark: suite `{suite.name}`", "",
      f"{suite.description}.", "",
      f"**Protocol.** Every row (method and ablation) is tuned by coordinate descent "
      f"(`layeropt_jax.search`), the same for all: {visits}"
      + (f" (and after them, {extra})" if extra else "")
      + f". Each visit evaluates a grid around the current value at the selection "
      f"seeds {_seeds(tuning.selection_seeds)} and keeps the lowest mean; while it "
      f"lies on an edge the grid grows one point past it (up to "
      f"{tuning.max_extensions}). The learning rate moves in sqrt(2) steps, the weight "
      "decay over 0 and 1/3, 1 and 3 times its current value, b2 in halvings and "
      "doublings of 1 - b2. The confirmation seeds "
      f"{_seeds(tuning.confirmation_seeds)}, which no choice has seen, alone give every "
      "mean, ratio, interval and verdict below (a seed fixes the initialisation and "
      "the data order, so rows are compared seed by seed).", "",
      *render.provenance(suite, results)]


def progress(findings: TunedFindings, results: dict[str, Any]) -> list[str]:
  return render.progress_of(
      results, findings.complete, findings.missing,
      f"{findings.open_searches} searches are still running or waiting (they will need "
      "more)" if findings.open_searches else "",
      "Tables cover what has finished; `n` is the number of confirmation seeds so far.")


def corpus(suite: Suite, held: dict[str, Any]) -> list[str]:
  run_tokens = suite.train["steps"] * suite.train["batch_size"] * suite.train["seq_len"]
  largest = max((1.0, *suite.tuning.data_multiples)) * run_tokens
  lines = [f"**Corpus**: `{held['dataset']}` {held['version']}, "
           f"{held['train_tokens']:,} tokens in its train split; a run reads "
           f"{run_tokens:,} tokens, {run_tokens / held['train_tokens']:.2f} passes over "
           f"it, the largest budget {largest:,.0f} tokens, "
           f"{largest / held['train_tokens']:.2f} passes (each window at most once)."]
  if "distributions" in held:
    files = held["files"]
    left_out = ", ".join(f"{count} {why}" for why, count in files.items() if why != "kept")
    licences = sorted({d["license"] for d in held["distributions"]})
    lines[0] += (f" The Python sources of {len(held['distributions'])} pinned PyPI "
                 f"distributions ({', '.join(licences)}; each with its version, wheel "
                 f"sha256 and licence in `{suite.name}.json`): {files['kept']:,} files "
                 f"kept, left out {left_out}.")
  return [*lines, ""]


def rows_table(suite: Suite, findings: TunedFindings) -> list[str]:
  rows, adamw = findings.rows, findings.rows.get(BASELINE, {})
  tuned = list(dict.fromkeys(name for v in (*suite.methods, *suite.ablations)
                             for name, _ in suite.tuning.coordinates_of(v)))
  lines = []
  names = [v.name for v in (*suite.methods, *suite.ablations) if v.name in rows]
  for name, row in sorted(((n, rows[n]) for n in names),
                          key=lambda item: item[1].get("mean", math.inf)):
    search = row["search"]
    chosen = [_value(n, row["point"][n]) if n in row["point"] else "-" for n in tuned]
    inside = ("-" if not search.path else
              "yes" if all(s.inside for s in search.path) else
              "no: " + ", ".join(SHOWN.get(s.name, s.name) for s in search.path
                                 if not s.inside))
    loss = ratio = files = "-"
    if "seeds" in row:
      loss = f"{render._mean_ci(row['mean'], row['ci'])} (n={len(row['seeds'])})"
    verdict = findings.verdicts.get(name)
    if "seeds" in row and "seeds" in adamw and name != BASELINE:
      ratio = render._mean_ci(*paired_ratio(row["seeds"], adamw["seeds"])[:2])
      if verdict is not None:
        files = f"[{md.number(verdict.files[0], '.4f')}, {md.number(verdict.files[1], '.4f')}]"
    state = md.number(row.get("state_bytes_per_param"), ".2f")
    status = "searching" if not search.done else ("" if "seeds" in row else "confirming")
    lines.append([name + (f" ({status})" if status else ""), *chosen, inside, loss, ratio,
                  files, _multiple(findings.scaling, name), state])
  return [
      "## Every row at the hyperparameters its search chose", "",
      "Final validation loss (nats/token) as mean +- 95% CI over the confirmation "
      "seeds; the ratio to AdamW paired by seed, its 95% CI over seeds and, for the "
      f"reports' claims, over validation files ({FILE_BOOTSTRAP} bootstrap resamples "
      "of the held-out files, token-weighted). Inside grids: whether every chosen "
      "value had grid points on both sides (a weight decay of 0 lies on the "
      "domain's edge). AdamW data to match: the budget, as a multiple of this "
      "suite's, at which AdamW reaches the row's mean loss (\"AdamW's data scaling\" "
      "below), with an interval holding both forms' bootstrap intervals.", "",
      *md.table(["row", *(SHOWN.get(n, n) for n in tuned), "inside grids",
                 "final val loss", "ratio to AdamW", "file bootstrap", "AdamW data to match",
                 "state B/param"], lines)]


def claims_table(findings: TunedFindings) -> list[str]:
  lines = []
  for method, claim in claims():
    v = findings.verdicts.get(method)
    if v is None:
      lines.append([claim.text, "-", "-", "-", "-", "-", "not measured yet", "-"])
      continue
    lines.append([claim.text, f"{v.reported:.3f}", render._mean_ci(v.ratio, v.half),
                  f"[{md.number(v.files[0], '.4f')}, {md.number(v.files[1], '.4f')}]",
                  md.number(v.p, ".3g"), md.number(v.p_holm, ".3g"), v.direction,
                  v.magnitude])
  return [
      "", "## The reports' claims", "",
      "Each claim against AdamW on the confirmation seeds: the ratio of the method's "
      "final loss to AdamW's (the report's, and ours with its intervals over seeds "
      "and over validation files). Direction: *better*/*worse* claims by a two-sided "
      "t-test of the paired ratios against 1, *near* ones by two one-sided tests "
      "against 1 +- 0.01; *best* by one test that every other method lies above it "
      "(the largest of their one-sided p), or that the lowest lies below it. All "
      f"claims are one family: Holm's correction at {ALPHA:g} over every p. "
      "Magnitude: whether the report's ratio lies inside our seed CI. Both are "
      "verdicts at this scale (\"Scale\" above): a magnitude excluded here says the "
      "rule alone does not produce the reported size at 1M parameters, not that the "
      "report mismeasured its own run.", "",
      *md.table(["claim", "reported ratio", "measured ratio", "file bootstrap", "p",
                 "p (Holm)", "direction", "magnitude"], lines)]


def what_changed(suite: Suite, findings: TunedFindings) -> list[str]:
  """The second protocol's verdicts beside these: on its own seeds, on the
  seeds that chose nothing, and now."""
  previous = suite.previous
  if previous is None or not findings.verdicts:
    return []
  lines = []
  for method, claim in claims():
    before, now = previous.claims.get(claim.text), findings.verdicts.get(method)
    if before is None or now is None:
      continue
    fresh = before.get("fresh_seeds", "-")
    if before["verdict"] == now.direction:
      why = "same verdict"
    elif fresh == now.direction:
      why = "fresh seeds: the second protocol's seeds that chose nothing give it already"
    else:
      why = ("tuning beyond the learning rate, clipping and the corpus read once "
             "(together: this suite does not separate them)")
    lines.append([claim.text, before["ratio"], before["verdict"], fresh,
                  render._mean_ci(now.ratio, now.half), now.direction, why])
  return ["", "### What changed", "",
          f"The second protocol's verdicts ({previous.results}: {previous.protocol}), "
          "on its seeds 0-7 and on its seeds 3-7 alone, beside these.", "",
          *md.table(["claim", "previous ratio", "previous verdict", "on its seeds 3-7",
                     "ratio now", "verdict now", "why"], lines)]


def _stage(stage: Stage) -> str:
  means = {v: (math.inf if any(x != x for x in losses) else sum(losses) / len(losses))
           for v, losses in sorted(stage.losses.items())}
  cell = lambda v, m: (f"**{_value(stage.name, v)}**" if v == stage.chosen
                       else _value(stage.name, v)) + f" ({md.number(m, '.4f')})"
  return f"{SHOWN.get(stage.name, stage.name)}: " + ", ".join(cell(v, m)
                                                              for v, m in means.items())


def search_paths(suite: Suite, findings: TunedFindings) -> list[str]:
  lines = [[name, i + 1, _stage(stage)] for name, row in findings.rows.items()
           for i, stage in enumerate(row["search"].path)]
  return ["", "## The searches", "",
          "Every stage of every row's search: the grid's values with their mean final "
          f"validation loss over seeds {_seeds(suite.tuning.selection_seeds)} (inf: a "
          "seed diverged), the chosen value in bold.", "",
          *md.table(["row", "stage", "grid (mean loss)"], lines)]


def _multiple(scaling: dict[str, Any] | None, name: str) -> str:
  """A row's data multiple by the power law and the interval of both forms."""
  if scaling is None or name not in scaling["multiples"]["combined"]:
    return "-"
  return render.multiple_cell(*scaling["multiples"]["combined"][name])


def multipliers(suite: Suite, findings: TunedFindings) -> list[str]:
  if not findings.multipliers:
    return []
  labels = suite.tuning.multiplier_labels
  lines, comparisons = [], []
  for name, found in findings.multipliers.items():
    table = found["table"]
    lines.append([name, found["optimizer"], *(md.number(table[l], ".3g") if table else "-"
                                              for l in labels),
                  found["verdict"], md.number(found["p_holm"], ".3g")])
    for c in found["comparisons"]:
      comparisons.append([c["name"], c["reference"], render._mean_ci(c["ratio"], c["half"]),
                          md.number(c["p"], ".3g"), _multiple(findings.scaling, c["name"])])
  return [
      "", "## Per-component multipliers", "",
      "The thesis of all five reports: components want different learning rates. "
      "For each row named, its per-component multipliers searched at the point its "
      "own search chose (each label in turn over 1/2 to 2 in sqrt(2) steps, extended "
      "past an edge, at the selection seeds; then again over the labels that moved; "
      "\"The searches\" below), then judged on the confirmation seeds against the "
      "uniform table and the reports' tables at the same point. The verdict: tuned "
      "multipliers beat uniform ones (two-sided paired t-test, Holm over the rows "
      f"searched, at {ALPHA:g}).", "",
      *md.table(["row", "trained by", *labels, "tuned beat uniform", "p (Holm)"], lines),
      "", *md.table(["table", "against", "ratio", "p", "AdamW data to match"], comparisons)]


def data_scaling(suite: Suite, findings: TunedFindings) -> list[str]:
  scaling = findings.scaling
  if scaling is None:
    return ([] if not suite.tuning.data_multiples else
            ["", "## AdamW's data scaling", "", "Waiting for every budget's seeds.", ""])
  tokens = suite.train["steps"] * suite.train["batch_size"] * suite.train["seq_len"]
  budgets = [[f"{m:g}x", f"{m * tokens:,.0f}", f"{b['lr']:.3g}",
              _seeds(tuple(b["seeds"])), f"{b['mean']:.4f}"]
             for m, b in scaling["budgets"].items()]
  (a, b, c), intervals = scaling["fit"], scaling["fit_intervals"]
  fitted = ", ".join(f"{n} = {v:.3g} [{lo:.3g}, {hi:.3g}]"
                     for n, v, (lo, hi) in zip("abc", (a, b, c), intervals))
  return [
      "", "## AdamW's data scaling", "",
      "AdamW at every budget, each read once, its learning rate searched at each "
      "budget other than 1x around the 1x choice (sqrt(2) steps, selection seeds), "
      "then confirmed on its seeds.", "",
      *md.table(["budget", "tokens", "LR", "seeds", "mean final val loss"], budgets), "",
      f"`L(D) = a D^-b + c` over every seed: {fitted} (2.5-97.5 percentiles of "
      "bootstrap replicates over seeds). The second form interpolates linearly in "
      "log D between the budgets' means and assumes no shape; each row's \"AdamW data "
      "to match\" gives the power law's value with an interval from the lowest to the "
      "highest percentile of either form (seed and model-form uncertainty).", ""]
