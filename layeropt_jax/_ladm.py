"""LADM: Layer-Adaptive Dual Momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import (
    in_compute_dtype, zeros_like_moment, zeros_like_second_moment)
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import layerwise_chain, multiplier_table

LADM_SCALES = multiplier_table(
    embedding=0.8, attn_qkv=1.05, attn_out=0.95, mlp=1.1, norm=0.65, head=0.9)


class ScaleByLadmState(NamedTuple):
  """State of :func:`scale_by_ladm`: three parameter-sized buffers."""
  count: jax.Array  # shape=(), dtype=jnp.int32
  mu_fast: optax.Updates
  mu_slow: optax.Updates
  nu: optax.Updates


def ladm_alpha(count: jax.Array, alpha_warmup_steps: float) -> jax.Array:
  r"""The fast-momentum weight :math:`\alpha_t = 0.95 - 0.15 \min(t/T, 1)`.

  Args:
    count: t, the number of the update (1 on the first).
    alpha_warmup_steps: T; 0 gives 0.8 from the first step.

  Returns:
    :math:`\alpha_t`, a float32 scalar.
  """
  progress = jnp.minimum(count / jnp.maximum(alpha_warmup_steps, 1e-12), 1.0)
  return 0.95 - 0.15 * progress


def scale_by_ladm(
    b1: float = 0.95,
    b_slow: float = 0.995,
    b2: float = 0.95,
    alpha_warmup_steps: int = 500,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""A fast and a slow first moment, mixed with a weight set by warm-up.

  .. math::
    m^f_t = \beta_1 m^f_{t-1} + (1-\beta_1) g_t, \quad
    m^s_t = \beta_3 m^s_{t-1} + (1-\beta_3) g_t, \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    \alpha_t = 0.95 - 0.15 \min(t / T, 1) \\
    \hat m_t = \alpha_t \frac{m^f_t}{1-\beta_1^t}
      + (1-\alpha_t) \frac{m^s_t}{1-\beta_3^t}, \quad
    u_t = \frac{\hat m_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  **(choice)** :math:`\beta_2 = 0.95`: the report does not give it.

  Args:
    b1: decay of the fast first moment (default 0.95).
    b_slow: :math:`\beta_3`, decay of the slow first moment (default 0.995).
    b2: decay of the second moment (default 0.95, a choice).
    alpha_warmup_steps: :math:`T`, steps over which :math:`\alpha_t` moves
      from 0.95 to 0.80 (default 500).
    eps: added to the denominator (default 1e-8).
    mu_dtype: storage dtype of both first moments; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state :class:`ScaleByLadmState`.

  References:
    The LADM technical report (Layer-Adaptive Dual Momentum), as this
    library defines it (docs/methods.rst).
  """
  _validation.check_beta("b1", b1)
  _validation.check_beta("b_slow", b_slow)
  _validation.check_beta("b2", b2)
  _validation.check_non_negative("alpha_warmup_steps", alpha_warmup_steps)
  _validation.check_non_negative("eps", eps)

  def init_fn(params):
    return ScaleByLadmState(
        count=jnp.zeros([], jnp.int32),
        mu_fast=zeros_like_moment(params, mu_dtype),
        mu_slow=zeros_like_moment(params, mu_dtype),
        nu=zeros_like_second_moment(params, nu_dtype),
    )

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    alpha = ladm_alpha(count, alpha_warmup_steps)
    grads = in_compute_dtype(updates)
    mu_fast = optax.tree.update_moment(grads, state.mu_fast, b1, 1)
    mu_slow = optax.tree.update_moment(grads, state.mu_slow, b_slow, 1)
    nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
    # The mixing weights and bias corrections fold into three scalars, so the
    # per-element work is two multiply-adds, a sqrt and one division.
    fast_coef = alpha / (1 - b1**count)
    slow_coef = (1 - alpha) / (1 - b_slow**count)
    nu_coef = 1 / (1 - b2**count)
    new_updates = jax.tree.map(
        lambda f, s, v, u: ((fast_coef * f + slow_coef * s)
                            / (jnp.sqrt(nu_coef * v) + eps)).astype(u.dtype),
        mu_fast, mu_slow, nu, updates)
    return new_updates, ScaleByLadmState(
        count=count,
        mu_fast=optax.tree.cast_like(mu_fast, state.mu_fast),
        mu_slow=optax.tree.cast_like(mu_slow, state.mu_slow),
        nu=optax.tree.cast_like(nu, state.nu),
    )

  return optax.GradientTransformation(init_fn, update_fn)


def ladm(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.95,
    b_slow: float = 0.995,
    b2: float = 0.95,
    alpha_warmup_steps: int = 500,
    eps: float = 1e-8,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = LADM_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LADM: dual-momentum Adam with per-component LR multipliers.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  with :math:`u_t` of :func:`scale_by_ladm` and default multipliers
  `LADM_SCALES` (embedding 0.8, attn_qkv 1.05, attn_out 0.95, mlp 1.1,
  norm 0.65, head 0.9). **(choice)** weight decay 0.1, as for AdamW: the
  report does not give it.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the fast first moment (default 0.95).
    b_slow: decay of the slow first moment (default 0.995).
    b2: decay of the second moment (default 0.95, a choice).
    alpha_warmup_steps: steps over which the mixing weight moves (500).
    eps: added to the denominator (default 1e-8).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `LADM_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: storage dtype of both first moments; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    The LADM technical report, as this library defines it (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_ladm(b1=b1, b_slow=b_slow, b2=b2,
                    alpha_warmup_steps=alpha_warmup_steps, eps=eps,
                    mu_dtype=mu_dtype,
                    nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
