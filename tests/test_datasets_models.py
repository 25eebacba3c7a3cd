"""Data splits on the real files, model sizes, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import tasks
from lr_meta.tasks import models


@pytest.mark.parametrize("name,train,val,test,shape", [
    ("fashion_mnist", 50_000, 10_000, 10_000, (28, 28, 1)),
    ("cifar10", 40_000, 10_000, 10_000, (32, 32, 3)),
])
def test_real_splits_shapes_dtypes_scaling(data_dir, name, train, val, test, shape):
  ds = tasks.load_dataset(name, data_dir=data_dir)
  assert ds.x_train.shape == (train,) + shape
  assert ds.x_val.shape == (val,) + shape
  assert ds.x_test.shape == (test,) + shape
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0
  # Validation is the END of the official train set; test is untouched.
  with np.load(f"{data_dir}/{name}.npz") as raw:
    np.testing.assert_array_equal(ds.y_val, raw["y_train"][train:])
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])
    np.testing.assert_allclose(ds.x_val[0], raw["x_train"][train] / 255.0, atol=1e-7)
  # Balanced classes in the official test split.
  assert np.all(np.bincount(ds.y_test, minlength=10) == 1000)


def test_images_held_as_uint8_and_scaled_on_device_bit_for_bit(data_dir):
  # The host keeps the stored uint8 images (a quarter of float32); a task's
  # device copy is scaled there and equals the host-scaled split exactly.
  ds = tasks.load_dataset("cifar10", data_dir=data_dir)
  x_stored, _ = ds.stored_split("val")
  assert x_stored.dtype == np.uint8
  task = tasks.make_task("cifar10", "mlp", num_train_examples=64,
                         num_val_examples=500, num_test_examples=10,
                         batch_size=32, data_dir=data_dir)
  assert task.data.x_val.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(task.data.x_val), ds.x_val[:500])
  # The old host scaling, bit for bit.
  np.testing.assert_array_equal(ds.x_val[:500],
                                x_stored[:500].astype(np.float32) / 255.0)


def test_fashion_mnist_known_statistics(data_dir):
  ds = tasks.load_dataset("fashion_mnist", data_dir=data_dir)
  full = np.concatenate([ds.x_train, ds.x_val])
  np.testing.assert_allclose(full.mean(), 0.286041, atol=1e-5)
  np.testing.assert_array_equal(ds.y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])


def test_mnist1d_offline_and_deterministic():
  a = tasks.load_dataset("mnist1d")
  assert a.x_train.shape == (3200, 40) and a.x_val.shape == (800, 40)
  assert a.x_test.shape == (1000, 40) and a.num_classes == 10
  b = tasks.datasets._load_cached.__wrapped__("mnist1d", None, 0)
  np.testing.assert_array_equal(a.x_train, b.x_train)


def test_unknown_dataset_lists_known():
  with pytest.raises(ValueError, match="known datasets: fashion_mnist, cifar10, mnist1d"):
    tasks.load_dataset("imagenet")


def test_missing_data_dir_says_how_to_get_data(tmp_path):
  with pytest.raises(tasks.DataNotFoundError) as e:
    tasks.load_dataset("cifar10", data_dir=str(tmp_path / "nowhere"))
  msg = str(e.value)
  assert "does not exist" in msg and "LR_META_DATA_DIR" in msg and "tfds" in msg


def _num_params(model, shape):
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def _wrn_param_count(depth, k, classes=10):
  """Independent count of a pre-activation WRN from its definition."""
  n = (depth - 4) // 6
  conv = lambda cin, cout, ks: cin * cout * ks * ks
  bn = lambda c: 2 * c
  total = conv(3, 16, 3)
  cin = 16
  for base in (16, 32, 64):
    cout = base * k
    for b in range(n):
      total += bn(cin) + conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3)
      if cin != cout:
        total += conv(cin, cout, 1)
      cin = cout
  return total + bn(cin) + cin * classes + classes


def test_parameter_counts():
  # LeNet-5: 61,706 on 28x28x1 (padded to 32x32), 62,006 on 32x32x3.
  assert _num_params(models.LeNet5(), (1, 28, 28, 1)) == 61_706
  assert _num_params(models.LeNet5(), (1, 32, 32, 3)) == 62_006
  # ResNet-18 (CIFAR variant), the widely quoted 11,173,962.
  assert _num_params(models.ResNet18(), (1, 32, 32, 3)) == 11_173_962
  # WRN-40-4: "8.9M" in Zagoruyko & Komodakis 2016; WRN-28-10: 36,479,194.
  assert _num_params(models.WideResNet(40, 4), (1, 32, 32, 3)) == _wrn_param_count(40, 4)
  assert round(_wrn_param_count(40, 4) / 1e6, 1) == 8.9
  assert _num_params(models.WideResNet(28, 10), (1, 32, 32, 3)) == 36_479_194


def test_layer_names_sort_in_forward_order():
  variables = models.ResNet18().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  convs = [k for k, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
           if v.ndim == 4]
  last = jax.tree_util.keystr(convs[-1])
  assert "stage3_block01" in last and "conv1" in last


def test_bad_model_and_optimizer_names():
  with pytest.raises(ValueError, match="known models: mlp, lenet5"):
    tasks.get_model("vgg")
  with pytest.raises(ValueError, match="known optimizers: sgd, momentum, adam, rmsprop"):
    tasks.make_optimizer("lion")
  with pytest.raises(ValueError, match="depth must be 6n\\+4"):
    _num_params(models.WideResNet(depth=41), (1, 32, 32, 3))


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 0, "batch_size must be a positive integer, got 0"),
    ("num_train_examples", 10**7, "num_train_examples must be in"),
    ("divergence_loss", -1.0, "divergence_loss must be > 0"),
])
def test_bad_task_config_values(field, value, match):
  with pytest.raises(ValueError, match=match):
    tasks.make_task("mnist1d", "mlp", **{field: value})
