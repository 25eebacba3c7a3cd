r"""The small character transformer on Tiny Shakespeare: reference run and speed.

Model: the well-known CPU "baby GPT" (4 layers, 4 heads, width 128, context
64, vocabulary 65; ``lr_meta.tasks.models.Transformer``, 818,176 params),
batch 12, AdamW (b2 0.99, weight decay 0.1 on matrices and embeddings only,
global-norm clipping 1.0), peak LR 1e-3 after 100 linear warm-up steps,
cosine to 1e-4 at step 2000, no dropout. Reported elsewhere at about 1.88
validation nats per character.

``--mode=reference`` trains it with lr_meta's task engine
(``tasks.run_training``: the whole run is one compiled ``lax.scan``, the
schedule is its LR array) and prints the final loss on lr_meta's validation
split (the first half of the last 10%), on its test split (the second half)
and on the whole last 10% (their token-weighted mean: the split the
reference number uses), every window of 64 characters, plus time and
steps/s.

``--mode=speed`` times whole runs of ``--steps`` steps, each compiled once
and timed on its second call (median of ``--rounds``), three ways:

  plain        a plain Flax + optax ``lax.scan`` loop of the same model,
               optimizer and window sampling, written here without lr_meta;
  lr_meta      ``tasks.run_training`` on the same task (divergence checks,
               metrics per step);
  controlled   the plain loop with ``lmo.controlled(adamw, generalist,
               num_steps)`` and ``lmo.probe_inputs`` on ``--probe`` fixed
               validation windows (the probe runs under ``lax.cond`` at the
               generalist's 20 decisions only).

FLOP/s: XLA's ``cost_analysis`` of one compiled training step (forward,
backward and update) times steps/s, next to the analytic ``6 N B L`` (N
non-embedding params) estimate.

Usage:
  python benchmarks/char_transformer.py --mode=reference
  python benchmarks/char_transformer.py --mode=speed --steps=300 --rounds=3
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import tasks
import lr_meta.optax as lmo

MODEL = dict(num_layers=4, num_heads=4, width=128, context_length=64)
BATCH, STEPS, WARMUP, PEAK, FINAL = 12, 2000, 100, 1e-3, 1e-4


def decay_mask(params):
  """Weight decay on matrices and embeddings, not on biases or norms."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(learning_rate):
  return optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(learning_rate, b1=0.9, b2=0.99, weight_decay=0.1,
                  mask=decay_mask))


def make_task(num_val=None, num_test=None):
  task = tasks.make_task("tiny_shakespeare", "transformer", MODEL,
                         optimizer="adamw", batch_size=BATCH,
                         num_val_examples=num_val, num_test_examples=num_test)
  # The reference optimizer, its LR injected as every lr_meta task's is.
  return task.replace(optimizer=optax.inject_hyperparams(adamw)(
      learning_rate=0.0))


def schedule(num_steps=STEPS):
  return optax.warmup_cosine_decay_schedule(
      0.0, PEAK, WARMUP, num_steps, end_value=FINAL)


def reference(args):
  task = make_task()
  lrs = schedule()(jnp.arange(STEPS))
  key = jax.random.key(args.seed)
  t0 = time.perf_counter()
  state, metrics = tasks.run_training(task, key, lrs, eval_every=STEPS,
                                      strategy="scan")
  jax.block_until_ready(state.params)
  wall = time.perf_counter() - t0
  val = task.evaluate(state, "val")
  test = task.evaluate(state, "test")
  n_val, n_test = task.num_examples("val"), task.num_examples("test")
  tenth = (float(val.loss) * n_val + float(test.loss) * n_test) / (
      n_val + n_test)
  print(f"params {sum(p.size for p in jax.tree.leaves(state.params)):,}")
  print(f"final train-batch loss {float(metrics.train.loss[-1]):.4f}")
  print(f"val loss {float(val.loss):.4f} nats ({tasks.bits(val.loss):.4f} "
        f"bits/char), test {float(test.loss):.4f}, whole last 10% "
        f"{tenth:.4f}; token accuracy val {float(val.accuracy):.4f}")
  print(f"{STEPS} steps in {wall:.1f} s incl. compile: "
        f"{STEPS / wall:.1f} steps/s")


def plain_run(task, tx, num_steps, probe=None):
  """A plain Flax + optax training run in one ``lax.scan``.

  ``probe``: ``(x, y)`` fixed windows fed to ``lmo.probe_inputs`` (for a
  ``controlled`` ``tx``).
  """
  model = task.model
  data = task.data.x_train, task.data.y_train
  n, length = data[0].shape[0], task.context_length

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, _):
    params, opt_state, key = carry
    key, sub = jax.random.split(key)
    starts = jax.random.randint(sub, (BATCH,), 0, n - length + 1)
    x, y = (jax.vmap(lambda s: jax.lax.dynamic_slice(a, (s,), (length,)))(
        starts) for a in data)
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    extra = {}
    if probe is not None:
      apply_fn = lambda p, x: model.apply({"params": p}, x)
      extra = lmo.probe_inputs(opt_state, apply_fn, params, *probe)
      extra["loss"] = loss
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return (optax.apply_updates(params, updates), opt_state, key), loss

  @jax.jit
  def run(key):
    params = model.init(key, task.example_input())["params"]
    carry, losses = jax.lax.scan(step, (params, tx.init(params), key), None,
                                 length=num_steps)
    return carry[0], losses

  return run, step


def _time(fn, rounds):
  jax.block_until_ready(fn())      # compile
  times = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def speed(args):
  task = make_task(num_val=args.probe, num_test=1)
  key = jax.random.key(args.seed)
  lrs = schedule(args.steps)(jnp.arange(args.steps))
  base = optax.inject_hyperparams(adamw)(learning_rate=PEAK)
  gen = lmo.pretrained_controller("generalist")
  controlled = lmo.controlled(base, gen, num_steps=args.steps)
  probe = task.first_examples("val", args.probe)
  plain, step = plain_run(task, optax.with_extra_args_support(base),
                          args.steps)
  ctrl_run, _ = plain_run(task, controlled, args.steps, probe=probe)
  variants = {
      "plain": lambda: plain(key)[1],
      "lr_meta": lambda: tasks.run_training(
          task, key, lrs, eval_every=args.steps, strategy="scan")[1],
      "controlled": lambda: ctrl_run(key)[1],
  }
  times = {name: _time(fn, args.rounds) for name, fn in variants.items()}

  params = task.model.init(key, task.example_input())["params"]
  carry = (params, base.init(params), key)
  compiled = jax.jit(step).lower(carry, None).compile()
  flops = compiled.cost_analysis()
  flops = (flops[0] if isinstance(flops, list) else flops).get("flops", 0.0)
  n_params = sum(p.size for p in jax.tree.leaves(params))
  non_embedding = n_params - params["input0_token_embed"]["embedding"].size \
      - params["input1_position_embed"]["embedding"].size
  analytic = 6 * non_embedding * BATCH * MODEL["context_length"]
  print(f"devices: {jax.devices()}; {args.steps} steps per run, median of "
        f"{args.rounds}")
  print(f"XLA flops per step {flops / 1e9:.3f} G; analytic 6NBL "
        f"{analytic / 1e9:.3f} G")
  for name, t in times.items():
    sps = args.steps / t
    print(f"{name:>10}: {t:7.2f} s  {sps:6.1f} steps/s  "
          f"{flops * sps / 1e9:6.1f} GFLOP/s  x{t / times['plain']:.3f} plain")
  over = times["controlled"] / times["plain"] - 1
  print(f"controlled + probe of {args.probe} windows at 20 decisions: "
        f"{100 * over:+.2f}% of the plain run's time")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mode", choices=("reference", "speed"),
                      default="speed")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--probe", type=int, default=16,
                      help="validation windows of the controller's probe")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  (reference if args.mode == "reference" else speed)(args)


if __name__ == "__main__":
  main()
