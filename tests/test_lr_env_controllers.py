"""LREnv action types 'daniel2016' (REPS step-size control) and 'xu2017'.

Expectations are recomputed independently: per-example gradients by
``vmap(grad)`` (the oracle, not the jvp of the env), the smoothing recursion
in numpy, the reward from the logged losses.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.features import per_example
import per_example_reference as reference  # tests/per_example_reference.py

os.environ.setdefault("LR_META_DATA_DIR", "/work/shared/datasets")

GAMMA = 0.7


def _task(optimizer):
  return tasks.make_task("mnist1d", "mlp", optimizer=optimizer,
                         batch_size=16, num_train_examples=300,
                         num_val_examples=100, num_test_examples=100)


@pytest.fixture(scope="module")
def task():
  return _task("sgd")


def _params(env, **kw):
  kw.setdefault("initial_lrs", (0.05,))
  return env.default_params().with_fields(
      num_decisions=2, steps_per_decision=2, num_val_examples=50,
      per_example_decay=GAMMA, **kw)


def _reference_step(task, opt, lr, subset=None):
  """task.train_step plus phi from the vmap(grad) oracle.

  With ``subset = m``, phi1 is the variance over the batch's first m
  examples only and phi2 still over the whole batch.
  """
  _, batch_key, _ = jax.random.split(opt.key, 3)
  x, y = task.sample_batch(batch_key)

  def example_loss(p, xi, yi):
    logits, _ = task.apply(p, opt.batch_stats, xi[None])
    return tasks.cross_entropy(logits, yi[None])[0]
  grads = reference.per_example_grads(example_loss, opt.params, x, y)
  losses = jax.vmap(example_loss, (None, 0, 0))(opt.params, x, y)
  new, m = task.train_step(opt, lr)
  dw = jax.tree.map(lambda a, b: a - b, new.params, opt.params)
  derivs = reference.directional_derivatives_from_grads(grads, dw)
  phi = jnp.stack([jnp.log(jnp.var(derivs[:subset])),
                   jnp.log(jnp.var(losses))])
  return new, m.loss, phi


def _smooth(phis, gamma):
  """Daniel 2016 smoothing with bias correction, written out in numpy."""
  m = np.zeros(2)
  u = np.zeros(2)
  for t, phi in enumerate(phis):
    prev_bar = m / (1 - gamma**t) if t else None
    dev = phi - prev_bar if t else np.zeros(2)
    m = gamma * m + (1 - gamma) * phi
    u = gamma * u + (1 - gamma) * dev**2
  n = len(phis)
  return np.concatenate([m / (1 - gamma**n), u / (1 - gamma**n)])


def test_lr_updates_by_hand():
  np.testing.assert_allclose(lr_actions.daniel2016_lr_update(0.01, 0.3),
                             0.01 * np.exp(0.3), rtol=1e-6)
  np.testing.assert_allclose(lr_actions.daniel2016_lr_update(0.01, 7.0),
                             0.01 * np.exp(0.5), rtol=1e-6)
  np.testing.assert_allclose(lr_actions.daniel2016_lr_update(0.01, -7.0),
                             0.01 * np.exp(-0.5), rtol=1e-6)
  np.testing.assert_allclose(lr_actions.daniel2016_lr_update(9.0, 0.5),
                             lr_actions.LR_MAX)
  np.testing.assert_allclose(lr_actions.xu2017_lr_update(1.0, -2.0), 0.01,
                             rtol=1e-6)
  np.testing.assert_allclose(lr_actions.xu2017_lr_update(0.5, -9.0), 0.5e-4,
                             rtol=1e-5)
  np.testing.assert_allclose(lr_actions.xu2017_lr_update(0.01, 3.0), 1.0,
                             rtol=1e-6)


@pytest.mark.parametrize("optimizer,subset", [("sgd", None),
                                             ("rmsprop", None), ("sgd", 5)])
def test_daniel_obs_reward_against_oracle(optimizer, subset):
  task = _task(optimizer)
  env = lr_env.LREnv(task, "daniel2016")
  assert env.observation_size == 4 and env.action_shape == (1,)
  p = _params(env, per_example_subset=subset)
  assert p.reward == "mean_log_train_loss_change"
  key = jax.random.PRNGKey(5)
  obs0, s0 = jax.jit(env.reset, static_argnums=1)(key, p)
  np.testing.assert_array_equal(obs0, np.zeros(4))   # no step taken yet
  step = jax.jit(env.step, static_argnums=3)
  actions = [0.3, -0.2]
  obs, s = obs0, s0
  out = []
  for a in actions:
    obs, s, reward, term, _, info = step(key, s, jnp.array([a]), p)
    out.append((obs, s, reward, info))
    assert not bool(term)

  ref_step = jax.jit(_reference_step, static_argnums=3)
  # Independent replay: the same optimizee steps, features by the oracle.
  lr, opt, phis = 0.05, s0.opt, []
  e_prev = float(s0.train_loss)
  for a, (obs_t, s_t, reward_t, info_t) in zip(actions, out):
    lr = lr * np.exp(a)
    losses = []
    for _ in range(2):
      opt, loss, phi = ref_step(task, opt, lr, subset)
      losses.append(float(loss))
      phis.append(np.asarray(phi, np.float64))
    e_t = np.mean(losses)
    np.testing.assert_allclose(s_t.lr, lr, rtol=1e-5)
    np.testing.assert_allclose(obs_t, _smooth(phis, GAMMA), rtol=2e-3,
                               atol=2e-3)
    np.testing.assert_allclose(reward_t, -(np.log(e_t) - np.log(e_prev)) / 2,
                               rtol=1e-4, atol=1e-6)
    # The validation set is not touched by this reward/observation.
    np.testing.assert_allclose(info_t["val_loss"], s0.val_loss)
    e_prev = e_t
  # Same optimizee (RMSProp's rsqrt fuses differently: ~1e-6 apart).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               opt.params, out[-1][1].opt.params)


def test_daniel_deterministic_and_episode_return(task):
  env = lr_env.LREnv(task, "daniel2016")
  p = _params(env).with_fields(num_decisions=3)
  act = lambda a, obs, c: (jnp.full((obs.shape[0], 1), a), c)
  keys = jnp.stack([jax.random.PRNGKey(i) for i in range(2)])
  s1, i1 = rollout.run_episodes(env, p, act, 0.1, keys)
  # Unrolled ('chunk') == scan; lr0s equal to the drawn lr0 change nothing.
  s3, i3 = rollout.run_episodes(env, p.replace(unroll=True), act, 0.1, keys,
                                strategy="chunk",
                                lr0s=jnp.array([0.05, 0.05]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6), i1, i3)
  # The return telescopes to -(log E_T - log E_0) / T.
  _, s0 = jax.vmap(env.reset, in_axes=(0, None))(keys, p)
  ret = np.sum(np.asarray(i1["reward"]), 0)
  expected = -(np.log(i1["train_loss"][-1]) - np.log(s0.train_loss)) / 3
  np.testing.assert_allclose(ret, expected, rtol=1e-4)
  np.testing.assert_allclose(i1["lr"][-1], 0.05 * np.exp(0.3), rtol=1e-5)


def test_xu2017_observations_compose_the_feature_library(task):
  key = jax.random.PRNGKey(2)
  lr0 = 0.05
  xu19 = lr_env.LREnv(task, "xu2019")
  both = lr_env.LREnv(task, "xu2017", observation="dynamics+per_example")
  pe = lr_env.LREnv(task, "xu2017", observation="per_example")
  assert (lr_env.LREnv(task, "xu2017").observation_size, both.observation_size,
          pe.observation_size) == (9, 13, 4)
  assert (both.action_low, both.action_high) == (
      lr_actions.XU2017_LOG10_LR_LOW, lr_actions.XU2017_LOG10_LR_HIGH)
  # Same LR everywhere: xu2019 keeps it with a = 0.15, xu2017 with a = 0
  # (relative to lr0), daniel with a = 0.
  progress = lr_env.LREnv(task, "xu2019", observation="dynamics+progress")
  assert progress.observation_size == 10
  runs = [(xu19, 0.15), (both, 0.0), (pe, 0.0), (progress, 0.15)]
  obs = []
  for env, a in runs:
    p = _params(env, reward="val_loss_change")
    _, s = env.reset(key, p)
    step = jax.jit(env.step, static_argnums=3)
    out = step(key, s, jnp.array([a]), p)
    # Pure and deterministic: the same inputs give the same outputs.
    jax.tree.map(np.testing.assert_array_equal, out,
                 step(key, s, jnp.array([a]), p))
    o, s = out[0], out[1]
    np.testing.assert_allclose(s.lr, lr0, rtol=1e-5)
    obs.append(np.asarray(o))
  np.testing.assert_allclose(obs[1][:9], obs[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(obs[1][9:], obs[2], rtol=1e-4, atol=1e-5)
  # The progress feature: the same 9 numbers, then 1 decision of T = 2.
  np.testing.assert_allclose(obs[3][:9], obs[0], rtol=1e-6)
  assert obs[3][9] == 0.5
  np.testing.assert_array_equal(observation_lib.progress_feature(
      jnp.arange(4), 2), [0.0, 0.5, 1.0, 1.0])
  np.testing.assert_allclose(
      lr_actions.xu2017_lr_update(lr0, -1.0), lr0 / 10, rtol=1e-6)


def test_divergence_keeps_observation_finite(task):
  env = lr_env.LREnv(task, "xu2017", observation="per_example")
  p = _params(env, initial_lrs=(0.1,))
  _, s = env.reset(jax.random.PRNGKey(0), p)
  o, s, r, term, *_ = env.step(jax.random.PRNGKey(0), s,
                               jnp.array([lr_actions.XU2017_LOG10_LR_HIGH]), p)
  if not bool(term):   # force it if lr0 * 100 survived 2 steps
    s = s.replace(opt=s.opt.replace(diverged=jnp.bool_(True)))
    o, s, r, term, *_ = env.step(jax.random.PRNGKey(0), s,
                                 jnp.array([0.0]), p)
  assert bool(term) and float(r) == p.divergence_penalty
  assert np.all(np.isfinite(o))


def test_bad_values(task):
  with pytest.raises(ValueError, match="observation='weight_stats'.*xu2017"):
    lr_env.LREnv(task, "xu2017", observation="weight_stats")
  with pytest.raises(ValueError, match="observation='dynamics'.*daniel2016"):
    lr_env.LREnv(task, "daniel2016", observation="dynamics")
  with pytest.raises(ValueError, match="action_type='reps'"):
    lr_env.LREnv(task, "reps")
  with pytest.raises(ValueError, match="per_example_decay=1.0"):
    lr_env.LREnvParams.from_fields(per_example_decay=1.0).check("daniel2016")
  with pytest.raises(ValueError, match="per_example_subset=1;"):
    lr_env.LREnvParams.from_fields(per_example_subset=1).check("daniel2016")
  with pytest.raises(ValueError, match=r"probe_examples=17.*batch_size=16"):
    task.train_step_with_probe(task.init(jax.random.PRNGKey(0)), 0.1,
                               per_example.predicted_change_features,
                               probe_examples=17)
