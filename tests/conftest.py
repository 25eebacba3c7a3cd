"""Shared test setup: where the real data sets live."""

import os
import pathlib

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_DATA_DIR = _REPO.parent / "shared" / "datasets"

if "LR_META_DATA_DIR" not in os.environ and _DEFAULT_DATA_DIR.is_dir():
  os.environ["LR_META_DATA_DIR"] = str(_DEFAULT_DATA_DIR)


@pytest.fixture(scope="session")
def data_dir() -> str:
  path = os.environ.get("LR_META_DATA_DIR")
  if not path or not pathlib.Path(path).is_dir():
    raise RuntimeError(
        "Tests need the real data sets: set LR_META_DATA_DIR to a directory "
        "holding fashion_mnist.npz and cifar10.npz (../shared/datasets).")
  return path


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return _REPO


@pytest.fixture
def run_notebook(repo_root, data_dir, monkeypatch):
  """Executes ``notebooks/<name>`` with env settings; returns its text output.

  Notebooks read their tiny-test sizes from ``LR_META_NOTEBOOK_*`` environment
  variables (passed as keyword arguments here) so the same file runs at full
  size for users and in seconds in the tests.
  """
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  def run(name: str, **env) -> str:
    for key, value in env.items():
      monkeypatch.setenv(f"LR_META_NOTEBOOK_{key.upper()}", str(value))
    monkeypatch.setenv("LR_META_DATA_DIR", data_dir)
    monkeypatch.setenv("PYTHONPATH", str(repo_root) + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=600,
        resources={"metadata": {"path": str(repo_root)}})
    client.execute()
    return "".join(
        out.get("text", "") for cell in notebook.cells
        if cell.cell_type == "code" for out in cell.get("outputs", []))
  return run
