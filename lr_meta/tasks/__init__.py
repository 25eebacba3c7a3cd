"""The optimizee side: data, Flax models, tasks and whole training runs."""

from lr_meta.tasks.datasets import DATA_DIR_ENV
from lr_meta.tasks.datasets import DataFormatError
from lr_meta.tasks.datasets import DataNotFoundError
from lr_meta.tasks.datasets import Dataset
from lr_meta.tasks.datasets import KNOWN_DATASETS
from lr_meta.tasks.datasets import load_dataset
from lr_meta.tasks.episode import BATCH_MODES
from lr_meta.tasks.episode import run_batch
from lr_meta.tasks.episode import run_mesh
from lr_meta.tasks.episode import run_training
from lr_meta.tasks.episode import run_training_batch
from lr_meta.tasks.episode import RunMetrics
from lr_meta.tasks.episode import shard_runs
from lr_meta.tasks.models import get_model
from lr_meta.tasks.models import KNOWN_MODELS
from lr_meta.runner import default_batch_mode
from lr_meta.runner import default_strategy
from lr_meta.runner import repeat
from lr_meta.runner import STRATEGIES
from lr_meta.tasks.task import cross_entropy
from lr_meta.tasks.task import DeviceData
from lr_meta.tasks.task import EvalMetrics
from lr_meta.tasks.task import evaluate_batch
from lr_meta.tasks.task import KNOWN_OPTIMIZERS
from lr_meta.tasks.task import make_optimizer
from lr_meta.tasks.task import make_task
from lr_meta.tasks.task import OptimizeeState
from lr_meta.tasks.task import set_learning_rate
from lr_meta.tasks.task import StepMetrics
from lr_meta.tasks.task import Task

__all__ = [
    "BATCH_MODES", "DATA_DIR_ENV", "KNOWN_DATASETS", "KNOWN_MODELS",
    "KNOWN_OPTIMIZERS", "STRATEGIES", "cross_entropy", "DataFormatError",
    "DataNotFoundError", "Dataset", "default_batch_mode", "default_strategy",
    "DeviceData", "EvalMetrics", "evaluate_batch", "get_model",
    "load_dataset", "make_optimizer", "make_task", "OptimizeeState", "repeat",
    "run_batch", "run_mesh", "run_training", "run_training_batch",
    "RunMetrics", "set_learning_rate", "shard_runs", "StepMetrics", "Task",
]
