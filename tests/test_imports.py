"""Every module imports alone, in a fresh process that has imported only jax:
no cycles, no dependence on what another module imported first, and the
layers depend one way (layeropt_jax <- train <- train.benchmark, train.perf)."""

import ast
import concurrent.futures
import importlib
import inspect
import multiprocessing
import pathlib

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
  every = modules("layeropt_jax") + modules("train")
  # A process per module, forked from a server that has imported jax and
  # nothing of the project: each skips the seconds of importing jax again.
  context = multiprocessing.get_context("forkserver")
  context.set_forkserver_preload(["jax"])

  def import_alone(module):
    process = context.Process(target=importlib.import_module, args=(module,))
    process.start()
    process.join(timeout=300)
    return module, process.exitcode
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    failed = [m for m, exitcode in pool.map(import_alone, every) if exitcode != 0]
  assert not failed  # their tracebacks are in the captured stderr


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
