"""Evaluate a trained LR controller against tuned baselines (Xu et al. 2019, sec. 4).

  python scripts/evaluate_controller.py --workdir runs/xu2019 \
      [--config configs/xu2019_ppo.py] [--outdir runs/xu2019/eval]

The protocol of Xu, Dai, Kemp & Metz 2019: the controller checkpoint is chosen
by validation loss, then the deterministic controller and every baseline run
on the same N fresh seeds (default ``config.eval.num_seeds`` = 10) and are
compared on the test set: mean (std) of test loss and accuracy and Welch's
t-test (unequal variances) of each baseline against the controller.

* Controller: trained by ``scripts/train_controller.py`` in ``--workdir``; its
  agent settings come from ``workdir/config.json``. ``--config`` (default: the
  same config.json) gives the evaluation task: pass another config to measure
  transfer (Xu's Table 2: a controller trained on CIFAR-10 applied to
  Fashion-MNIST).
* Checkpoint selection (``--num_candidates``, ``--selection_seeds``), the
  baselines and the t-test are described in ``lr_meta.evaluation``, which
  measures; this script writes the files.
* Baselines: ``config.eval.baselines``, strings parsed by
  ``lr_meta.baselines.parse_baseline`` and run by the benchmark's protocol
  (``lr_meta.evaluation``): a named grid is tuned by mean final validation
  loss over the benchmark's tuning seeds (``'xu2019_step_decay'``: Xu's
  48-point grid; ``'cosine'``), a spec such as
  ``'step_decay(lr=0.1, every=50, factor=0.99)'`` is re-run as is (use it to
  reuse a winner tuned by ``scripts/run_baselines.py``), ``'adam:constant'``
  changes the optimizer. ``--baseline_cache`` keeps every run in the
  benchmark's run cache (``lr_meta.benchmark.harness.RunStore``: one checked
  JSON cell per run) so that evaluating several controllers on the same
  task trains each baseline once.
* Untuned rows for context: ``config.eval.benchmark_methods``, self-tuning
  methods of ``lr_meta.benchmark`` (e.g. ``'controller:generalist'``,
  ``'schedule_free_adamw'``) run as the benchmark runs them on the same
  seeds (``lr_meta.evaluation``).

Writes to --outdir (``lr_meta.evaluation.write``, also what the main job
``scripts/train_controller.py`` writes to <workdir>/eval): results.md (the
table), results.json (per-seed numbers, wall time), schedule.png (learned LR
per decision vs the baselines' schedules), val_loss.png (validation loss
against steps, mean and std over seeds).

Takes the launch flags of ``lr_meta.distributed``; in a multi-process job
every process evaluates everything (the evaluation is not split yet) and
process 0 alone writes --outdir and the baseline cache.
"""

import os

from absl import app
from absl import flags
from absl import logging

from lr_meta import config as config_lib
from lr_meta import distributed
from lr_meta import evaluation
from lr_meta import rundir
from lr_meta.benchmark import harness

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory written by train_controller.py.")
_CONFIG = config_lib.DEFINE_config_file(
    "config", None, "Evaluation config (default: the workdir's config.json).")
_OUTDIR = flags.DEFINE_string("outdir", None, "Output directory "
                              "(default: <workdir>/eval).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_NUM_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", evaluation.NUM_CANDIDATES,
    "Snapshots (by training return) re-run for selection.")
_SELECTION_SEEDS = flags.DEFINE_integer(
    "selection_seeds", evaluation.SELECTION_SEEDS,
    "Seeds per candidate for checkpoint selection.")
_BASELINES = flags.DEFINE_multi_string(
    "baseline", None, "Overrides config.eval.baselines (repeat the flag); "
    "'none' runs the controller alone.")
_BASELINE_CACHE = flags.DEFINE_string(
    "baseline_cache", None, "Directory keeping the baselines' and benchmark "
    "methods' runs across evaluations of controllers on the same task (the "
    "benchmark's run cache: <dir>/runs/).")
distributed.define_flags()


def evaluate(workdir, eval_config=None, outdir=None, data_dir=None,
             num_candidates=evaluation.NUM_CANDIDATES,
             selection_seeds=evaluation.SELECTION_SEEDS, baseline_cache=None,
             log=print) -> str:
  """Evaluates the run in ``workdir``, writes ``outdir``; returns the table."""
  outdir = outdir or os.path.join(workdir, rundir.EVAL_DIR)
  store = harness.RunStore(baseline_cache) if baseline_cache else None
  ev = evaluation.evaluate(
      workdir, eval_config, data_dir, num_candidates, selection_seeds,
      store=store, log=log)
  if not distributed.is_main_process():
    return evaluation.markdown(ev)
  return evaluation.write(ev, outdir)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every read at INFO
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required.")
  distributed.initialize_or_launch(distributed.config_from_flags())
  config = _CONFIG.value
  if _BASELINES.value is not None:
    config = config or rundir.read_config(_WORKDIR.value)
    config.eval.baselines = tuple(b for b in _BASELINES.value if b != "none")
  print(evaluate(_WORKDIR.value, config, _OUTDIR.value, _DATA_DIR.value,
                 _NUM_CANDIDATES.value, _SELECTION_SEEDS.value,
                 baseline_cache=_BASELINE_CACHE.value))


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.parse_flags)
