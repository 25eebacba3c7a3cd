"""lr_meta.checks: the shared argument check and its message."""

import pytest

from lr_meta import checks


@pytest.mark.parametrize("value", [0, -3, 1.5, "2", None, True])
def test_check_int_refuses_and_names_the_value(value):
  with pytest.raises(ValueError) as err:
    checks.check_int("config.num_seeds", value, 1)
  assert str(err.value) == (f"config.num_seeds={value!r}; allowed: an integer "
                            ">= 1.")


def test_check_int_says_what_the_number_counts():
  with pytest.raises(ValueError, match=r"every=0; allowed: an integer >= 1 "
                     r"\(steps between decisions\)\."):
    checks.check_int("every", 0, 1, "steps between decisions")


@pytest.mark.parametrize("value,low", [(1, 1), (0, 0), (7, 2)])
def test_check_int_accepts_integers_at_or_above_low(value, low):
  checks.check_int("n", value, low)
