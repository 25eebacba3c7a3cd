"""DQN LR controller on weight statistics, CIFAR-10 NOS ConvNet (Fu 2016).

Fu 2016: 2 actions (lr *= 0.97 / reset to lr0), 193 weight statistics of the
last conv layer, reward -(log L_t - log L_{t-1}), Mnih 2015 DQN with burn-in
3000. CPU-scale defaults; Fu decides every step (steps_per_decision=1).
"""

import ml_collections

from configs import xu2019_ppo


def get_config():
  config = xu2019_ppo.get_config()
  config.agent = "dqn"
  config.task.update(dataset="cifar10", model="nos_convnet", optimizer="sgd",
                     batch_size=100)
  config.env.update(action_type="fu2016", num_decisions=50,
                    steps_per_decision=5,   # Fu: 1 (a decision every step)
                    initial_lrs=(0.1,), reward="log_train_loss_change",
                    num_val_examples=500)
  config.dqn = ml_collections.ConfigDict(dict(
      num_envs=4, hidden_sizes=(64, 64), gamma=0.99, double_q=False,
      huber_delta=1.0, optimizer="adam", learning_rate=1e-3,
      max_grad_norm=10.0, target_update="hard", target_update_period=100,
      epsilon_start=1.0, epsilon_end=0.05, epsilon_decay_transitions=2000,
      buffer_size=20_000, batch_size=32,
      burn_in=200,               # Fu 2016: 3000
      updates_per_decision=1, decisions_per_iteration=50))
  config.num_iterations = 10
  config.eval.update(num_seeds=3, initial_lrs=(0.1,),
                     constant_lrs=(0.1, 0.03, 0.01))
  return config
