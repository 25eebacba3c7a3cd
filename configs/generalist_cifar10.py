"""The generalist recipe trained on CIFAR-10 only: Xu et al. 2019's Table 2.

Xu et al. 2019 train their controller on CIFAR-10 and run it on
Fashion-MNIST. This is ``configs/generalist.py`` (scale-free observation,
decisions at fractions of the run, drawn MLP shapes, batch sizes, initial
LRs and horizons) with the distribution cut to the cpu suite's CIFAR-10
train workload, so Fashion-MNIST is unseen in training:

  python scripts/train_generalist.py --config configs/generalist_cifar10.py \
      --workdir runs/generalist_cifar10
  python scripts/export_controller.py ... (or use the workdir's
      controller.msgpack directly)
  python scripts/transfer_table.py --source cifar10_mlp_sgd \
      --targets fmnist_mlp_sgd,fmnist_lenet5_sgd \
      --controller runs/generalist_cifar10/controller.msgpack

The train-side score, which selects the shipped snapshot, runs on the
CIFAR-10 workload only (``score_workloads``), so Fashion-MNIST is not used
for selection either.
"""

from lr_meta import config as config_lib

generalist = config_lib.sibling(__file__, "generalist")


def get_config():
  config = generalist.get_config()
  config.distribution.combinations = [
      c for c in config.distribution.combinations if c[0] == "cifar10"]
  config.score_workloads = ("cifar10_mlp_sgd",)
  return config
