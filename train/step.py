"""The train and eval steps, jitted over a device mesh with explicit shardings.

The batch is sharded over the mesh's `data` axis (data parallel). With FSDP,
every parameter and every optimizer-state leaf is sharded too, on its largest
dimension divisible by the device count; XLA inserts the all-gathers and
reduce-scatters. Optimizer state mirrors parameter shapes, so one rule on the
shape shards both alike.
"""

from __future__ import annotations

from typing import NamedTuple

from flax import nnx
import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from train import model as model_lib

DATA_AXIS = "data"


class TrainState(NamedTuple):
  params: nnx.State
  opt_state: optax.OptState


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def fsdp_spec(shape: tuple[int, ...], num_shards: int) -> P:
  """Shards the largest dimension divisible by `num_shards`; else replicates."""
  candidates = [d for d, n in enumerate(shape) if n % num_shards == 0 and n >= num_shards]
  if num_shards == 1 or not candidates:
    return P()
  dim = max(candidates, key=lambda d: shape[d])
  return P(*[DATA_AXIS if d == dim else None for d in range(len(shape))])


def loss_fn(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy of windows `tokens [B, T + 1]`."""
  logits = nnx.merge(graphdef, params)(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


class Trainer:
  """The jitted init, train and eval steps of one model and optimizer on a mesh.

  `tx` must be wrapped in `optax.apply_if_finite`: the step reports its count
  of skipped non-finite steps.
  """

  def __init__(self, config: model_lib.Qwen3Config,
               tx: optax.GradientTransformationExtraArgs,
               mesh: jax.sharding.Mesh, fsdp: bool, seed: int):
    self.mesh = mesh
    self.tx = tx

    def init() -> TrainState:
      graphdef, params = nnx.split(
          model_lib.Qwen3ForCausalLM(config, rngs=nnx.Rngs(seed)), nnx.Param)
      return TrainState(params, tx.init(params))

    self.graphdef = nnx.split(
        nnx.eval_shape(lambda: model_lib.Qwen3ForCausalLM(config, rngs=nnx.Rngs(seed))),
        nnx.Param)[0]
    shapes = jax.eval_shape(init)
    num_shards = mesh.shape[DATA_AXIS] if fsdp else 1
    self.state_sharding = jax.tree.map(
        lambda x: NamedSharding(mesh, fsdp_spec(x.shape, num_shards)), shapes)
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        shapes, self.state_sharding)
    self.batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    replicated = NamedSharding(mesh, P())

    self._init = jax.jit(init, out_shardings=self.state_sharding)
    self._init_opt_state = jax.jit(tx.init, out_shardings=self.state_sharding.opt_state)
    self.train_step = jax.jit(
        self._train_step,
        in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, replicated),
        donate_argnums=0)
    self._eval_loss = jax.jit(
        lambda params, tokens: loss_fn(self.graphdef, params, tokens),
        in_shardings=(self.state_sharding.params, self.batch_sharding),
        out_shardings=replicated)

  def init(self, params: nnx.State | None = None) -> TrainState:
    """Fresh parameters (seeded), or given ones (e.g. a Hugging Face checkpoint's)
    with a fresh optimizer state, placed with the run's shardings."""
    if params is None:
      return self._init()
    params = jax.device_put(params, self.state_sharding.params)
    return TrainState(params, self._init_opt_state(params))

  def _train_step(self, state: TrainState, tokens: jax.Array):
    loss = lambda params: loss_fn(self.graphdef, params, tokens)
    value, grads = jax.value_and_grad(loss)(state.params)
    # Every optimizer accepts `obj_fn`; only Sophia uses it (its Hessian estimate).
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params, obj_fn=loss)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), {
        "loss": value, "nonfinite_steps": opt_state.total_notfinite}

  def global_batch(self, local_rows: np.ndarray) -> jax.Array:
    """This process's rows of a global batch, as one array over the mesh."""
    return jax.make_array_from_process_local_data(self.batch_sharding, local_rows)

  def evaluate(self, params: nnx.State, batches: list[jax.Array]) -> float:
    """Mean loss over fixed global batches."""
    return float(np.mean([self._eval_loss(params, b) for b in batches]))
