"""lr_meta.nos: Neural Optimizer Search (Bello et al. 2017).

The update-rule language in four modules, lowest first: `vocabulary` (token
tables and ids, `DSLError`), `semantics` (what every token computes: one
table shared by compiler and interpreter), `syntax` (parser and canonical
formatter of the readable form) with `programs` (token programs: checks,
`parse`, `format_program`), and `compiler` (a rule -> optax transform,
`from_dsl`). Then its batched interpreter (`interpreter`), the LSTM
controller that writes rules (`controller`) and the PPO search that scores
batches of rules as one compiled program (`search`).
Token program = int32 array (num_groups, 5): (op1, op2, u1, u2, b); operand
ids index a bank of `vocabulary.NUM_OPERANDS` operands that grows by one
entry per group (group i may use ids < NUM_OPERANDS + i).

Layering: `lr_meta.nos` must not import `lr_meta.optax` (which re-exports
`from_dsl` from here).
"""

from lr_meta import _lazy

# Lazy: `lr_meta.optax` imports the rule language, which must not run the
# search module (rlax, the task stack). Submodules are attributes too.
__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "compiler": ("from_dsl", "scale_by_rule"),
    "controller": ("make_search_space", "RuleController", "search_space_size",
                   "SearchSpace"),
    "decays": (),
    "interpreter": ("program_optimizer", "scale_by_program"),
    "programs": ("canonicalize", "format_program", "parse", "to_program",
                 "validate_program"),
    "search": ("RuleSearchPPOConfig", "Scorer", "ScoringConfig", "Search",
               "SearchState", "train_rules"),
    "semantics": (),
    "syntax": (),
    "vocabulary": ("BINARY", "DSLError", "NUM_BINARY", "NUM_OPERANDS",
                   "NUM_UNARY", "OPERANDS", "UNARY"),
})
