"""The NOS rule language refuses bad input with clear errors, never crashes.

One test per fault: long sums and products (RecursionError before), token
programs too large to write out, ``learning_rate=None`` (gradient ascent
before), bad ``decay_steps`` and seeds, rules whose spelling reads two ways;
then a seeded fuzz of a few hundred malformed strings and programs in which
only `DSLError` may escape.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_meta.optax as lmo
from lr_meta import nos
from lr_meta import rules
from lr_meta.rules import interpreter
from lr_meta.rules import vocabulary as voc

LIMIT = voc.MAX_RULE_SIZE


def _sum(n, op="+"):
  return f" {op} ".join(["g"] * n)


@pytest.mark.parametrize("op", ["+", "*", "-", "/"])
def test_long_sums_and_products_raise_dsl_error(op):
  with pytest.raises(nos.DSLError, match=f"at most {LIMIT} operations"):
    nos.parse(_sum(499, op))
  with pytest.raises(nos.DSLError, match=f"at most {LIMIT} operations"):
    lmo.from_dsl(_sum(499, op), 0.1)
  # The longest allowed rule round-trips.
  program = nos.parse(_sum(LIMIT + 1, op))
  assert program.shape == (LIMIT, voc.GROUP_SIZE)
  np.testing.assert_array_equal(nos.parse(nos.format_program(program)),
                                program)


def test_longest_rule_computes_the_sum():
  params = jnp.arange(3.0)
  opt = lmo.from_dsl(_sum(LIMIT + 1), 1.0)
  updates, _ = opt.update(params + 1.0, opt.init(params))
  np.testing.assert_allclose(updates, -(LIMIT + 1) * (params + 1.0))


def test_oversized_token_programs_raise_dsl_error():
  with pytest.raises(nos.DSLError, match=f"allowed: at most {LIMIT}"):
    nos.validate_program(np.zeros((LIMIT + 1, 5), np.int32))
  # Each group adds its predecessor's output to itself: 30 groups stand for
  # an expression of 2**30 - 1 additions; formatting it must refuse, fast.
  doubling = [[voc.OP["g"], voc.OP["m"], 0, 0, voc.BIN["add"]]] + [
      [voc.NUM_OPERANDS + i, voc.NUM_OPERANDS + i, 0, 0, voc.BIN["add"]]
      for i in range(29)]
  with pytest.raises(nos.DSLError, match="operations; allowed: at most"):
    nos.format_program(doubling)
  with pytest.raises(nos.DSLError, match="operations; allowed: at most"):
    nos.canonicalize(doubling)


def test_hand_built_trees_too_deep_raise_dsl_error():
  tree = rules.syntax.Operand(voc.OP["g"])
  for _ in range(5000):
    tree = rules.syntax.Unary(voc.UN["exp"], tree)
  with pytest.raises(nos.DSLError, match="at most"):
    rules.programs.compile_expression(tree)
  with pytest.raises(nos.DSLError, match="at most"):
    rules.syntax.format_expression(tree)


def test_learning_rate_none_is_refused():
  """optax reads None as "no scaling": +out, i.e. gradient ASCENT."""
  for bad in (None, "0.1", True, [0.1]):
    with pytest.raises(ValueError, match="learning_rate="):
      lmo.from_dsl("g", bad)
  # Numbers, arrays and schedules stay accepted; the step descends.
  params = jnp.ones(2)
  for lr in (0.5, np.float32(0.5), jnp.asarray(0.5),
             optax.constant_schedule(0.5)):
    opt = lmo.from_dsl("g", lr)
    updates, _ = opt.update(params, opt.init(params))
    np.testing.assert_allclose(updates, [-0.5, -0.5])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2.5, 0, -3,
                                 0.5, "100", True, None])
def test_bad_decay_steps_raise_value_error(bad):
  if bad is None:  # needed by ld / cd / rd
    with pytest.raises(nos.DSLError, match="decay_steps"):
      lmo.from_dsl("ld * g", 0.1)
    return
  with pytest.raises(ValueError, match=f"decay_steps={bad!r}; allowed"):
    lmo.from_dsl("ld * g", 0.1, decay_steps=bad)
  with pytest.raises(ValueError, match="decay_steps"):
    lmo.from_dsl("g", 0.1, decay_steps=bad)   # unused, still wrong
  with pytest.raises(ValueError, match="decay_steps"):
    interpreter.scale_by_program(nos.parse("ld * g"), bad)
  with pytest.raises(ValueError, match="decay_steps"):
    lmo.linear_sign_decay(bad)


def test_whole_decay_steps_are_accepted_also_as_float_and_traced():
  params = jnp.ones(2)
  for steps in (10, 10.0, np.int64(10), jnp.float32(10.0)):
    opt = lmo.from_dsl("ld * g", 1.0, decay_steps=steps)
    updates, _ = opt.update(params, opt.init(params))
    np.testing.assert_allclose(updates, [-1.0, -1.0])   # ld(0) = 1
  opt = optax.inject_hyperparams(lmo.from_dsl, static_args=("rule",))(
      rule="ld * g", learning_rate=1.0, decay_steps=4.0)
  state = opt.init(params)
  for _ in range(2):
    updates, state = jax.jit(opt.update)(params, state)
  np.testing.assert_allclose(updates, [-0.75, -0.75])   # ld(1) = 3/4


@pytest.mark.parametrize("bad", [-1, 2 ** 32, 2 ** 70, 1.5, True, "0", None,
                                 np.int64(-2)])
def test_out_of_range_seeds_raise_value_error(bad):
  # PRNGKey(-1) == PRNGKey(2**32 - 1) and PRNGKey(2**32) == PRNGKey(0):
  # such seeds would alias other seeds without a word.
  with pytest.raises(ValueError, match=r"seed=.*allowed: an integer in "
                     r"\[0, 2\*\*32\)"):
    lmo.from_dsl("drop(g, 0.5)", 0.1, seed=bad)
  with pytest.raises(ValueError, match="seed="):
    interpreter.scale_by_program(nos.parse("g"), 10, seed=bad)


def test_seed_range_ends_are_accepted_and_differ():
  params = jnp.ones(64)
  draws = []
  for seed in (0, np.uint32(2 ** 32 - 1), jnp.int32(7)):
    opt = lmo.from_dsl("drop(g, 0.5)", 1.0, seed=seed)
    updates, _ = opt.update(params, opt.init(params))
    draws.append(np.asarray(updates))
  assert not np.array_equal(draws[0], draws[1])


@pytest.mark.parametrize("rule,canonical", [
    ("g / 1e-3 * w", "g / (1e-3 * w)"),
    ("g / 0.01*w", "g / (1e-2 * w)"),
    ("m ^ 1e-1 * w", "m ^ (1e-1 * w)"),
    ("g ** 1e-4 * w", "g ^ (1e-4 * w)"),
    ("1e-3 * w ^ 2", "(1e-3 * w) ^ 2"),
    ("g / -1e-3 * w", "g / -(1e-3 * w)"),
    ("exp(g / 1e-2 * w) + m", "exp(g / (1e-2 * w)) + m"),
])
def test_ambiguous_spelling_is_refused_with_the_canonical_one(rule,
                                                             canonical):
  with pytest.raises(nos.DSLError) as info:
    nos.parse(rule)
  assert repr(canonical) in str(info.value)
  assert "usual precedence" in str(info.value)
  # The canonical spelling parses and writes back as itself.
  assert nos.format_program(nos.parse(canonical)) == canonical


def test_unambiguous_w_spellings_keep_their_meaning():
  params, grads = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.5])
  for rule in ("g * 1e-3 * w", "1e-3 * w * g", "g / (1e-3 * w)",
               "-1e-3 * w + g", "g - 1e-3 * w"):
    nos.parse(rule)
  opt = lmo.from_dsl("g / (1e-3 * w)", 1.0)
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_allclose(updates, -grads / (1e-3 * params + 1e-8),
                             rtol=1e-6)
  opt = lmo.from_dsl("g * 1e-3 * w", 1.0)
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_allclose(updates, -grads * 1e-3 * params, rtol=1e-6)


# ---------------------------------------------------------------------------
# Fuzz: a fixed seed, a few hundred inputs of each family.
# ---------------------------------------------------------------------------

_TOKENS = (
    [tok.name for tok in voc.OPERANDS]
    + [alias for tok in voc.OPERANDS for alias in tok.aliases]
    + ["exp", "log", "sqrt", "sign", "neg", "id", "clip", "drop", "keep", "w",
       "log_abs", "sqrt_abs", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "0.1",
       "0.3", "0.5", "3", "0", ".5", "1e", "1e+", "(", ")", ",", "+", "-", "*",
       "/", "^", "**", " ", "\t", "\n", "g^", "^2", "$", "@", "[", "]"])
_UNICODE = ("\u0663\u00b2\u2212\u00d7\u00f7\u221a\uff47\uff08\u00a0\u200b"
            "\u202e\u0301\u03b3\u1d50\U0001f600\x00\x7f\ud800\u2028\u3000")


def _paper_rules():
  return ["exp(sign(g) * sign(m)) * g", "(1 + sign(g) * sign(m)) * g",
          "drop(m, 0.3) * exp(1e-3 * w)", "clip(rmsprop, 1e-5) + drop(m, 0.3)",
          "log(gamma) - -(1e-1 * w)", "keep(g, m)", "sign((g)) ^ g ^ (2)",
          "(ld + eps_t) * cd + 1", "2 ^ (rd * sign(g) * sign(m)) * g"]


def _fuzz_strings(rng):
  out = []
  for _ in range(150):   # random token soups
    n = int(rng.integers(1, 40))
    out.append("".join(rng.choice(_TOKENS, n)))
  for rule in _paper_rules():   # truncations and single-character damage
    for cut in range(len(rule)):
      out.append(rule[:cut])
    for _ in range(5):
      i = int(rng.integers(len(rule)))
      out.append(rule[:i] + rule[i + 1:])
      out.append(rule[:i] + str(rng.choice(list("()*^,-+/ 0"))) + rule[i:])
  for n in (63, 64, 65, 100, 1000, 5000):   # deep nesting
    out += ["(" * n + "g" + ")" * n, "exp(" * n + "g" + ")" * n,
            "-" * n + "g", "sign(" * n + "m" + ")" * n, "(" * n + "g",
            "keep(" * n + "g" + ", m)" * n, "g" + " ^ g" * n,
            "clip(" * n + "g" + ", 1e-4)" * n]
  for number in ("1e999", "9" * 400, "1" + "0" * 5000, "1e-400", "0." +
                 "0" * 500 + "1", "1e-3" + "0" * 300, "2e999999999",
                 "1.0000000000000000000001", "0x10", "1_000", "1e-3e-3"):
    out += [number, f"{number} * g", f"{number} * w", f"clip(g, {number})",
            f"drop(m, {number})", f"g ^ {number}"]
  for _ in range(60):   # unicode
    chars = rng.choice(list(_UNICODE + "gm()*+"), int(rng.integers(1, 12)))
    out.append("".join(chars))
  for n in (65, 66, 200, 499, 3000):   # very long sums and products
    ops = rng.choice(["+", "-", "*", "/", "^"], n - 1)
    out.append("g" + "".join(f" {op} m" for op in ops))
    out += [_sum(n), _sum(n, "*")]
  out += ["g" * 20_000, " " * 20_000 + "g", "g + " * 3000 + "g"]
  return out


def _fuzz_programs(rng):
  out = [None, 3, "g", b"g", 1.5, [], [[]], [[0, 0, 0, 0]], [[0, 0, 0, 0, 0],
         [0, 0, 0]], [[2 ** 70, 0, 0, 0, 0]], [[0.0, 0.0, 0.0, 0.0, 0.0]],
         [[True, False, True, False, True]], np.zeros((0, 5), np.int32),
         np.zeros((voc.MAX_RULE_SIZE + 1, 5), np.int64), np.zeros((1, 5, 1)),
         np.array([["g", "m", "id", "id", "add"]]), {"op1": 0}]
  for _ in range(200):
    groups = int(rng.integers(1, 70))
    high = int(rng.choice([5, voc.NUM_OPERANDS + groups, 2 ** 31 - 1]))
    program = rng.integers(-2, high, (groups, 5))
    out.append(program.astype(rng.choice([np.int8, np.int32, np.int64,
                                          np.uint16])))
  return out


def test_fuzz_only_dsl_error_escapes():
  rng = np.random.default_rng(20_250)
  strings = _fuzz_strings(rng)
  programs = _fuzz_programs(rng)
  assert len(strings) + len(programs) > 600
  parsed = 0
  for rule in strings + programs:
    try:
      program = nos.to_program(rule)
      text = nos.format_program(program)
      lmo.from_dsl(rule, 0.1, decay_steps=10)
    except nos.DSLError:
      continue
    except Exception as e:  # pylint: disable=broad-except
      pytest.fail(f"{type(e).__name__} escaped for {rule!r:.200}: {e!s:.300}")
    parsed += 1
    # Whatever is accepted writes back to a rule that reads the same.
    np.testing.assert_array_equal(nos.parse(text), nos.canonicalize(program))
  assert parsed > 20   # the fuzz also reaches valid rules
