"""Every module imports alone, in a fresh interpreter: no cycles, no
dependence on what another module imported first; and the layers
depend one way (layeropt_jax <- train <- train.benchmark, train.perf)."""

import ast
import concurrent.futures
import importlib
import inspect
import pathlib
import subprocess
import sys

import layeropt_jax

from tests.helpers import REPO


def modules(package: str) -> list[str]:
  root = REPO / package
  names = []
  for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(REPO).with_suffix("").parts
    names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
  return names


def imported(module: str) -> set[str]:
  """The project modules `module`'s source imports."""
  path = REPO / pathlib.Path(*module.split("."))
  path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return {n for n in names if n.split(".")[0] in ("layeropt_jax", "train")}


def test_every_module_imports_alone():
  # A fresh interpreter per module, not a fork of one that has imported jax:
  # forking a process whose native libraries run threads can hang or crash
  # the child, which would fail a module that imports fine.
  def import_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    return module, result.returncode, result.stderr
  every = modules("layeropt_jax") + modules("train")
  # Importing a module that its package's __init__ imports runs that __init__
  # first, which is importing the package: one interpreter tests both.
  alone = [m for m in every if "." not in m or m not in imported(m.rpartition(".")[0])]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = pool.map(import_alone, alone)
    failed = {module: stderr[-2000:] for module, returncode, stderr in results if returncode}
  assert not failed


def test_dependencies_run_one_way():
  for module in modules("layeropt_jax"):
    assert not {m for m in imported(module) if m.startswith("train")}, module
  for module in modules("train"):
    if not module.startswith(("train.benchmark", "train.perf")):
      assert not {m for m in imported(module)
                  if m.startswith(("train.benchmark", "train.perf"))}, module
  for module in modules("train/benchmark"):
    assert not {m for m in imported(module) if m.startswith("train.perf")}, module


def test_the_library_exports_exactly_its_public_names():
  public = {name for name, value in vars(layeropt_jax).items()
            if not name.startswith("_") and not inspect.ismodule(value)}
  assert public == set(layeropt_jax.__all__)
  assert len(layeropt_jax.__all__) == len(set(layeropt_jax.__all__))
  # Method modules are private: the public name is the optimizer itself.
  assert inspect.isfunction(layeropt_jax.aovs)
  assert inspect.ismodule(importlib.import_module("layeropt_jax._aovs"))
