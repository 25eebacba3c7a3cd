"""lr_meta.benchmark.evaluate_own: a controller vs tuned schedules on a
user's own Flax training code, checked against plain optax loops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import lr_meta.optax as lmo
from lr_meta import benchmark
from lr_meta import seeds
from lr_meta.benchmark import methods as methods_lib
from lr_meta.policies import controller as controller_lib
import controller_helpers  # tests/controller_helpers.py

K, NV, C, T = 4, 24, 3, 24    # steps per decision, probe, classes, steps
GRID = (0.3, 0.03, 300.0)     # 300 diverges


class _MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(C)(nn.tanh(nn.Dense(16)(x)))


def _blobs(key, n):
  """Three Gaussian blobs in 5-D (a task a tiny MLP learns in 24 steps)."""
  ky, kx = jax.random.split(key)
  y = jax.random.randint(ky, (n,), 0, C)
  centers = jnp.eye(C, 5) * 2.0
  return centers[y] + jax.random.normal(kx, (n, 5)), y


MODEL = _MLP()
X, Y = _blobs(jax.random.PRNGKey(0), 256)
X_VAL, Y_VAL = _blobs(jax.random.PRNGKey(1), 64)
X_TEST, Y_TEST = _blobs(jax.random.PRNGKey(2), 128)
X_PROBE, Y_PROBE = X_VAL[:NV], Y_VAL[:NV]


def _loss(params, x, y):
  logits = MODEL.apply(params, x)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def make_train_step(tx):
  """The user's code: one jitted step, the probe line for the controller."""

  @jax.jit
  def train_step(params, opt_state, key):
    idx = jax.random.randint(key, (32,), 0, X.shape[0])
    loss, grads = jax.value_and_grad(_loss)(params, X[idx], Y[idx])
    updates, opt_state = tx.update(
        grads, opt_state, params, loss=loss,
        **lmo.probe_inputs(opt_state, MODEL.apply, params, X_PROBE, Y_PROBE))
    return optax.apply_updates(params, updates), opt_state, loss
  return train_step


def init_params(key):
  return MODEL.init(key, X[:1])


@jax.jit
def _metrics(params, x, y):
  logits = MODEL.apply(params, x)
  return (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)),
          jnp.mean(jnp.argmax(logits, -1) == y))


def evaluate(params, split):
  x, y = {"val": (X_VAL, Y_VAL), "test": (X_TEST, Y_TEST)}[split]
  loss, acc = _metrics(params, x, y)
  return {"loss": float(loss), "accuracy": float(acc)}


def _plain_loop(tx, seed):
  """Independent reference: a plain optax loop (no injected LR, no extra
  args) over the same initial params and step keys."""
  init_key, steps_key = jax.random.split(jax.random.PRNGKey(seed))
  params = init_params(init_key)
  state = tx.init(params)

  @jax.jit
  def step(params, state, key):
    idx = jax.random.randint(key, (32,), 0, X.shape[0])
    grads = jax.grad(_loss)(params, X[idx], Y[idx])
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for key in jax.random.split(steps_key, T):
    params, state = step(params, state, key)
  return evaluate(params, "test")["loss"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  spec = controller_lib.ControllerSpec.from_fields(
      name="own_test", action_type="xu2019", network="gaussian_mlp",
      hidden_sizes=(8,), steps_per_decision=K, num_val_examples=NV,
      num_decisions=T // K)
  ctrl = controller_helpers.scaled_controller(spec)
  outdir = tmp_path_factory.mktemp("own")
  res = benchmark.evaluate_own(
      make_train_step, init_params, evaluate, controller=ctrl, num_steps=T,
      num_classes=C, initial_lr=0.1, grid_lrs=GRID, num_seeds=3,
      eval_every=8, divergence_loss=50.0, task_name="blobs MLP(16)",
      outdir=str(outdir))
  return res, ctrl, outdir


def test_tuned_schedules_equal_plain_optax_loops(result):
  res, _, _ = result
  eval_seeds = seeds.seed_range("benchmark_evaluation", 3)
  for method, make in (
      (methods_lib.BEST_CONSTANT, lambda lr: optax.sgd(lr)),
      (methods_lib.REFERENCE,
       lambda lr: optax.sgd(optax.cosine_decay_schedule(lr, T)))):
    runs = res.runs[method]
    lr = float(runs[0]["setting"].split("lr=")[1].rstrip(")"))
    assert [r["seed"] for r in runs] == list(eval_seeds)
    want = [_plain_loop(make(lr), s) for s in eval_seeds]
    np.testing.assert_allclose([r["test_loss"] for r in runs], want,
                               rtol=1e-5)


def test_tuning_picks_the_lowest_mean_val_loss_and_never_a_diverged_lr(
    result):
  res, _, _ = result
  for method in (methods_lib.BEST_CONSTANT, methods_lib.REFERENCE):
    grid = res.tuning[method]["grid"]
    assert [label for label, _ in grid] == [
        f"{'constant' if method == methods_lib.BEST_CONSTANT else 'cosine'}"
        f"(lr={lr:g})" for lr in GRID]
    means = [v for _, v in grid]
    assert means[2] == np.inf               # lr 300 diverged on a seed
    assert res.tuning[method]["best"] == grid[int(np.argmin(means))][0]
    assert res.runs[method][0]["setting"] == res.tuning[method]["best"]


def test_controller_runs_and_scores(result):
  res, ctrl, outdir = result
  name = "controller:own_test"
  runs = res.runs[name]
  assert len(runs) == 3 and not any(r["diverged"] for r in runs)
  # The LR of every update is the controller's: one LR per window of K
  # updates, a new one at each decision (never lr0 = 0.1 itself: the first
  # decision comes before the first update).
  lrs = np.array([r["learning_rate"] for r in runs])
  assert lrs.shape == (3, T) and runs[0]["lr_steps"] == list(range(T))
  np.testing.assert_array_equal(lrs, np.repeat(lrs[:, ::K], K, axis=1))
  assert np.all(lrs != np.float32(0.1))
  assert np.all(np.diff(lrs[:, ::K], axis=1) != 0)
  # Validation from step 0 (the initial model, equal for every method on
  # a seed) to the last step.
  assert runs[0]["steps"] == [0, 8, 16, 24]
  for method in (methods_lib.BEST_CONSTANT, methods_lib.REFERENCE):
    assert [r["val_loss"][0] for r in res.runs[method]] == [
        r["val_loss"][0] for r in runs]
  # Scores: the benchmark's rank test against the tuned cosine on the
  # per-seed losses; the normalised loss is the median of the per-seed ones.
  loss = [r["test_loss"] for r in runs]
  cosine = [r["test_loss"] for r in res.runs[methods_lib.REFERENCE]]
  assert res.scores[name].p_reference == pytest.approx(
      scipy.stats.mannwhitneyu(loss, cosine).pvalue)
  assert res.scores[name].loss_mean == pytest.approx(np.mean(loss))
  assert res.scores[name].normalized == pytest.approx(
      np.median(loss) / np.mean(cosine))
  assert (outdir / "results.md").read_text() == res.table
  assert (outdir / "curves.png").stat().st_size > 10_000
  assert "blobs MLP(16)" in res.table


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="num_seeds=1; allowed"):
    benchmark.evaluate_own(make_train_step, init_params, evaluate,
                           controller="mnist1d_mlp_quickstart",
                           num_classes=C, num_steps=T, num_seeds=1)
  with pytest.raises(ValueError, match="grid_lrs"):
    benchmark.evaluate_own(make_train_step, init_params, evaluate,
                           controller="mnist1d_mlp_quickstart",
                           num_classes=C, num_steps=T, grid_lrs=(0.1, -1.0))
