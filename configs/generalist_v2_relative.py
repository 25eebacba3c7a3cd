"""Generalist v2, attempt 5's recipe (issue 26): the reward relative to each
member's default-LR run.

Attempt 4's warm start from the shipped v1 generalist, its distribution (the
11 train-side combinations of suite ``cpu``, initial LRs x30 either side of
the default, 100..1000 steps) and divergence penalty (-2), with the reward
``'log_val_vs_reference'``: each decision earns its fall of log validation
loss minus the fall of the member's reference run (its task at the default
constant LR, run once when the members are built) over the same inner steps.
The episode's return is then how far the run ends below that reference, the
train-side score's own measure, instead of ``log(first / last validation
loss)``, which differs more between members (a task's own pace of progress)
than between the decisions of one episode, and which the critic cannot
predict from the scale-free inputs.

  python scripts/train_generalist.py --config configs/generalist_v2_relative.py \
      --workdir runs/generalist_v2_relative
"""

from lr_meta import config as config_lib

generalist_v2_warm = config_lib.sibling(__file__, "generalist_v2_warm")


def get_config():
  config = generalist_v2_warm.get_config()
  config.env.reward = "log_val_vs_reference"
  return config
