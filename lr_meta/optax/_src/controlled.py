"""A learned LR controller inside any optax loop (Xu, Dai, Kemp, Metz 2019).

``controlled(base, controller)`` wraps an optax optimizer whose learning rate
is injectable (``optax.inject_hyperparams``) and, every ``every`` calls, sets
that learning rate from the controller, as ``lr_meta.envs.LREnv`` does during
training (Xu et al. 2019, section 2.2: a decision every 10 inner steps).

Usage, with a shipped controller (one extra line in a train step)::

  controller = lmo.pretrained_controller("fmnist_lenet_xu2019_cpu")
  tx = lmo.controlled(
      optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), controller,
      num_classes=10, num_steps=500)

  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(
        grads, opt_state, params, loss=loss,
        **lmo.probe_inputs(opt_state, apply_fn, params, x_probe, y_probe))
    return optax.apply_updates(params, updates), opt_state

  lmo.current_lr(opt_state)   # the LR in use, wherever `controlled` sits
  lmo.controller_readout(opt_state)   # the whole decision, to log

``current_lr(state)`` is the float32 LR in use; ``controller_readout(state)``
(a ``ControllerReadout`` of scalars, jittable, for TensorBoard / CLU / W&B)
adds ``lr0``, the last decision's ``action`` (0 before the first), its
``inputs`` by name (``{name: value}`` of the observation it acted on, names
from ``lr_meta.features.observation.observation_names``), ``decisions``,
``skipped_decisions`` and ``next_decision`` (the call of the next one). Both
find the ``ControlledState`` wherever ``controlled`` sits (``optax.chain``,
``optax.MultiSteps``, ``flax.nnx.Optimizer``'s ``opt_state``).

Call ``update(grads, state, params, loss=..., val_loss=..., predictions=...)``
at every step, like ``optax.contrib.reduce_on_plateau``'s ``value=``:

* ``loss``: the training loss of this step's batch at ``params`` (required);
* ``predictions``: softmax probabilities ``(B, classes)`` of a FIXED probe
  batch at ``params`` ('xu2019' controllers; the shape is fixed at
  construction: ``(num_val_examples, num_classes)`` or ``predictions_shape``,
  with ``num_val_examples`` of ``spec.observation_spec``). The controllers
  were trained on the first ``num_val_examples`` validation examples; the
  same examples each time is what makes "prediction change" meaningful;
* ``val_loss``: the loss on that probe batch (optional; if missing the
  observation uses the train loss in its place).

Generalist controllers (``spec.observation_spec.kind == 'scale_free'``,
``lr_meta.features.scale_free``) need no predictions: ``update`` takes
``loss`` and, at decisions, ``val_loss``; their observation spec's
``decision_schedule`` is ``'fraction'``: ``controlled(base, controller,
num_steps=T)`` spreads its ``num_decisions`` decisions over the run at calls
``floor(t T / D)``, whatever T. ``num_steps`` means the run's update calls
for every controller; only what it sets depends on the schedule (see
``controlled``).

``predictions`` and ``val_loss`` are only read at decision steps;
``probe_inputs`` computes them under ``jax.lax.cond(decision_due(state),
...)``, so the probe costs a forward pass at decisions only (and no softmax
for a controller that does not observe predictions).

A controller trained under another ``spec.observation_spec.protocol``
(``lr_meta.features.xu_protocol``; e.g. the official code's) is fed as it
was trained: ``protocol.predictions == 'train_batch'``: ``predictions`` is
the softmax of THIS step's training batch (the forward pass the loss comes
from; ``predictions_shape`` is then ``(batch size, classes)``);
``protocol.val_loss == 'val_split'``: ``val_loss`` on the whole validation
split; ``protocol.train_loss == 'step'``: this call's ``loss`` instead of
the mean over the window; ``protocol.first_observation == 'ones'``: the
first decision acts on an all-ones observation (the inputs of call 0 are
not observed); ``protocol.acting == 'sample'``: actions are Gaussian
samples drawn from ``fold_in(key, 1)``, reproducible given ``key``.

A decision whose observation (or the LR it gives) is not finite, e.g. from
NaN predictions or a NaN loss, is skipped: the feature EMAs, the
controller's carry, the LR and ``obs`` stay as they were, and
``ControlledState.skipped_decisions`` counts it, so one bad batch cannot
freeze the LR for the rest of the run and the user can see it happened.

Outside the training conditions ``controlled`` warns
(``ControllerMismatchWarning``, once, at construction): a probe of another
size than the controller's, or a run (``num_steps``) longer than the
training episodes of a controller that does not observe run progress (it
keeps acting as at the end of its training episode, e.g. decaying further).

In a real training loop (each convention is tested in
tests/test_controlled_conventions.py):

* Gradient accumulation, ``optax.MultiSteps(controlled(...), k)``:
  ``controlled`` counts optimizer steps, not micro-batches: ``num_steps``
  is the run's optimizer steps and decision t falls on optimizer step
  ``floor(t T / D)``. MultiSteps calls ``update`` at every micro-batch and
  keeps the state of the k-th call only, so the value read is the ``loss=``
  of the LAST micro-batch call. Pass there the MEAN of the accumulated
  micro-batch losses (at every micro-batch, the running mean of the
  micro-batch losses so far, as MultiSteps averages the gradients): the
  loss of the batch the step's gradient is the mean over, so the train
  loss, its log-slope and its noise (``loss_cv``) are those of the
  effective batch, as in training; one micro-batch's loss would be another
  batch than the step's and noisier by about sqrt(k). ``val_loss`` (the
  probe at the same params, identical for the k calls) needs nothing.
* Mixed precision: bfloat16 params and grads are fine; the observation,
  the controller, its carry and the LR stay float32. The base's injected
  LR must be float32 too: ``optax.inject_hyperparams(opt,
  hyperparam_dtype=jnp.float32)`` (by default it casts hyperparameters to
  the params' dtype; ``init`` raises a ValueError then). On the mnist1d
  MLP the bfloat16 run's LR path stays within rtol 1e-2 of the float32
  run's.
* Abstract init, sharding, checkpoints: ``jax.eval_shape(tx.init, params)``
  works (abstract params, with shardings too); the ``ControlledState``'s
  own leaves are scalars (replicated) and the base state's follow the
  params as the base optimizer's do (an eager ``init`` of sharded params,
  or ``jax.jit(tx.init)`` under explicit mesh axes; a jitted init under
  auto axes places its outputs itself, as for any optax optimizer, so give
  it ``out_shardings``). A sharded run takes the single-device run's LRs
  (up to the reductions' float32 rounding: rtol 1e-6 in the test).
  Restore a checkpoint into ``jax.eval_shape(tx.init, params)`` of the
  same ``tx``: a resumed run continues bit for bit; a state of another
  shape (another controller, base optimizer, ``num_steps`` / ``every``,
  probe or model) makes ``update`` raise a ValueError at trace time
  instead of running on.
* ``flax.nnx.Optimizer(model, tx, wrt=nnx.Param)``: pass the controller's
  inputs through ``optimizer.update(model, grads, loss=...,
  **probe_inputs(optimizer.opt_state, apply_fn, model, x, y))``
  (``apply_fn(model, x)``).

Correspondence with the environment (so that the same inputs give the same
LR trajectory): at call ``i = t * every`` (decision t) the observation uses
``params`` (= the environment's parameters after ``t * every`` inner steps),
``predictions``/``val_loss`` at those params, the mean of the ``every``
training losses passed at calls ``i - every .. i - 1`` (decision 0: this
call's loss) and the LR of the previous window; the new LR then applies from
this call on. With the 'fraction' schedule the windows are the calls between
decisions (``lr_meta.features.observation.decision_step``) and the train
loss is their sum over their count, as in the environment.
"""

from typing import Any, Callable, NamedTuple, Optional
import warnings

import chex
import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

from lr_meta import checks
from lr_meta.features import decision as decision_lib
from lr_meta.features import dynamics
from lr_meta.features import observation as observation_lib
from lr_meta.features import params as params_lib
from lr_meta.features import scale_free
from lr_meta.optax._src import states as states_lib
from lr_meta.policies import controller as controller_lib
from lr_meta.tasks import objectives

__all__ = [
    "ControlledState", "ControllerMismatchWarning", "ControllerReadout",
    "controlled", "controller_readout", "current_lr", "decision_due",
    "probe_inputs",
]


class ControlledState(NamedTuple):
  """State of ``controlled``.

  Attributes:
    base_state: the wrapped optimizer's state (its learning rate is set here).
    features: EMA state of the Xu 2019 features (``()`` for 'fu2016').
    carry: the controller's recurrent carry (``()`` if feed-forward).
    lr: learning rate in use (float32).
    lr0: learning rate at ``init`` (the 'fu2016' reset target).
    count: update calls so far (int32).
    losses: ``(every,)`` training losses since the last decision.
    obs: the last observation the controller acted on.
    skipped_decisions: decisions skipped because their observation or the
      LR it gave was not finite (int32; see the module docstring).
    window: sums over the calls since the last decision (train losses and,
      for 'scale_free' controllers, update-to-weight ratios).
    decisions: decisions taken (skipped ones included; int32).
    next_decision: the call (``count``) of the next decision (int32).
    action: the action of the last decision taken (float32 scalar; 0 before
      the first; kept when a decision is skipped).
  """
  base_state: optax.OptState
  features: Any
  carry: Any
  lr: jax.Array
  lr0: jax.Array
  count: jax.Array
  losses: jax.Array
  obs: jax.Array
  skipped_decisions: jax.Array
  window: scale_free.Window
  decisions: jax.Array
  next_decision: jax.Array
  action: jax.Array


class ControllerMismatchWarning(UserWarning):
  """A controller used outside the conditions it was trained in."""


_INJECT = ("build it with optax.inject_hyperparams(optax.sgd)(learning_rate="
           "<a number>) (any optax optimizer, possibly inside optax.chain)")


def _get_lr(base_state) -> jax.Array:
  """The one injectable learning rate of ``base_state``, or a clear error."""
  found = otu.tree_get_all_with_path(base_state, "learning_rate")
  # inject_hyperparams keeps a schedule's state under `hyperparams_states`
  # and recomputes the LR from it at every update, which would silently
  # overwrite the controller's LR.
  if any(getattr(k, "name", None) == "hyperparams_states"
         for path, _ in found for k in path):
    raise ValueError(
        "controlled sets the learning rate itself, but the base optimizer's "
        "learning_rate is a schedule (optax.inject_hyperparams would "
        "recompute it from the schedule at every step, overriding the "
        "controller); pass a number, the initial LR lr0: " + _INJECT + ". "
        "For a warm-up (not seen in training), scale the controlled updates: "
        "optax.chain(controlled(...), optax.scale_by_schedule(lambda step: "
        "jnp.minimum(1.0, (step + 1) / warmup_steps))); current_lr then "
        "still reports the controller's LR, before the warm-up factor.")
  if not found:
    raise ValueError("controlled needs a base optimizer with an injectable "
                     "learning rate: " + _INJECT + ".")
  if len(found) > 1:
    paths = [jax.tree_util.keystr(path) for path, _ in found]
    raise ValueError(
        f"controlled sets one learning rate, but the base optimizer's state "
        f"holds {len(found)}: {paths}; inject only the LR the controller "
        "should set (other transforms with a fixed learning_rate).")
  return found[0][1]


def _check_lr_dtype(lr: Any) -> None:
  """ValueError unless the base's LR is a float of at least 32 bits: the
  controller's float32 LR must reach the update unrounded."""
  dtype = jnp.result_type(lr)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"the base optimizer's learning_rate is a {dtype} (an integer "
        "learning_rate=1 stays one in optax.inject_hyperparams): the "
        "controller's LR would be truncated; pass a float, e.g. "
        "learning_rate=1.0.")
  if jnp.finfo(dtype).bits < 32:
    raise ValueError(
        f"the base optimizer holds its learning_rate in {dtype} "
        "(optax.inject_hyperparams casts its hyperparameters to the params' "
        "dtype unless told otherwise): the controller's float32 LR would be "
        f"rounded to {dtype} at every step (and e.g. Adam's b2=0.999 is 1.0 "
        "in bfloat16). Build it with optax.inject_hyperparams(<optimizer>, "
        "hyperparam_dtype=jnp.float32)(learning_rate=...).")


def _set_lr(base_state, lr):
  old = _get_lr(base_state)
  return otu.tree_set(base_state,
                      learning_rate=jnp.asarray(lr, jnp.asarray(old).dtype))


def _controlled_state(state: Any) -> ControlledState:
  """The one ``ControlledState`` inside an optimizer state (e.g. a chain's)."""
  return states_lib.find_state(state, ControlledState)


def decision_due(state: Any) -> jax.Array:
  """True when the next ``update`` of this ``ControlledState`` decides.

  ``state`` may be the ``ControlledState`` or any optimizer state holding
  exactly one (e.g. inside ``optax.chain``).
  """
  s = _controlled_state(state)
  return s.count == s.next_decision


def current_lr(state: Any) -> jax.Array:
  """The controller's learning rate in use (float32 scalar).

  The LR that the last ``update`` applied (before the first: the initial
  LR). ``state`` may be the ``ControlledState`` or any optimizer state
  holding exactly one, wherever ``controlled`` sits in an ``optax.chain``.
  """
  return jnp.asarray(_controlled_state(state).lr)


class ControllerReadout(NamedTuple):
  """What the controller did, as numbers for a metrics writer.

  ``controller_readout(opt_state)``; every leaf is a scalar, so the tuple
  goes to TensorBoard / CLU / W&B as is (e.g. ``{f"controller/{k}": v for
  k, v in readout._asdict().items()}`` with ``inputs`` flattened).

  Attributes:
    lr: the learning rate in use (float32; ``current_lr``).
    lr0: the initial learning rate (float32).
    action: the action of the last decision taken (float32; 0 before the
      first decision; a skipped decision keeps the previous one).
    inputs: ``{name: float32 scalar}``: the last observation the controller
      acted on, by ``lr_meta.features.observation.observation_names`` (all
      0 before the first decision).
    decisions: decisions taken so far, skipped ones included (int32).
    skipped_decisions: decisions skipped for a non-finite observation or LR
      (int32).
    next_decision: the ``update`` call (0-based) of the next decision
      (int32).
  """
  lr: jax.Array
  lr0: jax.Array
  action: jax.Array
  inputs: dict[str, jax.Array]
  decisions: jax.Array
  skipped_decisions: jax.Array
  next_decision: jax.Array


def _observation_kind(s: ControlledState) -> str:
  """The observation kind of a ``ControlledState``, from its feature state
  and its observation's length."""
  features = s.features
  size = jnp.shape(s.obs)[-1] - _num_optional_inputs(s)
  kinds = [k for k in observation_lib.OBSERVATION_KINDS
           if observation_lib.observation_size(k) == size
           and observation_lib.observation_parts(k).scale_free
           == isinstance(features, scale_free.ScaleFreeState)
           and observation_lib.observation_parts(k).dynamics
           == isinstance(features, dynamics.DynamicsState)]
  if len(kinds) != 1:
    raise ValueError(f"controller_readout: cannot tell the observation of a "
                     f"ControlledState with {size} inputs and features "
                     f"{type(features).__name__} (candidates {kinds}).")
  return kinds[0]


def _num_optional_inputs(s: ControlledState) -> int:
  """How many optional scale-free inputs the state's observation holds."""
  memory = getattr(s.features, "memory", ())
  return int(jnp.shape(memory)[0]) if not isinstance(memory, tuple) else 0


def controller_readout(state: Any) -> ControllerReadout:
  """The controller's LR, last action and inputs, for logging.

  A pytree of scalars (``ControllerReadout``), pure and jittable (read it
  inside or outside the train step). ``state`` may be the
  ``ControlledState`` or any optimizer state holding exactly one, wherever
  ``controlled`` sits in an ``optax.chain`` (as ``current_lr``).
  """
  s = _controlled_state(state)
  # The state holds the optional inputs' count, not their names.
  names = observation_lib.observation_names(_observation_kind(s)) + tuple(
      f"optional_input_{i}" for i in range(_num_optional_inputs(s)))
  obs = jnp.asarray(s.obs, jnp.float32)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  i32 = lambda x: jnp.asarray(x, jnp.int32)
  return ControllerReadout(
      lr=f32(s.lr), lr0=f32(s.lr0), action=f32(s.action),
      inputs={name: obs[i] for i, name in enumerate(names)},
      decisions=i32(s.decisions),
      skipped_decisions=i32(s.skipped_decisions),
      next_decision=i32(s.next_decision))


def _leaf_signatures(tree: Any, dtypes: bool) -> list[str]:
  return [str(tuple(jnp.shape(x))) + (f" {getattr(x, 'dtype', '')}"
                                      if dtypes else "")
          for x in jax.tree.leaves(tree)]


def _check_state_matches(state: Any, expected: ControlledState) -> None:
  """ValueError unless ``state`` has the structure, shapes and dtypes that
  ``init`` gives (``expected``: its ``jax.eval_shape``; trace time only)."""
  if not isinstance(state, ControlledState):
    raise ValueError(
        f"controlled.update got a {type(state).__name__} as its state; "
        "expected the ControlledState of this controlled's init (restore a "
        "checkpoint into jax.eval_shape(tx.init, params)).")
  problems = []
  for name in ControlledState._fields:
    got, want = getattr(state, name), getattr(expected, name)
    # The base optimizer's state: its leaves' shapes (its containers follow
    # the params', e.g. a dict or a FrozenDict; optax checks those itself).
    own = name != "base_state"
    if own and jax.tree.structure(got) != jax.tree.structure(want):
      problems.append(f"{name} is {jax.tree.structure(got)}, expected "
                      f"{jax.tree.structure(want)}")
      continue
    got, want = _leaf_signatures(got, own), _leaf_signatures(want, own)
    if got != want:
      problems.append(f"{name} has leaves {got}, expected {want}")
  if problems:
    raise ValueError(
        "controlled.update: the optimizer state does not match this "
        "controller (saved with another controller, base optimizer, "
        "num_steps/every, probe shape or model?); restore a checkpoint into "
        "jax.eval_shape(tx.init, params) of the same tx. Mismatches: "
        + "; ".join(problems) + ".")


def probe_inputs(
    state: Any,
    apply_fn: Callable[..., chex.Array],
    params: Any,
    x: Any,
    y: Optional[chex.Array] = None,
    *,
    mask: Optional[chex.Array] = None,
    loss_fn: Optional[Callable[[chex.Array, Any], chex.Array]] = None,
) -> dict[str, jax.Array]:
  """``predictions`` and ``val_loss`` of a probe batch, only at decisions.

  The keyword arguments of ``controlled``'s ``update`` that come from the
  probe batch::

    updates, state = tx.update(grads, state, params, loss=loss,
                               **probe_inputs(state, apply_fn, params, x, y))

  At a decision step (``decision_due(state)``): the softmax of the logits
  ``apply_fn(params, x)`` and their mean cross entropy with the integer
  labels ``y``; otherwise zeros of the same shapes, which ``update`` does
  not read. Both sit in one ``jax.lax.cond``, so inside ``jax.jit`` the
  forward pass runs at decisions only. A controller that does not observe
  predictions (e.g. a scale-free generalist) gets ``val_loss`` only (no
  softmax; ``{}`` if neither ``y`` nor ``loss_fn`` is given). A state
  without ``controlled`` (any other optimizer, made to accept the keyword
  arguments with ``optax.with_extra_args_support``) gets ``{}``: one train
  step serves the controller and the schedules it is compared with.

  Logits may have any rank ``(B, ..., C)`` with labels ``(B, ...)``: a
  language model's ``(B, L, V)`` logits and ``(B, L)`` next tokens. The
  loss is then the mean over every position (``mask``: over the positions
  it marks, ``lr_meta.tasks.objectives.token_cross_entropy``), and the
  predictions have one row per position, ``(B * L, V)``: the shape to give
  ``controlled``'s ``predictions_shape``. Rank-2 logits give the plain
  softmax and mean cross entropy, as before. A model that is not a
  classifier (an autoencoder, a regression) passes ``loss_fn(outputs, y)
  -> scalar`` instead; it then has no predictions, so only controllers that
  do not observe them (the generalist) can use it.

  Args:
    state: the optimizer state before this ``update`` (holding one
      ``ControlledState``).
    apply_fn: ``apply_fn(params, x) -> outputs`` in evaluation mode (no
      dropout, batch-norm statistics not updated): logits ``(B, ..., C)``
      unless ``loss_fn`` is given.
    params: the params passed to this ``update``.
    x: the fixed probe inputs, the same examples at every step (the
      controller's "prediction change" compares them across decisions).
    y: their integer labels, shape ``(B, ...)`` (the logits' shape without
      its class axis); or, with ``loss_fn``, whatever it takes as targets;
      None: no ``val_loss`` (the controller then observes the train loss in
      its place).
    mask: optional ``(B, ...)`` weights of the positions counted in the
      cross entropy (padding 0); only with integer labels.
    loss_fn: ``loss_fn(outputs, y) -> scalar`` for outputs that are not
      class logits; replaces the cross entropy.

  Returns:
    ``{"predictions": ..., "val_loss": ...}`` (``predictions`` only for a
    controller that observes them, ``val_loss`` only if ``y`` or
    ``loss_fn`` is given); ``{}`` if ``state`` holds no
    ``ControlledState``.

  Raises:
    ValueError: ``state`` holds several ``ControlledState``; a controller
      that observes predictions with ``loss_fn``; ``mask`` with
      ``loss_fn``.
  """
  if not states_lib.find_states(state, ControlledState):
    return {}
  if loss_fn is not None and mask is not None:
    raise ValueError("probe_inputs: mask= weights the cross entropy; with "
                     "loss_fn= apply the mask inside your loss.")
  # Only 'dynamics' controllers keep a DynamicsState of the predictions.
  wants_predictions = isinstance(_controlled_state(state).features,
                                 dynamics.DynamicsState)
  if wants_predictions and loss_fn is not None:
    raise ValueError(
        "probe_inputs: this controller observes softmax predictions of the "
        "probe (an 'xu2019' dynamics controller), which a model scored by "
        "loss_fn= does not have; use a controller that does not observe "
        "them, e.g. pretrained_controller('generalist').")
  has_loss = y is not None or loss_fn is not None
  if not wants_predictions and not has_loss:
    return {}

  def probe(_):
    outputs = apply_fn(params, x)
    out = {}
    if loss_fn is not None:
      out["val_loss"] = jnp.asarray(loss_fn(outputs, y), jnp.float32)
      return out
    _check_probe(outputs, y, mask)
    if wants_predictions:
      out["predictions"] = jax.nn.softmax(outputs).reshape(
          -1, outputs.shape[-1])
    if y is not None:
      out["val_loss"] = objectives.token_cross_entropy(outputs, y, mask)
    return out

  shapes = jax.eval_shape(probe, None)
  skip = lambda _: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  return jax.lax.cond(decision_due(state), probe, skip, None)


def _check_probe(outputs: Any, y: Any, mask: Any) -> None:
  """ValueError unless the probe's logits, labels and mask fit together."""
  shape = tuple(jnp.shape(outputs))
  if not 2 <= len(shape) <= 6:
    raise ValueError(
        f"probe_inputs: apply_fn(params, x) gave outputs of shape {shape}; "
        "allowed: class logits (B, ..., C) of rank 2 to 6 (or pass "
        "loss_fn=<loss of outputs and y> for outputs that are not logits).")
  if y is None:
    return
  want = shape[:-1]
  dtype = jnp.result_type(y)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(
        f"probe_inputs: labels y of dtype {dtype}; allowed: integer class "
        f"indices of shape {want} (the logits' {shape} without the class "
        "axis). One-hot or soft labels: pass loss_fn=<loss of outputs and "
        "y> instead.")
  if tuple(jnp.shape(y)) != want:
    raise ValueError(
        f"probe_inputs: labels y of shape {tuple(jnp.shape(y))} do not match "
        f"the logits of shape {shape}; allowed: labels of shape {want} (one "
        "integer class per example, or per position of a sequence).")
  if mask is not None and tuple(jnp.shape(mask)) != want:
    raise ValueError(
        f"probe_inputs: mask of shape {tuple(jnp.shape(mask))}; allowed: "
        f"{want}, the labels' shape.")


def _predictions_shape(spec: controller_lib.ControllerSpec,
                       predictions_shape: Optional[tuple[int, ...]],
                       num_classes: Optional[int]) -> tuple[int, int]:
  """The probe's ``(B, classes)``: B from the spec unless given (then warns
  if it differs from the spec's)."""
  trained = spec.observation_spec.num_val_examples
  if num_classes is not None:
    checks.check_int("num_classes", num_classes, 1, "the classes of your "
                     "model's softmax")
  if predictions_shape is None:
    if trained is None:
      raise ValueError(
          f"controller {spec.name!r} observes the softmax predictions of a "
          "probe batch and was trained on the whole validation split of its "
          "task: pass predictions_shape=(probe examples, classes).")
    if num_classes is None:
      raise ValueError(
          f"controller {spec.name!r} observes the softmax predictions of a "
          f"fixed probe batch of {trained} validation examples: pass "
          "num_classes=<classes of your model> (the probe shape is then "
          f"({trained}, num_classes)) or predictions_shape=(B, classes).")
    return (trained, num_classes)
  shape = tuple(predictions_shape)
  if (len(shape) != 2 or
      any(not isinstance(d, int) or isinstance(d, bool) or d < 1
          for d in shape)):
    raise ValueError(f"predictions_shape={predictions_shape!r}; allowed: "
                     "(probe examples, classes), two integers >= 1.")
  if num_classes is not None and shape[1] != num_classes:
    raise ValueError(f"predictions_shape={shape} has {shape[1]} classes but "
                     f"num_classes={num_classes}; pass one of them.")
  if trained is not None and shape[0] != trained:
    warnings.warn(
        f"controller {spec.name!r} was trained with a probe of {trained} "
        f"validation examples; predictions_shape={shape} gives it "
        f"{shape[0]}. Its prediction features are variances over the probe, "
        "so another size changes their noise; to match training, probe the "
        f"first {trained} examples of your validation split.",
        ControllerMismatchWarning, stacklevel=3)
  return shape


def _warn_if_past_horizon(spec: controller_lib.ControllerSpec,
                          run_steps: Optional[int]) -> None:
  """Warns when a controller without run progress runs past its training."""
  trained = spec.training_steps
  if spec.uses_progress or run_steps is None or trained is None:
    return
  if run_steps > trained:
    warnings.warn(
        f"controller {spec.name!r} does not observe run progress and was "
        f"trained on runs of {trained} steps; this run has {run_steps}. "
        f"After step ~{trained} it keeps acting as near the end of a "
        f"{trained}-step run (the shipped ones keep lowering the LR). "
        "Compare it with tuned schedules on your run before trusting it, or "
        "use a controller with observation 'dynamics+progress' "
        "(fmnist_mlp_xu2019_progress_cpu).",
        ControllerMismatchWarning, stacklevel=3)


def controlled(
    base_optimizer: optax.GradientTransformation,
    controller: controller_lib.Controller,
    every: Optional[int] = None,
    *,
    num_classes: Optional[int] = None,
    num_steps: Optional[int] = None,
    predictions_shape: Optional[tuple[int, ...]] = None,
    first_dense: Optional[params_lib.LayerSpec] = None,
    last_dense: Optional[params_lib.LayerSpec] = None,
    monitored_layer: Optional[params_lib.LayerSpec] = None,
    key: Optional[chex.PRNGKey] = None,
    num_decisions: Optional[int] = None,
) -> optax.GradientTransformationExtraArgs:
  """Sets the LR of ``base_optimizer`` from ``controller`` every ``every`` steps.

  Args:
    base_optimizer: an optax optimizer built with ``optax.inject_hyperparams``
      so that its state holds one ``learning_rate``; its value at ``init`` is
      the initial LR ``lr0``.
    controller: a ``Controller`` (``lr_meta.optax.pretrained_controller``,
      ``load_controller``).
    every: steps between decisions of an 'every' controller; default its
      training K (``spec.observation_spec.steps_per_decision``, Xu et al.:
      10). Not for 'fraction' controllers (they decide at fractions of
      ``num_steps``).
    num_classes: classes of the model's softmax ('xu2019' controllers): the
      ``predictions`` passed to ``update`` then have the shape
      ``(spec.observation_spec.num_val_examples, num_classes)``, the probe
      size the controller was trained with.
    num_steps: the steps (``update`` calls) of the whole run, T: one
      meaning for every controller; what it sets follows the spec's
      ``decision_schedule``. 'fraction' controllers (the generalists)
      require it: their D = ``spec.observation_spec.num_decisions``
      decisions fall at calls ``floor(t T / D)``, t = 0..D-1, whatever T
      (``every`` is then not given). 'every' controllers decide every
      ``every`` calls; for
      'dynamics+progress' ones T sets the progress horizon
      (``num_decisions = ceil(T / every)``); for the others it is checked
      against the training episodes' ``spec.training_steps`` (a
      ``ControllerMismatchWarning`` if the run is longer).
    predictions_shape: ``(B, classes)`` of the ``predictions``, for a probe
      of another size than the spec's (warns; instead of ``num_classes``).
    first_dense, last_dense: layers whose kernel mean/var are observed
      ('xu2019'); default: the first / last 2-D kernel of the params given
      to ``init`` in dict iteration order (pass params straight from
      ``model.init``, or name the layers; see ``lr_meta.features.params``).
    monitored_layer: layer of the weight statistics ('fu2016'); default: the
      last conv layer, else the last dense layer (as ``LREnv``).
    key: PRNG key of the initial "previous predictions" noise (U[0, 1), as in
      training) and, for a sampling controller, of its actions
      (``fold_in(key, 1)``); default ``jax.random.PRNGKey(0)``.
    num_decisions: the decisions of the whole run, instead of
      ``num_steps`` (not both; 'every' controllers only, a 'fraction'
      controller takes its spec's D); for 'dynamics+progress' controllers
      the observed progress is ``min(decisions so far / num_decisions, 1)``.
      Without either, the training episodes' T
      (``spec.observation_spec.num_decisions``).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` takes
    ``params`` and the keyword arguments ``loss`` (required), ``val_loss``
    and ``predictions`` (see the module docstring); other extra args are
    passed on to the base optimizer. For a controller trained behind an LR
    range test (``spec.observation_spec.range_test``) it is
    ``lr_meta.optax.range_tested`` with those settings: the sweep first,
    then this controller.
  """
  spec = controller.spec.check()
  if spec.observation_spec.range_test:
    # A controller trained behind an LR range test gets the same sweep in
    # front (range_tested builds on this function; imported here to avoid
    # the cycle).
    # pylint: disable-next=g-import-not-at-top
    from lr_meta.optax._src import range_test
    return range_test.range_tested(
        base_optimizer, controller, num_steps=num_steps, every=every,
        num_classes=num_classes, predictions_shape=predictions_shape,
        first_dense=first_dense, last_dense=last_dense,
        monitored_layer=monitored_layer, key=key, num_decisions=num_decisions)
  parts = observation_lib.observation_parts(spec.observation_kind)
  schedule = _decision_schedule(spec, every, num_steps, num_decisions)
  if parts.dynamics:
    predictions_shape = _predictions_shape(spec, predictions_shape,
                                           num_classes)
  if spec.uses_progress:
    checks.check_int("num_decisions", schedule.num_decisions, 1, "the run's "
                     "decisions, for the progress feature")
  _warn_if_past_horizon(spec, schedule.run_steps)
  base = optax.with_extra_args_support(base_optimizer)
  key = jax.random.PRNGKey(0) if key is None else key
  observer = _Observer(spec, schedule, first_dense, last_dense,
                       monitored_layer)

  def init_state(params):
    return _initial_state(base, controller, schedule, predictions_shape, key,
                          params)

  def init_fn(params):
    observer.resolve(params)   # the layers, in creation order
    return init_state(params)

  def update_fn(updates, state, params=None, *, loss=None, val_loss=None,
                predictions=None, **extra_args):
    loss, val_loss = _check_update_inputs(spec, predictions_shape, params,
                                          loss, val_loss, predictions)
    _check_state_matches(state, jax.eval_shape(init_state, params))
    due = state.count == state.next_decision
    old = (state.features, state.carry, state.lr, state.obs, state.action)

    def decide(_):
      return _decide(controller, state, old, lambda: observer.observe(
          state, params, loss, val_loss, predictions))

    def keep(_):
      return old, state.skipped_decisions

    decided, skipped = jax.lax.cond(due, decide, keep, None)
    return _advance(base, state, decided, skipped, due, schedule, updates,
                    params, loss, spec, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class _Schedule(NamedTuple):
  """When a ``controlled`` run decides (``_decision_schedule``).

  Attributes:
    fraction: decisions at fixed fractions of ``run_steps`` (else every
      ``every`` calls).
    every: calls between 'every' decisions (1 for 'fraction': the length of
      the unused loss buffer).
    num_decisions: the run's decisions (the progress feature's horizon).
    run_steps: the run's update calls, None when not known.
  """
  fraction: bool
  every: int
  num_decisions: int
  run_steps: Optional[int]

  def call(self, t):
    """The ``count`` at which decision ``t`` is taken."""
    if self.fraction:
      return observation_lib.decision_step(t, self.run_steps,
                                           self.num_decisions)
    return jnp.asarray(t, jnp.int32) * self.every


def _decision_schedule(spec, every, num_steps, num_decisions) -> _Schedule:
  """The checked ``_Schedule`` of ``controlled``'s arguments (its docstring
  says what each means for 'every' and 'fraction' controllers)."""
  obs_spec = spec.observation_spec
  d = obs_spec.num_decisions
  if obs_spec.decision_schedule == "fraction":
    if every is not None:
      raise ValueError(
          f"every={every!r} for controller {spec.name!r}, which decides at "
          f"fixed fractions of a run ({d} decisions); "
          "pass num_steps=<the run's update calls> instead.")
    if (not isinstance(num_steps, int) or isinstance(num_steps, bool)
        or num_steps < d):
      raise ValueError(
          f"num_steps={num_steps!r}; allowed: an integer >= {d}, the run's "
          f"update calls (controller {spec.name!r} takes its {d} decisions at "
          "fixed fractions of the run).")
    if num_decisions not in (None, d):
      raise ValueError(f"num_decisions={num_decisions!r}; controller "
                       f"{spec.name!r} takes {d} (leave it None).")
    return _Schedule(True, 1, d, num_steps)
  if every is None:
    every = obs_spec.steps_per_decision
  checks.check_int("every", every, 1, "steps between decisions")
  if num_steps is not None and num_decisions is not None:
    raise ValueError(f"num_steps={num_steps!r} and num_decisions="
                     f"{num_decisions!r}; pass one of them (num_decisions "
                     "= ceil(num_steps / every)).")
  if num_steps is not None:
    checks.check_int("num_steps", num_steps, 1, "the run's update calls")
    return _Schedule(False, every, -(-num_steps // every), num_steps)
  if num_decisions is not None:
    checks.check_int("num_decisions", num_decisions, 1, "the run's "
                     "decisions, for the progress feature")
    return _Schedule(False, every, num_decisions, num_decisions * every)
  return _Schedule(False, every, d, None)


def _initial_state(base, controller, schedule, predictions_shape, key,
                   params) -> ControlledState:
  """The state before the first call: the base's state at its lr0, zero
  counters, the features' initial values."""
  spec = controller.spec
  base_state = base.init(params)
  _check_lr_dtype(_get_lr(base_state))
  lr0 = jnp.asarray(_get_lr(base_state), jnp.float32)
  # Scale-free reference losses: set from the first losses at the first
  # update (``_Observer.observe``).
  features = decision_lib.initial_features(
      spec.observation_spec, spec.action_type, train_loss=0.0, val_loss=0.0,
      predictions_shape=predictions_shape, key=key)
  zero = jnp.zeros([], jnp.int32)
  return ControlledState(
      base_state=base_state, features=features,
      carry=(controller.initial_carry(key=jax.random.fold_in(key, 1))
             if controller.samples else controller.initial_carry()),
      lr=lr0, lr0=lr0, count=zero,
      losses=jnp.zeros((schedule.every,), jnp.float32),
      obs=jnp.zeros((spec.observation_size,), jnp.float32),
      skipped_decisions=zero,
      window=scale_free.window_init(len(spec.observation_spec.inputs)),
      decisions=zero, next_decision=zero,
      action=jnp.zeros([], jnp.float32))


def _check_update_inputs(spec, predictions_shape, params, loss, val_loss,
                         predictions):
  """``(loss, val_loss)`` as float32 scalars; a clear error for a missing or
  misshapen input of ``update``."""
  if params is None:
    raise ValueError("controlled.update needs params (the controller "
                     "observes the weights).")
  if loss is None:
    raise ValueError("controlled.update needs loss=<this batch's training "
                     "loss> as a keyword argument.")
  if observation_lib.observation_parts(spec.observation_kind).dynamics:
    if predictions is None:
      raise ValueError(
          f"controller {spec.name!r} needs predictions=<softmax of the "
          f"probe batch>, shape {tuple(predictions_shape)} (pass "
          "**lr_meta.optax.probe_inputs(state, apply_fn, params, x, y)).")
    chex.assert_shape(predictions, tuple(predictions_shape))
  loss = jnp.asarray(loss, jnp.float32)
  chex.assert_rank(loss, 0)
  if val_loss is not None:
    val_loss = jnp.asarray(val_loss, jnp.float32)
    chex.assert_rank(val_loss, 0)
  return loss, val_loss


class _Observer:
  """The observation of a decision, through the environment's decision core
  (``lr_meta.features.decision``).

  The observed layers are resolved once, from the params given to ``init``
  (their dict order is the model's creation order; params inside a jitted
  update come with sorted keys); ``observe`` resolves them itself when
  ``init`` ran elsewhere (e.g. ``jax.eval_shape``).
  """

  def __init__(self, spec, schedule, first_dense, last_dense,
               monitored_layer):
    self.spec = spec
    self.parts = observation_lib.observation_parts(spec.observation_kind)
    self.schedule = schedule
    self.layer_specs = dict(first_dense=first_dense, last_dense=last_dense,
                            monitored_layer=monitored_layer)
    self.layers = None

  def resolve(self, params):
    self.layers = observation_lib.resolve_layers(
        params, self.spec.observation_kind, **self.layer_specs)

  def train_loss(self, state, loss):
    """The decision's train loss: this call's (protocol 'step'), else the
    window's mean (decision 0: this call's)."""
    if self.spec.observation_spec.protocol.train_loss == "step":
      return loss
    if self.schedule.fraction:
      mean = decision_lib.window_train_loss(state.window)
    else:
      mean = jnp.mean(state.losses)
    return jnp.where(state.count == 0, loss, mean)

  def observe(self, state, params, loss, val_loss, predictions):
    """``(observation, features)`` at this call (protocol
    ``first_observation='ones'``: all ones at call 0)."""
    if self.layers is None:
      self.resolve(params)
    spec, first = self.spec, state.count == 0
    train_loss = self.train_loss(state, loss)
    features = state.features
    if self.parts.scale_free:
      # The run's reference losses are its first call's: ``init`` has none.
      val_loss = train_loss if val_loss is None else val_loss
      start = decision_lib.initial_features(
          spec.observation_spec, spec.action_type, train_loss=loss,
          val_loss=val_loss, predictions_shape=None, key=None)
      features = jax.tree.map(lambda a, b: jnp.where(first, a, b), start,
                              features)
    return decision_lib.observe(
        spec.observation_spec, spec.action_type, self.layers, first=first,
        params=params, lr=state.lr, lr0=state.lr0,
        decisions_taken=state.decisions, train_loss=train_loss,
        val_loss=val_loss, predictions=predictions, features=features,
        window=state.window, num_decisions=self.schedule.num_decisions)


def _decide(controller, state, old, observe):
  """One decision: observe, act, the next LR; a non-finite observation or
  LR leaves ``old`` (features, carry, LR, observation, action) and counts a
  skipped decision."""
  obs, features = observe()
  action, carry = controller.act(controller.params, obs, state.carry)
  spec = controller.spec
  lr, features = decision_lib.act(
      spec.observation_spec, spec.action_type, lr=state.lr, lr0=state.lr0,
      action=action, features=features)
  finite = jnp.all(jnp.isfinite(obs)) & jnp.isfinite(lr)
  action = jnp.reshape(action, ()).astype(jnp.float32)
  new = jax.tree.map(lambda o, n: jnp.where(finite, n, o), old,
                     (features, carry, lr, obs, action))
  return new, state.skipped_decisions + (~finite).astype(jnp.int32)


def _advance(base, state, decided, skipped, due, schedule, grads, params,
             loss, spec, extra_args):
  """The base optimizer's update at the (maybe new) LR and the state after
  this call: counters, the next decision's call, the loss window."""
  features, carry, lr, obs, action = decided
  decisions = state.decisions + due.astype(jnp.int32)
  next_decision = jnp.where(due, schedule.call(decisions),
                            state.next_decision)
  # No reset at a decision: slots 0..every-1 are all rewritten before the
  # next decision reads them, and an O(every) clear per step would cost.
  losses = state.losses.at[state.count % schedule.every].set(loss)
  base_state = _set_lr(state.base_state, lr)
  updates, base_state = base.update(grads, base_state, params, **extra_args)
  inputs = spec.observation_spec.inputs
  window = jax.tree.map(lambda e, w: jnp.where(due, e, w),
                        scale_free.window_init(len(inputs)), state.window)
  if observation_lib.observation_parts(spec.observation_kind).scale_free:
    ratio, extras = scale_free.measure_step(inputs, grads, updates, params)
  else:
    ratio, extras = jnp.zeros((), jnp.float32), None
  window = scale_free.window_add(window, loss, ratio, extras)
  return updates, ControlledState(
      base_state=base_state, features=features, carry=carry, lr=lr,
      lr0=state.lr0, count=state.count + 1, losses=losses, obs=obs,
      skipped_decisions=skipped, window=window, decisions=decisions,
      next_decision=next_decision, action=action)
