"""LAMVS: Layer-Adaptive Momentum Variance Scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import scale_by_adaptive_moments
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import layerwise_chain, multiplier_table

LAMVS_SCALES = multiplier_table(
    embedding=1.0, attn_qkv=1.5, attn_out=1.5, mlp=1.2, norm=1.0, head=2.0)


def scale_by_lamvs(
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam's direction with a decaying epsilon inside the square root.

  .. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    \epsilon_t = \epsilon_0 / \sqrt{t}, \quad
    u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_t}}

  :math:`t` counts updates from 1; the report writes
  :math:`\epsilon_0/\sqrt{t+1}` with :math:`t` from 0, the same sequence.
  **(choice)** :math:`\beta_2 = 0.95`: the report does not give it.

  Args:
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95, a choice).
    eps: :math:`\epsilon_0`, the initial epsilon (default 1e-8).
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.

  References:
    The LAMVS technical report (Layer-Adaptive Momentum Variance Scaling),
    as this library defines it (docs/methods.rst).
  """
  _validation.check_non_negative("eps", eps)

  def direction(grad, mu_hat, nu_hat, prev_nu_hat, count):
    del grad, prev_nu_hat
    return mu_hat / jnp.sqrt(nu_hat + eps / jnp.sqrt(count.astype(nu_hat.dtype)))

  return scale_by_adaptive_moments(direction, b1, b2, mu_dtype, nu_dtype)


def lamvs(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = LAMVS_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LAMVS: decaying-epsilon Adam with per-component LR multipliers.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  with :math:`u_t` of :func:`scale_by_lamvs` and :math:`s_\ell` the
  multiplier of the tensor's component (default `LAMVS_SCALES`: embedding
  1.0, attn_qkv 1.5, attn_out 1.5, mlp 1.2, norm 1.0, head 2.0). The report
  trains with lr 8e-4 and 800 warm-up steps.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95, a choice).
    eps: :math:`\epsilon_0` of the decaying epsilon (default 1e-8).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `LAMVS_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    The LAMVS technical report, as this library defines it (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_lamvs(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype,
                     nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
