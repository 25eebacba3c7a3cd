"""notebooks/train_controller.ipynb, run as a user runs it, on tiny sizes."""

import math

import numpy as np

QUERY = """dict(
    returns=returns, spec_equal=loaded.spec == controller.spec,
    probe=int(n), K=int(K), results=results,
    schedules={k: v.tolist() for k, v in schedules.items()},
    own={m: [(r["seed"], r["setting"], r["test_loss"], r["diverged"])
             for r in rs] for m, rs in own.runs.items()},
    own_tuning=own.tuning, own_files=sorted(os.listdir(own_dir)),
    cwd=os.getcwd(),
    configs_importable=importlib.util.find_spec("configs") is not None)"""

# Xu et al. 2019's action is clipped to [-0.2, 0.5]: one decision scales the
# LR by (a - 0.15) * 0.1 + 1, between 0.965 and 1.035.
LOW, HIGH = 0.965, 1.035


def test_train_controller_notebook_runs_from_notebooks_dir(run_notebook,
                                                           repo_root):
  _, v = run_notebook("train_controller.ipynb", query=QUERY, iters=2,
                      steps=30, seeds=2)
  # A user's conditions: started in notebooks/, the repository root (and
  # its configs/) not on the path: the config came by path.
  assert v["cwd"] == str(repo_root / "notebooks")
  assert v["configs_importable"] is False
  assert len(v["returns"]) == 2 and all(map(math.isfinite, v["returns"]))
  assert v["spec_equal"] is True
  assert v["probe"] == 800 and v["K"] == 10  # the quickstart's probe, K
  for name, lrs in v["schedules"].items():   # 30 decisions from lr0 = 0.1
    ratios = np.array(lrs) / np.array([0.1] + lrs[:-1])
    assert len(lrs) == 30 and np.all((ratios > LOW - 1e-6)
                                     & (ratios < HIGH + 1e-6)), (name, lrs)
  results = v["results"]
  assert results["constant LR 0.1"]["lrs"] == []
  for name in ("controlled by notebook_tiny",
               "controlled by mnist1d_mlp_quickstart"):
    lrs = np.array(results[name]["lrs"])    # one per step: 3 windows of K
    assert lrs.shape == (30,)
    np.testing.assert_array_equal(lrs, np.repeat(lrs[::10], 10))
    ratios = lrs[::10] / np.append(0.1, lrs[:-10:10])
    assert np.all((ratios > LOW - 1e-6) & (ratios < HIGH + 1e-6)), lrs
  for name, r in results.items():           # 30 steps from ln(10) = 2.30
    assert 1.0 < r["test_loss"] < 2.3 and 0.1 < r["test_accuracy"] <= 1.0
  # Section 4: the shipped controller against a constant LR and a cosine
  # schedule tuned on the notebook's own train step, on the same 2 seeds.
  own = v["own"]
  assert set(own) == {"controller:mnist1d_mlp_quickstart", "best_constant",
                      "cosine"}, own
  seeds = {m: [r[0] for r in rs] for m, rs in own.items()}
  assert len(set(map(tuple, seeds.values()))) == 1 and len(
      seeds["cosine"]) == 2
  for m, rs in own.items():
    assert all(1.0 < r[2] < 2.3 and r[3] is False for r in rs), (m, rs)
  for m in ("best_constant", "cosine"):
    grid = v["own_tuning"][m]["grid"]
    assert len(grid) == 4 and own[m][0][1] == v["own_tuning"][m]["best"]
  assert v["own_files"] == ["curves.png", "results.md"]
