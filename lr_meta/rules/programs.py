"""Token programs of NOS update rules: checks, layout, readable round trip.

Bello et al. 2017, section 3.1. A token program is an int32 array
``(num_groups, 5)`` of groups ``(op1, op2, u1, u2, b)`` (layout and ids in
`lr_meta.rules.vocabulary`). `parse` turns a readable rule into one (via the
expression tree of `lr_meta.rules.syntax`), `format_program` writes a program
as its canonical readable rule, `validate_program` checks a concrete program.

``parse(format_program(p))`` gives back ``p`` for every program in canonical
form (groups in post-order, each output used once, the last output is the
rule; see `canonicalize`). Expressions that nest unaries (``exp(sqrt(g))``)
or are a bare operand compile with keep-left groups ``(x, x, u, id, keep)``,
which format back to ``u(x)``. A program has at most
`vocabulary.MAX_RULE_SIZE` groups; every malformed program raises
`DSLError` naming the group, the position and the allowed range.
"""

import numpy as np

from lr_meta.rules import syntax
from lr_meta.rules.vocabulary import BIN
from lr_meta.rules.vocabulary import BINARY
from lr_meta.rules.vocabulary import DSLError
from lr_meta.rules.vocabulary import GROUP_SIZE
from lr_meta.rules.vocabulary import MAX_RULE_SIZE
from lr_meta.rules.vocabulary import NUM_BINARY
from lr_meta.rules.vocabulary import NUM_OPERANDS
from lr_meta.rules.vocabulary import NUM_UNARY
from lr_meta.rules.vocabulary import num_bank_entries
from lr_meta.rules.vocabulary import UN
from lr_meta.rules.vocabulary import UNARY

__all__ = (
    "canonicalize",
    "compile_expression",
    "format_program",
    "parse",
    "program_expression",
    "to_program",
    "validate_program",
)


def compile_expression(expr: syntax.Expr) -> np.ndarray:
  """Lays an expression tree out as token groups in post-order.

  Unaries attach to the operand slots of the binary above them; a unary of a
  unary, a unary at the top, or a bare operand at the top gets a keep-left
  group ``(x, x, u, id, keep)``.

  Args:
    expr: an expression tree of at most `MAX_RULE_SIZE` operations.

  Returns:
    int32 array of shape (num_groups, 5), num_groups <= `MAX_RULE_SIZE`.

  Raises:
    DSLError: for a tree that is too large.
  """
  syntax.check_size(expr)
  groups = []

  def emit(node):
    """Bank id holding the value of `node`."""
    if isinstance(node, syntax.Operand):
      return node.id
    if isinstance(node, syntax.Binary):
      a1, u1 = slot(node.x)
      a2, u2 = slot(node.y)
      groups.append((a1, a2, u1, u2, node.id))
      return NUM_OPERANDS + len(groups) - 1
    a, u = slot(node)
    groups.append((a, a, u, UN["id"], BIN["keep"]))
    return NUM_OPERANDS + len(groups) - 1

  def slot(node):
    """(bank id, unary id) feeding `node` into an operand slot."""
    if isinstance(node, syntax.Unary):
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
      or not np.issubdtype(array.dtype, np.integer)):
    raise DSLError(f"a token program must be a non-empty int array of shape "
                   f"(num_groups, 5) = (op1, op2, u1, u2, b); got shape "
                   f"{array.shape} dtype {array.dtype}")
  if array.shape[0] > MAX_RULE_SIZE:
    raise DSLError(f"a token program has {array.shape[0]} groups; allowed: "
                   f"at most {MAX_RULE_SIZE}")
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


def program_expression(program) -> syntax.Expr:
  """The expression tree a token program computes.

  Raises:
    DSLError: for an invalid program, or one whose expression has more than
      `MAX_RULE_SIZE` operations (outputs used more than once are written
      out each time, so a short program can stand for a huge expression).
  """
  program = validate_program(program)
  operations = [0] * NUM_OPERANDS  # of each bank entry's expression
  for a1, a2, u1, u2, b in program.tolist():
    left = operations[a1] + (u1 != UN["id"])
    if b == BIN["keep"] and a1 == a2 and u2 == UN["id"]:
      operations.append(left)
    else:
      operations.append(left + operations[a2] + (u2 != UN["id"]) + 1)
  if operations[-1] > MAX_RULE_SIZE:
    raise DSLError(f"token program: its expression has {operations[-1]} "
                   f"operations; allowed: at most {MAX_RULE_SIZE}")

  def node(bank_id):
    if bank_id < NUM_OPERANDS:
      return syntax.Operand(int(bank_id))
    a1, a2, u1, u2, b = (int(v) for v in program[bank_id - NUM_OPERANDS])
    left = apply(u1, node(a1))
    if b == BIN["keep"] and a1 == a2 and u2 == UN["id"]:
      return left
    return syntax.Binary(b, left, apply(u2, node(a2)))

  def apply(u, x):
    return x if u == UN["id"] else syntax.Unary(u, x)

  return node(NUM_OPERANDS + len(program) - 1)


def parse(rule: str) -> np.ndarray:
  """Readable rule -> token program (int32, shape (num_groups, 5))."""
  return compile_expression(syntax.parse_expression(rule))


def format_program(program) -> str:
  """Token program -> canonical readable rule."""
  return syntax.format_expression(program_expression(program))


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
