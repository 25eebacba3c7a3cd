"""Generalist v2, attempt 7: meta-trained behind an LR range test.

Every episode starts with the range test that ``lr_meta.optax.range_tested``
runs in use (``env.range_test``, ``lr_meta.features.range_sweep``): the LR
sweeps from lr0 / 300 to lr0 x 300 over the first 5% of the run, the params
go back to where the smoothed loss was lowest, and the controller starts
from 0.3x that LR. The shipped v2 was trained without it: put behind the
sweep it still raised the LR it was handed as if it were a default, and
cost ~10% from a good default LR on the train side (BUILD_NOTES, "An LR
range test before the controller"). This run trains it on the hand-over it
gets in use: attempt 4's recipe (x30 initial-LR spread, the 11 train-side
combinations of suite ``cpu``, divergence penalty -2), warm-started from the
shipped ``generalist``. A controller trained here records the sweep in its
spec, so ``controlled(base, controller, num_steps=T)`` runs it (through
``range_tested``).

  python scripts/train_generalist.py --config configs/generalist_v2_swept.py \
      --config.score_seeds=3 --workdir runs/generalist_v2_swept

Result (BUILD_NOTES, "Attempt 7"; run with ``min_gain=0.05``, the default
then): train-side score 0.958 at best (iteration 20) against 0.942 for the
shipped v2 alone and 0.956 for v2 behind the same sweep untrained, so
nothing shipped from it.
"""

import ml_collections

from lr_meta import config as config_lib
from lr_meta.features import range_sweep

generalist_v2_warm = config_lib.sibling(__file__, "generalist_v2_warm")


def get_config():
  config = generalist_v2_warm.get_config()
  config.env.range_test = ml_collections.ConfigDict(
      range_sweep.SweepSettings()._asdict())
  config.init_controller = "generalist"
  config.score_every = 10
  return config
