"""What every benchmark records beside its numbers: the command, the machine
and the revision that produced them."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any

import jax
import optax

from train import files


def command(module: str, argv: list[str] | None) -> str:
  """The command line that reproduces a benchmark run."""
  return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


def machine() -> dict[str, str | int]:
  """The processor, its cores, the JAX devices and the versions that matter."""
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  models = [line.split(":", 1)[1].strip() for line in
            (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
            if line.startswith("model name")]
  return {"processor": models[0] if models else platform.processor() or platform.machine(),
          "cpus": os.cpu_count(), "devices": f"{jax.device_count()} {jax.default_backend()}",
          "python": platform.python_version(), "jax": jax.__version__,
          "optax": optax.__version__}


# The CPU features that decide which matmul and vector code paths run.
_CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
                 "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
  """Which of `_CPU_FEATURES` this machine's CPU has (Linux's /proc/cpuinfo)."""
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  flags = next((line.split(":", 1)[1].split() for line in
                (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
                if line.startswith("flags")), [])
  return [f for f in _CPU_FEATURES if f in flags]


def git_commit() -> str:
  """The checkout's commit, or "unknown" outside a git checkout."""
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True, cwd=pathlib.Path(__file__).parent).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def write_results(out: str | os.PathLike, module: str, argv: list[str] | None,
                  results: dict[str, Any]) -> dict[str, Any]:
  """Writes `results` as JSON with the command and the machine that produced
  them; returns what it wrote."""
  written = {"command": command(module, argv), "machine": machine(), **results}
  files.write_atomically(out, json.dumps(written, indent=1))
  print(f"wrote {out}")
  return written
