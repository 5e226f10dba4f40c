"""The edge cases of issue 18, one test each: the right number or one clear error.

Each case was a silent wrong value or a raw crash found by fuzzing every
public function and estimator; each test states the right answer.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone

import infoscope
from infoscope import (
    HSIC,
    DiffusionSpectralEntropy,
    HSICPlane,
    adjacency_spectral_entropy,
    cka,
    diffusion_spectral_entropy,
    hsic,
    hsic_test,
    ntk_entropy,
    ntk_mutual_information,
)


def digits(n=500):
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data[:n] / 16.0, data.target[:n]


def relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))


# ---- float32 HSIC: both Grams centred


def test_float32_hsic_at_a_wide_bandwidth_keeps_its_digits():
    # sigma = 10 on pixels in [0, 1]: every kernel value is within 1% of 1, so
    # an uncentred Gram cancels in the inner product (it lost 3 digits).
    X, y = digits()
    H = np.tanh(X @ np.random.default_rng(0).normal(size=(64, 32)) * 0.1)
    f32 = np.float32
    for estimator in ("biased", "unbiased"):
        exact = hsic(X, H, sigma_x=10.0, estimator=estimator)
        single = hsic(X.astype(f32), H.astype(f32), sigma_x=10.0, estimator=estimator)
        assert relative(single, exact) < 1e-5
    plane64 = HSICPlane(sigma=10.0).fit(X, y).transform([H])
    plane32 = HSICPlane(sigma=10.0).fit(X.astype(f32), y).transform([H.astype(f32)])
    assert relative(plane32, plane64) < 1e-5


# ---- overflow: scale before squaring; NaN or inf from finite input is an error


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_but_finite_activations_give_the_scale_free_values(dtype):
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(200, 10))
    scale = 1e20 if dtype == np.float32 else 1e200
    big = (unit * scale).astype(dtype)
    y = (unit[:, 0] > 0).astype(int)
    # "median" bandwidths and CKA do not depend on the scale of the data.
    assert hsic(big, big[:, :2]) == pytest.approx(hsic(unit, unit[:, :2]), rel=1e-4)
    assert cka(big, big[:, :2]) == pytest.approx(cka(unit, unit[:, :2]), rel=1e-4)
    result = hsic_test(big, big[:, :2], n_permutations=50, random_state=0)
    reference = hsic_test(unit, unit[:, :2], n_permutations=50, random_state=0)
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-4)
    assert result.pvalue == reference.pvalue
    plane = HSICPlane().fit(big, y).transform([big])
    np.testing.assert_allclose(plane, HSICPlane().fit(unit, y).transform([unit]), 1e-4)
    # sigma = 10 is tiny beside distances of 1e20: the kernel is the identity.
    assert diffusion_spectral_entropy(big) == pytest.approx(math.log2(200), rel=1e-6)
    assert diffusion_spectral_entropy(big, sigma="median") == pytest.approx(
        diffusion_spectral_entropy(unit, sigma="median"), rel=1e-4
    )


def test_linear_cka_is_scale_free_even_when_the_squares_overflow():
    X = np.random.default_rng(1).normal(size=(100, 5))
    assert cka(1e150 * X, X, kernel_x="linear") == pytest.approx(1.0, rel=1e-12)
    # The estimator also reports HSIC(X, X) ~ 1e600, which no float holds.
    with pytest.raises(ValueError, match=r"HSIC: HSIC\(X, X\) is inf, .*use CKA"):
        HSIC(kernel_x="linear", normalized=True).fit(1e150 * X, X)


def test_hsic_that_overflows_the_float_range_is_an_error_not_inf():
    X = np.random.default_rng(2).normal(size=(50, 3))
    with pytest.raises(ValueError, match=r"hsic: .*overflow"):
        hsic(1e200 * X, 1e200 * X, kernel_x="linear")


def test_a_callable_kernel_returning_nan_is_an_error():
    X = np.random.default_rng(3).normal(size=(30, 2))
    with pytest.raises(ValueError, match=r"hsic: .*kernel_x.*NaN or infinity"):
        hsic(X, X, kernel_x=lambda A, B: np.full((len(A), len(B)), np.nan))


# ---- ntk_entropy of a negative matrix: no entropy from rounding noise


def test_ntk_entropy_of_a_negative_definite_matrix_is_an_error():
    J = np.random.default_rng(0).normal(size=(20, 5))
    K = J @ J.T
    with pytest.raises(
        ValueError, match=r"ntk_entropy: `K` has no positive eigenvalue"
    ):
        ntk_entropy(-K)


def test_rounding_noise_eigenvalues_do_not_count():
    # A rank-3 PSD matrix: its 17 zero eigenvalues come out as +-1e-15.
    J = np.random.default_rng(1).normal(size=(20, 3))
    K = J @ J.T
    w = np.linalg.eigvalsh(K)[-3:]
    p = w / w.sum()
    assert ntk_entropy(K) == pytest.approx(float(-np.sum(p * np.log2(p))), rel=1e-12)


# ---- approximate DSE stays within the bounds of the exact value


def test_approximate_dse_at_a_tiny_time_is_within_log_n():
    X = np.random.default_rng(0).uniform(size=(800, 8))
    value = diffusion_spectral_entropy(X, t=1e-12, method="approximate", random_state=0)
    assert 0.0 <= value <= math.log2(800)


# ---- adjacency kNN graph: ties decided the same way on every library


def test_knn_adjacency_entropy_is_the_same_for_torch_and_numpy_integers():
    torch = pytest.importorskip("torch")
    for seed in (7, 12, 29, 41):
        X = np.random.default_rng(seed).integers(0, 3, size=(60, 2))
        a = adjacency_spectral_entropy(X, variant="knn", n_neighbors=5)
        b = adjacency_spectral_entropy(torch.asarray(X), variant="knn", n_neighbors=5)
        assert a == pytest.approx(b, rel=1e-9), seed


# ---- labels held as Python objects are still labels


def test_object_dtype_labels_are_classes():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10))
    y = rng.integers(0, 3, 300)
    H = np.tanh(X @ rng.normal(size=(10, 20)))
    as_objects = pd.Series(y, dtype=object)
    assert HSIC().fit(X, as_objects).hsic_ == HSIC().fit(X, y).hsic_
    np.testing.assert_array_equal(
        HSICPlane().fit(X, as_objects).transform([H]),
        HSICPlane().fit(X, y).transform([H]),
    )


# ---- degenerate bandwidths


def mostly_duplicates():
    rng = np.random.default_rng(0)
    return np.vstack([np.ones((90, 3)), rng.normal(size=(10, 3))])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (
            lambda X: diffusion_spectral_entropy(X, sigma="median"),
            "diffusion_spectral_entropy",
        ),
        (
            lambda X: adjacency_spectral_entropy(X, sigma="median"),
            "adjacency_spectral_entropy",
        ),
        (lambda X: hsic(X, X), "hsic"),
        (lambda X: cka(X, X), "cka"),
        (
            lambda X: DiffusionSpectralEntropy(sigma="median").fit(X),
            "DiffusionSpectralEntropy",
        ),
    ],
)
def test_a_zero_median_distance_is_a_clear_error(call, name):
    with pytest.raises(ValueError, match=rf"{name}: sigma.*='median' is undefined"):
        call(mostly_duplicates())


def test_a_tiny_sigma_gives_the_identity_kernel_values():
    X = np.random.default_rng(0).normal(size=(100, 5))
    assert diffusion_spectral_entropy(X, sigma=1e-300) == pytest.approx(math.log2(100))
    # Identity Grams: HSIC of the centring matrix with itself, CKA exactly 1.
    n = 100
    assert hsic(X, X, sigma_x=1e-300) == pytest.approx((n - 1) / (n - 1) ** 2)
    assert cka(X, X, sigma_x=1e-300) == pytest.approx(1.0)


# ---- inputs that are not plain arrays


def test_meta_tensors_are_refused_by_name():
    torch = pytest.importorskip("torch")
    meta = torch.empty(10, 3, device="meta")
    with pytest.raises(ValueError, match=r"diffusion_spectral_entropy: `X` is a meta"):
        diffusion_spectral_entropy(meta)
    with pytest.raises(ValueError, match=r"hsic: `X` is a meta"):
        hsic(meta, meta)


def test_masked_arrays_are_read_or_refused_by_name():
    X = np.random.default_rng(0).normal(size=(40, 3))
    plain = diffusion_spectral_entropy(X)
    assert diffusion_spectral_entropy(np.ma.masked_array(X)) == plain
    masked = np.ma.masked_array(X, mask=X > 1.5)
    with pytest.raises(
        ValueError, match=r"diffusion_spectral_entropy: `X` has \d+ masked"
    ):
        diffusion_spectral_entropy(masked)


# ---- ntk_mutual_information bounds its work


def test_ntk_mutual_information_bounds_the_combinations_and_says_so():
    J = np.random.default_rng(0).normal(size=(60, 30))
    y = np.repeat(np.arange(20), 3)
    with pytest.warns(UserWarning, match=r"ntk_mutual_information: .*skipped"):
        result = ntk_mutual_information(J @ J.T, y)
    assert len(result.combinations) < 2**20 - 1
    assert result.mutual_information.shape == (20, 20)


# ---- pickling and cloning fitted estimators


def test_streamed_and_approximate_hsic_estimators_pickle():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = rng.integers(0, 3, 200)
    streamed = HSIC(method="approximate", random_state=0).partial_fit(X, y)
    copy = pickle.loads(pickle.dumps(streamed))
    assert copy.hsic_ == streamed.hsic_
    assert copy.partial_fit(X, y).hsic_ == streamed.partial_fit(X, y).hsic_
    plane = HSICPlane(method="approximate", random_state=0).fit(X, y)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(plane)).transform([X]), plane.transform([X])
    )
    assert not hasattr(clone(plane), "n_samples_")


def test_approximate_hsic_with_too_few_components_is_refused_by_validation():
    with pytest.raises(ValueError, match=r"The 'n_components' parameter of HSIC"):
        HSIC(method="approximate", n_components=1).fit(np.ones((5, 2)), [0, 1, 0, 1, 0])


def test_public_names_still_import():
    for name in ("hsic", "cka", "hsic_test", "HSIC", "HSICPlane"):
        assert getattr(infoscope, name) is getattr(infoscope.estimators.hsic, name)


# ---- the memory guard assumes what the methods measurably take


def _traced_peak(call) -> float:
    import tracemalloc

    call()  # first-call allocations (imports, caches) are not the method's
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _footprint_cases():
    from infoscope.estimators import diffusion, hsic_plane, hsic_statistic, independence
    from infoscope.estimators import ntk as ntk_module

    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 5))
    Y = X[:, :2] + rng.normal(size=(n, 2))
    y = rng.integers(0, 3, n)
    J = rng.normal(size=(n, 40))
    K = J @ J.T

    def plane():
        HSICPlane().fit(X, y).transform([X, Y])

    return n, [
        ("hsic", lambda: hsic(X, Y), hsic_statistic.EXACT_ARRAYS),
        ("cka", lambda: cka(X, Y, estimator="unbiased"), hsic_statistic.EXACT_ARRAYS),
        (
            "hsic_test",
            lambda: hsic_test(X, Y, n_permutations=3, random_state=0),
            independence.PERMUTATION_ARRAYS,
        ),
        ("HSICPlane", plane, hsic_plane.PLANE_FIT_ARRAYS),
        (
            "diffusion_spectral_entropy",
            lambda: diffusion_spectral_entropy(X, sigma="median", method="exact"),
            diffusion.EXACT_ARRAYS,
        ),
        ("adjacency", lambda: adjacency_spectral_entropy(X), diffusion.EXACT_ARRAYS),
        (
            "adjacency-knn",
            lambda: adjacency_spectral_entropy(X, variant="knn"),
            diffusion.KNN_ARRAYS,
        ),
        ("ntk_entropy", lambda: ntk_entropy(K), ntk_module.SPECTRUM_ARRAYS),
        (
            "ntk_entropy-float32",
            lambda: ntk_entropy(K.astype(np.float32)),
            ntk_module.SPECTRUM_ARRAYS,
        ),
    ]


def test_measured_peaks_are_within_what_the_guard_assumes():
    n, cases = _footprint_cases()
    unit = n * n * 8  # float64, the widest float of the host
    for name, call, declared in cases:
        measured = _traced_peak(call) / unit
        # Beside the n x n arrays: vectors of n (row sums, the null
        # distribution), well under 1% of one array here.
        assert measured <= declared + 0.01, (name, measured, declared)
        # And the guard is not far above it either (refusing what fits).
        assert measured >= declared - 1.5, (name, measured, declared)


def test_the_guard_refuses_exactly_below_the_declared_footprint(monkeypatch):
    from infoscope.backends import _memory

    n, cases = _footprint_cases()
    unit = n * n * 8
    for _name, call, declared in cases:
        monkeypatch.setattr(
            _memory, "available_memory", lambda xp, device, d=declared: d * unit - 1
        )
        with pytest.raises(ValueError, match=r"needs about .* but only"):
            call()
        monkeypatch.setattr(
            _memory, "available_memory", lambda xp, device, d=declared: d * unit
        )
        call()


# ---- every fitted estimator pickles and clones


def _fitted_estimators():
    from infoscope import (
        DiffusionSpectralMutualInformation,
        NodeSNR,
        NTKEntropy,
        NTKMutualInformation,
    )
    from infoscope.selection import (
        GreedyEntropySelector,
        MaxEntropySelector,
        RandomSelector,
    )

    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 6))
    y = rng.integers(0, 3, 700)
    small, labels = X[:80], y[:80]
    K = small @ small.T
    W = rng.normal(size=(6, 3))
    return [
        (DiffusionSpectralEntropy(sigma=2.0), lambda e: e.fit(small)),
        (
            DiffusionSpectralEntropy(sigma=2.0, method="approximate", random_state=0),
            lambda e: e.fit(X),
        ),
        (
            DiffusionSpectralMutualInformation(sigma=2.0, random_state=0),
            lambda e: e.fit(small, labels),
        ),
        (HSIC(normalized=True), lambda e: e.fit(small, labels)),
        (
            HSIC(method="approximate", random_state=0),
            lambda e: e.partial_fit(small, labels),
        ),
        (
            HSIC(kernel_x="linear", normalized=True),
            lambda e: e.partial_fit(small, labels),
        ),
        (HSICPlane(normalized=True), lambda e: e.fit(small, labels)),
        (
            HSICPlane(method="approximate", random_state=0),
            lambda e: e.fit(small, labels),
        ),
        (NodeSNR(), lambda e: e.partial_fit(np.maximum(small, 0), weights=W)),
        (NodeSNR(weights=W), lambda e: e.fit(np.maximum(small, 0))),
        (NTKEntropy(), lambda e: e.fit(K)),
        (NTKMutualInformation(), lambda e: e.fit(K, labels)),
        (MaxEntropySelector(5, 4, random_state=0), lambda e: e.fit(K)),
        (GreedyEntropySelector(4, random_state=0), lambda e: e.fit(K)),
        (RandomSelector(4, kernel="precomputed", random_state=0), lambda e: e.fit(K)),
    ]


def _same_fitted_attributes(a, b):
    fitted = [k for k in vars(a) if k.endswith("_") and not k.startswith("_")]
    assert fitted, type(a).__name__
    for key in fitted:
        left, right = getattr(a, key), getattr(b, key)
        if isinstance(left, float) and math.isnan(left):
            assert math.isnan(right)
        elif isinstance(left, list):
            assert left == right, key
        elif hasattr(left, "shape"):
            np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
        else:
            assert left == right, key


def test_every_fitted_estimator_pickles_and_clones():
    for estimator, fit in _fitted_estimators():
        fitted = fit(estimator)
        copy = pickle.loads(pickle.dumps(fitted))
        _same_fitted_attributes(fitted, copy)
        fresh = clone(fitted)
        assert fresh.get_params().keys() == fitted.get_params().keys()
        assert not [k for k in vars(fresh) if k.endswith("_") and not k.startswith("_")]
        # A copy goes on where the original would: the same next step.
        if hasattr(fitted, "partial_fit"):
            again = fit(pickle.loads(pickle.dumps(fitted)))
            _same_fitted_attributes(fit(fitted), again)


# ---- one implementation of each piece


def test_no_module_imports_another_modules_private_names():
    import ast
    from pathlib import Path

    root = Path(infoscope.__file__).parent
    private = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("infoscope")
            ):
                private += [
                    f"{path.relative_to(root)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not private, private


def test_a_bad_batch_size_is_the_same_error_everywhere():
    from sklearn.utils._param_validation import InvalidParameterError

    from infoscope import NodeSNR, node_snr

    X = np.random.default_rng(0).normal(size=(10, 3))
    W = np.ones((3, 2))
    calls = {
        "node_snr": lambda: node_snr(X, W, batch_size=0),
        "NodeSNR": lambda: NodeSNR(batch_size=0).fit(X, weights=W),
        "hsic": lambda: hsic(X, X, method="approximate", batch_size=0),
        "HSIC": lambda: HSIC(method="approximate", batch_size=0).fit(X, X[:, 0]),
        "HSICPlane": lambda: HSICPlane(batch_size=0).fit(X, X[:, 0]),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidParameterError) as info:
            call()
        assert str(info.value) == (
            f"The 'batch_size' parameter of {name} must be an int in the range "
            f"[1, inf) or None. Got 0 instead."
        )


# ---- every entry point refuses meta tensors and masked values by name


def _entry_points():
    from infoscope import (
        DiffusionSpectralMutualInformation,
        NodeSNR,
        NTKEntropy,
        NTKMutualInformation,
        node_snr,
        node_snr_table,
        shannon_entropy,
        shannon_mutual_information,
    )
    from infoscope.selection import (
        GreedyEntropySelector,
        MaxEntropySelector,
        RandomSelector,
    )

    y = np.arange(12) % 3
    W = np.ones((12, 2))
    return {
        "diffusion_spectral_entropy": lambda X: diffusion_spectral_entropy(X),
        "diffusion_spectral_mutual_information": lambda X: (
            infoscope.diffusion_spectral_mutual_information(X, y)
        ),
        "adjacency_spectral_entropy": lambda X: adjacency_spectral_entropy(X),
        "shannon_entropy": lambda X: shannon_entropy(X),
        "shannon_mutual_information": lambda X: shannon_mutual_information(X, y),
        "hsic": lambda X: hsic(X, X),
        "cka": lambda X: cka(X, X),
        "hsic_test": lambda X: hsic_test(X, X),
        "ntk_entropy": lambda X: ntk_entropy(X),
        "ntk_mutual_information": lambda X: ntk_mutual_information(X, y),
        "node_snr": lambda X: node_snr(X, W),
        "node_snr_table": lambda X: node_snr_table([("l", X, W)]),
        "DiffusionSpectralEntropy": lambda X: DiffusionSpectralEntropy().fit(X),
        "DiffusionSpectralMutualInformation": lambda X: (
            DiffusionSpectralMutualInformation().fit(X, y)
        ),
        "HSIC": lambda X: HSIC().fit(X, y),
        "HSICPlane": lambda X: HSICPlane().fit(X, y),
        "NodeSNR": lambda X: NodeSNR().fit(X, weights=W),
        "NTKEntropy": lambda X: NTKEntropy().fit(X),
        "NTKMutualInformation": lambda X: NTKMutualInformation().fit(X, y),
        "MaxEntropySelector": lambda X: MaxEntropySelector(2).fit(X),
        "GreedyEntropySelector": lambda X: GreedyEntropySelector(2).fit(X),
        "RandomSelector": lambda X: RandomSelector(2, kernel="precomputed").fit(X),
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_every_entry_point_refuses_meta_tensors_and_masked_values(name):
    torch = pytest.importorskip("torch")
    call = _entry_points()[name]
    caller = name.replace("node_snr_table", "node_snr_table (layer 'l')")
    with pytest.raises(
        ValueError, match=rf"{re.escape(caller)}: `\w+` is a meta tensor"
    ):
        call(torch.empty(12, 12, device="meta"))
    J = np.random.default_rng(0).normal(size=(12, 12))
    K = J @ J.T
    masked = np.ma.masked_array(K, mask=np.eye(12, dtype=bool))
    with pytest.raises(ValueError, match=rf"{re.escape(caller)}: `\w+` has 12 masked"):
        call(masked)
    call(np.ma.masked_array(K))  # nothing masked: the data are read
