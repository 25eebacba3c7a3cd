"""CIFAR-10 evaluation task for REPS step-size controllers (Daniel et al. 2016).

Daniel, Taylor & Nowozin (2016) train on small random CNNs on MNIST subsets
and test the controller on CIFAR. CPU scale: a ``SmallCNN`` (c-p-c-p-c-r-c-s)
with filters (4, 8, 32) on 32x32x3 inputs (about 4x the conv work per example
of the training family's Fashion-MNIST members), batch 32 (the family: 64),
on a 5000-example CIFAR-10 training subset, 200 steps. Use it as the evaluation config of
``scripts/sensitivity.py`` with controllers trained elsewhere::

  python scripts/sensitivity.py --config configs/daniel2016_reps_cifar10.py \
      --controller_workdirs=sgd=runs/random_cnns_sgd,rmsprop=runs/random_cnns_rmsprop \
      --outdir runs/sensitivity_cifar10
"""

import ml_collections

from lr_meta import config as config_lib

daniel2016_reps = config_lib.sibling(__file__, "daniel2016_reps")


def get_config():
  config = daniel2016_reps.get_config()
  config.task.update(dataset="cifar10", model="small_cnn", batch_size=32,
                     num_train_examples=5000, num_val_examples=1000,
                     num_test_examples=1000)
  config.task.model_kwargs = ml_collections.ConfigDict(
      dict(filters=(4, 8, 32)))
  return config
