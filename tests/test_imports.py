"""Every module imports alone, in a fresh interpreter: no cycles, no
dependence on what another module imported first; and the layers
depend one way (layeropt_jax <- train <- train.benchmark, train.perf,
train.hardware)."""

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


# The trainer's `python -m` names for two hardware tools (DESIGN's commands).
ENTRY_POINTS = {"train.memory": "train.hardware.memory",
                "train.device_check": "train.hardware.device_check"}
TOOLS = ("train.benchmark", "train.perf", "train.hardware")


def test_dependencies_run_one_way():
  for module in modules("layeropt_jax"):
    assert not {m for m in imported(module) if m.startswith("train")}, module
  for module in modules("train"):
    if module in ENTRY_POINTS:
      assert imported(module) == {ENTRY_POINTS[module]}, module
    elif not module.startswith(TOOLS):
      assert not {m for m in imported(module) if m.startswith(TOOLS)}, module
  for module in modules("train/benchmark"):
    assert not {m for m in imported(module) if m.startswith(("train.perf", "train.hardware"))}
  for module in modules("train/hardware"):
    assert not {m for m in imported(module) if m.startswith(("train.perf", "train.benchmark"))}


def test_the_perf_results_writer_loads_no_model_or_data_pipeline():
  # It reads JSON and the benchmark's method rows, nothing heavier.
  loaded = subprocess.run(
      [sys.executable, "-c", "import sys, train.perf.results; print(*sys.modules)"],
      cwd=REPO, capture_output=True, text=True, check=True, timeout=300).stdout.split()
  assert not {"tensorflow_datasets", "flax", "grain", "jax"} & set(loaded)


def test_the_library_exports_exactly_its_public_names():
  public = {name for name, value in vars(layeropt_jax).items()
            if not name.startswith("_") and not inspect.ismodule(value)}
  assert public == set(layeropt_jax.__all__)
  assert len(layeropt_jax.__all__) == len(set(layeropt_jax.__all__))
  # Method modules are private: the public name is the optimizer itself.
  assert inspect.isfunction(layeropt_jax.aovs)
  assert inspect.ismodule(importlib.import_module("layeropt_jax._aovs"))


def _docstring_lines(node: ast.AST) -> int:
  first = node.body[0] if node.body else None
  if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
      and isinstance(first.value.value, str)):
    return first.end_lineno - first.lineno + 1
  return 0


def test_modules_and_functions_stay_readable():
  # A module holds one idea (at most 400 lines); a function, what one screen
  # shows (at most 60 lines besides its docstring).
  long_modules, long_functions = [], []
  for package in ("layeropt_jax", "train"):
    for path in sorted((REPO / package).rglob("*.py")):
      source = path.read_text()
      name = path.relative_to(REPO)
      if len(source.splitlines()) > 400:
        long_modules.append(name)
      for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
          if lines > 60:
            long_functions.append(f"{name}:{node.name} ({lines} lines)")
  assert not long_modules and not long_functions
