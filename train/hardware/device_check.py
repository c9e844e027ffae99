"""The one prepared check for a machine with GPUs or TPUs (at most 8 minutes).

  python -m train.device_check [--out results/device.md]
  python -m train.device_check --reduced --out DIR/device.md   # on CPU, minutes

1. The README's default command (`nano`, LADM, 200 steps), in bfloat16.
2. The `ladm-paper` preset's train step (qwen3-134m, batch 512 x 1024, on
   every local device, in microbatches of at most 64 sequences per device)
   on random tokens, timed over `--steps` steps after
   compilation: tokens/s, model FLOP/s utilisation against the chip's bf16
   peak (`train.hardware.accelerators.CHIPS`; model FLOPs from
   `Qwen3Config.train_flops_per_token`), and the peak device memory
   (`memory_stats()`) beside what `python -m train.memory --target` predicts
   for these chips ahead of time, which checks the predictor.
3. `python -m train.perf.optimizer_step` on the 134M parameter tree: each
   optimizer's step time against optax.adamw's.

`--reduced` runs each part small (the `nano` model, a tiny batch, one
repetition), for CPU and the tests. Writes `--out` (Markdown) and its JSON.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

from train import cli, markdown
from train.hardware import accelerators

DEFAULT_COMMAND = ["--config", "nano", "--optimizer", "ladm", "--lr", "3e-3", "--steps", "200"]


def _run(module_and_args: list[str]) -> None:
  result = subprocess.run([sys.executable, "-m", *module_and_args], capture_output=True,
                          text=True)
  if result.returncode:
    raise RuntimeError(f"python -m {' '.join(module_and_args)} failed:\n"
                       f"{result.stderr[-3000:]}")


def default_command(workdir: pathlib.Path, reduced: bool) -> dict:
  """The README's training command in bfloat16: its wall time and result."""
  steps = (["--steps", "20", "--warmup", "2", "--eval-every", "10",
            "--checkpoint-every", "20"] if reduced else [])
  start = time.perf_counter()
  _run(["train.train", *DEFAULT_COMMAND, *steps, "--dtype", "bfloat16",
        "--workdir", str(workdir), "--no-progress"])
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
  steps = [r for r in records if "event" not in r]
  return {"wall_s": time.perf_counter() - start, "final_val_loss": records[-1]["val_loss"],
          "step_time_s": min(r["step_time_s"] for r in steps[1:] or steps),
          "steps": records[-1]["step"]}


def reports_step(reduced: bool, steps: int) -> dict:
  """The ladm-paper preset's train step (the reports' setup) on random tokens:
  speed and memory."""
  import jax
  import numpy as np

  from train import step
  from train.config import from_args

  # Microbatches of at most 64 sequences per device: 25.0 GiB of the step's
  # memory per device in results/memory.md.
  flags = ["--preset", "ladm-paper", "--data", "python_stdlib", "--steps-per-call", "1",
           "--grad-accum", str(max(1, 8 // jax.device_count()))]
  if reduced:
    flags += ["--config", "nano", "--batch-size", str(2 * jax.device_count()),
              "--seq-len", "64", "--grad-accum", "2"]
  config = from_args(flags)
  trainer = step.Trainer([config])
  cfg = config.model_config
  rng = np.random.default_rng(0)
  batch = trainer.global_batch(rng.integers(
      0, cfg.vocab_size, (1, 1, config.batch_size, config.seq_len + 1), np.int32))
  state = trainer.init()
  start = time.perf_counter()
  state, out = trainer.train_steps(state, batch)
  jax.block_until_ready(out)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, out = trainer.train_steps(state, batch)
  jax.block_until_ready(out)
  step_s = (time.perf_counter() - start) / steps
  params = sum(x.size for x in jax.tree.leaves(state.params))
  tokens = config.batch_size * config.seq_len
  flops = tokens * cfg.train_flops_per_token(config.seq_len)
  devices = jax.devices()
  chip = accelerators.CHIPS.get(devices[0].device_kind)
  peak = accelerators.per_device(chip, devices)[1] if chip else None
  memory = devices[0].memory_stats() or {}
  return {"flags": flags, "devices": f"{len(devices)} x {devices[0].device_kind}",
          "parameters": params, "tokens_per_step": tokens, "compile_and_first_step_s": compile_s,
          "step_s": step_s, "tokens_per_s": tokens / step_s,
          "model_flops_per_s": flops / step_s,
          "mfu": None if peak is None else flops / step_s / (peak * len(devices)),
          "peak_bytes_in_use": memory.get("peak_bytes_in_use"),
          "predicted": predicted_memory(flags, devices),
          "loss": float(np.asarray(out["loss"]).reshape(-1)[-1])}


def predicted_memory(flags: list[str], devices: list) -> dict:
  """What `python -m train.memory --target` predicts for the step of
  `flags` on these devices' chips, compiled ahead of time in a fresh
  process; why not, where it cannot."""
  from train.hardware import memory

  target = accelerators.target_of(devices)
  if target is None:
    return {"error": f"no --target names {devices[0].device_kind}"}
  try:
    result = memory.measured(flags, target=target)
  except (ValueError, RuntimeError) as e:
    return {"target": target, "error": str(e).splitlines()[-1]}
  return {k: result[k] for k in ("target", "per_device_bytes", "peak_bytes", "required_bytes",
                                  "fits")}


def optimizer_steps(out: pathlib.Path, reduced: bool) -> dict:
  """`python -m train.perf.optimizer_step` on the 134M tree (nano, reduced)."""
  flags = (["--trees", "nano", "--names", "adamw,ladm,lamvs", "--reps", "1", "--iters", "1"]
           if reduced else ["--trees", "qwen3-134m", "--reps", "3"])
  _run(["train.perf.optimizer_step", *flags, "--out", str(out)])
  return json.loads(out.read_text())


def results_markdown(results: dict) -> str:
  d, p = results["default_command"], results["reports_step"]
  tree_name, tree = next(iter(results["optimizer_step"]["trees"].items()))
  guess = p["predicted"]
  if "error" in guess:
    predicted = guess["error"]
  elif guess["per_device_bytes"] is None:
    predicted = (f"does not fit: needs {guess['required_bytes'] / 2**30:.1f} "
                 f"(`--target {guess['target']}`)")
  else:
    predicted = (f"{guess['per_device_bytes'] / 2**30:.1f}, {guess['peak_bytes'] / 2**30:.1f} "
                 f"(`--target {guess['target']}`)")
  lines = [
      "# Device check", "",
      f"Command: `{results['command']}`. Devices: {p['devices']}. Machine: "
      f"{results['machine']['processor']} (jax {results['machine']['jax']}).", "",
      "## The README's default command in bfloat16", "",
      f"`python -m train.train {' '.join(DEFAULT_COMMAND)} --dtype bfloat16`: {d['steps']} "
      f"steps in {d['wall_s']:.0f} s (compilation included), {d['step_time_s'] * 1e3:.1f} "
      f"ms/step, final validation loss {d['final_val_loss']:.3f}.", "",
      "## The reports' step", "",
      f"`{' '.join(p['flags'])}`: {p['parameters']:,} parameters, {p['tokens_per_step']:,} "
      f"tokens per step; compilation and first step {p['compile_and_first_step_s']:.0f} s.", "",
      *markdown.table(
          ["step (s)", "tokens/s", "model FLOP/s", "MFU (bf16 peak)",
           "peak device memory (GiB)", "predicted ahead of time: total, XLA's peak (GiB)"],
          [[f"{p['step_s']:.3f}", f"{p['tokens_per_s']:,.0f}",
            f"{p['model_flops_per_s'] / 1e12:.1f} T", markdown.number(p["mfu"], ".1%"),
            markdown.number(p["peak_bytes_in_use"] and p["peak_bytes_in_use"] / 2**30, ".1f"),
            predicted]]), "",
      f"## Optimizer step on the `{tree_name}` tree ({tree['params']:,} parameters)", "",
      *markdown.table(["optimizer", "step time / optax.adamw", "state bytes/param"],
                      ([name, f"{r['time_ratio_vs_adamw']:.2f}",
                        f"{r['state_bytes_per_param']:.2f}"]
                       for name, r in tree["optimizers"].items()))]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.device_check", __doc__)
  p.add_argument("--out", default="results/device.md", help="the results written (and their JSON)")
  p.add_argument("--reduced", action="store_true",
                 help="every part small: for CPU and the tests")
  p.add_argument("--steps", type=int, default=10, help="timed steps of the reports' step")
  args = p.parse_args(argv)
  from train import files, provenance

  out = pathlib.Path(args.out)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    results = {"default_command": default_command(tmp / "default", args.reduced),
               "reports_step": reports_step(args.reduced, 2 if args.reduced else args.steps),
               "optimizer_step": optimizer_steps(tmp / "optimizer_step.json", args.reduced)}
  results = provenance.write_results(out.with_suffix(".json"), "train.device_check", argv,
                                   results)
  files.write_atomically(out, results_markdown(results))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
