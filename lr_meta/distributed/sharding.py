"""The population axis over the devices of every process.

Two ways to spread a population (episodes, candidate rules, grid points,
benchmark runs, evaluation seeds) over a mesh, both with ``jax.sharding``:

* Inside one jitted program (the agents' populations): ``shard_population``
  constrains the population's leading axis to ``P('pop')`` over the mesh, so
  XLA runs each device's members there; ``replicate`` gathers what the
  learner consumes, so the learner update is the same computation on every
  device and every process ends with the same controller.
* Process by process (runs driven from Python: one compiled run after
  another, a Python loop over chunks, whole benchmark runs):
  ``process_rows`` is this process's share of R rows, ``gather_rows``
  all-gathers the per-process results so that every process holds all R,
  and ``map_rows`` is the two together.

Results do not depend on the number of processes: every member's inputs
(its PRNG key above all) are computed from the whole population on every
process before the split (``jax.random.split(key, N)[i]`` is member i's key
whoever runs it; random draws inside a jitted program are partitionable,
``jax_threefry_partitionable``), and gathering restores the original order.

``broadcast_from_main`` and ``broadcast_json`` send what only process 0
read (a checkpoint, a run cache) to every process; ``gather_json`` collects
every process's records (benchmark runs); ``host_copy`` turns global
arrays into host numpy arrays for process-local work (evaluation, files).
A process-local computation must never take a global array: JAX would run
it on every process's devices.
"""

import json
import math
from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "POPULATION_AXIS", "broadcast_from_main", "broadcast_json",
    "gather_json", "gather_rows", "global_mesh", "host_copy", "job_mesh",
    "local_mesh", "map_rows", "process_rows", "replicate", "shard_population",
    "spans_processes",
]

POPULATION_AXIS = "pop"


def global_mesh(axis_name: str = POPULATION_AXIS) -> Mesh:
  """A 1-D mesh over every device of every process, ordered by process.

  Its axis type is ``Auto``: the sharding constraints of ``shard_population``
  place the population and XLA propagates the rest.
  """
  return Mesh(np.asarray(jax.devices()), (axis_name,),
              axis_types=(jax.sharding.AxisType.Auto,))


def job_mesh() -> Optional[Mesh]:
  """``global_mesh()`` in a multi-process job, None in a single process.

  What the scripts pass as ``mesh=``: a single process keeps its
  populations on its default device, exactly as without this module.
  """
  return global_mesh() if jax.process_count() > 1 else None


def _processes(mesh: Mesh) -> list[int]:
  return sorted({d.process_index for d in mesh.devices.flat})


def spans_processes(mesh: Optional[Mesh]) -> bool:
  """True when ``mesh`` holds devices of more than one process.

  Raises:
    ValueError: the mesh holds devices of some processes but not all (the
      row split and the gather involve every process).
  """
  if mesh is None:
    return False
  procs = _processes(mesh)
  if len(procs) == 1:
    return False
  if len(procs) != jax.process_count():
    raise ValueError(
        f"the mesh spans processes {procs} of {jax.process_count()}; "
        "allowed: one process's devices, or devices of every process "
        "(global_mesh()).")
  return True


def local_mesh(mesh: Mesh) -> Mesh:
  """This process's devices of the 1-D ``mesh``, with the same axis."""
  if mesh.devices.ndim != 1:
    raise ValueError(f"mesh of shape {dict(mesh.shape)}; allowed: a 1-D "
                     "mesh (global_mesh()).")
  mine = [d for d in mesh.devices.flat
          if d.process_index == jax.process_index()]
  if not mine:
    raise ValueError(f"process {jax.process_index()} has no device in the "
                     "mesh; allowed: a mesh over every process's devices.")
  return Mesh(np.asarray(mine), mesh.axis_names, axis_types=mesh.axis_types)


def _axis(mesh: Mesh) -> str:
  if len(mesh.axis_names) != 1:
    raise ValueError(f"mesh axes {mesh.axis_names}; allowed: one axis "
                     "(global_mesh()).")
  return mesh.axis_names[0]


def shard_population(tree: Any, mesh: Optional[Mesh]) -> Any:
  """Constrains every leaf's leading (population) axis to the mesh's axis.

  Inside a jitted program: each device computes its members. ``mesh=None``
  is the identity (a single device, or no distribution asked for).

  Raises:
    ValueError: a leaf's leading size is not a multiple of the mesh size.
  """
  if mesh is None:
    return tree
  size = mesh.devices.size
  bad = sorted({np.shape(x)[0] if np.ndim(x) else 0
                for x in jax.tree.leaves(tree)
                if not np.ndim(x) or np.shape(x)[0] % size})
  if bad:
    raise ValueError(
        f"population size(s) {bad} over a mesh of {size} devices; allowed: "
        f"a multiple of {size} (one equal share per device).")
  sharding = NamedSharding(mesh, PartitionSpec(_axis(mesh)))
  return jax.lax.with_sharding_constraint(tree, sharding)


def replicate(tree: Any, mesh: Optional[Mesh]) -> Any:
  """Constrains ``tree`` to be whole on every device (an all-gather).

  What a learner consumes: its update is then one computation repeated on
  every device, giving the same controller everywhere.
  """
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(
      tree, NamedSharding(mesh, PartitionSpec()))


def process_rows(num_rows: int, num_processes: Optional[int] = None,
                 process_index: Optional[int] = None) -> np.ndarray:
  """The row indices this process handles: a contiguous block.

  Every process gets ``ceil(R / P)`` indices (same shapes everywhere, so the
  same compiled programs); the last blocks are padded with copies of row
  ``R - 1`` (their results are dropped by ``gather_rows``).

  Args:
    num_rows: R >= 1.
    num_processes, process_index: default ``jax.process_count()`` and
      ``jax.process_index()``.
  """
  if not isinstance(num_rows, (int, np.integer)) or num_rows < 1:
    raise ValueError(f"num_rows={num_rows!r}; allowed: an integer >= 1.")
  p = jax.process_count() if num_processes is None else num_processes
  i = jax.process_index() if process_index is None else process_index
  block = math.ceil(num_rows / p)
  return np.minimum(np.arange(i * block, (i + 1) * block), num_rows - 1)


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype,
                                                       jax.dtypes.prng_key)


def gather_rows(tree: Any, num_rows: int) -> Any:
  """Every process's ``process_rows`` results, concatenated: all R rows.

  Args:
    tree: this process's results; every leaf has the leading size
      ``len(process_rows(num_rows))``.
    num_rows: R.

  Returns:
    The tree with R rows per leaf, in row order, as arrays on this process's
    default device (PRNG key arrays stay key arrays), the same on every
    process.
  """
  block = len(process_rows(num_rows))
  bad = [np.shape(x) for x in jax.tree.leaves(tree)
         if not np.ndim(x) or np.shape(x)[0] != block]
  if bad:
    raise ValueError(f"leaves of shapes {bad}; allowed: a leading row axis of "
                     f"{block} (this process's rows of {num_rows}).")

  def gather(x):
    impl = jax.random.key_impl(x) if _is_key(x) else None
    data = jax.random.key_data(x) if impl is not None else x
    if jax.process_count() > 1:
      data = multihost_utils.process_allgather(np.asarray(data), tiled=True)
    data = jax.numpy.asarray(np.asarray(data)[:num_rows])
    return jax.random.wrap_key_data(data, impl=impl) if impl else data
  return jax.tree.map(gather, tree)


def map_rows(fn: Callable[[Any], Any], rows: Any,
             mesh: Optional[Mesh]) -> Any:
  """``fn(rows)``, split over the processes of ``mesh`` by leading rows.

  With a mesh over one process (or None) this is ``fn(rows)``. Over several
  processes, each runs ``fn`` on its ``process_rows`` and the results are
  gathered (``gather_rows``): every process returns all R rows. ``fn`` must
  return a tree whose leaves have one leading row per input row.
  """
  if not spans_processes(mesh):
    return fn(rows)
  sizes = {np.shape(x)[0] for x in jax.tree.leaves(rows) if np.ndim(x)}
  if len(sizes) != 1 or any(not np.ndim(x) for x in jax.tree.leaves(rows)):
    raise ValueError(f"rows with leading sizes {sorted(sizes)}; allowed: one "
                     "leading row axis R on every leaf.")
  num_rows = sizes.pop()
  mine = process_rows(num_rows)
  return gather_rows(fn(jax.tree.map(lambda x: x[mine], rows)), num_rows)


def broadcast_from_main(tree: Any) -> Any:
  """Process 0's ``tree`` on every process (as numpy arrays).

  Every process passes a tree of the same structure and shapes (e.g. a
  freshly initialised state as the template of a restored one).
  """
  keys = [_is_key(x) for x in jax.tree.leaves(tree)]
  if any(keys):
    raise ValueError("broadcast_from_main got PRNG key arrays; allowed: raw "
                     "arrays (jax.random.key_data).")
  return multihost_utils.broadcast_one_to_all(jax.tree.map(np.asarray, tree))


def _json_to_bytes(obj: Any) -> np.ndarray:
  return np.frombuffer(json.dumps(obj).encode(), np.uint8)


def _bytes_to_json(data: np.ndarray) -> Any:
  return json.loads(np.asarray(data, np.uint8).tobytes().decode())


def _padded(data: np.ndarray, size: int) -> np.ndarray:
  out = np.zeros((size,), np.uint8)
  out[:data.size] = data
  return out


def broadcast_json(obj: Any) -> Any:
  """Process 0's JSON-able ``obj`` on every process (others pass anything)."""
  if jax.process_count() == 1:
    return obj
  main = jax.process_index() == 0
  data = _json_to_bytes(obj) if main else np.zeros((0,), np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int64(data.size)))
  return _bytes_to_json(
      multihost_utils.broadcast_one_to_all(_padded(data, size)))


def gather_json(obj: Any) -> list:
  """Every process's JSON-able ``obj``, in process order, on every process."""
  if jax.process_count() == 1:
    return [obj]
  data = _json_to_bytes(obj)
  sizes = np.asarray(multihost_utils.process_allgather(np.int64(data.size)))
  blocks = np.asarray(multihost_utils.process_allgather(
      _padded(data, int(sizes.max()))))
  return [_bytes_to_json(block[:n]) for block, n in zip(blocks, sizes)]


def host_copy(tree: Any) -> Any:
  """Host numpy copies of what a multi-process program computed.

  A replicated global array is read from this process's own copy; an array
  split over processes (e.g. DQN's episode states) is all-gathered, so
  every process must call this with the same tree. Process-local arrays are
  copied as they are; PRNG key arrays become their raw key data. For
  process-local work on the results (evaluation, files).
  """
  def copy(x):
    if _is_key(x):
      x = jax.random.key_data(x)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(copy, tree)
