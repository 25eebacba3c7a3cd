"""PowerSign / AddSign against an independent numpy loop (TF's golden test).

Protocol of TF contrib `powersign_test.py` / `addsign_test.py`: var0 = [1, 2]
with g0 = [0.1, 0.1], var1 = [3, 4] with g1 = [0.01, 0.01]; 4 steps with +g
then 3 with -g (so the signs of g and m disagree), lr 0.1.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo

T = 10  # decay_steps of the sign decays


def np_linear(t):
  return max(0.0, (T - min(t, T)) / T)


def np_cosine(t, n=0.5):
  return 0.5 * (1 + math.cos(math.pi * 2 * n * min(t, T) / T))


def np_restart(t, n=1):
  return 0.5 * (1 + math.cos(math.pi * ((n * t) % T) / T))


NP_DECAYS = {None: (None, lambda t: 1.0),
             "linear": (lmo.linear_sign_decay(T), np_linear),
             "cosine": (lmo.cosine_sign_decay(T), np_cosine),
             "restart": (lmo.restart_sign_decay(T), np_restart)}


def np_sign_loop(multiplier, beta, np_decay, lr=0.1):
  """Independent float64 reference: returns the variables after each step."""
  var = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
  grads = [np.array([0.1, 0.1]), np.array([0.01, 0.01])]
  m = [np.zeros(2), np.zeros(2)]
  history = []
  for t in range(7):
    sign = 1.0 if t < 4 else -1.0
    for i in range(2):
      g = sign * grads[i]
      m[i] = beta * m[i] + (1 - beta) * g
      s = np_decay(t) * np.sign(g) * np.sign(m[i])
      var[i] = var[i] - lr * multiplier(s) * g
    history.append([v.copy() for v in var])
  return history


def run_optax(opt, steps=7):
  params = (jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]))
  grads = (jnp.array([0.1, 0.1]), jnp.array([0.01, 0.01]))
  state = opt.init(params)
  update = jax.jit(opt.update)
  history = []
  for t in range(steps):
    sign = 1.0 if t < 4 else -1.0
    g = jax.tree.map(lambda x: sign * x, grads)
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    history.append([np.asarray(p) for p in params])
  return history


@pytest.mark.parametrize("decay", list(NP_DECAYS))
@pytest.mark.parametrize("beta", [0.9, 0.8])
@pytest.mark.parametrize("base", [math.e, 10.0])
def test_power_sign_golden(base, beta, decay):
  decay_fn, np_decay = NP_DECAYS[decay]
  got = run_optax(lmo.power_sign(0.1, base=base, beta=beta,
                                 sign_decay_fn=decay_fn))
  want = np_sign_loop(lambda s: base ** s, beta, np_decay)
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("decay", list(NP_DECAYS))
@pytest.mark.parametrize("beta", [0.9, 0.8])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_add_sign_golden(alpha, beta, decay):
  decay_fn, np_decay = NP_DECAYS[decay]
  got = run_optax(lmo.add_sign(0.1, alpha=alpha, beta=beta,
                               sign_decay_fn=decay_fn))
  want = np_sign_loop(lambda s: alpha + s, beta, np_decay)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_golden_has_disagreeing_steps():
  # The protocol is only meaningful if some steps have sign(g) != sign(m).
  plain = np_sign_loop(lambda s: 1.0, 0.9, lambda t: 1.0)
  power = np_sign_loop(lambda s: math.e ** s, 0.9, lambda t: 1.0)
  assert not np.allclose(plain[-1], power[-1])


def test_schedule_learning_rate():
  schedule = lambda count: 0.1 * 0.5 ** count
  got = run_optax(lmo.add_sign(schedule), steps=3)
  # Independent loop with lr_t = 0.1 * 0.5**t.
  var, m = np.array([1.0, 2.0]), np.zeros(2)
  for t in range(3):
    g = np.array([0.1, 0.1])
    m = 0.9 * m + 0.1 * g
    var = var - 0.1 * 0.5 ** t * (1 + np.sign(g) * np.sign(m)) * g
  np.testing.assert_allclose(got[-1][0], var, rtol=1e-6)


@pytest.mark.parametrize("t", [0, 1, 3, 5, 9, 10, 11, 25, 100])
def test_sign_decays_value_by_value(t):
  np.testing.assert_allclose(lmo.linear_sign_decay(T)(t), np_linear(t),
                             atol=1e-6)
  np.testing.assert_allclose(lmo.cosine_sign_decay(T)(t), np_cosine(t),
                             atol=1e-6)
  np.testing.assert_allclose(lmo.cosine_sign_decay(T, num_periods=2)(t),
                             np_cosine(t, 2), atol=1e-6)
  np.testing.assert_allclose(lmo.restart_sign_decay(T)(t), np_restart(t),
                             atol=1e-6)
  np.testing.assert_allclose(lmo.restart_sign_decay(T, num_periods=3)(t),
                             np_restart(t, 3), atol=1e-6)


def test_zero_after():
  fn = lmo.cosine_sign_decay(T, num_periods=2, zero_after=7)
  np.testing.assert_allclose(fn(6), np_cosine(6, 2), atol=1e-6)
  assert float(fn(7)) == 0.0 and float(fn(50)) == 0.0
  fn = lmo.restart_sign_decay(T, zero_after=12)
  np.testing.assert_allclose(fn(11), np_restart(11), atol=1e-6)
  assert float(fn(12)) == 0.0


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="decay_steps"):
    lmo.linear_sign_decay(0)
  with pytest.raises(ValueError, match="base"):
    lmo.power_sign(0.1, base=-1.0)
  with pytest.raises(ValueError, match="beta"):
    lmo.add_sign(0.1, beta=1.5)
