"""lr_meta.nos: Neural Optimizer Search (Bello et al. 2017).

The LSTM controller that writes update rules (`controller`) and the PPO
search that scores batches of rules as one compiled program (`search`). The
rules' language is `lr_meta.rules` (vocabulary, semantics, syntax, token
programs, compiler, interpreter, decays); its public names are re-exported
here too (``lr_meta.nos.from_dsl``, ``lr_meta.nos.parse``, ...).

Layering: `lr_meta.rules` sits below `lr_meta.optax`; `lr_meta.nos.controller`
beside it (it imports the language, never `lr_meta.optax`);
`lr_meta.nos.search` at the top with the agents (rlax, the task stack).
"""

from lr_meta import _lazy

# Lazy: importing the controller must not run the search module (rlax, the
# task stack). Submodules are attributes too.
__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "lr_meta.rules.compiler": ("from_dsl", "scale_by_rule"),
    "controller": ("make_search_space", "RuleController", "search_space_size",
                   "SearchSpace"),
    "lr_meta.rules.interpreter": ("program_optimizer", "scale_by_program"),
    "lr_meta.rules.programs": ("canonicalize", "format_program", "parse",
                               "to_program", "validate_program"),
    "search": ("RuleSearchPPOConfig", "Scorer", "ScoringConfig", "Search",
               "SearchState", "train_rules"),
    "lr_meta.rules.vocabulary": ("BINARY", "DSLError", "NUM_BINARY",
                                 "NUM_OPERANDS", "NUM_UNARY", "OPERANDS",
                                 "UNARY"),
})
