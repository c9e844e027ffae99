"""The train and eval steps of K runs in one program, jitted over a device mesh.

Runs differ in seed (initialisation and data order) and peak learning rate:
every state leaf has a leading run axis, a batch is `[K, B, T + 1]`, and the
step maps over the runs (vmapped in groups, see `over_runs`). `train_steps`
scans the step over `n` batches `[n, K, B, T + 1]` in one call. A single run is
K = 1, so a run and a sweep share one code path.

The batch is sharded over the mesh's `data` axis (data parallel). With FSDP,
every parameter and every optimizer-state leaf is sharded too, on its largest
dimension divisible by the device count; XLA inserts the all-gathers and
reduce-scatters. Optimizer state mirrors parameter shapes, so one rule on the
shape shards both alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from train import model as model_lib
from train import optim, provenance
from train.config import TrainConfig

DATA_AXIS = "data"

# The train step's XLA options on small CPUs without AVX-512, where they were
# measured faster (results/perf_notes.md): dots through Eigen rather than
# YNNPACK, each on one thread (XLA still runs independent operations side by
# side). One thread also keeps a dot's summation order fixed, so a resumed
# run stays bitwise the uninterrupted one. Measured on 2-core AVX2 machines
# only: AVX-512 CPUs and larger ones keep XLA's defaults until measured.
_SMALL_CPU_WITHOUT_AVX512_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "",
                                     "xla_cpu_multi_thread_eigen": False}
_SMALL_CPU_CORES = 2


def step_compiler_options(platform: str) -> dict[str, str | bool]:
  """The XLA options the train step compiles with on `platform`, chosen from
  this machine's CPU: XLA's defaults but on small CPUs without AVX-512."""
  if (platform == "cpu" and "avx512f" not in provenance.cpu_features()
      and (os.cpu_count() or 1) <= _SMALL_CPU_CORES):
    return dict(_SMALL_CPU_WITHOUT_AVX512_OPTIONS)
  return {}


class TrainState(NamedTuple):
  params: nnx.State
  opt_state: optax.OptState


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over `devices`, by default every device of every process
  (compile-only devices of another machine's chips, see `train.hardware.accelerators`)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def fsdp_spec(shape: tuple[int, ...], num_shards: int) -> P:
  """Shards the largest dimension divisible by `num_shards`; else replicates."""
  candidates = [d for d, n in enumerate(shape) if n % num_shards == 0 and n >= num_shards]
  if num_shards == 1 or not candidates:
    return P()
  dim = max(candidates, key=lambda d: shape[d])
  return P(*[DATA_AXIS if d == dim else None for d in range(len(shape))])


def token_losses(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array,
                 chunk: int = 0) -> jax.Array:
  """Next-token cross-entropy `[B, T]` at every position of windows
  `tokens [B, T + 1]`.

  With `0 < chunk < T`, the head and the loss see `chunk` positions of every
  sequence at a time, in a scan whose body is rematerialised: at most
  `[B, chunk, V]` logits exist at once, forward and backward.
  """
  model = nnx.merge(graphdef, params)
  inputs, labels = tokens[:, :-1], tokens[:, 1:]
  batch, length = inputs.shape
  hidden = model.hidden_states(inputs)
  if not chunk or chunk >= length:
    logits = model.head(hidden).reshape(batch, length, -1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  chunks = -(-length // chunk)
  pad = chunks * chunk - length
  hidden = jnp.pad(hidden.reshape(batch, length, -1), ((0, 0), (0, pad), (0, 0)))
  labels = jnp.pad(labels, ((0, 0), (0, pad)))

  @jax.checkpoint
  def chunk_losses(hidden, labels):  # [B, chunk, H], [B, chunk] -> [B, chunk]
    logits = model.head(hidden.reshape(batch * chunk, -1))
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels.reshape(-1)).reshape(batch, chunk)

  per_chunk = (hidden.reshape(batch, chunks, chunk, -1).swapaxes(0, 1),
               labels.reshape(batch, chunks, chunk).swapaxes(0, 1))
  _, losses = jax.lax.scan(lambda carry, xs: (carry, chunk_losses(*xs)), None, per_chunk)
  return losses.swapaxes(0, 1).reshape(batch, chunks * chunk)[:, :length]


def loss_fn(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array,
            chunk: int = 0) -> jax.Array:
  """Mean next-token cross-entropy of windows `tokens [B, T + 1]`
  (:func:`token_losses`, `chunk` as there)."""
  return token_losses(graphdef, params, tokens, chunk).mean()


def value_and_grad(loss: Callable[[nnx.State, jax.Array], jax.Array], params: nnx.State,
                   tokens: jax.Array, microbatches: int) -> tuple[jax.Array, nnx.State]:
  """The loss of `tokens [B, T + 1]` and its gradient, computed over
  `microbatches` slices of B / microbatches rows one after another and
  averaged: the full batch's, with one microbatch's activations alive.

  Microbatch j takes rows j, j + microbatches, ...: every device holds rows
  of every microbatch, so the slices need no communication.
  """
  grad_fn = jax.value_and_grad(loss)
  if microbatches == 1:
    return grad_fn(params, tokens)
  micro = tokens.reshape(tokens.shape[0] // microbatches, microbatches, -1).swapaxes(0, 1)

  def accumulate(carry, rows):
    value, grads = grad_fn(params, rows)
    return jax.tree.map(jnp.add, carry, (value, grads)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  (value, grads), _ = jax.lax.scan(accumulate, zeros, micro)
  return jax.tree.map(lambda x: x / microbatches, (value, grads))


def over_runs(fn, in_axes: tuple[int | None, ...], vmap_runs: int):
  """Maps `fn` over the leading run axis of the arguments whose `in_axes` is
  0 (the others are shared by every run), in one program.

  Groups of `vmap_runs` runs are vmapped; the groups run one after another
  (`jax.lax.map`). On CPU one run at a time is fastest: XLA's CPU matmuls are
  about a quarter slower with a batch dimension, and the loop reuses the
  step's temporary buffers, which every new call page-faults in afresh.
  """
  def mapped(*args):
    def one_run(run_args):
      it = iter(run_args)
      return fn(*[next(it) if axis == 0 else a for a, axis in zip(args, in_axes)])
    per_run = tuple(a for a, axis in zip(args, in_axes) if axis == 0)
    return jax.lax.map(one_run, per_run, batch_size=vmap_runs if vmap_runs > 1 else None)
  return mapped


def _scan_steps(train_step: Callable, state: TrainState, batches: jax.Array,
                one_step_in_loop: bool):
  """`train_step` over `batches [n, ...]` in a loop, and its outputs `[n, ...]`.

  XLA inlines a loop of one iteration into the program around it. With
  `one_step_in_loop`, a call of one step runs it in a loop of two, whose
  second iteration is dropped: Eigen's dots (`step_compiler_options`) round
  differently inlined, and a run resumed one step before a call's end would
  no longer repeat the uninterrupted run bit for bit (YNNPACK's do not).
  """
  if batches.shape[0] > 1 or not one_step_in_loop:
    return jax.lax.scan(train_step, state, batches)

  def step_keeping_state(state, tokens):
    state, out = train_step(state, tokens)
    return state, (state, out)

  _, (states, out) = jax.lax.scan(step_keeping_state, state, jnp.concatenate([batches] * 2))
  return jax.tree.map(lambda x: x[0], states), jax.tree.map(lambda x: x[:1], out)


class Trainer:
  """The jitted init, train and eval steps of `configs`, one run each.

  The runs differ only in seed and peak learning rate (as a sweep's do, see
  `train.train.check_sweep`); the rest comes from `configs[0]`. `mesh`
  defaults to :func:`make_mesh`, `model_config` to the configs' model (a
  test's own, smaller one, for instance). `component_metrics=False` leaves
  out the per-component norms (`train.perf.trainer_step` times their cost).
  `compiler_options` are the train step's XLA options (default: this
  machine's, :func:`step_compiler_options`; `{}`: XLA's defaults).
  """

  def __init__(self, configs: Sequence[TrainConfig],
               mesh: jax.sharding.Mesh | None = None,
               model_config: model_lib.Qwen3Config | None = None,
               component_metrics: bool = True,
               compiler_options: dict[str, str | bool] | None = None):
    config = configs[0]
    self.mesh = make_mesh() if mesh is None else mesh
    if compiler_options is None:
      compiler_options = step_compiler_options(self.mesh.devices.flat[0].platform)
    self.num_runs = len(configs)
    self.tx = optim.make_optimizer(config, component_metrics)
    model_config = config.model_config if model_config is None else model_config
    self.grad_accum, self.loss_chunk = config.grad_accum, config.loss_chunk
    self.vmap_runs = config.vmap_runs
    if self.vmap_runs is None:  # the mesh's chips decide, not this host's backend
      self.vmap_runs = 1 if self.mesh.devices.flat[0].platform == "cpu" else self.num_runs
    self._run_args = (jnp.asarray([c.seed for c in configs], jnp.int32),
                      jnp.asarray([c.lr for c in configs], jnp.float32))
    new_model = lambda seed: model_lib.Qwen3ForCausalLM(
        model_config, rngs=nnx.Rngs(jax.random.key(seed)))
    self.graphdef, self.abstract_params = nnx.split(
        nnx.eval_shape(lambda: new_model(0)), nnx.Param)[:2]

    def init_one(seed, peak_lr, params=None) -> TrainState:
      if params is None:
        params = nnx.state(new_model(seed), nnx.Param)
      return TrainState(params, self.tx(peak_lr).init(params))

    runs = lambda fn, in_axes=(0, 0): over_runs(fn, in_axes, self.vmap_runs)
    shapes = jax.eval_shape(runs(init_one), *self._run_args)
    mesh = self.mesh
    num_shards = mesh.shape[DATA_AXIS] if config.fsdp else 1
    self.state_sharding = jax.tree.map(
        lambda x: NamedSharding(mesh, P(None, *fsdp_spec(x.shape[1:], num_shards))),
        shapes)
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        shapes, self.state_sharding)
    self.batch_sharding = NamedSharding(mesh, P(None, None, DATA_AXIS))
    replicated = NamedSharding(mesh, P())

    self._init = jax.jit(runs(init_one), out_shardings=self.state_sharding)
    self._init_from = jax.jit(runs(init_one, (0, 0, None)),
                              out_shardings=self.state_sharding)
    # Several steps per call: XLA's CPU runtime allocates (and page-faults in)
    # a call's temporaries afresh, so a scan reuses them across steps.
    self.train_steps = jax.jit(
        lambda state, batches: _scan_steps(runs(self._train_step), state, batches,
                                           one_step_in_loop=bool(compiler_options)),
        in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, replicated),
        donate_argnums=0, compiler_options=compiler_options)
    self._eval_losses = jax.jit(
        runs(lambda params, tokens: token_losses(self.graphdef, params, tokens,
                                                 self.loss_chunk), (0, None)),
        in_shardings=(self.state_sharding.params, NamedSharding(mesh, P(DATA_AXIS))),
        out_shardings=replicated)

  def init(self, params: nnx.State | None = None) -> TrainState:
    """Seeded parameters, or the same given ones (e.g. a Hugging Face
    checkpoint's) for every run, with fresh optimizer states."""
    if params is None:
      return self._init(*self._run_args)
    return self._init_from(*self._run_args, params)

  def _loss(self, params: nnx.State, tokens: jax.Array) -> jax.Array:
    return loss_fn(self.graphdef, params, tokens, self.loss_chunk)

  def _train_step(self, state: TrainState, tokens: jax.Array):
    value, grads = value_and_grad(self._loss, state.params, tokens, self.grad_accum)
    tx = self.tx(optim.peak_lr(state.opt_state))
    # Every optimizer accepts `obj_fn`; only Sophia uses it (its Hessian
    # estimate; TrainConfig refuses Sophia with microbatches).
    updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                   obj_fn=lambda params: self._loss(params, tokens))
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), {
        "loss": value, "lr": optim.learning_rate(opt_state),
        "nonfinite_steps": optim.nonfinite_steps(opt_state),
        "consecutive_nonfinite": optim.consecutive_nonfinite(opt_state),
        "components": optim.component_metrics(opt_state)}

  def global_batch(self, local_rows: np.ndarray) -> jax.Array:
    """This process's rows `[n, K, b, T + 1]` of the runs' global batches for
    `n` steps, as one array over the mesh."""
    return jax.make_array_from_process_local_data(self.batch_sharding, local_rows)

  def global_eval_batch(self, local_rows: np.ndarray) -> jax.Array:
    """This process's rows `[b, T + 1]` of a batch every run evaluates."""
    return jax.make_array_from_process_local_data(
        NamedSharding(self.mesh, P(DATA_AXIS)), local_rows)

  def evaluate(self, params: nnx.State, batches: list[jax.Array]) -> np.ndarray:
    """Each run's loss at every position of fixed global batches `[b, T + 1]`,
    `[K, len(batches) * b, T]`."""
    return np.concatenate([np.asarray(self._eval_losses(params, b)) for b in batches], axis=1)
