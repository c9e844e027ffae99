"""with_component_metrics: per-label norms against NumPy, sharded, in NNX."""

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax
import pytest

import layeropt_jax
from layeropt_jax.labels import path_to_str
from tests import trees


def numpy_metrics(params, grads, updates, labels):
  """The same measurements in float64 NumPy, from flat path -> array dicts."""
  want = {}
  by_label = {}
  for path, label in labels.items():
    by_label.setdefault(label, []).append(path)
  sq = lambda tree, paths: sum(float(np.sum(np.square(np.asarray(tree[p], np.float64))))
                               for p in paths)
  for label, paths in by_label.items():
    n = sum(np.size(params[p]) for p in paths)
    update_rms, param_rms = np.sqrt(sq(updates, paths) / n), np.sqrt(sq(params, paths) / n)
    want.update({f"grad_norm/{label}": np.sqrt(sq(grads, paths)),
                 f"update_rms/{label}": update_rms, f"param_rms/{label}": param_rms,
                 f"update_to_param/{label}": update_rms / param_rms})
  want["grad_norm/global"] = np.sqrt(sq(grads, list(labels)))
  return want


def _flat(tree):
  return {path_to_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def check(metrics, want):
  assert set(metrics) == set(want)
  for key, value in want.items():
    # float32 sums of ~1e3 squares: relative error ~1e-6.
    np.testing.assert_allclose(float(metrics[key]), value, rtol=2e-5, err_msg=key)


@pytest.fixture(scope="module")
def problem():
  params = trees.qwen3_params(tied=False, num_layers=2)
  grads = trees.random_grads(params, np.random.default_rng(0))
  return params, grads


def test_metrics_per_label_equal_numpy(problem):
  params, grads = problem
  inner = layeropt_jax.ladm(1e-2)
  tx = layeropt_jax.with_component_metrics(inner)
  state = tx.init(params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  # Updates pass through unchanged (up to XLA fusing the step differently:
  # float32 rounding, 2^-23 relative).
  want_updates, _ = jax.jit(inner.update)(grads, inner.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2.0**-22, atol=0),
               updates, want_updates)
  labels = _flat(layeropt_jax.label_params(params))
  check(state.metrics, numpy_metrics(_flat(params), _flat(grads), _flat(updates), labels))
  assert {k.split("/")[1] for k in state.metrics} == set(layeropt_jax.COMPONENTS) | {"global"}


def test_no_recompilation_and_a_fixed_state_structure(problem):
  params, grads = problem
  tx = layeropt_jax.with_component_metrics(layeropt_jax.lamvs(1e-2))
  update = jax.jit(tx.update)
  state = tx.init(params)
  for scale in (1.0, 0.5, 2.0):
    _, new_state = update(jax.tree.map(lambda g: scale * g, grads), state, params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    state = new_state
  assert update._cache_size() == 1


def test_exact_under_fsdp_on_8_devices(problem):
  params, grads = problem
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  # FSDP: every leaf whose first axis divides by 8 is sharded on it.
  shard = lambda x: NamedSharding(mesh, P("data") if x.ndim and x.shape[0] % 8 == 0 else P())
  sharded_params = jax.device_put(params, jax.tree.map(shard, params))
  sharded_grads = jax.device_put(grads, jax.tree.map(shard, grads))
  assert any(len(x.sharding.device_set) == 8 and not x.sharding.is_fully_replicated
             for x in jax.tree.leaves(sharded_params))
  tx = layeropt_jax.with_component_metrics(layeropt_jax.aovs(1e-2))
  update = jax.jit(tx.update)
  _, sharded = update(sharded_grads, tx.init(sharded_params), sharded_params)
  _, one = update(grads, tx.init(params), params)
  for key in one.metrics:
    np.testing.assert_allclose(sharded.metrics[key], one.metrics[key], rtol=1e-6,
                               err_msg=key)


def test_inside_nnx_optimizer():
  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.embed_tokens = nnx.Embed(10, 8, rngs=rngs)
      self.up_proj = nnx.Linear(8, 16, rngs=rngs)
      self.norm = nnx.RMSNorm(16, rngs=rngs)

    def __call__(self, ids):
      return self.norm(nnx.relu(self.up_proj(self.embed_tokens(ids))))

  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      model, layeropt_jax.with_component_metrics(layeropt_jax.lamvs(1e-2)), wrt=nnx.Param)
  ids = jnp.arange(6).reshape(2, 3)
  params = {k: np.asarray(v) for k, v in _flat(nnx.as_pure(nnx.state(model, nnx.Param))).items()}
  grads = nnx.grad(lambda m: jnp.mean(m(ids) ** 2))(model)
  optimizer.update(model, grads)
  after = _flat(nnx.as_pure(nnx.state(model, nnx.Param)))
  updates = {k: np.asarray(after[k]) - params[k] for k in params}
  labels = _flat(layeropt_jax.label_params(nnx.state(model, nnx.Param)))
  metrics = {k: v[...] for k, v in optimizer.opt_state.metrics.items()}
  want = numpy_metrics(params, _flat(nnx.as_pure(grads)), updates, labels)
  # Updates recovered as a difference of float32 parameters: ~1e-7 / 1e-2.
  for key, value in want.items():
    np.testing.assert_allclose(float(metrics[key]), value,
                               rtol=2e-5 if "update" not in key else 1e-4, err_msg=key)


def test_update_needs_params(problem):
  params, grads = problem
  tx = layeropt_jax.with_component_metrics(optax.sgd(1e-2))
  with pytest.raises(ValueError, match="pass params to update"):
    tx.update(grads, tx.init(params))


def test_exact_under_shard_map_data_parallelism(problem):
  # Each device holds the replicated parameters and its batch shard's
  # gradient; after pmean every device measures the same, global, numbers.
  from functools import partial

  params, grads = problem
  devices = 4
  mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])
  tx = layeropt_jax.with_component_metrics(layeropt_jax.lamvs(1e-2))
  local = jax.tree.map(lambda g: jnp.stack([g * (1 + k) for k in range(devices)]), grads)

  @jax.jit
  @partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P()), out_specs=P())
  def parallel(params, local_grads, state):
    mean = jax.lax.pmean(jax.tree.map(lambda g: g[0], local_grads), "data")
    return tx.update(mean, state, params)[1].metrics

  replicated = NamedSharding(mesh, P())
  got = parallel(jax.device_put(params, replicated),
                 jax.device_put(local, NamedSharding(mesh, P("data"))),
                 jax.device_put(tx.init(params), replicated))
  want = tx.update(jax.tree.map(lambda g: g.mean(0), local), tx.init(params), params)[1].metrics
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
