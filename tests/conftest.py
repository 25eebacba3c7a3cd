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


@pytest.fixture
def resume_check(tmp_path):
  """``check(train) -> (dir_a, resumed, dir_b, straight)``.

  ``train(num_iterations, workdir)`` returns the learner state. It runs 2
  iterations in ``dir_a``, then again to 4 there (restoring iteration 2 from
  the checkpoint), and 4 straight in ``dir_b``; both states must be at
  iteration 4 and equal leaf for leaf, bit for bit.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def check(train):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(2, a)
    resumed = train(4, a)
    straight = train(4, b)
    assert int(resumed.iteration) == int(straight.iteration) == 4
    for x, y in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
      np.testing.assert_array_equal(x, y)
    return a, resumed, b, straight
  return check
