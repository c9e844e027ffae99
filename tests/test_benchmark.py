"""The benchmark: grids, caching, resuming, the report, reproducing a cell."""

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from layeropt_jax import OPTIMIZERS
from train import data
from train.benchmark import methods, report, runner, suites
from train.benchmark import plan as planning

from tests.helpers import REPO, environment, own_lines, records, run

SMOKE = suites.SUITES["smoke"]


def test_the_nano_suite_meets_the_brief():
  suite = suites.SUITES["nano"]
  train = suite.train
  assert train["steps"] * train["batch_size"] * train["seq_len"] >= 4_000_000
  assert (suite.grid_points, suite.grid_factor) == (5, 2.0)
  assert (suite.lr_choice_points, suite.lr_choice_seeds, suite.seeds) == (2, 3, 8)
  assert suite.lr_refine == 2  # the finer grid around the two best points: sqrt(2) steps
  assert suite.data_multiples == (0.25, 0.5, 1.0, 2.0, 4.0)
  assert suite.data_multiple_seeds == 3
  assert suite.fitted_multiples() == (0.5, 1.0, 2.0, 4.0)
  assert sorted(m.optimizer for m in suite.methods) == sorted(OPTIMIZERS)
  assert {a.parent for a in suite.ablations} == {"ladm", "lamvs", "aovs", "malao"}
  grid = suite.grid(2e-3)
  assert len(grid) == 5 and math.isclose(grid[2], 2e-3)
  assert all(math.isclose(b / a, 2.0) for a, b in zip(grid, grid[1:]))
  # A data budget keeps the schedule's shape.
  quarter = suite.config(suite.methods[0], 4e-3, 0, pathlib.Path("r"), 0.25)
  assert (quarter.steps, quarter.warmup, quarter.eval_every) == (500, 50, 50)
  assert quarter.final_lr_fraction == train["final_lr_fraction"]


def simulate(suite, loss_of_config):
  """Runs `suite`'s plan against `loss_of_config` instead of training:
  returns the choices and every run the plan asked for, by stage."""
  plan = planning.Plan(suite, pathlib.Path("runs"), {})
  losses, stages = {}, []
  loss = lambda config: losses.get(config.workdir)
  while True:
    choices = {m.name: plan.choose_lr(m, loss) for m in suite.methods}
    pending = [c for choice in choices.values() for c in choice.pending]
    if not pending:
      break
    stages.append(sorted((c.lr, c.seed) for c in pending if loss(c) is None))
    losses.update({c.workdir: loss_of_config(c) for c in pending})
  chosen = {name: choice.lr for name, choice in choices.items()}
  for group in plan.final_groups(chosen):
    losses.update({c.workdir: loss_of_config(c) for c in group})
  return choices, stages, losses


def refined_runs(suite, choice, trained=()):
  """The (lr, seed) runs of `choice`'s finer grid, less the `trained` ones."""
  return sorted((lr, seed) for lr in choice.candidates
                for seed in range(suite.lr_choice_seeds) if (lr, seed) not in trained)


def test_a_grid_grows_past_its_edge_until_the_chosen_lr_is_inside():
  # A loss with its minimum at lr = 3e-2, far above the grid around 1e-3.
  suite = dataclasses.replace(SMOKE, methods=SMOKE.methods[:1], grid_points=5,
                              max_extensions=6, ablations=(), data_multiples=())
  choices, stages, _ = simulate(
      dataclasses.replace(suite, methods=(suites.Variant("adamw", "adamw", center_lr=1e-3),)),
      lambda c: (math.log(c.lr) - math.log(3e-2)) ** 2)
  choice = choices["adamw"]
  assert stages[0] == sorted((lr, 0) for lr in suite.grid(1e-3))
  assert [len(s) for s in stages[1:-1]] == [1] * (len(stages) - 2)  # one point at a time
  assert max(choice.grid) == pytest.approx(6.4e-2)  # the grid grew until 3.2e-2 was inside
  assert choice.lr == pytest.approx(3.2e-2)  # 1e-3 * 2^5, the nearest of 1e-3 * 2^(k/2)
  # The finer grid: sqrt(2) steps from below the two best points (1.6e-2,
  # 3.2e-2) to above them, every point at seeds 0 and 1 (SMOKE: two seeds).
  assert sorted(choice.candidates) == pytest.approx(
      [1.6e-2 / math.sqrt(2), 1.6e-2, 1.6e-2 * math.sqrt(2), 3.2e-2, 3.2e-2 * math.sqrt(2)])
  assert min(choice.candidates) < choice.lr < max(choice.candidates)
  assert stages[-1] == refined_runs(suite, choice, {(lr, 0) for lr in choice.grid})


def test_the_lr_choice_takes_the_lower_mean_over_seeds_not_seed_0s_winner():
  suite = dataclasses.replace(SMOKE, methods=SMOKE.methods[:1], grid_points=5,
                              lr_choice_seeds=3, ablations=(), data_multiples=())
  lr = functools.partial(suite.lr_at, 1e-2)
  grid = suite.grid(1e-2)
  assert grid == [lr(k) for k in (-4, -2, 0, 2, 4)]
  # Seed 0 is lucky at grid[2]; over seeds 0-2, grid[1] is better, and every
  # sqrt(2) neighbour of the two is worse.
  table = {(grid[2], 0): 1.0, (grid[2], 1): 2.0, (grid[2], 2): 2.0,
           (grid[1], 0): 1.5, (grid[1], 1): 1.5, (grid[1], 2): 1.5,
           (grid[0], 0): 3.0, (grid[3], 0): 3.0, (grid[4], 0): 3.0}
  choices, stages, _ = simulate(suite, lambda c: table.get((c.lr, c.seed), 5.0))
  choice = choices["adamw"]
  assert sorted(choice.candidates) == [lr(k) for k in (-3, -2, -1, 0, 1)]
  assert stages == [[(x, 0) for x in grid],
                    refined_runs(suite, choice, {(grid[1], 0), (grid[2], 0)})]
  assert choice.candidates[grid[2]] == [1.0, 2.0, 2.0]
  assert choice.candidates[grid[1]] == [1.5, 1.5, 1.5]
  assert choice.lr == grid[1]


def test_a_chosen_lr_on_an_edge_extends_the_finer_grid():
  suite = dataclasses.replace(SMOKE, methods=SMOKE.methods[:1], ablations=(),
                              data_multiples=())
  lr = functools.partial(suite.lr_at, 1e-2)
  assert suite.grid(1e-2) == [lr(-2), lr(0), lr(2)]
  # Seed 0 is best at lr(0), then lr(-2): the finer grid spans lr(-3)..lr(1).
  # Over seeds 0 and 1 its edge lr(-3) is best, so it grows to lr(-4), which
  # is worse: lr(-3) is chosen, now inside.
  losses = {-4: (1.9, 1.9), -3: (1.1, 1.1), -2: (1.2, 1.2), -1: (2.0, 2.0),
            0: (1.0, 3.0), 1: (2.5, 2.5), 2: (2.0,)}
  table = {(lr(k), seed): v for k, values in losses.items() for seed, v in enumerate(values)}
  choices, stages, _ = simulate(suite, lambda c: table.get((c.lr, c.seed), 5.0))
  choice = choices["adamw"]
  trained = {(lr(-2), 0), (lr(0), 0)}
  assert stages == [[(lr(-2), 0), (lr(0), 0), (lr(2), 0)],
                    sorted((lr(k), s) for k in range(-3, 2) for s in (0, 1)
                           if (lr(k), s) not in trained),
                    [(lr(-4), 0), (lr(-4), 1)]]
  assert choice.lr == lr(-3)
  assert sorted(choice.candidates) == [lr(k) for k in range(-4, 2)]
  assert sorted(choice.grid) == [lr(-2), lr(0), lr(2)]


def test_the_runs_after_the_choice_are_listed_once():
  nano = suites.SUITES["nano"]
  plan = planning.Plan(nano, pathlib.Path("runs"), {})
  chosen = {m.name: 4e-3 for m in nano.methods}
  groups = plan.final_groups(chosen)
  workdirs = [c.workdir for group in groups for c in group]
  assert len(workdirs) == len(set(workdirs))
  # "lamvs without the decaying epsilon" is layer_adam at LAMVS's learning
  # rate: the same runs as layer_adam's when both chose the same one.
  assert len(groups) == len(nano.methods) + len(nano.ablations) - 1 + 4
  assert sorted(c.steps for c in groups[-1]) == [8000] * 3


def test_the_worker_flag_is_i_of_n():
  from train.benchmark.__main__ import _worker
  assert _worker("3/4") == (3, 4)
  for bad, message in (("4/4", "must be in \\[0, N\\), got '4/4'"),
                       ("a/4", "expected I/N \\(e.g. 0/4\\), got 'a/4'")):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
      _worker(bad)


def test_max_group_runs_is_at_least_one(capsys):
  from train.benchmark import __main__ as cli
  for bad, message in (("0", "must be at least 1, got 0"),
                       ("two", "expected a whole number, got 'two'")):
    with pytest.raises(SystemExit):
      cli.main(["--suite", "smoke", "--max-group-runs", bad])
    assert f"argument --max-group-runs: {message}" in capsys.readouterr().err


def test_a_group_trains_in_parts_that_the_workers_share(monkeypatch, tmp_path):
  configs = [SMOKE.config(SMOKE.methods[0], lr, seed, tmp_path)
             for lr in (1e-3, 2e-3, 4e-3) for seed in (0, 1)]
  groups = [(0, configs[:5]), (1, configs[5:])]
  trained = {}
  for worker in (0, 1):
    suite_runner = runner.Runner(SMOKE, tmp_path, tmp_path / "sweeps", {}, worker, 2,
                                 max_group_runs=2)
    monkeypatch.setattr(suite_runner, "train", trained.setdefault(worker, []).append)
    suite_runner.run_phase(groups)
  # 5 runs as parts of 2, 2 and 1, keyed 0, 1, 2; the group of 1 keyed 1.
  assert trained == {0: [configs[:2], configs[4:5]], 1: [configs[2:4], configs[5:]]}
  whole = runner.Runner(SMOKE, tmp_path, tmp_path / "sweeps", {})
  assert whole.parts(groups) == groups


def test_ctrl_c_of_a_suite_says_how_to_resume(monkeypatch, tmp_path, capsys):
  from train.benchmark import __main__ as cli
  from train.train import Interrupted

  def interrupted(*args, **kwargs):
    raise Interrupted(400)

  monkeypatch.setattr(runner, "run_suite", interrupted)
  with pytest.raises(SystemExit) as exit_:
    cli.main(["--suite", "smoke", "--runs-dir", str(tmp_path), "--out", str(tmp_path)])
  assert exit_.value.code == 130
  assert capsys.readouterr().err == (
      "interrupted: rerun the same command to resume; finished runs are kept, "
      "the group in training resumes from step 400\n")
  assert not list(tmp_path.iterdir())  # no report of a suite cut short


def test_past_edge():
  assert planning.past_edge([-2, 0, 2], 0, 2) is None
  assert planning.past_edge([-2, 0, 2], -2, 2) == -4
  assert planning.past_edge([-2, 0, 2], 2, 1) == 3
  # A diverged run is the worst, not a minimum.
  assert planning.ranked({1.0: 3.0, 2.0: 2.0, 4.0: math.nan}) == [2.0, 1.0, 4.0]


def test_the_suite_bar_counts_earlier_steps_but_rates_only_new_ones(monkeypatch, tmp_path):
  steps = SMOKE.train["steps"]
  configs = [SMOKE.config(SMOKE.methods[0], lr, 0, tmp_path) for lr in (1e-3, 2e-3, 4e-3)]
  # The first run finished in an earlier invocation; the sweep of the other
  # two resumes from a checkpoint at half way.
  workdir = pathlib.Path(configs[0].workdir)
  workdir.mkdir(parents=True)
  (workdir / "metrics.jsonl").write_text(
      json.dumps({"event": "done", "step": steps, "val_loss": 3.0}) + "\n")

  def resumed_sweep(todo, sweep_dir, on_step):
    assert todo == configs[1:]
    sweep_dir.mkdir(parents=True)
    for step in (steps // 2, steps - 1, steps):
      on_step(step)
  monkeypatch.setattr(runner, "train_sweep", resumed_sweep)
  suite_runner = runner.Runner(SMOKE, tmp_path, tmp_path / "sweeps", {})
  assert suite_runner.bar.n == steps  # where the resumed suite stands, before training
  suite_runner.train(configs)
  assert suite_runner.bar.n == len(configs) * steps
  assert suite_runner.bar.initial == steps + 2 * (steps // 2)


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_groups_checkpoints_are_removed_when_it_finishes(monkeypatch, tmp_path,
                                                          interrupted):
  """They only serve resuming: a finished group's go, an interrupted one's stay."""
  from train.train import Interrupted
  configs = [SMOKE.config(SMOKE.methods[0], lr, 0, tmp_path) for lr in (1e-3, 2e-3)]
  checkpoints = []

  def sweep(todo, sweep_dir, on_step):
    checkpoints.append(sweep_dir / "checkpoints" / "6")
    checkpoints[0].mkdir(parents=True)
    on_step(0)
    if interrupted:
      raise Interrupted(6)
  monkeypatch.setattr(runner, "train_sweep", sweep)
  suite_runner = runner.Runner(SMOKE, tmp_path, tmp_path / "sweeps", {})
  if interrupted:
    with pytest.raises(Interrupted):
      suite_runner.train(configs)
  else:
    suite_runner.train(configs)
  assert checkpoints[0].is_relative_to(tmp_path / "sweeps" / "smoke")
  assert checkpoints[0].exists() == interrupted
  assert (tmp_path / "sweeps" / "smoke").exists()  # the other groups' place


def test_a_data_multiple_must_keep_whole_steps():
  with pytest.raises(ValueError, match="data multiple 0.25 of warmup=2 is not a whole"):
    dataclasses.replace(SMOKE, data_multiples=(0.25,))


def test_the_fit_needs_three_data_multiples():
  with pytest.raises(ValueError, match=r"data_fit_from=1 leaves 2 of data_multiples "
                                       r"\(0.5, 1.0, 2.0\) to fit.*at least 3"):
    dataclasses.replace(SMOKE, data_fit_from=1.0)


def test_the_power_law_fit_and_the_data_multiples():
  x = np.repeat([0.25, 0.5, 1.0, 2.0, 4.0], 3)
  y = 0.8 * x ** -0.4 + 1.5 + np.tile([-1e-3, 0.0, 1e-3], 5)
  a, b, c = report.power_law(x, y)
  assert (a, b, c) == pytest.approx((0.8, 0.4, 1.5), rel=2e-2)
  assert report.data_multiple(0.8 * 2 ** -0.4 + 1.5, (0.8, 0.4, 1.5)) == pytest.approx(2.0)
  assert report.data_multiple(1.4, (0.8, 0.4, 1.5)) == math.inf  # below the floor
  assert math.isnan(report.data_multiple(2.0, (-0.1, 0.4, 1.5)))  # loss rising with data


def synthetic_variants(suite, loss_of_config):
  """The `collect` of a suite whose runs all finished with these losses."""
  _, _, losses = simulate(suite, loss_of_config)
  variants = {}
  for variant in suite.methods + suite.ablations:
    runs = []
    for multiple in {1.0, *suite.data_multiples}:
      for workdir, loss in losses.items():
        config = next((c for c in _configs(suite, variant, multiple) if c.workdir == workdir),
                      None)
        if config is not None:
          runs.append({"lr": config.lr, "seed": config.seed, "data_multiple": multiple,
                       "hash": suites.run_hash(config), "final_val_loss": loss,
                       "val_curve": [[config.steps, loss]],
                       "train_curve": [[config.steps - 1, loss + 0.2], [config.steps, loss]]})
    variants[variant.name] = {"optimizer": variant.optimizer, "opt": variant.opt,
                              "parent": variant.parent, "description": variant.description,
                              "runs": runs}
  return variants


def saved_report(variants, **fields):
  """What `nano.json` holds beside the runs, made up for a synthetic suite."""
  return {"command": "python -m train.benchmark --suite smoke", "git_commit": "x",
          "machine": {"processor": "p", "cpus": 2, "jax": "j", "optax": "o"},
          "variants": variants, **fields}


def _configs(suite, variant, multiple):
  """Every run the plan may ask of `variant`: its grids, grown by up to 4
  finer steps past either edge, at every seed."""
  exponents = suite.grid_exponents()
  lrs = [suite.lr_at(variant.center_lr or 1e-2, k)
         for k in range(exponents[0] - 4, exponents[-1] + 5)]
  return [suite.config(variant, lr, seed, pathlib.Path("runs"), multiple)
          for lr in lrs for seed in range(max(suite.seeds, suite.data_multiple_seeds))]


def test_the_report_of_a_synthetic_suite():
  """Methods whose losses are known: AdamW's follows 0.5 D^-0.3 + 2 in data
  from 0.5x (at 0.25x it lies 1 nat below the curve, the fit leaves it
  out), LADM's is AdamW's at twice the data."""
  suite = dataclasses.replace(SMOKE, train={**SMOKE.train, "steps": 16, "warmup": 4,
                                            "eval_every": 8},
                              methods=(*SMOKE.methods, suites.Variant("ladm", "ladm", center_lr=1e-2)),
                              data_multiples=(0.25, 0.5, 1.0, 2.0, 4.0), data_fit_from=0.5,
                              data_multiple_seeds=3, seeds=8, lr_choice_seeds=3)
  curve = lambda d: 0.5 * d ** -0.3 + 2.0 - (1.0 if d < 0.5 else 0.0)

  def loss(config):
    data = config.steps / suite.train["steps"] * (2.0 if config.optimizer == "ladm" else 1.0)
    bowl = (math.log(config.lr / 1e-2)) ** 2
    noise = 1e-3 * ((config.seed * 7919 + round(config.lr * 1e6)) % 11 - 5) / 5
    return curve(data) + bowl + noise + (0.05 if config.opt else 0.0)
  variants = synthetic_variants(suite, loss)
  findings = report.analyse(suite, variants)
  rows, scaling = findings.rows, findings.scaling
  assert findings.complete
  assert rows["adamw"]["lr"] == rows["ladm"]["lr"] == pytest.approx(1e-2)
  assert len(rows["ladm"]["seeds"]) == 8 and rows["ladm"]["inside_grid"]
  # The last 10% of 16 steps is steps 15 and 16: mean train loss = loss + 0.1.
  assert rows["ladm"]["val_minus_train"] == pytest.approx(-0.1)
  assert rows["ladm"]["weight_decay"] == 0.1
  a, b, c = scaling["fit"]
  assert (a, b, c) == pytest.approx((0.5, 0.3, 2.0), rel=0.05)
  value, lo, hi = scaling["multiples"]["ladm"]
  assert value == pytest.approx(2.0, rel=0.05) and lo < 2.0 < hi
  assert scaling["multiples"]["adamw"][0] == pytest.approx(1.0, rel=0.05)
  saved = saved_report(variants, validation={
      "windows": 16, "tokens": 528, "dataset": "d", "version": "v", "split_documents": 3,
      "split_tokens": 900, "documents": 3})
  markdown = report.markdown(suite, findings, saved)
  assert "In progress" not in markdown
  ladm_claim = next(line for line in markdown.splitlines() if line.startswith("| LADM beats"))
  assert ladm_claim.endswith(f"| {report._multiple(scaling, 'ladm')} | - |")
  assert "| **confirmed** |" in ladm_claim
  assert "steps to AdamW" not in markdown and "speedup" not in markdown
  # Equal figures are stated once, not as a range or a 1x ratio between equals.
  assert "final validation loss lies -0.100 nats from its mean training loss" in markdown
  assert "the decay applied at the peak is 0.001 for adamw, ladm." in markdown
  assert f"b = {b:.3f}" in markdown and "0.25x is shown, not fitted" in markdown
  fitted = {line.split(" | ")[0]: line.split(" | ")[-1] for line in markdown.splitlines()
            if line.startswith("| 0.25x |") or line.startswith("| 4x |")}
  assert fitted == {"| 0.25x": "no |", "| 4x": "yes |"}
  assert len(scaling["points"][1.0]) == 8  # every seed of AdamW's row at 1x


def test_an_ablation_without_a_finished_seed_is_no_row_yet():
  """Its parent's learning rate is chosen, none of its own runs has finished:
  the report is in progress, with the parent's row and not the ablation's."""
  variants = synthetic_variants(SMOKE, lambda c: 3.0 + (math.log(c.lr / 1e-2)) ** 2)
  ablation = SMOKE.ablations[0].name
  variants[ablation]["runs"] = []
  findings = report.analyse(SMOKE, variants)
  assert not findings.complete
  assert "adamw" in findings.rows and ablation not in findings.rows
  assert "**In progress**" in report.markdown(SMOKE, findings, saved_report(variants))


@functools.cache
def _finished_suite():
  suite = dataclasses.replace(SMOKE, methods=(*SMOKE.methods,
                                              suites.Variant("ladm", "ladm", center_lr=1e-2)))
  noise = lambda c: 1e-3 * ((c.seed * 7919 + len(c.optimizer) * 31 + round(c.lr * 1e6)) % 11)
  loss = lambda c: 3.0 + math.log(c.lr / 1e-2) ** 2 + noise(c) + (0.05 if c.opt else 0.0)
  return suite, synthetic_variants(suite, loss)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_any_finished_subset_of_the_runs_is_reported(data):
  """Workers finish groups in any order (an ablation's seeds before its
  parent's, AdamW's data budgets before its learning rate is chosen): the
  report of whichever runs have finished is written, rows only from them.
  Each variant has all, none or a random part of its runs."""
  suite, variants = _finished_suite()
  part = {}
  for name, v in variants.items():
    share = data.draw(st.sampled_from(["all", "none", "some"]), label=name)
    part[name] = {**v, "runs": [r for r in v["runs"] if share == "all"
                                or share == "some" and data.draw(st.booleans())]}
  findings = report.analyse(suite, part)
  markdown = report.markdown(suite, findings, saved_report(part))
  assert ("**In progress**" in markdown) == (not findings.complete)
  assert findings.complete == (part == variants)
  for name, row in findings.rows.items():
    finished = {r["seed"] for r in part[name]["runs"]
                if math.isclose(r["lr"], row["lr"]) and r["data_multiple"] == 1.0}
    assert row["seeds"] and set(row["seeds"]) <= finished


def test_the_run_hash_covers_what_a_run_computes(monkeypatch):
  config = SMOKE.config(SMOKE.methods[0], 1e-2, 0, pathlib.Path("a"))
  moved = dataclasses.replace(config, workdir="b", cache_dir="c", checkpoint_every=2)
  assert suites.run_hash(moved) == suites.run_hash(config)
  for change in (dict(lr=2e-2), dict(seed=1), dict(opt={"b1": 0.8}), dict(eval_every=3)):
    assert suites.run_hash(dataclasses.replace(config, **change)) != suites.run_hash(config)
  # A new version of the dataset (another split, another corpus) is a new run.
  before = suites.run_hash(config)
  monkeypatch.setattr(data.PythonStdlib, "VERSION", "9.0.0")
  assert suites.run_hash(config) != before


def test_claim_tests():
  better = methods.Claim("x", "better", 4.0)
  worse = dataclasses.replace(better, kind="worse")
  near = dataclasses.replace(better, kind="near")
  spread = [-0.01, 0.0, 0.01]  # sd 0.01: a t statistic of (mean - null) / 0.00577
  below = [0.95 + d for d in spread]
  p, verdict = report.claim_test(better, below)
  assert verdict == "confirmed"
  assert p == pytest.approx(scipy.stats.ttest_1samp(below, 1.0).pvalue)
  assert report.claim_test(worse, below)[1] == "refuted"
  # near: inside the band, TOST (the larger one-sided p); outside, the
  # one-sided test beyond the nearer edge.
  at_one = [1.0 + d / 10 for d in spread]
  p, verdict = report.claim_test(near, at_one)
  assert verdict == "confirmed"
  assert p == pytest.approx(max(scipy.stats.ttest_1samp(at_one, 0.99, alternative="greater").pvalue,
                                scipy.stats.ttest_1samp(at_one, 1.01, alternative="less").pvalue))
  far = [1.05 + d for d in spread]
  p, verdict = report.claim_test(near, far)
  assert verdict == "refuted"
  assert p == pytest.approx(scipy.stats.ttest_1samp(far, 1.01, alternative="greater").pvalue)


def test_holm_adjusts_in_steps_and_keeps_the_order():
  # m = 4: 4 * 0.01, 3 * 0.02, max(that, 2 * 0.03), min(1, max(that, 0.6)).
  adjusted = report.holm({"a": 0.02, "b": 0.01, "c": 0.6, "d": 0.03, "e": math.nan})
  assert adjusted == pytest.approx({"b": 0.04, "a": 0.06, "d": 0.06, "c": 0.6})
  assert report.holm({"a": 0.5, "b": 0.4}) == pytest.approx({"b": 0.8, "a": 0.8})


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
    row["ratio_to"] = {other: report.paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name}
  judged = report.judge(rows)
  family = {m: j.p for m, j in judged.items() if m != "muon"}
  assert {m: j.p_holm for m, j in judged.items() if m != "muon"} == pytest.approx(
      report.holm(family))
  assert judged["ladm"].verdict == "confirmed"
  assert judged["malao"].verdict == "confirmed" and judged["aovs"].verdict == "confirmed"
  assert judged["lamvs"].verdict == "inconclusive"  # ratio exactly 1: p = 1
  assert judged["lamo"].uncorrected == "confirmed" and judged["lamo"].p < 0.05
  assert judged["lamo"].verdict == "inconclusive" and judged["lamo"].p_holm >= 0.05
  assert judged["layer_adam"].verdict == "confirmed"  # within 1 +- 0.01, tightly
  assert judged["layer_adam"].seeds_needed == report.equivalence_seeds(
      statistics.stdev(0.2 * o for o in offsets))
  assert judged["ladm"].seeds_needed is None
  # Muon's "best": every other method's ratio to it lies above 1.
  assert judged["muon"].verdict == "confirmed" and math.isnan(judged["muon"].p)
  rows["ladm"]["seeds"] = {s: {"final_val_loss": 2.0 * (0.8 + o)} for s, o in enumerate(offsets)}
  for name, row in rows.items():
    row["ratio_to"] = {other: report.paired_ratio(row["seeds"], rows[other]["seeds"])[:2]
                       for other in rows if other != name}
  assert report.judge(rows)["muon"].verdict == "refuted"


def test_equivalence_seeds_solve_the_tost_power_equation():
  n = report.equivalence_seeds(0.048)
  t = lambda n: (scipy.stats.t.ppf(0.95, n - 1) + scipy.stats.t.ppf(0.9, n - 1)) ** 2
  assert t(n) * 0.048 ** 2 / 0.01 ** 2 <= n
  assert t(n - 1) * 0.048 ** 2 / 0.01 ** 2 > n - 1
  assert 150 < n < 250  # about (1.645 + 1.282)^2 * 4.8^2 = 197
  assert report.equivalence_seeds(0.0) is None


def test_the_choice_flip_probability():
  clear = {1.0: [2.0, 2.1, 2.05], 2.0: [1.5, 1.6, 1.55], 4.0: [2.2, 2.3, 2.25]}
  assert report.choice_flip_probability(clear, 2.0) == 0.0  # no noise beyond the seed's
  noisy = {1.0: [2.0, 2.2, 1.9], 2.0: [2.0, 2.1, 1.95], 4.0: [3.0, 3.1, 3.2]}
  flip = report.choice_flip_probability(noisy, 2.0)
  assert 0.25 < flip < 0.75  # two points within their noise of each other
  assert report.choice_flip_probability(noisy, 2.0) == flip  # a fixed seed
  assert math.isnan(report.choice_flip_probability({1.0: [2.0], 2.0: [1.0]}, 2.0))
  diverged = {**noisy, 8.0: [math.nan, 2.0, 2.0]}
  assert report.choice_flip_probability(diverged, 2.0) == flip


def test_the_previous_reports_verdicts_are_read_from_its_tables():
  previous = report.previous_verdicts(REPO / "results" / "nano_v1.md")
  assert previous["report"] == "nano_v1.md"
  assert set(previous["claims"]) == {claim.text for _, claim in methods.claims()}
  assert previous["claims"]["LAMO is worse than AdamW (5.862)"]["verdict"] == "confirmed"
  assert previous["lrs"]["adamw"] == 0.008
  assert report.previous_verdicts(REPO / "results" / "missing.md") is None


def test_two_workers_at_once_report_what_one_worker_does(tmp_path, data_cache):
  """The smoke suite (every phase) by one worker, then by two at once sharing
  a runs directory: the same runs, bit for bit, and the same report. A rerun
  trains nothing, and one cell reruns alone from the command it records."""
  # The workers load the programs the first run compiled (same programs, same
  # numbers) instead of compiling them again.
  env = {**environment(data_cache), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

  def benchmark(name, *flags):
    return [sys.executable, "-m", "train.benchmark", "--suite", "smoke",
            "--runs-dir", str(tmp_path / name / "runs"), "--out", str(tmp_path / name / "results"),
            "--sweeps-dir", str(tmp_path / name / "sweeps"), "--poll-seconds", "0.5", *flags]
  def run_benchmark(name, *flags):
    result = subprocess.run(benchmark(name, *flags), cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
  run_benchmark("one")
  workers = [subprocess.Popen(benchmark("two", "--worker", f"{i}/2"), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  outputs = [w.communicate(timeout=900) for w in workers]
  assert [w.returncode for w in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
  # Each worker trained a share of the runs.
  assert all("time to first step" in err for _, err in outputs)
  # Finished groups keep no checkpoints.
  assert not [p for name in ("one", "two") for p in (tmp_path / name / "sweeps").rglob("*")
              if p.is_file()]

  one, two = (json.loads((tmp_path / name / "results" / "smoke.json").read_text())
              for name in ("one", "two"))
  assert without_timing(one["variants"]) == without_timing(two["variants"])
  assert ((tmp_path / "one" / "results" / "smoke.md").read_text()
          == (tmp_path / "two" / "results" / "smoke.md").read_text())

  markdown = (tmp_path / "one" / "results" / "smoke.md").read_text()
  for heading in ("Methods at their chosen learning rate", "The reports' claims", "Ablations",
                  "Data scaling of AdamW", "Learning-rate choice", "Learning-rate grids"):
    assert heading in markdown
  assert "In progress" not in markdown
  assert "**Validation set**: the same 16 windows" in markdown  # 2 batches of 8
  assert ("| LADM beats AdamW by 11% (4.386 vs 4.927) | 0.890 | - | - | - | not measured yet |"
          in markdown)
  for plot in ("curves", "lr", "scaling"):
    assert (tmp_path / "one" / "results" / f"smoke_{plot}.png").stat().st_size > 0
  rows = report.analyse(SMOKE, one["variants"]).rows
  for name in ("adamw", "adamw without weight decay"):
    assert sorted(rows[name]["seeds"]) == [0, 1, 2]
  budgets = {(r["data_multiple"], r["seed"]) for r in one["variants"]["adamw"]["runs"]
             if math.isclose(r["lr"], rows["adamw"]["lr"])}
  assert {(m, s) for m in (0.5, 1.0, 2.0) for s in (0, 1)} <= budgets

  # A rerun finds every run finished and trains nothing.
  metrics_files = sorted((tmp_path / "one" / "runs").glob("*/*/metrics.jsonl"))
  before = [f.read_bytes() for f in metrics_files]
  again = run_benchmark("one")
  assert "time to first step" not in again.stderr
  assert [f.read_bytes() for f in metrics_files] == before

  # One cell, rerun alone from the command the report gives for it.
  cell = one["variants"]["adamw without weight decay"]["runs"][0]
  workdir = tmp_path / "again"
  command = cell["command"].split()
  command[command.index("--workdir") + 1] = str(workdir)
  run(_python(command), data_cache)
  rerun = records(workdir)[-1]
  assert rerun["event"] == "done"
  assert rerun["val_loss"] == pytest.approx(cell["final_val_loss"], rel=1e-5)


def without_timing(variants):
  """The runs of a report but their wall-clock step times and commands (which
  name the runs directory)."""
  return {name: [{k: v for k, v in r.items() if k not in ("step_time_s", "command")}
                 for r in v["runs"]] for name, v in variants.items()}


def _python(command):
  assert command[:2] == ["python", "-m"]
  return [sys.executable, *command[1:]]


def test_the_paper_suite_is_the_reports_scale():
  # tests/test_readme.py dry-runs it on CPU (the README's command).
  train = suites.SUITES["paper"].train
  assert (train["config"], train["batch_size"], train["seq_len"], train["data"]) == (
      "qwen3-134m", 512, 1024, "fineweb")


def test_the_accelerator_suite_dry_runs_on_cpu(tmp_path, data_cache):
  result = run(_python(["python", "-m", "train.benchmark", "--suite", "accelerator",
                        "--dry-run", "--sweeps-dir", str(tmp_path / "runs"),
                        "--dry-run-batch-size", "2", "--dry-run-seq-len", "16"]),
               data_cache)
  assert "dry run of suite accelerator: 5 methods and 0 ablations configured" in result.stdout
  suite = suites.SUITES["accelerator"]
  assert [m.name for m in suite.methods] == ["adamw", "muon", "aovs", "ladm", "lamvs"]
  assert (suite.train["config"], suite.grid_points, suite.seeds) == ("small", 3, 1)


def test_a_suite_without_its_data_is_a_one_line_error(tmp_path):
  result = subprocess.run(
      _python(["python", "-m", "train.benchmark", "--suite", "paper", "--dry-run",
               "--sweeps-dir", str(tmp_path)]),
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert own_lines(result.stderr) == [
      "error: --data fineweb needs --data-dir (a directory of parquet shards)"]


def test_the_committed_nano_report_is_its_committed_runs(monkeypatch):
  """results/nano.{json,md} are what the report makes of results/runs/nano;
  every chosen learning rate lies strictly inside its grid, and once the
  suite is complete every row has its seeds."""
  monkeypatch.chdir(REPO)
  suite = suites.SUITES["nano"]
  saved = json.loads(pathlib.Path("results/nano.json").read_text())
  variants = report.collect(suite, pathlib.Path("results/runs"))
  assert variants == saved["variants"]
  findings = report.analyse(suite, variants)
  assert (report.markdown(suite, findings, saved)
          == pathlib.Path("results/nano.md").read_text())
  rows = findings.rows
  assert not [m.name for m in suite.methods if m.name in rows and not rows[m.name]["inside_grid"]]
  if findings.complete:
    assert all(len(row["seeds"]) >= suite.seeds for row in rows.values())
    assert findings.scaling is not None
