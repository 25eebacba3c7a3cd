"""The generalist's task distribution: deterministic draws, train side only."""

import dataclasses
import pathlib

import jax
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


def test_covered_combinations_each_have_a_member_and_their_episode_share():
  """cover_combinations: members 0..C-1 take the C combinations in order,
  the rest are drawn as before (member i is the same draw either way), and
  a combination's episodes take its weight's share, split over its
  members."""
  plain = dist_lib.sample_members(_config(num_members=5, seed=0))
  config = _config(num_members=5, seed=0, cover_combinations=True)
  members = dist_lib.sample_members(config)
  assert [m.combination for m in members[:3]] == [
      c.key for c in config.combinations]
  assert members[3:] == plain[3:]
  weights = dist_lib.episode_weights(config, members)
  share = {}
  for m, w in zip(members, weights):
    share[m.combination] = share.get(m.combination, 0.0) + w
  np.testing.assert_allclose([share[c.key] for c in config.combinations],
                             [1.0, 1.0, 0.5])
  assert dist_lib.episode_weights(_config(num_members=5), plain) is None
  with pytest.raises(ValueError, match=r"num_members=2 with "
                     r"cover_combinations=True; allowed: at least the 3"):
    _config(num_members=2, cover_combinations=True)


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


# Every kind a broader distribution draws (sequence models on the training
# side's token source, normalised ResNets, AdamW), none of them a held-out
# (data set, model, optimizer) of the cpu suite.
BROAD = (
    dist_lib.Combination("markov", "transformer", "adamw", 1e-3),
    dist_lib.Combination("markov", "lstm", "adam", 1e-3),
    dist_lib.Combination("markov", "gru", "adamw", 1e-3),
    dist_lib.Combination("fashion_mnist", "resnet_norm", "momentum", 0.01),
    dist_lib.Combination("mnist1d", "mlp", "adamw", 1e-3),
)


def test_new_kinds_draw_their_architectures_and_settings():
  config = dist_lib.DistributionConfig(
      combinations=BROAD, num_members=60, seed=2, batch_sizes=(16,),
      sequence_widths=(32, 64), resnet_widths=(4,), context_lengths=(16, 32),
      weight_decays=(1e-2, 1e-1))
  members = dist_lib.sample_members(config)
  assert {m.combination for m in members} == {c.key for c in BROAD}
  for m in members:
    kwargs = dict(m.model_kwargs)
    if m.dataset == "markov":
      assert m.context_length in (16, 32)
      windows = (datasets_lib.SPECS["markov"].num_train - 1) // (
          m.context_length)
      assert 16 <= m.num_train_examples <= windows
    else:
      assert m.context_length is None
    if m.model == "transformer":
      assert kwargs["width"] in (32, 64) and 1 <= kwargs["num_layers"] <= 2
      assert kwargs["num_heads"] == kwargs["width"] // dist_lib.HEAD_WIDTH
    if m.model in ("gru", "lstm"):
      assert kwargs == {"width": kwargs["width"]} and kwargs["width"] in (
          32, 64)
    if m.model == "resnet_norm":
      assert kwargs["width"] == 4 and kwargs["norm"] in (
          "group", "layer", "batch")
    if m.optimizer == "adamw":
      assert dict(m.optimizer_kwargs)["weight_decay"] in (1e-2, 1e-1)
    else:
      assert m.optimizer_kwargs == ()
  norms = {dict(m.model_kwargs)["norm"] for m in members
           if m.model == "resnet_norm"}
  assert len(norms) >= 2


def test_the_old_kinds_draw_what_they_drew_before():
  """New draws use keys folded off the old ones: the members of a config of
  MLPs and CNNs (the shipped generalist's recipe) are unchanged."""
  members = dist_lib.sample_members(_config(num_members=6, seed=3))
  # Drawn by the code before the new kinds existed.
  assert [(dict(m.model_kwargs)["hidden_sizes"], m.batch_size,
           m.num_train_examples) for m in members] == [
               ((128,), 64, 10000), ((32, 64, 64), 128, 640),
               ((32, 32, 256), 128, 640), ((256, 64), 128, 3200),
               ((32, 128, 256), 64, 25000), ((128, 64, 256), 128, 25000)]
  for m in members:
    assert m.optimizer_kwargs == () and m.context_length is None


def test_every_new_kind_builds_a_task_that_trains(tmp_path):
  config = dist_lib.DistributionConfig(
      combinations=BROAD, num_members=12, seed=0, batch_sizes=(8,),
      train_fractions=(0.05,), sequence_widths=(16,), resnet_widths=(4,),
      transformer_layers=(1, 1), context_lengths=(8,))
  members = dist_lib.sample_members(config)
  assert {m.combination for m in members} == {c.key for c in BROAD}
  # One member of each combination (each is one compile).
  members = list({m.combination: m for m in members}.values())
  tasks = dist_lib.member_tasks(members, num_val_examples=16,
                                num_test_examples=1)
  for m, task in zip(members, tasks):
    if m.optimizer == "adamw":
      assert "weight_decay=" in m.summary()
    assert task.model_name == m.model
    if m.model in ("lstm", "resnet_norm"):
      continue   # their models' own tests train them; compiles cost here
    # A sequence member trains on windows of its context; AdamW members
    # take their drawn decay.
    state = task.init(jax.random.PRNGKey(0), m.default_lr)
    state, metrics = task.train_step(state, m.default_lr)
    assert np.isfinite(float(metrics.loss)), m.summary()


def test_the_held_out_text_is_refused_for_every_kind():
  for combo in BROAD:
    text = dist_lib.Combination("tiny_shakespeare", combo.model,
                                combo.optimizer, combo.default_lr)
    config = dist_lib.DistributionConfig(combinations=BROAD + (text,))
    if combo.model in ("transformer", "lstm", "gru"):
      with pytest.raises(ValueError, match="held-out data sets "
                         r"\['tiny_shakespeare'\]"):
        dist_lib.check_disjoint(config, (),
                                heldout_datasets=("tiny_shakespeare",))
  # And the cpu suite's held-out triples are refused as combinations.
  suite = benchmark.get_suite("cpu")
  heldout = {(w.dataset, w.model, w.optimizer)
             for w in benchmark.select(suite, benchmark.HELDOUT)}
  dist_lib.check_disjoint(dist_lib.DistributionConfig(combinations=BROAD),
                          heldout, heldout_datasets=("tiny_shakespeare",))
  for triple in sorted(heldout):
    if triple[0] == "tiny_shakespeare":
      continue
    bad = dist_lib.DistributionConfig(combinations=BROAD + (
        dist_lib.Combination(*triple, 1e-3),))
    with pytest.raises(ValueError, match="held-out combinations"):
      dist_lib.check_disjoint(bad, heldout)


def test_the_v2_recipe_draws_every_kind_and_never_a_held_out_one():
  tg = load_script("train_generalist")
  config = tg.load_config(str(pathlib.Path(CONFIG).with_name(
      "generalist_v2.py")))
  dist = tg.distribution_config(config)
  tg.check_train_side(dist, config.suite)
  suite = benchmark.get_suite(config.suite)
  heldout = {(w.dataset, w.model, w.optimizer)
             for w in benchmark.select(suite, benchmark.HELDOUT)}
  drawn = set()
  for seed in range(4):
    members = dist_lib.sample_members(
        dataclasses.replace(dist, seed=seed, num_members=48))
    drawn |= {m.combination for m in members}
    assert all(m.dataset != "tiny_shakespeare" for m in members)
  assert not drawn & heldout
  assert {"sgd", "momentum", "adam", "adamw"} <= {c[2] for c in drawn}
  assert {"transformer", "lstm", "resnet_norm", "mlp"} <= {
      c[1] for c in drawn}
  assert dist.lr0_spread >= 30 and dist.num_steps_range == (100, 1000)
  assert tuple(config.env.inputs) == ("grad_norm_ratio",)


def test_a_distribution_too_long_for_the_held_out_horizons_is_refused():
  tg = load_script("train_generalist")
  config = tg.load_config(str(pathlib.Path(CONFIG).with_name(
      "generalist_v2.py")))
  config.distribution.num_steps_range = (100, 1500)
  with pytest.raises(ValueError, match=r"breaks suite 'cpu''s held-out "
                     r"rules: 0 held-out horizons >= 2 x 1500 steps"):
    tg.check_train_side(tg.distribution_config(config), config.suite)
