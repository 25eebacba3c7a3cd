"""Finding a transformation's state inside a composed optax state."""

from typing import Any, List, Type, TypeVar

import jax

S = TypeVar("S")


def find_states(state: Any, cls: Type[S]) -> List[S]:
  """Every sub-state of type ``cls`` in an optax state, in tree order.

  Works through any nesting of chains, ``inject_hyperparams``, masks and
  the like: a sub-state is a pytree node found by its type.
  """
  return [s for s in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, cls)) if isinstance(s, cls)]


def find_state(state: Any, cls: Type[S]) -> S:
  """The one sub-state of type ``cls`` in an optax state.

  E.g. ``find_state(opt_state, optax.contrib.ProdigyState).estim_lr`` in a
  chain that holds one Prodigy.

  Raises:
    ValueError: the state holds none or several, naming how many.
  """
  found = find_states(state, cls)
  if len(found) != 1:
    raise ValueError(f"the optimizer state holds {len(found)} "
                     f"{cls.__name__}; expected exactly 1.")
  return found[0]
