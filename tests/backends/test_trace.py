"""Deflated stochastic Lanczos quadrature with a given deflation basis."""

from __future__ import annotations

import numpy as np
import pytest

from infoscope.backends._trace import spectral_sums, top_eigenpairs


def _low_rank_plus_diagonal(n=500, rank=80, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, rank)))
    M = rng.normal(size=(rank, rank))
    core = M @ M.T / rank + np.diag(np.linspace(5.0, 0.5, rank))
    c = rng.uniform(0.01, 0.02, size=n)
    A = Q @ core @ Q.T + np.diag(c)
    E1 = Q.T @ (c[:, None] * Q)
    E2 = Q.T @ (c[:, None] ** 2 * Q)
    products = (core + E1, core @ core + core @ E1 + E1 @ core + E2)
    return A, Q, c, products


FUNCTIONS = [lambda w: w, lambda w: w * np.log(np.maximum(w, 1e-300))]


def _sums(A, **kwargs):
    return spectral_sums(
        lambda V: A @ V,
        A.shape[0],
        FUNCTIONS,
        xp=np,
        device="cpu",
        dtype=np.float64,
        rng=np.random.default_rng(1),
        **kwargs,
    )


def test_known_products_give_the_ritz_pairs_of_the_products_with_a():
    A, Q, _, products = _low_rank_plus_diagonal()
    by_products = _sums(A, basis=Q)  # 80 columns: two blocks of 64
    known = _sums(A, basis=Q, products=products)
    np.testing.assert_allclose(known.ritz_values, by_products.ritz_values, rtol=1e-12)
    np.testing.assert_allclose(known.residuals, by_products.residuals, atol=1e-12)
    whole = Q.T @ A @ Q
    np.testing.assert_allclose(
        np.sort(known.ritz_values), np.linalg.eigvalsh(whole), rtol=1e-12
    )
    # Ritz pairs of a basis that is not invariant have residuals, and the
    # reported ones are the true ||A y - theta y||^2.
    Y = known.ritz_vectors(80)
    true = np.sum((A @ Y - Y * known.ritz_values) ** 2, axis=0)
    np.testing.assert_allclose(known.residuals, true, rtol=1e-6, atol=1e-14)
    assert true.max() > 1e-6


def test_the_complement_product_gives_the_same_estimates_as_the_full_one():
    A, Q, c, products = _low_rank_plus_diagonal()
    full = _sums(A, basis=Q, products=products)
    cheap = _sums(
        A, basis=Q, products=products, apply_complement=lambda V: c[:, None] * V
    )
    np.testing.assert_allclose(cheap.estimates, full.estimates, rtol=1e-10)
    w = np.linalg.eigvalsh(A)
    exact = [np.sum(f(w)) for f in FUNCTIONS]
    np.testing.assert_allclose(cheap.estimates, exact, rtol=2e-3)


def test_a_basis_too_wide_for_one_product_is_taken_in_blocks():
    A, Q, _, _ = _low_rank_plus_diagonal(rank=150)
    calls = []

    def apply(V):
        calls.append(V.shape[1])
        return A @ V

    values, vectors = top_eigenpairs(
        apply,
        A.shape[0],
        5,
        xp=np,
        device="cpu",
        dtype=np.float64,
        rng=np.random.default_rng(0),
        basis=Q,
    )
    assert max(calls) == 64
    assert sum(calls) == 2 * 150
    whole = np.linalg.eigvalsh(Q.T @ A @ Q)[::-1][:5]
    np.testing.assert_allclose(values, whole, rtol=1e-12)
    assert vectors.shape == (A.shape[0], 5)


@pytest.mark.parametrize("n_deflate", [10, 40])
def test_the_subspace_iteration_still_deflates_without_a_basis(n_deflate):
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.normal(size=(400, 400)))
    w = np.maximum(0.8 ** np.arange(400), 0.01)
    A = (U * w) @ U.T
    sums = _sums(A, n_deflate=n_deflate)
    assert sums.ritz_values.shape == (n_deflate,)
    np.testing.assert_allclose(sums.ritz_values[:2], w[:2], rtol=1e-6)
    exact = [np.sum(f(w)) for f in FUNCTIONS]
    np.testing.assert_allclose(sums.estimates, exact, rtol=1e-2)
