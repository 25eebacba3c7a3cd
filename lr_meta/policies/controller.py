"""A trained learning-rate controller as a portable artifact.

A ``Controller`` is a ``ControllerSpec`` (everything needed to rebuild the
acting network and to feed it the observation it was trained on) plus the
network params. It is what ``lr_meta.optax.controlled`` runs inside any optax
loop and what the pretrained files under ``lr_meta/pretrained/`` hold.

Supported (agent, action type) pairs:

* PPO on ``'xu2019'`` (Xu, Dai, Kemp & Metz 2019, section 2.2): a Gaussian
  actor (MLP or LSTM); acting = the clipped mean, exactly the agent's
  deterministic ``policy_fn`` (or, under the observation spec's protocol
  ``acting == 'sample'``, a Gaussian sample clipped, as the official code
  acts, from a key held in the carry: ``initial_carry(key=...)``); LR
  update ``lr * ((a - 0.15) * 0.1 + 1)``
  (``lr_meta.features.lr_actions.xu2019_lr_update``); observation = the 9
  dynamics features (``lr_meta.features.dynamics``), optionally with the run
  progress (``lr_meta.features.observation``).
* DQN on ``'fu2016'`` (Fu 2016): a Q-network; acting = greedy; LR update
  ``0.97 * lr`` or reset to ``lr0``; observation = the 193 weight statistics.
* PPO on ``'daniel2016'`` (``lr * exp(a)``, ``|a| <= 0.5``) or ``'xu2017'``
  (``lr0 * 10**a``) with the ``'scale_free'`` observation
  (``lr_meta.features.scale_free``): the generalist controllers, trained
  over a distribution of tasks with decisions at fixed fractions of a run.

Layering: this module needs only the features layer (observation sizes, LR
action rules) and the acting networks (``lr_meta.policies.networks``); it
imports no agent training code, so ``import lr_meta.optax`` stays light. A
controller is built from a training run in ``lr_meta.experiment``.

File format (``save_controller`` / ``load_controller``): one msgpack map
(``flax.serialization.msgpack_serialize``)::

  {"format": "lr_meta.controller", "format_version": 1,
   "lr_meta_version": "0.1.0", "spec": <JSON text of the spec>,
   "params": <flax.serialization.to_bytes(params)>,
   "sha256": <hex digest of spec text + params bytes>}

The checksum catches corruption that still parses as msgpack (a flipped byte
inside a float array); the spec check plus a shape/structure comparison with
the network's ``init`` catches params that do not belong to the spec.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Optional, Tuple

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import checks
from lr_meta import files
from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta.features import observation_spec as observation_spec_lib
from lr_meta.features import xu_protocol
from lr_meta.policies import networks

__all__ = [
    "ACTION_TYPES", "Controller", "ControllerSpec", "FORMAT",
    "FORMAT_VERSION", "NETWORKS", "OBSERVATION_SIZE", "PRETRAINED_DIR",
    "check_params", "controller_from_bytes", "controller_to_bytes",
    "load_controller", "make_controller", "make_network",
    "pretrained_controller", "pretrained_names", "save_controller",
]

FORMAT = "lr_meta.controller"
FORMAT_VERSION = 1
NETWORKS = ("gaussian_mlp", "gaussian_lstm", "q_mlp")
# Which network kinds act in which action space (the exportable ones).
_GAUSSIAN = ("gaussian_mlp", "gaussian_lstm")
_NETWORKS_FOR_ACTION = {"xu2019": _GAUSSIAN, "fu2016": ("q_mlp",),
                        "daniel2016": _GAUSSIAN, "xu2017": _GAUSSIAN}
ACTION_TYPES = tuple(_NETWORKS_FOR_ACTION)
# Observations a controller can be fed: those of its action type.
OBSERVATION_SIZE = {
    kind: observation_lib.observation_size(kind)
    for action_type in ACTION_TYPES
    for kind in lr_actions.action_rule(action_type).observations}


def _lr_meta_version() -> str:
  import lr_meta  # pylint: disable=g-import-not-at-top
  return lr_meta.__version__


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
  """What a controller is and what it observes (all JSON-serialisable).

  Attributes:
    name: short identifier (the pretrained file name).
    action_type: ``'xu2019'`` (continuous LR scaling) or ``'fu2016'``
      (decay 3% / reset).
    network: one of ``NETWORKS``.
    hidden_sizes: hidden layer sizes (the LSTM uses ``hidden_sizes[0]``).
    observation_spec: what it observed in training and when it decided
      (``lr_meta.features.observation_spec.ObservationSpec``: the
      observation kind, '' = the action type's default, its optional
      inputs, decision schedule, K, T, EMA decays, log-LR entry, protocol
      and probe size), its environment's as is. Files before a field was
      stored: that field's default, except ``num_val_examples`` and
      ``num_decisions`` (None: not recorded).
    initial_lrs: initial LRs of the training episodes (the range it knows).
    first_dense, last_dense: layer paths of the training task whose kernel
      moments entered the observation ('xu2019').
    monitored_layer: layer path of the weight statistics ('fu2016').
    action_std: initial policy std (Gaussian networks; builds the params).
    learn_log_std: the actor has a learned ``log_std`` param.
    num_actions: discrete actions ('q_mlp').
    agent: the agent that trained it ('ppo', 'dqn').
    description: free text (task, training budget, results).
    config: the training config as a plain dict.
    lr_meta_version: version of lr_meta that wrote it.

  The file holds the observation spec's fields flat, by the names they
  always had (``ObservationSpec.to_flat``: ``"observation"`` for the kind,
  ``"log_lr_observation"``, ``"steps_per_decision"``, ...).
  """
  name: str
  action_type: str
  network: str
  hidden_sizes: Tuple[int, ...]
  observation_spec: observation_spec_lib.ObservationSpec = dataclasses.field(
      default=observation_spec_lib.ObservationSpec(num_decisions=None,
                                                   num_val_examples=None),
      metadata={"cache_key": "flatten"})
  initial_lrs: Tuple[float, ...] = ()
  first_dense: Tuple[str, ...] = ()
  last_dense: Tuple[str, ...] = ()
  monitored_layer: Tuple[str, ...] = ()
  action_std: float = 0.1
  learn_log_std: bool = False
  num_actions: int = 2
  agent: str = ""
  description: str = ""
  config: dict = dataclasses.field(default_factory=dict, compare=False,
                                   hash=False)
  lr_meta_version: str = dataclasses.field(default_factory=_lr_meta_version)

  def check(self) -> "ControllerSpec":
    """Raises ValueError naming a bad field and its allowed values."""
    if self.action_type not in ACTION_TYPES:
      raise ValueError(f"spec.action_type={self.action_type!r}; allowed: "
                       f"{ACTION_TYPES}.")
    allowed = _NETWORKS_FOR_ACTION[self.action_type]
    if self.network not in allowed:
      raise ValueError(f"spec.network={self.network!r} with action_type "
                       f"{self.action_type!r}; allowed: {allowed}.")
    if (not self.hidden_sizes or
        any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes)):
      raise ValueError(f"spec.hidden_sizes={self.hidden_sizes!r}; allowed: "
                       "a non-empty tuple of integers >= 1.")
    checks.check_int("spec.num_actions", self.num_actions, 1)
    if not self.action_std > 0:
      raise ValueError(f"spec.action_std={self.action_std!r}; allowed: > 0.")
    if not isinstance(self.observation_spec,
                      observation_spec_lib.ObservationSpec):
      raise ValueError(f"spec.observation_spec={self.observation_spec!r}; "
                       "allowed: an ObservationSpec.")
    # How it acts ('sample') is a protocol field too: Xu 2019 controllers.
    if (self.observation_spec.protocol != xu_protocol.XuProtocol()
        and self.action_type != "xu2019"):
      raise ValueError(f"spec.protocol={self.observation_spec.protocol!r} "
                       f"with action_type {self.action_type!r}; allowed: the "
                       "default protocol (the others apply to 'xu2019').")
    self.observation_spec.check(self.action_type, "spec")
    return self

  @property
  def observation_kind(self) -> str:
    return self.observation_spec.resolved_kind(self.action_type)

  @property
  def uses_progress(self) -> bool:
    return observation_lib.observes_progress(self.observation_kind)

  @property
  def observation_size(self) -> int:
    return observation_lib.observation_size(self.observation_kind,
                                            self.observation_spec.inputs)

  @property
  def training_steps(self) -> Optional[int]:
    """Inner steps of a training episode, K * T (None if T is unknown).

    T is ``num_decisions``, else the training config's ``env.num_decisions``
    (files written before ``num_decisions`` was stored for every
    controller). None for a 'fraction' controller: its training runs had
    many lengths, each with the same T decisions.
    """
    obs = self.observation_spec
    if obs.decision_schedule == "fraction":
      return None
    t = obs.num_decisions
    if t is None:
      t = (self.config.get("env") or {}).get("num_decisions")
    return None if t is None else int(obs.steps_per_decision) * int(t)

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d.pop("observation_spec")
    d.update({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
              for k, v in self.observation_spec.to_flat().items()})
    return json.dumps(d, sort_keys=True, default=json_default)

  @classmethod
  def from_fields(cls, **fields) -> "ControllerSpec":
    """A spec from flat fields: the observation spec's by their flat names
    (``steps_per_decision=``, ``observation=``, ``log_lr_observation=``,
    ...; ``ObservationSpec.from_flat``), the others as they are. What a
    controller file holds; unknown names raise ValueError listing the
    known ones. Not checked (``check``)."""
    default = cls.__dataclass_fields__["observation_spec"].default
    spec, fields = observation_spec_lib.split_fields(
        fields, cls, "spec", num_decisions=default.num_decisions,
        num_val_examples=default.num_val_examples)
    fields["observation_spec"] = spec
    for name in ("hidden_sizes", "initial_lrs", "first_dense", "last_dense",
                 "monitored_layer"):
      if name in fields:
        fields[name] = tuple(fields[name])
    return cls(**fields)

  def with_fields(self, **changes) -> "ControllerSpec":
    """This spec with fields changed, the observation spec's by their flat
    names (``protocol=``, ``num_decisions=``, ...). Not checked."""
    obs, changes = observation_spec_lib.split_fields(
        changes, type(self), "spec", base=self.observation_spec)
    return dataclasses.replace(self, observation_spec=obs, **changes)

  @classmethod
  def from_json(cls, text: str) -> "ControllerSpec":
    return cls.from_fields(**json.loads(text)).check()


def json_default(x):
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


def make_network(spec: ControllerSpec) -> nn.Module:
  """The Flax module of ``spec`` (same classes and names the agents train)."""
  spec.check()
  log_std = float(np.log(spec.action_std))
  if spec.network == "gaussian_mlp":
    return networks.GaussianActor(1, tuple(spec.hidden_sizes), log_std,
                                  spec.learn_log_std)
  if spec.network == "gaussian_lstm":
    return networks.LSTMActor(1, spec.hidden_sizes[0], log_std,
                              spec.learn_log_std)
  return networks.QNetwork(spec.num_actions, tuple(spec.hidden_sizes))


@dataclasses.dataclass(frozen=True)
class Controller:
  """A spec and its params; ``act`` and ``next_lr`` are pure and jittable.

  Usage::

    action, carry = controller.act(controller.params, obs, carry)
    lr = controller.next_lr(lr, lr0, action)
  """
  spec: ControllerSpec
  params: Any

  @property
  def network(self) -> nn.Module:
    return make_network(self.spec)

  @property
  def samples(self) -> bool:
    """Whether ``act`` samples (its protocol's ``acting == 'sample'``)."""
    return self.spec.observation_spec.protocol.samples

  def initial_carry(self, batch_shape: Tuple[int, ...] = (),
                    key: Optional[chex.PRNGKey] = None) -> Any:
    """The carry at the start of a run.

    The network's recurrent carry (``()`` if feed-forward); for a sampling
    controller (``samples``) the pair ``(that carry, keys)`` with one key
    per entry of ``batch_shape``, split from ``key``.

    Raises:
      ValueError: a sampling controller without ``key``.
    """
    carry = networks.initial_carry(self.network, batch_shape)
    if not self.samples:
      return carry
    if key is None:
      raise ValueError(
          f"controller {self.spec.name!r} samples its actions (protocol "
          "acting='sample'): pass initial_carry(..., key=<a PRNG key>).")
    shape = tuple(batch_shape)
    keys = jax.random.split(key, int(np.prod(shape, dtype=int)))
    return carry, keys.reshape(shape + keys.shape[1:])

  def act(self, params: Any, obs: chex.Array, carry: Any = ()):
    """The trained policy's action: ``(action, carry)``.

    Gaussian actors: the mean clipped to the 'xu2019' bounds, shape
    ``obs.shape[:-1] + (1,)`` (the PPO agent's ``policy_fn``); a sampling
    controller (``samples``) clips ``mean + std * N(0, 1)`` drawn with the
    carry's key and returns the next key in the carry. Q-networks: the
    greedy action, int32 of shape ``obs.shape[:-1]``.
    """
    chex.assert_axis_dimension(obs, -1, self.spec.observation_size)
    net = self.network
    if self.spec.network == "q_mlp":
      q = net.apply(params, obs)
      return jnp.argmax(q, axis=-1).astype(jnp.int32), carry
    keys = None
    if self.samples:
      carry, keys = carry
    mean, log_std, carry = net.apply(params, obs, carry)
    if keys is not None:
      mean, keys = _gaussian_samples(keys, mean, jnp.exp(log_std))
      carry = (carry, keys)
    rule = lr_actions.action_rule(self.spec.action_type)
    low = jnp.asarray(rule.low, jnp.float32)
    high = jnp.asarray(rule.high, jnp.float32)
    return jnp.clip(mean, low, high), carry

  def next_lr(self, lr: chex.Numeric, lr0: chex.Numeric,
              action: chex.Array) -> jax.Array:
    """The LR after ``action`` (float32), as ``LREnv.step`` computes it."""
    return lr_actions.next_lr(self.spec.action_type, lr, lr0, action)

  def policy(self, obs: chex.Array, carry: Any = ()):
    """``act`` with this controller's params: an ``act_fn`` for run_episode."""
    return self.act(self.params, obs, carry)


def _gaussian_samples(keys: chex.Array, mean: chex.Array, std: chex.Array):
  """``mean + std * N(0, 1)`` per key of ``keys`` (leading batch axes)."""
  def one(key, mu, sigma):
    key, sub = jax.random.split(key)
    return mu + sigma * jax.random.normal(sub, mu.shape, mu.dtype), key
  for _ in range(mean.ndim - 1):
    one = jax.vmap(one)
  return one(keys, mean, std)


# ----------------------------------------------------------------------------
# Params checks.


def _abstract_params(spec: ControllerSpec):
  net = make_network(spec)
  obs = jnp.zeros((spec.observation_size,), jnp.float32)
  if spec.network == "q_mlp":
    init = lambda k: net.init(k, obs)
  else:
    carry = networks.initial_carry(net)
    init = lambda k: net.init(k, obs, carry)
  return jax.eval_shape(init, jax.random.PRNGKey(0))


def _shapes_by_path(tree) -> dict:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in flat}


def check_params(spec: ControllerSpec, params: Any) -> Any:
  """Raises ValueError unless ``params`` fit the network of ``spec``.

  Returns:
    ``params`` with the exact pytree structure of the network's ``init``
    (nested dicts), as float32 arrays.
  """
  abstract = _abstract_params(spec)
  want = _shapes_by_path(abstract)
  got = _shapes_by_path(params)
  if want != got:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(f"{k}: {got[k]} (expected {want[k]})"
                   for k in set(want) & set(got) if want[k] != got[k])
    raise ValueError(
        f"params do not match the network of controller {spec.name!r} "
        f"({spec.network}, hidden_sizes={spec.hidden_sizes}): missing "
        f"{missing or 'none'}; unexpected {extra or 'none'}; wrong shapes "
        f"{wrong or 'none'}.")
  state = flax.serialization.to_state_dict(params)
  restored = flax.serialization.from_state_dict(abstract, state)
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), restored)


def make_controller(spec: ControllerSpec, params: Any) -> Controller:
  """A ``Controller`` after checking the spec and the params against it."""
  spec.check()
  return Controller(spec, check_params(spec, params))


# ----------------------------------------------------------------------------
# Files.


def _digest(spec_text: str, params_bytes: bytes) -> str:
  return hashlib.sha256(spec_text.encode("utf-8") + params_bytes).hexdigest()


def _check_finite(params: Any, source: str):
  """A controller with a NaN or inf parameter cannot act: never written or
  read."""
  bad = [jax.tree_util.keystr(path) for path, x in
         jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
         if not np.all(np.isfinite(np.asarray(x, np.float64)))]
  if bad:
    raise ValueError(f"{source}: non-finite controller params at {bad}.")


def controller_to_bytes(controller: Controller) -> bytes:
  """The file contents of ``controller`` (see the module docstring).

  Raises:
    ValueError: the params hold a NaN or inf.
  """
  _check_finite(controller.params, f"controller {controller.spec.name!r}")
  spec_text = controller.spec.check().to_json()
  params_bytes = flax.serialization.to_bytes(
      jax.device_get(controller.params))
  return flax.serialization.msgpack_serialize({
      "format": FORMAT, "format_version": FORMAT_VERSION,
      "lr_meta_version": _lr_meta_version(), "spec": spec_text,
      "params": params_bytes, "sha256": _digest(spec_text, params_bytes)})


def controller_from_bytes(data: bytes, source: str = "<bytes>") -> Controller:
  """Parses and checks controller file contents; ``source`` names it in errors.

  Raises:
    ValueError: truncated or corrupted data, another format, another format
      version, params that do not fit the spec's network, or non-finite
      params.
  """
  try:
    header = flax.serialization.msgpack_restore(bytes(data))
  except Exception as e:  # msgpack raises several types for bad input.
    raise ValueError(f"{source}: not a readable controller file (truncated "
                     f"or corrupted msgpack): {e}") from e
  if not isinstance(header, dict) or header.get("format") != FORMAT:
    got = header.get("format") if isinstance(header, dict) else type(header)
    raise ValueError(f"{source}: format {got!r}; expected {FORMAT!r} (write "
                     "controller files with save_controller).")
  version = header.get("format_version")
  if version != FORMAT_VERSION:
    raise ValueError(
        f"{source}: format_version {version!r} (written by lr_meta "
        f"{header.get('lr_meta_version')!r}); this lr_meta "
        f"({_lr_meta_version()}) reads format_version {FORMAT_VERSION}.")
  missing = [k for k in ("spec", "params", "sha256") if k not in header]
  if missing:
    raise ValueError(f"{source}: missing fields {missing}.")
  spec_text, params_bytes = header["spec"], header["params"]
  if not isinstance(spec_text, str) or not isinstance(params_bytes, bytes):
    raise ValueError(f"{source}: corrupted spec or params field.")
  if _digest(spec_text, params_bytes) != header["sha256"]:
    raise ValueError(f"{source}: checksum mismatch; the file is corrupted.")
  try:
    spec = ControllerSpec.from_json(spec_text)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{source}: bad spec: {e}") from e
  try:
    params = flax.serialization.msgpack_restore(params_bytes)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{source}: unreadable params: {e}") from e
  _check_finite(params, source)
  try:
    return make_controller(spec, params)
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from e


def save_controller(path: str, controller: Controller) -> str:
  """Writes ``controller`` to ``path`` atomically; returns the path."""
  data = controller_to_bytes(controller)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.atomic_write(path, data)
  return path


def load_controller(path: str) -> Controller:
  """Reads and checks a controller file (see ``controller_from_bytes``)."""
  with open(path, "rb") as f:
    data = f.read()
  return controller_from_bytes(data, source=str(path))


# ----------------------------------------------------------------------------
# Controllers shipped with the package (lr_meta/pretrained/<name>.msgpack).

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "pretrained")


def pretrained_names() -> Tuple[str, ...]:
  """Names of the controllers shipped in ``lr_meta/pretrained/``."""
  if not os.path.isdir(PRETRAINED_DIR):
    return ()
  return tuple(sorted(f[:-len(".msgpack")] for f in os.listdir(PRETRAINED_DIR)
                      if f.endswith(".msgpack")))


def pretrained_controller(name: str) -> Controller:
  """Loads a shipped controller by name (offline; no download).

  Raises:
    ValueError: unknown name (the message lists the shipped ones), or a file
      that fails the checks of ``load_controller``.
  """
  names = pretrained_names()
  if name not in names:
    raise ValueError(f"No pretrained controller {name!r}; shipped: "
                     f"{names or 'none'} (in {PRETRAINED_DIR}).")
  return load_controller(os.path.join(PRETRAINED_DIR, f"{name}.msgpack"))
