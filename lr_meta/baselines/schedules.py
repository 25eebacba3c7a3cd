"""Hand-designed learning-rate schedules as per-step LR sequences.

Every schedule is a pure function ``(num_steps, init_lr, **hyperparams) ->
float32 array (num_steps,)``. Sequences (rather than optax schedule callables)
are what ``lr_meta.tasks.run_training_batch`` consumes: a grid of different
schedules becomes one (R, T) array and runs as one batched program.
"""

import itertools
from typing import Callable, Dict, Iterable, NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_GRID_LRS", "KNOWN_GRIDS", "KNOWN_SCHEDULES", "NAMED_GRIDS",
    "SCHEDULES", "XU2019_STEP_DECAY_GRID", "constant", "cosine", "grid",
    "linear", "make_schedule", "named_grid", "parse_spec", "ScheduleSpec",
    "sgdr", "step_decay", "xu2019_step_decay_grid",
]


def constant(num_steps: int, init_lr: float) -> np.ndarray:
  return np.full((num_steps,), init_lr, np.float32)


def step_decay(num_steps: int, init_lr: float, every: int, factor: float) -> np.ndarray:
  """``init_lr * factor ** floor(t / every)``: Xu et al. 2019's baseline."""
  if every <= 0:
    raise ValueError(f"step_decay 'every' must be a positive integer, got {every!r}.")
  t = np.arange(num_steps)
  return (init_lr * factor ** (t // every)).astype(np.float32)


def cosine(num_steps: int, init_lr: float, final_fraction: float = 0.0) -> np.ndarray:
  """Cosine decay from ``init_lr`` to ``final_fraction * init_lr`` (Loshchilov & Hutter 2017)."""
  t = np.arange(num_steps) / max(num_steps, 1)
  frac = final_fraction + (1 - final_fraction) * 0.5 * (1 + np.cos(np.pi * t))
  return (init_lr * frac).astype(np.float32)


def warmup_cosine(num_steps: int, init_lr: float, warmup_fraction: float = 0.05,
                  final_fraction: float = 0.0) -> np.ndarray:
  """Linear warm-up from 0 over ``warmup_fraction`` of the steps, then cosine.

  Step ``t < W = round(warmup_fraction * num_steps)`` uses
  ``init_lr * (t + 1) / W``; the remaining ``num_steps - W`` steps are
  ``cosine(num_steps - W, init_lr, final_fraction)`` (Goyal et al. 2017's
  warm-up before Loshchilov & Hutter 2017's decay). ``init_lr`` is the peak.
  """
  if not 0.0 <= warmup_fraction < 1.0:
    raise ValueError(f"warmup_fraction={warmup_fraction!r}; allowed: [0, 1).")
  warmup = int(round(warmup_fraction * num_steps))
  ramp = init_lr * np.arange(1, warmup + 1) / max(warmup, 1)
  return np.concatenate([ramp, cosine(num_steps - warmup, init_lr,
                                      final_fraction)]).astype(np.float32)


def sgdr(num_steps: int, init_lr: float, first_period: int, period_mult: float = 2.0,
         final_fraction: float = 0.0) -> np.ndarray:
  """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017)."""
  if first_period <= 0 or period_mult < 1:
    raise ValueError(
        f"sgdr needs first_period > 0 and period_mult >= 1; got "
        f"{first_period!r}, {period_mult!r}.")
  out, period = [], float(first_period)
  while len(out) < num_steps:
    n = int(round(period))
    out.extend(cosine(n, init_lr, final_fraction))
    period *= period_mult
  return np.asarray(out[:num_steps], np.float32)


def linear(num_steps: int, init_lr: float, final_fraction: float = 0.0) -> np.ndarray:
  t = np.arange(num_steps) / max(num_steps, 1)
  return (init_lr * (1 - (1 - final_fraction) * t)).astype(np.float32)


SCHEDULES: Dict[str, Callable[..., np.ndarray]] = {
    "constant": constant,
    "step_decay": step_decay,
    "cosine": cosine,
    "sgdr": sgdr,
    "linear": linear,
    "warmup_cosine": warmup_cosine,
}
KNOWN_SCHEDULES = tuple(SCHEDULES)


class ScheduleSpec(NamedTuple):
  """One point of a grid: a schedule name and its hyperparameters."""
  name: str
  init_lr: float
  hyperparams: tuple = ()   # sorted (key, value) pairs, hashable

  def sequence(self, num_steps: int) -> np.ndarray:
    return make_schedule(self.name, num_steps, self.init_lr, **dict(self.hyperparams))

  def label(self) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in self.hyperparams)
    return f"{self.name}(lr={self.init_lr:g}{', ' + extra if extra else ''})"


def make_schedule(name: str, num_steps: int, init_lr: float, **hyperparams) -> np.ndarray:
  if name not in SCHEDULES:
    raise ValueError(f"Unknown schedule {name!r}; known: {', '.join(KNOWN_SCHEDULES)}.")
  if not init_lr > 0:
    raise ValueError(f"init_lr must be > 0, got {init_lr!r}.")
  try:
    return SCHEDULES[name](num_steps, init_lr, **hyperparams)
  except TypeError as e:
    raise ValueError(f"Bad hyperparameters {hyperparams} for schedule {name!r}: {e}") from e


def grid(name: str, init_lrs: Iterable[float], **hyperparam_values) -> list:
  """All combinations: ``grid('step_decay', [0.1, 0.01], every=[10, 20], factor=[0.9])``."""
  keys = sorted(hyperparam_values)
  specs = []
  for lr in init_lrs:
    for values in itertools.product(*(hyperparam_values[k] for k in keys)):
      specs.append(ScheduleSpec(name, float(lr), tuple(zip(keys, values))))
  return specs


# Xu et al. 2019, section 4: the step-decay grid of their baseline.
XU2019_STEP_DECAY_GRID = dict(init_lrs=(0.1, 0.01, 0.001, 0.0001),
                              every=(10, 20, 50, 100), factor=(0.99, 0.9, 0.88))


def xu2019_step_decay_grid() -> list:
  g = XU2019_STEP_DECAY_GRID
  return grid("step_decay", g["init_lrs"], every=g["every"], factor=g["factor"])


# Named grids: what "the tuned <name> baseline" means in configs and scripts.
NAMED_GRIDS: Dict[str, Callable[[Iterable[float]], list]] = {
    "xu2019_step_decay": lambda init_lrs: xu2019_step_decay_grid(),
    "cosine": lambda init_lrs: grid("cosine", init_lrs),
    "constant": lambda init_lrs: grid("constant", init_lrs),
    "linear": lambda init_lrs: grid("linear", init_lrs),
    "warmup_cosine": lambda init_lrs: grid("warmup_cosine", init_lrs),
    # SGDR (Loshchilov & Hutter 2017): first period 50 steps, doubling (Fu
    # 2016 compares against SGDR; its periods are not stated).
    "sgdr": lambda init_lrs: grid("sgdr", init_lrs, first_period=(50,),
                                  period_mult=(2.0,)),
}
KNOWN_GRIDS = tuple(NAMED_GRIDS)
DEFAULT_GRID_LRS = (0.3, 0.1, 0.03, 0.01, 0.003)


def named_grid(name: str, init_lrs: Iterable[float] = DEFAULT_GRID_LRS) -> list:
  """The grid of a named baseline (``init_lrs`` is ignored by fixed grids)."""
  if name not in NAMED_GRIDS:
    raise ValueError(f"Unknown baseline grid {name!r}; allowed: "
                     f"{', '.join(KNOWN_GRIDS)}.")
  return NAMED_GRIDS[name](tuple(init_lrs))


def parse_spec(label: str) -> ScheduleSpec:
  """Inverse of ``ScheduleSpec.label``: ``'step_decay(lr=0.1, every=50, factor=0.99)'``.

  Values are parsed as int when they look like one, else float.
  """
  text = label.strip()
  if "(" not in text or not text.endswith(")"):
    raise ValueError(f"Bad schedule spec {label!r}; expected e.g. "
                     "'cosine(lr=0.3)' or 'step_decay(lr=0.1, every=50, "
                     f"factor=0.99)' with a schedule in {KNOWN_SCHEDULES}.")
  name, args = text[:-1].split("(", 1)
  name = name.strip()
  if name not in SCHEDULES:
    raise ValueError(f"Unknown schedule {name!r} in {label!r}; known: "
                     f"{', '.join(KNOWN_SCHEDULES)}.")
  kwargs = {}
  for part in filter(None, (p.strip() for p in args.split(","))):
    if "=" not in part:
      raise ValueError(f"Bad argument {part!r} in {label!r}; expected key=value.")
    key, value = (s.strip() for s in part.split("=", 1))
    try:
      kwargs[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    except ValueError as e:
      raise ValueError(f"Bad value {value!r} for {key!r} in {label!r}.") from e
  if "lr" not in kwargs:
    raise ValueError(f"Schedule spec {label!r} needs lr=...")
  init_lr = float(kwargs.pop("lr"))
  spec = ScheduleSpec(name, init_lr, tuple(sorted(kwargs.items())))
  spec.sequence(1)   # validates the hyperparameters
  return spec
