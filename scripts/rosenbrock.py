r"""Bello et al. 2017, Figure 5: PowerSign against SGD, Momentum, RMSProp, Adam.

Each optimizer runs `--steps` (4000) iterations on the Rosenbrock function
(a = 1, b = 100) with each of 4 learning rates on a log scale; Adam's epsilon
is also tuned over 1e-3 .. 1e-8. The best final loss per optimizer is kept,
plotted (trajectories on the contour plot, loss curves) and tabulated.

  python scripts/rosenbrock.py --outdir runs/rosenbrock

Writes rosenbrock_trajectories.png, rosenbrock_losses.png and
rosenbrock.md to --outdir.
"""

import functools
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import optax

import lr_meta.optax as lmo

_OUTDIR = flags.DEFINE_string("outdir", "runs/rosenbrock", "Output folder.")
_STEPS = flags.DEFINE_integer("steps", 4000, "Iterations per run.")
_INIT = flags.DEFINE_list("init", ["0.0", "0.0"],
                          "Starting point (x, y); optax's protocol uses (0, 0).")
_LEARNING_RATES = flags.DEFINE_list(
    "learning_rates", ["3e-4", "1e-3", "3e-3", "1e-2"],
    "The 4 learning rates (half decades, log scale) tried for every "
    "optimizer.")
_ADAM_EPS = flags.DEFINE_list(
    "adam_eps", ["1e-3", "1e-4", "1e-5", "1e-6", "1e-7", "1e-8"],
    "Epsilons tried for Adam.")

OPTIMIZERS = {
    "SGD": lambda lr, eps: optax.sgd(lr),
    "Momentum": lambda lr, eps: optax.sgd(lr, momentum=0.9),
    "RMSProp": lambda lr, eps: optax.rmsprop(lr),
    "Adam": lambda lr, eps: optax.adam(lr, eps=eps),
    "PowerSign": lambda lr, eps: lmo.power_sign(lr),
}


def rosenbrock(p, a=1.0, b=100.0):
  return (a - p[0]) ** 2 + b * (p[1] - p[0] ** 2) ** 2


@functools.partial(jax.jit, static_argnums=(0, 3))
def run(name, learning_rate, eps, steps, init):
  """Trajectory (steps + 1, 2) and losses (steps + 1,) of one run."""
  opt = OPTIMIZERS[name](learning_rate, eps)

  def step(carry, _):
    params, state = carry
    updates, state = opt.update(jax.grad(rosenbrock)(params), state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  _, path = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
  path = jnp.concatenate([init[None], path])
  return path, jax.vmap(rosenbrock)(path)


def final_loss(losses):
  value = float(losses[-1])
  return value if np.isfinite(value) and np.all(np.isfinite(losses)) else np.inf


def main(argv):
  del argv
  os.makedirs(_OUTDIR.value, exist_ok=True)
  init = jnp.array([float(v) for v in _INIT.value])
  lrs = [float(v) for v in _LEARNING_RATES.value]
  best, diverged, tried = {}, {}, {}
  for name in OPTIMIZERS:
    epsilons = ([float(v) for v in _ADAM_EPS.value] if name == "Adam"
                else [1e-8])
    for lr in lrs:
      for eps in epsilons:
        path, losses = run(name, lr, eps, _STEPS.value, init)
        loss = final_loss(np.asarray(losses))
        diverged[name] = diverged.get(name, 0) + int(not np.isfinite(loss))
        tried[name] = tried.get(name, 0) + 1
        if name not in best or loss < best[name]["loss"]:
          best[name] = dict(loss=loss, lr=lr, eps=eps, path=np.asarray(path),
                            losses=np.asarray(losses))

  fig, ax = plt.subplots(figsize=(7, 6))
  xs, ys = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
  ax.contour(xs, ys, rosenbrock(np.stack([xs, ys])),
             levels=np.logspace(-1, 3.5, 20), cmap="gray", alpha=0.4)
  for name, run_ in best.items():
    path = run_["path"]
    ax.plot(path[:, 0], path[:, 1], label=f"{name} (lr {run_['lr']:g})")
  ax.plot([1], [1], "ko", markersize=8)
  ax.set_xlim(-2, 2)
  ax.set_ylim(-1, 3)
  ax.legend()
  ax.set_title(f"Rosenbrock, {_STEPS.value} iterations, best of "
               f"{len(lrs)} learning rates")
  fig.savefig(os.path.join(_OUTDIR.value, "rosenbrock_trajectories.png"),
              dpi=120)

  fig, ax = plt.subplots(figsize=(7, 4))
  for name, run_ in best.items():
    ax.semilogy(run_["losses"], label=name)
  ax.set_xlabel("iteration")
  ax.set_ylabel("f(x, y)")
  ax.legend()
  fig.savefig(os.path.join(_OUTDIR.value, "rosenbrock_losses.png"), dpi=120)

  lines = ["| optimizer | best lr | eps | final loss | distance to (1, 1) | "
           "first iteration with loss < 1e-3 | diverged settings |",
           "|---|---|---|---|---|---|---|"]
  for name, run_ in sorted(best.items(), key=lambda kv: kv[1]["loss"]):
    below = np.nonzero(run_["losses"] < 1e-3)[0]
    distance = float(np.linalg.norm(run_["path"][-1] - 1.0))
    eps = f"{run_['eps']:g}" if name == "Adam" else "-"
    lines.append(f"| {name} | {run_['lr']:g} | {eps} | {run_['loss']:.3e} | "
                 f"{distance:.3e} | {below[0] if below.size else 'never'} | "
                 f"{diverged[name]} of {tried[name]} |")
  table = "\n".join(lines)
  with open(os.path.join(_OUTDIR.value, "rosenbrock.md"), "w") as f:
    f.write(f"Rosenbrock from {tuple(init.tolist())}, {_STEPS.value} "
            f"iterations, learning rates {lrs}\n\n{table}\n")
  print(table)


if __name__ == "__main__":
  app.run(main)
