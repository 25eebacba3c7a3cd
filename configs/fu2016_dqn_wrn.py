"""DQN LR controller at Fu 2016's scale: CIFAR-10, WRN-40-4, dropout 0.5 (GPU).

Fu 2016, section 4: WRN-40-4 (Zagoruyko & Komodakis 2016) with dropout 0.5 in
every residual block, mini-batch 128, initial LR 0.1 (Figure 3 also 0.2, 0.3),
the first training phase only (60 epochs = 60 x 391 steps), a decision every
step, DQN with "the default setting" of Mnih et al. 2015 and a burn-in of 3000.
The baselines use the WRN settings (LR 0.1, no decay). Not run on the 2-core
CPU box (see BUILD_NOTES); meant for a GPU::

  python scripts/train_controller.py --config configs/fu2016_dqn_wrn.py \
      --workdir runs/fu2016_dqn_wrn
  python scripts/evaluate_controller.py --workdir runs/fu2016_dqn_wrn
  python scripts/fu2016_figures.py --workdir runs/fu2016_dqn_wrn \
      --eval_every 391 --num_examples 10000
"""

from lr_meta import config as config_lib

fu2016_dqn = config_lib.sibling(__file__, "fu2016_dqn")


def get_config():
  config = fu2016_dqn.get_config()
  config.task.update(
      model="wide_resnet",
      # Zagoruyko & Komodakis train with Nesterov momentum 0.9 (and weight
      # decay 5e-4, not modelled here); Fu calls the baseline "vanilla SGD".
      optimizer="sgd",
      batch_size=128,
      num_train_examples=None, num_val_examples=None, num_test_examples=None)
  config.task.model_kwargs = dict(depth=40, width=4, dropout_rate=0.5)
  config.env.update(
      num_decisions=60 * 391,   # 60 epochs of 50k / 128, one decision per step
      steps_per_decision=1,
      initial_lrs=(0.1,),
      num_val_examples=1000)
  config.dqn.update(
      num_envs=1,               # Fu: one training run (an episode took a day)
      burn_in=3000,             # Fu 2016
      epsilon_decay_transitions=1_000_000,   # Mnih 2015: 1M frames
      buffer_size=1_000_000,    # Mnih 2015
      target_update_period=10_000,            # Mnih 2015
      learning_rate=2.5e-4, optimizer="rmsprop",   # Mnih 2015
      decisions_per_iteration=391)             # one epoch per iteration
  config.num_iterations = 60    # one episode
  config.eval.update(num_seeds=5, constant_lrs=(0.3, 0.2, 0.1))
  return config
