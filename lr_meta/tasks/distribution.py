"""A distribution of training tasks to meta-train one controller over.

``lr_meta.tasks.family`` draws Daniel et al. 2016's random small CNNs on one
data set; a controller meant to work on tasks it never saw (Metz et al.'s
learned optimizers, VeLO) is trained over many data sets, models, base
optimizers, initial LRs and run lengths. ``DistributionConfig`` fixes such a
distribution and ``sample_members`` draws its members:

* a member is a static shape bucket: one (data set, model, base optimizer)
  ``Combination`` of the config, a model drawn from its family (an MLP of
  random depth and width; a ``SmallCNN`` with random filters; a transformer
  of 1-2 layers, a GRU or LSTM, of a drawn width; a pre-activation ResNet of
  a drawn width and norm; LeNet-5 and the others as they are), a batch
  size, a training subset (the first fraction of the split), on a sequence
  data set a context length, and with AdamW a weight decay. Every member
  is one compiled program; ``num_members`` bounds the compiles of a whole
  meta-training;
* per episode, ``member_env_ranges`` gives what varies without recompiling
  (``lr_meta.envs.LREnv.reset`` draws them): the initial LR log-uniform over
  a factor ``lr0_spread`` either side of the combination's default LR and
  the run length log-uniform over ``num_steps_range``.

Everything is drawn from ONE key, ``jax.random.PRNGKey(config.seed)``;
member i uses ``fold_in(key, i)``, so the same config always gives the same
members and member i does not change when ``num_members`` grows.

Held-out honesty: only the config's ``combinations`` are ever drawn, and
``check_disjoint`` refuses a config that holds one of the given held-out
(data set, model, optimizer) combinations or any combination on a held-out
data set (the benchmark's held-out side and its held-out text,
``lr_meta.benchmark``; the caller passes both, this layer does not import
the benchmark).
"""

import collections
import dataclasses
from typing import Iterable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import checks
from lr_meta.tasks import datasets as datasets_lib
from lr_meta.tasks import models as models_lib
from lr_meta.tasks import task as task_lib

__all__ = [
    "Combination", "DistributionConfig", "MODEL_FAMILIES", "MemberSpec",
    "check_disjoint", "describe", "episode_weights", "member_env_ranges",
    "member_tasks", "sample_members",
]

# Model names whose architecture a member draws (others are used as given).
MODEL_FAMILIES = ("mlp", "small_cnn", "transformer", "gru", "lstm",
                  "resnet_norm")
# Attention heads of a drawn transformer: width / HEAD_WIDTH (at least 1).
HEAD_WIDTH = 16


def _check_range(name, value, low, kind=int):
  ok = (isinstance(value, tuple) and len(value) == 2 and
        all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        and low <= value[0] <= value[1])
  if not ok:
    raise ValueError(f"{name}={value!r}; allowed: ({kind.__name__} low, "
                     f"{kind.__name__} high) with {low} <= low <= high.")


def _check_choices(name, value, check):
  if not isinstance(value, tuple) or not value or not all(map(check, value)):
    raise ValueError(f"{name}={value!r}; allowed: a non-empty tuple of "
                     "valid choices (see DistributionConfig).")


@dataclasses.dataclass(frozen=True)
class Combination:
  """A (data set, model, base optimizer) that members may be drawn from.

  Attributes:
    dataset: one of ``lr_meta.tasks.KNOWN_DATASETS``.
    model: one of ``lr_meta.tasks.KNOWN_MODELS`` (``MODEL_FAMILIES`` get a
      drawn architecture).
    optimizer: one of ``lr_meta.tasks.KNOWN_OPTIMIZERS``.
    default_lr: the optimizer's usual initial LR here (the centre of the
      drawn initial LRs).
    weight: relative probability of drawing this combination, > 0.
  """
  dataset: str
  model: str
  optimizer: str
  default_lr: float
  weight: float = 1.0

  def __post_init__(self):
    for field, known in (("dataset", datasets_lib.KNOWN_DATASETS),
                         ("model", models_lib.KNOWN_MODELS),
                         ("optimizer", task_lib.KNOWN_OPTIMIZERS)):
      if getattr(self, field) not in known:
        raise ValueError(f"Combination {field}={getattr(self, field)!r}; "
                         f"known: {known}.")
    if not self.default_lr > 0 or not self.weight > 0:
      raise ValueError(f"Combination default_lr={self.default_lr!r}, "
                       f"weight={self.weight!r}; allowed: both > 0.")

  @property
  def key(self) -> Tuple[str, str, str]:
    return (self.dataset, self.model, self.optimizer)


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
  """The distribution of tasks (see the module docstring).

  Attributes:
    combinations: the (data set, model, optimizer) combinations drawn from.
    num_members: M, members drawn (compiled programs), >= 1.
    seed: the one PRNG seed of every member draw.
    mlp_depths: inclusive range of an MLP's hidden layers.
    mlp_widths: widths a hidden layer draws from (each layer its own).
    cnn_filters: three inclusive ranges, a ``SmallCNN``'s filter counts.
    batch_sizes: batch sizes drawn from.
    train_fractions: fractions of the training split a member keeps (its
      first examples; a data subset).
    lr0_spread: initial LRs are log-uniform in ``[default / spread,
      default * spread]``, >= 1.
    num_steps_range: inclusive range of a run's inner steps (log-uniform).
    transformer_layers: inclusive range of a transformer's blocks.
    sequence_widths: widths a transformer or a GRU/LSTM draws from.
    resnet_widths: stem widths a ``resnet_norm`` draws from.
    norms: the norms a ``resnet_norm`` draws from (``models.NORMS``).
    context_lengths: windows a member on a sequence data set draws from.
    weight_decays: decoupled weight decays an AdamW member draws from.
    cover_combinations: members ``0..C-1`` take the C combinations in order
      (every combination has a member; needs ``num_members >= C``), the
      rest are drawn by weight, and a combination's weight is then its
      share of the episodes (``episode_weights``) rather than of the
      members. Without it a combination of small weight may get no member
      at all (12 members, three conv combinations at weight 1/4 among 11:
      no conv member with probability 0.34).
  """
  combinations: Tuple[Combination, ...]
  num_members: int = 8
  seed: int = 0
  mlp_depths: Tuple[int, int] = (1, 3)
  mlp_widths: Tuple[int, ...] = (32, 64, 128, 256)
  cnn_filters: Tuple[Tuple[int, int], ...] = ((4, 16), (8, 32), (16, 64))
  batch_sizes: Tuple[int, ...] = (32, 64, 128)
  train_fractions: Tuple[float, ...] = (1.0, 0.5, 0.2)
  lr0_spread: float = 10.0
  num_steps_range: Tuple[int, int] = (100, 1000)
  transformer_layers: Tuple[int, int] = (1, 2)
  sequence_widths: Tuple[int, ...] = (32, 64)
  resnet_widths: Tuple[int, ...] = (4, 8)
  norms: Tuple[str, ...] = ("group", "layer", "batch")
  context_lengths: Tuple[int, ...] = (16, 32)
  weight_decays: Tuple[float, ...] = (1e-4, 1e-2, 1e-1)
  cover_combinations: bool = False

  def __post_init__(self):
    combos = tuple(self.combinations)
    if not combos or not all(isinstance(c, Combination) for c in combos):
      raise ValueError(f"combinations={self.combinations!r}; allowed: a "
                       "non-empty tuple of Combination.")
    object.__setattr__(self, "combinations", combos)
    checks.check_int("distribution.num_members", self.num_members, 1)
    if not isinstance(self.cover_combinations, bool):
      raise ValueError(f"distribution.cover_combinations="
                       f"{self.cover_combinations!r}; allowed: True, False.")
    if self.cover_combinations and self.num_members < len(combos):
      raise ValueError(
          f"distribution.num_members={self.num_members} with "
          f"cover_combinations=True; allowed: at least the {len(combos)} "
          "combinations.")
    checks.check_int("distribution.seed", self.seed, 0)
    _check_range("distribution.mlp_depths", tuple(self.mlp_depths), 1)
    _check_choices("distribution.mlp_widths", tuple(self.mlp_widths),
                   lambda w: isinstance(w, int) and w >= 1)
    filters = tuple(tuple(r) for r in self.cnn_filters)
    if len(filters) != 3:
      raise ValueError(f"distribution.cnn_filters={self.cnn_filters!r}; "
                       "allowed: three (low, high) ranges.")
    for r in filters:
      _check_range("distribution.cnn_filters", r, 1)
    _check_choices("distribution.batch_sizes", tuple(self.batch_sizes),
                   lambda b: isinstance(b, int) and b >= 1)
    _check_choices("distribution.train_fractions",
                   tuple(self.train_fractions),
                   lambda f: isinstance(f, float) and 0 < f <= 1)
    if not self.lr0_spread >= 1:
      raise ValueError(f"distribution.lr0_spread={self.lr0_spread!r}; "
                       "allowed: >= 1.")
    _check_range("distribution.num_steps_range",
                 tuple(self.num_steps_range), 1)
    _check_range("distribution.transformer_layers",
                 tuple(self.transformer_layers), 1)
    for name in ("sequence_widths", "resnet_widths", "context_lengths"):
      _check_choices(f"distribution.{name}", tuple(getattr(self, name)),
                     lambda w: isinstance(w, int) and w >= 1)
    _check_choices("distribution.norms", tuple(self.norms),
                   lambda n: n in models_lib.NORMS)
    _check_choices("distribution.weight_decays", tuple(self.weight_decays),
                   lambda d: isinstance(d, float) and d >= 0)
    for name in ("mlp_depths", "mlp_widths", "batch_sizes",
                 "train_fractions", "num_steps_range", "transformer_layers",
                 "sequence_widths", "resnet_widths", "norms",
                 "context_lengths", "weight_decays"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    object.__setattr__(self, "cnn_filters", filters)


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One member: everything static about its task (hashable).

  Attributes:
    dataset, model, optimizer, default_lr: its ``Combination``'s.
    model_kwargs: sorted ``(name, value)`` pairs for ``get_model``.
    batch_size: its batch size.
    num_train_examples: the first examples (windows, on a sequence data
      set) of the training split it keeps.
    optimizer_kwargs: sorted ``(name, value)`` pairs of the base optimizer
      (an AdamW member's weight decay).
    context_length: tokens per window on a sequence data set, else None.
  """
  dataset: str
  model: str
  optimizer: str
  default_lr: float
  model_kwargs: Tuple[Tuple[str, object], ...]
  batch_size: int
  num_train_examples: int
  optimizer_kwargs: Tuple[Tuple[str, object], ...] = ()
  context_length: Optional[int] = None

  @property
  def combination(self) -> Tuple[str, str, str]:
    return (self.dataset, self.model, self.optimizer)

  def make_task(self, data_dir: Optional[str] = None,
                **task_kwargs) -> task_lib.Task:
    """The member's ``Task`` (``make_task``; other arguments passed on)."""
    return task_lib.make_task(
        self.dataset, self.model, dict(self.model_kwargs), self.optimizer,
        optimizer_kwargs=dict(self.optimizer_kwargs),
        batch_size=self.batch_size,
        num_train_examples=self.num_train_examples, data_dir=data_dir,
        context_length=self.context_length, **task_kwargs)

  def summary(self) -> str:
    kwargs = ", ".join(f"{k}={v}" for k, v in self.model_kwargs)
    opt = ", ".join(f"{k}={v}" for k, v in self.optimizer_kwargs)
    context = (f", context {self.context_length}" if self.context_length
               else "")
    return (f"{self.dataset} {self.model}({kwargs}) {self.optimizer}"
            f"{f'({opt})' if opt else ''} (default lr {self.default_lr:g}), "
            f"batch {self.batch_size}, {self.num_train_examples} training "
            f"examples{context}")


def _draw_model_kwargs(config: DistributionConfig, model: str, key):
  if model == "mlp":
    k_depth, k_width = jax.random.split(key)
    low, high = config.mlp_depths
    depth = int(jax.random.randint(k_depth, (), low, high + 1))
    widths = jax.random.choice(k_width, np.asarray(config.mlp_widths),
                               (depth,))
    return (("hidden_sizes", tuple(int(w) for w in widths)),)
  if model == "small_cnn":
    lows = np.asarray([r[0] for r in config.cnn_filters])
    highs = np.asarray([r[1] for r in config.cnn_filters])
    filters = jax.random.randint(key, (3,), lows, highs + 1)
    return (("filters", tuple(int(f) for f in filters)),)
  k_width, k_other = jax.random.split(key)
  if model == "transformer":
    width = int(jax.random.choice(k_width, np.asarray(config.sequence_widths)))
    low, high = config.transformer_layers
    layers = int(jax.random.randint(k_other, (), low, high + 1))
    return (("num_heads", max(1, width // HEAD_WIDTH)),
            ("num_layers", layers), ("width", width))
  if model in ("gru", "lstm"):
    width = int(jax.random.choice(k_width, np.asarray(config.sequence_widths)))
    return (("width", width),)
  if model == "resnet_norm":
    width = int(jax.random.choice(k_width, np.asarray(config.resnet_widths)))
    norm = config.norms[int(jax.random.randint(k_other, (), 0,
                                               len(config.norms)))]
    return (("norm", norm), ("width", width))
  return ()


def _draw_optimizer_kwargs(config: DistributionConfig, optimizer: str, key):
  if optimizer != "adamw":
    return ()
  decay = config.weight_decays[int(jax.random.randint(
      key, (), 0, len(config.weight_decays)))]
  return (("weight_decay", float(decay)),)


def sample_members(config: DistributionConfig) -> Tuple[MemberSpec, ...]:
  """The ``config.num_members`` members (deterministic in ``config``)."""
  key = jax.random.PRNGKey(config.seed)
  weights = np.asarray([c.weight for c in config.combinations], np.float64)
  members = []
  for i in range(config.num_members):
    k_combo, k_model, k_batch, k_data = jax.random.split(
        jax.random.fold_in(key, i), 4)
    if config.cover_combinations and i < len(weights):
      index = i
    else:
      u = float(jax.random.uniform(k_combo, ()))
      index = int(np.searchsorted(np.cumsum(weights) / weights.sum(), u,
                                  side="right"))
    combo = config.combinations[min(index, len(weights) - 1)]
    batch = int(jax.random.choice(k_batch, np.asarray(config.batch_sizes)))
    fraction = float(jax.random.choice(
        k_data, np.asarray(config.train_fractions, np.float32)))
    train_size = datasets_lib.SPECS[combo.dataset].num_train
    # Draws that older configs never made come from keys folded off the
    # four above, so their members stay what they were.
    context = None
    if combo.dataset in datasets_lib.SEQUENCE_DATASETS:
      context = int(jax.random.choice(jax.random.fold_in(k_data, 1),
                                      np.asarray(config.context_lengths)))
      train_size = (train_size - 1) // context   # windows of its pairs
    members.append(MemberSpec(
        dataset=combo.dataset, model=combo.model, optimizer=combo.optimizer,
        default_lr=float(combo.default_lr),
        model_kwargs=_draw_model_kwargs(config, combo.model, k_model),
        batch_size=batch,
        num_train_examples=max(batch, int(round(fraction * train_size))),
        optimizer_kwargs=_draw_optimizer_kwargs(
            config, combo.optimizer, jax.random.fold_in(k_model, 1)),
        context_length=context))
  return tuple(members)


def episode_weights(config: DistributionConfig,
                    members: Sequence[MemberSpec]) -> Optional[np.ndarray]:
  """Relative probabilities of drawing each member's episodes.

  With ``cover_combinations`` a combination's episodes take its weight's
  share, split evenly over its members; otherwise None (every member alike:
  the weights already chose the members).
  """
  if not config.cover_combinations:
    return None
  weight = {c.key: c.weight for c in config.combinations}
  count = collections.Counter(m.combination for m in members)
  return np.asarray([weight[m.combination] / count[m.combination]
                     for m in members], np.float64)


def member_tasks(members: Iterable[MemberSpec],
                 data_dir: Optional[str] = None,
                 num_val_examples: Optional[int] = None,
                 num_test_examples: Optional[int] = None,
                 **task_kwargs) -> Tuple[task_lib.Task, ...]:
  """The members' ``Task``s, sharing one device copy of each data set.

  Members of one data set share its validation and test arrays and, when
  they keep the same number of training examples, the training arrays too
  (CIFAR-10's training split is ~0.5 GB on device; one copy per member
  would not fit many members on a small machine).

  Args:
    members: from ``sample_members``.
    data_dir: as in ``make_task``.
    num_val_examples, num_test_examples: the first examples of those splits
      every member keeps (None: all).
    **task_kwargs: other ``make_task`` arguments (``eval_batch_size``,
      ``divergence_loss``).
  """
  splits, train, out = {}, {}, []
  for m in members:
    if m.context_length is not None:
      # A token stream cut into windows by make_task (small: no sharing).
      out.append(m.make_task(data_dir, num_val_examples=num_val_examples,
                             num_test_examples=num_test_examples,
                             **task_kwargs))
      continue
    if m.dataset not in splits:
      ds = datasets_lib.load_dataset(m.dataset, data_dir=data_dir)
      keep = {"val": num_val_examples, "test": num_test_examples}
      arrays = {}
      for split, limit in keep.items():
        x, y = ds.stored_split(split)
        if limit is not None and not 0 < limit <= len(x):
          raise ValueError(f"num_{split}_examples={limit!r}; allowed: None "
                           f"or an integer in [1, {len(x)}] for "
                           f"{m.dataset!r}.")
        arrays[f"x_{split}"] = datasets_lib.scale_features(
            jnp.asarray(x[:limit]))
        arrays[f"y_{split}"] = jnp.asarray(y[:limit])
      splits[m.dataset] = (ds, arrays)
    ds, arrays = splits[m.dataset]
    key = (m.dataset, m.num_train_examples)
    if key not in train:
      x, y = ds.stored_split("train")
      train[key] = (datasets_lib.scale_features(
                        jnp.asarray(x[:m.num_train_examples])),
                    jnp.asarray(y[:m.num_train_examples]))
    # Built on a batch-sized slice, then given the shared arrays.
    task = task_lib.make_task(
        m.dataset, m.model, dict(m.model_kwargs), m.optimizer,
        optimizer_kwargs=dict(m.optimizer_kwargs),
        batch_size=m.batch_size, num_train_examples=m.batch_size,
        num_val_examples=1, num_test_examples=1, data_dir=data_dir,
        **task_kwargs)
    out.append(task.replace(data=task_lib.DeviceData(
        x_train=train[key][0], y_train=train[key][1], **arrays)))
  return tuple(out)


def member_env_ranges(config: DistributionConfig, member: MemberSpec
                      ) -> dict:
  """``LREnvParams`` fields of a member's per-episode draws.

  ``{'lr0_range': (default / spread, default * spread), 'num_steps_range':
  config.num_steps_range}``: the environment draws the initial LR and the
  run length of every episode from them (traced: no recompile).
  """
  lr = member.default_lr
  return {"lr0_range": (lr / config.lr0_spread, lr * config.lr0_spread),
          "num_steps_range": config.num_steps_range}


def check_disjoint(config: DistributionConfig,
                   heldout: Iterable[Tuple[str, str, str]],
                   heldout_datasets: Iterable[str] = ()) -> None:
  """Raises ValueError if the config can draw a held-out combination.

  Args:
    config: the distribution.
    heldout: (data set, model, optimizer) triples that must never be drawn
      (e.g. the benchmark's held-out workloads').
    heldout_datasets: data sets no combination may use at all (e.g. the
      held-out text, Tiny Shakespeare).
  """
  clash = sorted({c.key for c in config.combinations} & set(map(tuple,
                                                                 heldout)))
  if clash:
    raise ValueError(f"the task distribution holds held-out combinations "
                     f"{clash}; allowed: combinations of the train side "
                     "only.")
  texts = sorted({c.dataset for c in config.combinations}
                 & set(heldout_datasets))
  if texts:
    raise ValueError(f"the task distribution draws from the held-out data "
                     f"sets {texts}; allowed: any other data set (the "
                     "training-side sequence source is 'markov').")


def describe(members: Iterable[MemberSpec]) -> str:
  """One line per member (for logs and notes)."""
  return "\n".join(f"member {i}: {m.summary()}"
                   for i, m in enumerate(members))
