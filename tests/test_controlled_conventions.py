"""``lmo.controlled`` in a real training loop: the conventions users rely on.

Abstract and sharded init, params sharded over 4 devices, optax.MultiSteps,
bfloat16, flax.nnx.Optimizer, an orbax checkpoint resumed in a fresh
process, optax.chain with masked weight decay, a user's own
inject_hyperparams factory, ``controller_readout`` and the errors that stop
a silently wrong LR. All with the shipped generalist on the mnist1d MLP
(tests/controlled_jobs.py holds the loop and the jobs run as processes).
"""

import json
import os
import pathlib
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta.features import scale_free
import lr_meta.optax as lmo
import controlled_jobs as jobs  # tests/controlled_jobs.py

D = 20                                  # the generalist's decisions
_JOB = pathlib.Path(jobs.__file__)


@pytest.fixture(scope="module")
def task():
  return jobs.mnist1d_task()


@pytest.fixture(scope="module")
def params(task):
  return task.init(jax.random.PRNGKey(0)).params


def _calls(num_steps):
  """The calls (or optimizer steps) of the generalist's 20 decisions."""
  return [int(observation_lib.decision_step(t, num_steps, D))
          for t in range(D)]


def _run_job(*args, devices=1):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([str(_JOB.parents[1]),
                                         os.environ.get("PYTHONPATH", "")]))
  if devices > 1:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_"
                        f"platform_device_count={devices}").strip()
  done = subprocess.run([sys.executable, str(_JOB), *map(str, args)],
                        env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]


def _moves_at_decisions(lrs, calls):
  """The LR changes at every decision after the first and nowhere else."""
  changed = [i for i in range(1, len(lrs)) if lrs[i] != lrs[i - 1]]
  assert changed == [c for c in calls if c > 0], (changed, calls)


# ------------------------------------------------------------ 1, 2 sharding

def test_init_of_abstract_and_sharded_abstract_params(params):
  tx = jobs.generalist_tx()
  state = tx.init(params)
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(jax.eval_shape(tx.init, params)) == shapes(state)
  mesh = jax.make_mesh((1,), ("model",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("model"))
  abstract = jax.tree.map(
      lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=sharding),
      params)
  assert shapes(jax.eval_shape(tx.init, abstract)) == shapes(state)
  compiled = jax.jit(tx.init).lower(abstract).compile()
  jax.tree.map(np.testing.assert_array_equal,
               compiled(jax.device_put(params, sharding)), state)


def test_params_sharded_over_four_devices(tmp_path):
  """The optimizer state follows the params' shardings and the LR path is
  the single-device run's (tests/controlled_jobs.py, 4 host devices)."""
  out = tmp_path / "sharded.json"
  _run_job("sharded", out, devices=4)
  result = json.loads(out.read_text())
  for key in ("auto_init_follows", "auto_trained_follows",
              "params_stay_sharded", "explicit_jit_init_follows",
              "explicit_compiled_init_follows",
              "explicit_eval_shape_follows"):
    assert result[key] and all(result[key]), (key, result[key])
  assert result["decisions"] == D
  sharded, single = map(np.asarray, (result["lrs_sharded"],
                                     result["lrs_single"]))
  np.testing.assert_allclose(sharded, single, rtol=1e-6)
  assert len(set(single.tolist())) > 10     # the LR really moves


# ------------------------------------------------------------ 3 MultiSteps

def test_multisteps_counts_optimizer_steps_and_reads_the_mean_loss(task,
                                                                   params):
  """num_steps = optimizer steps; decisions on optimizer steps
  floor(t T / 20); the loss the controller records for a step is the mean
  of its micro-batch losses (the documented rule: pass the running mean)."""
  num_steps, k = 25, 3
  tx = optax.MultiSteps(jobs.generalist_tx(num_steps), every_k_schedule=k)
  f = jobs.objective(task)

  @jax.jit
  def micro_step(params, state, loss_sum, j):
    loss, grads = jax.value_and_grad(f.loss_fn)(params, *f.batch(j))
    loss_sum = jnp.where(state.mini_step == 0, 0.0, loss_sum) + loss
    mean = loss_sum / (state.mini_step + 1).astype(jnp.float32)
    updates, state = tx.update(
        grads, state, params, loss=mean,
        **lmo.probe_inputs(state, f.apply_fn, params, f.x_probe, f.y_probe))
    return optax.apply_updates(params, updates), state, loss_sum, loss, mean

  state, loss_sum = tx.init(params), jnp.zeros(())
  due, passed, window_sums = [], [], []
  for n in range(num_steps):
    due_now = [bool(lmo.decision_due(state))]
    micro_losses = []
    for m in range(k):
      due_now.append(bool(lmo.decision_due(state)))
      params, state, loss_sum, loss, mean = micro_step(params, state,
                                                       loss_sum, n * k + m)
      micro_losses.append(float(loss))
    assert len(set(due_now)) == 1   # fixed during the accumulation
    due.append(due_now[0])
    inner = lmo.find_state(state, lmo.ControlledState)
    assert int(inner.count) == n + 1
    # The value read is the last micro-batch call's: the mean of the k.
    np.testing.assert_allclose(float(mean), np.mean(micro_losses),
                               rtol=1e-6)
    assert float(mean) != micro_losses[-1]
    passed.append(np.float32(mean))
    window_sums.append(np.float32(inner.window.loss_sum))
  assert [n for n, d in enumerate(due) if d] == _calls(num_steps)
  readout = lmo.controller_readout(state)
  assert int(readout.decisions) == D
  assert int(readout.next_decision) == num_steps
  # The window holds the sum of the passed means since the last decision,
  # in float32 as the controller adds them.
  want = np.float32(0.0)
  for n in range(num_steps):
    want = (np.float32(0.0) if due[n] else want) + passed[n]
    assert window_sums[n] == want, (n, window_sums[n], want)


# ------------------------------------------------------------ 4 bfloat16

def test_bfloat16_params_keep_the_controller_in_float32(task, params):
  """bfloat16 params and grads: features, carry, LR float32; the LR path
  within rtol 1e-2 of the float32 run's (bf16 losses move the inputs)."""
  num_steps = 30
  lrs = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    base = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=1e-2)
    tx = jobs.generalist_tx(num_steps, base)
    p = jax.tree.map(lambda x: x.astype(dtype), params)
    p, state, lrs[dtype] = jobs.train(jobs.make_step(task, tx, dtype), p,
                                      tx.init(p), 0, num_steps)
    assert {x.dtype for x in jax.tree.leaves(p)} == {jnp.dtype(dtype)}
    own = state._replace(base_state=())
    assert {x.dtype for x in jax.tree.leaves(own)} == {
        jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
    for x in (lmo.current_lr(state), state.lr, state.lr0, state.action,
              state.base_state.hyperparams["learning_rate"],
              *lmo.controller_readout(state).inputs.values()):
      assert x.dtype == jnp.float32
  assert lrs[jnp.float32].dtype == lrs[jnp.bfloat16].dtype == np.float32
  np.testing.assert_allclose(lrs[jnp.bfloat16], lrs[jnp.float32], rtol=1e-2)
  _moves_at_decisions(lrs[jnp.bfloat16], _calls(num_steps))


# ------------------------------------------------------------ 5 flax.nnx

class _NnxMLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(40, 16, rngs=rngs)
    self.out = nnx.Linear(16, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def test_flax_nnx_optimizer(task):
  num_steps = 30
  model = _NnxMLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, jobs.generalist_tx(num_steps),
                            wrt=nnx.Param)
  f = jobs.objective(task)

  def loss_fn(model, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        model(x), y))

  @nnx.jit
  def step(model, optimizer, i):
    x, y = f.batch(i)
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    probe = lmo.probe_inputs(optimizer.opt_state, lambda m, x: m(x), model,
                             f.x_probe, f.y_probe)
    optimizer.update(model, grads, loss=loss, **probe)

  lrs = []
  for i in range(num_steps):
    step(model, optimizer, i)
    lrs.append(float(lmo.current_lr(optimizer.opt_state)))
  _moves_at_decisions(lrs, _calls(num_steps))
  readout = lmo.controller_readout(optimizer.opt_state)
  assert int(readout.decisions) == D and int(optimizer.step[...]) == num_steps
  assert float(readout.lr) == lrs[-1]


# ------------------------------------------------------------ 6 orbax

def test_orbax_checkpoint_resumes_bit_for_bit_in_a_fresh_process(
    task, params, tmp_path):
  tx = jobs.generalist_tx()
  step = jobs.make_step(task, tx)
  p, state, lrs_a = jobs.train(step, params, tx.init(params), 0,
                               jobs.RESUME_AT)
  jobs.save(tmp_path / "checkpoint", p, state)
  p, state, lrs_b = jobs.train(step, p, state, jobs.RESUME_AT,
                               jobs.NUM_STEPS)
  out = tmp_path / "resumed.npz"
  _run_job("resume", tmp_path / "checkpoint", out)
  resumed = np.load(out)
  np.testing.assert_array_equal(resumed["lrs"], lrs_b)
  leaves = jax.tree.leaves((p, state))
  assert len(resumed.files) == len(leaves) + 1
  for i, leaf in enumerate(leaves):   # params, base state, features, carry
    np.testing.assert_array_equal(resumed[f"leaf_{i}"], leaf)
  assert int(state.decisions) == D
  _moves_at_decisions(np.concatenate([lrs_a, lrs_b]), _calls(jobs.NUM_STEPS))


# ------------------------------------------------------------ 7, 8 optax

def _kernels_only(params):
  return jax.tree.map(lambda x: x.ndim > 1, params)


def _adamw_factory(learning_rate):
  """AdamW spelled out: masked decay before the scaling."""
  return optax.chain(optax.scale_by_adam(),
                     optax.add_decayed_weights(1e-2, mask=_kernels_only),
                     optax.scale_by_learning_rate(learning_rate))


@pytest.mark.parametrize("decay", ["adamw_mask", "add_decayed_weights"])
def test_inside_a_chain_with_masked_weight_decay(task, params, decay):
  num_steps = 30
  if decay == "adamw_mask":
    base = optax.inject_hyperparams(optax.adamw, static_args="mask")(
        learning_rate=1e-2, weight_decay=1e-2, mask=_kernels_only)
  else:
    base = optax.inject_hyperparams(_adamw_factory)(learning_rate=1e-2)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   jobs.generalist_tx(num_steps, base), optax.zero_nans())
  state = tx.init(params)
  # Zero grads at the first decision: Adam's step is 0, so the update is
  # the decay alone, -lr * 1e-2 * w on kernels, 0 on biases, at the LR
  # the decision just set.
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, after = jax.jit(tx.update)(zeros, state, params, loss=2.3,
                                      val_loss=2.3)
  lr = float(lmo.current_lr(after))
  assert lr != 1e-2 and float(lmo.controller_readout(after).lr) == lr
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    w = params[path[0].key][path[1].key]
    want = -np.float32(lr) * np.float32(1e-2) * w if w.ndim > 1 else 0.0 * w
    np.testing.assert_allclose(u, want, rtol=1e-6, atol=0)
  _, state, lrs = jobs.train(jobs.make_step(task, tx), params, state, 0,
                             num_steps)
  _moves_at_decisions(lrs, _calls(num_steps))
  assert int(lmo.controller_readout(state).decisions) == D


def _momentum_sgd(learning_rate, momentum):
  return optax.chain(optax.trace(decay=momentum),
                     optax.scale(-learning_rate))


def test_inject_hyperparams_of_a_users_own_factory(task, params):
  """controlled sets learning_rate and leaves momentum alone; the update is
  -lr * trace with the LR the controller set."""
  num_steps = 30
  base = optax.inject_hyperparams(_momentum_sgd)(learning_rate=0.1,
                                                 momentum=0.9)
  tx = jobs.generalist_tx(num_steps, base)
  step = jobs.make_step(task, tx)
  state, lrs = tx.init(params), []
  for i in range(num_steps):
    params, state, updates = step(params, state, i)
    hyper = state.base_state.hyperparams
    assert float(hyper["momentum"]) == np.float32(0.9)
    lr = lmo.current_lr(state)
    assert hyper["learning_rate"] == lr
    trace = lmo.find_state(state, optax.TraceState).trace
    for u, t in zip(jax.tree.leaves(updates), jax.tree.leaves(trace)):
      np.testing.assert_allclose(u, -np.float32(lr) * t, rtol=1e-6)
    lrs.append(float(lr))
  _moves_at_decisions(lrs, _calls(num_steps))


# ------------------------------------------------------------ 9 readout

def test_observation_names_match_every_kind():
  for kind in observation_lib.OBSERVATION_KINDS:
    names = observation_lib.observation_names(kind)
    assert len(names) == observation_lib.observation_size(kind), kind
    assert len(set(names)) == len(names), kind
  names = observation_lib.observation_names
  assert names("weight_stats")[192] == "prev_lr"
  assert names("weight_stats")[:2] == ("whole/mean", "whole/q25")
  assert names("dynamics")[8] == "lr"
  assert names("dynamics+progress")[-1] == "progress"
  assert names("dynamics+per_example")[9:] == names("per_example") == (
      "predictive_change_hat", "disagreement_hat",
      "predictive_change_uncertainty", "disagreement_uncertainty")
  assert names("scale_free") == scale_free.FEATURE_NAMES


def test_controller_readout_reports_the_decision(task, params):
  num_steps = 30
  tx = jobs.generalist_tx(num_steps)
  step = jobs.make_step(task, tx)
  readout = jax.jit(lmo.controller_readout)
  state = tx.init(params)
  first = readout(state)
  assert float(first.action) == 0.0 and int(first.decisions) == 0
  assert int(first.next_decision) == 0
  assert not any(float(v) for v in first.inputs.values())
  rule = lr_actions.action_rule("xu2017")
  actions = []
  for i in range(num_steps):
    params, state, _ = step(params, state, i)
    r = readout(state)
    # jit returns dicts with sorted keys: read the inputs by name.
    assert set(r.inputs) == set(scale_free.FEATURE_NAMES)
    for j, name in enumerate(scale_free.FEATURE_NAMES):
      assert r.inputs[name] == state.obs[j], name
    assert r.lr == lmo.current_lr(state) and r.lr0 == np.float32(1e-2)
    np.testing.assert_allclose(
        r.lr, 1e-2 * 10.0 ** np.clip(r.action, rule.low, rule.high),
        rtol=1e-6)
    assert r.action == state.features.prev_action   # the observed one
    assert int(r.next_decision) == observation_lib.decision_step(
        r.decisions, num_steps, D)
    assert {v.dtype for v in jax.tree.leaves(r)} == {
        jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
    eager = lmo.controller_readout(state)
    assert tuple(eager.inputs) == scale_free.FEATURE_NAMES   # in order
    jax.tree.map(np.testing.assert_array_equal, r, eager)
    actions.append(float(r.action))
  assert len(set(actions)) == D and int(r.skipped_decisions) == 0
  # A skipped decision (a NaN probe loss) keeps the action, counts itself.
  tx2 = jobs.generalist_tx(D)
  state = tx2.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  update = jax.jit(tx2.update)
  _, state = update(grads, state, params, loss=2.0, val_loss=2.0)
  _, skipped = update(grads, state, params, loss=2.0, val_loss=jnp.nan)
  before, after = lmo.controller_readout(state), lmo.controller_readout(
      (skipped,))
  assert int(after.skipped_decisions) == 1 and int(after.decisions) == 2
  assert after.action == before.action and after.lr == before.lr


# ------------------------------------------------------------ 10 errors

def test_errors_instead_of_a_silently_wrong_lr(params):
  gen = lmo.pretrained_controller("generalist")
  injected = optax.inject_hyperparams(optax.adamw)
  with pytest.raises(ValueError, match="injectable learning rate"):
    lmo.controlled(optax.adamw(1e-2), gen, num_steps=D).init(params)
  with pytest.raises(ValueError, match=r"num_steps=None; allowed: an "
                     r"integer >= 20"):
    lmo.controlled(injected(learning_rate=1e-2), gen)
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  with pytest.raises(ValueError, match=r"learning_rate in bfloat16.*"
                     r"hyperparam_dtype=jnp.float32"):
    lmo.controlled(injected(learning_rate=1e-2), gen,
                   num_steps=D).init(bf16)
  with pytest.raises(ValueError, match="learning_rate is a int32"):
    lmo.controlled(optax.inject_hyperparams(optax.sgd)(learning_rate=1),
                   gen, num_steps=D).init(params)


def test_probe_inputs_refuses_labels_that_do_not_fit(params):
  tx = jobs.generalist_tx()
  state = tx.init(params)
  apply_fn = lambda p, x: x @ jnp.ones((3, 5))    # logits (B, 5)
  x = jnp.ones((4, 3))
  with pytest.raises(ValueError, match=r"labels y of shape \(4, 1\) do not "
                     r"match the logits of shape \(4, 5\); allowed: labels "
                     r"of shape \(4,\)"):
    lmo.probe_inputs(state, apply_fn, params, x, jnp.zeros((4, 1), jnp.int32))
  with pytest.raises(ValueError, match=r"labels y of dtype float32; allowed: "
                     r"integer class indices of shape \(4,\)"):
    lmo.probe_inputs(state, apply_fn, params, x, jnp.zeros((4,)))
  with pytest.raises(ValueError, match=r"mask of shape \(4, 2\); allowed: "
                     r"\(4,\)"):
    lmo.probe_inputs(state, apply_fn, params, x, jnp.zeros((4,), jnp.int32),
                     mask=jnp.ones((4, 2)))
  with pytest.raises(ValueError, match=r"outputs of shape \(4,\); allowed"):
    lmo.probe_inputs(state, lambda p, x: x[:, 0], params, x,
                     jnp.zeros((4,), jnp.int32))
  with pytest.raises(ValueError, match="do not match"):   # at trace time
    jax.jit(lambda s: lmo.probe_inputs(s, apply_fn, params, x,
                                       jnp.zeros((5,), jnp.int32)))(state)
  # Sequence logits (B, L, V) with labels (B, L) are fine.
  seq = lmo.probe_inputs(state, lambda p, x: jnp.ones((4, 7, 5)), params, x,
                         jnp.zeros((4, 7), jnp.int32))
  np.testing.assert_allclose(seq["val_loss"], np.log(5.0), rtol=1e-6)


def test_update_refuses_a_state_of_another_shape(params):
  tx = jobs.generalist_tx()
  state = tx.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  small = {"dense0": {"kernel": jnp.ones((40, 8)), "bias": jnp.ones(8)},
           "dense1": {"kernel": jnp.ones((8, 10)), "bias": jnp.ones(10)}}
  other = lmo.controlled(optax.inject_hyperparams(optax.adamw)(
      learning_rate=1e-2), lmo.pretrained_controller(
          "fmnist_mlp_xu2019_progress_cpu"), num_classes=10, num_steps=50)
  bad = {
      r"losses has leaves \['\(5,\) float32'\], expected "
      r"\['\(1,\) float32'\]": state._replace(losses=jnp.zeros(5)),
      r"features has leaves .*\(3,\) float32": state._replace(
          features=state.features._replace(train_slope=jnp.zeros(3))),
      r"action has leaves \['\(\) int32'\]": state._replace(
          action=jnp.zeros((), jnp.int32)),
      r"base_state leaf shapes|base_state has leaves": tx.init(small),
      r"features is .*DynamicsState.*expected .*ScaleFreeState": other.init(
          params),
  }
  update = jax.jit(lambda s: tx.update(grads, s, params, loss=2.0))
  for match, restored in bad.items():
    for fn in (update, lambda s: tx.update(grads, s, params, loss=2.0)):
      with pytest.raises(ValueError, match="does not match this controller"
                         ".*" + match):
        fn(restored)
  update(state)   # the matching state runs
