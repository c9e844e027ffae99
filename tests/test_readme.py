"""The README's code blocks and commands run as written; the API documents itself."""

import inspect
import os
import re
import shlex
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import layeropt_jax
from train import optim
from train.benchmark.render import VERDICT_HEADER
from train.config import from_args

from tests.helpers import REPO, records

README = REPO / "README.md"
# What CI itself runs (.ci/run); the hours-long suite, and the smoke suite that
# tests/test_benchmark.py runs in its place; the 134M model's memory
# reports, which tests/test_scale.py and tests/test_accelerators.py run on a
# small model.
CI_STEPS = ("python3 -m venv", "pip install", "python -m pytest")
LONG = {"python -m train.benchmark --suite nano",
        "python -m train.benchmark --suite smoke",  # run by tests/test_benchmark.py
        "python -m train.memory --preset ladm-paper --devices 8",
        "python -m train.memory --preset ladm-paper --devices 1 --grad-accum 8 --remat",
        # tests/test_accelerators.py compiles small configs for these chips.
        "python -m train.memory --preset ladm-paper --target v5e:2x4 --fit",
        "python -m train.memory --preset ladm-paper --target v5e:4x4",
        "python -m train.memory --preset ladm-paper --target h100:8 --fsdp --json h100.json"}


def test_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks
  namespace = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)


def shell_commands():
  blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
  lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
  return [line for line in lines if line]


def test_shell_commands_run(tmp_path):
  """In order, from a scratch directory (so `runs/x` and `results/` are its
  own); the placeholders FINEWEB and tokenizer.json become a parquet shard
  and the tokenizer the training command saved."""
  fineweb = tmp_path / "fineweb"
  fineweb.mkdir()
  pq.write_table(pa.table({
      "text": [f"document {i}: the quick brown fox jumps over the lazy dog " * 8
               for i in range(300)],
      "id": [f"<urn:uuid:{i}>" for i in range(300)]}), fineweb / "shard-0.parquet")
  env = {**os.environ, "PYTHONPATH": str(REPO), "TFDS_DATA_DIR": str(tmp_path / "tfds"),
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  ran = []
  for line in shell_commands():
    if line.startswith(CI_STEPS) or line in LONG:
      continue
    line = line.replace("FINEWEB", str(fineweb)).replace(
        "tokenizer.json", str(tmp_path / "runs/x/tokenizer.json"))
    args = shlex.split(line)
    assert args[0] == "python"
    result = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
    ran.append((args[2], result.stdout))
  assert [module for module, _ in ran] == ["train.train", "train.data", "train.sample",
                                           "train.benchmark", "train.benchmark"]
  check_default_run(tmp_path / "runs" / "x")
  # The paper suite on CPU: every configuration built, one step of the 134M model.
  assert "dry run of suite paper: 13 methods and 5 ablations configured" in ran[-1][1]


def check_default_run(workdir):
  """What the README's default command writes: metrics every 10 steps with
  the learning rate the step used, validations, checkpoints, the plot."""
  rows = records(workdir)
  steps = [r for r in rows if "event" not in r]
  assert [r["step"] for r in steps] == list(range(10, 201, 10))
  assert steps[0]["train_loss"] - steps[-1]["train_loss"] > 1.0
  # The learning rate logged is the one the step used: 3e-3 on the schedule.
  schedule = optim.unit_schedule(from_args(["--steps", "200"]))
  for r in steps:
    assert {"step", "train_loss", "lr", "tokens", "step_time_s"} <= set(r)
    assert r["tokens"] == r["step"] * 16 * 128
    assert r["lr"] == pytest.approx(3e-3 * float(schedule(r["step"] - 1)), rel=1e-6)
  assert [r["step"] for r in steps if "val_loss" in r] == [50, 100, 150, 200]
  assert rows[-1] == {"event": "done", "step": 200, "val_loss": steps[-1]["val_loss"],
                      "tokens": 200 * 16 * 128}
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["100", "200"]
  assert (workdir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_public_function_documents_its_arguments_and_result():
  # The docstrings are the API reference (optax's layout).
  undocumented = [
      name for name, obj in vars(layeropt_jax).items()
      if not name.startswith("_") and inspect.isfunction(obj)
      and inspect.signature(obj).parameters
      and not {"Args:", "Returns:"} <= set(inspect.getdoc(obj).split())]
  assert not undocumented


def _table(text: str, header: str) -> list[str]:
  lines = text.splitlines()
  start = lines.index(header)
  end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
  return lines[start:end]


def test_benchmark_headline_is_the_reports():
  report = (REPO / "results" / "nano.md").read_text()
  assert _table(README.read_text(), VERDICT_HEADER) == _table(report, VERDICT_HEADER)


def readme_layout() -> set[str]:
  """The paths the README's "Layout" block lists, by their indentation."""
  block = re.search(r"## Layout\n.*?```text\n(.*?)```", README.read_text(), re.S).group(1)
  listed, parents = set(), []
  for line in block.splitlines():
    depth = (len(line) - len(line.lstrip())) // 2
    names = re.split(r"\s{2,}", line.strip())[0].split()
    parents = parents[:depth]
    for name in names:
      listed.add("".join(parents) + name)
    if names[-1].endswith("/"):
      parents.append(names[-1])
  return listed


def test_readme_layout_is_the_tree():
  listed = readme_layout()
  sources = {str(p.relative_to(REPO)) for package in ("layeropt_jax", "train")
             for p in (REPO / package).rglob("*.py")}
  # Every module of the library and the trainer, and nothing else, is listed
  # (a package's __init__ may go unsaid).
  listed_sources = {p for p in listed if p.endswith(".py")}
  assert not {p for p in sources - listed_sources if not p.endswith("/__init__.py")}
  assert listed_sources <= sources
  assert all((REPO / p).exists() for p in listed)


def test_adding_a_method_names_what_the_tree_has():
  section = re.search(r"## Adding a method\n(.*?)\n## ", README.read_text(), re.S).group(1)
  assert re.findall(r"^(\d)\. \*\*", section, re.M) == ["1", "2", "3", "4"]
  paths = {p for p in re.findall(r"`([\w./]+\.(?:py|rst))`", section)}
  assert paths and all((REPO / p).is_file() for p in paths), paths
  registry = (REPO / "layeropt_jax" / "registry.py").read_text()
  assert 'register_optimizer("ladm", ladm)' in registry
  for name in ("register_optimizer", "multiplier_table", "METHOD_SCALES"):
    assert name in layeropt_jax.__all__
  assert "def layerwise_chain(" in (REPO / "layeropt_jax" / "layerwise.py").read_text()
  assert "class Method:" in (REPO / "train" / "benchmark" / "methods.py").read_text()
