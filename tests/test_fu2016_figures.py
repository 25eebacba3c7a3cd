"""Tests of scripts/fu2016_figures.py: action pattern, replay, label parsing."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from script_loader import load_script  # tests/script_loader.py

ff = load_script("fu2016_figures")


def test_action_pattern_on_hand_made_trace():
  lr0 = 0.1
  # D D D R D D R R D: the LR used at each decision of an episode from lr0.
  lrs = [0.097, 0.09409, 0.0912673, 0.1, 0.097, 0.09409, 0.1, 0.1, 0.097]
  np.testing.assert_array_equal(ff.decode_actions(lrs, lr0),
                                [0, 0, 0, 1, 0, 0, 1, 1, 0])
  p = ff.action_pattern(lrs, lr0)
  assert p.actions == "DDDRDDRRD"
  assert p.num_restarts == 3
  assert p.num_decrease_runs == 3          # DDD, DD, D
  assert p.mean_run_length == pytest.approx(2.0)
  assert p.max_run_length == 3
  assert p.min_lr == pytest.approx(0.0912673)
  none = ff.action_pattern([0.1, 0.1], lr0)
  assert (none.num_decrease_runs, none.mean_run_length, none.max_run_length) == (
      0, 0.0, 0)


def test_action_pattern_bad_input():
  with pytest.raises(ValueError, match="lr0 must be > 0"):
    ff.decode_actions([0.1], 0.0)
  with pytest.raises(ValueError, match="1-D"):
    ff.decode_actions(np.ones((2, 2)), 0.1)


def test_parse_method_label():
  opt, spec = ff.parse_method_label(
      "sgd sgdr(lr=0.1, first_period=50, period_mult=2.0) (best of 3 by val "
      "loss)")
  assert opt == "sgd" and spec.name == "sgdr" and spec.init_lr == 0.1
  assert dict(spec.hyperparams) == {"first_period": 50, "period_mult": 2.0}
  opt, spec = ff.parse_method_label("adam constant(lr=0.001)")
  assert opt == "adam" and spec.label() == "constant(lr=0.001)"
  with pytest.raises(ValueError, match="Cannot parse baseline label"):
    ff.parse_method_label("DQN controller")


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(16,)),
                         batch_size=16, num_train_examples=300,
                         num_val_examples=100, num_test_examples=100)


def test_replay_of_env_episode_is_the_closed_loop_run(task):
  """Replaying the recorded LRs with env_optimizee_keys gives the same params."""
  env = lr_env.LREnv(task, "fu2016")
  k = 2
  p = env.default_params().with_fields(num_decisions=4, steps_per_decision=k,
                                       initial_lrs=(0.1,), num_val_examples=50,
                                       unroll=True)
  seeds = [3, 4]
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  # A fixed controller: decrease unless the LR is already below 0.095.
  act = lambda threshold, obs, c: ((obs[:, -1] < threshold).astype(jnp.int32),
                                   c)
  states, infos = rollout.run_episodes(env, p, act, 0.095, keys,
                                       strategy="chunk")
  lrs = np.asarray(infos["lr"])                        # (T, N)
  np.testing.assert_allclose(lrs[:, 0], [0.097, 0.09409, 0.1, 0.097],
                             rtol=1e-5)
  curves = ff.accuracy_curves(task, ff.env_optimizee_keys(seeds),
                              np.repeat(lrs.T, k, axis=1), eval_every=4,
                              num_examples=50)
  assert curves.train.shape == curves.test.shape == (2, 2)
  np.testing.assert_array_equal(curves.steps, [4, 8])
  assert np.all((curves.test >= 0) & (curves.test <= 1))
  assert ff._replay_error(curves.final_params, states.opt.params) < 1e-5
  # A different optimizee key is a different run: the check has teeth.
  other = ff.accuracy_curves(task, [jax.random.PRNGKey(s) for s in seeds],
                             np.repeat(lrs.T, k, axis=1), 4, 50)
  assert ff._replay_error(other.final_params, states.opt.params) > 1e-3


def test_accuracy_curves_bad_eval_every(task):
  with pytest.raises(ValueError, match="divisor"):
    ff.accuracy_curves(task, [jax.random.PRNGKey(0)], np.ones((1, 6)) * 0.1,
                       4, 10)


def test_accuracy_curves_count_diverged_runs(task):
  lrs = np.stack([np.full(4, 0.1), np.full(4, 1e6)])
  curves = ff.accuracy_curves(task, [jax.random.PRNGKey(0)] * 2, lrs, 4, 10)
  np.testing.assert_array_equal(curves.diverged, [False, True])
