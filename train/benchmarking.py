"""What every benchmark records beside its numbers: the command and the machine."""

from __future__ import annotations

import os
import pathlib
import platform
import sys

import jax
import optax


def command(module: str, argv: list[str] | None) -> str:
  """The command line that reproduces a benchmark run."""
  return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


def machine() -> dict[str, str | int]:
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  models = [line.split(":", 1)[1].strip() for line in
            (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
            if line.startswith("model name")]
  return {"processor": models[0] if models else platform.processor() or platform.machine(),
          "cpus": os.cpu_count(), "devices": f"{jax.device_count()} {jax.default_backend()}",
          "python": platform.python_version(), "jax": jax.__version__,
          "optax": optax.__version__}
