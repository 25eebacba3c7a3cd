"""A tiny ``lmo.controlled`` training loop, and the jobs that need a process
of their own (run by tests/test_controlled_conventions.py).

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
      python tests/controlled_jobs.py sharded OUT.json
  python tests/controlled_jobs.py resume CHECKPOINT_DIR OUT.npz

``sharded``: the mnist1d MLP trained with the shipped generalist, params
sharded over a 4-device 'model' axis, and again on one device; writes the
two LR paths and whether every optimizer state leaf of params' shape has
the params' sharding. ``resume``: restores ``{"params", "opt_state"}``
saved after ``RESUME_AT`` steps (orbax) in this fresh process, trains to
``NUM_STEPS`` and writes the LRs and every leaf of the final params and
state.
"""

import contextlib
import json
import sys
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lr_meta.optax as lmo

NUM_STEPS, RESUME_AT, PROBE = 20, 10, 64
_BATCH_KEY = jax.random.PRNGKey(1)


def mnist1d_task():
  from lr_meta import tasks  # pylint: disable=g-import-not-at-top
  return tasks.make_task("mnist1d", "mlp", dict(hidden_sizes=(16,)),
                         optimizer="adamw", batch_size=32,
                         num_train_examples=500, num_val_examples=PROBE,
                         num_test_examples=PROBE)


def generalist_tx(num_steps=NUM_STEPS, base=None):
  """The shipped generalist on AdamW (lr0 1e-2) unless ``base`` is given."""
  if base is None:
    base = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2)
  return lmo.controlled(base, lmo.pretrained_controller("generalist"),
                        num_steps=num_steps)


class Objective(NamedTuple):
  """``apply_fn(params, x)`` (float32 logits), ``loss_fn(params, x, y)``,
  the fixed probe ``(x_probe, y_probe)`` and ``batch(i) -> (x, y)``."""
  apply_fn: Callable[..., jax.Array]
  loss_fn: Callable[..., jax.Array]
  x_probe: jax.Array
  y_probe: jax.Array
  batch: Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def objective(task, dtype=jnp.float32) -> Objective:
  """The task's loss in float32; inputs in ``dtype`` (for bfloat16 params, a
  bfloat16 forward pass). Batch ``i`` is drawn from ``fold_in(key, i)``, so
  a run resumed at step i sees the batches of an uninterrupted one."""

  def apply_fn(params, x):
    return task.apply(params, {}, x)[0].astype(jnp.float32)

  def loss_fn(params, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        apply_fn(params, x), y))

  def batch(i):
    x, y = task.sample_batch(jax.random.fold_in(_BATCH_KEY, i))
    return x.astype(dtype), y

  return Objective(apply_fn, loss_fn, task.data.x_val[:PROBE].astype(dtype),
                   task.data.y_val[:PROBE], batch)


def make_step(task, tx, dtype=jnp.float32):
  """``step(params, opt_state, i) -> (params, opt_state, updates)``, jitted:
  a train step on batch ``i`` of ``objective(task, dtype)``."""
  apply_fn, loss_fn, x_probe, y_probe, batch = objective(task, dtype)

  @jax.jit
  def step(params, opt_state, i):
    x, y = batch(i)
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(
        grads, opt_state, params, loss=loss,
        **lmo.probe_inputs(opt_state, apply_fn, params, x_probe, y_probe))
    return optax.apply_updates(params, updates), opt_state, updates

  return step


def train(step, params, opt_state, start, stop):
  """Steps ``start..stop-1``: ``(params, opt_state, LR after each step)``."""
  lrs = []
  for i in range(start, stop):
    params, opt_state, _ = step(params, opt_state, i)
    lrs.append(np.asarray(lmo.current_lr(opt_state)))
  return params, opt_state, np.asarray(lrs)


def _checkpointer():
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp.StandardCheckpointer()


def save(path, params, opt_state):
  with _checkpointer() as checkpointer:
    checkpointer.save(path, {"params": params, "opt_state": opt_state})


def _resume(path, out):
  task = mnist1d_task()
  tx = generalist_tx()
  params = task.init(jax.random.PRNGKey(0)).params
  abstract = jax.eval_shape(lambda p: {"params": p, "opt_state": tx.init(p)},
                            params)
  with _checkpointer() as checkpointer:
    restored = checkpointer.restore(path, abstract)
  params, opt_state, lrs = train(make_step(task, tx), restored["params"],
                                 restored["opt_state"], RESUME_AT, NUM_STEPS)
  leaves = jax.tree.leaves((params, opt_state))
  np.savez(out, lrs=lrs, **{f"leaf_{i}": x for i, x in enumerate(leaves)})


# Kernels split over 'model' (the hidden units), the output bias replicated.
_SPECS = {"dense0": {"kernel": (None, "model"), "bias": ("model",)},
          "dense1": {"kernel": ("model", None), "bias": ()}}


def _sharded(out, num_steps=30):
  from jax.sharding import AxisType  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 4, jax.devices()
  task = mnist1d_task()
  tx = generalist_tx(num_steps)
  step = make_step(task, tx)
  params = task.init(jax.random.PRNGKey(0)).params
  result = {}

  def follows(state, params):
    """Per leaf of ``state`` with a params leaf's shape: same sharding?"""
    adam = lmo.find_state(state, optax.ScaleByAdamState)
    sharding = lambda x: getattr(x, "sharding", x)   # compiled: shardings
    # By partition spec: eval_shape's shardings are over an abstract mesh.
    spec = lambda x, ndim: tuple(sharding(x).spec) + (None,) * (
        ndim - len(sharding(x).spec))
    return [spec(s, p.ndim) == spec(p, p.ndim)
            for moments in (adam.mu, adam.nu)
            for s, p in zip(jax.tree.leaves(moments), jax.tree.leaves(params))]

  for axis_type in ("auto", "explicit"):
    mesh = jax.make_mesh((4,), ("model",), axis_types=(
        AxisType.Explicit if axis_type == "explicit" else AxisType.Auto,))
    shardings = jax.tree.map(
        lambda spec: NamedSharding(mesh, PartitionSpec(*spec)), _SPECS,
        is_leaf=lambda x: isinstance(x, tuple))
    sharded = jax.device_put(params, shardings)
    abstract = jax.tree.map(
        lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
        params, shardings)
    with (jax.set_mesh(mesh) if axis_type == "explicit"
          else contextlib.nullcontext()):
      if axis_type == "explicit":
        # Shardings are part of the types: jit and eval_shape keep them.
        result["explicit_jit_init_follows"] = follows(
            jax.jit(tx.init)(sharded), sharded)
        compiled = jax.jit(tx.init).lower(abstract).compile()
        result["explicit_compiled_init_follows"] = follows(
            compiled.output_shardings, abstract)
        result["explicit_eval_shape_follows"] = follows(
            jax.eval_shape(tx.init, abstract), abstract)
        continue   # the Flax MLP itself needs out_sharding= under them
      # Auto axes: an eager init follows the params (a jitted one decides
      # its outputs' shardings itself, as for any optax optimizer).
      state = tx.init(sharded)
      result["auto_init_follows"] = follows(state, sharded)
      trained, state, lrs = train(step, sharded, state, 0, num_steps)
      result["auto_trained_follows"] = follows(state, sharded)
      result["params_stay_sharded"] = [
          bool(a.sharding.is_equivalent_to(b.sharding, a.ndim))
          for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(sharded))]
      result["lrs_sharded"] = lrs.tolist()
      result["decisions"] = int(lmo.controller_readout(state).decisions)
  _, _, lrs = train(step, params, tx.init(params), 0, num_steps)
  result["lrs_single"] = lrs.tolist()
  with open(out, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  if sys.argv[1] == "sharded":
    _sharded(sys.argv[2])
  elif sys.argv[1] == "resume":
    _resume(sys.argv[2], sys.argv[3])
  else:
    raise SystemExit(f"unknown job {sys.argv[1]!r}; allowed: sharded, "
                     "resume")
