"""Generalist v2, attempt 4's recipe (the shipped ``generalist``): a warm start.

Attempt 2's distribution (x30 initial-LR spread, the 11 train-side
combinations of suite ``cpu``) and reward (divergence penalty -2), with the
actor started from the v1 generalist's policy (``init_controller``, the
shipped ``generalist_v1``; the critic starts fresh). v1 shapes schedules (a
warm-up and a decay around lr0) that attempts 1-3 never learned from a
random start; this asks whether PPO on the broad distribution keeps that and
adds the scale-finding the x30 starts need. The observation is v1's, the
scale-free one without ``grad_norm_ratio``, so v1's params fit.

  python scripts/train_generalist.py --config configs/generalist_v2_warm.py \
      --config.score_seeds=3 --workdir runs/generalist_v2_warm

The shipped controller is this run's iteration 40 (``--select=snapshot:40``,
then ``scripts/export_controller.py --name generalist``): later snapshots
scored worse on the train side (BUILD_NOTES, "Attempt 4").
"""

from lr_meta import config as config_lib

generalist_v2 = config_lib.sibling(__file__, "generalist_v2")


def get_config():
  config = generalist_v2.get_config()
  config.env.inputs = ()
  config.env.divergence_penalty = -2.0
  # A shipped controller's name or a controller file; its network, action
  # and observation must be this run's (train_generalist.warm_start).
  config.init_controller = "generalist_v1"
  return config
