"""Named seed ranges: one place that says which seeds serve which purpose.

Every experiment draws the PRNG seeds of its optimizee runs from a named range
so that no seed serves two purposes (a schedule tuned on the seeds it is
tested on would look better than it is). ``seed_range(name, n)`` gives the
first ``n`` seeds of a range; ranges are 10,000 apart, so up to 10,000 seeds
of one purpose never reach the next range.

Values are part of the published results (BUILD_NOTES.md): changing one
changes every number measured with it.
"""

from typing import Tuple

import numpy as np

__all__ = [
    "KNOWN_SEED_RANGES", "RANGE_SIZE", "SEED_RANGES", "seed_offset",
    "seed_range",
]

RANGE_SIZE = 10_000

SEED_RANGES = {
    # Baseline grids are tuned (ranked by validation loss) on these.
    "tuning": 0,
    # Test seeds of tuned baselines and of controllers compared with them
    # (scripts/evaluate_controller.py, scripts/run_baselines.py) and of the
    # re-scoring of searched update rules (scripts/search_optimizer.py).
    "evaluation": 10_000,
    # Quick evaluation at the end of scripts/train_controller.py and the
    # step-size sensitivity runs (scripts/sensitivity.py).
    "training_report": 20_000,
    # Checkpoint selection by validation loss (never used for testing).
    "selection": 30_000,
    # The self-tuning benchmark (lr_meta.benchmark): tuning and test seeds.
    "benchmark_tuning": 40_000,
    "benchmark_evaluation": 50_000,
}
KNOWN_SEED_RANGES = tuple(SEED_RANGES)


def seed_offset(name: str) -> int:
  """The first seed of the range ``name`` (one of ``KNOWN_SEED_RANGES``)."""
  if name not in SEED_RANGES:
    raise ValueError(f"Unknown seed range {name!r}; known: "
                     f"{', '.join(KNOWN_SEED_RANGES)}.")
  return SEED_RANGES[name]


def seed_range(name: str, n: int) -> Tuple[int, ...]:
  """The first ``n`` seeds of range ``name``."""
  if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not (
      0 <= n <= RANGE_SIZE):
    raise ValueError(f"n={n!r}; allowed: an integer in [0, {RANGE_SIZE}].")
  start = seed_offset(name)
  return tuple(range(start, start + int(n)))
