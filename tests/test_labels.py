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


# One model per built-in naming convention, as its own code names the
# parameters (flat state-dict keys or nested Flax trees, "/"-joined here).
CONVENTIONS = {
    "gpt2": {  # transformers' GPT2LMHeadModel and nanoGPT
        "transformer.wte.weight": "embedding",
        "transformer.wpe.weight": "embedding",
        "transformer.h.0.ln_1.weight": "norm",
        "transformer.h.0.attn.c_attn.weight": "attn_qkv",
        "transformer.h.0.attn.c_attn.bias": "attn_qkv",
        "transformer.h.0.attn.c_proj.weight": "attn_out",
        "transformer.h.0.ln_2.bias": "norm",
        "transformer.h.0.mlp.c_fc.weight": "mlp",
        "transformer.h.0.mlp.c_proj.weight": "mlp",
        "transformer.ln_f.weight": "norm",
        "lm_head.weight": "head",
    },
    "gemma": {  # google-deepmind/gemma (linen) and flax/examples/gemma (NNX)
        "transformer/embedder/input_embedding": "embedding",
        "transformer/layer_0/attn/qkv_einsum/w": "attn_qkv",
        "transformer/layer_0/attn/q_einsum/w": "attn_qkv",
        "transformer/layer_0/attn/kv_einsum/w": "attn_qkv",
        "transformer/layer_0/attn/_query_norm/scale": "norm",
        "transformer/layer_0/attn/attn_vec_einsum/w": "attn_out",
        "transformer/layer_0/mlp/gating_einsum": "mlp",
        "transformer/layer_0/mlp/linear": "mlp",
        "layers/0/mlp/gate_proj/kernel": "mlp",
        "transformer/layer_0/pre_attention_norm/scale": "norm",
        "transformer/layer_0/post_attention_norm/scale": "norm",
        "transformer/layer_0/pre_ffw_norm/scale": "norm",
        "transformer/layer_0/post_ffw_norm/scale": "norm",
        "transformer/final_norm/scale": "norm",
    },
    "nanodo": {  # google-deepmind/nanodo's TransformerDo
        "params/embed/embedding": "embedding",
        "params/pos_embed/embedding": "embedding",
        "params/blocks_0/LayerNorm_0/scale": "norm",
        "params/blocks_0/CausalAttn_0/query/kernel": "attn_qkv",
        "params/blocks_0/CausalAttn_0/key/kernel": "attn_qkv",
        "params/blocks_0/CausalAttn_0/value/kernel": "attn_qkv",
        "params/blocks_0/CausalAttn_0/attn_out_proj/kernel": "attn_out",
        "params/blocks_0/LayerNorm_1/scale": "norm",
        "params/blocks_0/Mlp_0/Dense_0/kernel": "mlp",
        "params/blocks_0/Mlp_0/Dense_1/kernel": "mlp",
        "params/out_ln/scale": "norm",
    },
}


def _nested(flat):
  tree = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_naming_conventions_need_no_rules(convention):
  want = CONVENTIONS[convention]
  if "." in next(iter(want)):
    params = {path: np.zeros(2) for path in want}  # a flat state dict
  else:
    params = _nested({path: np.zeros(2) for path in want})
  assert _by_path(layeropt_jax.label_params(params)) == want


def test_flax_linen_default_names():
  import flax.linen as nn

  class Block(nn.Module):
    @nn.compact
    def __call__(self, ids):
      x = nn.Embed(16, 8)(ids)
      x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
      x = x + nn.Dense(8)(nn.gelu(nn.Dense(16)(nn.RMSNorm()(x))))
      return x

  params = Block().init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  labels = _by_path(layeropt_jax.label_params(params))
  assert labels == {
      "params/Embed_0/embedding": "embedding",
      "params/LayerNorm_0/scale": "norm", "params/LayerNorm_0/bias": "norm",
      "params/RMSNorm_0/scale": "norm",
      **{f"params/MultiHeadDotProductAttention_0/{p}/{w}": "attn_qkv"
         for p in ("query", "key", "value") for w in ("kernel", "bias")},
      "params/MultiHeadDotProductAttention_0/out/kernel": "attn_out",
      "params/MultiHeadDotProductAttention_0/out/bias": "attn_out",
      **{f"params/Dense_{i}/{w}": "mlp" for i in (0, 1) for w in ("kernel", "bias")},
  }


def _by_shape(params):
  return layeropt_jax.label_params(params, by_shape=True)


def test_shape_fallback_on_an_nnx_mlp():
  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.fc1 = nnx.Linear(4, 8, rngs=rngs)
      self.ln = nnx.LayerNorm(8, rngs=rngs)
      self.fc2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
      return self.fc2(self.ln(nnx.relu(self.fc1(x))))

  model = MLP(nnx.Rngs(0))
  with pytest.raises(ValueError, match="fc1/kernel"):
    layeropt_jax.label_params(nnx.state(model, nnx.Param))
  assert _by_path(_by_shape(nnx.state(model, nnx.Param))) == {
      "fc1/kernel": "mlp", "fc1/bias": "norm", "fc2/kernel": "mlp",
      "fc2/bias": "norm", "ln/scale": "norm", "ln/bias": "norm"}
  # The fallback as an optimizer's param_labels, inside nnx.Optimizer.
  optimizer = nnx.Optimizer(model, layeropt_jax.lamvs(1e-2, param_labels=_by_shape),
                            wrt=nnx.Param)
  x = jnp.ones((3, 4))
  before = model.fc1.kernel[...]
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  optimizer.update(model, grads)
  assert not np.array_equal(before, model.fc1.kernel[...])


def test_shape_fallback_on_a_linen_model_keeps_rule_matches():
  import flax.linen as nn

  class Tower(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Dense(8, name="encoder")(x)
      x = nn.LayerNorm(name="pre_head")(x)
      return nn.Dense(2, name="lm_head")(x)

  params = Tower().init(jax.random.key(0), jnp.zeros((1, 4)))
  assert _by_path(_by_shape(params)) == {
      "params/encoder/kernel": "mlp", "params/encoder/bias": "norm",
      "params/pre_head/scale": "norm", "params/pre_head/bias": "norm",
      "params/lm_head/kernel": "head", "params/lm_head/bias": "head"}


def test_unmatched_error_says_how_to_label():
  with pytest.raises(ValueError) as e:
    layeropt_jax.ladm(1e-3).init({"w1": jnp.ones((2, 2)), "b1": jnp.ones(2)})
  msg = str(e.value)
  assert "no rule matches 2 parameter(s): b1, w1" in msg
  assert "param_labels=" in msg
  assert "label_params(p, by_shape=True)" in msg


def test_label_table_lists_path_shape_label_and_multiplier():
  params = trees.qwen3_params(tied=True, num_layers=1)
  rows = layeropt_jax.label_table(params, scales=layeropt_jax.METHOD_SCALES["ladm"])
  by_path = {row.path: row for row in rows}
  assert len(rows) == len(jax.tree.leaves(params))
  row = by_path["model/layers/0/self_attn/o_proj/kernel"]
  assert row == ("model/layers/0/self_attn/o_proj/kernel", (32, 24), "attn_out", 0.95)
  assert by_path["model/norm/scale"][2:] == ("norm", 0.65)
  # Without scales every multiplier is 1.0; explicit labels are honoured.
  labels = jax.tree.map(lambda _: "mlp", params)
  assert {r.multiplier for r in layeropt_jax.label_table(params)} == {1.0}
  assert {r.label for r in layeropt_jax.label_table(params, labels)} == {"mlp"}


@pytest.mark.parametrize("name", list(layeropt_jax.METHOD_SCALES))
def test_method_scales_are_what_the_alias_applies(name):
  params = trees.qwen3_params(tied=False, num_layers=1)
  grads = trees.random_grads(params, np.random.default_rng(0))
  default = layeropt_jax.get_optimizer(name, 1e-2)
  explicit = layeropt_jax.get_optimizer(
      name, 1e-2, scales=dict(layeropt_jax.METHOD_SCALES[name]))
  got = [tx.update(grads, tx.init(params), params)[0] for tx in (default, explicit)]
  jax.tree.map(np.testing.assert_array_equal, *got)


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
