"""Transfer of update rules to a larger model (Bello et al. 2017, Tables 1, 6).

  python scripts/evaluate_rules.py --outdir runs/nos_transfer \
      --rule "exp(sign(g) * sign(m)) * g" --rule "(1 + sign(g) * sign(m)) * g" \
      --leaderboard runs/nos_cpu/leaderboard.md --top 3

Every rule (given with --rule, e.g. PowerSign, AddSign and their ld/cd/rd
variants such as ``exp(ld * sign(g) * sign(m)) * g``, or the best rules of a
search's leaderboard.md) is compiled with `lr_meta.optax.from_dsl` and
compared with SGD, Momentum, Adam and RMSProp on a model larger than the
search's child (default: WRN-10-1 on a CIFAR-10 subset, affordable on CPU;
``--model resnet18`` or ``--depth 16 --width 4`` for the paper's scale):

1. a coarse LR grid (``--lr_grid``, one seed) picks each optimizer's best LR;
2. 3 LRs around it (best / 3, best, best x 3) x ``--seeds`` seeds;
3. results.md: test accuracy mean (std) per optimizer and LR, the best LR
   (by mean validation accuracy) in bold; accuracy.png: the best LR's test
   accuracy per optimizer with the seed spread.
"""

import os
import re

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import baselines
from lr_meta import seeds as seeds_lib
from lr_meta import tasks
import lr_meta.optax as lmo

_RULES = flags.DEFINE_multi_string("rule", [], "Readable NOS rule (repeat).")
_LEADERBOARD = flags.DEFINE_string(
    "leaderboard", None, "leaderboard.md of scripts/search_optimizer.py.")
_TOP = flags.DEFINE_integer("top", 3, "Rules taken from --leaderboard.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/nos_transfer", "Output folder.")
_DATASET = flags.DEFINE_string("dataset", "cifar10", "Data set.")
_MODEL = flags.DEFINE_string("model", "wide_resnet", "Model (KNOWN_MODELS).")
_DEPTH = flags.DEFINE_integer("depth", 10, "WideResNet depth (6n+4).")
_WIDTH = flags.DEFINE_integer("width", 1, "WideResNet width.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps per run.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_NUM_TRAIN = flags.DEFINE_integer("num_train_examples", 5000, "Train subset.")
_NUM_EVAL = flags.DEFINE_integer("num_eval_examples", 1000,
                                 "Validation and test subset sizes.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per learning rate.")
_LR_GRID = flags.DEFINE_list("lr_grid", ["1e-4", "1e-3", "1e-2", "1e-1", "1"],
                             "Coarse LR grid (one seed).")

BASELINES = ("sgd", "momentum", "adam", "rmsprop")
NAMES = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam",
         "rmsprop": "RMSProp"}


def leaderboard_rules(path, top):
  """The first `top` rules (in backticks) of a leaderboard.md table."""
  rules = []
  with open(path) as f:
    for line in f:
      match = re.match(r"\|\s*\d+\s*\|\s*`([^`]+)`", line)
      if match:
        rules.append(match.group(1))
  return rules[:top]


def optimizer_for(name, num_steps):
  """Baseline name or readable rule -> optimizer with injectable LR."""
  if name in BASELINES:
    return tasks.make_optimizer(name)
  return optax.inject_hyperparams(
      lambda learning_rate: lmo.from_dsl(name, learning_rate,
                                         decay_steps=num_steps))(
                                             learning_rate=0.0)


def final_metrics(task, lr, seeds):
  """Validation and test accuracy and divergence of `seeds` runs at `lr`."""
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  lrs = jnp.full((len(seeds), _STEPS.value), lr, jnp.float32)
  # The segment length: 'chunk' (conv nets on CPU) unrolls a segment's
  # steps in one program, and a 500-step segment of LeNet-5 took > 16 min
  # and 9 GB to compile; the largest divisor of the steps <= 20 does not.
  # The per-segment validation curve is unused here (1 example); the final
  # metrics below use the whole splits.
  segment = max(d for d in range(1, 21) if _STEPS.value % d == 0)
  state, _ = tasks.run_training_batch(task, keys, lrs, eval_every=segment,
                                      num_val_examples=1)
  return (np.asarray(tasks.evaluate_batch(task, state, "val").accuracy),
          np.asarray(tasks.evaluate_batch(task, state, "test").accuracy),
          np.asarray(state.diverged))


def main(argv):
  del argv
  rules = list(_RULES.value)
  if _LEADERBOARD.value:
    rules += leaderboard_rules(_LEADERBOARD.value, _TOP.value)
  for rule in rules:
    lmo.from_dsl(rule, 0.1, decay_steps=_STEPS.value)  # fails early, clearly
  model_kwargs = (dict(depth=_DEPTH.value, width=_WIDTH.value)
                  if _MODEL.value == "wide_resnet" else {})
  base = tasks.make_task(_DATASET.value, _MODEL.value, model_kwargs=model_kwargs,
                         batch_size=_BATCH.value,
                         num_train_examples=_NUM_TRAIN.value,
                         num_val_examples=_NUM_EVAL.value,
                         num_test_examples=_NUM_EVAL.value)
  os.makedirs(_OUTDIR.value, exist_ok=True)
  grid = [float(x) for x in _LR_GRID.value]
  # The coarse grid runs on the first tuning seed; the fine grid picks its
  # best LR by validation accuracy on the next ones.
  tuning = seeds_lib.seed_range("tuning", _SEEDS.value + 1)
  coarse_seeds, seeds = list(tuning[:1]), list(tuning[1:])
  rows, best_rows, all_results = [], [], []
  for name in list(BASELINES) + rules:
    task = base.replace(optimizer=optimizer_for(name, _STEPS.value))
    coarse = [final_metrics(task, lr, coarse_seeds)[0][0] for lr in grid]
    center = grid[int(np.argmax(coarse))]
    results = {lr: final_metrics(task, lr, seeds)
               for lr in (center / 3, center, center * 3)}
    all_results.append(results)
    best = max(results, key=lambda lr: results[lr][0].mean())
    label = NAMES.get(name, f"`{name}`")
    for lr, (val, test, diverged) in results.items():
      cell = baselines.mean_std(test, diverged)
      rows.append(f"| {label} | {lr:.3g} | {val.mean():.4f} | "
                  + (f"**{cell}**" if lr == best else cell)
                  + f" | {int(diverged.sum())} |")
    best_rows.append((label, results[best][1]))
    print(rows[-3:], flush=True)
  model = (f"WRN-{_DEPTH.value}-{_WIDTH.value}" if _MODEL.value == "wide_resnet"
           else _MODEL.value)
  header = (f"# Rules vs baselines: {model} on {_DATASET.value} "
            f"({_NUM_TRAIN.value} train examples, {_STEPS.value} steps, batch "
            f"{_BATCH.value}, {len(seeds)} seeds)\n\n"
            "| optimizer | LR | val acc (mean) | test acc mean (std) | "
            "diverged |\n|---|---:|---:|---:|---:|\n")
  note = ("\n" + baselines.DIVERGED_NOTE + "\n"
          if any(r[2].any() for res in all_results for r in res.values())
          else "")
  with open(os.path.join(_OUTDIR.value, "results.md"), "w") as f:
    f.write(header + "\n".join(rows) + "\n" + note)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(max(5, len(best_rows)), 4))
  ax.bar(range(len(best_rows)), [t.mean() for _, t in best_rows],
         yerr=[t.std() for _, t in best_rows], capsize=3)
  ax.set_xticks(range(len(best_rows)))
  ax.set_xticklabels([l.strip("`")[:25] for l, _ in best_rows], rotation=30,
                     ha="right", fontsize=7)
  ax.set_ylabel("test accuracy (best LR)")
  ax.set_title(f"{model} on {_DATASET.value}, {_STEPS.value} steps, batch "
               f"{_BATCH.value}, {len(seeds)} seeds")
  fig.tight_layout()
  fig.savefig(os.path.join(_OUTDIR.value, "accuracy.png"), dpi=120)
  print(open(os.path.join(_OUTDIR.value, "results.md")).read())


if __name__ == "__main__":
  app.run(main)
