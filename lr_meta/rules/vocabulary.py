"""Vocabulary of the Neural Optimizer Search rule language (Bello et al. 2017).

Paper sections 3.1 (the language), 4.1 (the vocabulary) and 5 (the rules it
found). The language lives in four modules, lowest first: this one (token
tables and ids), `lr_meta.rules.semantics` (what every token computes: ONE
table of functions shared by the compiler and the interpreter),
`lr_meta.rules.syntax` (parser, canonical formatter, token-program checks) and
`lr_meta.rules.compiler` (a rule -> optax transform, ``from_dsl``);
`lr_meta.rules.interpreter` evaluates batches of traced programs.

A rule has two forms:

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
  `lr_meta.rules.interpreter` evaluates in batches.
* a **readable expression** that people write, e.g.
  ``exp(sign(g) * sign(m)) * g`` (PowerSign), ``(1 + sign(g) * sign(m)) * g``
  (AddSign), ``m / sqrt(v)`` (Adam with eps = delta = 1e-8),
  ``drop(m, 0.3) * exp(1e-3 * w)``. `syntax.parse` turns it into a token
  program, `syntax.format_program` turns a program back into the canonical
  expression.

Spellings (every name the parser accepts; the first is the canonical one that
`syntax.format_program` writes):

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

Every malformed rule, readable or token program, raises `DSLError` (a
``ValueError``) naming the position, the token and the allowed names.
"""

import dataclasses

__all__ = (
    "BIN",
    "BINARY",
    "CLIP_BOUNDS",
    "DROP_RATES",
    "DSLError",
    "EPS_VARIANCE",
    "GROUP_SIZE",
    "MAX_RULE_SIZE",
    "NUM_BINARY",
    "NUM_OPERANDS",
    "NUM_UNARY",
    "OP",
    "OPERANDS",
    "OPERANDS_NEEDING_DECAY_STEPS",
    "OPERANDS_NEEDING_GAMMA",
    "OPERANDS_NEEDING_M",
    "OPERANDS_NEEDING_V",
    "OPERANDS_NEEDING_W",
    "Token",
    "UN",
    "UNARY",
    "W_COEFFICIENTS",
    "num_bank_entries",
)


class DSLError(ValueError):
  """A malformed update rule (readable form or token program)."""


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
  """One table per kind of token; a token's id is its index."""
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
# The most groups of a token program, and the most operations (operators and
# functions) of a readable rule, each of which needs at most one group. The
# paper's rules have 1 to 4 groups; the bound keeps every tree walk of the
# parser, compiler and formatter far from Python's recursion limit.
MAX_RULE_SIZE = 32


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

