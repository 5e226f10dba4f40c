"""Mutual k-nearest-neighbour alignment and CKNNA (Huh et al. 2024).

Both compare two representations of the same n samples through their
neighbourhoods. With ``N_A(i)`` and ``N_B(i)`` the k nearest neighbours of
sample i (itself excluded, Euclidean distance) in representations A and B:

- mutual kNN alignment: ``m = mean_i |N_A(i) & N_B(i)| / k``, in [0, 1];
- CKNNA: CKA restricted to the pairs that are neighbours in both,
  ``Align(A, B) / sqrt(Align(A, A) Align(B, B))`` with
  ``Align(A, B) = sum_i sum_{j in N_A(i) & N_B(i)} Kc_ij Lc_ij``, where
  ``Kc = H K H`` and ``Lc = H L H`` are the centred linear Grams (entries
  ``(a_i - mean a) . (a_j - mean a)``). ``Align(A, A)`` sums over ``N_A(i)``.

Neither needs an n x n array: the neighbour indices come from
:func:`infoscope.backends.knn_indices` (blocked), and CKNNA gathers the
centred inner products of the k neighbours of each sample only.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np

from ..backends import (
    float_dtype,
    host_view,
    host_views,
    knn_indices,
    namespace_and_device,
)
from ._base import (
    Interval,
    check_array,
    check_consistent_length,
    validate_parameter_constraints,
)

__all__ = ["cknna", "mutual_knn_alignment"]

_PARAMETERS = {"n_neighbors": [Interval(Integral, 1, None, closed="left")]}
# Samples per block when gathering neighbours' features for CKNNA: bounds the
# (block, k, features) temporary to about 64 MiB.
_GATHER_BYTES = 64 * 2**20


def check_pair(X: Any, Y: Any, *, caller: str, min_samples: int) -> tuple[Any, Any]:
    """X and Y as 2-D float arrays of one namespace and device, same samples."""
    X = check_array(X, caller=caller, name="X", min_samples=min_samples)
    Y = check_array(Y, caller=caller, name="Y", min_samples=min_samples)
    namespace_and_device(X, Y, names=("X", "Y"))
    check_consistent_length(caller=caller, X=X, Y=Y)
    return X, Y


def check_n_neighbors(n_neighbors: int, n_samples: int, caller: str) -> int:
    """`n_neighbors` validated against the samples (self excluded)."""
    validate_parameter_constraints(
        _PARAMETERS, {"n_neighbors": n_neighbors}, caller_name=caller
    )
    if n_neighbors > n_samples - 1:
        raise ValueError(
            f"{caller}: n_neighbors={n_neighbors} but there are only "
            f"{n_samples} samples, so at most {n_samples - 1} neighbours (a "
            f"sample is not its own neighbour); pass a smaller n_neighbors or "
            f"more samples."
        )
    return int(n_neighbors)


def neighbours(X: Any, n_neighbors: int) -> Any:
    """The (n, k) indices of each sample's k nearest other samples.

    For JAX arrays on the CPU, a NumPy view of them: what follows (overlaps,
    Gram entries at the neighbour pairs, relabelling for permutations) is
    computed by NumPy on JAX's buffers, where each new sample count would
    otherwise compile a dozen small functions.
    """
    found = knn_indices(X, n_neighbors, include_self=False)
    view = host_view(found)
    return found if view is None else view


def shared_neighbours(nn_a: Any, nn_b: Any) -> Any:
    """(n, k) bool: whether ``nn_a[i, t]`` is also among ``nn_b[i, :]``."""
    xp, _ = namespace_and_device(nn_a, nn_b)
    return xp.any(nn_a[:, :, None] == nn_b[:, None, :], axis=2)


def overlap(nn_a: Any, nn_b: Any) -> float:
    """mean_i |N_A(i) & N_B(i)| / k from the two index arrays."""
    xp, device = namespace_and_device(nn_a, nn_b)
    shared = shared_neighbours(nn_a, nn_b)
    return float(xp.mean(xp.astype(shared, float_dtype(xp, device))))


def relabel(nn: Any, order: np.ndarray) -> Any:
    """The neighbour indices of the samples taken in `order` (a permutation).

    Sample i of the permuted set is sample ``order[i]`` of the original, whose
    neighbours ``nn[order[i]]`` are, in the permuted labels,
    ``inverse[nn[order[i]]]``. O(n k): no new neighbour search.
    """
    xp, device = namespace_and_device(nn)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    rows = xp.take(nn, xp.asarray(order, device=device), axis=0)
    flat = xp.take(xp.asarray(inverse, device=device), xp.reshape(rows, (-1,)))
    return xp.reshape(flat, rows.shape)


def centred(X: Any) -> Any:
    xp, _ = namespace_and_device(X)
    return X - xp.mean(X, axis=0)


def neighbour_products(Xc: Any, nn: Any) -> Any:
    """(n, k): ``Xc[i] . Xc[nn[i, t]]``, the centred Gram at the neighbour pairs."""
    xp, _ = namespace_and_device(Xc, nn)
    n, k = nn.shape
    itemsize = 8 if Xc.dtype == xp.float64 else 4
    block = max(1, _GATHER_BYTES // (itemsize * k * Xc.shape[1]))
    out = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        idx = nn[start:stop, :]
        gathered = xp.take(Xc, xp.reshape(idx, (-1,)), axis=0)
        gathered = xp.reshape(gathered, (stop - start, k, Xc.shape[1]))
        out.append(xp.sum(gathered * Xc[start:stop, None, :], axis=2))
    return xp.concat(out, axis=0) if len(out) > 1 else out[0]


class CknnaSide:
    """What one representation contributes to CKNNA: its centred features,
    neighbours, the centred Gram at its neighbour pairs and Align(A, A)."""

    def __init__(self, X: Any, nn: Any):
        views = host_views(X, nn)
        if views is not None:  # JAX on the CPU: NumPy on its buffers
            X, nn = views
        xp, _ = namespace_and_device(X)
        self.Xc = centred(X)
        self.nn = nn
        self.products = neighbour_products(self.Xc, nn)
        self.self_align = float(xp.sum(self.products * self.products))

    def permuted(self, order: np.ndarray) -> CknnaSide:
        """The same representation with its samples taken in `order`."""
        xp, device = namespace_and_device(self.Xc)
        other = CknnaSide.__new__(CknnaSide)
        other.Xc = xp.take(self.Xc, xp.asarray(order, device=device), axis=0)
        other.nn = relabel(self.nn, order)
        other.products = xp.take(
            self.products, xp.asarray(order, device=device), axis=0
        )
        other.self_align = self.self_align
        return other


def cknna_from_sides(a: CknnaSide, b: CknnaSide) -> float:
    """CKNNA of two prepared sides; NaN when a self term is 0."""
    xp, _ = namespace_and_device(a.Xc)
    shared = shared_neighbours(a.nn, b.nn)
    # L's centred Gram at A's neighbour pairs (only the shared ones count).
    l_at_a = neighbour_products(b.Xc, a.nn)
    cross = float(xp.sum(xp.where(shared, a.products * l_at_a, 0.0)))
    denominator = a.self_align * b.self_align
    return cross / math.sqrt(denominator) if denominator > 0 else math.nan


def mutual_knn_alignment(X: Any, Y: Any, *, n_neighbors: int = 10) -> float:
    """Mutual k-nearest-neighbour alignment of two representations.

    ``mean_i |N_X(i) & N_Y(i)| / k`` (Huh et al. 2024), with ``N_X(i)`` the
    `n_neighbors` nearest samples to sample i in X by Euclidean distance,
    itself excluded (ties broken by sample index). 1 when the neighbourhoods
    agree; about ``k / (n - 1)`` for unrelated representations.

    Parameters
    ----------
    X : array of shape (n_samples, n_features_x)
    Y : array of shape (n_samples, n_features_y)
        The same samples, in the same order, from one library and device
        (more than two axes are flattened per sample).
    n_neighbors : int, default=10
        k; at most ``n_samples - 1``.

    Returns
    -------
    float

    Notes
    -----
    platonic-rep (the paper's code) L2-normalises every row and takes the
    neighbours of largest inner product: on unit vectors that is the
    Euclidean order, so ``mutual_knn_alignment(X / |X|, Y / |Y|)`` (row
    norms) reproduces it. Invariant to orthogonal maps, translations and
    isotropic scaling of either representation.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import mutual_knn_alignment
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> mutual_knn_alignment(X, 3 * X + 1)
    1.0
    >>> mutual_knn_alignment(X, rng.normal(size=(200, 8))) < 0.2
    True
    """
    caller = "mutual_knn_alignment"
    X, Y = check_pair(X, Y, caller=caller, min_samples=2)
    k = check_n_neighbors(n_neighbors, X.shape[0], caller)
    return overlap(neighbours(X, k), neighbours(Y, k))


def cknna(X: Any, Y: Any, *, n_neighbors: int = 10) -> float:
    """Centered kernel nearest-neighbour alignment (CKNNA, Huh et al. 2024).

    Linear CKA restricted to the sample pairs that are k-nearest neighbours in
    both representations (module docstring):
    ``sum_i sum_{j in N_X(i) & N_Y(i)} Kc_ij Lc_ij /
    sqrt(sum_i sum_{j in N_X(i)} Kc_ij^2  sum_i sum_{j in N_Y(i)} Lc_ij^2)``
    with ``Kc``, ``Lc`` the centred linear Grams. In [-1, 1]; 1 for
    identical inputs. O(n k (p + q)) time beyond the neighbour search, no
    n x n array.

    Parameters
    ----------
    X, Y, n_neighbors
        As in :func:`mutual_knn_alignment`.

    Returns
    -------
    float
        NaN when a representation is constant (its self term is 0).

    Notes
    -----
    The paper (appendix A, eq. 12) writes the centring row by row,
    ``K_ij - E_l K_il``, which is not symmetric and changes when the data
    are translated; its eqs. 13-15 and its limit (CKA as k grows) treat the
    result as CKA's ``H K H``, which infoscope takes. On column-centred data
    the two are the same. platonic-rep's code computes something else:
    Song's unbiased HSIC of the *uncentred* Grams multiplied by the
    neighbour masks, with the self terms over each side's own mask and 1e-6
    added to the denominator (see the user guide).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import cknna
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> round(cknna(X, 2 * X @ Q), 10)
    1.0
    """
    caller = "cknna"
    X, Y = check_pair(X, Y, caller=caller, min_samples=2)
    k = check_n_neighbors(n_neighbors, X.shape[0], caller)
    xp, _ = namespace_and_device(X)
    dtype = xp.result_type(X, Y)
    X, Y = xp.astype(X, dtype), xp.astype(Y, dtype)
    return cknna_from_sides(
        CknnaSide(X, neighbours(X, k)), CknnaSide(Y, neighbours(Y, k))
    )
