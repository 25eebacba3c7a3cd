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
(``vmap(grad)``, kept here only as the reference ``per_example_grads`` for
tests and benchmarks). ``linearize_losses`` goes further for use inside a
train step: one linearisation gives the losses, the batch gradient (its
transpose) AND the JVP function, so the forward pass is shared with training.

Batch norm and dropout: ``loss_vector_fn`` is a closure that fixes the batch,
labels, the dropout key and the batch statistics (train mode normalises with
the batch's own statistics, so ``f_i`` depends on the other examples too; the
JVP then differentiates exactly what ``loss_vector_fn`` computes, coupling
included, which is what the Taylor expansion of the next step needs). Return
the new ``batch_stats`` as an auxiliary output and use ``has_aux=True``.
"""

from typing import Any, Callable, Optional

import chex
import flax
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

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


def linearize_losses(loss_vector_fn: Callable[..., Any], params: Any,
                     has_aux: bool = False):
  """Losses, batch-mean gradient and the JVP function from one linearisation.

  For a train step that also wants ``phi1``::

    losses, grad, jvp_fn = linearize_losses(loss_vector_fn, params)
    updates, opt_state = opt.update(grad, opt_state, params)
    derivatives = jvp_fn(updates)                 # grad_i . dw, (B,)
    phi = per_example_features(losses, derivatives)

  The forward pass is shared: the gradient is the transpose of the
  linearisation applied to ``ones(B) / B`` (what ``jax.vjp`` does internally),
  and ``jvp_fn`` only adds the tangent pass.

  Args:
    loss_vector_fn: ``params -> (B,)`` (or ``(losses, aux)`` with ``has_aux``).
    params: point of evaluation.
    has_aux: whether ``loss_vector_fn`` returns ``(losses, aux)``.

  Returns:
    ``(losses, grad, jvp_fn)`` or ``(losses, grad, jvp_fn, aux)``: ``grad`` is
    the gradient of ``mean(losses)``; ``jvp_fn(dw) -> (B,)``.
  """
  if has_aux:
    losses, lin_fn, aux = jax.linearize(loss_vector_fn, params, has_aux=True)
  else:
    losses, lin_fn = jax.linearize(loss_vector_fn, params)
  _check_losses(losses)
  transpose = jax.linear_transpose(lin_fn, params)
  (grad,) = transpose(jnp.full_like(losses, 1.0 / losses.shape[0]))

  def jvp_fn(dw):
    return lin_fn(_tangent_like(params, dw))

  return (losses, grad, jvp_fn, aux) if has_aux else (losses, grad, jvp_fn)


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


# --- Backprop-delta form (Goodfellow 2015's per-example trick) --------------

_DELTA_LAYERS = (nn.Dense, nn.Conv)


def _delta_interceptor(next_fun, args, kwargs, context):
  """Records each Dense/Conv input and adds a zero perturbation to its output."""
  mod = context.module
  if context.method_name != "__call__" or not isinstance(mod, _DELTA_LAYERS):
    return next_fun(*args, **kwargs)
  mod.sow("intermediates", "inputs", args[0])
  return mod.perturb("out", next_fun(*args, **kwargs))


def _layer_modules(model: nn.Module, x: chex.Array):
  """``{path: unbound clone}`` of every Dense/Conv call; each called once."""
  mods = {}

  def record(next_fun, args, kwargs, context):
    mod = context.module
    if context.method_name == "__call__" and isinstance(mod, _DELTA_LAYERS):
      if mod.path in mods:
        raise ValueError(f"layer {'/'.join(mod.path)} is called more than "
                         "once; the delta form needs one call per layer.")
      mods[mod.path] = mod.clone(parent=None)
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(record):
    jax.eval_shape(model.init, jax.random.key(0), x)
  return mods


def delta_losses_grad_and_derivatives(model: nn.Module, params: Any,
                                      x: chex.Array, labels: chex.Array,
                                      update_fn: Callable[[Any], Any]):
  """Losses, batch gradient, update and ``grad_i . dw`` without a JVP.

  For a layer ``z = W a + b`` (Dense, or Conv with ``W a`` a convolution),
  the per-example gradient is ``grad_i W = sum_p delta_i(p) a_i(p)^T`` with
  ``delta_i = d f_i / d z_i`` the backprop delta of example i (Goodfellow
  2015, "Efficient per-example gradient computations"), so

    grad_i . dw = sum_layers sum_p delta_i(p) . (dW a_i + db)(p),

  i.e. the layer applied with the UPDATE as its weights to its recorded
  input, contracted with the deltas. The deltas come for free from the
  training backward pass (``flax`` ``perturb`` on each layer output; the
  gradient of ``mean(f)`` w.r.t. ``z_i`` is ``delta_i / B``), so compared to
  ``losses_and_directional_derivatives`` this skips the JVP's primal
  recomputation and its ``W t`` half; it costs one extra layer application
  per layer. Exact for models made only of Dense/Conv layers (kernel and
  bias) and parameter-free ops, each layer called once, no batch norm and no
  dropout (e.g. ``MLP``, ``LeNet5``); anything else raises ValueError.

  Args:
    model: the Flax module (``model.apply({'params': p}, x)`` -> logits).
    params: its params.
    x, labels: the batch (integer labels; softmax cross entropy).
    update_fn: ``grad -> dw`` (e.g. ``lambda g: opt.update(g, s, p)[0]``);
      called once inside.

  Returns:
    ``(losses (B,), grad, dw, derivatives (B,))``.
  """
  mods = _layer_modules(model, x)
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  covered = {path + (leaf,) for path in mods for leaf in ("kernel", "bias")}
  extra = sorted("/".join(k) for k in flat if k not in covered)
  if extra:
    raise ValueError(f"params {extra} are not Dense/Conv kernels or biases; "
                     "use losses_and_directional_derivatives (jvp) instead.")
  with nn.intercept_methods(_delta_interceptor):
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  pert0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       shapes["perturbations"])
  b = x.shape[0]

  def mean_loss(p, pert):
    with nn.intercept_methods(_delta_interceptor):
      logits, state = model.apply({"params": p, "perturbations": pert}, x,
                                  mutable=["intermediates"])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.mean(losses), (losses, state["intermediates"])

  (_, (losses, inter)), (grad, dpert) = jax.value_and_grad(
      mean_loss, (0, 1), has_aux=True)(params, pert0)
  dw = update_fn(grad)
  inter = traverse_util.flatten_dict(flax.core.unfreeze(inter))
  dpert = traverse_util.flatten_dict(flax.core.unfreeze(dpert))
  dw_flat = traverse_util.flatten_dict(flax.core.unfreeze(dw))
  derivatives = jnp.zeros((b,), losses.dtype)
  for path, mod in mods.items():
    layer_dw = {leaf: dw_flat[path + (leaf,)] for leaf in ("kernel", "bias")
                if path + (leaf,) in dw_flat}
    z = mod.apply({"params": layer_dw}, inter[path + ("inputs",)][0])
    delta = dpert[path + ("out",)] * b
    derivatives = derivatives + jnp.sum((delta * z).reshape(b, -1), axis=1)
  return losses, grad, dw, derivatives


# --- Reference implementation (tests and benchmarks only) -------------------


def per_example_grads(example_loss_fn: Callable[..., chex.Array], params: Any,
                      *batch: Any) -> Any:
  """Per-example gradients by ``vmap(grad)``: B copies of the params.

  Reference only: memory and time grow with B x (number of params). Exact for
  models whose per-example loss depends on its own example only (no batch
  norm in train mode); for batch-coupled models differentiate the loss
  vector with ``jax.jacrev`` instead.

  Args:
    example_loss_fn: ``(params, *example) -> scalar`` loss of ONE example
      (unbatched arrays).
    params: point of evaluation.
    *batch: arrays with a leading batch axis, split into examples.

  Returns:
    Pytree like ``params`` with a leading batch axis on every leaf.
  """
  in_axes = (None,) + (0,) * len(batch)
  return jax.vmap(jax.grad(example_loss_fn), in_axes=in_axes)(params, *batch)


def directional_derivatives_from_grads(grads: Any, dw: Any) -> chex.Array:
  """``grad_i . dw`` for per-example gradients with a leading batch axis."""
  dots = jax.tree.map(
      lambda g, d: jnp.tensordot(g, d, axes=d.ndim), grads, dw)
  return sum(jax.tree.leaves(dots))
