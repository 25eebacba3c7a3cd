"""Generalist v2, attempt 1's recipe (NOT trained yet; issue 26).

The broader distribution the issue asks for, on the ``train`` side of the
benchmark suite ``cpu`` (v2) only: MLPs, conv nets with and without
normalisation, a transformer and an LSTM on the training side's Markov
source (never Tiny Shakespeare, the held-out text), SGD, momentum, Adam and
AdamW with weight decay; initial LRs log-uniform over x30 either side of
each combination's default; run lengths log-uniform in 100..1000 steps (half
the shortest long held-out horizon, 2000). The observation is the
scale-free one plus the optional ``grad_norm_ratio`` input; the action sets
``log10(lr / lr0)`` in [-4, 2], so one decision can raise a too-small LR by
up to 100x or cut a too-large one.

  python scripts/train_generalist.py --config configs/generalist_v2.py \
      --workdir runs/generalist_v2

CPU-sized weights: conv members cost ~10-100x an MLP's episode on 2 cores,
so they are drawn less often; on an accelerator give every combination
weight 1 and raise ``distribution.num_members`` and ``ppo.num_envs``.
"""

from lr_meta import config as config_lib

generalist = config_lib.sibling(__file__, "generalist")

# Relative draw weights on 2 CPU cores: conv nets (LeNet-5, SmallCNN,
# ResNet) are drawn a quarter as often as the cheap members.
CONV_MODELS = ("lenet5", "small_cnn", "resnet_norm")
CONV_WEIGHT = 0.25


def get_config():
  config = generalist.get_config()
  config.suite = "cpu"
  d = config.distribution
  d.combinations = [
      c + [CONV_WEIGHT if c[1] in CONV_MODELS else 1.0]
      for c in generalist.train_side("cpu", include_conv=True)]
  d.num_members = 12
  d.batch_sizes = (16, 32, 64, 128)
  d.lr0_spread = 30.0
  d.num_steps_range = (100, 1000)
  config.env.inputs = ("grad_norm_ratio",)
  return config
