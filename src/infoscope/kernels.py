"""Kernels shared by the measure families: Gaussian Grams, bandwidths, kNN graphs.

Everything here is written once against the array API and builds on the
distances of :mod:`infoscope.backends`; results stay in the input's namespace
and on its device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backends import (
    check_random_state,
    knn_indices,
    namespace_and_device,
    off_diagonal_middle,
    pairwise_sq_distances,
)

__all__ = [
    "gaussian_from_sq_distances",
    "gaussian_kernel",
    "knn_adjacency",
    "median_distance",
    "symmetric_normalization",
]

# Off-diagonal pairs above which `median_distance` works on a random subset.
_MEDIAN_MAX_POINTS = 4000


def gaussian_from_sq_distances(D2: Any, sigma: float) -> Any:
    """``exp(-D2 / (2 sigma^2))``, overwriting `D2` where the library allows.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import gaussian_from_sq_distances
    >>> gaussian_from_sq_distances(np.array([[0.0, 2.0]]), 1.0).round(4)
    array([[1.    , 0.3679]])
    """
    xp, _ = namespace_and_device(D2, names=("D2",))
    D2 *= -1.0 / (2.0 * sigma * sigma)
    return xp.exp(D2)


def gaussian_kernel(X: Any, Y: Any = None, /, *, sigma: float) -> Any:
    """Gaussian Gram matrix ``exp(-||x_i - y_j||^2 / (2 sigma^2))``.

    No normalising constant: the ``1 / (sigma sqrt(2 pi))`` of dse-dsmi cancels
    from every quantity infoscope computes (normalised spectra, degrees).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import gaussian_kernel
    >>> gaussian_kernel(np.array([[0.0], [1.0]]), sigma=1.0).round(4)
    array([[1.    , 0.6065],
           [0.6065, 1.    ]])
    """
    return gaussian_from_sq_distances(pairwise_sq_distances(X, Y), sigma)


def median_distance(X: Any, /, *, D2: Any = None, random_state: Any = 0) -> float:
    """Median of the pairwise Euclidean distances between distinct rows of `X`.

    The bandwidth heuristic ``sigma="median"``. With more than 4,000 rows it is
    the median over a random subset of 4,000 rows (drawn from
    `random_state`), which estimates the full median to well under 1% while
    sorting 8 million pairs instead of N^2 / 2.

    Parameters
    ----------
    X : array of shape (n, d)
    D2 : array of shape (n, n), optional
        Squared distances of `X` already computed (used when n <= 4,000).
    random_state : int, Generator or None

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import median_distance
    >>> median_distance(np.array([[0.0], [1.0], [3.0]]))
    2.0
    """
    xp, device = namespace_and_device(X, names=("X",))
    n = X.shape[0]
    if n < 2:
        raise ValueError("the median distance needs at least 2 samples")
    if n > _MEDIAN_MAX_POINTS:
        rows = check_random_state(random_state).choice(
            n, _MEDIAN_MAX_POINTS, replace=False
        )
        X = xp.take(X, xp.asarray(np.sort(rows), device=device), axis=0)
        D2 = None
    if D2 is None:
        D2 = pairwise_sq_distances(X)
    low, high = off_diagonal_middle(D2)
    return (math.sqrt(low) + math.sqrt(high)) / 2.0


def symmetric_normalization(G: Any) -> tuple[Any, Any]:
    """``D^-1/2 G D^-1/2`` with ``D = diag(G 1)``, and the degrees ``G 1``.

    Scales rows and columns by broadcasting, in place where the library
    allows: never a dense diagonal matrix product. The result has the spectrum
    of the random-walk operator ``D^-1 G``.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import symmetric_normalization
    >>> K, degrees = symmetric_normalization(np.array([[1.0, 1.0], [1.0, 1.0]]))
    >>> K, degrees
    (array([[0.5, 0.5],
           [0.5, 0.5]]), array([2., 2.]))
    """
    xp, _ = namespace_and_device(G, names=("G",))
    degrees = xp.sum(G, axis=1)
    scale = 1.0 / xp.sqrt(degrees)
    G *= scale[:, None]
    G *= scale[None, :]
    return G, degrees


def knn_adjacency(X: Any, n_neighbors: int, /, *, D2: Any = None) -> Any:
    """Directed kNN indicator graph: ``A_ij = 1`` if ``x_j`` is among the
    `n_neighbors` nearest points of ``x_i``, the point itself included.

    Rows hold more than `n_neighbors` ones only when distances tie at the
    k-th place: every point as close as the k-th nearest counts (the rule of
    dse-dsmi).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import knn_adjacency
    >>> knn_adjacency(np.array([[0.0], [1.0], [5.0]]), 2)
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 1., 1.]])
    """
    xp, _ = namespace_and_device(X, names=("X",))
    if D2 is None:
        D2 = pairwise_sq_distances(X)
    nearest = knn_indices(X, n_neighbors)
    kth = xp.take_along_axis(D2, nearest[:, -1:], axis=1)
    return xp.astype(D2 <= kth, D2.dtype)
