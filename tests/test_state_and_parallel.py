"""Optimizer state holds exactly the buffers of docs/methods.rst; data parallelism."""

import contextlib
from functools import partial

import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
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


def _sharded_on(mesh, dim: int):
  """Each leaf sharded over the mesh's axis on dimension `dim`, replicated
  where it has no such dimension."""
  def sharding(x):
    spec = [None] * x.ndim
    if dim < x.ndim:
      spec[dim] = "x"
    return jax.sharding.NamedSharding(mesh, P(*spec))
  return lambda tree: jax.tree.map(lambda x: jax.device_put(x, sharding(x)), tree)


def _spec(x) -> tuple:
  """An array's partition spec, without the trailing `None`s that mean the same."""
  spec = tuple(x.sharding.spec)
  while spec and spec[-1] is None:
    spec = spec[:-1]
  return spec


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
@pytest.mark.parametrize("name", list(layeropt_jax.OPTIMIZERS))
def test_every_optimizer_keeps_the_parameters_sharding(name, axis_type):
  """Parameters sharded on either dimension over 8 devices, in both axis
  types, with and without `jax.set_mesh`: the update and the new state are
  sharded as the parameters are and equal the one-device step's.

  Under `AxisType.Explicit` the state starts sharded too (`init` inside
  `jax.set_mesh`); without the mesh context JAX cannot create an explicitly
  sharded array inside `jit`, and every optimizer raises JAX's error there,
  as optax's own adamw does. Under `AxisType.Auto` `jit` chooses the
  sharding of a state created from constants; the state enters the step
  sharded as the parameters, as a training loop's does after `init` with its
  `out_shardings`.
  """
  mesh = jax.make_mesh((8,), ("x",), axis_types=(getattr(jax.sharding.AxisType, axis_type),))
  params = trees.qwen3_params(tied=False, num_layers=1)
  grads = trees.random_grads(params, np.random.default_rng(0))
  tx = layeropt_jax.get_optimizer(name, 1e-2)
  step = jax.jit(partial(trees.step, tx))
  want = step(params, grads, tx.init(params))
  parameter_shaped = lambda x: x.shape in {p.shape for p in jax.tree.leaves(params)}
  for dim in (0, 1):
    shard = _sharded_on(mesh, dim)
    for with_mesh in (True, False):
      context = jax.set_mesh(mesh) if with_mesh else contextlib.nullcontext()
      with context:
        if axis_type == "Explicit" and not with_mesh:
          for optimizer in (tx, optax.adamw(1e-2)):
            with pytest.raises(ValueError, match="mesh context"):
              jax.jit(optimizer.init)(shard(params))
          continue
        state = jax.jit(tx.init)(shard(params))
        if axis_type == "Auto":
          state = jax.tree.map(lambda x: shard(x) if parameter_shaped(x) else x, state)
        got = step(shard(params), shard(grads), state)
      sharded_as_params = jax.tree.map(_spec, shard(params))
      assert jax.tree.map(_spec, got[0]) == sharded_as_params
      for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(got[1])):
        if parameter_shaped(after):
          assert _spec(before) == _spec(after) == _spec(shard(after))
      # The same sums in another order: float32 rounding of reductions over
      # at most a few hundred elements, compounded by Newton-Schulz's five
      # iterations of products (aovs, muon) and Lion's sign.
      chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)
