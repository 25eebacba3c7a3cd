"""Orbax storage of a run directory, trusted only after verification.

Every item is saved with the SHA-256 digest of its contents and checked
against it when restored; orbax's own read errors become one line.
"""

import contextlib
import gc
import hashlib
import json
import logging as std_logging
import os
import sys
from typing import Dict, List, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta.rundir.layout import SNAPSHOT_DIR
from lr_meta.rundir.layout import training_return


def orbax_checkpoint():
  """orbax.checkpoint, imported on first use (it is a heavy import)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp


def manager_options(path: str, create: bool) -> dict:
  """``CheckpointManagerOptions`` keywords of a manager this process alone uses.

  In a multi-process job (``lr_meta.distributed``) process 0 alone touches
  the run directory, so orbax's barriers must span this process only
  (``active_processes``); orbax then refuses ``create``, so the directory
  is made here. A single process keeps orbax's defaults.
  """
  if jax.process_count() == 1:
    return dict(create=create)
  if create:
    os.makedirs(path, exist_ok=True)
  me = jax.process_index()
  return dict(create=False,
              multiprocessing_options=orbax_checkpoint().options.
              MultiprocessingOptions(primary_host=me, active_processes={me}))


def tree_digest(tree) -> str:
  """SHA-256 of a pytree's leaves: their paths, dtypes, shapes and bytes.

  The tree's static data is left out: its text may hold object addresses
  that differ between the process that saves and the one that restores.
  """
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      jax.device_get(tree))[0]:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None),
                             jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    x = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{x.dtype.str}|{x.shape}|".encode())
    h.update(x.tobytes())
  return h.hexdigest()


def non_finite_leaves(tree) -> List[str]:
  """Paths of the floating-point leaves of ``tree`` holding a NaN or inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      jax.device_get(tree))[0]:
    x = np.asarray(leaf)
    if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
      bad.append(jax.tree_util.keystr(path) or "<root>")
  return bad


def uncommitted(tree):
  """``tree`` as fresh (uncommitted) device arrays, like a learner's init.

  Orbax restores arrays committed to a device; a jitted function called with
  them compiles again (a resumed run paid a second full compile).
  """
  def fresh(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    return jnp.asarray(np.asarray(x))
  return jax.tree.map(fresh, tree)


def json_digest(value) -> str:
  """SHA-256 of JSON-compatible data (as written: tuples equal lists)."""
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def first_line(e: BaseException, limit: int = 160) -> str:
  """``'ErrorType: first line of the message'``, cut to ``limit`` characters."""
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  text = f"{type(e).__name__}: {text}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


def snapshot_manager(workdir: str, read_only: bool = False):
  """Orbax manager of ``snapshots/``: all kept, metrics stored for ranking."""
  ocp = orbax_checkpoint()
  path = os.path.abspath(os.path.join(workdir, SNAPSHOT_DIR))
  if read_only and not os.path.isdir(path):
    raise FileNotFoundError(f"No {SNAPSHOT_DIR}/ in {workdir}; train with "
                            "scripts/train_controller.py first.")
  # Read-only: a training process may be writing into it (no tmp cleanup);
  # orbax warns about read-only managers at every creation.
  with absl_verbosity(logging.ERROR if read_only else None):
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        read_only=read_only, cleanup_tmp_directories=not read_only,
        best_fn=training_return, best_mode="max",
        **manager_options(path, create=not read_only)))


@contextlib.contextmanager
def absl_verbosity(level):
  """absl logging at ``level`` inside the block (None: unchanged)."""
  if level is None:
    yield
    return
  old = logging.get_verbosity()
  logging.set_verbosity(level)
  try:
    yield
  finally:
    logging.set_verbosity(old)


# Orbax's per-array read coroutines: after a failed restore the ones still in
# flight are abandoned and, when collected, each reports an 'exception
# ignored' with a long TensorStore traceback; their completion callbacks,
# arriving after orbax closed its event loop, report 'Event loop is closed'.
_ABANDONED_READS = ("_read_array_index_and_device_put",)


def _is_abandoned_read(unraisable) -> bool:
  exc = unraisable.exc_value
  return (getattr(unraisable.object, "__name__", None) in _ABANDONED_READS
          or (isinstance(exc, RuntimeError)
              and str(exc) == "Event loop is closed"))


def _drop_abandoned_reads():
  """Installs (once) an unraisable hook that drops those reports only."""
  current = sys.unraisablehook
  if getattr(current, "drops_abandoned_orbax_reads", False):
    return
  def hook(unraisable):
    if not _is_abandoned_read(unraisable):
      current(unraisable)
  hook.drops_abandoned_orbax_reads = True
  sys.unraisablehook = hook


class _DropOrbaxThreadFailures(std_logging.Filter):
  """Drops orbax's background-thread report of the failure being restored.

  Orbax runs a restore's reads in a ``_SignalingThread`` that logs the
  read error with its whole TensorStore traceback (at ERROR, before the
  restore raises it in the caller's thread), whether or not the caller
  handles it.
  """

  def filter(self, record) -> bool:
    return not (record.pathname.endswith(
        os.path.join("futures", "future.py"))
                and "_SignalingThread.run() raised" in str(record.msg))


@contextlib.contextmanager
def quiet_async_errors():
  """Around an orbax restore: its failure stays one line, not tracebacks.

  Catch the failure inside the block (and report it in one line): the
  exception holds the abandoned reads until it is dropped, and the block
  collects them on exit; reads finalised later are dropped by the hook it
  installs (``_drop_abandoned_reads``). Orbax's own log of the failure,
  written by its reading thread before the restore raises, is dropped while
  the block runs.
  """
  _drop_abandoned_reads()
  absl_logger = logging.get_absl_logger()
  thread_failures = _DropOrbaxThreadFailures()
  absl_logger.addFilter(thread_failures)
  try:
    yield
  finally:
    gc.collect()
    absl_logger.removeFilter(thread_failures)


def snapshot_steps(workdir: str) -> List[int]:
  """Iterations with a controller snapshot, ascending."""
  with contextlib.closing(snapshot_manager(workdir, read_only=True)) as m:
    steps = sorted(m.all_steps())
  if not steps:
    raise FileNotFoundError(
        f"{os.path.join(workdir, SNAPSHOT_DIR)} holds no snapshots.")
  return steps


def snapshot_metrics(workdir: str) -> Dict[int, Dict[str, float]]:
  """``{iteration: training metrics of that iteration}`` of every snapshot."""
  with contextlib.closing(snapshot_manager(workdir, read_only=True)) as m:
    return {int(s): dict(m.metrics(s) or {}) for s in sorted(m.all_steps())}


def load_snapshot(workdir: str, step: Optional[int] = None, template=None):
  """The controller params of snapshot ``step`` (default: the latest).

  Args:
    workdir: the run directory.
    step: an iteration listed by ``snapshot_steps``; None for the latest.
    template: params of the same structure (restored into its pytree type);
      None restores plain nested dicts of arrays.

  Raises:
    ValueError: the snapshot does not exist, does not fit ``template``, fails
      its digest, or holds non-finite params.
  """
  ocp = orbax_checkpoint()
  steps = snapshot_steps(workdir)
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ValueError(f"No snapshot at iteration {step} in {workdir}; "
                     f"available: {steps}.")
  source = f"{os.path.join(workdir, SNAPSHOT_DIR)} iteration {step}"
  item = (ocp.args.StandardRestore(jax.tree.map(
      ocp.utils.to_shape_dtype_struct, template)) if template is not None
          else ocp.args.StandardRestore())
  error = None
  with contextlib.closing(snapshot_manager(workdir, read_only=True)) as m:
    # Caught inside the block: the reads a failure abandons are collected
    # while their reports are silenced.
    with quiet_async_errors():
      try:
        restored = m.restore(step, args=ocp.args.Composite(
            params=item, digest=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        error = first_line(e)
  if error is not None:
    raise ValueError(f"{source}: unreadable, or written for another "
                     f"agent/network config ({error}).")
  params = restored["params"]
  if tree_digest(params) != restored["digest"]["sha256"]:
    raise ValueError(f"{source}: content digest mismatch (corrupted).")
  bad = non_finite_leaves(params)
  if bad:
    raise ValueError(f"{source}: non-finite params at {bad}.")
  return uncommitted(params)


