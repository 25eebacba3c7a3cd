"""Evaluate a trained LR controller against tuned baselines (Xu et al. 2019, sec. 4).

  python scripts/evaluate_controller.py --workdir runs/xu2019 \
      [--config configs/xu2019_ppo.py] [--outdir runs/xu2019/eval]

The protocol of Xu, Dai, Kemp & Metz 2019: the controller checkpoint is chosen
by validation loss, then the deterministic controller and every baseline run
on the same N fresh seeds (default ``config.eval.num_seeds`` = 10) and are
compared on the test set: mean (std) of test loss and accuracy and Welch's
t-test (unequal variances) of each baseline against the controller.

* Controller: trained by ``scripts/train_controller.py`` in ``--workdir``; its
  agent settings come from ``workdir/config.json``. ``--config`` (default: the
  same config.json) gives the evaluation task: pass another config to measure
  transfer (Xu's Table 2: a controller trained on CIFAR-10 applied to
  Fashion-MNIST).
* Checkpoint selection (``--num_candidates``, ``--selection_seeds``), the
  baselines and the t-test are described in ``lr_meta.evaluation``.
* Baselines: ``config.eval.baselines``, strings parsed by
  ``lr_meta.baselines.parse_baseline``: a named grid is tuned here by final
  validation loss on tuning seed 0 (``'xu2019_step_decay'``: Xu's 48-point
  grid; ``'cosine'``), a spec such as
  ``'step_decay(lr=0.1, every=50, factor=0.99)'`` is re-run as is (use it to
  reuse a winner tuned by ``scripts/run_baselines.py``), ``'adam:constant'``
  changes the optimizer.

Writes to --outdir: results.md (the table), results.json (per-seed numbers),
schedule.png (learned LR per decision vs the baselines' schedules),
val_loss.png (validation loss against steps, mean and std over seeds).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from lr_meta import evaluation

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory written by train_controller.py.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Evaluation config (default: the workdir's config.json).")
_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory "
                              "(default: <workdir>/eval).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_NUM_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", 3, "Snapshots (by training return) re-run for selection.")
_SELECTION_SEEDS = flags.DEFINE_integer(
    "selection_seeds", 2, "Seeds per candidate for checkpoint selection.")
_BASELINES = flags.DEFINE_multi_string(
    "baseline", None, "Overrides config.eval.baselines (repeat the flag); "
    "'none' runs the controller alone.")
_BASELINE_CACHE = flags.DEFINE_string(
    "baseline_cache", None, "Directory memoising baseline outcomes across "
    "evaluations of controllers on the same task.")


def main(argv):
  del argv
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required.")
  config = _CONFIG.value
  if _BASELINES.value is not None:
    config = config or evaluation.load_train_config(_WORKDIR.value)
    config.eval.baselines = tuple(b for b in _BASELINES.value if b != "none")
  table = evaluation.evaluate(_WORKDIR.value, config, _OUTDIR.value,
                              _DATA_DIR.value, _NUM_CANDIDATES.value,
                              _SELECTION_SEEDS.value,
                              baseline_cache=_BASELINE_CACHE.value)
  print(table)


if __name__ == "__main__":
  app.run(main)
