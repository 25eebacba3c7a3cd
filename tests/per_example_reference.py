"""Reference forms of the per-example features (tests and benchmarks only).

``lr_meta.features.per_example`` computes ``grad_i . dw`` for all examples
with one ``jax.jvp`` of the loss vector. The tests check it, and
``benchmarks/feature_cost.py`` times it, against three other forms:

* ``per_example_grads`` + ``directional_derivatives_from_grads``: B
  per-example gradients by ``vmap(grad)``, the exact oracle (memory and time
  grow with B x the number of params);
* ``linearize_losses``: one ``jax.linearize`` gives the losses, the batch
  gradient (its transpose) and the JVP function, sharing the forward pass
  with training;
* ``delta_losses_grad_and_derivatives``: Goodfellow's 2015 backprop-delta
  form, exact for models made only of Dense/Conv layers.
"""

from typing import Any, Callable

import chex
import flax
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lr_meta.features import per_example as pe

# pylint: disable=protected-access  (shares the library's input checks)


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


def linearize_losses(loss_vector_fn: Callable[..., Any], params: Any,
                     has_aux: bool = False):
  """Losses, batch-mean gradient and the JVP function from one linearisation.

  For a train step that also wants ``phi1``::

    losses, grad, jvp_fn = linearize_losses(loss_vector_fn, params)
    updates, opt_state = opt.update(grad, opt_state, params)
    derivatives = jvp_fn(updates)                 # grad_i . dw, (B,)
    phi = pe.per_example_features(losses, derivatives)

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
  pe._check_losses(losses)
  transpose = jax.linear_transpose(lin_fn, params)
  (grad,) = transpose(jnp.full_like(losses, 1.0 / losses.shape[0]))

  def jvp_fn(dw):
    return lin_fn(pe._tangent_like(params, dw))

  return (losses, grad, jvp_fn, aux) if has_aux else (losses, grad, jvp_fn)


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
                     "use pe.losses_and_directional_derivatives (jvp) instead.")
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
