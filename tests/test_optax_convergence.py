"""optax's own convergence protocol, optax integration, and a Flax training run.

Protocol of optax `alias_test.py`: a parabola from [-1, 10, 1] to [1, -1, 1]
and Rosenbrock (a = 1, b = 100) from [0, 0] to [1, 1], 10,000 steps,
rtol = atol = 3e-2. All steps run inside one jit (`lax.fori_loop`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo
from lr_meta import nos
from lr_meta.rules import interpreter

STEPS = 10_000


def parabola():
  final = jnp.array([1.0, -1.0, 1.0])
  return jnp.array([-1.0, 10.0, 1.0]), final, lambda p: jnp.sum((p - final) ** 2)


def rosenbrock():
  def loss(p):
    x, y = p[0], p[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x ** 2) ** 2
  return jnp.zeros(2), jnp.ones(2), loss


PROBLEMS = {"parabola": parabola, "rosenbrock": rosenbrock}

# name -> (factory of the optimizer given a learning rate, lr for the
# parabola, lr for Rosenbrock). Sign methods with a constant lr keep their
# e-times-larger agreeing steps; on Rosenbrock they get a linear sign decay
# so that they end as SGD.
OPTIMIZERS = {
    "power_sign": (lambda lr: lmo.power_sign(lr), 0.1, 3e-4),
    "power_sign_ld": (lambda lr: lmo.power_sign(
        lr, sign_decay_fn=lmo.linear_sign_decay(STEPS)), 0.1, 5e-4),
    "add_sign": (lambda lr: lmo.add_sign(lr), 0.1, 3e-4),
    "add_sign_cd": (lambda lr: lmo.add_sign(
        lr, sign_decay_fn=lmo.cosine_sign_decay(STEPS)), 0.1, 5e-4),
    "power_sign_linear_cosine": (lambda lr: lmo.power_sign(
        lmo.linear_cosine_decay_schedule(lr, STEPS)), 0.1, 1.5e-3),
    "add_sign_noisy_linear_cosine": (lambda lr: lmo.add_sign(
        lmo.noisy_linear_cosine_decay_schedule(
            lr, STEPS, key=jax.random.PRNGKey(0), initial_variance=0.1)),
                                     0.1, 1.5e-3),
    "dsl_adam": (lambda lr: lmo.from_dsl("m / sqrt(v)", lr), 0.01, 1e-2),
    "dsl_power_sign": (lambda lr: lmo.from_dsl(
        "exp(sign(g) * sign(m)) * g", lr), 0.1, 3e-4),
    "dsl_add_sign_ld": (lambda lr: lmo.from_dsl(
        "(1 + ld * sign(g) * sign(m)) * g", lr, decay_steps=STEPS), 0.1,
                        5e-4),
    "interpreter_power_sign": (lambda lr: interpreter.program_optimizer(
        jnp.asarray(nos.parse("exp(sign(g) * sign(m)) * g")), lr, STEPS),
                               0.1, 3e-4),
}


@functools.partial(jax.jit, static_argnums=(0, 1))
def minimize(make_opt, loss, params, learning_rate):
  opt = make_opt(learning_rate)

  def step(_, carry):
    params, state = carry
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  return jax.lax.fori_loop(0, STEPS, step, (params, opt.init(params)))[0]


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_convergence(name, problem):
  make_opt, lr_parabola, lr_rosenbrock = OPTIMIZERS[name]
  init, final, loss = PROBLEMS[problem]()
  lr = lr_parabola if problem == "parabola" else lr_rosenbrock
  params = minimize(make_opt, loss, init, lr)
  np.testing.assert_allclose(params, final, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name", ["power_sign", "add_sign", "dsl_adam"])
def test_no_recompilation_on_second_update(name):
  opt = OPTIMIZERS[name][0](0.1)
  traces = []

  @jax.jit
  def update(grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  params = {"a": jnp.ones(3), "b": jnp.zeros((2, 2))}
  state = opt.init(params)
  for _ in range(3):
    updates, state = update(params, state, params)
    params = optax.apply_updates(params, updates)
  assert len(traces) == 1


@pytest.mark.parametrize("factory,kwargs", [
    (lmo.power_sign, dict(learning_rate=0.1, base=2.0, beta=0.8)),
    (lmo.add_sign, dict(learning_rate=0.1, alpha=2.0)),
    (lmo.from_dsl, dict(rule="m / sqrt(v)", learning_rate=0.1)),
    (lmo.from_dsl, dict(rule="(1 + ld * sign(g) * sign(m)) * g",
                        learning_rate=0.1, decay_steps=4)),
])
def test_inject_hyperparams(factory, kwargs):
  plain = factory(**kwargs)
  injected = optax.inject_hyperparams(factory)(**kwargs)
  params = jnp.array([1.0, -2.0, 3.0])
  s1, s2 = plain.init(params), injected.init(params)
  for t in range(6):
    grads = jnp.array([0.5, -1.0, 2.0]) * (-1.0) ** (t // 3)
    u1, s1 = plain.update(grads, s1, params)
    u2, s2 = jax.jit(injected.update)(grads, s2, params)
    # rtol 2e-5: injected betas are float32 arrays, so 1 - beta2**t rounds
    # differently than with Python floats (optax.adam does the same).
    np.testing.assert_allclose(u1, u2, rtol=2e-5)
    params = optax.apply_updates(params, u1)
  # The learning rate is now a state entry one can change.
  s2.hyperparams["learning_rate"] = jnp.asarray(0.0)
  u2, _ = injected.update(grads, s2, params)
  np.testing.assert_allclose(u2, 0.0)


# The first update of each optimizer at lr 0.1 by hand. At step 1 the
# gradient average m (or m_hat) has the sign of g, so sign(g) sign(m) = 1:
# PowerSign scales g by e, AddSign by 1 + 1; every sign decay is 1 at t = 0,
# the linear cosine schedule is lr0 * ((0 + 1) * 1 + beta), beta = 0.001;
# m_hat / sqrt(v_hat) = g / |g| (to 7e-6: the bias corrections divide by
# 1 - beta in float32). The noisy schedule's draw at t = 0 is read from the
# schedule itself.
_NOISY_LR0 = lmo.noisy_linear_cosine_decay_schedule(
    0.1, STEPS, key=jax.random.PRNGKey(0), initial_variance=0.1)(0)
FIRST_UPDATE = {
    "power_sign": lambda g: -0.1 * np.e * g,
    "power_sign_ld": lambda g: -0.1 * np.e * g,
    "add_sign": lambda g: -0.2 * g,
    "add_sign_cd": lambda g: -0.2 * g,
    "power_sign_linear_cosine": lambda g: -0.1 * 1.001 * np.e * g,
    "add_sign_noisy_linear_cosine": lambda g: -2.0 * float(_NOISY_LR0) * g,
    "dsl_adam": lambda g: -0.1 * np.sign(g),
    "dsl_power_sign": lambda g: -0.1 * np.e * g,
    "dsl_add_sign_ld": lambda g: -0.2 * g,
    "interpreter_power_sign": lambda g: -0.1 * np.e * g,
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_accepts_extra_args(name):
  """Extra args (value=, unknown ones) are accepted and change nothing."""
  assert set(FIRST_UPDATE) == set(OPTIMIZERS)
  opt = OPTIMIZERS[name][0](0.1)
  assert isinstance(opt, optax.GradientTransformationExtraArgs)
  params = jnp.array([1.0, -2.0, 0.5])
  grads = params
  updates, _ = opt.update(grads, opt.init(params), params, value=1.0,
                          unexpected=jnp.zeros(2))
  np.testing.assert_allclose(updates, FIRST_UPDATE[name](np.asarray(grads)),
                             rtol=1e-5)
  chained = optax.chain(optax.clip_by_global_norm(1.0), opt)
  updates2, _ = chained.update(grads, chained.init(params), params,
                               value=1.0)
  clipped = np.asarray(grads) / np.linalg.norm(np.asarray(grads))
  np.testing.assert_allclose(updates2, FIRST_UPDATE[name](clipped),
                             rtol=1e-5)


# A small Flax model on a real Fashion-MNIST slice.

TRAIN, TEST, BATCH, TRAIN_STEPS = 6000, 2000, 128, 300


class SmallMLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(10)(nn.relu(nn.Dense(128)(x)))


@pytest.fixture(scope="module")
def fashion_slice(data_dir):
  del data_dir  # conftest sets LR_META_DATA_DIR
  from lr_meta.tasks.datasets import load_dataset
  data = load_dataset("fashion_mnist")
  return (jnp.asarray(data.x_train[:TRAIN]), jnp.asarray(data.y_train[:TRAIN]),
          jnp.asarray(data.x_test[:TEST]), jnp.asarray(data.y_test[:TEST]))


@functools.partial(jax.jit, static_argnums=0)
def train_and_eval(make_opt, x_train, y_train, x_test, y_test, key):
  model = SmallMLP()
  init_key, batch_key = jax.random.split(key)
  params = model.init(init_key, x_train[:1])
  opt = make_opt()

  def loss_fn(params, x, y):
    logits = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, key):
    params, state = carry
    idx = jax.random.randint(key, (BATCH,), 0, x_train.shape[0])
    loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx],
                                              y_train[idx])
    updates, state = opt.update(grads, state, params, value=loss)
    return (optax.apply_updates(params, updates), state), loss

  keys = jax.random.split(batch_key, TRAIN_STEPS)
  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), keys)
  accuracy = jnp.mean(jnp.argmax(model.apply(params, x_test), -1) == y_test)
  return accuracy, losses


@pytest.mark.parametrize("make_opt", [
    lambda: lmo.power_sign(0.05),
    lambda: lmo.add_sign(0.05),
    lambda: lmo.from_dsl("drop(g, 0.1) * exp(sign(g) * sign(m))", 0.05),
], ids=["power_sign", "add_sign", "dsl_drop_power_sign"])
def test_fashion_mnist_mlp(fashion_slice, make_opt):
  accuracy, losses = train_and_eval(make_opt, *fashion_slice,
                                    jax.random.PRNGKey(0))
  assert float(losses[-20:].mean()) < float(losses[:20].mean()) / 2
  assert float(accuracy) >= 0.75, float(accuracy)
