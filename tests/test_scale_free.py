"""The scale-free observation: hand-computed values and the invariances it claims."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.features import observation as observation_lib
from lr_meta.features import scale_free as sf


def _window(losses, ratios):
  w = sf.window_init()
  for loss, ratio in zip(losses, ratios):
    w = sf.window_add(w, loss, ratio)
  return w


def _two_decisions(scale=1.0, lr_scale=1.0):
  """Reset at (L0, V0) = (2.5, 2.4), then two windows; losses times scale."""
  c = np.float32(scale)
  state = sf.scale_free_init(2.5 * c, 2.4 * c)
  obs0, state = sf.scale_free_observation(
      state, sf.window_init(), lr=0.1 * lr_scale, lr0=0.1 * lr_scale,
      val_loss=2.4 * c, progress=0.0, decay=0.5)
  state = sf.record_action(state, jnp.array([0.3]))
  obs1, state = sf.scale_free_observation(
      state, _window([2.0 * c, 1.6 * c, 1.2 * c], [0.01, 0.02, 0.03]),
      lr=0.2 * lr_scale, lr0=0.1 * lr_scale, val_loss=1.5 * c, progress=0.25,
      decay=0.5)
  state = sf.record_action(state, -0.1)
  obs2, state = sf.scale_free_observation(
      state, _window([1.0 * c, 0.8 * c], [0.004, 0.006]),
      lr=0.05 * lr_scale, lr0=0.1 * lr_scale, val_loss=1.1 * c,
      progress=0.5, decay=0.5)
  return obs0, obs1, obs2


def test_hand_computed_values():
  obs0, obs1, obs2 = map(np.asarray, _two_decisions())
  # Decision 0: empty window, only the gap and nothing else.
  np.testing.assert_allclose(
      obs0, [0, 0, 0, 0, 0, 0, np.log(2.4 / 2.5), 0, 0, 0], atol=1e-7)
  l1 = (2.0 + 1.6 + 1.2) / 3
  cv1 = np.std([2.0, 1.6, 1.2]) / l1
  d_train1, d_val1 = np.log(l1 / 2.5), np.log(1.5 / 2.4)
  # EMA 0.5 from 0, bias-corrected by 1 - 0.5**1.
  expected1 = [0.25, np.log(2.0), np.log(l1 / 2.5), np.log(1.5 / 2.4),
               0.5 * d_train1 / 0.5, 0.5 * d_val1 / 0.5, np.log(1.5 / l1),
               np.log10(0.02), cv1, 0.3]
  np.testing.assert_allclose(obs1, expected1, rtol=2e-6, atol=1e-6)
  l2 = 0.9
  ema_t = 0.5 * (0.5 * d_train1) + 0.5 * np.log(l2 / l1)
  ema_v = 0.5 * (0.5 * d_val1) + 0.5 * np.log(1.1 / 1.5)
  expected2 = [0.5, np.log(0.5), np.log(l2 / 2.5), np.log(1.1 / 2.4),
               ema_t / 0.75, ema_v / 0.75, np.log(1.1 / l2),
               np.log10(0.005), np.std([1.0, 0.8]) / l2, -0.1]
  np.testing.assert_allclose(obs2, expected2, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 7.3, 250.0])
def test_invariant_to_the_loss_scale(scale):
  """Every loss (train, validation, initial) times c: the same numbers."""
  for a, b in zip(_two_decisions(), _two_decisions(scale=scale)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("lr_scale", [1e-4, 30.0])
def test_invariant_to_the_lr_unit(lr_scale):
  """lr and lr0 times c (SGD at 0.1 vs Adam at 1e-3): the same numbers."""
  for a, b in zip(_two_decisions(), _two_decisions(lr_scale=lr_scale)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5,
                               atol=1e-5)


def test_update_ratio_is_invariant_to_the_weight_scale():
  key = jax.random.PRNGKey(0)
  params = {"a": jax.random.normal(key, (5, 3)), "b": jnp.arange(4.0)}
  updates = jax.tree.map(lambda p: 0.01 * jnp.cos(p), params)
  by_hand = np.sqrt(sum(np.sum(np.asarray(u)**2) for u in
                        jax.tree.leaves(updates))) / np.sqrt(
                            sum(np.sum(np.asarray(p)**2) for p in
                                jax.tree.leaves(params)))
  ratio = sf.update_ratio(updates, params)
  np.testing.assert_allclose(ratio, by_hand, rtol=1e-6)
  scaled = sf.update_ratio(jax.tree.map(lambda u: 40.0 * u, updates),
                           jax.tree.map(lambda p: 40.0 * p, params))
  np.testing.assert_allclose(scaled, ratio, rtol=1e-6)
  # A diverging step counts as a step as large as the weights.
  inf = sf.update_ratio(jax.tree.map(lambda u: u * jnp.inf, updates), params)
  assert float(inf) == 1.0


def test_observe_kind_scale_free():
  """``observe`` reads progress as t / D and returns the new state."""
  config = observation_lib.ObservationConfig(
      kind=observation_lib.SCALE_FREE,
      layers=observation_lib.ObservedLayers(), num_decisions=4,
      slope_decay=0.5)
  state = sf.scale_free_init(2.5, 2.4)
  state = sf.record_action(state, 0.3)
  window = _window([2.0, 1.6, 1.2], [0.01, 0.02, 0.03])
  obs, new = observation_lib.observe(
      config, params={}, lr=0.2, lr0=0.1, val_loss=1.5, decisions_taken=1,
      scale_free_state=state, window=window)
  want, want_state = sf.scale_free_observation(
      state, window, lr=0.2, lr0=0.1, val_loss=1.5, progress=0.25,
      decay=0.5)
  np.testing.assert_array_equal(np.asarray(obs), np.asarray(want))
  assert obs.shape == (observation_lib.observation_size("scale_free"),)
  jax.tree.map(np.testing.assert_array_equal, new, want_state)
  assert observation_lib.observes_progress("scale_free")


# -- optional inputs ----------------------------------------------------------


def _grad_norm_observations(norms_per_window, scale=1.0):
  """Observations after windows whose steps had these gradient norms."""
  inputs = ("grad_norm_ratio",)
  state = sf.scale_free_init(2.5, 2.4, inputs)
  out = []
  for norms in norms_per_window:
    w = sf.window_init(1)
    for n in norms:
      grads = {"a": jnp.array([3.0, 4.0]) * n / 5.0 * scale}   # ||g|| = n
      w = sf.window_add(w, 2.0, 0.01, sf.step_extras(inputs, grads, None,
                                                     None))
    obs, state = sf.scale_free_observation(
        state, w, lr=0.1, lr0=0.1, val_loss=2.0, progress=0.0, decay=0.5,
        inputs=inputs)
    out.append(float(obs[-1]))
  return out, state


def test_grad_norm_ratio_by_hand():
  # Window means 2, 4, 1.2: the first starts the running mean (reads 0);
  # then log(4 / 2), running 0.8 * 2 + 0.2 * 4 = 2.4; then log(1.2 / 2.4).
  values, state = _grad_norm_observations([[1.0, 3.0], [4.0], [1.0, 1.4]])
  np.testing.assert_allclose(values, [0.0, np.log(2.0), np.log(0.5)],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.memory, [0.8 * 2.4 + 0.2 * 1.2],
                             rtol=1e-6)
  assert observation_lib.observation_names(
      "scale_free", ("grad_norm_ratio",))[-1] == "grad_norm_ratio"
  assert observation_lib.observation_size("scale_free",
                                          ("grad_norm_ratio",)) == 11


@pytest.mark.parametrize("scale", [1e-3, 7.0, 1e4])
def test_grad_norm_ratio_is_free_of_the_gradient_scale(scale):
  windows = [[1.0, 3.0], [4.0], [1.0, 1.4]]
  np.testing.assert_allclose(_grad_norm_observations(windows, scale)[0],
                             _grad_norm_observations(windows)[0],
                             rtol=1e-4, atol=1e-5)


def test_unknown_or_misplaced_inputs_are_named():
  with pytest.raises(ValueError, match="allowed: distinct names of"):
    observation_lib.observation_size("scale_free", ("gradient_noise",))
  with pytest.raises(ValueError, match="belong to 'scale_free' only"):
    observation_lib.observation_size("dynamics", ("grad_norm_ratio",))
