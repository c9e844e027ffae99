"""Layer-wise learning-rate multipliers and the chain every method shares.

Every named optimizer of the library is

.. code-block:: python

  optax.chain(
      *preprocess,                       # e.g. MALAO's per-tensor clip
      scale_by_METHOD(...),              # the direction u_t
      decay_weights(wd, param_labels),   # weights only, at one rate or per label
      scale_by_layer(scales, param_labels),
      optax.scale_by_learning_rate(learning_rate),
  )
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax.labels import (
    COMPONENTS, ParamLabels, path_to_str, resolve_labels)
from layeropt_jax.matrices import weights_mask


def multiplier_table(*, embedding: float, attn_qkv: float, attn_out: float,
                     mlp: float, norm: float, head: float) -> Mapping[str, float]:
  """A read-only label -> LR multiplier mapping with every component.

  Args:
    embedding, attn_qkv, attn_out, mlp, norm, head: each component's
      multiplier.

  Returns:
    A `MappingProxyType` over the six labels of `COMPONENTS`.
  """
  table = MappingProxyType(dict(
      embedding=embedding, attn_qkv=attn_qkv, attn_out=attn_out, mlp=mlp,
      norm=norm, head=head))
  check_scales(table)
  return table


def check_scales(scales: Mapping[str, float], name: str = "scales") -> None:
  """Every component needs a finite, non-negative value, and no others.

  Args:
    scales: a mapping label -> value (LR multipliers, or weight-decay rates).
    name: the argument's name, for the error.

  Returns:
    None.

  Raises:
    ValueError: naming `name`, for a label missing or unknown or a value that
      is not a finite number >= 0.
  """
  if not isinstance(scales, Mapping):
    raise ValueError(
        f"{name} must be a mapping label -> value, got {scales!r}")
  unknown = sorted(set(scales) - set(COMPONENTS))
  missing = [c for c in COMPONENTS if c not in scales]
  if unknown or missing:
    given = ", ".join(f"{label!r}: {value!r}" for label, value in scales.items())
    merge = (f"; to change only these, merge them into the method's table: "
             f"scales={{**layeropt_jax.METHOD_SCALES[<method>], {given}}}"
             if name == "scales" and missing and not unknown else "")
    raise ValueError(
        f"{name} must give a value for exactly {COMPONENTS}: "
        f"unknown labels {unknown}, missing labels {missing}{merge}")
  for label, value in scales.items():
    if not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value >= 0):
      raise ValueError(
          f"{name}[{label!r}] must be a finite number >= 0, got {value!r}")


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


class LabelAssignment(NamedTuple):
  """One row of :func:`label_table`."""
  path: str
  shape: tuple[int, ...]
  label: str
  multiplier: float


UNIT_SCALES = multiplier_table(embedding=1.0, attn_qkv=1.0, attn_out=1.0,
                               mlp=1.0, norm=1.0, head=1.0)


def label_table(
    params: Any,
    param_labels: ParamLabels = None,
    scales: Mapping[str, float] | None = None,
) -> list[LabelAssignment]:
  """What every parameter is labelled and the LR multiplier it gets.

  Print it before training to check that the rules label your model as you
  mean (the trainer logs it at start)::

    for row in label_table(params, scales=METHOD_SCALES["lamvs"]):
      print(*row)

  Args:
    params: the parameter pytree.
    param_labels: a pytree of labels, a callable `params -> labels`, or
      `None` for :func:`layeropt_jax.label_params`.
    scales: label -> multiplier (a method's is `METHOD_SCALES[name]`);
      `None` for 1.0 everywhere.

  Returns:
    One :class:`LabelAssignment` (path, shape, label, multiplier) per leaf,
    in the order of `jax.tree.leaves(params)`.
  """
  scales = UNIT_SCALES if scales is None else scales
  check_scales(scales)
  labels = jax.tree.leaves(resolve_labels(param_labels, params))
  return [
      LabelAssignment(path_to_str(path), tuple(jnp.shape(p)), label,
                      float(scales[label]))
      for (path, p), label in zip(
          jax.tree_util.tree_leaves_with_path(params), labels)
  ]


def decay_weights(
    weight_decay: float | Mapping[str, float],
    param_labels: ParamLabels = None,
) -> optax.GradientTransformation:
  r"""Decoupled weight decay on the weights, at one rate or one per component.

  .. math::
    u_i \leftarrow u_i + \lambda_{\ell(i)} \theta_i \quad
    \text{for the weights } i \text{ (kernels, embeddings)}

  Biases and norm scales are never decayed, whatever their shape
  (:func:`layeropt_jax.weights_mask`).

  Args:
    weight_decay: one rate for every weight, or a mapping from each label of
      `COMPONENTS` to its rate (validated as `scales` is).
    param_labels: with a mapping, a pytree of labels, a callable
      `params -> labels`, or `None` for :func:`layeropt_jax.label_params`.

  Returns:
    An `optax.GradientTransformation` with no state of its own.
  """
  if not isinstance(weight_decay, Mapping):
    _validation.check_non_negative("weight_decay", weight_decay)
    return optax.add_decayed_weights(weight_decay, mask=weights_mask)
  check_scales(weight_decay, "weight_decay")
  return optax.partition(
      {label: optax.add_decayed_weights(float(rate), mask=weights_mask)
       for label, rate in weight_decay.items()},
      lambda params: resolve_labels(param_labels, params))


def layerwise_chain(
    direction: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: float | Mapping[str, float],
    scales: Mapping[str, float],
    param_labels: ParamLabels,
    preprocess: tuple[optax.GradientTransformation, ...] = (),
) -> optax.GradientTransformationExtraArgs:
  """The common chain around a method's direction (the module docstring).

  A method's alias passes its own default `scales` table as its signature's
  default, where :data:`layeropt_jax.METHOD_SCALES` finds it.
  """
  _validation.check_learning_rate(learning_rate)
  return optax.chain(
      *preprocess,
      direction,
      decay_weights(weight_decay, param_labels),
      scale_by_layer(scales, param_labels),
      optax.scale_by_learning_rate(learning_rate),
  )
