"""Layer-wise learning-rate multipliers and the chain every method shares.

Every named optimizer of the library is

.. code-block:: python

  optax.chain(
      *preprocess,                       # e.g. MALAO's per-tensor clip
      scale_by_METHOD(...),              # the direction u_t
      optax.add_decayed_weights(wd, mask=matrices_mask),
      scale_by_layer(scales, param_labels),
      optax.scale_by_learning_rate(learning_rate),
  )
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from types import MappingProxyType

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax.labels import COMPONENTS, ParamLabels, resolve_labels


def _table(embedding, attn_qkv, attn_out, mlp, norm, head):
  return MappingProxyType(dict(
      embedding=embedding, attn_qkv=attn_qkv, attn_out=attn_out, mlp=mlp,
      norm=norm, head=head))


LAMVS_SCALES = _table(1.0, 1.5, 1.5, 1.2, 1.0, 2.0)
LADM_SCALES = _table(0.8, 1.05, 0.95, 1.1, 0.65, 0.9)
MALAO_SCALES = _table(1.0, 1.5, 1.5, 0.8, 1.0, 1.0)
# The AOVS report gives no values; it uses LAMVS's table (METHODS.md choice).
AOVS_SCALES = LAMVS_SCALES
UNIT_SCALES = _table(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def check_scales(scales: Mapping[str, float]) -> None:
  """Every component needs a finite, non-negative multiplier, and no others."""
  if not isinstance(scales, Mapping):
    raise ValueError(
        f"scales must be a mapping label -> multiplier, got {scales!r}")
  unknown = sorted(set(scales) - set(COMPONENTS))
  missing = [c for c in COMPONENTS if c not in scales]
  if unknown or missing:
    raise ValueError(
        f"scales must give a multiplier for exactly {COMPONENTS}: "
        f"unknown labels {unknown}, missing labels {missing}")
  for label, value in scales.items():
    if not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value >= 0):
      raise ValueError(
          f"scales[{label!r}] must be a finite number >= 0, got {value!r}")


def scale_by_layer(
    scales: Mapping[str, float],
    param_labels: ParamLabels = None,
) -> optax.GradientTransformation:
  r"""Multiplies each leaf's update by its component's LR multiplier.

  .. math::
    u_i \leftarrow s_{\ell(i)} \, u_i

  where :math:`\ell(i)` is the component label of leaf :math:`i`. Built on
  :func:`optax.partition`, one :func:`optax.scale` per component.

  Args:
    scales: mapping from each label of `COMPONENTS` to its multiplier.
    param_labels: a pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.

  Returns:
    An `optax.GradientTransformation` with no state of its own.
  """
  check_scales(scales)
  return optax.partition(
      {label: optax.scale(float(s)) for label, s in scales.items()},
      lambda params: resolve_labels(param_labels, params),
  )


def matrices_mask(params):
  """The `mask` of decoupled weight decay: True for tensors with ndim >= 2.

  Args:
    params: the parameter pytree.

  Returns:
    A pytree of Python bools with the structure of `params`; norms' scales
    and biases (ndim < 2) get False.
  """
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def layerwise_chain(
    direction: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: float,
    scales: Mapping[str, float] | None,
    default_scales: Mapping[str, float],
    param_labels: ParamLabels,
    preprocess: tuple[optax.GradientTransformation, ...] = (),
) -> optax.GradientTransformationExtraArgs:
  """The chain of METHODS.md's common frame around a method's direction."""
  _validation.check_learning_rate(learning_rate)
  _validation.check_non_negative("weight_decay", weight_decay)
  return optax.chain(
      *preprocess,
      direction,
      optax.add_decayed_weights(weight_decay, mask=matrices_mask),
      scale_by_layer(default_scales if scales is None else scales,
                     param_labels),
      optax.scale_by_learning_rate(learning_rate),
  )
