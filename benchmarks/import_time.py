r"""Import time of ``lr_meta.optax`` against ``optax`` + ``flax.linen``.

``lr_meta.optax`` is what most users import; it should cost little more than
the libraries it is built on. Each measurement is one fresh interpreter
that times its own ``import`` statement (``time.perf_counter`` around it, so
interpreter start-up is excluded); the two targets alternate so that load
from other jobs on shared cores hits both alike. One untimed warm-up run of
each target fills the bytecode caches first. The table gives the median and
the minimum over runs and their ratios (target / baseline); the acceptance
bound of the layering work is a median ratio <= 1.3.

The child processes import the ``lr_meta`` of this checkout (its root is put
first on ``PYTHONPATH``), and the script lists any module of the training
stack that ``import lr_meta.optax`` loaded (there should be none).

Usage:
  python benchmarks/import_time.py                 # 11 runs per target
  python benchmarks/import_time.py --runs=21
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
BASELINE = "optax, flax.linen"
TARGET = "lr_meta.optax"
# Top-level packages of the training stack that the optimizers must not load.
TRAINING_STACK = ("tensorflow_probability", "distrax", "rlax", "flashbax",
                  "orbax", "scipy", "tensorboardX")

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import {modules}
elapsed = time.perf_counter() - t0
stack = {stack!r}
loaded = sorted({{m for m in sys.modules if m.split('.')[0] in stack}})
print(json.dumps({{"seconds": elapsed, "lr_meta": sys.modules.get(
    'lr_meta') and sys.modules['lr_meta'].__file__, "stack": loaded}}))
"""


def child_env() -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
  return env


def time_import(modules: str) -> dict:
  """Seconds of ``import <modules>`` in a fresh interpreter, plus what loaded."""
  code = _CHILD.format(modules=modules, stack=TRAINING_STACK)
  out = subprocess.run([sys.executable, "-c", code], env=child_env(),
                       check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=11,
                      help="timed fresh interpreters per target")
  args = parser.parse_args(argv)
  if args.runs < 1:
    parser.error(f"--runs={args.runs}; allowed: an integer >= 1.")

  for modules in (BASELINE, TARGET):   # warm-up: bytecode caches
    time_import(modules)
  times = {BASELINE: [], TARGET: []}
  last = {}
  for i in range(args.runs):
    order = (BASELINE, TARGET) if i % 2 == 0 else (TARGET, BASELINE)
    for modules in order:
      last[modules] = time_import(modules)
      times[modules].append(last[modules]["seconds"])

  print(f"lr_meta imported from {last[TARGET]['lr_meta']}")
  print(f"{'import':<22} {'median s':>9} {'min s':>8}  ({args.runs} runs)")
  for modules in (BASELINE, TARGET):
    print(f"{modules:<22} {statistics.median(times[modules]):9.3f} "
          f"{min(times[modules]):8.3f}")
  median_ratio = (statistics.median(times[TARGET])
                  / statistics.median(times[BASELINE]))
  min_ratio = min(times[TARGET]) / min(times[BASELINE])
  print(f"ratio {TARGET} / ({BASELINE}): median {median_ratio:.3f}, "
        f"min {min_ratio:.3f} (bound: median <= 1.3)")
  stack = last[TARGET]["stack"]
  packages = sorted({m.split(".")[0] for m in stack})
  print(f"training-stack modules loaded by {TARGET}: "
        + (f"{len(stack)} of {', '.join(packages)}" if stack else "none"))


if __name__ == "__main__":
  main()
