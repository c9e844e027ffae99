"""The notebooks run top to bottom from the repository root, in their reduced
mode, with no network."""

import pathlib

import nbformat
from nbclient import NotebookClient
import pytest

from tests.helpers import environment

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs(name, monkeypatch, tmp_path, data_cache):
  monkeypatch.setenv("LAYEROPT_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("TFDS_DATA_DIR", str(data_cache))
  monkeypatch.setenv("LAYEROPT_NOTEBOOK_RUNS", str(tmp_path / "runs"))
  monkeypatch.setenv("XLA_FLAGS", environment(data_cache)["XLA_FLAGS"])  # one device
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  NotebookClient(notebook, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOKS.parent)}}).execute()
  images = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.outputs if "image/png" in o.get("data", {})]
  assert images, f"{name} drew no plot"


def test_committed_notebooks_hold_their_plots():
  for path in NOTEBOOKS.glob("*.ipynb"):
    notebook = nbformat.read(path, as_version=4)
    assert all(cell.get("execution_count") for cell in notebook.cells
               if cell.cell_type == "code"), f"{path.name} is not executed"
    assert any("image/png" in o.get("data", {}) for cell in notebook.cells
               if cell.cell_type == "code" for o in cell.outputs), f"{path.name} has no plot"
