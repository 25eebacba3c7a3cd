"""Malformed data files and oversized config counts fail early and clearly.

Each malformed file is written to ``tmp_path`` as ``fashion_mnist.npz`` and
loaded through ``load_dataset``; the error must be a ``DataFormatError``
naming the file, the array and the problem. Most files are small: every
format check runs before the check of the training split's size.
"""

import pickle
import re

import jax
import numpy as np
import pytest

from lr_meta import tasks
from lr_meta.envs import lr_env
from lr_meta.tasks import datasets
from lr_meta.tasks import family

NAME = "fashion_mnist"


def _arrays(n_train=8, n_test=4):
  """Well-formed Fashion-MNIST-shaped arrays (too few for the real split)."""
  rng = np.random.default_rng(0)
  return dict(
      x_train=rng.integers(0, 256, (n_train, 28, 28, 1), dtype=np.uint8),
      y_train=np.arange(n_train, dtype=np.uint8) % 10,
      x_test=rng.integers(0, 256, (n_test, 28, 28, 1), dtype=np.uint8),
      y_test=np.arange(n_test, dtype=np.uint8) % 10)


def _write(tmp_path, **changes):
  """``fashion_mnist.npz`` in tmp_path from ``_arrays`` with ``changes``
  (a value of None drops the array)."""
  arrays = {k: v for k, v in {**_arrays(), **changes}.items() if v is not None}
  path = tmp_path / f"{NAME}.npz"
  np.savez(path, **arrays)
  return path


def _load_error(tmp_path, path):
  with pytest.raises(tasks.DataFormatError) as e:
    tasks.load_dataset(NAME, data_dir=str(tmp_path))
  msg = str(e.value)
  assert str(path) in msg, msg
  return msg


def _assert_mentions(msg, *patterns):
  for p in patterns:
    assert re.search(p, msg), f"{p!r} not in: {msg}"


# -- unreadable files ----------------------------------------------------------


def test_truncated_npz(tmp_path):
  good = _write(tmp_path).read_bytes()
  path = tmp_path / f"{NAME}.npz"
  path.write_bytes(good[:len(good) // 2])
  _assert_mentions(_load_error(tmp_path, path), "truncated",
                   "x_train, y_train, x_test, y_test")


def test_text_file_named_npz(tmp_path):
  path = tmp_path / f"{NAME}.npz"
  path.write_text("x_train,y_train\n1,2\n")
  _assert_mentions(_load_error(tmp_path, path),
                   "neither a zip archive nor numpy data", "b'x_train,y_train")


def test_empty_file(tmp_path):
  path = tmp_path / f"{NAME}.npz"
  path.write_bytes(b"")
  _assert_mentions(_load_error(tmp_path, path), "an empty file")


def test_pickle_file_is_refused_not_run(tmp_path):
  path = tmp_path / f"{NAME}.npz"
  path.write_bytes(pickle.dumps(_arrays()))
  _assert_mentions(_load_error(tmp_path, path), "a Python pickle")


def test_single_npy_array(tmp_path):
  path = tmp_path / f"{NAME}.npz"
  with open(path, "wb") as f:
    np.save(f, _arrays()["x_train"])
  _assert_mentions(_load_error(tmp_path, path), r"single \.npy array")


def test_pickled_object_array_inside_npz(tmp_path):
  objects = np.empty(8, dtype=object)
  objects[:] = [{"pixels": i} for i in range(8)]
  path = _write(tmp_path, y_train=objects)
  _assert_mentions(_load_error(tmp_path, path), "array 'y_train'",
                   "Object arrays cannot be loaded", "no pickle")


def test_corrupt_member_of_npz(tmp_path):
  path = _write(tmp_path)
  data = bytearray(path.read_bytes())
  start = data.index(b"\x93NUMPY", data.index(b"x_test.npy"))
  data[start + 200:start + 260] = b"\xff" * 60   # pixels of x_test: CRC fails
  path.write_bytes(bytes(data))
  _assert_mentions(_load_error(tmp_path, path), "array 'x_test' is corrupt",
                   "BadZipFile")


def test_missing_key(tmp_path):
  path = _write(tmp_path, y_test=None, extra=np.zeros(3))
  _assert_mentions(_load_error(tmp_path, path), r"missing arrays \['y_test'\]",
                   r"found \['extra', 'x_test', 'x_train', 'y_train'\]")


# -- wrong image arrays --------------------------------------------------------


def test_float64_images_0_to_255_are_refused(tmp_path):
  x = _arrays()["x_train"].astype(np.float64)
  x[0, 0, 0, 0], x[0, 0, 1, 0] = 0.0, 255.0
  path = _write(tmp_path, x_train=x)
  _assert_mentions(_load_error(tmp_path, path), "x_train has dtype float64",
                   r"values 0\.0\.\.255\.0", "allowed: uint8 NHWC images",
                   r"np\.round\(x \* 255\)")


def test_float32_images_in_unit_interval_are_refused_too(tmp_path):
  path = _write(tmp_path, x_test=_arrays()["x_test"].astype(np.float32) / 255)
  _assert_mentions(_load_error(tmp_path, path), "x_test has dtype float32",
                   "refused rather than guessed")


def test_int64_images(tmp_path):
  path = _write(tmp_path, x_train=_arrays()["x_train"].astype(np.int64))
  _assert_mentions(_load_error(tmp_path, path), "x_train has dtype int64",
                   r"x\.astype\(np\.uint8\)")


def test_wrong_image_shape(tmp_path):
  path = _write(tmp_path, x_train=np.zeros((8, 32, 32, 3), np.uint8))
  _assert_mentions(_load_error(tmp_path, path),
                   r"x_train has shape \(8, 32, 32, 3\)",
                   r"allowed: uint8 NHWC images of shape \(N, 28, 28, 1\)")


def test_wrong_image_rank(tmp_path):
  path = _write(tmp_path, x_test=np.zeros((4, 784), np.uint8))
  _assert_mentions(_load_error(tmp_path, path), r"x_test has shape \(4, 784\)",
                   r"\(N, 28, 28, 1\)")


def test_images_without_channel_axis(tmp_path):
  path = _write(tmp_path, x_train=np.zeros((8, 28, 28), np.uint8))
  _assert_mentions(_load_error(tmp_path, path), r"x_train has shape \(8, 28, 28\)")


# -- wrong labels --------------------------------------------------------------


def test_labels_out_of_range(tmp_path):
  y = np.arange(8, dtype=np.uint8) % 10
  y[5], y[6] = 10, 255
  path = _write(tmp_path, y_train=y)
  _assert_mentions(_load_error(tmp_path, path), r"y_train holds labels 0\.\.255",
                   "2 outside 0..9", "the first 10 at index 5",
                   "allowed: integer labels of shape \\(N,\\) in 0..9")


def test_negative_labels(tmp_path):
  y = np.arange(4, dtype=np.int64) % 10
  y[2] = -1
  path = _write(tmp_path, y_test=y)
  _assert_mentions(_load_error(tmp_path, path), r"y_test holds labels -1\.\.3",
                   "1 outside 0..9", "the first -1 at index 2")


def test_float_labels(tmp_path):
  path = _write(tmp_path, y_train=np.zeros(8, np.float32))
  _assert_mentions(_load_error(tmp_path, path), "y_train has dtype float32",
                   "integer labels")


def test_labels_of_wrong_rank(tmp_path):
  path = _write(tmp_path, y_test=np.zeros((4, 1), np.uint8))
  _assert_mentions(_load_error(tmp_path, path), r"y_test has shape \(4, 1\)")


# -- wrong counts --------------------------------------------------------------


def test_mismatched_lengths(tmp_path):
  path = _write(tmp_path, y_train=np.zeros(7, np.uint8))
  _assert_mentions(_load_error(tmp_path, path),
                   "x_train has 8 examples but y_train has 7 labels")


def test_wrong_training_split_size(tmp_path):
  path = _write(tmp_path)
  _assert_mentions(_load_error(tmp_path, path), "x_train has 8 examples",
                   "exactly 60000", "50000 train \\+ 10000 validation")


# -- well-formed data and the other sources ------------------------------------


@pytest.fixture
def tiny_fashion_mnist(monkeypatch):
  """Fashion-MNIST's format with a 6 + 2 example training split."""
  monkeypatch.setitem(datasets.SPECS, NAME,
                      datasets.DatasetSpec(6, 2, 10, (28, 28, 1)))


def test_well_formed_file_loads_scaled(tmp_path, tiny_fashion_mnist):
  del tiny_fashion_mnist
  raw = _arrays()
  path = _write(tmp_path, y_test=raw["y_test"].astype(np.int64))
  ds = tasks.load_dataset(NAME, data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.x_train, raw["x_train"][:6] / np.float32(255))
  np.testing.assert_array_equal(ds.y_val, raw["y_train"][6:])
  np.testing.assert_array_equal(ds.y_test, raw["y_test"])
  assert ds.y_test.dtype == np.int32 and path.exists()


def test_tfds_arrays_pass_the_same_validator(tmp_path, monkeypatch,
                                             tiny_fashion_mnist):
  del tiny_fashion_mnist
  raw = _arrays()
  # As tfds.as_numpy gives them: uint8 images, int64 labels.
  monkeypatch.setattr(datasets, "_load_tfds", lambda name, data_dir: dict(
      raw, y_train=raw["y_train"].astype(np.int64) + 3,
      y_test=raw["y_test"].astype(np.int64)))
  # An empty data_dir falls through to TFDS; a bad label (10) is a format
  # error naming TFDS, not a "data not found".
  with pytest.raises(tasks.DataFormatError, match=r"TFDS 'fashion_mnist'.*"
                     r"y_train holds labels 3\.\.10"):
    tasks.load_dataset(NAME, data_dir=str(tmp_path))
  monkeypatch.setattr(datasets, "_load_tfds", lambda name, data_dir: raw)
  ds = tasks.load_dataset(NAME, data_dir=str(tmp_path / "other"))
  np.testing.assert_array_equal(ds.y_train, raw["y_train"][:6])


def test_mnist1d_passes_and_nan_features_fail(monkeypatch):
  generated = datasets._generate_mnist1d(0)
  datasets.validate_arrays("mnist1d", "mnist1d generator", generated)
  bad = dict(generated, x_test=generated["x_test"].copy())
  bad["x_test"][3, 7] = np.nan
  monkeypatch.setattr(datasets, "_generate_mnist1d", lambda seed: bad)
  with pytest.raises(tasks.DataFormatError,
                     match=r"mnist1d generator \(seed 5\): x_test has "
                     r"non-finite values; allowed: finite float features"):
    tasks.load_dataset("mnist1d", mnist1d_seed=5)


def test_real_files_pass(data_dir):
  for name in ("fashion_mnist", "cifar10"):
    path = f"{data_dir}/{name}.npz"
    datasets.validate_arrays(name, path, datasets._load_npz(path))


# -- config counts larger than the split ---------------------------------------


def test_batch_size_larger_than_training_split():
  with pytest.raises(ValueError, match=re.escape(
      "batch_size=65 is larger than the training split (64 examples of "
      "'mnist1d', num_train_examples=64); allowed: an integer in [1, 64].")):
    tasks.make_task("mnist1d", "mlp", batch_size=65, num_train_examples=64)
  task = tasks.make_task("mnist1d", "mlp", batch_size=64, num_train_examples=64)
  assert task.batch_size == 64


def test_family_batch_size_larger_than_member_subset():
  config = family.TaskFamilyConfig(dataset="mnist1d", num_members=1,
                                   subset_size=20)
  with pytest.raises(ValueError, match=r"batch_size=32 is larger than the "
                     r"training split \(20 examples"):
    family.make_family_tasks(config, batch_size=32)


def _tiny_task():
  return tasks.make_task("mnist1d", "mlp", batch_size=8, num_train_examples=64,
                         num_val_examples=100, num_test_examples=50)


def test_evaluate_num_examples_larger_than_split():
  task = _tiny_task()
  state = task.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=re.escape(
      "num_examples=101; allowed: None (the whole split) or an integer in "
      "[1, 100], the 'val' examples this mnist1d task holds (make_task's "
      "num_val_examples).")):
    task.evaluate(state, "val", 101)
  with pytest.raises(ValueError, match=r"num_examples=0; .*\[1, 50\], the 'test'"):
    tasks.evaluate_batch(task, jax.tree.map(lambda a: a[None], state), "test", 0)
  full = task.evaluate(state, "val", 100)
  np.testing.assert_allclose(full.loss, task.evaluate(state, "val").loss)


def test_env_num_val_examples_larger_than_val_split():
  env = lr_env.LREnv(_tiny_task())
  params = lr_env.LREnvParams.from_fields(num_decisions=2, steps_per_decision=1,
                                          num_val_examples=500).check()
  with pytest.raises(ValueError, match=re.escape(
      "env.num_val_examples=500; allowed: None (the whole split) or an "
      "integer in [1, 100], the 'val' examples")):
    jax.jit(env.reset, static_argnums=1)(jax.random.PRNGKey(0), params)
  obs, _ = env.reset(jax.random.PRNGKey(0),
                     params.with_fields(num_val_examples=100))
  assert np.all(np.isfinite(obs))
