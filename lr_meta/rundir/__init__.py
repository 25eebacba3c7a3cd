"""The run directory: one training run's files, written so that nothing is lost.

Every script reads and writes a training run's directory (``--workdir``)
through this package; nothing else knows its layout::

  config.json         the config as run; a resume compares it with the new one
  metrics.csv         one row per training iteration (up to the last checkpoint)
  tb/                 TensorBoard events
  checkpoints/<N>/    orbax: the whole learner state after iteration N, the
                      metrics rows up to N, the run's data that is not arrays
                      (an optimizer search's rule cache), and SHA-256 digests
                      of both parts (the latest ``KEEP``)
  snapshots/<N>/      orbax: the controller params after iteration N, their
                      digest, and the iteration's training metrics (every
                      checkpoint, kept for best-checkpoint selection by
                      ``training_return``)
  controller.msgpack  the final controller (``lr_meta.policies`` file format,
                      for the agents that have one: PPO, DQN)
  results.md          the training report; eval/ holds evaluations
  corrupt/            checkpoints that failed verification, moved aside
  lock                the process running in it (pid, host)

Guarantees (each has a test reproducing the fault, tests/test_rundir.py):

* One run per directory: ``Run`` (and ``scripts/train_generalist.py``,
  through ``WorkdirLock``) holds an exclusive ``flock`` on ``lock`` for its
  lifetime; the kernel releases it when the process dies, so a lock
  left by a dead process is detected (and reported) rather than blocking.
* Resume means the same run: the stored config must equal the new one, except
  for fields named in ``allow_changes`` among ``SAFE_CHANGES``; a directory
  holding metrics or snapshots but no checkpoints is refused.
* A checkpoint is trusted only after its digests match: an unreadable or
  altered checkpoint is reported in one line, moved to ``corrupt/``, and the
  run resumes from the newest intact one (or refuses when there is none).
* Writes are ordered so that a kill at any point resumes to the same run:
  checkpoint N (orbax's atomic rename), then snapshot N, then metrics.csv
  (atomic rename), both rewritten from the checkpoint on resume; whatever is
  newer than the restored checkpoint is discarded and recomputed (training
  is deterministic).
* Controller params are finite: a non-finite controller is never saved.

Other writers reuse the pieces: ``WorkdirLock`` (the benchmark holds its
outdir with it), ``atomic_write`` (a temporary file, fsync, rename) and
``json_digest`` (the benchmark's run cache, ``lr_meta.benchmark.harness``).

Modules: ``layout`` (file names, errors, config and metrics files), ``store``
(verified orbax storage, snapshots), ``run`` (``Run``), ``artifact`` (the
portable controller of a run).
"""

from lr_meta.rundir.artifact import controller_from_training
from lr_meta.rundir.artifact import write_training_artifact
from lr_meta.files import atomic_write
from lr_meta.rundir.layout import CHECKPOINT_DIR
from lr_meta.rundir.layout import check_allow_changes
from lr_meta.rundir.layout import check_and_store_config
from lr_meta.rundir.layout import CheckpointError
from lr_meta.rundir.layout import config_changes
from lr_meta.rundir.layout import CONFIG_FILE
from lr_meta.rundir.layout import ConfigMismatchError
from lr_meta.rundir.layout import CONTROLLER_FILE
from lr_meta.rundir.layout import EVAL_DIR
from lr_meta.rundir.layout import KEEP
from lr_meta.rundir.layout import METRICS_FILE
from lr_meta.rundir.layout import NonFiniteError
from lr_meta.rundir.layout import read_config
from lr_meta.rundir.layout import read_metrics
from lr_meta.rundir.layout import RESULTS_FILE
from lr_meta.rundir.layout import RETURN_METRICS
from lr_meta.rundir.layout import RunError
from lr_meta.rundir.layout import SAFE_CHANGES
from lr_meta.rundir.layout import SNAPSHOT_DIR
from lr_meta.rundir.layout import TENSORBOARD_DIR
from lr_meta.rundir.layout import training_return
from lr_meta.rundir.layout import WorkdirBusyError
from lr_meta.rundir.lock import WorkdirLock
from lr_meta.rundir.run import Run
from lr_meta.rundir.store import json_digest
from lr_meta.rundir.store import load_snapshot
from lr_meta.rundir.store import non_finite_leaves
from lr_meta.rundir.store import snapshot_metrics
from lr_meta.rundir.store import snapshot_steps
from lr_meta.rundir.store import tree_digest

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_DIR", "SNAPSHOT_DIR",
    "CONTROLLER_FILE", "RESULTS_FILE", "EVAL_DIR", "TENSORBOARD_DIR",
    "SAFE_CHANGES", "KEEP", "RETURN_METRICS", "training_return", "RunError",
    "WorkdirBusyError", "WorkdirLock", "ConfigMismatchError", "CheckpointError",
    "NonFiniteError", "Run", "read_config", "read_metrics", "config_changes",
    "check_allow_changes", "check_and_store_config",
    "tree_digest", "non_finite_leaves", "snapshot_steps", "snapshot_metrics",
    "load_snapshot", "controller_from_training", "write_training_artifact",
    "atomic_write", "json_digest",
]
