"""What a task minimises and reports: its loss and its metric.

A ``Task`` names one ``Objective`` (``OBJECTIVES``); every consumer (the
training step, evaluation, the environments' probes, the benchmark) takes the
loss from there instead of assuming image classification:

=================  ===========================================  ================
objective          per-example loss                             metric
=================  ===========================================  ================
``cross_entropy``  softmax cross entropy of logits ``(B, ..., C)``  accuracy (of
                   with integer labels ``(B, ...)``, in nats,        every position)
                   averaged over the positions of an example
                   (a language model's tokens: divide by ln 2 for
                   bits per character, ``bits``)
``mse``            squared error of the output against the input    none (NaN): the
                   (an autoencoder's reconstruction), averaged      loss is the
                   over the example's values                        reconstruction
                                                                    error
=================  ===========================================  ================

Per-example losses are the mean over an example's positions, so with equal
windows the batch mean is the mean over tokens, and Daniel et al. 2016's
per-example features see one number per example whatever the model.
"""

import math
from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "bits", "cross_entropy", "KNOWN_OBJECTIVES", "Objective", "OBJECTIVES",
    "get_objective", "mse", "token_accuracy", "token_cross_entropy",
]


def _mean_over_positions(values: chex.Array) -> chex.Array:
  """``(B, ...) -> (B,)``: the mean over everything but the batch axis."""
  return jnp.mean(values.reshape(values.shape[0], -1), axis=1)


def _per_position_cross_entropy(logits: chex.Array,
                                labels: chex.Array) -> chex.Array:
  """``(B, ...)`` cross entropy of every position (labels: the logits' shape
  without its class axis)."""
  chex.assert_equal_shape_prefix([logits, labels], labels.ndim)
  chex.assert_rank(logits, labels.ndim + 1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy(logits: chex.Array, labels: chex.Array) -> chex.Array:
  """Per-example softmax cross entropy (nats) with integer labels.

  Args:
    logits: ``(B, ..., C)``: one class distribution per position.
    labels: ``(B, ...)`` integers in ``[0, C)``.

  Returns:
    ``(B,)``: each example's mean over its positions (rank-2 logits: the
    plain per-example cross entropy, bit for bit).
  """
  per_position = _per_position_cross_entropy(logits, labels)
  if labels.ndim == 1:
    return per_position
  return _mean_over_positions(per_position)


def token_cross_entropy(logits: chex.Array, labels: chex.Array,
                        mask: Optional[chex.Array] = None) -> chex.Array:
  """Mean cross entropy (nats) over every position, optionally masked.

  ``sum(mask * ce) / sum(mask)`` over all positions of all examples; with no
  mask, the plain mean (the mean of ``cross_entropy`` for equal-length
  examples). A mask of all zeros gives 0, not NaN.

  Args:
    logits: ``(B, ..., C)``.
    labels: ``(B, ...)`` integers.
    mask: ``(B, ...)`` of 0/1 (or weights); None counts every position.
  """
  per_position = _per_position_cross_entropy(logits, labels)
  if mask is None:
    return jnp.mean(per_position)
  chex.assert_equal_shape([per_position, mask])
  mask = jnp.asarray(mask, per_position.dtype)
  return jnp.sum(per_position * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def token_accuracy(logits: chex.Array, labels: chex.Array) -> chex.Array:
  """``(B,)``: the fraction of each example's positions predicted right."""
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  if labels.ndim == 1:
    return correct
  return _mean_over_positions(correct)


def mse(outputs: chex.Array, targets: chex.Array) -> chex.Array:
  """``(B,)``: each example's mean squared error."""
  chex.assert_equal_shape([outputs, targets])
  return _mean_over_positions(jnp.square(outputs - targets))


def bits(nats: chex.Numeric) -> chex.Numeric:
  """A cross entropy in bits (per character for a character model)."""
  return nats / math.log(2.0)


class Objective(NamedTuple):
  """A loss and a metric of a model's outputs.

  Attributes:
    name: the key in ``OBJECTIVES``.
    per_example_loss: ``(outputs, x, y) -> (B,)``.
    per_example_metric: ``(outputs, y) -> (B,)`` or None (no metric: tasks
      report NaN).
    has_predictions: whether outputs are logits over classes, so an
      observation of softmax predictions (Xu et al. 2019) has a meaning.
    description: what the loss and metric are, for errors and reports.
  """
  name: str
  per_example_loss: Callable[..., chex.Array]
  per_example_metric: Optional[Callable[..., chex.Array]]
  has_predictions: bool
  description: str

  def metric(self, outputs: chex.Array, y: chex.Array) -> chex.Array:
    """``(B,)`` metric, NaN where the objective has none."""
    if self.per_example_metric is None:
      return jnp.full(outputs.shape[:1], jnp.nan, jnp.float32)
    return self.per_example_metric(outputs, y)

  def predictions(self, outputs: chex.Array) -> chex.Array:
    """Softmax predictions, one row per position: ``(B * positions, C)``.

    Xu et al. 2019's observation compares the predictions of a fixed probe
    batch across decisions; for a language model every token of the probe
    is one row (rank-2 logits: the plain softmax, bit for bit).

    Raises:
      ValueError: the objective has no class predictions.
    """
    if not self.has_predictions:
      raise ValueError(
          f"objective {self.name!r} ({self.description}) has no class "
          "predictions; observations that read softmax predictions (the "
          "Xu et al. 2019 'dynamics' kinds) need a cross-entropy task. "
          "Observations that work on any loss: 'scale_free', "
          "'weight_stats', 'per_example'.")
    return jax.nn.softmax(outputs).reshape(-1, outputs.shape[-1])


OBJECTIVES = {
    "cross_entropy": Objective(
        "cross_entropy", lambda outputs, x, y: cross_entropy(outputs, y),
        token_accuracy, True,
        "softmax cross entropy in nats with accuracy, per example or per "
        "token"),
    "mse": Objective(
        "mse", lambda outputs, x, y: mse(outputs, x), None, False,
        "mean squared reconstruction error of the input"),
}
KNOWN_OBJECTIVES = tuple(OBJECTIVES)


def get_objective(name: str) -> Objective:
  """The objective called ``name``; unknown names raise ``ValueError``."""
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown loss {name!r}; allowed: "
                     f"{', '.join(KNOWN_OBJECTIVES)}.")
  return OBJECTIVES[name]
