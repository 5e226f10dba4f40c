"""RankMe, alpha-ReQ and stable rank: the definitions on every backend (float64
to 1e-10), reptrix (by the alpha-ReQ authors) where installed, invariances and
bounds by hypothesis, the centring and sample-count bounds, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st

from infoscope import RepresentationGeometry, alpha_req, rankme, stable_rank
from infoscope.backends import device_name, namespace_and_device, to_numpy

F64 = 1e-10


# ---- the definitions, transcribed plainly


def ref_singular_values(X, center):
    X = np.asarray(X, np.float64)
    if center:
        X = X - X.mean(axis=0)
    return np.linalg.svd(X, compute_uv=False)


def ref_rankme(X, center=False, eps=1e-7):
    s = ref_singular_values(X, center)
    p = s / s.sum() + eps
    return math.exp(-np.sum(p * np.log(p)))


def ref_stable_rank(X, center=False):
    X = np.asarray(X, np.float64)
    if center:
        X = X - X.mean(axis=0)
    return np.linalg.norm(X, "fro") ** 2 / np.linalg.norm(X, 2) ** 2


def ref_alpha(X, first=None, last=None):
    """Ordinary least squares of log eigenvalue on log rank, covariance of X."""
    lam = np.linalg.eigvalsh(np.cov(np.asarray(X, np.float64), rowvar=False))[::-1]
    lam = lam[lam > lam[0] * 1e-12]
    first, last = first or 1, last or lam.size
    i = np.arange(first, last + 1)
    slope, _ = np.polyfit(np.log(i), np.log(lam[first - 1 : last]), 1)
    return -slope


def spectrum_data(seed=0, n=60, d=12, decay=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-decay / 2) + 0.5


def close(actual, expected, dtype):
    tol = F64 if "64" in str(dtype) else 50 * rtol(dtype)
    assert abs(actual - expected) <= tol * max(1.0, abs(expected)), (actual, expected)


# ---- parity, every backend


@pytest.mark.parametrize("center", [False, True])
def test_measures_match_the_definitions(backend, center):
    X = spectrum_data(1)
    dtype = backend.float_dtypes()[-1]
    Xb = backend.asarray(X)
    close(rankme(Xb, center=center), ref_rankme(X, center), dtype)
    close(stable_rank(Xb, center=center), ref_stable_rank(X, center), dtype)
    if center:
        close(alpha_req(Xb), ref_alpha(X), dtype)
    geometry = RepresentationGeometry(center=center).fit(Xb)
    close(geometry.rankme_, ref_rankme(X, center), dtype)
    xp, device = namespace_and_device(geometry.singular_values_)
    assert xp is backend.xp and device_name(device) == device_name(backend.device)
    np.testing.assert_allclose(
        to_numpy(geometry.singular_values_),
        ref_singular_values(X, center),
        rtol=1e-10 if backend.has_float64 else 1e-4,
    )


def test_estimator_auto_centring_is_each_papers_choice():
    X = spectrum_data(2)
    geometry = RepresentationGeometry().fit(X)
    assert geometry.rankme_ == pytest.approx(ref_rankme(X, center=False), abs=F64)
    assert geometry.stable_rank_ == pytest.approx(ref_stable_rank(X), abs=F64)
    assert geometry.alpha_req_ == pytest.approx(ref_alpha(X), abs=F64)
    assert 0.8 < geometry.alpha_req_r2_ <= 1
    centred = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
    np.testing.assert_allclose(geometry.covariance_spectrum_, centred, rtol=1e-10)


def test_alpha_over_a_rank_window_and_inverse_rank_weights():
    X = spectrum_data(3, n=400, d=40, decay=1.3)
    assert alpha_req(X, ranks=(3, 30)) == pytest.approx(ref_alpha(X, 3, 30), abs=F64)
    lam = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
    i = np.arange(3, 31)
    A = np.stack([-np.log(i), np.ones(i.size)], axis=1)
    W = np.diag(1.0 / i)
    expected = np.linalg.solve(A.T @ W @ A, A.T @ W @ np.log(lam[2:30]))[0]
    got = alpha_req(X, ranks=(3, 30), weighting="inverse_rank")
    assert got == pytest.approx(expected, abs=F64)


def test_alpha_matches_reptrix():
    torch = pytest.importorskip("torch")
    reptrix_alpha = pytest.importorskip("reptrix.alpha")
    X = spectrum_data(4, n=600, d=128, decay=1.2)
    expected = reptrix_alpha.get_alpha(torch.as_tensor(X))[0]  # ranks 11..100, 1/i
    got = alpha_req(X, ranks=(11, 100), weighting="inverse_rank")
    assert got == pytest.approx(expected, abs=1e-8)


def test_recovers_a_known_power_law():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20000, 64)) * np.arange(1, 65) ** -0.9  # lambda_i ~ i^-1.8
    assert alpha_req(X) == pytest.approx(1.8, abs=0.1)


# ---- bounds and the centring / sample-count pitfalls


def test_exact_values_of_simple_matrices():
    assert rankme(np.eye(7), eps=0) == pytest.approx(7.0, abs=1e-12)
    assert stable_rank(np.eye(7)) == pytest.approx(7.0)
    assert rankme(np.outer(np.arange(1.0, 6), np.ones(4)), eps=0) == pytest.approx(1.0)
    assert stable_rank(np.diag([3.0, 1.0])) == pytest.approx(10 / 9)


def test_centred_rank_is_at_most_n_minus_1():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(10, 50))  # fewer samples than features
    # The zero singular value of centred data comes out at about 1e-8 s_1
    # (the Gram's resolution), which moves RankMe by about 1e-7.
    assert rankme(X, eps=0) <= 10 + 1e-9
    assert rankme(X, center=True, eps=0) <= 9 + 1e-6
    # n - 1 equal singular values make the centred bound attained.
    simplex = np.eye(10)
    assert rankme(simplex, center=True, eps=0) == pytest.approx(9.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"at most min\(n - 1, d\)"):
        alpha_req(X, ranks=(1, 10))


def test_low_rank_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 40))
    assert rankme(X) < 3 + 40 * 1e-6
    assert 1 <= stable_rank(X) <= 3 + 1e-9


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_invariant_to_orthogonal_maps_and_scaling(seed, scale):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 6)) * np.arange(1, 7) ** -0.7 + rng.normal(size=6)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    P, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    moved = scale * P @ X @ Q  # both sides: the singular values are kept
    assert rankme(moved) == pytest.approx(rankme(X), rel=1e-9)
    assert stable_rank(moved) == pytest.approx(stable_rank(X), rel=1e-9)
    # Centred measures: right orthogonal maps and scaling, plus translations.
    shifted = scale * X @ Q + rng.normal(size=6)
    assert alpha_req(shifted) == pytest.approx(alpha_req(X), abs=1e-8)
    assert rankme(shifted, center=True) == pytest.approx(
        rankme(X, center=True), rel=1e-9
    )


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 30),
    d=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_bounds(n, d, seed):
    X = np.random.default_rng(seed).normal(size=(n, d))
    r = min(n, d)
    assert 1 - 1e-9 <= rankme(X, eps=0) <= r + 1e-6
    assert 1 - 1e-9 <= stable_rank(X) <= r + 1e-9


# ---- bad input


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: rankme(np.zeros((5, 3))), ValueError, "X is zero"),
        (lambda: stable_rank(np.ones((5, 3)), center=True), ValueError, "constant"),
        (lambda: rankme(np.ones(5)), ValueError, "must be 2-D"),
        (lambda: rankme(np.ones((4, 2)), eps=-1.0), ValueError, "eps"),
        (lambda: alpha_req(np.eye(5)[:, :1]), ValueError, "at least 2 eigenvalues"),
        (
            lambda: alpha_req(spectrum_data(), ranks=(5, 3)),
            ValueError,
            "1 <= first < last",
        ),
        (lambda: alpha_req(spectrum_data(), weighting="log"), ValueError, "weighting"),
        (lambda: rankme([[np.nan, 1.0], [1.0, 2.0]]), ValueError, "NaN"),
    ],
)
def test_bad_input_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()
