"""StableAdamW: AdamW with per-tensor update clipping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import scale_by_adaptive_moments
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import UNIT_SCALES, layerwise_chain


def scale_by_stable_adam(
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam's direction, divided per tensor by the gradient's RMS ratio.

  .. math::
    r_t = \sqrt{\mathrm{mean}\left(g_t^2 / \max(\hat v_t, \epsilon^2)\right)},
    \quad u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} \Big/ \max(1, r_t)

  :math:`\hat v_t` is the bias-corrected second moment including this step.

  Args:
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    mu_dtype: dtype of the first moment; `None` keeps it in float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.

  References:
    Wortsman et al., `Stable and low-precision training for large-scale
    vision-language models <https://arxiv.org/abs/2304.13013>`_, 2023
  """
  _validation.check_non_negative("eps", eps)

  def direction(grad, mu_hat, nu_hat, prev_nu_hat, count):
    del prev_nu_hat, count
    rms = jnp.sqrt(jnp.mean(jnp.square(grad) / jnp.maximum(nu_hat, eps**2)))
    return mu_hat / (jnp.sqrt(nu_hat) + eps) / jnp.maximum(1.0, rms)

  return scale_by_adaptive_moments(direction, b1, b2, mu_dtype)


def stable_adamw(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    scales: Mapping[str, float] | None = None,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""StableAdamW: update-clipped AdamW, no LR multipliers by default.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\mathrm{ndim} \ge 2])

  with :math:`u_t` of :func:`scale_by_stable_adam` and multipliers 1.0
  (`UNIT_SCALES`).

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    weight_decay: decoupled weight decay on tensors with ndim >= 2 (0.1).
    scales: label -> LR multiplier for all six labels; `None` for all 1.0.
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: dtype of the first moment; `None` keeps it in float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Wortsman et al., 2023 (see :func:`scale_by_stable_adam`).
  """
  return layerwise_chain(
      scale_by_stable_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      default_scales=UNIT_SCALES, param_labels=param_labels)
