"""Trains a Flax NNX Qwen3 with a layeropt_jax optimizer, resuming where it stopped.

  python -m train.train --config nano --optimizer ladm --lr 3e-3 --steps 200 --workdir runs/x

See `train/config.py` (or `--help`) for every flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import json
import logging
import os
import pathlib
import signal
import sys
import time
from typing import Any

from flax import nnx
import grain
import jax
import numpy as np
import tqdm

from layeropt_jax import get_optimizer
from train import checkpoint, data, files, hf, metrics, model, optim, step
from train.config import TrainConfig, from_args
from train.stopping import Diverged, Interrupted, StopSignals, check_finite
from train.validation import Validation, held_out_set

log = logging.getLogger("train")
# Every parameter's component label and LR multiplier, in a run's workdir.
PARAMETERS_FILE = "parameters.txt"


def init_distributed(config: TrainConfig) -> None:
  """Joins a multi-process run; CPU processes talk over gloo."""
  if not (config.distributed or config.coordinator_address):
    return
  if jax.config.jax_platforms in (None, "", "cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(config.coordinator_address, config.num_processes,
                             config.process_id)


# What the runs of a sweep may differ in, beside their workdirs.
SWEEP_AXES = ("lr", "seed")


def check_sweep(configs: Sequence[TrainConfig]) -> None:
  """A sweep's runs differ only in learning rate and seed, each in its own workdir."""
  base = dataclasses.asdict(configs[0])
  for config in configs[1:]:
    differ = [k for k, v in dataclasses.asdict(config).items()
              if k not in (*SWEEP_AXES, "workdir") and v != base[k]]
    if differ:
      raise ValueError(f"the runs of a sweep may differ only in lr and seed; "
                       f"{config.workdir} differs in {', '.join(differ)}")
  workdirs = [c.workdir for c in configs]
  if len(set(workdirs)) != len(workdirs):
    raise ValueError(f"the runs of a sweep need distinct workdirs, got {workdirs}")


def sweeps(configs: Sequence[TrainConfig]) -> list[list[TrainConfig]]:
  """`configs` in sweeps (runs that differ only in learning rate and seed),
  in the order of their first run."""
  by_rest = {}
  for config in configs:
    rest = json.dumps({k: v for k, v in dataclasses.asdict(config).items()
                       if k not in (*SWEEP_AXES, "workdir")}, sort_keys=True, default=str)
    by_rest.setdefault(rest, []).append(config)
  return list(by_rest.values())


def preflight(configs: Sequence[TrainConfig], sweep_dir: pathlib.Path | None = None) -> None:
  """Checks what can fail before any data is prepared or any file written:
  the paths the runs read, their optimizer's arguments, that their workdirs
  hold no other run, and the device count.

  Raises:
    ValueError: in one line, naming the flag and the value.
  """
  for config in configs:
    if config.workdir is None:
      raise ValueError("--workdir is required")
    if pathlib.Path(config.workdir).exists() and not pathlib.Path(config.workdir).is_dir():
      raise ValueError(f"--workdir {config.workdir} is a file, not a directory")
    if config.data_dir is not None:
      if not pathlib.Path(config.data_dir).is_dir():
        raise ValueError(f"--data-dir {config.data_dir} does not exist")
      if config.data == "fineweb" and not any(pathlib.Path(config.data_dir).glob("*.parquet")):
        raise ValueError(f"--data-dir {config.data_dir} holds no *.parquet files "
                         "(FineWeb's parquet shards, with a text column)")
    if config.tokenizer is not None and not pathlib.Path(config.tokenizer).is_file():
      raise ValueError(f"--tokenizer {config.tokenizer} does not exist")
    if config.init_from is not None:
      checkpoint.check_init_from(config.init_from, _param_template(config))
    try:
      get_optimizer(config.optimizer, config.lr, **config.opt)
    except ValueError as e:  # an unknown, mistyped or out-of-range --opt value
      raise ValueError(f"--optimizer {config.optimizer} --opt: {e}") from None
    checkpoint.check_workdir(config)
  if sweep_dir is not None:
    checkpoint.check_sweep_dir(sweep_dir, list(configs))
  config = configs[0]
  if config.batch_size % jax.device_count():
    raise ValueError(f"--batch-size {config.batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  rows = config.batch_size // config.grad_accum
  if rows % jax.device_count():
    raise ValueError(f"--batch-size {config.batch_size} / --grad-accum {config.grad_accum} "
                     f"= {rows} rows per microbatch is not divisible by the "
                     f"{jax.device_count()} devices")


def train(config: TrainConfig) -> pathlib.Path:
  """Runs (or resumes) `config` to its last step; returns the workdir."""
  return run([config])[0]


def train_sweep(configs: Sequence[TrainConfig], sweep_dir: str | os.PathLike,
                on_step: Callable[[int], None] | None = None) -> list[pathlib.Path]:
  """Trains runs that differ only in learning rate and seed in one jitted
  program; each writes the `metrics.jsonl` it would write alone. The sweep
  checkpoints (and resumes) under `<sweep_dir>/checkpoints`; `on_step(step)`
  is called with the step the runs have reached (a caller's progress bar):
  first the step they start from (0, or the step restored), then after every
  call that trains."""
  check_sweep(configs)
  return run(configs, pathlib.Path(sweep_dir), on_step)


def steps_to_next_event(done: int, config: TrainConfig) -> int:
  """How many steps the next call trains: up to the next step that logs,
  evaluates, checkpoints, starts or stops the profile or ends the run, and at
  most `steps_per_call`."""
  periods = [p for p in (config.log_every, config.eval_every, config.checkpoint_every) if p]
  profile = [s for s in config.profile_range or () if s > done]
  next_event = min([config.steps, *profile] + [(done // p + 1) * p for p in periods])
  return min(next_event - done, config.steps_per_call)


def run(configs: Sequence[TrainConfig], sweep_dir: pathlib.Path | None = None,
        on_step: Callable[[int], None] | None = None) -> list[pathlib.Path]:
  """Trains `configs` together: one run (checkpointed in its workdir), or a
  checked sweep (checkpointed in `sweep_dir`)."""
  config = configs[0]
  init_distributed(config)
  preflight(configs, sweep_dir)
  is_main = jax.process_index() == 0

  start_time = time.perf_counter()
  tokenizer, windows, _ = data.prepare_for(config, is_main and config.progress)
  iterators = _data_iterators(windows["train"], configs)
  trainer = step.Trainer(configs)
  if is_main:
    _describe_parameters(configs, trainer.abstract_params)
  held_out = held_out_set(windows["validation"], config, trainer,
                          tokenizer.token_to_id(data.EOS))
  setup_time = time.perf_counter() - start_time

  for c in configs:
    checkpoint.record_run(c)
    checkpoint.record_tokenizer(c, tokenizer)
  if sweep_dir is not None:
    checkpoint.record_sweep(sweep_dir, list(configs))
  checkpoint_dir = (sweep_dir or pathlib.Path(config.workdir)) / "checkpoints"
  checkpoints = checkpoint.Checkpoints(checkpoint_dir, config.keep_checkpoints)
  state, first = _initial_state(config, trainer, checkpoints, iterators)
  logs = [metrics.MetricsLog(pathlib.Path(c.workdir) / "metrics.jsonl") for c in configs]
  if is_main:
    for log_file in logs:
      log_file.truncate(first)

  bar = tqdm.tqdm(total=config.steps, initial=first, unit="step", disable=not (
      is_main and config.progress))
  try:
    with StopSignals() as stop:
      state, validation = _train_loop(configs, trainer, state, first, iterators, held_out,
                                    checkpoints, logs if is_main else None, bar, on_step,
                                    (start_time, setup_time), stop,
                                    stop_if_diverged=sweep_dir is None)
  except KeyboardInterrupt:  # a second Ctrl-C: stop now, at the last checkpoint
    checkpoints.close()  # an async save in flight completes; none is left half-written
    raise Interrupted(checkpoints.latest_step() or 0, signal.SIGINT) from None
  except (Interrupted, Diverged):
    checkpoints.close()  # a save in flight completes
    raise
  finally:
    bar.close()
    for log_file in logs:
      log_file.close()
  checkpoints.close()

  if validation is None:  # resumed after the last checkpoint: nothing left to train
    validation = held_out.evaluate(trainer, state.params)
  if is_main:
    for k, c in enumerate(configs):
      _finish(c, logs[k], validation.record(k) | held_out.file_tokens(),
              time.perf_counter() - start_time)
  return [pathlib.Path(c.workdir) for c in configs]


def _describe_parameters(configs: Sequence[TrainConfig], params: Any) -> None:
  """Logs a line per component (every parameter with `--verbose`) and writes
  every parameter's label and multiplier to each run's parameters.txt."""
  config = configs[0]
  rows = optim.label_rows(config, params)
  table = optim.parameter_table(rows)
  for c in configs:
    pathlib.Path(c.workdir).mkdir(parents=True, exist_ok=True)
    files.write_atomically(pathlib.Path(c.workdir) / PARAMETERS_FILE, table + "\n")
  if config.verbose:
    log.info("every parameter's label and LR multiplier under %s:\n%s", config.optimizer, table)
  log.info("%s's LR multipliers by component (every parameter's in %s):\n%s",
           config.optimizer, pathlib.Path(config.workdir) / PARAMETERS_FILE,
           optim.component_summary(rows))


def _data_iterators(windows, configs: Sequence[TrainConfig]) -> dict[int, Any]:
  """This process's batch iterator per seed: runs that share a seed share a
  data order, so one iterator serves them all."""
  config = configs[0]
  return {seed: iter(data.batches(
      windows, config.batch_size, seed, jax.process_index(),
      jax.process_count()).to_iter_dataset(
          grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)))
          for seed in sorted({c.seed for c in configs})}


def _initial_state(config: TrainConfig, trainer: step.Trainer,
                   checkpoints: checkpoint.Checkpoints, iterators: dict[int, Any]):
  """The state to start from and its step: the latest checkpoint's (the
  iterators moved to where it stood), else a fresh or `--init-from` one."""
  first = checkpoints.latest_step()
  if first is None:
    return trainer.init(_initial_params(config)), 0
  state, data_state = checkpoints.restore(first, trainer.abstract_state)
  for seed, iterator in iterators.items():
    iterator.set_state(data_state[str(seed)])
  log.info("resuming from %s step %d", checkpoints.directory, first)
  return state, first


def _initial_params(config: TrainConfig) -> nnx.State | None:
  """`--init-from`'s parameters (a Hugging Face checkpoint's or a run's), None
  for seeded ones."""
  if config.init_from is None:
    return None
  if config.init_from.endswith(".safetensors"):
    return hf.load_hf_params(config.model_config, config.init_from)
  return checkpoint.params_of_run(config.init_from, _param_template(config))


def _param_template(config: TrainConfig) -> nnx.State:
  """The shapes and dtypes of `config`'s model parameters, allocating nothing."""
  abstract_model = nnx.eval_shape(
      lambda: model.Qwen3ForCausalLM(config.model_config, rngs=nnx.Rngs(0)))
  return nnx.state(abstract_model, nnx.Param)


def _train_loop(configs, trainer, state, first, iterators, held_out, checkpoints,
                logs, bar, on_step, times, stop, stop_if_diverged):
  """Steps from `first` to the last, logging (to `logs`, the main process's
  metrics files, or None), evaluating and checkpointing on the way; returns
  the final state and the last validation losses (None if none was due).
  After a signal `stop` caught, the steps in flight finish and are
  checkpointed, then `Interrupted` names that step. With `stop_if_diverged`
  (a run alone, not a sweep, whose grids are meant to reach divergence and
  record it), a step that applied a non-finite update, or a validation loss
  that is not finite, raises `Diverged`."""
  config = configs[0]
  start_time, setup_time = times
  validation = None
  last_time, last_step = time.perf_counter(), first
  i = first
  if on_step is not None:
    on_step(i)
  profile = _Profile(config, enabled=logs is not None)
  while i < config.steps:
    profile.before(i)
    n = steps_to_next_event(i, config)
    chunk = []
    for _ in range(n):
      rows = {seed: next(iterator) for seed, iterator in iterators.items()}
      chunk.append([rows[c.seed] for c in configs])
    state, out = trainer.train_steps(state, trainer.global_batch(np.asarray(chunk)))
    if i == first:
      jax.block_until_ready(out)
      bar.write(f"time to first step: {time.perf_counter() - start_time:.1f} s (data "
                f"and setup {setup_time:.1f} s, compile and {n} steps "
                f"{time.perf_counter() - start_time - setup_time:.1f} s)", file=sys.stderr)
    i += n
    profile.after(i, state, bar)
    evaluate = i == config.steps or (config.eval_every and i % config.eval_every == 0)
    if evaluate or i % config.log_every == 0:
      losses = np.asarray(out["loss"][-1])  # waits for the steps
      step_time = (time.perf_counter() - last_time) / (i - last_step)
      if evaluate:
        validation = held_out.evaluate(trainer, state.params)
    if stop_if_diverged:
      check_finite(config, i, n, out, validation.loss if evaluate else None, checkpoints)
    if evaluate or i % config.log_every == 0:
      if logs is not None:
        for k, c in enumerate(configs):
          logs[k].write(_record(c, i, k, out, step_time, validation if evaluate else None))
      bar.set_postfix(loss=f"{losses.mean():.3f}",
                      tok_s=f"{len(configs) * config.tokens_per_step / step_time:.0f}")
      last_time, last_step = time.perf_counter(), i
    if i % config.checkpoint_every == 0 or i == config.steps or stop.received:
      checkpoints.save(i, state, {str(seed): iterator.get_state()
                                  for seed, iterator in iterators.items()})
    if stop.received:
      raise Interrupted(i, stop.received)
    bar.update(n)
    if on_step is not None:
      on_step(i)
  return state, validation


def _record(c: TrainConfig, i: int, k: int, out: dict[str, Any], step_time: float,
            validation: Validation | None) -> dict[str, Any]:
  """The metrics.jsonl line of run `k` (config `c`) at step `i`."""
  record = {"step": i, "train_loss": float(out["loss"][-1][k]),
            "lr": float(out["lr"][-1][k]),
            "tokens": i * c.tokens_per_step, "step_time_s": step_time,
            "tokens_per_s": c.tokens_per_step / step_time,
            "nonfinite_steps": int(out["nonfinite_steps"][-1][k]),
            **{name: float(value[-1][k]) for name, value in out["components"].items()}}
  if validation is not None:
    record |= validation.record(k)
  return record


class _Profile:
  """`--profile-steps A:B`: a jax.profiler trace of steps A+1 to B, on the
  main process (a run resumed past A has no trace)."""

  def __init__(self, config: TrainConfig, enabled: bool):
    self.range = config.profile_range if enabled else None
    self.directory = pathlib.Path(config.workdir) / "profile"
    self.active = False

  def before(self, i: int) -> None:
    if self.range and i == self.range[0]:
      jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
      self.active = True

  def after(self, i: int, state: Any, bar: tqdm.tqdm) -> None:
    if self.active and i == self.range[1]:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      bar.write(f"profile of steps {self.range[0] + 1}-{self.range[1]}: {self.directory}",
                file=sys.stderr)


def _finish(c: TrainConfig, log_file: metrics.MetricsLog, validation: dict[str, Any],
            elapsed: float) -> None:
  """A finished run's last metrics line (its validation losses, by file too,
  and the files' token counts), its loss plot and its closing log."""
  log_file.write({"event": "done", "step": c.steps, **validation,
                  "tokens": c.steps * c.tokens_per_step})
  metrics.plot(log_file.records(), pathlib.Path(c.workdir) / "loss_curve.png",
               f"{c.config} / {c.optimizer}, lr {c.lr:g}, seed {c.seed}")
  log.info("done: validation loss %.4f after %d steps (%s tokens) in %.0f s; "
           "%s holds metrics.jsonl, TensorBoard events, loss_curve.png, checkpoints/",
           validation["val_loss"], c.steps, f"{c.steps * c.tokens_per_step:,}", elapsed, c.workdir)


def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
  for noisy in ("absl", "jax"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    train(from_args(argv))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f"interrupted: rerun the same command to resume from step {e.step}",
          file=sys.stderr)
    sys.exit(128 + e.signum)
  except Diverged as e:
    print(f"diverged: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
