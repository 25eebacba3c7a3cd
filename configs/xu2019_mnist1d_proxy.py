"""PPO controller trained on a cheap proxy (mnist1d MLP), for transfer to LeNet.

Same environment as ``configs/xu2019_ppo.py`` (SGD, 50 decisions of K=10 inner
steps from lr0 in {0.1, 0.03}, Xu's action, observation and reward), but the
optimizee is the offline mnist1d MLP, so PPO gets ~100x more episodes per CPU
minute than on Fashion-MNIST LeNet-5. Evaluate the transfer with::

  python scripts/evaluate_controller.py --workdir runs/xu2019_proxy \
      --config configs/xu2019_ppo.py
"""

from lr_meta import config as config_lib

xu2019_ppo = config_lib.sibling(__file__, "xu2019_ppo")


def get_config():
  config = xu2019_ppo.get_config()
  config.task.update(dataset="mnist1d", model="mlp", optimizer="sgd",
                     batch_size=128)
  config.ppo.update(num_envs=8, num_minibatches=2)
  config.num_iterations = 150
  config.checkpoint_every = 10
  # The main job's baselines are tuned on this task (the parent's are
  # winners tuned on Fashion-MNIST LeNet-5): the best constant LR and
  # cosine schedule of constant_lrs, by validation loss.
  config.eval.update(num_seeds=5, constant_lrs=(0.3, 0.1, 0.03),
                     baselines=("constant", "cosine"))
  return config
