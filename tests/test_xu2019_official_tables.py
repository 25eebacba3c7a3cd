"""scripts/xu2019_official_tables.py end to end at test size.

Training, checkpoint selection, the controller's test, the tuned baselines
and the transferred one, on a task whose validation subset is smaller than
the env's probe (the baselines' curves must then use the subset).
"""

import json
import pathlib

from lr_meta.policies import controller as controller_lib
from script_loader import load_script

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "xu2019_official.py")
TINY = ["task.num_train_examples=200", "task.num_val_examples=40",
        "task.num_test_examples=40", "env.num_decisions=2",
        "env.steps_per_decision=2", "num_iterations=2", "checkpoint_every=1",
        "ppo.num_envs=2", "eval.num_seeds=2"]


def _args(flag, *pairs):
  return [a for p in pairs for a in (flag, p)]


def test_table2_runs_end_to_end_and_keeps_every_result(tmp_path):
  script = load_script("xu2019_official_tables")
  out = tmp_path / "t2"
  script.main(["--config", CONFIG, "--out", str(out), "--num_candidates", "1",
               "--selection_seeds", "1", "--eval_config", CONFIG,
               *_args("--set", *TINY, "task.dataset=cifar10"),
               *_args("--eval_set", *TINY)])
  results = json.loads((out / "results.json").read_text())
  assert set(results["candidates"]) <= {"1", "2", 1, 2}
  assert results["selected"] in (1, 2)
  (sampled, sampled_r), (mean, mean_r) = results["controller"].items()
  assert "acting on the mean" in mean and "acting on the mean" not in sampled
  for r in (sampled_r, mean_r):
    # One LR per decision (2), one test loss per seed (2).
    assert len(r["test_loss"]) == 2 and len(r["lr_mean"]) == 2
  labels = list(results["baselines"])
  assert labels[0].startswith("step_decay(") and "best of 48" in labels[0]
  assert labels[1].startswith("cosine(") and "best of 5" in labels[1]
  assert labels[2].startswith("transferred step_decay(")
  assert "tuned on cifar10" in labels[2]
  for r in results["baselines"].values():
    assert len(r["test_loss"]) == 2 and 0.0 <= r["p_loss"] <= 1.0
  ctrl = controller_lib.load_controller(str(out / "controller.msgpack"))
  assert ctrl.samples    # the official protocol acts by sampling
  assert (out / "results.md").read_text().count("\n|") == 7
