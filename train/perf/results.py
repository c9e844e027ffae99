"""Writes results/perf.md and results/perf.json from the four performance
benchmarks' outputs (optimizer step, trainer step, state memory, metrics
overhead).

  python -m train.perf.optimizer_step && python -m train.perf.trainer_step \
      && python -m train.perf.state_memory && python -m train.perf.metrics_overhead \
      && python -m train.perf.results
"""

from __future__ import annotations

import json
import pathlib

from train import cli, files, markdown
from train.benchmark.methods import BY_NAME

RESULTS = pathlib.Path("results")
TARGET_TREE = "qwen3-134m"  # the targets are set on the reports' model size
REGENERATE = ("python -m train.perf.optimizer_step && python -m train.perf.trainer_step "
              "&& python -m train.perf.state_memory && python -m train.perf.metrics_overhead "
              "&& python -m train.perf.results")


def _mark(ok: bool) -> str:
  return "met" if ok else "**not met**"


def optimizer_section(results: dict) -> list[str]:
  lines = [f"Command: `{results['command']}`", ""]
  for tree, result in results["trees"].items():
    lines += [
        f"### `{tree}` tree ({result['params']:,} parameters)", "",
        f"Streaming kernel (`y = a*x + b`, jitted, donated): "
        f"{result['stream_bytes_per_s'] / 1e9:.1f} GB/s.", "",
        *markdown.table(["optimizer", "step time / optax.adamw", "target", "bytes/s vs stream",
                         "state bytes/param", "XLA temp / param buffer"],
                        (_optimizer_row(name, r, tree)
                         for name, r in result["optimizers"].items()))]
    lines.append("")
  return lines


def _optimizer_row(name: str, r: dict, tree: str) -> list[str]:
  target = BY_NAME[name].step_time_target if tree == TARGET_TREE else None
  if target is None:
    goal = "-"
  elif target[0] == "adamw":
    goal = f"<= {target[1]}: {_mark(r['time_ratio_vs_adamw'] <= target[1])}"
  else:
    ratio = r[f"time_ratio_vs_{target[0]}"]
    goal = f"<= {target[1]:.2f} x {target[0]}: {ratio:.2f} ({_mark(ratio <= target[1])})"
  return [name, f"{r['time_ratio_vs_adamw']:.2f}", goal,
          f"{r['fraction_of_stream_bandwidth']:.0%}", f"{r['state_bytes_per_param']:.2f}",
          markdown.number(r["temp_bytes_over_param_buffer"], ".2f")]


def trainer_section(results: dict) -> list[str]:
  peak = results["matmul_flops_per_s"]
  features = ", ".join(results.get("cpu_features", [])) or "not recorded"
  lines = [f"Command: `{results['command']}` ({results['machine']['processor']}, "
           f"{results['machine']['cpus']} cores; CPU features: {features}).", "",
           f"Dense float32 matmul (jitted 2048^3, best of 5): {peak / 1e9:.0f} GFLOP/s.", "",
           *markdown.table(
               ["config", "batch x seq", "tokens/s", "XLA's defaults tokens/s",
                "PyTorch eager tokens/s", "torch.compile tokens/s", "x XLA's defaults",
                "x eager", "x compiled (target >= 1.0)", "FLOP/s", "of matmul peak"],
               ([name, f"{r['batch']} x {r['seq_len']}", f"{r['tokens_per_s']:.0f}",
                 _optional(r, "xla_defaults_tokens_per_s", ".0f"),
                 f"{r['torch_tokens_per_s']:.0f}",
                 _optional(r, "torch_compiled_tokens_per_s", ".0f"),
                 _optional(r, "speedup_vs_xla_defaults", ".2f"),
                 f"{r['speedup_vs_torch']:.2f}", _optional(r, "speedup_vs_torch_compiled", ".2f"),
                 f"{r['flops_per_s'] / 1e9:.0f} G", f"{r['fraction_of_matmul_peak']:.0%}"]
                for name, r in results["trainer"].items())),
           "", "XLA options the trainer chose on this machine (`train.step."
           "step_compiler_options`, from the CPU's features and cores): "
           + (", ".join(f"`{k}={v}`" for k, v in _chosen_options(results).items())
              or "none (XLA's defaults)") + "."]
  sweep = results.get("sweep")
  if sweep:
    lines += ["", f"Sweep: {sweep['runs']} nano runs of {sweep['steps']} steps in one program "
              f"(`train_sweep`, default `--vmap-runs`) took {sweep['sweep_s']:.0f} s; one after "
              f"another {sweep['sequential_s']:.0f} s: x{sweep['speedup']:.2f} (target >= 1.5)."]
  return lines


def _chosen_options(results: dict) -> dict:
  return next(iter(results["trainer"].values())).get("compiler_options", {})


def _optional(result: dict, key: str, spec: str) -> str:
  """A figure that older results files do not hold, "-" there."""
  return "-" if result.get(key) is None else format(result[key], spec)


def state_memory_section(results: dict) -> list[str]:
  settings = ["float32", "mu bfloat16", "mu, nu bfloat16"]
  cell = lambda r, key: "-" if r is None or r[key] is None else f"{r[key]:.2f}"
  lines = [
      f"Command: `{results['command']}` ({results['machine']['processor']}). "
      f"`{results['tree']}` tree "
      f"({results['params']:,} float32 parameters), bytes per parameter: the "
      "state is exact (`jax.eval_shape` of `init`); the step's temporaries are "
      "XLA's `memory_analysis` of the compiled CPU step. A step's peak is "
      "parameters + gradients + state + temporaries.", "",
      *markdown.table(
          ["optimizer", *(f"state, {s}" for s in settings), *(f"temp, {s}" for s in settings)],
          ([name, *(cell(r.get(s), "state_bytes_per_param") for s in settings),
            *(cell(r.get(s), "temp_bytes_per_param") for s in settings)]
           for name, r in results["optimizers"].items()))]
  return lines


def metrics_overhead_section(results: dict) -> list[str]:
  lines = [
      f"Command: `{results['command']}` ({results['machine']['processor']}, "
      f"{results['machine']['cpus']} cores). The trainer's step (AdamW, float32, one "
      "run, 10 steps per call) with `with_component_metrics` over the same step "
      "without, timed interleaved; median of the per-repetition ratios.", "",
      *markdown.table(
          ["config", "batch x seq", "step time with / without", "target <= 1.03",
           "per-repetition ratios", "XLA FLOPs with / without",
           "XLA bytes accessed with / without"],
          ([name, f"{r['batch']} x {r['seq_len']}", f"{r['time_ratio']:.3f}",
            _mark(r["time_ratio"] <= 1.03), " ".join(f"{x:.2f}" for x in r["ratios"]),
            f"{r['flops_ratio']:.4f}", f"{r['bytes_accessed_ratio']:.4f}"]
           for name, r in results["configs"].items()))]
  return lines


def main(argv: list[str] | None = None) -> None:
  cli.parser("train.perf.results", __doc__).parse_args(argv)
  optim = json.loads((RESULTS / "perf_optimizer_step.json").read_text())
  trainer = json.loads((RESULTS / "perf_trainer_step.json").read_text())
  state_memory = json.loads((RESULTS / "perf_state_memory.json").read_text())
  overhead = json.loads((RESULTS / "perf_metrics_overhead.json").read_text())
  files.write_atomically(RESULTS / "perf.json", json.dumps(
      {"optimizer_step": optim, "trainer": trainer, "state_memory": state_memory,
       "metrics_overhead": overhead}, indent=1))
  machine = optim["machine"]
  lines = [
      "# Performance", "",
      f"Machine: {machine['processor']}, {machine['cpus']} CPU cores, devices: "
      f"{machine['devices']} (Python {machine['python']}, jax {machine['jax']}, optax "
      f"{machine['optax']}) unless a section names another. A shared, noisy VM: every figure is a ratio measured side "
      "by side in one run (median over repetitions); reruns move ratios by up to 7%. "
      "The `nano` tree fits in the CPU caches, so its bandwidth figures are cache, "
      "not memory, bandwidth; the targets are set on the 134M tree.",
      f"Regenerate: `{REGENERATE}`.", "",
      "## Optimizer step (update + apply_updates, jitted, donated)", "",
      *optimizer_section(optim),
      "## Trainer step", "", *trainer_section(trainer), "",
      "## Per-component optimizer metrics", "",
      *metrics_overhead_section(overhead), "",
      "## Moments in bfloat16 (`mu_dtype`, `nu_dtype`)", "",
      *state_memory_section(state_memory), "",
      "Each moment stored in bfloat16 saves 2 bytes per parameter of what the "
      "state keeps between steps (what a checkpoint stores, and a run's "
      "resident memory). On this CPU the step's temporaries grow by as much "
      "(XLA computes the new moments in float32 beside the bfloat16 buffers), "
      "so the peak inside the step does not fall; whether an accelerator "
      "backend fuses the cast away is not measured here. "
      "`python -m train.memory` measures a whole train step on any backend.", "",
      (RESULTS / "perf_notes.md").read_text() if (RESULTS / "perf_notes.md").is_file() else "",
  ]
  files.write_atomically(RESULTS / "perf.md", "\n".join(lines).rstrip() + "\n")
  print(f"wrote {RESULTS / 'perf.md'}")


if __name__ == "__main__":
  main()
