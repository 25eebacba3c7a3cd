"""A family of small training tasks: random small CNNs on random data subsets.

Daniel, Taylor & Nowozin (2016) train their step-size controller over
"randomly drawn small CNNs (c-p-c-p-c-r-c-s) and data subsets" so that it
does not fit one network or one data set. A ``TaskFamilyConfig`` fixes that
distribution here; ``sample_family`` draws its ``num_members`` members:

* everything comes from ONE key, ``jax.random.PRNGKey(config.seed)``; member
  i uses ``fold_in(key, i)``, split into a key for its architecture and a key
  for its data, so the same config always gives the same members and member
  i does not change when ``num_members`` grows;
* architecture: a ``SmallCNN`` (``lr_meta.tasks.models``) whose three filter
  counts are each uniform over an inclusive range (``filter_ranges``);
* data: ``subset_size`` training examples drawn without replacement from the
  data set's training split (indices sorted). Validation and test splits are
  the data set's (shared by all members; the daniel2016 reward and
  observation use the training loss only).

Compile cost: every member is a different program (shapes differ), so an
agent compiles once per member it meets; on CPU keep ``num_members`` small
(4-6) and the CNNs small.
"""

import dataclasses
from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import checks
from lr_meta.tasks import datasets as datasets_lib
from lr_meta.tasks import task as task_lib

__all__ = [
    "FAMILY_MODEL", "MEMBER_FIELDS", "describe", "make_family_tasks",
    "make_member_task", "Member", "sample_family", "TaskFamilyConfig",
]

FAMILY_MODEL = "small_cnn"
# make_task arguments the family sets itself (members differ in them).
MEMBER_FIELDS = ("dataset", "model", "model_kwargs", "num_train_examples")


@dataclasses.dataclass(frozen=True)
class TaskFamilyConfig:
  """The distribution of tasks (see the module docstring).

  Attributes:
    dataset: the data set whose training split the subsets come from.
    num_members: M, the number of members drawn, >= 1.
    seed: the one PRNG seed of every draw.
    subset_size: training examples per member, >= 1 (and <= the split).
    filter_ranges: three inclusive ``(low, high)`` ranges, the filter counts
      of the three ``SmallCNN`` convs before the classifier (the talk's
      random c, c, c of c-p-c-p-c-r-c-s), 1 <= low <= high.
    kernel_size: the first two convs' kernel size, >= 1.
  """
  dataset: str = "fashion_mnist"
  num_members: int = 4
  seed: int = 0
  subset_size: int = 2000
  filter_ranges: Tuple[Tuple[int, int], ...] = ((2, 6), (4, 12), (8, 32))
  kernel_size: int = 5

  def __post_init__(self):
    datasets_lib._check_name(self.dataset)  # pylint: disable=protected-access
    checks.check_int("task_family.num_members", self.num_members, 1)
    checks.check_int("task_family.seed", self.seed, 0)
    checks.check_int("task_family.subset_size", self.subset_size, 1)
    checks.check_int("task_family.kernel_size", self.kernel_size, 1)
    ranges = tuple(tuple(r) for r in self.filter_ranges)
    ok = len(ranges) == 3 and all(
        len(r) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                            for v in r) and 1 <= r[0] <= r[1]
        for r in ranges)
    if not ok:
      raise ValueError(
          f"task_family.filter_ranges={self.filter_ranges!r}; allowed: three "
          "(low, high) integer pairs with 1 <= low <= high.")
    object.__setattr__(self, "filter_ranges", ranges)


class Member(NamedTuple):
  """One task of the family."""
  filters: Tuple[int, int, int]   # SmallCNN filter counts
  train_indices: np.ndarray       # [subset_size] int, sorted, distinct


def sample_family(config: TaskFamilyConfig, train_size: int
                  ) -> Tuple[Member, ...]:
  """The ``config.num_members`` members (deterministic in ``config``).

  Args:
    config: the family.
    train_size: size of the data set's training split (subset indices are
      drawn from ``range(train_size)``).

  Returns:
    A tuple of ``Member``.
  """
  checks.check_int("train_size", train_size, 1)
  if config.subset_size > train_size:
    raise ValueError(
        f"task_family.subset_size={config.subset_size}; allowed: <= "
        f"{train_size}, the training split of {config.dataset!r}.")
  key = jax.random.PRNGKey(config.seed)
  members = []
  for i in range(config.num_members):
    k_arch, k_data = jax.random.split(jax.random.fold_in(key, i))
    lows = jnp.array([r[0] for r in config.filter_ranges])
    highs = jnp.array([r[1] for r in config.filter_ranges])
    filters = jax.random.randint(k_arch, (3,), lows, highs + 1)
    indices = jax.random.permutation(k_data, train_size)[:config.subset_size]
    members.append(Member(filters=tuple(int(f) for f in filters),
                          train_indices=np.sort(np.asarray(indices))))
  return tuple(members)


def make_member_task(config: TaskFamilyConfig, member: Member,
                     data_dir: Optional[str] = None,
                     **task_kwargs) -> task_lib.Task:
  """The ``Task`` of one member.

  Args:
    config: the family (data set, kernel size).
    member: from ``sample_family``.
    data_dir: as in ``make_task``.
    **task_kwargs: the other ``make_task`` arguments (optimizer, batch size,
      validation/test sizes...); ``MEMBER_FIELDS`` are set by the member.
  """
  clash = sorted(set(task_kwargs) & set(MEMBER_FIELDS))
  if clash:
    raise ValueError(f"task arguments {clash} are set by the task family; "
                     f"allowed: make_task arguments other than "
                     f"{MEMBER_FIELDS}.")
  # Sized as the member's subset (replaced below) so that make_task checks
  # batch_size against the examples the member really trains on.
  task = task_lib.make_task(
      dataset=config.dataset, model=FAMILY_MODEL,
      model_kwargs=dict(filters=member.filters,
                        kernel_size=config.kernel_size),
      num_train_examples=len(member.train_indices), data_dir=data_dir,
      **task_kwargs)
  x, y = datasets_lib.load_dataset(config.dataset, data_dir).split("train")
  idx = member.train_indices
  return task.replace(data=task.data.replace(x_train=jnp.asarray(x[idx]),
                                             y_train=jnp.asarray(y[idx])))


def make_family_tasks(config: TaskFamilyConfig,
                      data_dir: Optional[str] = None,
                      **task_kwargs) -> Tuple[task_lib.Task, ...]:
  """The tasks of all members, in member order (see ``make_member_task``)."""
  x, _ = datasets_lib.load_dataset(config.dataset, data_dir).split("train")
  return tuple(make_member_task(config, m, data_dir, **task_kwargs)
               for m in sample_family(config, len(x)))


def describe(members: Sequence[Member]) -> str:
  """One line per member: filters and subset size (for logs and notes)."""
  return "\n".join(f"member {i}: SmallCNN filters {m.filters}, "
                   f"{len(m.train_indices)} training examples"
                   for i, m in enumerate(members))
