"""PPO controller trained on CIFAR-10 LeNet-5 (Xu et al. 2019, Table 2 transfer).

Xu et al. train on CIFAR-10 and apply the controller to Fashion-MNIST. CPU
scale: batch 64, 30 decisions of K=10 steps (paper: batch 1000, 100
decisions), 4 episodes per PPO iteration. Transfer evaluation::

  python scripts/evaluate_controller.py --workdir runs/xu2019_cifar10 \
      --config configs/xu2019_ppo.py
"""

from lr_meta import config as config_lib

xu2019_ppo = config_lib.sibling(__file__, "xu2019_ppo")


def get_config():
  config = xu2019_ppo.get_config()
  config.task.update(dataset="cifar10", model="lenet5", optimizer="sgd",
                     batch_size=64)
  config.env.update(num_decisions=30)
  config.num_iterations = 10
  config.checkpoint_every = 1
  # The main job's baselines are tuned on this task (the parent's are
  # winners tuned on Fashion-MNIST LeNet-5): the best constant LR and
  # cosine schedule of constant_lrs, by validation loss.
  config.eval.update(num_seeds=3, constant_lrs=(0.1, 0.03),
                     baselines=("constant", "cosine"))
  return config
