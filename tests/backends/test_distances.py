import tracemalloc

import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from infoscope.backends import (
    device_name,
    knn_indices,
    namespace_and_device,
    pairwise_sq_distances,
    to_numpy,
)


def _brute_force(X, Y):
    return ((X[:, None, :] - Y[None, :, :]) ** 2).sum(axis=-1)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    # An offset far from the origin: the expansion would lose digits uncentred.
    return rng.standard_normal((30, 5)) + 100.0, rng.standard_normal((7, 5)) + 100.0


def test_pairwise_matches_brute_force(backend, data):
    X, Y = data
    for dtype in backend.float_dtypes():
        x = backend.xp.astype(backend.asarray(X), dtype)
        y = backend.xp.astype(backend.asarray(Y), dtype)
        D = pairwise_sq_distances(x)
        assert D.dtype == dtype
        _, device = namespace_and_device(D)
        assert device_name(device) == device_name(backend.device)
        d = to_numpy(D)
        ref = _brute_force(X, X)
        np.testing.assert_allclose(
            d, ref, rtol=rtol(dtype), atol=rtol(dtype) * ref.max()
        )
        np.testing.assert_array_equal(np.diag(d), 0.0)
        assert (d >= 0).all()
        cross = to_numpy(pairwise_sq_distances(x, y))
        ref = _brute_force(X, Y)
        assert cross.shape == (30, 7)
        np.testing.assert_allclose(
            cross, ref, rtol=rtol(dtype), atol=rtol(dtype) * ref.max()
        )


def test_pairwise_accepts_integers(backend):
    x = backend.asarray(np.array([[0, 0], [3, 4]], dtype=np.int32))
    np.testing.assert_allclose(to_numpy(pairwise_sq_distances(x)), [[0, 25], [25, 0]])


def test_pairwise_has_no_n_by_n_by_d_temporary():
    n, d = 400, 256
    X = np.random.default_rng(0).standard_normal((n, d))
    tracemalloc.start()
    try:
        pairwise_sq_distances(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_by_n = n * n * 8
    assert peak < 3 * n_by_n + 4 * n * d * 8  # n x n x d would be 256 x n_by_n


def test_pairwise_rejects_mismatched_features():
    with pytest.raises(ValueError, match="`X` has 3 features but `Y` has 2"):
        pairwise_sq_distances(np.ones((4, 3)), np.ones((4, 2)))


def test_pairwise_rejects_1d():
    with pytest.raises(
        ValueError, match=r"`X` must be 2-D \(n_samples, n_features\), got shape \(4,\)"
    ):
        pairwise_sq_distances(np.ones(4))


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 4)),
        elements=st.floats(-1e3, 1e3),
    ),
    arrays(np.float64, 4, elements=st.floats(-1e3, 1e3)),
)
def test_property_distances_are_a_shift_invariant_metric_squared(X, shift):
    D = pairwise_sq_distances(X)
    scale = 1e-9 * max(1.0, float(np.abs(X).max()) ** 2)
    np.testing.assert_allclose(D, D.T, atol=scale)
    assert (D >= 0).all()
    np.testing.assert_allclose(D, _brute_force(X, X), atol=scale * 10)
    shifted = pairwise_sq_distances(X + shift[: X.shape[1]])
    np.testing.assert_allclose(shifted, D, atol=scale * 10)


def _knn_reference(X, Q, k, exclude_self):
    D = _brute_force(Q, X)
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    # Lexicographic on (distance, index): ties by index.
    return np.argsort(D, axis=1, kind="stable")[:, :k]


def test_knn_matches_brute_force(backend):
    rng = np.random.default_rng(1)
    for dtype in backend.float_dtypes():
        # Values exact in float32, so both dtypes see the same neighbours.
        X = np.round(rng.standard_normal((50, 3)), 3)
        Q = np.round(rng.standard_normal((9, 3)), 3)
        x = backend.xp.astype(backend.asarray(X), dtype)
        q = backend.xp.astype(backend.asarray(Q), dtype)
        got = to_numpy(knn_indices(x, 5))
        np.testing.assert_array_equal(got, _knn_reference(X, X, 5, False))
        np.testing.assert_array_equal(got[:, 0], np.arange(50))
        got = to_numpy(knn_indices(x, 5, include_self=False))
        np.testing.assert_array_equal(got, _knn_reference(X, X, 5, True))
        got = to_numpy(knn_indices(x, 4, queries=q))
        np.testing.assert_array_equal(got, _knn_reference(X, Q, 4, False))
        _, device = namespace_and_device(knn_indices(x, 2))
        assert device_name(device) == device_name(backend.device)


def test_knn_blocks_do_not_change_the_answer(backend):
    X = np.random.default_rng(2).standard_normal((37, 4))
    x = backend.asarray(X)
    whole = to_numpy(knn_indices(x, 6, block_size=1000))
    for block_size in (1, 5, 36):
        np.testing.assert_array_equal(
            to_numpy(knn_indices(x, 6, block_size=block_size)), whole
        )


def test_knn_self_comes_first_among_duplicates_and_ties_go_by_index(backend):
    X = np.array([[0.0], [0.0], [0.0], [5.0], [1.0], [-1.0]])
    got = to_numpy(knn_indices(backend.asarray(X), 3))
    np.testing.assert_array_equal(got[:3], [[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    np.testing.assert_array_equal(got[4], [4, 0, 1])
    got = to_numpy(knn_indices(backend.asarray(X), 2, include_self=False))
    np.testing.assert_array_equal(got[:3], [[1, 2], [0, 2], [0, 1]])


def test_knn_ties_at_the_kth_distance_go_by_index_in_every_block(backend):
    # Points of a small integer grid: most rows have several points at their
    # k-th distance, some none; blocks mix rows of both kinds. 64 points of
    # halves: the centring mean and every distance are exact.
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, size=(64, 2)).astype(float)
    X[::7] += 0.5  # rows with no tie at the boundary
    x = backend.asarray(X)
    D = _brute_force(X, X)
    for k, exclude in ((1, True), (4, True), (6, False)):
        # A point is its own first neighbour, or none of its own.
        np.fill_diagonal(D, np.inf if exclude else -np.inf)
        expected = np.argsort(D, axis=1, kind="stable")[:, :k]
        for block_size in (None, 7):
            got = to_numpy(
                knn_indices(x, k, include_self=not exclude, block_size=block_size)
            )
            np.testing.assert_array_equal(got, expected)


def test_knn_tells_apart_distances_that_float32_rounds_together(backend):
    # Distances 1 + j * 2^-40 from the origin: distinct in float64, one value
    # in float32 (JAX's float64 search preselects in float32).
    if backend.xp.float64 not in backend.float_dtypes():
        pytest.skip("float64 only")
    offsets = np.arange(40.0)[::-1] * 2.0**-40
    X = np.concatenate([[[0.0]], (1.0 + offsets)[:, None], [[3.0]] * 23])
    got = to_numpy(knn_indices(backend.asarray(X), 5, include_self=False))
    np.testing.assert_array_equal(got[0], [40, 39, 38, 37, 36])
    got = to_numpy(knn_indices(backend.asarray(X), 5, queries=backend.asarray(X[:1])))
    np.testing.assert_array_equal(got[0], [0, 40, 39, 38, 37])


def test_knn_of_many_points_matches_brute_force_with_ties(backend):
    # Wide rows (NumPy searches them from a sample of the columns), points of
    # a grid of halves with many ties, in blocks of rows.
    X = np.random.default_rng(4).integers(0, 7, size=(1024, 2)) / 2.0
    x = backend.asarray(X)
    D = _brute_force(X, X)
    for k, exclude in ((3, True), (7, False)):
        np.fill_diagonal(D, np.inf if exclude else -np.inf)
        expected = np.argsort(D, axis=1, kind="stable")[:, :k]
        got = knn_indices(x, k, include_self=not exclude, block_size=300)
        np.testing.assert_array_equal(to_numpy(got), expected)


def test_knn_all_points(backend):
    X = np.array([[0.0], [2.0], [3.0]])
    got = to_numpy(knn_indices(backend.asarray(X), 3))
    np.testing.assert_array_equal(got, [[0, 1, 2], [1, 2, 0], [2, 1, 0]])


@pytest.mark.parametrize(
    ("k", "include_self", "message"),
    [
        (
            0,
            True,
            r"between 1 and 4 \(the number of candidate points\), got 0",
        ),
        (5, True, r"between 1 and 4 .* got 5; pass a smaller n_neighbors"),
        (
            4,
            False,
            r"between 1 and 3 \(the number of candidate points, self excluded\), got 4",
        ),
    ],
)
def test_knn_rejects_bad_n_neighbors(k, include_self, message):
    with pytest.raises(ValueError, match=message):
        knn_indices(np.ones((4, 2)), k, include_self=include_self)


def test_knn_rejects_non_integer_n_neighbors():
    with pytest.raises(TypeError, match="n_neighbors must be an integer, got float"):
        knn_indices(np.ones((4, 2)), 2.0)


def test_pairwise_on_dask_stays_lazy_and_matches():
    da = pytest.importorskip("dask.array")
    X = np.random.default_rng(3).standard_normal((40, 3))
    D = pairwise_sq_distances(da.from_array(X, chunks=10))
    assert isinstance(D, da.Array)
    np.testing.assert_allclose(to_numpy(D), _brute_force(X, X), atol=1e-12)


def test_knn_refuses_dask_with_the_fix():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match=r"knn_indices does not run on dask arrays"):
        knn_indices(da.ones((5, 2)), 2)


@pytest.mark.parametrize("block_size", [0, -3])
def test_knn_rejects_bad_block_size(block_size):
    with pytest.raises(
        ValueError, match=rf"block_size must be at least 1 or None, got {block_size}"
    ):
        knn_indices(np.ones((4, 2)), 2, block_size=block_size)


@pytest.mark.parametrize(
    ("name", "value"), [("block_size", 2.5), ("n_neighbors", True), ("block_size", "3")]
)
def test_knn_rejects_non_integers(name, value):
    kwargs = {"n_neighbors": 2, name: value}
    n_neighbors = kwargs.pop("n_neighbors")
    with pytest.raises(
        TypeError, match=rf"{name} must be an integer, got {type(value).__name__}"
    ):
        knn_indices(np.ones((4, 2)), n_neighbors, **kwargs)


def test_knn_accepts_numpy_integers():
    got = knn_indices(np.arange(4.0)[:, None], np.int64(2), block_size=np.int32(2))
    np.testing.assert_array_equal(got, [[0, 1], [1, 0], [2, 1], [3, 2]])


def test_knn_rejects_queries_with_other_features():
    with pytest.raises(
        ValueError,
        match="`X` has 3 features but `queries` has 2; distances need the same features in both",
    ):
        knn_indices(np.ones((4, 3)), 2, queries=np.ones((2, 2)))
