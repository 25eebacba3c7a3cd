"""notebooks/optax_quickstart.ipynb, run as a user runs it, on 20 steps."""

import pytest

# What the test reads back from the kernel after the last cell.
QUERY = """dict(
    results=results, batched=batched, cwd=os.getcwd(),
    configs_importable=importlib.util.find_spec("configs") is not None,
    round_trip=nos.format_program(nos.parse(rule)))"""


def test_optax_quickstart_runs_from_notebooks_dir(run_notebook, repo_root):
  _, v = run_notebook("optax_quickstart.ipynb", query=QUERY, steps=20)
  # A user's conditions: started in notebooks/, the repository root (and
  # its configs/) not on the path.
  assert v["cwd"] == str(repo_root / "notebooks")
  assert v["configs_importable"] is False
  assert v["round_trip"] == "exp(sign(g) * sign(m)) * g"
  results = v["results"]
  assert len(results) == 6
  for name, r in results.items():
    # 20 steps of batch 128 from the same initial model (loss ~ln 10).
    assert r["first_loss"] == pytest.approx(results["adam, lr 3e-3"][
        "first_loss"]) and 2.1 < r["first_loss"] < 2.5, name
    assert r["final_loss"] < 0.7 * r["first_loss"], (name, r)
    assert 0.5 < r["test_accuracy"] <= 1.0, (name, r)
  # The interpreter trains the same PowerSign as the compiled power_sign:
  # same seed, same batches, the same test accuracy up to float rounding
  # (two of 2,000 examples).
  assert v["batched"]["exp(sign(g) * sign(m)) * g"] == pytest.approx(
      results["power_sign, lr 0.1"]["test_accuracy"], abs=2 / 2000)
