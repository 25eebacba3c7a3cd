"""Runs notebooks/optax_quickstart.ipynb end to end on tiny settings."""


def test_optax_quickstart_runs(run_notebook):
  outputs = run_notebook("optax_quickstart.ipynb", steps=20)
  assert "test accuracy" in outputs
  assert "exp(sign(g) * sign(m)) * g" in outputs
