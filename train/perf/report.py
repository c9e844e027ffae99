"""Writes results/perf.md and results/perf.json from the two benchmarks' outputs.

  python -m train.bench_optim && python -m train.bench_train && python -m train.perf_report
"""

from __future__ import annotations

import json
import pathlib

RESULTS = pathlib.Path("results")
TARGET_TREE = "qwen3-134m"  # the targets are set on the reports' model size
ELEMENTWISE_TARGET = {"lamvs": 1.10, "malao": 1.10, "layer_adam": 1.10, "lamo": 1.10,
                      "stable_adamw": 1.10, "ladm": 1.35}


def _mark(ok: bool) -> str:
  return "met" if ok else "**not met**"


def optimizer_section(report: dict) -> list[str]:
  lines = [f"Command: `{report['command']}`", ""]
  for tree, result in report["trees"].items():
    lines += [
        f"### `{tree}` tree ({result['params']:,} parameters)", "",
        f"Streaming kernel (`y = a*x + b`, jitted, donated): "
        f"{result['stream_bytes_per_s'] / 1e9:.1f} GB/s.", "",
        "| optimizer | step time / optax.adamw | target | bytes/s vs stream | "
        "state bytes/param | XLA temp / param buffer |",
        "|---|---|---|---|---|---|"]
    for name, r in result["optimizers"].items():
      target = ELEMENTWISE_TARGET.get(name) if tree == TARGET_TREE else None
      if tree != TARGET_TREE:
        goal = "-"
      elif name == "aovs":
        goal = f"<= 1.10 x muon: {r['time_ratio_vs_muon']:.2f} ({_mark(r['time_ratio_vs_muon'] <= 1.10)})"
      elif target is not None:
        goal = f"<= {target}: {_mark(r['time_ratio_vs_adamw'] <= target)}"
      else:
        goal = "-"
      temp = r["temp_bytes_over_param_buffer"]
      lines.append(
          f"| {name} | {r['time_ratio_vs_adamw']:.2f} | {goal} | "
          f"{r['fraction_of_stream_bandwidth']:.0%} | {r['state_bytes_per_param']:.2f} | "
          f"{'-' if temp is None else f'{temp:.2f}'} |")
    lines.append("")
  return lines


def trainer_section(report: dict) -> list[str]:
  peak = report["matmul_flops_per_s"]
  lines = [f"Command: `{report['command']}`", "",
           f"Dense float32 matmul (jitted 2048^3, best of 5): {peak / 1e9:.0f} GFLOP/s.", "",
           "| config | batch x seq | tokens/s | PyTorch tokens/s | speedup (target >= 1.3 on small) "
           "| FLOP/s | of matmul peak (target >= 50%) |", "|---|---|---|---|---|---|---|"]
  for name, r in report["trainer"].items():
    lines.append(
        f"| {name} | {r['batch']} x {r['seq_len']} | {r['tokens_per_s']:.0f} | "
        f"{r['torch_tokens_per_s']:.0f} | {r['speedup_vs_torch']:.2f} | "
        f"{r['flops_per_s'] / 1e9:.0f} G | {r['fraction_of_matmul_peak']:.0%} |")
  sweep = report.get("sweep")
  if sweep:
    lines += ["", f"Sweep: {sweep['runs']} nano runs of {sweep['steps']} steps in one program "
              f"(`train_sweep`, default `--vmap-runs`) took {sweep['sweep_s']:.0f} s; one after "
              f"another {sweep['sequential_s']:.0f} s: x{sweep['speedup']:.2f} (target >= 1.5)."]
  return lines


def main() -> None:
  optim = json.loads((RESULTS / "bench_optim.json").read_text())
  trainer = json.loads((RESULTS / "bench_train.json").read_text())
  (RESULTS / "perf.json").write_text(json.dumps({"optimizer_step": optim, "trainer": trainer},
                                                indent=1))
  machine = optim["machine"]
  lines = [
      "# Performance", "",
      f"Machine: {machine['processor']}, {machine['cpus']} CPU cores, devices: "
      f"{machine['devices']} (Python {machine['python']}, jax {machine['jax']}, optax "
      f"{machine['optax']}). A shared, noisy VM: every figure is a ratio measured side "
      "by side in one run (median over repetitions); reruns move ratios by up to 7%. "
      "The `nano` tree fits in the CPU caches, so its bandwidth figures are cache, "
      "not memory, bandwidth; the targets are set on the 134M tree.",
      "Regenerate: `python -m train.bench_optim && python -m train.bench_train && "
      "python -m train.perf_report`.", "",
      "## Optimizer step (update + apply_updates, jitted, donated)", "",
      *optimizer_section(optim),
      "## Trainer step", "", *trainer_section(trainer), "",
      (RESULTS / "perf_notes.md").read_text() if (RESULTS / "perf_notes.md").is_file() else "",
  ]
  (RESULTS / "perf.md").write_text("\n".join(lines).rstrip() + "\n")
  print(f"wrote {RESULTS / 'perf.md'}")


if __name__ == "__main__":
  main()
