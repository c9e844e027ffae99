"""The documentation builds from the repository alone, and the wheel is the library."""

import pathlib
import re
import subprocess
import sys
import zipfile

import layeropt_jax

from tests.helpers import REPO


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
