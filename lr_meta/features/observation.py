"""Pieces of the controller observation shared by the environment and
``lr_meta.optax.controlled``."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Xu et al. 2019's 9 numbers plus run progress t / T (``progress_feature``).
PROGRESS_OBSERVATION = "dynamics+progress"


def progress_feature(decisions_taken: chex.Numeric,
                     num_decisions: int) -> jax.Array:
  """``min(t / T, 1)``: the fraction of the run's decisions already taken.

  Not in Xu et al. 2019's observation: without it a Markov policy cannot
  tell the start of a run from its end, so it cannot anneal (BUILD_NOTES,
  the Xu 2019 reproduction, attempt A5).
  """
  # A multiplication by a host constant, not a division: XLA may turn x / T
  # into x * (1 / T) in one program and not in another, and the env and
  # ``lr_meta.optax.controlled`` must give bit-identical observations.
  inverse = np.float32(1.0 / num_decisions)
  return jnp.minimum(jnp.asarray(decisions_taken, jnp.float32) * inverse,
                     1.0)
