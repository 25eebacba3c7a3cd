"""What a learning-rate controller observes and when it decides, in one object.

An ``ObservationSpec`` is held by the environment's params
(``lr_meta.envs.LREnvParams.observation_spec``), where a controller is trained,
and by the controller's spec
(``lr_meta.policies.ControllerSpec.observation_spec``), which
``lr_meta.optax.controlled`` runs, so the settings that make the two
observe the same numbers are written, defaulted and checked here only. A
trained controller's spec takes its environment's as is
(``lr_meta.rundir.controller_from_training``).

Config files and controller files keep the flat names they always had
(``env.ema_decay``, ``"log_lr_observation"`` in a controller file's spec):
``FLAT_NAMES`` maps them, ``from_flat`` / ``to_flat`` convert, so configs,
shipped controller files and the benchmark's cache keys are unchanged.
"""

import dataclasses
from typing import Any, Mapping, Optional, Tuple

from lr_meta.features import dynamics
from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta.features import range_sweep
from lr_meta.features import scale_free
from lr_meta.features import xu_protocol

__all__ = ["FLAT_FIELDS", "FLAT_NAMES", "ObservationSpec", "split_fields"]


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
  """The observation of a controller and its decision schedule.

  Hashable and static (a ``pytree_node=False`` field of ``LREnvParams``);
  every field is JSON-serialisable.

  Attributes:
    kind: one of ``lr_meta.features.observation.OBSERVATION_KINDS``; ''
      means the action type's default (``resolved_kind``), and, in an
      environment's params, the environment's own kind.
    inputs: the 'scale_free' observation's optional inputs
      (``lr_meta.features.scale_free.INPUTS`` names, after its 10 numbers).
    decision_schedule: 'every' (a decision every ``steps_per_decision``
      inner steps) or 'fraction' (``num_decisions`` decisions at fixed
      fractions of a run of any length).
    steps_per_decision: K, inner steps between 'every' decisions.
    num_decisions: T, the decisions of an episode (the progress feature's
      horizon); with 'fraction' the D decisions of every run. None in a
      controller file written before it was stored.
    ema_decay: EMA decay of the prediction features (Xu et al. 2019: 0.8).
    log_lr: the dynamics' LR entry is ``log10(lr)`` (else the raw LR).
    per_example_decay: gamma of the per-example smoothing (Daniel et al.
      2016).
    slope_decay: EMA decay of the 'scale_free' log-slopes.
    protocol: what the Xu 2019 observation is fed
      (``lr_meta.features.xu_protocol.XuProtocol``).
    num_val_examples: the probe, the first validation examples whose loss
      (and softmax predictions) are observed; None: the whole split.
    range_test: ``(name, value)`` pairs of ``range_sweep.SweepSettings``:
      the run starts with an LR range test whose found LR is the
      controller's initial LR (``lr_meta.optax.range_tested``; the
      environment runs the same sweep at reset); ``()``: no range test.
  """
  kind: str = ""
  # Left out of the benchmark's cache keys at its default (a controller
  # without optional inputs runs what it ran before they existed).
  inputs: Tuple[str, ...] = dataclasses.field(
      default=(), metadata={"cache_key": "omit_default"})
  decision_schedule: str = "every"
  steps_per_decision: int = 10
  num_decisions: Optional[int] = 100
  ema_decay: float = dynamics.DEFAULT_DECAY
  log_lr: bool = True
  # Left out of controller files and cache keys at its default: controller
  # files were written before the spec held it.
  per_example_decay: float = dataclasses.field(
      default=observation_lib.PER_EXAMPLE_DECAY,
      metadata={"flat": "omit_default", "cache_key": "omit_default"})
  slope_decay: float = scale_free.DEFAULT_SLOPE_DECAY
  protocol: xu_protocol.XuProtocol = xu_protocol.XuProtocol()
  num_val_examples: Optional[int] = 1000
  # Left out of controller files and cache keys at its default: controllers
  # trained without a range test keep their files and digests.
  range_test: Tuple[Tuple[str, Any], ...] = dataclasses.field(
      default=(), metadata={"flat": "omit_default",
                            "cache_key": "omit_default"})

  @property
  def sweep_settings(self) -> Optional[range_sweep.SweepSettings]:
    """The range test's settings, None without one."""
    return (range_sweep.settings_from_pairs(self.range_test)
            if self.range_test else None)

  def resolved_kind(self, action_type: str) -> str:
    """``kind``, or the action type's default observation when ''."""
    return self.kind or lr_actions.action_rule(action_type).observations[0]

  def check(self, action_type: str, prefix: str) -> "ObservationSpec":
    """Raises ValueError naming a bad field (as ``<prefix>.<flat name>``)
    and its allowed values, for a controller of ``action_type``."""
    name = lambda field: f"{prefix}.{FLAT_NAMES.get(field, field)}"
    rule = lr_actions.action_rule(action_type)
    if self.kind not in ("",) + rule.observations:
      raise ValueError(f"{name('kind')}={self.kind!r} with action_type "
                       f"{action_type!r}; allowed: {rule.observations}.")
    kind = self.resolved_kind(action_type)
    for field in ("steps_per_decision",) + (
        ("num_decisions",) if self.num_decisions is not None else ()):
      v = getattr(self, field)
      if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name(field)}={v!r}; allowed: an integer >= 1.")
    if self.decision_schedule not in observation_lib.DECISION_SCHEDULES:
      raise ValueError(f"{name('decision_schedule')}="
                       f"{self.decision_schedule!r}; allowed: "
                       f"{observation_lib.DECISION_SCHEDULES}.")
    if self.num_decisions is None and (
        observation_lib.observes_progress(kind)
        or self.decision_schedule == "fraction"):
      raise ValueError(
          f"{name('num_decisions')}=None with observation {kind!r}, "
          f"decision_schedule {self.decision_schedule!r}; allowed: an "
          "integer >= 1 (the progress feature's horizon, the decisions of a "
          "run).")
    for field in ("ema_decay", "per_example_decay", "slope_decay"):
      v = getattr(self, field)
      if not 0.0 <= v < 1.0:
        raise ValueError(f"{name(field)}={v!r}; allowed: [0, 1).")
    if self.num_val_examples is not None and (
        not isinstance(self.num_val_examples, int)
        or isinstance(self.num_val_examples, bool)
        or self.num_val_examples < 1):
      raise ValueError(f"{name('num_val_examples')}="
                       f"{self.num_val_examples!r}; allowed: None or an "
                       "integer >= 1.")
    if not isinstance(self.protocol, xu_protocol.XuProtocol):
      raise ValueError(f"{name('protocol')}={self.protocol!r}; allowed: a "
                       "XuProtocol (xu_protocol.as_protocol converts a "
                       "mapping or a preset name).")
    if (self.protocol != xu_protocol.XuProtocol()
        and not observation_lib.observation_parts(kind).dynamics):
      raise ValueError(
          f"{name('protocol')}={self.protocol!r} with observation {kind!r}; "
          "a protocol other than the default changes the inputs of the Xu "
          "2019 dynamics observation only.")
    observation_lib.check_inputs(kind, self.inputs, name("inputs"))
    if self.range_test:
      range_sweep.settings_from_pairs(self.range_test, name("range_test"))
      if self.decision_schedule != "fraction":
        raise ValueError(
            f"{name('range_test')}={self.range_test!r} with "
            f"decision_schedule {self.decision_schedule!r}; a range test "
            "hands the rest of the run to a controller that decides at "
            "fractions of it (allowed: decision_schedule 'fraction').")
    return self

  def config(self, action_type: str, layers: observation_lib.ObservedLayers,
             num_decisions: Optional[int] = None
             ) -> observation_lib.ObservationConfig:
    """The static settings of ``observation.observe`` for these layers
    (``num_decisions``: the run's horizon, when it is not the spec's)."""
    return observation_lib.ObservationConfig(
        kind=self.resolved_kind(action_type), layers=layers,
        ema_decay=self.ema_decay, log_lr=self.log_lr,
        per_example_decay=self.per_example_decay,
        num_decisions=(self.num_decisions if num_decisions is None
                       else num_decisions),
        slope_decay=self.slope_decay, inputs=self.inputs)

  def flat_items(self):
    """``(flat name, value, dataclasses.Field)`` of every field."""
    return [(FLAT_NAMES.get(f.name, f.name), getattr(self, f.name), f)
            for f in dataclasses.fields(self)]

  def to_flat(self) -> dict:
    """The fields by their flat names (config keys, controller files)."""
    return {name: value for name, value, f in self.flat_items()
            if not (f.metadata.get("flat") == "omit_default"
                    and value == f.default)}

  def replace_flat(self, **changes) -> "ObservationSpec":
    """This spec with fields changed by their flat names."""
    fields = {_FIELD_OF_FLAT.get(k, k): v for k, v in changes.items()}
    return dataclasses.replace(self, **_canonical(fields))

  @classmethod
  def from_flat(cls, mapping: Mapping[str, Any], **defaults
                ) -> "ObservationSpec":
    """The spec of the flat names found in ``mapping`` (others: ``defaults``,
    else the field defaults); JSON lists become tuples, a protocol mapping
    or preset name a ``XuProtocol``."""
    kwargs = dict(defaults)
    for f in dataclasses.fields(cls):
      flat = FLAT_NAMES.get(f.name, f.name)
      if flat in mapping:
        kwargs[f.name] = mapping[flat]
    return cls(**_canonical(kwargs))


def _canonical(fields: dict) -> dict:
  """``fields`` with JSON lists as tuples, a protocol mapping or preset name
  as a ``XuProtocol``, and a range test (pairs, a mapping, a config's dict)
  as every ``SweepSettings`` field in order, so equal settings are equal
  specs."""
  fields = dict(fields)
  if "inputs" in fields:
    fields["inputs"] = tuple(fields["inputs"])
  if "protocol" in fields:
    fields["protocol"] = xu_protocol.as_protocol(fields["protocol"])
  if "range_test" in fields:
    fields["range_test"] = (range_sweep.settings_from_pairs(
        fields["range_test"]).pairs() if fields["range_test"] else ())
  return fields


# Field -> flat name where they differ: the names configs
# (``env.observation``, ``env.log_lr_observation``) and controller files use.
FLAT_NAMES = {"kind": "observation", "log_lr": "log_lr_observation"}
_FIELD_OF_FLAT = {flat: field for field, flat in FLAT_NAMES.items()}
FLAT_FIELDS = tuple(FLAT_NAMES.get(f.name, f.name)
                    for f in dataclasses.fields(ObservationSpec))


def split_fields(fields: Mapping[str, Any], holder: type, where: str,
                 base: Optional[ObservationSpec] = None, **defaults
                 ) -> Tuple[ObservationSpec, dict]:
  """``(spec, others)`` of flat ``fields`` given to a ``holder`` dataclass
  whose field ``observation_spec`` holds the spec.

  The observation spec's flat names make the spec (``base`` with them
  replaced, else ``from_flat`` with ``defaults``); the holder's other
  fields are returned as they are.

  Raises:
    ValueError: a name that is neither, naming ``where`` and the known
      names.
  """
  fields = dict(fields)
  own = {f.name for f in dataclasses.fields(holder)} - {"observation_spec"}
  flat = {k: fields.pop(k) for k in set(FLAT_FIELDS) & set(fields)}
  unknown = sorted(set(fields) - set(own))
  if unknown:
    raise ValueError(f"{where} has unknown fields {unknown}; known: "
                     f"{sorted(set(own) | set(FLAT_FIELDS))}.")
  if base is not None:
    return base.replace_flat(**flat), fields
  return ObservationSpec.from_flat(flat, **defaults), fields
