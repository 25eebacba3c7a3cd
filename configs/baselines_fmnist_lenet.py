"""Tuned step-decay and cosine baselines on Fashion-MNIST LeNet-5 (Xu et al. 2019).

Paper scale: batch 1000, 1000 steps. CPU scale used for BUILD_NOTES: batch 128,
``num_steps`` below; override on the command line, e.g.
``--config.num_steps=1000 --config.task.batch_size=1000``.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.task = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist", model="lenet5", optimizer="sgd", batch_size=128,
      eval_batch_size=1000, num_train_examples=None, num_val_examples=None,
      num_test_examples=None))
  config.num_steps = 500
  config.eval_every = 10
  # Final validation loss used to pick the winner is measured on this many
  # validation examples (None: all 10k).
  config.num_val_examples = 2000
  # Which grids to tune: 'xu2019_step_decay' (48 points) and/or 'cosine'.
  config.baselines = ("xu2019_step_decay", "cosine")
  config.cosine_init_lrs = (0.3, 0.1, 0.03, 0.01, 0.003)
  config.tuning_seeds = (0,)
  config.num_eval_seeds = 10
  config.strategy = ""      # '' = measured default for the model/backend
  config.batch_mode = ""    # '' = measured default
  return config
