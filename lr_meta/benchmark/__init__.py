"""lr_meta.benchmark: learned LR controllers next to self-tuning optimizers.

``run_suite('cpu', ['all'], num_seeds=5, outdir='runs/bench')`` (or
``scripts/benchmark.py``) tunes the references, runs every self-tuning
method with its one setting on every workload of a suite, and writes
``leaderboard.md``, ``results.json``, ``profile.png`` and ``curves/``.
Workloads: ``workloads``; methods and how to add one: ``methods``; scores:
``scoring``; execution, cache and cost: ``harness``; report: ``report``.

``run_transfer(suite, source, targets, controllers)`` (``transfer``, or
``scripts/transfer_table.py``) is Xu et al. 2019's Table 2 for any
controller: references tuned on the source workload, carried over as fixed
schedules (``'schedule:<spec>'`` methods) to the targets.

``evaluate_own(make_train_step, init_params, evaluate, controller=...,
num_steps=...)`` (``own``) compares a controller with a tuned constant LR
and a tuned cosine schedule on the user's own training code, scored the
same way.
"""

from lr_meta.benchmark.harness import CompileCounter
from lr_meta.benchmark.harness import compile_counter
from lr_meta.benchmark.harness import run_benchmark
from lr_meta.benchmark.methods import BEST_CONSTANT
from lr_meta.benchmark.methods import check_names as check_method_names
from lr_meta.benchmark.methods import CONTROLLER_PREFIX
from lr_meta.benchmark.methods import get_method
from lr_meta.benchmark.methods import known_methods
from lr_meta.benchmark.methods import Method
from lr_meta.benchmark.methods import METHODS
from lr_meta.benchmark.methods import REFERENCE
from lr_meta.benchmark.methods import resolve as resolve_methods
from lr_meta.benchmark.methods import SCHEDULE_PREFIX
from lr_meta.benchmark.methods import SELF_TUNING
from lr_meta.benchmark.methods import Setting
from lr_meta.benchmark.methods import TUNED
from lr_meta.benchmark.own import evaluate_own
from lr_meta.benchmark.own import OwnResult
from lr_meta.benchmark.run import run_suite
from lr_meta.benchmark.transfer import run_transfer
from lr_meta.benchmark.transfer import transfer_table
from lr_meta.benchmark.workloads import check_heldout_rules
from lr_meta.benchmark.workloads import get_suite
from lr_meta.benchmark.workloads import get_workload
from lr_meta.benchmark.workloads import HELDOUT
from lr_meta.benchmark.workloads import KNOWN_SUITES
from lr_meta.benchmark.workloads import KNOWN_WORKLOADS
from lr_meta.benchmark.workloads import select
from lr_meta.benchmark.workloads import suite_workloads
from lr_meta.benchmark.workloads import TRAIN
from lr_meta.benchmark.workloads import training_task
from lr_meta.benchmark.workloads import training_tasks
from lr_meta.benchmark.workloads import Workload

__all__ = [
    "CompileCounter", "compile_counter", "run_benchmark", "BEST_CONSTANT",
    "check_method_names",
    "CONTROLLER_PREFIX", "get_method", "known_methods", "Method", "METHODS",
    "REFERENCE", "resolve_methods", "SELF_TUNING", "Setting", "TUNED",
    "evaluate_own", "OwnResult", "run_suite", "run_transfer",
    "SCHEDULE_PREFIX", "transfer_table", "check_heldout_rules",
    "get_suite", "get_workload",
    "HELDOUT", "KNOWN_SUITES", "KNOWN_WORKLOADS", "select", "suite_workloads",
    "TRAIN",
    "training_task", "training_tasks", "Workload",
]
