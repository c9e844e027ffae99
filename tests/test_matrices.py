"""Which parameters are weights, and the matrices AOVS and Muon read in them:
multi-head kernels, stacked layers, a user's layout, biases of any rank."""

import jax
import jax.numpy as jnp
import numpy as np
from optax.contrib import MuonDimensionNumbers
import pytest
from flax import nnx

import layeropt_jax
from layeropt_jax import matrices

ORTHOGONALIZING = ["aovs", "muon"]
EPS32 = np.finfo(np.float32).eps


def updates_of(name, params, grads, steps=3, **overrides):
  """The summed updates of `steps` jitted steps on the same gradients."""
  tx = layeropt_jax.get_optimizer(name, 1e-2, **overrides)
  state, total = tx.init(params), jax.tree.map(jnp.zeros_like, params)
  update = jax.jit(tx.update)
  for _ in range(steps):
    updates, state = update(grads, state, params)
    total = jax.tree.map(jnp.add, total, updates)
  return total


def random_like(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [0.1 * jax.random.normal(k, x.shape)
                                      for k, x in zip(keys, leaves)])


def close(got, want, scale=None):
  """Equal to a float32 tolerance of the arithmetic: Newton-Schulz's five
  iterations of products over at most 64 terms, relative to the update's
  largest entry."""
  scale = np.max(np.abs(want)) if scale is None else scale
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                             atol=64 * 5 * EPS32 * scale)


class FlaxAttention(nnx.Module):
  def __init__(self, rngs):
    self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=32, qkv_features=32,
                                       decode=False, rngs=rngs)


def test_flax_attention_kernels_are_read_by_their_layout():
  params = nnx.to_pure_dict(nnx.state(FlaxAttention(nnx.Rngs(0)), nnx.Param))
  layouts = layeropt_jax.matrix_dimension_numbers(params)
  assert layouts["attn"]["query"]["kernel"] == MuonDimensionNumbers(-3, (-2, -1))
  assert layouts["attn"]["out"]["kernel"] == MuonDimensionNumbers((-3, -2), -1)
  # The (heads, head_dim) biases are not weights: not orthogonalised, not decayed.
  assert layouts["attn"]["query"]["bias"] is None
  assert not layeropt_jax.weights_mask(params)["attn"]["query"]["bias"]
  assert layeropt_jax.weights_mask(params)["attn"]["query"]["kernel"]


@pytest.mark.parametrize("name", ORTHOGONALIZING)
def test_flax_attention_gets_the_hugging_face_layouts_update(name):
  """The same attention written with nnx.MultiHeadAttention and with
  q/k/v/o_proj linears: the same updates, biases included."""
  flax_params = nnx.to_pure_dict(nnx.state(FlaxAttention(nnx.Rngs(0)), nnx.Param))
  grads = random_like(flax_params, 1)
  to_hf = lambda t: {"self_attn": {
      **{f"{n[0]}_proj": {"kernel": t["attn"][n]["kernel"].reshape(32, 32),
                          "bias": t["attn"][n]["bias"].reshape(32)}
         for n in ("query", "key", "value")},
      "o_proj": {"kernel": t["attn"]["out"]["kernel"].reshape(32, 32),
                 "bias": t["attn"]["out"]["bias"]}}}
  got = updates_of(name, flax_params, grads)
  want = updates_of(name, to_hf(flax_params), to_hf(grads))
  got = to_hf(got)
  for path, g in jax.tree_util.tree_leaves_with_path(got):
    w = want
    for key in path:
      w = w[key.key]
    close(g, w)


@pytest.mark.parametrize("name", ORTHOGONALIZING)
def test_biases_get_the_update_without_orthogonalisation(name):
  params = nnx.to_pure_dict(nnx.state(FlaxAttention(nnx.Rngs(0)), nnx.Param))
  grads = random_like(params, 2)
  got = updates_of(name, params, grads)
  # AOVS without orthogonalisation; Muon's AdamW part.
  want = (updates_of("aovs", params, grads, orthogonalize=False) if name == "aovs"
          else updates_of("adamw", params, grads))
  for n in ("query", "key", "value", "out"):
    close(got["attn"][n]["bias"], want["attn"][n]["bias"])


@pytest.mark.parametrize("name", ORTHOGONALIZING)
def test_each_layer_of_a_stack_gets_its_own_update(name):
  """A (layers, in, out) stack: slice i's update is that of slice i as a 2-D
  parameter alone (same labels, same RMS-matching scale)."""
  stack = 0.05 * jax.random.normal(jax.random.key(0), (3, 16, 24))
  grads = random_like({"layers": {"mlp": {"kernel": stack}}}, 3)
  got = updates_of(name, {"layers": {"mlp": {"kernel": stack}}}, grads)
  for i in range(3):
    alone = updates_of(name, {"layers": {"mlp": {"kernel": stack[i]}}},
                       {"layers": {"mlp": {"kernel": grads["layers"]["mlp"]["kernel"][i]}}})
    close(got["layers"]["mlp"]["kernel"][i], alone["layers"]["mlp"]["kernel"])


@pytest.mark.parametrize("name", ORTHOGONALIZING)
def test_a_users_rule_reads_a_layer_axis_in_second_place(name):
  """MaxText stacks layers on axis 1: (in, layers, out), read by a rule."""
  stack = 0.05 * jax.random.normal(jax.random.key(0), (16, 3, 24))
  params = {"layers": {"mlp": {"kernel": stack}}}
  grads = random_like(params, 4)
  rules = [(r"layers/", MuonDimensionNumbers(reduction_axis=0, output_axis=2)),
           *layeropt_jax.DEFAULT_MATRIX_RULES]
  got = updates_of(name, params, grads, matrix_rules=rules)
  for i in range(3):
    alone = updates_of(name, {"layers": {"mlp": {"kernel": stack[:, i]}}},
                       {"layers": {"mlp": {"kernel": grads["layers"]["mlp"]["kernel"][:, i]}}})
    close(got["layers"]["mlp"]["kernel"][:, i], alone["layers"]["mlp"]["kernel"])


@pytest.mark.parametrize("name", ORTHOGONALIZING)
def test_an_unreadable_hidden_weight_fails_at_init_naming_it(name):
  params = {"conv": {"mlp": {"kernel": jnp.zeros((3, 3, 8, 16))}},
            "layers": {"0": {"mlp": {"kernel": jnp.zeros((8, 16))}}}}
  tx = layeropt_jax.get_optimizer(name, 1e-2)
  with pytest.raises(ValueError, match=r"conv/mlp/kernel \(3, 3, 8, 16\): no rule reads "
                                       r"it as matrices.*Pass matrix_rules="):
    tx.init(params)


def test_matrix_rules_are_checked():
  params = {"mlp": {"kernel": jnp.zeros((8, 16))}}
  with pytest.raises(ValueError, match=r"matrix_rules\[0\] must be a \(regex, "
                                       "MuonDimensionNumbers\\) pair, got 'mlp'"):
    layeropt_jax.matrix_dimension_numbers(params, rules=["mlp"])
  with pytest.raises(ValueError, match=r"mlp/kernel \(8, 16\): .* needs disjoint"):
    layeropt_jax.matrix_dimension_numbers(params, rules=[("mlp", MuonDimensionNumbers(0, 0))])


def test_weight_decay_per_component_is_validated_like_scales():
  with pytest.raises(ValueError, match=r"weight_decay must give a value for exactly .*"
                                       r"missing labels \['attn_qkv'"):
    layeropt_jax.lamvs(1e-3, weight_decay={"embedding": 0.0})
  with pytest.raises(ValueError, match=r"weight_decay\['mlp'\] must be a finite number >= 0, "
                                       "got -1"):
    layeropt_jax.aovs(1e-3, weight_decay={**layeropt_jax.UNIT_SCALES, "mlp": -1})


# Muon's Newton-Schulz is optax's; under explicit axes it runs on replicated
# copies (layeropt_jax.muon's docstring), AOVS's keeps the layer axis sharded.
@pytest.mark.parametrize("name,axis_type", [("aovs", "Auto"), ("aovs", "Explicit"),
                                            ("muon", "Auto")])
def test_a_stack_sharded_on_its_layer_axis_is_orthogonalised_where_it_lies(name, axis_type):
  """8 simulated devices, the stack's layer axis sharded over them: the
  update keeps the sharding and equals the unsharded one, and the compiled
  step moves no stack between devices (no all-gather: each device runs
  Newton-Schulz on its own layers)."""
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(getattr(jax.sharding.AxisType, axis_type),))
  stack = 0.05 * jax.random.normal(jax.random.key(0), (8, 16, 24))
  params = {"layers": {"mlp": {"kernel": stack}}}
  grads = random_like(params, 5)
  want = updates_of(name, params, grads, steps=1)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  with jax.set_mesh(mesh):
    placed = jax.device_put((params, grads), sharding)
    tx = layeropt_jax.get_optimizer(name, 1e-2)
    state = jax.jit(tx.init)(placed[0])
    step = jax.jit(lambda g, s, p: tx.update(g, s, p)[0])
    got = step(placed[1], state, placed[0])
    hlo = step.lower(placed[1], state, placed[0]).compile().as_text()
  assert got["layers"]["mlp"]["kernel"].sharding.is_equivalent_to(sharding, 3)
  close(got["layers"]["mlp"]["kernel"], want["layers"]["mlp"]["kernel"])
  assert "all-gather" not in hlo


def test_is_weight_by_name_and_rank():
  assert matrices.is_weight("model/layers/0/mlp/up_proj/kernel", jnp.zeros((2, 3)))
  assert matrices.is_weight("model/embed_tokens/embedding", jnp.zeros((5, 3)))
  for path, shape in [("attn/query/bias", (4, 8)), ("layers/norm/scale", (3, 8)),
                      ("mlp/b", (4, 4)), ("mlp/kernel", (8,))]:
    assert not matrices.is_weight(path, jnp.zeros(shape)), path
