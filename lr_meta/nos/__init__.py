"""lr_meta.nos: Neural Optimizer Search (Bello et al. 2017).

The update-rule language (`dsl`: vocabulary tables with token ids, parser,
formatter, compiler to optax), its batched interpreter (`interpreter`), the
LSTM controller that writes rules (`controller`) and the PPO search that
scores batches of rules as one compiled program (`search`).
Token program = int32 array (num_groups, 5): (op1, op2, u1, u2, b); operand
ids index a bank of `dsl.NUM_OPERANDS` operands that grows by one entry per
group (group i may use ids < dsl.NUM_OPERANDS + i); see `dsl`.

Layering: `lr_meta.nos` must not import `lr_meta.optax` (which re-exports
`from_dsl` from here).
"""

from lr_meta.nos import controller
from lr_meta.nos import decays
from lr_meta.nos import dsl
from lr_meta.nos import interpreter
from lr_meta.nos import search
from lr_meta.nos.controller import Controller
from lr_meta.nos.controller import make_search_space
from lr_meta.nos.controller import search_space_size
from lr_meta.nos.controller import SearchSpace
from lr_meta.nos.dsl import BINARY
from lr_meta.nos.dsl import DSLError
from lr_meta.nos.dsl import format_program
from lr_meta.nos.dsl import from_dsl
from lr_meta.nos.dsl import NUM_BINARY
from lr_meta.nos.dsl import NUM_OPERANDS
from lr_meta.nos.dsl import NUM_UNARY
from lr_meta.nos.dsl import OPERANDS
from lr_meta.nos.dsl import parse
from lr_meta.nos.dsl import UNARY
from lr_meta.nos.dsl import validate_program
from lr_meta.nos.interpreter import program_optimizer
from lr_meta.nos.interpreter import scale_by_program
from lr_meta.nos.search import PPOConfig
from lr_meta.nos.search import Scorer
from lr_meta.nos.search import ScoringConfig
from lr_meta.nos.search import Search
from lr_meta.nos.search import SearchState
from lr_meta.nos.search import train_rules
