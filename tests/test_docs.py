"""The documentation builds from the repository alone, its commands run as
written, and the wheel is the library."""

import pathlib
import re
import shlex
import subprocess
import sys
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq

import layeropt_jax

from tests.helpers import REPO
from tests.test_readme import bash_commands, run_quietly, user_environment

# The pages with commands, in the order a reader meets them.
PAGES = ["trainer.md", "scale.md", "benchmark.md", "performance.md", "adding_a_method.md"]
# Installing (CI's own step); the hours-long suite, and the smoke suite that
# tests/test_benchmark_results.py runs in its place; the 134M model's memory,
# which tests/test_scale.py and tests/test_accelerators.py compile for small
# configs on the same chips.
NOT_RUN = {"python -m train.hardware.compilers",
           # README's default command at five seeds (its test runs seed 0).
           "for s in 0 1 2 3 4; do python -m train.train --config nano --optimizer ladm "
           "--lr 3e-3 --steps 200 --seed $s --workdir runs/seed$s; done",
           "python -m train.benchmark --suite nano",
           "python -m train.benchmark --suite smoke",
           "python -m train.benchmark --suite nano_tuned --worker 0/2",
           "python -m train.memory --preset ladm-paper --devices 8",
           "python -m train.memory --preset ladm-paper --devices 1 --grad-accum 8 --remat",
           "python -m train.memory --preset ladm-paper --target v5e:2x4 --fit",
           "python -m train.memory --preset ladm-paper --target v5e:4x4",
           "python -m train.memory --preset ladm-paper --target h100:8 --fsdp --json h100.json"}


def test_docs_build_without_warnings(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
       str(REPO / "docs"), str(tmp_path)],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  methods = (tmp_path / "methods.html").read_text()
  assert "MathJax" in methods or "mathjax" in methods
  api = (tmp_path / "api.html").read_text()
  assert "decaying epsilon" in api  # lamvs's docstring, through autodoc


def test_the_docs_commands_run(tmp_path, data_cache):
  """In order, from a scratch directory (so `runs/x` and `results/` are its
  own), quietly; the placeholders FINEWEB and tokenizer.json become a parquet
  shard and the tokenizer the first training command saved."""
  fineweb = tmp_path / "fineweb"
  fineweb.mkdir()
  pq.write_table(pa.table({
      "text": [f"document {i}: the quick brown fox jumps over the lazy dog " * 8
               for i in range(300)],
      "id": [f"<urn:uuid:{i}>" for i in range(300)]}), fineweb / "shard-0.parquet")
  env = user_environment(data_cache)
  commands = [line for page in PAGES
              for line in bash_commands((REPO / "docs" / page).read_text())]
  assert NOT_RUN <= set(commands)
  ran = []
  for line in commands:
    if line in NOT_RUN:
      continue
    line = line.replace("FINEWEB", str(fineweb)).replace(
        "tokenizer.json", str(tmp_path / "runs/x/tokenizer.json"))
    ran.append((shlex.split(line)[2], run_quietly(shlex.split(line), tmp_path, env).stdout))
  assert [module for module, _ in ran] == ["train.train", "train.data", "train.sample",
                                           "train.benchmark", "train.benchmark"]
  # The paper suite on CPU: every configuration built, one step of the 134M model.
  assert "dry run of suite paper: 13 methods and 5 ablations configured" in ran[-1][1]


def test_api_reference_lists_every_public_name():
  api = (REPO / "docs" / "api.rst").read_text()
  documented = set(re.findall(r"auto\w+:: (\w+)", api))
  assert set(layeropt_jax.__all__) - {"__version__"} <= documented


def test_no_file_refers_outside_the_repository():
  tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
  # The team's own notes beside the repository are not the users'.
  outside = re.compile(r"\.\./" + "shared|" + "shared" + r"/|\b(METHODS|DESIGN)\.md\b")
  offending = []
  for name in tracked:
    path = REPO / name
    if path.suffix in {".png", ".npy"} or not path.is_file():
      continue
    text = path.read_text(errors="ignore")
    offending += [f"{name}: {m.group(0)}" for m in outside.finditer(text)]
  assert not offending


def test_the_wheel_ships_the_library_only(tmp_path):
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                  "-w", str(tmp_path), str(REPO)],
                 check=True, capture_output=True, timeout=600)
  wheel, = tmp_path.glob("layeropt_jax-*.whl")
  top_level = {pathlib.PurePosixPath(name).parts[0]
               for name in zipfile.ZipFile(wheel).namelist()}
  assert {t for t in top_level if not t.endswith((".dist-info", ".data"))} == {"layeropt_jax"}
