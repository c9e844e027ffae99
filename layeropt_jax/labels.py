"""Component labels: which part of a transformer each parameter tensor is.

Every layer-wise rule of the library (LR multipliers, orthogonalisation, Muon
routing) is keyed on one of six component labels. A label is chosen by the
first regular expression that matches the parameter's "/"-joined path, in the
config-driven "regex -> value" style of big_vision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import re
from types import MappingProxyType
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


def _after(parent: str, *names: str) -> str:
  """A regex matching `parent` followed by one of `names`, as path components."""
  return (r"(^|[/.])" + parent + r"[/.](" + "|".join(names) + r")([/.]|$)")


# The naming conventions labelled without user code, each as (regex, label)
# rules; DEFAULT_LABEL_RULES tries them in this order, the first match wins.
NAMING_CONVENTIONS: MappingProxyType[str, tuple[tuple[str, str], ...]]
NAMING_CONVENTIONS = MappingProxyType({
    # Qwen3, Llama, Mistral (Hugging Face transformers and this project's
    # Flax model, which keeps those names).
    "hugging_face": (
        (_module_names("lm_head"), "head"),
        (_module_names("embed_tokens"), "embedding"),
        (_module_names("q_proj", "k_proj", "v_proj", "qkv_proj"), "attn_qkv"),
        (_module_names("o_proj"), "attn_out"),
        (_module_names("gate_proj", "up_proj", "down_proj", "gate_up_proj"),
         "mlp"),
        (_module_names("input_layernorm", "post_attention_layernorm",
                       "q_norm", "k_norm", "norm"), "norm"),
    ),
    # GPT-2 (transformers) and nanoGPT: c_proj is the attention output under
    # `attn` and the MLP's down projection under `mlp`.
    "gpt2": (
        (_module_names("wte", "wpe"), "embedding"),
        (_module_names("c_attn"), "attn_qkv"),
        (_after("attn", "c_proj"), "attn_out"),
        (_module_names("c_fc"), "mlp"),
        (_after("mlp", "c_proj"), "mlp"),
        (_module_names("ln_1", "ln_2", "ln_f"), "norm"),
    ),
    # Gemma in Flax (google-deepmind/gemma, flax/examples/gemma).
    "gemma": (
        (_module_names("embedder"), "embedding"),
        (_module_names("q_einsum", "kv_einsum", "qkv_einsum"), "attn_qkv"),
        (_module_names("attn_vec_einsum"), "attn_out"),
        (_module_names("mlp"), "mlp"),
        (_module_names("pre_attention_norm", "post_attention_norm",
                       "pre_ffw_norm", "post_ffw_norm", "final_norm",
                       "_query_norm", "_key_norm"), "norm"),
    ),
    # nanodo (google-deepmind/nanodo): linen modules named in its model.
    "nanodo": (
        (_module_names("embed", "pos_embed"), "embedding"),
        (_module_names("attn_out_proj"), "attn_out"),
        (_module_names(r"Mlp_\d+"), "mlp"),
        (_module_names("out_ln"), "norm"),
    ),
    # Flax's default module names (linen's `Dense_0`, `LayerNorm_1`, ...),
    # the parameter of linen's and NNX's `Embed`, and the projections of their
    # multi-head attention (`query`, `key`, `value`, `out`).
    "flax": (
        (_module_names(r"Embed_\d+"), "embedding"),
        (r"(^|[/.])embedding$", "embedding"),
        (_module_names("query", "key", "value"), "attn_qkv"),
        (_after(r"(MultiHeadDotProductAttention_\d+|attn|attention|self_attn)",
                "out"), "attn_out"),
        (_module_names(r"Dense_\d+", r"DenseGeneral_\d+"), "mlp"),
        (_module_names(r"LayerNorm_\d+", r"RMSNorm_\d+", r"GroupNorm_\d+",
                       r"BatchNorm_\d+"), "norm"),
    ),
})

DEFAULT_LABEL_RULES: tuple[tuple[str, str], ...] = tuple(
    rule for rules in NAMING_CONVENTIONS.values() for rule in rules)


def label_by_shape(param: Any) -> str:
  """The fallback label: "mlp" for a matrix or larger, "norm" otherwise.

  A matrix is a hidden weight more often than anything else; vectors and
  scalars are norm scales and biases. Embeddings and heads cannot be told
  from hidden matrices by shape: name them with rules.

  Args:
    param: a parameter (an array or anything with a shape).

  Returns:
    "mlp" if `param` has two or more dimensions, else "norm".
  """
  return "mlp" if jnp.ndim(param) >= 2 else "norm"


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


def label_params(
    params: Any, rules: Rules | None = None, *, by_shape: bool = False,
) -> Any:
  """Labels every leaf of `params` with its transformer component.

  Args:
    params: a pytree of parameters (plain arrays, or the Variables of
      `nnx.state(model, nnx.Param)`).
    rules: `(regex, label)` pairs (or a mapping regex -> label) matched with
      `re.search` against each leaf's "/"-joined path; the first match wins.
      `None` uses `DEFAULT_LABEL_RULES`: the names of Qwen3, Llama and
      Mistral (Hugging Face), GPT-2 and nanoGPT, Gemma in Flax, nanodo and
      Flax's default module names (`NAMING_CONVENTIONS`). To extend them,
      pass `[*my_rules, *DEFAULT_LABEL_RULES]`.
    by_shape: label the leaves no rule matches with :func:`label_by_shape`
      ("mlp" for ndim >= 2, "norm" otherwise) instead of raising.

  Returns:
    A pytree of the same structure whose leaves are labels from `COMPONENTS`.

  Raises:
    ValueError: listing every path that no rule matches (unless `by_shape`),
      or naming a rule whose label or regex is invalid.
  """
  compiled = _compile_rules(DEFAULT_LABEL_RULES if rules is None else rules)
  unmatched = []

  def label_of(path, param):
    name = path_to_str(path)
    for pattern, label in compiled:
      if pattern.search(name):
        return label
    if by_shape:
      return label_by_shape(param)
    unmatched.append(name or "<the root leaf>")
    return None

  labels = jax.tree_util.tree_map_with_path(label_of, params)
  if unmatched:
    raise ValueError(
        f"label_params: no rule matches {len(unmatched)} parameter(s): "
        + ", ".join(unmatched)
        + ". Give the optimizer param_labels= (a pytree of labels from "
        f"{COMPONENTS}, or a callable params -> labels, such as "
        "lambda p: label_params(p, my_rules)), or label the rest by shape "
        "with param_labels=lambda p: label_params(p, by_shape=True) "
        "(matrices 'mlp', vectors and scalars 'norm').")
  return labels


def resolve_labels(param_labels: ParamLabels, params: Any) -> Any:
  """The label tree for `params`: given, computed by a callable, or default.

  Raises:
    ValueError: the labels are not a tree of `params`' paths (as when
      `optax.inject_hyperparams` took a labels callable for a schedule), or
      naming every path whose label is not one of `COMPONENTS`.
  """
  if param_labels is None:
    return label_params(params)
  labels = param_labels(params) if callable(param_labels) else param_labels
  label_paths = jax.tree_util.tree_leaves_with_path(labels)
  want = [path_to_str(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
  if [path_to_str(path) for path, _ in label_paths] != want:
    # What optax.inject_hyperparams passes: a labels callable called on the
    # step count, as if a schedule, which gives one label for the whole tree.
    taken_for_a_schedule = jax.tree_util.treedef_is_leaf(jax.tree.structure(labels))
    raise ValueError(
        f"param_labels must give one label per parameter, at the parameters' "
        f"paths ({', '.join(want[:4])}{', ...' if len(want) > 4 else ''}); "
        f"got {labels!r}." + (
            " Under optax.inject_hyperparams a callable param_labels is taken for a "
            "schedule: pass static_args='param_labels'." if taken_for_a_schedule else ""))
  unknown = [
      f"{path_to_str(path)}={label!r}"
      for path, label in label_paths
      if label not in COMPONENTS
  ]
  if unknown:
    raise ValueError(
        f"param_labels has labels outside {COMPONENTS}: {', '.join(unknown)}")
  return labels
