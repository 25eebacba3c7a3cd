"""Starting JAX's multi-controller runtime: flags, ``initialize``, roles.

One program runs as P processes (one per host, or several on one host for a
quick try). Every process runs the same code on the same inputs; the
population axis is split over the processes' devices (``sharding``), and
every process ends up with the same gathered results and the same
controller updates. ``jax.distributed.initialize`` connects the processes
through a coordinator (process 0's address); on CPU hosts the collectives
go through gloo.

The launch convention of every long-running script (absl flags)::

  --coordinator_address=HOST:PORT --num_processes=P --process_id=I
      one process of a P-process job (run the same command on each host);
  --num_processes=P alone
      the local launcher (``launcher.launch``): spawns and supervises P
      processes of the same command on this machine;
  none of them
      JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU, ...), or a
      single process when no cluster is detected.

``initialize_or_launch(config)`` does whichever of these the flags say, and
must run before any JAX computation.
"""

import dataclasses
import logging
from typing import Optional

import jax

from lr_meta.distributed import launcher

__all__ = [
    "RuntimeConfig", "config_from_flags", "define_flags", "initialize",
    "initialize_or_launch", "is_main_process",
]

# What ``jax.distributed.initialize`` says when auto-detection found no
# cluster and no address was given: then this is a single-process run.
_NO_CLUSTER_MESSAGE = "coordinator_address should be defined"


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """How this process joins a multi-process job.

  Attributes:
    coordinator_address: ``host:port`` of process 0's coordinator service;
      None: from cluster auto-detection (or the local launcher).
    num_processes: P; None: auto-detected (1 when no cluster is found).
    process_id: this process's index in ``[0, P)``; None with ``P > 1``
      and no address: this process is the local launcher.
    initialization_timeout: seconds to wait for every process to connect.
    heartbeat_timeout: seconds after which the coordinator declares a
      silent process dead and stops the job (a killed host does not hang
      the others for longer). JAX's coordination client then terminates
      every other process itself (SIGABRT) with a fatal log line
      "Terminating process because the JAX distributed service detected
      fatal errors" and the service's error, which names the lost process
      ("Task 1 heartbeat timeout"; "Failed to send RPC to coordination
      service. Either the leader task was preempted/died..." for process
      0). Python cannot print a line of its own there: jaxlib 0.10.2's
      ``missed_heartbeat_callback`` cannot pass its status to Python (it
      aborts with ``std::bad_cast``), so it is not used. Measured on one
      host: the survivor exits about ``heartbeat_timeout`` s after process
      1 dies, at once when process 0 dies. Under the local launcher, the
      launcher names the dead process at once and stops the others.
    shutdown_timeout: seconds a finishing process waits for the others.
    launch_timeout: local launcher only: seconds after which every child is
      stopped and the launch fails (None: no limit).
  """
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  initialization_timeout: int = 300
  heartbeat_timeout: int = 100
  shutdown_timeout: int = 300
  launch_timeout: Optional[float] = None

  def __post_init__(self):
    if self.num_processes is not None and (
        not isinstance(self.num_processes, int) or self.num_processes < 1):
      raise ValueError(f"num_processes={self.num_processes!r}; allowed: None "
                       "or an integer >= 1.")
    if self.process_id is not None:
      if self.num_processes is None:
        raise ValueError(f"process_id={self.process_id!r} without "
                         "num_processes; allowed: both, or neither (cluster "
                         "auto-detection).")
      if (not isinstance(self.process_id, int)
          or not 0 <= self.process_id < self.num_processes):
        raise ValueError(f"process_id={self.process_id!r}; allowed: an "
                         f"integer in [0, {self.num_processes}).")
    if self.coordinator_address is not None:
      host, _, port = self.coordinator_address.rpartition(":")
      if not host or not port.isdigit():
        raise ValueError(
            f"coordinator_address={self.coordinator_address!r}; allowed: "
            "'host:port' (process 0's host and a free port).")
      if self.process_id is None:
        raise ValueError("coordinator_address without process_id; allowed: "
                         "--coordinator_address, --num_processes and "
                         "--process_id together.")
    for name in ("initialization_timeout", "heartbeat_timeout",
                 "shutdown_timeout"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}; allowed: an integer >= 1 "
                         "(seconds).")
    if self.launch_timeout is not None and not self.launch_timeout > 0:
      raise ValueError(f"launch_timeout={self.launch_timeout!r}; allowed: "
                       "None (no limit) or seconds > 0.")

  @property
  def launches(self) -> bool:
    """This process is the local launcher (``--num_processes=P > 1`` alone)."""
    return (self.num_processes is not None and self.num_processes > 1
            and self.process_id is None)


def define_flags(flag_values=None) -> None:
  """Defines the launch flags (module docstring) in ``flag_values``.

  Defining them again is a no-op: several scripts loaded into one process
  (tests) share them.

  Args:
    flag_values: an ``absl.flags.FlagValues`` (default: ``absl.flags.FLAGS``).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS if flag_values is None else flag_values
  if "coordinator_address" in fv:
    return
  defaults = RuntimeConfig()
  flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0's coordinator "
      "(multi-host jobs: the same on every host).", flag_values=fv)
  flags.DEFINE_integer(
      "num_processes", None, "Processes of the job. Alone: spawn that many "
      "local processes of this command and supervise them.", flag_values=fv)
  flags.DEFINE_integer(
      "process_id", None, "This process's index in [0, num_processes).",
      flag_values=fv)
  flags.DEFINE_integer(
      "initialization_timeout", defaults.initialization_timeout,
      "Seconds to wait for every process to connect.", flag_values=fv)
  flags.DEFINE_integer(
      "heartbeat_timeout", defaults.heartbeat_timeout,
      "Seconds after which a silent process is declared dead and the job "
      "stops.", flag_values=fv)
  flags.DEFINE_float(
      "launch_timeout", None, "Local launcher: seconds before every process "
      "is stopped (default: no limit).", flag_values=fv)


def config_from_flags(flag_values=None) -> RuntimeConfig:
  """The ``RuntimeConfig`` of the flags ``define_flags`` defined (parsed)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS if flag_values is None else flag_values
  return RuntimeConfig(
      coordinator_address=fv.coordinator_address,
      num_processes=fv.num_processes, process_id=fv.process_id,
      initialization_timeout=fv.initialization_timeout,
      heartbeat_timeout=fv.heartbeat_timeout,
      launch_timeout=fv.launch_timeout)


def initialize(config: RuntimeConfig = RuntimeConfig()) -> None:
  """Joins the multi-process job ``config`` describes (before any JAX work).

  With an address, P and an index: ``jax.distributed.initialize`` with the
  config's timeouts. With nothing given: JAX's cluster auto-detection, and
  a single process (a no-op) when no cluster is found. ``P = 1`` is always a
  single process. CPU collectives use gloo (set before the backend starts;
  it does not affect GPU or TPU backends). Calling it again after a
  successful start is a no-op.

  Raises:
    ValueError: ``config.launches`` (call ``initialize_or_launch``).
    RuntimeError: JAX computations already ran in this process.
  """
  if config.launches:
    raise ValueError(f"num_processes={config.num_processes} without "
                     "process_id asks for the local launcher; allowed here: "
                     "a process_id, or initialize_or_launch().")
  if jax.distributed.is_initialized() or config.num_processes == 1:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  explicit = config.coordinator_address is not None
  try:
    jax.distributed.initialize(
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes, process_id=config.process_id,
        initialization_timeout=config.initialization_timeout,
        heartbeat_timeout_seconds=config.heartbeat_timeout,
        shutdown_timeout_seconds=config.shutdown_timeout)
  except ValueError as e:
    if explicit or _NO_CLUSTER_MESSAGE not in str(e):
      raise
    logging.info("lr_meta.distributed: no cluster detected; one process.")
  except RuntimeError as e:
    if ("before any JAX computation" in str(e)
        or "before any JAX calls" in str(e)):
      raise RuntimeError(
          "lr_meta.distributed.initialize ran after a JAX computation in this "
          "process; call it first (at the top of main, before building "
          "tasks or agents).") from e
    raise


def initialize_or_launch(config: RuntimeConfig) -> None:
  """The launch convention: launcher, one process of a job, or single.

  With ``config.launches`` this process spawns ``config.num_processes``
  children of the same command (``launcher.launch``), waits for them and
  exits (``SystemExit`` with the launch's status; absl's ``app.run`` turns it
  into the exit code). Otherwise it calls ``initialize(config)``.
  """
  if config.launches:
    raise SystemExit(launcher.launch(config.num_processes,
                                     timeout=config.launch_timeout))
  initialize(config)


def is_main_process() -> bool:
  """True on process 0, the one that writes files (metrics, checkpoints)."""
  return jax.process_index() == 0
