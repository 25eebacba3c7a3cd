"""REPS over random small CNNs and data subsets (Daniel, Taylor & Nowozin
2016): the task family (lr_meta.tasks.family), SmallCNN, REPS over the
family through experiment/train_controller (resume == uninterrupted) and the
sensitivity script's loading of a trained controller."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import daniel2016_reps_random_cnns
from lr_meta import experiment
from lr_meta import tasks
from lr_meta.agents import reps as reps_lib
from lr_meta.tasks import family as family_lib
from lr_meta.tasks import models
from script_loader import load_script  # tests/script_loader.py

tc = load_script("train_controller")
sensitivity = load_script("sensitivity")

SMALL = family_lib.TaskFamilyConfig(
    num_members=3, seed=7, subset_size=50,
    filter_ranges=((2, 3), (4, 5), (6, 8)))


def test_family_sampling_is_deterministic_and_valid():
  members = family_lib.sample_family(SMALL, train_size=1000)
  again = family_lib.sample_family(SMALL, train_size=1000)
  assert len(members) == 3
  for m, m2 in zip(members, again):
    assert m.filters == m2.filters
    np.testing.assert_array_equal(m.train_indices, m2.train_indices)
  for m in members:
    for f, (low, high) in zip(m.filters, SMALL.filter_ranges):
      assert low <= f <= high
    idx = m.train_indices
    assert idx.shape == (50,)
    assert np.all(np.diff(idx) > 0)           # sorted, no repeats
    assert idx.min() >= 0 and idx.max() < 1000
  # Distinct members: no two with the same subset.
  subsets = {tuple(m.train_indices) for m in members}
  assert len(subsets) == 3
  # Member i does not depend on how many members are drawn; another seed
  # gives other members.
  more = family_lib.sample_family(dataclasses.replace(SMALL, num_members=5),
                                  train_size=1000)
  for m, m2 in zip(members, more):
    np.testing.assert_array_equal(m.train_indices, m2.train_indices)
    assert m.filters == m2.filters
  other = family_lib.sample_family(dataclasses.replace(SMALL, seed=8),
                                   train_size=1000)
  assert not np.array_equal(other[0].train_indices, members[0].train_indices)


@pytest.mark.parametrize("field,value,match", [
    ("num_members", 0, r"task_family.num_members=0; allowed: an integer >= 1"),
    ("subset_size", -3, r"task_family.subset_size=-3; allowed"),
    ("seed", 1.5, r"task_family.seed=1.5; allowed: an integer >= 0"),
    ("filter_ranges", ((3, 2), (1, 1), (1, 1)),
     r"filter_ranges=.*allowed: three \(low, high\) integer pairs"),
    ("filter_ranges", ((1, 2),), r"filter_ranges=.*allowed: three"),
    ("dataset", "imagenet", r"Unknown dataset 'imagenet'; known datasets"),
])
def test_bad_family_values_are_named(field, value, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(SMALL, **{field: value})


def test_bad_subset_size_and_member_fields_are_named():
  with pytest.raises(ValueError, match=r"subset_size=50; allowed: <= 20"):
    family_lib.sample_family(SMALL, train_size=20)
  member = family_lib.sample_family(SMALL, train_size=1000)[0]
  with pytest.raises(ValueError, match=r"\['model'\] are set by the task"):
    family_lib.make_member_task(SMALL, member, model="mlp")
  with pytest.raises(ValueError, match=r"filters=\(2, 0, 3\); allowed: 3 "
                     "integers >= 1"):
    models.get_model("small_cnn", filters=(2, 0, 3)).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  config = tiny_config(2)
  config.agent = "actor_critic"
  config.env.action_type = "xu2017"
  with pytest.raises(ValueError, match=r"config.task_family with "
                     r"config.agent='actor_critic'; allowed agents: \('reps',\)"):
    experiment.check_config(config)


@pytest.mark.parametrize("shape,last_kernel", [((28, 28, 1), (4, 4)),
                                               ((32, 32, 3), (5, 5))])
def test_small_cnn_is_c_p_c_p_c_r_c(shape, last_kernel):
  model = models.get_model("small_cnn", filters=(2, 3, 4), num_classes=10)
  x = jnp.ones((5,) + shape)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  kernels = {k: v["kernel"].shape for k, v in params.items()}
  assert kernels == {"conv0": (5, 5, shape[2], 2), "conv1": (5, 5, 2, 3),
                     "conv2": last_kernel + (3, 4), "conv3": (1, 1, 4, 10)}
  assert model.apply({"params": params}, x).shape == (5, 10)


def test_member_task_holds_its_subset(data_dir):
  member = family_lib.sample_family(SMALL, train_size=50_000)[1]
  task = family_lib.make_member_task(SMALL, member, data_dir, batch_size=8,
                                     num_val_examples=10,
                                     num_test_examples=10)
  x, y = tasks.load_dataset("fashion_mnist", data_dir).split("train")
  np.testing.assert_array_equal(task.data.x_train, x[member.train_indices])
  np.testing.assert_array_equal(task.data.y_train, y[member.train_indices])
  assert task.data.x_val.shape == (10, 28, 28, 1)
  assert task.model.filters == member.filters
  assert task.model_name == "small_cnn"


def tiny_config(num_iterations):
  config = daniel2016_reps_random_cnns.get_config()
  config.task.update(batch_size=16, num_train_examples=100,
                     num_val_examples=50, num_test_examples=50)
  config.task_family.update(num_members=2, subset_size=40,
                            filter_ranges=((2, 2), (2, 3), (4, 4)))
  config.env.update(num_decisions=2, steps_per_decision=2,
                    initial_lrs=(0.1, 0.01), num_val_examples=50)
  config.reps.update(num_samples=3)
  config.num_iterations = num_iterations
  config.checkpoint_every = 2
  return config


def test_reps_over_family_resumes_bit_identically(resume_check):
  _, env, env_params, strategy = experiment.build(tiny_config(4))
  agent = experiment.make_agent(tiny_config(4), env, env_params, strategy)
  assert agent.num_params == 5       # theta . [phi1, phi2, u1, u2, 1]

  def train(n, workdir):
    return tc.train(tiny_config(n), workdir, agent, log=lambda *a: None,
                    allow_changes=("num_iterations",))
  _, _, b, straight = resume_check(train)
  assert isinstance(straight, reps_lib.TaskFamilyREPSState)
  # The members drawn are the draws from the key in the learner state.
  key = jax.random.split(jax.random.PRNGKey(tiny_config(4).seed))[1]
  expected = []
  for _ in range(4):
    key, member = reps_lib.draw_member(key, 2)
    expected.append(member)
  np.testing.assert_array_equal(straight.member_rng, key)
  with open(os.path.join(b, "metrics.csv")) as f:
    rows = f.read().splitlines()
  column = rows[0].split(",").index("member")
  assert [int(float(r.split(",")[column])) for r in rows[1:]] == expected
  assert all(np.isfinite(np.asarray(straight.dist.mean)))

  # The sensitivity script evaluates that artifact.
  theta, train_config = sensitivity.load_trained_theta(b, "sgd")
  np.testing.assert_array_equal(theta, straight.dist.mean)
  assert train_config["task_family"]["num_members"] == 2
  assert "family of 2 random SmallCNNs" in sensitivity.training_description(
      train_config)
  with pytest.raises(ValueError, match=r"optimizer 'sgd'; allowed for "
                     "--optimizers entry 'rmsprop'"):
    sensitivity.load_trained_theta(b, "rmsprop")
  with pytest.raises(ValueError, match=r"entry 'sgd'; allowed: optimizer=DIR"):
    sensitivity.parse_workdirs(["sgd"])
  with open(os.path.join(b, "config.json")) as f:
    assert json.load(f)["agent"] == "reps"
