"""Runs notebooks/train_controller.ipynb end to end on tiny settings."""


def test_train_controller_notebook_runs(run_notebook):
  outputs = run_notebook("train_controller.ipynb", iters=2, steps=30)
  assert "2 PPO iterations" in outputs
  assert "spec equal: True" in outputs
  assert "controlled by notebook_tiny" in outputs
  assert "controlled by mnist1d_mlp_quickstart" in outputs
  assert "LR schedule" in outputs
