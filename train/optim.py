"""The optimizer of a run: a `layeropt_jax` optimizer on a warm-up schedule,
skipping non-finite steps."""

from __future__ import annotations

import optax

from layeropt_jax import get_optimizer
from train.config import TrainConfig


def make_schedule(config: TrainConfig) -> optax.Schedule:
  """Linear warm-up from 0 to `lr`, then cosine, constant or linear decay to
  `final_lr_fraction * lr` at the last step."""
  peak, end = config.lr, config.lr * config.final_lr_fraction
  decay_steps = config.steps - config.warmup
  decay = {
      "cosine": optax.cosine_decay_schedule(peak, decay_steps, alpha=config.final_lr_fraction),
      "linear": optax.linear_schedule(peak, end, decay_steps),
      "constant": optax.constant_schedule(peak),
  }[config.schedule]
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, config.warmup), decay], [config.warmup])


def make_optimizer(config: TrainConfig) -> optax.GradientTransformationExtraArgs:
  """`config.optimizer` with `config.opt` overrides; a step whose gradients are
  not finite leaves parameters and state unchanged and is counted."""
  tx = get_optimizer(config.optimizer, make_schedule(config), **config.opt)
  return optax.apply_if_finite(tx, config.max_consecutive_nonfinite)
