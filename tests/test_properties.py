"""Property-based tests (hypothesis) of the inputs users type or hand over.

* Rule strings of the NOS update-rule language (``lr_meta.optax.from_dsl``):
  only ``DSLError`` escapes, for character soup from the language's
  alphabet and for grammar-shaped rules built from the real vocabulary.
  The library does not refuse rules that may overflow: the language says
  ``exp``, ``log``, ``x ^ y`` and ``x / y`` can give inf or NaN
  (``lr_meta.rules.compiler``) and ``lr_meta.rules.interpreter.all_finite``
  flags it (the optimizer search scores such a run as diverged). So every
  accepted rule runs two steps on a fixed finite gradient without raising;
  a rule without those four operations gives finite updates; any other
  gives finite updates or is flagged by ``all_finite``.
* Config overrides (``--config.<field>=<value>`` as
  ``scripts/train_controller.py`` applies them: ``lr_meta.config.
  parse_flags``, then ``lr_meta.experiment.build`` and ``make_agent``): a
  wrong type or an out-of-range value of a real field of
  ``configs/quickstart.py`` is an error naming the field.
* Data files: any truncation or byte flip of a small valid Fashion-MNIST
  ``.npz`` (stored and compressed) or ``tiny_shakespeare.txt`` is a
  ``DataFormatError`` naming the file, or (a flip numpy or the text check
  cannot see, e.g. inside compressed pixels or one letter for another) a
  successful load of well-formed arrays; never another exception.
* Controller files: any truncation or byte flip of a shipped controller is
  a ``ValueError`` naming the file, or (a flip outside the checksummed spec
  and params, e.g. in the recorded lr_meta version) a valid controller.
"""

import io
import os
import shutil
import string
import sys
import tempfile

from absl import flags
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import nos
from lr_meta import optax as lmo
from lr_meta import tasks
from lr_meta.rules import interpreter
from lr_meta.rules import vocabulary as voc
from lr_meta.policies import controller as controller_lib
from lr_meta.tasks import datasets

# Each property's examples (counted: the rule tests cover thousands).
SOUP_EXAMPLES = 2000
GRAMMAR_EXAMPLES = 1000


def _examples(n):
  return settings(max_examples=n, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.function_scoped_fixture])


def _cases(strategy, n):
  """The list of what ``check(example)`` returned for ``n`` examples of
  ``strategy`` (a test asserts on the whole run)."""
  def run(check):
    seen = []

    @_examples(n)
    @given(strategy)
    def each(example):
      seen.append(check(example))

    each()
    return seen
  return run


# -- 1. Rule strings -----------------------------------------------------------

PARAMS = jnp.array([0.5, -1.0, 2.0, 0.0], jnp.float32)
GRADS = jnp.array([0.1, -0.3, 0.0, 1e-3], jnp.float32)

# Spellings from the vocabulary: every operand (and alias), every function
# and operator; the arguments of clip and drop as the tables state them.
OPERANDS = [s for tok in voc.OPERANDS for s in (tok.name,) + tok.aliases]
CALLS = [f"{n}({{}})" for tok in voc.UNARY
         for n in (tok.name,) + tok.aliases if "_" not in n or "abs" in n]
CALLS += [f"clip({{}}, {b:g})" for b in voc.CLIP_BOUNDS.values()]
CALLS += [f"drop({{}}, {p:g})" for p in voc.DROP_RATES.values()]
INFIX = [a for tok in voc.BINARY for a in tok.aliases]
ALPHABET = "".join(sorted(set("".join(OPERANDS + INFIX + ["keep"])
                              + "".join(c.format("") for c in CALLS)
                              + string.digits + ".eE+-*/^(), _")))
# What may give inf or NaN on finite inputs (``lr_meta.rules.compiler``).
PARTIAL_UNARY = {voc.UN["exp"], voc.UN["log"]}
PARTIAL_BINARY = {voc.BIN["div"], voc.BIN["pow"]}


def _grammar_rules():
  def extend(inner):
    return st.one_of(
        st.builds(lambda f, x: f.format(x), st.sampled_from(CALLS), inner),
        st.builds(lambda x, y: f"keep({x}, {y})", inner, inner),
        st.builds(lambda x, op, y, paren: (f"({x} {op} {y})" if paren
                                           else f"{x} {op} {y}"),
                  inner, st.sampled_from(INFIX), inner, st.booleans()),
        st.builds(lambda x: f"-{x}", inner))
  return st.recursive(st.sampled_from(OPERANDS), extend, max_leaves=24)


def _apply_rule(rule) -> bool:
  """False if refused (DSLError); else checks two steps, returns True."""
  try:
    opt = lmo.from_dsl(rule, learning_rate=0.1, decay_steps=10)
  except lmo.DSLError:
    return False
  program = nos.parse(rule)
  state = opt.init(PARAMS)
  for _ in range(2):
    updates, state = opt.update(GRADS, state, PARAMS)
  assert updates.shape == PARAMS.shape and updates.dtype == jnp.float32
  finite = bool(np.all(np.isfinite(np.asarray(updates))))
  assert bool(interpreter.all_finite(updates)) == finite, rule
  partial = (set(program[:, 2:4].ravel().tolist()) & PARTIAL_UNARY
             or set(program[:, 4].tolist()) & PARTIAL_BINARY)
  assert finite or partial, f"{rule!r}: non-finite updates {updates}"
  return True


def test_rule_soup_raises_only_dsl_error():
  accepted = _cases(st.text(alphabet=ALPHABET, max_size=60),
                    SOUP_EXAMPLES)(_apply_rule)
  assert len(accepted) == SOUP_EXAMPLES and any(accepted)


def test_grammar_shaped_rules_run_finite_or_flagged():
  accepted = _cases(_grammar_rules(), GRAMMAR_EXAMPLES)(_apply_rule)
  assert len(accepted) == GRAMMAR_EXAMPLES
  assert sum(accepted) > GRAMMAR_EXAMPLES // 2   # mostly valid rules
  assert not all(accepted)                       # and some refused


# -- 2. Config overrides ---------------------------------------------------------

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "quickstart.py")
# Real fields of configs/quickstart.py by the values they allow.
INTEGERS = ("num_iterations", "checkpoint_every", "eval.num_seeds",
            "task.batch_size", "env.num_decisions", "env.steps_per_decision",
            "ppo.num_envs", "ppo.num_epochs", "ppo.hidden_size")  # >= 1
UNIT = ("ppo.gamma", "ppo.gae_lambda", "ppo.clip_epsilon", "env.ema_decay")
POSITIVE = ("ppo.actor_lr", "ppo.critic_lr", "ppo.max_grad_norm",
            "ppo.action_std")
POSITIVE_TUPLES = ("env.initial_lrs",)


def _not_a(parse):
  def fails(text):
    try:
      parse(text)
    except ValueError:
      return True
    return False
  return fails


# Not numbers (absl reads ints as Python does, also '0x10' and '1_0').
_WORDS = st.one_of(st.sampled_from(["abc", "", "none", "(1,)", "[2]", "two",
                                    "1e", "--", "1.5.2", "0.1.", "1,5"]),
                   st.text(alphabet=string.ascii_letters + "_-()", min_size=1,
                           max_size=8))
_NON_FINITE = st.sampled_from(["nan", "inf", "-inf"])


def _bad_overrides():
  """``(field, value)``: a wrong type or an out-of-range value."""
  integers = st.tuples(st.sampled_from(INTEGERS), st.one_of(
      _WORDS.filter(_not_a(int)),
      st.floats(allow_nan=False, allow_infinity=False).filter(
          lambda x: x != int(x)).map(repr),
      st.integers(max_value=0).map(str)))
  unit = st.tuples(st.sampled_from(UNIT), st.one_of(
      _WORDS.filter(_not_a(float)), _NON_FINITE,
      st.floats(min_value=1.0, exclude_min=True).map(repr),
      st.floats(max_value=0.0, exclude_max=True).map(repr)))
  positive = st.tuples(st.sampled_from(POSITIVE), st.one_of(
      _WORDS.filter(_not_a(float)), _NON_FINITE,
      st.floats(max_value=0.0).map(repr)))
  tuples = st.tuples(st.sampled_from(POSITIVE_TUPLES), st.one_of(
      st.sampled_from(["(abc,)", "(0.1, 'x')", "(True,)", "(0.1, inf)",
                       "((0.1,),)", "('0.1',)", "()", "(None,)"]),
      st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1,
               max_size=3).filter(lambda v: min(v) <= 0).map(
                   lambda v: repr(tuple(v)))))
  return st.one_of(integers, unit, positive, tuples)


def _as_the_script(argv):
  """What ``scripts/train_controller.py`` does with ``argv`` before training:
  parse the flags (``config_lib.parse_flags``), build the task, environment
  and agent. Returns the error message (None: accepted)."""
  fv = flags.FlagValues()
  config_lib.DEFINE_config_file("config", None, flag_values=fv,
                                sys_argv=argv)
  stderr, sys.stderr = sys.stderr, io.StringIO()
  try:
    config_lib.parse_flags(argv, flag_values=fv)
  except SystemExit:
    return sys.stderr.getvalue()
  finally:
    stderr, sys.stderr = sys.stderr, stderr
  config = fv["config"].value
  try:
    _, env, env_params, strategy = experiment.build(config)
    experiment.make_agent(config, env, env_params, strategy)
  except ValueError as e:
    return str(e)
  return None


# ml_collections loads config files with a deprecated importlib call.
@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_bad_config_overrides_name_the_field():
  assert _as_the_script(["train_controller.py", "--config", QUICKSTART]) is None

  def check(case):
    field, value = case
    message = _as_the_script(["train_controller.py", "--config", QUICKSTART,
                              f"--config.{field}={value}"])
    assert message is not None, f"--config.{field}={value} was accepted"
    assert field.split(".")[-1] in message, (field, value, message)
  _cases(_bad_overrides(), 300)(check)


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_tuple_override_of_another_type_is_one_line(capsys):
  argv = ["train_controller.py", "--config", QUICKSTART,
          "--config.env.initial_lrs=(0.1,abc)"]
  fv = flags.FlagValues()
  config_lib.DEFINE_config_file("config", None, flag_values=fv,
                                sys_argv=argv)
  with pytest.raises(SystemExit):
    config_lib.parse_flags(argv, flag_values=fv)
  assert capsys.readouterr().err.splitlines()[0] == (
      "FATAL Flags parsing error: --config.env.initial_lrs=(0.1,abc): "
      "config.env.initial_lrs is a tuple of numbers (as (0.1, 0.03)); got "
      "('(0.1,abc)',).")


# -- 3. Data files -----------------------------------------------------------------


def _damage(good: bytes):
  """A strategy of truncations and single-byte flips of ``good``."""
  cut = st.integers(0, len(good) - 1).map(lambda n: good[:n])
  flip = st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
      lambda f: good[:f[0]] + bytes([good[f[0]] ^ f[1]]) + good[f[0] + 1:])
  return st.one_of(cut, flip)


def _load_or_error(tmp_path, file_name, name, data):
  """``_load_cached`` of ``data`` as ``file_name`` in a fresh directory
  (results are cached per directory): the Dataset, or the DataFormatError
  checked to name the file."""
  directory = tempfile.mkdtemp(dir=tmp_path)
  path = os.path.join(directory, file_name)
  with open(path, "wb") as f:
    f.write(data)
  try:
    return datasets._load_cached(name, directory, 0)
  except tasks.DataFormatError as e:
    assert path in str(e), str(e)
    return None
  finally:
    shutil.rmtree(directory)


def _npz_bytes(save):
  rng = np.random.default_rng(0)
  buffer = io.BytesIO()
  save(buffer,
       x_train=rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
       y_train=np.arange(8, dtype=np.uint8) % 10,
       x_test=rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8),
       y_test=np.arange(4, dtype=np.uint8) % 10)
  return buffer.getvalue()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_damaged_npz_is_a_data_format_error_or_well_formed(tmp_path,
                                                           monkeypatch, save):
  monkeypatch.setitem(datasets.SPECS, "fashion_mnist",
                      datasets.DatasetSpec(6, 2, 10, (28, 28, 1)))
  good = _npz_bytes(save)
  assert _load_or_error(tmp_path, "fashion_mnist.npz", "fashion_mnist",
                        good) is not None

  def check(data):
    ds = _load_or_error(tmp_path, "fashion_mnist.npz", "fashion_mnist", data)
    if ds is None:
      return False
    for x, n in ((ds.x_train, 6), (ds.x_val, 2), (ds.x_test, 4)):
      assert x.shape == (n, 28, 28, 1) and x.dtype == np.float32
      assert 0.0 <= x.min() and x.max() <= 1.0
    for y, n in ((ds.y_train, 6), (ds.y_val, 2), (ds.y_test, 4)):
      assert y.shape == (n,) and y.dtype == np.int32
      assert 0 <= y.min() and y.max() < 10
    return True
  loaded = _cases(_damage(good), 400)(check)
  assert not all(loaded)


def _set_byte(data: bytes, at: int, value: int) -> bytes:
  return data[:at] + bytes([value]) + data[at + 1:]


def _central(data: bytes, offset: int) -> int:
  """Where a field of the first member's zip central directory entry is."""
  return data.index(b"PK\x01\x02") + offset


# Faults the property found (each escaped as a raw exception before the fix
# in ``datasets._load_npz``): (damage, the exception now named in the error).
NPZ_FAULTS = {
    "encrypted_flag": (lambda d: _set_byte(d, _central(d, 8), d[
        _central(d, 8)] | 1), "RuntimeError"),
    "compression_method": (lambda d: _set_byte(d, _central(d, 10), 99),
                           "NotImplementedError"),
    "zip_version": (lambda d: _set_byte(d, _central(d, 6), 200),
                    "NotImplementedError"),
    "npy_header_unclosed": (lambda d: _set_byte(d, d.index(
        b")", d.index(b"'shape': (")), ord("(")), "TokenError"),
    "npy_header_syntax": (lambda d: _set_byte(d, d.index(b"|u1"), ord(",")),
                          "SyntaxError"),
}


@pytest.mark.parametrize("fault", sorted(NPZ_FAULTS))
def test_npz_faults_found_by_the_property(tmp_path, monkeypatch, fault):
  monkeypatch.setitem(datasets.SPECS, "fashion_mnist",
                      datasets.DatasetSpec(6, 2, 10, (28, 28, 1)))
  damage, raised = NPZ_FAULTS[fault]
  path = tmp_path / "fashion_mnist.npz"
  path.write_bytes(damage(_npz_bytes(np.savez)))   # stored: headers in clear
  with pytest.raises(tasks.DataFormatError, match=rf"\({raised}: ") as e:
    datasets._load_cached("fashion_mnist", str(tmp_path), 0)
  assert str(e.value).startswith(f"{path}: ")


TEXT_VOCABULARY = "abcdefghij ,.;ABC\n!?"


def test_damaged_text_is_a_data_format_error_or_well_formed(tmp_path,
                                                            monkeypatch):
  rng = np.random.default_rng(0)
  text = TEXT_VOCABULARY + "".join(rng.choice(list(TEXT_VOCABULARY), 380))
  monkeypatch.setitem(datasets.SPECS, "tiny_shakespeare", datasets.DatasetSpec(
      300, 50, len(TEXT_VOCABULARY), (), features="tokens", num_test=50))
  good = text.encode()
  file_name = datasets.local_file_name("tiny_shakespeare")
  assert _load_or_error(tmp_path, file_name, "tiny_shakespeare",
                        good) is not None

  def check(data):
    ds = _load_or_error(tmp_path, file_name, "tiny_shakespeare", data)
    if ds is None:
      return False
    assert len(ds.vocabulary) == ds.num_classes == len(TEXT_VOCABULARY)
    for (x, y), n in zip((ds.split(s) for s in datasets.SPLITS),
                         (300, 50, 50)):
      assert x.shape == y.shape == (n - 1,) and x.dtype == np.int32
      assert 0 <= min(x.min(), y.min()) and max(x.max(), y.max()) < 20
      np.testing.assert_array_equal(x[1:], y[:-1])
    return True
  loaded = _cases(_damage(good), 400)(check)
  assert not all(loaded)


# -- 4. Controller files -------------------------------------------------------------


def test_damaged_controller_file_is_a_clear_error_or_valid(tmp_path):
  good_path = os.path.join(controller_lib.PRETRAINED_DIR, "generalist.msgpack")
  with open(good_path, "rb") as f:
    good = f.read()
  path = str(tmp_path / "generalist.msgpack")
  name = lmo.load_controller(good_path).spec.name

  def check(data):
    with open(path, "wb") as f:
      f.write(data)
    try:
      controller = lmo.load_controller(path)
    except ValueError as e:
      assert type(e) is ValueError, f"{type(e).__name__}: {e}"   # not msgpack's
      assert str(e).startswith(f"{path}: "), str(e)
      return False
    assert controller.spec.name == name
    for leaf in jax.tree.leaves(controller.params):
      assert np.all(np.isfinite(np.asarray(leaf)))
    return True
  loaded = _cases(_damage(good), 500)(check)
  assert not all(loaded)
