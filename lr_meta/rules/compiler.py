"""Compiles a NOS update rule to an optax transform (Bello et al. 2017).

``from_dsl(rule, learning_rate)`` turns a readable rule (see
`lr_meta.rules.syntax` for the grammar, `lr_meta.rules.vocabulary` for the
spellings) or a token program into an `optax.GradientTransformationExtraArgs`
whose update is plain jnp code: the program is unrolled in Python over the
one semantics table of `lr_meta.rules.semantics`, computing only the operands
and functions the rule names. `lr_meta.rules.interpreter` evaluates the same
tables for traced programs and gives the same numbers.

NaN and inf: valid programs never raise, but ``exp`` overflows, ``log(0)`` is
-inf and ``x ^ y`` of a negative base is NaN. Check updates with
``jnp.isfinite`` (the interpreter also returns a per-rule finiteness flag).
"""

from typing import Optional

import chex
import jax
import numpy as np
import optax

from lr_meta.rules import decays
from lr_meta.rules import semantics
from lr_meta.rules import programs
from lr_meta.rules.semantics import BINARY_FNS
from lr_meta.rules.semantics import Hyperparams
from lr_meta.rules.semantics import LeafInputs
from lr_meta.rules.semantics import OPERAND_FNS
from lr_meta.rules.semantics import UNARY_FNS
from lr_meta.rules.semantics import unary_key
from lr_meta.rules.vocabulary import DSLError
from lr_meta.rules.vocabulary import NUM_OPERANDS
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_DECAY_STEPS
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_W

__all__ = (
    "evaluate_program_static",
    "from_dsl",
    "scale_by_rule",
)


def _check_learning_rate(learning_rate):
  numeric = (isinstance(learning_rate, (int, float, np.number, np.ndarray,
                                        jax.Array))
             and not isinstance(learning_rate, (bool, np.bool_)))
  if not (numeric or callable(learning_rate)):
    raise ValueError(f"learning_rate={learning_rate!r}; allowed: a number "
                     "or an optax schedule (parameters move by "
                     "-learning_rate * out)")


def _describe(program) -> str:
  """A valid program as error messages name it."""
  try:
    return repr(programs.format_program(program))
  except DSLError:  # too large to write out
    return f"token program of {len(program)} groups"


def evaluate_program_static(program: np.ndarray, inputs: LeafInputs,
                            hp: Hyperparams) -> chex.Array:
  """Evaluates a concrete program on one leaf as plain jnp code.

  The program is unrolled in Python: only the operands and functions it
  names are computed, so the compiled XLA is what one would write by hand.
  """
  operand_cache = {}

  def operand(i):
    if i >= NUM_OPERANDS:
      return outputs[i - NUM_OPERANDS]
    if i not in operand_cache:
      operand_cache[i] = OPERAND_FNS[i](inputs, hp)
    return operand_cache[i]

  outputs = []
  for group, (a1, a2, u1, u2, b) in enumerate(program.tolist()):
    after = len(program) - 1 - group
    x = UNARY_FNS[u1](operand(a1), unary_key(inputs.key, after, 0))
    y = UNARY_FNS[u2](operand(a2), unary_key(inputs.key, after, 1))
    outputs.append(BINARY_FNS[b](x, y, hp.delta).astype(inputs.g.dtype))
  return outputs[-1]


def scale_by_rule(
    rule,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float = 0.999,
    delta: float = 1e-8,
    decay_steps: Optional[float] = None,
    cd_periods: float = 0.5,
    rd_periods: float = 1.0,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """Rescales updates by a NOS update rule's output `out` (no learning rate).

  Bello et al. 2017, eq. (section 3.1) ``dw = lr * b(u1(op1), u2(op2))``:
  this transform returns ``b(...)``; `from_dsl` adds ``-lr``.

  Args:
    rule: readable rule (str) or token program (int array (num_groups, 5)).
    beta1: EMA decay of m_hat.
    beta2: EMA decay of v_hat.
    beta3: EMA decay of gamma_hat.
    delta: denominator offset of ``/``, ``adam`` and ``rmsprop``.
    decay_steps: T of the ``ld``/``cd``/``rd`` operands, a whole number of
      steps (required when the rule uses them).
    cd_periods: n of ``cd``.
    rd_periods: n of ``rd``.
    seed: seed of the PRNG key in the state (random operands and drop()),
      an integer in [0, 2**32).

  Returns:
    An `optax.GradientTransformationExtraArgs`; `update` needs `params` when
    the rule uses ``w``.

  Raises:
    DSLError: for a malformed or oversized rule, or decay operands without
      decay_steps.
    ValueError: for a `decay_steps` that is not a whole number >= 1, or a
      seed outside [0, 2**32).
  """
  program = programs.to_program(rule)
  operands_used = {int(i) for i in program[:, :2].ravel() if i < NUM_OPERANDS}
  if operands_used & OPERANDS_NEEDING_DECAY_STEPS and decay_steps is None:
    raise DSLError(f"rule {_describe(program)} uses the decay operands "
                   "ld/cd/rd: pass decay_steps=<total steps T>")
  if decay_steps is not None:
    decays.check_decay_steps(decay_steps)
  semantics.check_seed(seed)
  tracked = semantics.tracked_moments(operands_used)
  hp = Hyperparams(beta1=beta1, beta2=beta2, beta3=beta3, delta=delta,
                   decay_steps=decay_steps, cd_periods=cd_periods,
                   rd_periods=rd_periods)

  def init_fn(params):
    return semantics.init_rule_state(params, seed, tracked)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if operands_used & OPERANDS_NEEDING_W and params is None:
      raise DSLError(f"rule {_describe(program)} uses w: call "
                     "update(updates, state, params)")
    return semantics.rule_update(
        lambda inputs: evaluate_program_static(program, inputs, hp),
        updates, state, params, hp)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def from_dsl(
    rule,
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float = 0.999,
    delta: float = 1e-8,
    decay_steps: Optional[float] = None,
    cd_periods: float = 0.5,
    rd_periods: float = 1.0,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """Compiles a NOS update rule to an optax optimizer.

  Example::

    opt = from_dsl("exp(sign(g) * sign(m)) * g", 0.1)   # == power_sign(0.1)
    opt = from_dsl("m / sqrt(v)", 1e-3)                  # == optax.adam(1e-3, eps=1e-8)

  Args:
    rule: readable rule (str) or token program (int array (num_groups, 5)).
    learning_rate: float or optax schedule; parameters move by
      ``-learning_rate * out``.
    beta1, beta2, beta3, delta, decay_steps, cd_periods, rd_periods, seed:
      the language's constants, see `scale_by_rule` (explicit keywords, so
      `optax.inject_hyperparams(from_dsl)` can inject any of them).

  Returns:
    An `optax.GradientTransformationExtraArgs` (ignores unknown extra args).

  Raises:
    DSLError: for a malformed rule (naming position, token and allowed names).
    ValueError: for a missing or non-numeric learning rate (optax reads
      ``None`` as "no scaling", which would step UP the rule's direction),
      and for a bad `decay_steps` or `seed`.
  """
  _check_learning_rate(learning_rate)
  return optax.chain(
      scale_by_rule(rule, beta1=beta1, beta2=beta2, beta3=beta3, delta=delta,
                    decay_steps=decay_steps, cd_periods=cd_periods,
                    rd_periods=rd_periods, seed=seed),
      optax.scale_by_learning_rate(learning_rate))
