"""Learning-rate control environment (Xu et al. 2019; Fu 2016; Daniel et al.
2016; Xu, Qin, Wang, Liu 2017).

One episode is one training run of a ``lr_meta.tasks.Task``. At each of the
``num_decisions`` decisions the agent's action changes the learning rate, then
``steps_per_decision`` (K) inner SGD steps run at that rate and the features are
computed, all inside the same jitted ``step``. The contract is the gymnax-style
one of ``lr_meta.envs.toy`` (pure, jittable, absorbing after ``terminated``).

``action_type='xu2019'`` (continuous, Xu et al. 2019 and the official TF1 code
``adaptive_learning_rate_tuner``):
  * action ``a`` (shape (1,)) clipped to ``[-0.2, 0.5]``, then
    ``lr <- lr * ((a - 0.15) * 0.1 + 1)`` (so ``a = 0.15`` keeps the LR);
  * observation ``'dynamics'`` (default): the 9 training-dynamics features
    of ``lr_meta.features.dynamics`` (order ``OBSERVATION_NAMES``), except
    that the LR entry (``dynamics.LR_INDEX``) is ``log10(lr)`` instead of the
    raw LR when ``params.observation_spec.log_lr`` (default True: raw LRs span
    1e-4..1e-1 and are invisible to a small MLP). Every observation is
    built by ``lr_meta.features.observation``, as in
    ``lr_meta.optax.controlled``. Predictions are the softmax outputs on the
    fixed validation subset, so the "prediction change" compares the same
    examples at consecutive decisions (less noisy than the code's consecutive
    training batches). The train loss is the mean over the K inner steps
    (at reset: the loss of the first training batch).
    ``'dynamics+progress'`` appends ``progress_feature`` = t / T (not in the
    paper; lets the policy anneal towards the end of a run).
    ``params.observation_spec.protocol`` (``xu_protocol.XuProtocol``)
    switches these inputs to the official code's, each alone or all at
    once (``XuProtocol.official()``): predictions and train loss from the
    forward pass of the training batch the next inner step trains on (at the
    parameters of the decision), the validation loss on the whole
    validation split the task holds, an all-ones observation at reset.
  * reward (``params.reward``):
      ``'val_loss_change'``: ``-(val_loss_t - val_loss_{t-1})``, whose sum over
        the episode is the total decrease of the validation loss;
      ``'fixed_baseline'``: ``reward_baseline - val_loss_t`` (the official
        code's "Fixed" baseline, ``2.0 - val_loss``);
      ``'log_val_loss_change'``: ``-(log val_loss_t - log val_loss_{t-1})``,
        whose sum is ``log(val_loss_0 / val_loss_T)``;
      ``'log_val_vs_reference'``: that change minus a reference run's over
        the same inner steps, ``-(log v_t - log v_{t-1}) + (log r(s_t) -
        log r(s_{t-1}))`` with ``s_t`` the inner step of decision t and
        ``log r`` interpolated in ``params.reference_log_val`` at
        ``params.reference_steps`` (e.g. the task at its default constant
        LR). A potential-based shaping (Ng, Harada & Russell 1999) of the
        previous reward: the return becomes ``log(r(s_T) / v_T)`` up to the
        constant ``log(v_0 / r(0))``, how far the run ends below the
        reference, so a task's own pace of progress (what separates one
        member of a distribution from another) leaves the advantages.

``action_type='fu2016'`` (discrete, Fu 2016):
  * 2 actions: 0 = ``lr <- 0.97 * lr``, 1 = reset ``lr <- lr0``;
  * observation: the 193 weight statistics of
    ``lr_meta.features.weight_stats`` of the last conv layer and the previous
    LR. MLPs (no conv layer) use the last dense kernel ``(in, out)`` viewed as
    a ``(1, 1, in, out)`` conv kernel.
  * reward ``'log_train_loss_change'``: ``-(log L_t - log L_{t-1})`` with
    ``L_t`` the mean train loss of the K steps of decision t (Fu's per-step
    reward, per decision).

``action_type='daniel2016'`` (continuous, Daniel, Taylor & Nowozin 2016):
  * observation (4): the smoothed per-example features
    ``[phi1_hat, phi2_hat, u1, u2]`` (``lr_meta.features.per_example``:
    ``phi1 = log Var_i(grad_i . dw)`` from one ``jax.jvp`` inside the training
    jit, ``phi2 = log Var_i(f_i)``; smoothed with
    ``lr_meta.features.smoothing`` at EVERY inner step with
    ``observation_spec.per_example_decay`` = gamma, bias-corrected). Zero
    at reset (no step taken yet). ``params.per_example_subset = m``
    estimates phi1 from the first m examples of each batch (a uniform random
    sub-batch), which cuts the JVP's cost by ~B/m; phi2 always uses the
    whole batch. Works with any inner optimizer (SGD, RMSProp: ``dw`` is
    the optimizer's actual update).
  * action ``a`` (shape (1,)) = ``log g`` with ``g = exp(theta . [obs, 1])``
    from the linear controller (``lr_meta.agents.reps.linear_controller``):
    the step size is scaled MULTIPLICATIVELY,
    ``lr_t = clip(lr_{t-1} * exp(clip(a, -0.5, 0.5)), LR_MIN, LR_MAX)``.
    The talk only says ``g(phi_hat; theta) = exp(theta^T phi_hat)`` "scales
    the step size"; multiplying the CURRENT step size (rather than the fixed
    ``lr0``) is what lets one theta reach the same step size from initial
    LRs orders of magnitude apart (the paper's robustness-to-eta0 figure),
    since phi1 grows as ``2 log lr``. The per-decision clip bounds a single
    change to x1.65.
  * one decision every K = ``steps_per_decision`` inner steps (K = 1 is the
    per-step controller);
  * reward ``'mean_log_train_loss_change'`` (default):
    ``-(log E_t - log E_{t-1}) / T`` with ``E_t`` the mean train loss of the
    K steps of decision t and ``E_0`` the first batch's loss, so the episode
    return is Daniel's ``-(1/(S-1)) sum_{s=2}^{S} (log E_s - log E_{s-1})``
    with S = T + 1.

``action_type='xu2017'`` (continuous, Xu, Qin, Wang & Liu 2017):
  * action ``a`` (shape (1,)) = ``log10`` of the learning rate of the next K
    steps relative to the episode's ``lr0``: ``lr = lr0 * 10**a`` with ``a``
    clipped to ``[XU2017_LOG10_LR_LOW, XU2017_LOG10_LR_HIGH]`` = [-4, 2]
    (``initial_lrs=(1.0,)`` makes it the absolute log10 LR). The offset puts
    a freshly initialised actor (mean ~ 0) at a sensible LR instead of 1;
    ``lr0`` is also the LR of the observation at reset;
  * observation from the shared feature library, chosen by
    ``LREnv(..., observation=)``: ``'dynamics'`` (the 9 Xu 2019 numbers,
    default), ``'per_example'`` (the 4 Daniel numbers) or
    ``'dynamics+per_example'`` (13);
  * rewards as for ``'xu2019'``, or the train-loss ones.

The validation subset is only evaluated after a decision when the reward or
the observation uses it (per-step Daniel decisions stay cheap); otherwise
``info['val_loss']`` keeps the value measured at reset.

Validation loss is measured on the first ``num_val_examples`` validation
examples (a fixed subset). The initial LR is drawn uniformly per episode from
``params.initial_lrs`` (Xu: {1e-2, 1e-3, 1e-4}). When the optimizee diverges
(``Task.train_step`` freezes it and flags it), the step returns
``terminated=True`` and the reward ``divergence_penalty``; the state is then
absorbing (same obs, reward 0, ``terminated=True``).
"""

import copy
import dataclasses
import functools
from typing import Any, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lr_meta.features import decision as decision_lib
from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta.features import observation_spec as observation_spec_lib
from lr_meta.features import per_example as per_example_lib
from lr_meta.features import range_sweep
from lr_meta.features import scale_free as scale_free_lib
from lr_meta.features import smoothing
from lr_meta.features import xu_protocol
from lr_meta import checks
from lr_meta import runner
from lr_meta.tasks.task import OptimizeeState, Task
from lr_meta.tasks.task import set_learning_rate

__all__ = [
    "ACTION_TYPES", "LREnv", "LREnvParams", "LREnvState", "OBSERVATIONS",
    "REWARDS",
]

ACTION_TYPES = lr_actions.ACTION_TYPES
REWARDS = ("val_loss_change", "fixed_baseline", "log_train_loss_change",
           "mean_log_train_loss_change", "log_val_loss_change",
           "log_val_vs_reference")
VAL_REWARDS = ("val_loss_change", "fixed_baseline", "log_val_loss_change",
               "log_val_vs_reference")
# The observations 'xu2017' chooses from (each action type's allowed ones:
# lr_actions.ACTION_RULES).
OBSERVATIONS = lr_actions.action_rule("xu2017").observations
PROGRESS_OBSERVATION = observation_lib.PROGRESS_OBSERVATION
NUM_PER_EXAMPLE_OBSERVATIONS = observation_lib.NUM_PER_EXAMPLE_OBSERVATIONS


@struct.dataclass
class LREnvParams:
  """Episode settings (all static: they fix shapes or trace-time choices).

  ``observation_spec`` (``lr_meta.features.observation_spec.ObservationSpec``)
  holds what the agent observes and when it decides (K, T, the schedule,
  EMA decays, protocol, probe size); it becomes the trained controller's spec
  as is. Its ``kind`` and ``inputs`` may stay unset ('' and ()): the
  environment's own (``LREnv(..., observation=, inputs=)``, which shape
  the agent) fill them (``LREnv.observation_spec``). The rest are the
  episode's: initial LRs, reward, divergence penalty, drawn lengths.
  ``from_fields`` takes every field by its config name (``env.*``).
  """
  observation_spec: observation_spec_lib.ObservationSpec = struct.field(
      pytree_node=False, default=observation_spec_lib.ObservationSpec())
  initial_lrs: Tuple[float, ...] = struct.field(pytree_node=False,
                                                default=(1e-2, 1e-3, 1e-4))
  reward: str = struct.field(pytree_node=False, default="val_loss_change")
  reward_baseline: float = struct.field(pytree_node=False, default=2.0)
  divergence_penalty: float = struct.field(pytree_node=False, default=-10.0)
  per_example_subset: Optional[int] = struct.field(pytree_node=False,
                                                   default=None)
  unroll: bool = struct.field(pytree_node=False, default=False)
  num_steps_range: Optional[Tuple[int, int]] = struct.field(
      pytree_node=False, default=None)
  lr0_range: Optional[Tuple[float, float]] = struct.field(pytree_node=False,
                                                           default=None)
  reference_steps: Optional[Tuple[int, ...]] = struct.field(
      pytree_node=False, default=None)
  reference_log_val: Optional[Tuple[float, ...]] = struct.field(
      pytree_node=False, default=None)

  @classmethod
  def from_fields(cls, **fields) -> "LREnvParams":
    """Params from their config names: the observation spec's flat names
    (``num_decisions=``, ``steps_per_decision=``, ``ema_decay=``,
    ``observation=``, ...) and this class's own fields. Unknown names
    raise ValueError listing the known ones."""
    spec, fields = observation_spec_lib.split_fields(
        fields, cls, "env")
    if "initial_lrs" in fields:
      fields["initial_lrs"] = tuple(float(x) for x in fields["initial_lrs"])
    return cls(observation_spec=spec, **fields)

  def with_fields(self, **changes) -> "LREnvParams":
    """These params with fields changed by their config names (the
    observation spec's flat names or this class's own fields)."""
    spec, changes = observation_spec_lib.split_fields(
        changes, type(self), "env", base=self.observation_spec)
    return self.replace(observation_spec=spec, **changes)

  @property
  def num_decisions(self) -> int:
    """T, the decisions of an episode (every environment's params have it)."""
    return self.observation_spec.num_decisions

  @property
  def steps_per_decision(self) -> int:
    """K, inner steps of an 'every' decision."""
    return self.observation_spec.steps_per_decision

  def check(self, action_type: str = "xu2019") -> "LREnvParams":
    """Raises ValueError naming a bad field and its allowed values."""
    spec = self.observation_spec
    if not isinstance(spec, observation_spec_lib.ObservationSpec):
      raise ValueError(f"env.observation_spec={spec!r}; allowed: an "
                       "ObservationSpec.")
    spec.check(action_type, "env")
    if spec.num_decisions is None:
      raise ValueError("env.num_decisions=None; allowed: an integer >= 1.")
    checks.check_positive_floats("env.initial_lrs", self.initial_lrs)
    if self.reward not in REWARDS:
      raise ValueError(f"env.reward={self.reward!r}; allowed: {REWARDS}.")
    # A NaN penalty would be the very poison the penalty keeps out.
    checks.check_finite("env.divergence_penalty", self.divergence_penalty)
    checks.check_finite("env.reward_baseline", self.reward_baseline)
    # spec.check refuses a non-default protocol of an observation without
    # the dynamics part, hence of an action type without one.
    rule = lr_actions.action_rule(action_type)
    if rule.only_default_reward and self.reward != rule.default_reward:
      raise ValueError(f"env.reward={self.reward!r} with action_type "
                       f"{action_type!r}; allowed: {rule.default_reward!r}.")
    if self.per_example_subset is not None and (
        not isinstance(self.per_example_subset, int)
        or isinstance(self.per_example_subset, bool)
        or self.per_example_subset < 2):
      raise ValueError(
          f"env.per_example_subset={self.per_example_subset!r}; allowed: "
          "None (the whole batch) or an integer >= 2 (at most the task's "
          "batch size).")
    if self.num_steps_range is not None:
      r = tuple(self.num_steps_range)
      if (spec.decision_schedule != "fraction" or len(r) != 2 or
          any(not isinstance(v, int) or isinstance(v, bool) for v in r) or
          not spec.num_decisions <= r[0] <= r[1]):
        raise ValueError(
            f"env.num_steps_range={self.num_steps_range!r} with "
            f"decision_schedule={spec.decision_schedule!r}; allowed: None, "
            "or with decision_schedule='fraction' two integers (low, high) "
            f"with num_decisions={spec.num_decisions} <= low <= high.")
    if self.lr0_range is not None:
      r = tuple(self.lr0_range)
      if len(r) != 2 or not 0 < r[0] <= r[1]:
        raise ValueError(f"env.lr0_range={self.lr0_range!r}; allowed: None "
                         "or (low, high) with 0 < low <= high (a log-uniform "
                         "draw).")
    settings = spec.sweep_settings
    if settings is not None:
      # The shortest episode must leave a step per decision after its sweep
      # (num_sweep_steps grows with T, never faster than T).
      shortest = (self.num_steps_range[0] if self.num_steps_range is not None
                  else self.default_num_steps)
      left = shortest - range_sweep.num_sweep_steps(shortest, settings)
      if left < spec.num_decisions:
        raise ValueError(
            f"env.range_test={spec.range_test!r} leaves {left} inner steps "
            f"of the shortest episode ({shortest}) after its sweep; allowed: "
            f"at least num_decisions={spec.num_decisions} (a shorter "
            "sweep: range_test.min_steps, range_test.fraction; or longer "
            "episodes).")
    self._check_reference()
    return self

  def _check_reference(self) -> None:
    steps, values = self.reference_steps, self.reference_log_val
    wanted = self.reward == "log_val_vs_reference"
    if not wanted:
      if steps is not None or values is not None:
        raise ValueError(
            f"env.reference_steps / env.reference_log_val with "
            f"env.reward={self.reward!r}; allowed: None (only "
            "'log_val_vs_reference' reads a reference run).")
      return
    longest = (self.num_steps_range[1] if self.num_steps_range is not None
               else self.default_num_steps)
    if (steps is None or values is None or len(steps) != len(values)
        or len(steps) < 2 or steps[0] != 0
        or any(b <= a for a, b in zip(steps, steps[1:]))
        or steps[-1] < longest
        or not np.all(np.isfinite(np.asarray(values, np.float64)))):
      raise ValueError(
          f"env.reward='log_val_vs_reference' with env.reference_steps="
          f"{steps!r} and env.reference_log_val of "
          f"{None if values is None else len(values)} values; allowed: "
          "increasing inner steps from 0 to at least the longest episode "
          f"({longest}) and as many finite log validation losses.")

  @property
  def default_num_steps(self) -> int:
    """Inner steps of an episode unless drawn: num_decisions * K."""
    return self.num_decisions * self.steps_per_decision


@struct.dataclass
class LREnvState:
  """Optimizee, feature state and controller bookkeeping of one episode."""
  opt: OptimizeeState
  features: Any             # DynamicsState, or ScaleFreeState ('scale_free')
  per_example: smoothing.RunningStats   # smoothed [phi1, phi2] (Daniel)
  lr: jax.Array             # current learning rate
  lr0: jax.Array            # initial learning rate of this episode
  time: jax.Array           # decisions taken
  val_loss: jax.Array       # validation loss after the last decision
  train_loss: jax.Array     # mean train loss of the last decision
  obs: jax.Array            # last observation (returned while absorbing)
  terminated: jax.Array
  num_steps: jax.Array      # inner steps of this episode (int32)


class LREnv:
  """Learning-rate control of a ``Task`` (see the module docstring).

  Args:
    task: the optimizee.
    action_type: one of ``ACTION_TYPES``: 'xu2019', 'daniel2016', 'xu2017'
      (continuous) or 'fu2016' (2 discrete actions).
    observation: ``None`` for the action type's own observation; for
      'xu2017' one of ``OBSERVATIONS`` (default 'dynamics').
    inputs: optional inputs of the 'scale_free' observation
      (``lr_meta.features.scale_free.INPUTS`` names), after its 10 numbers.
  """

  def __init__(self, task: Task, action_type: str = "xu2019",
               observation: Optional[str] = None, inputs=()):
    self.rule = lr_actions.action_rule(action_type)
    allowed = self.rule.observations
    observation = allowed[0] if observation is None else observation
    if observation not in allowed:
      raise ValueError(f"observation={observation!r} with action_type "
                       f"{action_type!r}; allowed: {allowed}.")
    self.task = task
    self.action_type = action_type
    self.observation = observation
    parts = observation_lib.observation_parts(observation)
    self.uses_dynamics = parts.dynamics
    self.uses_progress = parts.progress
    self.uses_per_example = parts.per_example
    self.uses_scale_free = parts.scale_free
    self.inputs = observation_lib.check_inputs(observation, inputs,
                                               "env.inputs")
    self.observation_size = observation_lib.observation_size(observation,
                                                             self.inputs)
    if self.uses_dynamics and not task.objective.has_predictions:
      raise ValueError(
          f"observation={observation!r} reads softmax predictions, which a "
          f"task with loss {task.loss!r} does not have "
          f"({task.objective.description}); allowed there: an observation "
          "without 'dynamics', e.g. 'scale_free' (action_type 'xu2017' or "
          "the generalist), 'weight_stats' ('fu2016') or 'per_example' "
          "('daniel2016').")
    # Layer paths resolved once, from the params of model.init.
    shapes = jax.eval_shape(lambda k: task.init(k).params,
                            jax.random.PRNGKey(0))
    self.layers = observation_lib.resolve_layers(shapes, observation)
    if self.rule.num_actions:
      self.num_actions = self.rule.num_actions
    else:
      self.action_shape = (1,)
      self.action_low, self.action_high = self.rule.low, self.rule.high

  def with_task(self, task: Task) -> "LREnv":
    """This environment on another ``Task`` of the same model and shapes.

    E.g. the task with its data as traced arrays (``task.replace(data=...)``
    inside ``jax.jit``), so that a compiled program takes the data as an
    argument instead of embedding it as a constant.
    """
    env = copy.copy(self)
    env.task = task
    return env

  @property
  def first_dense(self):
    return self.layers.first_dense

  @property
  def last_dense(self):
    return self.layers.last_dense

  @property
  def monitored_layer(self):
    return self.layers.monitored

  def default_params(self) -> LREnvParams:
    return LREnvParams(reward=self.rule.default_reward)

  def observation_spec(self, params: LREnvParams
                       ) -> observation_spec_lib.ObservationSpec:
    """``params.observation_spec`` with this environment's kind and inputs
    (what a controller trained here observes); ValueError if the params
    name others."""
    spec = params.observation_spec
    if spec.kind not in ("", self.observation) or spec.inputs not in (
        (), self.inputs):
      raise ValueError(
          f"env.observation={spec.kind!r}, env.inputs={spec.inputs!r} in the "
          f"params of an environment built with observation "
          f"{self.observation!r} and inputs {self.inputs!r}; allowed: the "
          "environment's (or leave them unset).")
    return dataclasses.replace(spec, kind=self.observation,
                               inputs=self.inputs)

  def _needs_val(self, params: LREnvParams) -> bool:
    return (self.uses_dynamics or self.uses_scale_free
            or params.reward in VAL_REWARDS)

  def _check_protocol(self, params: LREnvParams) -> None:
    """A non-default protocol needs the dynamics observation (trace time)."""
    protocol = params.observation_spec.protocol
    if protocol != xu_protocol.XuProtocol() and not self.uses_dynamics:
      raise ValueError(
          f"env.protocol={protocol!r} with observation "
          f"{self.observation!r}; a protocol other than the default "
          "changes the inputs of the Xu 2019 dynamics part only.")

  # -- pieces ------------------------------------------------------------------

  def _cap(self, loss, opt: OptimizeeState):
    """A diverged or non-finite loss reads as the task's divergence loss."""
    cap = self.task.divergence_loss
    return jnp.where(opt.diverged | ~jnp.isfinite(loss), cap,
                     jnp.minimum(loss, cap))

  def _val(self, opt: OptimizeeState, params: LREnvParams):
    """Loss and softmax predictions on the fixed validation subset (None
    for a task without classes: no observation here reads them, ``__init__``)."""
    x, y = self.task.first_examples("val",
                                    params.observation_spec.num_val_examples,
                                    name="env.num_val_examples")
    loss, probs = self.task.probe(opt.params, opt.batch_stats, x, y)
    return self._cap(loss, opt), probs

  def _step_batch(self, opt: OptimizeeState):
    """Loss and softmax of the batch the next inner step trains on, at
    ``opt.params`` (that step's own forward pass, before its update)."""
    x, y, dropout_key = self.task.next_batch(opt)
    loss, (outputs, _) = self.task.loss_and_logits(
        opt.params, opt.batch_stats, x, y, train=True,
        dropout_key=dropout_key)
    return self._cap(loss, opt), self.task.predictions(outputs)

  def _measure(self, opt: OptimizeeState, params: LREnvParams,
               window_loss: jax.Array):
    """``(val_loss, predictions, train_loss)`` as the protocol says.

    ``window_loss`` is the train loss of the ``'window_mean'`` protocol.
    """
    proto = params.observation_spec.protocol
    probe_loss = probe_probs = step_loss = step_probs = None
    if proto.predictions == "val_probe" or proto.val_loss == "probe":
      probe_loss, probe_probs = self._val(opt, params)
    if proto.needs_step_batch:
      step_loss, step_probs = self._step_batch(opt)
    val_loss = (self.task.evaluate(opt, "val").loss
                if proto.val_loss == "val_split" else probe_loss)
    probs = step_probs if proto.predictions == "train_batch" else probe_probs
    train_loss = step_loss if proto.train_loss == "step" else window_loss
    return val_loss, probs, train_loss

  def _observe(self, state: LREnvState, params: LREnvParams, window,
               probs, first: bool = False):
    """The observation after ``window`` (``state`` holds its new losses)."""
    return decision_lib.observe(
        self.observation_spec(params), self.action_type, self.layers,
        first=first, params=state.opt.params, lr=state.lr, lr0=state.lr0,
        decisions_taken=state.time, train_loss=state.train_loss,
        val_loss=state.val_loss, predictions=probs, features=state.features,
        window=window, per_example_stats=state.per_example)

  def _inner_step(self, carry, lr, params):
    """One optimizee step; also what the observation accumulates per step.

    ``carry = (optimizee, per-example statistics, scale-free window)``.
    """
    opt, stats, window = carry
    if self.uses_per_example:
      opt, m, phi = self.task.train_step_with_probe(
          opt, lr, per_example_lib.predicted_change_features,
          probe_examples=params.per_example_subset)
      stats = observation_lib.per_example_update(
          stats, phi, m.diverged, params.observation_spec.per_example_decay)
      ratio, extras = jnp.zeros((), jnp.float32), None
    elif self.uses_scale_free:
      opt, m, (ratio, extras) = self.task.train_step_with_measure(
          opt, lr, functools.partial(scale_free_lib.measure_step,
                                     self.inputs))
    else:
      opt, m = self.task.train_step(opt, lr)
      ratio, extras = jnp.zeros((), jnp.float32), None
    window = scale_free_lib.window_add(window, m.loss, ratio, extras)
    return (opt, stats, window), m.loss

  def _decision_steps(self, state: LREnvState, params: LREnvParams):
    """Inner steps of the decision after ``state`` (int32, maybe traced).

    'fraction': decision t covers steps ``floor(t T / D)`` to
    ``floor((t + 1) T / D)``, so D decisions split any T at the same
    fractions (``lr_meta.optax.controlled`` decides at the same steps).
    """
    if params.observation_spec.decision_schedule == "every":
      return jnp.int32(params.steps_per_decision)
    return (observation_lib.decision_step(state.time + 1, state.num_steps,
                          params.num_decisions)
            - observation_lib.decision_step(state.time, state.num_steps,
                            params.num_decisions))

  def _run_window(self, state: LREnvState, lr, params: LREnvParams):
    """The inner steps of one decision: ``(opt, stats, window, train_loss)``.

    'every' scans its static K steps (unrolled with ``params.unroll``) and
    reports the mean of their losses; 'fraction' loops over a traced count
    (``lax.fori_loop``) and reports the window's sum over its count.
    """
    carry = (state.opt, state.per_example,
             scale_free_lib.window_init(len(self.inputs)))
    if params.observation_spec.decision_schedule == "every":
      (opt, stats, window), losses = runner.inner_loop(
          lambda c, _: self._inner_step(c, lr, params), carry,
          jnp.arange(params.steps_per_decision), params.unroll)
      return opt, stats, window, jnp.mean(losses)
    opt, stats, window = jax.lax.fori_loop(
        0, self._decision_steps(state, params),
        lambda _, c: self._inner_step(c, lr, params)[0], carry)
    return opt, stats, window, decision_lib.window_train_loss(window)

  def _range_test(self, opt: OptimizeeState, lr0: jax.Array, num_steps,
                  settings: range_sweep.SweepSettings):
    """The LR range test in front of the episode, the sweep that
    ``lr_meta.optax.range_tested`` runs in an optax loop
    (``lr_meta.features.range_sweep``), so a controller is trained on the
    hand-over it gets in use.

    Each sweep step observes the loss of the batch it trains on at the
    current params (that step's own forward pass), credited to the previous
    step's LR; where the sweep ends, the step's params go back to the
    snapshot of the lowest smoothed loss and the optimizer restarts at the
    found LR (``rewind``). One difference from the optax version, on
    purpose: a sweep step that diverges leaves the task's last finite params
    (``Task.train_step`` freezes them), so the rewind also clears the
    divergence; an optax loop whose params are already not finite cannot
    be taken back.

    Returns:
      ``(optimizee after the sweep, found LR, inner steps left)``: the
      episode runs from the found LR for the steps left.
    """
    num_sweep = range_sweep.num_sweep_steps(num_steps, settings)
    first = range_sweep.sweep_lr(0, lr0, settings.span, num_sweep)

    def call(t, carry):
      opt, stats, snapshot, previous_lr = carry
      loss = self._step_batch(opt)[0]
      stats, improved, ends = range_sweep.observe(
          stats, settings, t, loss, previous_lr, num_sweep)
      lr = range_sweep.next_lr(stats, settings, t, lr0, num_sweep)
      snapshot = jax.tree.map(lambda p, s: jnp.where(improved, p, s),
                              opt.params, snapshot)
      new, _ = self.task.train_step(opt, lr)
      if settings.rewind:
        fresh = set_learning_rate(self.task.optimizer.init(snapshot),
                                  range_sweep.found_lr(stats, settings, lr0))
        back = new.replace(params=snapshot, opt_state=fresh,
                           diverged=jnp.bool_(False))
        new = jax.tree.map(lambda b, n: jnp.where(ends, b, n), back, new)
      return new, stats, snapshot, lr

    opt, stats, _, _ = jax.lax.fori_loop(
        0, num_sweep, call, (opt, range_sweep.init(first), opt.params, first))
    return (opt, range_sweep.found_lr(stats, settings, lr0),
            num_steps - num_sweep)

  @staticmethod
  def _reference_change(start, end, params: LREnvParams):
    """``log r(end) - log r(start)``: the reference run's change of log
    validation loss between two inner steps (the optimizee's step counts
    before and after a decision)."""
    steps = jnp.asarray(params.reference_steps, jnp.float32)
    values = jnp.asarray(params.reference_log_val, jnp.float32)
    at = lambda s: jnp.interp(jnp.asarray(s, jnp.float32), steps, values)
    return at(end) - at(start)

  # -- contract ----------------------------------------------------------------

  def reset(self, key: chex.PRNGKey, params: LREnvParams):
    """A fresh optimizee at a drawn initial LR (and, if ranged, length).

    The initial LR is drawn log-uniformly from ``params.lr0_range`` if set,
    else uniformly from ``params.initial_lrs``; with
    ``params.num_steps_range`` the episode's inner steps are drawn
    log-uniformly (integers) from it, else ``params.default_num_steps``.
    """
    _, k_lr, _, k_len = jax.random.split(key, 4)
    if params.lr0_range is not None:
      low, high = (float(v) for v in params.lr0_range)
      lr0 = jnp.exp(jax.random.uniform(k_lr, (), jnp.float32, np.log(low),
                                       np.log(high)))
    else:
      lrs = jnp.asarray(params.initial_lrs, jnp.float32)
      lr0 = lrs[jax.random.randint(k_lr, (), 0, lrs.shape[0])]
    num_steps = None
    if params.num_steps_range is not None:
      low, high = params.num_steps_range
      log_t = jax.random.uniform(k_len, (), jnp.float32, np.log(low),
                                 np.log(high + 1))
      num_steps = jnp.clip(jnp.floor(jnp.exp(log_t)), low, high)
    return self.reset_with_lr0(key, params, lr0, num_steps)

  def reset_with_lr0(self, key: chex.PRNGKey, params: LREnvParams,
                     lr0: jax.Array, num_steps: Optional[jax.Array] = None):
    """``reset`` from the given initial LR (and length) instead of a draw.

    ``lr0`` is a float32 scalar and may be traced, so one compiled program
    serves every initial LR (``params.initial_lrs`` is static: a new tuple
    would compile again). ``reset(key, params)`` is this at the LR drawn
    with the same key, so both give identical episodes for the same LR.

    ``num_steps``: the episode's inner steps (int, may be traced), only with
    ``decision_schedule='fraction'``; None: ``params.default_num_steps``.
    """
    k_init, _, k_feat, _ = jax.random.split(key, 4)
    lr0 = jnp.asarray(lr0, jnp.float32)
    if num_steps is None:
      num_steps = params.default_num_steps
    elif params.observation_spec.decision_schedule != "fraction":
      raise ValueError("num_steps is drawn or given only with "
                       "decision_schedule='fraction'; with 'every' an "
                       "episode has num_decisions * steps_per_decision "
                       "steps.")
    opt = self.task.init(k_init, lr0)
    self._check_protocol(params)
    settings = params.observation_spec.sweep_settings
    if settings is not None:
      opt, lr0, num_steps = self._range_test(opt, lr0, num_steps, settings)
    if params.observation_spec.protocol == xu_protocol.XuProtocol():
      val_loss, probs = self._val(opt, params)
      # The train loss at reset is the one the first inner step reports
      # (same batch, same params, train mode), i.e. what an optax loop has
      # at its first update: lr_meta.optax.controlled then reproduces the
      # episode's LRs exactly. The step itself is discarded.
      _, first = self.task.train_step(opt, lr0)
      train_loss = first.loss
    else:
      # The step-batch loss is that same number (the first step's forward).
      val_loss, probs, train_loss = self._measure(
          opt, params, self._step_batch(opt)[0])
    feat = decision_lib.initial_features(
        self.observation_spec(params), self.action_type,
        train_loss=train_loss, val_loss=val_loss,
        predictions_shape=None if probs is None else probs.shape, key=k_feat)
    stats = smoothing.running_stats_init(
        jnp.zeros((len(per_example_lib.FEATURE_NAMES),), jnp.float32))
    state = LREnvState(opt=opt, features=feat, per_example=stats, lr=lr0,
                       lr0=lr0, time=jnp.int32(0), val_loss=val_loss,
                       train_loss=train_loss,
                       obs=jnp.zeros((self.observation_size,), jnp.float32),
                       terminated=jnp.bool_(False),
                       num_steps=jnp.asarray(num_steps, jnp.int32))
    obs, feat = self._observe(
        state, params, scale_free_lib.window_init(len(self.inputs)), probs,
        first=True)
    return obs, state.replace(features=feat, obs=obs)

  def step(self, key: chex.PRNGKey, state: LREnvState, action: jax.Array,
           params: LREnvParams):
    """Applies the action, runs the decision's inner steps, observes, rewards."""
    del key  # The optimizee carries its own key (batches, dropout).
    lr, features = decision_lib.act(
        self.observation_spec(params), self.action_type, lr=state.lr,
        lr0=state.lr0, action=action, features=state.features)
    opt, stats, window, train_loss = self._run_window(state, lr, params)
    if self._needs_val(params):
      val_loss, probs, train_loss = self._measure(opt, params, train_loss)
    else:
      val_loss, probs = state.val_loss, None
    new = LREnvState(opt=opt, features=features, per_example=stats, lr=lr,
                     lr0=state.lr0, time=state.time + 1, val_loss=val_loss,
                     train_loss=train_loss, obs=state.obs,
                     terminated=opt.diverged, num_steps=state.num_steps)
    obs, feat = self._observe(new, params, window, probs)
    if params.reward == "val_loss_change":
      reward = -(val_loss - state.val_loss)
    elif params.reward == "log_val_loss_change":
      reward = -(jnp.log(val_loss) - jnp.log(state.val_loss))
    elif params.reward == "log_val_vs_reference":
      reward = (-(jnp.log(val_loss) - jnp.log(state.val_loss))
                + self._reference_change(state.opt.step, opt.step, params))
    elif params.reward == "fixed_baseline":
      reward = params.reward_baseline - val_loss
    else:
      reward = -(jnp.log(train_loss) - jnp.log(state.train_loss))
      if params.reward == "mean_log_train_loss_change":
        reward = reward / params.num_decisions
    diverged = opt.diverged
    reward = jnp.where(diverged, params.divergence_penalty, reward)
    new = new.replace(features=feat, obs=obs)
    # Absorbing after termination.
    new = jax.tree.map(lambda old, nw: jnp.where(state.terminated, old, nw),
                       state, new)
    reward = jnp.where(state.terminated, 0.0, reward).astype(jnp.float32)
    truncated = new.time >= params.num_decisions
    info = {"lr": new.lr, "val_loss": new.val_loss,
            "train_loss": new.train_loss}
    return new.obs, new, reward, new.terminated, truncated, info
