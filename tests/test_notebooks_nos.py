"""Runs notebooks/optimizer_search.ipynb end to end on tiny settings."""


def test_optimizer_search_notebook_runs(run_notebook):
  outputs = run_notebook("optimizer_search.ipynb", nos_iterations=2)
  assert "iteration 2: mean reward" in outputs
  assert "1. " in outputs and "test accuracy:" in outputs
