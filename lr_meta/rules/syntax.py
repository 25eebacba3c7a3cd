"""Readable form of NOS update rules: parser and canonical formatter.

Bello et al. 2017, section 3.1. `parse_expression` turns a readable rule such
as ``exp(sign(g) * sign(m)) * g`` into an expression tree (`Operand`,
`Unary`, `Binary`, with the token ids of `lr_meta.rules.vocabulary`);
`format_expression` writes a tree in the canonical spelling.
`lr_meta.rules.programs` lays trees out as token programs (``parse``,
``format_program``).

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
``g ^ (2)``. `format_expression` writes those forms, so parsing its output
gives back the same tree.

A ``w`` operand such as ``1e-3 * w`` is one operand, so where the usual
precedence would split it (right of ``/`` or ``^``, or left of ``^``:
``g / 1e-3 * w`` would read ``(g / 1e-3) * w``) the rule is refused, and the
message gives the canonical spelling, e.g. ``g / (1e-3 * w)``.

Numbers: the only literal numbers are the operands ``1`` and ``2``, the ``w``
coefficients (before ``* w``) and the clip / drop arguments. Sizes: a rule has
at most `vocabulary.MAX_RULE_SIZE` (32) operations (operators and functions),
65 nested parentheses, functions and signs, and 10,000 characters. Every
malformed or oversized rule raises `DSLError` naming the position, the token
and what is allowed.
"""

import math
import re
from typing import Any, NamedTuple, Union

from lr_meta.rules.vocabulary import BIN
from lr_meta.rules.vocabulary import CLIP_BOUNDS
from lr_meta.rules.vocabulary import DROP_RATES
from lr_meta.rules.vocabulary import DSLError
from lr_meta.rules.vocabulary import MAX_RULE_SIZE
from lr_meta.rules.vocabulary import OP
from lr_meta.rules.vocabulary import OPERANDS
from lr_meta.rules.vocabulary import OPERANDS_NEEDING_W
from lr_meta.rules.vocabulary import UN
from lr_meta.rules.vocabulary import W_COEFFICIENTS

__all__ = (
    "Binary",
    "Expr",
    "Operand",
    "Unary",
    "check_size",
    "format_expression",
    "parse_expression",
)


# ---------------------------------------------------------------------------
# Expression trees (the readable form, parsed).
# ---------------------------------------------------------------------------


class Operand(NamedTuple):
  """A base operand: ``id`` indexes `vocabulary.OPERANDS`."""
  id: int


class Unary(NamedTuple):
  """``UNARY[id](x)``."""
  id: int
  x: Any


class Binary(NamedTuple):
  """``BINARY[id](x, y)``."""
  id: int
  x: Any
  y: Any


Expr = Union[Operand, Unary, Binary]

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<sym>\*\*|[-+*/^(),])
""", re.VERBOSE | re.ASCII)

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
# Every operation of a canonical rule opens at most 2 nesting levels (e.g.
# '-(' or '^ ('), so whatever parses also parses once formatted; each level
# is at most 7 parser frames, far below Python's recursion limit.
_MAX_NESTING = 2 * MAX_RULE_SIZE + 1
_MAX_CHARACTERS = 10_000
_ALLOWED_ATOMS = (
    "operands " + ", ".join(tok.name for tok in OPERANDS)
    + "; functions exp(x), log(x), sqrt(x), sign(x), neg(x), id(x), "
    "clip(x, 1e-5|1e-4|1e-3), drop(x, 0.1|0.3|0.5), keep(x, y); or '('")


class _Lexeme(NamedTuple):
  kind: str  # 'number', 'name', 'sym' or 'end'
  text: str
  pos: int


def _shown(rule):
  """The rule as error messages quote it (long rules shortened)."""
  return repr(rule) if len(rule) <= 80 else repr(rule[:72]) + "..."


def _tokenize(rule):
  lexemes, pos = [], 0
  while pos < len(rule):
    match = _TOKEN_RE.match(rule, pos)
    if match is None:
      raise DSLError(f"rule {_shown(rule)}: position {pos}: unexpected "
                     f"character "
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
    self.operations = 0
    # Inside the factor right of '/' or '^' (no parentheses in between),
    # where a w operand 'c * w' does not read as one operand.
    self.tight = False
    self.ambiguous = None  # the first lexeme of an ambiguous w operand.

  def nest(self):
    """Guards the recursion depth (Python's stack) of nested rules."""
    self.depth += 1
    if self.depth > _MAX_NESTING:
      raise self.error(self.peek(), f"at most {_MAX_NESTING} nested "
                       "parentheses, functions and signs")

  def operation(self, lexeme):
    """Counts an operator or function: each may need a group."""
    self.operations += 1
    if self.operations > MAX_RULE_SIZE:
      raise DSLError(
          f"rule {_shown(self.rule)}: position {lexeme.pos}: "
          f"{lexeme.text!r} is operation {self.operations}; allowed: at most "
          f"{MAX_RULE_SIZE} operations (operators and functions) in a rule")

  def delimited(self, parse):
    """`parse()` inside parentheses, where precedence starts afresh."""
    tight, self.tight = self.tight, False
    node = parse()
    self.tight = tight
    return node

  def tight_factor(self):
    """The factor right of '/' or '^'."""
    tight, self.tight = self.tight, True
    node = self.factor()
    self.tight = tight
    return node

  def peek(self, ahead=0):
    return self.lexemes[min(self.i + ahead, len(self.lexemes) - 1)]

  def error(self, lexeme, expected):
    return DSLError(f"rule {_shown(self.rule)}: position {lexeme.pos}: "
                    f"unexpected {lexeme.text!r}; expected {expected}")

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
    if self.ambiguous is not None:
      lexeme = self.ambiguous
      raise DSLError(
          f"rule {_shown(self.rule)}: position {lexeme.pos}: "
          f"'{lexeme.text} * w' is one operand, but by the usual precedence "
          "its '*' binds looser than the '/' or '^' next to it; write the "
          f"rule as {format_expression(expr)!r}")
    return expr

  def expr(self):
    node = self.term()
    while self.peek().text in ("+", "-"):
      self.operation(self.peek())
      op = _SYMBOL_BINARY[self.advance().text]
      node = Binary(op, node, self.term())
    return node

  def term(self):
    node = self.factor()
    while self.peek().text in ("*", "/"):
      self.operation(self.peek())
      op = _SYMBOL_BINARY[self.advance().text]
      right = self.tight_factor() if op == BIN["div"] else self.factor()
      node = Binary(op, node, right)
    return node

  def factor(self):
    self.nest()
    if self.peek().text == "-":
      self.operation(self.advance())
      node = Unary(UN["neg"], self.factor())
    else:
      node = self.power()
    self.depth -= 1
    return node

  def power(self):
    node = self.atom()
    if self.peek().text in ("^", "**"):
      self.operation(self.advance())
      node = Binary(BIN["pow"], node, self.tight_factor())
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
      node = self.delimited(self.expr)
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
      if (self.tight or self.peek().text in ("^", "**")) and (
          self.ambiguous is None):
        self.ambiguous = lexeme
      return Operand(op)
    op = _match_number(lexeme.text, {v: float(k) for k, v in
                                     _NUMBER_OPERANDS.items()})
    if op is None:
      raise self.error(lexeme, "a number operand: 1 or 2 (or a coefficient "
                       "1e-4, 1e-3, 1e-2, 1e-1 before '* w')")
    return Operand(op)

  def call(self):
    lexeme = self.advance()
    name = lexeme.text
    if name != "id":
      self.operation(lexeme)
    self.expect("(")
    arg = self.delimited(self.expr)
    if name == "keep":
      self.expect(",")
      right = self.delimited(self.expr)
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
  if len(rule) > _MAX_CHARACTERS:
    raise DSLError(f"rule {_shown(rule)}: {len(rule)} characters; allowed: "
                   f"at most {_MAX_CHARACTERS}")
  return _Parser(rule).parse()


def check_size(expr: Expr) -> None:
  """Refuses trees of over `MAX_RULE_SIZE` operations (without recursion).

  `parse_expression` never builds one; trees built by hand are checked
  before the recursive walks of `format_expression` and
  `programs.compile_expression`.
  """
  operations, stack = 0, [expr]
  while stack:
    node = stack.pop()
    if isinstance(node, Operand):
      continue
    if not isinstance(node, (Unary, Binary)):
      raise DSLError(f"an expression tree holds Operand, Unary and Binary "
                     f"nodes; got {type(node).__name__}")
    operations += 1
    if operations > MAX_RULE_SIZE:
      raise DSLError(f"an expression tree has more than {MAX_RULE_SIZE} "
                     f"operations; allowed: at most {MAX_RULE_SIZE} "
                     "(operators and functions)")
    stack.extend(node[1:])


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
  check_size(expr)

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
