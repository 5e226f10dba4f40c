"""Order statistics: the selection behind the median bandwidth."""

from __future__ import annotations

import numpy as np
import pytest

from infoscope.backends import (
    off_diagonal_middle,
    order_statistics,
    pairwise_sq_distances,
    to_numpy,
)
from infoscope.kernels import median_distance


@pytest.mark.parametrize("n", [2, 3, 4, 9, 60])
def test_off_diagonal_middle_is_the_median_pair_on_every_backend(backend, n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3))
    X[1] = X[0]  # a duplicate point: a zero off the diagonal
    pairs = np.sort([np.sum((a - b) ** 2) for i, a in enumerate(X) for b in X[i + 1 :]])
    m = len(pairs)
    expected = (pairs[(m - 1) // 2], pairs[m // 2])
    D2 = pairwise_sq_distances(backend.asarray(X))
    np.testing.assert_allclose(off_diagonal_middle(D2), expected, rtol=1e-5, atol=1e-6)
    # The device path: the same values at ranks n + m - 1 and n + m of the
    # flattened matrix (n diagonal zeros first, every pair twice).
    flat = backend.xp.reshape(D2, (-1,))
    np.testing.assert_allclose(
        order_statistics(flat, (n + m - 1, n + m)), expected, rtol=1e-5, atol=1e-6
    )
    assert median_distance(backend.asarray(X)) == pytest.approx(
        float(np.median(np.sqrt(pairs))), rel=1e-5
    )


def test_order_statistics_leave_the_input_alone(backend):
    x = backend.asarray(np.array([3.0, 1.0, 2.0, 5.0]))
    assert order_statistics(x, (0, 3)) == [1.0, 5.0]
    np.testing.assert_array_equal(to_numpy(x), [3.0, 1.0, 2.0, 5.0])
