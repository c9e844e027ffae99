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
TPU slice or of NVIDIA GPUs with their own compilers (`train.accelerators`;
the `aot` extra installs them): the figures are that compiler's estimate for
the chip, and it fits if what a device must hold (XLA's peak on a TPU, which
its compiler checks; the total on a GPU, which its runtime allocates) is
within the chip's HBM (`train.accelerators.CHIPS`). A step the TPU compiler
cannot fit is reported as not fitting, with the memory it asked for. `--fit`
tries `--grad-accum` 1, 2, 4, ... (from the one given, dividing each
device's rows) until one fits. `--runs K` compiles a sweep of K runs
(vmapped as `--vmap-runs` and the target's backend decide).
The data set is not read, and does not change the step.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import subprocess
import sys
import time

# What fits on simulated CPU devices: the report's per-device targets.
DATA_PARALLEL_DEVICES, DATA_PARALLEL_LIMIT_GIB = 8, 60
ONE_DEVICE_LIMIT_GIB = 141  # an H200
# The setting that fits the reports' batch (512 x 1024) on one device.
ONE_DEVICE_FLAGS = ("--grad-accum", "8", "--remat")

# What results/accelerators.md compiles: every paper preset on each target,
# the accelerator benchmark suite's step (its runs of one method vmapped;
# LADM keeps the largest state of its methods), one multi-host slice and FSDP.
ACCELERATOR_TARGETS = ("v5e:2x4", "v6e:2x4", "v5p:2x2x2", "h100:8", "h200:8")
ACCELERATOR_SUITE_FLAGS = ("--config", "small", "--batch-size", "32", "--seq-len", "256",
                           "--dtype", "bfloat16", "--optimizer", "ladm", "--runs", "3")
MULTI_HOST_TARGET = "v5e:4x4"  # 16 chips, 4 hosts of 4

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

  from train import accelerators, step
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
  start = time.perf_counter()
  try:
    compiled = trainer.train_steps.lower(trainer.abstract_state, batch).compile()
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
  result["required_bytes"] = (result["peak_bytes"] if devices[0].platform == "tpu"
                              else result["per_device_bytes"])
  result["fits"] = None if hbm is None else result["required_bytes"] <= hbm
  return result


def measured(train_flags: list[str], devices: int | None = None, target: str | None = None,
             slices: int = 1, runs: int = 1) -> dict:
  """`step_memory` in a fresh process, on `devices` simulated CPU devices or
  for `target`'s chips."""
  from train import accelerators

  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  where = []
  if target is not None:
    env.update(accelerators.TARGET_ENVIRONMENT)
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


def _gib(x: int | None) -> str:
  return "-" if x is None else f"{x / 2**30:.1f}"


def _size(x: int) -> str:
  return f"{x / 2**30:.2f} GiB" if x >= 2**30 else f"{x / 2**20:.1f} MiB"


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


def cpu_report(out: pathlib.Path, presets: list[str], jobs: int) -> None:
  """Every preset at its defaults on 8 simulated CPU devices, and with
  `ONE_DEVICE_FLAGS` on one: `out` as Markdown and JSON beside it."""
  from train import files, provenance

  cases = [(["--preset", preset, *extra], devices, limit)
           for preset in presets
           for devices, extra, limit in ((DATA_PARALLEL_DEVICES, (), DATA_PARALLEL_LIMIT_GIB),
                                         (1, ONE_DEVICE_FLAGS, ONE_DEVICE_LIMIT_GIB))]
  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    results = list(pool.map(lambda case: measured(case[0], devices=case[1]), cases))
  cases = [{"flags": flags, "limit_gib": limit, **result}
           for (flags, _, limit), result in zip(cases, results)]
  data = provenance.write_results(out.with_suffix(".json"), "train.memory",
                                 ["--report", str(out)], {"cases": cases})
  machine = data["machine"]
  lines = [
      "# Train-step memory per device on simulated CPU devices", "",
      f"Command: `{data['command']}` (each row: `python -m train.memory FLAGS --devices N`). "
      "XLA's compiled memory analysis of one train step on simulated CPU devices "
      f"(jax {machine['jax']}); nothing is allocated. These are the CPU compiler's figures: "
      "for what fits on TPUs and GPUs, their own compilers' figures are in "
      "`results/accelerators.md`.", "",
      f"Targets: the presets' defaults within {DATA_PARALLEL_LIMIT_GIB} GiB per device on "
      f"{DATA_PARALLEL_DEVICES} devices (data parallel, batch 512 x 1024 = 64 sequences per "
      f"device), and `{' '.join(ONE_DEVICE_FLAGS)}` within {ONE_DEVICE_LIMIT_GIB} GiB on "
      "one device (an H200).", "",
      "| flags | devices | arguments | outputs | temporaries | total (GiB) | limit | fits |",
      "|---|---|---|---|---|---|---|---|"]
  for c in cases:
    fits = "yes" if c["per_device_bytes"] <= c["limit_gib"] * 2**30 else "**no**"
    lines.append(f"| `{' '.join(c['flags'])}` | {c['devices']} | {_gib(c['arguments'])} | "
                 f"{_gib(c['outputs'])} | {_gib(c['temporaries'])} | "
                 f"{_gib(c['per_device_bytes'])} | {c['limit_gib']} | {fits} |")
  files.write_atomically(out, "\n".join(lines) + "\n")
  print(f"wrote {out}")


def accelerator_cases() -> list[tuple[list[str], str]]:
  """(train flags, target) of every row of results/accelerators.md."""
  from train.config import PRESETS

  cases = [([*flags], target) for flags in
           [*(["--preset", preset] for preset in PRESETS), ACCELERATOR_SUITE_FLAGS]
           for target in ACCELERATOR_TARGETS]
  return cases + [(["--preset", "ladm-paper"], MULTI_HOST_TARGET),
                  (["--preset", "ladm-paper", "--fsdp"], "v5e:2x4"),
                  (["--preset", "ladm-paper", "--fsdp"], "h100:8")]


def _split_runs(flags: list[str]) -> tuple[list[str], int]:
  if "--runs" not in flags:
    return flags, 1
  i = flags.index("--runs")
  return flags[:i] + flags[i + 2:], int(flags[i + 1])


def accelerator_report(out: pathlib.Path, jobs: int) -> None:
  """`accelerator_cases`, each with `--fit`: `out` as Markdown and JSON."""
  import importlib.metadata

  from train import files, provenance

  def one(case):
    flags, target = case
    train_flags, runs = _split_runs(flags)
    return {"flags": flags, **fit(train_flags, target=target, runs=runs)}

  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    cases = list(pool.map(one, accelerator_cases()))
  versions = {name: importlib.metadata.version(name)
              for name in ("jax", "jaxlib", "libtpu", "jax-cuda12-plugin")}
  data = provenance.write_results(out.with_suffix(".json"), "train.memory",
                                 ["--accelerators", str(out)],
                                 {"versions": versions, "cases": cases})
  files.write_atomically(out, accelerator_markdown(data))
  print(f"wrote {out}")


def fit_table(data: dict) -> str:
  """What fits where: per flags (rows) and target (columns), the smallest
  `--grad-accum` that fits and that step's GiB per device (README's table)."""
  cases = data["cases"]
  targets = list(dict.fromkeys(c["target"] for c in cases))
  rows = list(dict.fromkeys(" ".join(c["flags"]) for c in cases))
  cell = {(" ".join(c["flags"]), c["target"]): (
      f"{c['grad_accum']} ({_gib(c['required_bytes'])} of {_gib(c['hbm_bytes'])})"
      if c["fits"] else "no") for c in cases}
  lines = ["| flags | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
  lines += [f"| `{row}` | " + " | ".join(cell.get((row, t), "") for t in targets) + " |"
            for row in rows]
  return "\n".join(lines) + "\n"


def accelerator_markdown(data: dict) -> str:
  """results/accelerators.md from its JSON."""
  lines = [
      "# Train-step memory on TPUs and GPUs, compiled ahead of time", "",
      f"Command: `{data['command']}` (each row: `python -m train.memory FLAGS --target "
      "TARGET --fit`), on a CPU with no accelerator: "
      f"{data['machine']['processor']}, {data['machine']['cpus']} cores; "
      + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".", "",
      "Each row is one train step compiled for the chips of its target by their own "
      "compiler (libtpu's for TPUs, XLA's GPU compiler in the CUDA plugin for NVIDIA GPUs) "
      "against abstract arrays: XLA's compile-time estimate of one device's memory on that "
      "chip, not a run on one. *HBM* is the chip's datasheet figure. What a device must "
      "hold is checked against it: on a TPU, XLA's peak, which the TPU compiler checks "
      "itself, refusing a step over the HBM it can use (15.75 of v5e's 16 GiB; a refused "
      "step's need is the figure of its message); on a GPU, the total of arguments, "
      "outputs and temporaries, which the runtime allocates (and JAX's allocator takes "
      "75% of a GPU's memory unless `XLA_PYTHON_CLIENT_MEM_FRACTION` says more). `--fit` "
      "tries `--grad-accum` 1, 2, 4, ... until the step fits: *need at 1* is that need "
      "with one microbatch per step, *grad-accum* the first that fits, and the columns "
      "after it that step's. "
      "*Compute bound*: the model FLOPs of a step (6 per matmul weight per token, plus "
      "attention) at the chips' dense bf16 peak, the step time and tokens/s of MFU 1.0: a "
      "bound, not a measurement. *Collectives*: all-reduce / all-gather / reduce-scatter / "
      "all-to-all in the compiled HLO.", "",
      "## What fits where", "",
      "The smallest `--grad-accum` that fits, and that step's need per device of the "
      "chip's HBM, in GiB:", "", fit_table(data),
      "## Every compiled step", "",
      "| flags | target | devices (hosts) | need at 1 (GiB) | grad-accum | arguments | "
      "temporaries | total | XLA's peak | HBM (GiB) | fits | collectives | "
      "compute bound (ms/step, tokens/s) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for c in data["cases"]:
    first = c["tried"][0]
    at_one = _gib(first["required_bytes"])
    if c["available_bytes"] is not None:
      sizes, collectives = "- | - | - | -", "-"
    else:
      sizes = (f"{_gib(c['arguments'])} | {_gib(c['temporaries'])} | "
               f"{_gib(c['per_device_bytes'])} | {_gib(c['peak_bytes'])}")
      collectives = "/".join(str(c["collectives"][k]) for k in COLLECTIVES)
    lines.append(
        f"| `{' '.join(c['flags'])}` | {c['target']} | {c['devices']} x {c['device_kind']} "
        f"({c['processes']}) | {at_one} | {c['grad_accum'] if c['fits'] else 'none'} | "
        f"{sizes} | {_gib(c['hbm_bytes'])} | {'yes' if c['fits'] else '**no**'} | "
        f"{collectives} | {c['step_time_bound_s'] * 1e3:.3g}, "
        f"{c['tokens_per_s_bound']:,.0f} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m train.memory", description=__doc__.splitlines()[0],
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
  from train import accelerators
  try:
    if args.target is not None:
      accelerators.parse_target(args.target, args.slices)  # before any process starts
    if args.report:
      from train.config import PRESETS
      cpu_report(pathlib.Path(args.report), list(PRESETS), args.jobs)
      return
    if args.accelerators:
      accelerator_report(pathlib.Path(args.accelerators), args.jobs)
      return
    if args.in_process or (args.devices is None and args.target is None and not args.fit):
      result = step_memory(train_flags, args.runs, args.target, args.slices)
    else:
      where = dict(devices=args.devices, target=args.target, slices=args.slices,
                   runs=args.runs)
      result = fit(train_flags, **where) if args.fit else measured(train_flags, **where)
  except (ValueError, accelerators.CompilerMissing) as e:
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
