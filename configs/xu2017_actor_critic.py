"""Per-step actor-critic LR control (Xu, Qin, Wang & Liu 2017), CPU scale.

  python scripts/train_controller.py --config configs/xu2017_actor_critic.py \
      --workdir runs/xu2017

The actor maps the training state to the log10 learning rate of the next K
steps (``LREnv`` action type 'xu2017'); the critic is a state value trained
by TD(0) whose error is the actor's advantage; both update after every
decision. The paper decides every step (K = 1) on CIFAR-10/MNIST CNNs; the
CPU-scale defaults use K = 10 on a Fashion-MNIST MLP, the scale of the
re-run baselines in BUILD_NOTES (300 steps, batch 128).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.agent = "actor_critic"
  config.task = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist", model="mlp", optimizer="sgd",
      batch_size=128, eval_batch_size=1000,
      num_train_examples=ml_collections.config_dict.placeholder(int),
      num_val_examples=ml_collections.config_dict.placeholder(int),
      num_test_examples=ml_collections.config_dict.placeholder(int)))
  config.env = ml_collections.ConfigDict(dict(
      action_type="xu2017",
      # 'dynamics' (9), 'per_example' (4) or 'dynamics+per_example' (13).
      observation="dynamics+per_example",
      num_decisions=30,
      steps_per_decision=10,     # paper: 1 (a decision every step)
      initial_lrs=(0.03,),       # lr0: the actor sets lr = lr0 * 10**a
      reward="val_loss_change",
      divergence_penalty=-10.0,
      num_val_examples=1000,
      ema_decay=0.8,
      per_example_decay=0.9,
      per_example_subset=16,     # phi1 from 16 examples (= batch: all)
      log_lr_observation=True))
  config.actor_critic = ml_collections.ConfigDict(dict(
      num_envs=8, gamma=0.9, actor_lr=1e-3, critic_lr=5e-3,
      max_grad_norm=5.0, hidden_size=32,
      action_std=0.3,            # exploration in decades of LR
      learn_log_std=False))
  config.num_iterations = 40
  config.checkpoint_every = 10
  config.strategy = ""
  config.eval = ml_collections.ConfigDict(dict(
      num_seeds=10,
      initial_lrs=(0.03,),
      constant_lrs=(1.0, 0.3, 0.1, 0.03, 0.01)))
  return config
