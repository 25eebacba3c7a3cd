"""Tests for lr_meta.features.weight_stats and lr_meta.features.params."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sp_stats

from lr_meta import features
from lr_meta.features import params as params_lib
from lr_meta.features import weight_stats as ws
from lr_meta.tasks import models
import weight_stats_reference as reference  # tests/weight_stats_reference.py


@pytest.mark.parametrize("n", [1, 2, 5, 9, 100])
def test_summary_statistics_matches_scipy(n):
  rng = np.random.default_rng(n)
  x = rng.gamma(2.0, 1.0, size=n).astype(np.float32)  # skewed
  got = np.asarray(jax.jit(ws.summary_statistics)(x))
  want = reference.scipy_stats(x)
  if n == 1:  # constant set: scipy gives nan skew/kurtosis, we give 0.
    want[5:7] = 0.0
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  assert got[ws.STAT_NAMES.index("moment1")] == 0.0


def test_each_statistic_named():
  rng = np.random.default_rng(0)
  x = rng.standard_t(5, size=(3, 3, 4, 2)).astype(np.float32)
  got = dict(zip(ws.STAT_NAMES, np.asarray(ws.summary_statistics(x))))
  flat = x.astype(np.float64).ravel()
  np.testing.assert_allclose(got["mean"], flat.mean(), atol=1e-6)
  np.testing.assert_allclose(got["q25"], np.quantile(flat, 0.25), rtol=1e-5)
  np.testing.assert_allclose(got["median"], np.median(flat), rtol=1e-5)
  np.testing.assert_allclose(got["q75"], np.quantile(flat, 0.75), rtol=1e-5)
  np.testing.assert_allclose(got["std"], flat.std(ddof=0), rtol=1e-5)
  np.testing.assert_allclose(
      got["skewness"], sp_stats.skew(flat, bias=True), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
      got["kurtosis"], sp_stats.kurtosis(flat, fisher=True, bias=True),
      rtol=1e-4)
  for p in range(1, 6):
    np.testing.assert_allclose(got[f"moment{p}"], sp_stats.moment(flat, p),
                               rtol=1e-4, atol=1e-6)


def test_hand_computed_statistics():
  # x = [0, 1, 2, 3, 10]: mean 3.2, deviations -3.2 -2.2 -1.2 -0.2 6.8.
  x = jnp.array([0., 1., 2., 3., 10.])
  got = np.asarray(ws.summary_statistics(x))
  d = np.array([-3.2, -2.2, -1.2, -0.2, 6.8])
  m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
  assert m2 == pytest.approx(12.56)
  want = [3.2, 1.0, 2.0, 3.0, np.sqrt(12.56), m3 / m2**1.5, m4 / m2**2 - 3,
          0.0, 12.56, m3, m4, (d**5).mean()]
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_layout_constants():
  assert ws.NUM_WEIGHT_FEATURES == 193
  assert len(ws.FEATURE_NAMES) == 193
  assert len(set(ws.FEATURE_NAMES)) == 193
  assert ws.FEATURE_NAMES[:12] == tuple(f"whole/{s}" for s in ws.STAT_NAMES)
  assert ws.feature_index("whole/kurtosis") == 6
  assert ws.feature_index("rows/mean/mean") == 12
  assert ws.feature_index("rows/median/skewness") == 12 + 12 * 1 + 5
  assert ws.feature_index("columns/mean/mean") == 72
  assert ws.feature_index("filters/min/moment5") == 191
  assert ws.feature_index("prev_lr") == ws.PREV_LR_INDEX == 192
  with pytest.raises(ValueError, match="rows/avg/mean"):
    ws.feature_index("rows/avg/mean")


def test_193_features_match_loop_reference():
  rng = np.random.default_rng(1)
  kernel = rng.normal(size=(3, 2, 4, 6)).astype(np.float32)
  kernel[..., 0] *= 3.0  # make columns differ
  got = np.asarray(jax.jit(ws.weight_stats_features)(kernel, 0.05))
  want = reference.reference_features(kernel, 0.05)
  assert got.shape == (193,)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_rows_columns_filters_on_hand_made_kernel():
  # 1x2 filters, 2 input x 3 output channels; filter (i, j) = [a, a + s].
  kernel = np.zeros((1, 2, 2, 3), np.float32)
  for i in range(2):
    for j in range(3):
      a = 10.0 * i + j
      kernel[0, :, i, j] = [a, a + (j + 1)]
  feats = np.asarray(ws.weight_stats_features(kernel, 0.3))
  idx = ws.feature_index
  # Filter means: a + (j + 1) / 2 -> i=0: 0.5, 2, 3.5; i=1: 10.5, 12, 13.5.
  # Filter std (two values, ddof 0) = (j + 1) / 2: 0.5, 1, 1.5 for each i.
  np.testing.assert_allclose(feats[idx("filters/mean/mean")], 42 / 6)
  np.testing.assert_allclose(feats[idx("filters/max/mean")], 13.5)
  np.testing.assert_allclose(feats[idx("filters/min/mean")], 0.5)
  np.testing.assert_allclose(feats[idx("filters/median/mean")], (3.5 + 10.5) / 2)
  np.testing.assert_allclose(feats[idx("filters/max/std")], 1.5)
  np.testing.assert_allclose(feats[idx("filters/mean/std")], 1.0)
  np.testing.assert_allclose(feats[idx("filters/std/std")], np.std([.5, 1, 1.5]))
  # Two-point filters are symmetric: skewness 0, excess kurtosis -2.
  np.testing.assert_allclose(feats[idx("filters/max/skewness")], 0.0, atol=1e-6)
  np.testing.assert_allclose(feats[idx("filters/mean/kurtosis")], -2.0, rtol=1e-5)
  # Rows: input channel 0 holds 0,1,1,3,2,5 (mean 2); channel 1 holds +10.
  np.testing.assert_allclose(feats[idx("rows/min/mean")], 2.0, rtol=1e-6)
  np.testing.assert_allclose(feats[idx("rows/max/mean")], 12.0, rtol=1e-6)
  np.testing.assert_allclose(feats[idx("rows/std/mean")], 5.0, rtol=1e-6)
  np.testing.assert_allclose(feats[idx("rows/std/std")], 0.0, atol=1e-5)
  # Columns: output channel j holds j, 2j+1, 10+j, 11+2j.
  col_means = [(j + 2 * j + 1 + 10 + j + 11 + 2 * j) / 4 for j in range(3)]
  np.testing.assert_allclose(feats[idx("columns/mean/mean")], np.mean(col_means))
  np.testing.assert_allclose(feats[idx("columns/max/mean")], max(col_means))
  np.testing.assert_allclose(feats[idx("columns/median/mean")], col_means[1])
  # Whole kernel and the previous LR.
  np.testing.assert_allclose(feats[idx("whole/mean")], kernel.mean(), rtol=1e-6)
  np.testing.assert_allclose(feats[idx("prev_lr")], 0.3)


def test_not_4d_kernel_raises():
  with pytest.raises(ValueError, match=r"4-D conv kernel.*\(3, 4\)"):
    ws.weight_stats_features(jnp.ones((3, 4)), 0.1)


def _lenet_params():
  model = models.LeNet5()
  return model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def test_layer_lookup_on_lenet():
  variables = _lenet_params()
  assert params_lib.last_conv_layer(variables) == ("conv1",)
  assert params_lib.first_dense_layer(variables) == ("dense0",)
  assert params_lib.last_dense_layer(variables) == ("dense2",)
  assert params_lib.conv_layers(variables) == [("conv0",), ("conv1",)]
  feats = features.layer_weight_stats(variables, 0.01)
  kernel = variables["params"]["conv1"]["kernel"]
  np.testing.assert_allclose(feats, ws.weight_stats_features(kernel, 0.01))
  by_name = features.layer_weight_stats(variables["params"], 0.01, "conv0")
  np.testing.assert_allclose(
      by_name[:192], ws.kernel_statistics(variables["params"]["conv0"]["kernel"]))


def test_missing_layer_lists_available():
  variables = _lenet_params()
  with pytest.raises(ValueError, match=r"'conv9'.*conv0 \(5, 5, 1, 6\).*dense2"):
    features.layer_weight_stats(variables, 0.01, "conv9")
  # A dense layer is read as a 1x1 conv (test_weight_stats_layers.py); a
  # model without conv layers defaults to its last weight layer.
  dense0 = variables["params"]["dense0"]["kernel"]
  np.testing.assert_array_equal(
      features.layer_weight_stats(variables, 0.01, "dense0"),
      ws.weight_stats_features(dense0[None, None], 0.01))
  mlp = models.MLP().init(jax.random.key(0), jnp.zeros((1, 8)))
  last = params_lib.last_dense_layer(mlp)
  np.testing.assert_array_equal(
      features.layer_weight_stats(mlp, 0.01),
      features.layer_weight_stats(mlp, 0.01, last))
  with pytest.raises(ValueError, match=r"No weight layer.*\(none\)"):
    features.layer_weight_stats({"bn": {"scale": jnp.ones(3)}}, 0.01)


def test_nested_path_and_sorted_keys_pitfall():
  model = models.WideResNet(depth=10, width=1)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  last = params_lib.last_conv_layer(variables)
  last_block = list(variables["params"])[-3]  # ..., last block, final_bn, dense0
  assert last_block.startswith("stage2_block")
  assert last == (last_block, "conv1")
  # A tree op re-creates dicts with sorted keys: the path still resolves.
  resorted = jax.tree.map(lambda x: x, variables["params"])
  assert list(resorted) == sorted(variables["params"])  # order is lost ...
  assert params_lib.last_conv_layer(resorted) == (
      last_block, "shortcut_conv")  # ... so resolve once, from init.
  assert params_lib.get_kernel(resorted, last).shape == (3, 3, 64, 64)
  assert params_lib.get_kernel(resorted, f"{last_block}/conv1").shape == (
      3, 3, 64, 64)


def test_jit_inside_train_step_matches_reference():
  """Inside a jitted step on transformed params: the loop reference's values."""
  variables = _lenet_params()
  layer = params_lib.last_conv_layer(variables)

  @jax.jit
  def f(params, lr):
    params = jax.tree.map(lambda p: p * 1.5, params)
    return features.layer_weight_stats(params, lr, layer)

  out = np.asarray(f(variables["params"], 0.1))
  kernel = 1.5 * np.asarray(variables["params"]["conv1"]["kernel"])
  assert layer == ("conv1",) and kernel.shape == (5, 5, 6, 16)
  np.testing.assert_allclose(out, reference.reference_features(kernel, 0.1),
                             rtol=2e-4, atol=2e-5)


def test_sort_last_axis_matches_numpy_sort():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(5, 37)).astype(np.float32)
  x[0, :10] = 0.0
  x[1, :3] = [np.inf, -np.inf, -1e30]
  x[2] = 1e-38 * rng.normal(size=37)  # subnormals and tiny values
  np.testing.assert_array_equal(jax.jit(ws.sort_last_axis)(x), np.sort(x, -1))
  x64 = rng.normal(size=(3, 4))  # other dtypes go through jnp.sort
  np.testing.assert_array_equal(ws.sort_last_axis(jnp.asarray(x64)),
                                np.sort(x64.astype(np.float32), -1))
