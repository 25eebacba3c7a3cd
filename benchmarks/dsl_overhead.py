r"""Overhead of the NOS language: from_dsl vs optax.adam, interpreter throughput.

  PYTHONPATH=. python benchmarks/dsl_overhead.py

1. Step time of ``from_dsl("m / sqrt(v)")`` against ``optax.adam(eps=1e-8)``
   on a ~1M-parameter pytree (jitted update + apply, donated state; median of
   --repeats timings of --inner steps run in one lax.fori_loop).
2. Rules per second of the batched interpreter: B random 3-group programs,
   vmapped, each doing one update of a --rule_params-parameter pytree.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lr_meta.optax as lmo
from lr_meta import nos
from lr_meta.rules import interpreter
from lr_meta.rules import vocabulary as voc

_REPEATS = flags.DEFINE_integer("repeats", 7, "Timing repeats (median).")
_INNER = flags.DEFINE_integer("inner", 50, "Steps per timing.")
_BATCH = flags.DEFINE_integer("batch", 64, "Rules per interpreter call.")
_RULE_PARAMS = flags.DEFINE_integer("rule_params", 10_000,
                                    "Parameters per rule (interpreter).")


def pytree(num_params, key):
  """An MLP-like pytree of ~num_params float32 parameters."""
  width = int(np.sqrt(num_params / 2))
  k = jax.random.split(key, 4)
  return {"dense0": {"kernel": jax.random.normal(k[0], (width, width)),
                     "bias": jnp.zeros(width)},
          "dense1": {"kernel": jax.random.normal(k[1], (width, width)),
                     "bias": jnp.zeros(width)}}


def time_fn(fn, *args):
  out = fn(*args)
  jax.block_until_ready(out)
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def step_time(opt, params):
  grads = jax.tree.map(lambda x: 0.01 * x, params)

  @jax.jit
  def steps(params, state):
    def body(i, carry):
      p, s = carry
      g = jax.tree.map(lambda x: x * (1.0 + 1e-3 * i), grads)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s
    return jax.lax.fori_loop(0, _INNER.value, body, (params, state))

  return time_fn(steps, params, opt.init(params)) / _INNER.value


def main(argv):
  del argv
  params = pytree(1_000_000, jax.random.PRNGKey(0))
  size = sum(x.size for x in jax.tree.leaves(params))
  adam = step_time(optax.adam(1e-3, eps=1e-8), params)
  rule = step_time(lmo.from_dsl("m / sqrt(v)", 1e-3), params)
  power = step_time(lmo.power_sign(1e-3), params)
  dsl_power = step_time(lmo.from_dsl("exp(sign(g) * sign(m)) * g", 1e-3),
                        params)
  interp = step_time(interpreter.program_optimizer(
      jnp.asarray(nos.parse("m / sqrt(v)")), 1e-3, 1000), params)
  print(f"params: {size}")
  print(f"optax.adam            {adam * 1e3:8.3f} ms/step")
  print(f"from_dsl(m / sqrt(v)) {rule * 1e3:8.3f} ms/step  ratio "
        f"{rule / adam:.3f}")
  print(f"power_sign            {power * 1e3:8.3f} ms/step")
  print(f"from_dsl(PowerSign)   {dsl_power * 1e3:8.3f} ms/step  ratio "
        f"{dsl_power / power:.3f}")
  print(f"interpreter(m/sqrt(v)) {interp * 1e3:8.3f} ms/step  ratio "
        f"{interp / adam:.3f} (one rule, not batched)")

  # Batched interpreter: rules per second.
  rng = np.random.default_rng(0)
  programs = []
  for _ in range(_BATCH.value):
    groups = []
    for i in range(3):
      bank = voc.num_bank_entries(i)
      groups.append([rng.integers(bank), rng.integers(bank),
                     rng.integers(nos.NUM_UNARY), rng.integers(nos.NUM_UNARY),
                     rng.integers(nos.NUM_BINARY)])
    programs.append(groups)
  programs = jnp.asarray(np.asarray(programs, np.int32))
  small = pytree(_RULE_PARAMS.value, jax.random.PRNGKey(1))
  small_size = sum(x.size for x in jax.tree.leaves(small))

  @jax.jit
  def one_update_per_rule(programs, params):
    def single(program):
      opt = interpreter.program_optimizer(program, 1e-3, 1000)
      updates, _ = opt.update(params, opt.init(params), params)
      return interpreter.all_finite(updates)
    return jax.vmap(single)(programs)

  seconds = time_fn(one_update_per_rule, programs, small)
  print(f"interpreter: {_BATCH.value} rules x {small_size:,} "
        f"params, one update each: {seconds * 1e3:.2f} ms -> "
        f"{_BATCH.value / seconds:,.0f} rule-updates/s "
        f"({_BATCH.value * small_size / seconds:,.3g} param-updates/s)")


if __name__ == "__main__":
  app.run(main)
