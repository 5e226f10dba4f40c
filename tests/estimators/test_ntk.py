"""The NTK family (ZnNL/papyrus): von Neumann entropy and class mutual information
of a kernel matrix, against plain NumPy transcriptions of DESIGN section 4 and of
ZnNL's EntropyAnalysis formula, on every backend; properties, kernel callables
bound to the adapters, bad input and the scikit-learn contract."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from infoscope.backends import (
    as_float,
    device_name,
    namespace_and_device,
    namespace_name,
    pairwise_sq_distances,
    to_numpy,
)
from infoscope.estimators.ntk import (
    NTKEntropy,
    NTKMutualInformation,
    NTKMutualInformationResult,
    ntk_entropy,
    ntk_mutual_information,
)

F64 = 1e-10  # the tolerance for float64


# ---- the definitions, transcribed plainly (NumPy, float64)


def reference_entropy(K, *, base=2.0, normalize=False, effective=False):
    """DESIGN section 4: eigenvalues, negatives to 0, p = lambda / sum, -sum p log p."""
    K = np.asarray(K, dtype=np.float64)
    if normalize:
        d = np.sqrt(np.diag(K))
        K = K / np.outer(d, d)
    lam = np.linalg.eigvalsh(K)
    lam = np.where(lam < 0, 0.0, lam)
    p = lam / lam.sum()
    nats = -sum(pi * math.log(pi) for pi in p if pi > 0)
    if effective:
        return nats / math.log(len(lam))
    return nats / math.log(base)


def znnl_effective_entropy(K):
    """ZnNL's EntropyAnalysis formula as the issue states it: eigenvalues clipped
    at 1e-14, divided by their sum, natural log, divided by log of their count."""
    lam = np.clip(np.linalg.eigh(np.asarray(K, dtype=np.float64))[0], 1e-14, None)
    lam = lam / lam.sum()
    return float(-np.sum(lam * np.log(lam)) / np.log(len(lam)))


def reference_mutual_information(K, y, classes, base=2.0):
    """Entropy of every combination; I(A;B) = S_A + S_B - S_(A u B)."""
    entropies = {}
    for size in range(1, len(classes) + 1):
        for combo in itertools.combinations(classes, size):
            rows = np.flatnonzero(np.isin(y, combo))
            entropies[combo] = reference_entropy(K[np.ix_(rows, rows)], base=base)
    c = len(classes)
    mi, nmi = np.empty((c, c)), np.empty((c, c))
    for a, b in itertools.product(range(c), repeat=2):
        A, B = classes[a], classes[b]
        if a == b:
            mi[a, b], nmi[a, b] = entropies[(A,)], 1.0
            continue
        union = entropies[tuple(sorted((A, B), key=list(classes).index))]
        mi[a, b] = entropies[(A,)] + entropies[(B,)] - union
        nmi[a, b] = 2 * mi[a, b] / (entropies[(A,)] + entropies[(B,)])
    return entropies, mi, nmi


def gram(n=12, rank=None, seed=0, spread=True):
    """A PSD "NTK": the Gram matrix of n random gradients of dimension `rank`."""
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((n, rank or 3 * n))
    if spread:
        J *= rng.uniform(0.3, 3.0, size=(n, 1))  # unequal gradient norms
    return J @ J.T


def indefinite(seed=0):
    """A symmetric matrix with eigenvalues 4, 2, 1, 0.5, -0.25, -1."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    return (Q * np.array([4.0, 2.0, 1.0, 0.5, -0.25, -1.0])) @ Q.T


def assert_on_backend(array, backend):
    xp, device = namespace_and_device(array)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)


def gaussian_kernel_callable(X):
    """A kernel callable on ordinary 2-D data (scikit-learn's checks), any library."""
    xp, _ = namespace_and_device(X)
    X = as_float(X)
    return xp.exp(-pairwise_sq_distances(X) / (2.0 * X.shape[1]))


# ---- parity with the definition on every backend


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "cosine"])
@pytest.mark.parametrize("base", [2, math.e, 10], ids=["bits", "nats", "dits"])
def test_entropy_matches_the_definition(backend, normalize, base):
    K = gram(n=12, rank=8)  # rank-deficient: zero eigenvalues, rounding negatives
    for dtype in backend.float_dtypes():
        Kb = backend.asarray(K, np.float32 if dtype == backend.xp.float32 else None)
        K_used = to_numpy(Kb)  # the float32 rounding is part of the input
        tol = F64 if dtype == backend.xp.float64 else rtol(dtype)
        for effective in (False, True):
            value = ntk_entropy(Kb, effective=effective, normalize=normalize, base=base)
            expected = reference_entropy(
                K_used, base=base, normalize=normalize, effective=effective
            )
            assert isinstance(value, float)
            assert value == pytest.approx(expected, rel=tol, abs=tol)
        est = NTKEntropy(normalize=normalize, base=base).fit(Kb)
        assert est.entropy_ == pytest.approx(
            reference_entropy(K_used, base=base, normalize=normalize), rel=tol
        )
        assert est.effective_entropy_ == pytest.approx(
            reference_entropy(K_used, normalize=normalize, effective=True), rel=tol
        )
        assert_on_backend(est.eigenvalues_, backend)
        assert est.eigenvalues_.dtype == Kb.dtype


def test_eigenvalues_are_all_of_them_descending_and_unclipped(backend):
    K = indefinite()
    est = NTKEntropy().fit(backend.asarray(K))
    expected = np.sort(np.linalg.eigvalsh(K))[::-1]
    tol = F64 if backend.has_float64 else 1e-5
    np.testing.assert_allclose(to_numpy(est.eigenvalues_), expected, atol=tol)
    assert est.n_clipped_ == 2
    # The entropy is that of the positive part: 4, 2, 1, 0.5 over 7.5.
    p = np.array([4.0, 2.0, 1.0, 0.5]) / 7.5
    assert est.entropy_ == pytest.approx(-np.sum(p * np.log2(p)), rel=tol)
    assert est.effective_entropy_ == pytest.approx(
        -np.sum(p * np.log(p)) / math.log(6), rel=tol
    )


def test_n_clipped_counts_negative_eigenvalues_only():
    assert NTKEntropy().fit(np.diag([3.0, 1.0, 0.0, -1e-12, -2.0])).n_clipped_ == 2
    assert NTKEntropy().fit(np.eye(4)).n_clipped_ == 0


def test_float32_decomposes_in_float64_where_the_device_has_it():
    # Eigenvalues 1e-9 of the largest: a float32 eigensolver cannot see them,
    # the float64 solve of the same float32 matrix can.
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    lam = np.geomspace(1.0, 1e-9, 20)
    K32 = ((Q * lam) @ Q.T).astype(np.float32)
    K32 = (K32 + K32.T) / 2
    expected = reference_entropy(K32)
    assert ntk_entropy(K32) == pytest.approx(expected, rel=1e-10)
    assert NTKEntropy().fit(K32).eigenvalues_.dtype == np.float32


def test_backends_agree():
    # Each backend against NumPy's float64 answer (the per-backend parity above
    # is against the definition; this pins them to one another too).
    K = gram(n=10, seed=4)
    y = np.repeat([0, 1], 5)
    from _harness import BACKENDS, Backend, missing_reason

    numpy_value = ntk_entropy(K, normalize=True)
    numpy_mi = ntk_mutual_information(K, y).mutual_information
    for spec in BACKENDS:
        if missing_reason(spec) is not None or spec.x64 is not None:
            continue  # JAX runs under the backend fixture with its x64 flag
        backend = Backend(spec)
        tol = F64 if backend.has_float64 else 1e-5
        assert ntk_entropy(backend.asarray(K), normalize=True) == pytest.approx(
            numpy_value, rel=tol
        )
        np.testing.assert_allclose(
            to_numpy(ntk_mutual_information(backend.asarray(K), y).mutual_information),
            numpy_mi,
            rtol=tol,
            atol=tol,
        )


# ---- ZnNL's EntropyAnalysis formula


@pytest.mark.parametrize("rank", [None, 7, 1], ids=["full-rank", "rank-7", "rank-1"])
def test_effective_nats_equal_znnl_formula(backend, rank):
    if not backend.has_float64:
        pytest.skip("the 1e-10 parity is a float64 statement")
    K = gram(n=12, rank=rank, seed=1)
    assert np.trace(K) > 1.0  # ZnNL's 1e-14 floor is then below 1e-12 of the mass
    value = ntk_entropy(backend.asarray(K), base=math.e, effective=True)
    assert value == pytest.approx(znnl_effective_entropy(K), abs=F64)


def test_znnl_floor_differs_only_below_its_scale():
    # The documented difference: ZnNL floors eigenvalues at 1e-14 in absolute
    # terms; ours clips at 0 and is invariant to the kernel's scale.
    K = gram(n=12, rank=4, seed=2)
    ours = ntk_entropy(K, base=math.e, effective=True)
    # Each floored eigenvalue adds at most q log(1/q), q = 1e-14 / trace.
    lam = np.linalg.eigvalsh(K)
    floored = int(np.sum(lam < 1e-14))
    q = 1e-14 / np.clip(lam, 1e-14, None).sum()
    bound = floored * q * math.log(1 / q) / math.log(12) + 1e-14
    assert abs(ours - znnl_effective_entropy(K)) <= bound
    tiny = K * 1e-18  # every eigenvalue below ZnNL's floor
    assert ntk_entropy(tiny, base=math.e, effective=True) == pytest.approx(
        ours, rel=1e-10
    )
    assert znnl_effective_entropy(tiny) > ours + 0.1


# ---- properties


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 12),
    rank_fraction=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
    base=st.sampled_from([2, math.e, 10, 3.5]),
    normalize=st.booleans(),
)
def test_properties(n, rank_fraction, seed, scale, base, normalize):
    rank = max(1, round(rank_fraction * n))
    K = gram(n=n, rank=rank, seed=seed)
    S = ntk_entropy(K, base=base, normalize=normalize)
    # Bounds: 0 <= S <= log_base(m), and at most log_base(rank) for this K.
    assert -1e-12 <= S <= math.log(min(n, rank), base) + 1e-9
    effective = ntk_entropy(K, effective=True, normalize=normalize)
    assert -1e-12 <= effective <= 1 + 1e-12
    # The effective form does not depend on the base.
    assert effective == pytest.approx(S / math.log(n, base), rel=1e-9, abs=1e-12)
    # Invariance to a positive scale and to a permutation of the samples.
    assert ntk_entropy(scale * K, base=base, normalize=normalize) == pytest.approx(
        S, rel=1e-9, abs=1e-12
    )
    perm = np.random.default_rng(seed).permutation(n)
    assert ntk_entropy(
        K[np.ix_(perm, perm)], base=base, normalize=normalize
    ) == pytest.approx(S, rel=1e-9, abs=1e-12)
    # Cosine normalisation removes every per-sample gradient scale.
    D = np.random.default_rng(seed + 1).uniform(0.1, 10.0, size=n)
    assert ntk_entropy(K * np.outer(D, D), base=base, normalize=True) == pytest.approx(
        ntk_entropy(K, base=base, normalize=True), rel=1e-9, abs=1e-12
    )


@pytest.mark.parametrize("m", [2, 3, 16, 50])
def test_identity_is_maximal_and_rank_one_is_zero(m):
    assert ntk_entropy(7.0 * np.eye(m)) == pytest.approx(math.log2(m), rel=1e-14)
    assert ntk_entropy(np.eye(m), effective=True) == pytest.approx(1.0, rel=1e-14)
    v = np.random.default_rng(m).standard_normal(m)
    assert ntk_entropy(np.outer(v, v)) == pytest.approx(0.0, abs=1e-12)
    assert ntk_entropy(np.outer(v, v), effective=True) == pytest.approx(0.0, abs=1e-12)
    # Cosine normalisation makes orthogonal gradients of any norms maximal.
    assert ntk_entropy(np.diag(np.arange(1.0, m + 1)), normalize=True) == (
        pytest.approx(math.log2(m), rel=1e-14)
    )


def test_one_by_one_has_zero_entropy_and_no_effective_form():
    assert ntk_entropy(np.array([[2.5]])) == 0.0
    with pytest.raises(
        ValueError,
        match=r"ntk_entropy: effective=True divides by log\(m\), which is 0 for the 1 x 1 `K`; pass at least 2 samples, or effective=False\.",
    ):
        ntk_entropy(np.array([[2.5]]), effective=True)


def test_zero_gradient_rows_stay_zero_under_normalisation():
    # A sample whose gradient is zero has a zero row; ZnNL maps it to 0 too.
    K = gram(n=5, seed=6)
    K[2, :] = K[:, 2] = 0.0
    expected = ntk_entropy(np.delete(np.delete(K, 2, 0), 2, 1), normalize=True)
    assert ntk_entropy(K, normalize=True) == pytest.approx(expected, rel=1e-12)


# ---- the full output mode is a square matrix like any other


def test_full_mode_ntk_is_accepted():
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import empirical_ntk

    model = _tiny_mlp(torch)
    X = torch.randn(
        6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    full = empirical_ntk(model, X, output_mode="full")
    assert tuple(full.shape) == (18, 18)
    est = NTKEntropy().fit(full)
    assert est.eigenvalues_.shape == (18,)
    assert est.entropy_ == pytest.approx(reference_entropy(full.numpy()), rel=F64)
    y = np.repeat([0, 0, 0, 1, 1, 1], 3)  # one label per (sample, output) row
    result = ntk_mutual_information(full, y)
    assert result.entropies.shape == (3,)


# ---- mutual information between classes


@pytest.mark.parametrize("n_classes", [1, 2, 3, 4])
def test_combinations_are_in_itertools_order(n_classes):
    y = np.repeat(np.arange(n_classes) * 10, 3)
    result = NTKMutualInformation().fit(gram(n=3 * n_classes), y)
    labels = list(range(0, 10 * n_classes, 10))
    expected = [
        combo
        for size in range(1, n_classes + 1)
        for combo in itertools.combinations(labels, size)
    ]
    assert result.combinations_ == expected
    assert len(result.combinations_) == 2**n_classes - 1
    assert result.entropies_.shape == (2**n_classes - 1,)
    np.testing.assert_array_equal(result.classes_, labels)


def test_mutual_information_matches_the_definition(backend):
    K = gram(n=15, rank=9, seed=7)
    y = np.array([2, 0, 1, 1, 0, 2, 2, 0, 1, 0, 1, 2, 0, 1, 2])
    classes = [0, 1, 2]
    entropies, mi, nmi = reference_mutual_information(
        to_numpy(backend.asarray(K)), y, classes
    )
    est = NTKMutualInformation().fit(backend.asarray(K), y)
    tol = F64 if backend.has_float64 else 1e-4
    np.testing.assert_allclose(
        to_numpy(est.entropies_),
        [entropies[c] for c in est.combinations_],
        rtol=tol,
        atol=tol,
    )
    MI, NMI = (
        to_numpy(est.mutual_information_),
        to_numpy(est.normalized_mutual_information_),
    )
    np.testing.assert_allclose(MI, mi, rtol=tol, atol=tol)
    np.testing.assert_allclose(NMI, nmi, rtol=tol, atol=tol)
    # The diagonal holds S_A and 1; both matrices are symmetric.
    np.testing.assert_allclose(
        np.diag(MI), [entropies[(c,)] for c in classes], rtol=tol
    )
    np.testing.assert_array_equal(np.diag(NMI), 1.0)
    np.testing.assert_array_equal(MI, MI.T)
    np.testing.assert_array_equal(NMI, NMI.T)
    for attribute in (
        est.entropies_,
        est.mutual_information_,
        est.normalized_mutual_information_,
        est.n_clipped_,
    ):
        assert_on_backend(attribute, backend)
    # The function returns the same numbers.
    result = ntk_mutual_information(backend.asarray(K), y)
    assert isinstance(result, NTKMutualInformationResult)
    np.testing.assert_allclose(to_numpy(result.mutual_information), MI, rtol=1e-12)
    assert result.combinations == est.combinations_


@settings(max_examples=40, deadline=None)
@given(
    n_a=st.integers(1, 8),
    n_b=st.integers(1, 8),
    rank_a=st.integers(1, 8),
    rank_b=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    trace_ratio=st.floats(0.1, 10.0),
)
def test_orthogonal_classes_give_the_exact_value(
    n_a, n_b, rank_a, rank_b, seed, trace_ratio
):
    # Block-diagonal K (the classes' gradients orthogonal): the union's spectrum
    # is the blocks' spectra weighted by w = traces / total, so
    # S(A u B) = w_A S_A + w_B S_B + H(w) and I = (1-w_A) S_A + (1-w_B) S_B - H(w).
    # With equal traces, S(A u B) = (S_A + S_B)/2 + 1 bit.
    A, B = gram(n_a, rank_a, seed), gram(n_b, rank_b, seed + 1)
    B *= trace_ratio * np.trace(A) / np.trace(B)
    K = np.zeros((n_a + n_b, n_a + n_b))
    K[:n_a, :n_a], K[n_a:, n_a:] = A, B
    y = np.repeat(["a", "b"], [n_a, n_b])
    perm = np.random.default_rng(seed).permutation(n_a + n_b)  # interleave classes
    MI = ntk_mutual_information(K[np.ix_(perm, perm)], y[perm]).mutual_information
    s_a, s_b = reference_entropy(A), reference_entropy(B)
    w = np.array([1.0, trace_ratio]) / (1.0 + trace_ratio)
    H = -np.sum(w * np.log2(w))
    expected = (1 - w[0]) * s_a + (1 - w[1]) * s_b - H
    assert MI[0, 1] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    if trace_ratio == 1.0:
        assert MI[0, 1] == pytest.approx((s_a + s_b) / 2 - 1.0, abs=1e-9)


def test_equal_traces_orthogonal_classes_lose_one_bit():
    A, B = 3.0 * np.eye(4), np.diag([6.0, 6.0])  # traces 12 and 12
    K = np.block([[A, np.zeros((4, 2))], [np.zeros((2, 4)), B]])
    result = ntk_mutual_information(K, [0, 0, 0, 0, 1, 1])
    # S_A = 2 bits, S_B = 1 bit, S(A u B) = 2.5 bits: I = 0.5 bit.
    np.testing.assert_allclose(result.entropies, [2.0, 1.0, 2.5], rtol=1e-14)
    assert result.mutual_information[0, 1] == pytest.approx(0.5, rel=1e-14)
    assert result.normalized_mutual_information[0, 1] == pytest.approx(1 / 3, rel=1e-14)


def test_redundant_classes_share_all_their_entropy():
    # Class B repeats class A's gradients: the union has A's spectrum, doubled,
    # so I(A; B) = S_A = S_B and the normalised form is 1.
    A = gram(n=5, rank=4, seed=8)
    K = np.block([[A, A], [A, A]])
    result = ntk_mutual_information(K, np.repeat([0, 1], 5), base=math.e)
    s_a = reference_entropy(A, base=math.e)
    assert result.mutual_information[0, 1] == pytest.approx(s_a, rel=1e-9)
    assert result.normalized_mutual_information[0, 1] == pytest.approx(1.0, rel=1e-9)


def test_classes_select_and_order_the_rows():
    K = gram(n=12, seed=9)
    y = np.repeat(["cat", "dog", "emu"], 4)
    est = NTKMutualInformation().fit(K, y, classes=["emu", "cat"])
    assert est.combinations_ == [("emu",), ("cat",), ("emu", "cat")]
    np.testing.assert_array_equal(est.classes_, ["emu", "cat"])
    emu, cat = slice(8, 12), slice(0, 4)
    assert est.mutual_information_[0, 0] == pytest.approx(
        reference_entropy(K[emu, emu]), rel=1e-12
    )
    assert est.mutual_information_[1, 1] == pytest.approx(
        reference_entropy(K[cat, cat]), rel=1e-12
    )
    rows = np.r_[0:4, 8:12]
    assert est.entropies_[2] == pytest.approx(
        reference_entropy(K[np.ix_(rows, rows)]), rel=1e-12
    )


def test_max_combination_size_bounds_the_blocks_not_the_matrices():
    K = gram(n=16, seed=10)
    y = np.repeat([0, 1, 2, 3], 4)
    everything = NTKMutualInformation().fit(K, y)
    pairs = NTKMutualInformation(max_combination_size=2).fit(K, y)
    assert len(everything.combinations_) == 15 and len(pairs.combinations_) == 10
    assert pairs.combinations_ == everything.combinations_[:10]
    np.testing.assert_array_equal(
        pairs.mutual_information_, everything.mutual_information_
    )
    np.testing.assert_array_equal(pairs.entropies_, everything.entropies_[:10])


def test_normalized_mutual_information_of_two_single_samples_is_nan():
    result = ntk_mutual_information(np.diag([1.0, 2.0]), [0, 1])
    np.testing.assert_array_equal(np.diag(result.mutual_information), 0.0)
    # S(A u B) of diag(1, 2) is H(1/3, 2/3): I = -H, and 2 I / 0 is undefined.
    H = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
    assert result.mutual_information[0, 1] == pytest.approx(-H, rel=1e-14)
    assert math.isnan(result.normalized_mutual_information[0, 1])
    np.testing.assert_array_equal(np.diag(result.normalized_mutual_information), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalized_mutual_information_of_two_rank_one_classes_is_nan(dtype):
    # Rank-one blocks of 25 samples each: S_A = S_B = 0 up to rounding, which
    # must give NaN, not 2 I / 1e-15.
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2, 6))
    J = np.concatenate([np.outer(rng.uniform(1, 2, 25), v) for v in g])
    y = np.repeat([0, 1], 25)
    result = ntk_mutual_information((J @ J.T).astype(dtype), y)
    assert abs(result.entropies[0]) < 1e-3 and abs(result.entropies[1]) < 1e-3
    assert math.isnan(result.normalized_mutual_information[0, 1])
    assert np.isfinite(result.mutual_information[0, 1])


def test_labels_from_another_library_and_normalisation():
    torch = pytest.importorskip("torch")
    K = gram(n=9, seed=11)
    y = np.array([0, 1, 2] * 3)
    on_host = ntk_mutual_information(K, y, normalize=True)
    from_torch = ntk_mutual_information(K, torch.asarray(y), normalize=True)
    np.testing.assert_array_equal(
        on_host.mutual_information, from_torch.mutual_information
    )
    # Normalising once equals normalising every block on its own.
    d = np.sqrt(np.diag(K))
    _, mi, _ = reference_mutual_information(K / np.outer(d, d), y, [0, 1, 2])
    np.testing.assert_allclose(on_host.mutual_information, mi, rtol=1e-10)


# ---- kernel callables bound to the adapters


def _tiny_mlp(torch, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()


def test_torch_kernel_callable_equals_the_precomputed_ntk():
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import empirical_ntk

    model = _tiny_mlp(torch)
    X = torch.randn(
        10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    kernel = functools.partial(empirical_ntk, model)
    K = empirical_ntk(model, X)
    via_kernel = NTKEntropy(kernel=kernel, normalize=True).fit(X)
    precomputed = NTKEntropy(normalize=True).fit(K)
    assert via_kernel.entropy_ == precomputed.entropy_
    assert via_kernel.effective_entropy_ == precomputed.effective_entropy_
    assert isinstance(via_kernel.eigenvalues_, torch.Tensor)
    torch.testing.assert_close(via_kernel.eigenvalues_, precomputed.eigenvalues_)
    assert via_kernel.n_features_in_ == 4 and precomputed.n_features_in_ == 10
    assert via_kernel.entropy_ == pytest.approx(
        reference_entropy(K.numpy(), normalize=True), rel=F64
    )
    # NumPy inputs: the adapter returns torch, and the fitted arrays follow it.
    from_numpy = NTKEntropy(kernel=kernel, normalize=True).fit(X.numpy())
    assert isinstance(from_numpy.eigenvalues_, torch.Tensor)
    assert from_numpy.entropy_ == pytest.approx(via_kernel.entropy_, rel=1e-12)
    # The class MI too.
    y = np.array([0, 1] * 5)
    mi_kernel = NTKMutualInformation(kernel=kernel).fit(X, y)
    mi_pre = NTKMutualInformation().fit(K, y)
    torch.testing.assert_close(
        mi_kernel.mutual_information_, mi_pre.mutual_information_
    )


def test_kernel_callable_takes_images_as_they_are():
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import empirical_ntk

    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    ).double()
    images = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    est = NTKEntropy(kernel=functools.partial(empirical_ntk, model)).fit(images)
    assert est.n_features_in_ == 16
    assert est.entropy_ == pytest.approx(
        reference_entropy(empirical_ntk(model, images).numpy()), rel=F64
    )


def test_jax_kernel_callable_equals_the_precomputed_ntk():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from infoscope.adapters.jax import empirical_ntk

    def apply_fn(params, x):
        return jnp.tanh(x @ params["w1"]) @ params["w2"]

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"w1": jax.random.normal(k1, (4, 8)), "w2": jax.random.normal(k2, (8, 2))}
    X = jax.random.normal(k3, (7, 4))
    est = NTKEntropy(kernel=functools.partial(empirical_ntk, apply_fn, params)).fit(X)
    K = empirical_ntk(apply_fn, params, X)
    assert est.entropy_ == pytest.approx(NTKEntropy().fit(K).entropy_, rel=1e-12)
    assert namespace_name(namespace_and_device(est.eigenvalues_)[0]) == "jax"


# ---- bad input: the message names the caller, the argument and the fix


@pytest.mark.parametrize(
    ("K", "error", "message"),
    [
        (
            np.ones((3, 4)),
            ValueError,
            r"ntk_entropy: `K` must be a square kernel matrix \(n, n\), got shape \(3, 4\)\. Pass the NTK of the samples with themselves, e\.g\. empirical_ntk\(model, X\) without X2",
        ),
        (
            np.ones(4),
            ValueError,
            r"ntk_entropy: `K` must be a square kernel matrix \(n, n\), got shape \(4,\)",
        ),
        (
            np.ones((2, 2, 2)),
            ValueError,
            r"ntk_entropy: `K` must be a square kernel matrix \(n, n\), got shape \(2, 2, 2\)",
        ),
        (
            np.array([[1.0, 0.5], [0.3, 1.0]]),
            ValueError,
            r"ntk_entropy: `K` is not symmetric: max \|K - K\.T\| = 0\.2 is 0\.2 of max \|K\| \(tolerance 1\.5e-08\)\. An NTK of a set of samples with itself is symmetric: pass empirical_ntk\(model, X\) without X2, or, if the difference is rounding, \(K \+ K\.T\) / 2\.",
        ),
        (
            np.array([[1.0, np.nan], [np.nan, 1.0]]),
            ValueError,
            r"ntk_entropy: `K` contains NaN or infinity \(2 of 4 values\)",
        ),
        (
            np.array([[1.0, np.inf], [np.inf, 1.0]]),
            ValueError,
            r"ntk_entropy: `K` contains NaN or infinity",
        ),
        (
            np.zeros((3, 3)),
            ValueError,
            r"ntk_entropy: `K` has no positive eigenvalue above rounding \(3 eigenvalues, 0 negative\), so its entropy is undefined\. An NTK is positive semi-definite: a zero NTK means no trainable parameter moves the outputs",
        ),
        (
            -np.eye(3),
            ValueError,
            r"ntk_entropy: `K` has no positive eigenvalue above rounding \(3 eigenvalues, 3 negative\)",
        ),
        (
            np.zeros((0, 0)),
            ValueError,
            r"ntk_entropy: `K` has 0 samples but the measure needs at least 1",
        ),
        (
            np.eye(2, dtype=complex),
            ValueError,
            r"ntk_entropy: Complex data not supported in `K`",
        ),
        (
            np.array([["a", "b"], ["c", "d"]]),
            TypeError,
            r"ntk_entropy: `K` holds strings",
        ),
        (None, TypeError, r"ntk_entropy: `K` is None"),
    ],
    ids=[
        "not-square",
        "1d",
        "3d",
        "asymmetric",
        "nan",
        "inf",
        "zero",
        "negative-definite",
        "empty",
        "complex",
        "strings",
        "none",
    ],
)
def test_entropy_messages(K, error, message):
    with pytest.raises(error, match=message):
        ntk_entropy(K)


def test_float32_symmetry_tolerance_accepts_rounding():
    K = gram(n=30, seed=12).astype(np.float32)
    K[0, 1] *= 1 + 1e-5  # far beyond float64 rounding, within float32's
    assert ntk_entropy(K) == pytest.approx(reference_entropy(K), rel=1e-4)
    with pytest.raises(ValueError, match=r"`K` is not symmetric"):
        ntk_entropy(K.astype(np.float64))


def test_normalisation_refuses_a_negative_diagonal():
    with pytest.raises(
        ValueError,
        match=r"ntk_entropy: normalize=True divides by sqrt\(K_ii K_jj\), but `K` has 1 negative diagonal entry; an NTK's diagonal holds squared gradient norms and is never negative\. Check how `K` was computed, or pass normalize=False\.",
    ):
        ntk_entropy(np.diag([1.0, -1.0, 2.0]), normalize=True)
    with pytest.raises(
        ValueError, match=r"NTKEntropy: normalize=True .* 2 negative diagonal entries"
    ):
        NTKEntropy(normalize=True).fit(np.diag([-1.0, -1.0, 2.0]))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: ntk_mutual_information(np.eye(4), [0, 1, 1]),
            ValueError,
            r"ntk_mutual_information: `K` has 4 samples but `y` has 3; pass one row of `y` per sample of `K`\.",
        ),
        (
            lambda: ntk_mutual_information(np.eye(4), [0, 0, 1, 1], classes=[0, 1, 2]),
            ValueError,
            r"ntk_mutual_information: class 2 of `classes` has no sample in `y`, and every class needs at least 1; drop it from `classes`, or pass samples of it\.",
        ),
        (
            lambda: ntk_mutual_information(np.eye(4), [0, 0, 1, 1], classes=["x", "y"]),
            ValueError,
            r"ntk_mutual_information: classes 'x', 'y' of `classes` have no sample in `y`, and every class needs at least 1; drop them from `classes`",
        ),
        (
            lambda: ntk_mutual_information(np.eye(4), [0, 0, 1, 1], classes=[1, 1]),
            ValueError,
            r"ntk_mutual_information: `classes` lists a label more than once \(\[1, 1\]\); pass each class once\.",
        ),
        (
            lambda: ntk_mutual_information(np.eye(4), [0, 0, 1, 1], classes=[]),
            ValueError,
            r"ntk_mutual_information: `classes` must be a non-empty 1-D sequence of labels",
        ),
        (
            lambda: ntk_mutual_information(np.eye(4), np.ones((4, 2))),
            ValueError,
            r"ntk_mutual_information: class labels `y` must be 1-D, got shape \(4, 2\); pass one label per row of `K`\.",
        ),
        (
            lambda: ntk_mutual_information(np.eye(2), [0.0, np.nan]),
            ValueError,
            r"ntk_mutual_information: `y` contains NaN or infinity",
        ),
        (
            lambda: ntk_mutual_information(
                np.eye(4), [0, 0, 1, 1], max_combination_size=1
            ),
            ValueError,
            r"The 'max_combination_size' parameter of ntk_mutual_information must be an int in the range \[2, inf\), a str among \{'auto'\} or None",
        ),
        (
            lambda: ntk_mutual_information(np.ones((4, 3)), [0, 0, 1, 1]),
            ValueError,
            r"ntk_mutual_information: `K` must be a square kernel matrix",
        ),
        (
            lambda: NTKMutualInformation().fit(np.eye(4), None),
            ValueError,
            r"NTKMutualInformation requires y to be passed, but the target y is None",
        ),
        (
            lambda: NTKMutualInformation().fit(np.diag([1.0, 1.0, 0.0]), [0, 0, 1]),
            ValueError,
            r"NTKMutualInformation: the block of classes \(1,\) has no positive eigenvalue",
        ),
        (
            lambda: NTKMutualInformation(kernel=gaussian_kernel_callable).fit(
                np.ones((4, 2)), [0, 1]
            ),
            ValueError,
            r"NTKMutualInformation: `kernel\(X\)` has 4 samples but `y` has 2",
        ),
    ],
    ids=[
        "y-length",
        "empty-class",
        "empty-classes",
        "duplicate-classes",
        "no-classes",
        "y-2d",
        "y-nan",
        "max-combination-size",
        "K-not-square",
        "y-none",
        "zero-block",
        "kernel-y-length",
    ],
)
def test_mutual_information_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    ("estimator", "X", "error", "message"),
    [
        (
            NTKEntropy(base=1),
            np.eye(2),
            ValueError,
            r"The 'base' parameter of NTKEntropy must be a float in the range \(1\.0, inf\)\. Got 1 instead\.",
        ),
        (
            NTKEntropy(normalize="yes"),
            np.eye(2),
            ValueError,
            r"The 'normalize' parameter of NTKEntropy must be an instance of 'bool'",
        ),
        (
            NTKEntropy(kernel="linear"),
            np.eye(2),
            ValueError,
            r"The 'kernel' parameter of NTKEntropy must be a callable or a str among \{'precomputed'\}",
        ),
        (
            NTKEntropy(),
            np.eye(1),
            ValueError,
            r"NTKEntropy: `K` has 1 sample but the measure needs at least 2; pass more samples\.",
        ),
        (
            NTKEntropy(kernel=gaussian_kernel_callable),
            np.ones(5),
            ValueError,
            r"NTKEntropy: `X` must have a sample axis and at least one feature axis \(n_samples, \.\.\.\), got a 1-D array of shape \(5,\)\. Reshape your data",
        ),
        (
            NTKEntropy(kernel=gaussian_kernel_callable),
            np.array([[0.0, np.nan], [1.0, 1.0]]),
            ValueError,
            r"NTKEntropy: `X` contains NaN or infinity \(1 of 4 values\)",
        ),
        (
            NTKEntropy(kernel=lambda X: X[:, :2]),
            np.ones((3, 2)),
            ValueError,
            r"NTKEntropy: `kernel\(X\)` must be a square kernel matrix \(n, n\), got shape \(3, 2\)",
        ),
        (
            NTKEntropy(kernel=lambda X: np.triu(np.ones((3, 3)))),
            np.ones((3, 2)),
            ValueError,
            r"NTKEntropy: `kernel\(X\)` is not symmetric",
        ),
    ],
    ids=[
        "base",
        "normalize",
        "kernel",
        "one-sample",
        "X-1d",
        "X-nan",
        "kernel-not-square",
        "kernel-asymmetric",
    ],
)
def test_estimator_messages(estimator, X, error, message):
    with pytest.raises(error, match=message):
        estimator.fit(X)


def test_function_parameter_messages():
    with pytest.raises(
        ValueError,
        match=r"The 'effective' parameter of ntk_entropy must be an instance of 'bool'",
    ):
        ntk_entropy(np.eye(2), effective=1)
    with pytest.raises(
        ValueError, match=r"The 'base' parameter of ntk_entropy must be a float"
    ):
        ntk_entropy(np.eye(2), base=0.5)


# ---- the scikit-learn contract


@parametrize_with_checks(
    [
        NTKEntropy(),
        NTKMutualInformation(),
        NTKEntropy(kernel=gaussian_kernel_callable, normalize=True),
        NTKMutualInformation(kernel=gaussian_kernel_callable),
    ]
)
@pytest.mark.filterwarnings("ignore:NTKMutualInformation. computed the entropies")
def test_scikit_learn_contract(estimator, check):
    # "precomputed" sets the pairwise tag: the checks pass square kernel matrices.
    # The checks' 10 classes make the default max_combination_size warn.
    check(estimator)


def test_params_clone_and_tags():
    est = NTKEntropy(normalize=True, base=math.e)
    assert est.get_params() == {
        "kernel": "precomputed",
        "normalize": True,
        "base": math.e,
    }
    copy = clone(est).set_params(base=10)
    assert copy.base == 10 and est.base == math.e
    tags = est.__sklearn_tags__().input_tags
    assert tags.pairwise and not tags.three_d_array
    with_kernel = est.set_params(kernel=gaussian_kernel_callable)
    tags = with_kernel.__sklearn_tags__().input_tags
    assert not tags.pairwise and tags.three_d_array  # images go to the kernel
    mi = NTKMutualInformation(max_combination_size=3)
    assert clone(mi).get_params()["max_combination_size"] == 3
    assert mi.__sklearn_tags__().target_tags.required
    fitted = mi.fit(gram(n=6), [0, 0, 1, 1, 2, 2])
    unfitted = clone(fitted)
    assert not hasattr(unfitted, "mutual_information_")


@pytest.mark.parametrize("where", [(0, 1), (9, 4), (10, 11)])
def test_symmetry_is_checked_block_by_block(monkeypatch, backend, where):
    # Three rows per block over 12 rows: the asymmetric pair may sit in any
    # block, and must be found wherever it is.
    from infoscope.estimators import ntk as ntk_module

    monkeypatch.setattr(ntk_module, "_SYMMETRY_BLOCK_ELEMENTS", 36)
    K = gram(n=12, seed=2)
    ntk_entropy(backend.asarray(K))
    i, j = where
    K[i, j] += 0.5 * np.abs(K).max()
    with pytest.raises(ValueError, match=r"`K` is not symmetric: .* is 0\.5 of"):
        ntk_entropy(backend.asarray(K))
