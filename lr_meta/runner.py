"""Execution strategies for long loops of jitted work.

A training run (or an agent's rollout) is a loop of identical bodies. How the
loop is executed is a choice made per model and backend, by measurement
(docs/DESIGN.md; BUILD_NOTES.md "Execution strategies"):

* ``'scan'``: the whole loop is one ``lax.scan`` inside one ``jit``. Fastest for
  MLPs on CPU and the usual choice on GPU/TPU.
* ``'chunk'``: a short Python loop over ``jax.jit(body)`` where the body (one
  controller decision: K inner steps) is unrolled, so no XLA ``while`` loop is
  left. On XLA:CPU convolutions inside a ``while`` loop run 2.5-5x slower than
  the same convolutions in a top-level computation (jax-ml/jax issue 12868),
  so conv nets on CPU use this.
* ``'loop'``: a Python loop over a jitted single inner step: the reference.

At the level of ``repeat`` (a loop of opaque bodies) ``'chunk'`` and ``'loop'``
are the same thing; ``inner_loop`` is where they differ. Every strategy gives
the same numbers for the same inputs.
"""

import collections
import contextlib
from typing import Any, Callable, Iterator, Tuple

import jax
import jax.numpy as jnp

__all__ = [
    "STRATEGIES", "Body", "Carry", "check_strategy", "count_compiles",
    "default_batch_mode", "default_strategy", "inner_loop", "repeat",
]

STRATEGIES = ("scan", "chunk", "loop")

Carry = Any
Body = Callable[[Carry, jax.Array], Tuple[Carry, Any]]


def check_strategy(strategy: str) -> str:
  if strategy not in STRATEGIES:
    raise ValueError(
        f"Unknown execution strategy {strategy!r}; allowed: {STRATEGIES}.")
  return strategy


def default_strategy(model_name: str, backend: str | None = None) -> str:
  """The measured default: conv nets on CPU run in chunks, the rest scan.

  See BUILD_NOTES.md "Execution strategies" for the measurements.
  """
  backend = backend or jax.default_backend()
  conv_models = ("lenet5", "small_cnn", "nos_convnet", "resnet18",
                 "wide_resnet", "xu2019_cnn", "resnet_norm")
  if backend == "cpu" and model_name in conv_models:
    return "chunk"
  return "scan"


def default_batch_mode(model_name: str, backend: str | None = None) -> str:
  """Measured default for many runs: ``sequential`` on CPU, ``vmap`` elsewhere.

  On XLA:CPU (2 cores, BUILD_NOTES.md "Execution strategies") 8 vmapped runs
  were slower per run-step than the same 8 runs one after another for both
  models: LeNet-5 10.1 vs 28.2 steps/s, MLP 643-1379 vs 891-1459 steps/s. A
  vmapped batch only pays off where the batch dimension finds idle parallel
  hardware (GPU/TPU). ``model_name`` is kept for backends where the answer
  differs by model.
  """
  del model_name
  backend = backend or jax.default_backend()
  return "sequential" if backend == "cpu" else "vmap"


def _scan(body: Body, carry: Carry, length: int):
  return jax.lax.scan(body, carry, jnp.arange(length))


_jit_scan = jax.jit(_scan, static_argnums=(0, 2))


def repeat(body: Body, carry: Carry, length: int, strategy: str,
           jitted_body: Callable | None = None) -> Tuple[Carry, Any]:
  """Runs ``carry, out = body(carry, i)`` for ``i in range(length)``.

  Args:
    body: a pure function ``(carry, i) -> (carry, out)``; ``i`` is an int32
      scalar array in both strategies so that the body traces identically.
    carry: the initial loop carry (any pytree of arrays).
    length: number of iterations (a Python int).
    strategy: ``'scan'``, or ``'chunk'``/``'loop'`` for a Python loop over the
      jitted body (see module docstring).
    jitted_body: optional pre-jitted ``body`` for ``'loop'``; pass one that is
      cached across calls (e.g. a module-level ``jax.jit``) so repeated calls
      do not re-trace.

  Returns:
    ``(final_carry, outs)`` where ``outs`` stacks each iteration's output along
    a new leading axis, exactly as ``lax.scan`` does.
  """
  check_strategy(strategy)
  if length < 0:
    raise ValueError(f"length must be >= 0, got {length}.")
  if strategy == "scan":
    return _jit_scan(body, carry, length)
  step = jitted_body if jitted_body is not None else jax.jit(body)
  outs = []
  for i in range(length):
    carry, out = step(carry, jnp.asarray(i, jnp.int32))
    outs.append(out)
  if not outs:
    _, out_shape = jax.eval_shape(body, carry, jnp.asarray(0, jnp.int32))
    stacked = jax.tree.map(lambda s: jnp.zeros((0,) + s.shape, s.dtype),
                           out_shape)
    return carry, stacked
  return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


def inner_loop(step: Body, carry: Carry, xs: Any, unroll: bool):
  """``lax.scan(step, carry, xs)``, or the same loop unrolled at trace time.

  Used *inside* a jitted body; ``unroll=True`` (the ``'chunk'`` strategy)
  avoids an XLA while loop, at the cost of compile time linear in the length.
  """
  if not unroll:
    return jax.lax.scan(step, carry, xs)
  length = jax.tree.leaves(xs)[0].shape[0]
  outs = []
  for i in range(length):
    carry, out = step(carry, jax.tree.map(lambda x, i=i: x[i], xs))
    outs.append(out)
  return carry, jax.tree.map(lambda *o: jnp.stack(o), *outs)


# The event JAX records around every XLA compilation (jax._src.dispatch
# BACKEND_COMPILE_EVENT); its ``fun_name`` names the jitted function.
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles() -> Iterator[collections.Counter]:
  """Counts the XLA compilations inside the block, by function name.

  Usage::

    with runner.count_compiles() as compiles:
      ...
    compiles["jit(_episodes_scan)"]   # programs compiled for that function

  A ``jax.monitoring`` listener on the backend-compile event: a cache hit
  (same function, static arguments and shapes) does not count; eager
  operations count under their primitive's name.
  """
  counts = collections.Counter()

  def listener(event: str, duration: float, **kwargs) -> None:
    del duration
    if event == _BACKEND_COMPILE_EVENT:
      counts[str(kwargs.get("fun_name", "?"))] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
