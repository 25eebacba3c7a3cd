"""Runs notebooks/optimizer_search.ipynb end to end on tiny settings."""

import os

import nbclient
import nbformat


def test_optimizer_search_notebook_runs(repo_root, data_dir, monkeypatch):
  monkeypatch.setenv("LR_META_NOTEBOOK_NOS_ITERATIONS", "2")
  monkeypatch.setenv("LR_META_DATA_DIR", data_dir)
  monkeypatch.setenv("PYTHONPATH", str(repo_root) + os.pathsep
                     + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(repo_root / "notebooks" / "optimizer_search.ipynb",
                           as_version=4)
  client = nbclient.NotebookClient(
      notebook, kernel_name="python3", timeout=600,
      resources={"metadata": {"path": str(repo_root)}})
  client.execute()
  outputs = "".join(
      out.get("text", "") for cell in notebook.cells
      if cell.cell_type == "code" for out in cell.get("outputs", []))
  assert "iteration 2: mean reward" in outputs
  assert "1. " in outputs and "test accuracy:" in outputs
