"""The optimizee: data on device, a Flax model, a loss and an optimizer whose
learning rate is set from outside at every step.

A ``Task`` is a ``flax.struct`` pytree: the data arrays are leaves (so they are
jit *arguments*, never giant embedded constants), the model, optimizer and
sizes are static. Every method is a pure function of its inputs and is meant to
be called inside ``jit`` (``jax.jit(Task.train_step)(task, state, lr)``).

The learning rate reaches the optimizer through ``optax.inject_hyperparams``:
``train_step`` writes ``opt_state.hyperparams['learning_rate']`` before the
update, which works inside ``jit`` without recompiling.

Batches are gathered by index from the on-device training set, so no host
round-trip happens per step: ``batch_order='random'`` (default) draws them
uniformly with replacement, one fresh key per step; ``'sequential'`` takes
them in epoch order, batch ``t`` = examples ``t*B .. t*B + B - 1`` modulo the
training set (``tf.data``'s ``repeat().batch(B)`` without shuffling, as Xu et
al. 2019's official code feeds its trainee).

Sequence tasks (a ``context_length`` L; ``lr_meta.tasks.datasets``'
``SEQUENCE_DATASETS``) hold each split as one stream of next-token pairs. An
*example* is a window of L consecutive pairs: ``'random'`` batches are B
windows at uniform random offsets of the training stream, sliced inside
``jit`` from the step's key (deterministic, and never across a split: each
split is its own array); evaluation, probes and ``'sequential'`` batches use
the non-overlapping windows ``[w L, (w + 1) L)`` in order.

The task's ``loss`` names its objective (``lr_meta.tasks.objectives``):
cross entropy over logits of any rank (images: per example; language models:
per token, averaged over each window) or the mean squared reconstruction
error of an autoencoder. ``StepMetrics.accuracy`` and ``EvalMetrics.accuracy``
are the objective's metric (token accuracy for a language model; NaN for
``'mse'``, which has none).
"""

import dataclasses
import functools
import numbers
import os
import weakref
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lr_meta.tasks import datasets as datasets_lib
from lr_meta.tasks import models as models_lib
from lr_meta.tasks import objectives as objectives_lib
from lr_meta.tasks.objectives import cross_entropy

__all__ = [
    "BATCH_ORDERS", "DEFAULT_DIVERGENCE_LOSS", "KNOWN_OPTIMIZERS", "OPTIMIZERS",
    "cross_entropy", "DeviceData", "EvalMetrics", "evaluate_batch",
    "make_optimizer", "make_task", "OptimizeeState", "set_hyperparams",
    "set_learning_rate", "StepMetrics", "Task",
]

DEFAULT_DIVERGENCE_LOSS = 1e3
BATCH_ORDERS = ("random", "sequential")


def _momentum(learning_rate, momentum=0.9, nesterov=False):
  return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


OPTIMIZERS = {
    "sgd": optax.sgd,
    "momentum": _momentum,
    "adam": optax.adam,
    "rmsprop": optax.rmsprop,
    "adamw": optax.adamw,
}
KNOWN_OPTIMIZERS = tuple(OPTIMIZERS)


def make_optimizer(name: str, **kwargs) -> optax.GradientTransformation:
  """An optax optimizer whose ``learning_rate`` is an injectable hyperparameter.

  Args:
    name: one of ``KNOWN_OPTIMIZERS``.
    **kwargs: other arguments of the optax factory (e.g. ``b1`` for adam).
      ``learning_rate`` is set per step by ``Task.train_step``; the value given
      here (default 0.0) is only the initial state.
  """
  if name not in OPTIMIZERS:
    raise ValueError(
        f"Unknown optimizer {name!r}; known optimizers: {', '.join(KNOWN_OPTIMIZERS)}.")
  kwargs.setdefault("learning_rate", 0.0)
  try:
    return optax.inject_hyperparams(OPTIMIZERS[name])(**kwargs)
  except TypeError as e:
    raise ValueError(f"Bad arguments {kwargs} for optimizer {name!r}: {e}") from e


@flax.struct.dataclass
class DeviceData:
  """The three splits as device arrays (features float32, labels int32;
  sequence tasks: streams of int32 next-token pairs)."""
  x_train: jax.Array
  y_train: jax.Array
  x_val: jax.Array
  y_val: jax.Array
  x_test: jax.Array
  y_test: jax.Array

  def split(self, split: str):
    return datasets_lib.get_split(self, split)


@flax.struct.dataclass
class OptimizeeState:
  """Everything that changes during one training run."""
  params: Any
  batch_stats: Any         # {} for models without batch norm
  opt_state: Any
  key: jax.Array           # PRNG key for batches and dropout
  step: jax.Array          # int32, inner steps taken
  diverged: jax.Array      # bool, sticky: set by the first non-finite step


class StepMetrics(NamedTuple):
  loss: jax.Array          # train-batch loss before the step (capped)
  accuracy: jax.Array      # train-batch accuracy before the step
  learning_rate: jax.Array
  diverged: jax.Array


class EvalMetrics(NamedTuple):
  loss: jax.Array
  accuracy: jax.Array


# ``update(grads, loss) -> (updates, new_opt_state, learning_rate)``: how one
# step turns the batch gradient into a parameter update (``Task.update_step``).
UpdateFn = Callable[[Any, jax.Array], Tuple[Any, Any, jax.Array]]


@flax.struct.dataclass
class Task:
  """A supervised classification optimizee (see module docstring)."""
  data: DeviceData
  model: nn.Module = flax.struct.field(pytree_node=False)
  optimizer: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  batch_size: int = flax.struct.field(pytree_node=False)
  model_name: str = flax.struct.field(pytree_node=False, default="mlp")
  dataset_name: str = flax.struct.field(pytree_node=False, default="")
  num_classes: int = flax.struct.field(pytree_node=False, default=10)
  eval_batch_size: int = flax.struct.field(pytree_node=False, default=1000)
  divergence_loss: float = flax.struct.field(
      pytree_node=False, default=DEFAULT_DIVERGENCE_LOSS)
  batch_order: str = flax.struct.field(pytree_node=False, default="random")
  loss: str = flax.struct.field(pytree_node=False, default="cross_entropy")
  context_length: Optional[int] = flax.struct.field(pytree_node=False,
                                                    default=None)

  @property
  def objective(self) -> objectives_lib.Objective:
    """The loss and metric this task trains and reports."""
    return objectives_lib.get_objective(self.loss)

  @property
  def is_sequence(self) -> bool:
    """Whether examples are windows of a token stream (``context_length``)."""
    return self.context_length is not None

  def num_examples(self, split: str) -> int:
    """Examples of ``split`` this task holds (sequence tasks: whole windows)."""
    size = self.data.split(split)[0].shape[0]
    return size // self.context_length if self.is_sequence else size

  def example_input(self) -> jax.Array:
    """One training example with its batch axis, to build the model from."""
    return self.first_examples("train", 1)[0]

  # -- model ---------------------------------------------------------------

  def init(self, key: jax.Array, learning_rate: float = 0.0) -> OptimizeeState:
    """Initial parameters (Flax default init), optimizer state and key."""
    return self.init_with(
        key, lambda params: set_learning_rate(self.optimizer.init(params),
                                              learning_rate))

  def init_with(self, key: jax.Array,
                init_opt_state: Callable[[Any], Any]) -> OptimizeeState:
    """``init`` with the optimizer state built by ``init_opt_state(params)``.

    The parameters and the run key depend on ``key`` only, so every optimizer
    started from one key trains the same initial network on the same batches.
    """
    init_key, run_key = jax.random.split(key)
    variables = self.model.init(init_key, self.example_input(), train=False)
    params = variables["params"]
    return OptimizeeState(
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=init_opt_state(params),
        key=run_key,
        step=jnp.zeros((), jnp.int32),
        diverged=jnp.zeros((), bool))

  def apply(self, params, batch_stats, x, *, train: bool = False,
            dropout_key: Optional[jax.Array] = None):
    """Logits (and the new batch stats when training a batch-norm model)."""
    variables = {"params": params}
    has_bn = bool(jax.tree.leaves(batch_stats))
    if has_bn:
      variables["batch_stats"] = batch_stats
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    if train and has_bn:
      logits, updates = self.model.apply(variables, x, train=True, rngs=rngs,
                                         mutable=["batch_stats"])
      return logits, updates["batch_stats"]
    return self.model.apply(variables, x, train=train, rngs=rngs), batch_stats

  def per_example_loss(self, outputs, x, y) -> jax.Array:
    """``(B,)`` losses of the task's objective (see the module docstring)."""
    return self.objective.per_example_loss(outputs, x, y)

  def loss_and_logits(self, params, batch_stats, x, y, *, train: bool = False,
                      dropout_key: Optional[jax.Array] = None):
    """Mean loss of the objective, (model outputs, new batch stats)."""
    logits, new_stats = self.apply(params, batch_stats, x, train=train,
                                   dropout_key=dropout_key)
    return jnp.mean(self.per_example_loss(logits, x, y)), (logits, new_stats)

  def probe(self, params, batch_stats, x, y):
    """Mean loss and softmax predictions of a fixed batch, evaluation mode.

    Predictions have one row per position (``Objective.predictions``): the
    rows Xu et al. 2019's observation compares across decisions; None for
    an objective without classes (``'mse'``).
    """
    outputs, _ = self.apply(params, batch_stats, x)
    loss = jnp.mean(self.per_example_loss(outputs, x, y))
    return loss, self.predictions(outputs)

  def predictions(self, outputs):
    """``Objective.predictions`` of model outputs, or None for an objective
    without classes."""
    if not self.objective.has_predictions:
      return None
    return self.objective.predictions(outputs)

  # -- training ------------------------------------------------------------

  def sample_batch(self, key: jax.Array):
    """A training batch gathered by index on device (uniform, with replacement).

    Sequence tasks: ``batch_size`` windows of ``context_length`` pairs at
    uniform offsets in ``[0, N - L]`` of the training stream.
    """
    n = self.data.x_train.shape[0]
    if not self.is_sequence:
      idx = jax.random.randint(key, (self.batch_size,), 0, n)
      return self.data.x_train[idx], self.data.y_train[idx]
    starts = jax.random.randint(key, (self.batch_size,), 0,
                                n - self.context_length + 1)
    return self._windows_at(starts)

  def _windows_at(self, starts: jax.Array):
    """``(x, y)`` windows of the training stream starting at ``starts``."""
    window = lambda a: jax.vmap(lambda s: jax.lax.dynamic_slice(
        a, (s,), (self.context_length,)))(starts)
    return window(self.data.x_train), window(self.data.y_train)

  def sequential_batch(self, step: jax.Array):
    """Batch ``step`` of the training set in epoch order (wrapping around)."""
    n = self.num_examples("train")
    # (step mod n) keeps the product below 2**31 for any step count.
    start = (jnp.asarray(step, jnp.int32) % n) * self.batch_size
    idx = (start + jnp.arange(self.batch_size)) % n
    if self.is_sequence:
      return self._windows_at(idx * self.context_length)
    return self.data.x_train[idx], self.data.y_train[idx]

  def next_batch(self, state: OptimizeeState):
    """``(x, y, dropout_key)`` that the next ``train_step`` of ``state`` uses.

    Lets an observer evaluate the step's own training batch before the step
    (Xu et al. 2019 observe its softmax predictions and loss).
    """
    _, x, y, dropout_key = self._draw(state)
    return x, y, dropout_key

  def _draw(self, state: OptimizeeState):
    """``(next key, x, y, dropout key)`` of the step taken from ``state``."""
    key, batch_key, dropout_key = jax.random.split(state.key, 3)
    if self.batch_order == "sequential":
      x, y = self.sequential_batch(state.step)
    else:
      x, y = self.sample_batch(batch_key)
    return key, x, y, dropout_key

  def train_step(self, state: OptimizeeState, learning_rate: jax.Array):
    """One SGD-style step at ``learning_rate``.

    A step whose loss or update is non-finite, or whose loss exceeds
    ``divergence_loss``, marks the run diverged. A diverged run is frozen (its
    parameters keep their last finite values, later steps are no-ops) and
    reports the capped loss ``divergence_loss``, so it can never poison the
    other runs of a batch or a controller's statistics.

    Returns:
      ``(new_state, StepMetrics)``.
    """
    new_state, metrics, _ = self._step(
        state, self._update_at(state, learning_rate), None)
    return new_state, metrics

  def update_step(self, state: OptimizeeState, update: "UpdateFn"):
    """``train_step`` with the update computed by ``update(grads, loss)``.

    ``update`` returns ``(updates, new_opt_state, learning_rate)``: any optax
    transformation can train the model this way (``lr_meta.tasks.
    optax_training``), e.g. one that needs the loss as an extra argument
    (``optax.contrib.reduce_on_plateau``). Batch, loss, divergence freezing
    and metrics are those of ``train_step``; ``learning_rate`` is only
    reported.

    Returns:
      ``(new_state, StepMetrics)``.
    """
    new_state, metrics, _ = self._step(state, update, None)
    return new_state, metrics

  def _update_at(self, state: OptimizeeState, learning_rate: jax.Array):
    """The ``UpdateFn`` of ``self.optimizer`` at a given learning rate."""
    def update(grads, loss):
      del loss
      opt_state = set_learning_rate(state.opt_state, learning_rate)
      updates, opt_state = self.optimizer.update(grads, opt_state,
                                                 state.params)
      return updates, opt_state, learning_rate
    return update

  def train_step_with_probe(self, state: OptimizeeState,
                            learning_rate: jax.Array, probe,
                            probe_examples: Optional[int] = None):
    """``train_step`` that also evaluates ``probe`` on this very step.

    ``probe(loss_vector_fn, params, updates, batch_losses) -> aux`` sees the
    per-example loss vector ``params -> (m,)`` of the first ``m =
    probe_examples`` examples of this step's batch (all B if None; same
    batch, dropout key and batch statistics), the params before the step,
    the update the optimizer applies (SGD: ``-lr * grad``; RMSProp: ``-lr *
    grad / sqrt(nu)``) and the ``(B,)`` per-example losses of the training
    forward pass (free). E.g. ``lr_meta.features.per_example.
    predicted_change_features`` gives Daniel et al. 2016's
    ``[log Var_i(grad_i . dw), log Var_i(f_i)]`` with ONE ``jax.jvp`` (the
    probe is passed in so that tasks, a lower layer, never import features).

    With ``batch_order='random'`` batches are drawn uniformly with
    replacement, so the first ``m`` examples are a uniform random sub-batch
    (in epoch order, the first ``m`` of the batch): a JVP over ``m < B`` examples
    costs ``m / B`` of the full one (``benchmarks/feature_cost.py``). Models
    with train-mode batch norm normalise the sub-batch with its own
    statistics, so the sub-batch losses then differ slightly from the
    batch's.

    Raises:
      ValueError: ``probe_examples`` not in ``[2, batch_size]`` (a variance
        over examples needs two).

    Returns:
      ``(new_state, StepMetrics, aux)``; ``aux`` is not finite-checked (a
      diverged step may give inf/nan; the caller decides what to keep).
    """
    if probe_examples is not None and not 2 <= probe_examples <= self.batch_size:
      raise ValueError(
          f"probe_examples={probe_examples!r}; allowed: None (the whole "
          f"batch) or an integer in [2, batch_size={self.batch_size}].")
    return self._step(state, self._update_at(state, learning_rate), probe,
                      probe_examples)

  def train_step_with_measure(self, state: OptimizeeState,
                              learning_rate: jax.Array, measure):
    """``train_step`` that also returns ``measure(grads, updates, params)``
    of this very step: its gradients, the update the optimizer applies and
    the params before it (e.g. ``lr_meta.features.scale_free``'s update
    ratio and optional inputs; passed in, as ``probe``, so that tasks never
    import features).

    Returns:
      ``(new_state, StepMetrics, aux)``; ``aux`` is not finite-checked.
    """
    return self._step(state, self._update_at(state, learning_rate), None,
                      measure=measure)

  def _step(self, state, update, probe, probe_examples=None, measure=None):
    """The shared body of every step method; ``update`` is an ``UpdateFn``."""
    key, x, y, dropout_key = self._draw(state)
    grad_fn = jax.value_and_grad(self.loss_and_logits, has_aux=True)
    (loss, (logits, new_stats)), grads = grad_fn(
        state.params, state.batch_stats, x, y, train=True,
        dropout_key=dropout_key)
    updates, opt_state, learning_rate = update(grads, loss)
    aux = None
    if probe is not None:
      xp, yp = x[:probe_examples], y[:probe_examples]

      def loss_vector(params):
        logits_, _ = self.apply(params, state.batch_stats, xp, train=True,
                                dropout_key=dropout_key)
        return self.per_example_loss(logits_, xp, yp)
      aux = probe(loss_vector, state.params, updates,
                  self.per_example_loss(logits, x, y))
    if measure is not None:
      aux = measure(grads, updates, state.params)
    params = optax.apply_updates(state.params, updates)
    updates_finite = jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(u)) for u in jax.tree.leaves(updates)]))
    ok = (jnp.isfinite(loss) & updates_finite
          & (loss <= self.divergence_loss))
    diverged = state.diverged | ~ok
    keep_old = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(diverged, o, n), new, old)
    new_state = OptimizeeState(
        params=keep_old(params, state.params),
        batch_stats=keep_old(new_stats, state.batch_stats),
        opt_state=keep_old(opt_state, state.opt_state),
        key=key,
        step=state.step + 1,
        diverged=diverged)
    accuracy = jnp.mean(self.objective.metric(logits, y))
    metrics = StepMetrics(
        loss=jnp.where(diverged, self.divergence_loss, loss),
        accuracy=jnp.where(diverged, 0.0, accuracy),
        learning_rate=jnp.asarray(learning_rate, jnp.float32),
        diverged=diverged)
    return new_state, metrics, aux

  # -- evaluation ----------------------------------------------------------

  def first_examples(self, split: str, num_examples: Optional[int] = None,
                     name: str = "num_examples"):
    """``(x, y)``: the first ``num_examples`` of ``split`` (all if None).

    A static check (it raises while tracing, before any work), because
    slicing would silently clamp a count larger than the split.

    Args:
      split: 'train', 'val' or 'test'.
      num_examples: how many leading examples; None for the whole split.
      name: what the caller calls ``num_examples``, for the error.

    Sequence tasks: the split's first non-overlapping windows,
    ``(num_examples, context_length)`` each.

    Raises:
      ValueError: ``num_examples`` not None and not an integer in
        ``[1, size of the split held by this task]``.
    """
    x, y = self.data.split(split)
    size = self.num_examples(split)
    if self.is_sequence:
      windows = lambda a: a[:size * self.context_length].reshape(
          size, self.context_length)
      x, y = windows(x), windows(y)
    if num_examples is None:
      return x, y
    if (not isinstance(num_examples, numbers.Integral)
        or isinstance(num_examples, bool) or not 1 <= num_examples <= size):
      raise ValueError(
          f"{name}={num_examples!r}; allowed: None (the whole split) or an "
          f"integer in [1, {size}], the {split!r} examples this "
          f"{self.dataset_name or 'task'} task holds (make_task's "
          f"num_{split}_examples).")
    return x[:num_examples], y[:num_examples]

  def evaluate(self, state: OptimizeeState, split: str = "val",
               num_examples: Optional[int] = None) -> EvalMetrics:
    """Loss and accuracy on the first ``num_examples`` of ``split`` (all if None).

    A diverged run reports ``divergence_loss`` and accuracy 0.

    Raises:
      ValueError: ``num_examples`` larger than the split (``first_examples``).
    """
    x, y = self.first_examples(split, num_examples)
    n = x.shape[0]
    chunk = min(self.eval_batch_size, n)
    num_chunks, rest = divmod(n, chunk)

    def chunk_sums(xy):
      logits, _ = self.apply(state.params, state.batch_stats, xy[0])
      return (jnp.sum(self.per_example_loss(logits, xy[0], xy[1])),
              jnp.sum(self.objective.metric(logits, xy[1])))

    split_chunks = lambda a: a[:num_chunks * chunk].reshape(
        (num_chunks, chunk) + a.shape[1:])
    losses, correct = jax.lax.map(chunk_sums, (split_chunks(x), split_chunks(y)))
    total_loss, total_correct = jnp.sum(losses), jnp.sum(correct)
    if rest:
      rest_loss, rest_correct = chunk_sums((x[-rest:], y[-rest:]))
      total_loss, total_correct = total_loss + rest_loss, total_correct + rest_correct
    loss = total_loss / n
    accuracy = total_correct / n
    loss = jnp.where(state.diverged | ~jnp.isfinite(loss),
                     self.divergence_loss, jnp.minimum(loss, self.divergence_loss))
    return EvalMetrics(loss=loss, accuracy=jnp.where(state.diverged, 0.0, accuracy))


def set_hyperparams(opt_state, values: Mapping[str, Any]):
  """Writes hyperparameters of an ``inject_hyperparams`` optimizer state,
  each in the dtype it is stored in; unknown names raise ``ValueError``."""
  hyperparams = dict(getattr(opt_state, "hyperparams", {}))
  unknown = sorted(set(values) - set(hyperparams))
  if unknown:
    raise ValueError(f"{unknown} are not hyperparameters of this "
                     "optax.inject_hyperparams optimizer state; allowed: "
                     f"{sorted(hyperparams)}.")
  hyperparams.update({k: jnp.asarray(v, jnp.asarray(hyperparams[k]).dtype)
                      for k, v in values.items()})
  return opt_state._replace(hyperparams=hyperparams)


def set_learning_rate(opt_state, learning_rate):
  """Writes the learning rate of an ``inject_hyperparams`` optimizer state."""
  if not hasattr(opt_state, "hyperparams") or "learning_rate" not in opt_state.hyperparams:
    raise ValueError(
        "The optimizer must be built with optax.inject_hyperparams and a "
        "'learning_rate' hyperparameter (see lr_meta.tasks.make_optimizer).")
  return set_hyperparams(opt_state, {"learning_rate": learning_rate})


def make_task(dataset: str = "mnist1d",
              model: str = "mlp",
              model_kwargs: Optional[dict] = None,
              optimizer: str = "sgd",
              optimizer_kwargs: Optional[dict] = None,
              batch_size: int = 128,
              eval_batch_size: int = 1000,
              num_train_examples: Optional[int] = None,
              num_val_examples: Optional[int] = None,
              num_test_examples: Optional[int] = None,
              data_dir: Optional[str] = None,
              divergence_loss: float = DEFAULT_DIVERGENCE_LOSS,
              batch_order: str = "random",
              loss: Optional[str] = None,
              context_length: Optional[int] = None) -> Task:
  """Builds a ``Task`` and puts its data on the default device.

  ``num_*_examples`` keep the first examples of each split (small slices for
  tests and CPU-sized experiments); ``None`` keeps the whole split.
  ``batch_order`` is one of ``BATCH_ORDERS`` (see the module docstring).

  Sequence data sets (``datasets.SEQUENCE_DATASETS``): an example is a
  window of ``context_length`` tokens (default: the model's
  ``context_length`` field if it has one, else ``DEFAULT_CONTEXT_LENGTH``),
  ``num_*_examples`` count windows (the first ``n * context_length`` pairs
  of a split are kept), and a model with a ``context_length`` field gets
  this one unless ``model_kwargs`` sets it.

  ``loss``: one of ``objectives.KNOWN_OBJECTIVES``; None takes the model's
  (``default_loss``: 'mse' for the autoencoder, else 'cross_entropy').

  Tasks built on the same data (data set, directory and slices) share one
  device copy of it (``_DEVICE_DATA``), whatever their model or optimizer.

  Raises:
    ValueError: a non-positive size, ``num_*_examples`` outside ``[1, the
      split]``, ``batch_size`` larger than the training examples kept
      (checked before any data goes to the device), an unknown
      ``batch_order`` or ``loss``, or a ``context_length`` for a data set
      of examples.
  """
  if batch_order not in BATCH_ORDERS:
    raise ValueError(f"batch_order={batch_order!r}; allowed: {BATCH_ORDERS}.")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
  if eval_batch_size <= 0:
    raise ValueError(f"eval_batch_size must be a positive integer, got {eval_batch_size!r}.")
  if not divergence_loss > 0:
    raise ValueError(f"divergence_loss must be > 0, got {divergence_loss!r}.")
  model_kwargs = dict(model_kwargs or {})
  loss = default_loss(model) if loss is None else loss
  objectives_lib.get_objective(loss)
  ds = datasets_lib.load_dataset(dataset, data_dir=data_dir)
  if ds.is_sequence:
    context_length = _sequence_context(model, model_kwargs, context_length)
  elif context_length is not None:
    raise ValueError(
        f"context_length={context_length!r} for {dataset!r}, a data set of "
        f"examples; allowed: None (context_length is for the sequence data "
        f"sets {datasets_lib.SEQUENCE_DATASETS}).")
  window = context_length or 1
  limits = {"train": num_train_examples, "val": num_val_examples,
            "test": num_test_examples}
  host = {}
  for split, limit in limits.items():
    x, y = ds.stored_split(split)   # scaled once on device, below
    size = len(x) // window
    if limit is not None:
      if not 0 < limit <= size:
        unit = f" windows of {window} tokens" if ds.is_sequence else ""
        raise ValueError(
            f"num_{split}_examples must be in [1, {size}]{unit} for "
            f"{dataset!r}, got {limit!r}.")
      x, y = x[:limit * window], y[:limit * window]
    host[f"x_{split}"], host[f"y_{split}"] = x, y
  num_train = len(host["x_train"]) // window
  if batch_size > num_train:
    # Batches are drawn with replacement, so a larger one would still run,
    # repeating examples within every step: a config slip, not a choice.
    raise ValueError(
        f"batch_size={batch_size!r} is larger than the training split "
        f"({num_train} examples of {dataset!r}, num_train_examples="
        f"{num_train_examples!r}); allowed: an integer in [1, {num_train}].")
  key = (dataset, data_dir, os.environ.get(datasets_lib.DATA_DIR_ENV),
         tuple(limits.values()), window,
         str(jax.config.jax_default_device))
  data = _DEVICE_DATA.get(key)
  if data is None:
    data = DeviceData(**{k: datasets_lib.scale_features(jnp.asarray(v))
                         for k, v in host.items()})
    _DEVICE_DATA[key] = data
  model_kwargs.setdefault("num_classes", ds.num_classes)
  return Task(
      data=data,
      model=models_lib.get_model(model, **model_kwargs),
      optimizer=make_optimizer(optimizer, **(optimizer_kwargs or {})),
      batch_size=int(batch_size),
      model_name=model,
      dataset_name=dataset,
      num_classes=ds.num_classes,
      eval_batch_size=int(eval_batch_size),
      divergence_loss=float(divergence_loss),
      batch_order=batch_order,
      loss=loss,
      context_length=context_length)


DEFAULT_CONTEXT_LENGTH = 64
# One device copy of each data set (and slicing) per process, however many
# tasks, sweeps or optimizer prefixes are built on it: tasks that ask for
# the same data share its arrays, which live while any task holds them.
_DEVICE_DATA: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
# Models whose outputs are not class logits, and the loss they train on.
MODEL_LOSSES = {"autoencoder": "mse"}


def default_loss(model: str) -> str:
  """The objective a model trains on unless a task names another."""
  return MODEL_LOSSES.get(model, "cross_entropy")


def _model_fields(model: str) -> tuple[str, ...]:
  """The dataclass fields of registry model ``model`` (its kwargs)."""
  factory = models_lib.MODELS.get(model)
  cls = getattr(factory, "func", factory)
  return tuple(f.name for f in dataclasses.fields(cls)) if cls else ()


def _sequence_context(model: str, model_kwargs: dict,
                      context_length: Optional[int]) -> int:
  """The window length of a sequence task; writes it into ``model_kwargs``
  for models with a ``context_length`` field."""
  has_field = "context_length" in _model_fields(model)
  if context_length is None:
    context_length = model_kwargs.get("context_length", DEFAULT_CONTEXT_LENGTH)
  if (isinstance(context_length, bool) or
      not isinstance(context_length, numbers.Integral) or context_length < 1):
    raise ValueError(f"context_length={context_length!r}; allowed: an "
                     "integer >= 1 (tokens per window).")
  if has_field:
    model_kwargs.setdefault("context_length", int(context_length))
    if model_kwargs["context_length"] < context_length:
      raise ValueError(
          f"context_length={context_length} is longer than the model's "
          f"model_kwargs['context_length']={model_kwargs['context_length']}; "
          "allowed: windows no longer than the model's context.")
  return int(context_length)


@functools.partial(jax.jit, static_argnames=("split", "num_examples"))
def evaluate_batch(task: Task, states: OptimizeeState, split: str = "val",
                   num_examples: Optional[int] = None) -> EvalMetrics:
  """``Task.evaluate`` of N optimizees stacked on a leading axis, vmapped.

  Module-level and jitted, so every call with an equal task and the same
  shapes reuses one compiled program (a ``jax.jit`` built inside a loop
  would compile again at each call).
  """
  return jax.vmap(lambda s: task.evaluate(s, split, num_examples))(states)
