"""Controllers in an optax loop (lr_meta.optax.controlled), controller files."""

import dataclasses
import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import quickstart
from lr_meta import experiment
from lr_meta import rundir
from lr_meta import tasks
from lr_meta.policies import controller as controller_lib
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.features import observation as observation_lib
from lr_meta.features import range_sweep
from lr_meta.features import scale_free
import lr_meta.optax as lmo
from script_loader import load_script  # tests/script_loader.py
import controller_helpers  # tests/controller_helpers.py

T, K, NV = 6, 4, 64      # decisions, steps per decision, probe examples


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp",
                         model_kwargs=dict(hidden_sizes=(16,)),
                         optimizer="momentum", batch_size=32,
                         num_train_examples=500, num_val_examples=NV,
                         num_test_examples=NV)


def _spec(**kw):
  kw = dict(dict(name="test", action_type="xu2019", network="gaussian_mlp",
                 hidden_sizes=(8,), steps_per_decision=K,
                 num_val_examples=NV), **kw)
  return controller_lib.ControllerSpec.from_fields(**kw)


def _controller(scale=100.0, spec=None):
  return controller_helpers.scaled_controller(spec or _spec(), scale)


def _optax_loop(task, tx, params, rng, num_steps, predictions=True):
  """An ordinary training loop: batch, loss/grad, probe, tx.update.

  ``predictions=False``: a loop that passes only ``loss`` and ``val_loss``
  (all a scale-free controller reads). Returns the params before each
  update, the last state, the LR after each update and whether a decision
  was due at each call.
  """

  @jax.jit
  def step(task, params, opt_state, rng):
    rng, batch_key, dropout_key = jax.random.split(rng, 3)
    x, y = task.sample_batch(batch_key)
    (loss, _), grads = jax.value_and_grad(task.loss_and_logits, has_aux=True)(
        params, {}, x, y, train=True, dropout_key=dropout_key)
    logits, _ = task.apply(params, {}, task.data.x_val[:NV])
    val_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, task.data.y_val[:NV]))
    extra = dict(predictions=jax.nn.softmax(logits)) if predictions else {}
    updates, opt_state = tx.update(grads, opt_state, params, loss=loss,
                                   val_loss=val_loss, **extra)
    return optax.apply_updates(params, updates), opt_state, rng

  opt_state = tx.init(params)
  lrs, history, due = [], [], []
  for _ in range(num_steps):
    history.append(params)   # params before each update
    due.append(bool(lmo.decision_due(opt_state)))
    params, opt_state, rng = step(task, params, opt_state, rng)
    lrs.append(np.asarray(lmo.current_lr(opt_state)))
  return history, opt_state, np.asarray(lrs), due


@pytest.mark.parametrize("observation", ["dynamics", "dynamics+progress"])
def test_controlled_reproduces_env_lr_trajectory(task, observation):
  ctrl = _controller(spec=_spec(observation=observation, num_decisions=T))
  env = lr_env.LREnv(task, "xu2019", observation)
  p = lr_env.LREnvParams.from_fields(num_decisions=T, steps_per_decision=K,
                                     initial_lrs=(0.1,), num_val_examples=NV)
  key = jax.random.PRNGKey(3)
  env_state, infos = rollout.run_episode(env, p, ctrl.act, ctrl.params, key)
  env_lrs = np.asarray(infos["lr"])

  # The same optimizee: LREnv.reset's key split (init, lr, features, -).
  k_init, _, k_feat, _ = jax.random.split(key, 4)
  opt = task.init(k_init, 0.1)
  tx = lmo.controlled(tasks.make_optimizer("momentum", learning_rate=0.1),
                      ctrl, predictions_shape=(NV, 10), key=k_feat)
  # One call past the episode: its decision observes the episode's end.
  history, state, lrs, _ = _optax_loop(task, tx, opt.params, opt.key,
                                    T * K + 1)
  lrs = lrs[:T * K]

  # LR of each decision window; constant inside a window.
  np.testing.assert_array_equal(lrs.reshape(T, K),
                                np.repeat(lrs[::K, None], K, axis=1))
  # The env's scan and the optax loop are different XLA programs: their
  # observations agree to a few ulps (the final one is checked below), so
  # an action can round 1 ulp apart. With these seeds the 9-number
  # observation gives bit-identical LRs and weights; with the progress
  # feature decision 5's LR is 1 ulp (9e-8 relative) off.
  if observation == "dynamics":
    check = np.testing.assert_array_equal
  else:
    check = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                    atol=1e-7)
  check(lrs[::K], env_lrs)
  # The actions really depend on the observation (not a fixed schedule).
  ratios = env_lrs / np.concatenate([[np.float32(0.1)], env_lrs[:-1]])
  assert np.ptp(ratios) > 1e-3, ratios
  # Same LRs, same batches: the same weights and the same final
  # observation (the EMAs agree too).
  jax.tree.map(check, history[T * K], env_state.opt.params)
  if observation == "dynamics":
    np.testing.assert_array_max_ulp(state.obs, env_state.obs, maxulp=2)
  else:
    np.testing.assert_allclose(state.obs, env_state.obs, rtol=1e-5)
  if observation == "dynamics+progress":   # t / T after the last decision
    assert env.observation_size == 10 and state.obs[-1] == 1.0


def test_zero_controller_gives_hand_computed_decay(task):
  """All-zero params: action 0, so lr *= (0 - 0.15) * 0.1 + 1 = 0.985."""
  spec = _spec()
  ctrl = _controller()
  zero = controller_lib.make_controller(
      spec, jax.tree.map(jnp.zeros_like, ctrl.params))
  tx = lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.2),
                      zero, every=3, predictions_shape=(NV, 10))
  opt = task.init(jax.random.PRNGKey(0))
  _, state, lrs, _ = _optax_loop(task, tx, opt.params, opt.key, 7)
  expected = np.float32([0.2 * 0.985] * 3 + [0.2 * 0.985**2] * 3
                        + [0.2 * 0.985**3])
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  assert int(state.count) == 7
  assert bool(lmo.decision_due(state)) is False
  assert bool(lmo.decision_due((state,))) is False


# Action bounds by hand: Xu et al. 2019's [-0.2, 0.5]; Daniel et al.'s
# multiplicative log-step in [-0.5, 0.5]; Xu, Qin et al. 2017's
# log10(lr / lr0) in [-4, 2].
_BOUNDS = {"xu2019": (-0.2, 0.5), "daniel2016": (-0.5, 0.5),
           "xu2017": (-4.0, 2.0)}


def _numpy_actor(params, obs, action_type="xu2019"):
  """The Gaussian actor's clipped mean, by hand in float64 (MLP, tanh)."""
  mlp = jax.tree.map(lambda x: np.asarray(x, np.float64),
                     params["params"]["MLP_0"])
  hidden = np.tanh(np.asarray(obs, np.float64) @ mlp["Dense_0"]["kernel"]
                   + mlp["Dense_0"]["bias"])
  mean = hidden @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"]
  return np.clip(mean, *_BOUNDS[action_type])


def _lr_by_hand(action_type, lr, action, lr0=None):
  """The next LR by hand: Xu's rule, Daniel's lr * exp(a), or Xu 2017's
  lr0 * 10**a (set, not multiplied)."""
  if action_type == "daniel2016":
    return lr * np.exp(float(np.reshape(action, ())))
  if action_type == "xu2017":
    return lr0 * 10.0 ** float(np.reshape(action, ()))
  return _xu2019_lr(lr, action)


def _xu2019_lr(lr, action):
  """Xu et al. 2019's LR rule by hand: lr * ((a - 0.15) * 0.1 + 1)."""
  return lr * ((float(np.reshape(action, ())) - 0.15) * 0.1 + 1.0)


def test_controlled_works_inside_chain_and_rejects_bad_use(task):
  ctrl = _controller()
  opt = task.init(jax.random.PRNGKey(0))
  base = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.inject_hyperparams(optax.adam)(learning_rate=1e-3))
  tx = lmo.controlled(base, ctrl, predictions_shape=(NV, 10))
  state = tx.init(opt.params)
  assert float(state.lr0) == pytest.approx(1e-3)
  grads = jax.tree.map(jnp.ones_like, opt.params)
  probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(5), (NV, 10)))
  update = jax.jit(tx.update)   # eager would compile op by op
  _, state = update(grads, state, opt.params, loss=2.0, predictions=probs)
  # The first decision by hand: Xu's 9 numbers (no val_loss: the train loss
  # in its place; first EMA values; the default key's U[0, 1) "previous
  # predictions"; log10 of the LR), the actor in numpy, the LR rule.
  prev = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (NV, 10)),
                    np.float64)
  first = np.asarray(opt.params["dense0"]["kernel"], np.float64)
  last = np.asarray(opt.params["dense1"]["kernel"], np.float64)
  probs64 = np.asarray(probs, np.float64)
  want_obs = np.array([
      2.0, np.log(np.var(probs64) + 1e-10),
      np.log(np.var(probs64 - prev) + 1e-10), 2.0, first.mean(), first.var(),
      last.mean(), last.var(), -3.0])
  np.testing.assert_allclose(state.obs, want_obs, rtol=1e-5, atol=1e-7)
  action = _numpy_actor(ctrl.params, want_obs)
  assert -0.2 < float(action[0]) < 0.5   # inside the clip: the net decides
  np.testing.assert_allclose(float(state.lr), _xu2019_lr(1e-3, action),
                             rtol=1e-6)
  assert int(state.skipped_decisions) == 0
  with pytest.raises(ValueError, match="loss="):
    update(grads, state, opt.params, predictions=probs)
  with pytest.raises(ValueError, match="predictions="):
    update(grads, state, opt.params, loss=1.0)
  with pytest.raises(ValueError, match="needs params"):
    update(grads, state, loss=1.0, predictions=probs)
  with pytest.raises(ValueError, match="predictions_shape"):
    lmo.controlled(base, ctrl)
  with pytest.raises(ValueError, match="every=0"):
    lmo.controlled(base, ctrl, every=0, predictions_shape=(NV, 10))
  with pytest.raises(ValueError, match="inject_hyperparams"):
    lmo.controlled(optax.sgd(0.1), ctrl, predictions_shape=(NV, 10)).init(
        opt.params)


def test_controlled_refuses_lrs_it_cannot_set():
  """A scheduled LR, no injectable LR, two of them: lr_meta's own errors."""
  ctrl = _controller()
  params = {"dense0": {"kernel": jnp.ones((3, 4))},
            "dense1": {"kernel": jnp.ones((4, 2))}}
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100)
  bad = {
      "is a schedule": optax.inject_hyperparams(optax.sgd)(
          learning_rate=schedule),
      "needs a base optimizer with an injectable": optax.sgd(0.1),
      r"holds 2: \[": optax.chain(
          optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
          optax.inject_hyperparams(optax.sgd)(learning_rate=0.2)),
  }
  for match, base in bad.items():
    tx = lmo.controlled(base, ctrl, predictions_shape=(NV, 10))
    with pytest.raises(ValueError, match=match):
      tx.init(params)


def test_nonfinite_decision_is_skipped_and_counted():
  """NaN predictions: features, carry, LR and obs unchanged, counted once;
  the next finite decision is what it would have been without the NaN one."""
  ctrl = _controller()
  params = {"dense0": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)},
            "dense1": {"kernel": jnp.linspace(0.0, 2.0, 8).reshape(4, 2)}}
  grads = jax.tree.map(jnp.zeros_like, params)   # params stay fixed
  tx = lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                      ctrl, every=1, predictions_shape=(NV, 10))
  update = jax.jit(tx.update)
  rng = np.random.default_rng(0)
  p1, p2 = (jax.nn.softmax(jnp.asarray(rng.normal(size=(NV, 10)),
                                       jnp.float32)) for _ in range(2))
  nan = jnp.full((NV, 10), jnp.nan)

  def run(predictions):
    state = tx.init(params)
    states = []
    for p in predictions:
      _, state = update(grads, state, params, loss=1.5, predictions=p)
      states.append(state)
    return states

  s1, s_nan, s2 = run([p1, nan, p2])
  r1, r2 = run([p1, p2])     # the same run without the NaN batch
  same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  same((s_nan.features, s_nan.carry, s_nan.lr, s_nan.obs),
       (s1.features, s1.carry, s1.lr, s1.obs))
  assert [int(s.skipped_decisions) for s in (s1, s_nan, s2)] == [0, 1, 1]
  assert int(s_nan.count) == 2 and int(s2.count) == 3
  # Later decisions are normal: the LR moves again, as without the NaN.
  same((s2.features, s2.lr, s2.obs), (r2.features, r2.lr, r2.obs))
  assert float(s2.lr) != float(s1.lr)
  assert np.all(np.isfinite(s2.obs))


def test_dqn_controller_in_optax_matches_env(task):
  """A Fu 2016 (Q-network, decay/reset) controller, same check as above."""
  spec = _spec(action_type="fu2016", network="q_mlp", hidden_sizes=(8,))
  net = controller_lib.make_network(spec)
  params = net.init(jax.random.PRNGKey(2), jnp.zeros((193,)))
  ctrl = controller_lib.make_controller(spec, params)
  env = lr_env.LREnv(task, "fu2016")
  p = lr_env.LREnvParams.from_fields(num_decisions=T, steps_per_decision=K,
                                     initial_lrs=(0.1,), num_val_examples=NV,
                                     reward="log_train_loss_change")
  key = jax.random.PRNGKey(4)
  env_state, infos = rollout.run_episode(env, p, ctrl.act, ctrl.params, key)
  k_init, _, _, _ = jax.random.split(key, 4)
  opt = task.init(k_init, 0.1)
  tx = lmo.controlled(tasks.make_optimizer("momentum", learning_rate=0.1),
                      ctrl)
  history, _, lrs, _ = _optax_loop(task, tx, opt.params, opt.key,
                                   T * K + 1)
  np.testing.assert_array_equal(lrs[:T * K:K], np.asarray(infos["lr"]))
  jax.tree.map(np.testing.assert_array_equal, history[T * K],
               env_state.opt.params)


# ----------------------------------------------------------------------------
# Files.


def test_save_load_round_trip(tmp_path):
  ctrl = _controller()
  path = controller_lib.save_controller(str(tmp_path / "c.msgpack"), ctrl)
  back = lmo.load_controller(path)
  assert back.spec == ctrl.spec
  jax.tree.map(np.testing.assert_array_equal, back.params, ctrl.params)
  obs = jnp.linspace(-1.0, 1.0, 9)
  np.testing.assert_array_equal(back.policy(obs)[0], ctrl.policy(obs)[0])
  assert os.path.getsize(path) < 5000


def test_load_refuses_bad_files(tmp_path):
  ctrl = _controller()
  data = controller_lib.controller_to_bytes(ctrl)
  path = tmp_path / "c.msgpack"

  def load(blob):
    path.write_bytes(blob)
    return lmo.load_controller(str(path))

  with pytest.raises(ValueError, match="truncated or corrupted"):
    load(data[:len(data) // 2])
  # One flipped bit inside the params: still valid msgpack, wrong checksum.
  params_bytes = flax.serialization.to_bytes(ctrl.params)
  at = data.index(params_bytes) + len(params_bytes) // 2
  bad = bytearray(data)
  bad[at] ^= 0x01
  with pytest.raises(ValueError, match="checksum mismatch"):
    load(bytes(bad))
  header = flax.serialization.msgpack_restore(data)
  with pytest.raises(ValueError, match="format_version 2"):
    load(flax.serialization.msgpack_serialize(dict(header,
                                                   format_version=2)))
  with pytest.raises(ValueError, match="expected 'lr_meta.controller'"):
    load(flax.serialization.msgpack_serialize({"format": "other"}))
  with pytest.raises(ValueError, match="expected 'lr_meta.controller'"):
    load(flax.serialization.to_bytes(ctrl.params))   # a bare params file
  # Params of another network than the spec's (hidden 8 vs spec hidden 16).
  wrong = controller_lib.Controller(_spec(hidden_sizes=(16,)), ctrl.params)
  with pytest.raises(ValueError, match=r"params do not match.*wrong shapes"):
    load(controller_lib.controller_to_bytes(wrong))
  with pytest.raises(ValueError, match="spec.network='q_mlp'"):
    _spec(network="q_mlp").check()


def test_pretrained_controllers_load_offline():
  names = lmo.pretrained_names()
  assert {"mnist1d_mlp_quickstart", "fmnist_lenet_xu2019_cpu",
          "cifar10_lenet_xu2019_cpu"} <= set(names)
  for name in names:
    ctrl = lmo.pretrained_controller(name)
    assert ctrl.spec.name == name
    assert ctrl.spec.config["agent"] == ctrl.spec.agent
    assert ctrl.spec.network == "gaussian_mlp", (
        f"{name}: extend the hand computation below to {ctrl.spec.network}")
    assert os.path.getsize(os.path.join(controller_lib.PRETRAINED_DIR,
                                        f"{name}.msgpack")) < 20_000
    # A plausible observation: Xu's 9 numbers at LR 1e-2 (+ progress 0.5),
    # or the 10 scale-free ones half-way through a run.
    obs = np.array([2.3, -4.6, -3.0, 2.2, 0.0, 0.01, 0.0, 0.02, -2.0,
                    0.5][:ctrl.spec.observation_size], np.float32)
    if ctrl.spec.observation_kind == "scale_free":
      obs = np.array([0.5, -0.3, -0.9, -0.8, -0.05, -0.04, 0.1, -2.5, 0.1,
                      -0.1], np.float32)
    action, _ = ctrl.policy(jnp.asarray(obs), ctrl.initial_carry())
    want = _numpy_actor(ctrl.params, obs, ctrl.spec.action_type)
    np.testing.assert_allclose(action, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ctrl.next_lr(2e-2, 1e-2, action),
                               _lr_by_hand(ctrl.spec.action_type, 2e-2, want,
                                           lr0=1e-2),
                               rtol=1e-5)
  with pytest.raises(ValueError, match="mnist1d_mlp_quickstart"):
    lmo.pretrained_controller("no_such_controller")


def test_training_artifact_and_export(tmp_path, repo_root):
  """train_controller's artifact and export_controller's two paths agree."""
  config = quickstart.get_config()
  config.task.update(num_train_examples=200, num_val_examples=100,
                     num_test_examples=100)
  config.env.update(num_val_examples=100)
  _, env, env_params, _ = experiment.build(config)
  actor = _controller(spec=_spec(hidden_sizes=(32,)), scale=1.0).params
  agent_params = {"actor": actor, "critic": {"unused": jnp.zeros(3)}}
  workdir = tmp_path / "run"
  path = rundir.write_training_artifact(
      str(workdir), config, env, env_params, agent_params,
      export=experiment.exporter(config))
  ctrl = lmo.load_controller(path)
  assert ctrl.spec.observation_spec.steps_per_decision == 10
  assert ctrl.spec.initial_lrs == (0.1, 0.03)
  assert ctrl.spec.first_dense == ("dense0",)
  assert ctrl.spec.config["task"]["dataset"] == "mnist1d"

  export = load_script("export_controller").export
  out, exported = export(str(workdir), "mine", out_dir=str(tmp_path / "out"),
                         description="d")
  assert exported.spec == dataclasses.replace(ctrl.spec, name="mine",
                                              description="d")
  # From a snapshot of the run + its config.json.
  with rundir.Run(str(workdir), config, log=lambda *a: None) as run:
    run.restore({"step": jnp.zeros(())}, lambda s: agent_params)
    run.save(1, {"step": jnp.ones(())}, agent_params)
  out2, rebuilt = export(str(workdir), "mine", out_dir=str(tmp_path / "o2"),
                         description="d", iteration=1)
  assert rebuilt.spec.to_json() == exported.spec.to_json()
  assert open(out, "rb").read() == open(out2, "rb").read()
  with pytest.raises(ValueError, match="--name"):
    export(str(workdir), "bad name")
  assert json.loads(ctrl.spec.to_json())["action_type"] == "xu2019"


def test_spec_observation_checks():
  with pytest.raises(ValueError, match="spec.observation='per_example'"):
    _spec(observation="per_example").check()
  with pytest.raises(ValueError, match="spec.num_decisions=None"):
    _spec(observation="dynamics+progress").check()
  progress = _spec(observation="dynamics+progress", num_decisions=50).check()
  assert (progress.observation_size, _spec().observation_size) == (10, 9)
  # Files written before the field existed read as the action's default.
  assert _spec().observation_kind == "dynamics"


# -- generalist controllers: scale-free, decisions at fractions of a run ------

D, LR0 = 5, 0.05


def _fraction_controller(action_type="daniel2016", inputs=()):
  return _controller(scale=30.0, spec=_spec(
      name="generalist_test", action_type=action_type, steps_per_decision=1,
      observation="scale_free", num_decisions=D,
      decision_schedule="fraction", slope_decay=0.5, inputs=inputs))


@pytest.fixture
def test_input(monkeypatch):
  """An optional scale-free input registered for the test: the log of the
  window's mean gradient norm over the previous window's (0 at the first),
  read from the gradients, which the environment and ``controlled`` get in
  different places."""
  def read(mean, memory):
    value = jnp.where(memory > 0, jnp.log(mean / memory), 0.0)
    return value, mean
  name = "test_grad_norm_change"
  monkeypatch.setitem(scale_free.INPUTS, name, scale_free.OptionalInput(
      name, lambda g, u, w: optax.tree.norm(g), read, "test only"))
  return name


@pytest.mark.parametrize("action_type, with_input", [
    ("daniel2016", None), ("xu2017", None), ("xu2017", "test"),
    ("xu2017", "grad_norm_ratio")])
def test_controlled_reproduces_the_fraction_env(task, action_type,
                                                with_input, test_input):
  num_steps = 23           # decisions at calls floor(t * 23 / 5)
  inputs = (() if with_input is None else
            (test_input,) if with_input == "test" else (with_input,))
  ctrl = _fraction_controller(action_type, inputs)
  env = lr_env.LREnv(task, action_type, "scale_free", inputs)
  assert env.observation_size == ctrl.spec.observation_size == 10 + len(
      inputs)
  p = lr_env.LREnvParams.from_fields(
      num_decisions=D, decision_schedule="fraction",
      reward="log_val_loss_change", num_val_examples=NV).check(action_type)
  key = jax.random.PRNGKey(3)
  env_state, infos = rollout.run_episode(env, p, ctrl.act, ctrl.params, key,
                                         lr0=LR0, num_steps=num_steps)
  env_lrs = np.asarray(infos["lr"])

  k_init = jax.random.split(key, 4)[0]   # LREnv.reset's init key
  opt = task.init(k_init, LR0)
  tx = lmo.controlled(tasks.make_optimizer("momentum", learning_rate=LR0),
                      ctrl, num_steps=num_steps)
  # One call past the run: its decision observes the run's end. The loop
  # passes loss and val_loss only.
  history, state, lrs, due = _optax_loop(task, tx, opt.params, opt.key,
                                         num_steps + 1, predictions=False)
  calls = [int(observation_lib.decision_step(t, num_steps, D))
           for t in range(D)]
  assert calls == [0, 4, 9, 13, 18]
  assert [i for i, d in enumerate(due) if d] == calls + [num_steps]
  # Constant inside each window, the env's LR of that window.
  windows = np.split(lrs[:num_steps], calls[1:])
  for w in windows:
    np.testing.assert_array_equal(w, w[0])
  np.testing.assert_allclose([w[0] for w in windows], env_lrs, rtol=1e-6)
  assert np.ptp(np.diff(np.log(env_lrs))) > 1e-3   # really state-dependent
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               history[num_steps], env_state.opt.params)
  np.testing.assert_allclose(state.obs, env_state.obs, rtol=1e-5, atol=1e-6)
  if with_input:
    assert abs(float(env_state.obs[-1])) > 1e-4   # the input moved
    readout = lmo.controller_readout(state)
    assert float(readout.inputs["optional_input_0"]) == float(state.obs[-1])


@pytest.mark.parametrize("span", [3.0, 3000.0])
def test_controlled_reproduces_the_env_behind_a_range_test(task, span):
  """A controller trained behind an LR range test (the environment sweeps at
  reset) gets the same sweep from ``controlled`` and the same LRs after it:
  the hand-over's LR, the rewound params and every decision. With span
  3000 the sweep overshoots and ends early, where the loss turns up."""
  num_steps, sweep = 40, dict(fraction=0.25, span=span, min_steps=5)
  ctrl = _fraction_controller("xu2017")
  ctrl = lmo.Controller(ctrl.spec.with_fields(range_test=sweep), ctrl.params)
  assert ctrl.spec.observation_spec.range_test == (
      range_sweep.settings_from_pairs(sweep).pairs())
  env = lr_env.LREnv(task, "xu2017", "scale_free")
  p = lr_env.LREnvParams.from_fields(
      num_decisions=D, decision_schedule="fraction", range_test=sweep,
      reward="log_val_loss_change", num_val_examples=NV).check("xu2017")
  key = jax.random.PRNGKey(3)
  env_state, infos = rollout.run_episode(env, p, ctrl.act, ctrl.params, key,
                                         lr0=LR0, num_steps=num_steps)
  env_lrs = np.asarray(infos["lr"])
  assert int(env_state.num_steps) == num_steps - 10   # a sweep of 10 calls

  k_init = jax.random.split(key, 4)[0]
  opt = task.init(k_init, LR0)
  tx = lmo.controlled(tasks.make_optimizer("momentum", learning_rate=LR0),
                      ctrl, num_steps=num_steps)
  history, state, lrs, due = _optax_loop(task, tx, opt.params, opt.key,
                                         num_steps + 1, predictions=False)
  assert isinstance(state, lmo.RangeTestState)
  np.testing.assert_allclose(float(state.inner.lr0), float(env_state.lr0),
                             rtol=1e-6)
  assert bool(state.sweep.stopped)        # it always ends by call 9
  sweep_lrs = LR0 / span * span ** (2 * np.arange(10) / 9)
  ended_early = not np.isclose(lrs[8], sweep_lrs[8], rtol=1e-5)
  assert ended_early == (span > 10)
  # The sweep's LRs rise geometrically from LR0 / span until it stops.
  np.testing.assert_allclose(
      lrs[:2], [LR0 / span, LR0 / span * span ** (2 / 9)], rtol=1e-5)
  calls = [10 + int(observation_lib.decision_step(t, num_steps - 10, D))
           for t in range(D)]
  assert [i for i, d in enumerate(due) if d] == calls + [num_steps]
  windows = np.split(lrs[10:num_steps], np.array(calls[1:]) - 10)
  np.testing.assert_allclose([w[0] for w in windows], env_lrs, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               history[num_steps], env_state.opt.params)
  np.testing.assert_allclose(state.inner.obs, env_state.obs, rtol=1e-4,
                             atol=1e-5)


def test_fraction_controllers_need_the_run_length():
  ctrl = _fraction_controller()
  base = tasks.make_optimizer("sgd", learning_rate=0.1)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl, every=10, num_steps=100)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl, num_steps=D - 1)
