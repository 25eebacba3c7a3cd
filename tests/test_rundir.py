"""Nothing lost, nothing mixed, nothing silent: each test reproduces a fault
on a real run directory of scripts/train_controller.py (lr_meta.rundir) and
checks the required behaviour."""

import glob
import hashlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import rundir
from lr_meta.policies import controller as controller_lib
from lr_meta.rundir import store
from script_loader import load_script  # tests/script_loader.py

tc = load_script("train_controller")
REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILE = str(REPO / "tests" / "tiny_ppo_config.py")
quiet = lambda *a: None


def tiny_config(num_iterations=4):
  config = config_lib.load_config(CONFIG_FILE)
  config.num_iterations = num_iterations
  return config


@pytest.fixture(scope="module")
def setup():
  _, env, env_params, strategy = experiment.build(tiny_config())
  agent = experiment.make_agent(tiny_config(), env, env_params, strategy)
  return env, env_params, agent


def _train(setup, workdir, num_iterations=4, agent=None, **kw):
  logs = []
  state = tc.train(tiny_config(num_iterations), str(workdir),
                   agent or setup[2], log=logs.append, **kw)
  return state, logs


def _artifact(setup, workdir, state):
  env, env_params, _ = setup
  return rundir.write_training_artifact(
      str(workdir), tiny_config(), env, env_params,
      experiment.policy_params(tiny_config(), state),
      export=experiment.exporter(tiny_config()), log=quiet)


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
  """The uninterrupted 4-iteration run: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp("straight") / "run"
  state, _ = _train(setup, workdir)
  _artifact(setup, workdir, state)
  return workdir, state


def _assert_same_run(workdir, state, straight):
  ref_dir, ref_state = straight
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    np.testing.assert_array_equal(a, b)
  rows = lambda d: [{k: v for k, v in r.items() if k != "time_s"}
                    for r in rundir.read_metrics(d)]
  assert rows(workdir) == rows(ref_dir)
  assert rundir.snapshot_steps(workdir) == [1, 2, 3, 4]


# -- 1. Corrupted checkpoints ------------------------------------------------


def _chunks(step_dir):
  """The learner state's data files, largest first."""
  chunks = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"),
                     recursive=True)
  return sorted(chunks, key=lambda p: (-os.path.getsize(p), p))


def _orbax_restore(step_dir, state):
  """What orbax alone (no digest) restores from a checkpoint step."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  with ocp.CheckpointManager(os.path.dirname(step_dir)) as manager:
    return manager.restore(int(os.path.basename(step_dir)),
                           args=ocp.args.Composite(
                               state=ocp.args.StandardRestore(abstract)))[
                                   "state"]


def _flip(step_dir, state):
  """Flips 64 bytes of a data chunk so that orbax restores wrong values
  without any error, the reported fault.

  Chunks may be compressed, and a flip there fails to decode (also handled,
  but another fault): offsets are tried until orbax's own restore succeeds
  with changed leaves.
  """
  for path in _chunks(step_dir):
    original = pathlib.Path(path).read_bytes()
    for start in range(0, len(original) - 64, 64):
      data = bytearray(original)
      data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
      pathlib.Path(path).write_bytes(bytes(data))
      with store.quiet_async_errors():
        try:
          raw = _orbax_restore(step_dir, state)
        except Exception:  # pylint: disable=broad-except
          raw = None
      if raw is None:
        continue
      if any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(raw), jax.tree.leaves(state))):
        return
    pathlib.Path(path).write_bytes(original)
  raise AssertionError(f"No 64-byte flip in {step_dir} that orbax restores "
                       "silently.")


def _truncate(step_dir, state):
  del state
  path = _chunks(step_dir)[0]
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(data[:len(data) // 2])


def _garbage_manifest(step_dir, state):
  del state
  pathlib.Path(step_dir, "state", "manifest.ocdbt").write_bytes(b"garbage" * 9)


def _no_digest(step_dir, state):
  del state
  shutil.rmtree(os.path.join(step_dir, "run"))


def _no_metadata(step_dir, state):
  del state
  os.remove(os.path.join(step_dir, "run", "metadata"))


FAULTS = {
    "flip": (_flip, "corrupted (content digest mismatch)"),
    "truncate": (_truncate, "unreadable (Exception: Encountered error "),
    "manifest": (_garbage_manifest, "unreadable (ValueError: DATA_LOSS: "),
    "no_digest": (_no_digest, "unreadable ("),
    "no_metadata": (_no_metadata, "unreadable (FileNotFoundError: File "),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_latest_checkpoint_falls_back_to_an_intact_one(
    setup, straight, tmp_path, capfd, fault):
  workdir = tmp_path / "run"
  state, _ = _train(setup, workdir)  # checkpoints 3 and 4 are kept
  damage, reason = FAULTS[fault]
  damage(str(workdir / "checkpoints" / "4"), state)
  capfd.readouterr()
  state, logs = _train(setup, workdir)
  # One line per failed checkpoint (iteration and reason), then the fallback.
  assert len(logs) == 2, logs
  assert logs[0].startswith(f"Checkpoint at iteration 4 is {reason}")
  assert re.search(r"; moved to .*corrupt/checkpoint_4_\d{8}-\d{6}\.$",
                   logs[0]), logs[0]
  assert logs[1] == "Resuming from the newest intact checkpoint, iteration 3."
  err = capfd.readouterr().err
  assert "Traceback" not in err and "Exception ignored" not in err, err
  # Resumed from iteration 3: the same run as the uninterrupted one.
  _assert_same_run(workdir, state, straight)


@pytest.mark.parametrize("missing", ["state/_METADATA",
                                     "_CHECKPOINT_METADATA"])
def test_checkpoint_without_orbax_metadata_is_verified_not_dropped(
    tmp_path, missing):
  """Orbax reads these checkpoints without the file; the digest confirms."""
  config, logs = tiny_config(), []
  init = {"w": jnp.zeros(5), "step": jnp.int32(0)}
  with rundir.Run(str(tmp_path), config, log=quiet) as run:
    run.restore(init, lambda s: s["w"])
    for k in (1, 2):
      state = {"w": jnp.arange(5.0) * k, "step": jnp.int32(k)}
      run.record(k, {"loss": 1.0 / k}, state["w"])
      run.save(k, state, state["w"])
  os.remove(tmp_path / "checkpoints" / "2" / missing)
  with rundir.Run(str(tmp_path), config, log=logs.append) as run:
    restored, start = run.restore(init, lambda s: s["w"])
  assert (start, logs) == (2, ["Resumed from checkpoint at iteration 2."])
  np.testing.assert_array_equal(restored["w"], np.arange(5.0) * 2)


def test_orbax_thread_failure_log_is_dropped_only_inside_a_restore(
    caplog, tmp_path):
  """Orbax's reading thread logs the failure (with its traceback) before the
  restore raises it; inside ``quiet_async_errors`` that log is dropped, any
  other error log is kept, and outside the block nothing is filtered."""
  # A stand-in for orbax/checkpoint/_src/futures/future.py: the filter knows
  # the report by its file and message.
  path = tmp_path / "futures" / "future.py"
  path.parent.mkdir()
  path.write_text(
      "from absl import logging\n"
      "def report(suffix=''):\n"
      "  logging.error('[process=0][thread=x][operation_id=1] '\n"
      "                '_SignalingThread.run() raised an exception: ' + suffix)\n")
  namespace = {}
  exec(compile(path.read_text(), str(path), "exec"), namespace)  # pylint: disable=exec-used
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  with store.quiet_async_errors():
    namespace["report"]("inside")
    absl_logging.error("another error, kept")
  namespace["report"]("outside")
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 2, messages
  assert messages[0] == "another error, kept"
  assert messages[1].endswith("raised an exception: outside")


def test_no_intact_checkpoint_is_refused_in_one_line(setup, tmp_path):
  workdir = tmp_path / "run"
  state, _ = _train(setup, workdir, 2)   # checkpoints 1 and 2
  _flip(str(workdir / "checkpoints" / "2"), state)
  _truncate(str(workdir / "checkpoints" / "1"), None)
  config = tmp_path / "config.py"     # the run's config, as a file
  config.write_text(f"from lr_meta import config\ndef get_config():\n  c = "
                    f"config.load_config({CONFIG_FILE!r})\n"
                    "  c.num_iterations = 2\n  return c\n")
  proc = _script(["scripts/train_controller.py", "--config", str(config),
                  "--workdir", str(workdir)])
  assert proc.returncode == 1
  # The two checkpoints reported as moved aside, then the refusal: no
  # traceback, and no 'exception ignored' from orbax's abandoned reads.
  lines = [l for l in proc.stderr.splitlines()
           if l.strip() and not l.startswith(("iterations", "\r"))]
  assert "Traceback" not in proc.stderr and "ignored" not in proc.stderr, (
      proc.stderr[-3000:])
  assert re.fullmatch(
      r"train_controller: No intact checkpoint in .*checkpoints \(iteration "
      r"2: corrupted \(content digest mismatch\); iteration 1: unreadable "
      r"\(.*\)\); refusing to restart over the run's metrics and "
      r"snapshots\.", lines[-1]), lines
  # And on the next try the run is not silently restarted from iteration 0.
  with pytest.raises(rundir.ConfigMismatchError, match="no checkpoints"):
    _train(setup, workdir, 2)


# -- 2. Non-finite controllers -----------------------------------------------


class _NaNAt:
  """A real agent whose update makes the params NaN at one iteration."""

  def __init__(self, agent, iteration):
    self.agent, self.iteration = agent, iteration
    self.init = agent.init

  def update_iteration(self, state):
    state, metrics = self.agent.update_iteration(state)
    if int(state.iteration) == self.iteration:
      state = state.replace(params=jax.tree.map(lambda x: x * jnp.nan,
                                                state.params))
      metrics = dict(metrics, pg_loss=jnp.nan)
    return state, metrics


def test_non_finite_iteration_stops_and_keeps_the_last_good_controller(
    setup, tmp_path):
  workdir = tmp_path / "run"
  state, _ = _train(setup, workdir, 2)
  good = pathlib.Path(_artifact(setup, workdir, state)).read_bytes()
  with pytest.raises(rundir.NonFiniteError) as e:
    _train(setup, workdir, 4, agent=_NaNAt(setup[2], 3),
           allow_changes=("num_iterations",))
  leaves = [jax.tree_util.keystr(p) for p, _ in
            jax.tree_util.tree_flatten_with_path(state.params)[0]]
  assert str(e.value) == (
      f"Iteration 3 made the controller params non-finite at {leaves} "
      "(non-finite metrics: ['pg_loss']); stopped before saving it. The last "
      "good checkpoint and snapshot are iteration 2.")
  # Nothing of the bad iteration was written; the good controller stands.
  assert (workdir / "controller.msgpack").read_bytes() == good
  assert rundir.snapshot_steps(str(workdir)) == [1, 2]
  assert [r["iteration"] for r in rundir.read_metrics(str(workdir))] == [
      "1", "2"]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
  with pytest.raises(rundir.NonFiniteError, match="Iteration 5: non-finite"):
    with rundir.Run(str(workdir), rundir.read_config(str(workdir)),
                    log=quiet) as run:
      run.restore(state, lambda s: s.params)
      run.save(5, state, jax.tree.map(lambda x: x * jnp.inf, state.params))


def test_controller_files_refuse_non_finite_params(straight, tmp_path):
  ctrl = controller_lib.load_controller(
      str(straight[0] / "controller.msgpack"))
  bad = controller_lib.Controller(ctrl.spec, jax.tree.map(
      lambda x: x.at[(0,) * x.ndim].set(jnp.nan), ctrl.params))
  path = tmp_path / "bad.msgpack"
  with pytest.raises(ValueError, match=r"controller 'run': non-finite "
                     r"controller params at \[.*'bias'.*\]"):
    controller_lib.save_controller(str(path), bad)
  assert not path.exists()
  # A NaN file with a valid checksum (as earlier versions wrote) is refused.
  header = flax.serialization.msgpack_restore(
      (straight[0] / "controller.msgpack").read_bytes())
  params = flax.serialization.to_bytes(jax.device_get(bad.params))
  header.update(params=params, sha256=hashlib.sha256(
      header["spec"].encode() + params).hexdigest())
  path.write_bytes(flax.serialization.msgpack_serialize(header))
  with pytest.raises(ValueError, match=r"bad.msgpack: non-finite controller "
                     "params at"):
    controller_lib.load_controller(str(path))


# -- 3. One run per workdir --------------------------------------------------


def _script(args, **kw):
  return subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True,
                        text=True, timeout=600, check=False, **kw)


def test_second_process_on_a_busy_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  with rundir.Run(workdir, tiny_config(), log=quiet):
    before = pathlib.Path(workdir, "config.json").read_text()
    proc = _script(["scripts/train_controller.py", "--config", CONFIG_FILE,
                    "--workdir", workdir])
    with pytest.raises(rundir.WorkdirBusyError, match=rf"pid {os.getpid()} "):
      with rundir.Run(workdir, tiny_config(), log=quiet):
        pass
  assert proc.returncode == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      f"train_controller: {workdir} is in use by pid {os.getpid()} on "
      f"{os.uname().nodename} since "
      f"{proc.stderr.split(' since ')[1].split(';')[0]}; one run per workdir "
      "(wait for it to finish, or pass another --workdir).")
  assert pathlib.Path(workdir, "config.json").read_text() == before
  assert sorted(os.listdir(workdir)) == ["config.json", "lock"]
  # Released on exit: the lock file is empty and the next run may start.
  assert pathlib.Path(workdir, "lock").read_text() == ""
  with rundir.Run(workdir, tiny_config(), log=quiet):
    pass


def test_stale_lock_of_a_killed_process_is_detected(tmp_path):
  workdir = str(tmp_path / "run")
  code = ("import os, signal, sys\n"
          "from lr_meta import config, rundir\n"
          f"c = config.load_config({CONFIG_FILE!r})\n"
          f"with rundir.Run({workdir!r}, c, log=print):\n"
          "  os.kill(os.getpid(), signal.SIGKILL)\n")
  proc = _script(["-c", code])
  assert proc.returncode == -signal.SIGKILL
  holder = pathlib.Path(workdir, "lock").read_text().strip()
  assert holder.startswith("pid ")
  logs = []
  with rundir.Run(workdir, tiny_config(), log=logs.append):
    assert logs == [f"Lock of {holder} in {workdir} is stale (that process "
                    "is gone); taking over."]


# -- 4. Resume means the same run --------------------------------------------


def test_resume_with_a_changed_config_is_refused(setup, tmp_path):
  workdir = tmp_path / "run"
  _train(setup, workdir, 2)
  files = {n: (workdir / n).read_bytes() for n in ("config.json",
                                                   "metrics.csv")}
  changed = tiny_config(3)
  changed.ppo.actor_lr = 2e-3
  with pytest.raises(rundir.ConfigMismatchError) as e:
    tc.train(changed, str(workdir), setup[2], log=quiet)
  assert str(e.value) == (
      f"{workdir} holds a run with another config (num_iterations: 2 -> 3; "
      "ppo.actor_lr: 0.001 -> 0.002). Resume with the stored config, or "
      "allow safe changes of ('num_iterations', 'checkpoint_every', 'eval') "
      "by name (--allow_change).")
  with pytest.raises(rundir.ConfigMismatchError, match=r"\(ppo.actor_lr: "):
    tc.train(changed, str(workdir), setup[2], log=quiet,
             allow_changes=("num_iterations",))
  with pytest.raises(ValueError, match=r"\['ppo.actor_lr'\] cannot change on "
                     r"resume; allowed: \('num_iterations', "):
    tc.train(changed, str(workdir), setup[2], log=quiet,
             allow_changes=("ppo.actor_lr",))
  assert {n: (workdir / n).read_bytes() for n in files} == files
  # More iterations, allowed by name: the run continues and says so.
  _, logs = _train(setup, workdir, 3, allow_changes=("num_iterations",))
  assert logs[:2] == ["Resuming with num_iterations changed: 2 -> 3.",
                      "Resumed from checkpoint at iteration 2."]
  assert rundir.read_config(str(workdir)).num_iterations == 3


def test_workdir_whose_checkpoints_vanished_is_refused(setup, tmp_path):
  workdir = tmp_path / "run"
  _train(setup, workdir, 2)
  shutil.rmtree(workdir / "checkpoints")
  metrics = (workdir / "metrics.csv").read_bytes()
  with pytest.raises(rundir.ConfigMismatchError) as e:
    _train(setup, workdir, 2)
  assert str(e.value) == (
      f"{workdir} holds metrics.csv and snapshots of a run but no checkpoints"
      " in checkpoints/; refusing to restart from iteration 0 over them "
      "(move them away or use another --workdir).")
  assert (workdir / "metrics.csv").read_bytes() == metrics
  assert rundir.snapshot_steps(str(workdir)) == [1, 2]


# -- A kill -9 inside a save, then resume -----------------------------------

# Runs scripts/train_controller.py and SIGKILLs it when orbax commits step
# STEP of DIR ('checkpoints' or 'snapshots'): the step is fully written to
# its temporary directory, which is never renamed into place.
_KILL_DRIVER = """
import os, runpy, signal, sys
from orbax.checkpoint._src.path import async_path
where, step = sys.argv[1:3]
rename = async_path.rename
async def killing_rename(src, dst, *args, **kwargs):
  if os.path.basename(os.path.dirname(str(dst))) == where and (
      os.path.basename(str(dst)) == step):
    os.kill(os.getpid(), signal.SIGKILL)
  return await rename(src, dst, *args, **kwargs)
async_path.rename = killing_rename
sys.argv = ["train_controller.py"] + sys.argv[3:]
runpy.run_path("scripts/train_controller.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent compilation cache shared by the killed subprocesses."""
  path = str(tmp_path_factory.mktemp("jax_cache"))
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=path,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


@pytest.mark.parametrize("where,resumed_from", [("checkpoints", 2),
                                                ("snapshots", 3)])
def test_kill_during_a_save_then_resume_gives_the_same_controller(
    setup, straight, tmp_path, compile_cache, where, resumed_from):
  workdir = tmp_path / "run"     # the name of straight's run: same artifact
  proc = _script(["-c", _KILL_DRIVER, where, "3", "--config", CONFIG_FILE,
                  "--workdir", str(workdir)], env=compile_cache)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert glob.glob(str(workdir / where / "3.orbax-checkpoint-tmp*"))
  assert not (workdir / "controller.msgpack").exists()
  state, logs = _train(setup, workdir)
  # The killed process left its lock behind, and an uncommitted step.
  assert len(logs) == 2 and re.fullmatch(
      r"Lock of pid \d+ on .* in .* is stale \(that process is gone\); "
      r"taking over\.", logs[0]), logs
  assert logs[1] == f"Resumed from checkpoint at iteration {resumed_from}."
  assert not glob.glob(str(workdir / "*" / "*.orbax-checkpoint-tmp*"))
  _assert_same_run(workdir, state, straight)
  _artifact(setup, workdir, state)
  assert (workdir / "controller.msgpack").read_bytes() == (
      straight[0] / "controller.msgpack").read_bytes()
