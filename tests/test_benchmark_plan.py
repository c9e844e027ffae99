"""The benchmark's suites, plan and runner: grids, the learning-rate choice, workers, resuming."""

import argparse
import dataclasses
import functools
import json
import math
import pathlib

import pytest

import layeropt_jax
from layeropt_jax import OPTIMIZERS
from train import corpora
from train import train as train_module
from train.benchmark import plan as planning
from train.benchmark import methods, runner, suites

from tests.helpers import simulate

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
  from train.stopping import Interrupted

  def interrupted(*args, **kwargs):
    raise Interrupted(400)

  monkeypatch.setattr(runner, "run_suite", interrupted)
  with pytest.raises(SystemExit) as exit_:
    cli.main(["--suite", "smoke", "--runs-dir", str(tmp_path), "--out", str(tmp_path)])
  assert exit_.value.code == 130
  assert capsys.readouterr().err == (
      "interrupted: rerun the same command to resume; finished runs are kept, "
      "the group in training resumes from step 400\n")
  assert not list(tmp_path.iterdir())  # no results of a suite cut short

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
  from train.stopping import Interrupted
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

def test_the_run_hash_covers_what_a_run_computes(monkeypatch):
  config = SMOKE.config(SMOKE.methods[0], 1e-2, 0, pathlib.Path("a"))
  moved = dataclasses.replace(config, workdir="b", cache_dir="c", checkpoint_every=2)
  assert suites.run_hash(moved) == suites.run_hash(config)
  for change in (dict(lr=2e-2), dict(seed=1), dict(opt={"b1": 0.8}), dict(eval_every=3)):
    assert suites.run_hash(dataclasses.replace(config, **change)) != suites.run_hash(config)
  # A new version of the dataset (another split, another corpus) is a new run.
  before = suites.run_hash(config)
  monkeypatch.setattr(corpora.PythonStdlib, "VERSION", "9.0.0")
  assert suites.run_hash(config) != before

def test_the_paper_suite_is_the_reports_scale():
  # tests/test_readme.py dry-runs it on CPU (the README's command).
  train = suites.SUITES["paper"].train
  assert (train["config"], train["batch_size"], train["seq_len"], train["data"]) == (
      "qwen3-134m", 512, 1024, "fineweb")


def test_a_methods_reports_lr_is_its_presets():
  # The benchmark's rows import nothing of the trainer; the presets the
  # trainer runs the reports' setups with must agree with them.
  from train.config import PRESETS
  with_preset = {name.removesuffix("-paper"): preset["lr"] for name, preset in PRESETS.items()}
  assert with_preset == {m.name: m.reports_lr for m in methods.METHODS if m.name in with_preset}


def test_the_tuned_suite_judges_on_seeds_no_choice_has_seen():
  suite = suites.SUITES["nano_tuned"]
  tuning = suite.tuning
  assert not set(tuning.selection_seeds) & set(tuning.confirmation_seeds)
  assert tuning.selection_seeds == (0, 1, 2) and len(tuning.confirmation_seeds) >= 8
  with pytest.raises(ValueError, match="must be disjoint"):
    suites.Tuning(selection_seeds=(0, 1), confirmation_seeds=(1, 2))
  assert suite.train["data"] == "python_packages" and suite.train["clip_norm"] == 1.0
  assert [name for name, _ in tuning.coordinates] == ["lr", "weight_decay", "lr"]
  assert set(tuning.extra) == {"ladm", "lamvs"}
  assert sorted(m.optimizer for m in suite.methods) == sorted(OPTIMIZERS)
  # The weight-decay grid spans 0 to 3x the default.
  wd = dict(tuning.coordinates)["weight_decay"]
  assert [wd.value(0.1, k) for k in wd.steps()] == [0.0, 0.0333333, 0.1, 0.3]
  # The multipliers: AdamW's (through layer_adam, AdamW with a table) and
  # AOVS's, over the labels the nano model has parameters of; every budget
  # read at most once.
  assert tuning.multipliers == {"adamw": "layer_adam", "aovs": "aovs"}
  assert {k: v for k, v in layeropt_jax.hyperparameters("layer_adam").items()
          if k in ("b1", "b2", "eps", "weight_decay")} == {
              k: v for k, v in layeropt_jax.hyperparameters("adamw").items()
              if k in ("b1", "b2", "eps", "weight_decay")}
  assert set(tuning.multiplier_labels) == set(layeropt_jax.COMPONENTS) - {"head"}
  assert len(tuning.scaling_seeds) >= 5 and not set(tuning.scaling_seeds) & {0, 1, 2}
  tokens = max(tuning.data_multiples) * suite.train["steps"] * 16 * 128
  assert tokens <= 47_779_730  # the python_packages train split (results/nano_tuned.md)
  with pytest.raises(ValueError, match="scaling seeds"):
    suites.Tuning(scaling_seeds=(2, 3))
  with pytest.raises(ValueError, match="not labels"):
    suites.Tuning(multiplier_labels=("mlp", "ffn"))


def test_tuned_searches_on_simulated_losses_then_confirmation_seeds(tmp_path):
  """Simulated final losses with a known best learning rate and decay per
  row: every search ends there, each stage's runs train as sweeps (runs
  differing in learning rate and seed only), the ablations start at their
  parent's learning rate, the confirmation runs use no selection seed, and
  the workers own each target's stages in turn."""
  suite = dataclasses.replace(
      suites.SUITES["nano_tuned"],
      methods=(suites.Variant("adamw", "adamw", center_lr=2e-3),
               suites.Variant("ladm", "ladm", center_lr=1e-3)),
      ablations=(suites.ABLATIONS[1],),  # ladm without the multipliers
      tuning=dataclasses.replace(suites.SUITES["nano_tuned"].tuning, multipliers={},
                                 tables={}, data_multiples=(), scaling_seeds=()))
  best = {"adamw": (8e-3, 0.3), "ladm": (1e-3, 0.0)}

  def loss(config):
    lr, wd = best["adamw" if config.optimizer == "adamw" else "ladm"]
    b2 = config.opt.get("b2", 0.95)
    return (3.0 + 0.01 * config.seed + (math.log(config.lr) - math.log(lr)) ** 2
            + (config.opt["weight_decay"] - wd) ** 2 + (b2 - 0.95) ** 2)

  plan = planning.Plan(suite, tmp_path, {})
  rows = {t.variant.name: t for t in suite.targets()}
  assert plan.start(rows["ladm without the multipliers"], {}) == {"lr": 1e-3,
                                                                  "weight_decay": 0.1}
  assert plan.start(rows["ladm"], {}) == {"lr": 1e-3, "weight_decay": 0.1, "b2": 0.95}
  known, trained = {}, []
  while True:
    groups, complete = plan.tuned_groups(lambda c: known.get(c.workdir))
    pending = [c for _, runs in groups for c in runs if c.workdir not in known]
    if complete and not pending:
      break
    for sweep in train_module.sweeps(pending):
      train_module.check_sweep(sweep)
      for config in sweep:
        known[config.workdir] = loss(config)
        trained.append(config)
  searches = plan.searches(lambda c: known.get(c.workdir))
  points = {name: search.point for name, (_, search) in searches.items()}
  assert points["adamw"] == {"lr": 0.008, "weight_decay": 0.3}
  assert points["ladm"]["lr"] == 0.001 and points["ladm"]["weight_decay"] == 0.0
  assert points["ladm"]["b2"] == 0.95
  assert all(stage.inside for stage in searches["adamw"][1].path)
  confirmations = [runs for _, runs in groups]
  assert [len(g) for g in confirmations] == [8, 8, 8]
  assert {c.seed for c in trained} == {0, 1, 2, *range(100, 108)}
  assert {c.seed for g in confirmations for c in g} == set(range(100, 108))
  first = confirmations[0][0]
  assert first.opt == {"weight_decay": 0.3} and first.clip_norm == 1.0
  # Each target's owner key: its place plus its stages done.
  assert [key for key, _ in groups] == [i + len(searches[t.variant.name][1].path)
                                        for i, t in enumerate(suite.targets())]
