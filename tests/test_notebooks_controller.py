"""Runs notebooks/train_controller.ipynb end to end on tiny settings."""

import os

import nbclient
import nbformat


def test_train_controller_notebook_runs(repo_root, data_dir, monkeypatch):
  monkeypatch.setenv("LR_META_NOTEBOOK_ITERS", "2")
  monkeypatch.setenv("LR_META_NOTEBOOK_STEPS", "30")
  monkeypatch.setenv("LR_META_DATA_DIR", data_dir)
  monkeypatch.setenv("PYTHONPATH", str(repo_root) + os.pathsep
                     + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(repo_root / "notebooks" / "train_controller.ipynb",
                           as_version=4)
  client = nbclient.NotebookClient(
      notebook, kernel_name="python3", timeout=300,
      resources={"metadata": {"path": str(repo_root)}})
  client.execute()
  outputs = "".join(
      out.get("text", "") for cell in notebook.cells
      if cell.cell_type == "code" for out in cell.get("outputs", []))
  assert "2 PPO iterations" in outputs
  assert "spec equal: True" in outputs
  assert "controlled by notebook_tiny" in outputs
  assert "controlled by mnist1d_mlp_quickstart" in outputs
  assert "LR schedule" in outputs
