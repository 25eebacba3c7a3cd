"""Fixed-fraction, scale-free controllers in an optax loop match the environment."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.features import observation as observation_lib
from lr_meta.policies import controller as controller_lib
import lr_meta.optax as lmo

D, NV, LR0 = 5, 64, 0.05


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp",
                         model_kwargs=dict(hidden_sizes=(16,)),
                         optimizer="momentum", batch_size=32,
                         num_train_examples=500, num_val_examples=NV,
                         num_test_examples=NV)


def _controller(action_type="daniel2016", scale=30.0):
  spec = controller_lib.ControllerSpec(
      name="generalist_test", action_type=action_type,
      network="gaussian_mlp", hidden_sizes=(8,), steps_per_decision=1,
      observation="scale_free", num_decisions=D,
      decision_schedule="fraction", num_val_examples=NV, slope_decay=0.5)
  net = controller_lib.make_network(spec)
  params = net.init(jax.random.PRNGKey(1),
                    jnp.zeros((spec.observation_size,)), ())
  # Scaled up from the 0.01-gain head so that actions differ per decision.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x * scale if "Dense_1" in jax.tree_util.keystr(p) else x,
      params)
  return controller_lib.make_controller(spec, params)


def _optax_loop(task, tx, params, rng, num_calls):
  """A user's loop: batch, loss and grads, probe loss; no predictions."""

  @jax.jit
  def step(task, params, opt_state, rng):
    rng, batch_key, dropout_key = jax.random.split(rng, 3)
    x, y = task.sample_batch(batch_key)
    (loss, _), grads = jax.value_and_grad(task.loss_and_logits, has_aux=True)(
        params, {}, x, y, train=True, dropout_key=dropout_key)
    logits, _ = task.apply(params, {}, task.data.x_val[:NV])
    val_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, task.data.y_val[:NV]))
    updates, opt_state = tx.update(grads, opt_state, params, loss=loss,
                                   val_loss=val_loss)
    return optax.apply_updates(params, updates), opt_state, rng

  opt_state = tx.init(params)
  lrs, due, history = [], [], []
  for _ in range(num_calls):
    history.append(params)
    due.append(bool(lmo.decision_due(opt_state)))
    params, opt_state, rng = step(task, params, opt_state, rng)
    lrs.append(np.asarray(opt_state.lr))
  return history, opt_state, np.asarray(lrs), due


@pytest.mark.parametrize("action_type", ["daniel2016", "xu2017"])
def test_controlled_reproduces_the_fraction_env(task, action_type):
  num_steps = 23           # decisions at calls floor(t * 23 / 5)
  ctrl = _controller(action_type)
  env = lr_env.LREnv(task, action_type, "scale_free")
  p = lr_env.LREnvParams(num_decisions=D, decision_schedule="fraction",
                         reward="log_val_loss_change",
                         num_val_examples=NV).check(action_type)
  key = jax.random.PRNGKey(3)
  env_state, infos = rollout.run_episode(env, p, ctrl.act, ctrl.params, key,
                                         lr0=LR0, num_steps=num_steps)
  env_lrs = np.asarray(infos["lr"])

  k_init = jax.random.split(key, 4)[0]   # LREnv.reset's init key
  opt = task.init(k_init, LR0)
  tx = lmo.controlled(tasks.make_optimizer("momentum", learning_rate=LR0),
                      ctrl, num_steps=num_steps)
  # One call past the run: its decision observes the run's end.
  history, state, lrs, due = _optax_loop(task, tx, opt.params, opt.key,
                                         num_steps + 1)
  calls = [int(observation_lib.decision_step(t, num_steps, D))
           for t in range(D)]
  assert calls == [0, 4, 9, 13, 18]
  assert [i for i, d in enumerate(due) if d] == calls + [num_steps]
  # Constant inside each window, the env's LR of that window.
  windows = np.split(lrs[:num_steps], calls[1:])
  for w in windows:
    np.testing.assert_array_equal(w, w[0])
  np.testing.assert_allclose([w[0] for w in windows], env_lrs, rtol=1e-6)
  assert np.ptp(np.diff(np.log(env_lrs))) > 1e-3   # really state-dependent
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               history[num_steps], env_state.opt.params)
  np.testing.assert_allclose(state.obs, env_state.obs, rtol=1e-5, atol=1e-6)


def test_fraction_controllers_need_the_run_length(task):
  ctrl = _controller()
  base = tasks.make_optimizer("sgd", learning_rate=0.1)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl, every=10, num_steps=100)
  with pytest.raises(ValueError, match="num_steps"):
    lmo.controlled(base, ctrl, num_steps=D - 1)
