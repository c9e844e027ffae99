"""LayerAdam: AdamW with LAMVS's per-component LR multipliers (an ablation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from layeropt_jax._adaptive import scale_by_adam
from layeropt_jax._lamvs import LAMVS_SCALES
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import layerwise_chain


def layer_adam(
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
  r"""AdamW plus per-component LR multipliers, nothing else.

  .. math::
    u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \quad
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  With the default multipliers (LAMVS's table) it isolates what the
  multipliers alone contribute to LAMVS; with `UNIT_SCALES` it is AdamW.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
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
    The LAMVS technical report's LayerAdam baseline, as this library defines
    it (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype,
                    nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
