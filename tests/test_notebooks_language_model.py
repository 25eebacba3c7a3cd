"""notebooks/language_model.ipynb, run as a user runs it, on tiny sizes."""

import math

import numpy as np
import pytest

# What the test reads back from the kernel after the last cell.
QUERY = """dict(
    results=results, grid={str(p): v for p, v in grid.items()},
    best_peak=best_peak, decisions=decisions,
    num_decisions=int(generalist.spec.observation_spec.num_decisions),
    sample=sample, vocabulary=text.vocabulary, best=best, cwd=os.getcwd(),
    configs_importable=importlib.util.find_spec("configs") is not None)"""

STEPS = 30
SAMPLE_CHARS = 40
SIZES = dict(lm_steps=STEPS, lm_layers=1, lm_heads=2, lm_width=32,
             lm_context=16, lm_batch=8, lm_eval_windows=32,
             lm_curve_windows=8, lm_probe_windows=4,
             lm_sample_chars=SAMPLE_CHARS)
CONTROLLER = "learned controller (generalist)"


def test_language_model_notebook_runs_from_notebooks_dir(run_notebook,
                                                         repo_root):
  _, v = run_notebook("language_model.ipynb", query=QUERY, **SIZES)
  # A user's conditions: started in notebooks/, the repository root (and
  # its configs/) not on the path.
  assert v["cwd"] == str(repo_root / "notebooks")
  assert v["configs_importable"] is False

  results = v["results"]
  assert len(results) == 3 and CONTROLLER in results
  first = results[CONTROLLER]["first_loss"]
  for name, r in results.items():
    # Same initial weights, same first batch: the same first loss, about
    # ln(65) = 4.17 nats for a model that starts near uniform.
    assert r["first_loss"] == pytest.approx(first, rel=1e-6), name
    assert abs(r["first_loss"] - math.log(65)) < 0.3, (name, r["first_loss"])
    # 30 steps learned something: below the uniform model's ln(65).
    for key in ("val_loss", "test_loss"):
      assert math.isfinite(r[key]) and r[key] < math.log(65), (name, key, r)
    assert r["val_bits"] == pytest.approx(r["val_loss"] / math.log(2))
    assert len(r["lrs"]) == STEPS and len(r["curve"]) == 21, name

  # The tuned cosine is the grid's best by final validation loss.
  grid = {float(p): loss for p, loss in v["grid"].items()}
  assert sorted(grid) == [3e-4, 1e-3, 3e-3]
  assert v["best_peak"] == min(grid, key=grid.get)
  cosine = results[f"warm-up + cosine, tuned peak {v['best_peak']:g}"]
  assert cosine["val_loss"] == pytest.approx(grid[v["best_peak"]])

  # The controller: 20 decisions at floor(t T / 20), each with its named
  # inputs; its LR changes at decisions only, to the LR the readout showed.
  decisions = v["decisions"]
  assert v["num_decisions"] == 20 and len(decisions) == 20
  steps = [d["step"] for d in decisions]
  assert steps == [t * STEPS // 20 for t in range(20)]
  lrs = np.array(results[CONTROLLER]["lrs"])
  changed = {i for i in range(1, STEPS) if lrs[i] != lrs[i - 1]}
  assert changed <= set(steps), (changed, steps)
  for d in decisions:
    assert lrs[d["step"]] == pytest.approx(d["lr"], rel=1e-6), d
    # The generalist sets lr = lr0 * 10**a (lr0 = 1e-3).
    assert d["lr"] == pytest.approx(1e-3 * 10**d["action"], rel=1e-4), d
    for name in ("progress", "log_lr_ratio", "log_train_ratio",
                 "log_val_ratio", "log10_update_ratio"):
      assert math.isfinite(d["inputs"][name]), (name, d)
  progress = [d["inputs"]["progress"] for d in decisions]
  assert progress[0] == 0.0 and np.all(np.diff(progress) > 0)
  assert all(p < 1.0 for p in progress)
  assert decisions[0]["inputs"]["log_lr_ratio"] == 0.0   # still at lr0

  # Generated text: SAMPLE_CHARS characters of the vocabulary.
  assert len(v["vocabulary"]) == 65 and v["best"] in results
  assert len(v["sample"]) == SAMPLE_CHARS
  assert set(v["sample"]) <= set(v["vocabulary"])
