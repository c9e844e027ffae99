"""results/memory.md and results/accelerators.md: the train step's memory
for every preset on simulated CPU devices, and on TPUs and GPUs compiled
ahead of time (`python -m train.memory --report` / `--accelerators`)."""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import pathlib

from train import files, markdown, provenance
from train.config import PRESETS
from train.hardware.memory import COLLECTIVES, fit, measured

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



def _gib(x: int | None) -> str:
  return "-" if x is None else f"{x / 2**30:.1f}"


def cpu(out: pathlib.Path, presets: list[str], jobs: int) -> None:
  """Every preset at its defaults on 8 simulated CPU devices, and with
  `ONE_DEVICE_FLAGS` on one: `out` as Markdown and JSON beside it."""
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
      *markdown.table(
          ["flags", "devices", "arguments", "outputs", "temporaries", "total (GiB)", "limit",
           "fits"],
          ([f"`{' '.join(c['flags'])}`", c["devices"], _gib(c["arguments"]),
            _gib(c["outputs"]), _gib(c["temporaries"]), _gib(c["per_device_bytes"]),
            c["limit_gib"],
            "yes" if c["per_device_bytes"] <= c["limit_gib"] * 2**30 else "**no**"]
           for c in cases))]
  files.write_atomically(out, "\n".join(lines) + "\n")
  print(f"wrote {out}")


def accelerator_cases() -> list[tuple[list[str], str]]:
  """(train flags, target) of every row of results/accelerators.md."""
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


def accelerators(out: pathlib.Path, jobs: int) -> None:
  """`accelerator_cases`, each with `--fit`: `out` as Markdown and JSON."""
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
  `--grad-accum` that fits and that step's GiB per device (docs/scale.md's table)."""
  cases = data["cases"]
  targets = list(dict.fromkeys(c["target"] for c in cases))
  rows = list(dict.fromkeys(" ".join(c["flags"]) for c in cases))
  cell = {(" ".join(c["flags"]), c["target"]): (
      f"{c['grad_accum']} ({_gib(c['required_bytes'])} of {_gib(c['hbm_bytes'])})"
      if c["fits"] else "no") for c in cases}
  return "\n".join(markdown.table(
      ["flags", *targets],
      ([f"`{row}`", *(cell.get((row, t), "") for t in targets)] for row in rows))) + "\n"


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
      *markdown.table(
          ["flags", "target", "devices (hosts)", "need at 1 (GiB)", "grad-accum", "arguments",
           "temporaries", "total", "XLA's peak", "HBM (GiB)", "fits", "collectives",
           "compute bound (ms/step, tokens/s)"], map(_compiled_step, data["cases"]))]
  return "\n".join(lines) + "\n"


def _compiled_step(c: dict) -> list[str]:
  """A row of results/accelerators.md's "Every compiled step"."""
  if c["available_bytes"] is not None:
    sizes, collectives = ["-"] * 4, "-"
  else:
    sizes = [_gib(c[k]) for k in ("arguments", "temporaries", "per_device_bytes", "peak_bytes")]
    collectives = "/".join(str(c["collectives"][k]) for k in COLLECTIVES)
  return [f"`{' '.join(c['flags'])}`", c["target"],
          f"{c['devices']} x {c['device_kind']} ({c['processes']})",
          _gib(c["tried"][0]["required_bytes"]), c["grad_accum"] if c["fits"] else "none",
          *sizes, _gib(c["hbm_bytes"]), "yes" if c["fits"] else "**no**", collectives,
          f"{c['step_time_bound_s'] * 1e3:.3g}, {c['tokens_per_s_bound']:,.0f}"]
