r"""Cost of the state features inside the jitted train step.

Two measurements, each "train step + features in ONE jit" against "the same
train step alone" (that is how the LR environment and the ``controlled``
optax wrapper use them):

  (a) Fu 2016 weight statistics (193 numbers) of the last conv layer, for the
      NOS ConvNet and WRN-40-4 on CIFAR-10-shaped input (32x32x3); target
      <= 2% of a train step.
  (b) Daniel 2016 per-example features (phi1, phi2 + running average and
      uncertainty) for LeNet-5 on Fashion-MNIST-shaped input (28x28x1) at
      batch 128, in three forms: ``jvp`` (value_and_grad + one jax.jvp of the
      loss vector along the update), ``linearize`` (one jax.linearize shared by
      the gradient and the jvp), and the reference ``vmap(grad)``
      (per-example gradients); target <= 15% for the jvp forms. ``jvp, m of
      B``: phi1's JVP over a random sub-batch of m examples (phi2 still from
      all B losses, which the training forward pass has). ``deltas``:
      ``delta_losses_grad_and_derivatives`` (backprop deltas of the training
      backward pass contracted with each layer applied with the update).

Inputs are random arrays of the data sets' shapes (the cost does not depend
on the pixel values). Train step: SGD with momentum 0.9, softmax cross
entropy, batch norm in train mode. Timing: variants are interleaved in every
round (order rotated) so that load from other jobs on the shared cores hits
all of them; each round times ``--iters`` calls per variant; the table gives
the median per-step time over rounds and the median over rounds of the
per-round ratio to the plain step.

(c) ``subset_noise``: not a timing; how far the smoothed Daniel features
      from a JVP over m of the B examples are from the whole-batch ones on
      real Fashion-MNIST (needs ``LR_META_DATA_DIR``).

Usage:
  python benchmarks/feature_cost.py                      # timings
  python benchmarks/feature_cost.py --parts=weight --wrn_batch=16
  python benchmarks/feature_cost.py --parts=per_example --rounds=9
  python benchmarks/feature_cost.py --parts=subset_noise --subsets=32,16
"""

import argparse
import importlib.util
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import features
from lr_meta.features import per_example as pe
from lr_meta.tasks import models


def _load_reference():
  """``tests/per_example_reference.py``: the forms the library does not ship."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))), "tests", "per_example_reference.py")
  spec = importlib.util.spec_from_file_location("per_example_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


reference = _load_reference()


def _make_step(model, has_bn, lr=0.05, extra=None):
  """Jitted SGD-momentum train step; ``extra(new_params, ...)`` adds features."""
  opt = optax.sgd(lr, momentum=0.9)

  def loss_fn(params, batch_stats, x, y):
    variables = {"params": params}
    if has_bn:
      variables["batch_stats"] = batch_stats
      logits, new_state = model.apply(variables, x, train=True,
                                      mutable=["batch_stats"])
      new_stats = new_state["batch_stats"]
    else:
      logits = model.apply(variables, x, train=True)
      new_stats = batch_stats
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, new_stats

  @jax.jit
  def step(params, opt_state, batch_stats, x, y):
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    out = (params, opt_state, new_stats, loss)
    if extra is not None:
      out = out + (extra(params, lr),)
    return out

  return step, opt


def _time(fn, args, iters):
  t0 = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / iters


def _interleaved(variants, args, rounds, iters):
  """Median seconds per call and median per-round ratio to variants[0]."""
  names = list(variants)
  for name in names:  # compile + warm up
    jax.block_until_ready(variants[name](*args))
    jax.block_until_ready(variants[name](*args))
  times = {n: [] for n in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      times[name].append(_time(variants[name], args, iters))
  base = times[names[0]]
  return {n: (statistics.median(times[n]),
              statistics.median([t / b for t, b in zip(times[n], base)]),
              min(times[n]))
          for n in names}


def _row(label, batch, res, base_name):
  base = res[base_name][0]
  lines = []
  for name, (med, ratio, best) in res.items():
    over = "-" if name == base_name else f"{100 * (ratio - 1):+.1f}%"
    extra = "-" if name == base_name else f"{1e3 * (med - base):.2f}"
    lines.append(f"| {label} | {batch} | {name} | {1e3 * med:.2f} | "
                 f"{1e3 * best:.2f} | {extra} | {over} |")
  return lines


def weight_part(args):
  cases = [("NOS ConvNet", models.NOSConvNet(), args.nos_batch)]
  if args.wrn_depth > 0:
    cases.append((f"WRN-{args.wrn_depth}-{args.wrn_width}",
                  models.WideResNet(depth=args.wrn_depth, width=args.wrn_width),
                  args.wrn_batch))
  lines = []
  for label, model, batch in cases:
    key = jax.random.key(0)
    x = jax.random.uniform(key, (batch, 32, 32, 3))
    y = jax.random.randint(key, (batch,), 0, 10)
    variables = model.init(jax.random.key(1), x[:2])
    layer = features.last_conv_layer(variables)  # resolved once, from init
    params, stats = variables["params"], variables["batch_stats"]
    plain, opt = _make_step(model, True)
    with_feats, _ = _make_step(
        model, True,
        extra=lambda p, lr: features.layer_weight_stats(p, lr, layer))
    feats_only = jax.jit(lambda p: features.layer_weight_stats(p, 0.05, layer))
    step_args = (params, opt.init(params), stats, x, y)
    res = _interleaved({"train step": plain, "+ weight stats": with_feats},
                       step_args, args.rounds, args.iters)
    kernel = features.get_kernel(params, layer)
    alone = _interleaved({"weight stats alone": feats_only}, (params,),
                         args.rounds, max(args.iters, 20))
    lines += _row(f"{label}, last conv {features.layer_name(layer)} "
                  f"{tuple(kernel.shape)}", batch, res, "train step")
    med, _, best = alone["weight stats alone"]
    frac = 100 * med / res["train step"][0]
    lines.append(f"| {label} | - | weight stats alone (own jit) | "
                 f"{1e3 * med:.3f} | {1e3 * best:.3f} | - | "
                 f"{frac:.2f}% of step |")
  return lines


def per_example_part(args):
  model = models.LeNet5()
  batch = args.lenet_batch
  key = jax.random.key(0)
  x = jax.random.uniform(key, (batch, 28, 28, 1))
  y = jax.random.randint(key, (batch,), 0, 10)
  params = model.init(jax.random.key(1), x[:2])["params"]
  lr, gamma = 0.05, 0.9
  opt = optax.sgd(lr, momentum=0.9)

  def loss_vector(p, xs, ys):
    logits = model.apply({"params": p}, xs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys)

  def example_loss(p, xi, yi):
    return loss_vector(p, xi[None], yi[None])[0]

  @jax.jit
  def plain(p, opt_state, phi_state, xs, ys):
    loss, grads = jax.value_and_grad(
        lambda q: loss_vector(q, xs, ys).mean())(p)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, phi_state, loss

  def jvp_form(m):
    """phi1 from the JVP over the first m examples; phi2 from all B."""

    @jax.jit
    def step(p, opt_state, phi_state, xs, ys):
      def mean_loss(q):   # also returns the (B,) losses of this forward
        batch_losses = loss_vector(q, xs, ys)
        return batch_losses.mean(), batch_losses
      (loss, batch_losses), grads = jax.value_and_grad(
          mean_loss, has_aux=True)(p)
      updates, opt_state = opt.update(grads, opt_state, p)
      phi = pe.predicted_change_features(
          lambda q: loss_vector(q, xs[:m], ys[:m]), p, updates, batch_losses)
      phi_state = features.running_stats_update(phi_state, phi, gamma)
      return optax.apply_updates(p, updates), opt_state, phi_state, loss
    return step

  @jax.jit
  def linearize_form(p, opt_state, phi_state, xs, ys):
    losses, grads, jvp_fn = reference.linearize_losses(
        lambda q: loss_vector(q, xs, ys), p)
    updates, opt_state = opt.update(grads, opt_state, p)
    phi = pe.per_example_features(losses, jvp_fn(updates))
    phi_state = features.running_stats_update(phi_state, phi, gamma)
    return optax.apply_updates(p, updates), opt_state, phi_state, losses.mean()

  @jax.jit
  def vmap_grad_form(p, opt_state, phi_state, xs, ys):
    grads_i = reference.per_example_grads(example_loss, p, xs, ys)
    grads = jax.tree.map(lambda g: g.mean(0), grads_i)
    losses = jax.vmap(example_loss, (None, 0, 0))(p, xs, ys)
    updates, opt_state = opt.update(grads, opt_state, p)
    derivs = reference.directional_derivatives_from_grads(grads_i, updates)
    phi = pe.per_example_features(losses, derivs)
    phi_state = features.running_stats_update(phi_state, phi, gamma)
    return optax.apply_updates(p, updates), opt_state, phi_state, losses.mean()

  @jax.jit
  def delta_form(p, opt_state, phi_state, xs, ys):
    box = {}

    def update_fn(grads):
      updates, box["opt_state"] = opt.update(grads, opt_state, p)
      return updates
    losses, _, updates, derivs = reference.delta_losses_grad_and_derivatives(
        model, p, xs, ys, update_fn)
    phi = pe.per_example_features(losses, derivs)
    phi_state = features.running_stats_update(phi_state, phi, gamma)
    return (optax.apply_updates(p, updates), box["opt_state"], phi_state,
            losses.mean())

  step_args = (params, opt.init(params),
               features.running_stats_init(jnp.zeros(2)), x, y)
  subsets = {f"+ phi (jvp, {m} of {batch})": jvp_form(m)
             for m in args.subsets if m < batch}
  res = _interleaved({"train step": plain, "+ phi (jvp)": jvp_form(batch),
                      **subsets,
                      "+ phi (linearize)": linearize_form,
                      "+ phi (deltas)": delta_form,
                      "+ phi (vmap(grad))": vmap_grad_form},
                     step_args, args.rounds, args.iters)
  return _row("LeNet-5, Fashion-MNIST shape", batch, res, "train step")


def subset_noise_part(args):
  """How far the smoothed features from an m-example JVP are from all B.

  Real Fashion-MNIST (``LR_META_DATA_DIR``), LeNet-5, SGD at a static LR
  (action 0 of 'daniel2016'), the same seed for every m, so the runs see the
  same batches and the same optimizee trajectory (the features do not act
  on it): differences come only from estimating Var_i(grad_i . dw) from m
  examples. Compared with how much phi1_hat moves across LRs (the signal
  the controller reads).
  """
  from lr_meta import tasks  # pylint: disable=g-import-not-at-top
  from lr_meta.envs import lr_env
  task = tasks.make_task("fashion_mnist", "lenet5", optimizer="sgd",
                         batch_size=args.lenet_batch, num_train_examples=10_000,
                         num_val_examples=100, num_test_examples=100)
  env = lr_env.LREnv(task, "daniel2016")
  lrs = (1e-3, 1e-2, 1e-1)
  key = jax.random.PRNGKey(0)
  decisions, steps = 20, 10

  def features_over_time(lr, m):
    p = env.default_params().with_fields(
        num_decisions=decisions, steps_per_decision=steps, initial_lrs=(lr,),
        per_example_subset=m, num_val_examples=None)  # the task's 100
    obs, state = env.reset(key, p)
    def body(c, _):
      obs, c, _, _, _, _ = env.step(key, c, jnp.zeros((1,)), p)
      return c, obs
    return jax.lax.scan(body, state, None, length=decisions)[1]  # [T, 4]

  run = jax.jit(features_over_time, static_argnums=(0, 1))
  full = {lr: np.asarray(run(lr, None)) for lr in lrs}
  # Signal: the mean gap in phi1_hat between neighbouring LRs (a decade).
  gaps = [np.mean(np.abs(full[b][:, 0] - full[a][:, 0]))
          for a, b in zip(lrs, lrs[1:])]
  lines = [f"phi1_hat over a decade of LR (the signal): mean |gap| "
           f"{np.mean(gaps):.3f}", "",
           "| m of B | LR | mean abs error phi1_hat | phi2_hat | u1 | u2 |",
           "|---|---|---|---|---|---|"]
  for m in args.subsets:
    for lr in lrs:
      err = np.mean(np.abs(np.asarray(run(lr, m)) - full[lr]), axis=0)
      lines.append(f"| {m} of {args.lenet_batch} | {lr:g} | {err[0]:.3f} | "
                   f"{err[1]:.3f} | {err[2]:.3f} | {err[3]:.3f} |")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--parts", default="weight,per_example",
                      help="comma list of: weight, per_example, "
                      "subset_noise")
  parser.add_argument("--rounds", type=int, default=7,
                      help="interleaved rounds; medians over rounds")
  parser.add_argument("--iters", type=int, default=5,
                      help="calls timed per variant per round")
  parser.add_argument("--nos_batch", type=int, default=128)
  parser.add_argument("--wrn_batch", type=int, default=16,
                      help="WRN batch (128 is slow on a 2-core CPU)")
  parser.add_argument("--wrn_depth", type=int, default=40,
                      help="0 skips the WRN case")
  parser.add_argument("--wrn_width", type=int, default=4)
  parser.add_argument("--lenet_batch", type=int, default=128)
  parser.add_argument("--subsets", type=lambda v: [int(m) for m in v.split(",")],
                      default=[32, 16],
                      help="sub-batch sizes m for phi1's JVP (comma list)")
  args = parser.parse_args()
  parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  part_fns = {"weight": weight_part, "per_example": per_example_part,
              "subset_noise": subset_noise_part}
  for p in parts:
    if p not in part_fns:
      raise ValueError(f"Unknown part {p!r}; allowed: {', '.join(part_fns)}.")

  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"devices {jax.devices()}; rounds {args.rounds} x iters {args.iters}")
  for p in parts:
    if p != "subset_noise":
      print()
      print("| model / features | batch | variant | median ms/step | best ms "
            "| extra ms | overhead (median of per-round ratios) |")
      print("|---|---|---|---|---|---|---|")
    for line in part_fns[p](args):
      print(line, flush=True)


if __name__ == "__main__":
  main()
