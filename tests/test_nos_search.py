"""NOS search: batched scoring == separate scoring, divergence, PPO search
learns a toy reward, cache, sharding over 4 devices (checkpoint resume:
tests/test_search_optimizer.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta import nos
from lr_meta import tasks
from lr_meta.nos import controller as C
from lr_meta.rules import interpreter
from lr_meta.nos import search as S
from lr_meta.rules import vocabulary as voc

TINY = dict(model_kwargs=dict(hidden_sizes=(8,)), batch_size=16,
            num_train_examples=400, num_val_examples=100,
            sweep_train_examples=200, sweep_lrs=(0.01, 0.1, 1.0),
            sweep_steps=5, train_steps=10, min_reward=-1.0, num_groups=2,
            strategy="scan")
RULES = ["g", "log(g - g)", "exp(sign(g) * sign(m)) * g", "rmsprop"]


def test_batched_scores_equal_separate_scores_and_divergence(data_dir):
  batched = S.Scorer(S.ScoringConfig(batch_mode="vmap", **TINY))
  single = S.Scorer(S.ScoringConfig(batch_mode="sequential", **TINY))
  key = jax.random.PRNGKey(0)
  scores = batched.score(RULES, key)
  for i, rule in enumerate(RULES):
    alone = single.score([rule], key)
    np.testing.assert_allclose(alone.sweep_accuracy[0],
                               scores.sweep_accuracy[i], atol=1e-6)
    np.testing.assert_allclose(alone.reward[0], scores.reward[i], atol=1e-6)
    assert alone.learning_rate[0] == scores.learning_rate[i]
  # log|g - g| = -inf: every run diverges -> the minimum reward, and the
  # other rules of the batch are scored normally.
  np.testing.assert_array_equal(scores.diverged, [False, True, False, False])
  assert scores.reward[1] == -1.0
  assert np.all(scores.sweep_accuracy[1] == 0.0)
  assert np.all(scores.reward[[0, 2, 3]] >= 0.0)
  # the LR is the sweep's argmax
  np.testing.assert_array_equal(
      scores.learning_rate,
      np.asarray(TINY["sweep_lrs"], np.float32)[
          np.argmax(scores.sweep_accuracy, 1)])


def test_interpreter_training_matches_from_dsl_training(data_dir):
  """A rule trained through the batched interpreter == `from_dsl` + Task."""
  rule, lr, steps = "exp(sign(g) * sign(m)) * g", 0.1, 10
  base = tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(8,)),
                         batch_size=16, num_train_examples=400,
                         num_val_examples=100)
  key = jax.random.PRNGKey(3)
  ours = S.train_rules(S.rule_task(base, 2, steps),
                       interpreter.pad_programs([nos.parse(rule)], 2),
                       jnp.array([lr]), key[None], num_steps=steps,
                       batch_mode="sequential", strategy="scan")
  opt = optax.inject_hyperparams(
      lambda learning_rate: nos.from_dsl(rule, learning_rate,
                                         decay_steps=steps))(learning_rate=lr)
  ref_task = base.replace(optimizer=opt)
  state, _ = tasks.run_training(ref_task, key, jnp.full((steps,), lr),
                                eval_every=steps, strategy="scan")
  ref = ref_task.evaluate(state, "val")
  np.testing.assert_allclose(ours.loss[0], ref.loss, rtol=1e-5)
  np.testing.assert_allclose(ours.accuracy[0], ref.accuracy)


class ToyScorer:
  """Reward = share of unary slots holding `neg` (no training)."""

  def __init__(self, num_groups=2):
    self.config = S.ScoringConfig(num_groups=num_groups)
    self.calls, self.rules_scored = 0, 0

  def score(self, rules, key):
    del key
    self.calls += 1
    self.rules_scored += len(rules)
    programs = np.stack([nos.to_program(r) for r in rules])
    reward = np.mean(programs[:, :, 2:4] == voc.UN["neg"], axis=(1, 2))
    n = len(rules)
    return S.Scores(reward.astype(np.float32), np.ones(n, np.float32),
                    np.zeros((n, 1)), np.zeros(n, bool))


def _space():
  return C.make_search_space(2, operands=("g", "m", "v", "sign(g)"),
                             unary=("id", "neg", "exp", "sqrt", "sign"),
                             binary=("sub", "mul", "div"))


def test_search_learns_toy_reward_and_caches_duplicates():
  search = S.Search(_space(), S.RuleSearchPPOConfig(learning_rate=3e-3, batch_size=16),
                    ToyScorer(), seed=0)
  state = search.init()
  means = []
  for _ in range(40):
    state, record = search.step(state)
    means.append(record.mean_reward)
  # random unaries: neg with probability 1/5
  assert np.mean(means[:5]) < 0.35 and np.mean(means[-5:]) > 0.7, means
  # each distinct rule was scored exactly once; duplicates came from the cache
  sampled = 40 * 16
  assert len(search.cache) == sum(r.num_scored for r in search.history)
  assert len(search.cache) < sampled
  top = search.leaderboard(3)
  assert top[0]["reward"] >= top[1]["reward"] >= top[2]["reward"]
  nos.from_dsl(top[0]["rule"], top[0]["learning_rate"])   # usable as is


def test_sharded_rule_training_on_four_forced_cpu_devices(run_on_four_devices):
  run_on_four_devices("""
      import jax, jax.numpy as jnp, numpy as np
      from lr_meta import tasks
      from lr_meta import nos
      from lr_meta.nos import search as S
      from lr_meta.rules import interpreter
      assert jax.device_count() == 4
      base = tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(8,)),
                             batch_size=16, num_train_examples=400, num_val_examples=100)
      task = S.rule_task(base, 2, 8)
      rules = ["g", "log(g - g)", "exp(sign(g) * sign(m)) * g", "adam", "m", "g / v"]
      programs = interpreter.pad_programs([nos.parse(r) for r in rules], 2)
      lrs = jnp.array([0.1, 0.1, 0.1, 0.01, 0.3, 0.001])
      keys = jax.random.split(jax.random.PRNGKey(0), 6)
      out = S.train_rules(task, programs, lrs, keys, num_steps=8, batch_mode="sharded",
                          strategy="scan")
      ref = S.train_rules(task, programs, lrs, keys, num_steps=8, batch_mode="vmap",
                          strategy="scan")
      np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-5)
      np.testing.assert_array_equal(out.diverged, [False, True, False, False, False, False])
      print("OK")
  """, timeout=600)


def test_config_errors():
  with pytest.raises(ValueError, match="batch_mode='pmap'"):
    S.Scorer(S.ScoringConfig(batch_mode="pmap", **{**TINY}))
  with pytest.raises(ValueError, match="sweep_steps=0"):
    S.Scorer(S.ScoringConfig(**{**TINY, "sweep_steps": 0}))
  with pytest.raises(ValueError, match="num_groups=1 is smaller"):
    S.Search(_space(), S.RuleSearchPPOConfig(), ToyScorer(num_groups=1))
