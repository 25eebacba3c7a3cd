"""lr_meta.distributed: launch flags, the local launcher, row split, and real
2-process jobs (gloo collectives on 127.0.0.1) equal to the 1-process run.

Every subprocess has a time limit; on expiry the launcher is asked to stop
(SIGTERM: it stops its children) and every process it started (pids from
its first line) is killed.
"""

import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lr_meta import distributed
from lr_meta.distributed import launcher

_JOB = pathlib.Path(__file__).with_name("distributed_job.py")
_REPO = _JOB.parents[1]
# Seconds the launcher may take to notice a dead child and stop the other one
# (SIGTERM, then SIGKILL after its grace period), far above the ~0.1 s it needs.
_STOP_BOUND_S = 30.0


# ----------------------------------------------------------------- flags

def test_runtime_config_roles():
  assert not distributed.RuntimeConfig().launches
  assert distributed.RuntimeConfig(num_processes=2).launches
  assert not distributed.RuntimeConfig(num_processes=1).launches
  assert not distributed.RuntimeConfig(
      coordinator_address="10.0.0.1:1234", num_processes=2,
      process_id=1).launches


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_processes=0), "num_processes=0"),
    (dict(process_id=0), "process_id=0 without num_processes"),
    (dict(num_processes=2, process_id=2),
     r"process_id=2; allowed: .* \[0, 2\)"),
    (dict(coordinator_address="nohost", num_processes=2, process_id=0),
     "'host:port'"),
    (dict(coordinator_address="h:1", num_processes=2),
     "coordinator_address without process_id"),
    (dict(heartbeat_timeout=0), "heartbeat_timeout=0"),
    (dict(launch_timeout=-1.0), "launch_timeout=-1.0"),
])
def test_runtime_config_rejects_bad_values(kwargs, match):
  with pytest.raises(ValueError, match=match):
    distributed.RuntimeConfig(**kwargs)


def test_flags_parse_into_config():
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  distributed.define_flags(fv)
  distributed.define_flags(fv)   # a second script in the same process
  fv(["prog", "--coordinator_address=h0:8476", "--num_processes=4",
      "--process_id=3", "--heartbeat_timeout=7"])
  config = distributed.config_from_flags(fv)
  assert config == distributed.RuntimeConfig(
      coordinator_address="h0:8476", num_processes=4, process_id=3,
      heartbeat_timeout=7)


def test_initialize_refuses_the_launcher_role():
  with pytest.raises(ValueError, match="local launcher"):
    distributed.initialize(distributed.RuntimeConfig(num_processes=2))


# -------------------------------------------------------------- row split

def test_process_rows_blocks_and_padding():
  # R = 5 over P = 2: blocks of ceil(5/2) = 3; the last one padded with row 4.
  np.testing.assert_array_equal(distributed.process_rows(5, 2, 0), [0, 1, 2])
  np.testing.assert_array_equal(distributed.process_rows(5, 2, 1), [3, 4, 4])
  # R = 2 over P = 4: two processes hold only the padding row.
  blocks = [distributed.process_rows(2, 4, i) for i in range(4)]
  np.testing.assert_array_equal(np.stack(blocks), [[0], [1], [1], [1]])
  with pytest.raises(ValueError, match="num_rows=0"):
    distributed.process_rows(0, 2, 0)


def test_map_rows_on_one_process_is_the_function():
  rows = (np.arange(6.0), np.ones((6, 2)))
  out = distributed.map_rows(lambda r: r[0] * 2 + r[1][:, 0], rows,
                             distributed.global_mesh())
  np.testing.assert_array_equal(out, np.arange(6.0) * 2 + 1)


def test_single_process_job_has_no_mesh():
  # One process keeps its populations on its default device.
  assert distributed.job_mesh() is None
  assert distributed.global_mesh().axis_names == (distributed.POPULATION_AXIS,)
  assert not distributed.spans_processes(distributed.global_mesh())


def test_shard_population_needs_a_population_axis():
  mesh = distributed.global_mesh()
  assert distributed.shard_population(np.ones(3), None).shape == (3,)
  with pytest.raises(ValueError, match=r"population size\(s\) \[0\]"):
    distributed.shard_population(np.float32(1.0), mesh)


# --------------------------------------------------------------- launcher

_CHILD = ("import sys, time; a = dict(x[2:].split('=') for x in sys.argv[1:]);"
          " i = int(a['process_id']); print('hello from', i, 'of',"
          " a['num_processes'], flush=True);")


def _launch(code, num_processes=2, timeout=60.0):
  out, err = io.StringIO(), io.StringIO()
  status = launcher.launch(num_processes, [sys.executable, "-c", code],
                           timeout=timeout, stdout=out, stderr=err)
  return status, out.getvalue(), err.getvalue()


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


def test_launcher_prefixes_output_and_passes_the_flags():
  status, out, err = _launch(_CHILD + " print('bye', file=sys.stderr)", 3)
  assert status == 0, err
  assert sorted(out.splitlines()) == [f"[p{i}] hello from {i} of 3"
                                      for i in range(3)]
  assert sorted(l for l in err.splitlines() if l.startswith("[p")) == [
      f"[p{i}] bye" for i in range(3)]
  assert re.search(r"coordinator 127\.0\.0\.1:\d+", err)


def test_launcher_stops_everyone_when_one_fails_and_names_it():
  # Process 1 fails at once; process 0 would sleep for ten minutes.
  code = _CHILD + " time.sleep(600 if i == 0 else 0); sys.exit(3 * i)"
  start = time.monotonic()
  status, _, err = _launch(code, timeout=300.0)
  assert time.monotonic() - start < _STOP_BOUND_S
  assert status == 3
  assert "process 1 (pid" in err and "exited with status 3" in err
  pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", err)[1].split(", ")]
  assert not any(_alive(p) for p in pids)


def test_launcher_timeout_stops_everyone():
  status, _, err = _launch(_CHILD + " time.sleep(600)", timeout=1.0)
  assert status == 1
  assert "timed out after 1 s; stopping processes 0, 1" in err


def test_launcher_rejects_bad_arguments():
  with pytest.raises(ValueError, match="num_processes=0"):
    launcher.launch(0, ["true"])
  with pytest.raises(ValueError, match="timeout=0"):
    launcher.launch(2, ["true"], timeout=0)


# ------------------------------------------------------ real 2-process jobs

def _env():
  return dict(os.environ, PYTHONPATH=str(_REPO), PYTHONUNBUFFERED="1",
              JAX_PLATFORMS="cpu")


def _kill_all(proc, text):
  """SIGTERM to the launcher (it stops its children), then SIGKILL to it and
  to every pid it reported starting."""
  if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
    try:
      proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
      proc.kill()
  for match in re.finditer(r"pids ([\d, ]+)\)|pid=(\d+)", text):
    for pid in re.findall(r"\d+", match[0]):
      try:
        os.kill(int(pid), signal.SIGKILL)
      except ProcessLookupError:
        pass


def _start(args):
  return subprocess.Popen([sys.executable, str(_JOB)] + args, env=_env(),
                          cwd=_REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


class _Lines:
  """``proc``'s output lines, read by a thread as they come."""

  def __init__(self, proc):
    self.lines = []
    self._thread = threading.Thread(
        target=lambda: self.lines.extend(iter(proc.stdout.readline, "")),
        daemon=True)
    self._thread.start()

  @property
  def text(self):
    return "".join(self.lines)

  def wait_for(self, proc, pattern, count, timeout):
    """Waits until ``count`` lines match ``pattern``; returns the text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
      if len(re.findall(pattern, self.text, re.M)) >= count:
        return self.text
      time.sleep(0.1)
    _kill_all(proc, self.text)
    pytest.fail(f"no {count} lines {pattern!r} within {timeout} s:\n"
                f"{self.text[-3000:]}")

  def close(self):
    self._thread.join(timeout=10)
    return self.text


def _finish(proc, timeout):
  try:
    text, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    _kill_all(proc, "")
    text, _ = proc.communicate()
    _kill_all(proc, text)
    pytest.fail(f"{proc.args} ran over {timeout} s:\n{text[-3000:]}")
  return proc.returncode, text


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
  """(a) PPO population training, (b) a NOS search batch, (c) a baseline
  sweep with its seed evaluation and a benchmark cell: 2 processes give the
  1-process numbers, and only process 0 writes the benchmark's files."""
  one, two = tmp_path / "one.npz", tmp_path / "two.npz"
  jobs = "--jobs=ppo,nos,sweep,bench"
  # Both runs at once: they are independent (the 2-process job has its own
  # coordinator on a free port).
  single = _start([jobs, f"--out={one}"])
  double = _start([jobs, f"--out={two}", "--num_processes=2",
                   "--launch_timeout=840"])
  status_1, text_1 = _finish(single, 900)
  status_2, text_2 = _finish(double, 900)
  assert status_1 == 0, text_1[-3000:]
  assert status_2 == 0, text_2[-3000:]
  # Both processes ran every job (the output of each is prefixed).
  for job in ("ppo", "nos", "sweep", "bench"):
    assert re.search(rf"^\[p0\] {job}: ", text_2, re.M)
    assert re.search(rf"^\[p1\] {job}: ", text_2, re.M)
  a, b = np.load(one), np.load(two)
  assert sorted(a.files) == sorted(b.files)
  assert {"ppo_returns", "nos_rewards", "nos_params", "sweep_val_loss",
          "seed_test_loss", "bench_test_loss"} <= set(a.files)
  np.testing.assert_array_equal(b["bench_files"], a["bench_files"])
  assert "results.json" in a["bench_files"]
  for name in sorted(set(a.files) - {"bench_files"}):
    np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  np.testing.assert_array_equal(b["split_population"], [0.0, 2.0, 4.0, 6.0])
  # Not a trivial equality: the controller moved and the runs differ.
  assert np.ptp(a["nos_rewards"]) > 0 and np.ptp(a["sweep_val_loss"]) > 0


@pytest.mark.slow
def test_killing_one_process_fails_the_launch_and_names_it():
  proc = _start(["--jobs=", "--hold=300", "--num_processes=2",
                 "--launch_timeout=400"])
  out = _Lines(proc)
  text = out.wait_for(proc, r"^\[p\d\] pid=\d+$", 2, 300)
  victim = int(re.search(r"^\[p1\] pid=(\d+)$", text, re.M)[1])
  os.kill(victim, signal.SIGKILL)
  start = time.monotonic()
  try:
    proc.wait(timeout=_STOP_BOUND_S)
  finally:
    _kill_all(proc, out.text)
  assert time.monotonic() - start < _STOP_BOUND_S
  assert proc.returncode == 1
  text = out.close()
  assert f"process 1 (pid {victim}) was killed by SIGKILL" in text
  survivor = int(re.search(r"^\[p0\] pid=(\d+)$", text, re.M)[1])
  assert not _alive(survivor)


# What the survivor of a 2-process job started without the launcher prints
# when the other process dies: JAX's coordination client terminates it
# (SIGABRT) with one fatal log line, "F... Terminating process because the
# JAX distributed service detected fatal errors. ... absl::Status: ...", and
# the coordination service's error, which names the lost process (the error
# may go on over the next lines). Process 0 hosts the service: it notices a
# dead process 1 when its heartbeat stops; process 1 notices a dead process
# 0 when the service stops answering.
_FATAL = (r"^F.*Terminating process because the JAX distributed service "
          r"detected fatal errors\..*$")
_NAMES_LOST = {
    1: r"Task 1 heartbeat timeout|stopped sending heartbeats\):\s*1\b",
    0: r"Failed to send RPC to coordination service\. Either the leader task "
       r"was preempted/died",
}
_HEARTBEAT_S = 10


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_without_launcher_a_dead_peer_stops_the_survivor(victim):
  """Two processes started as on two hosts: when one dies, the other exits
  non-zero within its heartbeat timeout (plus a margin for a loaded machine)
  instead of hanging, terminated by JAX with a line naming the lost process
  (``_FATAL``; Python never gets to print: the client aborts the process)."""
  port = distributed.free_port()
  procs = [_start(["--jobs=", "--hold=300",
                   f"--heartbeat_timeout={_HEARTBEAT_S}",
                   f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}"])
           for i in range(2)]
  outs = [_Lines(p) for p in procs]
  survivor = 1 - victim
  try:
    for p, out in zip(procs, outs):
      out.wait_for(p, r"^pid=\d+$", 1, 300)
    procs[victim].kill()
    start = time.monotonic()
    procs[survivor].wait(timeout=120)
    elapsed = time.monotonic() - start
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  text = outs[survivor].close()
  print(f"survivor {survivor} stopped {elapsed:.1f} s after the kill")
  assert elapsed < _HEARTBEAT_S + 20, (elapsed, text[-3000:])
  # Terminated by JAX's coordination client (abort), not a Python exit. The
  # abort runs Python's faulthandler, which walks the other threads' stacks
  # while they still run and can itself fault: then the process ends with
  # SIGSEGV after printing "Fatal Python error: Aborted".
  returncode = procs[survivor].returncode
  assert returncode in (-signal.SIGABRT, -signal.SIGSEGV), text[-3000:]
  if returncode == -signal.SIGSEGV:
    assert "Fatal Python error: Aborted" in text, text[-3000:]
  assert len(re.findall(_FATAL, text, re.M)) == 1, text[-3000:]
  error = text[re.search(_FATAL, text, re.M).start():]
  assert re.search(_NAMES_LOST[victim], error), text[-3000:]


# ------------------------------------------- a killed search, then resumed

_SEARCH = _REPO / "scripts" / "search_optimizer.py"
_SEARCH_ITERATIONS = 8
# configs/nos.py shrunk to about a second per iteration once compiled.
_TINY_NOS = """
import runpy

def get_config():
  config = runpy.run_path({nos!r})["get_config"]()
  config.num_iterations = {iterations}
  config.checkpoint_every = 1
  config.leaderboard_size = 3
  config.space.num_groups = 1
  config.scoring.update(
      model_kwargs=dict(hidden_sizes=(8,)), batch_size=16,
      num_train_examples=256, num_val_examples=64, sweep_train_examples=128,
      sweep_lrs=(0.01, 0.1, 1.0), sweep_steps=4, train_steps=60,
      num_groups=1)
  config.ppo.batch_size = 4
  config.compare.num_seeds = 0
  return config
"""


def _search(config, workdir):
  """The 2-process search command (the local launcher) on ``workdir``."""
  return subprocess.Popen(
      [sys.executable, str(_SEARCH), f"--config={config}",
       f"--workdir={workdir}", "--num_processes=2", "--launch_timeout=600"],
      env=_env(), cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _checkpoints(workdir):
  from lr_meta import rundir  # pylint: disable=g-import-not-at-top
  path = workdir / rundir.CHECKPOINT_DIR
  return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if (
      path.is_dir()) else []


@pytest.mark.slow
def test_killed_search_resumes_to_the_uninterrupted_controller(tmp_path):
  """scripts/search_optimizer.py as 2 processes: process 1 killed (SIGKILL)
  once a checkpoint k >= 2 is on disk fails the launch naming it; the same
  command again resumes from k and ends with the uninterrupted run's
  controller, bit for bit (same processes, same checkpointed key)."""
  from lr_meta import rundir  # pylint: disable=g-import-not-at-top
  config = tmp_path / "tiny_nos.py"
  config.write_text(_TINY_NOS.format(nos=str(_REPO / "configs" / "nos.py"),
                                     iterations=_SEARCH_ITERATIONS))
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  # Both at once: independent jobs, each with its own coordinator.
  uninterrupted = _search(config, straight)
  proc = _search(config, killed)
  out = _Lines(proc)
  try:
    text = out.wait_for(proc, r"started 2 processes \(pids \d+, \d+\)", 1, 60)
    victim = int(re.search(r"pids \d+, (\d+)\)", text)[1])
    deadline = time.monotonic() + 400
    while (time.monotonic() < deadline and proc.poll() is None
           and not any(k >= 2 for k in _checkpoints(killed))):
      time.sleep(0.05)
    saved = _checkpoints(killed)
    assert saved and saved[-1] < _SEARCH_ITERATIONS, (saved, out.text[-3000:])
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=_STOP_BOUND_S)
  finally:
    _kill_all(proc, out.text)
  text = out.close()
  assert proc.returncode == 1, text[-3000:]
  assert f"process 1 (pid {victim}) was killed by SIGKILL" in text
  status, straight_text = _finish(uninterrupted, 600)
  assert status == 0, straight_text[-3000:]
  # The same command again: process 0 resumes from the newest intact
  # checkpoint, at least the one seen before the kill.
  status, resumed_text = _finish(_search(config, killed), 600)
  assert status == 0, resumed_text[-3000:]
  resumed = re.search(r"^\[p0\] Resumed from checkpoint at iteration (\d+)\.$",
                      resumed_text, re.M)
  assert resumed, resumed_text[-3000:]
  print(f"killed with checkpoints {saved} on disk; resumed from "
        f"{resumed[1]}")
  assert saved[-1] <= int(resumed[1]) < _SEARCH_ITERATIONS
  a = rundir.load_snapshot(str(straight), _SEARCH_ITERATIONS)
  b = rundir.load_snapshot(str(killed), _SEARCH_ITERATIONS)
  leaves_a, leaves_b = _leaves(a), _leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
  strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"}
                        for r in rows]
  assert (strip(rundir.read_metrics(str(killed)))
          == strip(rundir.read_metrics(str(straight))))
  assert ((killed / "leaderboard.md").read_text()
          == (straight / "leaderboard.md").read_text())


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
