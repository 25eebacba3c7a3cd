"""The optimizee side: data, Flax models, tasks and whole training runs.

Lazy exports: ``lr_meta.optax`` imports ``lr_meta.tasks.objectives`` (the
losses its probe shares with tasks), which must not load the data, model and
training modules. Submodules are attributes too.
"""

from lr_meta import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "datasets": ("DATA_DIR_ENV", "DataFormatError", "DataNotFoundError",
                 "Dataset", "KNOWN_DATASETS", "load_dataset",
                 "SEQUENCE_DATASETS"),
    "models": ("get_model", "KNOWN_MODELS"),
    "objectives": ("bits", "KNOWN_OBJECTIVES", "token_cross_entropy"),
    "lr_meta.runner": ("default_batch_mode", "default_strategy", "repeat",
                       "STRATEGIES"),
    "task": ("cross_entropy", "DeviceData", "EvalMetrics", "evaluate_batch",
             "KNOWN_OPTIMIZERS", "make_optimizer", "make_task",
             "OptimizeeState", "set_hyperparams", "set_learning_rate",
             "StepMetrics", "Task"),
    "distribution": (),
    "family": (),
    "optax_training": ("BATCH_MODES", "Program", "run", "run_batch",
                       "run_mesh", "run_training", "run_training_batch",
                       "RunResult", "ScheduledOptimizer", "shard_runs",
                       "TaskOptimizer"),
})
