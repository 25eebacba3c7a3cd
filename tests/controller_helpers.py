"""Controllers for tests of ``lr_meta.optax.controlled``."""

import jax
import jax.numpy as jnp

from lr_meta.policies import controller as controller_lib


def scaled_controller(spec: controller_lib.ControllerSpec,
                      scale: float = 100.0) -> controller_lib.Controller:
  """A fixed controller of ``spec`` whose action depends on the observation.

  The head is scaled up from its 0.01-gain init so that actions move
  between decisions instead of sitting at 0.
  """
  net = controller_lib.make_network(spec)
  carry = controller_lib.networks.initial_carry(net)
  params = net.init(jax.random.PRNGKey(1),
                    jnp.zeros((spec.observation_size,)), carry)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x * scale if "Dense_1" in jax.tree_util.keystr(p) else x,
      params)
  return controller_lib.make_controller(spec, params)
