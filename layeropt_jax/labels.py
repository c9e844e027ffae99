"""Component labels: which part of a transformer each parameter tensor is.

Every layer-wise rule of the library (LR multipliers, orthogonalisation, Muon
routing) is keyed on one of six component labels. A label is chosen by the
first regular expression that matches the parameter's "/"-joined path, in the
config-driven "regex -> value" style of big_vision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import re
from typing import Any, Union

import jax
import jax.numpy as jnp

COMPONENTS = ("embedding", "attn_qkv", "attn_out", "mlp", "norm", "head")
HIDDEN_MATRIX_COMPONENTS = frozenset({"attn_qkv", "attn_out", "mlp"})

Rules = Union[Sequence[tuple[str, str]], Mapping[str, str]]
ParamLabels = Union[Any, Callable[[Any], Any], None]


def _module_names(*names: str) -> str:
  """A regex matching any of `names` as a whole path component.

  Components are separated by "/" in pytree paths and by "." in flat Hugging
  Face state-dict keys, so both count as boundaries.
  """
  return r"(^|[/.])(" + "|".join(names) + r")([/.]|$)"


# Hugging Face names of Qwen3, Llama and Mistral (and this project's Flax
# model, which keeps those names); the first match wins.
DEFAULT_LABEL_RULES: tuple[tuple[str, str], ...] = (
    (_module_names("lm_head"), "head"),
    (_module_names("embed_tokens"), "embedding"),
    (_module_names("q_proj", "k_proj", "v_proj", "qkv_proj"), "attn_qkv"),
    (_module_names("o_proj"), "attn_out"),
    (_module_names("gate_proj", "up_proj", "down_proj", "gate_up_proj"), "mlp"),
    (
        _module_names(
            "input_layernorm", "post_attention_layernorm", "q_norm", "k_norm",
            "norm",
        ),
        "norm",
    ),
)


def path_to_str(path: Sequence[Any]) -> str:
  """Joins a pytree key path with "/", ignoring attribute keys.

  Flax NNX Variables flatten with a trailing `GetAttrKey('value')`; the plain
  gradient tree that `nnx.Optimizer.update` passes has none. Dropping attribute
  keys gives both trees the same paths (flax #3955, #5372).
  """
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      parts.append(str(key.key))
    # GetAttrKey: an attribute of a node (Variable.value), not a module name.
  return "/".join(parts)


def _compile_rules(rules: Rules) -> list[tuple[re.Pattern[str], str]]:
  items = rules.items() if isinstance(rules, Mapping) else rules
  compiled = []
  for i, rule in enumerate(items):
    if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
      raise ValueError(
          f"rules[{i}] must be a (regex, label) pair, got {rule!r}")
    pattern, label = rule
    if label not in COMPONENTS:
      raise ValueError(
          f"rules[{i}] has unknown label {label!r}; labels are {COMPONENTS}")
    try:
      compiled.append((re.compile(pattern), label))
    except re.error as e:
      raise ValueError(f"rules[{i}] has an invalid regex {pattern!r}: {e}")
  return compiled


def label_params(params: Any, rules: Rules | None = None) -> Any:
  """Labels every leaf of `params` with its transformer component.

  Args:
    params: a pytree of parameters (plain arrays, or the Variables of
      `nnx.state(model, nnx.Param)`).
    rules: `(regex, label)` pairs (or a mapping regex -> label) matched with
      `re.search` against each leaf's "/"-joined path; the first match wins.
      `None` uses `DEFAULT_LABEL_RULES` (Qwen3, Llama and Mistral Hugging Face
      names). To extend the defaults, pass
      `[*my_rules, *DEFAULT_LABEL_RULES]`.

  Returns:
    A pytree of the same structure whose leaves are labels from `COMPONENTS`.

  Raises:
    ValueError: listing every path that no rule matches, or naming a rule whose
      label or regex is invalid.
  """
  compiled = _compile_rules(DEFAULT_LABEL_RULES if rules is None else rules)
  unmatched = []

  def label_of(path, _):
    name = path_to_str(path)
    for pattern, label in compiled:
      if pattern.search(name):
        return label
    unmatched.append(name)
    return None

  labels = jax.tree_util.tree_map_with_path(label_of, params)
  if unmatched:
    raise ValueError(
        f"label_params: no rule matches {len(unmatched)} parameter(s): "
        + ", ".join(unmatched)
        + f". Add (regex, label) rules with a label from {COMPONENTS}.")
  return labels


def resolve_labels(param_labels: ParamLabels, params: Any) -> Any:
  """The label tree for `params`: given, computed by a callable, or default.

  Raises:
    ValueError: naming every path whose label is not one of `COMPONENTS`.
  """
  if param_labels is None:
    return label_params(params)
  labels = param_labels(params) if callable(param_labels) else param_labels
  unknown = [
      f"{path_to_str(path)}={label!r}"
      for path, label in jax.tree_util.tree_leaves_with_path(labels)
      if label not in COMPONENTS
  ]
  if unknown:
    raise ValueError(
        f"param_labels has labels outside {COMPONENTS}: {', '.join(unknown)}")
  return labels


def hidden_matrix_mask(param_labels: ParamLabels, params: Any) -> Any:
  """True for the 2-D attention and MLP weights (Muon's and AOVS's domain).

  Args:
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`label_params`.
    params: the parameter (or update) pytree.

  Returns:
    A pytree of Python bools with the structure of `params`.
  """
  labels = resolve_labels(param_labels, params)
  return jax.tree.map(
      lambda p, label: jnp.ndim(p) == 2
      and label in HIDDEN_MATRIX_COMPONENTS,
      params, labels)
