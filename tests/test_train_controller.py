"""End-to-end tests of scripts/train_controller.py on a tiny config."""

import csv
import io
import json
import os
import pathlib
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

from lr_meta import config as config_lib
from lr_meta import evaluation
from lr_meta import experiment
from lr_meta import rundir
from script_loader import load_script  # tests/script_loader.py

tc = load_script("train_controller")
ec = load_script("evaluate_controller")
REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(num_iterations=2):
  config = config_lib.load_config(pathlib.Path(__file__).parent /
                                  "tiny_ppo_config.py")
  config.num_iterations = num_iterations
  return config


def _rows(path):
  with open(path) as f:
    return [{k: v for k, v in r.items() if k != "time_s"}
            for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One tiny training run (3 iterations) shared by the end-to-end tests;
  its progress goes to a file-like stream (not a terminal)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  log, stream = [], io.StringIO()
  table = tc.run(tiny_config(3), workdir, log=log.append, stream=stream)
  return workdir, table, log, stream.getvalue()


def _events(workdir):
  """``{tag: [(step, value)]}`` of the TensorBoard event files under
  ``workdir/tb`` (TFRecord framing: length, its CRC, the Event, its CRC);
  value: simple_value, or the summary kind ('image', 'text' / 'tensor')."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  for root, _, files in os.walk(os.path.join(workdir, rundir.TENSORBOARD_DIR)):
    for name in files:
      data = pathlib.Path(root, name).read_bytes()
      at = 0
      while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
        at += 12 + length + 4
        for v in event.summary.value:
          kind = v.WhichOneof("value")
          out.setdefault(v.tag, []).append(
              (event.step, v.simple_value if kind == "simple_value"
               else kind))
  return out


def test_end_to_end_writes_outputs(trained):
  workdir, table, _, _ = trained
  # Baselines tuned on this task (quickstart: 'constant', 'cosine').
  assert "PPO controller (lr0=0.1)" in table
  assert "momentum constant(lr=0.1)" in table
  assert "momentum cosine(lr=0.1)" in table
  assert "| schedule_free_adamw (untuned) |" in table   # tiny config's method
  for name in ("metrics.csv", "results.md", "controller.msgpack",
               "config.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  # One controller file per run; learner checkpoints: the latest KEEP.
  assert not os.path.exists(os.path.join(workdir, "controller_params.msgpack"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "3"]
  assert rundir.snapshot_steps(workdir) == [1, 2, 3]
  # The final controller file holds the last snapshot's actor.
  final = rundir.load_snapshot(workdir)
  from lr_meta.policies import controller as controller_lib  # pylint: disable=g-import-not-at-top
  ctrl = controller_lib.load_controller(os.path.join(workdir,
                                                     "controller.msgpack"))
  for a, b in zip(jax.tree.leaves(ctrl.params),
                  jax.tree.leaves(final["actor"])):
    np.testing.assert_array_equal(a, b)
  assert "| diverged |" in table
  rows = _rows(os.path.join(workdir, "metrics.csv"))
  assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
  assert np.isfinite(float(rows[-1]["episode_return"]))
  for name in ("results.md", "results.json", "schedule.png", "val_loss.png"):
    assert os.path.exists(os.path.join(workdir, "eval", name)), name
  assert pathlib.Path(workdir, "eval", "results.md").read_text() == table


def test_main_job_table_equals_evaluate_controller(trained, tmp_path):
  """One protocol: the same checkpoint choice, baselines and numbers."""
  workdir, table, _, _ = trained
  again = ec.evaluate(workdir, outdir=str(tmp_path), log=lambda *a: None)
  assert again == table
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    main_json = json.load(f)
  with open(tmp_path / "results.json") as f:
    script_json = json.load(f)
  main_json.pop("wall_s"), script_json.pop("wall_s")
  for m in main_json["methods"].values():
    m.pop("wall_s")
  for m in script_json["methods"].values():
    m.pop("wall_s")
  assert main_json == script_json


def test_plot_training_script_draws_the_run(trained, tmp_path):
  workdir, _, _, _ = trained
  out = tmp_path / "training.png"
  proc = subprocess.run(
      [sys.executable, str(REPO / "scripts" / "plot_training.py"),
       "--workdir", workdir, "--label", "tiny", "--out", str(out)],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  proc = subprocess.run(
      [sys.executable, str(REPO / "scripts" / "plot_training.py"),
       "--workdir", workdir, "--column", "no_such", "--out", str(out)],
      capture_output=True, text=True, check=False)
  assert proc.returncode != 0
  assert "--column ['no_such'] not in any run's metrics.csv; allowed: [" in (
      proc.stderr)


def test_progress_and_tensorboard(trained):
  workdir, _, log, progress = trained
  # Not a terminal: plain lines, no tqdm carriage returns.
  assert "\r" not in progress
  assert progress.splitlines()[-1].startswith("[iterations] 3/3 (100%)")
  stages = [line for line in log if line.startswith("[evaluation ")]
  # The plan first, then each stage as it finishes: candidates (best 3 by
  # return + the last: iterations 1..3), one lr0, two baselines and one
  # benchmark method.
  assert [line.split(",")[0] for line in stages] == [
      f"[evaluation {i}/7" for i in range(8)]
  assert stages[0].endswith("3 candidate snapshots [1, 2, 3] on 2 seeds, "
                            "then 1 controller run(s), 2 baseline(s) "
                            "['constant', 'cosine'] and 1 benchmark method(s) "
                            "['schedule_free_adamw'] on 2 seeds")
  events = _events(workdir)
  assert [s for s, _ in events["episode_return"]] == [1, 2, 3]
  # The learned LR trajectory at every checkpoint (checkpoint_every = 1).
  assert [s for s, _ in events["controller/lr_schedule"]] == [1, 2, 3]
  final_lrs = [v for _, v in events["controller/final_lr"]]
  # 2 decisions from lr0 = 0.1, each a factor in [0.965, 1.035].
  assert all(0.1 * 0.965**2 - 1e-6 < v < 0.1 * 1.035**2 + 1e-6
             for v in final_lrs), final_lrs
  # The final evaluation: the table, its figures, every method's mean test
  # loss (equal to results.json's), an hparams summary.
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    methods = json.load(f)["methods"]
  logged = sorted(v for tag, vs in events.items()
                  if tag.startswith("evaluation/") and tag.endswith(
                      "/test_loss") for _, v in vs)
  np.testing.assert_allclose(
      logged, sorted(np.mean(m["test_loss"]) for m in methods.values()),
      rtol=1e-6)
  assert {"evaluation/results/text_summary", "evaluation/schedule",
          "evaluation/val_loss"} <= set(events)
  (_, best), = events["hparams/controller_test_loss"]
  assert best == pytest.approx(np.mean(
      methods["PPO controller (lr0=0.1)"]["test_loss"]), rel=1e-6)


def test_resume_equals_uninterrupted(resume_check):
  _, env, env_params, strategy = experiment.build(tiny_config())
  agent = experiment.make_agent(tiny_config(), env, env_params, strategy)
  def train(n, workdir):
    config = tiny_config(n)
    config.checkpoint_every = 2
    return tc.train(config, workdir, agent, log=lambda *a: None,
                    allow_changes=("num_iterations",))
  a, _, b, _ = resume_check(train)
  assert _rows(os.path.join(a, "metrics.csv")) == _rows(
      os.path.join(b, "metrics.csv"))
  untimed = lambda d: {i: {k: v for k, v in m.items() if k != "time_s"}
                       for i, m in rundir.snapshot_metrics(d).items()}
  assert untimed(a) == untimed(b)


@pytest.mark.parametrize("field,value,match", [
    ("agent", "reps", "config.agent"),
    ("num_iterations", -1, "config.num_iterations"),
    ("strategy", "fast", "config.strategy"),
    ("agent", "dqn", "config.env.action_type"),   # DQN needs 'fu2016'
])
def test_bad_config_values(field, value, match):
  config = tiny_config()
  config[field] = value
  with pytest.raises(ValueError, match=match):
    experiment.check_config(config)


def test_bad_agent_subconfig():
  config = tiny_config()
  config.ppo.num_minibatches = 3
  task, env, env_params, strategy = experiment.build(config)
  with pytest.raises(ValueError, match="config.ppo"):
    experiment.make_agent(config, env, env_params, strategy)


def test_evaluate_controller_selects_by_val_and_compares(trained, tmp_path):
  workdir, _, _, _ = trained
  eval_config = tiny_config(3)
  eval_config.eval.baselines = ("constant", "step_decay(lr=0.1, every=2, factor=0.5)")
  eval_config.eval.constant_lrs = (0.3, 0.1)
  eval_config.eval.benchmark_methods = ()
  log = []
  out = str(tmp_path / "eval")
  table = ec.evaluate(workdir, eval_config, outdir=out, num_candidates=1,
                      selection_seeds=1, log=log.append)
  # Candidates: best training return + the last snapshot.
  assert any("selected iteration" in line for line in log)
  assert "PPO controller (lr0=0.1)" in table
  assert "(best of 2 by val loss)" in table      # tuned grid
  assert "step_decay(lr=0.1, every=2, factor=0.5)" in table   # fixed spec
  for name in ("results.md", "results.json", "schedule.png", "val_loss.png"):
    assert os.path.exists(os.path.join(out, name)), name
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out, "results.json")) as f:
    res = json.load(f)
  methods = res["methods"]
  assert len(methods) == 3
  ctrl = np.asarray(methods["PPO controller (lr0=0.1)"]["test_loss"])
  assert ctrl.shape == (2,) and np.all(np.isfinite(ctrl))
  # The reported p-values are Welch's t-test of the stored per-seed numbers.
  import scipy.stats  # pylint: disable=g-import-not-at-top
  other = [k for k in methods if "step_decay(" in k][0]
  p = scipy.stats.ttest_ind(methods[other]["test_loss"], ctrl,
                            equal_var=False).pvalue
  assert f"{p:.3g}" in table


def _table_row(table, label):
  """The cells of the table row of ``label``."""
  row, = [line for line in table.splitlines()
          if line.startswith(f"| {label} |")]
  return [cell.strip() for cell in row.strip("|").split("|")]


def test_benchmark_method_rows_share_seeds_and_scoring(trained, tmp_path):
  """config.eval.benchmark_methods (the quickstart's shipped generalist and
  schedule-free AdamW) run as the benchmark runs them, on the controller's
  seeds, t-tested against it. The evaluation is 20 steps (the generalist's
  20 decisions); the fixed schedule 'schedule:constant(lr=0.1)' goes through
  the benchmark's program and must give the numbers of the baseline
  'constant' (lr 0.1), run on the evaluation seeds by the sweep: same seeds,
  task and test-loss scoring."""
  workdir, _, _, _ = trained
  eval_config = tiny_config(3)
  eval_config.env.steps_per_decision = 10
  quickstart = config_lib.load_config(REPO / "configs" / "quickstart.py")
  names = tuple(quickstart.eval.benchmark_methods)
  assert names == ("controller:generalist", "schedule_free_adamw")
  eval_config.eval.baselines = ("constant",)          # constant_lrs: (0.1,)
  eval_config.eval.benchmark_methods = names + ("schedule:constant(lr=0.1)",)
  log = []
  ev = evaluation.evaluate(workdir, eval_config, num_candidates=1,
                           selection_seeds=1, log=log.append)
  table = evaluation.markdown(ev)
  assert ev.num_steps == 20 and len(ev.methods) == 5
  by_name = {m.benchmark_method: m for m in ev.methods if m.benchmark_method}
  assert list(by_name) == list(eval_config.eval.benchmark_methods)
  controller = ev.methods[0]
  assert list(ev.test_seeds) == [10_000, 10_001]
  for name, m in by_name.items():
    assert m.test_loss.shape == m.test_accuracy.shape == (2,), name
    assert np.all(np.isfinite(m.test_loss)), name
    assert not m.diverged.any() and not m.controller, name
    cells = _table_row(table, m.label)   # p (loss), p (acc): Welch's
    assert cells[4:] == [
        f"{evaluation.welch_p(getattr(m, k), getattr(controller, k)):.3g}"
        for k in ("test_loss", "test_accuracy")], name
    assert f"- `{name}`: " in table     # what it is, under the table
  assert by_name["controller:generalist"].label == (
      "controller:generalist (pretrained, lr0=0.1, untuned)")
  assert "schedule-free AdamW, optax defaults" in table
  constant = ev.methods[1]
  assert constant.label == "momentum constant(lr=0.1)"
  np.testing.assert_allclose(by_name["schedule:constant(lr=0.1)"].test_loss,
                             constant.test_loss, rtol=1e-5)
  np.testing.assert_allclose(
      by_name["schedule:constant(lr=0.1)"].test_accuracy,
      constant.test_accuracy)
  # The plan names them; each is a stage of its own, the last one here.
  assert log[0].endswith(" and 3 benchmark method(s) "
                         f"{list(eval_config.eval.benchmark_methods)} on 2 "
                         "seeds")
  assert log[-1].split("] ", 1)[1].startswith(
      "schedule:constant(lr=0.1) (untuned): test loss ")


@pytest.mark.parametrize("name,match", [
    ("no_such_method", "Unknown method 'no_such_method'"),
    ("controller:no_such_controller", "Unknown method 'controller:no_such"),
    ("cosine", "'cosine' is tuned by the benchmark"),
])
def test_bad_benchmark_methods_are_refused_before_training(name, match,
                                                           tmp_path):
  config = tiny_config()
  config.eval.benchmark_methods = ("schedule_free_adamw", name)
  with pytest.raises(ValueError, match="config.eval.benchmark_methods: "
                     + match):
    tc.run(config, str(tmp_path / "run"), log=lambda *a: None)
  assert not (tmp_path / "run").exists()


def test_evaluate_controller_bad_workdir_and_snapshot(trained, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    rundir.read_config(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="snapshots"):
    rundir.snapshot_steps(str(tmp_path))
  workdir, _, _, _ = trained
  with pytest.raises(ValueError, match="No snapshot at iteration 7.*"
                     r"available: \[1, 2, 3\]"):
    rundir.load_snapshot(workdir, 7)
  with pytest.raises(ValueError, match="another agent/network config"):
    rundir.load_snapshot(workdir, 3, {"w": np.zeros(3)})


def test_baseline_cache_keeps_runs_for_the_next_evaluation(trained, tmp_path,
                                                          monkeypatch):
  """--baseline_cache is the benchmark's run cache: a second evaluation on
  the same task trains no baseline and reports the same numbers; a tuned
  baseline's winner is the grid point with the lowest mean final validation
  loss over the benchmark's tuning seeds (results.json keeps the grid)."""
  from lr_meta.benchmark import harness  # pylint: disable=g-import-not-at-top
  from lr_meta.tasks import optax_training  # pylint: disable=g-import-not-at-top
  workdir, _, _, _ = trained
  eval_config = tiny_config(3)
  eval_config.eval.baselines = ("constant",)
  eval_config.eval.constant_lrs = (0.3, 0.1)
  eval_config.eval.benchmark_methods = ()
  cache = str(tmp_path / "cache")
  outs = []
  for i in range(2):
    out = str(tmp_path / f"eval{i}")
    ec.evaluate(workdir, eval_config, outdir=out, num_candidates=1,
                selection_seeds=1, baseline_cache=cache, log=lambda *a: None)
    with open(os.path.join(out, "results.json")) as f:
      outs.append(json.load(f)["methods"])
    if i == 0:
      assert os.listdir(os.path.join(cache, "runs"))
      trained_runs = []
      real = optax_training.run_batch
      monkeypatch.setattr(optax_training, "run_batch", lambda *a, **k: (
          trained_runs.append(1), real(*a, **k))[1])
  assert not trained_runs
  label, = [k for k in outs[0] if "best of 2" in k]
  assert outs[0][label]["test_loss"] == outs[1][label]["test_loss"]
  tuning = outs[0][label]["tuning"]
  assert len(tuning["tuning_seeds"]) == harness.NUM_TUNING_SEEDS
  grid = {g["label"]: g["val_loss"] for g in tuning["grid"]}
  assert sorted(grid) == ["constant(lr=0.1)", "constant(lr=0.3)"]
  assert tuning["best"] == min(grid, key=grid.get)
  assert label == f"momentum {tuning['best']} (best of 2 by val loss)"


@pytest.mark.parametrize("column", ["episode_return", "last_episode_return"])
def test_candidates_ranked_by_training_return(column):
  metrics = {i: {column: r, "loss": 0.0}
             for i, r in zip((1, 2, 3, 4), (0.5, 0.9, 0.7, 0.1))}
  # Top 2 by return (2, 3) plus the last snapshot (4).
  assert evaluation.candidate_iterations(metrics, 2) == [2, 3, 4]
  assert evaluation.candidate_iterations(metrics, 0) == [4]
  # A NaN return (DQN before its first finished episode) is never ranked.
  metrics[3][column] = float("nan")
  assert evaluation.candidate_iterations(metrics, 2) == [1, 2, 4]
  # Without returns (REPS): the latest snapshots.
  no_return = {i: {"loss": 0.0} for i in (1, 2, 3, 4)}
  assert evaluation.candidate_iterations(no_return, 2) == [3, 4]


def test_results_table_counts_and_marks_diverged_seeds():
  """Hand-made evaluation: a baseline with one of its two seeds diverged."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from lr_meta import baselines  # pylint: disable=g-import-not-at-top

  def method(label, loss, acc, diverged, controller):
    empty = np.zeros(0)
    return evaluation.MethodResult(
        label, np.array(loss), np.array(acc), np.array(diverged), 0.0, empty,
        empty, empty, empty, empty, controller)

  config = ml_collections.ConfigDict(dict(task=dict(
      dataset="mnist1d", model="mlp", batch_size=32)))
  ev = evaluation.Evaluation(
      "runs/x", 4, 6, {4: 1.0}, 2, [10_000, 10_001], config, 100,
      [method("PPO controller", [1.0, 1.2], [0.6, 0.5], [False, False], True),
       method("constant LR 0.3", [2.0, 2.5], [0.3, 0.0], [False, True],
              False)], 1.0)
  rows = evaluation.markdown(ev).splitlines()
  assert rows[4].startswith("| PPO controller | 1.1000 (0.1000) | "
                            "0.5500 (0.0500) | 0 |")
  mark = baselines.DIVERGED_MARK
  assert rows[5].startswith(f"| constant LR 0.3 | 2.2500 (0.2500) {mark} | "
                            f"0.1500 (0.1500) {mark} | 1 |")
  assert baselines.DIVERGED_NOTE in rows
