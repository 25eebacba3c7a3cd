"""Sequence data, language-model / autoencoder / recurrent tasks, and the
controller's probe on them (``lr_meta.tasks``, ``lmo.probe_inputs``)."""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.features import observation as observation_lib
from lr_meta.tasks import datasets
from lr_meta.tasks import objectives
import lr_meta.optax as lmo

L = 16   # context of the tiny language models


def _lm_task(model="transformer", model_kwargs=None, **kw):
  kw = dict(dict(optimizer="adamw", batch_size=16, context_length=L,
                 num_train_examples=1000, num_val_examples=40,
                 num_test_examples=40), **kw)
  model_kwargs = model_kwargs or dict(num_layers=1, num_heads=2, width=32)
  return tasks.make_task("tiny_shakespeare", model, model_kwargs, **kw)


@pytest.fixture(scope="module")
def lm_task(data_dir):
  del data_dir
  return _lm_task()


def _unigram_entropy(tokens: np.ndarray) -> float:
  """Entropy (nats) of the empirical token distribution: the loss of the best
  model that ignores context, measured on these very tokens."""
  p = np.bincount(tokens) / tokens.size
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def _train(task, lr, steps, seed=0):
  state = task.init(jax.random.key(seed), lr)
  step = jax.jit(lambda s, _: task.train_step(s, lr))
  state, metrics = jax.lax.scan(step, state, None, length=steps)
  return state, metrics


# -- data ----------------------------------------------------------------------


def test_tiny_shakespeare_splits_are_tfds_and_never_cross(data_dir):
  ds = tasks.load_dataset("tiny_shakespeare", data_dir)
  text = (pathlib.Path(data_dir) / "tiny_shakespeare.txt").read_text()
  assert ds.num_classes == len(ds.vocabulary) == 65
  assert ds.vocabulary == "".join(sorted(set(text)))
  # 90% / 5% / 5% of the 1,115,394 characters, in order (TFDS's split).
  bounds = [0, 1_003_854, 1_003_854 + 55_770, len(text)]
  for (lo, hi), split in zip(zip(bounds, bounds[1:]), ("train", "val", "test")):
    x, y = ds.split(split)
    assert ds.decode(x) == text[lo:hi - 1]       # token t of the split
    assert ds.decode(y) == text[lo + 1:hi]       # token t + 1, same split
    assert x.dtype == y.dtype == np.int32


def test_window_sampler_is_deterministic_and_stays_in_its_stream(lm_task):
  n = L + 3   # four possible windows: offsets 0..3
  stream = jnp.arange(n, dtype=jnp.int32)
  task = lm_task.replace(data=lm_task.data.replace(x_train=stream,
                                                   y_train=stream + 1))
  sample = jax.jit(task.sample_batch)
  key = jax.random.key(7)
  x, y = sample(key)
  x2, y2 = sample(key)
  np.testing.assert_array_equal(x, x2)       # same key, same batch
  np.testing.assert_array_equal(y, y2)
  assert x.shape == y.shape == (task.batch_size, L)
  starts = set()
  for k in jax.random.split(jax.random.key(0), 50):
    x, y = map(np.asarray, sample(k))
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)   # contiguous
    np.testing.assert_array_equal(y, x + 1)                # next tokens
    starts.update(x[:, 0].tolist())
  # Every offset is drawn and none runs past the stream's end.
  assert starts == {0, 1, 2, 3}
  assert not np.array_equal(sample(jax.random.key(8))[0], x2)


def test_sequential_batches_and_evaluation_windows_tile_the_stream(lm_task):
  x, y = lm_task.first_examples("val")
  stream_x, stream_y = lm_task.data.split("val")
  assert x.shape == (40, L) == (lm_task.num_examples("val"), L)
  np.testing.assert_array_equal(x.reshape(-1), stream_x[:40 * L])
  np.testing.assert_array_equal(y.reshape(-1), stream_y[:40 * L])
  xb, _ = lm_task.sequential_batch(jnp.int32(2))
  b = lm_task.batch_size
  np.testing.assert_array_equal(
      xb, lm_task.data.x_train[2 * b * L:3 * b * L].reshape(b, L))


def test_sizes_count_windows_and_bad_sizes_name_the_limit(data_dir):
  del data_dir
  task = _lm_task(num_train_examples=100)
  assert task.data.x_train.shape == (100 * L,)
  with pytest.raises(ValueError, match=r"num_val_examples must be in "
                     r"\[1, 3485\] windows of 16 tokens"):
    _lm_task(num_val_examples=10**6)
  with pytest.raises(ValueError, match="context_length=8 for 'mnist1d'"):
    tasks.make_task("mnist1d", "mlp", context_length=8)
  with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
    tasks.make_task("mnist1d", "mlp", loss="hinge")


def test_markov_source_is_seeded_and_its_entropy_rate_bounds_it():
  a = tasks.load_dataset("markov")
  b = datasets.markov_chain(datasets.MARKOV)
  assert "tiny_shakespeare" != a.name and a.is_sequence
  np.testing.assert_array_equal(a.x_train[:1000], b[:1000])
  rate = datasets.markov_entropy_rate()
  # Context helps: the chain's entropy rate is far below its unigram
  # entropy, which is below log(vocabulary) (Zipf frequencies).
  unigram = _unigram_entropy(a.y_train)
  assert rate < 0.75 * unigram and unigram < 0.85 * np.log(48)
  # The stream is drawn from the chain's transitions: its mean negative log
  # probability under them estimates the entropy rate without bias.
  v = datasets.MARKOV.vocab_size
  probs = datasets.markov_transitions(datasets.MARKOV)
  ctx = a.x_train[:-1].astype(np.int64) * v + a.x_train[1:]
  h = -np.mean(np.log(probs[ctx, a.y_train[1:]]))
  assert abs(h - rate) < 0.02, (h, rate)


def _text_error(tmp_path, content: bytes):
  path = tmp_path / "tiny_shakespeare.txt"
  path.write_bytes(content)
  with pytest.raises(tasks.DataFormatError) as e:
    datasets._load_cached("tiny_shakespeare", str(tmp_path), 0)
  assert str(path) in str(e.value)
  return str(e.value)


def test_bad_text_files_name_the_file(tmp_path, data_dir):
  good = (pathlib.Path(data_dir) / "tiny_shakespeare.txt").read_bytes()
  msg = _text_error(tmp_path, good[:len(good) // 2])
  assert "557,697 characters (truncated" in msg and "1,115,394" in msg
  msg = _text_error(tmp_path, np.arange(256, dtype=np.uint8).tobytes() * 10)
  assert "not a text file" in msg
  msg = _text_error(tmp_path, good[:100] + b"\x00" + good[101:])
  assert "byte 0x00 at offset 100" in msg
  assert "an empty file" in _text_error(tmp_path, b"")


# -- models learn --------------------------------------------------------------


def test_tiny_transformer_beats_the_unigram_entropy(lm_task):
  _, y = lm_task.first_examples("val")
  unigram = _unigram_entropy(np.asarray(y).ravel())
  state, metrics = _train(lm_task, 3e-3, 150)
  val = lm_task.evaluate(state, "val")
  assert not bool(metrics.diverged[-1])
  assert float(val.loss) < unigram - 0.1, (float(val.loss), unigram)
  assert float(val.accuracy) > 0.2   # token accuracy
  assert math.isclose(float(objectives.bits(val.loss)),
                      float(val.loss) / math.log(2), rel_tol=1e-6)


def test_recurrent_language_model_learns_the_markov_source():
  task = tasks.make_task("markov", "gru", dict(width=64), optimizer="adam",
                         batch_size=16, context_length=L,
                         num_train_examples=2000, num_val_examples=40,
                         num_test_examples=40)
  before = float(task.evaluate(task.init(jax.random.key(0)), "val").loss)
  state, _ = _train(task, 1e-2, 200)
  after = float(task.evaluate(state, "val").loss)
  # From ln(48) = 3.87 to at most 80% of it (the entropy rate is 2.09).
  assert after < 0.8 * before, (before, after)
  assert after > datasets.markov_entropy_rate() - 0.05


def test_autoencoder_learns_with_mse_and_reports_no_accuracy(data_dir):
  del data_dir
  task = tasks.make_task("fashion_mnist", "autoencoder", optimizer="adam",
                         batch_size=32, num_train_examples=1000,
                         num_val_examples=100, num_test_examples=100)
  assert task.loss == "mse" and not task.objective.has_predictions
  init = task.init(jax.random.key(0))
  before = task.evaluate(init, "val")
  state, metrics = _train(task, 1e-3, 150)
  after = task.evaluate(state, "val")
  assert float(after.loss) < float(before.loss) / 3
  assert np.isnan(float(after.accuracy)) and np.isnan(metrics.accuracy).all()
  # The loss is the mean squared reconstruction error, computed by hand.
  x, _ = task.first_examples("val")
  out, _ = task.apply(state.params, state.batch_stats, x)
  np.testing.assert_allclose(after.loss, np.mean((out - x) ** 2), rtol=1e-5)


def test_batch_norm_statistics_are_carried_through_training(data_dir):
  del data_dir
  task = tasks.make_task("fashion_mnist", "resnet_norm",
                         dict(norm="batch", width=8, num_stages=2),
                         optimizer="momentum", batch_size=16,
                         num_train_examples=200, num_val_examples=50,
                         num_test_examples=50)
  init = task.init(jax.random.key(0), 0.05)
  state, _ = _train(task, 0.05, 5)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       state.batch_stats, init.batch_stats)
  assert min(jax.tree.leaves(moved)) > 0
  # Evaluation uses the running statistics: the same as applying them by hand.
  x, y = task.first_examples("val")
  logits = task.model.apply({"params": state.params,
                             "batch_stats": state.batch_stats}, x, train=False)
  np.testing.assert_allclose(
      task.evaluate(state, "val").loss,
      np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)),
      rtol=1e-5)


def test_observations_that_need_classes_are_refused_on_mse(data_dir):
  del data_dir
  task = tasks.make_task("mnist1d", "autoencoder", batch_size=16,
                         num_train_examples=100,
                         num_val_examples=20, num_test_examples=20)
  with pytest.raises(ValueError, match=r"reads softmax predictions.*"
                     r"'mse'.*allowed there.*'scale_free'"):
    lr_env.LREnv(task, "xu2019")
  lr_env.LREnv(task, "xu2017", "scale_free")   # works on any loss


# -- the probe of lmo.controlled on any model ------------------------------------


def _softmax_np(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _due_state(spec_kwargs):
  """A controlled state whose next update decides (its first call)."""
  from lr_meta.policies import controller as controller_lib
  import controller_helpers  # tests/controller_helpers.py
  spec = controller_lib.ControllerSpec.from_fields(
      name="probe_test", network="gaussian_mlp", hidden_sizes=(4,),
      **spec_kwargs)
  ctrl = controller_helpers.scaled_controller(spec, 1.0)
  return ctrl, spec


def test_probe_inputs_on_rank3_logits_equal_a_hand_computation():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  labels = rng.integers(0, 7, size=(3, 5)).astype(np.int32)
  mask = (rng.random((3, 5)) > 0.3).astype(np.float32)
  p = _softmax_np(logits.astype(np.float64))
  nll = -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])
  # A probe of 3 windows of 5 tokens: 15 prediction rows.
  ctrl, _ = _due_state(dict(action_type="xu2019", steps_per_decision=2,
                            num_val_examples=15))
  tx = lmo.controlled(tasks.make_optimizer("adam", learning_rate=1e-3), ctrl,
                      predictions_shape=(15, 7))
  state = tx.init({"dense0": {"kernel": jnp.ones((2, 3))}})
  apply_fn = lambda params, x: x
  out = lmo.probe_inputs(state, apply_fn, None, jnp.asarray(logits),
                         jnp.asarray(labels))
  np.testing.assert_allclose(out["val_loss"], nll.mean(), rtol=1e-6)
  np.testing.assert_allclose(out["predictions"], p.reshape(15, 7), rtol=1e-5,
                             atol=1e-7)
  masked = lmo.probe_inputs(state, apply_fn, None, jnp.asarray(logits),
                            jnp.asarray(labels), mask=jnp.asarray(mask))
  np.testing.assert_allclose(masked["val_loss"],
                             (nll * mask).sum() / mask.sum(), rtol=1e-6)
  # Rank 2 is the plain softmax cross entropy, bit for bit.
  flat = lmo.probe_inputs(state, apply_fn, None,
                          jnp.asarray(logits[:, 0]), jnp.asarray(labels[:, 0]))
  np.testing.assert_array_equal(
      flat["val_loss"], jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          jnp.asarray(logits[:, 0]), jnp.asarray(labels[:, 0]))))


def test_probe_inputs_with_a_loss_fn_and_its_errors():
  gen = lmo.pretrained_controller("generalist")
  tx = lmo.controlled(tasks.make_optimizer("adam", learning_rate=1e-3), gen,
                      num_steps=100)
  state = tx.init({"w": jnp.zeros(2)})
  x = jnp.linspace(0.0, 1.0, 6).reshape(2, 3)
  out = lmo.probe_inputs(state, lambda p, x: 2 * x, None, x,
                         loss_fn=lambda out, y: jnp.mean((out - x) ** 2))
  np.testing.assert_allclose(out["val_loss"], np.mean(np.asarray(x) ** 2),
                             rtol=1e-6)
  assert set(out) == {"val_loss"}
  with pytest.raises(ValueError, match="mask= weights the cross entropy"):
    lmo.probe_inputs(state, lambda p, x: x, None, x, mask=x,
                     loss_fn=lambda out, y: 0.0)


@pytest.mark.parametrize("inputs", [(), ("grad_norm_ratio",)])
def test_generalist_in_a_jitted_transformer_loop_matches_the_env(lm_task,
                                                                 inputs):
  """``controlled`` with the shipped generalist in an ordinary AdamW loop on
  a character transformer: the same LRs as the environment's episode; and
  with a generalist of its spec that also reads an optional input (the
  gradients, through ``controlled``'s ``update`` and the environment's
  ``train_step_with_measure``)."""
  task, num_steps, nv = lm_task, 40, 8
  gen = lmo.pretrained_controller("generalist")
  if inputs:
    import controller_helpers  # pylint: disable=g-import-not-at-top
    gen = controller_helpers.scaled_controller(
        gen.spec.with_fields(name="with_inputs", inputs=inputs), 3.0)
  spec = gen.spec
  env = lr_env.LREnv(task, spec.action_type, spec.observation_spec.kind,
                     spec.observation_spec.inputs)
  params = lr_env.LREnvParams.from_fields(
      num_decisions=spec.observation_spec.num_decisions,
      decision_schedule="fraction",
      reward="log_val_loss_change", num_val_examples=nv,
      slope_decay=spec.observation_spec.slope_decay).check(spec.action_type)
  key, lr0 = jax.random.PRNGKey(5), 1e-3
  env_state, infos = rollout.run_episode(env, params, gen.act, gen.params,
                                         key, lr0=lr0, num_steps=num_steps)
  env_lrs = np.asarray(infos["lr"])

  opt = task.init(jax.random.split(key, 4)[0], lr0)   # LREnv.reset's key
  tx = lmo.controlled(tasks.make_optimizer("adamw", learning_rate=lr0), gen,
                      num_steps=num_steps)
  x_probe, y_probe = task.first_examples("val", nv)

  @jax.jit
  def train_step(params, opt_state, rng):
    rng, batch_key, dropout_key = jax.random.split(rng, 3)
    x, y = task.sample_batch(batch_key)
    (loss, _), grads = jax.value_and_grad(task.loss_and_logits, has_aux=True)(
        params, {}, x, y, train=True, dropout_key=dropout_key)
    apply_fn = lambda p, x: task.apply(p, {}, x)[0]
    updates, opt_state = tx.update(
        grads, opt_state, params, loss=loss,
        **lmo.probe_inputs(opt_state, apply_fn, params, x_probe, y_probe))
    return optax.apply_updates(params, updates), opt_state, rng

  p, opt_state, rng = opt.params, tx.init(opt.params), opt.key
  lrs = []
  for _ in range(num_steps):
    p, opt_state, rng = train_step(p, opt_state, rng)
    lrs.append(float(lmo.current_lr(opt_state)))
  d = spec.observation_spec.num_decisions
  calls = [int(observation_lib.decision_step(t, num_steps, d))
           for t in range(d)]
  assert calls == list(range(0, num_steps, 2))
  # Constant inside each window, the env's LR of that window.
  windows = np.split(np.asarray(lrs), calls[1:])
  for w, want in zip(windows, env_lrs):
    np.testing.assert_allclose(w, want, rtol=1e-6)
  assert np.ptp(np.log(env_lrs)) > 1e-3    # the controller really acted
  # Same params up to float rounding, which Adam's normalisation lifts to
  # ~1e-6 on near-zero gradients (the LRs above agree to 1e-6).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=2e-5),
               p, env_state.opt.params)


def test_xu2019_observation_reads_one_prediction_row_per_token(lm_task):
  """On a language model Xu et al.'s prediction features see the probe's
  per-token softmax: ``num_val_examples * context_length`` rows."""
  import controller_helpers  # tests/controller_helpers.py
  from lr_meta.policies import controller as controller_lib
  nv = 4
  env = lr_env.LREnv(lm_task, "xu2019")
  params = lr_env.LREnvParams.from_fields(num_decisions=3, steps_per_decision=2,
                                          num_val_examples=nv)
  spec = controller_lib.ControllerSpec.from_fields(
      name="lm_probe", action_type="xu2019", network="gaussian_mlp",
      hidden_sizes=(4,), steps_per_decision=2, num_val_examples=nv * L)
  ctrl = controller_helpers.scaled_controller(spec, 30.0)
  state, infos = rollout.run_episode(env, params, ctrl.act, ctrl.params,
                                     jax.random.key(0), lr0=1e-3)
  assert state.features.prev_predictions.shape == (nv * L, 65)
  assert np.all(np.isfinite(state.obs))
  assert np.ptp(np.asarray(infos["lr"])) > 0   # the LR moved


def test_tfds_text_passes_the_same_validator(tmp_path, monkeypatch, data_dir):
  """With no local file, TFDS's three splits are joined and checked like the
  file (a bad one is a format error naming TFDS, not 'data not found')."""
  text = (pathlib.Path(data_dir) / "tiny_shakespeare.txt").read_text()
  monkeypatch.setattr(datasets, "_load_tfds_text", lambda name, d: text)
  ds = datasets._load_cached("tiny_shakespeare", str(tmp_path), 0)
  assert ds.decode(ds.x_train[:14]) == "First Citizen:"
  monkeypatch.setattr(datasets, "_load_tfds_text", lambda name, d: text[:-5])
  with pytest.raises(tasks.DataFormatError, match=r"TFDS 'tiny_shakespeare'"
                     r".*1,115,389 characters"):
    datasets._load_cached("tiny_shakespeare", str(tmp_path / "other"), 0)


def test_rule_search_refuses_a_loss_without_accuracy():
  from lr_meta.nos import search
  with pytest.raises(ValueError, match=r"loss 'mse', which has no accuracy"):
    search.Scorer(search.ScoringConfig(dataset="mnist1d", model="autoencoder",
                                       num_train_examples=200,
                                       num_val_examples=50))


def test_tasks_on_the_same_data_share_one_device_copy():
  """However many tasks, optimizers or models use a data set, a process
  holds one device copy of it (counted in jax's live buffers)."""
  import gc
  gc.collect()
  def live_bytes():
    return sum(a.nbytes for a in jax.live_arrays())
  kw = dict(num_train_examples=300, num_val_examples=40, num_test_examples=40)
  before = live_bytes()
  first = tasks.make_task("mnist1d", "mlp", **kw)
  one_copy = live_bytes() - before
  others = [tasks.make_task("mnist1d", model, optimizer=opt, batch_size=b, **kw)
            for model, opt, b in (("mlp", "adam", 32), ("gru", "sgd", 16),
                                  ("autoencoder", "adamw", 64))]
  assert one_copy >= 380 * 41 * 4          # x (40 floats) and y of 380 examples
  assert live_bytes() - before == one_copy
  assert all(t.data is first.data for t in others)
  # Other slices are other data.
  assert tasks.make_task("mnist1d", "mlp", num_train_examples=200).data \
      is not first.data
