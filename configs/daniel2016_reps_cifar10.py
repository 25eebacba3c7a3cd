"""CIFAR-10 evaluation task for REPS step-size controllers (Daniel et al. 2016).

Daniel, Taylor & Nowozin (2016) train on small random CNNs on MNIST subsets
and test the controller on CIFAR. CPU scale: a ``SmallCNN`` (c-p-c-p-c-r-c-s)
with more filters than the training family's, on a 5000-example CIFAR-10
training subset, 200 steps. Use it as the evaluation config of
``scripts/sensitivity.py`` with controllers trained elsewhere::

  python scripts/sensitivity.py --config configs/daniel2016_reps_cifar10.py \
      --controller_workdirs=sgd=runs/random_cnns_sgd,rmsprop=runs/random_cnns_rmsprop \
      --outdir runs/sensitivity_cifar10
"""

import ml_collections

from configs import daniel2016_reps


def get_config():
  config = daniel2016_reps.get_config()
  config.task.update(dataset="cifar10", model="small_cnn",
                     num_train_examples=5000, num_val_examples=1000,
                     num_test_examples=1000)
  config.task.model_kwargs = ml_collections.ConfigDict(
      dict(filters=(8, 16, 64)))
  return config
