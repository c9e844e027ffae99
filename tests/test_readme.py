"""README, the front page: its code and commands run as written and quietly, give what it
states, and repeat no page of the docs or the results; the API documents itself."""

import importlib.metadata
import inspect
import os
import re
import shlex
import subprocess
import sys

import pytest

import layeropt_jax
from train import optim
from train.config import from_args
from train.hardware import compilers

from tests.helpers import REPO, records

README = REPO / "README.md"
# Setting up is CI's own first steps (.ci/run); the test command is this suite.
SETUP = ("python3 -m venv", "pip install", "python -m pip", "python -m train.hardware.compilers",
         "python -m pytest")
# What no command may print on a machine without an accelerator: a traceback,
# or a line of jax's plugins (the CUDA plugin, libtpu) failing to start.
NOISE = re.compile(r"Traceback|cudart|CUDA|cuda|libtpu|TPU|absl::|plugin|^[EWI]\d{4} ", re.M)


def user_environment(cache):
  """The environment of a user's shell: none of the tests' settings (the
  CPU-only platform, simulated devices) nor what libtpu, loaded by this
  process to compile for TPUs, put there (its path); the checkout importable
  from a scratch directory; the shared data cache."""
  ours = lambda name: (name in compilers.TARGET_ENVIRONMENT or name == "XLA_FLAGS"
                       or name.startswith(("TPU_", "LIBTPU_")))
  return {**{k: v for k, v in os.environ.items() if not ours(k)},
          "PYTHONPATH": str(REPO), "TFDS_DATA_DIR": str(cache)}


def bash_commands(text):
  """The command lines of a Markdown text's bash blocks, comments dropped."""
  blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
  lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
  return [line for line in lines if line]


def run_quietly(args, cwd, env, returncode=0):
  """Runs `python -m ...` as a user would; asserts its exit code and that its
  standard error holds nothing but the project's own lines. Returns it."""
  assert args[0] == "python"
  result = subprocess.run([sys.executable, *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == returncode, f"{shlex.join(args)}\n{result.stderr[-3000:]}"
  assert not NOISE.search(result.stderr), f"{shlex.join(args)}\n{result.stderr[-3000:]}"
  return result


def test_python_blocks_run_quietly(tmp_path, data_cache):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks
  run_quietly(["python", "-c", "\n".join(blocks)], tmp_path, user_environment(data_cache))


def test_readme_commands_run_quietly_and_give_what_it_states(tmp_path, data_cache):
  """README's commands, in order, from a scratch directory, as a user starts
  them: each exits 0 and prints no traceback and no plugin's log (the
  compilers for other chips are installed, as in CI); the training run ends
  with the losses README states, within three of its seeds' standard
  deviations. Other entry points are as quiet, and a bad flag is one line."""
  for package, _ in compilers.PACKAGES.values():
    assert compilers.installed_version(package), f"{package} is not installed, as CI installs it"
  env = user_environment(data_cache)
  commands = [line for line in bash_commands(README.read_text()) if not line.startswith(SETUP)]
  assert [shlex.split(line)[2] for line in commands] == ["train.train", "train.sample"]
  outputs = [run_quietly(shlex.split(line), tmp_path, env) for line in commands]
  assert outputs[0].stderr.strip().splitlines()[-1].startswith("done: validation loss")
  assert outputs[1].stdout.startswith("def ")
  workdir = tmp_path / "runs" / "x"
  check_default_run(workdir)

  stated = re.search(r"lowers the training loss from (\S+) to (\S+) nats,\s+validation loss "
                     r"(\S+) \(seeds 0-4: mean (\S+), standard deviation (\d+\.\d+)",
                     README.read_text())
  first, last, val_loss, _, spread = map(float, stated.groups())
  rows = records(workdir)
  assert rows[0]["train_loss"] == pytest.approx(first, abs=3 * spread)
  assert rows[-2]["train_loss"] == pytest.approx(last, abs=3 * spread)
  assert rows[-1]["val_loss"] == pytest.approx(val_loss, abs=3 * spread)
  assert (workdir / "parameters.txt").read_text().count("\n") == 46

  memory = run_quietly(["python", "-m", "train.memory", "--config", "nano"], tmp_path, env)
  assert "XLA's peak on CPU counts the arguments and outputs" in memory.stdout
  bad = run_quietly(["python", "-m", "train.train", "--lr", "-3e-3", "--workdir", "runs/y"],
                    tmp_path, env, returncode=2)
  assert bad.stderr.strip().splitlines() == ["error: --lr must be >= 0, got -0.003"]


def _installed_bytes(name, extras):
  """The bytes of the files of distribution `name` with `extras` and of
  every distribution it requires, as this environment installed them."""
  from packaging.requirements import Requirement
  from packaging.utils import canonicalize_name

  wanted, todo = {}, [(name, frozenset(extras))]
  while todo:
    dist_name, dist_extras = todo.pop()
    key = canonicalize_name(dist_name)
    if key in wanted and dist_extras <= wanted[key][1]:
      continue
    dist = importlib.metadata.distribution(dist_name)
    wanted[key] = (dist, dist_extras | wanted.get(key, (None, frozenset()))[1])
    for requirement in map(Requirement, dist.requires or ()):
      if requirement.marker is None or any(requirement.marker.evaluate({"extra": e})
                                           for e in dist_extras or {""}):
        todo.append((requirement.name, frozenset(requirement.extras)))
  return sum(os.path.getsize(dist.locate_file(f)) for dist, _ in wanted.values()
             for f in dist.files or () if os.path.isfile(dist.locate_file(f)))


def _directory_bytes(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path)
             for f in names if os.path.isfile(os.path.join(d, f)))


def test_the_installs_are_the_sizes_readme_states():
  """The main install is what layeropt-jax[train] pulls in (its files,
  counted in this environment, which holds them all); the tests' is this
  environment and the compilers. Versions drift, so 15% either way."""
  stated = re.search(r"The install takes (\S+) GB", section(README.read_text(), "Set up and train"))
  main = _installed_bytes("layeropt-jax", ["train"])
  assert main / 1e9 == pytest.approx(float(stated.group(1)), rel=0.15)
  stated = re.search(r"The install takes (\S+) GB \(the environment\) and (\S+) GB \(the "
                     r"compilers\)", section(README.read_text(), "Set up and test"))
  assert _directory_bytes(sys.prefix) / 1e9 == pytest.approx(float(stated.group(1)), rel=0.15)
  assert _directory_bytes(compilers.directory()) / 1e9 == pytest.approx(
      float(stated.group(2)), rel=0.15)


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
  done = rows[-1]
  assert {k: done[k] for k in ("event", "step", "val_loss", "tokens")} == {
      "event": "done", "step": 200, "val_loss": steps[-1]["val_loss"], "tokens": 200 * 16 * 128}
  assert len(done["val_files"]) == len(done["val_file_tokens"]) > 1
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


def section(text, title):
  """The body of a Markdown section, up to the next of its level or above."""
  return re.search(rf"^## {re.escape(title)}\n(.*?)(?=^#{{1,2}} |\Z)", text, re.S | re.M).group(1)


def test_readme_is_a_front_page_that_repeats_no_page():
  """About 200 lines at most; no sentence of it is a docs page's or a
  results file's (those are linked); every number of its findings is one of
  results/nano.md's."""
  readme = README.read_text()
  assert len(readme.splitlines()) <= 200
  elsewhere = "\n".join(p.read_text() for p in [*(REPO / "docs").glob("*.*"),
                                                *(REPO / "results").glob("*.md")])
  elsewhere = " ".join(elsewhere.split())
  prose = re.sub(r"```.*?```", "", readme, flags=re.S)
  sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.:;])\s", prose)]
  repeated = [s for s in sentences if len(s) > 60 and s in elsewhere]
  assert not repeated
  findings = section(readme, "What the benchmark found")
  numbers = re.findall(r"\d+\.\d+", findings)
  results = (REPO / "results" / "nano.md").read_text()
  assert len(numbers) >= 10 and all(n in results for n in numbers)
  for page in re.findall(r"\]\((docs/[\w.]+)\)", readme):
    assert (REPO / page).is_file(), page


ADDING = REPO / "docs" / "adding_a_method.md"


def layout_paths() -> set[str]:
  """The paths the "Layout" block of docs/adding_a_method.md lists, by their indentation."""
  block = re.search(r"## Layout\n.*?```text\n(.*?)```", ADDING.read_text(), re.S).group(1)
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


def test_the_layout_is_the_tree():
  listed = layout_paths()
  sources = {str(p.relative_to(REPO)) for package in ("layeropt_jax", "train")
             for p in (REPO / package).rglob("*.py")}
  # Every module of the library and the trainer, and nothing else, is listed
  # (a package's __init__ may go unsaid).
  listed_sources = {p for p in listed if p.endswith(".py")}
  assert not {p for p in sources - listed_sources if not p.endswith("/__init__.py")}
  assert listed_sources <= sources
  assert all((REPO / p).exists() for p in listed)


def test_adding_a_method_names_what_the_tree_has():
  text = section(ADDING.read_text(), "Adding a method")
  assert re.findall(r"^(\d)\. \*\*", text, re.M) == ["1", "2", "3", "4"]
  paths = {p for p in re.findall(r"`([\w./]+\.(?:py|rst))`", text)}
  assert paths and all((REPO / p).is_file() for p in paths), paths
  registry = (REPO / "layeropt_jax" / "registry.py").read_text()
  assert 'register_optimizer("ladm", ladm)' in registry
  for name in ("register_optimizer", "multiplier_table", "METHOD_SCALES"):
    assert name in layeropt_jax.__all__
  assert "def layerwise_chain(" in (REPO / "layeropt_jax" / "layerwise.py").read_text()
  assert "class Method:" in (REPO / "train" / "benchmark" / "methods.py").read_text()
