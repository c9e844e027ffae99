"""Per-device memory of the train step, from XLA's compiled memory analysis.

  python -m train.memory --preset ladm-paper --devices 8
  python -m train.memory --preset ladm-paper --devices 1 --grad-accum 8 --remat
  python -m train.memory --report results/memory.md   # every paper preset, 8 and 1 device

Takes the flags of `python -m train.train` (a preset, then any flag over it)
and prints what one device holds during one train step, in GiB: its
arguments (parameters, optimizer state, its rows of the batch), outputs,
temporaries and the total (the donated state counted once). Nothing is
allocated: the step is compiled against abstract arrays. `--devices N`
simulates N CPU devices; without it, the local devices are used. The data
set is not read, and does not change the step.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

# What fits: the per-device targets of the report.
DATA_PARALLEL_DEVICES, DATA_PARALLEL_LIMIT_GIB = 8, 60
ONE_DEVICE_LIMIT_GIB = 141  # an H200
# The setting that fits the reports' batch (512 x 1024) on one device.
ONE_DEVICE_FLAGS = ("--grad-accum", "8", "--remat")


def step_memory(train_flags: list[str]) -> dict:
  """The per-device memory of the train step of `train_flags`, in bytes,
  on the devices JAX has."""
  import jax
  import jax.numpy as jnp

  from train import step
  from train.config import from_args

  config = from_args([*train_flags, "--data", "python_stdlib"])
  devices = jax.device_count()
  rows = config.batch_size // config.grad_accum
  if config.batch_size % devices or rows % devices:
    raise ValueError(f"--batch-size {config.batch_size} / --grad-accum {config.grad_accum} "
                     f"does not divide over {devices} devices")
  trainer = step.Trainer([config])
  batch = jax.ShapeDtypeStruct((1, 1, config.batch_size, config.seq_len + 1), jnp.int32,
                               sharding=trainer.batch_sharding)
  memory = trainer.train_steps.lower(trainer.abstract_state, batch).compile().memory_analysis()
  result = {"devices": devices, "arguments": memory.argument_size_in_bytes,
            "outputs": memory.output_size_in_bytes, "aliased": memory.alias_size_in_bytes,
            "temporaries": memory.temp_size_in_bytes}
  result["total"] = (result["arguments"] + result["outputs"] + result["temporaries"]
                     - result["aliased"])
  return result


def _gib(x: int) -> str:
  return f"{x / 2**30:.1f}"


def measured(train_flags: list[str], devices: int) -> dict:
  """`step_memory` in a fresh process with `devices` simulated CPU devices."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  result = subprocess.run([sys.executable, "-m", "train.memory", "--json", *train_flags],
                          env=env, capture_output=True, text=True)
  if result.returncode == 2:  # a bad flag: its one-line error
    raise ValueError(result.stderr.strip().removeprefix("error: "))
  if result.returncode:
    raise RuntimeError(f"train.memory {' '.join(train_flags)}: {result.stderr[-2000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def report(out: pathlib.Path, presets: list[str], jobs: int) -> None:
  """Every preset at its defaults on 8 devices, and with `ONE_DEVICE_FLAGS`
  on one: `out` as Markdown and JSON beside it. `jobs` compile at once."""
  from train import files, provenance

  cases = [(["--preset", preset, *extra], devices, limit)
           for preset in presets
           for devices, extra, limit in ((DATA_PARALLEL_DEVICES, (), DATA_PARALLEL_LIMIT_GIB),
                                         (1, ONE_DEVICE_FLAGS, ONE_DEVICE_LIMIT_GIB))]
  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    results = list(pool.map(lambda case: measured(*case[:2]), cases))
  cases = [{"flags": flags, "limit_gib": limit, **result}
           for (flags, _, limit), result in zip(cases, results)]
  data = provenance.write_report(out.with_suffix(".json"), "train.memory",
                                 ["--report", str(out)], {"cases": cases})
  machine = data["machine"]
  lines = [
      "# Train-step memory per device", "",
      f"Command: `{data['command']}` (each row: `python -m train.memory FLAGS --devices N`). "
      "XLA's compiled memory analysis of one train step on simulated CPU devices "
      f"(jax {machine['jax']}); nothing is allocated. A GPU or TPU compiler fuses and "
      "schedules differently: read these as the CPU compiler's figures for the same "
      "program.", "",
      f"Targets: the presets' defaults within {DATA_PARALLEL_LIMIT_GIB} GiB per device on "
      f"{DATA_PARALLEL_DEVICES} devices (data parallel, batch 512 x 1024 = 64 sequences per "
      f"device), and `{' '.join(ONE_DEVICE_FLAGS)}` within {ONE_DEVICE_LIMIT_GIB} GiB on "
      "one device (an H200).", "",
      "| flags | devices | arguments | outputs | temporaries | total (GiB) | limit | fits |",
      "|---|---|---|---|---|---|---|---|"]
  for c in cases:
    fits = "-" if c["limit_gib"] is None else (
        "yes" if c["total"] <= c["limit_gib"] * 2**30 else "**no**")
    lines.append(f"| `{' '.join(c['flags'])}` | {c['devices']} | {_gib(c['arguments'])} | "
                 f"{_gib(c['outputs'])} | {_gib(c['temporaries'])} | {_gib(c['total'])} | "
                 f"{'-' if c['limit_gib'] is None else c['limit_gib']} | {fits} |")
  files.write_atomically(out, "\n".join(lines) + "\n")
  print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m train.memory", description=__doc__.splitlines()[0],
      epilog="Any other flag is one of python -m train.train's.")
  p.add_argument("--devices", type=int, help="simulate this many CPU devices")
  p.add_argument("--report", help="write every paper preset's memory to this Markdown file")
  p.add_argument("--json", action="store_true", help="print the result as JSON")
  p.add_argument("--jobs", type=int, default=1, help="with --report: compilations at once")
  args, train_flags = p.parse_known_args(argv)
  try:
    if args.report:
      from train.config import PRESETS
      report(pathlib.Path(args.report), list(PRESETS), args.jobs)
      return
    if args.devices is not None:
      print(json.dumps(measured(train_flags, args.devices)) if args.json else
            _summary(measured(train_flags, args.devices)))
      return
    result = step_memory(train_flags)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(result) if args.json else _summary(result))


def _summary(result: dict) -> str:
  return (f"per device, of {result['devices']}: arguments {_gib(result['arguments'])} GiB, "
          f"outputs {_gib(result['outputs'])} GiB, temporaries "
          f"{_gib(result['temporaries'])} GiB, total {_gib(result['total'])} GiB")


if __name__ == "__main__":
  main()
