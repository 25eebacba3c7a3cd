"""Memory bounds: one device copy of a data set per process (counted in
jax's live buffers) however many sweeps, seeds and optimizer prefixes use
it. The peak resident memory of the big workloads is measured by
``benchmarks/memory.py`` (BUILD_NOTES)."""

import collections
import gc

import jax
import numpy as np

from lr_meta import baselines
from lr_meta import tasks
from lr_meta.tasks import optax_training


def _data_like(data):
  """(shape, dtype) -> how many of the data's arrays have it."""
  return collections.Counter((a.shape, a.dtype) for a in jax.tree.leaves(data))


def _live(exclude=()):
  """Live arrays, less those in ``exclude`` (arrays other tests of this
  process still hold, e.g. module-scoped tasks on the same data set)."""
  ids = {id(a) for a in exclude}
  return [a for a in jax.live_arrays()
          if not a.is_deleted() and id(a) not in ids]


def test_a_baseline_sweep_holds_one_device_copy_of_its_data(monkeypatch):
  gc.collect()
  older = _live()   # held (so their ids stay theirs) and left out below
  kw = dict(num_train_examples=2000, num_val_examples=500,
            num_test_examples=500)
  task = tasks.make_task("mnist1d", "mlp", **kw)
  one_copy = sum(a.nbytes for a in jax.tree.leaves(task.data))
  # An optimizer prefix ("adam:constant") is another task on the same data.
  adam_task = tasks.make_task("mnist1d", "mlp", optimizer="adam", **kw)
  assert adam_task.data is task.data
  shapes = _data_like(task.data)
  seen = []

  def counting(*args, **kwargs):
    out = real(*args, **kwargs)
    jax.block_until_ready(out)
    live = _live(older)
    seen.append((sum(a.nbytes for a in live) - one_copy,
                 collections.Counter((a.shape, a.dtype) for a in live
                                     if (a.shape, a.dtype) in shapes)))
    return out

  real = optax_training.run_training_batch
  monkeypatch.setattr(optax_training, "run_training_batch", counting)
  specs = baselines.named_grid("constant", (0.1, 0.03))
  for t in (task, adam_task):
    swept, res = baselines.tune_and_evaluate(
        t, specs, 6, num_seeds=2, tuning_seeds=(0, 1), eval_every=2,
        num_val_examples=100, max_batch=2)
    assert swept is not None and np.all(np.isfinite(res.test_loss))
  assert len(seen) >= 4
  for live_bytes, counts in seen:
    # Everything alive besides the data (params and Adam moments of the
    # two runs of a batch, curves, keys) is under a second copy of it, and
    # no other array has the shape of a data array.
    assert live_bytes < one_copy, (live_bytes, one_copy)
    assert counts == shapes, (counts, shapes)
  gc.collect()
  assert sum(a.nbytes for a in _live(older)) - one_copy < one_copy / 4
