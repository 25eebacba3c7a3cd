"""The run directory: one training run's files, written so that nothing is lost.

Every script reads and writes a training run's directory (``--workdir``)
through this module; nothing else knows its layout::

  config.json         the config as run; a resume compares it with the new one
  metrics.csv         one row per training iteration (up to the last checkpoint)
  tb/                 TensorBoard events
  checkpoints/<N>/    orbax: the whole learner state after iteration N and the
                      SHA-256 digest of its contents (the latest ``KEEP``)
  snapshots/<N>/      orbax: the controller params after iteration N and the
                      iteration's training metrics (every checkpoint, kept for
                      best-checkpoint selection)
  controller.msgpack  the final controller (``lr_meta.policies`` file format;
                      agents whose controller has such a format)
  results.md          the training report; eval/ holds evaluations
  corrupt/            checkpoints that failed verification, moved aside
  lock                the process running in it (pid, host)

Guarantees (each has a test reproducing the fault):

* One run per directory: ``Run`` holds an exclusive ``flock`` on ``lock``
  for its lifetime; the kernel releases it when the process dies, so a lock
  left by a dead process is detected (and reported) rather than blocking.
* Resume means the same run: the stored config must equal the new one, except
  for fields named in ``allow_changes`` among ``SAFE_CHANGES``; a directory
  holding metrics or snapshots but no checkpoints is refused.
* A checkpoint is trusted only after its digest matches: an unreadable or
  altered checkpoint is reported in one line, moved to ``corrupt/``, and the
  run resumes from the newest intact one (or refuses when there is none).
* Writes are ordered so that a kill at any point resumes to the same run:
  snapshot N, then metrics.csv (atomic rename), then checkpoint N (orbax's
  atomic rename); on resume everything newer than the restored checkpoint is
  discarded and recomputed (training is deterministic).
* Controller params are finite: a non-finite controller is never saved.
"""

import contextlib
import csv
import fcntl
import gc
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lr_meta.policies import controller as controller_lib

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_DIR", "SNAPSHOT_DIR",
    "CONTROLLER_FILE", "RESULTS_FILE", "EVAL_DIR", "TENSORBOARD_DIR",
    "SAFE_CHANGES", "KEEP", "RETURN_METRICS", "training_return", "RunError",
    "WorkdirBusyError", "ConfigMismatchError", "CheckpointError", "NonFiniteError", "Run",
    "read_config", "config_changes", "tree_digest", "non_finite_leaves",
    "read_metrics", "snapshot_steps", "snapshot_metrics", "load_snapshot",
    "controller_from_training", "write_training_artifact",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
SNAPSHOT_DIR = "snapshots"
CONTROLLER_FILE = "controller.msgpack"
RESULTS_FILE = "results.md"
EVAL_DIR = "eval"
TENSORBOARD_DIR = "tb"
CORRUPT_DIR = "corrupt"
LOCK_FILE = "lock"

# Learner checkpoints kept for resume (older ones are deleted by orbax).
KEEP = 2

# Config fields a resume may change when asked to (``allow_changes``): they
# decide how long the run goes, how often it is saved and how it is reported,
# never what an iteration computes. A name covers its sub-fields.
SAFE_CHANGES = ("num_iterations", "checkpoint_every", "eval")


class RunError(RuntimeError):
  """A run directory cannot be used as asked; the message says why."""


class WorkdirBusyError(RunError):
  """Another live process runs in the directory."""


class ConfigMismatchError(RunError):
  """A resume with another config, or over a run it cannot continue."""


class CheckpointError(RunError):
  """No checkpoint of the run can be trusted."""


class NonFiniteError(RunError):
  """Training produced a non-finite controller."""


# ----------------------------------------------------------------------------
# Small pure pieces.


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


def _flatten(d: Mapping, prefix: str = "") -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping) and v:
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _config_dict(config) -> dict:
  """``config`` (ConfigDict or dict) as a JSON-compatible dict."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(d, default=controller_lib.json_default))


def _config_text(config) -> str:
  """``config.json``'s text for ``config``."""
  if hasattr(config, "to_json_best_effort"):
    return config.to_json_best_effort(indent=2)
  return json.dumps(_config_dict(config), indent=2)


def config_changes(stored: Mapping, new: Mapping) -> List[Tuple[str, Any, Any]]:
  """``(field, stored value, new value)`` for every differing leaf field.

  Both configs are compared as stored in ``config.json`` (tuples as lists);
  a field present in one only is listed with ``'<absent>'`` on the other side.
  """
  a, b = (_flatten(json.loads(_config_text(c))) for c in (stored, new))
  missing = "<absent>"
  return [(k, a.get(k, missing), b.get(k, missing))
          for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]


def _uncommitted(tree):
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


def _rows_digest(rows) -> str:
  return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _covered(field: str, names: Sequence[str]) -> bool:
  return any(field == n or field.startswith(n + ".") for n in names)


def _atomic_write(path: str, text: str):
  tmp = f"{path}.tmp"
  with open(tmp, "w", newline="") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _first_line(e: BaseException, limit: int = 160) -> str:
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  text = f"{type(e).__name__}: {text}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------
# Reading a run directory (evaluation, export, figures).


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run in ``workdir`` ran with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} not found: {workdir!r} is not a run directory written by "
        "scripts/train_controller.py (it holds config.json and snapshots/).")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def read_metrics(workdir: str) -> List[Dict[str, str]]:
  """The rows of ``metrics.csv`` (strings, as written); [] when absent."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _metrics_text(rows: Sequence[Mapping]) -> str:
  fields = []
  for r in rows:
    fields += [k for k in r if k not in fields]
  out = io.StringIO()
  w = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
  w.writeheader()
  w.writerows(rows)
  return out.getvalue()


def _ocp():
  """orbax.checkpoint, imported on first use (it is a heavy import)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp


# The training return an agent logs per iteration (PPO and the actor-critic:
# mean return of the iteration's episodes; DQN: of the last finished episode).
RETURN_METRICS = ("episode_return", "last_episode_return")


def training_return(metrics: Mapping[str, float]) -> float:
  """The training return in an iteration's metrics; -inf when there is none.

  Snapshots are ranked by it (orbax ``best_fn``): the best training return
  first, as Xu et al. 2019 shortlist checkpoints.
  """
  for key in RETURN_METRICS:
    value = metrics.get(key)
    if value is not None and np.isfinite(value):
      return float(value)
  return -np.inf


def _snapshot_manager(workdir: str, read_only: bool = False):
  """Orbax manager of ``snapshots/``: all kept, metrics stored for ranking."""
  ocp = _ocp()
  path = os.path.abspath(os.path.join(workdir, SNAPSHOT_DIR))
  if read_only and not os.path.isdir(path):
    raise FileNotFoundError(f"No {SNAPSHOT_DIR}/ in {workdir}; train with "
                            "scripts/train_controller.py first.")
  # Read-only: a training process may be writing into it (no tmp cleanup);
  # orbax warns about read-only managers at every creation.
  with _absl_verbosity(logging.ERROR if read_only else None):
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only, best_fn=training_return,
        best_mode="max"))


@contextlib.contextmanager
def _absl_verbosity(level):
  if level is None:
    yield
    return
  old = logging.get_verbosity()
  logging.set_verbosity(level)
  try:
    yield
  finally:
    logging.set_verbosity(old)


@contextlib.contextmanager
def _quiet_async_errors():
  """Drops the 'exception ignored' reports of orbax's abandoned coroutines.

  A failed orbax restore leaves its other reads un-awaited; collected later,
  each prints a long TensorStore traceback. The failure itself is raised
  (and reported in one line by the caller).
  """
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook


def snapshot_steps(workdir: str) -> List[int]:
  """Iterations with a controller snapshot, ascending."""
  with contextlib.closing(_snapshot_manager(workdir, read_only=True)) as m:
    steps = sorted(m.all_steps())
  if not steps:
    raise FileNotFoundError(
        f"{os.path.join(workdir, SNAPSHOT_DIR)} holds no snapshots.")
  return steps


def snapshot_metrics(workdir: str) -> Dict[int, Dict[str, float]]:
  """``{iteration: training metrics of that iteration}`` of every snapshot."""
  with contextlib.closing(_snapshot_manager(workdir, read_only=True)) as m:
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
  ocp = _ocp()
  steps = snapshot_steps(workdir)
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ValueError(f"No snapshot at iteration {step} in {workdir}; "
                     f"available: {steps}.")
  source = f"{os.path.join(workdir, SNAPSHOT_DIR)} iteration {step}"
  item = (ocp.args.StandardRestore(jax.tree.map(
      ocp.utils.to_shape_dtype_struct, template)) if template is not None
          else ocp.args.StandardRestore())
  with contextlib.closing(_snapshot_manager(workdir, read_only=True)) as m:
    try:
      with _quiet_async_errors():
        restored = m.restore(step, args=ocp.args.Composite(
            params=item, digest=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{source}: unreadable, or written for another "
                       f"agent/network config ({_first_line(e)}).") from e
  params = restored["params"]
  if tree_digest(params) != restored["digest"]["sha256"]:
    raise ValueError(f"{source}: content digest mismatch (corrupted).")
  bad = non_finite_leaves(params)
  if bad:
    raise ValueError(f"{source}: non-finite params at {bad}.")
  return _uncommitted(params)


# ----------------------------------------------------------------------------
# The training run.


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
  """

  def __init__(self, workdir: str, config, *,
               allow_changes: Sequence[str] = (),
               log: Callable[[str], Any] = print):
    unsafe = [n for n in allow_changes if not _covered(n, SAFE_CHANGES)]
    if unsafe:
      raise ValueError(f"allow_changes={tuple(allow_changes)}: {unsafe} "
                       f"cannot change on resume; allowed: {SAFE_CHANGES} "
                       "(and their sub-fields).")
    self.workdir = workdir
    self.config = config
    self.allow_changes = tuple(allow_changes)
    self.log = log
    self.rows: List[Dict[str, Any]] = []
    self.last_saved = 0
    self._lock_file = None
    self._checkpoints = None
    self._snapshots = None

  def path(self, name: str) -> str:
    return os.path.join(self.workdir, name)

  # -- lifetime ---------------------------------------------------------------

  def __enter__(self) -> "Run":
    os.makedirs(self.workdir, exist_ok=True)
    self._lock()
    try:
      self._check_config()
    except BaseException:
      self._unlock()
      raise
    return self

  def __exit__(self, *exc):
    try:
      for manager in (self._snapshots, self._checkpoints):
        if manager is not None:
          manager.wait_until_finished()
          manager.close()
    finally:
      self._unlock()

  def _lock(self):
    f = open(self.path(LOCK_FILE), "a+")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise WorkdirBusyError(
          f"{self.workdir} is in use by {holder}; one run per workdir (wait "
          "for it to finish, or pass another --workdir).") from None
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
    self._lock_file = f

  def _unlock(self):
    if self._lock_file is not None:
      self._lock_file.seek(0)
      self._lock_file.truncate()
      self._lock_file.flush()
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None

  # -- config -----------------------------------------------------------------

  def _check_config(self):
    path = self.path(CONFIG_FILE)
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
    if os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      changes = config_changes(stored, self.config)
      refused = [c for c in changes if not _covered(c[0], self.allow_changes)]
      if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in refused)
        raise ConfigMismatchError(
            f"{self.workdir} holds a run with another config ({listed}). "
            "Resume with the stored config, or allow safe changes of "
            f"{SAFE_CHANGES} by name (--allow_change).")
      for k, a, b in changes:
        self.log(f"Resuming with {k} changed: {a!r} -> {b!r}.")
    _atomic_write(path, _config_text(self.config))

  # -- checkpoints ------------------------------------------------------------

  def _managers(self):
    if self._checkpoints is None:
      ocp = _ocp()
      self._checkpoints = ocp.CheckpointManager(
          os.path.abspath(self.path(CHECKPOINT_DIR)),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=KEEP, create=True, cleanup_tmp_directories=True))
      self._snapshots = _snapshot_manager(self.workdir)
    return self._checkpoints, self._snapshots

  def _restore_step(self, manager, step: int, abstract):
    """``(state, rows)`` of checkpoint ``step`` verified, or the reason not."""
    ocp = _ocp()
    try:
      with _quiet_async_errors():
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            run=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      return None, f"unreadable ({_first_line(e)})"
    run = restored["run"] or {}
    if "sha256" not in run or "rows" not in run:
      return None, "without content digest"
    if (tree_digest(restored["state"]) != run["sha256"]
        or _rows_digest(run["rows"]) != run.get("rows_sha256")):
      return None, "corrupted (content digest mismatch)"
    return (_uncommitted(restored["state"]), run["rows"]), None

  def restore(self, init_state, controller_params: Callable[[Any], Any]
             ) -> Tuple[Any, int]:
    """``(state, iteration)`` of the newest intact checkpoint, or ``(init, 0)``.

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
    checkpoints, snapshots = self._managers()
    ocp = _ocp()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, init_state)
    state, start, failures = init_state, 0, []
    for step in sorted(checkpoints.all_steps(), reverse=True):
      restored, reason = self._restore_step(checkpoints, step, abstract)
      if reason is None:
        (state, self.rows), start = restored, int(step)
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
    bad = [] if controller_params is None else non_finite_leaves(
        controller_params)
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
    ocp = _ocp()
    row = next((r for r in self.rows if r["iteration"] == step), {})
    params = jax.device_get(params)
    self._snapshots.save(
        step, metrics={k: v for k, v in row.items() if k != "iteration"},
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            digest=ocp.args.JsonSave({"sha256": tree_digest(params)})))
    self._snapshots.wait_until_finished()

  def save(self, step: int, state, controller_params):
    """Checkpoint, snapshot and metrics of iteration ``step``, in that order.

    The checkpoint (learner state, metrics rows, their digests) is committed
    first; the snapshot and ``metrics.csv`` follow from it and are rewritten
    from it on resume, so a kill anywhere leaves a resumable directory.

    Raises:
      NonFiniteError: ``controller_params`` hold a NaN or inf; nothing of
        this iteration is written.
    """
    bad = non_finite_leaves(controller_params)
    if bad:
      raise NonFiniteError(
          f"Iteration {step}: non-finite controller params at {bad}; "
          f"nothing of it is saved. The last good checkpoint and snapshot "
          f"are iteration {self.last_saved}.")
    ocp = _ocp()
    checkpoints, _ = self._managers()
    rows = [r for r in self.rows if r["iteration"] <= step]
    state = jax.device_get(state)
    checkpoints.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        run=ocp.args.JsonSave({"sha256": tree_digest(state), "rows": rows,
                               "rows_sha256": _rows_digest(rows)})))
    checkpoints.wait_until_finished()
    self._save_snapshot(step, controller_params)
    self._write_metrics(rows)
    self.last_saved = step

  def _write_metrics(self, rows):
    if rows:
      _atomic_write(self.path(METRICS_FILE), _metrics_text(rows))


# ----------------------------------------------------------------------------
# The portable controller of a training run (lr_meta.policies).


def controller_from_training(config, env, env_params, agent_params, *,
                             name: str, description: str = ""
                            ) -> controller_lib.Controller:
  """The controller of an agent trained by ``scripts/train_controller.py``.

  Args:
    config: the training config (``ml_collections.ConfigDict`` or dict) with
      ``agent`` and the agent's sub-config.
    env: the ``LREnv`` it trained on (layer paths, action type).
    env_params: its ``LREnvParams`` (K, EMA decay, observation settings).
    agent_params: the learner's ``state.params`` (PPO: ``{'actor',
      'critic'}``; DQN: the online Q-network params).
    name: the controller's name.
    description: free text stored with it.

  Returns:
    A checked ``Controller``.
  """
  agent = config["agent"]
  action_type = env.action_type
  observation = getattr(env, "observation", "dynamics")
  if observation not in controller_lib.OBSERVATION_SIZE:
    raise ValueError(f"env.observation={observation!r}; controllers support "
                     f"the observations {tuple(controller_lib.OBSERVATION_SIZE)}.")
  common = dict(
      name=name, action_type=action_type,
      steps_per_decision=int(env_params.steps_per_decision),
      ema_decay=float(env_params.ema_decay),
      log_lr_observation=bool(env_params.log_lr_observation),
      num_val_examples=env_params.num_val_examples,
      initial_lrs=tuple(float(x) for x in env_params.initial_lrs),
      observation=observation,
      num_decisions=int(env_params.num_decisions),
      agent=agent, description=description, config=_config_dict(config))
  if agent == "ppo" and action_type == "xu2019":
    sub = config["ppo"]
    network = {"mlp": "gaussian_mlp", "lstm": "gaussian_lstm"}[sub["actor"]]
    spec = controller_lib.ControllerSpec(
        network=network, hidden_sizes=(int(sub["hidden_size"]),),
        action_std=float(sub["action_std"]),
        learn_log_std=bool(sub["learn_log_std"]),
        first_dense=tuple(env.first_dense), last_dense=tuple(env.last_dense),
        **common)
    params = agent_params["actor"]
  elif agent == "dqn" and action_type == "fu2016":
    sub = config["dqn"]
    spec = controller_lib.ControllerSpec(
        network="q_mlp",
        hidden_sizes=tuple(int(h) for h in sub["hidden_sizes"]),
        num_actions=int(env.num_actions),
        monitored_layer=tuple(env.monitored_layer), **common)
    params = agent_params
  else:
    raise ValueError(
        f"config.agent={agent!r} with action_type {action_type!r}; "
        "controllers can be exported for ('ppo', 'xu2019') and "
        "('dqn', 'fu2016').")
  return controller_lib.make_controller(spec, jax.device_get(params))


def write_training_artifact(workdir: str, config, env, env_params,
                            agent_params, name: Optional[str] = None,
                            log: Callable[[str], Any] = print) -> str:
  """Saves the trained controller as ``workdir/controller.msgpack``.

  Called once at the end of ``scripts/train_controller.py``; export it into
  the package with ``scripts/export_controller.py``. Agents whose controller
  has no file format (REPS, actor-critic) are skipped with a message: their
  controller is the latest snapshot (``load_snapshot``).

  Returns:
    The path written, or '' when the agent is not exportable.
  """
  name = name or os.path.basename(os.path.normpath(workdir))
  try:
    controller = controller_from_training(config, env, env_params,
                                          agent_params, name=name)
  except ValueError as e:
    log(f"No {CONTROLLER_FILE} written ({e}); the controller is the latest "
        f"snapshot in {SNAPSHOT_DIR}/.")
    return ""
  return controller_lib.save_controller(os.path.join(workdir, CONTROLLER_FILE),
                                        controller)
