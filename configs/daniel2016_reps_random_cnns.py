"""REPS step-size controller trained over random small CNNs and data subsets.

  python scripts/train_controller.py \
      --config configs/daniel2016_reps_random_cnns.py \
      --workdir runs/daniel2016_random_cnns

Daniel, Taylor & Nowozin (2016) train the controller over randomly drawn
small c-p-c-p-c-r-c-s CNNs on random data subsets. ``task_family``
(``lr_meta.tasks.family``): ``num_members`` members drawn from one seed, each
a ``SmallCNN`` with random filter counts on a random Fashion-MNIST training
subset; every REPS iteration draws one member and runs all its thetas on it
(``lr_meta.agents.reps.make_reps_over_tasks``). ``task`` is the HELD-OUT task
the trained controller is evaluated on (the MLP(64) of
``configs/daniel2016_reps.py``); its optimizer, batch size and val/test
sizes are the members' too. Everything else (environment, REPS settings, eta0
drawn per run over decades) is ``configs/daniel2016_reps.py``'s except the
CPU sizing below: each member compiles separately (once per member), so
``num_members`` is 4.
"""

import ml_collections

from lr_meta import config as config_lib

daniel2016_reps = config_lib.sibling(__file__, "daniel2016_reps")


def get_config():
  config = daniel2016_reps.get_config()
  config.task_family = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist",   # paper: MNIST subsets
      num_members=4,             # each compiles separately: keep small on CPU
      seed=0,                    # the one seed of all member draws
      subset_size=2000,          # training examples per member
      # Filter counts of the three convs before the classifier, inclusive
      # ranges (the MatConvNet MNIST net has 20, 50, 500).
      filter_ranges=((2, 6), (4, 12), (8, 32)),
      kernel_size=5))
  # CPU sizing (measured: BUILD_NOTES, REPS step-size control): one
  # iteration of 16 runs x 200 steps on a (3, 6, 9) member took 104 s, so
  # training runs are shorter (100 steps) and fewer per iteration here; the
  # evaluation (scripts/sensitivity.py) uses 200 steps.
  config.env.num_decisions = 20          # x K=5 = 100 inner steps
  config.reps.num_samples = 12
  config.num_iterations = 10
  config.checkpoint_every = 2
  return config
