"""Chooses ``calibrated_adamw``'s one configuration on the TRAIN side only.

  python benchmarks/calibrate_adamw.py [--suite=cpu] [--workloads=a,b,...] \
      [--outdir=runs/calibrate_adamw]

Runs the benchmark method ``adamw_calibration`` (AdamW, warm-up + cosine,
every peak LR in ``methods.CALIBRATION_LRS`` x weight decay in
``methods.CALIBRATION_WEIGHT_DECAYS``, on the benchmark's 3 tuning seeds)
on the suite's train workloads, and picks the point with the lowest mean
over workloads of its validation loss relative to the best point there
(``scoring.single_configuration``). It prints the table and the line to
put in ``methods.CALIBRATED_ADAMW``; the held-out side is never read. Runs
are cached in ``--outdir`` (a rerun is free).
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from lr_meta.benchmark import harness
from lr_meta.benchmark import methods
from lr_meta.benchmark import scoring
from lr_meta.benchmark import workloads

_SUITE = flags.DEFINE_string("suite", "cpu", "Benchmark suite (its train "
                             "side is used).")
_OUTDIR = flags.DEFINE_string("outdir", "runs/calibrate_adamw",
                              "Run cache and calibration.json.")
_WORKLOADS = flags.DEFINE_list(
    "workloads", [], "Train workloads of --suite to calibrate on (default: "
    "its whole train side).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")

METHOD = "adamw_calibration"


def main(argv):
  del argv
  train = workloads.train_side(_SUITE.value, _WORKLOADS.value)
  result = harness.run_benchmark(
      train, [methods.get_method(METHOD)], num_seeds=2, outdir=_OUTDIR.value,
      data_dir=_DATA_DIR.value)
  grids = [result.tuning[w.name][METHOD]["grid"] for w in train]
  labels = [g["label"] for g in grids[0]]
  for w, grid in zip(train, grids):
    if [g["label"] for g in grid] != labels:
      raise ValueError(f"workload {w.name!r} ran another grid: "
                       f"{[g['label'] for g in grid]} against {labels}.")
  val = np.array([[g["val_loss"] for g in grid] for grid in grids])
  best, ratio = scoring.single_configuration(val)
  print(f"\nTrain side of suite {_SUITE.value!r}: "
        f"{', '.join(w.name for w in train)}")
  print("| configuration | mean val loss / best | worst ratio | workloads "
        "where it is best |")
  print("|---|---|---|---|")
  per = scoring.relative_to_best(val)
  for i in np.argsort(ratio):
    wins = int(np.sum(np.argmin(per, axis=1) == i))
    print(f"| {labels[i]} | {ratio[i]:.4f} | {per[:, i].max():.4f} | "
          f"{wins} |")
  print(f"\nChosen: {labels[best]} (mean ratio {ratio[best]:.4f})")
  out = {"suite": _SUITE.value, "workloads": [w.name for w in train],
         "labels": labels, "val_loss": val.tolist(),
         "mean_ratio": ratio.tolist(), "chosen": labels[best]}
  with open(os.path.join(_OUTDIR.value, "calibration.json"), "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
