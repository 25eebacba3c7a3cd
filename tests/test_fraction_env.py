"""LREnv with decisions at fixed fractions of a run and the scale-free observation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.features import observation as observation_lib
from lr_meta.envs import rollout


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp", {"hidden_sizes": (16,)}, "sgd",
                         batch_size=16, num_train_examples=256,
                         num_val_examples=64, num_test_examples=64)


@pytest.fixture(scope="module")
def env(task):
  # One environment for the rollout tests: they share its compiled episodes.
  return lr_env.LREnv(task, "daniel2016", "scale_free")


def _constant(action, obs, carry):
  """The policy that always takes ``action`` (its params: one compile)."""
  return jnp.full(obs.shape[:-1] + (1,), action), carry


# Two episodes of the rollout tests: (initial LR, length) each.
_KEYS = jax.random.split(jax.random.PRNGKey(0), 2)
_LR0S, _LENGTHS = jnp.array([0.05, 0.2]), jnp.array([37, 12])


def _episodes(env, params, action):
  return rollout.run_episodes(env, params, _constant, jnp.float32(action),
                              _KEYS, lr0s=_LR0S, num_steps=_LENGTHS)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _first_val_losses(env, params):
  """The two episodes' validation losses at reset."""
  _, state = jax.vmap(env.reset_with_lr0, in_axes=(0, None, 0, 0))(
      _KEYS, params, _LR0S, _LENGTHS)
  return state.val_loss


def _params(**kw):
  kw = dict(dict(num_decisions=5, decision_schedule="fraction",
                 reward="log_val_loss_change", num_val_examples=64), **kw)
  return lr_env.LREnvParams.from_fields(**kw).check("daniel2016")


def test_decision_steps_split_any_run_at_fixed_fractions():
  steps = [int(observation_lib.decision_step(t, 37, 5)) for t in range(6)]
  assert steps == [0, 7, 14, 22, 29, 37]
  assert np.diff(steps).tolist() == [7, 7, 8, 7, 8]


def test_episode_runs_its_steps_and_the_reward_telescopes(env):
  params = _params()
  state, infos = _episodes(env, params, 0.1)
  np.testing.assert_array_equal(state.opt.step, [37, 12])
  v0 = np.asarray(_first_val_losses(env, params))
  np.testing.assert_allclose(np.sum(infos["reward"], axis=0),
                             np.log(v0) - np.log(infos["val_loss"][-1]),
                             rtol=1e-5, atol=1e-6)
  # The daniel2016 rule: lr0 * exp(0.1) per decision.
  np.testing.assert_allclose(infos["lr"][:, 0],
                             0.05 * np.exp(0.1 * np.arange(1, 6)), rtol=1e-5)
  obs = np.asarray(state.obs)
  np.testing.assert_allclose(obs[:, 0], 1.0)                  # progress
  np.testing.assert_allclose(obs[:, 1], 0.5, rtol=1e-5)       # log lr/lr0
  np.testing.assert_allclose(obs[:, -1], 0.1, rtol=1e-6)      # prev action


def test_the_reference_reward_is_the_change_against_the_reference_run(env):
  """A run scored against its own curve earns 0 at every decision; another
  policy earns its log-loss change minus the reference's over its steps."""
  constant = _episodes(env, _params(), 0.0)[1]
  first = _first_val_losses(env, _params())[0]
  log_val = np.log(np.concatenate([[float(first)],
                                   np.asarray(constant["val_loss"][:, 0])]))
  # Episode 0's decisions are at steps 0, 7, 14, 22, 29, 37 (the test
  # above), then the reference is flat.
  reference = _params(reward="log_val_vs_reference",
                      reference_steps=(0, 7, 14, 22, 29, 37, 100),
                      reference_log_val=tuple(log_val) + (log_val[-1],))
  np.testing.assert_allclose(_episodes(env, reference, 0.0)[1]["reward"][:, 0],
                             0.0, atol=2e-6)
  raised = _episodes(env, reference, 0.1)[1]["reward"][:, 0]
  plain = _episodes(env, _params(), 0.1)[1]["reward"][:, 0]
  np.testing.assert_allclose(raised, plain + np.diff(log_val), rtol=1e-5,
                             atol=1e-6)


def test_train_loss_is_the_window_mean(task):
  """Decision 1 of a 12-step, 5-decision run covers steps 0, 1 (K = 2)."""
  env = lr_env.LREnv(task, "daniel2016", "scale_free")
  params = _params()
  key = jax.random.PRNGKey(3)
  _, state = env.reset_with_lr0(key, params, 0.1, 12)
  _, new, *_ = env.step(key, state, jnp.zeros((1,)), params)
  opt, losses = state.opt, []
  for _ in range(2):
    opt, m = task.train_step(opt, 0.1)
    losses.append(float(m.loss))
  np.testing.assert_allclose(float(new.train_loss), np.mean(losses),
                             rtol=1e-6)
  np.testing.assert_array_equal(new.opt.step, 2)


def test_draws_of_initial_lr_and_length(env):
  params = _params(lr0_range=(0.01, 1.0), num_steps_range=(20, 200))
  keys = jax.random.split(jax.random.PRNGKey(1), 64)
  reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)), static_argnums=1)
  _, states = reset(keys, params)
  lr0, steps = np.asarray(states.lr0), np.asarray(states.num_steps)
  assert lr0.min() >= 0.01 - 1e-9 and lr0.max() <= 1.0 + 1e-6
  assert steps.min() >= 20 and steps.max() <= 200
  # Log-uniform: about half of the draws below the geometric midpoint.
  assert 16 < np.sum(lr0 < 0.1) < 48
  _, again = reset(keys, params)
  np.testing.assert_array_equal(np.asarray(again.lr0), lr0)


@pytest.mark.parametrize("bad, message", [
    (dict(decision_schedule="often"), "decision_schedule"),
    (dict(decision_schedule="every", num_steps_range=(10, 20)),
     "num_steps_range"),
    (dict(num_steps_range=(3, 20)), "num_steps_range"),
    (dict(lr0_range=(0.1, 0.01)), "lr0_range"),
    (dict(slope_decay=1.0), "slope_decay"),
    (dict(reward="log_val_vs_reference"), "reference_steps=None"),
    (dict(reward="log_val_vs_reference", reference_steps=(0, 10),
          reference_log_val=(0.0, -1.0)), "at least the longest episode"),
    (dict(reward="log_val_vs_reference", reference_steps=(5, 100),
          reference_log_val=(0.0, -1.0)), "increasing inner steps from 0"),
    (dict(reward="log_val_vs_reference", reference_steps=(0, 100),
          reference_log_val=(0.0, float("nan"))), "finite"),
    (dict(reference_steps=(0, 100), reference_log_val=(0.0, -1.0)),
     "only 'log_val_vs_reference' reads a reference run"),
])
def test_bad_params_are_refused(bad, message):
  with pytest.raises(ValueError, match=message):
    _params(**bad)


def test_every_schedule_refuses_a_length(task):
  env = lr_env.LREnv(task, "daniel2016", "scale_free")
  params = _params(decision_schedule="every")
  with pytest.raises(ValueError, match="fraction"):
    env.reset_with_lr0(jax.random.PRNGKey(0), params, 0.1, 30)
