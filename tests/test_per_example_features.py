"""Tests for lr_meta.features.per_example and lr_meta.features.smoothing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import optax
import pytest

from lr_meta.features import per_example as pe
from lr_meta.features import smoothing
from lr_meta.tasks import models
import per_example_reference as reference  # tests/per_example_reference.py


def _close(got, want, rtol=1e-5):
  """rtol 1e-5 (float32), with an absolute floor at 1e-6 of the scale."""
  want = np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=rtol,
                             atol=1e-6 * float(np.abs(want).max()))


def _random_like(key, tree, scale=1e-2):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [
      scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _data(shape, batch=6, seed=0):
  kx, ky = jax.random.split(jax.random.key(seed))
  return (jax.random.uniform(kx, (batch,) + shape),
          jax.random.randint(ky, (batch,), 0, 10))


@pytest.mark.parametrize("model,shape", [
    (models.MLP(hidden_sizes=(16,)), (5, 5, 1)),
    (models.LeNet5(), (28, 28, 1)),
])
def test_jvp_equals_vmap_grad_oracle(model, shape):
  x, y = _data(shape)
  params = model.init(jax.random.key(1), x[:1])["params"]

  def example_loss(p, xi, yi):
    logits = model.apply({"params": p}, xi[None])[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yi)

  def loss_vector_fn(p):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)

  @jax.jit
  def compute(p, dw):
    losses, derivs = pe.losses_and_directional_derivatives(
        loss_vector_fn, p, dw)
    grads = reference.per_example_grads(example_loss, p, x, y)
    oracle = reference.directional_derivatives_from_grads(grads, dw)
    batch_grad = jax.grad(lambda q: jnp.mean(loss_vector_fn(q)))(p)
    return (losses, derivs, oracle, grads, batch_grad,
            jax.vmap(example_loss, (None, 0, 0))(p, x, y),
            pe.predicted_change_features(loss_vector_fn, p, dw),
            pe.per_example_features(losses, oracle))

  dw = _random_like(jax.random.key(2), params)
  (losses, derivs, oracle, grads, batch_grad, example_losses, phi,
   phi_oracle) = compute(params, dw)
  _close(derivs, oracle)
  _close(losses, example_losses)
  # The per-example gradients average to the batch gradient.
  jax.tree.map(lambda g, b: _close(g.mean(0), b, rtol=1e-4), grads, batch_grad)
  # Features from the two forms agree (log of variances).
  _close(phi, phi_oracle, rtol=1e-4)


def test_linearize_shares_forward_and_matches():
  model = models.LeNet5()
  x, y = _data((28, 28, 1), batch=5)
  params = model.init(jax.random.key(1), x[:1])["params"]

  def loss_vector_fn(p):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)

  opt = optax.sgd(0.1, momentum=0.9)

  @jax.jit
  def step(p):
    losses, grad, jvp_fn = reference.linearize_losses(loss_vector_fn, p)
    updates, _ = opt.update(grad, opt.init(p), p)
    want_loss, want_grad = jax.value_and_grad(
        lambda q: jnp.mean(loss_vector_fn(q)))(p)
    _, want = pe.losses_and_directional_derivatives(loss_vector_fn, p,
                                                    updates)
    return (losses, grad, jvp_fn(updates), want_loss, want_grad, want)

  losses, grad, derivs, want_loss, want_grad, want = step(params)
  _close(jnp.mean(losses), want_loss)
  jax.tree.map(lambda a, b: _close(a, b, rtol=1e-4), grad, want_grad)
  _close(derivs, want)
  # SGD step: dw = -lr * grad, so sum_i grad_i . dw / B = -lr |grad|^2.
  sq = sum(jnp.sum(g**2) for g in jax.tree.leaves(grad))
  _close(jnp.mean(derivs), -0.1 * sq, rtol=1e-4)


class _TinyBNDropoutNet(nn.Module):
  """conv - batch norm - ReLU - dropout - pool - dense: batch-coupled."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), name="conv0")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn0")(x))
    x = nn.Dropout(0.3, deterministic=not train)(x)
    return nn.Dense(10, name="dense0")(jnp.mean(x, axis=(1, 2)))


def test_batch_norm_and_dropout_against_jacobian_oracle():
  """Train-mode BN couples examples; the oracle is the full Jacobian."""
  model = _TinyBNDropoutNet()
  x, y = _data((6, 6, 3), batch=5)
  variables = model.init(jax.random.key(1), x)
  params, batch_stats = variables["params"], variables["batch_stats"]
  dropout_key = jax.random.key(5)

  def loss_vector_fn(p):
    logits, new_state = model.apply(
        {"params": p, "batch_stats": batch_stats}, x, train=True,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return loss, new_state["batch_stats"]

  @jax.jit
  def compute(p, dw):
    losses, derivs, new_stats = pe.losses_and_directional_derivatives(
        loss_vector_fn, p, dw, has_aux=True)
    jac = jax.jacrev(lambda q: loss_vector_fn(q)[0])(p)  # B x params
    oracle = reference.directional_derivatives_from_grads(jac, dw)
    lin_losses, grad, jvp_fn, _ = reference.linearize_losses(
        loss_vector_fn, p, has_aux=True)
    return losses, derivs, new_stats, jac, oracle, lin_losses, grad, jvp_fn(dw)

  dw = _random_like(jax.random.key(2), params)
  (losses, derivs, new_stats, jac, oracle, lin_losses, grad,
   lin_derivs) = compute(params, dw)
  _close(derivs, oracle)
  assert jax.tree.structure(new_stats) == jax.tree.structure(batch_stats)
  assert not np.allclose(new_stats["bn0"]["mean"], batch_stats["bn0"]["mean"])
  _close(lin_losses, losses)
  _close(lin_derivs, oracle)
  # Whole-tree comparison: the conv bias before BN has a zero gradient in
  # exact arithmetic (BN removes it), so its entries are roundoff only.
  _close(ravel_pytree(grad)[0],
         ravel_pytree(jax.tree.map(lambda b: b.mean(0), jac))[0], rtol=1e-4)
  # The coupling is real: example 0's loss depends on example 1's input.
  def loss_of_inputs(xx):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats},
                            xx, train=True, rngs={"dropout": dropout_key},
                            mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)
  cross = jax.jit(jax.jacrev(loss_of_inputs))(x)[0, 1]
  assert np.abs(np.asarray(cross)).max() > 1e-6


def test_per_example_features_hand_computed():
  losses = jnp.array([1., 2., 3., 4.])        # var 1.25
  derivs = jnp.array([0., 0., 1., 1.])        # var 0.25
  np.testing.assert_allclose(pe.per_example_features(losses, derivs),
                             [np.log(0.25), np.log(1.25)], rtol=1e-6)
  # A zero variance stays finite: log(1e-30).
  got = pe.per_example_features(losses, jnp.zeros(4))
  np.testing.assert_allclose(got[0], np.log(1e-30), rtol=1e-5)


def test_errors():
  params = {"w": jnp.ones((3,))}
  with pytest.raises(ValueError, match=r"shape \(B,\); got shape \(\)"):
    pe.losses_and_directional_derivatives(lambda p: jnp.sum(p["w"]), params,
                                          params)
  with pytest.raises(ValueError, match="structure of params"):
    pe.losses_and_directional_derivatives(lambda p: p["w"], params,
                                          {"v": jnp.ones((3,))})


def test_running_stats_hand_computed():
  # gamma 0.5, phi = 2, 4, 1 (see the smoothing module docstring):
  # t0: phi_bar 2,     u 0       (no previous estimate, deviation 0)
  # t1: phi_bar 10/3,  u (0.5 * 2**2) / 0.75 = 8/3    (deviation 4 - 2)
  # t2: phi_bar 2,     u (0.5 * 2 + 0.5 * (1 - 10/3)**2) / 0.875
  state = smoothing.running_stats_init(jnp.zeros(()))
  update = jax.jit(smoothing.running_stats_update, static_argnums=2)
  want = [(2.0, 0.0), (10 / 3, 8 / 3), (2.0, (1 + 0.5 * 49 / 9) / 0.875)]
  for phi, (mean, unc) in zip([2.0, 4.0, 1.0], want):
    state = update(state, jnp.asarray(phi), 0.5)
    got = smoothing.running_stats_debiased(state, 0.5)
    np.testing.assert_allclose(got, (mean, unc), rtol=1e-6)
  assert int(state.count) == 3


def test_running_stats_against_numpy_loop():
  rng = np.random.default_rng(0)
  phis = rng.normal(size=(20, 2)).astype(np.float32) + [-3.0, 1.0]
  gamma = 0.9
  state = smoothing.running_stats_init(jnp.zeros(2))
  m = np.zeros(2)
  u = np.zeros(2)
  for t, phi in enumerate(phis):
    prev_bar = m / (1 - gamma**t) if t else phi  # deviation 0 at t = 0
    m = gamma * m + (1 - gamma) * phi
    u = gamma * u + (1 - gamma) * (phi - prev_bar)**2
    state = smoothing.running_stats_update(state, phi, gamma)
    np.testing.assert_allclose(
        smoothing.running_stats_features(state, gamma),
        np.concatenate([m, u]) / (1 - gamma**(t + 1)), rtol=1e-5)


def test_running_stats_before_first_update_and_errors():
  state = smoothing.running_stats_init(jnp.ones(3))
  mean, unc = smoothing.running_stats_debiased(state, 0.9)
  np.testing.assert_array_equal(mean, 0.0)
  np.testing.assert_array_equal(unc, 0.0)
  with pytest.raises(ValueError, match=r"decay must be in \[0, 1\); got 1.0"):
    smoothing.running_stats_update(state, jnp.ones(3), 1.0)
  with pytest.raises(AssertionError):
    smoothing.running_stats_update(state, jnp.ones(2), 0.9)
  # bias_correction with count = t + 1.
  np.testing.assert_allclose(smoothing.bias_correction(0.19, 0.9, 2), 1.0, rtol=1e-6)
