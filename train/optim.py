"""The optimizer of a run: a `layeropt_jax` optimizer on a warm-up schedule
whose peak learning rate lives in the optimizer state, skipping non-finite steps."""

from __future__ import annotations

from typing import Any

import jax
import optax

from layeropt_jax import get_optimizer
from train.config import TrainConfig

PEAK_LR = "peak_lr"


def unit_schedule(config: TrainConfig) -> optax.Schedule:
  """The schedule's shape, peaking at 1: linear warm-up from 0, then cosine,
  constant or linear decay to `final_lr_fraction` at the last step."""
  end = config.final_lr_fraction
  decay_steps = config.steps - config.warmup
  decay = {
      "cosine": optax.cosine_decay_schedule(1.0, decay_steps, alpha=end),
      "linear": optax.linear_schedule(1.0, end, decay_steps),
      "constant": optax.constant_schedule(1.0),
  }[config.schedule]
  return optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, config.warmup), decay], [config.warmup])


def make_optimizer(config: TrainConfig) -> optax.GradientTransformationExtraArgs:
  """`config.optimizer` with `config.opt` overrides on `lr * unit_schedule`.

  The peak LR is an `optax.inject_hyperparams` entry of the state, so that a
  sweep holds one per run (see :func:`set_peak_lr`). A step whose gradients
  are not finite leaves parameters and state unchanged and is counted.
  """
  shape = unit_schedule(config)

  def factory(peak_lr):
    return get_optimizer(config.optimizer, lambda count: peak_lr * shape(count),
                         **config.opt)

  tx = optax.inject_hyperparams(factory)(**{PEAK_LR: config.lr})
  return optax.apply_if_finite(tx, config.max_consecutive_nonfinite)


def set_peak_lr(opt_state: Any, peak_lr: jax.Array) -> Any:
  """`opt_state` of :func:`make_optimizer` with another peak LR."""
  opt_state.inner_state.hyperparams[PEAK_LR] = peak_lr
  return opt_state
