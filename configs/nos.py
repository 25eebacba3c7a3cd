"""Neural Optimizer Search on CPU (Bello et al. 2017 scaled down).

  python scripts/search_optimizer.py --config configs/nos.py --workdir runs/nos

Child task: an MLP (hidden 32) on mnist1d (offline, 3200 train / 800 val),
LR sweep 10^-5 .. 10^1 for 100 steps on 1000 examples, then 1000 steps with
the best LR; reward = accuracy on the 800 validation examples. Every rule
and learning rate runs through one compiled program (rules per hour: see
BUILD_NOTES.md, "Neural Optimizer Search: controller and search"). At 300 final steps plain SGD is as good as
anything this space found (first demo search); at 1000 steps PowerSign beats
SGD (0.534 vs 0.509), so the search has something to find.

Paper scale (section 4.2), for a machine with accelerators:
  config.scoring.update(dataset="cifar10", model="nos_convnet",
                        batch_size=100, sweep_train_examples=10_000,
                        sweep_steps=100, train_steps=2_000,
                        num_val_examples=5_000, batch_mode="sharded")
  config.ppo.update(learning_rate=1e-5, batch_size=5 .. 100)
  config.space: the full vocabulary, num_groups 1 .. 4.
"""

import ml_collections

# A sub-vocabulary (paper section 4.1: "we find it helpful to only work with
# subsets"): 1.3e8 two-group rules.
OPERANDS = ("g", "g^2", "m", "v", "sign(g)", "sign(m)", "1", "2", "adam",
            "rmsprop")
UNARY = ("id", "neg", "exp", "log", "sqrt", "sign", "clip_1e-3")
BINARY = ("add", "sub", "mul", "div", "pow", "keep")


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_iterations = 40
  config.checkpoint_every = 5
  config.leaderboard_size = 10
  config.space = ml_collections.ConfigDict(dict(
      num_groups=2, operands=OPERANDS, unary=UNARY, binary=BINARY,
      distinct_operands=True, no_final_add=True, reuse_previous=True))
  config.scoring = ml_collections.ConfigDict(dict(
      dataset="mnist1d", model="mlp",
      model_kwargs=ml_collections.ConfigDict(dict(hidden_sizes=(32,))),
      batch_size=64, num_train_examples=None, num_val_examples=None,
      sweep_train_examples=1000, sweep_lrs=tuple(10.0 ** i
                                                 for i in range(-5, 2)),
      sweep_steps=100, train_steps=1000, min_reward=0.0, num_seeds=1,
      batch_mode=ml_collections.FieldReference(None, field_type=str),
      strategy=ml_collections.FieldReference(None, field_type=str),
      num_groups=2))
  # The paper's Adam 1e-5 needs thousands of batches; a CPU search of ~60
  # batches of 16 rules learns with 3e-3 (BUILD_NOTES.md, "Neural Optimizer
  # Search: controller and search"). These fields are
  # `lr_meta.nos.RuleSearchPPOConfig`.
  config.ppo = ml_collections.ConfigDict(dict(
      learning_rate=3e-3, batch_size=16, entropy_coef=0.0015,
      clip_epsilon=0.2, num_epochs=4, baseline_decay=0.9,
      max_grad_norm=ml_collections.FieldReference(None, field_type=float)))
  # Re-scored at the end with fresh seeds next to the best found rules.
  config.compare = ml_collections.ConfigDict(dict(
      rules=("g", "m", "adam", "rmsprop", "exp(sign(g) * sign(m)) * g",
             "(1 + sign(g) * sign(m)) * g"),
      names=("SGD", "Momentum (m)", "Adam", "RMSProp", "PowerSign",
             "AddSign"),
      top_k=5, num_seeds=3))
  return config
