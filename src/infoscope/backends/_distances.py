"""Squared Euclidean distances and nearest neighbours, one code path for all."""

from __future__ import annotations

import math
import operator
from typing import Any

import array_api_compat as compat
import array_api_extra as xpx
import numpy as np
from array_api_compat import array_namespace, device

from ._convert import asarray, host_views, to_numpy
from ._dtype import as_float, itemsize
from ._linalg import matmul
from ._namespace import compiled, namespace_and_device, refuse_dask

__all__ = [
    "knn_indices",
    "pairwise_sq_distances",
    "power_of_two_scale",
    "scaled_sq_distances",
]

# Row blocks of the kNN search hold at most this many bytes of distances.
_KNN_BLOCK_BYTES = 64 * 2**20


def _check_points(X: Any, Y: Any, y_name: str) -> None:
    """X, and Y unless None, are 2-D point sets with the same features."""
    for name, points in (("X", X), (y_name, Y)):
        if points is not None and points.ndim != 2:
            raise ValueError(
                f"`{name}` must be 2-D (n_samples, n_features), got shape "
                f"{tuple(points.shape)}"
            )
    if Y is not None and Y.shape[1] != X.shape[1]:
        raise ValueError(
            f"`X` has {X.shape[1]} features but `{y_name}` has {Y.shape[1]}; "
            "distances need the same features in both"
        )


def power_of_two_scale(*arrays: Any, xp: Any = None) -> float:
    """A power of two s with ``max |a| / s`` in [1, 2) over `arrays` (1 if all 0).

    Dividing by a power of two is exact, so integers stay integers and
    distances keep every digit; the squares of the scaled values cannot
    overflow, whatever the data's magnitude. None entries are skipped.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import power_of_two_scale
    >>> power_of_two_scale(np.array([[3.0, -5.0]]))
    4.0

    Raises
    ------
    ValueError
        For NaN or infinity, which no scale makes finite.
    """
    if xp is None:
        xp, _ = namespace_and_device(*arrays)
    largest = 0.0
    for a in arrays:
        if a is not None and a.shape[0] and a.shape[1]:
            here = float(xp.max(xp.abs(a)))
            largest = here if not math.isfinite(here) else max(largest, here)
            if not math.isfinite(largest):
                break
    if not math.isfinite(largest):
        raise ValueError(
            "the points contain NaN or infinity; distances and kernels need "
            "finite values: remove or impute those samples first"
        )
    if largest == 0.0:
        return 1.0
    _, exponent = math.frexp(largest)  # largest = m 2^e, 0.5 <= m < 1
    return math.ldexp(1.0, exponent - 1)


def _times_power_of_two(X: Any, exponent: int) -> Any:
    """``X * 2**exponent`` in two steps, each factor a normal float32 number.

    A single factor such as 2**-140 is subnormal in float32, and libraries that
    flush subnormals to zero (XLA on the CPU) would turn the data into zeros.
    """
    if exponent == 0:
        return X
    half = exponent // 2
    return X * math.ldexp(1.0, half) * math.ldexp(1.0, exponent - half)


def _centred(X: Any, Y: Any, xp: Any) -> tuple[Any, Any, float]:
    """X and Y divided by a power of two s, then shifted by X's mean; and s.

    Distances do not change under a shift, and scale by s^2: the scaling keeps
    the squares within range, and centring makes the cancellation of
    ||a||^2 + ||b||^2 - 2 a.b about eps * spread^2 instead of eps * offset^2.
    Both sets end in one common float dtype.
    """
    X = as_float(X, xp=xp)
    if Y is not None:
        Y = as_float(Y, xp=xp)
        dtype = xp.result_type(X, Y)
        X, Y = xp.astype(X, dtype, copy=False), xp.astype(Y, dtype, copy=False)
    scale = power_of_two_scale(X, Y, xp=xp)
    exponent = -math.frexp(scale)[1] + 1
    X = _times_power_of_two(X, exponent)
    if X.shape[0] == 0:  # no points: nothing to centre (and no mean to take)
        return X, (None if Y is None else _times_power_of_two(Y, exponent)), scale
    shift = xp.mean(X, axis=0)
    if Y is None:
        return X - shift, None, scale
    return X - shift, _times_power_of_two(Y, exponent) - shift, scale


def _rounding_floor(A: Any, B: Any, sq_a: Any, sq_b: Any, xp: Any) -> float:
    """Squared distances below this are rounding noise of the expansion.

    ``||a||^2 + ||b||^2 - 2 a.b`` is computed to about eps * (||a||^2 +
    ||b||^2); a pair of identical points comes out as a few eps instead of 0.
    """
    eps = float(xp.finfo(A.dtype).eps)
    largest = float(xp.max(sq_a)) if sq_a.shape[0] else 0.0
    if B is not None and sq_b.shape[0]:
        largest = max(largest, float(xp.max(sq_b)))
    return 8.0 * eps * largest


def _sq_distances(A: Any, B: Any, sq_a: Any, sq_b: Any, floor: float, xp: Any) -> Any:
    """||a_i - b_j||^2 from centred rows and their squared norms.

    Values below `floor` (rounding noise, and the negatives it leaves) are 0.
    """
    D = matmul(A, B.T)
    # Operator-assignment works in place where the library allows (NumPy,
    # torch, CuPy) and rebinds otherwise (JAX), so peak memory stays at two
    # N x M arrays on the mutable libraries.
    D *= -2.0
    D += sq_a[:, None]
    D += sq_b[None, :]
    return xpx.at(D, D < floor).set(0.0)


def scaled_sq_distances(X: Any, Y: Any = None, /) -> tuple[Any, float]:
    """Squared distances of the rows of ``X / s`` (and ``Y / s``), and s.

    s is a power of two with the largest ``|x|`` (and ``|y|``) between s and
    2 s, so the squared distances of the scaled rows are at most 16 d and the
    true ones are ``s**2 * D2s`` exactly. Kernels and bandwidths take the
    scale into their own arithmetic (:func:`infoscope.kernels.gaussian_kernel`)
    instead of squaring huge or tiny numbers: finite data of any magnitude
    gives finite kernels.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (m, d), optional

    Returns
    -------
    D2s : array of shape (n, m)
        As :func:`pairwise_sq_distances`, for the scaled rows.
    scale : float
        s.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import scaled_sq_distances
    >>> D2s, s = scaled_sq_distances(np.array([[0.0, 0.0], [3e200, 4e200]]))
    >>> s <= 4e200 < 2 * s
    True
    >>> round(float(np.sqrt(D2s[0, 1]) * s / 1e200), 12)  # 5e200 ** 2 overflows
    5.0
    """
    xp, _ = namespace_and_device(X, Y, names=("X", "Y"))
    _check_points(X, Y, "Y")
    if compat.is_jax_namespace(xp) and X.shape[0] and (Y is None or Y.shape[0]):
        return _jax_scaled_sq_distances(X, Y, xp)
    A, B, scale = _centred(X, Y, xp)
    sq_a = xp.sum(A * A, axis=1)
    if B is None:
        n = A.shape[0]
        D = _sq_distances(
            A, A, sq_a, sq_a, _rounding_floor(A, None, sq_a, None, xp), xp
        )
        # A point's distance to itself is 0, not the expansion's rounding error.
        # The strided view of the flattened matrix is its diagonal.
        diagonal = xpx.at(xp.reshape(D, (-1,)), slice(None, None, n + 1)).set(0.0)
        return xp.reshape(diagonal, (n, n)), scale
    sq_b = xp.sum(B * B, axis=1)
    floor = _rounding_floor(A, B, sq_a, sq_b, xp)
    return _sq_distances(A, B, sq_a, sq_b, floor, xp), scale


def _jax_scaled_sq_distances(X: Any, Y: Any, xp: Any) -> tuple[Any, float]:
    """:func:`scaled_sq_distances` for JAX: the same steps, compiled whole.

    Eager JAX compiles each of the dozen operations for every new shape;
    one compiled function per shape replaces them (the scale is read on the
    host, as for the other libraries, and passed in).
    """
    X = as_float(X, xp=xp)
    if Y is not None:
        Y = as_float(Y, xp=xp)
        dtype = xp.result_type(X, Y)
        X, Y = xp.astype(X, dtype, copy=False), xp.astype(Y, dtype, copy=False)
    scale = power_of_two_scale(X, Y, xp=xp)
    exponent = -math.frexp(scale)[1] + 1
    half = exponent // 2
    factors = (math.ldexp(1.0, half), math.ldexp(1.0, exponent - half))
    kernel = compiled(_sq_distances_kernel, xp)
    return kernel(X, Y, factors), scale


def _sq_distances_kernel(X: Any, Y: Any, factors: tuple) -> Any:
    """The centred, scaled expansion of :func:`scaled_sq_distances`; traceable."""
    xp = array_namespace(X)
    # Two normal factors, as _times_power_of_two (XLA flushes subnormals).
    A = X * factors[0] * factors[1]
    shift = xp.mean(A, axis=0)
    A = A - shift
    sq_a = xp.sum(A * A, axis=1)
    eps = float(xp.finfo(A.dtype).eps)
    if Y is None:
        floor = 8.0 * eps * xp.max(sq_a)
        D = _sq_distances(A, A, sq_a, sq_a, floor, xp)
        n = A.shape[0]
        return xp.where(xp.eye(n, dtype=xp.bool), xp.zeros_like(D), D)
    B = Y * factors[0] * factors[1] - shift
    sq_b = xp.sum(B * B, axis=1)
    floor = 8.0 * eps * xp.maximum(xp.max(sq_a), xp.max(sq_b))
    return _sq_distances(A, B, sq_a, sq_b, floor, xp)


def pairwise_sq_distances(X: Any, Y: Any = None, /) -> Any:
    """Squared Euclidean distances between the rows of `X` and of `Y`.

    Computed as ``||x||^2 + ||y||^2 - 2 x.y`` through one matrix product, after
    scaling both sets by a power of two and shifting them by the mean of `X`
    (:func:`scaled_sq_distances`): memory is O(n m + (n + m) d), never
    O(n m d). Distances within rounding of 0 are 0. A distance too large for
    the dtype is ``inf``, as its square is; kernels avoid that by using the
    scaled distances.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (m, d), optional
        Defaults to `X`; then the result is exactly symmetric-in-use with a
        zero diagonal.

    Returns
    -------
    array of shape (n, m)
        In the inputs' namespace, device and (promoted) float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import pairwise_sq_distances
    >>> pairwise_sq_distances(np.array([[0.0, 0.0], [3.0, 4.0]]))
    array([[ 0., 25.],
           [25.,  0.]])
    """
    D2s, scale = scaled_sq_distances(X, Y)
    if scale == 1.0:
        return D2s
    # Two products: s**2 itself may not be representable, s always is.
    return D2s * scale * scale


def knn_indices(
    X: Any,
    n_neighbors: int,
    /,
    *,
    queries: Any = None,
    include_self: bool = True,
    block_size: int | None = None,
) -> Any:
    """Indices of the `n_neighbors` nearest rows of `X` for every query row.

    Exact search by blocks of query rows: memory is ``block_size * n`` distances
    at a time (64 MiB worth by default), never ``n x n``.

    Parameters
    ----------
    X : array of shape (n, d)
        The points searched.
    n_neighbors : int
        How many neighbours to return per query, nearest first.
    queries : array of shape (m, d), optional
        The query points; defaults to `X` itself.
    include_self : bool, default=True
        When `queries` is None, whether a point is its own first neighbour (the
        directed kNN graph of the diffusion family counts it) or is left out.
        Ignored when `queries` is given.
    block_size : int, optional
        Query rows per block.

    Returns
    -------
    array of shape (m, n_neighbors)
        Integer indices into `X`, nearest first; equal distances are ordered
        by index.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import knn_indices
    >>> X = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> knn_indices(X, 2)
    array([[0, 1],
           [1, 0],
           [2, 1],
           [3, 2]])
    >>> knn_indices(X, 1, include_self=False)
    array([[1],
           [0],
           [1],
           [2]])
    """
    xp, device = namespace_and_device(X, queries, names=("X", "queries"))
    refuse_dask(xp, "knn_indices")
    _check_points(X, queries, "queries")
    if block_size is not None and _as_int(block_size, "block_size") < 1:
        raise ValueError(f"block_size must be at least 1 or None, got {block_size}")
    n = X.shape[0]
    self_search = queries is None
    n_candidates = n - 1 if self_search and not include_self else n
    k = _as_int(n_neighbors, "n_neighbors")
    if not 1 <= k <= n_candidates:
        excluded = "" if n_candidates == n else ", self excluded"
        raise ValueError(
            f"n_neighbors must be between 1 and {n_candidates} (the number of "
            f"candidate points{excluded}), got {n_neighbors}; pass a smaller "
            "n_neighbors or more points"
        )

    # Pinning a point's own distance keeps duplicates of it from displacing it
    # (include_self) or sneaking it in (excluded).
    self_distance = None
    if self_search:
        self_distance = -float("inf") if include_self else float("inf")
    views = host_views(X) if self_search else host_views(X, queries)
    if views is not None and compat.is_jax_namespace(xp):
        found = _knn_in_buckets(
            views[0], None if self_search else views[1], k, self_distance, block_size
        )
        return asarray(found, xp=xp, device=device)
    A, B, _ = _centred(X, queries, xp)
    Q = A if self_search else B
    sq_a = xp.sum(A * A, axis=1)
    sq_q = sq_a if self_search else xp.sum(Q * Q, axis=1)
    floor = _rounding_floor(A, Q, sq_a, sq_q, xp)
    m = Q.shape[0]
    if block_size is None:
        block_size = max(1, _KNN_BLOCK_BYTES // (itemsize(A.dtype) * max(n, 1)))
    statics = ("k", "self_distance")
    kernel = compiled(_knn_block, xp, static_argnames=statics)
    exact = compiled(_knn_block_exact, xp, static_argnames=statics)
    rows = xp.arange(m, device=device)
    blocks = []
    for start in range(0, m, block_size):
        stop = min(start + block_size, m)  # in bounds: the standard leaves it open
        args = (Q[start:stop, :], rows[start:stop], A, sq_q[start:stop], sq_a)
        options = {"k": k, "self_distance": self_distance}
        found, ties = kernel(*args, floor, **options)
        tied = np.flatnonzero(np.asarray(to_numpy(ties)))
        if tied.size:
            # Rows whose k-th distance ties with a point left out: the slower
            # search that breaks ties by index, for those rows only.
            take = asarray(tied, xp=xp, device=device)
            redone = exact(
                *(xp.take(a, take, axis=0) for a in args[:2]),
                A,
                xp.take(args[3], take, axis=0),
                sq_a,
                floor,
                **options,
            )
            where = np.arange(stop - start)
            where[tied] = stop - start + np.arange(tied.size)
            found = xp.take(
                xp.concat([found, redone], axis=0),
                asarray(where, xp=xp, device=device),
                axis=0,
            )
        blocks.append(found)
    return xp.concat(blocks, axis=0)


def _knn_in_buckets(
    X: np.ndarray,
    queries: np.ndarray | None,
    k: int,
    self_distance: float | None,
    block_size: int | None,
) -> np.ndarray:
    """:func:`knn_indices` of NumPy views of JAX's CPU arrays, searched by XLA.

    NumPy centres and scales the points and pads them to a bucket size
    (:func:`~infoscope.backends._blocks.bucket`): padded candidates have an
    infinite squared norm, so they are never among the nearest; padded
    queries are dropped. XLA's compiled search then sees one shape per
    bucket, so a new sample count in the bucket compiles nothing (nor does
    new data: the rounding floor is an argument, not a constant).
    """
    import jax

    from ._blocks import bucket

    npx = array_namespace(X)
    self_search = queries is None
    A, B, _ = _centred(X, queries, npx)
    Q = A if self_search else B
    sq_a = np.sum(A * A, axis=1)
    sq_q = sq_a if self_search else np.sum(Q * Q, axis=1)
    floor = _rounding_floor(A, Q, sq_a, sq_q, npx)
    n, m = A.shape[0], Q.shape[0]
    n_padded = bucket(n)
    if block_size is None:
        block_size = max(1, _KNN_BLOCK_BYTES // (itemsize(A.dtype) * n_padded))
    block_size = bucket(min(block_size, m))
    m_padded = -(-m // block_size) * block_size

    def padded(a: np.ndarray, size: int, fill: float) -> np.ndarray:
        out = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
        out[: a.shape[0]] = a
        return out

    A_dev = jax.device_put(padded(A, n_padded, 0.0))
    sq_a_dev = jax.device_put(padded(sq_a, n_padded, np.inf))
    Q_all = padded(Q, m_padded, 0.0)
    sq_q_all = padded(sq_q, m_padded, 0.0)
    rows_all = np.arange(m_padded, dtype=np.int32)
    floor_dev = jax.device_put(np.asarray(floor, dtype=A.dtype))
    statics = ("k", "self_distance")
    kernel = _jax_jit(_knn_block, statics)
    exact = _jax_jit(_knn_block_exact, statics)
    options = {"k": k, "self_distance": self_distance}
    blocks = []
    for start in range(0, m, block_size):
        part = slice(start, start + block_size)
        args = [jax.device_put(a[part]) for a in (Q_all, rows_all)]
        args += [A_dev, jax.device_put(sq_q_all[part]), sq_a_dev]
        found, ties = kernel(*args, floor_dev, **options)
        found = np.asarray(found)
        tied = np.flatnonzero(np.asarray(ties)[: min(block_size, m - start)])
        if tied.size:
            # The index-ordered search for those rows, padded to a bucket too.
            take = padded(tied, bucket(tied.size), tied[0])
            redo = [jax.device_put(a[part][take]) for a in (Q_all, rows_all)]
            redo += [A_dev, jax.device_put(sq_q_all[part][take]), sq_a_dev]
            found = found.copy()
            found[tied] = np.asarray(exact(*redo, floor_dev, **options))[: tied.size]
        blocks.append(found)
    return np.concatenate(blocks, axis=0)[:m]


def _jax_jit(fn: Any, statics: tuple[str, ...]) -> Any:
    import jax.numpy as jnp

    return compiled(fn, jnp, static_argnames=statics)


def _as_int(value: Any, name: str) -> int:
    """`value` as a Python int (NumPy integers too); bools and floats refused."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{name} must be an integer, got {type(value).__name__}")


def _block_distances(Q, rows, A, sq_q, sq_a, self_distance, floor, xp):
    D = _sq_distances(Q, A, sq_q, sq_a, floor, xp)
    if self_distance is not None:
        columns = xp.arange(A.shape[0], device=device(Q))
        D = xp.where(rows[:, None] == columns[None, :], self_distance, D)
    return D


def _knn_block(Q, rows, A, sq_q, sq_a, floor, *, k, self_distance):
    """The k nearest rows of A for each row of Q (`rows` are Q's indices into
    A), nearest first, and whether a row's k-th distance ties with a point
    left out (its neighbours are then redone by :func:`_knn_block_exact`).

    One selection pass (top-k, or a partition) over each row of distances.
    JAX's ``top_k`` puts the lower index first among equal values, the
    order :func:`_k_smallest` gives, so it never reports a tie.
    """
    xp = array_namespace(Q)
    D = _block_distances(Q, rows, A, sq_q, sq_a, self_distance, floor, xp)
    if compat.is_jax_namespace(xp):
        return _jax_k_smallest(D, k, xp)
    partial_sort = compat.is_torch_namespace(xp) or compat.is_cupy_namespace(xp)
    if not partial_sort and D.shape[1] >= _SAMPLED_MIN_COLUMNS * k:
        found = _sampled_k_smallest(D, k, xp)
        if found is not None:
            return found, xp.zeros(D.shape[0], dtype=xp.bool, device=device(D))
    if k == D.shape[1]:
        found = xp.broadcast_to(xp.arange(k, device=device(D))[None, :], D.shape)
    elif compat.is_torch_namespace(xp):
        found = xp.topk(D, k, dim=1, largest=False, sorted=False)[1]
    else:
        found = xpx.argpartition(D, k - 1, axis=1)[:, :k]
    found = xp.sort(found, axis=1)
    values = xp.take_along_axis(D, found, axis=1)
    kth = xp.max(values, axis=1, keepdims=True)
    ties = xp.sum(xp.astype(D <= kth, xp.int32), axis=1) > k
    order = xp.argsort(values, axis=1, stable=True)
    return xp.take_along_axis(found, order, axis=1), ties


#: Rows at least this many times k wide are searched from a sample.
_SAMPLED_MIN_COLUMNS = 64
#: Every how many columns the sample takes.
_SAMPLE_STRIDE = 8


def _sampled_k_smallest(D: Any, k: int, xp: Any) -> Any:
    """The k smallest of each row of `D`, by (value, index), exactly.

    For NumPy, whose partition is slow per element, and for libraries with
    no partial sort at all (array-api-strict: array-api-extra's
    ``argpartition`` sorts whole rows there). A sample of every eighth column
    is partitioned (NumPy) or sorted; its k-th smallest t bounds the row's
    k-th smallest from above, so the entries ``<= t`` (about 8 k of them,
    every tie at the k-th distance included) hold the answer, and they are
    ordered by (row, value, column) in one lexicographic sort (NumPy) or two
    stable ones. None where a row has fewer than k such entries (NaN
    distances): the caller's general search handles it.
    """
    n_rows, n = D.shape
    sample = D[:, ::_SAMPLE_STRIDE]
    numpy = compat.is_numpy_array(D)
    if numpy:
        t = np.partition(sample, k - 1, axis=1)[:, k - 1 : k]
    else:
        t = xp.sort(sample, axis=1)[:, k - 1 : k]
    mask = D <= t
    counts = xp.sum(xp.astype(mask, xp.int64), axis=1)
    if int(xp.min(counts)) < k:
        return None
    rows, columns = xp.nonzero(mask)
    if numpy:
        order = np.lexsort((columns, D[rows, columns], rows))
    else:
        values = xp.take(xp.reshape(D, (-1,)), rows * n + columns)
        # nonzero lists row by row, columns ascending: a stable sort by value
        # keeps equal values in (row, column) order, and then by row.
        by_value = xp.argsort(values, stable=True)
        order = xp.take(by_value, xp.argsort(xp.take(rows, by_value), stable=True))
    starts = xp.cumulative_sum(counts) - counts
    ks = xp.arange(k, dtype=starts.dtype, device=device(D))
    positions = starts[:, None] + ks[None, :]
    found = xp.take(xp.take(columns, order), xp.reshape(positions, (-1,)))
    return xp.reshape(found, (n_rows, k))


#: Extra float32 candidates of JAX's float64 search.
_JAX_EXTRA_CANDIDATES = 16


def _jax_k_smallest(D: Any, k: int, xp: Any) -> tuple[Any, Any]:
    """:func:`_knn_block`'s selection for JAX, whose CPU ``top_k`` is fast in
    float32 only (about 25 times slower in float64).

    A float64 row is searched in float32 for ``k + 16`` candidates, which
    are ordered in float64. Rounding to float32 keeps order (``a < b`` gives
    ``f(a) <= f(b)``), so if the float32 value of the k-th float64 distance
    is below the largest candidate's, every point left out is farther in
    float64 and the answer is exact; a row where it is not is reported as a
    tie and searched again by :func:`_knn_block_exact`.
    """
    import jax

    n = D.shape[1]
    no_ties = xp.zeros(D.shape[0], dtype=xp.bool)
    if D.dtype == xp.float32 or k == n:
        return jax.lax.top_k(-D, k)[1], no_ties
    wide = min(n, k + _JAX_EXTRA_CANDIDATES)
    # Only the indices of top_k are used: reading its values too made XLA
    # sort whole rows (ten times slower).
    found = xp.sort(jax.lax.top_k(-xp.astype(D, xp.float32), wide)[1], axis=1)
    values = xp.take_along_axis(D, found, axis=1)
    order = xp.argsort(values, axis=1, stable=True)[:, :k]
    found = xp.take_along_axis(found, order, axis=1)
    if wide == n:
        return found, no_ties
    narrow = xp.astype(values, xp.float32)
    kth = xp.take_along_axis(narrow, order[:, -1:], axis=1)[:, 0]
    return found, ~(kth < xp.max(narrow, axis=1))


def _knn_block_exact(Q, rows, A, sq_q, sq_a, floor, *, k, self_distance):
    """:func:`_knn_block` with ties at the k-th distance broken by index."""
    xp = array_namespace(Q)
    D = _block_distances(Q, rows, A, sq_q, sq_a, self_distance, floor, xp)
    return _k_smallest(D, k, xp)


def _k_smallest(D: Any, k: int, xp: Any) -> Any:
    """Column indices of the k smallest entries of each row, ordered by (value, index).

    A partition finds each row's k-th smallest value t; the entries below t
    and the first (by index) of those equal to t make exactly k per row, so
    ties at the boundary go the same way on every library. A second partition
    on the unique key "column index if chosen, else n + index" gathers them
    with static shapes (no nonzero), which JAX can compile.
    """
    rows, n = D.shape
    columns = xp.broadcast_to(xp.arange(n, device=device(D))[None, :], (rows, n))
    if k < n:
        t = xpx.partition(D, k - 1, axis=1)[:, k - 1 : k]
        below = D < t
        at = D == t
        n_at = k - xp.sum(xp.astype(below, xp.int32), axis=1, keepdims=True)
        chosen = below | (
            at & (xp.cumulative_sum(xp.astype(at, xp.int32), axis=1) <= n_at)
        )
        key = xp.where(chosen, columns, columns + n)
        part = xp.sort(
            xp.take_along_axis(
                columns, xpx.argpartition(key, k - 1, axis=1)[:, :k], axis=1
            ),
            axis=1,
        )
    else:
        part = columns
    # Stable sort of index-ordered candidates: equal distances stay by index.
    order = xp.argsort(xp.take_along_axis(D, part, axis=1), axis=1, stable=True)
    return xp.take_along_axis(part, order, axis=1)
