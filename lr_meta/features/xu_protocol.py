"""What the Xu et al. 2019 observation is fed, and how its controller acts.

lr_meta's 9 training-dynamics numbers (``lr_meta.features.dynamics``) equal
those of the official TF1 code (google-research,
``adaptive_learning_rate_tuner/learn_adaptive_learning_rate.py``) on the same
inputs; the protocol AROUND them is what differs, and it changes what the
features mean (e.g. the prediction-change variance of consecutive training
batches is ~1e3 times that of a fixed probe). ``XuProtocol`` names each of
those choices so that the environment (``lr_meta.envs.LREnv``), the
controller artifact (``lr_meta.policies``) and ``lr_meta.optax.controlled``
follow the same one, and so that each can be switched alone to measure it:

====================  ======================  ===============================
field                 ``lr_meta()`` (default)  ``official()`` (the TF1 code)
====================  ======================  ===============================
``predictions``       ``'val_probe'``: softmax ``'train_batch'``: softmax of
                      of a fixed validation    the step's training batch (a
                      probe                    different batch every time)
``val_loss``          ``'probe'``: loss on     ``'val_split'``: loss on the
                      that probe               whole validation split
``train_loss``        ``'window_mean'``: mean  ``'step'``: the loss of the
                      of the K inner steps'    batch whose predictions are
                      losses                   observed
``first_observation`` ``'measured'``: the 9    ``'ones'``: all ones (the
                      numbers at initialisation code's ``init_observation``)
``acting``            ``'mean'``: the clipped  ``'sample'``: ``a ~ N(mu,
                      mean                     sigma)`` clipped, also when a
                                               trained controller runs
====================  ======================  ===============================

Where "the step" is: lr_meta measures the parameters at the decision (after
the K inner steps of the previous window) with the batch the next inner step
trains on, i.e. that step's forward pass before its update. The official loop
chooses its action first and measures during the step it applies it to, so
its controller sees the previous step's values (with its default of a
decision every step, the reward of an action is measured before the action
has touched the weights); lr_meta does not reproduce that one-step lag.

The rest of the official protocol are settings of the task, environment and
agent (``configs/xu2019_official.py``): the raw LR input
(``env.log_lr_observation=False``), a decision every step
(``steps_per_decision=1``; the paper says 10), the Adam trainee at 1e-2, the
official models (``lr_meta.tasks.models``: ``'xu2019_cnn'``,
``'xu2019_mlp'``), batch 1000 in epoch order (``make_task(batch_order=
'sequential')``), and the reward ``2.0 - val_loss`` with gamma 0.9.
"""

import dataclasses
from typing import Any, Mapping, Union

import jax
import jax.numpy as jnp

__all__ = ["CHOICES", "XuProtocol", "as_protocol", "ones_observation"]

# Allowed values of each field, the lr_meta default first.
CHOICES = {
    "predictions": ("val_probe", "train_batch"),
    "val_loss": ("probe", "val_split"),
    "train_loss": ("window_mean", "step"),
    "first_observation": ("measured", "ones"),
    "acting": ("mean", "sample"),
}


@dataclasses.dataclass(frozen=True)
class XuProtocol:
  """Inputs of the Xu 2019 observation and how its controller acts.

  Hashable (a static field of ``LREnvParams``) and JSON-serialisable
  (``dataclasses.asdict``; stored in a ``ControllerSpec``). See the module
  docstring for the meaning of each field; ``CHOICES`` lists their values.
  """
  predictions: str = "val_probe"
  val_loss: str = "probe"
  train_loss: str = "window_mean"
  first_observation: str = "measured"
  acting: str = "mean"

  def __post_init__(self):
    for name, allowed in CHOICES.items():
      value = getattr(self, name)
      if value not in allowed:
        raise ValueError(f"protocol.{name}={value!r}; allowed: {allowed}.")

  @classmethod
  def lr_meta(cls) -> "XuProtocol":
    """lr_meta's protocol (fixed validation probe, window-mean train loss)."""
    return cls()

  @classmethod
  def official(cls) -> "XuProtocol":
    """The official TF1 code's choices (see the module docstring)."""
    return cls(**{name: allowed[1] for name, allowed in CHOICES.items()})

  @property
  def needs_step_batch(self) -> bool:
    """Whether the observation reads the forward pass of a training batch."""
    return self.predictions == "train_batch" or self.train_loss == "step"

  @property
  def samples(self) -> bool:
    return self.acting == "sample"

  def differences(self, other: "XuProtocol") -> tuple[str, ...]:
    """Names of the fields where ``self`` and ``other`` differ."""
    return tuple(f for f in CHOICES if getattr(self, f) != getattr(other, f))


def as_protocol(value: Union[None, XuProtocol, Mapping[str, Any], str]
                ) -> XuProtocol:
  """A ``XuProtocol`` from itself, a field mapping, a preset name or None.

  Raises:
    ValueError: an unknown preset name or field (the message lists the
      allowed ones), or a bad field value.
  """
  if value is None:
    return XuProtocol()
  if isinstance(value, XuProtocol):
    return value
  if isinstance(value, str):
    presets = {"lr_meta": XuProtocol.lr_meta, "official": XuProtocol.official}
    if value not in presets:
      raise ValueError(f"protocol={value!r}; allowed presets: "
                       f"{tuple(presets)} (or a mapping of the fields "
                       f"{tuple(CHOICES)}).")
    return presets[value]()
  fields = dict(value.items())
  unknown = sorted(set(fields) - set(CHOICES))
  if unknown:
    raise ValueError(f"protocol has unknown fields {unknown}; allowed: "
                     f"{tuple(CHOICES)}.")
  return XuProtocol(**fields)


def ones_observation(size: int) -> jax.Array:
  """The official code's first observation: ``size`` ones (float32)."""
  return jnp.ones((size,), jnp.float32)
