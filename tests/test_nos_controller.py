"""NOS controller: masks and constraints, log-probs, search-space size, PPO."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import nos
from lr_meta.nos import controller as C
from lr_meta.nos import search as S
from lr_meta.rules import vocabulary as voc

NUM_OPS = nos.NUM_OPERANDS


@pytest.fixture(scope="module")
def space3():
  return C.make_search_space(
      3, operands=("g", "m", "sign(g)", "1", "adam"),
      unary=("id", "neg", "exp", "sign"), binary=("add", "sub", "mul", "div"))


def test_samples_respect_every_mask_and_constraint(space3):
  params = C.init_params(space3, jax.random.PRNGKey(0))
  sample = jax.jit(lambda p, k: C.sample(p, space3, k, 3000))(
      params, jax.random.PRNGKey(1))
  programs = np.asarray(sample.programs)
  assert programs.shape == (3000, 3, 5)
  base_ops = {voc.OP[n] for n in ("g", "m", "sign(g)", "1", "adam")}
  unary = {voc.UN[n] for n in ("id", "neg", "exp", "sign")}
  binary = {voc.BIN[n] for n in ("add", "sub", "mul", "div")}
  for program in programs:
    nos.validate_program(program)
    for i, (a1, a2, u1, u2, b) in enumerate(program):
      allowed = base_ops | set(range(NUM_OPS, NUM_OPS + i))
      assert a1 in allowed and a2 in allowed
      assert a1 != a2                                  # distinct operands
      if i > 0:                                        # reuse previous output
        assert NUM_OPS + i - 1 in (a1, a2)
      assert u1 in unary and u2 in unary and b in binary
    assert program[-1, 4] != voc.BIN["add"]            # last not addition
  # The masks are what enforces this: without constraints they get violated.
  free = C.make_search_space(
      3, operands=("g", "m", "sign(g)", "1", "adam"),
      unary=("id", "neg", "exp", "sign"), binary=("add", "sub", "mul", "div"),
      distinct_operands=False, no_final_add=False, reuse_previous=False)
  loose = np.asarray(C.sample(C.init_params(free, jax.random.PRNGKey(0)),
                              free, jax.random.PRNGKey(1), 3000).programs)
  assert np.any(loose[:, :, 0] == loose[:, :, 1])
  assert np.any(loose[:, -1, 4] == voc.BIN["add"])
  assert np.any((loose[:, 1, 0] != NUM_OPS) & (loose[:, 1, 1] != NUM_OPS))
  # every allowed token shows up somewhere (no over-masking)
  assert set(programs[:, 0, :2].ravel()) == base_ops
  assert set(programs[:, :, 2:4].ravel()) == unary
  assert set(programs[:, -1, 4]) == binary - {voc.BIN["add"]}


def _tiny_space():
  return C.make_search_space(2, operands=("g", "m", "v"), unary=("id", "neg"),
                             binary=("add", "mul"))


def test_search_space_size_by_hand_and_enumeration():
  space = _tiny_space()
  # group 0: 3*2 ordered distinct pairs x 2 x 2 unaries x 2 binaries = 48;
  # group 1: op1 = o0 with op2 in {g, m, v} or op1 in {g, m, v} with op2 = o0
  # (6 pairs) x 2 x 2 x {mul} = 24.  48 * 24 = 1152.
  assert C.search_space_size(space) == 1152
  assert C.search_space_size(C.make_search_space(2)) == (
      21 * 20 * 12 * 12 * 6) * (42 * 12 * 12 * 5)   # 1.1e10 (paper: 1e6..1e11)
  # Enumerate every token program: exactly the valid ones have probability > 0
  # and their probabilities sum to 1.
  params = C.init_params(space, jax.random.PRNGKey(3))
  ops, un, bi = range(NUM_OPS + 1), (0, 1), (0, 2)
  g0 = [(a, b, u, v, w) for a in (0, 3, 4) for b in (0, 3, 4)
        for u in un for v in un for w in bi]
  g1 = [(a, b, u, v, w) for a in (0, 3, 4, NUM_OPS) for b in (0, 3, 4, NUM_OPS)
        for u in un for v in un for w in bi]
  programs = np.array([[x, y] for x, y in itertools.product(g0, g1)], np.int32)
  lp = np.asarray(jax.jit(lambda p, x: C.log_prob(p, space, x).log_prob)(
      params, programs))
  assert np.sum(np.isfinite(lp)) == 1152
  np.testing.assert_allclose(np.sum(np.exp(lp[np.isfinite(lp)])), 1.0,
                             rtol=1e-4)


def test_log_prob_matches_recomputation_and_sampling_frequencies():
  space = C.make_search_space(1, operands=("g", "m", "v"), unary=("id", "neg"),
                              binary=("sub", "mul"))
  params = C.init_params(space, jax.random.PRNGKey(0))
  # sharper than the U(-0.08, 0.08) init so the distribution is not uniform
  params = jax.tree.map(lambda x: 3 * x, params)
  n = 20000
  sample = jax.jit(lambda p, k: C.sample(p, space, k, n))(
      params, jax.random.PRNGKey(7))
  again = C.log_prob(params, space, sample.programs)
  np.testing.assert_allclose(again.log_prob, sample.log_prob, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(again.entropy, sample.entropy, rtol=1e-5)
  # empirical frequencies vs exp(log_prob): 6 pairs x 4 x 2 = 48 programs
  flat = np.asarray(sample.programs).reshape(n, -1)
  uniq, idx, counts = np.unique(flat, axis=0, return_index=True,
                                return_counts=True)
  assert len(uniq) == 48
  prob = np.exp(np.asarray(sample.log_prob)[idx])
  np.testing.assert_allclose(prob.sum(), 1.0, rtol=1e-4)
  # binomial std of each frequency; 5 sigma
  assert np.all(np.abs(counts / n - prob) < 5 * np.sqrt(prob / n) + 1e-3)
  # chain rule: E over samples of the summed per-position entropies is the
  # entropy of the whole-program distribution (Monte Carlo, so 5 %).
  exact = -np.sum(prob * np.log(prob))
  assert abs(float(np.mean(sample.entropy)) - exact) < 0.05 * exact


def test_init_uniform_in_range():
  params = C.init_params(_tiny_space(), jax.random.PRNGKey(0))
  leaves = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
  assert np.all(np.abs(leaves) <= 0.08) and np.max(np.abs(leaves)) > 0.079
  lstm = params["params"]["OptimizedLSTMCell_0"]
  assert lstm["hi"]["kernel"].shape == (150, 150)


def test_config_errors_name_the_bad_value():
  with pytest.raises(ValueError, match="unknown operand 'grad'.*allowed: g, "):
    C.make_search_space(2, operands=("g", "grad"))
  with pytest.raises(ValueError, match="unknown unary function 'tanh'"):
    C.make_search_space(2, unary=("tanh",))
  with pytest.raises(ValueError, match="num_groups=5; allowed: 1 .. 4"):
    C.make_search_space(5)
  with pytest.raises(ValueError, match="no valid program"):
    C.make_search_space(1, binary=("add",))
  with pytest.raises(ValueError, match="shape"):
    C.log_prob(C.init_params(_tiny_space(), jax.random.PRNGKey(0)),
               _tiny_space(), np.zeros((2, 3, 5), np.int32))


def test_ppo_update_raises_probability_of_rewarded_program():
  space = _tiny_space()
  params = C.init_params(space, jax.random.PRNGKey(0))
  sample = C.sample(params, space, jax.random.PRNGKey(1), 8)
  rewards = jnp.zeros(8).at[3].set(1.0)
  advantages = rewards - jnp.mean(rewards)
  ppo = S.RuleSearchPPOConfig(learning_rate=1e-3, num_epochs=4)
  opt_state = S.controller_optimizer(ppo).init(params)
  new, _, surrogate, _ = jax.jit(lambda p, o: S.ppo_update(
      p, o, space, ppo, sample.programs, sample.log_prob, advantages))(
          params, opt_state)
  before = sample.log_prob
  after = C.log_prob(new, space, sample.programs).log_prob
  assert after[3] > before[3] + 0.05
  # programs sharing tokens with it may rise too, but less
  assert int(np.argmax(np.asarray(after - before))) == 3
  # the clipped surrogate at the old params is -mean(adv) = 0
  np.testing.assert_allclose(surrogate, -jnp.mean(advantages), atol=1e-6)


def test_ema_baseline():
  b = S.ema_baseline(jnp.float32(0.0), 0, jnp.array([0.2, 0.4]), 0.9)
  np.testing.assert_allclose(b, 0.3, rtol=1e-6)
  b = S.ema_baseline(b, 1, jnp.array([1.0, 1.0]), 0.9)
  np.testing.assert_allclose(b, 0.9 * 0.3 + 0.1 * 1.0, rtol=1e-6)
