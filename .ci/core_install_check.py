"""Checks that the core install (no extras) is enough for lr_meta.optax.

Run in a fresh virtual environment holding only ``pip install -e .``::

  python3 -m venv /tmp/corevenv
  /tmp/corevenv/bin/pip install -e .
  /tmp/corevenv/bin/python .ci/core_install_check.py

It imports ``lr_meta.optax``, checks that no training dependency is
installed or loaded, takes one PowerSign step against its hand-computed
value and runs a shipped controller inside a small Flax/optax loop.
"""

import importlib.util
import math
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lr_meta.optax as lmo

TRAINING_STACK = ("tensorflow_probability", "distrax", "rlax", "flashbax",
                  "tensorboardX", "mnist1d", "ml_collections")


def main():
  installed = [m for m in TRAINING_STACK if importlib.util.find_spec(m)]
  assert not installed, f"not a core install: {installed} are installed"
  loaded = sorted(m for m in sys.modules
                  if m.split(".")[0] in TRAINING_STACK + ("scipy", "orbax"))
  assert not loaded, f"import lr_meta.optax loaded {loaded}"

  # PowerSign, first step: m = (1 - beta) g has the sign of g, so the update
  # is -lr * e * g.
  params = jnp.array([1.0, -2.0, 0.5])
  grads = 2.0 * params
  tx = lmo.power_sign(0.1)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates, -0.1 * math.e * grads, rtol=1e-6)

  # A shipped controller in an ordinary loop (random data, tiny MLP).
  ctrl = lmo.pretrained_controller("mnist1d_mlp_quickstart")
  model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(10)])
  kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (64, 40))
  y = jax.random.randint(ky, (64,), 0, 10)
  # The probe size the controller was trained with (spec.num_val_examples).
  n = ctrl.spec.num_val_examples
  probe_x = jax.random.normal(kx, (n, 40))
  probe_y = jax.random.randint(ky, (n,), 0, 10)
  params = model.init(kp, x[:1])
  base = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05,
                                             momentum=0.9)
  tx = lmo.controlled(base, ctrl, num_classes=10)

  def loss_fn(p, xb, yb):
    logits = model.apply(p, xb)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                    yb))

  @jax.jit
  def step(p, state):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    updates, state = tx.update(
        g, state, p, loss=loss,
        **lmo.probe_inputs(state, model.apply, p, probe_x, probe_y))
    return optax.apply_updates(p, updates), state, loss

  state = tx.init(params)
  lrs, losses = [], []
  for _ in range(3 * ctrl.spec.steps_per_decision):
    params, state, loss = step(params, state)
    lrs.append(float(lmo.current_lr(state)))
    losses.append(float(loss))
  k = ctrl.spec.steps_per_decision
  assert all(np.isfinite(lrs)) and int(state.skipped_decisions) == 0
  assert len(set(lrs[::k])) == 3, lrs[::k]        # one new LR per decision
  assert lrs[:k] == [lrs[0]] * k                   # constant inside a window
  assert losses[-1] < losses[0], losses
  print(f"core install OK: lr_meta.optax from {lmo.__file__}; "
        f"controller LRs {[f'{v:.4g}' for v in lrs[::k]]}, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")


if __name__ == "__main__":
  main()
