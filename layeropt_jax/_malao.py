"""MALAO: Momentum-Aware Layer-wise Adaptive Optimisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import abs_sq, compute_dtype, scale_by_adam
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import layerwise_chain, multiplier_table

MALAO_SCALES = multiplier_table(
    embedding=1.0, attn_qkv=1.5, attn_out=1.5, mlp=0.8, norm=1.0, head=1.0)


def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
  r"""Clips each tensor to an L2 norm of at most `max_norm`.

  .. math::
    g \leftarrow g \cdot \min(1, \tau / \|g\|_2)

  Unlike :func:`optax.clip_by_global_norm`, every tensor is clipped on its
  own; unlike :func:`optax.clip_by_block_rms`, the bound is on the norm, not
  the RMS.

  Args:
    max_norm: :math:`\tau`, the largest norm a tensor keeps.

  Returns:
    An `optax.GradientTransformation` with state `optax.EmptyState`.
  """
  _validation.check_non_negative("clip_threshold", max_norm)

  def clip(g):
    norm = jnp.sqrt(jnp.sum(abs_sq(g.astype(compute_dtype(g)))))
    factor = jnp.where(norm > max_norm, max_norm / norm, 1.0)
    return (g * factor).astype(g.dtype)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(
      lambda params: optax.EmptyState(), update_fn)


def malao(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    clip_threshold: float = 1.0,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = MALAO_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MALAO: per-tensor gradient clipping, Adam, and LR multipliers.

  .. math::
    \tilde g = g_t \min(1, \tau / \|g_t\|_2), \quad
    u_t = \mathrm{Adam}(\tilde g)_t, \quad
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  Adam's moments are bias-corrected. Default multipliers `MALAO_SCALES`
  (embedding 1.0, attn_qkv 1.5, attn_out 1.5, mlp 0.8, norm 1.0, head 1.0).
  The report trains with lr 3e-4 on a cosine schedule.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    clip_threshold: :math:`\tau`, the per-tensor gradient norm bound (1.0).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `MALAO_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    `Momentum-Aware Layer-wise Adaptive Optimization: A Comprehensive
    Negative Result Study <https://aardxiv.org/abs/2511.00083>`_,
    aardXiv:2511.00083, 6 November 2025; as this library defines it
    (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype,
                    nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels,
      preprocess=(clip_by_tensor_norm(clip_threshold),))
