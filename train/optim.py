"""The optimizer of a run: a `layeropt_jax` optimizer on a warm-up schedule
whose peak learning rate lives in the optimizer state, skipping non-finite steps."""

from __future__ import annotations

from collections.abc import Callable
import functools
import json
import math
from typing import Any

import jax
import optax

import layeropt_jax
from layeropt_jax import get_optimizer
from train import model
from train.config import TrainConfig

PEAK_LR = "peak_lr"
SCHEDULE = "schedule"


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


def make_optimizer(
    config: TrainConfig, component_metrics: bool = True,
) -> Callable[[Any], optax.GradientTransformationExtraArgs]:
  """`peak_lr -> optimizer`: `config.optimizer` with `config.opt` overrides at
  learning rate `peak_lr * unit_schedule(count)`, after clipping the gradient
  to `config.clip_norm` (global L2 norm) if set.

  Both factors are `optax.inject_hyperparams` entries of the state: `init`
  stores the peak given here (a sweep, one per run), and every `update`
  reads it back from the state, so the peak given to a transformation that
  only updates is never used. A step whose gradients are not finite leaves
  parameters and state unchanged and is counted. With `component_metrics`
  the state also holds each component's norms of the last step
  (:func:`layeropt_jax.with_component_metrics`).
  """
  def configured(peak_lr, schedule):
    tx = get_optimizer(config.optimizer, peak_lr * schedule, **config.opt)
    if config.clip_norm is None:
      return tx
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), tx)

  injected = optax.inject_hyperparams(configured)
  shape = unit_schedule(config)

  def optimizer(peak_lr):
    tx = optax.apply_if_finite(injected(**{PEAK_LR: peak_lr, SCHEDULE: shape}),
                               config.max_consecutive_nonfinite)
    return layeropt_jax.with_component_metrics(tx) if component_metrics else tx

  return optimizer


def _if_finite_state(opt_state: Any) -> optax.ApplyIfFiniteState:
  if isinstance(opt_state, layeropt_jax.ComponentMetricsState):
    return opt_state.inner_state
  return opt_state


def peak_lr(opt_state: Any) -> jax.Array:
  """The peak learning rate held by a state of :func:`make_optimizer`."""
  return _if_finite_state(opt_state).inner_state.hyperparams[PEAK_LR]


def learning_rate(opt_state: Any) -> jax.Array:
  """The learning rate of the update that produced `opt_state`."""
  hyperparams = _if_finite_state(opt_state).inner_state.hyperparams
  return hyperparams[PEAK_LR] * hyperparams[SCHEDULE]


def nonfinite_steps(opt_state: Any) -> jax.Array:
  """How many steps `opt_state`'s optimizer skipped for non-finite gradients."""
  return _if_finite_state(opt_state).total_notfinite


def consecutive_nonfinite(opt_state: Any) -> jax.Array:
  """Non-finite steps in a row up to the one that produced `opt_state`: past
  `max_consecutive_nonfinite` the update was applied regardless."""
  return _if_finite_state(opt_state).notfinite_count


def component_metrics(opt_state: Any) -> dict[str, jax.Array]:
  """Each component's norms of the last step ({} without them)."""
  if isinstance(opt_state, layeropt_jax.ComponentMetricsState):
    return opt_state.metrics
  return {}


def label_rows(config: TrainConfig, params: Any) -> list[layeropt_jax.LabelAssignment]:
  """The component label and LR multiplier that `config.optimizer` gives
  every parameter of `params` (shapes suffice)."""
  scales = {**layeropt_jax.hyperparameters(config.optimizer), **config.opt}.get("scales")
  return layeropt_jax.label_table(params, scales=scales)


def parameter_table(rows: list[layeropt_jax.LabelAssignment]) -> str:
  """Every parameter's path, shape, label and multiplier, a line each."""
  width = max(len(row.path) for row in rows)
  return "\n".join(
      f"  {row.path:<{width}}  {str(row.shape):<16} {row.label:<9} x{row.multiplier:g}"
      for row in rows)


def component_summary(rows: list[layeropt_jax.LabelAssignment]) -> str:
  """A line per component label: its tensors, their values and multiplier."""
  lines = []
  for label in dict.fromkeys(row.label for row in rows):
    of_label = [row for row in rows if row.label == label]
    values = sum(math.prod(row.shape) for row in of_label)
    multipliers = "/".join(f"x{m:g}" for m in sorted({row.multiplier for row in of_label}))
    tensors = f"{len(of_label)} tensor{'s' if len(of_label) > 1 else ''}"
    lines.append(f"  {label:<9} {tensors:>12} {values:>13,} values  {multipliers}")
  return "\n".join(lines)


def state_bytes_per_param(config_name: str, optimizer: str, opt: dict[str, Any]) -> float:
  """Bytes of `optimizer`'s state (with `opt` overrides) per parameter of
  model `config_name`, counted on shapes alone (nothing is allocated)."""
  return _state_bytes_per_param(config_name, optimizer, json.dumps(opt, sort_keys=True))


# Reports ask again for the same few: a hashable key (`opt` holds dicts).
@functools.cache
def _state_bytes_per_param(config_name: str, optimizer: str, opt_json: str) -> float:
  params = model.param_shapes(config_name)
  state = jax.eval_shape(get_optimizer(optimizer, 1e-3, **json.loads(opt_json)).init, params)
  size = lambda tree: sum(math.prod(x.shape) * x.dtype.itemsize
                          for x in jax.tree.leaves(tree))
  return size(state) / (size(params) / 4)
