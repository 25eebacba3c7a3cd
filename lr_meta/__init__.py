"""lr_meta: learned learning-rate control and optimizer search in JAX/Flax.

Subpackages, lowest layer first (a layer imports only layers below it;
``tests/test_layering.py`` checks it):
  runner, seeds  execution strategies (scan / chunk / loop) and named seed
                 ranges.
  tasks          optimizee side: data, Flax models, tasks, episode runners.
  features       state features (weight statistics, training dynamics,
                 per-example), the LR action rules and the one observation
                 builder.
  policies       trained controllers as artifacts: spec, file format, the
                 networks that act, the pretrained registry.
  nos            Neural Optimizer Search: the update-rule language and its
                 interpreter (below optax), the search (above the tasks).
  optax          public optax transforms (PowerSign, AddSign, schedules,
                 from_dsl, controlled); needs only the core install.
  envs           the learning-rate control environment (gymnax style).
  agents         DQN, PPO, REPS, actor-critic (the ``[train]`` extra).
  baselines      hand-designed schedules and tuned sweeps.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
