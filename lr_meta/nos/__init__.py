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

from lr_meta.nos import compiler
from lr_meta.nos import controller
from lr_meta.nos import decays
from lr_meta.nos import interpreter
from lr_meta.nos import programs
from lr_meta.nos import search
from lr_meta.nos import semantics
from lr_meta.nos import syntax
from lr_meta.nos import vocabulary
from lr_meta.nos.compiler import from_dsl
from lr_meta.nos.compiler import scale_by_rule
from lr_meta.nos.controller import make_search_space
from lr_meta.nos.controller import RuleController
from lr_meta.nos.controller import search_space_size
from lr_meta.nos.controller import SearchSpace
from lr_meta.nos.interpreter import program_optimizer
from lr_meta.nos.interpreter import scale_by_program
from lr_meta.nos.programs import canonicalize
from lr_meta.nos.programs import format_program
from lr_meta.nos.programs import parse
from lr_meta.nos.programs import to_program
from lr_meta.nos.programs import validate_program
from lr_meta.nos.search import RuleSearchPPOConfig
from lr_meta.nos.search import Scorer
from lr_meta.nos.search import ScoringConfig
from lr_meta.nos.search import Search
from lr_meta.nos.search import SearchState
from lr_meta.nos.search import train_rules
from lr_meta.nos.vocabulary import BINARY
from lr_meta.nos.vocabulary import DSLError
from lr_meta.nos.vocabulary import NUM_BINARY
from lr_meta.nos.vocabulary import NUM_OPERANDS
from lr_meta.nos.vocabulary import NUM_UNARY
from lr_meta.nos.vocabulary import OPERANDS
from lr_meta.nos.vocabulary import UNARY

__all__ = (
    "BINARY",
    "DSLError",
    "NUM_BINARY",
    "NUM_OPERANDS",
    "NUM_UNARY",
    "OPERANDS",
    "RuleController",
    "RuleSearchPPOConfig",
    "Scorer",
    "ScoringConfig",
    "Search",
    "SearchSpace",
    "SearchState",
    "UNARY",
    "canonicalize",
    "compiler",
    "controller",
    "decays",
    "format_program",
    "from_dsl",
    "interpreter",
    "make_search_space",
    "parse",
    "program_optimizer",
    "programs",
    "scale_by_program",
    "scale_by_rule",
    "search",
    "search_space_size",
    "semantics",
    "syntax",
    "to_program",
    "train_rules",
    "validate_program",
    "vocabulary",
)
