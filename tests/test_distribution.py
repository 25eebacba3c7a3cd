"""The generalist's task distribution: deterministic draws, train side only."""

import dataclasses
import pathlib

import numpy as np
import pytest

from lr_meta import benchmark
from lr_meta.tasks import datasets as datasets_lib
from lr_meta.tasks import distribution as dist_lib

from script_loader import load_script  # tests/script_loader.py

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs" /
             "generalist.py")


def _config(**kw):
  combos = (dist_lib.Combination("mnist1d", "mlp", "momentum", 0.1),
            dist_lib.Combination("fashion_mnist", "mlp", "sgd", 0.1),
            dist_lib.Combination("fashion_mnist", "lenet5", "sgd", 0.1, 0.5))
  return dist_lib.DistributionConfig(combinations=combos, **kw)


def test_members_are_deterministic_per_seed():
  a = dist_lib.sample_members(_config(num_members=6, seed=3))
  assert a == dist_lib.sample_members(_config(num_members=6, seed=3))
  # Member i does not change when more members are drawn.
  assert dist_lib.sample_members(_config(num_members=9, seed=3))[:6] == a
  assert dist_lib.sample_members(_config(num_members=6, seed=4)) != a


def test_members_respect_the_ranges():
  config = _config(num_members=40, seed=1, mlp_depths=(1, 2),
                   mlp_widths=(16, 48), batch_sizes=(32,),
                   train_fractions=(0.5,))
  members = dist_lib.sample_members(config)
  combos = {c.key for c in config.combinations}
  assert {m.combination for m in members} == combos   # each drawn
  for m in members:
    assert m.batch_size == 32
    if m.model == "mlp":
      widths = dict(m.model_kwargs)["hidden_sizes"]
      assert 1 <= len(widths) <= 2 and set(widths) <= {16, 48}
    else:
      assert m.model_kwargs == ()
  fmnist = [m for m in members if m.dataset == "fashion_mnist"]
  half = datasets_lib.SPECS["fashion_mnist"].num_train // 2
  assert {m.num_train_examples for m in fmnist} == {half}
  # LeNet-5 has half the weight of each other combination: ~1/5 of draws.
  lenet = sum(m.model == "lenet5" for m in members)
  assert 2 <= lenet <= 16


def test_member_env_ranges_centre_on_the_default_lr():
  config = _config(lr0_spread=10.0, num_steps_range=(100, 1000))
  member = dist_lib.sample_members(config)[0]
  ranges = dist_lib.member_env_ranges(config, member)
  np.testing.assert_allclose(ranges["lr0_range"], (0.01, 1.0))
  assert ranges["num_steps_range"] == (100, 1000)


def test_a_heldout_combination_is_refused():
  heldout = [("fashion_mnist", "mlp", "adam")]
  dist_lib.check_disjoint(_config(), heldout)
  bad = _config()
  bad = dataclasses.replace(bad, combinations=bad.combinations + (
      dist_lib.Combination("fashion_mnist", "mlp", "adam", 1e-3),))
  with pytest.raises(ValueError, match="held-out"):
    dist_lib.check_disjoint(bad, heldout)


@pytest.mark.parametrize("bad, match", [
    (dict(num_members=0), "num_members"),
    (dict(mlp_depths=(3, 1)), "mlp_depths"),
    (dict(train_fractions=(1.5,)), "train_fractions"),
    (dict(lr0_spread=0.5), "lr0_spread"),
    (dict(cnn_filters=((1, 2),)), "cnn_filters"),
])
def test_bad_config_is_refused(bad, match):
  with pytest.raises(ValueError, match=match):
    _config(**bad)


def test_the_shipped_config_never_draws_a_heldout_workload():
  tg = load_script("train_generalist")
  config = tg.load_config(CONFIG)
  dist = tg.distribution_config(config)
  suite = benchmark.get_suite(config.suite)
  train = {(w.dataset, w.model, w.optimizer)
           for w in benchmark.select(suite, benchmark.TRAIN)}
  heldout = {(w.dataset, w.model, w.optimizer)
             for w in benchmark.select(suite, benchmark.HELDOUT)}
  tg.check_train_side(dist, config.suite)
  for seed in range(5):
    members = dist_lib.sample_members(
        dataclasses.replace(dist, seed=seed, num_members=32))
    drawn = {m.combination for m in members}
    assert drawn <= train and not drawn & heldout
    assert all(m.optimizer != "adam" for m in members)
  assert max(dist.num_steps_range) <= 1000


@pytest.mark.parametrize("combo, match", [
    (["fashion_mnist", "mlp", "adam", 1e-3], "held-out"),
    (["cifar10", "small_cnn", "momentum", 0.01], "held-out"),
    (["cifar10", "lenet5", "sgd", 0.1], "train side"),
])
def test_the_script_refuses_off_train_combinations(combo, match):
  tg = load_script("train_generalist")
  config = tg.load_config(CONFIG)
  config.distribution.combinations = [combo]
  with pytest.raises(ValueError, match=match):
    tg.check_train_side(tg.distribution_config(config), config.suite)
