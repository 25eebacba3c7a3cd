"""scripts/train_generalist.py at test size: outputs, train-side score, resume."""

import os
import shutil

import jax
import numpy as np
import pytest

import lr_meta.optax as lmo
from lr_meta import rundir
from lr_meta import tasks
from lr_meta.benchmark import workloads as workloads_lib
from lr_meta.tasks import distribution as dist_lib

from script_loader import load_script  # tests/script_loader.py


def _config(num_iterations=2):
  tg = load_script("train_generalist")
  config = tg.load_config(os.path.join(os.path.dirname(__file__), os.pardir,
                                       "configs", "generalist.py"))
  config.suite = "tiny"
  d = config.distribution
  d.combinations = [["mnist1d", "mlp", "sgd", 0.1, 1.0]]
  d.num_members, d.mlp_depths, d.mlp_widths = 2, (1, 1), (16, 32)
  d.batch_sizes, d.train_fractions = (16,), (0.2,)
  d.num_steps_range = (8, 16)
  config.env.num_decisions, config.env.num_val_examples = 4, 64
  config.ppo.update(num_envs=2, num_minibatches=1, num_epochs=2,
                    hidden_size=8)
  config.num_iterations = num_iterations
  config.checkpoint_every = 1
  config.score_every = 2
  config.score_seeds = 1
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tg = load_script("train_generalist")
  root = tmp_path_factory.mktemp("generalist")
  straight = tg.train(_config(2), str(root / "straight"))
  tg.train(_config(1), str(root / "resumed"))
  resumed = tg.train(_config(2), str(root / "resumed"),
                     allow_changes=("num_iterations",))
  return root, straight, resumed


def test_resume_is_bit_identical(runs):
  _, straight, resumed = runs
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(straight), jax.device_get(resumed))
  assert int(resumed.iteration) == 2


def test_outputs_and_train_side_score(runs):
  root, *_ = runs
  work = root / "straight"
  for name in ("config.json", "members.txt", "metrics.csv", "scores.csv",
               "controller.msgpack"):
    assert (work / name).exists(), name
  # rundir's layout: snapshots/<N>/, checkpoints/<N>/.
  assert rundir.snapshot_steps(str(work)) == [1, 2]
  assert sorted(os.listdir(work / rundir.CHECKPOINT_DIR)) == ["1", "2"]
  with open(work / "metrics.csv") as f:
    header, *rows = f.read().splitlines()
  assert len(rows) == 2 and "compiles" in header
  assert "return/mnist1d_mlp_sgd" in header
  with open(work / "scores.csv") as f:
    header, row = f.read().splitlines()
  values = dict(zip(header.split(","), row.split(",")))
  assert int(values["iteration"]) == 2
  # Geometric mean over the one tiny train workload = its ratio.
  assert float(values["score"]) == pytest.approx(
      float(values["tiny_mnist1d_mlp_sgd"]))
  assert 0 < float(values["score"]) < 10
  # The resumed run kept the rows of its first part.
  with open(root / "resumed" / "metrics.csv") as f:
    assert len(f.read().splitlines()) == 3


def test_the_controller_runs_in_an_optax_loop_with_loss_and_val_loss(runs):
  root, *_ = runs
  controller = lmo.load_controller(str(root / "straight" /
                                       "controller.msgpack"))
  spec = controller.spec
  assert spec.observation_kind == "scale_free"
  obs_spec = spec.observation_spec
  assert obs_spec.decision_schedule == "fraction"
  assert obs_spec.num_decisions == 4
  # Its training distribution is recorded: the benchmark's held-out check
  # sees every combination at the longest horizon.
  assert workloads_lib.training_tasks(spec) == (
      workloads_lib.TrainingTask("mnist1d", "mlp", "sgd", 16),)
  tx = lmo.controlled(tasks.make_optimizer("sgd", learning_rate=0.1),
                      controller, num_steps=12)
  params = {"w": jax.numpy.ones((3,))}
  state = tx.init(params)
  for t in range(12):
    _, state = tx.update({"w": jax.numpy.full((3,), 0.1)}, state, params,
                         loss=1.0 / (t + 1), val_loss=1.2 / (t + 1))
  assert np.isfinite(float(state.lr)) and float(state.lr) > 0


def test_ablation_removes_exactly_the_named_inputs(runs):
  tg = load_script("train_generalist")
  root, *_ = runs
  controller = lmo.load_controller(str(root / "straight" /
                                       "controller.msgpack"))
  ablated = tg.without_features(controller, ("progress", "loss_cv"))
  act = lambda c, o: np.asarray(c.act(c.params, jax.numpy.asarray(o))[0])
  obs = np.random.default_rng(0).normal(size=(10,)).astype(np.float32)
  moved = obs.copy()
  moved[0] += 5.0    # progress
  moved[8] -= 3.0    # loss_cv
  np.testing.assert_array_equal(act(ablated, obs), act(ablated, moved))
  zeroed = obs.copy()
  zeroed[[0, 8]] = 0.0
  np.testing.assert_allclose(act(ablated, obs), act(controller, zeroed),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="allowed"):
    tg.without_features(controller, ("learning_rate",))


def test_a_snapshot_scores_as_training_scored_it(runs, tmp_path):
  """--score=snapshot:N rebuilds the controller training scored: the same
  score on the same seeds; a missing N names the snapshots there are."""
  tg = load_script("train_generalist")
  root, *_ = runs
  work = str(tmp_path / "copy")
  shutil.copytree(root / "straight", work)
  (row,) = tg.score_and_ablate(_config(2), work, "snapshot:2", False,
                               log=lambda *a: None)
  trained = rundir.layout.read_rows(os.path.join(work, "scores.csv"))[-1]
  assert row["score"] == pytest.approx(float(trained["score"]), rel=1e-6)
  with pytest.raises(ValueError, match=r"snapshot:7'; allowed: a controller "
                     r"file or snapshot:N with N one of \[1, 2\]"):
    tg.score_and_ablate(_config(2), work, "snapshot:7", False)


def test_a_selected_snapshot_is_written_as_the_run_controller(runs,
                                                              tmp_path):
  """--select=snapshot:N writes that snapshot's actor as controller.msgpack
  (in place of the best-scored one); a missing N names the snapshots."""
  tg = load_script("train_generalist")
  root, *_ = runs
  work = str(tmp_path / "copy")
  shutil.copytree(root / "straight", work)
  path = tg.write_selected(_config(2), work, "snapshot:1")
  assert path == os.path.join(work, "controller.msgpack")
  written = lmo.load_controller(path)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(written.params),
               jax.device_get(tg.snapshot_controller(_config(2), work,
                                                     1).params))
  first, second = (rundir.load_snapshot(work, n)["actor"] for n in (1, 2))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(first), jax.tree.leaves(second)))
  with pytest.raises(ValueError, match=r"--select='snapshot:9'; allowed: "
                     r"a controller file or snapshot:N with N one of "
                     r"\[1, 2\]"):
    tg.write_selected(_config(2), work, "snapshot:9")


def test_the_reference_run_is_the_member_at_its_default_lr():
  """The 'log_val_vs_reference' reward's reference: the member's task at
  its default constant LR, validated at step 0 and every 10 steps; checked
  against a plain loop of train steps."""
  tg = load_script("train_generalist")
  config = _config(1)
  config.env.reward = "log_val_vs_reference"
  dist = tg.distribution_config(config)
  member = dist_lib.sample_members(dist)[0]
  (task,) = dist_lib.member_tasks([member], num_val_examples=64,
                                  num_test_examples=1)
  params = tg.env_params_of(config, dist, member, task)
  assert params.reward == "log_val_vs_reference"
  assert params.reference_steps == (0, 10, 20)     # the longest run is 16
  key = jax.random.PRNGKey(config.seed)
  opt, expected = task.init(key, member.default_lr), []
  for step in range(21):
    if step % 10 == 0:
      expected.append(np.log(float(task.evaluate(opt, "val", 64).loss)))
    if step < 20:
      opt, _ = task.train_step(opt, member.default_lr)
  np.testing.assert_allclose(params.reference_log_val, expected, rtol=1e-5)
  assert tg.env_params_of(_config(1), dist, member).reference_steps is None
  with pytest.raises(ValueError, match="needs the member's task"):
    tg.env_params_of(config, dist, member)


def test_score_workloads_restrict_and_name_the_allowed_ones(tmp_path):
  tg = load_script("train_generalist")
  scorer = tg.TrainSideScore("cpu_v1", 1, None, str(tmp_path),
                             ("cifar10_mlp_sgd",))
  assert [w.name for w in scorer.workloads] == ["cifar10_mlp_sgd"]
  assert len(tg.TrainSideScore("cpu_v1", 1, None, str(tmp_path)).workloads) == 4
  with pytest.raises(ValueError, match=r"score_workloads \['fmnist_mlp_adam_"
                     r"long'\]; allowed: the train workloads of suite 'cpu_v1'"):
    tg.TrainSideScore("cpu_v1", 1, None, str(tmp_path),
                      ("fmnist_mlp_adam_long",))


def test_score_first_seed_reads_later_unseen_seeds(tmp_path):
  tg = load_script("train_generalist")
  first = tg.TrainSideScore("cpu_v1", 3, None, str(tmp_path)).seeds
  fresh = tg.TrainSideScore("cpu_v1", 3, None, str(tmp_path),
                            first_seed=3).seeds
  assert len(set(first + fresh)) == 6
  assert fresh == tuple(range(first[0] + 3, first[0] + 6))


def test_table2_config_trains_on_cifar10_only():
  """Xu 2019 Table 2: Fashion-MNIST is neither trained on nor scored."""
  tg = load_script("train_generalist")
  config = tg.load_config(os.path.join(os.path.dirname(__file__), os.pardir,
                                       "configs", "generalist_cifar10.py"))
  dist = tg.distribution_config(config)
  tg.check_train_side(dist, config.suite)
  assert {c.dataset for c in dist.combinations} == {"cifar10"}
  assert tuple(config.score_workloads) == ("cifar10_mlp_sgd",)


def test_a_busy_workdir_is_refused_before_anything_is_written(tmp_path):
  """Two meta-trainings on one workdir: the second is refused, naming the
  first, and writes nothing (the lock of lr_meta.rundir)."""
  tg = load_script("train_generalist")
  with rundir.WorkdirLock(str(tmp_path), log=lambda *a: None):
    with pytest.raises(rundir.WorkdirBusyError,
                       match=rf"{tmp_path} is in use by pid {os.getpid()}"):
      tg.train(_config(1), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["lock"]


def test_a_resume_under_another_config_is_refused_naming_the_field(runs):
  """The stored config.json is the run's: a resume may change only the
  fields it names among rundir.SAFE_CHANGES (as train_controller)."""
  root, *_ = runs
  tg = load_script("train_generalist")
  work = str(root / "resumed")
  stored = (root / "resumed" / "config.json").read_text()
  changed = _config(2)
  changed.ppo.actor_lr = 0.5
  with pytest.raises(rundir.ConfigMismatchError,
                     match=r"ppo\.actor_lr: .* -> 0\.5"):
    tg.train(changed, work)
  with pytest.raises(rundir.ConfigMismatchError,
                     match=r"num_iterations: 2 -> 3"):
    tg.train(_config(3), work)
  with pytest.raises(ValueError, match=r"\['ppo'\] cannot change on resume"):
    tg.train(changed, work, allow_changes=("ppo",))
  assert (root / "resumed" / "config.json").read_text() == stored


def test_the_resumed_run_restores_its_scores_and_its_best_snapshot(runs):
  """scores.csv comes back from the checkpoint (not from a file a kill may
  have cut short), and controller.msgpack is the best-scored snapshot."""
  root, *_ = runs
  for name in ("straight", "resumed"):
    work = str(root / name)
    rows = rundir.read_metrics(work)
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    # Scored every 2 iterations and at the end of each part: the resumed
    # run's first part ended at iteration 1.
    score_rows = rundir.layout.read_rows(os.path.join(work, "scores.csv"))
    assert [int(r["iteration"]) for r in score_rows] == (
        [2] if name == "straight" else [1, 2])
    best = int(min(score_rows, key=lambda r: float(r["score"]))["iteration"])
    shipped = lmo.load_controller(os.path.join(work, "controller.msgpack"))
    snapshot = rundir.load_snapshot(work, best)
    assert sorted(map(float, np.concatenate([
        np.ravel(x) for x in jax.tree.leaves(shipped.params)]))) == sorted(
            map(float, np.concatenate([np.ravel(x) for x in jax.tree.leaves(
                snapshot["actor"])])))
  scores = [rundir.layout.read_rows(str(root / n / "scores.csv"))[-1]["score"]
            for n in ("straight", "resumed")]
  assert scores[0] == scores[1]


def test_a_directory_of_the_earlier_layout_is_refused_untouched(tmp_path):
  tg = load_script("train_generalist")
  snaps = tmp_path / "snapshots"
  snaps.mkdir()
  (snaps / "iter_000004.msgpack").write_bytes(b"old")
  (tmp_path / "checkpoints").mkdir()
  before = sorted(str(p) for p in tmp_path.rglob("*"))
  with pytest.raises(rundir.ConfigMismatchError,
                     match=r"earlier layout .*iter_000004\.msgpack"):
    tg.train(_config(1), str(tmp_path))
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def _actor_equals(params, controller):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params),
               jax.device_get(controller.params))


def test_warm_start_takes_the_actor_from_a_controller(runs, tmp_path):
  """``init_controller`` starts the actor from a controller file (critic and
  optimizer state fresh); a controller of another network is refused,
  naming the field and both values."""
  tg = load_script("train_generalist")
  root, *_ = runs
  source = str(root / "straight" / "controller.msgpack")
  config = _config(1)
  config.seed = 1           # another init: the actor's start is the file's
  config.score_every = 0
  _, envs, env_params, agent = tg.build(config)
  state = agent.init(jax.random.PRNGKey(config.seed))
  warm = tg.warm_start(config, envs[0], env_params[0], state, source)
  _actor_equals(warm.params["actor"], lmo.load_controller(source))
  jax.tree.map(np.testing.assert_array_equal, warm.params["critic"],
               state.params["critic"])
  config.init_controller = source
  final = tg.train(config, str(tmp_path / "warm"), log=lambda *a: None)
  assert int(final.iteration) == 1
  config.ppo.hidden_size = 16
  _, envs, env_params, agent = tg.build(config)
  with pytest.raises(ValueError, match=r"hidden_sizes: .* has \(8,\), this "
                     r"run \(16,\)"):
    tg.warm_start(config, envs[0], env_params[0],
                  agent.init(jax.random.PRNGKey(0)), source)


def test_the_warm_start_recipe_fits_the_shipped_generalist_v1():
  """configs/generalist_v2_warm.py starts its actor from the shipped
  generalist_v1 (the recipe of the shipped generalist): same network,
  action and observation."""
  tg = load_script("train_generalist")
  config = tg.load_config(os.path.join(os.path.dirname(__file__), os.pardir,
                                       "configs", "generalist_v2_warm.py"))
  config.distribution.num_members = 2
  _, envs, env_params, agent = tg.build(config)
  warm = tg.warm_start(config, envs[0], env_params[0],
                       agent.init(jax.random.PRNGKey(0)),
                       config.init_controller)
  _actor_equals(warm.params["actor"],
                lmo.pretrained_controller(config.init_controller))


def test_a_run_behind_a_range_test_exports_a_controller_that_sweeps(
    tmp_path):
  """``env.range_test``: every episode starts with the sweep, the exported
  controller records it (so ``controlled`` runs it) and is scored through
  it; episodes too short for the sweep are refused by name. The recipe
  configs/generalist_v2_swept.py warm-starts from the shipped generalist."""
  tg = load_script("train_generalist")
  config = _config(1)
  config.score_every = 1
  config.env.range_test = dict(fraction=0.25, min_steps=2)
  final = tg.train(config, str(tmp_path / "swept"), log=lambda *a: None)
  assert int(final.iteration) == 1
  ctrl = lmo.load_controller(str(tmp_path / "swept" / "controller.msgpack"))
  settings = ctrl.spec.observation_spec.sweep_settings
  assert (settings.fraction, settings.min_steps, settings.span) == (
      0.25, 2, 300.0)
  tx = lmo.controlled(tasks.make_optimizer("sgd", learning_rate=0.1), ctrl,
                      num_steps=100)
  assert isinstance(tx.init({"w": np.zeros(3)}), lmo.RangeTestState)
  config.env.range_test = dict(fraction=0.25, min_steps=6)
  with pytest.raises(ValueError, match=r"env.range_test=.* leaves 2 inner "
                     r"steps of the shortest episode \(8\)"):
    tg.build(config)
  swept = tg.load_config(os.path.join(os.path.dirname(__file__), os.pardir,
                                      "configs", "generalist_v2_swept.py"))
  # One member of the recipe's cheapest combination: what is checked is the
  # environment's sweep and the actor's fit, not the members.
  swept.distribution.num_members = 1
  swept.distribution.combinations = [
      c for c in swept.distribution.combinations if c[1] == "mlp"][:1]
  _, envs, env_params, agent = tg.build(swept)
  assert env_params[0].observation_spec.sweep_settings == type(settings)()
  warm = tg.warm_start(swept, envs[0], env_params[0],
                       agent.init(jax.random.PRNGKey(0)),
                       swept.init_controller)
  _actor_equals(warm.params["actor"],
                lmo.pretrained_controller(swept.init_controller))
