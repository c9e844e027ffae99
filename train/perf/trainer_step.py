"""Trainer throughput against PyTorch, the matmul peak, and sweeps against runs.

  python -m train.perf.trainer_step [--configs nano,small] [--reps 5]
      [--out results/perf_trainer_step.json]

- The trainer's jitted step (AdamW, float32, one run; with the XLA options
  the trainer chooses on this machine, and with XLA's defaults) and the same
  model and optimizer in PyTorch (transformers' `Qwen3ForCausalLM`,
  `torch.optim.AdamW`, same batch, sequence and threads), eager and under
  `torch.compile`, timed interleaved; the median of the per-repetition ratios is reported, since
  this machine is shared and noisy. The CPU's model and vector features
  (AVX-512, AMX) are recorded with them.
- Achieved FLOP/s of the step (XLA's count of its FLOPs / time) against a
  jitted dense float32 matmul's on the same machine.
- A vmapped sweep of K `nano` runs (`train.train.train_sweep`) against the K
  runs one after another (`train.train.train`), wall time end to end, each
  including its compilation.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import multiprocessing
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from train import cli, model, step
from train import provenance
from train.config import TrainConfig
from train.data import default_cache_dir
from train.train import train, train_sweep


def matmul_flops_per_s(n: int = 2048, iters: int = 10, reps: int = 5) -> float:
  """The best of `reps` timings of a jitted float32 `[n, n] @ [n, n]`: a peak."""
  a = jax.numpy.ones((n, n), jax.numpy.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    for _ in range(iters):
      out = f(a)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - start) / iters)
  return 2 * n**3 / best


class JaxStep:
  """The trainer's steps for one run, `steps_per_call` per call as the
  trainer runs them, on fixed batches, compiled with `compiler_options` (XLA
  options; by default the trainer's, `step.step_compiler_options`)."""

  def __init__(self, config_name: str, batch: int, seq: int,
               component_metrics: bool = True, compiler_options: dict | None = None):
    config = TrainConfig(config=config_name, optimizer="adamw", steps=1000, warmup=1,
                         batch_size=batch, seq_len=seq)
    self.trainer = step.Trainer([config], component_metrics=component_metrics,
                                compiler_options=compiler_options)
    self.steps_per_call = config.steps_per_call
    vocab = config.model_config.vocab_size
    tokens = np.random.default_rng(0).integers(
        0, vocab, (self.steps_per_call, 1, batch, seq + 1), np.int32)
    self.tokens = self.trainer.global_batch(tokens)
    self.state = self.trainer.init()
    # XLA counts a loop body once: the FLOPs of one step are those of a 1-step call.
    one_step = self.trainer.train_steps.lower(self.state, self.tokens[:1]).compile()
    cost = one_step.cost_analysis()
    self.flops, self.bytes_accessed = cost["flops"], cost["bytes accessed"]

  def time(self, iters: int) -> float:
    """Seconds per step over `iters` calls, after one untimed call."""
    self.state, out = self.trainer.train_steps(self.state, self.tokens)
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(iters):
      self.state, out = self.trainer.train_steps(self.state, self.tokens)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / (iters * self.steps_per_call)


class TorchStep:
  """transformers' Qwen3 with `torch.optim.AdamW`, float32, eager or, given a
  `compile_backend`, its loss (forward) and optimizer step under
  `torch.compile` with that backend."""

  def __init__(self, config_name: str, batch: int, seq: int,
               compile_backend: str | None = None):
    import torch
    import transformers
    torch.set_num_threads(os.cpu_count())
    cfg = model.CONFIGS[config_name]
    hf = transformers.Qwen3Config(
        **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
           if f.name not in (*model.NOT_HF_FIELDS, "rope_theta")},
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attn_implementation="sdpa")
    torch.manual_seed(0)
    self.model = transformers.Qwen3ForCausalLM(hf).train()
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                 eps=1e-8, weight_decay=0.1)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq + 1))
    self.inputs = torch.tensor(tokens[:, :-1])
    self.targets = torch.tensor(tokens[:, 1:]).reshape(-1)

    def loss(inputs, targets):
      logits = self.model(input_ids=inputs).logits
      return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)

    compiled = lambda fn: fn if compile_backend is None else torch.compile(
        fn, backend=compile_backend)
    self.loss, self.opt_step = compiled(loss), compiled(self.opt.step)

  def step(self) -> None:
    loss = self.loss(self.inputs, self.targets)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    self.opt_step()

  def time(self, iters: int) -> float:
    """Seconds per step over `iters` steps, after untimed ones (torch.compile
    compiles at the first, and may again at the second)."""
    for _ in range(3):
      self.step()
    start = time.perf_counter()
    for _ in range(iters):
      self.step()
    return (time.perf_counter() - start) / iters


def time_step(step, iters: int) -> float:
  """Seconds per step of `step` (a `JaxStep` or `TorchStep`) over `iters`."""
  return step.time(iters)


def _serve(conn, environment: dict[str, str], make: Callable, args: tuple) -> None:
  os.environ.update(environment)
  step = make(*args)
  conn.send("ready")
  while (request := conn.recv()) is not None:
    measure, iters = request
    conn.send(measure(step, iters))


class StepProcess:
  """The step `make(*args)` in a process of its own, started with
  `environment`, measured on request: XLA reads `XLA_FLAGS` once per
  process, and PyTorch's OpenMP threads keep spinning after each step and
  would slow down JAX's if they shared one."""

  def __init__(self, make: Callable, *args, environment: dict[str, str] | None = None):
    context = multiprocessing.get_context("spawn")
    self.conn, child = context.Pipe()
    self.process = context.Process(target=_serve, args=(child, environment or {}, make, args))
    self.process.start()
    assert self.conn.recv() == "ready"

  def run(self, measure: Callable, iters: int):
    """`measure(step, iters)` (a module-level function) in the process."""
    self.conn.send((measure, iters))
    return self.conn.recv()

  def time(self, iters: int) -> float:
    seconds = self.run(time_step, iters)
    time.sleep(0.5)  # lets idle OpenMP threads stop spinning
    return seconds

  def close(self) -> None:
    self.conn.send(None)
    self.process.join()


def bench_trainer(config_name: str, batch: int, seq: int, reps: int, iters: int,
                  peak: float, compile_backend: str = "inductor") -> dict:
  """Our step (with the XLA options the trainer chooses on this machine, and
  with XLA's defaults) against PyTorch's, eager and compiled, each in turn
  in every repetition; the medians of the per-repetition time ratios."""
  ours = JaxStep(config_name, batch, seq)
  others = {"xla_defaults": JaxStep(config_name, batch, seq, compiler_options={}),
            "torch": StepProcess(TorchStep, config_name, batch, seq),
            "torch_compiled": StepProcess(TorchStep, config_name, batch, seq, compile_backend)}
  times = {"ours": [], **{name: [] for name in others}}
  for _ in range(reps):
    times["ours"].append(ours.time(iters))
    for name, other in others.items():
      times[name].append(other.time(iters))
  for other in others.values():
    if isinstance(other, StepProcess):
      other.close()
  t = statistics.median(times["ours"])
  result = {"batch": batch, "seq_len": seq, "tokens_per_s": batch * seq / t,
            "compiler_options": step.step_compiler_options("cpu")}
  for name in others:
    result[f"{name}_tokens_per_s"] = batch * seq / statistics.median(times[name])
    result[f"speedup_vs_{name}"] = statistics.median(
        [u / v for u, v in zip(times[name], times["ours"])])
  result.update(step_flops=ours.flops, flops_per_s=ours.flops / t,
                fraction_of_matmul_peak=ours.flops / t / peak)
  print(f"{config_name}: {result['tokens_per_s']:.0f} tok/s, "
        f"x{result['speedup_vs_xla_defaults']:.2f} XLA's defaults, "
        f"x{result['speedup_vs_torch']:.2f} PyTorch eager, "
        f"x{result['speedup_vs_torch_compiled']:.2f} torch.compile, "
        f"{result['flops_per_s'] / 1e9:.0f} GFLOP/s = "
        f"{result['fraction_of_matmul_peak']:.0%} of matmul", flush=True)
  return result


def bench_sweep(runs: int, steps: int, cache_dir: str) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    configs = [TrainConfig(workdir=f"{tmp}/run{k}", steps=steps, warmup=steps // 10,
                           lr=1e-3 * 2 ** (k / 2), seed=k % 2, progress=False,
                           eval_every=0, cache_dir=cache_dir) for k in range(runs)]
    train(dataclasses.replace(configs[0], workdir=f"{tmp}/warm", steps=2, warmup=1))
    start = time.perf_counter()
    train_sweep(configs, f"{tmp}/sweep")
    sweep = time.perf_counter() - start
    start = time.perf_counter()
    for c in configs:
      train(dataclasses.replace(c, workdir=c.workdir + "-alone"))
    sequential = time.perf_counter() - start
  result = {"runs": runs, "steps": steps, "sweep_s": sweep, "sequential_s": sequential,
            "speedup": sequential / sweep}
  print(f"sweep of {runs} x {steps} steps: {sweep:.0f} s, one by one {sequential:.0f} s, "
        f"x{result['speedup']:.2f}", flush=True)
  return result


def add_step_flags(p, reps: int) -> None:
  """The flags of a benchmark that times the trainer's step: which configs,
  their batch and sequence, and the repetitions."""
  p.add_argument("--configs", default="nano,small", help="model configs, comma-separated")
  p.add_argument("--batch-size", type=int, default=16, help="sequences per step")
  p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence")
  p.add_argument("--reps", type=int, default=reps, help="timed repetitions (the median is kept)")
  p.add_argument("--iters", type=int, default=3, help="steps per repetition")


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.trainer_step", __doc__)
  add_step_flags(p, reps=5)
  p.add_argument("--sweep-runs", type=int, default=8,
                 help="runs of the sweep timed against as many runs one after another")
  p.add_argument("--sweep-steps", type=int, default=50, help="steps of each of those runs")
  p.add_argument("--cache-dir", default=default_cache_dir(),
                 help="where the prepared stdlib corpus is cached")
  p.add_argument("--torch-compile-backend", default="inductor",
                 help="torch.compile's backend (eager: traces and runs the same ops, "
                      "generating no code, to check this benchmark in seconds)")
  p.add_argument("--out", default="results/perf_trainer_step.json", help="the JSON written")
  args = p.parse_args(argv)
  peak = matmul_flops_per_s()
  print(f"dense float32 matmul: {peak / 1e9:.0f} GFLOP/s", flush=True)
  results = {
      "cpu_features": provenance.cpu_features(),
      "matmul_flops_per_s": peak,
      "torch_compile_backend": args.torch_compile_backend,
      "trainer": {c: bench_trainer(c, args.batch_size, args.seq_len, args.reps,
                                   args.iters, peak, args.torch_compile_backend)
                  for c in args.configs.split(",")},
  }
  if args.sweep_runs:
    results["sweep"] = bench_sweep(args.sweep_runs, args.sweep_steps, args.cache_dir)
  provenance.write_results(args.out, "train.perf.trainer_step", argv, results)


if __name__ == "__main__":
  main()
