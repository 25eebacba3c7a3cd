"""The backprop-delta form of grad_i . dw (Goodfellow's per-example trick)
against the vmap(grad) oracle, and its refusals."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from lr_meta.tasks import models
import per_example_reference as reference  # tests/per_example_reference.py


def _batch(shape, b=6):
  x = jax.random.uniform(jax.random.key(0), (b,) + shape)
  y = jax.random.randint(jax.random.key(1), (b,), 0, 10)
  return x, y


@pytest.mark.parametrize("model,shape", [
    (models.LeNet5(), (28, 28, 1)), (models.MLP(hidden_sizes=(16, 8)), (40,))])
@pytest.mark.parametrize("opt", [optax.sgd(0.1, momentum=0.9),
                                 optax.rmsprop(0.01)])
def test_equals_oracle(model, shape, opt):
  x, y = _batch(shape)
  params = model.init(jax.random.key(2), x[:2])["params"]
  state = opt.init(params)
  update_fn = lambda g: opt.update(g, state, params)[0]
  losses, grad, dw, derivs = jax.jit(
      lambda p: reference.delta_losses_grad_and_derivatives(model, p, x, y,
                                                     update_fn))(params)

  def example_loss(p, xi, yi):
    logits = model.apply({"params": p}, xi[None])
    return optax.softmax_cross_entropy_with_integer_labels(logits, yi[None])[0]
  grads_i = reference.per_example_grads(example_loss, params, x, y)
  want = reference.directional_derivatives_from_grads(grads_i, dw)
  np.testing.assert_allclose(derivs, want, rtol=1e-5,
                             atol=1e-6 * float(np.abs(want).max()))
  np.testing.assert_allclose(
      losses, jax.vmap(example_loss, (None, 0, 0))(params, x, y), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b.mean(0), rtol=1e-5, atol=1e-7), grad, grads_i)


class _Shared(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    dense = nn.Dense(x.shape[-1])
    return nn.Dense(10)(dense(dense(x)))


class _Scaled(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    scale = self.param("scale", nn.initializers.ones, (1,))
    return nn.Dense(10)(x * scale)


@pytest.mark.parametrize("model,match", [(_Shared(), "called more than once"),
                                         (_Scaled(), r"\['scale'\]")])
def test_refuses_what_it_cannot_do_exactly(model, match):
  x, y = _batch((4,))
  params = model.init(jax.random.key(0), x)["params"]
  with pytest.raises(ValueError, match=match):
    reference.delta_losses_grad_and_derivatives(model, params, x, y, lambda g: g)
