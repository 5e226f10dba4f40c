"""Similarity matrices, mutual kNN alignment, CKNNA and their permutation null.

Parity with the definitions of DESIGN section 7 on every backend (float64 to
1e-10), the streamed linear CKA (any split gives one pass; unit diagonal),
the two forms of linear CKA agreeing, the entries matching infoscope.cka,
invariances by hypothesis, the permutation null (uniform p-values under
independence, the fast relabelled null equal to recomputing, the reference
package calibrated-similarity given the same permutations), and bad input.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from infoscope import (
    SimilarityMatrix,
    cka,
    cknna,
    mutual_knn_alignment,
    similarity_matrix,
    similarity_test,
)
from infoscope.backends import device_name, namespace_and_device, to_numpy
from infoscope.estimators import permutation as permutation_module
from infoscope.estimators import similarity as similarity_module

F64 = 1e-10
MEASURES = ["linear_cka", "rbf_cka", "mutual_knn", "cknna"]


# ---- the definitions, transcribed plainly (NumPy, float64, n x n matrices)


def ref_hsic(K, L, unbiased):
    n = len(K)
    if not unbiased:
        H = np.eye(n) - 1.0 / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ Kt @ Lt @ one
    ) / (n * (n - 3))


def ref_cka(X, Y, unbiased=False, sigma=None):
    def gram(A):
        A = np.asarray(A, np.float64)
        if sigma is None:
            return A @ A.T
        D2 = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
        s = (
            sigma
            if sigma != "median"
            else np.median(np.sqrt(D2[np.triu_indices(len(A), 1)]))
        )
        return np.exp(-D2 / (2 * s**2))

    K, L = gram(X), gram(Y)
    return ref_hsic(K, L, unbiased) / math.sqrt(
        ref_hsic(K, K, unbiased) * ref_hsic(L, L, unbiased)
    )


def ref_neighbours(X, k):
    X = np.asarray(X, np.float64)
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D2, np.inf)
    return [set(np.argsort(row, kind="stable")[:k]) for row in D2]


def ref_mutual_knn(X, Y, k):
    a, b = ref_neighbours(X, k), ref_neighbours(Y, k)
    return np.mean([len(s & t) / k for s, t in zip(a, b, strict=True)])


def ref_cknna(X, Y, k):
    Xc = np.asarray(X, np.float64) - np.mean(X, axis=0)
    Yc = np.asarray(Y, np.float64) - np.mean(Y, axis=0)
    K, L = Xc @ Xc.T, Yc @ Yc.T  # = H K H, H L H for the linear kernel
    a, b = ref_neighbours(X, k), ref_neighbours(Y, k)

    def align(K, L, sets):
        return sum(K[i, j] * L[i, j] for i, s in enumerate(sets) for j in s)

    mutual = [s & t for s, t in zip(a, b, strict=True)]
    return align(K, L, mutual) / math.sqrt(align(K, K, a) * align(L, L, b))


REFERENCE = {
    "linear_cka": lambda X, Y, deb, k: ref_cka(X, Y, deb),
    "rbf_cka": lambda X, Y, deb, k: ref_cka(X, Y, deb, sigma="median"),
    "mutual_knn": lambda X, Y, deb, k: ref_mutual_knn(X, Y, k),
    "cknna": lambda X, Y, deb, k: ref_cknna(X, Y, k),
}


def network(seed=0, n=40, widths=(6, 5, 4)):
    """Layers of a small random tanh network: related, not identical."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, 5))
    layers = []
    for w in widths:
        h = np.tanh(
            h @ rng.normal(size=(h.shape[1], w)) + 0.3 * rng.normal(size=(n, w))
        )
        layers.append(h)
    return layers


def close(actual, expected, dtype, scale=1.0):
    tol = F64 if "64" in str(dtype) else 20 * rtol(dtype)
    assert abs(actual - expected) <= tol * max(abs(expected), scale), (actual, expected)


# ---- parity with the definitions, every backend


@pytest.mark.parametrize(
    ("measure", "debiased"),
    [(m, False) for m in MEASURES] + [("linear_cka", True), ("rbf_cka", True)],
)
def test_matrix_matches_the_definitions(backend, measure, debiased):
    a, b = network(0, widths=(6, 4)), network(1, widths=(4,))
    S = similarity_matrix(
        [backend.asarray(x) for x in a],
        [backend.asarray(y) for y in b],
        measure=measure,
        debiased=debiased,
        n_neighbors=5,
    )
    xp, device = namespace_and_device(S)
    assert xp is backend.xp and device_name(device) == device_name(backend.device)
    assert tuple(S.shape) == (2, 1)
    got = to_numpy(S)
    for i, X in enumerate(a):
        for j, Y in enumerate(b):
            close(float(got[i, j]), REFERENCE[measure](X, Y, debiased, 5), S.dtype)


@pytest.mark.parametrize("measure", ["mutual_knn", "cknna"])
def test_pair_functions_match_the_definitions(backend, measure):
    X, Y = network(2)[0], network(3)[1]
    fn = mutual_knn_alignment if measure == "mutual_knn" else cknna
    value = fn(backend.asarray(X), backend.asarray(Y), n_neighbors=4)
    close(value, REFERENCE[measure](X, Y, False, 4), backend.float_dtypes()[-1])


def paper_cknna(X, Y, k):
    """Huh et al. 2024, appendix A, eqs. 12 and 16-18 as written: each row
    of the Gram centred by its own mean, ``K_ij - E_l K_il``."""
    K, L = X @ X.T, Y @ Y.T
    Kr = K - K.mean(axis=1, keepdims=True)
    Lr = L - L.mean(axis=1, keepdims=True)
    a, b = ref_neighbours(X, k), ref_neighbours(Y, k)

    def align(A, B, sets):
        return sum(A[i, j] * B[i, j] for i, s in enumerate(sets) for j in s)

    mutual = [s & t for s, t in zip(a, b, strict=True)]
    return align(Kr, Lr, mutual) / math.sqrt(align(Kr, Kr, a) * align(Lr, Lr, b))


def test_cknna_is_the_papers_formula_on_centred_data_and_translation_free():
    # Eq. 12 centres each row (not symmetric, and it changes when the data
    # move); eqs. 13-15 and the paper's limit k -> n (CKA) treat the result
    # as CKA's H K H. infoscope takes H K H: the literal formula on
    # column-centred data, and unchanged by a translation.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 6))
    Y = np.tanh(X @ rng.normal(size=(6, 4))) + 0.2 * rng.normal(size=(80, 4))
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    value = cknna(Xc, Yc, n_neighbors=7)
    assert value == pytest.approx(paper_cknna(Xc, Yc, 7), abs=1e-12)
    moved = cknna(X + 3.0, Y - 2.0, n_neighbors=7)
    assert moved == pytest.approx(value, abs=1e-12)
    # The literal row centring is not translation-free: it moves.
    assert abs(paper_cknna(X + 3.0, Y - 2.0, 7) - value) > 1e-3


def test_mutual_knn_reproduces_platonic_rep_on_normalised_rows():
    # platonic-rep: rows L2-normalised, neighbours of largest inner product.
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(60, 9)), rng.normal(size=(60, 4))
    X[:, 0] += 3 * Y[:, 0]

    def inner_product_knn(F, k):
        G = F @ F.T
        np.fill_diagonal(G, -np.inf)
        return np.argsort(-G, axis=1, kind="stable")[:, :k]

    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    a, b = inner_product_knn(Xn, 6), inner_product_knn(Yn, 6)
    expected = np.mean([len(set(r) & set(s)) / 6 for r, s in zip(a, b, strict=True)])
    assert mutual_knn_alignment(Xn, Yn, n_neighbors=6) == pytest.approx(
        expected, abs=1e-12
    )


def test_rbf_entries_are_infoscope_cka():
    a, b = network(5), network(6, widths=(2, 8))
    S = similarity_matrix(a, b, measure="rbf_cka", debiased=True)
    for i, X in enumerate(a):
        for j, Y in enumerate(b):
            assert S[i, j] == pytest.approx(cka(X, Y, estimator="unbiased"), abs=1e-12)
    S = similarity_matrix(a, b, measure="rbf_cka", sigma=2.0)
    assert S[1, 0] == pytest.approx(cka(a[1], b[0], sigma_x=2.0), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_feature_and_gram_forms_of_linear_cka_agree(monkeypatch, debiased, symmetric):
    a, b = network(7), None if symmetric else network(8, widths=(9, 2))
    features = similarity_matrix(a, b, debiased=debiased)
    monkeypatch.setattr(similarity_module, "_features_are_smaller", lambda *args: False)
    grams = similarity_matrix(a, b, debiased=debiased)
    np.testing.assert_allclose(features, grams, rtol=0, atol=1e-13)


# ---- streaming


@pytest.mark.parametrize("debiased", [False, True])
def test_streamed_linear_cka_is_one_pass_with_a_unit_diagonal(backend, debiased):
    a, b = network(9, n=90), network(10, n=90, widths=(3, 8))
    dtype = backend.float_dtypes()[-1]
    est = SimilarityMatrix(debiased=debiased)
    # Equal chunks: JAX compiles the chunk's sums once per chunk shape.
    for rows in (slice(0, 30), slice(30, 60), slice(60, 90)):
        est.partial_fit(
            {f"l{i}": backend.asarray(x[rows]) for i, x in enumerate(a)},
            [backend.asarray(y[rows]) for y in b],
        )
    whole = SimilarityMatrix(debiased=debiased).fit(
        [backend.asarray(x) for x in a], [backend.asarray(y) for y in b]
    )
    assert est.n_samples_seen_ == 90 and est.layer_names_a_ == ["l0", "l1", "l2"]
    tol = F64 if dtype == backend.xp.float64 else 20 * rtol(dtype)
    np.testing.assert_allclose(to_numpy(est.matrix_), to_numpy(whole.matrix_), atol=tol)
    for i, X in enumerate(a):
        for j, Y in enumerate(b):
            close(float(to_numpy(est.matrix_)[i, j]), ref_cka(X, Y, debiased), dtype)
    # The same layers on both sides, streamed: the diagonal is 1 to rounding.
    same = SimilarityMatrix(debiased=debiased)
    for rows in (slice(0, 30), slice(30, 60), slice(60, 90)):
        chunk = [backend.asarray(x[rows]) for x in a]
        same.partial_fit(chunk, chunk)
    diagonal = np.diag(to_numpy(same.matrix_))
    eps = np.finfo(np.float64 if dtype == backend.xp.float64 else np.float32).eps
    assert np.all(np.abs(diagonal - 1) <= 100 * eps), diagonal


@pytest.mark.parametrize("debiased", [False, True])
def test_any_split_gives_the_one_pass_matrix(debiased):
    a, b = network(29, n=60), network(30, n=60, widths=(2, 9))
    whole = similarity_matrix(a, b, debiased=debiased)
    est = SimilarityMatrix(debiased=debiased)
    for rows in (slice(0, 1), slice(1, 8), slice(8, 60)):
        est.partial_fit([x[rows] for x in a], [y[rows] for y in b])
    np.testing.assert_allclose(est.matrix_, whole, rtol=0, atol=1e-13)


def test_streamed_float32_keeps_float32_and_wide_sums():
    a = [x.astype(np.float32) + 1000 for x in network(11, n=200)]
    est = SimilarityMatrix()
    for rows in (slice(0, 100), slice(100, 200)):
        est.partial_fit([x[rows] for x in a])
    assert est.matrix_.dtype == np.float32
    np.testing.assert_allclose(
        est.matrix_, similarity_matrix([x.astype(np.float64) for x in a]), atol=1e-5
    )


def test_partial_fit_refuses_other_measures_and_other_layers():
    a = network(12)
    with pytest.raises(ValueError, match="only 'linear_cka' streams"):
        SimilarityMatrix(measure="mutual_knn").partial_fit(a)
    est = SimilarityMatrix().partial_fit(a)
    with pytest.raises(ValueError, match="widths"):
        est.partial_fit(a[:2])


# ---- properties


def _orthogonal(rng, d):
    Q, R = np.linalg.qr(rng.normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 100),
    measure=st.sampled_from(MEASURES[:1] + MEASURES[2:]),
)
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(seed, scale, measure):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(30, 5)), rng.normal(size=(30, 4))
    Y[:, 0] += X[:, 0]
    moved = scale * X @ _orthogonal(rng, 5) + rng.normal(size=5)
    before = similarity_matrix([X], [Y], measure=measure, n_neighbors=4)
    after = similarity_matrix([moved], [Y], measure=measure, n_neighbors=4)
    np.testing.assert_allclose(after, before, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), measure=st.sampled_from(MEASURES))
def test_identical_inputs_give_the_maximum(seed, measure):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(25, 3)), rng.normal(size=(25, 6))
    S = similarity_matrix([X, Y], [X, Y], measure=measure, n_neighbors=3)
    np.testing.assert_allclose(np.diag(S), 1.0, atol=1e-12)
    assert np.all(S <= 1 + 1e-12)


def test_chance_level_of_mutual_knn_is_k_over_n_minus_1():
    rng = np.random.default_rng(13)
    values = [
        mutual_knn_alignment(
            rng.normal(size=(100, 3)), rng.normal(size=(100, 3)), n_neighbors=5
        )
        for _ in range(20)
    ]
    assert np.mean(values) == pytest.approx(5 / 99, rel=0.15)


# ---- the permutation null


@pytest.mark.parametrize("measure", MEASURES)
def test_fast_null_equals_recomputing_on_permuted_samples(measure):
    rng = np.random.default_rng(14)
    X, Y = network(15, n=30)[1], network(16, n=30)[2]
    params = {
        "measure": measure,
        "debiased": False,
        "sigma": "median",
        "n_neighbors": 4,
    }
    score = permutation_module._measure(X, Y, params, rng, "test")
    for _ in range(3):
        order = rng.permutation(30)
        direct = similarity_matrix([X], [Y[order]], **params)[0, 0]
        assert score(order) == pytest.approx(direct, abs=1e-12)


def test_linear_null_by_features_and_by_grams_agree():
    X, Y = network(17, n=40)[0], network(18, n=40)[1]
    params = {
        "measure": "linear_cka",
        "debiased": True,
        "sigma": "median",
        "n_neighbors": 3,
    }
    by_features = permutation_module._LinearFeatures(X, Y, True)
    by_grams = permutation_module._Grams(X, Y, "linear", "median", True, None)
    order = np.random.default_rng(0).permutation(40)
    assert by_features(order) == pytest.approx(by_grams(order), abs=1e-12)
    assert permutation_module._measure(X, Y, params, None, "t").__class__ is (
        permutation_module._LinearFeatures
    )


def test_pvalues_are_uniform_under_independence():
    rng = np.random.default_rng(19)
    pvalues = [
        similarity_test(
            rng.normal(size=(20, 3)),
            rng.normal(size=(20, 2)),
            n_permutations=39,
            random_state=rng,
        ).pvalue
        for _ in range(150)
    ]
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert np.mean(np.array(pvalues) <= 0.05) < 0.1


@pytest.mark.parametrize("measure", MEASURES)
def test_related_representations_are_significant_and_calibrated(measure):
    rng = np.random.default_rng(20)
    X = rng.normal(size=(80, 6))
    Y = X @ rng.normal(size=(6, 4)) + 0.3 * rng.normal(size=(80, 4))
    result = similarity_test(X, Y, measure=measure, n_permutations=99, random_state=0)
    assert result.pvalue == pytest.approx(0.01)
    assert 0 < result.calibrated <= 1 and result.adjusted > result.calibrated - 1
    assert result.zscore > 3
    assert result.threshold < result.statistic


def test_raw_cka_of_noise_grows_with_width_but_the_calibrated_score_does_not():
    rng = np.random.default_rng(21)
    raw, calibrated = [], []
    for width in (5, 200):
        result = similarity_test(
            rng.normal(size=(60, width)), rng.normal(size=(60, width)), random_state=0
        )
        raw.append(result.statistic)
        calibrated.append(result.calibrated)
    assert raw[1] > raw[0] + 0.3
    assert calibrated == [0.0, 0.0] or max(calibrated) < 0.1


def test_same_seed_same_result_on_every_backend(backend):
    X, Y = network(22, n=30)[0], network(23, n=30)[1]
    expected = similarity_test(X, Y, n_permutations=10, random_state=5)
    got = similarity_test(
        backend.asarray(X), backend.asarray(Y), n_permutations=10, random_state=5
    )
    assert got.pvalue == expected.pvalue
    tol = F64 if backend.has_float64 else 1e-4
    assert got.statistic == pytest.approx(expected.statistic, abs=tol)


def test_matches_calibrated_similarity_given_the_same_permutations():
    torch = pytest.importorskip("torch")
    calibrated_similarity = pytest.importorskip("calibrated_similarity")
    X, Y = network(24, n=50)[0], network(25, n=50)[2]
    ours = similarity_test(X, Y, n_permutations=60, alpha=0.1, random_state=3)
    draws = np.random.default_rng(3)
    orders = iter([draws.permutation(50) for _ in range(60)])

    def perm_fn(n, device):
        return torch.as_tensor(next(orders), device=device)

    def sim(A, B):
        return cka(A.numpy(), B.numpy(), kernel_x="linear")

    score, pvalue, tau = calibrated_similarity.calibrate(
        torch.as_tensor(X), torch.as_tensor(Y), sim, K=60, alpha=0.1, perm_fn=perm_fn
    )
    assert ours.pvalue == pytest.approx(float(pvalue), abs=1e-6)
    assert ours.threshold == pytest.approx(float(tau), abs=1e-6)
    assert ours.calibrated == pytest.approx(float(score), abs=1e-5)


def test_summarize_formulas():
    result = permutation_module.summarize(
        0.8, np.array([0.1, 0.2, 0.3, 0.9]), alpha=0.25
    )
    assert result.pvalue == pytest.approx(2 / 5)
    # sorted [0.1, 0.2, 0.3, 0.8, 0.9]: index ceil(0.75 * 5) - 1 = 3
    assert result.threshold == 0.8 and result.calibrated == 0.0
    assert result.adjusted == pytest.approx((0.8 - 0.375) / (1 - 0.375))
    assert result.zscore == pytest.approx((0.8 - 0.375) / np.std([0.1, 0.2, 0.3, 0.9]))


# ---- bad input


def test_sample_count_mismatch_is_an_error_naming_both_layers():
    a, b = network(26, n=40), network(27, n=39)
    with pytest.raises(
        ValueError, match=r"`layers_a\[0\]` has 40 samples but `layers_b\[1\]`"
    ):
        similarity_matrix(a, [b[0][:40] if len(b[0]) >= 40 else a[0], b[1]])
    with pytest.raises(ValueError, match="`X` has 40 samples but `Y` has 39"):
        similarity_test(a[0], b[0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: similarity_matrix(np.ones((5, 2))), TypeError, "list \\(or dict\\)"),
        (lambda: similarity_matrix([]), ValueError, "`layers_a` is empty"),
        (lambda: similarity_matrix(network(0), measure="svcca"), ValueError, "measure"),
        (
            lambda: similarity_matrix(
                network(0, n=5), measure="mutual_knn", n_neighbors=5
            ),
            ValueError,
            "at most 4 neighbours",
        ),
        (
            lambda: similarity_matrix([np.ones((3, 2))], debiased=True),
            ValueError,
            "needs at least 4",
        ),
        (
            lambda: similarity_test(np.ones((9, 2)), np.arange(18.0).reshape(9, 2)),
            ValueError,
            "constant",
        ),
        (lambda: similarity_test(*network(0)[:2], alpha=1.5), ValueError, "alpha"),
    ],
)
def test_bad_input_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_constant_layer_gives_nan_with_a_warning():
    a = network(28)
    with pytest.warns(RuntimeWarning, match="constant"):
        S = similarity_matrix([*a, np.ones((40, 3))])
    assert np.isnan(S[3]).all() and not np.isnan(S[:3, :3]).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        similarity_matrix(a)


@pytest.mark.parametrize("debiased", [False, True])
def test_dask_layers_give_the_matrix_from_their_chunks(debiased):
    da = pytest.importorskip("dask.array")
    a, b = network(31, n=200), network(32, n=200, widths=(3,))
    S = similarity_matrix(
        [da.from_array(x, chunks=(50, -1)) for x in a],
        [da.from_array(y, chunks=(50, -1)) for y in b],
        debiased=debiased,
    )
    assert isinstance(S, da.Array)
    np.testing.assert_allclose(
        np.asarray(S), similarity_matrix(a, b, debiased=debiased), atol=1e-13
    )
    with pytest.raises(TypeError, match="dask"):
        similarity_matrix([da.from_array(x) for x in a], measure="mutual_knn")
