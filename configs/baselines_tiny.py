"""A tiny baseline sweep on mnist1d (offline) for tests and smoke runs."""

from lr_meta import config as config_lib

baselines_fmnist_lenet = config_lib.sibling(__file__, "baselines_fmnist_lenet")


def get_config():
  config = baselines_fmnist_lenet.get_config()
  config.task.update(dataset="mnist1d", model="mlp", batch_size=64,
                     num_train_examples=1000, num_val_examples=400)
  config.num_steps = 40
  config.num_val_examples = None
  config.cosine_init_lrs = (0.3, 0.03)
  config.num_eval_seeds = 3
  return config
