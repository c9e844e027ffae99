"""The benchmark: grids, caching, resuming, the report, reproducing a cell."""

import dataclasses
import functools
import json
import math
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layeropt_jax import OPTIMIZERS
from train.benchmark import methods, report, runner, suites
from train.config import TrainConfig

from tests.helpers import REPO, records, run

TINY_SUITE = suites.Suite(
    "tiny",
    train=dict(config="nano", batch_size=8, seq_len=32, steps=12, warmup=2, eval_every=6,
               eval_batches=2, log_every=3, checkpoint_every=6),
    methods=(suites.Variant("adamw", "adamw", center_lr=1e-2),
             suites.Variant("ladm", "ladm", center_lr=1e-2)),
    ablations=(suites.ABLATIONS[1],),  # LADM without its multipliers
    grid_points=3, seeds=2, description="a test suite")


def test_the_nano_suite_meets_the_brief():
  suite = suites.SUITES["nano"]
  train = suite.train
  assert train["steps"] * train["batch_size"] * train["seq_len"] >= 4_000_000
  assert (suite.grid_points, suite.grid_factor, suite.seeds) == (5, 2.0, 3)
  assert sorted(m.optimizer for m in suite.methods) == sorted(OPTIMIZERS)
  assert {a.parent for a in suite.ablations} == {"ladm", "lamvs", "aovs", "malao"}
  grid = suite.grid(2e-3)
  assert len(grid) == 5 and math.isclose(grid[2], 2e-3)
  assert all(math.isclose(b / a, 2.0) for a, b in zip(grid, grid[1:]))


def test_a_grid_grows_past_its_edge_until_the_best_is_inside(monkeypatch):
  # A loss with its minimum at lr = 3e-2, far above the grid around 1e-3.
  loss = lambda lr: (math.log(lr) - math.log(3e-2)) ** 2
  monkeypatch.setattr(runner, "final_loss", lambda config: loss(config.lr))
  trained = []
  monkeypatch.setattr(runner.Runner, "train",
                      lambda self, configs, extra=False: trained.append([c.lr for c in configs]))
  suite = dataclasses.replace(TINY_SUITE, grid_points=5, max_extensions=6)
  suite_runner = runner.Runner(suite, pathlib.Path("unused"), pathlib.Path("unused"), {})
  best = suite_runner.run_grid(suites.Variant("adamw", "adamw", center_lr=1e-3))
  lrs = sorted(lr for group in trained for lr in group)
  assert trained[0] == pytest.approx(suite.grid(1e-3))
  assert [len(g) for g in trained[1:]] == [1] * (len(trained) - 1)
  assert lrs[0] < best < lrs[-1]
  assert best == pytest.approx(3.2e-2)  # 1e-3 * 2^5, the grid point nearest 3e-2


def test_the_suite_bar_counts_earlier_steps_but_rates_only_new_ones(monkeypatch):
  steps = TINY_SUITE.train["steps"]
  configs = [TINY_SUITE.config(TINY_SUITE.methods[0], lr, 0, pathlib.Path("runs"))
             for lr in (1e-3, 2e-3, 4e-3)]
  # The first run finished in an earlier invocation; the sweep of the other
  # two resumes from a checkpoint at half way.
  monkeypatch.setattr(runner, "finished", lambda c: 1.0 if c is configs[0] else None)

  def resumed_sweep(todo, sweep_dir, on_step):
    assert todo == configs[1:]
    for step in (steps // 2, steps - 1, steps):
      on_step(step)
  monkeypatch.setattr(runner, "train_sweep", resumed_sweep)
  suite_runner = runner.Runner(TINY_SUITE, pathlib.Path("runs"), pathlib.Path("sweeps"), {})
  suite_runner.bar.total = len(configs) * steps
  suite_runner.train(configs)
  assert suite_runner.bar.n == suite_runner.bar.total
  assert suite_runner.bar.initial == steps + 2 * (steps // 2)


def test_next_grid_lr():
  assert runner.next_grid_lr({1.0: 3.0, 2.0: 2.0, 4.0: 2.5}, 2.0) is None
  assert runner.next_grid_lr({1.0: 1.0, 2.0: 2.0, 4.0: 2.5}, 2.0) == 0.5
  assert runner.next_grid_lr({1.0: 3.0, 2.0: 2.0, 4.0: 1.5}, 2.0) == 8.0
  # A diverged run is the worst, not a minimum.
  assert runner.next_grid_lr({1.0: 3.0, 2.0: 2.0, 4.0: math.nan}, 2.0) is None


def test_the_run_hash_covers_what_a_run_computes():
  config = TINY_SUITE.config(TINY_SUITE.methods[0], 1e-2, 0, pathlib.Path("a"))
  moved = dataclasses.replace(config, workdir="b", cache_dir="c", checkpoint_every=2)
  assert suites.run_hash(moved) == suites.run_hash(config)
  for change in (dict(lr=2e-2), dict(seed=1), dict(opt={"b1": 0.8}), dict(eval_every=3)):
    assert suites.run_hash(dataclasses.replace(config, **change)) != suites.run_hash(config)


def test_claim_verdicts():
  rows = {"muon": {"ratio_to": {"adamw": (0.9, 0.01)}},
          "adamw": {"ratio_to": {"muon": (1.1, 0.01)}}}
  better = methods.Claim("x", "better", 4.0)
  worse = dataclasses.replace(better, kind="worse")
  near = dataclasses.replace(better, kind="near")
  verdict = functools.partial(report.verdict, "ladm")
  assert verdict(better, 0.95, 0.02, rows) == "confirmed"
  assert verdict(better, 1.02, 0.01, rows) == "refuted"
  assert verdict(better, 0.99, 0.02, rows) == "inconclusive"
  assert verdict(worse, 1.05, 0.02, rows) == "confirmed"
  assert verdict(worse, 0.95, 0.02, rows) == "refuted"
  assert verdict(near, 1.002, 0.003, rows) == "confirmed"
  assert verdict(near, 1.05, 0.01, rows) == "refuted"
  assert verdict(near, 1.008, 0.01, rows) == "inconclusive"
  best = methods.claims()[-1]
  assert best[0] == "muon" and best[1].kind == "best"
  assert report.verdict(*best, 0.9, 0.01, rows) == "confirmed"
  rows["adamw"]["ratio_to"]["muon"] = (0.95, 0.01)
  assert report.verdict(*best, 0.9, 0.01, rows) == "refuted"


def test_steps_to_reach_interpolates_the_seed_mean():
  curves = [[[10, 4.0], [20, 3.0], [30, 2.0]], [[10, 4.0], [20, 3.0], [30, 2.0]]]
  assert report.steps_to_reach(curves, 2.5) == pytest.approx(25)
  assert report.steps_to_reach(curves, 1.0) is None


def test_a_suite_runs_resumes_reports_and_reproduces_a_cell(tmp_path, monkeypatch):
  cache = tmp_path / "tfds"
  monkeypatch.setenv("TFDS_DATA_DIR", str(cache))
  placement = {"cache_dir": str(cache)}
  runs, sweeps, out = tmp_path / "runs", tmp_path / "sweeps", tmp_path / "results"
  runner.run_suite(TINY_SUITE, runs, sweeps, placement)

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(runner, "train_sweep", no_training)
  runner.run_suite(TINY_SUITE, runs, sweeps, placement)  # everything cached

  variants = report.collect(TINY_SUITE, runs)
  report.write(TINY_SUITE, variants, out, ["--suite", "tiny"])
  written = json.loads((out / "tiny.json").read_text())
  assert written["git_commit"] and written["machine"]["cpus"]
  for name in ("adamw", "ladm"):
    grid = [r for r in written["variants"][name]["runs"] if r["seed"] == 0]
    best = min(grid, key=lambda r: r["final_val_loss"])["lr"]
    assert min(r["lr"] for r in grid) < best < max(r["lr"] for r in grid)
    seeds = [r["seed"] for r in written["variants"][name]["runs"] if r["lr"] == best]
    assert sorted(seeds) == [0, 1]
  ablation = written["variants"]["ladm without the multipliers"]["runs"]
  assert sorted(r["seed"] for r in ablation) == [0, 1]
  markdown = (out / "tiny.md").read_text()
  for heading in ("Methods at their best learning rate", "The reports' claims",
                  "Ablations", "Learning-rate grids"):
    assert heading in markdown
  assert "| LADM beats AdamW by 11% (4.386 vs 4.927) | 0.890 |" in markdown
  assert (out / "tiny_curves.png").stat().st_size > 0
  assert (out / "tiny_lr.png").stat().st_size > 0

  # One cell, rerun alone from the command the report gives for it.
  cell = written["variants"]["ladm"]["runs"][0]
  workdir = tmp_path / "again"
  command = cell["command"].split()
  command[command.index("--workdir") + 1] = str(workdir)
  run(_python(command), cache)
  again = records(workdir)[-1]
  assert again["event"] == "done"
  assert again["val_loss"] == pytest.approx(cell["final_val_loss"], rel=1e-5)


def _python(command):
  assert command[:2] == ["python", "-m"]
  return [sys.executable, *command[1:]]


def test_the_paper_suite_dry_runs_on_cpu(tmp_path):
  parquet = tmp_path / "fineweb"
  parquet.mkdir()
  ids = [f"<urn:uuid:{i}>" for i in range(300)]
  pq.write_table(pa.table({
      "text": [f"document {i} says: the quick brown fox jumps over the lazy dog " * 8
               for i in range(300)],
      "id": ids, "dump": ["CC-MAIN-2024-10"] * 300,
      "url": [f"https://example.org/{i}" for i in range(300)]}), parquet / "shard-0.parquet")
  result = run(_python(["python", "-m", "train.benchmark", "--suite", "paper", "--dry-run",
                        "--data-dir", str(parquet), "--sweeps-dir", str(tmp_path / "runs"),
                        "--dry-run-batch-size", "2", "--dry-run-seq-len", "16"]),
               tmp_path / "tfds")
  assert "dry run of suite paper: 13 methods and 5 ablations configured" in result.stdout
  config = TrainConfig(workdir="x", **{**suites.SUITES["paper"].train,
                                        "data_dir": str(parquet)})
  assert (config.config, config.batch_size, config.data) == ("qwen3-134m", 512, "fineweb")


def test_a_suite_without_its_data_is_a_one_line_error(tmp_path):
  result = subprocess.run(
      _python(["python", "-m", "train.benchmark", "--suite", "paper", "--dry-run",
               "--sweeps-dir", str(tmp_path)]),
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "error: --data fineweb needs --data-dir (a directory of parquet shards)")


def test_the_committed_nano_report_is_its_committed_runs(monkeypatch):
  """results/nano.{json,md} are what the report makes of results/runs/nano, and
  every finished method's best learning rate lies strictly inside its grid."""
  monkeypatch.chdir(REPO)
  suite = suites.SUITES["nano"]
  saved = json.loads(pathlib.Path("results/nano.json").read_text())
  variants = report.collect(suite, pathlib.Path("results/runs"))
  assert variants == saved["variants"]
  rows = report.rows_of(suite, variants)
  assert (report.markdown(suite, rows, saved)
          == pathlib.Path("results/nano.md").read_text())
  outside = [m.name for m in suite.methods if m.name in rows and not rows[m.name]["inside_grid"]]
  assert rows and not outside
