"""Random subsets of samples: drawn on the host, taken on the device."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._convert import asarray
from ._namespace import namespace_and_device

__all__ = ["draw_rows", "subsample_rows", "take_rows"]


def draw_rows(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """`size` distinct indices of ``range(n)``, drawn from `rng`, ascending.

    Draws are made with NumPy so that a seed picks the same samples on every
    backend; ascending order keeps the samples in their given order.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import draw_rows
    >>> draw_rows(np.random.default_rng(0), 10, 3)
    array([5, 6, 9])
    """
    return np.sort(rng.choice(n, size=size, replace=False))


def take_rows(X: Any, rows: Any) -> Any:
    """The samples `rows` (NumPy integers) of `X`, in X's library and on its device.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import take_rows
    >>> take_rows(np.arange(6.0).reshape(3, 2), np.array([2, 0]))
    array([[4., 5.],
           [0., 1.]])
    """
    xp, device = namespace_and_device(X)
    return xp.take(X, asarray(np.asarray(rows), xp=xp, device=device), axis=0)


def subsample_rows(X: Any, max_samples: int | None, rng: Any) -> tuple[Any, Any]:
    """`X` reduced to `max_samples` random rows, kept in their order.

    Returns `X` itself and None when it has no more rows than that; otherwise
    the subset and the NumPy indices of the rows kept (:func:`draw_rows`).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import subsample_rows
    >>> subsample_rows(np.arange(10.0)[:, None], 3, np.random.default_rng(0))[1]
    array([5, 6, 9])
    """
    if max_samples is None or X.shape[0] <= max_samples:
        return X, None
    rows = draw_rows(rng, X.shape[0], max_samples)
    return take_rows(X, rows), rows
