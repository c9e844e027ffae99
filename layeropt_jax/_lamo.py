"""LAMO: Layer-Adaptive Momentum driven by each tensor's gradient norm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import (
    abs_sq, compute_dtype, second_moment_dtype, zeros_like_moment,
    zeros_like_second_moment)
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import UNIT_SCALES, layerwise_chain

# Keeps the normalised gradient finite when a tensor's gradient is zero.
NORMALIZE_EPS = 1e-8


class ScaleByLamoState(NamedTuple):
  """State of :func:`scale_by_lamo`: two buffers and one scalar per tensor."""
  count: jax.Array  # shape=(), dtype=jnp.int32
  mu: optax.Updates
  nu: optax.Updates
  # P: the running product of each tensor's momentum decays (bias correction).
  momentum_product: optax.Updates


def lamo_beta(grad_norm: jax.Array, b1: float) -> jax.Array:
  r"""The momentum decay :math:`\beta = \beta_1 (1 - e^{-\|g\|_2})`.

  Args:
    grad_norm: :math:`\|g\|_2` of one tensor's gradient.
    b1: the largest decay, reached as the norm grows.

  Returns:
    :math:`\beta` for that tensor, in :math:`[0, \beta_1)`.
  """
  return b1 * (1.0 - jnp.exp(-grad_norm))


def scale_by_lamo(
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    normalize_grads: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam whose first-moment decay follows each tensor's gradient norm.

  .. math::
    n = \|g_t\|_2, \quad \beta = \beta_1 (1 - e^{-n}), \quad
    \tilde g = g_t / (n + 10^{-8}) \text{ (if normalize\_grads)} \\
    m_t = \beta m_{t-1} + (1-\beta) \tilde g, \quad P_t = \beta P_{t-1},
    \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) \tilde g^2 \\
    u_t = \frac{m_t / (1 - P_t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

  :math:`n` is the raw gradient norm of the tensor and :math:`P_0 = 1`, so
  :math:`1 - P_t` is the exact bias correction of a varying decay.
  **(choice)** :math:`\beta_2 = 0.95`.

  Args:
    b1: the largest momentum decay (default 0.9).
    b2: decay of the second moment (default 0.95, a choice).
    eps: added to the denominator (default 1e-8).
    normalize_grads: divide each tensor's gradient by its norm (default True).
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state :class:`ScaleByLamoState`.

  References:
    The LAMO technical report (Layer-Adaptive Momentum), as this library
    defines it (docs/methods.rst).
  """
  _validation.check_beta("b1", b1)
  _validation.check_beta("b2", b2)
  _validation.check_non_negative("eps", eps)

  def init_fn(params):
    return ScaleByLamoState(
        count=jnp.zeros([], jnp.int32),
        mu=zeros_like_moment(params, mu_dtype),
        nu=zeros_like_second_moment(params, nu_dtype),
        momentum_product=jax.tree.map(
            lambda p: jnp.ones([], second_moment_dtype(p)), params),
    )

  def leaf_update(g, mu, nu, product, count):
    g = g.astype(compute_dtype(g))
    norm = jnp.sqrt(jnp.sum(abs_sq(g)))
    beta = lamo_beta(norm, b1)
    if normalize_grads:
      g = g / (norm + NORMALIZE_EPS)
    mu = beta * mu + (1 - beta) * g
    product = product * beta
    nu = b2 * nu + (1 - b2) * abs_sq(g)
    nu_hat = nu / (1 - b2**count)
    return mu / (1 - product) / (jnp.sqrt(nu_hat) + eps), mu, nu, product

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    out = jax.tree.map(
        lambda g, m, v, p: leaf_update(g, m, v, p, count),
        updates, state.mu, state.nu, state.momentum_product)
    treedef = jax.tree.structure(updates)
    new_updates, mu, nu, product = jax.tree.transpose(
        treedef, jax.tree.structure((0, 0, 0, 0)), out)
    return optax.tree.cast_like(new_updates, updates), ScaleByLamoState(
        count=count,
        mu=optax.tree.cast_like(mu, state.mu),
        nu=optax.tree.cast_like(nu, state.nu),
        momentum_product=product,
    )

  return optax.GradientTransformation(init_fn, update_fn)


def lamo(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    normalize_grads: bool = True,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = UNIT_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LAMO: gradient-norm-driven momentum, no LR multipliers by default.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  with :math:`u_t` of :func:`scale_by_lamo`. The report scales momentum, not
  the learning rate: the default multipliers are 1.0 everywhere
  (`UNIT_SCALES`). The report trains with lr 1e-4. **(choice)** weight
  decay 0.1, as for AdamW.

  Args:
    learning_rate: a float or an optax schedule.
    b1: the largest momentum decay (default 0.9).
    b2: decay of the second moment (default 0.95, a choice).
    eps: added to the denominator (default 1e-8).
    normalize_grads: divide each tensor's gradient by its norm (default True).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `UNIT_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    The LAMO technical report, as this library defines it (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_lamo(b1=b1, b2=b2, eps=eps, normalize_grads=normalize_grads,
                    mu_dtype=mu_dtype,
                    nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
