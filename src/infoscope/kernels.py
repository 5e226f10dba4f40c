"""Kernels shared by the measure families: Grams, bandwidths, centring, kNN graphs.

Everything here is written once against the array API and builds on the
distances of :mod:`infoscope.backends`; results stay in the input's namespace
and on its device. Gaussian kernels work from the distances of the data
divided by a power of two (:func:`infoscope.backends.scaled_sq_distances`), so
activations of any finite magnitude give finite kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_extra as xpx
import numpy as np

from .backends import (
    as_float,
    asarray,
    check_random_state,
    draw_rows,
    exp_inplace,
    float_dtype,
    knn_indices,
    matmul,
    namespace_and_device,
    off_diagonal_middle,
    scaled_sq_distances,
    take_rows,
    to_numpy,
)
from .backends._lazy import computed_together

__all__ = [
    "NystromMap",
    "centre_gram",
    "gaussian_from_sq_distances",
    "gaussian_kernel",
    "gram_inner",
    "knn_adjacency",
    "linear_kernel",
    "median_distance",
    "resolve_bandwidth",
    "symmetric_normalization",
]

# Off-diagonal pairs above which `median_distance` works on a random subset.
_MEDIAN_MAX_POINTS = 4000


def gaussian_from_sq_distances(D2: Any, sigma: float, *, scale: float = 1.0) -> Any:
    """``exp(-scale**2 D2 / (2 sigma^2))``, overwriting `D2` where the library allows.

    `D2` holds squared distances divided by ``scale**2`` (as
    :func:`infoscope.backends.scaled_sq_distances` returns them); ``scale /
    sigma`` is formed first, so neither huge data nor a tiny `sigma` squares a
    number out of range. When ``(scale / sigma)**2`` exceeds the dtype's range
    the kernel is its limit: 1 for identical points, 0 for all others.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import gaussian_from_sq_distances
    >>> gaussian_from_sq_distances(np.array([[0.0, 2.0]]), 1.0).round(4)
    array([[1.    , 0.3679]])
    >>> gaussian_from_sq_distances(np.array([[0.0, 2.0]]), 1e-300)
    array([[1., 0.]])
    """
    xp, _ = namespace_and_device(D2, names=("D2",))
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ratio = scale / sigma
    factor = 0.5 * ratio * ratio
    if not factor <= float(xp.finfo(D2.dtype).max):
        return xp.astype(D2 == 0, D2.dtype)
    D2 *= -factor
    return exp_inplace(D2)


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
    D2s, scale = scaled_sq_distances(X, Y)
    return gaussian_from_sq_distances(D2s, sigma, scale=scale)


def linear_kernel(X: Any, Y: Any = None, /) -> Any:
    """Linear Gram matrix ``x_i @ y_j`` (at the inputs' full precision).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import linear_kernel
    >>> linear_kernel(np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[ 5., 11.],
           [11., 25.]])
    """
    return matmul(X, (X if Y is None else Y).T)


def median_distance(
    X: Any, /, *, D2: Any = None, scale: float = 1.0, random_state: Any = 0
) -> float:
    """Median of the pairwise Euclidean distances between distinct rows of `X`.

    The bandwidth heuristic ``sigma="median"``. With more than 4,000 rows it is
    the median over a random subset of 4,000 rows (drawn from
    `random_state`), which estimates the full median to well under 1% while
    sorting 8 million pairs instead of N^2 / 2.

    Parameters
    ----------
    X : array of shape (n, d)
    D2 : array of shape (n, n), optional
        Squared distances of `X` already computed, divided by ``scale**2``
        (used when n <= 4,000).
    scale : float, default=1.0
    random_state : int, Generator or None

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import median_distance
    >>> median_distance(np.array([[0.0], [1.0], [3.0]]))
    2.0
    """
    n = X.shape[0]
    if n < 2:
        raise ValueError("the median distance needs at least 2 samples")
    if n > _MEDIAN_MAX_POINTS:
        rows = draw_rows(check_random_state(random_state), n, _MEDIAN_MAX_POINTS)
        X = take_rows(X, rows)
        D2 = None
    if D2 is None:
        # At most 4,000 rows: a dask array's is read from its chunks once.
        X = computed_together(X)
        D2, scale = scaled_sq_distances(X)
    low, high = off_diagonal_middle(D2)
    return scale * (math.sqrt(low) + math.sqrt(high)) / 2.0


def resolve_bandwidth(
    sigma: float | str,
    X: Any,
    *,
    caller: str,
    argument: str = "sigma",
    variable: str = "`X`",
    D2: Any = None,
    scale: float = 1.0,
    random_state: Any = 0,
    fix: str = "",
) -> float:
    """`sigma` as a number: itself, or the median distance of `X` for "median".

    Parameters
    ----------
    sigma : float or "median"
    X : array of shape (n, d)
    caller, argument, variable : str
        The function or estimator, the argument's name and the variable's
        description, for the message.
    D2, scale, random_state
        As in :func:`median_distance`.
    fix : str
        Another way out to offer, e.g. ``"or kernel_x='linear'"``.

    Raises
    ------
    ValueError
        When the median distance is 0: at least half of the pairs of samples
        are identical, and a Gaussian kernel of bandwidth 0 is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import resolve_bandwidth
    >>> resolve_bandwidth("median", np.array([[0.0], [1.0], [3.0]]), caller="demo")
    2.0
    >>> resolve_bandwidth("median", np.zeros((3, 1)), caller="demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: sigma='median' is undefined because the median distance ...
    """
    if not isinstance(sigma, str):
        return float(sigma)
    value = median_distance(X, D2=D2, scale=scale, random_state=random_state)
    if value > 0:
        return value
    other = f" {fix}" if fix else ""
    raise ValueError(
        f"{caller}: {argument}='median' is undefined because the median distance "
        f"between the samples of {variable} is 0 (at least half of the pairs of "
        f"samples are identical); pass a positive number as {argument}{other}."
    )


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


def centre_gram(G: Any, /, *, unbiased: bool = False) -> Any:
    """``H G H`` (biased) or the U-centred G with a zero diagonal (unbiased).

    ``H = I - 11^T / n``. The U-centring of Song et al. (2012) subtracts the
    row and column means of G with its diagonal set to zero, scaled by
    ``1 / (n - 2)``, adds back the grand sum over ``(n - 1)(n - 2)``, and
    zeroes the diagonal (n >= 3). In place where the library allows; returns
    the result (a new array on JAX).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import centre_gram
    >>> centre_gram(np.array([[2.0, 1.0], [1.0, 2.0]]))
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    xp, _ = namespace_and_device(G, names=("G",))
    n = G.shape[0]
    if not unbiased:
        rows = xp.mean(G, axis=1)
        columns = xp.mean(G, axis=0)
        total = xp.mean(rows)
        G -= rows[:, None]
        G -= columns[None, :]
        G += total
        return G
    diagonal = _diagonal(G, xp)
    rows = xp.sum(G, axis=1) - diagonal  # row sums of G with a zero diagonal
    columns = xp.sum(G, axis=0) - diagonal
    total = xp.sum(rows)
    G -= rows[:, None] / (n - 2)
    G -= columns[None, :] / (n - 2)
    G += total / ((n - 1) * (n - 2))
    flat = xpx.at(xp.reshape(G, (-1,)))[:: n + 1].set(0.0)
    return xp.reshape(flat, (n, n))


def _diagonal(G: Any, xp: Any) -> Any:
    n = G.shape[0]
    return xp.reshape(G, (-1,))[:: n + 1]


def gram_inner(A: Any, B: Any, /) -> float:
    """``sum_ij A_ij B_ij`` (the Frobenius inner product), without a temporary.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import gram_inner
    >>> gram_inner(np.eye(2), np.array([[2.0, 5.0], [5.0, 3.0]]))
    5.0
    """
    xp, _ = namespace_and_device(A, B, names=("A", "B"))
    return float(xp.tensordot(A, B, axes=2))


class NystromMap:
    """Nystrom features ``k(x, Z) V diag(w)^{-1/2}`` for landmarks ``Z``.

    ``k(Z, Z) = V diag(w) V^T`` is decomposed on the host in float64;
    eigenvalues at or below ``max(1e-10, 10 eps) * max(w)``, ``eps`` of the
    landmarks' dtype, are dropped: below that they are rounding noise of the
    kernel values and would be amplified by ``w^{-1/2}``. The features
    reproduce ``k`` on the span of the landmarks: an approximation from below,
    ``phi(a) . phi(b) = k(a, Z) k(Z, Z)^+ k(Z, b)``.

    Parameters
    ----------
    landmarks : array of shape (m, d)
    kernel : callable
        ``kernel(A, B)`` -> the (len(A), len(B)) Gram matrix, in A's library.
        Keep it picklable (a module-level function or a
        :func:`functools.partial` of one) for the map to pickle.

    Examples
    --------
    >>> import functools
    >>> import numpy as np
    >>> from infoscope.kernels import NystromMap, gaussian_kernel
    >>> Z = np.random.default_rng(0).normal(size=(50, 2))
    >>> nystrom = NystromMap(Z, functools.partial(gaussian_kernel, sigma=1.0))
    >>> F = nystrom.transform(Z[:5])
    >>> bool(np.allclose(F @ F.T, gaussian_kernel(Z[:5], sigma=1.0), atol=1e-6))
    True
    """

    def __init__(self, landmarks: Any, kernel: Callable[[Any, Any], Any]):
        xp, device = namespace_and_device(landmarks, names=("landmarks",))
        K = np.asarray(to_numpy(kernel(landmarks, landmarks)), dtype=np.float64)
        w, V = np.linalg.eigh((K + K.T) / 2)
        rcond = max(1e-10, 10 * float(xp.finfo(landmarks.dtype).eps))
        keep = w > rcond * max(float(w[-1]), 0.0)
        if not keep.any():
            raise ValueError(
                "the landmarks' kernel matrix has no positive eigenvalue: the "
                "kernel is zero on the landmarks"
            )
        self.landmarks = landmarks
        self.kernel = kernel
        self.n_components = int(keep.sum())
        self.whitening = asarray(
            V[:, keep] / np.sqrt(w[keep]), xp=xp, device=device, dtype=landmarks.dtype
        )

    def transform(self, X: Any) -> Any:
        """The (len(X), n_components) features of the rows of `X`."""
        return matmul(self.kernel(X, self.landmarks), self.whitening)


def knn_adjacency(X: Any, n_neighbors: int, /, *, D2: Any = None) -> Any:
    """Directed kNN indicator graph: ``A_ij = 1`` if ``x_j`` is among the
    `n_neighbors` nearest points of ``x_i``, the point itself included.

    Rows hold more than `n_neighbors` ones only when distances tie at the
    k-th place: every point as close as the k-th nearest counts (the rule of
    dse-dsmi). The distances are computed in the widest float of the device
    (a graph is a step function of them: float32 activations get the graph
    of the same points in float64), and distances that differ only by the
    rounding of their computation (8 eps of the largest) tie, so every
    library draws the same graph. The result has X's float dtype.

    Parameters
    ----------
    X : array of shape (n, d)
    n_neighbors : int
    D2 : array of shape (n, n), optional
        Squared distances of `X` already computed (at any common scale).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.kernels import knn_adjacency
    >>> knn_adjacency(np.array([[0.0], [1.0], [5.0]]), 2)
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 1., 1.]])
    """
    xp, device = namespace_and_device(X, names=("X",))
    X = as_float(X, xp=xp)
    dtype = X.dtype
    if D2 is None:
        X = xp.astype(X, float_dtype(xp, device), copy=False)
        D2, _ = scaled_sq_distances(X)
    nearest = knn_indices(X, n_neighbors)
    kth = xp.take_along_axis(D2, nearest[:, -1:], axis=1)
    tolerance = 8.0 * float(xp.finfo(D2.dtype).eps) * float(xp.max(D2))
    return xp.astype(D2 <= kth + tolerance, dtype)
