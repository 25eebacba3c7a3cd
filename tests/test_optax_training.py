"""lr_meta.tasks.optax_training: any optax transform trains a Task."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta import tasks
from lr_meta.benchmark import harness
from lr_meta.tasks import optax_training as ot

T, E = 20, 10


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp", {"hidden_sizes": (16,)}, "momentum",
                         batch_size=16, num_train_examples=256,
                         num_val_examples=64, num_test_examples=64)


def _lrs(peak=0.1):
  return np.linspace(peak, peak / 10, T).astype(np.float32)


@pytest.mark.parametrize("strategy", ["scan", "chunk", "loop"])
def test_scheduled_optimizer_equals_run_training(task, strategy):
  key = jax.random.key(7)
  state, metrics = tasks.run_training(task, key, _lrs(), eval_every=E,
                                      strategy="scan")
  program = ot.ScheduledOptimizer("momentum")
  s, r = ot.run(task, program, {"learning_rates": _lrs()}, key, T,
                eval_every=E, strategy=strategy, chunk_steps=5)
  np.testing.assert_allclose(r.train.loss, metrics.train.loss, rtol=1e-6)
  np.testing.assert_allclose(r.train.learning_rate, _lrs(), rtol=1e-7)
  np.testing.assert_allclose(r.val.loss, metrics.val.loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               s.params, state.params)
  final = tasks.evaluate_batch(task, jax.tree.map(lambda x: x[None], state),
                               "test")
  np.testing.assert_allclose(r.test.loss, final.loss[0], rtol=1e-5)


def test_batch_modes_agree_and_a_diverged_run_is_isolated(task):
  program = ot.ScheduledOptimizer("momentum")
  hps = {"learning_rates": np.stack([_lrs(), _lrs(1e4)])}
  keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
  outs = {mode: ot.run_batch(task, program, hps, keys, T, eval_every=E,
                             batch_mode=mode)
          for mode in ("sequential", "vmap")}
  states, r = outs["sequential"]
  np.testing.assert_allclose(outs["vmap"][1].train.loss, r.train.loss,
                             rtol=1e-5)
  assert not bool(states.diverged[0]) and bool(states.diverged[1])
  # The diverged run reports the capped loss from its first bad step on,
  # keeps finite (frozen) parameters and scores the worst test loss.
  div = np.asarray(r.train.diverged[1])
  assert div[-1] and np.all(np.asarray(r.train.loss[1])[div] ==
                            task.divergence_loss)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(states.params))
  assert float(r.test.loss[1]) == task.divergence_loss
  assert float(r.test.accuracy[1]) == 0.0
  # The healthy run equals the same run alone.
  _, alone = ot.run(task, program, {"learning_rates": _lrs()}, keys[0], T,
                    eval_every=E)
  np.testing.assert_allclose(r.val.loss[0], alone.val.loss, rtol=1e-6)


def _loss_recorder():
  """A transformation whose state is the loss it was given (SGD at 0.1)."""
  def init(params):
    del params
    return jnp.zeros((), jnp.float32)

  def update(updates, state, params=None, *, loss):
    del state, params
    return jax.tree.map(lambda g: -0.1 * g, updates), loss
  return optax.GradientTransformationExtraArgs(init, update)


@dataclasses.dataclass(frozen=True)
class _Recorder(ot.Program):
  def optimizer(self, hp):
    return _loss_recorder()

  def extra_args(self, task, hp, state, loss):
    return {"loss": loss}

  def learning_rate(self, hp, opt_state):
    return opt_state      # the recorded loss, to read it back


@dataclasses.dataclass(frozen=True)
class _ZeroEval(ot.Program):
  def optimizer(self, hp):
    return optax.sgd(0.1)

  def eval_params(self, hp, opt_state, params):
    return jax.tree.map(jnp.zeros_like, params)


def test_extra_args_and_eval_params_reach_optax(task):
  state = ot.init(task, _Recorder(), {}, jax.random.key(0))
  state, m = ot.train_step(task, _Recorder(), {}, state)
  assert float(m.learning_rate) == pytest.approx(float(m.loss))
  # All-zero parameters give uniform logits: loss ln(10) on any split.
  state = ot.init(task, _ZeroEval(), {}, jax.random.key(0))
  ev = ot.evaluate(task, _ZeroEval(), {}, state, "test")
  assert float(ev.loss) == pytest.approx(math.log(10), rel=1e-6)
  assert float(task.evaluate(state, "test").loss) != pytest.approx(
      math.log(10), rel=1e-3)
  assert math.isnan(float(_ZeroEval().learning_rate({}, None)))


def test_one_compile_for_a_whole_lr_grid(task):
  counter = harness.compile_counter()
  program = ot.ScheduledOptimizer("momentum", (("nesterov", True),))
  before = counter.snapshot()
  for peak in (0.3, 0.1, 0.03):
    ot.run(task, program, {"learning_rates": _lrs(peak)}, jax.random.key(0),
           T, eval_every=E, strategy="scan")
  assert counter.snapshot()[1] - before[1] == 1


def test_bad_arguments_are_named(task):
  program = ot.ScheduledOptimizer("momentum")
  hp = {"learning_rates": _lrs()}
  with pytest.raises(ValueError, match="eval_every=7"):
    ot.run(task, program, hp, jax.random.key(0), T, eval_every=7)
  with pytest.raises(ValueError, match="chunk_steps=0"):
    ot.run(task, program, hp, jax.random.key(0), T, eval_every=E,
           strategy="chunk", chunk_steps=0)
  with pytest.raises(ValueError, match="Unknown batch_mode 'pmap'"):
    ot.run_batch(task, program, {"learning_rates": np.stack([_lrs()] * 2)},
                 jnp.stack([jax.random.key(0)] * 2), T, eval_every=E,
                 batch_mode="pmap")
  with pytest.raises(ValueError, match="Unknown execution strategy"):
    ot.run(task, program, hp, jax.random.key(0), T, eval_every=E,
           strategy="fast")
  with pytest.raises(ValueError, match="leading run axis of len"):
    ot.run_batch(task, program, {"learning_rates": np.stack([_lrs()] * 3)},
                 jnp.stack([jax.random.key(0)] * 2), T, eval_every=E)
  with pytest.raises(ValueError, match="Unknown optimizer 'lamb'"):
    ot.ScheduledOptimizer("lamb")


def test_a_traced_hyperparameter_equals_the_same_value_fixed(task):
  """``hp['weight_decay']`` (one program for a whole decay grid) trains as
  ``optimizer_kwargs`` with the same value, numpy scalar or not."""
  hp = {"learning_rates": _lrs(1e-3)}
  fixed = ot.run(task, ot.ScheduledOptimizer("adamw", (("weight_decay",
                                                         0.1),)),
                 hp, jax.random.key(0), T, eval_every=E, strategy="scan")
  for value in (np.float32(0.1), np.asarray(0.1, np.float32), 0.1):
    traced = ot.run(task, ot.ScheduledOptimizer("adamw"),
                    dict(hp, weight_decay=value), jax.random.key(0), T,
                    eval_every=E, strategy="scan")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                         atol=1e-7),
                 traced[0].params, fixed[0].params)
  with pytest.raises(ValueError, match=r"\['weight_decay'\] given both"):
    ot.init(task, ot.ScheduledOptimizer("adamw", (("weight_decay", 0.1),)),
            dict(hp, weight_decay=0.1), jax.random.key(0))


def test_chunks_that_do_not_divide_a_segment_give_the_scan_numbers(task):
  """A segment of 10 steps in pieces of 3 runs 3 + 3 + 3 + 1 steps."""
  program = ot.ScheduledOptimizer("momentum")
  hp = {"learning_rates": _lrs()}
  _, ref = ot.run(task, program, hp, jax.random.key(4), T, eval_every=E,
                  strategy="scan")
  _, r = ot.run(task, program, hp, jax.random.key(4), T, eval_every=E,
                strategy="chunk", chunk_steps=3)
  assert r.train.loss.shape == (T,) and r.val.loss.shape == (T // E,)
  np.testing.assert_allclose(r.train.loss, ref.train.loss, rtol=1e-6)
  np.testing.assert_allclose(r.test.loss, ref.test.loss, rtol=1e-6)


def test_task_optimizer_is_task_train_step_and_writes_hyperparams(task):
  """``TaskOptimizer`` is ``Task.init`` + ``Task.train_step`` at
  ``learning_rates[t]``, step by step, and writes other ``hp`` entries into
  the optimizer's hyperparameters; without final evaluations it returns
  None for them."""
  lrs = _lrs()
  key = jax.random.key(5)
  state, r = ot.run(task, ot.TaskOptimizer(), {"learning_rates": lrs}, key, T,
                    eval_every=E, strategy="scan", final_eval=False)
  assert r.final_val is None and r.test is None
  ref = task.init(key, lrs[0])
  step = jax.jit(tasks.Task.train_step)
  losses = []
  for t in range(T):
    ref, m = step(task, ref, lrs[t])
    losses.append(float(m.loss))
  np.testing.assert_allclose(r.train.loss, losses, rtol=1e-6)
  np.testing.assert_allclose(r.train.learning_rate, lrs)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               state.params, ref.params)
  s0 = ot.init(task, ot.TaskOptimizer(),
               {"learning_rates": lrs, "momentum": 0.5}, key)
  assert float(s0.opt_state.hyperparams["momentum"]) == 0.5
  with pytest.raises(ValueError, match=r"\['beta'\] are not hyperparameters"):
    ot.init(task, ot.TaskOptimizer(), {"learning_rates": lrs, "beta": 0.5},
            key)


def test_sharded_programs_on_four_forced_cpu_devices(run_on_four_devices):
  """'sharded' splits the runs of any program over a mesh (padded to its
  size) and gives the numbers of 'vmap'; a mesh of one process is the same
  code path as a mesh of many (tests/test_distributed.py runs those)."""
  run_on_four_devices("""
      import jax, jax.numpy as jnp, numpy as np
      from lr_meta import tasks
      from lr_meta.tasks import optax_training as ot
      assert jax.device_count() == 4
      task = tasks.make_task("mnist1d", "mlp", {"hidden_sizes": (16,)}, "adam",
                             batch_size=16, num_train_examples=256,
                             num_val_examples=64, num_test_examples=64)
      keys = jax.random.split(jax.random.key(0), 3)
      hps = {"learning_rates": jnp.stack([jnp.full((8,), lr)
                                          for lr in (1e-3, 1e9, 1e-2)])}
      prog = ot.ScheduledOptimizer("adamw")
      out = {(mode, strategy): ot.run_batch(
                 task, prog, hps, keys, 8, eval_every=4, strategy=strategy,
                 batch_mode=mode)
             for mode, strategy in (("sharded", "scan"), ("vmap", "scan"),
                                    ("sharded", "chunk"))}
      ref = out["vmap", "scan"][1]
      for strategy in ("scan", "chunk"):
        s, r = out["sharded", strategy]
        assert r.val.loss.shape == (3, 2), r.val.loss.shape
        np.testing.assert_allclose(r.test.loss, ref.test.loss, rtol=1e-5)
        np.testing.assert_array_equal(s.diverged, [False, True, False])
      print("OK")
  """)
