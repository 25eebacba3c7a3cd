"""lr_meta.nos: Neural Optimizer Search (Bello et al. 2017).

The update-rule language (`dsl`: vocabulary tables with token ids, parser,
formatter, compiler to optax) and its batched interpreter (`interpreter`).
Token program = int32 array (num_groups, 5): (op1, op2, u1, u2, b); operand
ids index a bank of `dsl.NUM_OPERANDS` operands that grows by one entry per
group (group i may use ids < dsl.NUM_OPERANDS + i); see `dsl`.

Layering: `lr_meta.nos` must not import `lr_meta.optax` (which re-exports
`from_dsl` from here).
"""

from lr_meta.nos import decays
from lr_meta.nos import dsl
from lr_meta.nos import interpreter
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
