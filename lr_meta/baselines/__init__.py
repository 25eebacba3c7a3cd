"""Hand-designed learning-rate schedules and the tuning protocol."""

from lr_meta.baselines.schedules import constant
from lr_meta.baselines.schedules import cosine
from lr_meta.baselines.schedules import grid
from lr_meta.baselines.schedules import KNOWN_GRIDS
from lr_meta.baselines.schedules import KNOWN_SCHEDULES
from lr_meta.baselines.schedules import linear
from lr_meta.baselines.schedules import make_schedule
from lr_meta.baselines.schedules import named_grid
from lr_meta.baselines.schedules import parse_spec
from lr_meta.baselines.schedules import ScheduleSpec
from lr_meta.baselines.schedules import sgdr
from lr_meta.baselines.schedules import step_decay
from lr_meta.baselines.schedules import warmup_cosine
from lr_meta.baselines.schedules import XU2019_STEP_DECAY_GRID
from lr_meta.baselines.schedules import xu2019_step_decay_grid
from lr_meta.baselines.sweep import ADAPTIVE_GRID_LRS
from lr_meta.baselines.sweep import BaselineEntry
from lr_meta.baselines.sweep import DIVERGED_MARK
from lr_meta.baselines.sweep import DIVERGED_NOTE
from lr_meta.baselines.sweep import EVAL_SEED_OFFSET
from lr_meta.baselines.sweep import evaluate_on_seeds
from lr_meta.baselines.sweep import mean_std
from lr_meta.baselines.sweep import parse_baseline
from lr_meta.baselines.sweep import SeedResults
from lr_meta.baselines.sweep import sweep
from lr_meta.baselines.sweep import SweepResult
from lr_meta.baselines.sweep import tune_and_evaluate

__all__ = [
    "ADAPTIVE_GRID_LRS", "DIVERGED_MARK", "DIVERGED_NOTE", "EVAL_SEED_OFFSET",
    "KNOWN_GRIDS", "KNOWN_SCHEDULES",
    "XU2019_STEP_DECAY_GRID", "BaselineEntry", "constant", "cosine",
    "evaluate_on_seeds", "grid", "linear", "make_schedule", "mean_std",
    "named_grid", "parse_baseline", "parse_spec", "ScheduleSpec",
    "SeedResults", "sgdr", "step_decay", "sweep", "SweepResult",
    "tune_and_evaluate", "warmup_cosine", "xu2019_step_decay_grid",
]
