"""lr_meta: learned learning-rate control and optimizer search in JAX/Flax.

Subpackages (lower layers never import higher ones):
  tasks      optimizee side: data, Flax models, tasks, episode runners.
  features   state features: weight statistics, training dynamics, per-example.
  envs       the learning-rate control environment (gymnax style).
  agents     DQN, PPO, REPS, actor-critic.
  baselines  hand-designed schedules and tuned sweeps.
  nos        Neural Optimizer Search: update-rule language, interpreter, search.
  optax      public optax transforms (PowerSign, AddSign, schedules, from_dsl,
             controlled).
"""

__version__ = "0.1.0"
