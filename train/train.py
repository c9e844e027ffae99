"""Trains a Flax NNX Qwen3 with a layeropt_jax optimizer, resuming where it stopped.

  python -m train.train --config nano --optimizer ladm --lr 3e-3 --steps 200 --workdir runs/x

See `train/config.py` (or `--help`) for every flag.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time

import grain
import jax
import numpy as np
import tqdm

from train import checkpoint, data, hf, metrics, optim, step
from train.config import TrainConfig, from_args

log = logging.getLogger("train")


def init_distributed(config: TrainConfig) -> None:
  """Joins a multi-process run; CPU processes talk over gloo."""
  if not (config.distributed or config.coordinator_address):
    return
  if jax.config.jax_platforms in (None, "", "cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(config.coordinator_address, config.num_processes,
                             config.process_id)


def eval_batches(windows: np.ndarray, config: TrainConfig, trainer: step.Trainer):
  """The fixed held-out set: the first `eval_batches` global batches of the
  validation split, unshuffled, this process's rows of each."""
  n = min(config.eval_batches, len(windows) // config.batch_size)
  if n == 0:
    raise ValueError(
        f"the validation split has {len(windows)} windows, fewer than one batch "
        f"of {config.batch_size}")
  rows = config.batch_size // jax.process_count()
  lo = jax.process_index() * rows
  batches = windows[: n * config.batch_size].reshape(n, config.batch_size, -1)
  return [trainer.global_batch(b[lo:lo + rows]) for b in batches]


def train(config: TrainConfig) -> pathlib.Path:
  """Runs (or resumes) `config` to its last step; returns the workdir."""
  init_distributed(config)
  if config.batch_size % jax.device_count():
    raise ValueError(f"--batch-size {config.batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  workdir = pathlib.Path(config.workdir)
  checkpoint.check_workdir(config)
  is_main = jax.process_index() == 0

  start_time = time.perf_counter()
  model_config = config.model_config
  _, windows = data.prepare(config.data, config.seq_len + 1, model_config.vocab_size,
                            config.cache_dir, config.data_dir, config.tokenizer)
  train_batches = data.batches(windows["train"], config.batch_size, config.seed,
                               jax.process_index(), jax.process_count())
  schedule = optim.make_schedule(config)
  trainer = step.Trainer(model_config, optim.make_optimizer(config),
                         step.make_mesh(), config.fsdp, config.seed)
  val_batches = eval_batches(windows["validation"], config, trainer)
  data_time = time.perf_counter() - start_time

  checkpoint.record_run(config)
  checkpoints = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
  iterator = iter(train_batches.to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)))
  first = checkpoints.latest_step()
  if first is None:
    first = 0
    state = trainer.init(hf.load_hf_params(model_config, config.init_from)
                         if config.init_from else None)
  else:
    state, data_state = checkpoints.restore(first, trainer.abstract_state)
    iterator.set_state(data_state)
    log.info("resuming %s from step %d", workdir, first)
  log_file = metrics.MetricsLog(workdir / "metrics.jsonl")
  if is_main:
    log_file.truncate(first)

  bar = tqdm.tqdm(total=config.steps, initial=first, unit="step", disable=not (
      is_main and config.progress))
  val_loss = None
  last_time, last_step = time.perf_counter(), first
  for i in range(first + 1, config.steps + 1):
    state, out = trainer.train_step(state, trainer.global_batch(next(iterator)))
    if i == first + 1:
      jax.block_until_ready(out)
      log.info("time to first step: %.1f s (data %.1f s, compile and step %.1f s)",
               time.perf_counter() - start_time, data_time,
               time.perf_counter() - start_time - data_time)
    evaluate = i == config.steps or (config.eval_every and i % config.eval_every == 0)
    if evaluate or i % config.log_every == 0:
      loss = float(out["loss"])  # waits for the step
      record = {"step": i, "train_loss": loss, "lr": float(schedule(i - 1)),
                "tokens": i * config.tokens_per_step,
                "step_time_s": (time.perf_counter() - last_time) / (i - last_step),
                "nonfinite_steps": int(out["nonfinite_steps"])}
      if evaluate:
        val_loss = record["val_loss"] = trainer.evaluate(state.params, val_batches)
      if is_main:
        log_file.write(record)
      bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                      tok_s=f"{config.tokens_per_step / record['step_time_s']:.0f}")
      last_time, last_step = time.perf_counter(), i
    if i % config.checkpoint_every == 0 or i == config.steps:
      checkpoints.save(i, state, iterator.get_state())
    bar.update()
  bar.close()
  checkpoints.close()

  if val_loss is None:  # resumed after the last checkpoint: nothing left to train
    val_loss = trainer.evaluate(state.params, val_batches)
  if is_main:
    log_file.write({"event": "done", "step": config.steps, "val_loss": val_loss,
                    "tokens": config.steps * config.tokens_per_step})
    metrics.plot(log_file.records(), workdir / "loss_curve.png",
                 f"{config.config} / {config.optimizer}, lr {config.lr:g}")
  return workdir


def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
  for noisy in ("absl", "jax"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    train(from_args(argv))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
