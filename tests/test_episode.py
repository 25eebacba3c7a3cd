"""Execution strategies agree, batches equal single runs, divergence is isolated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import baselines
from lr_meta import tasks


@pytest.fixture(scope="module")
def mlp_task():
  return tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(32,)),
                         batch_size=32, num_train_examples=800, num_val_examples=200)


@pytest.fixture(scope="module")
def lenet_task(data_dir):
  return tasks.make_task("fashion_mnist", "lenet5", batch_size=16,
                         num_train_examples=500, num_val_examples=100,
                         data_dir=data_dir)


def _max_param_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in
             zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))


@pytest.mark.parametrize("task_name", ["mlp_task", "lenet_task"])
def test_every_strategy_matches_python_loop_reference(task_name, request):
  task = request.getfixturevalue(task_name)
  lrs = jnp.linspace(0.1, 0.02, 12)
  key = jax.random.key(3)
  ref_state, ref = tasks.run_training(task, key, lrs, eval_every=4, strategy="loop")
  for strategy in ("chunk", "scan"):
    state, m = tasks.run_training(task, key, lrs, eval_every=4, strategy=strategy)
    assert _max_param_diff(state, ref_state) < 1e-5
    np.testing.assert_allclose(m.train.loss, ref.train.loss, rtol=1e-5)
    np.testing.assert_allclose(m.val.loss, ref.val.loss, rtol=1e-5)
  assert ref.train.loss.shape == (12,) and ref.val.loss.shape == (3,)


def test_training_reduces_loss(mlp_task):
  _, m = tasks.run_training(mlp_task, jax.random.key(0), jnp.full((200,), 0.1),
                            eval_every=50, strategy="scan")
  # Chance level is log(10) = 2.303 at initialisation.
  assert m.val.loss[-1] < 0.85 * np.log(10)


@pytest.mark.parametrize("batch_mode", ["vmap", "sequential"])
@pytest.mark.parametrize("strategy", ["scan", "chunk", "loop"])
def test_batched_runs_equal_individual_and_divergence_is_isolated(mlp_task, batch_mode, strategy):
  keys = jax.random.split(jax.random.key(1), 3)
  lrs = jnp.stack([jnp.full((8,), 0.05), jnp.full((8,), 1e9), jnp.full((8,), 0.2)])
  states, m = tasks.run_training_batch(mlp_task, keys, lrs, eval_every=4,
                                       strategy=strategy, batch_mode=batch_mode)
  np.testing.assert_array_equal(states.diverged, [False, True, False])
  assert float(m.val.loss[1, -1]) == mlp_task.divergence_loss
  assert np.all(np.isfinite(np.asarray(m.train.loss)))
  for r in (0, 2):   # the healthy runs are exactly what they are alone
    single, sm = tasks.run_training(mlp_task, keys[r], lrs[r], eval_every=4, strategy=strategy)
    np.testing.assert_allclose(m.val.loss[r], sm.val.loss, rtol=1e-5)
    assert _max_param_diff(jax.tree.map(lambda x: x[r], states), single) < 1e-5


def test_evaluate_batch_equals_evaluating_each_run(mlp_task):
  keys = jax.random.split(jax.random.key(2), 3)
  lrs = jnp.stack([jnp.full((6,), 0.05), jnp.full((6,), 1e9),
                   jnp.full((6,), 0.2)])
  states, _ = tasks.run_training_batch(mlp_task, keys, lrs, eval_every=6)
  got = tasks.evaluate_batch(mlp_task, states, "test")
  for r in range(3):
    one = mlp_task.evaluate(jax.tree.map(lambda x: x[r], states), "test")
    np.testing.assert_allclose(got.loss[r], one.loss, rtol=1e-5)
    np.testing.assert_allclose(got.accuracy[r], one.accuracy, rtol=1e-6)
  assert float(got.loss[1]) == mlp_task.divergence_loss   # the diverged run


def test_nan_from_the_start_is_flagged_not_raised(mlp_task):
  state, m = tasks.run_training(mlp_task, jax.random.key(0), jnp.full((4,), jnp.nan),
                                eval_every=4, strategy="scan")
  assert bool(state.diverged)
  assert float(m.val.loss[-1]) == mlp_task.divergence_loss


def test_bad_arguments(mlp_task):
  with pytest.raises(ValueError, match="eval_every=.*allowed: a positive divisor"):
    tasks.run_training(mlp_task, jax.random.key(0), jnp.ones(10), eval_every=3)
  with pytest.raises(ValueError, match="Unknown execution strategy 'fast'"):
    tasks.run_training(mlp_task, jax.random.key(0), jnp.ones(10), strategy="fast")
  with pytest.raises(ValueError, match="Unknown batch_mode"):
    tasks.run_training_batch(mlp_task, jax.random.split(jax.random.key(0), 2),
                             jnp.ones((2, 10)), batch_mode="pmap")


def test_sweep_picks_known_best(mlp_task):
  # On this task a tiny LR barely moves and a huge one diverges: among
  # {1e-5, 0.1, 1e6} the answer is known to be 0.1.
  specs = baselines.grid("constant", [1e-5, 0.1, 1e6])
  result = baselines.sweep(mlp_task, specs, 40, eval_every=10)
  assert result.best.init_lr == 0.1
  assert result.val_loss[2] == mlp_task.divergence_loss
  res = baselines.evaluate_on_seeds(mlp_task, result.best, 40, num_seeds=3, eval_every=10)
  assert res.test_loss.shape == (3,) and not res.diverged.any()
  assert len(set(np.round(res.test_loss, 6))) == 3   # fresh, different seeds
  # Ranked on the whole val split even when the curves use a 3-example probe.
  small = baselines.sweep(mlp_task, specs[:2], 40, eval_every=10,
                          num_val_examples=3)
  keys = jax.vmap(jax.random.key)(jnp.zeros(2, jnp.int32))
  lrs = jnp.asarray(np.stack([sp.sequence(40) for sp in specs[:2]]))
  states, _ = tasks.run_training_batch(mlp_task, keys, lrs, eval_every=10)
  np.testing.assert_allclose(
      small.val_loss, tasks.evaluate_batch(mlp_task, states, "val").loss,
      rtol=1e-5)


def test_schedules_by_hand():
  np.testing.assert_allclose(baselines.step_decay(5, 1.0, every=2, factor=0.5),
                             [1, 1, 0.5, 0.5, 0.25])
  np.testing.assert_allclose(baselines.cosine(4, 2.0), [2.0, 1 + np.cos(np.pi / 4),
                                                        1.0, 1 + np.cos(3 * np.pi / 4)],
                             rtol=1e-6)
  np.testing.assert_allclose(baselines.sgdr(6, 1.0, first_period=2, period_mult=2.0),
                             np.concatenate([baselines.cosine(2, 1.0), baselines.cosine(4, 1.0)]))
  np.testing.assert_allclose(baselines.linear(4, 1.0), [1, 0.75, 0.5, 0.25])
  # 2 warm-up steps (0.25 * 8), then the 6-step cosine from the peak 2.0.
  np.testing.assert_allclose(
      baselines.warmup_cosine(8, 2.0, warmup_fraction=0.25),
      [1.0, 2.0] + [1 + np.cos(np.pi * t / 6) for t in range(6)], rtol=1e-6)
  assert len(baselines.xu2019_step_decay_grid()) == 48
  with pytest.raises(ValueError, match="Unknown schedule 'exp'"):
    baselines.make_schedule("exp", 10, 0.1)


def test_sharded_runs_on_four_forced_cpu_devices(run_on_four_devices):
  run_on_four_devices("""
      import jax, jax.numpy as jnp, numpy as np
      from lr_meta import tasks
      assert jax.device_count() == 4
      task = tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(16,)),
                             batch_size=16, num_train_examples=400, num_val_examples=100)
      keys = jax.random.split(jax.random.key(0), 4)
      lrs = jnp.stack([jnp.full((8,), lr) for lr in (0.01, 0.1, 1e9, 0.3)])
      s, m = tasks.run_training_batch(task, keys, lrs, eval_every=4, strategy="scan",
                                      batch_mode="sharded")
      assert len(m.val.loss.sharding.device_set) == 4, m.val.loss.sharding
      v, mv = tasks.run_training_batch(task, keys, lrs, eval_every=4, strategy="scan",
                                       batch_mode="vmap")
      np.testing.assert_allclose(m.val.loss, mv.val.loss, rtol=1e-5)
      np.testing.assert_array_equal(s.diverged, [False, False, True, False])
      print("OK")
  """)


def test_parse_spec_inverts_label_and_rejects_bad_text():
  spec = baselines.ScheduleSpec("step_decay", 0.1, (("every", 50), ("factor", 0.99)))
  assert baselines.parse_spec(spec.label()) == spec
  assert baselines.parse_spec("cosine(lr=0.3)") == baselines.ScheduleSpec("cosine", 0.3)
  for bad, match in [("cosine", "expected e.g."), ("warp(lr=1)", "Unknown schedule 'warp'"),
                     ("cosine(every=3)", "needs lr"), ("step_decay(lr=0.1, every=x)", "Bad value"),
                     ("step_decay(lr=0.1, every=0, factor=0.5)", "positive integer")]:
    with pytest.raises(ValueError, match=match):
      baselines.parse_spec(bad)


def test_parse_baseline_grids_fixed_specs_and_optimizers():
  xu = baselines.parse_baseline("xu2019_step_decay")
  assert xu.optimizer is None and xu.tuned and len(xu.specs) == 48
  fixed = baselines.parse_baseline("step_decay(lr=0.1, every=50, factor=0.99)")
  assert not fixed.tuned and fixed.specs[0].sequence(101)[100] == pytest.approx(0.1 * 0.99**2)
  adam = baselines.parse_baseline("adam:constant", grid_lrs=(0.1,))
  assert adam.optimizer == "adam"
  assert [s.init_lr for s in adam.specs] == list(baselines.ADAPTIVE_GRID_LRS)
  assert [s.init_lr for s in baselines.parse_baseline("cosine", (0.2, 0.1)).specs] == [0.2, 0.1]
  with pytest.raises(ValueError, match="Unknown baseline grid 'nope'"):
    baselines.parse_baseline("nope")
