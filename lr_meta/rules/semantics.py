"""What every token of the NOS rule language computes (Bello et al. 2017).

Paper section 4.1. The tables `OPERAND_FNS`, `UNARY_FNS` and `BINARY_FNS`
(indexed by the token ids of `lr_meta.rules.vocabulary`) are the ONE definition
of the language's semantics: `lr_meta.rules.compiler` unrolls them for a
concrete rule and `lr_meta.rules.interpreter` switches over them for traced
programs, so both give the same numbers. `rule_update` is the optax update
step both share (moments, keys, per-leaf evaluation).

Everything here works per parameter leaf: an operand function maps the
leaf's `LeafInputs` and the language constants `Hyperparams` to an array
shaped like the gradient.
"""

import math
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta.rules import decays
from lr_meta.rules.vocabulary import BIN
from lr_meta.rules.vocabulary import CLIP_BOUNDS
from lr_meta.rules.vocabulary import DROP_RATES
from lr_meta.rules.vocabulary import DSLError
from lr_meta.rules.vocabulary import EPS_VARIANCE
from lr_meta.rules.vocabulary import NUM_BINARY
from lr_meta.rules.vocabulary import NUM_OPERANDS
from lr_meta.rules.vocabulary import NUM_UNARY
from lr_meta.rules.vocabulary import OP
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_GAMMA
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_M
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_V
from lr_meta.rules.vocabulary import UN
from lr_meta.rules.vocabulary import W_COEFFICIENTS

__all__ = (
    "ALL_TRACKED",
    "BINARY_FNS",
    "Hyperparams",
    "LeafInputs",
    "OPERAND_FNS",
    "RuleState",
    "Tracked",
    "UNARY_FNS",
    "check_seed",
    "init_rule_state",
    "leaf_keys",
    "rule_update",
    "tracked_moments",
    "unary_key",
)


class Hyperparams(NamedTuple):
  """Constants of the language (paper section 4.2 defaults).

  Attributes:
    beta1: EMA decay of g (m_hat).
    beta2: EMA decay of g**2 (v_hat).
    beta3: EMA decay of g**3 (gamma_hat).
    delta: added to the denominator of ``/``, ``adam`` and ``rmsprop``.
    decay_steps: T of the decay operands ``ld``, ``cd``, ``rd``.
    cd_periods: n of ``cd`` (0.5 is cosine decay without restarts).
    rd_periods: n of ``rd``.
  """
  beta1: Any = 0.9
  beta2: Any = 0.999
  beta3: Any = 0.999
  delta: Any = 1e-8
  decay_steps: Any = None
  cd_periods: Any = 0.5
  rd_periods: Any = 1.0


class LeafInputs(NamedTuple):
  """What the operands of one parameter leaf are computed from.

  Attributes:
    g: the gradient leaf.
    m: bias-corrected EMA of g (None when not tracked).
    v: bias-corrected EMA of g**2 (None when not tracked).
    gamma: bias-corrected EMA of g**3 (None when not tracked).
    w: the parameter leaf (None when not given).
    t: step count before this update (0 on the first update).
    key: PRNG key of this leaf for this step (see `leaf_keys`).
  """
  g: chex.Array
  m: Optional[chex.Array]
  v: Optional[chex.Array]
  gamma: Optional[chex.Array]
  w: Optional[chex.Array]
  t: chex.Array
  key: chex.PRNGKey


# Key streams inside one leaf's key: 0 -> eps, 1 -> eps_t, 2 + 2 j + s -> the
# dropout of slot s (0 = u1, 1 = u2) of the group j places before the last.
_EPS_STREAM, _EPS_T_STREAM, _FIRST_DROP_STREAM = 0, 1, 2


def leaf_keys(step_key, num_leaves):
  """One key per parameter leaf (tree-flatten order) for this step."""
  return [jax.random.fold_in(step_key, i) for i in range(num_leaves)]


def unary_key(leaf_key, groups_after, slot):
  """Key of the dropout in slot `slot` (0: u1, 1: u2) of a group.

  Groups are counted from the output: `groups_after` is the number of groups
  after this one (0 for the last group), so prepending dead groups to batch
  programs of different lengths (`interpreter.pad_programs`) leaves every
  draw unchanged.
  """
  return jax.random.fold_in(leaf_key,
                            _FIRST_DROP_STREAM + 2 * groups_after + slot)


def _scalar(x, like):
  return jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape)


def _divide(x, y, delta):
  return x / (y + delta)


def _rms_denominator(inputs):
  return jnp.sqrt(jnp.abs(inputs.v))


def _decay_steps(hp):
  if hp.decay_steps is None:
    raise DSLError("the decay operands ld, cd, rd need decay_steps (T); "
                   "pass decay_steps=<total training steps>")
  return hp.decay_steps


def _w(inputs):
  if inputs.w is None:
    raise DSLError("the operands 1e-4 * w .. 1e-1 * w need params: call "
                   "update(updates, state, params)")
  return inputs.w


def _operand_fns():
  """Operand functions `(inputs, hp) -> array shaped like g`, by id."""
  def w_times(c):
    return lambda x, hp: c * _w(x)
  fns = {
      OP["g"]: lambda x, hp: x.g,
      OP["g^2"]: lambda x, hp: x.g ** 2,
      OP["g^3"]: lambda x, hp: x.g ** 3,
      OP["m"]: lambda x, hp: x.m,
      OP["v"]: lambda x, hp: x.v,
      OP["gamma"]: lambda x, hp: x.gamma,
      OP["sign(g)"]: lambda x, hp: jnp.sign(x.g),
      OP["sign(m)"]: lambda x, hp: jnp.sign(x.m),
      OP["1"]: lambda x, hp: jnp.ones_like(x.g),
      OP["2"]: lambda x, hp: _scalar(2.0, x.g),
      OP["eps"]: lambda x, hp: math.sqrt(EPS_VARIANCE) * jax.random.normal(
          jax.random.fold_in(x.key, _EPS_STREAM), x.g.shape, x.g.dtype),
      OP["adam"]: lambda x, hp: _divide(x.m, _rms_denominator(x), hp.delta),
      OP["rmsprop"]: lambda x, hp: _divide(x.g, _rms_denominator(x),
                                           hp.delta),
      OP["ld"]: lambda x, hp: _scalar(
          decays.linear_decay(x.t, _decay_steps(hp)), x.g),
      OP["cd"]: lambda x, hp: _scalar(
          decays.cosine_decay(x.t, _decay_steps(hp), hp.cd_periods), x.g),
      OP["rd"]: lambda x, hp: _scalar(
          decays.restart_decay(x.t, _decay_steps(hp), hp.rd_periods), x.g),
      OP["eps_t"]: lambda x, hp: (
          decays.annealed_noise_std(x.t).astype(x.g.dtype)
          * jax.random.normal(jax.random.fold_in(x.key, _EPS_T_STREAM),
                              x.g.shape, x.g.dtype)),
  }
  fns.update({i: w_times(c) for i, c in W_COEFFICIENTS.items()})
  return tuple(fns[i] for i in range(NUM_OPERANDS))


def _clip(bound):
  return lambda x, key: jnp.clip(x, -bound, bound)


def _drop(rate):
  # The paper's drop(x, p) "sets its inputs to 0 with probability p"; no
  # 1 / (1 - p) rescaling.
  return lambda x, key: jnp.where(
      jax.random.bernoulli(key, 1.0 - rate, x.shape), x, jnp.zeros_like(x))


def _unary_fns():
  """Unary functions `(x, key) -> array`, by id."""
  fns = {
      UN["id"]: lambda x, key: x,
      UN["neg"]: lambda x, key: -x,
      UN["exp"]: lambda x, key: jnp.exp(x),
      UN["log"]: lambda x, key: jnp.log(jnp.abs(x)),
      UN["sqrt"]: lambda x, key: jnp.sqrt(jnp.abs(x)),
      UN["sign"]: lambda x, key: jnp.sign(x),
  }
  fns.update({i: _clip(b) for i, b in CLIP_BOUNDS.items()})
  fns.update({i: _drop(p) for i, p in DROP_RATES.items()})
  return tuple(fns[i] for i in range(NUM_UNARY))


def _binary_fns():
  """Binary functions `(x, y, delta) -> array`, by id."""
  fns = {
      BIN["add"]: lambda x, y, delta: x + y,
      BIN["sub"]: lambda x, y, delta: x - y,
      BIN["mul"]: lambda x, y, delta: x * y,
      BIN["div"]: _divide,
      BIN["pow"]: lambda x, y, delta: jnp.power(x, y),
      BIN["keep"]: lambda x, y, delta: x,
  }
  return tuple(fns[i] for i in range(NUM_BINARY))


OPERAND_FNS = _operand_fns()
UNARY_FNS = _unary_fns()
BINARY_FNS = _binary_fns()


# ---------------------------------------------------------------------------
# One update: state and step shared by the compiler and the interpreter.
# ---------------------------------------------------------------------------


class RuleState(NamedTuple):
  """State of a compiled update rule.

  Attributes:
    count: number of updates so far (int32); `t` of the decay operands.
    key: raw PRNG key (uint32[2]) of the random operands and drop(); split
      once per update.
    m: EMA of g (not bias-corrected), or None when the rule does not use it.
    v: EMA of g**2, or None.
    gamma: EMA of g**3, or None.
  """
  count: chex.Array
  key: chex.PRNGKey
  m: Optional[optax.Updates]
  v: Optional[optax.Updates]
  gamma: Optional[optax.Updates]


class Tracked(NamedTuple):
  """Which moments (EMAs of g, g**2, g**3) a rule's state keeps."""
  m: bool
  v: bool
  gamma: bool


def tracked_moments(operand_ids) -> Tracked:
  """The moments that the operands `operand_ids` read."""
  ids = set(int(i) for i in operand_ids)
  return Tracked(m=bool(ids & OPERANDS_NEEDING_M),
                 v=bool(ids & OPERANDS_NEEDING_V),
                 gamma=bool(ids & OPERANDS_NEEDING_GAMMA))


ALL_TRACKED = Tracked(True, True, True)


def check_seed(seed):
  """Returns `seed` if it is an integer in [0, 2**32) (or traced).

  `jax.random.PRNGKey` folds other integers onto this range without a word
  (-1 and 2**32 - 1 give the same key), so they are refused.

  Raises:
    ValueError: naming the seed and the allowed range.
  """
  if isinstance(seed, jax.core.Tracer):
    return seed
  dtype = getattr(seed, "dtype", None)  # numpy / jax integer scalars
  integer = ((isinstance(seed, int) and not isinstance(seed, bool))
             or (dtype is not None and np.issubdtype(dtype, np.integer)
                 and np.ndim(seed) == 0))
  if not integer or not 0 <= int(seed) < 2 ** 32:
    raise ValueError(f"seed={seed!r}; allowed: an integer in [0, 2**32)")
  return seed


def init_rule_state(params, seed, tracked: Tracked = ALL_TRACKED):
  """Zero EMAs for the tracked moments, count 0, key from `seed`."""
  zeros = lambda on: optax.tree.zeros_like(params) if on else None
  return RuleState(count=jnp.zeros([], jnp.int32),
                   key=jax.random.PRNGKey(seed),
                   m=zeros(tracked.m), v=zeros(tracked.v),
                   gamma=zeros(tracked.gamma))


def rule_update(evaluate_leaf: Callable[[LeafInputs], chex.Array],
                updates, state: RuleState, params, hp: Hyperparams):
  """One update of a rule given as a per-leaf evaluation function.

  Updates the tracked EMAs (optax's `update_moment` and `bias_correction`,
  so ``m / sqrt(v)`` matches `optax.adam` exactly), splits the key, and maps
  `evaluate_leaf` over the leaves with each leaf's inputs.

  Returns:
    (direction, new_state); the direction is the rule's `out` (callers scale
    it by -lr).
  """
  count_inc = optax.safe_increment(state.count)

  def moment(ema, beta, order):
    if ema is None:
      return None, None
    new = optax.tree.update_moment(updates, ema, beta, order)
    return new, optax.tree.bias_correction(new, beta, count_inc)

  m, m_hat = moment(state.m, hp.beta1, 1)
  v, v_hat = moment(state.v, hp.beta2, 2)
  gamma, gamma_hat = moment(state.gamma, hp.beta3, 3)
  key, step_key = jax.random.split(state.key)

  g_leaves, treedef = jax.tree.flatten(updates)
  def leaves(tree):
    return ([None] * len(g_leaves) if tree is None
            else treedef.flatten_up_to(tree))
  keys = leaf_keys(step_key, len(g_leaves))
  out = [
      evaluate_leaf(LeafInputs(g=g, m=mi, v=vi, gamma=gi, w=wi,
                               t=state.count, key=k))
      for g, mi, vi, gi, wi, k in zip(g_leaves, leaves(m_hat), leaves(v_hat),
                                      leaves(gamma_hat), leaves(params), keys)
  ]
  new_state = RuleState(count=count_inc, key=key, m=m, v=v, gamma=gamma)
  return jax.tree.unflatten(treedef, out), new_state
