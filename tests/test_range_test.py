"""An LR range test folded into the warm-up, then a controller
(lr_meta.optax.range_tested): the sweep against a NumPy reference, the
hand-over to ``controlled``, the probe held back, divergence, bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo
from lr_meta.features import range_sweep
from lr_meta.optax._src.range_test import sweep_lr

# f(w) = 0.5 sum(h w^2): SGD diverges above LR 2 / max(h) = 0.5, and no
# single LR solves it in one step.
CURVATURES = np.array([0.5, 1.0, 2.0, 4.0])


def _quadratic(w):
  return 0.5 * jnp.sum(CURVATURES * w ** 2)


@pytest.fixture(scope="module")
def generalist():
  return lmo.pretrained_controller("generalist")


def _sgd(lr):
  return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


def _quadratic_run(tx, w0, num_steps):
  """SGD-style loop on the quadratic: per call the loss passed, the LR in
  use after the call, whether a decision was due; the last params and
  state."""

  @jax.jit
  def step(w, state):
    due = lmo.decision_due(state)
    loss, g = jax.value_and_grad(_quadratic)(w)
    updates, state = tx.update(g, state, w, loss=loss, val_loss=loss)
    return optax.apply_updates(w, updates), state, loss, due

  w, state = w0, tx.init(w0)
  losses, lrs, dues = [], [], []
  for _ in range(num_steps):
    w, state, loss, due = step(w, state)
    losses.append(float(loss))
    lrs.append(float(lmo.current_lr(state)))
    dues.append(bool(due))
  return np.array(losses), np.array(lrs), np.array(dues), w, state


def _reference_sweep(w0, lr0, num_sweep, span, shrink, smoothing, blowup,
                     give_back, rewind):
  """The range test written out in NumPy on the quadratic (float64): the
  LR of each sweep call, the LR handed to the controller and the params
  after the sweep."""
  w = np.asarray(w0, np.float64)
  smoothed, best, stopped, prev_lr, start = 0.0, np.inf, False, None, None
  best_lr, snapshot = lr0 / span, w
  lrs = []
  for t in range(num_sweep):
    loss = 0.5 * np.sum(CURVATURES * w ** 2)
    smoothed = smoothing * smoothed + (1 - smoothing) * loss
    corrected = smoothed / (1 - smoothing ** (t + 1))
    start = loss if t == 0 else start
    newly_stopped = False
    if t >= 1 and not stopped:
      if corrected < best:
        best, best_lr, snapshot = corrected, prev_lr, w
      if (corrected > blowup * best or loss > blowup * best or
          loss > 1.1 * start or
          (best < 0.95 * start and
           corrected > best + give_back * (start - best))):
        stopped = newly_stopped = True
    if t == num_sweep - 1 and not stopped:   # the sweep's end: back to best
      stopped = newly_stopped = True
    found = best_lr * shrink if best < 0.95 * start else lr0
    lr = (found if stopped else
          lr0 * span ** (2 * t / (num_sweep - 1) - 1))
    w = snapshot if (rewind and newly_stopped) else w - lr * CURVATURES * w
    lrs.append(lr)
    prev_lr = lr
  found = best_lr * shrink if best < 0.95 * start else lr0
  return np.array(lrs), found, w


def test_sweep_lr_and_steps_hand_computed():
  np.testing.assert_allclose(sweep_lr(np.arange(5), 0.1, 100.0, 5),
                             [1e-3, 1e-2, 0.1, 1.0, 10.0], rtol=1e-5)
  assert lmo.range_test_steps(1000, 0.05) == 50
  assert lmo.range_test_steps(1001, 0.05) == 51       # ceil
  assert lmo.range_test_steps(100, 0.05) == 10        # min_steps
  assert lmo.range_test_steps(100, 0.05, min_steps=3) == 5


@pytest.mark.parametrize("rewind", [False, True])
def test_sweep_matches_a_numpy_reference_and_stops_at_the_blowup(generalist,
                                                                  rewind):
  # A sweep from lr0 / 100 to lr0 x 100 around lr0 = 0.1 crosses SGD's
  # stability edge on the quadratic (LR 0.5): the loss falls, then grows,
  # and the sweep stops.
  num_steps, fraction, span, shrink = 400, 0.1, 100.0, 0.1
  tx = lmo.range_tested(_sgd(0.1), generalist, num_steps=num_steps,
                        fraction=fraction, span=span, shrink=shrink,
                        rewind=rewind)
  num_sweep = lmo.range_test_steps(num_steps, fraction)
  w0 = jnp.full((4,), 3.0)
  _, lrs, _, w, state = _quadratic_run(tx, w0, num_sweep)
  want_lrs, want_found, want_w = _reference_sweep(
      w0, 0.1, num_sweep, span, shrink, 0.8, 4.0, 0.5, rewind)
  assert bool(state.sweep.stopped)                   # the loss turned up
  np.testing.assert_allclose(lrs[:-1], want_lrs[:-1], rtol=1e-4)
  # After the last sweep call the controller's lr0 is the found LR.
  np.testing.assert_allclose(lrs[-1], want_found, rtol=1e-4)
  np.testing.assert_allclose(float(state.inner.lr0), want_found, rtol=1e-4)
  np.testing.assert_allclose(w, want_w, rtol=1e-3, atol=1e-6)
  # The smoothed loss is lowest past the stability edge (the EMA lags and
  # the unstable direction starts from almost 0); a tenth of it is stable.
  assert want_found < 0.5 < want_found / shrink
  assert float(_quadratic(w)) < float(_quadratic(w0)) * 1e-2


def test_after_the_sweep_it_is_controlled_from_the_found_lr(generalist):
  # Plain SGD has no state of its own, so the rest of the run must be
  # exactly a fresh ``controlled`` run of T - P calls from the params and
  # the LR the sweep left.
  num_steps = 300
  tx = lmo.range_tested(_sgd(0.01), generalist, num_steps=num_steps)
  num_sweep = lmo.range_test_steps(num_steps, 0.05)
  w0 = jnp.linspace(-2.0, 2.0, 4)
  _, lrs, dues, _, _ = _quadratic_run(tx, w0, num_steps)
  _, _, _, w_sweep, state = _quadratic_run(
      lmo.range_tested(_sgd(0.01), generalist, num_steps=num_steps), w0,
      num_sweep)
  found = float(state.inner.lr0)
  fresh = lmo.controlled(_sgd(found), generalist,
                         num_steps=num_steps - num_sweep)
  _, fresh_lrs, fresh_dues, _, _ = _quadratic_run(
      fresh, w_sweep, num_steps - num_sweep)
  # Bit-equal for the first ~130 calls; later decisions drift apart by
  # float32 rounding (the full run's controller steps compile inside a
  # lax.cond), at most 3e-4 of the LR by the last.
  np.testing.assert_allclose(lrs[num_sweep:], fresh_lrs, rtol=1e-3)
  np.testing.assert_allclose(lrs[num_sweep:num_sweep + 100],
                             fresh_lrs[:100], rtol=1e-6)
  # No decision (so no probe) during the sweep; then the controller's.
  assert not dues[:num_sweep].any()
  np.testing.assert_array_equal(dues[num_sweep:], fresh_dues)
  assert fresh_dues.sum() == generalist.spec.observation_spec.num_decisions


def _nan_from_call_4(tx, num_sweep):
  step = jax.jit(lambda w, s, loss: tx.update(jax.grad(_quadratic)(w), s, w,
                                              loss=loss))
  w = jnp.ones((4,))
  state = tx.init(w)
  for t in range(num_sweep):
    loss = _quadratic(w) if t < 4 else jnp.nan
    updates, state = step(w, state, loss)
    w = optax.apply_updates(w, updates)
  return w, state


def test_a_nan_loss_ends_the_sweep_at_the_best_lr_so_far(generalist):
  num_steps = 200
  num_sweep = lmo.range_test_steps(num_steps, 0.05)
  # The loss falls by far less than min_gain before the NaN: no evidence,
  # the controller starts from the user's LR.
  _, state = _nan_from_call_4(lmo.range_tested(
      _sgd(0.01), generalist, num_steps=num_steps), num_sweep)
  assert bool(state.sweep.stopped)
  np.testing.assert_allclose(float(state.inner.lr0), 0.01)
  # Taken as evidence however small the gain:
  w, state = _nan_from_call_4(lmo.range_tested(
      _sgd(0.01), generalist, num_steps=num_steps, shrink=0.1,
      min_gain=1e-6), num_sweep)
  assert bool(state.sweep.stopped)
  # Calls 1-3 credit the LRs of calls 0-2 (tiny, so the loss keeps
  # falling): the best is call 2's LR, and the controller starts at a
  # tenth of it.
  best_lr = float(sweep_lr(2, 0.01, 300.0, num_sweep))
  np.testing.assert_allclose(float(state.sweep.best_lr), best_lr, rtol=1e-5)
  np.testing.assert_allclose(float(state.inner.lr0), 0.1 * best_lr,
                             rtol=1e-5)
  assert np.isfinite(float(state.sweep.smoothed))
  assert np.all(np.isfinite(np.asarray(w)))


@pytest.mark.parametrize("give_back,stops", [(1.0, False), (0.25, True)])
def test_a_loss_that_gives_back_its_gain_ends_the_sweep(generalist, give_back,
                                                        stops):
  # Adam past its stable LRs often sends a classifier's loss back towards
  # the chance level, a plateau that never reaches 4x the lowest loss.
  num_steps = 800
  tx = lmo.range_tested(_sgd(0.01), generalist, num_steps=num_steps,
                        give_back=give_back)
  num_sweep = lmo.range_test_steps(num_steps, 0.05)       # 40
  # From 2.3 down to 1.0, then a plateau at 1.6: 46% of the gain given back.
  losses = np.concatenate([[2.3, 2.3], np.full(18, 1.0), np.full(20, 1.6)])
  step = jax.jit(lambda s, loss: tx.update(jnp.zeros(2), s, jnp.zeros(2),
                                           loss=loss))
  state = tx.init(jnp.zeros(2))
  for loss in losses[:num_sweep - 1]:
    _, state = step(state, loss)
  assert bool(state.sweep.stopped) == stops      # ended before its last call
  _, state = step(state, losses[num_sweep - 1])
  assert bool(state.sweep.stopped)               # it always ends there
  # The lowest smoothed loss is call 19's, which credits call 18's LR.
  np.testing.assert_allclose(float(state.sweep.best_lr),
                             float(sweep_lr(18, 0.01, 300.0, num_sweep)),
                             rtol=1e-5)


def test_bad_arguments_are_named(generalist):
  every = lmo.pretrained_controller("fmnist_lenet_xu2019_cpu")
  with pytest.raises(ValueError, match="decides every"):
    lmo.range_tested(_sgd(0.1), every, num_steps=500)
  with pytest.raises(ValueError, match=r"fraction=0.7; allowed"):
    lmo.range_tested(_sgd(0.1), generalist, num_steps=500, fraction=0.7)
  with pytest.raises(ValueError, match=r"give_back=2; allowed"):
    lmo.range_tested(_sgd(0.1), generalist, num_steps=500, give_back=2)
  with pytest.raises(ValueError, match=r"span=0.5; allowed"):
    lmo.range_tested(_sgd(0.1), generalist, num_steps=500, span=0.5)
  with pytest.raises(ValueError, match=r"num_steps >= 30"):
    lmo.range_tested(_sgd(0.1), generalist, num_steps=25)
  tx = lmo.range_tested(_sgd(0.1), generalist, num_steps=100)
  state = tx.init(jnp.ones(2))
  with pytest.raises(ValueError, match="needs loss="):
    tx.update(jnp.ones(2), state, jnp.ones(2))


def test_benchmark_program_fields_and_cache_keys(generalist):
  from lr_meta.benchmark import harness, methods, workloads
  fields = methods.range_test_fields(shrink="0.1", rewind="0")
  assert dict(fields)["shrink"] == 0.1 and dict(fields)["rewind"] is False
  assert dict(fields)["span"] == 300.0             # the function's default
  with pytest.raises(ValueError, match=r"'shrinks'; allowed"):
    methods.range_test_fields(shrinks=0.1)
  with pytest.raises(ValueError, match=r"span='wide'; allowed: a float"):
    methods.range_test_fields(span="wide")
  workload = workloads.get_workload("tiny_mnist1d_mlp_sgd")
  plain = methods.Controlled(generalist.spec, "sgd", 0.1, 200, 16, 10)
  tested = methods.Controlled(generalist.spec, "sgd", 0.1, 200, 16, 10,
                              range_test=fields)
  # Without a range test the key is the one cached before the field existed.
  assert "range_test" not in json.dumps(harness.fingerprint(plain))
  assert (harness.run_key(workload, plain, "x", 0)
          != harness.run_key(workload, tested, "x", 0))
  hp = {"controller": generalist.params}
  state = tested.optimizer(hp).init({"w": jnp.zeros(3)})
  assert isinstance(state, lmo.RangeTestState)
  assert isinstance(plain.optimizer(hp).init({"w": jnp.zeros(3)}),
                    lmo.ControlledState)


def test_sweep_length_of_a_traced_run_equals_the_int_rule():
  settings = range_sweep.SweepSettings()
  for t in (100, 199, 200, 201, 1000, 1001, 4321):
    traced = jax.jit(lambda n: range_sweep.num_sweep_steps(n, settings))(t)
    assert int(traced) == range_sweep.num_sweep_steps(t, settings)


def test_settings_are_checked_by_name_and_canonical():
  a = range_sweep.settings_from_pairs({"span": 100, "min_steps": 5})
  b = range_sweep.settings_from_pairs([("min_steps", 5), ("span", 100.0)])
  assert a == b and isinstance(a.span, float) and a.shrink == 0.3
  with pytest.raises(ValueError, match=r"unknown fields \['spam'\]"):
    range_sweep.settings_from_pairs({"spam": 1})
  with pytest.raises(ValueError, match=r"env.range_test.shrink=1.5; allowed"):
    range_sweep.settings_from_pairs({"shrink": 1.5}, "env.range_test")
  with pytest.raises(ValueError, match=r"min_steps=1; allowed"):
    range_sweep.settings_from_pairs({"min_steps": 1})


def test_a_controller_trained_behind_a_sweep_carries_it(generalist, tmp_path):
  """The spec records the sweep (a controller file round-trips it, a plain
  controller's file is unchanged), ``controlled`` runs it, explicit
  arguments of ``range_tested`` override it, an 'every' spec refuses it."""
  swept = lmo.Controller(
      generalist.spec.with_fields(range_test={"shrink": 0.1}),
      generalist.params)
  assert "range_test" not in generalist.spec.to_json()
  path = str(tmp_path / "swept.msgpack")
  lmo.save_controller(path, swept)
  loaded = lmo.load_controller(path)
  assert loaded.spec == swept.spec
  assert loaded.spec.observation_spec.sweep_settings.shrink == 0.1
  w0 = jnp.array([1.0, -2.0, 0.5, 1.5])
  num_sweep = lmo.range_test_steps(400, 0.05)
  ran = _quadratic_run(lmo.controlled(_sgd(0.01), loaded, num_steps=400),
                       w0, num_sweep)
  ref = _reference_sweep(w0, 0.01, num_sweep, 300.0, 0.1, 0.8, 4.0, 0.5,
                         True)
  np.testing.assert_allclose(ran[1][:-1], ref[0][:-1], rtol=1e-5)
  np.testing.assert_allclose(float(ran[4].inner.lr0), ref[1], rtol=1e-5)
  over = lmo.range_tested(_sgd(0.01), loaded, num_steps=400, shrink=0.3)
  ran = _quadratic_run(over, w0, num_sweep)
  np.testing.assert_allclose(float(ran[4].inner.lr0), 3 * ref[1], rtol=1e-5)
  every = lmo.pretrained_controller("fmnist_lenet_xu2019_cpu")
  with pytest.raises(ValueError, match="range_test.*allowed: "
                     "decision_schedule 'fraction'"):
    every.spec.with_fields(range_test={"shrink": 0.1}).check()
