"""The third protocol's results (`train.benchmark.tuned`, `tuned_page`):
each row's search, its confirmation seeds, the verdicts on direction and
magnitude in one Holm family, the bootstrap over validation files."""

import dataclasses
import json
import math
import pathlib

import numpy as np
import pytest

from train.benchmark import runs, stats, suites, tuned, tuned_page
from layeropt_jax import LAMVS_SCALES, UNIT_SCALES
from train.benchmark.methods import REPORTED_ADAMW, Claim
from train.benchmark.plan import Plan

# The rows' true loss factors against AdamW: LADM's is its report's (0.890),
# Muon's lies between, far from its report's 0.72.
FACTORS = {"adamw": 1.0, "ladm": 4.386 / REPORTED_ADAMW, "muon": 0.95}
BEST = {"adamw": (8e-3, 0.3), "ladm": (1e-3, 0.0), "muon": (1.6e-2, 0.1)}
FILE_TOKENS = np.array([128, 256, 64, 512, 128, 100, 300, 128, 40, 200])


# AdamW's best multipliers (the others' best is 1).
BEST_SCALES = {"embedding": 1.41421, "mlp": 0.707107}


def _suite():
  tuning = dataclasses.replace(
      suites.SUITES["nano_tuned"].tuning, extra={},
      multipliers={"adamw": "layer_adam"}, multiplier_labels=("embedding", "mlp"),
      tables={"adamw": {"LAMVS's": dict(LAMVS_SCALES)}}, data_multiples=(0.5, 2.0),
      scaling_seeds=(100, 101, 102))
  return dataclasses.replace(
      suites.SUITES["nano_tuned"], tuning=tuning,
      methods=tuple(suites.Variant(name, name, center_lr=lr / 2)
                    for name, (lr, _) in BEST.items()),
      ablations=())


def _final_loss(config) -> float:
  """A known optimum per row (AdamW's learning rate falls as the square
  root of its budget; layer_adam is AdamW with multipliers); confirmation
  seeds spread by 0.2%."""
  optimizer = "adamw" if config.optimizer == "layer_adam" else config.optimizer
  lr, wd = BEST[optimizer]
  multiple = config.steps / suites.SUITES["nano_tuned"].train["steps"]
  b2 = config.opt.get("b2", 0.95)
  scales = config.opt.get("scales", dict(UNIT_SCALES))
  noise = 0.002 * ((config.seed * 7 + sum(map(ord, optimizer))) % 5 - 2)
  return (3.0 * FACTORS[optimizer] * (1 + noise) * multiple ** -0.05
          + (math.log(config.lr * multiple ** 0.5 / lr)) ** 2
          + (config.opt["weight_decay"] - wd) ** 2 + (b2 - 0.95) ** 2
          # The multipliers' effect, 0 at the uniform table.
          + sum(math.log(scales[k] / best) ** 2 - math.log(best) ** 2
                for k, best in BEST_SCALES.items()))


def _write_run(config, final: float) -> None:
  """A finished run's `run.json` and `metrics.jsonl`, per-file losses
  spread around `final` (their token-weighted mean)."""
  workdir = pathlib.Path(config.workdir)
  workdir.mkdir(parents=True)
  (workdir / "run.json").write_text(json.dumps(config.to_json()))
  rng = np.random.default_rng(abs(hash((config.optimizer, config.seed))) % 2**32)
  by_file = np.linspace(0.6, 1.4, len(FILE_TOKENS)) * (1 + 0.01 * rng.standard_normal(
      len(FILE_TOKENS)))
  by_file *= final / (FILE_TOKENS @ by_file / FILE_TOKENS.sum())
  step = {"step": config.steps, "train_loss": final - 0.1, "lr": config.lr,
          "val_loss": final, "val_loss_by_file": by_file.tolist()}
  done = {"event": "done", "step": config.steps, "val_loss": final, "tokens": 1,
          "val_files": list(range(len(FILE_TOKENS))), "val_file_tokens": FILE_TOKENS.tolist()}
  (workdir / "metrics.jsonl").write_text(json.dumps(step) + "\n" + json.dumps(done) + "\n")


def _train_everything(suite, runs_dir):
  """Runs the tuned plan against `_final_loss`, writing every run it asks
  for, stage by stage as the runner does."""
  plan = Plan(suite, runs_dir, {})
  while True:
    groups, complete = plan.tuned_groups(lambda c: finished_loss(c))
    todo = [c for _, runs in groups for c in runs if finished_loss(c) is None]
    if complete and not todo:
      return {name: search.point for name, (_, search) in plan.searches(finished_loss).items()}
    for config in todo:
      _write_run(config, _final_loss(config))


def finished_loss(config):
  return runs.final_loss(config)


def test_a_tuned_suite_is_judged_on_its_confirmation_seeds_alone(tmp_path):
  """Simulated runs with known optima: collected, searched to the optimum,
  judged on seeds 100-107 only; LADM's reported magnitude is consistent,
  Muon's excluded; "best" is in the Holm family; the page states it all."""
  suite = _suite()
  points = _train_everything(suite, tmp_path)
  variants = runs.collect(suite, tmp_path)
  assert runs.validation_file_tokens(variants, tmp_path, suite) == FILE_TOKENS.tolist()
  findings = tuned.analyse(suite, variants, FILE_TOKENS)
  assert findings.complete
  for name, (lr, wd) in BEST.items():
    assert findings.rows[name]["point"]["lr"] == pytest.approx(lr, rel=1e-5)
    assert findings.rows[name]["point"]["weight_decay"] == pytest.approx(wd, rel=1e-5)
    assert set(findings.rows[name]["seeds"]) == set(range(100, 108))
  # From AdamW's point: its multipliers found, LAMVS's table confirmed
  # there, its learning rate at 2x the budget a sqrt(2) step lower.
  assert points["adamw + tuned multipliers"] == {**points["adamw"], **BEST_SCALES}
  assert [s.name for s in findings.rows["adamw + tuned multipliers"]["search"].path][:2] == [
      "embedding", "mlp"]
  assert points["adamw + LAMVS's multipliers"] == points["adamw"]
  assert points["adamw at 2x"] == {**points["adamw"], "lr": 0.00565685}
  assert set(findings.rows["adamw at 2x"]["seeds"]) == {100, 101, 102}
  # Every target's runs are collected under it, and only those.
  for name, row in findings.rows.items():
    assert {run_hash for run_hash in (r["hash"] for r in row["seeds"].values())} <= {
        r["hash"] for r in variants[name]["runs"]}
  verdicts = findings.verdicts
  assert verdicts["ladm"].direction == "confirmed" and verdicts["ladm"].magnitude == "consistent"
  assert verdicts["muon"].magnitude == "excluded"
  # Muon is not the lowest (LADM is): "best" refuted, inside the one family.
  assert verdicts["muon"].direction == "refuted"
  family = {m: v.p for m, v in verdicts.items()}
  assert {m: v.p_holm for m, v in verdicts.items()} == stats.holm(family)
  # The file bootstrap brackets the ratio of the seeds' mean losses.
  low, high = verdicts["ladm"].files
  assert low < FACTORS["ladm"] < high and high - low < 0.05
  results = {"command": "python -m train.benchmark --suite nano_tuned", "git_commit": "x",
             "machine": {"processor": "p", "cpus": 2, "jax": "j", "optax": "o"},
             "variants": variants,
             "corpus": {"dataset": "python_packages", "version": "1.0.0",
                        "train_tokens": 20_000_000, "files": {"kept": 9, "tests": 2},
                        "distributions": [{"name": "a", "license": "MIT"}]},
             "validation": None}
  markdown = tuned_page.page(suite, findings, results)
  assert "0.20 passes over it, the largest budget 8,192,000 tokens, 0.41 passes" in markdown
  assert "9 files kept, left out 2 tests" in markdown
  assert "seeds 0-2" in markdown and "confirmation seeds 100-107" in markdown
  claim = next(line for line in markdown.splitlines() if line.startswith("| LADM beats"))
  assert "| confirmed | consistent |" in claim
  # The search's path, the chosen value of each stage in bold.
  assert "| adamw | 2 | weight decay: 0 (" in markdown and "**0.3**" in markdown
  # The thesis: AdamW's tuned table beats the uniform one (and LAMVS's).
  found = findings.multipliers["adamw"]
  assert found["table"] == BEST_SCALES and found["uniform"] == "adamw"
  assert found["verdict"] == "confirmed" and found["comparisons"][0]["ratio"] < 0.95
  assert "## Per-component multipliers" in markdown
  assert "| adamw | layer_adam | 1.41 | 0.707 | confirmed |" in markdown
  # The scaling: three budgets, both forms, every row's data multiple.
  scaling = findings.scaling
  assert list(scaling["budgets"]) == [0.5, 1.0, 2.0]
  assert scaling["budgets"][2.0]["lr"] == 0.00565685
  assert set(scaling["multiples"]["combined"]) >= {"adamw", "ladm", "muon"}
  assert "| 2x | 8,192,000 | 0.00566 | 100-102 |" in markdown


def test_a_magnitude_is_consistent_only_inside_the_seed_interval():
  """Direction and magnitude are separate verdicts: a ratio significantly
  below 1 but far from the report's is confirmed and excluded."""
  claim = Claim("X beats AdamW (4.0 vs 4.927)", "better", 4.0)
  seeds = range(8)
  adamw = {s: {"final_val_loss": 3.0 + 0.01 * s} for s in seeds}
  for factor, magnitude in ((0.97, "excluded"), (4.0 / REPORTED_ADAMW, "consistent")):
    x = {s: {"final_val_loss": adamw[s]["final_val_loss"] * factor * (1 + 0.001 * (s % 3 - 1))}
         for s in seeds}
    verdict = tuned.judge([("x", claim)], {"adamw": {"seeds": adamw}, "x": {"seeds": x}},
                          ["adamw", "x"], None)["x"]
    assert verdict.direction == "confirmed" and verdict.magnitude == magnitude
    assert verdict.ratio == pytest.approx(factor, rel=1e-3)
    assert math.isnan(verdict.files[0])


def test_the_file_bootstrap_interval_holds_the_true_ratio():
  """Files whose losses under two methods differ by a known factor plus
  noise: the 95% interval holds the factor and narrows with more files."""
  rng = np.random.default_rng(1)
  widths = []
  for files in (20, 400):
    tokens = rng.integers(50, 500, files).astype(float)
    base = rng.uniform(2, 5, files)
    method = base * 1.05 * (1 + 0.03 * rng.standard_normal(files))
    low, high = tuned.file_ratio_interval(tokens, method, base)
    assert low < 1.05 < high
    widths.append(high - low)
  assert widths[1] < widths[0] / 2


def test_the_runner_trains_every_target_as_sweeps_to_the_end(tmp_path, monkeypatch):
  """`run_suite` on the tuned suite with training simulated (each sweep's
  runs written with `_final_loss`): every target searched and confirmed,
  each sweep a group of runs that differ only in learning rate and seed."""
  from train import train as train_module
  from train.benchmark import runner

  sweeps = []

  def simulated_sweep(configs, sweep_dir, on_step=None):
    train_module.check_sweep(configs)
    sweeps.append(len(configs))
    pathlib.Path(sweep_dir).mkdir(parents=True)
    for config in configs:
      _write_run(config, _final_loss(config))

  monkeypatch.setattr(runner, "train_sweep", simulated_sweep)
  suite = _suite()
  runner.run_suite(suite, tmp_path / "runs", tmp_path / "sweeps", {}, poll_seconds=0.01)
  findings = tuned.analyse(suite, runs.collect(suite, tmp_path / "runs"), FILE_TOKENS)
  assert findings.complete and findings.multipliers["adamw"]["table"] == BEST_SCALES
  assert findings.scaling["budgets"][2.0]["lr"] == 0.00565685
  # A learning-rate stage's 3 points at 3 seeds train as one sweep; each
  # sweep's directory is removed once it has finished.
  assert max(sweeps) == 9
  assert [p.name for p in (tmp_path / "sweeps").rglob("*")] == [suite.name]
