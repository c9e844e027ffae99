"""What the end-to-end tests share: running the CLI in a subprocess and
reading what a run wrote."""

import dataclasses
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from train import model, step
from train.benchmark.plan import Plan
from train.config import TrainConfig

REPO = pathlib.Path(__file__).resolve().parent.parent
# A short run: 60 steps of 8 x 32 tokens, logging every 2 steps.
SHORT = ["--steps", "60", "--warmup", "5", "--batch-size", "8", "--seq-len", "32",
         "--log-every", "2", "--eval-every", "10", "--eval-batches", "2",
         "--checkpoint-every", "10", "--no-progress"]


def own_lines(stderr):
  """The lines of a process's standard error: the project's own, since no
  plugin of jax starts where the compilers for other chips are kept apart."""
  return stderr.strip().splitlines()


def command(workdir, *args):
  return [sys.executable, "-m", "train.train", "--workdir", str(workdir), *args]


def environment(cache, devices=1):
  """This process's environment (its XLA flags, tests/conftest.py) with
  `devices` simulated CPU devices and the data cache `cache`."""
  others = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                  os.environ.get("XLA_FLAGS", "")).split()
  flags = " ".join([f"--xla_force_host_platform_device_count={devices}", *others])
  return {**os.environ, "TFDS_DATA_DIR": str(cache), "XLA_FLAGS": flags}


def run(args, cache, devices=1):
  result = subprocess.run(args, cwd=REPO, env=environment(cache, devices),
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def records(workdir):
  return [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").open()]

TINY = model.Qwen3Config(vocab_size=256, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, max_position_embeddings=64)


TIMING = ("step_time_s", "tokens_per_s")


def without_timing(rows):
  """Wall-clock times are the fields two runs cannot share."""
  return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def kill_when(args, cache, condition, timeout=300, devices=1, sig=signal.SIGKILL):
  """Starts a run, sends it `sig` as soon as `condition()` holds; returns its
  exit code and standard error."""
  proc = subprocess.Popen(args, cwd=REPO, env=environment(cache, devices),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + timeout
  while not condition() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.002)
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=timeout)
  return proc.returncode, stderr


def tiny_trainer(mesh, optimizer="ladm", steps=4, seeds=(0,), lrs=(1e-3,),
                 model_config=TINY, **overrides):
  """A Trainer of runs (seeds[k], lrs[k]) on the TINY model; `overrides` are
  TrainConfig fields."""
  config = TrainConfig(optimizer=optimizer, steps=steps, warmup=1, **overrides)
  return step.Trainer([dataclasses.replace(config, seed=seed, lr=lr)
                       for seed, lr in zip(seeds, lrs)], mesh, model_config)


def train_losses(trainer, steps=4, batch=8, data_seeds=(0,)):
  """Losses `[steps, K]` of the trainer's K runs, run k reading stream data_seeds[k]."""
  rngs = [np.random.default_rng(s) for s in data_seeds]
  tokens = np.stack([r.integers(0, TINY.vocab_size, (steps, batch, 17), dtype=np.int32)
                     for r in rngs], axis=1)
  state, out = trainer.train_steps(trainer.init(), trainer.global_batch(tokens))
  return np.asarray(out["loss"]), state


def one_device_mesh():
  return jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:1])


def simulate(suite, loss_of_config):
  """Runs `suite`'s plan against `loss_of_config` instead of training:
  returns the choices and every run the plan asked for, by stage."""
  plan = Plan(suite, pathlib.Path("runs"), {})
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
