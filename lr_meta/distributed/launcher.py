"""The local launcher: P processes of one command on this machine.

``python scripts/x.py ... --num_processes=2`` (no ``--process_id``) makes the
process a launcher: it picks a free port at run time, starts the same
command P times with ``--coordinator_address=127.0.0.1:PORT
--num_processes=P --process_id=I`` appended (absl: a later flag wins), and
supervises the children:

* their output is copied line by line, prefixed ``[p<I>] ``;
* when a child exits with a non-zero status (or is killed), every other
  child is stopped and the launch fails with a message naming the process;
* with a timeout, every child is stopped when it runs out;
* Ctrl-C (or SIGTERM) stops every child.

Each child runs in its own session, so stopping it stops whatever it
started. The port is free when chosen; another program may take it before
process 0 binds it (rare: the launch then fails with a connection error and
can simply be repeated).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, List, Optional, Sequence

__all__ = ["free_port", "launch", "child_command"]

# Seconds between SIGTERM and SIGKILL when stopping children.
_GRACE_S = 5.0
_POLL_S = 0.05


def free_port() -> int:
  """A TCP port that is free on 127.0.0.1 now (chosen by the kernel)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def child_command(command: Sequence[str], port: int, num_processes: int,
                  process_id: int) -> List[str]:
  """``command`` with the flags that make it process ``process_id``."""
  return list(command) + [f"--coordinator_address=127.0.0.1:{port}",
                          f"--num_processes={num_processes}",
                          f"--process_id={process_id}"]


def _this_command() -> List[str]:
  """The command line that started this interpreter (``python -m`` too)."""
  return [sys.executable] + list(sys.orig_argv[1:])


def _copy_lines(stream: IO[bytes], sink: IO[str], prefix: str,
                lock: threading.Lock) -> None:
  for raw in iter(stream.readline, b""):
    line = raw.decode(errors="replace")
    with lock:
      sink.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
      sink.flush()
  stream.close()


def _describe(code: int) -> str:
  if code < 0:
    try:
      return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
      return f"was killed by signal {-code}"
  return f"exited with status {code}"


def _stop(children: Sequence[subprocess.Popen]) -> None:
  """SIGTERM to every live child's session, SIGKILL after a grace period."""
  live = [c for c in children if c.poll() is None]
  for sig in (signal.SIGTERM, signal.SIGKILL):
    for c in live:
      try:
        os.killpg(c.pid, sig)
      except ProcessLookupError:
        pass
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline and any(c.poll() is None for c in live):
      time.sleep(_POLL_S)
    live = [c for c in live if c.poll() is None]
    if not live:
      return
  for c in live:
    c.wait()


def launch(num_processes: int, command: Optional[Sequence[str]] = None, *,
           timeout: Optional[float] = None, stdout: Optional[IO[str]] = None,
           stderr: Optional[IO[str]] = None) -> int:
  """Runs ``num_processes`` local processes of ``command``; returns a status.

  Args:
    num_processes: P >= 1.
    command: the command to start (default: this process's own command
      line); the launch flags are appended.
    timeout: seconds before every child is stopped (None: no limit).
    stdout, stderr: where the children's prefixed output goes (default: this
      process's ``sys.stdout`` / ``sys.stderr``).

  Returns:
    0 when every child exited with status 0; else the first failed child's
    status (1 for a child killed by a signal, and for a timeout). The reason
    is written to ``stderr`` with the process index.
  """
  if not isinstance(num_processes, int) or num_processes < 1:
    raise ValueError(f"num_processes={num_processes!r}; allowed: an integer "
                     ">= 1.")
  if timeout is not None and not timeout > 0:
    raise ValueError(f"timeout={timeout!r}; allowed: None or seconds > 0.")
  stdout = stdout or sys.stdout
  stderr = stderr or sys.stderr
  command = list(command) if command is not None else _this_command()
  port = free_port()
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  lock = threading.Lock()
  children, threads = [], []

  def report(message: str) -> None:
    with lock:
      stderr.write(f"lr_meta.distributed launcher: {message}\n")
      stderr.flush()

  previous = {}
  def on_signal(signum, frame):
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)
  if threading.current_thread() is threading.main_thread():
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_signal)
  status = 0
  try:
    for i in range(num_processes):
      child = subprocess.Popen(
          child_command(command, port, num_processes, i), env=env,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          start_new_session=True)
      children.append(child)
      for stream, sink in ((child.stdout, stdout), (child.stderr, stderr)):
        t = threading.Thread(target=_copy_lines,
                             args=(stream, sink, f"[p{i}] ", lock),
                             daemon=True)
        t.start()
        threads.append(t)
    report(f"started {num_processes} processes (pids "
           f"{', '.join(str(c.pid) for c in children)}), coordinator "
           f"127.0.0.1:{port}")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
      codes = [c.poll() for c in children]
      failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
      if failed:
        i = failed[0]
        report(f"process {i} (pid {children[i].pid}) "
               f"{_describe(codes[i])}; stopping the other processes.")
        status = codes[i] if codes[i] > 0 else 1
        break
      if all(code == 0 for code in codes):
        break
      if deadline is not None and time.monotonic() > deadline:
        running = [i for i, code in enumerate(codes) if code is None]
        report(f"timed out after {timeout:g} s; stopping processes "
               f"{', '.join(map(str, running))} (still running).")
        status = 1
        break
      time.sleep(_POLL_S)
  except KeyboardInterrupt as e:
    report(f"interrupted ({e or 'SIGINT'}); stopping every process.")
    status = 1
  finally:
    _stop(children)
    for t in threads:
      t.join(timeout=_GRACE_S)
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if status:
    report(f"launch failed (status {status}).")
  return status
