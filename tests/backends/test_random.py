import numpy as np
import pytest

from infoscope.backends import check_random_state


def test_int_seeds_reproduce():
    a = check_random_state(3).standard_normal(4)
    b = check_random_state(3).standard_normal(4)
    np.testing.assert_array_equal(a, b)


def test_generator_is_used_as_is():
    rng = np.random.default_rng(0)
    assert check_random_state(rng) is rng


def test_none_gives_fresh_draws():
    assert check_random_state(None).integers(2**62) != check_random_state(
        None
    ).integers(2**62)


def test_legacy_random_state_is_accepted_and_deterministic():
    a = check_random_state(np.random.RandomState(5)).integers(1000, size=3)
    b = check_random_state(np.random.RandomState(5)).integers(1000, size=3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [1.5, "0", True])
def test_other_types_are_refused(bad):
    with pytest.raises(
        TypeError,
        match=r"random_state must be an int, a numpy\.random\.Generator or None",
    ):
        check_random_state(bad)
