"""The NOS update-rule language: parse/format, errors, compiled numbers."""

import math

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo
from lr_meta import nos
from lr_meta.rules import vocabulary as voc

PAPER_RULES = [
    "exp(sign(g) * sign(m)) * g",
    "(1 + sign(g) * sign(m)) * g",
    "m / sqrt(v)",
    "drop(m, 0.3) * exp(1e-3 * w)",
    "sign(m) * sqrt(g)",
    "(1 + sign(g) * sign(m)) * rmsprop",
    "(exp(sign(g) * sign(m)) + clip(g, 1e-4)) * g",
    "clip(m, 1e-4) * exp(v)",
    "drop(m, 0.1) / (exp(g^2) + eps)",
    "clip(rmsprop, 1e-5) + drop(m, 0.3)",
    "adam * exp(m)",
    "g - clip(g^2, 1e-4)",
    "exp(g) - exp(m)",
    "drop(m, 0.1) * exp(g^3)",
    "exp(ld * sign(g) * sign(m)) * g",
    "(1 + cd * sign(g) * sign(m)) * g",
    "(ld + eps_t) * cd + 1",
    "2 ^ (rd * sign(g) * sign(m)) * g",
    "log(gamma) - -(1e-1 * w)",
    "keep(g, m)",
    "g",
    "exp(sqrt(g))",
    "sign((g)) ^ g ^ (2)",
]


def random_tree(seed, shapes=((3, 4), (5,), ())):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
  return {f"p{i}": jax.random.normal(k, s) for i, (k, s) in
          enumerate(zip(keys, shapes))}


def run(opt, steps=100, seed=0):
  """Updates of `opt` over `steps` random gradients (and moving params)."""
  params = random_tree(seed)
  state = opt.init(params)
  update = jax.jit(opt.update)
  out = []
  for t in range(steps):
    grads = random_tree(1000 * seed + t + 1)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out


def assert_same_updates(got, want, rtol=1e-6, atol=0.0):
  for a, b in zip(got, want):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol,
                                                         atol=atol), a, b)


@pytest.mark.parametrize("rule,reference", [
    ("m / sqrt(v)", lambda lr: optax.adam(lr, eps=1e-8)),
    ("exp(sign(g) * sign(m)) * g", lmo.power_sign),
    ("(1 + sign(g) * sign(m)) * g", lmo.add_sign),
    ("rmsprop", lambda lr: optax.chain(
        optax.scale_by_adam(b1=0.0, b2=0.999, eps=1e-8),  # m_hat = g
        optax.scale_by_learning_rate(lr))),
])
def test_from_dsl_equals_reference(rule, reference):
  assert_same_updates(run(lmo.from_dsl(rule, 0.01)), run(reference(0.01)))


def test_decayed_sign_rules_equal_sign_optimizers():
  got = run(lmo.from_dsl("exp(ld * sign(g) * sign(m)) * g", 0.01,
                         decay_steps=50))
  want = run(lmo.power_sign(0.01, sign_decay_fn=lmo.linear_sign_decay(50)))
  assert_same_updates(got, want)
  got = run(lmo.from_dsl("(1 + cd * sign(g) * sign(m)) * g", 0.01,
                         decay_steps=50))
  want = run(lmo.add_sign(0.01, sign_decay_fn=lmo.cosine_sign_decay(50)))
  assert_same_updates(got, want, atol=1e-9)


def test_weight_operand_and_dropout():
  (updates,) = run(lmo.from_dsl("drop(m, 0.5) * exp(1e-3 * w)", 1.0),
                   steps=1)
  params, grads = random_tree(0), random_tree(1)
  # First step: m_hat = g; drop zeroes about half of the elements.
  for name in ("p0", "p1"):
    u, g, w = updates[name], grads[name], params[name]
    kept = u != 0
    assert 0 < kept.sum() < u.size
    np.testing.assert_allclose(u[kept], -(g * jnp.exp(1e-3 * w))[kept],
                               rtol=1e-6)


@pytest.mark.parametrize("rule", PAPER_RULES)
def test_round_trip(rule):
  program = nos.parse(rule)
  text = nos.format_program(program)
  np.testing.assert_array_equal(nos.parse(text), program)
  assert nos.format_program(nos.parse(text)) == text


def test_canonical_spellings():
  assert nos.format_program(nos.parse("m_hat/sqrt_abs(v_hat)")) == (
      "m / sqrt(v)")
  assert nos.format_program(nos.parse("0.001*w * g ** 2")) == (
      "1e-3 * w * g^2")
  assert nos.format_program(nos.parse("id(Adam)")) == "adam"
  np.testing.assert_array_equal(nos.parse("g^2"), [[1, 1, 0, 0, 5]])
  np.testing.assert_array_equal(nos.parse("g ^ (2)"), [[0, 9, 0, 0, 4]])
  np.testing.assert_array_equal(nos.parse("sign(g)"), [[6, 6, 0, 0, 5]])
  np.testing.assert_array_equal(nos.parse("sign((g))"), [[0, 0, 11, 0, 5]])


def test_token_layout():
  # PowerSign: o0 = sign(g) * sign(m); out = exp(o0) * g.
  np.testing.assert_array_equal(
      nos.parse("exp(sign(g) * sign(m)) * g"),
      [[voc.OP["sign(g)"], voc.OP["sign(m)"], 0, 0, voc.BIN["mul"]],
       [nos.NUM_OPERANDS, voc.OP["g"], voc.UN["exp"], 0, voc.BIN["mul"]]])
  assert (nos.NUM_OPERANDS, nos.NUM_UNARY, nos.NUM_BINARY) == (21, 12, 6)


def test_canonicalize_dag_program():
  # o0 = g * m used twice, and a dead group: canonical form inlines / drops.
  program = [[0, 3, 0, 0, 2], [5, 5, 0, 0, 0], [21, 21, 2, 0, 0]]
  assert nos.format_program(program) == "exp(g * m) + g * m"
  canonical = nos.canonicalize(program)
  assert nos.format_program(canonical) == "exp(g * m) + g * m"
  assert len(canonical) == 3


@pytest.mark.parametrize("rule,position,token", [
    ("", 0, "end of rule"),
    ("g +", 3, "end of rule"),
    ("exp(g", 5, "end of rule"),
    ("m / sqrtt(v)", 4, "sqrtt"),
    ("clip(g, 0.2)", 8, "0.2"),
    ("3 * g", 0, "3"),
    ("w * g", 0, "w"),
    ("g $ m", 2, "$"),
    ("g m", 2, "m"),
])
def test_errors_name_position_and_token(rule, position, token):
  with pytest.raises(nos.DSLError) as info:
    nos.parse(rule)
  message = str(info.value)
  assert f"position {position}" in message
  assert repr(token) in message
  assert "expected" in message or "allowed" in message


def test_unknown_name_lists_allowed_names():
  with pytest.raises(nos.DSLError, match="allowed: operands g, g\\^2"):
    nos.parse("q * g")


def test_bad_programs():
  with pytest.raises(nos.DSLError, match=r"group 1, position 0 \(op1\): "
                     r"unexpected token 22; allowed operand ids 0..21"):
    nos.validate_program([[0, 0, 0, 0, 0], [22, 0, 0, 0, 0]])
  with pytest.raises(nos.DSLError, match=r"position 4 \(b\).*keep"):
    nos.validate_program([[0, 0, 0, 0, 6]])
  with pytest.raises(nos.DSLError, match="shape"):
    nos.validate_program([[0, 0, 0]])
  with pytest.raises(nos.DSLError, match="decay_steps"):
    lmo.from_dsl("ld * g", 0.1)


def test_weight_rule_needs_params():
  opt = lmo.from_dsl("1e-2 * w", 0.1)
  params = jnp.ones(3)
  with pytest.raises(nos.DSLError, match="params"):
    opt.update(params, opt.init(params))


def test_state_keeps_only_used_moments():
  state = lmo.from_dsl("exp(sign(g) * sign(m)) * g", 0.1).init(jnp.ones(2))
  rule_state = state[0]
  assert rule_state.m is not None
  assert rule_state.v is None and rule_state.gamma is None


_ALPHABET = "gmvw12e-+*/^(),. _sqrtexplogcdrdadamsign0.1359"
_WORDS = ["g", "m", "v", "w", "sign", "exp", "log", "sqrt", "clip", "drop",
          "keep", "adam", "rmsprop", "ld", "cd", "rd", "eps", "eps_t", "1",
          "2", "1e-3", "0.3", "(", ")", ",", "+", "-", "*", "/", "^", "**",
          " ", "gamma", "g^2", "1e-4 * w"]


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.one_of(
    st.text(alphabet=_ALPHABET, max_size=40),
    st.text(max_size=20),
    st.lists(st.sampled_from(_WORDS), max_size=25).map("".join)))
def test_random_strings_raise_only_dsl_error(rule):
  try:
    program = nos.parse(rule)
  except nos.DSLError:
    return
  # Whatever parses formats back to a rule that parses to the same program.
  np.testing.assert_array_equal(nos.parse(nos.format_program(program)),
                                program)
