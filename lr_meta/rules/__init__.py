"""lr_meta.rules: the update-rule language of Neural Optimizer Search (Bello et al. 2017).

Four modules, lowest first: `vocabulary` (token tables and ids, `DSLError`),
`semantics` (what every token computes: one table shared by compiler and
interpreter), `syntax` (parser and canonical formatter of the readable form)
with `programs` (token programs: checks, `parse`, `format_program`), and
`compiler` (a rule -> optax transform, `from_dsl`); then the batched
`interpreter` of token programs and the step-count `decays`.
Token program = int32 array (num_groups, 5): (op1, op2, u1, u2, b); operand
ids index a bank of `vocabulary.NUM_OPERANDS` operands that grows by one
entry per group (group i may use ids < NUM_OPERANDS + i).

Layering: the language sits below `lr_meta.optax` (which re-exports
`from_dsl`) and must not import it; the controller that writes rules and the
search over them are `lr_meta.nos`.
"""

from lr_meta import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "compiler": ("from_dsl", "scale_by_rule"),
    "decays": (),
    "interpreter": ("program_optimizer", "scale_by_program"),
    "programs": ("canonicalize", "format_program", "parse", "to_program",
                 "validate_program"),
    "semantics": (),
    "syntax": (),
    "vocabulary": ("BINARY", "DSLError", "NUM_BINARY", "NUM_OPERANDS",
                   "NUM_UNARY", "OPERANDS", "UNARY"),
})
