"""Per-device memory of the train step from XLA's compiled memory analysis,
on this machine's devices, on simulated CPU devices, or on TPUs and GPUs this
machine does not have.

  python -m train.memory --preset ladm-paper --devices 8
  python -m train.memory --preset ladm-paper --target v5e:2x4 --fit
  python -m train.memory --preset ladm-paper --target h200:8 --fsdp --json out.json
  python -m train.memory --report results/memory.md               # CPU, every paper preset
  python -m train.memory --accelerators results/accelerators.md   # TPUs and GPUs

Takes the flags of `python -m train.train` (a preset, then any flag over it)
and prints what one device holds during one train step: its arguments
(parameters, optimizer state, its rows of the batch), outputs, temporaries,
their total (the donated state counted once) and XLA's peak. Nothing is
allocated: the step is compiled against abstract arrays, in a fresh process.
`--devices N` simulates N CPU devices. `--target` compiles for the chips of a
TPU slice or of NVIDIA GPUs with their own compilers (`train.hardware.accelerators`;
`python -m train.hardware.compilers` installs them): the figures are that compiler's estimate for
the chip, and it fits if what a device must hold (XLA's peak on a TPU, which
its compiler checks; the total on a GPU, which its runtime allocates) is
within the chip's HBM (`train.hardware.accelerators.CHIPS`). A step the TPU compiler
cannot fit is reported as not fitting, with the memory it asked for. `--fit`
tries `--grad-accum` 1, 2, 4, ... (from the one given, dividing each
device's rows) until one fits. `--runs K` compiles a sweep of K runs
(vmapped as `--vmap-runs` and the target's backend decide).
The data set is not read, and does not change the step.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from train import cli

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all")
_OUT_OF_HBM = re.compile(r"required for .*?\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)")


def _collectives(hlo: str) -> dict[str, int]:
  """How many of each collective the compiled HLO holds (an asynchronous one
  counted once, at its start). The TPU compiler writes a reduce-scatter as a
  fusion calling an `all-reduce-scatter` computation (an all-reduce and the
  slice each device keeps): that is one reduce-scatter."""
  counts = dict.fromkeys(COLLECTIVES, 0)
  in_reduce_scatter = False
  for line in hlo.splitlines():
    computation = re.match(r"\s*(?:ENTRY\s+)?%(\S+) \(.*\{\s*$", line)
    if computation:
      in_reduce_scatter = computation[1].startswith("all-reduce-scatter")
      continue
    if in_reduce_scatter:
      continue
    counts["reduce-scatter"] += "calls=%all-reduce-scatter" in line
    for op in re.findall(r"\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(", line):
      counts[op] += 1
  return counts


def step_memory(train_flags: list[str], runs: int = 1, target: str | None = None,
                slices: int = 1) -> dict:
  """The per-device memory of the train step of `train_flags` (`runs` runs
  at once), compiled in this process for the devices JAX has, or for
  `target`'s chips; bytes."""
  import dataclasses

  import jax
  import jax.numpy as jnp

  from train import step
  from train.hardware import accelerators
  from train.config import from_args

  config = from_args([*train_flags, "--data", "python_stdlib"])
  if runs < 1:
    raise ValueError(f"--runs must be positive, got {runs}")
  devices = jax.devices()
  if target is not None:
    devices = accelerators.target_devices(accelerators.parse_target(target, slices))
    # JAX's persistent cache cannot load an executable of compile-only devices.
    jax.config.update("jax_enable_compilation_cache", False)
  rows = config.batch_size // config.grad_accum
  if config.batch_size % len(devices) or rows % len(devices):
    raise ValueError(f"--batch-size {config.batch_size} / --grad-accum {config.grad_accum} "
                     f"does not divide over {len(devices)} devices")
  configs = [dataclasses.replace(config, seed=config.seed + k) for k in range(runs)]
  trainer = step.Trainer(configs, mesh=step.make_mesh(devices))
  batch = jax.ShapeDtypeStruct((1, runs, config.batch_size, config.seq_len + 1), jnp.int32,
                               sharding=trainer.batch_sharding)
  chip = accelerators.CHIPS.get(devices[0].device_kind)
  hbm, peak_flops = accelerators.per_device(chip, devices) if chip else (None, None)
  flops = runs * config.tokens_per_step * config.model_config.train_flops_per_token(
      config.seq_len)
  result = {"target": target, "slices": slices, "device_kind": devices[0].device_kind,
            "devices": len(devices), "processes": len({d.process_index for d in devices}),
            "runs": runs, "vmap_runs": trainer.vmap_runs, "batch_size": config.batch_size,
            "grad_accum": config.grad_accum, "hbm_bytes": hbm, "model_flops_per_step": flops,
            "step_time_bound_s": None, "tokens_per_s_bound": None}
  if peak_flops:
    result["step_time_bound_s"] = flops / (peak_flops * len(devices))
    result["tokens_per_s_bound"] = runs * config.tokens_per_step / result["step_time_bound_s"]
  # What a step that does not compile leaves unknown.
  result.update(dict.fromkeys(("arguments", "outputs", "aliased", "temporaries",
                               "per_device_bytes", "peak_bytes", "collectives",
                               "required_bytes", "available_bytes")))
  return _compiled(lambda: trainer.train_steps.lower(trainer.abstract_state, batch).compile(),
                   result, devices[0].platform)


def _compiled(compile_step, result: dict, platform: str) -> dict:
  """`result` with the memory of the step `compile_step()` compiles: its
  parts, XLA's peak, the collectives, and what the chip must hold; or, where
  the TPU compiler refuses the step for want of HBM, what it asked for."""
  import jax

  start = time.perf_counter()
  try:
    compiled = compile_step()
  except jax.errors.JaxRuntimeError as e:
    needs = _OUT_OF_HBM.search(str(e))
    if not str(e).startswith("RESOURCE_EXHAUSTED") or needs is None:
      raise
    return {**result, "compile_s": time.perf_counter() - start, "fits": False,
            "required_bytes": round(float(needs[1]) * 2**30),
            "available_bytes": round(float(needs[2]) * 2**30)}
  memory = compiled.memory_analysis()
  result.update(
      compile_s=time.perf_counter() - start,
      arguments=memory.argument_size_in_bytes, outputs=memory.output_size_in_bytes,
      aliased=memory.alias_size_in_bytes, temporaries=memory.temp_size_in_bytes,
      peak_bytes=memory.peak_memory_in_bytes, collectives=_collectives(compiled.as_text()))
  result["per_device_bytes"] = (result["arguments"] + result["outputs"]
                                + result["temporaries"] - result["aliased"])
  # What the chip must hold: the TPU compiler checks XLA's peak against its
  # HBM itself (and refused the step above if it does not fit); a GPU's
  # runtime allocates the arguments, outputs and temporaries whole.
  result["required_bytes"] = (result["peak_bytes"] if platform == "tpu"
                              else result["per_device_bytes"])
  hbm = result["hbm_bytes"]
  result["fits"] = None if hbm is None else result["required_bytes"] <= hbm
  return result


def measured(train_flags: list[str], devices: int | None = None, target: str | None = None,
             slices: int = 1, runs: int = 1) -> dict:
  """`step_memory` in a fresh process, on `devices` simulated CPU devices or
  for `target`'s chips."""
  from train.hardware import compilers

  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  where = []
  if target is not None:
    env = compilers.environment(env)
    where = ["--target", target, "--slices", str(slices)]
  elif devices is not None:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  result = subprocess.run(
      [sys.executable, "-m", "train.memory", "--in-process", "--json", "-", "--runs", str(runs),
       *where, *train_flags], env=env, capture_output=True, text=True)
  if result.returncode == 2:  # a bad flag: its one-line error, after any plugin's logs
    raise ValueError(result.stderr.strip().splitlines()[-1].removeprefix("error: "))
  if result.returncode:
    raise RuntimeError(f"train.memory {' '.join(train_flags)}: {result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def fit(train_flags: list[str], **where) -> dict:
  """`measured` at the given `--grad-accum`, then at twice as many
  microbatches while it does not fit and each device's rows divide; the
  result of the first that fits (or of the last tried), with every try."""
  result = measured(train_flags, **where)
  tries = [result]
  while result["fits"] is False:
    grad_accum = 2 * result["grad_accum"]
    per_device_rows = result["batch_size"] // result["devices"]
    if per_device_rows % grad_accum:
      break
    result = measured([*train_flags, "--grad-accum", str(grad_accum)], **where)
    tries.append(result)
  return {**result, "tried": [{k: t[k] for k in ("grad_accum", "fits", "required_bytes")}
                              for t in tries]}


def _size(x: int) -> str:
  return f"{x / 2**30:.2f} GiB" if x >= 2**30 else f"{x / 2**20:.1f} MiB"


# Why the two figures differ, as `summary` prints them.
_PEAK_VERSUS_TOTAL = {
    "cpu": "  (the total is what the CPU allocates, its temporaries as one block; XLA's "
           "peak on CPU counts the arguments and outputs live at once, not that block)",
    "gpu": "  (the total is what the GPU runtime allocates, its temporaries as one block; "
           "XLA's peak is what is live at once within it)",
    "tpu": "  (XLA's peak is what is live at once, which the TPU compiler checks against "
           "HBM; the total counts every buffer as if all were live together)"}


def _platform(device_kind: str) -> str:
  return "cpu" if device_kind == "cpu" else "tpu" if device_kind.startswith("TPU") else "gpu"


def summary(r: dict) -> str:
  """The result as the command prints it."""
  where = (f"{r['target']}: {r['devices']} x {r['device_kind']}, {r['processes']} "
           f"process{'es' if r['processes'] > 1 else ''}" if r["target"] else
           f"{r['devices']} x {r['device_kind']}")
  lines = [f"{where}, --grad-accum {r['grad_accum']}"
           + (f", {r['runs']} runs" if r["runs"] > 1 else "")]
  if r["available_bytes"] is not None:
    lines.append(f"does not fit: the TPU compiler needs {_size(r['required_bytes'])} of the "
                 f"{_size(r['available_bytes'])} of HBM it can use")
  else:
    lines.append(
        f"per device: arguments {_size(r['arguments'])}, outputs {_size(r['outputs'])}, "
        f"temporaries {_size(r['temporaries'])}, total {_size(r['per_device_bytes'])}; "
        f"XLA's peak {_size(r['peak_bytes'])}")
    lines.append(_PEAK_VERSUS_TOTAL[_platform(r["device_kind"])])
    if r["hbm_bytes"]:
      verdict = "fits" if r["fits"] else "does not fit"
      lines.append(f"{verdict}: needs {_size(r['required_bytes'])} of "
                   f"{_size(r['hbm_bytes'])} HBM ("
                   + ("XLA's peak, as the TPU compiler checks)" if r["device_kind"].startswith(
                       "TPU") else "the total, as the GPU runtime allocates)"))
    lines.append("collectives: " + ", ".join(f"{k} {v}" for k, v in r["collectives"].items()))
  if r["step_time_bound_s"]:
    lines.append(f"compute bound (model FLOPs at the chips' bf16 peak, not a measurement): "
                 f"{r['step_time_bound_s'] * 1e3:.3g} ms/step, "
                 f"{r['tokens_per_s_bound']:,.0f} tokens/s at MFU 1.0")
  if "tried" in r and len(r["tried"]) > 1:
    lines.append("tried --grad-accum " + ", ".join(
        f"{t['grad_accum']} (fits)" if t["fits"] else
        f"{t['grad_accum']} (does not fit: needs {_size(t['required_bytes'])})"
        for t in r["tried"]))
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.memory", __doc__,
                 epilog="Any other flag is one of python -m train.train's.")
  where = p.add_mutually_exclusive_group()
  where.add_argument("--devices", type=int, help="simulate this many CPU devices")
  where.add_argument("--target", help="compile for these chips: a TPU topology as libtpu "
                                      "names it (v5e:2x4, v6e:2x2, v5p:2x2x2, ...) or "
                                      "h100:N / h200:N")
  p.add_argument("--slices", type=int, default=1, help="with a TPU --target: slices of it")
  p.add_argument("--runs", type=int, default=1, help="runs of a sweep in one step")
  p.add_argument("--fit", action="store_true",
                 help="find the smallest --grad-accum (1, 2, 4, ...) that fits")
  p.add_argument("--json", metavar="PATH", help="also write the result as JSON (- for stdout)")
  p.add_argument("--report", metavar="PATH",
                 help="write every paper preset's memory on simulated CPU devices here")
  p.add_argument("--accelerators", metavar="PATH",
                 help="write results/accelerators.md's rows here (minutes each)")
  p.add_argument("--jobs", type=int, default=1, help="with a report: compilations at once")
  # Set by `measured` for the process it starts: compile here and now.
  p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
  args, train_flags = p.parse_known_args(argv)
  from train.hardware import accelerators, compilers
  try:
    if args.target is not None:
      accelerators.parse_target(args.target, args.slices)  # before any process starts
    if args.report:
      from train.config import PRESETS
      from train.hardware import memory_results
      memory_results.cpu(pathlib.Path(args.report), list(PRESETS), args.jobs)
      return
    if args.accelerators:
      from train.hardware import memory_results
      memory_results.accelerators(pathlib.Path(args.accelerators), args.jobs)
      return
    if args.in_process or (args.devices is None and args.target is None and not args.fit):
      result = step_memory(train_flags, args.runs, args.target, args.slices)
    else:
      where = dict(devices=args.devices, target=args.target, slices=args.slices,
                   runs=args.runs)
      result = fit(train_flags, **where) if args.fit else measured(train_flags, **where)
  except (ValueError, compilers.CompilerMissing) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if args.json == "-":
    print(json.dumps(result))
    return
  if args.json:
    from train import files
    files.write_atomically(args.json, json.dumps(result, indent=1))
  print(summary(result))


if __name__ == "__main__":
  main()
