"""Tune hand-designed LR schedules and report them over fresh seeds.

  python scripts/run_baselines.py --config configs/baselines_fmnist_lenet.py \
      --outdir runs/baselines

Prints a Markdown table (test loss / accuracy, mean (std) over seeds) and
writes results.md, curves.csv and curves.png to --outdir. Many processes
(``lr_meta.distributed``: ``--num_processes=P`` alone tries P local ones)
split every grid and every set of seeds; process 0 alone writes --outdir.
"""

import csv
import inspect
import os
import time

from absl import app
from absl import flags
import numpy as np

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import distributed
from lr_meta import tasks

_CONFIG = config_lib.DEFINE_config_file("config", None,
                                        "Baseline config file.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/baselines", "Output directory.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
distributed.define_flags()

# The fields of a baseline config (configs/baselines_fmnist_lenet.py).
FIELDS = ("task", "num_steps", "eval_every", "num_val_examples", "baselines",
          "cosine_init_lrs", "tuning_seeds", "num_eval_seeds", "strategy",
          "batch_mode")


def check_config(config):
  """Raises ValueError naming unknown fields and listing the valid ones."""
  task_args = [p for p in inspect.signature(tasks.make_task).parameters
               if p != "data_dir"]
  config_lib.check_fields(config, {"": FIELDS, "task": task_args})


def main(argv):
  del argv
  distributed.initialize_or_launch(distributed.config_from_flags())
  config = _CONFIG.value
  check_config(config)
  if distributed.is_main_process():
    os.makedirs(_OUTDIR.value, exist_ok=True)
  run_kw = dict(eval_every=config.eval_every, strategy=config.strategy or None,
                batch_mode=config.batch_mode or None,
                num_val_examples=config.num_val_examples,
                mesh=distributed.job_mesh())
  rows, results = [], []
  for text in config.baselines:
    t0 = time.time()
    entry = baselines.parse_baseline(text, tuple(config.cosine_init_lrs))
    task_kwargs = dict(config.task)
    if entry.optimizer:
      task_kwargs["optimizer"] = entry.optimizer
    task = tasks.make_task(data_dir=_DATA_DIR.value, **task_kwargs)
    swept, res = baselines.tune_and_evaluate(
        task, entry.specs, config.num_steps, num_seeds=config.num_eval_seeds,
        tuning_seeds=tuple(config.tuning_seeds), **run_kw)
    wall = time.time() - t0
    results.append(res)
    label = f"{task_kwargs['optimizer']} {res.spec.label()}"
    div = int(res.diverged.sum())
    rows.append(f"| {text} | {label} | "
                f"{baselines.mean_std(res.test_loss, div)} | "
                f"{baselines.mean_std(res.test_accuracy, div)} | {div} | "
                f"{len(entry.specs)} | {wall:.0f} |")
    val = "" if swept is None else f" (val {swept.val_loss[swept.best_index]:.4f})"
    print(f"{text}: best {label}{val}; {wall:.0f}s", flush=True)
  header = (f"Task: {config.task.dataset} / {config.task.model}, batch "
            f"{config.task.batch_size}, {config.num_steps} steps; "
            f"{config.num_eval_seeds} seeds.\n\n"
            "| baseline | best (by val loss) | test loss mean (std) | "
            "test accuracy mean (std) | diverged | grid size | wall s |\n"
            "|---|---|---|---|---|---|---|")
  table = header + "\n" + "\n".join(rows)
  if any(r.diverged.any() for r in results):
    table += "\n\n" + baselines.DIVERGED_NOTE
  print(table)
  if distributed.is_main_process():
    with open(os.path.join(_OUTDIR.value, "results.md"), "w") as f:
      f.write(table + "\n")
    _write_curves(results, config, _OUTDIR.value)


def _write_curves(results, config, outdir):
  steps = (np.arange(results[0].val_curve.shape[1]) + 1) * config.eval_every
  with open(os.path.join(outdir, "curves.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["baseline", "step", "learning_rate", "val_loss_mean", "val_loss_std"])
    for res in results:
      for i, s in enumerate(steps):
        w.writerow([res.spec.label(), int(s), float(res.learning_rates[s - 1]),
                    float(res.val_curve[:, i].mean()), float(res.val_curve[:, i].std())])
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from lr_meta import plotting  # pylint: disable=g-import-not-at-top
  num_steps = len(results[0].learning_rates)
  task_text = plotting.task_title(config.task, num_steps)
  fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
  for res in results:
    ax_lr.plot(np.arange(len(res.learning_rates) + 1),
               np.append(res.learning_rates, res.learning_rates[-1]),
               drawstyle="steps-post", label=res.spec.label())
    mean, std = res.val_curve.mean(0), res.val_curve.std(0)
    ax_loss.plot(steps, mean, label=res.spec.label())
    ax_loss.fill_between(steps, mean - std, mean + std, alpha=0.2)
  ax_lr.set(xlabel="step", ylabel="learning rate", xlim=(0, num_steps),
            title=f"Schedules\n{task_text}")
  ax_loss.set(xlabel="step", ylabel="validation loss", xlim=(0, num_steps),
              title=f"Validation loss (mean ± std)\n{task_text}")
  plotting.log_scale(ax_lr, "y")
  ax_loss.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "curves.png"), dpi=100)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=config_lib.parse_flags)
