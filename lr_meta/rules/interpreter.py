"""Batched interpreter of NOS token programs (Bello et al. 2017, section 3.1).

A token program (int32 ``(num_groups, 5)``, see `lr_meta.rules.vocabulary`) is data
here, not code: `scale_by_program` builds an optax transform whose program may
be a traced array, so ONE compiled function serves every rule of the same
number of groups, and ``jax.vmap`` over programs (and learning rates, seeds,
initial parameters) trains a whole batch of candidate rules at once::

  def train(program, learning_rate, key):
    opt = interpreter.program_optimizer(program, learning_rate,
                                        decay_steps=num_steps)
    ...  # an ordinary jitted training loop (lax.scan) with `opt`
    return final_accuracy

  accuracies = jax.jit(jax.vmap(train))(programs, learning_rates, keys)

Each update evaluates all ``NUM_OPERANDS`` operands of every parameter leaf,
then per group picks the operands by index from the growing bank and applies
the unary/binary functions with `lax.switch` over the tables of
`lr_meta.rules.semantics` (the same functions `from_dsl` unrolls, so the
numbers are the same as `from_dsl` on each rule; under `vmap` the switch
becomes a select over all branches, which also keeps a NaN of an unused
branch out of the result). The state always tracks m, v and gamma.

Token values outside their range (see `programs.validate_program`) are
clamped into it rather than raising, since traced programs cannot raise;
validate concrete programs with `programs.validate_program`. Valid programs
never raise, but may produce inf/NaN (exp overflow, log 0, negative base **
fraction): `all_finite` detects it per rule.
"""

from typing import Optional

import chex
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import optax

from lr_meta.rules import decays
from lr_meta.rules import programs as programs_lib
from lr_meta.rules import semantics
from lr_meta.rules import vocabulary as voc

__all__ = (
    "ProgramState",
    "all_finite",
    "evaluate_program",
    "pad_programs",
    "program_optimizer",
    "scale_by_program",
)

ProgramState = semantics.RuleState


def _unary_branches():
  return [lambda x, key, fn=fn: fn(x, key) for fn in semantics.UNARY_FNS]


def _binary_branches(delta):
  return [lambda x, y, fn=fn: fn(x, y, delta) for fn in semantics.BINARY_FNS]


def evaluate_program(program: chex.Array, inputs: semantics.LeafInputs,
                     hp: semantics.Hyperparams) -> chex.Array:
  """Evaluates a (possibly traced) token program on one parameter leaf.

  Args:
    program: int array (num_groups, 5); num_groups must be static.
    inputs: the leaf's operand inputs; `w` must be given.
    hp: language constants.

  Returns:
    The rule's output `out` for this leaf (same shape and dtype as g).
  """
  program = jnp.asarray(program, jnp.int32)
  chex.assert_rank(program, 2)
  chex.assert_axis_dimension(program, 1, voc.GROUP_SIZE)
  num_groups = program.shape[0]
  g = inputs.g
  operands = [fn(inputs, hp).astype(g.dtype) for fn in semantics.OPERAND_FNS]
  bank = jnp.stack(operands + [jnp.zeros_like(g)] * num_groups)
  unary, binary = _unary_branches(), _binary_branches(hp.delta)
  out = g
  for group in range(num_groups):
    limit = voc.num_bank_entries(group)
    a1, a2 = (jnp.clip(program[group, i], 0, limit - 1) for i in (0, 1))
    u1, u2 = (jnp.clip(program[group, i], 0, voc.NUM_UNARY - 1)
              for i in (2, 3))
    b = jnp.clip(program[group, 4], 0, voc.NUM_BINARY - 1)
    after = num_groups - 1 - group
    x = lax.switch(u1, unary, bank[a1], semantics.unary_key(inputs.key, after, 0))
    y = lax.switch(u2, unary, bank[a2], semantics.unary_key(inputs.key, after, 1))
    out = lax.switch(b, binary, x, y).astype(g.dtype)
    bank = bank.at[voc.NUM_OPERANDS + group].set(out)
  return out


def scale_by_program(
    program: chex.Array,
    decay_steps,
    *,
    beta1=0.9,
    beta2=0.999,
    beta3=0.999,
    delta=1e-8,
    cd_periods=0.5,
    rd_periods=1.0,
    seed=0,
) -> optax.GradientTransformationExtraArgs:
  """Rescales updates by a token program's output (no learning rate).

  Args:
    program: int array (num_groups, 5), may be traced (e.g. vmapped).
    decay_steps: T of the ``ld``/``cd``/``rd`` operands, a whole number of
      steps (any program may use them, so it is required); may be traced.
    beta1: EMA decay of m_hat.
    beta2: EMA decay of v_hat.
    beta3: EMA decay of gamma_hat.
    delta: denominator offset of ``/``, ``adam`` and ``rmsprop``.
    cd_periods: n of ``cd``.
    rd_periods: n of ``rd``.
    seed: seed of the state's PRNG key, in [0, 2**32) (may be traced).

  Returns:
    An `optax.GradientTransformationExtraArgs` with `ProgramState`; `update`
    needs `params` (for the ``w`` operands).
  """
  decays.check_decay_steps(decay_steps)
  semantics.check_seed(seed)
  hp = semantics.Hyperparams(beta1=beta1, beta2=beta2, beta3=beta3,
                             delta=delta, decay_steps=decay_steps,
                             cd_periods=cd_periods, rd_periods=rd_periods)

  def init_fn(params):
    return semantics.init_rule_state(params, seed)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("scale_by_program needs params (the w operands): "
                       "call update(updates, state, params)")
    return semantics.rule_update(lambda x: evaluate_program(program, x, hp),
                                 updates, state, params, hp)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def program_optimizer(program: chex.Array,
                      learning_rate: optax.ScalarOrSchedule,
                      decay_steps, **hyperparams
                      ) -> optax.GradientTransformationExtraArgs:
  """`scale_by_program` then ``-learning_rate`` (the interpreter's `from_dsl`).

  `learning_rate` may be a traced scalar, so ``vmap`` over rules x learning
  rates compiles once.
  """
  return optax.chain(scale_by_program(program, decay_steps, **hyperparams),
                     optax.scale_by_learning_rate(learning_rate))


def pad_programs(programs, num_groups: Optional[int] = None) -> np.ndarray:
  """Stacks programs of different lengths into one int32 (B, G, 5) batch.

  Shorter programs get dead keep groups ``(g, g, id, id, keep)`` prepended and
  their group-output ids shifted, which changes neither the rule (the last
  group is still the output) nor its random draws (see `semantics.unary_key`).

  Args:
    programs: concrete token programs (validated here).
    num_groups: G; defaults to the longest program.

  Returns:
    int32 array (len(programs), G, 5).
  """
  programs = [programs_lib.validate_program(p) for p in programs]
  longest = max(len(p) for p in programs)
  num_groups = longest if num_groups is None else num_groups
  if num_groups < longest:
    raise ValueError(f"num_groups={num_groups} < the longest program "
                     f"({longest} groups)")
  dead = np.array([voc.OP["g"], voc.OP["g"], voc.UN["id"], voc.UN["id"],
                   voc.BIN["keep"]], np.int32)
  out = []
  for program in programs:
    pad = num_groups - len(program)
    shifted = program.copy()
    operands = shifted[:, :2]
    operands[operands >= voc.NUM_OPERANDS] += pad
    out.append(np.concatenate([np.tile(dead, (pad, 1)), shifted]))
  return np.stack(out).astype(np.int32)


def all_finite(tree) -> chex.Array:
  """True when every leaf of `tree` is finite (a bool scalar, jit-able)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
