"""Optimizer-step speed and memory against optax.adamw and the bandwidth roofline.

  python -m train.perf.optimizer_step [--trees nano,qwen3-134m] [--reps 7]
      [--out results/perf_optimizer_step.json]

For every name of `get_optimizer`, the jitted `update` + `apply_updates` step
with donated parameters and state, on a parameter tree of a model config.
Times are interleaved with `optax.adamw` on the same tree and reported as
the median of per-repetition ratios, since this machine is shared and noisy.

The roofline: an elementwise optimizer step must read the parameters, the
gradients and the state and write the parameters and the state; those bytes
divided by its time, against a jitted `y = a * x + b` moving as many bytes.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import layeropt_jax
from train import cli, model
from train import provenance
from train.benchmark.methods import BY_NAME

# Sophia's Hessian estimate needs a loss; a quadratic keeps its cost elementwise.
_QUADRATIC = lambda params: sum(jnp.sum(p * p) for p in jax.tree.leaves(params))


def param_tree(config_name: str) -> dict[str, Any]:
  """Random float32 parameters shaped like model config `config_name`'s."""
  shapes = model.param_shapes(config_name)
  keys = iter(jax.random.split(jax.random.key(0), len(jax.tree.leaves(shapes))))
  return jax.tree.map(
      lambda s: 0.02 * jax.random.normal(next(keys), s.shape, s.dtype), shapes)


def _nbytes(tree: Any) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _step_fn(tx: optax.GradientTransformation) -> Callable:
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params, obj_fn=_QUADRATIC)
    return optax.apply_updates(params, updates), state
  return jax.jit(step, donate_argnums=(0, 1))


def temp_bytes(tx: optax.GradientTransformation, params: Any) -> int | None:
  """Temporary bytes of the compiled step per XLA; `params` may be abstract."""
  state = jax.eval_shape(tx.init, params)
  memory = _step_fn(tx).lower(params, state, params).compile().memory_analysis()
  return None if memory is None else int(memory.temp_size_in_bytes)


class TimedStep:
  """One optimizer's compiled step on one tree, timed in place."""

  def __init__(self, tx: optax.GradientTransformation, params: Any, grads: Any):
    self.params = jax.tree.map(jnp.copy, params)
    self.state = tx.init(self.params)
    self.grads = grads
    self.step = _step_fn(tx)
    self.temp_bytes = temp_bytes(tx, params)
    self.state_bytes = _nbytes(self.state)
    self.param_bytes = _nbytes(self.params)
    self.time(1)  # warm-up

  def time(self, iters: int) -> float:
    """Seconds per step over `iters` steps."""
    start = time.perf_counter()
    for _ in range(iters):
      self.params, self.state = self.step(self.params, self.state, self.grads)
    jax.block_until_ready(self.params)
    return (time.perf_counter() - start) / iters

  def close(self):
    del self.params, self.state


def stream_bytes_per_s(nbytes: int, iters: int, reps: int) -> float:
  """Bytes/s of a jitted, donated `y = a * x + b` reading and writing `nbytes`."""
  x = jnp.ones(nbytes // 8, jnp.float32)
  f = jax.jit(lambda x: 1.0001 * x + 1e-4, donate_argnums=0)
  x = f(x).block_until_ready()
  best = []
  for _ in range(reps):
    start = time.perf_counter()
    for _ in range(iters):
      x = f(x)
    x.block_until_ready()
    best.append((time.perf_counter() - start) / iters)
  return nbytes / statistics.median(best)


def bench_tree(tree_name: str, names: list[str], reps: int, iters: int) -> dict[str, Any]:
  params = param_tree(tree_name)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  grads = jax.tree.map(lambda p: 0.01 * jnp.sign(p) + 1e-3, params)
  baseline = TimedStep(optax.adamw(1e-3, b1=0.9, b2=0.95, weight_decay=0.1), params, grads)
  # Each timing lasts at least ~0.2 s, so that small trees are not timing noise.
  iters = max(iters, math.ceil(0.2 / baseline.time(iters)))
  # Methods whose target is set against another optimizer than AdamW
  # (AOVS against Muon) are also timed against it.
  versus = {name: target[0] for name in names
            if (target := BY_NAME[name].step_time_target) and target[0] != "adamw"}
  others = {other: TimedStep(layeropt_jax.get_optimizer(other, 1e-3), params, grads)
            for other in set(versus.values())}
  results: dict[str, Any] = {}
  for name in names:
    timed = TimedStep(layeropt_jax.get_optimizer(name, 1e-3), params, grads)
    ratios, ratios_other, times = [], [], []
    for _ in range(reps):
      base = baseline.time(iters)
      t = timed.time(iters)
      ratios.append(t / base)
      times.append(t)
      if name in versus:
        ratios_other.append(t / others[versus[name]].time(iters))
    # Elementwise step traffic: read params, grads and state, write params and state.
    moved = 3 * timed.param_bytes + 2 * timed.state_bytes
    results[name] = {
        "time_ratio_vs_adamw": statistics.median(ratios),
        "step_s": statistics.median(times),
        "bytes_moved": moved,
        "bytes_per_s": moved / statistics.median(times),
        "state_bytes_per_param": timed.state_bytes / n_params,
        "temp_bytes": timed.temp_bytes,
        "temp_bytes_over_param_buffer": (
            None if timed.temp_bytes is None else timed.temp_bytes / (4 * n_params)),
    }
    if ratios_other:
      results[name][f"time_ratio_vs_{versus[name]}"] = statistics.median(ratios_other)
    timed.close()
    print(f"{tree_name:>11} {name:>12}: x{results[name]['time_ratio_vs_adamw']:.3f} adamw, "
          f"{results[name]['state_bytes_per_param']:.2f} B/param state, "
          f"temp {results[name]['temp_bytes_over_param_buffer']}", flush=True)
  stream = stream_bytes_per_s(7 * baseline.param_bytes, iters, reps)
  for r in results.values():
    r["fraction_of_stream_bandwidth"] = r["bytes_per_s"] / stream
  return {"params": n_params, "stream_bytes_per_s": stream, "optimizers": results}


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.optimizer_step", __doc__)
  p.add_argument("--trees", default="nano,qwen3-134m",
                 help="the model configs whose parameter trees are updated, comma-separated")
  p.add_argument("--names", default=",".join(layeropt_jax.OPTIMIZERS),
                 help="optimizers, comma-separated")
  p.add_argument("--reps", type=int, default=7, help="timed repetitions (the median is kept)")
  p.add_argument("--iters", type=int, default=3, help="updates per repetition")
  p.add_argument("--out", default="results/perf_optimizer_step.json", help="the JSON written")
  args = p.parse_args(argv)
  names = args.names.split(",")
  trees = {t: bench_tree(t, names, args.reps, args.iters) for t in args.trees.split(",")}
  provenance.write_results(args.out, "train.perf.optimizer_step", argv, {"trees": trees})


if __name__ == "__main__":
  main()
