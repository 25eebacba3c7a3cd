"""Per-example-loss features of Daniel, Taylor & Nowozin (2016).

For the examples ``i`` of a batch with losses ``f_i``, per-example gradients
``grad_i`` and the step's update ``dw`` (what is added to the params, e.g.
``-lr * grad`` for SGD), the two base features are::

  phi1 = log Var_i(grad_i . dw)    predictive change: first-order Taylor
                                   estimate of each example's loss change
  phi2 = log Var_i(f_i)            disagreement of the function values

(``Var`` with ddof 0; ``log(var + eps)`` with a tiny eps so a zero variance
stays finite.) Smooth them with ``lr_meta.features.smoothing``.

Cost. Even the JVP below is one extra forward-and-tangent pass over the
batch, +38% of a LeNet-5 train step at batch 128 on CPU (the talk reports
36%); ``Var_i(grad_i . dw)`` can instead be estimated from a random
sub-batch of m examples (``predicted_change_features`` with a loss vector
over m examples; ``Task.train_step_with_probe(probe_examples=m)``), whose
JVP costs ~m/B of it, while phi2 keeps the whole batch's losses, which the
training forward pass already has. The running average then smooths the
extra sampling noise (see BUILD_NOTES for the measured cost and noise).

``grad_i . dw`` for all i is the directional derivative of the per-example
loss VECTOR along ``dw``, i.e. one Jacobian-vector product: ``jax.jvp`` of
``loss_vector_fn: params -> (B,)`` at ``params`` with tangent ``dw``. That
costs about one extra forward pass instead of materialising B gradients
(``vmap(grad)``). Three other forms, measured by
``benchmarks/feature_cost.py`` and used as oracles by the tests, live in
``tests/per_example_reference.py``: ``vmap(grad)`` per-example gradients,
one ``jax.linearize`` shared by the gradient and the JVP, and Goodfellow's
backprop-delta form.

Batch norm and dropout: ``loss_vector_fn`` is a closure that fixes the batch,
labels, the dropout key and the batch statistics (train mode normalises with
the batch's own statistics, so ``f_i`` depends on the other examples too; the
JVP then differentiates exactly what ``loss_vector_fn`` computes, coupling
included, which is what the Taylor expansion of the next step needs). Return
the new ``batch_stats`` as an auxiliary output and use ``has_aux=True``.
"""

from typing import Any, Callable, Optional

import chex
import jax
import jax.numpy as jnp

__all__ = [
    "FEATURE_NAMES", "LOG_EPS", "losses_and_directional_derivatives",
    "per_example_features", "predicted_change_features",
]

LOG_EPS = 1e-30
FEATURE_NAMES = ("predictive_change", "disagreement")  # phi1, phi2


def _check_losses(losses: chex.Array) -> None:
  if losses.ndim != 1:
    raise ValueError(
        "loss_vector_fn must return one loss per example, shape (B,); got "
        f"shape {losses.shape}.")


def _tangent_like(params: Any, dw: Any) -> Any:
  if jax.tree.structure(params) != jax.tree.structure(dw):
    raise ValueError(
        "dw must have the structure of params; got "
        f"{jax.tree.structure(dw)} for params {jax.tree.structure(params)}.")
  chex.assert_trees_all_equal_shapes(params, dw)
  return jax.tree.map(lambda p, d: jnp.asarray(d, p.dtype), params, dw)


def losses_and_directional_derivatives(
    loss_vector_fn: Callable[..., Any], params: Any, dw: Any,
    has_aux: bool = False):
  """Per-example losses ``f`` and ``grad_i . dw`` from ONE ``jax.jvp``.

  Args:
    loss_vector_fn: ``params -> (B,)`` per-example losses (or ``(losses,
      aux)`` with ``has_aux``); a closure over the batch, labels, RNG keys.
    params: point of evaluation.
    dw: the step's update, same structure and shapes as ``params``.
    has_aux: whether ``loss_vector_fn`` returns ``(losses, aux)``.

  Returns:
    ``(losses, derivatives)``, both ``(B,)``; ``(losses, derivatives, aux)``
    with ``has_aux``.
  """
  dw = _tangent_like(params, dw)
  out = jax.jvp(loss_vector_fn, (params,), (dw,), has_aux=has_aux)
  losses, derivatives = out[0], out[1]
  _check_losses(losses)
  return out if has_aux else (losses, derivatives)


def per_example_features(losses: chex.Array, derivatives: chex.Array,
                         eps: float = LOG_EPS) -> chex.Array:
  """``[phi1, phi2] = [log Var_i(grad_i . dw), log Var_i(f_i)]``.

  Args:
    losses: per-example losses ``f_i``, ``(B,)``.
    derivatives: ``grad_i . dw``, ``(m,)``: the same examples, or a random
      sub-batch of them (a noisier estimate of the same variance; with ddof
      0 its expectation is ``(m - 1) / m`` of it, -0.03 in log at m = 32;
      see ``predicted_change_features``).
    eps: added to each variance before the log.

  Returns:
    ``(2,)`` array ordered as ``FEATURE_NAMES``.
  """
  chex.assert_rank([losses, derivatives], 1)
  return jnp.stack([jnp.log(jnp.var(derivatives) + eps),
                    jnp.log(jnp.var(losses) + eps)])


def predicted_change_features(loss_vector_fn: Callable[..., Any],
                              params: Any, dw: Any,
                              batch_losses: Optional[chex.Array] = None,
                              eps: float = LOG_EPS) -> chex.Array:
  """``per_example_features`` from one ``jax.jvp``; see the module docstring.

  Args:
    loss_vector_fn: ``params -> (m,)`` per-example losses of the examples
      whose ``grad_i . dw`` give phi1 (the whole batch, or a random
      sub-batch of it: the JVP costs about one forward pass over them, so
      ``m = B / 4`` cuts the feature's cost by ~4; ``Task.
      train_step_with_probe(..., probe_examples=m)``).
    params: point of evaluation (before the step).
    dw: the step's update.
    batch_losses: optional ``(B,)`` per-example losses of the whole batch
      (the training forward pass has them for free); phi2 uses them when
      given, else the ``m`` losses of the JVP's primal pass.
    eps: added to each variance before the log.

  Returns:
    ``(2,)`` ``[phi1, phi2]``.
  """
  losses, derivatives = losses_and_directional_derivatives(
      loss_vector_fn, params, dw)
  if batch_losses is not None:
    losses = batch_losses
  return per_example_features(losses, derivatives, eps)
