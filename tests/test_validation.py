"""Bad hyperparameters and names fail at construction, naming what is wrong."""

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import layeropt_jax

BAD = [
    ("lamvs", "b1", 1.0), ("lamvs", "b2", -0.1), ("lamvs", "eps", -1e-8),
    ("lamvs", "weight_decay", -0.1),
    ("ladm", "b_slow", 1.5), ("ladm", "alpha_warmup_steps", -1),
    ("aovs", "gamma", 1.0), ("aovs", "ns_steps", 0), ("aovs", "b2", 0.0),
    ("lamo", "b1", 1.0), ("lamo", "eps", float("nan")),
    ("malao", "clip_threshold", -1.0), ("malao", "b2", 1.0),
    ("layer_adam", "b1", -0.5), ("stable_adamw", "eps", -1.0),
    ("adamw", "b2", 1.0), ("lion", "b1", 2.0), ("lamb", "weight_decay", -1.0),
    ("muon", "beta", 1.0), ("muon", "ns_steps", 0),
    ("sophia", "gamma", -1.0), ("sophia", "update_interval", 0),
    ("ademamix", "b3", 1.0),
]


@pytest.mark.parametrize("name, field, value", BAD)
def test_bad_hyperparameter_names_field_and_value(name, field, value):
  with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
    layeropt_jax.get_optimizer(name, 1e-3, **{field: value})


@pytest.mark.parametrize("name", list(layeropt_jax.OPTIMIZERS))
def test_negative_learning_rate(name):
  with pytest.raises(ValueError, match=re.escape("learning_rate=-0.001")):
    layeropt_jax.get_optimizer(name, -1e-3)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError) as e:
    layeropt_jax.get_optimizer("adam", 1e-3)
  for name in layeropt_jax.OPTIMIZERS:
    assert name in str(e.value)


def test_unknown_argument_lists_valid_arguments():
  with pytest.raises(ValueError) as e:
    layeropt_jax.get_optimizer("ladm", 1e-3, beta_slow=0.99)
  msg = str(e.value)
  assert "beta_slow" in msg and "b_slow" in msg and "alpha_warmup_steps" in msg


@pytest.mark.parametrize("scales, message", [
    (dict(embedding=1.0), "missing labels ['attn_qkv', 'attn_out', 'mlp', 'norm', 'head']; "
     "to change only these, merge them into the method's table: "
     "scales={**layeropt_jax.METHOD_SCALES[<method>], 'embedding': 1.0}"),
    ({**layeropt_jax.LAMVS_SCALES, "ffn": 1.0}, "unknown labels ['ffn']"),
    ({**layeropt_jax.LAMVS_SCALES, "mlp": -1.0}, "scales['mlp'] must be a finite number >= 0, got -1.0"),
    ([1.0] * 6, "scales must be a mapping"),
])
def test_bad_scales(scales, message):
  for name in ("lamvs", "ladm", "aovs", "lamo", "malao", "layer_adam",
               "stable_adamw"):
    with pytest.raises(ValueError, match=re.escape(message)):
      layeropt_jax.get_optimizer(name, 1e-3, scales=scales)


def test_errors_carry_only_the_hints_that_apply():
  with pytest.raises(ValueError) as e:
    layeropt_jax.get_optimizer("lamvs", 1e-3, scales={**layeropt_jax.LAMVS_SCALES, "ffn": 1.0})
  assert "merge" not in str(e.value)  # an unknown label: merging would not help
  params = {"w": jnp.ones((2, 2)), "v": jnp.ones(2)}
  with pytest.raises(ValueError) as e:
    layeropt_jax.lamvs(1e-3, param_labels={"w": "mlp"}).init(params)
  assert "inject_hyperparams" not in str(e.value)  # a tree of labels, of other paths


def test_sophia_without_obj_fn_says_how_to_pass_it():
  from flax import nnx

  model = nnx.Linear(4, 4, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, layeropt_jax.sophia(1e-3), wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  with pytest.raises(ValueError, match=re.escape(
      "inside flax.nnx.Optimizer, optimizer.update(model, grads, obj_fn=obj_fn)")):
    optimizer.update(model, grads)


def test_unknown_label_in_param_labels_is_an_error():
  params = {"w": jnp.ones((2, 2))}
  tx = layeropt_jax.lamvs(1e-3, param_labels={"w": "ffn"})
  with pytest.raises(ValueError, match=re.escape("w='ffn'")):
    tx.init(params)


def test_schedules_and_traced_values_pass_validation():
  layeropt_jax.get_optimizer("lamvs", optax.cosine_decay_schedule(1e-3, 100))
  tx = optax.inject_hyperparams(layeropt_jax.ladm)(learning_rate=1e-3, b1=0.9)
  tx.init({"q_proj": {"kernel": jnp.ones((2, 2))}})
