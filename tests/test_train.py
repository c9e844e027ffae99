"""The trainer end to end: the CLI, exact resume, parallelism, multi-host, errors."""

import dataclasses
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layeropt_jax import OPTIMIZERS
from train import checkpoint, model, optim, provenance, step
from train.config import TrainConfig, from_args, parser
from train.stopping import Diverged, check_finite
from train.train import _describe_parameters, _initial_params, preflight, train, train_sweep

from tests.helpers import (
    REPO, SHORT, TINY, command, environment, kill_when, one_device_mesh, own_lines, records,
    run, tiny_trainer, train_losses, without_timing)


def snapshot(directory):
  return {p: p.read_bytes() for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, data_cache):
  """The workdir of one finished SHORT run, which the tests below read and
  never write: the uninterrupted run that interrupted ones must end as, and
  a finished run to start from."""
  workdir = tmp_path_factory.mktemp("short") / "run"
  run(command(workdir, *SHORT), data_cache)
  return workdir


def test_resume_conflicts_and_interrupted_saves(tmp_path, data_cache, short_run):
  """One run stopped three ways (Ctrl-C, killed, killed mid-save), each time
  rerun by the same command, ends as the uninterrupted run: each step once."""
  expected = without_timing(records(short_run))
  workdir = tmp_path / "interrupted"
  checkpoints = workdir / "checkpoints"

  # Ctrl-C: exit 130 and one line naming the step a rerun resumes from.
  returncode, stderr = kill_when(command(workdir, *SHORT), data_cache, (checkpoints / "10").is_dir,
                                 sig=signal.SIGINT)
  assert returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr
  resumed_from = re.fullmatch(r"interrupted: rerun the same command to resume from step (\d+)",
                              stderr.strip().splitlines()[-1])
  assert resumed_from and (checkpoints / resumed_from.group(1)).is_dir()

  # Killed after a later checkpoint.
  kill_when(command(workdir, *SHORT), data_cache, (checkpoints / "30").is_dir)
  assert "done" not in (workdir / "metrics.jsonl").read_text()

  # A conflicting rerun is refused, naming the conflict, and changes nothing
  # (preflight, which the CLI runs first, before any data or device work).
  before = snapshot(workdir)
  for flag, value in (("--optimizer", "lion"), ("--steps", "90"), ("--batch-size", "16")):
    # argparse keeps a flag's last value.
    with pytest.raises(ValueError, match=f"^workdir {workdir} holds another run .*"
                                         + flag[2:].replace("-", "_")):
      preflight([from_args(command(workdir, *SHORT, flag, value)[3:])])
  assert snapshot(workdir) == before

  # A save killed mid-write (checkpointing every step) leaves the previous
  # checkpoint restorable: the rerun (checkpointing as usual) resumes from it.
  def save_in_flight():
    return any("tmp" in p.name and int(p.name.partition(".")[0]) > 31
               for p in checkpoints.glob("*"))
  for _ in range(5):  # (a save may end between the check and the kill)
    kill_when(command(workdir, *SHORT, "--checkpoint-every", "1"), data_cache, save_in_flight)
    if save_in_flight():
      break
  assert save_in_flight()
  rerun = run(command(workdir, *SHORT), data_cache)
  resumed_from = re.search(r"resuming from \S+ step (\d+)", rerun.stderr)
  assert resumed_from and int(resumed_from.group(1)) >= 31, rerun.stderr[-2000:]
  assert without_timing(records(workdir)) == expected


def test_a_signal_checkpoints_the_step_in_flight(tmp_path, data_cache, short_run):
  """Ctrl-C (SIGINT) and a preempted job's SIGTERM between checkpoints: the
  steps in flight finish and are checkpointed, the exit code is 128 + the
  signal, the last line names that step, and a rerun ends as the
  uninterrupted run (whose checkpoints, every 10 steps, change no record)."""
  args = [*SHORT, "--checkpoint-every", "100"]  # none but the last step's
  expected = without_timing(records(short_run))
  for sig in (signal.SIGINT, signal.SIGTERM):
    workdir = tmp_path / sig.name
    metrics_file = workdir / "metrics.jsonl"
    past_step_20 = lambda: metrics_file.is_file() and metrics_file.read_text().count("\n") >= 10
    returncode, stderr = kill_when(command(workdir, *args), data_cache, past_step_20, sig=sig)
    assert returncode == 128 + sig, stderr[-2000:]
    assert "Traceback" not in stderr
    stopped = re.fullmatch(r"interrupted: rerun the same command to resume from step (\d+)",
                           stderr.strip().splitlines()[-1])
    step = int(stopped.group(1))
    assert 20 <= step < 60
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()] == [str(step)]
    rerun = run(command(workdir, *args), data_cache)
    assert f"step {step}" in rerun.stderr
    assert without_timing(records(workdir)) == expected


def test_a_diverged_run_stops_with_one_line_and_keeps_its_last_good_checkpoint(
    tmp_path, data_cache):
  """--lr 1e8: the loss stops being finite, the skip limit runs out, the
  run stops at the step that applied a non-finite update, exit code 1, one
  line; no checkpoint, metrics line or plot from that step on, no
  tensorboardX warnings."""
  workdir = tmp_path / "diverged"
  result = subprocess.run(command(workdir, *SHORT, "--lr", "1e8",
                                  "--max-consecutive-nonfinite", "3"),
                          cwd=REPO, env=environment(data_cache), capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr and "NaN or Inf" not in result.stderr
  diverged = re.fullmatch(
      r"diverged: the loss stopped being finite: step (\d+) applied a non-finite update "
      r"after 3 skipped steps in a row \(--max-consecutive-nonfinite\); try a lower --lr "
      r"\(now 1e\+08\)\. The last good checkpoint is (step (\d+)|none); nothing after "
      r"it was saved", own_lines(result.stderr)[-1])
  step = int(diverged.group(1))
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert all(s < step for s in saved)
  assert diverged.group(3) == (str(saved[-1]) if saved else None)
  logged = records(workdir)
  assert all(r["step"] < step for r in logged) and "done" not in str(logged)
  assert not (workdir / "loss_curve.png").exists()


def test_a_validation_loss_that_is_not_finite_stops_a_run(tmp_path):
  checkpoints = checkpoint.Checkpoints(tmp_path / "checkpoints", 3)
  config = from_args(["--workdir", str(tmp_path), "--optimizer", "malao", "--lr", "0.1"])
  finite_steps = {"consecutive_nonfinite": np.zeros((10, 1))}
  check_finite(config, 40, 10, finite_steps, np.array([3.2]), checkpoints)
  with pytest.raises(Diverged, match=re.escape(
      "the loss stopped being finite: the validation loss at step 40 is inf; try a lower "
      "--lr (now 0.1) or a lower --opt clip_threshold (now 1). The last good checkpoint is "
      "none; nothing after it was saved")):
    check_finite(config, 40, 10, finite_steps, np.array([np.inf]), checkpoints)


def test_a_run_logs_a_line_per_component_and_writes_every_parameter(tmp_path, caplog):
  params = model.param_shapes("nano")
  for verbose in (False, True):
    workdir = tmp_path / str(verbose)
    config = from_args(["--workdir", str(workdir), "--optimizer", "ladm",
                        *(["--verbose"] if verbose else [])])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="train"):
      _describe_parameters([config], params)
    table = (workdir / "parameters.txt").read_text().splitlines()
    assert len(table) == len(jax.tree.leaves(params)) == 46
    assert re.fullmatch(r"  model/layers/0/mlp/up_proj/kernel +\(128, 384\) +mlp +x1\.1",
                        next(row for row in table if "0/mlp/up_proj" in row))
    logged = caplog.text.splitlines()
    by_component = [line.split()[:3] for line in logged if re.match(r"  \w+ +\d+ tensors?", line)]
    assert by_component == [["embedding", "1", "tensor"], ["norm", "17", "tensors"],
                            ["mlp", "12", "tensors"], ["attn_qkv", "12", "tensors"],
                            ["attn_out", "4", "tensors"]]
    assert all(row in logged for row in table) == verbose


def test_init_from_a_runs_workdir_starts_a_new_run_from_its_parameters(
    tmp_path, data_cache, short_run):
  """A finished run seeds a longer one: its parameters, a fresh optimizer and
  schedule; rerunning it with a larger --steps is refused, naming --init-from."""
  first = short_run
  with pytest.raises(ValueError, match=re.escape(
      f"use a new --workdir, with --init-from {first} to start from its parameters")):
    preflight([from_args(command(first, *SHORT, "--steps", "120")[3:])])

  longer = [*SHORT, "--steps", "120", "--optimizer", "lion", "--init-from", str(first)]
  run(command(tmp_path / "longer", *longer), data_cache)
  config = from_args(command(tmp_path / "longer", *longer)[3:])
  trainer = step.Trainer([config], mesh=one_device_mesh())
  saved, _ = checkpoint.Checkpoints(first / "checkpoints", 3).restore(
      60, step.Trainer([from_args(command(first, *SHORT)[3:])],
                       mesh=one_device_mesh()).abstract_state)
  for source in (first, first / "checkpoints", first / "checkpoints" / "60"):
    jax.tree.map(np.testing.assert_array_equal, trainer.init(_initial_params(
        dataclasses.replace(config, init_from=str(source)))).params, saved.params)
  # The new run starts where the first ended, on a schedule of its own.
  ended, started = records(first)[-2], records(tmp_path / "longer")[0]
  fresh = records(first)[0]  # the first run's own start, from seeded parameters
  assert abs(started["train_loss"] - ended["train_loss"]) < 0.5 < (
      fresh["train_loss"] - started["train_loss"])
  assert started["lr"] == pytest.approx(
      1e-3 * float(optim.unit_schedule(config)(started["step"] - 1)), rel=1e-6)

  for bad, message in [(tmp_path, "holds no checkpoint"),
                       (first / "run.json", "is neither a .safetensors file nor a run's")]:
    with pytest.raises(ValueError, match=re.escape(f"--init-from {bad} {message}")):
      preflight([from_args(["--workdir", str(tmp_path / "w"), "--init-from", str(bad)])])
  with pytest.raises(ValueError, match="the checkpoint's parameters are not the model's "
                                       r"\(\d+ differ: model/embed_tokens/embedding"):
    preflight([from_args(["--workdir", str(tmp_path / "w"), "--config", "small",
                          "--init-from", str(first)])])


def test_a_sweep_records_a_diverged_run_and_goes_on(tmp_path, data_cache):
  """In a sweep (the benchmark's groups, down to one run) divergence is a
  result: the run finishes, its final loss NaN, as the learning-rate choice
  ranks it."""
  config = from_args(["--workdir", str(tmp_path / "run"), *SHORT, "--lr", "1e8",
                      "--max-consecutive-nonfinite", "3", "--cache-dir", str(data_cache)])
  train_sweep([config], tmp_path / "sweep")
  done = records(tmp_path / "run")[-1]
  assert done["event"] == "done" and np.isnan(done["val_loss"])


def test_a_run_writes_tensorboard_events_a_profile_and_a_summary(tmp_path, data_cache):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  workdir = tmp_path / "run"
  result = run(command(workdir, *SHORT, "--steps", "20", "--profile-steps", "4:6"), data_cache)
  rows = [r for r in records(workdir) if "event" not in r]
  # Each component's norms, every logged step.
  for label in ("embedding", "attn_qkv", "attn_out", "mlp", "norm"):
    assert all(f"update_to_param/{label}" in r and f"grad_norm/{label}" in r for r in rows)
  assert all(r["grad_norm/global"] > 0 for r in rows)
  # TensorBoard holds every scalar of metrics.jsonl, at its step (the
  # per-file losses, one list an evaluation, stay in metrics.jsonl).
  events = EventAccumulator(str(workdir), size_guidance={"scalars": 0})
  events.Reload()
  names = {k for r in rows for k, v in r.items() if k != "step" and not isinstance(v, list)}
  assert names <= set(events.Tags()["scalars"])
  for name in names:
    want = [(r["step"], r[name]) for r in rows if name in r]
    got = [(e.step, e.value) for e in events.Scalars(name)]
    assert [s for s, _ in got] == [s for s, _ in want], name
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)
  # The profile of steps 5-6, for TensorBoard's profile plugin and Perfetto.
  traces = list((workdir / "profile").rglob("*.xplane.pb"))
  assert traces and traces[0].stat().st_size > 0
  assert list((workdir / "profile").rglob("perfetto_trace.json.gz"))
  # Each evaluation's loss in every validation file the held-out set holds
  # tokens of; weighted by the files' tokens (in the last line), their mean
  # is the loss.
  done = records(workdir)[-1]
  tokens = np.asarray(done["val_file_tokens"])
  assert len(done["val_files"]) == len(tokens) > 1 and tokens.sum() == 2 * 8 * 32
  evaluations = [r for r in records(workdir) if "val_loss" in r]
  assert len(evaluations) == 3 and all("val_loss_by_file" in r for r in evaluations)
  for r in evaluations:
    np.testing.assert_allclose(tokens @ r["val_loss_by_file"] / tokens.sum(), r["val_loss"],
                               rtol=1e-5)
  # One summary line: the final validation loss, tokens, time, the outputs.
  final = records(workdir)[-1]["val_loss"]
  summary = result.stderr.strip().splitlines()[-1]
  assert summary.startswith(f"done: validation loss {final:.4f} after 20 steps (5,120 tokens)")
  assert str(workdir) in summary and "metrics.jsonl" in summary


def test_event_files_are_written_without_importing_torch(tmp_path):
  """torch (installed here for the parity tests) stays unimported by the
  log, and importable after it."""
  script = ("import sys\n"
            "from train.metrics import MetricsLog\n"
            f"log = MetricsLog({str(tmp_path / 'metrics.jsonl')!r})\n"
            "log.write({'step': 1, 'train_loss': 2.5})\n"
            "log.close()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "import torch\n")
  subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
  assert list(tmp_path.glob("events.out.tfevents.*"))


def test_bad_input_is_refused_naming_it(tmp_path):
  base = ["--workdir", str(tmp_path / "w")]
  cases = {
      ("--config", "huge"): "unknown --config 'huge'; valid: nano, small",
      ("--optimizer", "sgd"): "unknown --optimizer 'sgd'; valid: lamvs",
      ("--preset", "adam-paper"): "unknown --preset 'adam-paper'; valid: lamvs-paper",
      ("--seq-len", "2048"): "--seq-len 2048 is longer than config nano's max_position_embeddings 1024",
      ("--data-dir", str(tmp_path / "none")): f"--data-dir {tmp_path / 'none'} does not exist",
      ("--data", "fineweb"): "--data fineweb needs --data-dir",
      ("--tokenizer", str(tmp_path / "t.json")): f"--tokenizer {tmp_path / 't.json'} does not exist",
      ("--opt", "b1=1.5"): "b1=1.5",
      ("--opt", "nesterov=True"): "optimizer 'adamw' has no argument(s) nesterov",
      ("--steps", "0"): "--steps must be positive, got 0",
      ("--warmup", "300"): "--warmup 300 must be shorter than --steps 200",
      ("--schedule", "step"): "unknown --schedule 'step'",
      ("--opt", "weight_decay=abc"):
          "--optimizer adamw --opt: weight_decay must be a number, got weight_decay='abc'",
      ("--init-from", str(tmp_path / "m.safetensors")):
          f"--init-from {tmp_path / 'm.safetensors'} does not exist",
      ("--profile-steps", "5"): "--profile-steps expects A:B",
      ("--profile-steps", "5:300"): "--profile-steps 5:300 must satisfy A < B <= --steps 200",
  }
  empty = tmp_path / "empty"
  empty.mkdir()
  cases[("--data", "fineweb", "--data-dir", str(empty))] = (
      f"--data-dir {empty} holds no *.parquet files")
  for args, message in cases.items():
    with pytest.raises(ValueError, match=re.escape(message)):
      preflight([from_args(base + list(args))])
  assert not (tmp_path / "w").exists()
  a_file = tmp_path / "file"
  a_file.write_text("")
  with pytest.raises(ValueError, match=re.escape(f"--workdir {a_file} is a file, not a directory")):
    preflight([from_args(["--workdir", str(a_file)])])


def test_errors_found_at_run_time_touch_nothing(tmp_path):
  with pytest.raises(ValueError, match="--batch-size 12 is not divisible by the 8 devices"):
    train(TrainConfig(workdir=str(tmp_path / "w"), batch_size=12))
  empty = tmp_path / "parquet"
  empty.mkdir()
  pq.write_table(pa.table({"text": pa.array([], pa.string()), "id": pa.array([], pa.string())}),
                 empty / "part-0.parquet")
  with pytest.raises(ValueError, match="dataset fineweb is empty"):
    train(TrainConfig(workdir=str(tmp_path / "w"), data="fineweb", data_dir=str(empty),
                      cache_dir=str(tmp_path / "tfds")))
  assert not (tmp_path / "w").exists()


def test_help_describes_every_flag_and_negative_numbers_parse(tmp_path):
  text = " ".join(parser().format_help().split())
  for field in dataclasses.fields(TrainConfig):
    assert f"--{field.name.replace('_', '-')} " in text and field.metadata["doc"] in text
  assert "--lr X peak learning rate; default: 0.001" in text
  assert "--config NAME model size; one of: nano, small, qwen3-134m, qwen3-0.6b" in text
  # A negative value is a value, and gets the range error, not argparse's usage.
  with pytest.raises(ValueError, match=re.escape("--lr must be >= 0, got -0.003")):
    from_args(["--workdir", str(tmp_path), "--lr", "-3e-3"])
  with pytest.raises(ValueError, match=re.escape("--warmup must be >= 0, got -5")):
    from_args(["--workdir", str(tmp_path), "--warmup", "-5"])


def test_cli_errors_are_one_line(tmp_path):
  result = subprocess.run(command(tmp_path / "w", "--optimizer", "sgd"), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert own_lines(result.stderr) == [
      "error: unknown --optimizer 'sgd'; valid: " + ", ".join(OPTIMIZERS)]


def test_data_parallel_and_fsdp_match_one_device():
  assert jax.device_count() == 8
  single, _ = train_losses(tiny_trainer(one_device_mesh()))
  data_parallel, _ = train_losses(tiny_trainer(step.make_mesh()))
  fsdp_trainer = tiny_trainer(step.make_mesh(), fsdp=True)
  fsdp, state = train_losses(fsdp_trainer)
  np.testing.assert_allclose(data_parallel, single, rtol=1e-5)
  np.testing.assert_allclose(fsdp, single, rtol=1e-5)
  assert single[-1, 0] < single[0, 0]

  # Every parameter and every param-shaped state buffer (ladm: mf, ms, v) is
  # split 8 ways on a dimension divisible by 8; scalars are replicated.
  sharded = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    shard = leaf.addressable_shards[0].data.shape
    if leaf.ndim and max(leaf.shape) % 8 == 0:
      assert np.prod(shard) * 8 == leaf.size, jax.tree_util.keystr(path)
      sharded += 1
    else:
      assert shard == leaf.shape
  params = len(jax.tree.leaves(state.params))
  assert sharded == 4 * params


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_trains_in_the_trainer(name):
  losses, _ = train_losses(tiny_trainer(step.make_mesh(), optimizer=name, steps=6), steps=6)
  assert np.all(np.isfinite(losses)) and losses[-1, 0] < losses[0, 0]


def test_the_small_cpu_step_options_change_no_metric_and_repeat_bitwise():
  """The XLA options chosen on small CPUs without AVX-512 (single-threaded
  Eigen dots, not YNNPACK's) give the step XLA's defaults give: other
  kernels, other summation orders, the same losses and metrics to float32
  rounding over a few steps (1e-4: a few ulps per dot, grown by the
  updates). With them, the steps taken one call each (as a run resumed
  between checkpoints takes some) repeat one call of them all bit for bit
  (on the nano model: the tests' tiny one has dots too small to differ)."""
  config = TrainConfig(config="nano", optimizer="ladm", steps=6, warmup=1)
  tokens = np.random.default_rng(0).integers(
      0, config.model_config.vocab_size, (6, 1, 8, 33), np.int32)

  def metrics(options, steps_per_call):
    trainer = step.Trainer([config], one_device_mesh(), compiler_options=options)
    batches = trainer.global_batch(tokens)
    compiled = trainer.train_steps.lower(trainer.abstract_state, batches).compile().as_text()
    assert ("ynn_fusion" in compiled) == (not options)
    state, outs = trainer.init(), []
    for start in range(0, len(tokens), steps_per_call):
      state, out = trainer.train_steps(
          state, trainer.global_batch(tokens[start:start + steps_per_call]))
      outs.append(out)
    return jax.tree.map(lambda *x: np.concatenate(x), *outs), jax.tree.map(np.asarray, state.params)

  chosen = step._SMALL_CPU_WITHOUT_AVX512_OPTIONS
  # At LLVM's -O2, as a user's process compiles them (the tests' -O0 aside).
  as_users_compile = {**chosen, "xla_backend_optimization_level": 2}
  defaults, together, one_by_one = (metrics({}, 6), metrics(as_users_compile, 6),
                                    metrics(as_users_compile, 1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               defaults, together)
  jax.tree.map(np.testing.assert_array_equal, together, one_by_one)
  assert step.step_compiler_options("tpu") == {}
  small_without_avx512 = ("avx512f" not in provenance.cpu_features()
                          and os.cpu_count() <= step._SMALL_CPU_CORES)
  assert step.step_compiler_options("cpu") == (chosen if small_without_avx512 else {})


def test_clip_norm_clips_the_global_gradient_norm_before_the_optimizer():
  """AdamW's first moment after one step is (1 - b1) x the gradient it got:
  the gradient scaled to global norm `clip_norm` (40 -> 2), and the
  per-component metrics still measure the gradient as computed."""
  params = {"mlp": {"kernel": jnp.ones((4, 4))}, "norm": {"scale": jnp.ones((4,))}}
  grads = {"mlp": {"kernel": jnp.full((4, 4), 10.0)},  # global norm 40
           "norm": {"scale": jnp.zeros((4,))}}
  for clip_norm, scale in ((None, 1.0), (2.0, 2.0 / 40)):
    config = TrainConfig(optimizer="adamw", clip_norm=clip_norm)
    tx = optim.make_optimizer(config)(1e-3)
    _, state = tx.update(grads, tx.init(params), params)
    mu = optax.tree_utils.tree_get(state, "mu")
    np.testing.assert_allclose(mu["mlp"]["kernel"], 0.1 * 10.0 * scale, rtol=1e-6)
    assert float(optim.component_metrics(state)["grad_norm/global"]) == pytest.approx(40.0)
  with pytest.raises(ValueError, match="^--clip-norm must be positive, got 0.0$"):
    TrainConfig(clip_norm=0.0)


def test_nonfinite_steps_are_skipped_and_counted():
  trainer = tiny_trainer(one_device_mesh())
  state = trainer.init()
  params = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(np.nan), state.params)
  before = jax.tree.map(np.asarray, (params, state.opt_state.inner_state.inner_state))
  state, out = trainer.train_steps(step.TrainState(params, state.opt_state),
                                   trainer.global_batch(np.zeros((1, 1, 8, 17), np.int32)))
  assert out["nonfinite_steps"].tolist() == [[1]]
  after = jax.tree.map(np.asarray, (state.params, state.opt_state.inner_state.inner_state))
  jax.tree.map(np.testing.assert_array_equal, after, before)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_and_share_a_checkpoint(tmp_path, data_cache):
  args = ["--steps", "6", "--warmup", "2", "--batch-size", "8", "--seq-len", "32",
          "--log-every", "1", "--eval-every", "3", "--eval-batches", "2", "--no-progress"]
  single = tmp_path / "single"
  run(command(single, *args), data_cache, devices=8)
  pair = tmp_path / "pair"
  port = free_port()
  procs = [subprocess.Popen(
      command(pair, *args, "--coordinator-address", f"127.0.0.1:{port}",
              "--num-processes", "2", "--process-id", str(i)),
      cwd=REPO, env=environment(data_cache, devices=4),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

  ours, theirs = records(pair), records(single)
  assert [r["step"] for r in ours] == [r["step"] for r in theirs]
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a.get("train_loss", 0), b.get("train_loss", 0), rtol=1e-5)
    np.testing.assert_allclose(a.get("val_loss", 0), b.get("val_loss", 0), rtol=1e-5)
    np.testing.assert_allclose(a.get("val_loss_by_file", 0), b.get("val_loss_by_file", 0),
                               atol=2e-4)

  # The checkpoint written by both processes restores here, in one process.
  config = from_args(["--workdir", str(pair), *args])
  trainer = step.Trainer([config])
  restored = [checkpoint.Checkpoints(w / "checkpoints", 3).restore(6, trainer.abstract_state)
              for w in (pair, single)]
  assert restored[0][1] == restored[1][1] == {"0": {"next_index": 6}}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               restored[0][0], restored[1][0])


def test_init_from_a_hugging_face_checkpoint(tmp_path):
  from flax import nnx
  from safetensors.numpy import save_file
  from train import hf

  source = model.Qwen3ForCausalLM(TINY, rngs=nnx.Rngs(7))
  save_file(hf.to_hf_state_dict(source), tmp_path / "model.safetensors")
  trainer = tiny_trainer(step.make_mesh())
  state = trainer.init(hf.load_hf_params(TINY, tmp_path / "model.safetensors"))
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[0], state.params),
               jax.tree.map(np.asarray, nnx.state(source, nnx.Param)))
  assert state.opt_state.inner_state.inner_state.count.tolist() == [0]

  (tmp_path / "x.bin").write_bytes(b"")
  with pytest.raises(ValueError, match="is neither a .safetensors file nor a run's"):
    preflight([from_args(["--workdir", str(tmp_path / "w"), "--init-from",
                          str(tmp_path / "x.bin")])])


def test_presets_set_the_reports_setup(tmp_path):
  for name in ("lamvs-paper", "ladm-paper", "aovs-paper", "lamo-paper", "malao-paper"):
    config = from_args(["--workdir", str(tmp_path), "--preset", name, "--data-dir", str(tmp_path)])
    assert (config.config, config.data, config.batch_size) == ("qwen3-134m", "fineweb", 512)
    assert config.optimizer == name.removesuffix("-paper")
    assert config.opt["weight_decay"] == 0.1
  lamvs = from_args(["--workdir", str(tmp_path), "--preset", "lamvs-paper",
                     "--data-dir", str(tmp_path), "--lr", "1e-3", "--opt", "b2=0.99"])
  assert (lamvs.lr, lamvs.warmup, lamvs.opt) == (1e-3, 800, {"weight_decay": 0.1, "b2": 0.99})
  assert from_args(["--workdir", str(tmp_path), "--preset", "lamo-paper",
                    "--data-dir", str(tmp_path)]).lr == 1e-4


def test_a_sweep_equals_its_runs_one_by_one():
  seeds, lrs = (0, 1, 0, 1), (1e-3, 1e-3, 3e-3, 3e-3)
  alone = [train_losses(tiny_trainer(step.make_mesh(), seeds=(seed,), lrs=(lr,)),
                        data_seeds=(seed,))[0][:, 0] for seed, lr in zip(seeds, lrs)]
  for vmap_runs in (1, 3, 4):  # in turn, groups with a remainder, all at once
    sweep, _ = train_losses(tiny_trainer(step.make_mesh(), seeds=seeds, lrs=lrs,
                                         vmap_runs=vmap_runs), data_seeds=seeds)
    for k in range(len(seeds)):
      np.testing.assert_allclose(sweep[:, k], alone[k], rtol=1e-5)
    assert not np.allclose(sweep[:, 0], sweep[:, 1])  # seeds differ
    assert not np.allclose(sweep[:, 0], sweep[:, 2])  # learning rates differ


def test_train_sweep_writes_each_runs_metrics(tmp_path, data_cache):
  args = SHORT + ["--steps", "20", "--eval-every", "10", "--cache-dir", str(data_cache)]
  configs = [from_args(["--workdir", str(tmp_path / name), *args, *extra])
             for name, extra in (("a", []), ("b", ["--lr", "3e-3", "--seed", "1"]))]
  reached = []
  train_sweep(configs, tmp_path / "sweep", on_step=reached.append)
  assert reached[0] == 0 and reached[-1] == 20 and reached == sorted(reached)
  reached.clear()
  train_sweep(configs, tmp_path / "sweep", on_step=reached.append)  # restored: done
  assert reached == [20]
  for config in configs:
    alone = dataclasses.replace(config, workdir=str(tmp_path / "alone"))
    train(alone)
    ours, theirs = records(config.workdir), records(alone.workdir)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    for a, b in zip(ours, theirs):
      for key in ("train_loss", "val_loss", "lr", "tokens"):
        np.testing.assert_allclose(a.get(key, 0), b.get(key, 0), rtol=1e-5)
    shutil.rmtree(alone.workdir)
  with pytest.raises(ValueError, match="holds another sweep"):
    train_sweep(configs[:1], tmp_path / "sweep")
  with pytest.raises(ValueError, match="differs in batch_size"):
    train_sweep([configs[0], dataclasses.replace(configs[1], batch_size=16)], tmp_path / "x")


def test_bfloat16_compute_keeps_float32_parameters():
  trainer = tiny_trainer(one_device_mesh(), model_config=dataclasses.replace(TINY, dtype="bfloat16"))
  losses, state = train_losses(trainer)
  assert np.all(np.isfinite(losses)) and losses[-1, 0] < losses[0, 0]
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype(np.float32)}
  single, _ = train_losses(tiny_trainer(one_device_mesh()))
  np.testing.assert_allclose(losses, single, rtol=2e-2)  # bf16 rounding only
