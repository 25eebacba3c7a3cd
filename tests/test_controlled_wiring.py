"""The little wiring around ``lr_meta.optax.controlled``.

``probe_inputs`` (the probe only at decisions), ``current_lr`` wherever
``controlled`` sits, the probe shape from the controller's spec, the refusal
of scheduled base LRs and its warm-up recipe, the training-horizon warning.
"""

import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo
from lr_meta.policies import controller as controller_lib
from lr_meta.tasks import datasets
import controller_helpers  # tests/controller_helpers.py

K, NV, C = 4, 24, 5      # steps per decision, probe examples, classes


def _spec(**kw):
  kw = dict(dict(name="wiring", action_type="xu2019", network="gaussian_mlp",
                 hidden_sizes=(8,), steps_per_decision=K,
                 num_val_examples=NV), **kw)
  return controller_lib.ControllerSpec.from_fields(**kw)


def _controller(spec=None):
  return controller_helpers.scaled_controller(spec or _spec())


def _zero_controller(spec=None):
  """All-zero params: action 0 at every decision, lr *= 0.985 (Xu's rule)."""
  ctrl = _controller(spec)
  return controller_lib.make_controller(
      ctrl.spec, jax.tree.map(jnp.zeros_like, ctrl.params))


class _MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(C)(nn.tanh(nn.Dense(16)(x)))


@pytest.fixture(scope="module")
def problem():
  kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (96, 7))
  y = jax.random.randint(ky, (96,), 0, C)
  model = _MLP()
  return model, model.init(kp, x[:1]), x, y


def _loss_fn(model, params, x, y):
  logits = model.apply(params, x)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _manual_probe(opt_state, apply_fn, params, x, y):
  """The plumbing the README asked users to write before ``probe_inputs``."""

  def probe(_):
    logits = apply_fn(params, x)
    return (jax.nn.softmax(logits), jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, y)))

  def skip(_):
    return jnp.zeros((x.shape[0], C)), jnp.zeros(())

  predictions, val_loss = jax.lax.cond(lmo.decision_due(opt_state), probe,
                                       skip, None)
  return {"predictions": predictions, "val_loss": val_loss}


def _always_probe(opt_state, apply_fn, params, x, y):
  del opt_state   # the probe at every step; update reads it at decisions only
  logits = apply_fn(params, x)
  return {"predictions": jax.nn.softmax(logits),
          "val_loss": jnp.mean(
              optax.softmax_cross_entropy_with_integer_labels(logits, y))}


def _train(problem, tx, probe_fn, num_steps):
  model, params, x, y = problem
  x_probe, y_probe = x[-NV:], y[-NV:]

  @jax.jit
  def step(params, opt_state, i):
    xb = jax.lax.dynamic_slice_in_dim(x, (i % 4) * 16, 16)
    yb = jax.lax.dynamic_slice_in_dim(y, (i % 4) * 16, 16)
    loss, grads = jax.value_and_grad(
        lambda p: _loss_fn(model, p, xb, yb))(params)
    probe = probe_fn(opt_state, model.apply, params, x_probe, y_probe)
    updates, opt_state = tx.update(grads, opt_state, params, loss=loss,
                                   **probe)
    return optax.apply_updates(params, updates), opt_state, probe

  opt_state = tx.init(params)
  lrs, probes = [], []
  for i in range(num_steps):
    params, opt_state, probe = step(params, opt_state, i)
    lrs.append(np.asarray(lmo.current_lr(opt_state)))
    probes.append(probe)
  return params, opt_state, np.asarray(lrs), probes


def test_probe_inputs_equals_manual_plumbing_bit_for_bit(problem):
  ctrl = _controller()
  base = optax.inject_hyperparams(optax.sgd)(learning_rate=0.3, momentum=0.9)
  tx = lmo.controlled(base, ctrl, num_classes=C)   # probe (NV, C) from spec
  n = 4 * K + 1
  runs = {name: _train(problem, tx, fn, n) for name, fn in (
      ("helper", lmo.probe_inputs), ("manual", _manual_probe),
      ("always", _always_probe))}
  p_helper, s_helper, lrs, probes = runs["helper"]
  for other in ("manual", "always"):
    p, s, other_lrs, _ = runs[other]
    np.testing.assert_array_equal(lrs, other_lrs)
    jax.tree.map(np.testing.assert_array_equal, p, p_helper)
    jax.tree.map(np.testing.assert_array_equal, s, s_helper)
  # The LR moves from decision to decision (the test means something) and
  # stays constant inside a window.
  assert len(set(lrs[::K].tolist())) == 5, lrs[::K]
  np.testing.assert_array_equal(lrs[:4 * K].reshape(4, K),
                                np.repeat(lrs[:4 * K:K, None], K, axis=1))
  assert int(s_helper.skipped_decisions) == 0
  # Between decisions the helper returns zeros; at decisions the probe.
  always = runs["always"][3]
  for i, probe in enumerate(probes):
    if i % K:
      assert not np.any(probe["predictions"]) and probe["val_loss"] == 0.0
    else:
      np.testing.assert_array_equal(probe["predictions"],
                                    always[i]["predictions"])
      assert probe["val_loss"] == always[i]["val_loss"] > 0.0
      np.testing.assert_allclose(probe["predictions"].sum(-1), 1.0,
                                 rtol=1e-6)


def test_probe_inputs_without_labels_gives_only_predictions(problem):
  model, params, x, _ = problem
  tx = lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                      _controller(), num_classes=C)
  out = lmo.probe_inputs(tx.init(params), model.apply, params, x[:NV])
  assert set(out) == {"predictions"}
  np.testing.assert_allclose(out["predictions"],
                             jax.nn.softmax(model.apply(params, x[:NV])),
                             rtol=1e-6)
  # Another optimizer: nothing to feed, so one train step serves both.
  assert lmo.probe_inputs(optax.sgd(0.1).init(params), model.apply, params,
                          x) == {}
  state = tx.init(params)
  with pytest.raises(ValueError, match="holds 2 ControlledState"):
    lmo.probe_inputs((state, state), model.apply, params, x)


def test_probe_inputs_of_a_scale_free_controller_give_only_val_loss(problem):
  """A generalist observes no predictions: no softmax, the probe loss only,
  at its decisions (calls floor(t * 7 / 3) of a 7-call run)."""
  model, params, x, y = problem
  spec = _spec(action_type="daniel2016", observation="scale_free",
               decision_schedule="fraction", num_decisions=3)
  tx = lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                      _controller(spec), num_steps=7)
  state = tx.init(params)
  assert lmo.probe_inputs(state, model.apply, params, x[:NV]) == {}
  due = []
  for _ in range(7):
    probe = lmo.probe_inputs(state, model.apply, params, x[:NV], y[:NV])
    assert set(probe) == {"val_loss"}
    due.append(bool(lmo.decision_due(state)))
    want = (_loss_fn(model, params, x[:NV], y[:NV]) if due[-1] else 0.0)
    np.testing.assert_allclose(probe["val_loss"], want, rtol=1e-6)
    loss, grads = jax.value_and_grad(
        lambda p: _loss_fn(model, p, x[NV:], y[NV:]))(params)
    updates, state = tx.update(grads, state, params, loss=loss, **probe)
    params = optax.apply_updates(params, updates)
  assert due == [True, False, True, False, True, False, False]


@pytest.mark.parametrize("where", ["outermost", "last", "first", "middle"])
def test_current_lr_wherever_controlled_sits(problem, where):
  """The zero controller's hand-computed LRs 0.3 * 0.985**(t + 1), read with
  current_lr, are the LRs the updates really used (sgd: u = -lr * g)."""
  _, params, _, _ = problem
  ctl = lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.3),
                       _zero_controller(), num_classes=C)
  identity = optax.scale(1.0)     # another transform in the chain
  tx = {"outermost": ctl,
        "last": optax.chain(optax.clip_by_global_norm(1e6), ctl),
        "first": optax.chain(ctl, identity),
        "middle": optax.chain(optax.clip_by_global_norm(1e6), ctl,
                              identity)}[where]
  state = tx.init(params)
  assert float(lmo.current_lr(state)) == pytest.approx(0.3)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  probs = jnp.full((NV, C), 1.0 / C)
  update = jax.jit(lambda s: tx.update(grads, s, params, loss=1.0,
                                       val_loss=1.0, predictions=probs))
  for i in range(2 * K + 1):
    assert bool(lmo.decision_due(state)) == (i % K == 0)
    updates, state = update(state)
    lr = 0.3 * 0.985 ** (i // K + 1)
    assert float(lmo.current_lr(state)) == pytest.approx(lr, rel=1e-6)
    jax.tree.map(lambda u: np.testing.assert_allclose(u, -lr * 0.5,
                                                      rtol=1e-6), updates)
  with pytest.raises(ValueError, match="holds 2 ControlledState"):
    lmo.current_lr((state, state))


def test_scheduled_lr_is_refused_and_the_warmup_recipe_works(problem):
  _, params, _, _ = problem
  ctrl = _zero_controller()
  warmup = optax.linear_schedule(0.0, 0.1, 5)
  scheduled = optax.inject_hyperparams(optax.sgd)(learning_rate=warmup)
  with pytest.raises(ValueError) as e:
    lmo.controlled(scheduled, ctrl, num_classes=C).init(params)
  message = str(e.value)
  assert "is a schedule" in message and "lr0" in message
  assert "optax.scale_by_schedule" in message
  # The recipe the message gives: the controller's LR times a warm-up factor.
  steps = 6
  factor = lambda step: jnp.minimum(1.0, (step + 1) / steps)
  tx = optax.chain(
      lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                     ctrl, num_classes=C),
      optax.scale_by_schedule(factor))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  probs = jnp.full((NV, C), 1.0 / C)
  for i in range(2 * K + 1):
    updates, state = tx.update(grads, state, params, loss=1.0,
                               predictions=probs)
    lr = 0.1 * 0.985 ** (i // K + 1)
    assert float(lmo.current_lr(state)) == pytest.approx(lr, rel=1e-6)
    want = -lr * min(1.0, (i + 1) / steps)
    jax.tree.map(lambda u: np.testing.assert_allclose(u, want, rtol=1e-6),
                 updates)


def test_probe_shape_defaults_from_the_spec():
  params = {"dense0": {"kernel": jnp.ones((3, 4))},
            "dense1": {"kernel": jnp.ones((4, 2))}}
  base = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
  ctrl = _controller()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    state = lmo.controlled(base, ctrl, num_classes=C).init(params)
    assert state.features.prev_predictions.shape == (NV, C)
    lmo.controlled(base, ctrl, predictions_shape=(NV, C))
  with pytest.raises(ValueError, match=rf"num_classes=.*\({NV}, num_classes"):
    lmo.controlled(base, ctrl)
  with pytest.raises(ValueError, match="3 classes but num_classes=5"):
    lmo.controlled(base, ctrl, predictions_shape=(NV, 3), num_classes=5)
  with pytest.raises(ValueError, match=r"predictions_shape=\(24,\); allowed"):
    lmo.controlled(base, ctrl, predictions_shape=(24,))
  with pytest.raises(ValueError, match="num_classes=0; allowed"):
    lmo.controlled(base, ctrl, num_classes=0)
  with pytest.warns(lmo.ControllerMismatchWarning,
                    match=f"probe of {NV} validation examples"):
    lmo.controlled(base, ctrl, predictions_shape=(2 * NV, C))
  whole = _controller(_spec(num_val_examples=None))
  with pytest.raises(ValueError, match="whole validation split"):
    lmo.controlled(base, whole, num_classes=C)


def test_shipped_probe_sizes_fit_their_validation_splits():
  """What to pass per shipped controller: a probe of num_val_examples
  examples, which must exist in every validation split it was trained on
  (a generalist's: those of its task distribution)."""
  sizes = {}
  for name in lmo.pretrained_names():
    spec = lmo.pretrained_controller(name).spec
    if "task" in spec.config:
      names = [spec.config["task"]["dataset"]]
    else:
      names = [c[0] for c in spec.config["distribution"]["combinations"]]
    split = min(datasets.SPECS[n].num_val for n in names)
    probe = spec.observation_spec.num_val_examples
    assert probe <= split, (name, probe)
    sizes[name] = (probe, spec.training_steps)
  assert sizes == {
      "mnist1d_mlp_quickstart": (800, 300),
      "fmnist_lenet_xu2019_cpu": (500, 500),
      "cifar10_lenet_xu2019_cpu": (500, 300),
      "fmnist_mlp_xu2019_progress_cpu": (128, 500),
      "generalist": (500, None),   # runs of 100..1000 steps, 20 decisions
      "generalist_v1": (500, None),
  }


def test_horizon_warning_for_controllers_without_progress():
  base = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
  # T from the config (files that store num_decisions only with progress).
  ctrl = _controller(_spec(config={"env": {"num_decisions": 5}}))
  assert ctrl.spec.training_steps == 5 * K
  with pytest.warns(lmo.ControllerMismatchWarning,
                    match=rf"trained on runs of {5 * K} steps; this run has "
                          rf"{5 * K + 1}"):
    lmo.controlled(base, ctrl, num_classes=C, num_steps=5 * K + 1)
  with pytest.warns(lmo.ControllerMismatchWarning, match="runs of 20 steps"):
    lmo.controlled(base, ctrl, num_classes=C, num_decisions=6)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    lmo.controlled(base, ctrl, num_classes=C, num_steps=5 * K)
    lmo.controlled(base, ctrl, num_classes=C)     # length unknown: silent
  with pytest.raises(ValueError, match="pass one of them"):
    lmo.controlled(base, ctrl, num_classes=C, num_steps=8, num_decisions=2)
  with pytest.raises(ValueError, match="num_steps=0; allowed"):
    lmo.controlled(base, ctrl, num_classes=C, num_steps=0)
  shipped = lmo.pretrained_controller("mnist1d_mlp_quickstart")
  with pytest.warns(lmo.ControllerMismatchWarning, match="runs of 300 steps"):
    lmo.controlled(base, shipped, num_classes=10, num_steps=1000)


def test_num_steps_sets_the_progress_horizon():
  """A progress controller: no horizon warning; progress t / ceil(n / K)."""
  params = {"dense0": {"kernel": jnp.ones((3, 4))},
            "dense1": {"kernel": jnp.ones((4, 2))}}
  ctrl = _controller(_spec(observation="dynamics+progress", num_decisions=5))
  base = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
  num_steps = 10 * K + 1
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    tx = lmo.controlled(base, ctrl, num_classes=C, num_steps=num_steps)
  decisions = math.ceil(num_steps / K)     # 11
  state = tx.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  probs = jnp.full((NV, C), 1.0 / C)
  update = jax.jit(lambda s: tx.update(grads, s, params, loss=1.0,
                                       predictions=probs))
  seen = []
  for i in range(3 * K):
    _, state = update(state)
    if i % K == 0:
      seen.append(float(state.obs[-1]))
  np.testing.assert_allclose(seen, [0.0, 1 / decisions, 2 / decisions],
                             rtol=1e-6)


def test_find_state_through_chains_and_injected_hyperparams():
  """One helper finds a transformation's state wherever the chain put it
  (the benchmark reads Prodigy's and Mechanic's estimates with it)."""
  params = {"w": jnp.ones(3)}
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.inject_hyperparams(optax.contrib.prodigy)(
                       learning_rate=1.0))
  state = tx.init(params)
  found = lmo.find_state(state, optax.contrib.ProdigyState)
  assert isinstance(found, optax.contrib.ProdigyState)
  assert float(found.estim_lr) == pytest.approx(1e-6)   # prodigy's d0
  assert lmo.find_states(state, optax.ScaleByAdamState) == []
  with pytest.raises(ValueError, match="holds 0 ScaleByAdamState; expected "
                     "exactly 1"):
    lmo.find_state(state, optax.ScaleByAdamState)
  twice = optax.chain(optax.contrib.prodigy(), optax.contrib.prodigy())
  with pytest.raises(ValueError, match="holds 2 ProdigyState"):
    lmo.find_state(twice.init(params), optax.contrib.ProdigyState)
