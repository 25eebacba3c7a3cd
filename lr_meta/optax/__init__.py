"""lr_meta.optax: optax transforms from Neural Optimizer Search and friends.

Every optimizer is an `optax.GradientTransformationExtraArgs`.
"""

from lr_meta.nos.dsl import DSLError
from lr_meta.nos.dsl import from_dsl
from lr_meta.nos.dsl import scale_by_rule
from lr_meta.optax._src.schedules import linear_cosine_decay_schedule
from lr_meta.optax._src.schedules import linear_cosine_decay_schedule as linear_cosine_decay
from lr_meta.optax._src.schedules import noisy_linear_cosine_decay_schedule
from lr_meta.optax._src.schedules import noisy_linear_cosine_decay_schedule as noisy_linear_cosine_decay
from lr_meta.optax._src.sign import add_sign
from lr_meta.optax._src.sign import cosine_sign_decay
from lr_meta.optax._src.sign import linear_sign_decay
from lr_meta.optax._src.sign import power_sign
from lr_meta.optax._src.sign import restart_sign_decay
from lr_meta.optax._src.sign import scale_by_add_sign
from lr_meta.optax._src.sign import scale_by_power_sign
from lr_meta.optax._src.sign import ScaleBySignState
