"""lr_meta.features: state features for learning-rate controllers.

* Weight statistics of a conv kernel (Fu 2016): ``weight_stats_features``.
* Training-dynamics observation (Xu, Dai, Kemp & Metz 2019):
  ``dynamics_init`` / ``dynamics_update``.
* Per-example-loss features (Daniel, Taylor & Nowozin 2016):
  ``predicted_change_features`` / ``losses_and_directional_derivatives``,
  smoothed with ``running_stats_update``.
* Finding layers in a params tree: ``last_conv_layer``, ``get_kernel``, ...
* How each controller's action changes the LR (``lr_actions``:
  ``ACTION_RULES``) and the one observation builder shared by the
  environment and ``lr_meta.optax.controlled`` (``observation``:
  ``observe``, ``resolve_layers``).
* What a controller observes and when it decides, held alike by the
  environment's params and the controller's spec (``ObservationSpec``),
  and the decision cycle both run (``decision``).
* What the Xu 2019 observation is fed and how its controller acts, lr_meta's
  way or the official code's (``xu_protocol``: ``XuProtocol``).
"""

# pylint: disable=g-importing-member

from lr_meta.features.dynamics import DEFAULT_DECAY as DYNAMICS_DECAY
from lr_meta.features.dynamics import dynamics_init
from lr_meta.features.dynamics import dynamics_update
from lr_meta.features.dynamics import DynamicsState
from lr_meta.features.dynamics import kernel_moments
from lr_meta.features.dynamics import log_variance
from lr_meta.features.dynamics import NUM_OBSERVATIONS
from lr_meta.features.dynamics import OBSERVATION_NAMES
from lr_meta.features.params import conv_layers
from lr_meta.features.params import dense_layers
from lr_meta.features.params import first_dense_layer
from lr_meta.features.params import get_kernel
from lr_meta.features.params import kernel_layers
from lr_meta.features.params import last_conv_layer
from lr_meta.features.params import last_dense_layer
from lr_meta.features.params import layer_name
from lr_meta.features.params import LayerPath
from lr_meta.features.params import LayerSpec
from lr_meta.features.params import unwrap_params
from lr_meta.features.lr_actions import ACTION_RULES
from lr_meta.features.lr_actions import ACTION_TYPES
from lr_meta.features.lr_actions import action_rule
from lr_meta.features.lr_actions import ActionRule
from lr_meta.features.observation import OBSERVATION_KINDS
from lr_meta.features.observation import observation_size
from lr_meta.features.observation import ObservationConfig
from lr_meta.features.observation import observe
from lr_meta.features.observation import ObservedLayers
from lr_meta.features.observation import progress_feature
from lr_meta.features.observation import resolve_layers
from lr_meta.features.observation_spec import ObservationSpec
from lr_meta.features.per_example import FEATURE_NAMES as PER_EXAMPLE_FEATURE_NAMES
from lr_meta.features.per_example import losses_and_directional_derivatives
from lr_meta.features.per_example import per_example_features
from lr_meta.features.per_example import predicted_change_features
from lr_meta.features.smoothing import bias_correction
from lr_meta.features.smoothing import ema
from lr_meta.features.smoothing import ema_first_value
from lr_meta.features.smoothing import running_stats_debiased
from lr_meta.features.smoothing import running_stats_features
from lr_meta.features.smoothing import running_stats_init
from lr_meta.features.smoothing import running_stats_update
from lr_meta.features.smoothing import RunningStats
from lr_meta.features.weight_stats import AGGREGATION_NAMES
from lr_meta.features.weight_stats import aggregate
from lr_meta.features.weight_stats import feature_index as weight_feature_index
from lr_meta.features.weight_stats import FEATURE_NAMES as WEIGHT_FEATURE_NAMES
from lr_meta.features.weight_stats import kernel_statistics
from lr_meta.features.weight_stats import layer_weight_stats
from lr_meta.features.weight_stats import NUM_WEIGHT_FEATURES
from lr_meta.features.weight_stats import PREV_LR_INDEX
from lr_meta.features.weight_stats import STAT_NAMES
from lr_meta.features.weight_stats import summary_statistics
from lr_meta.features.weight_stats import weight_stats_features
from lr_meta.features.xu_protocol import XuProtocol

__all__ = [
    "ACTION_RULES", "ACTION_TYPES", "AGGREGATION_NAMES", "DYNAMICS_DECAY",
    "NUM_OBSERVATIONS", "NUM_WEIGHT_FEATURES", "OBSERVATION_KINDS",
    "OBSERVATION_NAMES", "PER_EXAMPLE_FEATURE_NAMES", "PREV_LR_INDEX",
    "STAT_NAMES", "WEIGHT_FEATURE_NAMES", "action_rule", "ActionRule",
    "ObservationSpec",
    "aggregate", "bias_correction", "conv_layers", "dense_layers",
    "dynamics_init", "dynamics_update", "DynamicsState", "ema",
    "ema_first_value", "first_dense_layer", "get_kernel", "kernel_layers",
    "kernel_moments", "kernel_statistics", "last_conv_layer",
    "last_dense_layer", "layer_name", "layer_weight_stats", "LayerPath",
    "LayerSpec", "log_variance", "losses_and_directional_derivatives",
    "observation_size", "ObservationConfig", "observe", "ObservedLayers",
    "per_example_features", "predicted_change_features", "progress_feature",
    "resolve_layers", "running_stats_debiased", "running_stats_features",
    "running_stats_init", "running_stats_update", "RunningStats",
    "summary_statistics", "unwrap_params", "weight_feature_index",
    "weight_stats_features", "XuProtocol",
]
