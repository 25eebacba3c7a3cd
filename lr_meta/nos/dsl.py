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
# Expression trees (the readable form, parsed).
# ---------------------------------------------------------------------------


class Operand(NamedTuple):
  id: int


class Unary(NamedTuple):
  id: int
  x: Any


class Binary(NamedTuple):
  id: int
  x: Any
  y: Any


Expr = Union[Operand, Unary, Binary]

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<sym>\*\*|[-+*/^(),])
""", re.VERBOSE)

_OPERAND_NAMES = {}
for _tok in OPERANDS:
  for _spelling in (_tok.name,) + _tok.aliases:
    if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", _spelling):
      _OPERAND_NAMES[_spelling] = _tok.id
_FUNCTIONS = {"exp": UN["exp"], "log": UN["log"], "log_abs": UN["log"],
              "sqrt": UN["sqrt"], "sqrt_abs": UN["sqrt"], "sign": UN["sign"],
              "neg": UN["neg"], "id": UN["id"]}
_ARG_FUNCTIONS = {"clip": CLIP_BOUNDS, "drop": DROP_RATES}
_SYMBOL_BINARY = {"+": BIN["add"], "-": BIN["sub"], "*": BIN["mul"],
                  "/": BIN["div"], "^": BIN["pow"], "**": BIN["pow"]}
_NUMBER_OPERANDS = {1.0: OP["1"], 2.0: OP["2"]}
_MAX_NESTING = 64
_ALLOWED_ATOMS = (
    "operands " + ", ".join(tok.name for tok in OPERANDS)
    + "; functions exp(x), log(x), sqrt(x), sign(x), neg(x), id(x), "
    "clip(x, 1e-5|1e-4|1e-3), drop(x, 0.1|0.3|0.5), keep(x, y); or '('")


class _Lexeme(NamedTuple):
  kind: str  # 'number', 'name', 'sym' or 'end'
  text: str
  pos: int


def _tokenize(rule):
  lexemes, pos = [], 0
  while pos < len(rule):
    match = _TOKEN_RE.match(rule, pos)
    if match is None:
      raise DSLError(f"rule {rule!r}: position {pos}: unexpected character "
                     f"{rule[pos]!r}; allowed: names, numbers and "
                     "+ - * / ^ ** ( ) ,")
    if match.lastgroup != "ws":
      lexemes.append(_Lexeme(match.lastgroup, match.group(), pos))
    pos = match.end()
  lexemes.append(_Lexeme("end", "end of rule", len(rule)))
  return lexemes


def _match_number(text, allowed):
  """The key of `allowed` whose number equals `text`, else None."""
  value = float(text)
  for key, number in allowed.items():
    if math.isclose(value, number, rel_tol=1e-9, abs_tol=0.0):
      return key
  return None


class _Parser:
  """Recursive descent over the grammar in the module docstring."""

  def __init__(self, rule):
    self.rule = rule
    self.lexemes = _tokenize(rule)
    self.i = 0
    self.depth = 0

  def nest(self):
    """Guards the recursion depth (Python's stack) of nested rules."""
    self.depth += 1
    if self.depth > _MAX_NESTING:
      raise self.error(self.peek(), f"at most {_MAX_NESTING} nested "
                       "parentheses, functions and signs")

  def peek(self, ahead=0):
    return self.lexemes[min(self.i + ahead, len(self.lexemes) - 1)]

  def error(self, lexeme, expected):
    return DSLError(f"rule {self.rule!r}: position {lexeme.pos}: unexpected "
                    f"{lexeme.text!r}; expected {expected}")

  def advance(self):
    lexeme = self.peek()
    self.i += 1
    return lexeme

  def expect(self, text):
    lexeme = self.peek()
    if lexeme.text != text:
      raise self.error(lexeme, repr(text))
    return self.advance()

  def parse(self):
    if self.peek().kind == "end":
      raise self.error(self.peek(), "a rule; allowed: " + _ALLOWED_ATOMS)
    expr = self.expr()
    if self.peek().kind != "end":
      raise self.error(self.peek(), "an operator + - * / ^ or the end")
    return expr

  def expr(self):
    node = self.term()
    while self.peek().text in ("+", "-"):
      op = _SYMBOL_BINARY[self.advance().text]
      node = Binary(op, node, self.term())
    return node

  def term(self):
    node = self.factor()
    while self.peek().text in ("*", "/"):
      op = _SYMBOL_BINARY[self.advance().text]
      node = Binary(op, node, self.factor())
    return node

  def factor(self):
    self.nest()
    if self.peek().text == "-":
      self.advance()
      node = Unary(UN["neg"], self.factor())
    else:
      node = self.power()
    self.depth -= 1
    return node

  def power(self):
    node = self.atom()
    if self.peek().text in ("^", "**"):
      self.advance()
      node = Binary(BIN["pow"], node, self.factor())
    return node

  def atom(self):
    lexeme, nxt = self.peek(), self.peek(1)
    if lexeme.kind == "number":
      return self.number_atom()
    if lexeme.kind == "name":
      name = lexeme.text
      # g^2, g^3 (and not g ^ 2 ^ x).
      if (name == "g" and nxt.text in ("^", "**")
          and self.peek(2).text in ("2", "3")
          and self.peek(3).text not in ("^", "**")):
        self.i += 3
        return Operand(OP["g^2"] if self.peek(-1).text == "2" else OP["g^3"])
      # sign(g), sign(m) are operands.
      if (name == "sign" and nxt.text == "("
          and self.peek(2).text in ("g", "m", "m_hat")
          and self.peek(3).text == ")"):
        self.i += 4
        return Operand(OP["sign(g)"] if self.peek(-2).text == "g"
                       else OP["sign(m)"])
      if name in _OPERAND_NAMES:
        self.advance()
        return Operand(_OPERAND_NAMES[name])
      if name == "w":
        raise self.error(lexeme, "an operand; w appears only as 1e-4 * w, "
                         "1e-3 * w, 1e-2 * w or 1e-1 * w")
      if name in _FUNCTIONS or name in _ARG_FUNCTIONS or name == "keep":
        return self.call()
      raise self.error(lexeme, "an operand or function; allowed: "
                       + _ALLOWED_ATOMS)
    if lexeme.text == "(":
      self.advance()
      node = self.expr()
      self.expect(")")
      return node
    raise self.error(lexeme, "an operand, function or '('; allowed: "
                     + _ALLOWED_ATOMS)

  def number_atom(self):
    lexeme = self.advance()
    if self.peek().text == "*" and self.peek(1).text == "w":
      op = _match_number(lexeme.text, {i: c for i, c in
                                       W_COEFFICIENTS.items()})
      if op is None:
        raise self.error(lexeme, "a coefficient of w: 1e-4, 1e-3, 1e-2 or "
                         "1e-1")
      self.i += 2
      return Operand(op)
    op = _match_number(lexeme.text, {v: float(k) for k, v in
                                     _NUMBER_OPERANDS.items()})
    if op is None:
      raise self.error(lexeme, "a number operand: 1 or 2 (or a coefficient "
                       "1e-4, 1e-3, 1e-2, 1e-1 before '* w')")
    return Operand(op)

  def call(self):
    name = self.advance().text
    self.expect("(")
    arg = self.expr()
    if name == "keep":
      self.expect(",")
      right = self.expr()
      self.expect(")")
      return Binary(BIN["keep"], arg, right)
    if name in _ARG_FUNCTIONS:
      allowed = _ARG_FUNCTIONS[name]
      self.expect(",")
      lexeme = self.advance()
      op = (_match_number(lexeme.text, allowed) if lexeme.kind == "number"
            else None)
      if op is None:
        raise self.error(lexeme, f"the {name} argument, one of "
                         + ", ".join(f"{v:g}" for v in allowed.values()))
      self.expect(")")
      return Unary(op, arg)
    self.expect(")")
    if name == "id":
      return arg
    return Unary(_FUNCTIONS[name], arg)


def parse_expression(rule: str) -> Expr:
  """Parses the readable form into an expression tree (`Operand`, ...)."""
  if not isinstance(rule, str):
    raise DSLError(f"a rule must be a str, got {type(rule).__name__}")
  return _Parser(rule).parse()


# ---------------------------------------------------------------------------
# Expression tree <-> token program.
# ---------------------------------------------------------------------------


def compile_expression(expr: Expr) -> np.ndarray:
  """Lays an expression tree out as token groups in post-order.

  Unaries attach to the operand slots of the binary above them; a unary of a
  unary, a unary at the top, or a bare operand at the top gets a keep-left
  group ``(x, x, u, id, keep)``.

  Args:
    expr: an expression tree.

  Returns:
    int32 array of shape (num_groups, 5).
  """
  groups = []

  def emit(node):
    """Bank id holding the value of `node`."""
    if isinstance(node, Operand):
      return node.id
    if isinstance(node, Binary):
      a1, u1 = slot(node.x)
      a2, u2 = slot(node.y)
      groups.append((a1, a2, u1, u2, node.id))
      return NUM_OPERANDS + len(groups) - 1
    a, u = slot(node)
    groups.append((a, a, u, UN["id"], BIN["keep"]))
    return NUM_OPERANDS + len(groups) - 1

  def slot(node):
    """(bank id, unary id) feeding `node` into an operand slot."""
    if isinstance(node, Unary):
      return emit(node.x), node.id
    return emit(node), UN["id"]

  root = emit(expr)
  if root < NUM_OPERANDS:  # a bare operand
    groups.append((root, root, UN["id"], UN["id"], BIN["keep"]))
  return np.asarray(groups, np.int32).reshape(-1, GROUP_SIZE)


def validate_program(program) -> np.ndarray:
  """Checks a concrete token program; returns it as int32 (num_groups, 5).

  Raises:
    DSLError: naming the group, the position and the allowed range.
  """
  try:
    array = np.asarray(program)
  except Exception as e:  # ragged lists and the like.
    raise DSLError(f"a token program must be an int array of shape "
                   f"(num_groups, 5); got {program!r}") from e
  if (array.ndim != 2 or array.shape[1] != GROUP_SIZE or array.shape[0] < 1
      or not (np.issubdtype(array.dtype, np.integer) or array.size == 0)):
    raise DSLError(f"a token program must be a non-empty int array of shape "
                   f"(num_groups, 5) = (op1, op2, u1, u2, b); got shape "
                   f"{array.shape} dtype {array.dtype}")
  names = ("op1", "op2", "u1", "u2", "b")
  for i, group in enumerate(array):
    limits = (num_bank_entries(i),) * 2 + (NUM_UNARY,) * 2 + (NUM_BINARY,)
    for position, (value, limit) in enumerate(zip(group, limits)):
      if not 0 <= value < limit:
        allowed = (f"operand ids 0..{limit - 1} (the {NUM_OPERANDS} operands "
                   f"and the outputs of groups 0..{i - 1})" if position < 2
                   else f"ids 0..{limit - 1}: " + ", ".join(
                       tok.name for tok in (UNARY if position < 4
                                            else BINARY)))
        raise DSLError(f"token program: group {i}, position {position} "
                       f"({names[position]}): unexpected token {int(value)}; "
                       f"allowed {allowed}")
  return array.astype(np.int32)


def program_expression(program) -> Expr:
  """The expression tree a (valid) token program computes."""
  program = validate_program(program)

  def node(bank_id):
    if bank_id < NUM_OPERANDS:
      return Operand(int(bank_id))
    a1, a2, u1, u2, b = (int(v) for v in program[bank_id - NUM_OPERANDS])
    left = apply(u1, node(a1))
    if b == BIN["keep"] and a1 == a2 and u2 == UN["id"]:
      return left
    return Binary(b, left, apply(u2, node(a2)))

  def apply(u, x):
    return x if u == UN["id"] else Unary(u, x)

  return node(NUM_OPERANDS + len(program) - 1)


# Printing precedence: higher binds tighter.
_PREC_ADD, _PREC_MUL, _PREC_NEG, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_BINARY_PREC = {BIN["add"]: _PREC_ADD, BIN["sub"]: _PREC_ADD,
                BIN["mul"]: _PREC_MUL, BIN["div"]: _PREC_MUL,
                BIN["pow"]: _PREC_POW}
_BINARY_SYMBOL = {BIN["add"]: "+", BIN["sub"]: "-", BIN["mul"]: "*",
                  BIN["div"]: "/", BIN["pow"]: "^"}
_UNARY_CALL = {UN["exp"]: "exp({})", UN["log"]: "log({})",
               UN["sqrt"]: "sqrt({})", UN["sign"]: "sign({})"}
_UNARY_CALL.update({i: "clip({}, " + f"{b:.0e}".replace("e-0", "e-") + ")"
                    for i, b in CLIP_BOUNDS.items()})
_UNARY_CALL.update({i: "drop({}, " + f"{p:g}" + ")"
                    for i, p in DROP_RATES.items()})


def format_expression(expr: Expr) -> str:
  """Canonical readable form of an expression tree."""

  def fmt(node):
    """(text, precedence)."""
    if isinstance(node, Operand):
      prec = (_PREC_MUL if node.id in OPERANDS_NEEDING_W
              else _PREC_POW if node.id in (OP["g^2"], OP["g^3"])
              else _PREC_ATOM)
      return OPERANDS[node.id].name, prec
    if isinstance(node, Unary):
      inner = node.x
      if node.id == UN["neg"]:
        text = wrap(inner, _PREC_NEG)
        return "-" + (f"({text})" if text.startswith("-") else text), _PREC_NEG
      text = fmt(inner)[0]
      if node.id == UN["sign"] and inner in (Operand(OP["g"]),
                                             Operand(OP["m"])):
        text = f"({text})"  # sign((g)): the unary, not the operand sign(g).
      return _UNARY_CALL[node.id].format(text), _PREC_ATOM
    if node.id == BIN["keep"]:
      return f"keep({fmt(node.x)[0]}, {fmt(node.y)[0]})", _PREC_ATOM
    prec = _BINARY_PREC[node.id]
    if node.id == BIN["pow"]:
      left = wrap(node.x, _PREC_ATOM)
      right = wrap(node.y, _PREC_NEG)
      if node.x == Operand(OP["g"]) and node.y == Operand(OP["2"]):
        right = "(2)"  # g ^ (2): the power, not the operand g^2.
    else:
      left = wrap(node.x, prec)
      right = wrap(node.y, prec + 1)
    return f"{left} {_BINARY_SYMBOL[node.id]} {right}", prec

  def wrap(node, min_prec):
    text, prec = fmt(node)
    return text if prec >= min_prec else f"({text})"

  return fmt(expr)[0]


def parse(rule: str) -> np.ndarray:
  """Readable rule -> token program (int32, shape (num_groups, 5))."""
  return compile_expression(parse_expression(rule))


def format_program(program) -> str:
  """Token program -> canonical readable rule."""
  return format_expression(program_expression(program))


def canonicalize(program) -> np.ndarray:
  """The canonical token program computing the same rule.

  Drops groups whose output is unused, inlines outputs used more than once,
  reorders groups into post-order, and keeps the right operand of ``keep``
  groups only where it is visible in the readable form.
  """
  return parse(format_program(program))


def to_program(rule) -> np.ndarray:
  """A readable rule (str) or a token program -> validated token program."""
  if isinstance(rule, str):
    return parse(rule)
  return validate_program(rule)


# ---------------------------------------------------------------------------
# The optax side: state and step shared by `from_dsl` and the interpreter.
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


class _Tracked(NamedTuple):
  m: bool
  v: bool
  gamma: bool


def _tracked(operand_ids) -> _Tracked:
  ids = set(int(i) for i in operand_ids)
  return _Tracked(m=bool(ids & OPERANDS_NEEDING_M),
                  v=bool(ids & OPERANDS_NEEDING_V),
                  gamma=bool(ids & OPERANDS_NEEDING_GAMMA))


ALL_TRACKED = _Tracked(True, True, True)


def init_rule_state(params, seed, tracked: _Tracked = ALL_TRACKED):
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
    rule: readable rule (str) or token program, see the module docstring.
    beta1: EMA decay of m_hat.
    beta2: EMA decay of v_hat.
    beta3: EMA decay of gamma_hat.
    delta: denominator offset of ``/``, ``adam`` and ``rmsprop``.
    decay_steps: T of the ``ld``/``cd``/``rd`` operands (required when the
      rule uses them).
    cd_periods: n of ``cd``.
    rd_periods: n of ``rd``.
    seed: seed of the PRNG key in the state (random operands and drop()).

  Returns:
    An `optax.GradientTransformationExtraArgs`; `update` needs `params` when
    the rule uses ``w``.

  Raises:
    DSLError: for a malformed rule, or decay operands without decay_steps.
  """
  program = to_program(rule)
  operands_used = {int(i) for i in program[:, :2].ravel() if i < NUM_OPERANDS}
  if operands_used & OPERANDS_NEEDING_DECAY_STEPS and decay_steps is None:
    raise DSLError(f"rule {format_program(program)!r} uses the decay "
                   "operands ld/cd/rd: pass decay_steps=<total steps T>")
  if isinstance(decay_steps, (int, float)) and decay_steps <= 0:
    raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
  tracked = _tracked(operands_used)
  hp = Hyperparams(beta1=beta1, beta2=beta2, beta3=beta3, delta=delta,
                   decay_steps=decay_steps, cd_periods=cd_periods,
                   rd_periods=rd_periods)

  def init_fn(params):
    return init_rule_state(params, seed, tracked)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if operands_used & OPERANDS_NEEDING_W and params is None:
      raise DSLError(f"rule {format_program(program)!r} uses w: call "
                     "update(updates, state, params)")
    return rule_update(
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
  """
  return optax.chain(
      scale_by_rule(rule, beta1=beta1, beta2=beta2, beta3=beta3, delta=delta,
                    decay_steps=decay_steps, cd_periods=cd_periods,
                    rd_periods=rd_periods, seed=seed),
      optax.scale_by_learning_rate(learning_rate))
