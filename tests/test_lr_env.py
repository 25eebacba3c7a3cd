"""Tests of the learning-rate control environment (Xu 2019 / Fu 2016)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.features import lr_actions
from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.envs import rollout

os.environ.setdefault("LR_META_DATA_DIR", "/work/shared/datasets")


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp", batch_size=32,
                         num_train_examples=500, num_val_examples=200,
                         num_test_examples=200)


def _params(**kw):
  return lr_env.LREnvParams.from_fields(num_decisions=3, steps_per_decision=2,
                                        num_val_examples=100, **kw)


def test_xu_action_formula_by_hand():
  lr = 0.01
  for a, expected in [(0.15, 0.01), (0.5, 0.01 * 1.035), (-0.2, 0.01 * 0.965),
                      (2.0, 0.01 * 1.035), (-3.0, 0.01 * 0.965),
                      (0.25, 0.01 * 1.01)]:
    np.testing.assert_allclose(lr_actions.xu2019_lr_update(lr, a), expected,
                               rtol=1e-6)
  np.testing.assert_allclose(lr_actions.fu2016_lr_update(0.01, 0.1, 0), 0.0097,
                             rtol=1e-6)
  np.testing.assert_allclose(lr_actions.fu2016_lr_update(0.01, 0.1, 1), 0.1)


def test_reset_step_pure_and_deterministic(task):
  env = lr_env.LREnv(task)
  p = _params()
  reset = jax.jit(env.reset, static_argnums=1)
  step = jax.jit(env.step, static_argnums=3)
  key = jax.random.PRNGKey(3)
  obs1, s1 = reset(key, p)
  obs2, s2 = reset(key, p)
  assert obs1.shape == (env.observation_size,) == (9,)
  np.testing.assert_array_equal(obs1, obs2)
  assert np.isclose(np.asarray(p.initial_lrs), float(s1.lr0)).any()
  np.testing.assert_allclose(obs1[8], np.log10(s1.lr), rtol=1e-5)
  out1 = step(key, s1, jnp.array([0.5]), p)
  out2 = step(key, s1, jnp.array([0.5]), p)
  jax.tree.map(np.testing.assert_array_equal, out1, out2)
  obs, s, reward, term, trunc, info = out1
  np.testing.assert_allclose(s.lr, s1.lr * 1.035, rtol=1e-6)
  assert int(s.opt.step) == 2 and int(s.time) == 1
  np.testing.assert_allclose(reward, -(s.val_loss - s1.val_loss), rtol=1e-5)
  assert not bool(term) and not bool(trunc)
  # Input state untouched (pure): stepping again from s1 is identical.
  np.testing.assert_array_equal(step(key, s1, jnp.array([0.5]), p)[0], obs)


def test_rewards_by_hand(task):
  env = lr_env.LREnv(task)
  p_fixed = _params(reward="fixed_baseline", reward_baseline=2.0)
  p_change = _params()
  obs, s = jax.jit(env.reset, static_argnums=1)(jax.random.PRNGKey(0),
                                                p_change)
  vals, r_fixed, r_change = [float(s.val_loss)], [], []
  sc = sf = s
  step = jax.jit(env.step, static_argnums=3)
  key = jax.random.PRNGKey(0)
  for _ in range(3):
    _, sc, rc, *_ = step(key, sc, jnp.array([0.15]), p_change)
    _, sf, rf, *_ = step(key, sf, jnp.array([0.15]), p_fixed)
    vals.append(float(sc.val_loss))
    r_change.append(float(rc))
    r_fixed.append(float(rf))
  vals = np.array(vals)
  np.testing.assert_allclose(r_change, -(vals[1:] - vals[:-1]), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(r_fixed, 2.0 - vals[1:], rtol=1e-5)
  # Episode sum of 'val_loss_change' = total decrease of val loss.
  np.testing.assert_allclose(sum(r_change), vals[0] - vals[-1], rtol=1e-4,
                             atol=1e-5)


def test_divergence_terminates_with_penalty_vmapped(task):
  env = lr_env.LREnv(task)
  p = _params(initial_lrs=(1e-2,), divergence_penalty=-7.0)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  obs, s = jax.jit(jax.vmap(env.reset, in_axes=(0, None)),
                   static_argnums=1)(keys, p)
  step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)),
                 static_argnums=3)
  a = jnp.full((2, 1), 0.15)
  _, _, r_ok, term_ok, _, _ = step(keys, s, a, p)
  assert not bool(term_ok.any())
  # Member 0 gets an absurd LR: it diverges; member 1 must not notice.
  s = s.replace(lr=s.lr.at[0].set(1e12))
  obs1, s1, r1, term1, _, _ = step(keys, s, a, p)
  assert bool(term1[0]) and not bool(term1[1])
  assert float(r1[0]) == -7.0
  np.testing.assert_allclose(r1[1], r_ok[1], rtol=1e-6, atol=1e-8)
  # Absorbing: same obs, reward 0, still terminated.
  obs2, s2, r2, term2, _, _ = step(keys, s1, a, p)
  np.testing.assert_array_equal(obs2[0], obs1[0])
  assert float(r2[0]) == 0.0 and bool(term2[0])
  assert int(s2.time[0]) == int(s1.time[0])


def test_fu2016_env(task):
  env = lr_env.LREnv(task, "fu2016")
  assert env.num_actions == 2 and env.observation_size == 193
  p = env.default_params().with_fields(num_decisions=2, steps_per_decision=2,
                                       initial_lrs=(0.1,), num_val_examples=200)
  obs, s = jax.jit(env.reset, static_argnums=1)(jax.random.PRNGKey(0), p)
  assert obs.shape == (193,)
  step = jax.jit(env.step, static_argnums=3)
  key = jax.random.PRNGKey(0)
  obs1, s1, r, *_ = step(key, s, 0, p)
  np.testing.assert_allclose(s1.lr, 0.097, rtol=1e-6)
  np.testing.assert_allclose(
      r, -(np.log(s1.train_loss) - np.log(s.train_loss)), rtol=1e-5)
  np.testing.assert_allclose(obs1[-1], 0.097, rtol=1e-6)
  _, s2, *_ = step(key, s1, 1, p)
  np.testing.assert_allclose(s2.lr, 0.1, rtol=1e-6)


def test_bad_values(task):
  with pytest.raises(ValueError, match="action_type"):
    lr_env.LREnv(task, "nope")
  with pytest.raises(ValueError, match="env.reward"):
    _params(reward="bogus").check()
  with pytest.raises(ValueError, match="env.num_decisions"):
    lr_env.LREnvParams.from_fields(num_decisions=-1).check()


def test_run_episodes_unrolled_matches_single_scan(task):
  env = lr_env.LREnv(task)
  p = _params()
  act = lambda a, obs, c: (jnp.full(obs.shape[:-1] + (1,), a), c)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  s1, i1 = rollout.run_episode(env, p, act, 0.3, keys[1], strategy="scan")
  s2, i2 = rollout.run_episodes(env, p.replace(unroll=True), act, 0.3, keys,
                                strategy="chunk")
  assert i2["lr"].shape == (3, 2) and i1["lr"].shape == (3,)
  np.testing.assert_allclose(i1["val_loss"], i2["val_loss"][:, 1], rtol=1e-5)
