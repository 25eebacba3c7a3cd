"""Tests for lr_meta.features.dynamics (Xu, Dai, Kemp & Metz 2019)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import features
from lr_meta.features import dynamics
from lr_meta.features import smoothing
from lr_meta.tasks import models


def _params():
  kernel0 = np.array([[1., 2.], [3., 4.], [5., 6.]], np.float32)   # mean 3.5
  kernel1 = np.array([[-1., 1.], [0., 2.]], np.float32)             # mean 0.5
  return {"params": {"dense0": {"kernel": kernel0, "bias": np.zeros(2)},
                     "dense1": {"kernel": kernel1, "bias": np.zeros(2)}}}


def test_log_variance_hand_computed():
  x = jnp.array([[0.2, 0.8], [0.6, 0.4]])
  # mean 0.5, squared deviations .09 .09 .01 .01 -> var 0.05 over ALL entries.
  np.testing.assert_allclose(dynamics.log_variance(x), np.log(0.05 + 1e-10),
                             rtol=1e-6)


def test_kernel_moments_hand_computed():
  k = _params()["params"]["dense0"]["kernel"]
  # values 1..6: mean 3.5, var (2.5^2+1.5^2+.5^2)*2/6 = 35/12.
  np.testing.assert_allclose(dynamics.kernel_moments(k), [3.5, 35 / 12],
                             rtol=1e-6)


def test_observation_sequence_matches_official_loop():
  """Three updates against the official code's numpy loop, written out."""
  params = _params()
  preds = [np.array([[0.9, 0.1], [0.3, 0.7]], np.float32),
           np.array([[0.5, 0.5], [0.2, 0.8]], np.float32),
           np.array([[0.6, 0.4], [0.1, 0.9]], np.float32)]
  train = [2.0, 1.5, 1.2]
  val = [2.1, 1.7, 1.4]
  lrs = [0.1, 0.12, 0.09]
  state = dynamics.dynamics_init((2, 2))  # previous predictions = zeros
  update = jax.jit(dynamics.dynamics_update)
  prev = np.zeros((2, 2))
  lv_ema = change_ema = None
  for t in range(3):
    obs, state = update(state, params=params, predictions=preds[t],
                        train_loss=train[t], lr=lrs[t], val_loss=val[t])
    lv = np.log(np.var(preds[t].astype(np.float64)) + 1e-10)
    ch = np.log(np.var(preds[t].astype(np.float64) - prev) + 1e-10)
    lv_ema = lv if lv_ema is None else 0.8 * lv_ema + 0.2 * lv
    change_ema = ch if change_ema is None else 0.8 * change_ema + 0.2 * ch
    prev = preds[t]
    want = [val[t], lv_ema, change_ema, train[t], 3.5, 35 / 12, 0.5, 1.25,
            lrs[t]]
    np.testing.assert_allclose(obs, want, rtol=1e-5)
  assert int(state.count) == 3
  np.testing.assert_array_equal(state.prev_predictions, preds[-1])


def test_first_step_values_by_hand():
  params = _params()
  p = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
  obs, _ = dynamics.dynamics_update(
      dynamics.dynamics_init((2, 2)), params=params, predictions=p,
      train_loss=0.7, lr=0.01, val_loss=0.9)
  # First EMA value is the value itself. Change from zeros = p itself.
  want = [0.9, np.log(0.05), np.log(0.05), 0.7, 3.5, 35 / 12, 0.5, 1.25, 0.01]
  np.testing.assert_allclose(obs, want, rtol=1e-5)
  assert dynamics.OBSERVATION_NAMES[1] == "pred_log_var_ema"
  assert len(dynamics.OBSERVATION_NAMES) == dynamics.NUM_OBSERVATIONS == 9


def test_missing_val_loss_uses_train_loss():
  p = np.full((3, 2), 0.5, np.float32)
  obs, _ = dynamics.dynamics_update(
      dynamics.dynamics_init((3, 2)), params=_params(), predictions=p,
      train_loss=1.25, lr=0.1)
  assert obs[0] == obs[3] == 1.25


def test_key_init_is_uniform_noise_like_official_code():
  state = dynamics.dynamics_init((1000, 10), key=jax.random.key(3))
  prev = np.asarray(state.prev_predictions)
  assert prev.min() >= 0.0 and prev.max() < 1.0
  assert abs(prev.mean() - 0.5) < 0.01
  assert int(state.count) == 0


def test_on_mlp_model_and_explicit_layers():
  model = models.MLP(hidden_sizes=(16, 8))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 12)))
  first = features.first_dense_layer(variables)
  last = features.last_dense_layer(variables)
  x = jax.random.normal(jax.random.key(1), (4, 12))
  preds = jax.nn.softmax(model.apply(variables, x))
  state = dynamics.dynamics_init(preds.shape)

  @jax.jit
  def step(state, params):
    return dynamics.dynamics_update(
        state, params=params, predictions=preds, train_loss=1.0, lr=0.1,
        first_dense=first, last_dense=last)

  obs, state = step(state, variables["params"])
  k0 = np.asarray(variables["params"][first[0]]["kernel"])
  k2 = np.asarray(variables["params"][last[0]]["kernel"])
  assert k0.shape == (12, 16) and k2.shape == (8, 10)
  np.testing.assert_allclose(obs[4:8], [k0.mean(), k0.var(), k2.mean(),
                                        k2.var()], rtol=1e-5, atol=1e-7)


def test_errors():
  with pytest.raises(ValueError, match="predictions_shape"):
    dynamics.dynamics_init(())
  with pytest.raises(ValueError, match=r"decay must be in \[0, 1\); got 1.5"):
    dynamics.dynamics_update(
        dynamics.dynamics_init((2, 2)), params=_params(),
        predictions=np.ones((2, 2)), train_loss=1.0, lr=0.1, decay=1.5)
  with pytest.raises(AssertionError):  # chex: batch shape changed
    dynamics.dynamics_update(
        dynamics.dynamics_init((2, 2)), params=_params(),
        predictions=np.ones((3, 2)), train_loss=1.0, lr=0.1)
  with pytest.raises(ValueError, match="dense7.*dense0"):
    dynamics.dynamics_update(
        dynamics.dynamics_init((2, 2)), params=_params(),
        predictions=np.ones((2, 2)), train_loss=1.0, lr=0.1,
        last_dense="dense7")


def test_ema_helpers():
  assert float(smoothing.ema(1.0, 3.0, 0.8)) == pytest.approx(1.4)
  assert float(smoothing.ema_first_value(0.0, 3.0, 0.8, 0)) == 3.0
  assert float(smoothing.ema_first_value(1.0, 3.0, 0.8, 5)) == pytest.approx(1.4)
