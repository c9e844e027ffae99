"""Component labels and their use by the layer-wise multipliers."""

import re

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import layeropt_jax
from layeropt_jax.labels import path_to_str
from tests import trees


def _by_path(labels):
  return {path_to_str(p): l for p, l in jax.tree_util.tree_leaves_with_path(labels)}


PER_LAYER = {
    "self_attn/q_proj/kernel": "attn_qkv",
    "self_attn/k_proj/kernel": "attn_qkv",
    "self_attn/v_proj/kernel": "attn_qkv",
    "self_attn/o_proj/kernel": "attn_out",
    "self_attn/q_norm/scale": "norm",
    "self_attn/k_norm/scale": "norm",
    "mlp/gate_proj/kernel": "mlp",
    "mlp/up_proj/kernel": "mlp",
    "mlp/down_proj/kernel": "mlp",
    "input_layernorm/scale": "norm",
    "post_attention_layernorm/scale": "norm",
}


@pytest.mark.parametrize("tied", [True, False])
def test_qwen3_tree(tied):
  labels = _by_path(layeropt_jax.label_params(trees.qwen3_params(tied=tied)))
  want = {"model/embed_tokens/embedding": "embedding", "model/norm/scale": "norm"}
  for layer in range(2):
    want.update({f"model/layers/{layer}/{k}": v for k, v in PER_LAYER.items()})
  if not tied:
    want["lm_head/kernel"] = "head"
  assert labels == want


def test_llama_and_mistral_state_dict_names():
  # Flat Hugging Face state-dict keys, as torch's `state_dict()` gives them.
  keys = {
      "model.embed_tokens.weight": "embedding",
      "model.layers.0.self_attn.q_proj.weight": "attn_qkv",
      "model.layers.0.self_attn.q_proj.bias": "attn_qkv",
      "model.layers.0.self_attn.k_proj.weight": "attn_qkv",
      "model.layers.0.self_attn.v_proj.weight": "attn_qkv",
      "model.layers.0.self_attn.o_proj.weight": "attn_out",
      "model.layers.0.mlp.gate_proj.weight": "mlp",
      "model.layers.0.mlp.up_proj.weight": "mlp",
      "model.layers.0.mlp.down_proj.weight": "mlp",
      "model.layers.0.input_layernorm.weight": "norm",
      "model.layers.0.post_attention_layernorm.weight": "norm",
      "model.norm.weight": "norm",
      "lm_head.weight": "head",
  }
  labels = layeropt_jax.label_params({k: np.zeros(2) for k in keys})
  assert labels == keys


def test_nnx_variables_and_plain_gradients_get_the_same_labels():
  class Block(nnx.Module):
    def __init__(self, rngs):
      self.embed_tokens = nnx.Embed(5, 4, rngs=rngs)
      self.layers = nnx.List([nnx.Dict(
          q_proj=nnx.Linear(4, 4, rngs=rngs),
          input_layernorm=nnx.RMSNorm(4, rngs=rngs))])
      self.lm_head = nnx.Linear(4, 5, rngs=rngs)

  model = Block(nnx.Rngs(0))
  variables = nnx.state(model, nnx.Param)
  assert any(isinstance(k, jax.tree_util.GetAttrKey)
             for path, _ in jax.tree_util.tree_leaves_with_path(variables)
             for k in path)
  plain = nnx.as_pure(variables)
  from_variables = _by_path(layeropt_jax.label_params(variables))
  from_plain = _by_path(layeropt_jax.label_params(plain))
  assert from_variables == from_plain
  assert from_plain["layers/0/q_proj/kernel"] == "attn_qkv"
  assert from_plain["layers/0/q_proj/bias"] == "attn_qkv"
  assert from_plain["lm_head/bias"] == "head"


def test_user_rules_first_match_wins():
  params = {"encoder": {"attn": {"w": jnp.ones((2, 2))}, "ffn": {"w": jnp.ones((2, 2))},
                        "ln": {"g": jnp.ones(2)}}, "lm_head": {"kernel": jnp.ones((2, 3))}}
  rules = [(r"attn", "attn_qkv"), (r"ffn|attn", "mlp"), (r"ln", "norm"),
           *layeropt_jax.DEFAULT_LABEL_RULES]
  labels = layeropt_jax.label_params(params, rules)
  assert labels == {"encoder": {"attn": {"w": "attn_qkv"}, "ffn": {"w": "mlp"},
                                "ln": {"g": "norm"}},
                    "lm_head": {"kernel": "head"}}
  # A mapping regex -> label works too.
  assert layeropt_jax.label_params({"x": 1.0}, {"^x$": "mlp"}) == {"x": "mlp"}


def test_unmatched_paths_are_all_listed():
  params = {"model": {"embed_tokens": {"embedding": jnp.ones((3, 2))},
                      "adapter": {"a": jnp.ones(2), "b": jnp.ones(2)}},
            "scale_shift": jnp.ones(())}
  with pytest.raises(ValueError) as e:
    layeropt_jax.label_params(params)
  msg = str(e.value)
  assert "3 parameter(s)" in msg
  for path in ("model/adapter/a", "model/adapter/b", "scale_shift"):
    assert path in msg
  assert "embed_tokens" not in msg


@pytest.mark.parametrize("rules, field", [
    ([("q_proj", "attention")], "unknown label 'attention'"),
    ([("q_proj(", "attn_qkv")], "invalid regex"),
    ([("q_proj",)], "rules[0] must be a (regex, label) pair"),
])
def test_bad_rules(rules, field):
  with pytest.raises(ValueError, match=re.escape(field)):
    layeropt_jax.label_params({"q_proj": jnp.ones(2)}, rules)


def test_scale_by_layer_multiplies_each_component():
  params = trees.qwen3_params(tied=False)
  scales = dict(embedding=0.5, attn_qkv=2.0, attn_out=3.0, mlp=4.0, norm=5.0,
                head=6.0)
  tx = layeropt_jax.scale_by_layer(scales)
  ones = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(ones, tx.init(params), params)
  labels = _by_path(layeropt_jax.label_params(params))
  for path, u in trees.flat(updates).items():
    np.testing.assert_array_equal(u, scales[labels[path]])


def test_explicit_label_tree_and_callable_agree():
  params = trees.qwen3_params(tied=True)
  labels = layeropt_jax.label_params(params)
  grads = trees.random_grads(params, np.random.default_rng(0))
  results = []
  for param_labels in (None, labels, layeropt_jax.label_params):
    tx = layeropt_jax.lamvs(1e-3, param_labels=param_labels)
    updates, _ = tx.update(grads, tx.init(params), params)
    results.append(updates)
  for other in results[1:]:
    jax.tree.map(np.testing.assert_array_equal, results[0], other)
