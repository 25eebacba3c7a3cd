"""Generalist v2, attempt 6's recipe (issue 26): every train-side
combination has a member.

Attempt 5's recipe (warm start from v1, x30 initial-LR spread, the reward
against each member's default-LR run) with ``cover_combinations``: with the
draw by weight, seed 0's 12 members held no conv net at all (LeNet-5,
SmallCNN and the normalised ResNet have weight 1/4), and the SmallCNN of
the train-side score diverged under attempts 4 and 5's later snapshots.
Here members 0..10 are the 11 combinations, the 12th is drawn, and a conv
combination keeps a quarter of the episodes of another (its weight), which
is what holds meta-training on 2 cores.

  python scripts/train_generalist.py --config configs/generalist_v2_covered.py \
      --workdir runs/generalist_v2_covered
"""

from lr_meta import config as config_lib

generalist_v2_relative = config_lib.sibling(__file__, "generalist_v2_relative")


def get_config():
  config = generalist_v2_relative.get_config()
  config.distribution.cover_combinations = True
  return config
