"""lr_meta.benchmark methods and workloads: wiring, grids, names, rules."""

import dataclasses
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from lr_meta import benchmark
from lr_meta import optax as lmo
from lr_meta import tasks
from lr_meta.benchmark import methods as methods_lib
from lr_meta.envs import lr_env
from lr_meta.features import observation as observation_lib
from lr_meta.policies import controller as controller_lib
from lr_meta.tasks import optax_training as ot

STEPS = 5


@pytest.fixture(scope="module")
def workload():
  return benchmark.get_workload("tiny_mnist1d_mlp_sgd")


@pytest.fixture(scope="module")
def task(workload):
  return workload.make_task()


# What each self-tuning method must be, written with optax alone: the
# workload is SGD at lr0 0.1 over 40 steps (warm-up 5% = 2 steps).
def _plateau():
  return optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau(
      factor=0.5, patience=5, accumulation_size=10, rtol=1e-4, cooldown=0))


# Warm-up over 2 steps then cosine over the other 38, peak 1, written out
# (the multiplier of prodigy_cosine and dadapt_adamw_cosine).
WARMUP_COSINE_40 = np.concatenate([
    [0.5, 1.0], 0.5 * (1 + np.cos(np.pi * np.arange(38) / 38))])


def _multiplier(peak=1.0):
  table = jax.numpy.asarray(peak * WARMUP_COSINE_40, jax.numpy.float32)
  return lambda count: table[jax.numpy.minimum(count, 39)]


DIRECT = {
    # lr: 10x the workload's default 0.1 (the authors' 10x-50x rule).
    "schedule_free_sgd": lambda: optax.contrib.schedule_free_sgd(
        learning_rate=1.0, warmup_steps=2),
    "schedule_free_adamw": lambda: optax.contrib.schedule_free_adamw(
        learning_rate=0.0025, warmup_steps=2),
    "prodigy": optax.contrib.prodigy,
    "dog": optax.contrib.dog,
    "dowg": optax.contrib.dowg,
    "mechanize": lambda: optax.contrib.mechanize(optax.sgd(1.0)),
    "dadapt_adamw": optax.contrib.dadapt_adamw,
    "cocob": optax.contrib.cocob,
    "reduce_on_plateau": _plateau,
    "prodigy_cosine": lambda: optax.contrib.prodigy(
        learning_rate=_multiplier()),
    "dadapt_adamw_cosine": lambda: optax.contrib.dadapt_adamw(
        learning_rate=_multiplier()),
    "dog_averaged": lambda: optax.chain(optax.contrib.dog(),
                                        lmo.polynomial_average(8.0)),
    "calibrated_adamw": lambda: optax.adamw(
        learning_rate=_multiplier(methods_lib.CALIBRATED_ADAMW["lr"]),
        weight_decay=methods_lib.CALIBRATED_ADAMW["weight_decay"]),
}


def _no_extra_args(params, loss):
  del params, loss
  return {}


def _direct_run(task, optimizer, key, steps, extra_args=_no_extra_args):
  """The benchmark's batches, stepped with optax by hand.

  Returns:
    The final params and the optimizer state after every step.
  """
  state = task.init_with(key, lambda p: ())
  params, run_key = state.params, state.key
  opt_state = optimizer.init(params)
  opt_states = []
  for _ in range(steps):
    run_key, batch_key, _ = jax.random.split(run_key, 3)
    x, y = task.sample_batch(batch_key)
    loss, grads = jax.value_and_grad(
        lambda p: task.loss_and_logits(p, {}, x, y, train=True)[0])(params)
    updates, opt_state = optimizer.update(grads, opt_state, params,
                                          **extra_args(params, loss))
    params = optax.apply_updates(params, updates)
    opt_states.append(opt_state)
  return params, opt_states


def _program_run(task, program, hp, key, steps):
  """``steps`` jitted benchmark steps: the final state and the step sizes."""
  state = ot.init(task, program, hp, key)
  step = jax.jit(ot.train_step, static_argnums=1)
  lrs = []
  for _ in range(steps):
    state, metrics = step(task, program, hp, state)
    lrs.append(float(metrics.learning_rate))
  return state, lrs


def test_every_self_tuning_contrib_method_is_covered():
  contrib = {m.name for m in benchmark.METHODS.values()
             if m.kind == benchmark.SELF_TUNING and m.family != "schedule"}
  assert contrib == set(DIRECT)


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_contrib_methods_equal_optax_called_directly(name, workload, task):
  program, settings = benchmark.get_method(name).build(workload, task)
  (setting,) = settings
  key = jax.random.key(3)
  state, lrs = _program_run(task, program, setting.hp, key, STEPS)
  extra = ((lambda params, loss: {"value": loss})
           if name == "reduce_on_plateau" else _no_extra_args)
  params, opt_states = _direct_run(task, DIRECT[name](), key, STEPS, extra)
  opt_state = opt_states[-1]
  # AdamW at a peak of 1e-2 turns last-bit differences between the jitted
  # program and these eager steps into ~3e-7 where the second moment is
  # near eps; 1e-6 is still 1e-4 of one step.
  atol = 1e-6 if name == "calibrated_adamw" else 1e-7
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5,
                                                       atol=atol),
               state.params, params)
  if name == "reduce_on_plateau":
    ours = lmo.find_state(state.opt_state,
                             optax.contrib.ReduceLROnPlateauState)
    theirs = lmo.find_state(opt_state, optax.contrib.ReduceLROnPlateauState)
    assert int(ours.count) == int(theirs.count) == STEPS
    np.testing.assert_allclose(ours.avg_value, theirs.avg_value, rtol=1e-5)
  if name.startswith("schedule_free"):
    # The warm-up over 2 steps, then the peak: the step size it reports.
    peak = 1.0 if name.endswith("sgd") else 0.0025
    np.testing.assert_allclose(lrs, [peak / 2] + [peak] * (STEPS - 1),
                               rtol=1e-6)
  if name == "cocob":
    assert all(np.isnan(lrs))
  if name.endswith("_cosine"):
    # The step size it reports: the estimate times the multiplier.
    cls = (optax.contrib.ProdigyState if name.startswith("prodigy")
           else optax.contrib.DAdaptAdamWState)
    estimates = [float(lmo.find_state(s, cls).estim_lr) for s in opt_states]
    np.testing.assert_allclose(lrs, np.array(estimates)
                               * WARMUP_COSINE_40[:STEPS], rtol=1e-5)
  if name == "calibrated_adamw":
    np.testing.assert_allclose(
        lrs, methods_lib.CALIBRATED_ADAMW["lr"] * WARMUP_COSINE_40[:STEPS],
        rtol=1e-6)


def test_dog_averaged_is_evaluated_at_its_polynomial_average(workload, task):
  program, (setting,) = benchmark.get_method("dog_averaged").build(
      workload, task)
  state = ot.init(task, program, setting.hp, jax.random.key(0))
  for _ in range(STEPS):
    state, _ = ot.train_step(task, program, setting.hp, state)
  average = lmo.averaged_params(state.opt_state)
  want = task.evaluate(state.replace(params=average), "val")
  got = ot.evaluate(task, program, setting.hp, state, "val")
  assert float(got.loss) == pytest.approx(float(want.loss), rel=1e-6)


def test_schedule_free_sgd_lr_follows_its_rule_and_runs_on_sgd_only(task):
  momentum = benchmark.get_workload("mnist1d_mlp_momentum")
  _, (setting,) = benchmark.get_method("schedule_free_sgd").build(momentum,
                                                                  None)
  assert "learning_rate=1.0" in setting.label   # 10 x lr0 0.1
  adam = benchmark.get_workload("tiny_mnist1d_mlp_adam")
  for name in ("schedule_free_sgd", "tuned_adamw"):
    with pytest.raises(methods_lib.NotApplicable, match="adam"):
      benchmark.get_method(name).build(adam, None)


def test_adamw_methods_share_one_program_with_a_traced_weight_decay(
    workload, task):
  built = {n: benchmark.get_method(n).build(workload, task)
           for n in ("tuned_adamw", "calibrated_adamw", "adamw_calibration")}
  programs = {b[0] for b in built.values()}
  assert len(programs) == 1
  grid = built["adamw_calibration"][1]
  assert len(grid) == (len(methods_lib.CALIBRATION_LRS)
                       * len(methods_lib.CALIBRATION_WEIGHT_DECAYS))
  decays = sorted({float(s.hp["weight_decay"]) for s in grid})
  np.testing.assert_allclose(decays,
                             sorted(methods_lib.CALIBRATION_WEIGHT_DECAYS),
                             rtol=1e-6)
  # tuned_adamw's LR axis extends past its edge like the references'.
  tuned = benchmark.get_method("tuned_adamw")
  settings = built["tuned_adamw"][1]
  lrs = [dict(s.point)["lr"] for s in settings]
  new = tuned.extend(workload, settings, int(np.argmax(lrs)))
  assert [dict(s.point)["lr"] for s in new] == [0.1]


def test_schedule_free_is_evaluated_at_its_eval_params(workload, task):
  program, (setting,) = benchmark.get_method("schedule_free_sgd").build(
      workload, task)
  state = ot.init(task, program, setting.hp, jax.random.key(0))
  for _ in range(STEPS):
    state, _ = ot.train_step(task, program, setting.hp, state)
  x = optax.contrib.schedule_free_eval_params(state.opt_state, state.params)
  want = task.evaluate(state.replace(params=x), "val")
  got = ot.evaluate(task, program, setting.hp, state, "val")
  assert float(got.loss) == pytest.approx(float(want.loss), rel=1e-6)
  # The averaged iterate x is not the gradient point y the run trains.
  gap = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(x), jax.tree.leaves(state.params)))
  assert gap > 1e-3


def test_controller_runs_as_a_user_would(workload, task):
  """The benchmark's controller program equals lmo.controlled fed by hand
  (probe predictions and loss at every step; only decisions read them)."""
  name = "mnist1d_mlp_quickstart"
  method = benchmark.get_method(f"controller:{name}")
  program, (setting,) = method.build(workload, task)
  controller = lmo.pretrained_controller(name)
  probe = min(controller.spec.observation_spec.num_val_examples,
              task.data.x_val.shape[0])
  assert program.probe_size == probe == 200
  steps = 2 * controller.spec.observation_spec.steps_per_decision + 1
  key = jax.random.key(5)
  state, lrs = _program_run(task, program, setting.hp, key, steps)

  optimizer = lmo.controlled(
      optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), controller,
      predictions_shape=(probe, 10))
  xv, yv = task.data.x_val[:probe], task.data.y_val[:probe]

  def probe_args(params, loss):
    logits = task.apply(params, {}, xv)[0]
    return {"loss": loss, "val_loss": tasks.cross_entropy(logits, yv).mean(),
            "predictions": jax.nn.softmax(logits)}

  params, opt_states = _direct_run(task, optimizer, key, steps, probe_args)
  np.testing.assert_allclose(lrs, [float(s.lr) for s in opt_states],
                             rtol=1e-5)
  assert len(set(np.round(lrs, 6))) == 3      # lr0, then two decisions
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               state.params, params)


def _scale_free_controller():
  """A fixed generalist-style controller (scale-free, 4 decisions at
  fractions of the run) whose actions move with the observation."""
  spec = controller_lib.ControllerSpec.from_fields(
      name="generalist_test", action_type="daniel2016",
      network="gaussian_mlp", hidden_sizes=(8,), steps_per_decision=1,
      num_val_examples=200, observation="scale_free", num_decisions=4,
      decision_schedule="fraction")
  net = controller_lib.make_network(spec)
  params = net.init(jax.random.PRNGKey(1), jax.numpy.zeros((10,)), ())
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x * 30 if "Dense_1" in jax.tree_util.keystr(p) else x,
      params)
  return controller_lib.make_controller(spec, params)


def test_a_scale_free_controller_runs_as_a_user_would(workload, task,
                                                      tmp_path):
  """Fraction decisions over the workload's run and only loss / val_loss
  from the probe: the benchmark program equals lmo.controlled by hand."""
  controller = _scale_free_controller()
  path = lmo.save_controller(str(tmp_path / "g.msgpack"), controller)
  program, (setting,) = benchmark.get_method(
      f"controller:{path}").build(workload, task)
  assert program.probe_size == 200
  steps = 21            # decisions at calls 0, 10, 20 of the 40-step run
  key = jax.random.key(5)
  state, lrs = _program_run(task, program, setting.hp, key, steps)

  optimizer = lmo.controlled(
      optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), controller,
      num_steps=workload.num_steps)
  xv, yv = task.data.x_val[:200], task.data.y_val[:200]

  def probe_args(params, loss):
    logits = task.apply(params, {}, xv)[0]
    return {"loss": loss, "val_loss": tasks.cross_entropy(logits, yv).mean()}

  params, opt_states = _direct_run(task, optimizer, key, steps, probe_args)
  np.testing.assert_allclose(lrs, [float(s.lr) for s in opt_states],
                             rtol=1e-5)
  assert len(set(np.round(lrs, 6))) == 3      # three decisions
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               state.params, params)


@pytest.mark.parametrize("which", ["every", "fraction"])
def test_probe_examples_count_the_probes_a_run_takes(workload, task, which,
                                                     tmp_path):
  """The probe cost the report charges: decisions counted on a whole run
  (the steps where ``decision_due`` holds), times the probe's size."""
  if which == "every":
    name = "controller:mnist1d_mlp_quickstart"
  else:
    name = "controller:" + lmo.save_controller(
        str(tmp_path / "g.msgpack"), _scale_free_controller())
  program, (setting,) = benchmark.get_method(name).build(workload, task)
  state = ot.init(task, program, setting.hp, jax.random.key(0))
  step = jax.jit(ot.train_step, static_argnums=1)
  due = 0
  for _ in range(workload.num_steps):
    due += bool(lmo.decision_due(state.opt_state))
    state, _ = step(task, program, setting.hp, state)
  assert due == program.num_decisions(workload.num_steps)
  assert due == (4 if which == "fraction" else -(-40 // 10))
  assert program.probe_examples(workload.num_steps) == due * 200
  assert benchmark.get_method("prodigy").build(workload, task)[
      0].probe_examples(workload.num_steps) == 0


def test_controllers_observe_conv_layers_of_an_all_conv_model(task,
                                                              data_dir):
  """SmallCNN has no dense layer: its first conv and 1x1 classifier conv
  stand in for the first and last dense layers of Xu's observation (the
  one rule, ``observation.resolve_layers``, for the environment and
  ``controlled`` alike)."""
  cnn = tasks.make_task("fashion_mnist", "small_cnn",
                        {"filters": (2, 2, 4)}, "sgd", batch_size=4,
                        num_train_examples=16, num_val_examples=16,
                        num_test_examples=16, data_dir=data_dir)
  variables = cnn.model.init(jax.random.PRNGKey(0), cnn.example_input(),
                             train=False)
  layers = observation_lib.resolve_layers(variables, "dynamics")
  assert (layers.first_dense, layers.last_dense) == (("conv0",), ("conv3",))
  mlp = observation_lib.resolve_layers(
      task.model.init(jax.random.PRNGKey(0), task.example_input(),
                      train=False), "dynamics")
  assert (mlp.first_dense, mlp.last_dense) == (("dense0",), ("dense1",))
  wl = benchmark.get_workload("cifar10_small_cnn_momentum")
  program, (setting,) = benchmark.get_method(
      "controller:fmnist_lenet_xu2019_cpu").build(wl, cnn)
  assert program.observed_layers is None
  state = ot.init(cnn, program, setting.hp, jax.random.key(0))
  state, m = ot.train_step(cnn, program, setting.hp, state)
  assert np.isfinite(float(m.learning_rate))
  # The environment observes the same layers (it refused this model before).
  env = lr_env.LREnv(cnn, "xu2019")
  assert (env.first_dense, env.last_dense) == (("conv0",), ("conv3",))


def test_tuned_grids_and_the_untuned_default(workload, task):
  sizes = {}
  for name in ("best_constant", "cosine", "warmup_cosine", "step_decay",
               "xu2019_step_decay"):
    method = benchmark.get_method(name)
    assert method.kind == benchmark.TUNED and method.family == "schedule"
    program, settings = method.build(workload, task)
    assert program == ot.ScheduledOptimizer("sgd")   # one compiled family
    assert all(s.hp["learning_rates"].shape == (workload.num_steps,)
               for s in settings)
    sizes[name] = len(settings)
  assert sizes == {"best_constant": 6, "cosine": 6, "warmup_cosine": 6,
                   "step_decay": 24, "xu2019_step_decay": 48}
  _, (default,) = benchmark.get_method("default_lr").build(workload, task)
  _, grid = benchmark.get_method("best_constant").build(workload, task)
  # The untuned base optimizer is a point of the constant grid: one run.
  assert default.label in [s.label for s in grid]
  # Xu's fixed grid runs by name only, not in the groups.
  assert "xu2019_step_decay" not in benchmark.known_methods()


@pytest.mark.parametrize("suite", ["cpu", "gpu"])
def test_every_reference_builds_on_every_workload(suite):
  # Building reads only what the workload states (its optimizer's grid,
  # its horizon): every base optimizer of a suite needs an LR grid. The
  # frozen suites (cpu_v1, gpu_v1) are subsets of these two.
  for w in benchmark.get_suite(suite):
    for name in methods_lib.REFERENCES:
      _, settings = benchmark.get_method(name).build(w, None)
      assert len(settings) >= 6
      assert all(s.hp["learning_rates"].shape == (w.num_steps,)
                 for s in settings)
  assert set(methods_lib.GRID_LRS) == set(tasks.KNOWN_OPTIMIZERS)


def test_a_prediction_controller_is_not_applicable_to_a_regression_loss(
    data_dir):
  wl = benchmark.get_workload("fmnist_autoencoder_adam")
  small = tasks.make_task("fashion_mnist", "autoencoder",
                          dict(wl.model_kwargs), "adam", batch_size=8,
                          num_train_examples=16, num_val_examples=16,
                          num_test_examples=16, data_dir=data_dir)
  with pytest.raises(methods_lib.NotApplicable,
                     match="observes class predictions.*'fmnist_autoencoder"
                     "_adam' trains"):
    benchmark.get_method("controller:mnist1d_mlp_quickstart").build(wl, small)
  # The generalist reads the loss only: it runs there.
  program, _ = benchmark.get_method("controller:generalist").build(wl, small)
  assert program.observed_layers is None


def _winner(settings, **coords):
  return next(i for i, s in enumerate(settings) if dict(s.point) == coords)


def test_a_grid_extends_past_the_edge_where_its_winner_sits(workload, task):
  method = benchmark.get_method("step_decay")
  _, settings = method.build(workload, task)
  # SGD's grid is 1 .. 0.003: a winner at LR 1 with the shortest period and
  # the smallest factor sits on three edges: one point past each.
  best = _winner(settings, lr=1.0, every_fraction=0.25, factor=0.1)
  new = method.extend(workload, settings, best)
  assert sorted(dict(s.point).items() for s in new) == sorted([
      {"lr": 3.0, "every_fraction": 0.25, "factor": 0.1}.items(),
      {"lr": 1.0, "every_fraction": 0.125, "factor": 0.1}.items(),
      {"lr": 1.0, "every_fraction": 0.25, "factor": 0.03}.items()])
  assert [s.label for s in new][0] == (
      f"step_decay(lr=3, every={workload.num_steps // 4}, factor=0.1)")
  # An interior winner (on every axis it can move along) adds nothing; the
  # period's upper edge (1/2: longer is a constant) is a bound, not an edge.
  best = _winner(settings, lr=0.1, every_fraction=0.5, factor=0.3)
  assert [dict(s.point) for s in method.extend(workload, settings, best)] == [
      {"lr": 0.1, "every_fraction": 0.5, "factor": 0.55}]
  # A point already in the grid is not added again.
  grown = settings + method.extend(workload, settings, best)
  assert method.extend(workload, grown, _winner(
      grown, lr=0.1, every_fraction=0.5, factor=0.3)) == []


def test_grid_extension_finds_an_optimum_outside_the_first_grid():
  """A synthetic objective (no training): its best LR is 3e-5, far below
  Adam's first grid (3e-2 .. 1e-4); extending from the edge winner walks
  there and stops at the interior optimum."""
  method = benchmark.get_method("cosine")
  wl = benchmark.get_workload("tiny_mnist1d_mlp_adam")
  _, settings = method.build(wl, None)
  objective = lambda s: (np.log10(dict(s.point)["lr"]) - np.log10(3e-5)) ** 2
  extensions = 0
  while True:
    best = int(np.argmin([objective(s) for s in settings]))
    new = method.extend(wl, settings, best)
    if not new:
      break
    settings, extensions = settings + new, extensions + 1
  assert dict(settings[best].point)["lr"] == 3e-5
  assert extensions == 2     # 3e-5 past 1e-4, then 1e-5 to see it turn up
  assert extensions <= methods_lib.MAX_GRID_EXTENSIONS


def test_unknown_names_list_the_known_ones():
  with pytest.raises(ValueError, match="Unknown method 'adamax'.*prodigy.*"
                     "controller:mnist1d_mlp_quickstart"):
    benchmark.get_method("adamax")
  with pytest.raises(ValueError, match="Unknown method 'controller:nope'.*"
                     "mnist1d_mlp_quickstart"):
    benchmark.get_method("controller:nope")
  with pytest.raises(ValueError, match="Unknown suite 'huge'.*tiny, cpu, "
                     "cpu_v1, gpu, gpu_v1"):
    benchmark.get_suite("huge")
  with pytest.raises(ValueError, match="Unknown workload 'x'.*fmnist_mlp_sgd"):
    benchmark.get_workload("x")
  with pytest.raises(ValueError, match=r"\['x'\] are not in suite 'tiny'.*"
                     "tiny_mnist1d_mlp_sgd"):
    benchmark.suite_workloads("tiny", ["x"])


def test_train_side_refuses_a_held_out_workload():
  train = benchmark.workloads.train_side("cpu")
  assert train and all(w.split == benchmark.TRAIN for w in train)
  heldout = benchmark.select(benchmark.get_suite("cpu"), benchmark.HELDOUT)
  with pytest.raises(ValueError, match=rf"\['{heldout[0].name}'\] are "
                     "held out in suite 'cpu'; allowed: its train"):
    benchmark.workloads.train_side("cpu", [train[0].name, heldout[0].name])
  assert benchmark.workloads.train_side("cpu", [train[0].name]) == train[:1]


def test_method_groups_always_hold_the_references():
  names = [m.name for m in benchmark.resolve_methods(["prodigy"])]
  assert names == ["best_constant", "cosine", "warmup_cosine", "step_decay",
                   "default_lr", "prodigy"]
  self_tuning = benchmark.resolve_methods(["self_tuning"])
  assert {m.name for m in self_tuning} >= {
      f"controller:{n}" for n in lmo.pretrained_names()}
  everything = benchmark.resolve_methods(["all"])
  assert len(everything) == len(benchmark.known_methods())
  kinds = [m.kind for m in everything]
  assert kinds == sorted(kinds, key=[benchmark.TUNED,
                                     benchmark.SELF_TUNING].index)


@pytest.mark.parametrize("suite", ["cpu", "cpu_v1", "gpu", "gpu_v1"])
def test_heldout_side_is_honest(suite):
  """Live suites are held out from every shipped controller; a frozen one
  from the controllers it was built against, and any later one trained on
  its held-out tasks is named as such when it runs there."""
  frozen = benchmark.workloads.FROZEN_SUITE_CONTROLLERS.get(suite)
  names = frozen or lmo.pretrained_names()
  assert set(names) <= set(lmo.pretrained_names())
  shipped = [t for n in names for t in
             benchmark.training_tasks(lmo.pretrained_controller(n).spec)]
  workloads = benchmark.get_suite(suite)
  rules = benchmark.workloads.SUITE_RULES[suite]
  assert benchmark.check_heldout_rules(workloads, shipped, rules) == []
  assert len(workloads) >= 8
  heldout = benchmark.select(workloads, "heldout")
  for name in set(lmo.pretrained_names()) - set(names):
    later = benchmark.training_tasks(lmo.pretrained_controller(name).spec)
    assert benchmark.workloads.trained_on_heldout(heldout, later), name
  train_only = benchmark.get_suite(suite)[:4]
  assert benchmark.check_heldout_rules(train_only, (), rules) == [
      "no held-out workload"]


def test_cpu_v1_suite_mixes_data_models_optimizers_and_horizons():
  ws = benchmark.get_suite("cpu_v1")
  assert {w.dataset for w in ws} == {"mnist1d", "fashion_mnist", "cifar10"}
  assert {w.model for w in ws} >= {"mlp", "lenet5", "small_cnn"}
  assert {w.optimizer for w in ws} == {"sgd", "momentum", "adam"}
  assert min(w.num_steps for w in ws) == 300
  assert max(w.num_steps for w in ws) >= 2000
  # A violating held-out side is named.
  bad = [w for w in ws if w.optimizer != "adam"]
  assert "Adam must be a held-out-only base optimizer" in (
      benchmark.check_heldout_rules(bad))
  assert all(w.num_steps <= 100 for w in benchmark.get_suite("tiny"))


def test_a_controller_trained_on_a_held_out_task_is_named():
  ws = benchmark.get_suite("cpu")
  heldout = benchmark.select(ws, "heldout")
  generalist = benchmark.get_method("controller:generalist")
  assert {t.dataset for t in generalist.trained_on} == {
      "mnist1d", "fashion_mnist", "cifar10", "markov"}
  assert benchmark.workloads.trained_on_heldout(
      heldout, generalist.trained_on) == []
  task = benchmark.workloads.TrainingTask
  assert benchmark.workloads.trained_on_heldout(heldout, [
      task("cifar10", "resnet_norm", "momentum", 300),
      task("tiny_shakespeare", "lstm", "sgd", 100)]) == [
          "held-out 'cifar10_resnet_group_momentum': (cifar10, resnet_norm, "
          "momentum) was trained on",
          "training tasks read the held-out text tiny_shakespeare: "
          "['tiny_shakespeare/lstm/sgd']"]


def test_cpu_suite_v2_held_out_side_and_its_rules():
  ws = benchmark.get_suite("cpu")
  heldout = benchmark.select(ws, "heldout")
  train = benchmark.select(ws, "train")
  # The old held-out workloads moved to the train side, with three kinds
  # of the held-out side on other data; 8 new held out.
  assert {w.name for w in train} == {
      w.name for w in benchmark.get_suite("cpu_v1")} | {
          "markov_transformer_adamw", "markov_lstm_adam",
          "cifar10_resnet_batch_adamw"}
  assert {(w.model, w.optimizer) for w in train} >= {
      ("transformer", "adamw"), ("lstm", "adam"), ("resnet_norm", "adamw")}
  assert all(w.dataset != "tiny_shakespeare" for w in train)
  assert len(heldout) == 8
  assert benchmark.get_workload("fmnist_mlp_adam_long").split == "heldout"
  shipped = [t for n in lmo.pretrained_names() for t in
             benchmark.training_tasks(lmo.pretrained_controller(n).spec)]
  rules = lambda w, t=shipped: benchmark.check_heldout_rules(w, t, "v2")
  assert rules(ws) == []
  # Each rule names what is missing.
  no_lm = [w for w in ws if w.model != "transformer"]
  assert ("0 held-out transformer language models on Tiny Shakespeare with "
          "AdamW; at least 2 needed") in rules(no_lm)
  short = [w for w in ws if w.num_steps < 2000 or w.split == "train"]
  assert any(p.startswith("0 held-out horizons >= 2 x 1000 steps")
             for p in rules(short))
  # A controller trained on the held-out text, or on a held-out workload's
  # (data set, model, optimizer), breaks the side.
  on_text = shipped + [benchmark.workloads.TrainingTask(
      "tiny_shakespeare", "gru", "adam", 500)]
  assert any("held-out text tiny_shakespeare" in p for p in rules(ws, on_text))
  same = shipped + [benchmark.workloads.TrainingTask(
      "fashion_mnist", "autoencoder", "adam", 500)]
  assert ("held-out 'fmnist_autoencoder_adam': (fashion_mnist, autoencoder, "
          "adam) was trained on") in rules(ws, same)


def test_names_are_checked_without_any_jax_work(tmp_path):
  """scripts/benchmark.py checks its --methods before the multi-process
  runtime starts, which must precede any JAX call: loading a controller to
  check its name started the backend and broke every benchmark run with a
  controller method."""
  code = (
      "from jax._src import xla_bridge\n"
      "import lr_meta.benchmark as b\n"
      "b.check_method_names(['controller:generalist', 'all', 'tuned', "
      "'prodigy', 'schedule:cosine(lr=0.1)'])\n"
      "assert not xla_bridge.backends_are_initialized()\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with pytest.raises(ValueError, match="Unknown method 'controller:nope'"):
    methods_lib.check_names(["controller:nope"])
  with pytest.raises(ValueError, match="No controller file"):
    methods_lib.check_names([f"controller:{tmp_path}/missing.msgpack"])
  with pytest.raises(ValueError, match="Unknown method 'adamax'"):
    methods_lib.check_names(["adamax"])


def test_two_controller_files_of_one_spec_name_are_two_methods(tmp_path):
  """A retrained file keeps its spec's name; both run side by side."""
  shipped = lmo.pretrained_controller("generalist")
  path = str(tmp_path / "retrained.msgpack")
  controller_lib.save_controller(
      path, controller_lib.make_controller(
          shipped.spec, jax.tree.map(lambda x: x * 0.5, shipped.params)))
  methods = methods_lib.resolve(["controller:generalist", f"controller:{path}"])
  families = {m.name: m.family for m in methods
              if m.name.startswith("controller:")}
  assert len(set(families.values())) == 2, families


def test_every_new_gpu_workload_trains_a_step_at_a_tiny_slice(data_dir):
  """The gpu suite never runs in CI: each workload it added to gpu_v1's
  (which ran on an accelerator) builds and takes one finite step here (model,
  kwargs, optimizer, sequence windows), on 8 examples of each split."""
  old = set(benchmark.workloads.SUITES["gpu_v1"])
  for w in benchmark.get_suite("gpu"):
    if w.name in old:
      continue
    small = dataclasses.replace(w, batch_size=4, num_train_examples=8,
                                num_val_examples=8, num_test_examples=8)
    task = small.make_task(data_dir)
    state = task.init(jax.random.PRNGKey(0), w.initial_lr)
    state, metrics = jax.jit(task.train_step)(state, w.initial_lr)
    assert np.isfinite(float(metrics.loss)), w.name
