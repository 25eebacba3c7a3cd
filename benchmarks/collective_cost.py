r"""Cost of the exchanges a multi-process job makes per iteration.

What ``lr_meta.distributed`` sends between processes: the all-gather of
``gather_rows`` / ``host_copy`` (NOS scores, sweep results, DQN states), the
gathered trajectories a PPO learner consumes (``replicate`` inside a jitted
program over the global mesh), and process 0's broadcasts. This times each
at the sizes of the library's workloads, so that the scaling estimates in
BUILD_NOTES.md rest on measured numbers: the median of ``--repeats`` calls
after two untimed ones, on process 0, with the bytes each process receives.

Usage (local processes on one machine; gloo over 127.0.0.1):
  python benchmarks/collective_cost.py --num_processes=2
  python benchmarks/collective_cost.py --num_processes=4 --repeats=50
On N hosts: the same command with the launch flags of ``lr_meta.distributed``
(``--coordinator_address --num_processes --process_id``) on each host.
"""

import statistics
import time

from absl import app
from absl import flags

from lr_meta import distributed

distributed.define_flags()
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per size.")
_SIZES = flags.DEFINE_list(
    "sizes_kib", ["1", "16", "256", "4096"],
    "Payload per process, KiB (float32 rows).")


def _median_s(fn, repeats):
  for _ in range(2):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main(argv):
  del argv
  distributed.initialize_or_launch(distributed.config_from_flags())
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  p = jax.process_count()
  mesh = distributed.global_mesh()
  devices = mesh.devices.size
  lines = [f"processes {p}, devices {devices} ({jax.devices()[0].platform}), "
           f"median of {_REPEATS.value} calls", "",
           "| exchange | KiB per process | KiB received | ms |",
           "|---|---:|---:|---:|"]
  replicate = jax.jit(lambda x: jnp.sum(distributed.replicate(
      distributed.shard_population(x, mesh), mesh), axis=0))
  for kib in [int(s) for s in _SIZES.value]:
    cols = 64
    rows = max(1, kib * 1024 // (4 * cols))
    local = np.ones((rows, cols), np.float32)
    received = (p - 1) * local.nbytes / 1024
    t = _median_s(lambda: distributed.gather_rows(local, rows * p),
                  _REPEATS.value)
    lines.append(f"| gather_rows (host all-gather) | {local.nbytes / 1024:.0f}"
                 f" | {received:.0f} | {t * 1e3:.2f} |")
    population = np.ones((rows * devices, cols), np.float32)
    t = _median_s(lambda: replicate(population).block_until_ready(),
                  _REPEATS.value)
    lines.append(f"| replicate in a jitted program | "
                 f"{local.nbytes / 1024:.0f} | {received:.0f} | "
                 f"{t * 1e3:.2f} |")
    t = _median_s(lambda: distributed.broadcast_from_main(local),
                  _REPEATS.value)
    lines.append(f"| broadcast_from_main | {local.nbytes / 1024:.0f} | "
                 f"{local.nbytes / 1024:.0f} | {t * 1e3:.2f} |")
  if distributed.is_main_process():
    print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
