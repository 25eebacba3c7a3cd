"""The quickstart config at a size that trains in seconds (tests only).

Loaded by path (``lr_meta.config.load_config``), in tests and as
``--config tests/tiny_ppo_config.py`` of a script run in a subprocess.
"""

import os

from lr_meta import config as config_lib

quickstart = config_lib.load_module(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
    "quickstart.py"))


def get_config():
  config = quickstart.get_config()
  config.task.update(batch_size=16, num_train_examples=200,
                     num_val_examples=100, num_test_examples=100)
  config.env.update(num_decisions=2, steps_per_decision=2,
                    num_val_examples=50, initial_lrs=(0.1,))
  config.ppo.update(num_envs=2, num_minibatches=1, num_epochs=1)
  config.num_iterations = 4
  config.checkpoint_every = 1
  # The quickstart's shipped generalist takes 20 decisions, more than these
  # 4 steps (tests/test_train_controller.py runs it on a 20-step evaluation).
  config.eval.update(num_seeds=2, initial_lrs=(0.1,), constant_lrs=(0.1,),
                     benchmark_methods=("schedule_free_adamw",))
  return config
