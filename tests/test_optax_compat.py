"""Every optimizer of `get_optimizer` inside optax's and Flax's machinery."""

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import layeropt_jax
from tests import trees

NAMES = list(layeropt_jax.OPTIMIZERS)
LR = 1e-2


def _grads(params, seed, scale=1.0):
  return jax.tree.map(lambda g: g * scale,
                      trees.random_grads(params, np.random.default_rng(seed)))


def _run(tx, params, grad_seq):
  state = tx.init(params)
  step = jax.jit(lambda p, g, s: trees.step(tx, p, g, s))
  for grads in grad_seq:
    params, state = step(params, grads, state)
  return params, state


@pytest.fixture(scope="module")
def params():
  return trees.qwen3_params(tied=False, num_layers=1)


@pytest.mark.parametrize("name", NAMES)
def test_jit_compiles_once(name, params):
  tx = layeropt_jax.get_optimizer(name, LR)
  step = jax.jit(lambda p, g, s: trees.step(tx, p, g, s))
  state = tx.init(params)
  p = params
  for seed in range(3):
    p, state = step(p, _grads(params, seed), state)
  assert step._cache_size() == 1
  chex.assert_tree_all_finite(p)


@pytest.mark.parametrize("name", NAMES)
def test_constant_schedule_equals_constant(name, params):
  grads = [_grads(params, s) for s in range(3)]
  want, _ = _run(layeropt_jax.get_optimizer(name, LR), params, grads)
  got, _ = _run(layeropt_jax.get_optimizer(name, optax.constant_schedule(LR)),
                params, grads)
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams(name, params):
  grads = [_grads(params, s) for s in range(3)]
  want, _ = _run(layeropt_jax.get_optimizer(name, LR), params, grads)
  factory = layeropt_jax.OPTIMIZERS[name]
  tx = optax.inject_hyperparams(factory)(learning_rate=LR)
  got, state = _run(tx, params, grads)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
  # The injected learning rate is live state: setting it to 0 freezes params.
  state.hyperparams["learning_rate"] = jnp.zeros_like(
      state.hyperparams["learning_rate"])
  frozen, _ = trees.step(tx, got, grads[0], state)
  chex.assert_trees_all_equal(frozen, got)


@pytest.mark.parametrize("name", NAMES)
def test_multi_steps_averages_gradients(name, params):
  k = 3
  micro = [_grads(params, s) for s in range(k)]
  mean = jax.tree.map(lambda *g: sum(g) / k, *micro)
  want, _ = _run(layeropt_jax.get_optimizer(name, LR), params, [mean])
  tx = optax.MultiSteps(layeropt_jax.get_optimizer(name, LR), every_k_schedule=k)
  state = tx.init(params)
  p = params
  for i, g in enumerate(micro):
    p, state = trees.step(tx, p, g, state)
    if i < k - 1:
      chex.assert_trees_all_equal(p, params)
  chex.assert_trees_all_close(p, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_apply_if_finite_skips_nan(name, params):
  tx = optax.apply_if_finite(layeropt_jax.get_optimizer(name, LR),
                             max_consecutive_errors=5)
  state = tx.init(params)
  p, state = trees.step(tx, params, _grads(params, 0), state)
  bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan),
                     _grads(params, 1))
  p_after, state_after = trees.step(tx, p, bad, state)
  chex.assert_trees_all_equal(p_after, p)
  chex.assert_trees_all_equal(state_after.inner_state, state.inner_state)
  assert int(state_after.notfinite_count) == 1
  p_next, _ = trees.step(tx, p_after, _grads(params, 2), state_after)
  chex.assert_tree_all_finite(p_next)
  assert not np.allclose(trees.flat(p_next)["model/norm/scale"],
                         trees.flat(p)["model/norm/scale"])


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_params_stay_bfloat16(name, params):
  params16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  grads = [_grads(params16, s) for s in range(3)]
  got, _ = _run(layeropt_jax.get_optimizer(name, LR), params16, grads)
  chex.assert_trees_all_equal_dtypes(got, params16)
  chex.assert_tree_all_finite(got)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(got), jax.tree.leaves(params16)))


@pytest.mark.parametrize("name", NAMES)
def test_mu_dtype_bfloat16(name, params):
  tx = layeropt_jax.get_optimizer(name, LR, mu_dtype=jnp.bfloat16)
  grads = [_grads(params, s) for s in range(3)]
  got, state = _run(tx, params, grads)
  chex.assert_tree_all_finite(got)
  embedding_size = trees.flat(params)["model/embed_tokens/embedding"].size
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(state)
            if leaf.size == embedding_size}
  assert jnp.dtype(jnp.bfloat16) in dtypes, dtypes
  # One step differs from float32 moments by rounding only (Lion's sign may
  # flip where its interpolation is near 0: at most 2 lr).
  one, _ = _run(tx, params, grads[:1])
  want, _ = _run(layeropt_jax.get_optimizer(name, LR), params, grads[:1])
  chex.assert_trees_all_close(
      one, want, rtol=0, atol=2.01 * LR if name == "lion" else 1e-4)


class TinyLM(nnx.Module):
  """A few layers named as in Qwen3, enough for every component label."""

  def __init__(self, rngs: nnx.Rngs, vocab: int = 16, width: int = 8):
    self.embed_tokens = nnx.Embed(vocab, width, rngs=rngs)
    self.input_layernorm = nnx.RMSNorm(width, rngs=rngs)
    self.q_proj = nnx.Linear(width, width, rngs=rngs)
    self.o_proj = nnx.Linear(width, width, use_bias=False, rngs=rngs)
    self.up_proj = nnx.Linear(width, 2 * width, use_bias=False, rngs=rngs)
    self.down_proj = nnx.Linear(2 * width, width, use_bias=False, rngs=rngs)
    self.norm = nnx.RMSNorm(width, rngs=rngs)
    self.lm_head = nnx.Linear(width, vocab, use_bias=False, rngs=rngs)

  def __call__(self, ids):
    x = self.embed_tokens(ids)
    x = x + self.o_proj(jnp.tanh(self.q_proj(self.input_layernorm(x))))
    x = x + self.down_proj(nnx.gelu(self.up_proj(x)))
    return self.lm_head(self.norm(x))


def _lm_loss(model, ids):
  logits = model(ids[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, ids[:, 1:]).mean()


@pytest.mark.parametrize("name", NAMES)
def test_inside_nnx_optimizer(name):
  ids = jax.random.randint(jax.random.key(1), (4, 9), 0, 16)
  model = TinyLM(nnx.Rngs(0))
  graphdef, _ = nnx.split(model)
  # A copy: the model's Variables are updated in place below.
  start = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  tx = layeropt_jax.get_optimizer(name, 3e-2)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, ids):
    loss, grads = nnx.value_and_grad(_lm_loss)(model, ids)
    # Sophia's Hessian estimate: the loss as a function of the parameters.
    obj_fn = lambda p: _lm_loss(nnx.merge(graphdef, p), ids)
    optimizer.update(model, grads, obj_fn=obj_fn)
    return loss

  losses = [float(train_step(model, optimizer, ids)) for _ in range(8)]
  assert losses[-1] < losses[0], losses

  # The same steps with plain optax on the plain parameter tree.
  params = start
  loss_of = lambda p: _lm_loss(nnx.merge(graphdef, p), ids)
  state = tx.init(params)
  for _ in range(8):
    grads = jax.grad(loss_of)(params)
    updates, state = tx.update(grads, state, params, obj_fn=loss_of)
    params = optax.apply_updates(params, updates)
  # The two paths are different XLA programs (one jitted whole, one op by
  # op), so they agree to float32 rounding. Sophia divides by a Hutchinson
  # estimate of the Hessian diagonal: where that estimate is small, rounding
  # is amplified by m / h^2 with no bound short of the clip at one step (lr)
  # per element, so it gets 1% of a step; a wrong label (multipliers 0.8 to
  # 2) or a wrong obj_fn moves parameters by a sizeable part of a step.
  atol = 1e-2 * 3e-2 if name == "sophia" else 1e-5
  chex.assert_trees_all_close(
      nnx.to_pure_dict(nnx.state(model, nnx.Param)), params,
      rtol=1e-4, atol=atol)
