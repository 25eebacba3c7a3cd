"""Tiny population jobs run as 1 or N processes by tests/test_distributed.py.

  python tests/distributed_job.py --jobs=ppo,nos,sweep --out=/tmp/r.npz \
      [--num_processes=2] [--batch_mode=sequential]

Every process runs the same jobs over ``distributed.global_mesh()``; process
0 writes every number the jobs produce to ``--out`` (npz), so the test can
compare a 2-process run with a 1-process run of the same command.
``--hold=S`` then keeps every process in a loop of collectives for up to S
seconds (a process to kill), printing ``pid=<pid>`` first.
"""

import os
import time

from absl import app
from absl import flags

from lr_meta import distributed

distributed.define_flags()
_JOBS = flags.DEFINE_list("jobs", ["ppo", "nos", "sweep"],
                          "Jobs: ppo, reps, nos, sweep, bench.")
_OUT = flags.DEFINE_string("out", None, "npz file process 0 writes.")
_BATCH_MODE = flags.DEFINE_string("batch_mode", "sequential",
                                  "Batch mode of the NOS and sweep runs.")
_HOLD = flags.DEFINE_float("hold", 0.0, "Seconds of collectives at the end.")


def _tiny_task():
  from lr_meta import tasks  # pylint: disable=g-import-not-at-top
  return tasks.make_task("mnist1d", "mlp",
                         model_kwargs=dict(hidden_sizes=(8,)), batch_size=16,
                         num_train_examples=256, num_val_examples=64)


def ppo_job(mesh):
  """Two PPO iterations over a population of 4 quadratic optimizees."""
  import jax  # pylint: disable=g-import-not-at-top
  from lr_meta.agents import ppo  # pylint: disable=g-import-not-at-top
  from lr_meta.envs import toy  # pylint: disable=g-import-not-at-top
  env = toy.QuadraticLREnv()
  params = env.default_params.replace(num_decisions=4)
  agent = ppo.make_ppo(ppo.PPOConfig(num_envs=4, num_epochs=2,
                                     num_minibatches=2), env, params, mesh)
  state = agent.init(jax.random.PRNGKey(0))
  returns = []
  for _ in range(2):
    state, metrics = agent.update_iteration(state)
    returns.append(metrics["episode_return"])
  leaves = jax.tree.leaves(distributed.host_copy(state.params))
  out = {f"ppo_param_{i}": x for i, x in enumerate(leaves)}
  out["ppo_returns"] = distributed.host_copy(returns)
  # A population left split over the processes: host_copy all-gathers it.
  split = jax.jit(lambda x: distributed.shard_population(x * 2.0, mesh))(
      jax.numpy.arange(4.0))
  out["split_population"] = distributed.host_copy(split)
  return out


def reps_job(mesh):
  """Two REPS iterations over 4 runs of the Daniel et al. controller."""
  import jax  # pylint: disable=g-import-not-at-top
  from lr_meta.agents import reps  # pylint: disable=g-import-not-at-top
  from lr_meta.envs import lr_env  # pylint: disable=g-import-not-at-top
  env = lr_env.LREnv(_tiny_task(), "daniel2016")
  params = env.default_params().with_fields(
      num_decisions=3, steps_per_decision=2, num_val_examples=32)
  agent = reps.make_reps(reps.REPSConfig(num_samples=4, init_std=0.1), env,
                         params, mesh=mesh)
  state = agent.init(jax.random.PRNGKey(1))
  for _ in range(2):
    state, metrics = agent.update_iteration(state)
  return {"reps_mean": distributed.host_copy(state.dist.mean),
          "reps_return": distributed.host_copy(metrics["mean_return"])}


def nos_job(mesh):
  """One NOS search step: 4 sampled rules scored, one controller update."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lr_meta.nos import controller  # pylint: disable=g-import-not-at-top
  from lr_meta.nos import search  # pylint: disable=g-import-not-at-top
  scorer = search.Scorer(search.ScoringConfig(
      model_kwargs=dict(hidden_sizes=(8,)), batch_size=16,
      num_train_examples=256, num_val_examples=64, sweep_train_examples=128,
      sweep_lrs=(0.01, 0.1, 1.0), sweep_steps=4, train_steps=6,
      min_reward=-1.0, strategy="scan", batch_mode=_BATCH_MODE.value,
      num_groups=1), mesh=mesh)
  space = controller.make_search_space(num_groups=1)
  run = search.Search(space, search.RuleSearchPPOConfig(batch_size=4),
                      scorer, seed=0)
  state, record = run.step(run.init())
  rewards = [run.cache[name]["reward"] for name in sorted(run.cache)]
  return {"nos_rewards": np.asarray(rewards, np.float32),
          "nos_baseline": np.float32(record.baseline),
          "nos_params": np.concatenate([
              np.ravel(x) for x in jax.tree.leaves(
                  distributed.host_copy(state.params))])}


def sweep_job(mesh):
  """A 3-point constant-LR sweep, then the winner on 3 seeds."""
  from lr_meta import baselines  # pylint: disable=g-import-not-at-top
  specs = [baselines.ScheduleSpec("constant", lr) for lr in (0.01, 0.1, 0.5)]
  swept, seeds = baselines.tune_and_evaluate(
      _tiny_task(), specs, 10, num_seeds=3, eval_every=5,
      batch_mode=_BATCH_MODE.value, mesh=mesh)
  return {"sweep_val_loss": swept.val_loss, "seed_test_loss": seeds.test_loss,
          "seed_val_curve": seeds.val_curve}


def bench_job(mesh):
  """The tiny SGD benchmark workload with its two references and the
  untuned base optimizer, 2 seeds; the run store in a fresh directory."""
  import io  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lr_meta import benchmark  # pylint: disable=g-import-not-at-top
  # A directory per process: process 0 alone may write into its own.
  outdir = tempfile.mkdtemp(prefix="lr_meta_bench_")
  try:
    results = benchmark.run_suite(
        "tiny", ["default_lr"], num_seeds=2, outdir=outdir,
        workloads=["tiny_mnist1d_mlp_sgd"], batch_mode=_BATCH_MODE.value,
        progress_stream=io.StringIO(), mesh=mesh)
    wrote = sorted(os.listdir(outdir))
  finally:
    shutil.rmtree(outdir)
  if not distributed.is_main_process() and wrote:
    raise RuntimeError(f"a process other than 0 wrote "
                       f"{wrote}; only process 0 may write.")
  cells = sorted(results["cells"], key=lambda c: (c["method"], c["seed"]))
  return {"bench_test_loss": np.asarray([c["test_loss"] for c in cells]),
          "bench_val_curve": np.asarray([c["val_loss"] for c in cells]),
          "bench_files": np.asarray(wrote)}


JOBS = {"ppo": ppo_job, "reps": reps_job, "nos": nos_job, "sweep": sweep_job,
        "bench": bench_job}


def _hold(seconds: float) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  mesh = distributed.global_mesh()
  total = jax.jit(lambda x: jnp.sum(distributed.shard_population(x, mesh)))
  print(f"pid={os.getpid()}", flush=True)
  end = time.monotonic() + seconds
  while time.monotonic() < end:
    total(jnp.ones((mesh.devices.size,))).block_until_ready()
    time.sleep(0.05)


def main(argv):
  del argv
  distributed.initialize_or_launch(distributed.config_from_flags())
  import numpy as np  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(_JOBS.value) - set(JOBS))
  if unknown:
    raise ValueError(f"unknown jobs {unknown}; allowed: {sorted(JOBS)}.")
  mesh = distributed.global_mesh()
  results = {}
  for job in _JOBS.value:
    start = time.monotonic()
    results.update(JOBS[job](mesh))
    print(f"{job}: {time.monotonic() - start:.1f} s", flush=True)
  if distributed.is_main_process() and _OUT.value:
    np.savez(_OUT.value, **results)
  if _HOLD.value:
    _hold(_HOLD.value)


if __name__ == "__main__":
  app.run(main)
