"""The files of a run directory, its errors, and reading its config and metrics.

See ``lr_meta.rundir`` for the layout and its guarantees.
"""

import csv
import io
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import ml_collections
import numpy as np

from lr_meta.files import atomic_write  # pylint: disable=unused-import (re-exported: rundir.atomic_write)
from lr_meta.policies import controller as controller_lib

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
# Configs.


def _flatten(d: Mapping, prefix: str = "") -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping) and v:
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_dict(config) -> dict:
  """``config`` (ConfigDict or dict) as a JSON-compatible dict."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(d, default=controller_lib.json_default))


def config_text(config) -> str:
  """``config.json``'s text for ``config``."""
  if hasattr(config, "to_json_best_effort"):
    return config.to_json_best_effort(indent=2)
  return json.dumps(config_dict(config), indent=2)


def config_changes(stored: Mapping, new: Mapping
                   ) -> List[Tuple[str, Any, Any]]:
  """``(field, stored value, new value)`` for every differing leaf field.

  Both configs are compared as stored in ``config.json`` (tuples as lists);
  a field present in one only is listed with ``'<absent>'`` on the other side.
  """
  a, b = (_flatten(json.loads(config_text(c))) for c in (stored, new))
  missing = "<absent>"
  return [(k, a.get(k, missing), b.get(k, missing))
          for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]


def covered(field: str, names: Sequence[str]) -> bool:
  return any(field == n or field.startswith(n + ".") for n in names)


def check_allow_changes(allow_changes: Sequence[str]) -> None:
  """Raises ``ValueError`` unless every name is covered by ``SAFE_CHANGES``."""
  unsafe = [n for n in allow_changes if not covered(n, SAFE_CHANGES)]
  if unsafe:
    raise ValueError(f"allow_changes={tuple(allow_changes)}: {unsafe} "
                     f"cannot change on resume; allowed: {SAFE_CHANGES} "
                     "(and their sub-fields).")


def check_and_store_config(workdir: str, config,
                           allow_changes: Sequence[str] = (),
                           log: Callable[[str], Any] = print) -> None:
  """Refuses to continue a run under another config; then stores ``config``.

  A ``config.json`` already in ``workdir`` is the config its run was started
  with: every leaf that ``config`` changes must be covered by
  ``allow_changes`` (callers check those first with ``check_allow_changes``),
  and each allowed change is logged.

  Raises:
    ConfigMismatchError: naming every refused field with both values.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    changes = config_changes(stored, config)
    refused = [c for c in changes if not covered(c[0], allow_changes)]
    if refused:
      listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in refused)
      raise ConfigMismatchError(
          f"{workdir} holds a run with another config ({listed}). "
          "Resume with the stored config, or allow safe changes of "
          f"{SAFE_CHANGES} by name (--allow_change).")
    for k, a, b in changes:
      log(f"Resuming with {k} changed: {a!r} -> {b!r}.")
  atomic_write(path, config_text(config))


# ----------------------------------------------------------------------------
# Files.


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run in ``workdir`` ran with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} not found: {workdir!r} is not a run directory written by "
        "scripts/train_controller.py (it holds config.json and snapshots/).")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def read_rows(path: str) -> List[Dict[str, str]]:
  """The rows of a CSV file (strings, as written); [] when absent."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def read_metrics(workdir: str) -> List[Dict[str, str]]:
  """The rows of ``metrics.csv`` (strings, as written); [] when absent."""
  return read_rows(os.path.join(workdir, METRICS_FILE))


def metrics_text(rows: Sequence[Mapping]) -> str:
  fields = []
  for r in rows:
    fields += [k for k in r if k not in fields]
  out = io.StringIO()
  w = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
  w.writeheader()
  w.writerows(rows)
  return out.getvalue()


