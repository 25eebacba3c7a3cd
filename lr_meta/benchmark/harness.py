"""Running the benchmark: tuning, evaluation, the run cache, progress, cost.

Protocol per workload:

1. Tuning: every setting of every tuned reference trains on the
   ``'benchmark_tuning'`` seeds (``lr_meta.seeds``); the setting with the
   lowest mean final validation loss (whole validation split; a diverged run
   scores the capped loss) wins.
2. Evaluation: the winners and every self-tuning method's one setting train
   on the ``'benchmark_evaluation'`` seeds; their test loss and accuracy
   are the cells of the results.

Every run is keyed by (workload, program, setting, seed) and cached as one
JSON file in ``<outdir>/runs`` the moment it finishes (``RunStore``: the
atomic write of ``lr_meta.rundir``), so a killed benchmark resumes where it
stopped and an equal run (the untuned base optimizer is also a point of the
constant-LR grid) is done once. A cached cell is trusted only when it is
intact and was computed under this ``CACHE_VERSION`` and lr_meta version;
any other cell is reported in one line and recomputed. One benchmark
process per outdir: ``outdir_lock`` (``lr_meta.rundir.WorkdirLock`` on
``<outdir>/lock``) refuses a second one, naming the holder.
The runs of one program on one workload use one compiled program: the
settings are traced (``lr_meta.tasks.optax_training``), and in the
``'sequential'`` batch mode (CPU) the same executable is called per run, in
``'vmap'`` (accelerators) up to ``max_batch`` runs share one call.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import lr_meta
from lr_meta import distributed
from lr_meta import progress as progress_lib
from lr_meta import rundir
from lr_meta import runner
from lr_meta import seeds as seeds_lib
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import scoring
from lr_meta.benchmark import workloads as workloads_lib
from lr_meta.tasks import optax_training

NUM_TUNING_SEEDS = 3
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


# -- compile counting ---------------------------------------------------------


class CompileCounter:
  """Counts XLA compiles and their time through ``jax.monitoring``.

  ``programs`` counts the backend compiles of the training programs of
  ``optax_training`` (``PROGRAM_NAMES``); ``compiles`` counts every backend
  compile (also small helpers such as ``jnp.stack``); ``seconds`` sums
  tracing, lowering and compiling.
  """

  def __init__(self):
    self.compiles = 0
    self.programs = 0
    self.seconds = 0.0

  def __call__(self, event, duration, **kwargs):
    if event not in _COMPILE_EVENTS:
      return
    self.seconds += duration
    if event == _COMPILE_EVENTS[-1]:
      self.compiles += 1
      name = str(kwargs.get("fun_name", ""))
      if name.startswith("jit(") and name[4:-1] in optax_training.PROGRAM_NAMES:
        self.programs += 1

  def snapshot(self):
    return (self.compiles, self.programs, self.seconds)


_COUNTER: Optional[CompileCounter] = None


def compile_counter() -> CompileCounter:
  """The process-wide counter (registered with ``jax.monitoring`` once)."""
  global _COUNTER
  if _COUNTER is None:
    _COUNTER = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(_COUNTER)
  return _COUNTER


# -- run keys and the cache ---------------------------------------------------

# What a cached run means: bump it whenever a change makes the numbers or the
# fields of a run's record differ from what an old cell holds (the training
# engine ``lr_meta.tasks.optax_training``, the workloads' tasks, ``_record``,
# the protocol of a run). A cell of another version, or of another lr_meta
# version, is reported and recomputed, never reused.
CACHE_VERSION = 1   # cells written before versioning record none
# The fields of a cell (``RunStore``) and of the run record it holds.
CELL_FIELDS = ("cache_version", "key", "lr_meta_version", "record", "sha256")
RECORD_FIELDS = ("key", "workload", "family", "label", "seed",
                 "final_val_loss", "final_val_accuracy", "test_loss",
                 "test_accuracy", "diverged", "diverged_at_step", "steps",
                 "val_loss", "train_loss", "learning_rate", "cost")


def fingerprint(obj) -> Any:
  """A JSON-able, process-independent description of a program or workload
  (functions by qualified name, dataclasses field by field, arrays by
  dtype, shape and digest)."""
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return {type(obj).__name__: {
        name: fingerprint(value) for name, value in _key_fields(obj)}}
  if isinstance(obj, (np.ndarray, jax.Array)):
    return {"array": [str(obj.dtype), list(obj.shape),
                      rundir.tree_digest(obj)]}
  if isinstance(obj, np.generic):
    return fingerprint(obj.item())
  if callable(obj):
    module = getattr(obj, "__module__", "")
    return f"{module}.{getattr(obj, '__qualname__', obj)}"
  if isinstance(obj, dict):
    return {str(k): fingerprint(v) for k, v in sorted(obj.items())}
  if isinstance(obj, (list, tuple)):
    return [fingerprint(v) for v in obj]
  if isinstance(obj, (str, int, float, bool)) or obj is None:
    return obj
  return repr(obj)


def _key_fields(obj):
  """``(name, value)`` of a dataclass's fields that enter a cache key.

  A field marked ``metadata={'cache_key': 'omit_default'}`` at its default is
  left out: a field added later does not change the key of a run that does
  not use it. A field marked ``'flatten'`` (a dataclass with
  ``flat_items()``, e.g. ``ControllerSpec.observation_spec``) enters as its
  own fields by their flat names, the keys they had before they were
  grouped.
  """
  omitted = lambda field, value: (
      field.metadata.get("cache_key") == "omit_default"
      and value == field.default)
  out = []
  for f in dataclasses.fields(obj):
    value = getattr(obj, f.name)
    if f.metadata.get("cache_key") == "flatten":
      out += [(name, v) for name, v, field in value.flat_items()
              if not omitted(field, v)]
    elif not omitted(f, value):
      out.append((f.name, value))
  return out


def run_key(workload, program, label: str, seed: int, hp=None) -> str:
  """The cache key of one run: a digest of everything that decides it.

  The workload (every field but its side and description), the program (its class and every field: the
  method and its fixed settings), the setting's ``label``, the seed and,
  when given, the setting's hyperparameters ``hp`` (their arrays' digest: a
  label such as ``constant(lr=0.1)`` rounds its numbers). The code that
  runs it is not in the key: it is ``CACHE_VERSION``'s, checked when a cell
  is read (``RunStore``).
  """
  # A workload's side and description do not decide its runs: a workload
  # moved to another side of another suite reuses them.
  if isinstance(workload, workloads_lib.Workload):
    workload = dataclasses.replace(workload, split=workloads_lib.TRAIN,
                                   description="")
  parts = [fingerprint(workload), fingerprint(program), label, int(seed)]
  if hp is not None:
    parts.append(rundir.tree_digest(hp))
  text = json.dumps(parts, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_stamp() -> dict:
  """The versions a cell is computed under (stored in it, checked on read)."""
  return {"cache_version": CACHE_VERSION,
          "lr_meta_version": lr_meta.__version__}


def warn(line: str) -> None:
  """The default report of the benchmark: one line on stderr."""
  print(line, file=sys.stderr, flush=True)


def _cell_problem(cell, key: str) -> Optional[str]:
  """Why the parsed cell ``cell`` of ``key`` is not a trusted run (None: it
  is)."""
  if not isinstance(cell, dict):
    return f"holds a JSON {type(cell).__name__}, not a run cell"
  if "cache_version" not in cell:
    return ("records no cache_version (written by an older lr_meta, or "
            "damaged)")
  missing = sorted(set(CELL_FIELDS) - set(cell))
  extra = sorted(set(cell) - set(CELL_FIELDS))
  if missing or extra:
    return f"has wrong fields (missing {missing}, unexpected {extra})"
  if cell["key"] != key:
    return f"holds the key {cell['key']!r}, not its file name's"
  stamp = cache_stamp()
  if {k: cell[k] for k in stamp} != stamp:
    return (f"was computed under cache_version {cell['cache_version']!r}, "
            f"lr_meta {cell['lr_meta_version']!r} (this code: "
            f"cache_version {stamp['cache_version']}, lr_meta "
            f"{stamp['lr_meta_version']})")
  record = cell["record"]
  if not isinstance(record, dict) or record.get("key") != key:
    return "holds a record of another run"
  missing = sorted(set(RECORD_FIELDS) - set(record))
  if missing:
    return f"holds a record without the fields {missing}"
  if rundir.json_digest(record) != cell["sha256"]:
    return "fails its content digest (corrupted)"
  return None


class RunStore:
  """One JSON file (a cell) per finished run under ``<outdir>/runs``.

  A cell is ``{"key", "cache_version", "lr_meta_version", "record",
  "sha256"}``: the run's key (also its file name), the versions it was
  computed under (``cache_stamp``), the run's record and the SHA-256 of the
  record (``lr_meta.rundir.json_digest``). ``get`` trusts a cell only when
  it is valid JSON with exactly these fields, its key is its file name's,
  its versions are this code's and the digest matches; any other cell is
  reported in one line through ``log`` (the file and why) and read as
  missing, so the run is recomputed and its cell rewritten.
  """

  def __init__(self, outdir: str, log: Callable[[str], Any] = warn):
    self.root = os.path.join(outdir, "runs")
    self.log = log

  def _path(self, key):
    return os.path.join(self.root, key[:2], key + ".json")

  def get(self, key) -> Optional[dict]:
    """The record of run ``key``; None when absent or not trusted."""
    path = self._path(key)
    try:
      with open(path, "rb") as f:
        data = f.read()
    except FileNotFoundError:
      return None
    except OSError as e:
      problem = f"cannot be read ({type(e).__name__}: {e})"
    else:
      try:
        cell = json.loads(data.decode("utf-8"))
      # ValueError: also UnicodeDecodeError and JSONDecodeError.
      except (ValueError, RecursionError) as e:
        problem = f"is not valid JSON, truncated or corrupted ({e})"
      else:
        problem = _cell_problem(cell, key)
        if problem is None:
          return cell["record"]
    self.log(f"Run cache: {path} {problem}; recomputing that run.")
    return None

  def put(self, key, record):
    path = self._path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = json_safe(record)
    write_json_atomic(path, dict(cache_stamp(), key=key, record=record,
                                 sha256=rundir.json_digest(record)))


OUTDIR_ADVICE = ("one benchmark per outdir (wait for it to finish, or pass "
                 "another --outdir)")
_HELD_OUTDIRS = set()   # real paths of the outdirs this process locks


@contextlib.contextmanager
def outdir_lock(outdir: str, log: Callable[[str], Any] = warn):
  """One benchmark process per ``outdir``, for the duration of the block.

  Holds ``<outdir>/lock`` (``lr_meta.rundir.WorkdirLock``): a second process
  on the same outdir is refused with ``lr_meta.rundir.WorkdirBusyError``
  naming the holder, before it reads or writes anything there; a lock left
  by a killed process is taken over (and ``log`` says so). Re-entrant in one
  process (``run_suite`` holds it around ``run_benchmark``); in a
  multi-process job only process 0, the one that writes, takes it.
  """
  path = os.path.realpath(outdir)
  if path in _HELD_OUTDIRS or not distributed.is_main_process():
    yield
    return
  with rundir.WorkdirLock(outdir, log, advice=OUTDIR_ADVICE):
    _HELD_OUTDIRS.add(path)
    try:
      yield
    finally:
      _HELD_OUTDIRS.discard(path)


def json_safe(obj):
  """``obj`` with every non-finite float as None (standard JSON, and equal
  to itself after a round trip through a file)."""
  if isinstance(obj, dict):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, (float, np.floating)):
    return float(obj) if np.isfinite(obj) else None
  if isinstance(obj, np.integer):
    return int(obj)
  return obj


def write_json_atomic(path: str, obj):
  """Writes ``obj`` as JSON to ``path`` with ``lr_meta.rundir``'s atomic
  write (a temporary file, fsync, rename)."""
  rundir.atomic_write(path, json.dumps(json_safe(obj), indent=1,
                                       sort_keys=True, allow_nan=False))


# -- progress -----------------------------------------------------------------


class Progress(progress_lib.Progress):
  """Runs done / total (``lr_meta.progress``: a bar on a terminal, else a
  plain line every ``interval`` seconds), the ETA weighted by each run's
  steps and measured on runs actually executed (cached runs count as done
  and cost nothing)."""

  def __init__(self, total_runs: int, total_steps: int, stream=None,
               interval: float = 30.0, warmup: int = 0):
    super().__init__(total_runs, "benchmark", total_work=max(total_steps, 1),
                     stream=stream, interval=interval, warmup=warmup)
    self.executed_runs = 0

  def update(self, runs: int, steps: int, seconds: Optional[float] = None,
             label: str = ""):
    """``runs`` runs of ``steps`` steps in all finished; ``seconds`` is their
    wall time if executed (None: cached)."""
    if seconds is not None:
      self.executed_runs += runs
    super().update(runs, label, work=steps, seconds=seconds,
                   cached=seconds is None)

  def close(self):
    """Ends the bar and prints the last line (runs shared by two methods
    are done once, so the count may end below the planned total)."""
    cached = self.done - self.executed_runs
    super().close(f"done: {self.done} distinct runs, {self.executed_runs} "
                  f"trained now{f', {cached} from the cache' if cached else ''}"
                  f"; {progress_lib.duration(time.time() - self.start)}")


# -- executing runs -----------------------------------------------------------


class Run(NamedTuple):
  """One run to do: a setting of a program on one seed."""
  key: str
  label: str
  seed: int
  hp: Any


def _first_true(x) -> Optional[int]:
  idx = np.flatnonzero(np.asarray(x))
  return int(idx[0]) if idx.size else None


def _record(workload, family, run: Run, state, result, cost) -> dict:
  """The JSON record of one finished run (numpy leaves of one run)."""
  train_loss = np.asarray(result.train.loss, np.float64)
  lrs = np.asarray(result.train.learning_rate, np.float64)
  every = workload.eval_every
  as_list = lambda x: [float(v) for v in np.asarray(x, np.float64)]
  return json_safe({
      "key": run.key, "workload": workload.name, "family": family,
      "label": run.label, "seed": int(run.seed),
      "final_val_loss": float(result.final_val.loss),
      "final_val_accuracy": float(result.final_val.accuracy),
      "test_loss": float(result.test.loss),
      "test_accuracy": float(result.test.accuracy),
      "diverged": bool(state.diverged),
      "diverged_at_step": _first_true(result.train.diverged),
      "steps": [every * (i + 1) for i in range(workload.num_evals)],
      "val_loss": as_list(result.val.loss),
      "train_loss": as_list(train_loss.reshape(-1, every).mean(axis=1)),
      "learning_rate": as_list(lrs[every - 1::every]),
      "cost": cost,
  })


def benchmark_strategy(model_name: str, strategy: Optional[str] = None) -> str:
  """The execution strategy of benchmark runs (``strategy`` if given).

  The measured default (``runner.default_strategy``), except that conv nets
  on CPU run ``'loop'`` rather than ``'chunk'``: a benchmark compiles some
  17 programs per workload and an unrolled chunk compiles in time linear in
  its steps, while a jitted single step ran LeNet-5 as fast (28.0 against
  26.2 steps/s, BUILD_NOTES "Execution strategies").
  """
  if strategy is not None:
    return runner.check_strategy(strategy)
  default = runner.default_strategy(model_name)
  return "loop" if default == "chunk" else default


def execute(task, workload, program, family: str, runs: Sequence[Run],
            store: RunStore, progress: Optional[Progress] = None, *,
            strategy: Optional[str] = None, batch_mode: Optional[str] = None,
            batch_size: int = 64,
            mesh: Optional[jax.sharding.Mesh] = None) -> Dict[str, dict]:
  """Records of ``runs`` (one program on one workload), from the cache or run.

  ``'sequential'``: one run per call of the compiled program. ``'vmap'``:
  ``batch_size`` runs per call, the last call padded with copies of its
  last run (results dropped), so that every call has one shape and the
  program compiles once, also when a resumed benchmark has fewer runs left.

  With a ``mesh`` over several processes (``lr_meta.distributed``), process
  0's store says which runs are missing (the others may not see its files),
  each process runs its block of them, and every process gets every record;
  process 0 alone writes the store.

  Returns:
    ``{run key: record}``; every record is in the store when this returns.
  """
  counter = compile_counter()
  unique = list({r.key: r for r in runs}.values())
  records, missing = {}, []
  for r in unique:
    record = store.get(r.key)
    if record is None:
      missing.append(r)
    else:
      records[r.key] = record
  split = distributed.spans_processes(mesh)
  if split:
    records, keys = distributed.broadcast_json(
        [records, [r.key for r in missing]])
    missing = [r for r in unique if r.key in set(keys)]
  if progress:
    for _ in records:
      progress.update(1, workload.num_steps, None, workload.name)
  # Known from the program alone: also given to cells cached before it was
  # recorded.
  probe_examples = int(program.probe_examples(workload.num_steps))
  for record in records.values():
    record["cost"].setdefault("probe_examples", probe_examples)
  batch_mode = batch_mode or runner.default_batch_mode(task.model_name)
  strategy = benchmark_strategy(task.model_name, strategy)
  size = 1 if batch_mode == "sequential" else batch_size
  rows = (distributed.process_rows(len(missing)) if split and missing
          else np.arange(len(missing)))
  for start in range(0, len(rows), size):
    group = [missing[i] for i in rows[start:start + size]]
    padded = group + [group[-1]] * (size - len(group))
    before = counter.snapshot()
    t0 = time.time()
    keys = jnp.stack([jax.random.key(r.seed) for r in padded])
    hps = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]),
                       *[r.hp for r in padded])
    states, results = optax_training.run_batch(
        task, program, hps, keys, workload.num_steps,
        eval_every=workload.eval_every, strategy=strategy,
        batch_mode=batch_mode, num_val_examples=None)
    states, results = jax.device_get((states, results))
    wall = time.time() - t0
    after = counter.snapshot()
    cost = {"wall_s": wall / len(group), "batch_runs": len(padded),
            "probe_examples": probe_examples,
            "compiles": after[0] - before[0],
            "program_compiles": after[1] - before[1],
            "compile_s": after[2] - before[2]}
    done = [_record(workload, family, r, jax.tree.map(lambda x, i=i: x[i],
                                                      states),
                    jax.tree.map(lambda x, i=i: x[i], results),
                    cost if i == 0 else dict(cost, compiles=0,
                                             program_compiles=0,
                                             compile_s=0.0))
            for i, r in enumerate(group)]
    if split:
      # Every process's group of this round; padding rows repeat a run.
      group = [missing[i] for p in range(jax.process_count())
               for i in distributed.process_rows(len(missing), None, p)[
                   start:start + size]]
      done = [rec for block in distributed.gather_json(done)
              for rec in block]
    fresh = {r.key: (r, rec) for r, rec in zip(group, done)
             if r.key not in records}
    for r, record in fresh.values():
      if distributed.is_main_process():
        store.put(r.key, record)
      records[r.key] = record
    if progress:
      progress.update(len(fresh), len(fresh) * workload.num_steps, wall,
                      workload.name)
  return records


# -- the benchmark ------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def workload_task(workload: workloads_lib.Workload,
                  data_dir: Optional[str] = None):
  """The workload's ``Task``, built once per process: its optimizer is a
  static part of every compiled program, so a rebuilt task would compile
  every program again."""
  return workload.make_task(data_dir)


class Cell(NamedTuple):
  """One (workload, method, seed) evaluation result: the run's record."""
  workload: str
  method: str
  record: dict


class BenchmarkRuns(NamedTuple):
  """What ``run_benchmark`` returns.

  Attributes:
    cells: the evaluation ``Cell``s in (workload, method, seed) order.
    tuning: ``{workload: {tuned method: grid, winner, cost}}``.
    run_costs: ``{(workload, family): [cost of each distinct run]}``.
    not_applicable: ``{workload: {method: why}}``: methods that cannot run
      there (``methods.NotApplicable``), left out of its cells.
  """
  cells: List[Cell]
  tuning: Dict[str, Dict[str, dict]]
  run_costs: Dict[tuple, List[dict]]
  not_applicable: Dict[str, Dict[str, str]] = {}


def grid_runs(workload, program, settings, seeds):
  """The ``Run`` of every setting on every seed (keys by ``run_key``)."""
  return [Run(run_key(workload, program, s.label, seed, s.hp), s.label, seed,
              s.hp) for s in settings for seed in seeds]


def _at_grid_edge(settings, best: int) -> bool:
  """The winner's peak LR is the largest or smallest of the grid's."""
  peaks = [float(np.max(s.hp["learning_rates"])) for s in settings
           if "learning_rates" in s.hp]
  if len(peaks) != len(settings) or len(set(peaks)) < 2:
    return False
  return peaks[best] in (min(peaks), max(peaks))


def _by_family(methods, built):
  """``{family: (program, [method, ...])}``; a family has one program."""
  out = {}
  for m in methods:
    program = built[m.name][0]
    if m.family in out and out[m.family][0] != program:
      raise ValueError(f"methods {out[m.family][1][0].name!r} and {m.name!r} "
                       f"of family {m.family!r} build different programs.")
    out.setdefault(m.family, (program, []))[1].append(m)
  return out


def _plan(suite, methods, data_dir, num_seeds):
  """Tasks, built methods, the methods not applicable to each workload
  (``{workload: {method: why}}``) and the progress totals (building is
  cheap)."""
  tasks_, built, total_runs, total_steps = {}, {}, 0, 0
  not_applicable = {}
  for workload in suite:
    task = tasks_[workload.name] = workload_task(workload, data_dir)
    built[workload.name] = {}
    for m in methods:
      try:
        built[workload.name][m.name] = m.build(workload, task)
      except methods_lib.NotApplicable as e:
        not_applicable.setdefault(workload.name, {})[m.name] = str(e)
    for m in methods:
      if m.name not in built[workload.name]:
        continue
      settings = built[workload.name][m.name][1]
      if m.kind == methods_lib.SELF_TUNING and len(settings) != 1:
        raise ValueError(f"self-tuning method {m.name!r} must have exactly "
                         f"one setting; it has {len(settings)}.")
      n = num_seeds + (len(settings) * NUM_TUNING_SEEDS
                       if m.kind == methods_lib.TUNED else 0)
      total_runs += n
      total_steps += n * workload.num_steps
  return tasks_, built, not_applicable, total_runs, total_steps


def _tuning_summary(workload, settings, seeds, records, program, wall,
                    extended=0):
  runs = [grid_runs(workload, program, [s], seeds) for s in settings]
  val = np.array([[records[r.key]["final_val_loss"] for r in rs]
                  for rs in runs])
  mean = val.mean(axis=1)
  best = scoring.best_setting(val)
  costs = [records[r.key]["cost"] for rs in runs for r in rs]
  return best, {
      "grid": [{"label": s.label, "val_loss": float(mean[i]),
                "val_loss_per_seed": [float(v) for v in val[i]]}
               for i, s in enumerate(settings)],
      "best": settings[best].label,
      "best_val_loss": float(mean[best]),
      "best_at_grid_edge": _at_grid_edge(settings, best),
      # Points added past an edge where the winner sat (``Method.extend``).
      "extended_by": extended,
      "seeds_disagree": scoring.seeds_disagree(val[best]),
      "tuning_seeds": list(seeds),
      "cost": {"runs": len(costs), "steps": len(costs) * workload.num_steps,
               "wall_s": float(sum(c["wall_s"] for c in costs)),
               "family_session_wall_s": wall},
  }


def run_benchmark(suite: Sequence[workloads_lib.Workload],
                  methods: Sequence[methods_lib.Method], *, num_seeds: int,
                  outdir: str, data_dir: Optional[str] = None,
                  strategy: Optional[str] = None,
                  batch_mode: Optional[str] = None, max_batch: int = 64,
                  progress_stream=None, progress_interval: float = 30.0,
                  mesh: Optional[jax.sharding.Mesh] = None,
                  log: Callable[[str], Any] = warn):
  """Tunes and evaluates every method on every workload (module docstring).

  The runs of one family on one workload go through ``execute`` together
  (in ``'vmap'`` mode in batches of one width: one compile per family);
  ``mesh`` spreads them over processes (``execute``). ``outdir`` is held
  (``outdir_lock``) while it runs; ``log`` gets the one-line reports of
  cache cells that cannot be trusted (recomputed) and of a stale lock.

  Returns:
    ``BenchmarkRuns``.

  Raises:
    lr_meta.rundir.WorkdirBusyError: another process runs a benchmark in
      ``outdir`` (the message names it).
  """
  if not isinstance(num_seeds, int) or num_seeds < 2:
    raise ValueError(f"num_seeds={num_seeds!r}; allowed: an integer >= 2 "
                     "(a t-test needs two seeds).")
  with outdir_lock(outdir, log):
    return _run_benchmark(suite, methods, num_seeds, RunStore(outdir, log),
                          data_dir, strategy, batch_mode, max_batch,
                          progress_stream, progress_interval, mesh)


def tune(workload, method, program, settings, records, run, tuning_seeds,
         t0: float, progress: Optional[Progress] = None):
  """The chosen setting of a tuned ``method`` on ``workload`` and its
  tuning summary.

  ``records`` holds the grid's runs on ``tuning_seeds``; while the winner
  sits on an edge of the grid, the grid extends past it
  (``method.extend``, at most ``MAX_GRID_EXTENSIONS`` times) and
  ``run(runs) -> records`` trains the new points (``records`` is updated).
  ``t0``: when tuning began (the summary's wall time).
  """
  settings = list(settings)
  first = len(settings)
  for extensions in range(methods_lib.MAX_GRID_EXTENSIONS + 1):
    best, summary = _tuning_summary(
        workload, settings, tuning_seeds, records, program,
        time.time() - t0, len(settings) - first)
    new = (method.extend(workload, settings, best) if method.extend and
           extensions < methods_lib.MAX_GRID_EXTENSIONS else [])
    if not new:
      break
    if progress is not None:
      progress.extend(len(new) * len(tuning_seeds),
                      len(new) * len(tuning_seeds) * workload.num_steps)
    records.update(run(grid_runs(workload, program, new, tuning_seeds)))
    settings += new
  return settings[best], summary


class MethodRuns(NamedTuple):
  """One method on one workload: the setting it ran, its tuning summary
  (None for a self-tuning method) and its records on the evaluation seeds,
  in seed order."""
  setting: methods_lib.Setting
  tuning: Optional[dict]
  records: List[dict]


def tune_and_run(task, workload, method, store, tuning_seeds: Sequence[int],
                 eval_seeds: Sequence[int], *,
                 strategy: Optional[str] = None,
                 batch_mode: Optional[str] = None,
                 mesh: Optional[jax.sharding.Mesh] = None) -> MethodRuns:
  """The benchmark's protocol for one method on one workload, alone.

  A tuned method runs its grid on ``tuning_seeds`` and keeps the setting
  with the lowest mean final validation loss (``tune``: the grid extends
  past an edge where the winner sits, if the method extends); that setting,
  or a self-tuning method's one setting, then runs on ``eval_seeds``. Runs
  come from ``store`` when it has them (``execute``). ``run_benchmark`` does
  the same for a whole suite, sharing compiled programs across methods.
  """
  program, settings = method.build(workload, task)

  def run(runs):
    return execute(task, workload, program, method.family, runs, store,
                   strategy=strategy, batch_mode=batch_mode, mesh=mesh)

  chosen, tuning = settings[0], None
  if method.kind == methods_lib.TUNED:
    t0 = time.time()
    records = run(grid_runs(workload, program, settings, tuning_seeds))
    chosen, tuning = tune(workload, method, program, settings, records, run,
                          tuning_seeds, t0)
  elif len(settings) != 1:
    raise ValueError(f"self-tuning method {method.name!r} must have exactly "
                     f"one setting; it has {len(settings)}.")
  final = grid_runs(workload, program, [chosen], eval_seeds)
  records = run(final)
  return MethodRuns(chosen, tuning, [records[r.key] for r in final])


def _run_benchmark(suite, methods, num_seeds, store, data_dir, strategy,
                   batch_mode, max_batch, progress_stream, progress_interval,
                   mesh):
  tuning_seeds = seeds_lib.seed_range("benchmark_tuning", NUM_TUNING_SEEDS)
  eval_seeds = seeds_lib.seed_range("benchmark_evaluation", num_seeds)
  tasks_, built, not_applicable, total_runs, total_steps = _plan(
      suite, methods, data_dir, num_seeds)
  progress = Progress(total_runs, total_steps, progress_stream,
                      progress_interval)
  cells, tuning, run_costs = [], {}, {}
  try:
    for workload in suite:
      task, made = tasks_[workload.name], built[workload.name]
      applicable = [m for m in methods if m.name in made]
      families = _by_family(applicable, made)
      tuning[workload.name] = {}

      # vmap batch width per family: its largest phase, at most max_batch.
      batch = {}

      def go(family, runs, workload=workload, task=task):
        records = execute(task, workload, families[family][0], family, runs,
                          store, progress, strategy=strategy,
                          batch_mode=batch_mode, batch_size=batch[family],
                          mesh=mesh)
        run_costs.setdefault((workload.name, family), {}).update(
            {k: r["cost"] for k, r in records.items()})
        return records

      grids = {m.name: grid_runs(workload, made[m.name][0], made[m.name][1],
                                  tuning_seeds)
               for m in applicable if m.kind == methods_lib.TUNED}
      chosen = {m.name: made[m.name][1][0] for m in applicable}
      for family, (program, members) in families.items():
        tuned = [m for m in members if m.kind == methods_lib.TUNED]
        runs = [r for m in tuned for r in grids[m.name]]
        batch[family] = min(max_batch, max(len(runs),
                                           len(members) * num_seeds))
        if not runs:
          continue
        t0 = time.time()
        records = go(family, runs)
        for m in tuned:
          chosen[m.name], tuning[workload.name][m.name] = tune(
              workload, m, program, made[m.name][1], records,
              functools.partial(go, family), tuning_seeds, t0, progress)
      for family, (program, members) in families.items():
        runs = {m.name: grid_runs(workload, program, [chosen[m.name]],
                                   eval_seeds) for m in members}
        records = go(family, [r for rs in runs.values() for r in rs])
        for m in members:
          cells += [Cell(workload.name, m.name, records[r.key])
                    for r in runs[m.name]]
  finally:
    progress.close()
  order = {m.name: i for i, m in enumerate(methods)}
  names = [w.name for w in suite]
  cells.sort(key=lambda c: (names.index(c.workload), order[c.method]))
  return BenchmarkRuns(cells, tuning, {k: list(v.values())
                                       for k, v in run_costs.items()},
                       not_applicable)
