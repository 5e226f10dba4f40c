"""Random draws: made with NumPy from one seed, then moved to the device."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_random_state"]


def check_random_state(random_state: Any) -> np.random.Generator:
    """A NumPy Generator from an int seed, a Generator, or None.

    infoscope draws every random number with NumPy and moves it to the
    array's device, so the same seed gives the same result on every backend.

    Parameters
    ----------
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None
        An int seeds a new Generator; a Generator is used as it is (and
        advanced); a legacy RandomState seeds a new Generator from one draw;
        None draws fresh entropy from the operating system.

    Examples
    --------
    >>> from infoscope.backends import check_random_state
    >>> check_random_state(0).integers(10, size=3)
    array([8, 6, 5])
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(
            random_state.randint(0, 2**32 - 1, dtype=np.uint64)
        )
    raise TypeError(
        "random_state must be an int, a numpy.random.Generator or None, got "
        f"{type(random_state).__name__}"
    )
