"""The benchmark's results: synthetic and real suites written, read back and reproduced."""

import dataclasses
import functools
import json
import math
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from train.benchmark import analysis, methods, render, results, runs, suites

from tests.helpers import REPO, environment, own_lines, records, run, simulate

SMOKE = suites.SUITES["smoke"]

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

def saved_results(variants, **fields):
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

def test_the_results_of_a_synthetic_suite():
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
  findings = analysis.analyse(suite, variants)
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
  saved = saved_results(variants, validation={
      "windows": 16, "tokens": 528, "dataset": "d", "version": "v", "split_documents": 3,
      "split_tokens": 900, "documents": 3})
  markdown = render.page(suite, findings, saved)
  assert "In progress" not in markdown
  ladm_claim = next(line for line in markdown.splitlines() if line.startswith("| LADM beats"))
  assert ladm_claim.endswith(f"| {render._multiple(scaling, 'ladm')} | - |")
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
  the results are in progress, with the parent's row and not the ablation's."""
  variants = synthetic_variants(SMOKE, lambda c: 3.0 + (math.log(c.lr / 1e-2)) ** 2)
  ablation = SMOKE.ablations[0].name
  variants[ablation]["runs"] = []
  findings = analysis.analyse(SMOKE, variants)
  assert not findings.complete
  assert "adamw" in findings.rows and ablation not in findings.rows
  assert "**In progress**" in render.page(SMOKE, findings, saved_results(variants))

@functools.cache
def _finished_suite():
  suite = dataclasses.replace(SMOKE, methods=(*SMOKE.methods,
                                              suites.Variant("ladm", "ladm", center_lr=1e-2)))
  noise = lambda c: 1e-3 * ((c.seed * 7919 + len(c.optimizer) * 31 + round(c.lr * 1e6)) % 11)
  loss = lambda c: 3.0 + math.log(c.lr / 1e-2) ** 2 + noise(c) + (0.05 if c.opt else 0.0)
  return suite, synthetic_variants(suite, loss)

@settings(max_examples=30, deadline=None)
@given(st.data())
def test_any_finished_subset_of_the_runs_is_written(data):
  """Workers finish groups in any order (an ablation's seeds before its
  parent's, AdamW's data budgets before its learning rate is chosen): the
  results of whichever runs have finished are written, rows only from them.
  Each variant has all, none or a random part of its runs."""
  suite, variants = _finished_suite()
  part = {}
  for name, v in variants.items():
    share = data.draw(st.sampled_from(["all", "none", "some"]), label=name)
    part[name] = {**v, "runs": [r for r in v["runs"] if share == "all"
                                or share == "some" and data.draw(st.booleans())]}
  findings = analysis.analyse(suite, part)
  markdown = render.page(suite, findings, saved_results(part))
  assert ("**In progress**" in markdown) == (not findings.complete)
  assert findings.complete == (part == variants)
  for name, row in findings.rows.items():
    finished = {r["seed"] for r in part[name]["runs"]
                if math.isclose(r["lr"], row["lr"]) and r["data_multiple"] == 1.0}
    assert row["seeds"] and set(row["seeds"]) <= finished

def test_the_frozen_first_protocol_is_what_its_results_file_shows():
  """The first protocol's verdicts and learning rates, kept as data, are the
  cells of results/nano_v1.md's tables."""
  previous = suites.SUITES["nano"].previous
  lines = (REPO / "results" / previous.results).read_text().splitlines()
  cells = lambda line: [c.strip() for c in line.strip("|").split("|")]
  claims_start = next(i for i, line in enumerate(lines) if line.startswith("| claim |"))
  claim_rows = [cells(line) for line in lines[claims_start + 2:] if line.startswith("|")
                ][:len(previous.claims)]
  assert {row[0]: {"ratio": row[2], "verdict": next(c.strip("*") for c in row
                                                    if c.startswith("**"))}
          for row in claim_rows} == previous.claims
  methods_start = next(i for i, line in enumerate(lines) if line.startswith("| method | LR |"))
  lr_rows = [cells(line) for line in lines[methods_start + 2:methods_start + 2 + len(previous.lrs)]]
  assert {row[0]: float(row[1]) for row in lr_rows} == previous.lrs
  assert set(previous.claims) == {claim.text for _, claim in methods.claims()}


def test_the_frozen_second_protocol_is_what_its_runs_show():
  """The second protocol's verdicts, kept as data for the tuned suite's
  "what changed", are what the nano suite's committed runs give: on seeds
  0-7, and on seeds 3-7 alone (those that chose no learning rate)."""
  previous = suites.SUITES["nano_tuned"].previous
  nano = suites.SUITES["nano"]
  rows = analysis.analyse(nano, runs.collect(nano, REPO / "results" / "runs")).rows
  fresh = {name: {**row, "seeds": {s: r for s, r in row["seeds"].items() if s >= 3}}
           for name, row in rows.items()}
  for name, row in fresh.items():
    row["ratio_to"] = {other: None for other in rows[name]["ratio_to"]}
  judged, judged_fresh = analysis.judge(rows), analysis.judge(fresh)
  assert {claim.text: {"ratio": render._mean_ci(judged[m].ratio, judged[m].half),
                       "verdict": judged[m].verdict, "fresh_seeds": judged_fresh[m].verdict}
          for m, claim in methods.claims()} == previous.claims
  assert previous.lrs == {m: float(f"{rows[m]['lr']:.6g}") for m in previous.lrs}
  assert previous.results == "nano.md"


def test_two_workers_at_once_write_what_one_worker_does(tmp_path, data_cache):
  """The smoke suite (every phase) by one worker, then by two at once sharing
  a runs directory: the same runs, bit for bit, and the same results. A rerun
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
  rows = analysis.analyse(SMOKE, one["variants"]).rows
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

  # One cell, rerun alone from the command the results give for it.
  cell = one["variants"]["adamw without weight decay"]["runs"][0]
  workdir = tmp_path / "again"
  command = cell["command"].split()
  command[command.index("--workdir") + 1] = str(workdir)
  run(_python(command), data_cache)
  rerun = records(workdir)[-1]
  assert rerun["event"] == "done"
  assert rerun["val_loss"] == pytest.approx(cell["final_val_loss"], rel=1e-5)

def without_timing(variants):
  """The runs of the results but their wall-clock step times and commands (which
  name the runs directory)."""
  return {name: [{k: v for k, v in r.items() if k not in ("step_time_s", "command")}
                 for r in v["runs"]] for name, v in variants.items()}

def _python(command):
  assert command[:2] == ["python", "-m"]
  return [sys.executable, *command[1:]]

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

def test_a_suite_whose_results_are_not_committed_writes_outside_results(tmp_path):
  """`--suite smoke` from a checkout writes under runs/benchmark/, never into
  the committed results/, and says what it covers."""
  result = subprocess.run([sys.executable, "-m", "train.benchmark", "--suite", "smoke",
                           "--report-only"], cwd=tmp_path, capture_output=True, text=True,
                          env={**environment(tmp_path), "PYTHONPATH": str(REPO)}, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.md"))
  assert written == ["runs/benchmark/results/smoke.md"]
  assert "a check of the machinery, not of any method" in result.stdout
  assert [name for name, suite in suites.SUITES.items() if suite.committed] == ["nano", "nano_tuned"]


@pytest.mark.parametrize("name", [n for n, suite in suites.SUITES.items() if suite.committed])
def test_the_committed_results_are_their_committed_runs(monkeypatch, name):
  """results/<suite>.{json,md} are what the results writer makes of
  results/runs/<suite>; every choice lies strictly inside its grid (a
  weight decay of 0, the domain's edge, aside), and once the suite is
  complete every row has its seeds."""
  monkeypatch.chdir(REPO)
  suite = suites.SUITES[name]
  saved = json.loads(pathlib.Path(f"results/{name}.json").read_text())
  variants = runs.collect(suite, pathlib.Path("results/runs"))
  assert variants == saved["variants"]
  assert saved["previous"] == suite.previous.to_json()
  findings = results.analyse(suite, saved)
  assert results.page(suite, findings, saved) == pathlib.Path(f"results/{name}.md").read_text()
  rows = findings.rows
  if suite.tuning is None:
    assert not [m.name for m in suite.methods
                if m.name in rows and not rows[m.name]["inside_grid"]]
    if findings.complete:
      assert all(len(row["seeds"]) >= suite.seeds for row in rows.values())
      assert findings.scaling is not None
    return
  assert saved["tuning"] == suite.tuning.to_json()
  assert not [(row_name, stage.name) for row_name, row in rows.items()
              for stage in row["search"].path if not stage.inside and stage.chosen != 0.0]
  if findings.complete:
    assert all(len(row["seeds"]) == len(suite.tuning.confirmation_seeds)
               for row in rows.values())

