"""Optimizer state holds exactly the buffers of docs/methods.rst; data parallelism."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

import layeropt_jax
from tests import trees

# Parameter-sized buffers per docs/methods.rst.
BUFFERS = {"lamvs": 2, "ladm": 3, "aovs": 2, "lamo": 2, "malao": 2,
           "layer_adam": 2, "stable_adamw": 2, "adamw": 2}


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("name", sorted(BUFFERS))
def test_state_holds_exactly_the_buffers(name, tied):
  params = trees.qwen3_params(tied=tied)
  state = jax.eval_shape(layeropt_jax.get_optimizer(name, 1e-3).init, params)
  param_shapes = sorted(p.shape for p in jax.tree.leaves(params))
  leaves = jax.tree.leaves(state)
  buffers = sorted(x.shape for x in leaves if x.ndim > 0)
  assert buffers == sorted(param_shapes * BUFFERS[name])
  assert all(x.dtype == jnp.float32 for x in leaves if x.ndim > 0)
  scalars = [x for x in leaves if x.ndim == 0]
  # A step count, plus LAMO's one momentum product per tensor.
  n_tensors = len(param_shapes)
  assert len(scalars) == 1 + (n_tensors if name == "lamo" else 0)
  n_params = sum(int(np.prod(s)) for s in param_shapes)
  state_bytes = sum(x.size * x.dtype.itemsize for x in leaves)
  assert state_bytes - 4 * BUFFERS[name] * n_params == 4 * len(scalars)


@pytest.mark.parametrize("name", list(layeropt_jax.OPTIMIZERS))
def test_shard_map_with_pmean_equals_single_device(name):
  devices = 4
  assert jax.device_count() >= devices, "conftest sets 8 simulated devices"
  mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])
  params = trees.qwen3_params(tied=False, num_layers=1)
  tx = layeropt_jax.get_optimizer(name, 1e-2)
  rng = np.random.default_rng(0)
  # One gradient per device and step, as from each device's batch shard.
  per_device = [
      jax.tree.map(lambda *g: jnp.stack(g),
                   *[trees.random_grads(params, rng) for _ in range(devices)])
      for _ in range(3)]

  @jax.jit
  @partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P()),
           out_specs=(P(), P()))
  def parallel_step(params, local_grads, state):
    grads = jax.lax.pmean(jax.tree.map(lambda g: g[0], local_grads), "data")
    return trees.step(tx, params, grads, state)

  single_step = jax.jit(lambda p, g, s: trees.step(tx, p, g, s))
  replicated = jax.sharding.NamedSharding(mesh, P())
  p_par, s_par = jax.device_put((params, tx.init(params)), replicated)
  p_one, s_one = params, tx.init(params)
  for stacked in per_device:
    p_par, s_par = parallel_step(
        p_par, jax.device_put(stacked, jax.sharding.NamedSharding(mesh, P("data"))),
        s_par)
    mean = jax.tree.map(lambda g: g.mean(0), stacked)
    p_one, s_one = single_step(p_one, mean, s_one)
  chex.assert_trees_all_close(p_par, p_one, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(s_par, s_one, rtol=1e-5, atol=1e-6)


def test_stable_adamw_on_fsdp_sharded_tensors_needs_no_gather():
  # Its per-tensor statistic is reduced in blocks (layeropt_jax._stable_adamw);
  # each block must hold rows of every shard, whichever axis is sharded.
  mesh = jax.make_mesh((8,), ("data",))
  specs = {"embedding": P("data", None), "w": P(None, "data")}
  params = {"embedding": jnp.full((4096, 64), 0.1), "w": jnp.full((64, 4096), 0.1)}
  grads = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)),
                       params)
  tx = layeropt_jax.stable_adamw(1e-2, param_labels={"embedding": "embedding", "w": "mlp"})
  shardings = {k: jax.sharding.NamedSharding(mesh, s) for k, s in specs.items()}
  sharded = jax.device_put(params, shardings)
  state = tx.init(sharded)
  step = jax.jit(lambda p, g, s: trees.step(tx, p, g, s))
  compiled = step.lower(sharded, jax.device_put(grads, shardings), state).compile()
  assert "all-gather" not in compiled.as_text()
  got = step(sharded, jax.device_put(grads, shardings), state)
  want = step(params, grads, tx.init(params))
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)
