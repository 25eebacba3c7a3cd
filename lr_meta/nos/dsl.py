"""The Neural Optimizer Search update-rule language (Bello et al. 2017).

Paper sections 3.1 (the language), 4.1 (the vocabulary) and 5 (the rules it
found). A rule has two forms:

* a **token program**: int32 array of shape ``(num_groups, 5)``; row ``i`` is
  ``(op1, op2, u1, u2, b)`` and computes ``o_i = b(u1(bank[op1]),
  u2(bank[op2]))``. The operand bank starts as the ``NUM_OPERANDS`` operands of
  ``OPERANDS`` (ids ``0 .. NUM_OPERANDS-1``) and grows by one entry per group:
  ``o_i`` gets id ``NUM_OPERANDS + i``, so group ``i`` may use operand ids
  ``< NUM_OPERANDS + i``. The last group's output ``out`` is the update
  direction: parameters move by ``-lr * out`` (the paper's ``dw = lr * out``
  with optax's descent sign, so every compiled rule is a drop-in descent
  transform). This is what the search controller emits (one softmax per
  position: ``NUM_OPERANDS + i`` operand choices in group ``i``,
  ``NUM_UNARY`` unary and ``NUM_BINARY`` binary choices) and what
  `lr_meta.nos.interpreter` evaluates in batches.
* a **readable expression** that people write, e.g.
  ``exp(sign(g) * sign(m)) * g`` (PowerSign), ``(1 + sign(g) * sign(m)) * g``
  (AddSign), ``m / sqrt(v)`` (Adam with eps = delta = 1e-8),
  ``drop(m, 0.3) * exp(1e-3 * w)``. `parse` turns it into a token program,
  `format_program` turns a program back into the canonical expression.

Spellings (every name the parser accepts; the first is the canonical one that
`format_program` writes):

==== ==================== ===================== ===========================================
kind id  spelling             aliases               meaning (per element)
==== ==================== ===================== ===========================================
op   0   ``g``                                      gradient
op   1   ``g^2``              ``g2``                g**2
op   2   ``g^3``              ``g3``                g**3
op   3   ``m``                ``m_hat``             bias-corrected EMA of g, beta1 = 0.9
op   4   ``v``                ``v_hat``             bias-corrected EMA of g**2, beta2 = 0.999
op   5   ``gamma``            ``gamma_hat``         bias-corrected EMA of g**3, beta3 = 0.999
op   6   ``sign(g)``          ``sign_g``            sign of g
op   7   ``sign(m)``          ``sign_m``            sign of m_hat
op   8   ``1``                                      constant 1
op   9   ``2``                                      constant 2
op   10  ``eps``              ``noise``             eps ~ N(0, 0.01): variance 0.01 (std 0.1),
                                                    a fresh draw per element and step
op   11  ``1e-4 * w``         ``0.0001 * w``        1e-4 times the parameter
op   12  ``1e-3 * w``         ``0.001 * w``         1e-3 times the parameter
op   13  ``1e-2 * w``         ``0.01 * w``          1e-2 times the parameter
op   14  ``1e-1 * w``         ``0.1 * w``           1e-1 times the parameter
op   15  ``adam``             ``Adam``              m_hat / (sqrt(v_hat) + delta)
op   16  ``rmsprop``          ``RMSProp``           g / (sqrt(v_hat) + delta)
op   17  ``ld``                                     linear decay 1 - min(t, T)/T
op   18  ``cd``               ``cd_n``              cyclical decay 0.5(1 + cos(2 pi n min(t,T)/T)),
                                                    n = hyperparameter cd_periods (0.5)
op   19  ``rd``               ``rd_n``              restart decay 0.5(1 + cos(pi ((t n) % T)/T)),
                                                    n = hyperparameter rd_periods (1)
op   20  ``eps_t``            ``annealed_noise``    eps_t ~ N(0, 1/(1+t)^0.55) (variance)
un   0   ``x`` (no wrapper)   ``id(x)``             identity
un   1   ``-x``               ``neg(x)``            negation
un   2   ``exp(x)``                                 e**x (may overflow to inf)
un   3   ``log(x)``           ``log_abs(x)``        log|x| (-inf at 0)
un   4   ``sqrt(x)``          ``sqrt_abs(x)``       sqrt|x|
un   5   ``clip(x, 1e-5)``                          clip to [-1e-5, 1e-5]
un   6   ``clip(x, 1e-4)``                          clip to [-1e-4, 1e-4]
un   7   ``clip(x, 1e-3)``                          clip to [-1e-3, 1e-3]
un   8   ``drop(x, 0.1)``                           zero each element w.p. 0.1 (no rescaling,
                                                    as the paper defines drop)
un   9   ``drop(x, 0.3)``                           zero each element w.p. 0.3
un   10  ``drop(x, 0.5)``                           zero each element w.p. 0.5
un   11  ``sign(x)``                                sign
bin  0   ``x + y``                                  addition
bin  1   ``x - y``                                  subtraction
bin  2   ``x * y``                                  multiplication
bin  3   ``x / y``                                  x / (y + delta), delta = 1e-8
bin  4   ``x ^ y``            ``x ** y``            x**y (NaN for negative x, fractional y)
bin  5   ``keep(x, y)``                             keep left: x (y is computed, then ignored)
==== ==================== ===================== ===========================================

Grammar of the readable form (usual precedence; ``^`` is right-associative and
binds tighter than unary minus, so ``-x ^ y`` is ``-(x ^ y)``)::

  expr    := term (("+" | "-") term)*
  term    := factor (("*" | "/") factor)*
  factor  := "-" factor | power
  power   := atom (("^" | "**") factor)?
  atom    := operand | NAME "(" expr ["," NUMBER] ")" | "keep" "(" expr "," expr ")"
           | "(" expr ")"

Operand spellings win over function applications: ``sign(g)`` is operand 6,
``g^2`` operand 1, ``1e-3 * w`` operand 12. To get the unary ``sign`` applied to
operand ``g`` write ``sign((g))``; the power ``g ^ 2`` of operands is written
``g ^ (2)``. `format_program` writes those forms, so ``parse(format_program(p))``
gives back ``p`` for every program in canonical form (groups in post-order,
each output used once, the last output is the rule; see `canonicalize`).
Expressions that nest unaries (``exp(sqrt(g))``) or are a bare operand compile
with keep-left groups ``(x, x, u, id, keep)``, which format back to ``u(x)``.

Numbers: the only literal numbers are the operands ``1`` and ``2``, the ``w``
coefficients (before ``* w``) and the clip / drop arguments above. Every
malformed rule raises `DSLError` naming the position, the token and the
allowed names.

NaN and inf: valid programs never raise, but ``exp`` overflows, ``log(0)`` is
-inf and ``x ^ y`` of a negative base is NaN. Check updates with
``jnp.isfinite`` (the interpreter also returns a per-rule finiteness flag).
"""

import dataclasses
import functools
import math
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta.nos import decays


class DSLError(ValueError):
  """A malformed update rule (readable form or token program)."""


# ---------------------------------------------------------------------------
# Vocabulary: one table per kind, index = token id.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Token:
  """One entry of a vocabulary table.

  Attributes:
    id: the token id (its index in the table).
    name: the canonical readable spelling (for unary/binary functions a short
      name such as ``exp`` or ``div``).
    aliases: other accepted spellings.
    doc: what it computes.
  """
  id: int
  name: str
  aliases: tuple[str, ...]
  doc: str


def _table(*entries):
  return tuple(Token(i, name, tuple(aliases), doc)
               for i, (name, aliases, doc) in enumerate(entries))


OPERANDS = _table(
    ("g", (), "gradient"),
    ("g^2", ("g2",), "g**2"),
    ("g^3", ("g3",), "g**3"),
    ("m", ("m_hat",), "bias-corrected EMA of g (beta1)"),
    ("v", ("v_hat",), "bias-corrected EMA of g**2 (beta2)"),
    ("gamma", ("gamma_hat",), "bias-corrected EMA of g**3 (beta3)"),
    ("sign(g)", ("sign_g",), "sign of g"),
    ("sign(m)", ("sign_m",), "sign of m_hat"),
    ("1", (), "constant 1"),
    ("2", (), "constant 2"),
    ("eps", ("noise",), "N(0, 0.01) noise (variance 0.01)"),
    ("1e-4 * w", (), "1e-4 times the parameter"),
    ("1e-3 * w", (), "1e-3 times the parameter"),
    ("1e-2 * w", (), "1e-2 times the parameter"),
    ("1e-1 * w", (), "1e-1 times the parameter"),
    ("adam", ("Adam",), "m_hat / (sqrt(v_hat) + delta)"),
    ("rmsprop", ("RMSProp",), "g / (sqrt(v_hat) + delta)"),
    ("ld", (), "linear decay 1 - min(t, T) / T"),
    ("cd", ("cd_n",), "cyclical decay, n = cd_periods"),
    ("rd", ("rd_n",), "restart decay, n = rd_periods"),
    ("eps_t", ("annealed_noise",), "annealed noise N(0, 1 / (1 + t)^0.55)"),
)
UNARY = _table(
    ("id", (), "identity x"),
    ("neg", (), "-x"),
    ("exp", (), "e**x"),
    ("log", ("log_abs",), "log|x|"),
    ("sqrt", ("sqrt_abs",), "sqrt|x|"),
    ("clip_1e-5", (), "clip(x, 1e-5)"),
    ("clip_1e-4", (), "clip(x, 1e-4)"),
    ("clip_1e-3", (), "clip(x, 1e-3)"),
    ("drop_0.1", (), "drop(x, 0.1)"),
    ("drop_0.3", (), "drop(x, 0.3)"),
    ("drop_0.5", (), "drop(x, 0.5)"),
    ("sign", (), "sign(x)"),
)
BINARY = _table(
    ("add", ("+",), "x + y"),
    ("sub", ("-",), "x - y"),
    ("mul", ("*",), "x * y"),
    ("div", ("/",), "x / (y + delta)"),
    ("pow", ("^", "**"), "x ** y"),
    ("keep", (), "x (keep left)"),
)

NUM_OPERANDS = len(OPERANDS)  # 21
NUM_UNARY = len(UNARY)  # 12
NUM_BINARY = len(BINARY)  # 6
GROUP_SIZE = 5  # (op1, op2, u1, u2, b)


def _ids(table):
  return {tok.name: tok.id for tok in table}


OP = _ids(OPERANDS)
UN = _ids(UNARY)
BIN = _ids(BINARY)

# Which operands need which state (the compiler keeps only what a rule uses).
OPERANDS_NEEDING_M = frozenset({OP["m"], OP["sign(m)"], OP["adam"]})
OPERANDS_NEEDING_V = frozenset({OP["v"], OP["adam"], OP["rmsprop"]})
OPERANDS_NEEDING_GAMMA = frozenset({OP["gamma"]})
OPERANDS_NEEDING_W = frozenset(
    {OP["1e-4 * w"], OP["1e-3 * w"], OP["1e-2 * w"], OP["1e-1 * w"]})
OPERANDS_NEEDING_DECAY_STEPS = frozenset({OP["ld"], OP["cd"], OP["rd"]})

W_COEFFICIENTS = {OP["1e-4 * w"]: 1e-4, OP["1e-3 * w"]: 1e-3,
                  OP["1e-2 * w"]: 1e-2, OP["1e-1 * w"]: 1e-1}
CLIP_BOUNDS = {UN["clip_1e-5"]: 1e-5, UN["clip_1e-4"]: 1e-4,
               UN["clip_1e-3"]: 1e-3}
DROP_RATES = {UN["drop_0.1"]: 0.1, UN["drop_0.3"]: 0.3, UN["drop_0.5"]: 0.5}
EPS_VARIANCE = 0.01


def num_bank_entries(group):
  """Number of operand ids group `group` (0-based) may choose from."""
  return NUM_OPERANDS + group


# ---------------------------------------------------------------------------
# Semantics, per parameter leaf. Shared by `from_dsl` and the interpreter so
# that both give the same numbers.
# ---------------------------------------------------------------------------


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


# Key streams inside one leaf's key: 0 -> eps, 1 -> eps_t, 2 + 2 i + s -> the
# dropout of slot s (0 = u1, 1 = u2) of group i.
_EPS_STREAM, _EPS_T_STREAM, _FIRST_DROP_STREAM = 0, 1, 2


def leaf_keys(step_key, num_leaves):
  """One key per parameter leaf (tree-flatten order) for this step."""
  return [jax.random.fold_in(step_key, i) for i in range(num_leaves)]


def unary_key(leaf_key, group, slot):
  """Key of the dropout in slot `slot` (0: u1, 1: u2) of group `group`."""
  return jax.random.fold_in(leaf_key, _FIRST_DROP_STREAM + 2 * group + slot)


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
