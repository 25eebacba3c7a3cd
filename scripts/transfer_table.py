"""Xu et al. 2019 Table 2 for any controller: tuned on one workload, run on others.

  python scripts/transfer_table.py --source cifar10_mlp_sgd \
      --targets fmnist_mlp_sgd,fmnist_lenet5_sgd \
      --controller generalist --num_seeds 10 --outdir runs/transfer

The references (default Xu's 48-point step-decay grid and the cosine grid)
are tuned on --source and carried over to every --targets workload as fixed
schedules; there they run next to each --controller (a shipped name or a
.msgpack path) and the same references tuned on the target itself
(``lr_meta.benchmark.transfer``). Writes OUTDIR/transfer.md (per target,
Welch's t-test against the first controller), the benchmark's
leaderboard.md and results.json; reruns resume from OUTDIR/runs.
"""

import sys

from absl import app
from absl import flags

from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import transfer
from lr_meta.benchmark import workloads as workloads_lib

_SUITE = flags.DEFINE_string("suite", "cpu", "Suite of the target workloads.")
_SOURCE = flags.DEFINE_string("source", None, "Workload the controllers "
                              "were trained on (references tuned there).")
_TARGETS = flags.DEFINE_list("targets", None, "Workloads to transfer to.")
_CONTROLLERS = flags.DEFINE_multi_string(
    "controller", None, "A shipped controller name or a .msgpack path "
    "(repeat; the first is the one every p-value refers to).")
_REFERENCES = flags.DEFINE_list(
    "references", list(transfer.DEFAULT_REFERENCES), "Tuned methods to carry "
    "over from --source.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 10, "Evaluation seeds.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/transfer", "Output directory "
                              "(resumable run cache).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")


def main(argv):
  del argv
  controllers = [methods_lib.CONTROLLER_PREFIX + c for c in _CONTROLLERS.value]
  try:   # bad names fail here, before any data is loaded
    workloads_lib.get_workload(_SOURCE.value)
    workloads_lib.suite_workloads(_SUITE.value, _TARGETS.value)
    methods_lib.resolve(controllers + _REFERENCES.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  command = " ".join(["python", "scripts/transfer_table.py"] + [
      a for a in sys.argv[1:] if not a.startswith("--data_dir")])
  results = transfer.run_transfer(
      _SUITE.value, _SOURCE.value, _TARGETS.value, controllers,
      _REFERENCES.value, num_seeds=_NUM_SEEDS.value, outdir=_OUTDIR.value,
      data_dir=_DATA_DIR.value, command=command)
  print(transfer.transfer_table(results))
  print(f"Wrote {_OUTDIR.value}/transfer.md, leaderboard.md, results.json.")


if __name__ == "__main__":
  flags.mark_flags_as_required(["source", "targets", "controller"])
  app.run(main)
