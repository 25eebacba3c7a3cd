"""lr_meta.optax: optax transforms from Neural Optimizer Search and friends.

Every optimizer is an `optax.GradientTransformationExtraArgs`.

Learned LR controllers: ``controlled(base, pretrained_controller(name))``
(Xu, Dai, Kemp & Metz 2019) with ``probe_inputs`` in the train step,
``current_lr`` to read the LR and ``controller_readout`` for the whole
decision (LR, action, named inputs) to log; see
``lr_meta/optax/_src/controlled.py``.
"""

from lr_meta.rules.compiler import from_dsl
from lr_meta.rules.compiler import scale_by_rule
from lr_meta.rules.vocabulary import DSLError
from lr_meta.policies.controller import Controller
from lr_meta.policies.controller import ControllerSpec
from lr_meta.policies.controller import load_controller
from lr_meta.policies.controller import pretrained_controller
from lr_meta.policies.controller import pretrained_names
from lr_meta.policies.controller import save_controller
from lr_meta.optax._src.averaging import averaged_params
from lr_meta.optax._src.averaging import polynomial_average
from lr_meta.optax._src.averaging import PolynomialAverageState
from lr_meta.optax._src.controlled import controlled
from lr_meta.optax._src.controlled import ControlledState
from lr_meta.optax._src.controlled import ControllerMismatchWarning
from lr_meta.optax._src.controlled import controller_readout
from lr_meta.optax._src.controlled import ControllerReadout
from lr_meta.optax._src.controlled import current_lr
from lr_meta.optax._src.controlled import decision_due
from lr_meta.optax._src.controlled import probe_inputs
from lr_meta.optax._src.range_test import range_test_steps
from lr_meta.optax._src.range_test import range_tested
from lr_meta.optax._src.range_test import RangeTestState
from lr_meta.optax._src.states import find_state
from lr_meta.optax._src.states import find_states
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

__all__ = [
    "add_sign", "averaged_params", "controlled", "ControlledState", "Controller",
    "ControllerMismatchWarning", "ControllerReadout", "ControllerSpec",
    "controller_readout", "cosine_sign_decay", "current_lr", "decision_due",
    "DSLError", "find_state", "find_states",
    "from_dsl", "linear_cosine_decay", "linear_cosine_decay_schedule",
    "linear_sign_decay", "load_controller", "noisy_linear_cosine_decay",
    "noisy_linear_cosine_decay_schedule", "polynomial_average",
    "PolynomialAverageState", "power_sign",
    "pretrained_controller", "pretrained_names", "probe_inputs",
    "range_test_steps", "range_tested", "RangeTestState",
    "restart_sign_decay",
    "save_controller", "scale_by_add_sign", "scale_by_power_sign",
    "scale_by_rule", "ScaleBySignState",
]
