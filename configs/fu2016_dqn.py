"""DQN LR controller on weight statistics, CIFAR-10 NOS ConvNet (Fu 2016).

Fu 2016: 2 actions (lr *= 0.97 / reset to lr0), 193 weight statistics of the
last conv layer, reward -(log L_t - log L_{t-1}), Mnih 2015 DQN with burn-in
3000, compared with SGD (constant LR 0.1), Adam, RMSProp and SGDR on CIFAR-10
(WRN-40-4, dropout 0.5: ``configs/fu2016_dqn_wrn.py``).

The defaults are a CPU scale measured on the 2-core box under load (BUILD_NOTES
"Fu 2016 DQN on CIFAR-10 at CPU scale"): an 8-filter NOS ConvNet at batch 32
costs ~30 ms per inner step there (32 filters at batch 100: ~470 ms), so one
episode is 50 decisions x 5 steps = 250 steps and training is 16 iterations of
one episode on 4 envs (3200 transitions). Paper values are in the comments.

  python scripts/train_controller.py --config configs/fu2016_dqn.py \
      --workdir runs/fu2016_dqn
  python scripts/evaluate_controller.py --workdir runs/fu2016_dqn
  python scripts/fu2016_figures.py --workdir runs/fu2016_dqn
"""

import ml_collections

from lr_meta import config as config_lib

xu2019_ppo = config_lib.sibling(__file__, "xu2019_ppo")


def get_config():
  config = xu2019_ppo.get_config()
  config.agent = "dqn"
  config.task.update(
      dataset="cifar10", model="nos_convnet", optimizer="sgd",
      batch_size=32,               # paper (WRN): 128
      num_train_examples=10_000,   # paper: the 50k train set
      num_val_examples=2_000,      # checkpoint selection split
      num_test_examples=5_000)     # paper: the 10k test set
  config.task.model_kwargs = dict(num_filters=8)   # NOS: 32
  config.env.update(action_type="fu2016",
                    observation="weight_stats",   # Fu's 193 statistics
                    num_decisions=50,
                    steps_per_decision=5,   # Fu: 1 (a decision every step)
                    initial_lrs=(0.1,),     # lr0, the reset value
                    reward="log_train_loss_change",
                    num_val_examples=200)   # unused by this reward
  config.dqn = ml_collections.ConfigDict(dict(
      num_envs=4, hidden_sizes=(64, 64), gamma=0.99, double_q=False,
      huber_delta=1.0, optimizer="adam", learning_rate=1e-3,
      max_grad_norm=10.0, target_update="hard", target_update_period=100,
      epsilon_start=1.0, epsilon_end=0.05,
      epsilon_decay_transitions=1600,   # half of training
      buffer_size=20_000, batch_size=32,
      burn_in=200,                      # Fu 2016: 3000
      updates_per_decision=1, decisions_per_iteration=50))
  config.num_iterations = 16
  config.eval.update(
      num_seeds=5, initial_lrs=(0.1,),
      constant_lrs=(0.3, 0.1, 0.03),   # SGD/SGDR grid (Adam/RMSProp: 1e-2..1e-4)
      # Fu 2016's baselines: SGD at constant LR 0.1, Adam, RMSProp, SGDR.
      baselines=("constant(lr=0.1)", "adam:constant", "rmsprop:constant",
                 "sgdr"))
  return config
