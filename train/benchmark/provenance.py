"""What every benchmark records beside its numbers: the command and the machine."""

from __future__ import annotations

import json
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


def write_report(out: str | os.PathLike, module: str, argv: list[str] | None,
                 results: dict) -> None:
  """Writes `results` as JSON with the command and the machine that produced them."""
  report = {"command": command(module, argv), "machine": machine(), **results}
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=1))
  print(f"wrote {path}")
