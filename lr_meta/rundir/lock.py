"""One writing process per run directory: an exclusive ``flock`` on its lock file.

The lock file names its holder (pid, host, start time). The kernel drops a
``flock`` when its process dies, so a lock file left by a killed process is
stale by construction: the next run takes over and says so.
"""

import fcntl
import os
import socket
import time
from typing import Any, Callable, Optional

from lr_meta.rundir.layout import LOCK_FILE
from lr_meta.rundir.layout import WorkdirBusyError

RUN_ADVICE = ("one run per workdir (wait for it to finish, or pass another "
              "--workdir)")


class WorkdirLock:
  """Context manager: holds ``WORKDIR/lock`` while a process writes there.

  Raises:
    WorkdirBusyError: another live process holds it (on ``acquire`` or
      entering the block), naming that process.
  """

  def __init__(self, workdir: str, log: Callable[[str], Any] = print,
               advice: str = RUN_ADVICE):
    """``advice`` ends the busy message: the rule and what to do instead."""
    self.workdir = workdir
    self.log = log
    self.advice = advice
    self._file: Optional[Any] = None

  def acquire(self) -> None:
    os.makedirs(self.workdir, exist_ok=True)
    f = open(os.path.join(self.workdir, LOCK_FILE), "a+")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise WorkdirBusyError(
          f"{self.workdir} is in use by {holder}; {self.advice}.") from None
    f.seek(0)
    previous = f.read().strip()
    if previous:
      self.log(f"Lock of {previous} in {self.workdir} is stale (that process "
               "is gone); taking over.")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    self._file = f

  def release(self) -> None:
    """Empties the lock file (a clean exit leaves no stale holder)."""
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()
      self._file.flush()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
