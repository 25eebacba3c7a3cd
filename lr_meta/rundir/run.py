"""A training run's directory, held exclusively while training."""

import os
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import jax
import numpy as np

from lr_meta import distributed
from lr_meta.rundir import layout
from lr_meta.rundir import store
from lr_meta.rundir.layout import CHECKPOINT_DIR
from lr_meta.rundir.layout import CheckpointError
from lr_meta.rundir.layout import ConfigMismatchError
from lr_meta.rundir.layout import CORRUPT_DIR
from lr_meta.rundir.layout import KEEP
from lr_meta.rundir.layout import METRICS_FILE
from lr_meta.rundir.layout import NonFiniteError
from lr_meta.rundir.layout import SNAPSHOT_DIR
from lr_meta.rundir.lock import WorkdirLock


class Run:
  """A training run's directory, held exclusively while open.

  Use as a context manager::

    with rundir.Run(workdir, config, allow_changes=("num_iterations",)) as run:
      state, start = run.restore(agent.init(key), policy_params)
      for it in range(start, config.num_iterations):
        state, metrics = agent.update_iteration(state)
        run.record(it + 1, scalars, policy_params(state))
        if checkpoint_due:
          run.save(it + 1, state, policy_params(state))

  Opening takes the lock, then checks the stored config (``allow_changes``:
  fields of ``SAFE_CHANGES`` a resume may change) and writes ``config.json``.

  Attributes:
    rows: the metrics rows recorded (after ``restore``: those up to the
      restored checkpoint).
    data: the JSON-compatible data saved with the restored checkpoint
      (``save(..., data=)``), None when the run starts from iteration 0.
    writes: this process owns the directory. In a multi-process job
      (``lr_meta.distributed``) every process runs the same calls and
      process 0 alone locks, reads and writes the directory; the others get
      what ``restore`` read and take part in ``save``'s gathers.
  """

  def __init__(self, workdir: str, config, *,
               allow_changes: Sequence[str] = (),
               log: Callable[[str], Any] = print):
    layout.check_allow_changes(allow_changes)
    self.workdir = workdir
    self.config = config
    self.allow_changes = tuple(allow_changes)
    self.log = log
    self.rows: List[Dict[str, Any]] = []
    self.data = None
    self.last_saved = 0
    self._workdir_lock = None
    self._checkpoints = None
    self._snapshots = None
    self.writes = distributed.is_main_process()

  def path(self, name: str) -> str:
    return os.path.join(self.workdir, name)

  # -- lifetime ---------------------------------------------------------------

  def __enter__(self) -> "Run":
    if not self.writes:
      return self
    self._lock()     # makes the directory
    try:
      self._check_config()
    except BaseException:
      self._unlock()
      raise
    return self

  def __exit__(self, *exc):
    if not self.writes:
      return
    try:
      for manager in (self._snapshots, self._checkpoints):
        if manager is not None:
          manager.wait_until_finished()
          manager.close()
    finally:
      self._unlock()

  def _lock(self):
    self._workdir_lock = WorkdirLock(self.workdir, self.log)
    self._workdir_lock.acquire()

  def _unlock(self):
    if self._workdir_lock is not None:
      self._workdir_lock.release()
      self._workdir_lock = None

  # -- config -----------------------------------------------------------------

  def _check_config(self):
    def holds_steps(name):
      d = self.path(name)
      return os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))
    # Snapshots and metrics.csv are written after a committed checkpoint, so
    # finding them without one means the checkpoints were lost.
    leftovers = [n for n in (METRICS_FILE, SNAPSHOT_DIR)
                 if holds_steps(n) or os.path.isfile(self.path(n))]
    has_ckpt = holds_steps(CHECKPOINT_DIR)
    if leftovers and not has_ckpt:
      raise ConfigMismatchError(
          f"{self.workdir} holds {' and '.join(leftovers)} of a run but no "
          f"checkpoints in {CHECKPOINT_DIR}/; refusing to restart from "
          "iteration 0 over them (move them away or use another --workdir).")
    layout.check_and_store_config(self.workdir, self.config,
                                  self.allow_changes, self.log)

  # -- checkpoints ------------------------------------------------------------

  def _managers(self):
    if self._checkpoints is None:
      ocp = store.orbax_checkpoint()
      path = os.path.abspath(self.path(CHECKPOINT_DIR))
      self._checkpoints = ocp.CheckpointManager(
          path, options=ocp.CheckpointManagerOptions(
              max_to_keep=KEEP, cleanup_tmp_directories=True,
              **store.manager_options(path, create=True)))
      self._snapshots = store.snapshot_manager(self.workdir)
    return self._checkpoints, self._snapshots

  def _restore_step(self, manager, step: int, abstract):
    """``(state, record)`` of checkpoint ``step`` verified, or the reason not.

    ``record`` is the JSON part (``{'rows': ..., 'data': ...}``).
    """
    ocp = store.orbax_checkpoint()
    # The failure is caught inside the block, so that the reads it abandoned
    # are collected while their reports are silenced.
    with store.quiet_async_errors():
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            run=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        return None, f"unreadable ({store.first_line(e)})"
    run = restored["run"] or {}
    if "sha256" not in run or "json_sha256" not in run:
      return None, "without content digest"
    record = {"rows": run.get("rows"), "data": run.get("data")}
    if (store.tree_digest(restored["state"]) != run["sha256"]
        or store.json_digest(record) != run["json_sha256"]):
      return None, "corrupted (content digest mismatch)"
    return (store.uncommitted(restored["state"]), record), None

  def restore(self, init_state, controller_params: Callable[[Any], Any]
             ) -> Tuple[Any, int]:
    """``(state, iteration)`` of the newest intact checkpoint, or ``(init, 0)``.

    In a multi-process job process 0 reads the directory and every process
    gets its state (as numpy arrays), iteration, rows and data.

    A failed checkpoint is reported in one line (iteration and reason) and
    moved to ``corrupt/``. Snapshots newer than the restored iteration are
    discarded; ``metrics.csv`` and the restored iteration's snapshot are
    rewritten from the checkpoint (a kill may have cut them short).

    Args:
      init_state: the learner state of iteration 0 (its structure, dtypes and
        shapes are those of every checkpoint).
      controller_params: learner state -> controller params.

    Raises:
      CheckpointError: checkpoints exist but none is intact.
    """
    if jax.process_count() == 1:
      return self._restore(init_state, controller_params)
    state, start = (self._restore(init_state, controller_params)
                    if self.writes else (init_state, 0))
    state = distributed.broadcast_from_main(distributed.host_copy(state))
    start, self.rows, self.data = distributed.broadcast_json(
        [start, self.rows, self.data])
    self.last_saved = start
    return state, start

  def _restore(self, init_state, controller_params):
    checkpoints, snapshots = self._managers()
    ocp = store.orbax_checkpoint()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, init_state)
    state, start, failures = init_state, 0, []
    for step in sorted(checkpoints.all_steps(), reverse=True):
      restored, reason = self._restore_step(checkpoints, step, abstract)
      if reason is None:
        (state, record), start = restored, int(step)
        self.rows, self.data = record["rows"], record["data"]
        break
      failures.append(f"iteration {step}: {reason}")
      self.log(f"Checkpoint at iteration {step} is {reason}; moved to "
               f"{self._move_aside(step)}.")
    checkpoints.reload()
    if failures and not start:
      raise CheckpointError(
          f"No intact checkpoint in {self.path(CHECKPOINT_DIR)} ("
          f"{'; '.join(failures)}); refusing to restart over the run's "
          "metrics and snapshots.")
    if failures:
      self.log(f"Resuming from the newest intact checkpoint, iteration "
               f"{start}.")
    elif start:
      self.log(f"Resumed from checkpoint at iteration {start}.")
    for step in snapshots.all_steps():
      if step > start:
        snapshots.delete(step)
    if start:
      if start not in snapshots.all_steps():
        self._save_snapshot(start, controller_params(state))
      self._write_metrics(self.rows)
    self.last_saved = start
    return state, start

  def _move_aside(self, step: int) -> str:
    src = os.path.join(self.path(CHECKPOINT_DIR), str(step))
    dst = os.path.join(self.path(CORRUPT_DIR),
                       f"checkpoint_{step}_{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(self.path(CORRUPT_DIR), exist_ok=True)
    shutil.move(src, dst)
    return dst

  def record(self, iteration: int, scalars: Mapping[str, float],
             controller_params=None):
    """One metrics row, stored with the next checkpoint.

    Raises:
      NonFiniteError: ``controller_params`` (the controller after this
        iteration) hold a NaN or inf; the row is not recorded.
    """
    bad = [] if controller_params is None else store.non_finite_leaves(
        distributed.host_copy(controller_params))
    if bad:
      odd = sorted(k for k, v in scalars.items() if not np.isfinite(v))
      raise NonFiniteError(
          f"Iteration {iteration} made the controller params non-finite at "
          f"{bad} (non-finite metrics: {odd or 'none'}); stopped before "
          "saving it. The last good checkpoint and snapshot are iteration "
          f"{self.last_saved}.")
    self.rows.append(dict(iteration=int(iteration),
                          **{k: float(v) for k, v in scalars.items()}))

  def _save_snapshot(self, step: int, params):
    ocp = store.orbax_checkpoint()
    row = next((r for r in self.rows if r["iteration"] == step), {})
    params = jax.device_get(params)
    self._snapshots.save(
        step, metrics={k: v for k, v in row.items() if k != "iteration"},
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            digest=ocp.args.JsonSave({"sha256": store.tree_digest(params)})))
    self._snapshots.wait_until_finished()

  def save(self, step: int, state, controller_params, data=None):
    """Checkpoint, snapshot and metrics of iteration ``step``, in that order.

    The checkpoint (learner state, metrics rows, ``data``, their digests) is
    committed first; the snapshot and ``metrics.csv`` follow from it and are
    rewritten from it on resume, so a kill anywhere leaves a resumable
    directory.

    Args:
      step: the iteration just done.
      state: the whole learner state (a pytree of arrays).
      controller_params: the controller after this iteration.
      data: JSON-compatible data of the run that is not arrays (e.g. the
        rule cache of an optimizer search), verified like the rest and
        returned as ``self.data`` by ``restore``.

    Raises:
      NonFiniteError: ``controller_params`` hold a NaN or inf; nothing of
        this iteration is written.
    """
    # Every process takes part (arrays split over processes are gathered).
    state, controller_params = distributed.host_copy((state,
                                                      controller_params))
    bad = store.non_finite_leaves(controller_params)
    if bad:
      raise NonFiniteError(
          f"Iteration {step}: non-finite controller params at {bad}; "
          f"nothing of it is saved. The last good checkpoint and snapshot "
          f"are iteration {self.last_saved}.")
    if not self.writes:
      self.last_saved = step
      return
    ocp = store.orbax_checkpoint()
    checkpoints, _ = self._managers()
    record = {"rows": [r for r in self.rows if r["iteration"] <= step],
              "data": data}
    state = jax.device_get(state)
    checkpoints.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        run=ocp.args.JsonSave(dict(record, sha256=store.tree_digest(state),
                                   json_sha256=store.json_digest(record)))))
    checkpoints.wait_until_finished()
    self._save_snapshot(step, controller_params)
    self._write_metrics(record["rows"])
    self.last_saved = step

  def _write_metrics(self, rows):
    if rows:
      layout.atomic_write(self.path(METRICS_FILE), layout.metrics_text(rows))


