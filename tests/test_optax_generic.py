"""optax's generic optimizer checks (alias_test.py, contrib/_common_test.py),
run over every name of `get_optimizer`; complex parameters; the injection
of `get_optimizer` and of callable labels; `nu_dtype`."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import layeropt_jax
from layeropt_jax import registry
from tests import trees

NAMES = list(layeropt_jax.OPTIMIZERS)
LABELLED = [n for n in NAMES if "param_labels" in registry.hyperparameters(n)]
WITH_NU_DTYPE = [n for n in NAMES if "nu_dtype" in registry.hyperparameters(n)]
# AdEMAMix's slow moment (b3 0.9999, weight 5) needs ~10^4 steps to settle;
# optax's own tests shorten it the same way.
OVERRIDES = {"ademamix": {"b3": 0.99}}


def by_shape(params):
  return layeropt_jax.label_params(params, by_shape=True)


def optimizer(name, learning_rate, **overrides):
  """`name` with weight decay 0 and labels by shape where it takes labels, so
  that plain arrays (no module names) are valid parameters."""
  if name in LABELLED:
    overrides.setdefault("param_labels", by_shape)
  return layeropt_jax.get_optimizer(
      name, learning_rate, weight_decay=0.0, **OVERRIDES.get(name, {}), **overrides)


def update(name, tx, grads, state, params, loss=None):
  """One update; Sophia's Hessian estimate needs the loss."""
  extra = {}
  if name == "sophia":
    extra["obj_fn"] = loss or (lambda p: sum(jnp.sum(optax.tree.norm(x) ** 2)
                                             for x in jax.tree.leaves(p)))
  return tx.update(grads, state, params, **extra)


def quadratic(x):
  return jnp.sum(jnp.square(x - jnp.array([1.0, -1.0])))


def rosenbrock(x):
  return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


@pytest.mark.parametrize("problem, start, minimum", [
    (quadratic, [-1.0, 2.0], [1.0, -1.0]),
    (rosenbrock, [0.0, 0.0], [1.0, 1.0]),
])
@pytest.mark.parametrize("name", NAMES)
def test_reaches_the_minimum(name, problem, start, minimum):
  steps = 2000
  tx = optimizer(name, optax.cosine_decay_schedule(1e-2, steps))

  @jax.jit
  def run(x):
    def step(carry, _):
      x, state = carry
      updates, state = update(name, tx, jax.grad(problem)(x), state, x, problem)
      return (optax.apply_updates(x, updates), state), None
    return jax.lax.scan(step, (x, tx.init(x)), length=steps)[0][0]

  # Every method ends within 5e-4 of the minimum at this learning rate
  # (LAMO's normalised gradients land at 3e-5, Sophia's clipped steps at
  # 4.5e-4); a failure to converge stays orders of magnitude away.
  np.testing.assert_allclose(run(jnp.asarray(start)), minimum, atol=5e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", NAMES)
def test_updates_keep_the_parameters_dtype(name, dtype):
  params = {"w": jnp.full((3, 2), 0.5, dtype), "b": jnp.full((2,), -0.5, dtype)}
  tx = optimizer(name, 1e-2)
  updates, _ = update(name, tx, params, tx.init(params), params)
  chex.assert_trees_all_equal_dtypes(updates, params)


@pytest.mark.parametrize("name", NAMES)
def test_state_keeps_shapes_and_dtypes_under_cond(name):
  # lax.cond needs both branches to return one structure, shape and dtype.
  params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.ones((2,), jnp.float32)}
  tx = optimizer(name, 1e-2)
  state = tx.init(params)

  @jax.jit
  def maybe_update(take, state):
    return jax.lax.cond(
        take, lambda s: update(name, tx, params, s, params)[1], lambda s: s, state)

  new_state = maybe_update(True, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


@pytest.mark.parametrize("name", NAMES)
def test_tree_map_params(name):
  params = {"w": jnp.ones((3, 2)), "b": jnp.ones((2,))}
  tx = optimizer(name, 1e-2)
  state = update(name, tx, params, tx.init(params), params)[1]
  # Parameter-shaped state (moments) is mapped; counts and the like are not.
  doubled = optax.tree_map_params(tx, lambda p: 2 * p, state)
  chex.assert_trees_all_equal_structs(doubled, state)
  mapped = [np.asarray(a) for a, b in zip(jax.tree.leaves(doubled), jax.tree.leaves(state))
            if not np.array_equal(a, b)]
  assert mapped, "no parameter-shaped leaf of the state was mapped"


@pytest.mark.parametrize("name", NAMES)
def test_scalar_parameters(name):
  params = jnp.asarray(2.0)
  tx = optimizer(name, 1e-1)
  updates, _ = update(name, tx, jnp.asarray(0.5), tx.init(params), params)
  assert updates.shape == () and float(updates) < 0


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sophia"])
def test_complex_parameters_rotate_with_their_gradient(name):
  # Every method acts on |g| and the direction of g, so multiplying the
  # gradient by i multiplies the update by i (as in optax's Adam).
  rng = np.random.default_rng(0)
  complex_normal = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)
  params = {"w": jnp.asarray(complex_normal(4, 3), jnp.complex64),
            "b": jnp.asarray(complex_normal(3), jnp.complex64)}
  grads = jax.tree.map(lambda p: 0.3 * p + 0.1j, params)
  tx = optimizer(name, 1e-2)
  state = tx.init(params)
  updates, _ = update(name, tx, grads, state, params)
  rotated, _ = update(name, tx, jax.tree.map(lambda g: 1j * g, grads), state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  assert all(np.any(np.imag(u) != 0) for u in jax.tree.leaves(updates))
  # float32 rounding of |g|^2, sqrt and Newton-Schulz on updates of ~1e-2.
  chex.assert_trees_all_close(rotated, jax.tree.map(lambda u: 1j * u, updates),
                              rtol=1e-5, atol=1e-7)


def test_sophia_refuses_complex_parameters():
  with pytest.raises(ValueError, match="sophia cannot take complex parameters.*: w"):
    layeropt_jax.sophia(1e-2).init({"w": jnp.ones((2,), jnp.complex64)})


def test_inject_hyperparams_of_get_optimizer():
  params = trees.qwen3_params(tied=True, num_layers=1)
  grads = trees.random_grads(params, np.random.default_rng(0))
  tx = optax.inject_hyperparams(layeropt_jax.get_optimizer)(
      name="ladm", learning_rate=1e-2, b1=0.8)
  state = tx.init(params)
  assert set(state.hyperparams) == {"learning_rate"}
  updates, _ = tx.update(grads, state, params)
  want, _ = (lambda t: t.update(grads, t.init(params), params))(
      layeropt_jax.ladm(1e-2, b1=0.8))
  chex.assert_trees_all_close(updates, want, rtol=1e-6)
  # The learning rate lives in the state: halving it halves the update.
  state.hyperparams["learning_rate"] = jnp.asarray(5e-3)
  halved, _ = tx.update(grads, state, params)
  chex.assert_trees_all_close(halved, jax.tree.map(lambda u: u / 2, updates),
                              rtol=1e-6)


@pytest.mark.parametrize("name", LABELLED)
def test_callable_labels_under_inject_hyperparams_need_static_args(name):
  params = {"fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}}
  factory = layeropt_jax.OPTIMIZERS[name]
  # inject_hyperparams takes every callable argument for a schedule of the
  # step count; `static_args` says the labels are not one.
  tx = optax.inject_hyperparams(factory, static_args="param_labels")(
      learning_rate=1e-2, param_labels=by_shape)
  updates, state = update(name, tx, params, tx.init(params), params)
  chex.assert_tree_all_finite(updates)
  assert "param_labels" not in state.hyperparams
  # Without it, the callable is called with the step count; the labels it
  # gives are refused, with the remedy.
  with pytest.raises(ValueError, match="static_args='param_labels'"):
    unmarked = optax.inject_hyperparams(factory)(
        learning_rate=1e-2, param_labels=by_shape)
    update(name, unmarked, params, unmarked.init(params), params)


@pytest.mark.parametrize("name", WITH_NU_DTYPE)
def test_nu_dtype_stores_the_second_moment(name):
  params = trees.qwen3_params(tied=True, num_layers=1)
  grads = trees.random_grads(params, np.random.default_rng(0))
  tx = layeropt_jax.get_optimizer(name, 1e-2, nu_dtype=jnp.bfloat16)
  updates, state = tx.update(grads, tx.init(params), params)
  nu = [s.nu for s in jax.tree.leaves(
      state, is_leaf=lambda s: hasattr(s, "nu")) if hasattr(s, "nu")]
  assert nu, "no second moment in the state"
  assert {leaf.dtype for leaf in jax.tree.leaves(nu)} == {jnp.dtype(jnp.bfloat16)}
  chex.assert_trees_all_equal_dtypes(
      [s.mu if hasattr(s, "mu") else s.mu_fast for s in jax.tree.leaves(
          state, is_leaf=lambda s: hasattr(s, "nu")) if hasattr(s, "nu")],
      [jax.tree.map(lambda x: x.astype(jnp.float32), params)])
  # Applied: the next step reads the rounded moment. bfloat16 keeps 8 bits,
  # a relative error of 2^-9 on v, 2^-10 on sqrt(v); the update moves by that
  # fraction of its size (<= lr * max multiplier * |m/sqrt(v)| ~ 2e-2).
  want_tx = layeropt_jax.get_optimizer(name, 1e-2)
  want_updates, want_state = want_tx.update(grads, want_tx.init(params), params)
  second, _ = tx.update(grads, state, params)
  want_second, _ = want_tx.update(grads, want_state, params)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(second), jax.tree.leaves(want_second)))
  chex.assert_trees_all_close(second, want_second, rtol=0, atol=2e-2 * 2.0**-9)
  # Step 1 computes from g alone, but StableAdamW's clip reads the stored v_1.
  chex.assert_trees_all_close(updates, want_updates, rtol=0,
                              atol=2e-2 * 2.0**-9 if name == "stable_adamw" else 0)
