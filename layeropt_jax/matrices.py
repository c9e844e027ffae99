"""Which parameters are weights, and how a weight is read as matrices.

Two rules of the library ask this module, so that they agree on every model:

- weight decay goes to weights (kernels and embeddings), never to biases or
  norm scales, whatever their shape (:func:`weights_mask`);
- the orthogonalising methods (AOVS, Muon) orthogonalise the hidden weights
  (labelled attn_qkv, attn_out or mlp) as matrices, whatever their rank
  (:func:`matrix_dimension_numbers`).

A weight is read as matrices by optax's
:class:`optax.contrib.MuonDimensionNumbers`: its reduction (input) axes and
its output axes, each group flattened into one matrix dimension; every other
axis is a batch of independent matrices. Regex rules on the "/"-joined path
choose them, the first match winning, as :func:`layeropt_jax.label_params`
chooses labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
from optax.contrib import MuonDimensionNumbers

from layeropt_jax.labels import (
    HIDDEN_MATRIX_COMPONENTS, ParamLabels, path_to_str, resolve_labels)

MatrixRules = Sequence[tuple[str, MuonDimensionNumbers]]

# The last path names of parameters that are never weights: biases (Flax,
# Hugging Face; Haiku's "b") and norm scales.
NOT_WEIGHTS = re.compile(r"(^|/)(bias|b|scale)$")

# Layouts of multi-head weights whose names say them; negative axes, so that
# leading axes (stacked layers, experts) are batch axes.
DEFAULT_MATRIX_RULES: tuple[tuple[str, MuonDimensionNumbers], ...] = (
    # Flax's MultiHeadAttention (linen and NNX): query, key and value kernels
    # (in, heads, head_dim), the output kernel (heads, head_dim, out).
    (r"(^|/)(query|key|value)/kernel$",
     MuonDimensionNumbers(reduction_axis=-3, output_axis=(-2, -1))),
    (r"(^|/)out/kernel$", MuonDimensionNumbers(reduction_axis=(-3, -2), output_axis=-1)),
    # Gemma (google-deepmind/gemma, flax/examples/gemma): q_einsum
    # (heads, features, head_dim); kv_einsum (2, kv_heads, features, head_dim)
    # and qkv_einsum (3, heads, features, head_dim), a batch of 2 or 3;
    # attn_vec_einsum (heads, head_dim, features).
    (r"(^|/)(q_einsum|kv_einsum|qkv_einsum)/w$",
     MuonDimensionNumbers(reduction_axis=-2, output_axis=(-3, -1))),
    (r"(^|/)attn_vec_einsum/w$",
     MuonDimensionNumbers(reduction_axis=(-3, -2), output_axis=-1)),
)
# Any other hidden weight: a matrix (in, out), or a stack of them, (stack,
# in, out), with the stacked axis (layers, experts) first.
_LAST_TWO = MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)


def is_weight(path: str, param: Any) -> bool:
  """Whether a parameter is a weight (a kernel, an embedding).

  Args:
    path: its "/"-joined path (:func:`layeropt_jax.label_params`'s).
    param: the parameter, or anything with its shape.

  Returns:
    True for two or more dimensions and a last path name that is not a
    bias's or a scale's (`NOT_WEIGHTS`: "bias", "b", "scale").
  """
  return jnp.ndim(param) >= 2 and not NOT_WEIGHTS.search(path)


def weights_mask(params: Any) -> Any:
  """The weights of `params` (:func:`is_weight`): weight decay's mask.

  Args:
    params: the parameter pytree.

  Returns:
    A pytree of Python bools with the structure of `params`.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, p: is_weight(path_to_str(path), p), params)


def _compile(rules: MatrixRules) -> list[tuple[re.Pattern[str], MuonDimensionNumbers]]:
  compiled = []
  for i, rule in enumerate(rules):
    if not (isinstance(rule, (tuple, list)) and len(rule) == 2
            and isinstance(rule[1], MuonDimensionNumbers)):
      raise ValueError(
          f"matrix_rules[{i}] must be a (regex, MuonDimensionNumbers) pair, got {rule!r}")
    try:
      compiled.append((re.compile(rule[0]), rule[1]))
    except re.error as e:
      raise ValueError(f"matrix_rules[{i}] has an invalid regex {rule[0]!r}: {e}") from None
  return compiled


def _listed(axes: Sequence[int] | int) -> tuple[int, ...]:
  return (axes,) if isinstance(axes, int) else tuple(axes)


def _axes(axes: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
  return tuple(a % ndim for a in _listed(axes))


def _check_layout(path: str, shape: tuple[int, ...],
                  numbers: MuonDimensionNumbers) -> str | None:
  """Why `numbers` cannot read `shape` as matrices, or None if it can."""
  ndim = len(shape)
  if any(not -ndim <= a < ndim
         for a in _listed(numbers.reduction_axis) + _listed(numbers.output_axis)):
    return f"{path} {shape}: axes {numbers} out of range"
  reduction, output = _axes(numbers.reduction_axis, ndim), _axes(numbers.output_axis, ndim)
  if not reduction or not output or set(reduction) & set(output):
    return f"{path} {shape}: {numbers} needs disjoint, non-empty reduction and output axes"
  return None


def matrix_dimension_numbers(
    params: Any,
    param_labels: ParamLabels = None,
    rules: MatrixRules | None = None,
) -> Any:
  """How each hidden weight of `params` is read as matrices.

  A hidden weight is a weight (:func:`is_weight`) labelled attn_qkv,
  attn_out or mlp. Its layout is the first of `rules` whose regex matches
  its "/"-joined path; with none, a 2-D weight is one matrix and a 3-D one a
  stack of matrices on its first axis (layers, experts). A hidden weight of
  higher rank that no rule reads is an error: its layout cannot be guessed.

  Args:
    params: the parameter (or update) pytree.
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    rules: `(regex, optax.contrib.MuonDimensionNumbers)` pairs, tried in
      order; `None` for `DEFAULT_MATRIX_RULES` (Flax's multi-head attention,
      Gemma's einsum kernels). To add your own, pass
      `[*my_rules, *DEFAULT_MATRIX_RULES]`; for a layer axis second, as
      MaxText stacks layers, `(r"layers/", MuonDimensionNumbers(0, 2))`.

  Returns:
    A pytree with the structure of `params`: a `MuonDimensionNumbers` for
    every hidden weight, None elsewhere.

  Raises:
    ValueError: naming every hidden weight no rule can read, with its shape,
      or a rule that is not a `(regex, MuonDimensionNumbers)` pair.
  """
  labels = iter(jax.tree.leaves(resolve_labels(param_labels, params)))
  hidden = lambda path, p: (next(labels) in HIDDEN_MATRIX_COMPONENTS
                            and is_weight(path_to_str(path), p))
  return _layouts(params, rules, hidden)


def hidden_weight_layouts(params: Any, rules: MatrixRules | None = None) -> Any:
  """:func:`matrix_dimension_numbers` of a tree whose every leaf is a hidden
  weight (Muon's share of a partition: the other leaves are masked out)."""
  return _layouts(params, rules, lambda path, p: True)


def _layouts(params: Any, rules: MatrixRules | None,
             hidden: Callable[[Any, Any], bool]) -> Any:
  compiled = _compile(DEFAULT_MATRIX_RULES if rules is None else rules)
  unreadable = []

  def layout_of(path, param):
    if not hidden(path, param):
      return None
    name, shape = path_to_str(path), tuple(jnp.shape(param))
    layout = next((n for pattern, n in compiled if pattern.search(name)), None)
    if layout is None and len(shape) <= 3:
      layout = _LAST_TWO
    problem = (f"{name} {shape}: no rule reads it as matrices" if layout is None
               else _check_layout(name, shape, layout))
    if problem:
      unreadable.append(problem)
    return layout

  numbers = jax.tree_util.tree_map_with_path(layout_of, params)
  if unreadable:
    raise ValueError(
        "these hidden weights cannot be read as matrices: " + "; ".join(unreadable)
        + ". Pass matrix_rules= ((regex, optax.contrib.MuonDimensionNumbers("
        "reduction_axis, output_axis)) pairs, the first match winning; end them "
        "with *layeropt_jax.DEFAULT_MATRIX_RULES to keep the defaults).")
  return numbers


def as_matrices(x: jax.Array, numbers: MuonDimensionNumbers
                ) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
  """`x` as a stack of matrices `(batch, reduction, output)`, and the
  function that puts such a stack back in `x`'s layout."""
  ndim = x.ndim
  reduction, output = _axes(numbers.reduction_axis, ndim), _axes(numbers.output_axis, ndim)
  batch = tuple(a for a in range(ndim) if a not in reduction + output)
  order = batch + reduction + output
  size = lambda axes: math.prod(x.shape[a] for a in axes)
  stacked = jnp.transpose(x, order).reshape(
      (size(batch), size(reduction), size(output)))
  transposed_shape = tuple(x.shape[a] for a in order)
  inverse = tuple(order.index(a) for a in range(ndim))
  return stacked, lambda m: jnp.transpose(m.reshape(transposed_shape), inverse)
