"""REPS step-size controller (Daniel, Taylor & Nowozin 2016) at CPU scale.

  python scripts/train_controller.py --config configs/daniel2016_reps.py \
      --workdir runs/daniel2016

The controller ``g = exp(theta . [phi_hat, u, 1])`` multiplies the step size
(``LREnv`` action type 'daniel2016'); one theta per training run, drawn from
a Gaussian updated by episodic REPS. Paper values in the comments; the
defaults are CPU-scale (2 cores): an MLP on a Fashion-MNIST subset instead
of random c-p-c-p-c-r-c-s CNNs on MNIST subsets. ``--config.task.optimizer=
rmsprop`` gives the paper's second inner optimizer.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.agent = "reps"
  config.task = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist",   # paper: MNIST (train), MNIST/CIFAR (test)
      model="mlp",               # paper: random small CNNs (c-p-c-p-c-r-c-s)
      model_kwargs=ml_collections.ConfigDict(dict(hidden_sizes=(64,))),
      optimizer="sgd",           # paper: SGD and RMSProp
      batch_size=64,
      eval_batch_size=1000,
      num_train_examples=10_000,  # paper: random data subsets
      num_val_examples=2000,
      num_test_examples=2000))
  config.env = ml_collections.ConfigDict(dict(
      action_type="daniel2016",
      num_decisions=40,
      steps_per_decision=5,      # K; 1 = a decision every inner step
      # Robustness to eta0 is learned by drawing it per run over decades.
      initial_lrs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
      reward="mean_log_train_loss_change",   # paper: -(1/(S-1)) sum dlog E
      divergence_penalty=-1.0,
      num_val_examples=1000,     # unused by this reward/observation
      per_example_decay=0.9,     # gamma of the running averages
      # phi1's JVP over 16 random examples of each batch: +7-12% of a LeNet
      # step at batch 128 instead of +30-38% over the whole batch
      # (benchmarks/feature_cost.py); = batch_size for the whole batch.
      per_example_subset=16))
  config.reps = ml_collections.ConfigDict(dict(
      num_samples=16,            # thetas (training runs) per iteration
      epsilon=1.0,               # paper/talk: KL bound 1
      init_mean=0.0,
      init_std=0.1,              # paper: isotropic; small, as phi ~ -20..0
      cov_reg=1e-6,
      dual_iterations=100))
  config.num_iterations = 15
  config.checkpoint_every = 5
  config.strategy = ""           # '' = measured default for model/backend
  config.eval = ml_collections.ConfigDict(dict(
      num_seeds=5,
      initial_lrs=(1e-4, 1e-2, 1.0),
      constant_lrs=(1.0, 0.3, 0.1, 0.03, 0.01)))
  return config
