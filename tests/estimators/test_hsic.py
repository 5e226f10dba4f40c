"""The HSIC family: HSIC, CKA, the independence test and the information plane.

Parity with the definitions of DESIGN section 4 on every backend, the
unbiasedness of the unbiased estimate, the test's calibration, the
approximate method's accuracy and streaming, the plane's Gram caching, the
recipes for PyGlow's and hyppo's numbers, bad input and scikit-learn's
contract.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import pdist
from sklearn.utils.estimator_checks import parametrize_with_checks

import infoscope
from infoscope import HSIC, HSICPlane, cka, hsic, hsic_test
from infoscope.backends import to_numpy
from infoscope.estimators import hsic as hsic_module
from infoscope.estimators import hsic_statistic
from infoscope.estimators.hsic import HSICTestResult

F64 = 1e-10  # the tolerance for float64


# ---- the definitions, transcribed plainly (NumPy, float64, n x n matrices)


def gaussian_gram(X, sigma):
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return np.exp(-D2 / (2 * sigma**2))


def median_sigma(X):
    return float(np.median(pdist(np.asarray(X, dtype=np.float64).reshape(len(X), -1))))


def reference_hsic(K, L, unbiased=False):
    """tr(K H L H) / (n-1)^2, or Song et al. (2012)'s unbiased estimate."""
    n = len(K)
    if not unbiased:
        H = np.eye(n) - np.ones((n, n)) / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ Kt @ Lt @ one
    ) / (n * (n - 3))


def reference_cka(K, L, unbiased=False):
    return reference_hsic(K, L, unbiased) / math.sqrt(
        reference_hsic(K, K, unbiased) * reference_hsic(L, L, unbiased)
    )


def dependent(seed=0, n=40, dx=3, dy=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dx))
    Y = np.tanh(X[:, :dy] * 1.5) + 0.3 * rng.normal(size=(n, dy))
    return X, Y


def close(actual, expected, dtype, scale=1.0):
    tol = F64 if "64" in str(dtype) else rtol(dtype)
    assert abs(actual - expected) <= tol * max(abs(expected), scale * tol), (
        actual,
        expected,
    )


def dtypes_of(backend):
    """The NumPy float dtypes the backend's device has, narrowest first."""
    return ["float32", "float64"] if backend.has_float64 else ["float32"]


def linear_callable(A, B):
    return A @ B.T


# ---- parity with the definitions on every backend


KERNEL_CASES = {
    "gaussian-median": {},
    "gaussian-numbers": {"sigma_x": 1.5, "sigma_y": 0.7},
    "gaussian-x-linear-y": {"kernel_y": "linear"},
    "linear": {"kernel_x": "linear"},
}


def reference_grams(X, Y, case):
    kx = case.get("kernel_x", "gaussian")
    ky = case.get("kernel_y", kx)
    sx = case.get("sigma_x", "median")
    sy = case.get("sigma_y", sx)
    grams = []
    for V, kind, sigma in ((X, kx, sx), (Y, ky, sy)):
        if kind == "linear":
            grams.append(V @ V.T)
        else:
            grams.append(
                gaussian_gram(V, median_sigma(V) if sigma == "median" else sigma)
            )
    return grams


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("case", list(KERNEL_CASES), ids=str)
def test_hsic_and_cka_equal_the_definitions_on_every_backend(backend, case, estimator):
    X, Y = dependent(seed=1)
    K, L = reference_grams(X, Y, KERNEL_CASES[case])
    unbiased = estimator == "unbiased"
    for dtype in dtypes_of(backend):
        Xb, Yb = backend.asarray(X, dtype=dtype), backend.asarray(Y, dtype=dtype)
        kwargs = {**KERNEL_CASES[case], "estimator": estimator}
        value = hsic(Xb, Yb, **kwargs)
        assert isinstance(value, float)
        close(value, reference_hsic(K, L, unbiased), dtype)
        close(cka(Xb, Yb, **kwargs), reference_cka(K, L, unbiased), dtype)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_linear_feature_form_equals_the_gram_form_on_every_backend(backend, estimator):
    X, Y = dependent(seed=2, n=60, dx=4, dy=3)
    Xb, Yb = backend.asarray(X), backend.asarray(Y)
    kwargs = {"estimator": estimator}
    # n (dx + dy) > dx dy: "linear" takes the feature form; the callable
    # computes the same kernel as a Gram.
    assert hsic_statistic._use_features(
        hsic_statistic.KernelChoice("linear", None, "x"),
        hsic_statistic.KernelChoice("linear", None, "y"),
        60,
        4,
        3,
        True,
    )
    features = hsic(Xb, Yb, kernel_x="linear", **kwargs)
    gram = hsic(Xb, Yb, kernel_x=linear_callable, **kwargs)
    dtype = dtypes_of(backend)[-1]
    close(features, gram, dtype)
    close(
        cka(Xb, Yb, kernel_x="linear", **kwargs),
        cka(Xb, Yb, kernel_x=linear_callable, **kwargs),
        dtype,
    )
    K, L = X @ X.T, Y @ Y.T
    close(features, reference_hsic(K, L, estimator == "unbiased"), dtype)


def test_linear_kernel_never_builds_a_gram_when_features_are_cheaper():
    # 200,000 samples: one n x n float64 Gram would need 320 GB; the memory
    # guard would refuse it, so success means the O(n d^2) feature form ran.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200_000, 5))
    Y = X[:, :2] + rng.normal(size=(200_000, 2))
    value = hsic(X, Y, kernel_x="linear")
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    assert value == pytest.approx(
        np.sum((Xc.T @ Yc) ** 2) / (len(X) - 1) ** 2, rel=1e-9
    )
    # Population linear CKA: ||S_xy||^2 / (||S_xx|| ||S_yy||) = 2 / sqrt(5 * 8).
    assert cka(X, Y, kernel_x="linear", estimator="unbiased") == pytest.approx(
        2 / math.sqrt(40), abs=0.005
    )


def test_callable_kernel_is_used_as_given():
    X, Y = dependent(seed=4)

    def laplacian(A, B):
        return np.exp(-np.abs(A[:, None, :] - B[None, :, :]).sum(-1))

    expected = reference_hsic(laplacian(X, X), laplacian(Y, Y))
    assert hsic(X, Y, kernel_x=laplacian) == pytest.approx(expected, rel=F64)


def test_1d_variables_are_one_feature():
    x = np.linspace(-2, 2, 30)
    y = x**2
    assert hsic(x, y) == hsic(x[:, None], y[:, None])


def test_sigma_y_defaults_to_the_rule_of_sigma_x_not_its_value():
    X, Y = dependent(seed=5)
    Y = 10 * Y  # a different scale: its own median differs from X's
    K, L = gaussian_gram(X, median_sigma(X)), gaussian_gram(Y, median_sigma(Y))
    assert hsic(X, Y) == pytest.approx(reference_hsic(K, L), rel=F64)
    K, L = gaussian_gram(X, 2.0), gaussian_gram(Y, 2.0)
    assert hsic(X, Y, sigma_x=2.0) == pytest.approx(reference_hsic(K, L), rel=F64)


def test_unbiased_estimate_is_unbiased():
    # X, Y discrete with a known joint pmf: the population HSIC is a finite
    # sum. The mean of the unbiased estimate over many samples of n = 8 must
    # match it; the biased estimate's mean, at that n, must not.
    values = np.array([-1.0, 0.0, 2.0])
    pmf = np.array([[0.25, 0.05, 0.03], [0.05, 0.2, 0.07], [0.02, 0.08, 0.25]])
    k = np.exp(-((values[:, None] - values[None, :]) ** 2) / 2)
    px, py = pmf.sum(1), pmf.sum(0)
    joint = np.einsum("ab,cd,ac,bd->", pmf, pmf, k, k)
    marginals = (px @ k @ px) * (py @ k @ py)
    mixed = np.einsum("ab,c,d,ac,bd->", pmf, px, py, k, k)
    population = joint + marginals - 2 * mixed
    rng = np.random.default_rng(6)
    cells = np.array(list(itertools.product(range(3), range(3))))
    unbiased, biased = [], []
    for _ in range(3000):
        drawn = cells[rng.choice(9, size=8, p=pmf.ravel())]
        x, y = values[drawn[:, 0]], values[drawn[:, 1]]
        unbiased.append(hsic(x, y, sigma_x=1.0, estimator="unbiased"))
        biased.append(hsic(x, y, sigma_x=1.0))
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased) - population) < 4 * se
    assert abs(np.mean(biased) - population) > 10 * se


# ---- properties


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(5, 30),
    shift=st.floats(-100, 100),
    kernel=st.sampled_from(["gaussian", "linear"]),
)
def test_properties(seed, n, shift, kernel):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Y = np.sin(X[:, :2]) + rng.normal(size=(n, 2))
    value = hsic(X, Y, kernel_x=kernel)
    assert value >= -1e-12  # biased HSIC is an inner product of PSD matrices
    assert hsic(Y, X, kernel_x=kernel) == pytest.approx(value, rel=1e-9, abs=1e-14)
    order = rng.permutation(n)
    assert hsic(X[order], Y[order], kernel_x=kernel) == pytest.approx(
        value, rel=1e-9, abs=1e-14
    )
    if kernel == "gaussian":  # translation invariant kernel
        assert hsic(X + shift, Y, kernel_x=kernel) == pytest.approx(
            value, rel=1e-6, abs=1e-12
        )
    alignment = cka(X, Y, kernel_x=kernel)
    assert -1e-12 <= alignment <= 1 + 1e-12
    assert cka(X, X, kernel_x=kernel) == pytest.approx(1.0)


def test_linear_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    X, Y = dependent(seed=7, n=50, dx=6, dy=4)
    Q, _ = np.linalg.qr(np.random.default_rng(8).normal(size=(6, 6)))
    value = cka(X, Y, kernel_x="linear")
    assert cka(5 * X @ Q, Y, kernel_x="linear") == pytest.approx(value, rel=1e-12)
    # ... and HSIC is not (it scales with the variable).
    assert hsic(5 * X, Y, kernel_x="linear") == pytest.approx(
        25 * hsic(X, Y, kernel_x="linear"), rel=1e-12
    )


def test_independent_variables_give_near_zero_and_dependence_does_not():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, 2))
    independent = hsic(X, rng.normal(size=(400, 2)), estimator="unbiased")
    dependent_value = hsic(X, X**2, estimator="unbiased")
    assert abs(independent) < 0.05 * dependent_value


# ---- the independence test


def test_permutation_and_gamma_tests_reject_a_clear_dependence():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 1))
    y = np.cos(2 * x) + 0.5 * rng.normal(size=(200, 1))  # uncorrelated, dependent
    assert abs(np.corrcoef(x[:, 0], y[:, 0])[0, 1]) < 0.3
    permutation = hsic_test(x, y, n_permutations=300, random_state=0)
    assert isinstance(permutation, HSICTestResult)
    assert permutation.pvalue < 0.01
    assert permutation.statistic == pytest.approx(hsic(x, y), rel=F64)
    gamma = hsic_test(x, y, method="gamma")
    assert gamma.pvalue < 0.01
    assert gamma.statistic == pytest.approx(hsic(x, y), rel=F64)


@pytest.mark.parametrize(
    ("method", "n", "draws"), [("permutation", 40, 300), ("gamma", 60, 300)]
)
def test_pvalues_are_uniform_under_independence(method, n, draws):
    rng = np.random.default_rng(11)
    pvalues = [
        hsic_test(
            rng.normal(size=(n, 2)),
            rng.standard_t(3, size=(n, 1)),
            method=method,
            n_permutations=199,
            random_state=i,
        ).pvalue
        for i in range(draws)
    ]
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    # ... and the KS test has power here: shrunken p-values fail it.
    assert stats.kstest(np.asarray(pvalues) ** 2, "uniform").pvalue < 0.01


@pytest.mark.parametrize("strength", [0.0, 0.08, 0.15])
def test_gamma_pvalue_is_within_005_of_the_permutation_pvalue_at_n500(strength):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(500, 2))
    y = strength * np.sin(2 * x[:, :1]) + rng.normal(size=(500, 1))
    permutation = hsic_test(x, y, n_permutations=1000, random_state=1).pvalue
    gamma = hsic_test(x, y, method="gamma").pvalue
    assert 0.01 < permutation < 0.99  # a case where the p-value says something
    assert abs(gamma - permutation) < 0.05


def test_unbiased_permutation_test_uses_the_unbiased_statistic():
    x, y = dependent(seed=13, n=30)
    result = hsic_test(x, y, estimator="unbiased", n_permutations=50, random_state=0)
    assert result.statistic == pytest.approx(hsic(x, y, estimator="unbiased"), rel=F64)


def test_permutation_test_is_reproducible_and_the_same_on_every_backend(backend):
    x, y = dependent(seed=14, n=30)
    expected = hsic_test(
        x,
        0.3 * y + np.random.default_rng(0).normal(size=y.shape),
        n_permutations=200,
        random_state=5,
    )
    got = hsic_test(
        backend.asarray(x),
        backend.asarray(0.3 * y + np.random.default_rng(0).normal(size=y.shape)),
        n_permutations=200,
        random_state=5,
    )
    assert got.pvalue == expected.pvalue
    close(got.statistic, expected.statistic, dtypes_of(backend)[-1])


# ---- the approximate method


def layer_data(n, seed=0, d=100):
    """Inputs and a random ReLU layer's activations: an information-plane pair."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    return X, np.maximum(X @ A + 0.1, 0)


def test_random_fourier_features_are_within_2_percent_at_n5000():
    X, H = layer_data(5000)
    exact = HSIC(normalized=True).fit(X, H)
    for seed in range(2):
        approximate = HSIC(normalized=True, method="approximate", random_state=seed)
        approximate.fit(X, H)
        assert abs(approximate.hsic_ / exact.hsic_ - 1) < 0.02
        assert abs(approximate.cka_ / exact.cka_ - 1) < 0.02


def test_nystrom_is_accurate_in_low_dimension_and_never_above_exact_there():
    rng = np.random.default_rng(15)
    x = rng.uniform(-2, 2, size=(3000, 2))
    y = np.sin(2 * x[:, :1]) * x[:, 1:] + 0.1 * rng.normal(size=(3000, 1))
    exact = hsic(x, y)
    approximate = hsic(
        x,
        y,
        method="approximate",
        approximation="nystrom",
        n_components=300,
        random_state=0,
    )
    assert abs(approximate / exact - 1) < 0.02


def test_approximate_unbiased_estimate_tracks_the_exact_one():
    X, H = layer_data(3000, seed=1, d=20)
    exact = hsic(X, H, estimator="unbiased")
    approximate = hsic(X, H, estimator="unbiased", method="approximate", random_state=0)
    assert abs(approximate / exact - 1) < 0.03


def test_partial_fit_over_any_split_equals_fit_for_linear_kernels():
    X, Y = dependent(seed=16, n=500, dx=6, dy=3)
    for estimator in ("biased", "unbiased"):
        whole = HSIC(kernel_x="linear", estimator=estimator, normalized=True).fit(X, Y)
        streamed = HSIC(kernel_x="linear", estimator=estimator, normalized=True)
        for chunk in np.array_split(np.arange(500), [7, 100, 101, 350]):
            streamed.partial_fit(X[chunk], Y[chunk])
        assert streamed.n_samples_seen_ == 500
        assert streamed.hsic_ == pytest.approx(whole.hsic_, rel=F64)
        assert streamed.cka_ == pytest.approx(whole.cka_, rel=F64)
        assert whole.hsic_ == pytest.approx(
            hsic(X, Y, kernel_x="linear", estimator=estimator), rel=F64
        )


def test_partial_fit_with_random_features_and_a_fixed_sigma_equals_fit():
    X, H = layer_data(3000, seed=2, d=10)
    params = {
        "method": "approximate",
        "sigma_x": 3.0,
        "sigma_y": 2.0,
        "random_state": 4,
    }
    whole = HSIC(**params).fit(X, H).hsic_
    streamed = HSIC(**params, batch_size=512)
    for chunk in np.array_split(np.arange(3000), 7):
        streamed.partial_fit(X[chunk], H[chunk])
    assert streamed.hsic_ == pytest.approx(whole, rel=1e-4)
    assert whole == pytest.approx(
        hsic(X, H, sigma_x=3.0, sigma_y=2.0, method="approximate", random_state=4),
        rel=1e-6,
    )


def test_approximate_method_gives_the_same_value_on_every_backend(backend):
    X, H = layer_data(800, seed=3, d=8)
    expected = hsic(X, H, method="approximate", random_state=7)
    got = hsic(
        backend.asarray(X), backend.asarray(H), method="approximate", random_state=7
    )
    assert got == pytest.approx(expected, rel=1e-4)


def test_approximate_method_needs_no_n_by_n_array():
    # 300,000 samples: an n x n float32 Gram would need 360 GB.
    rng = np.random.default_rng(17)
    X = rng.normal(size=(300_000, 3)).astype(np.float32)
    y = (X[:, :1] > 0).astype(np.float32)
    value = hsic(X, y, method="approximate", n_components=64, random_state=0)
    exact_small = hsic(X[:3000], y[:3000])
    assert abs(value / exact_small - 1) < 0.1


# ---- the information plane


def plane_data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])  # 3 classes
    W1, W2 = rng.normal(size=(6, 12)), rng.normal(size=(12, 5))
    H1 = np.maximum(X @ W1, 0)
    H2 = np.tanh(H1 @ W2 / 4)
    return X, y, [H1, H2]


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_plane_equals_hsic_of_each_layer_on_every_backend(backend, estimator):
    X, y, layers = plane_data()
    one_hot = np.eye(3)[y]
    dtype = dtypes_of(backend)[-1]
    plane = HSICPlane(estimator=estimator).fit(backend.asarray(X), backend.asarray(y))
    out = plane.transform([backend.asarray(H) for H in layers])
    xp = backend.xp
    assert out.shape == (2, 2)
    assert type(out) is type(backend.asarray(X))
    assert out.dtype == backend.asarray(X).dtype
    got = to_numpy(out)
    for i, H in enumerate(layers):
        K = gaussian_gram(H, median_sigma(H))
        Kx = gaussian_gram(X, median_sigma(X))
        L = one_hot @ one_hot.T
        close(float(got[i, 0]), reference_hsic(K, Kx, estimator == "unbiased"), dtype)
        close(float(got[i, 1]), reference_hsic(K, L, estimator == "unbiased"), dtype)
    del xp


def test_plane_normalized_gives_cka_coordinates():
    X, y, layers = plane_data(seed=1)
    one_hot = np.eye(3)[y].astype(float)
    out = HSICPlane(normalized=True).fit(X, y).transform(layers)
    for i, H in enumerate(layers):
        assert out[i, 0] == pytest.approx(cka(H, X), rel=F64)
        assert out[i, 1] == pytest.approx(cka(H, one_hot, kernel_y="linear"), rel=F64)
    assert np.all((out >= 0) & (out <= 1))


def test_plane_on_continuous_targets_uses_a_kernel_on_them():
    X, _, layers = plane_data(seed=2)
    target = np.sin(X[:, 0])
    plane = HSICPlane().fit(X, target)
    assert plane.classes_ is None
    out = plane.transform(layers)
    assert out[0, 1] == pytest.approx(hsic(layers[0], target), rel=F64)
    # String labels are classes.
    labels = np.array(["a", "b", "c"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    plane = HSICPlane().fit(X, labels)
    assert list(plane.classes_) == ["a", "b", "c"]


def test_plane_reproduces_pyglow_with_a_shared_sigma_and_the_output_as_y():
    # PyGlow's number: (1 / (m - 1)) tr(K H L H), Gaussian kernels of one
    # shared sigma, Y the network's output (transcribed from its source).
    X, _, (H1, H2) = plane_data(seed=3, n=60)
    output = np.exp(H2) / np.exp(H2).sum(1, keepdims=True)
    sigma = 5.0

    def pyglow_kernel(x):
        diff = x[:, None, :] - x[None, :, :]  # its m x m x d tensor
        return np.exp(-(diff**2).sum(-1) / (2 * sigma**2))

    def pyglow_hsic(a, b):
        m = len(a)
        H = np.eye(m) - np.ones((m, m)) / m
        return np.trace(pyglow_kernel(a) @ H @ pyglow_kernel(b) @ H) / (m - 1)

    plane = HSICPlane(sigma=sigma, target_type="continuous").fit(X, output)
    ours = (len(X) - 1) * to_numpy(plane.transform([H1]))[0]
    assert ours[0] == pytest.approx(pyglow_hsic(H1, X), rel=F64)
    assert ours[1] == pytest.approx(pyglow_hsic(H1, output), rel=F64)


def test_plane_computes_one_gram_per_layer(monkeypatch):
    X, y, layers = plane_data(seed=4)
    plane = HSICPlane().fit(X, y)
    calls = []
    original = hsic_statistic.KernelChoice.gram

    def counting(self, V, rng, caller):
        calls.append(V.shape)
        return original(self, V, rng, caller)

    monkeypatch.setattr(hsic_statistic.KernelChoice, "gram", counting)
    plane.transform(layers * 3)
    assert calls == [H.shape for H in layers * 3]


def test_plane_accepts_a_mapping_of_layers_in_order():
    X, y, (H1, H2) = plane_data(seed=5)
    plane = HSICPlane().fit(X, y)
    np.testing.assert_array_equal(
        plane.transform({"fc2": H2, "fc1": H1}), plane.transform([H2, H1])
    )


def test_plane_flattens_convolutional_maps_per_sample():
    X, y, (H1, _) = plane_data(seed=6)
    plane = HSICPlane().fit(X.reshape(len(X), 2, 3), y)
    np.testing.assert_allclose(
        plane.transform([H1.reshape(len(X), 3, 4)]),
        HSICPlane().fit(X, y).transform([H1]),
    )


# ---- bad input


def test_messages_name_the_argument_and_the_fix():
    X, Y = dependent(seed=20, n=10)
    with pytest.raises(ValueError, match=r"hsic: `X` has 10 samples but `Y` has 9"):
        hsic(X, Y[:9])
    bad = Y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"hsic: `Y` contains NaN or infinity \(1 of 20"
    ):
        hsic(X, bad)
    with pytest.raises(
        ValueError, match=r"hsic: `X` has 3 samples but the measure needs at least 4"
    ):
        hsic(X[:3], Y[:3], estimator="unbiased")
    with pytest.raises(ValueError, match=r"The 'sigma_x' parameter of hsic must be"):
        hsic(X, Y, sigma_x=-1.0)
    with pytest.raises(ValueError, match=r"The 'estimator' parameter of cka must be"):
        cka(X, Y, estimator="fast")
    with pytest.raises(
        ValueError, match=r"hsic: kernel_x\(A, B\) must return the \(10, 10\) Gram"
    ):
        hsic(X, Y, kernel_x=lambda A, B: A)
    with pytest.raises(ValueError, match=r"pass approximation='nystrom'"):
        hsic(X, Y, kernel_x=linear_callable, kernel_y="gaussian", method="approximate")
    with pytest.raises(
        ValueError,
        match=r"sigma_y='median' is undefined .* pass a positive number as sigma_y",
    ):
        hsic(X, np.r_[np.zeros(8), 1.0, 2.0])
    with pytest.raises(
        ValueError, match=r"cka: CKA is undefined: HSIC\(X, X\) or HSIC\(Y, Y\)"
    ):
        cka(X, np.ones(10), sigma_y=1.0)
    with pytest.raises(
        ValueError,
        match=r"hsic_test: the gamma approximation is derived for the biased",
    ):
        hsic_test(X, Y, method="gamma", estimator="unbiased")


def test_mixed_libraries_are_refused_naming_both():
    torch = pytest.importorskip("torch")
    X, Y = dependent(seed=21, n=10)
    with pytest.raises(ValueError, match=r"`X`.*`Y`|`Y`.*`X`"):
        hsic(X, torch.asarray(Y))


def test_exact_method_refuses_what_cannot_fit(monkeypatch):
    from infoscope.backends import _memory

    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 10**6)
    X, Y = dependent(seed=22, n=400)
    with pytest.raises(
        ValueError,
        match=r"hsic: the exact method needs about 3\.7 MiB for 400 samples \(3 400 x "
        r"400 arrays\), but only 976\.6 KiB is free on cpu\. Use "
        r"method='approximate' \(linear in n\), or pass at most 204 samples",
    ):
        hsic(X, Y)


def test_estimator_messages():
    X, Y = dependent(seed=23, n=30)
    with pytest.raises(AttributeError, match=r"has no attribute 'partial_fit'"):
        HSIC().partial_fit(X, Y)  # exact Gaussian HSIC needs all samples at once
    assert hasattr(HSIC(method="approximate"), "partial_fit")
    streamed = HSIC(kernel_x="linear").partial_fit(X, Y)
    with pytest.raises(
        ValueError, match=r"`y` has 1 column\(s\) but the first chunk had 2"
    ):
        streamed.partial_fit(X, Y[:, 0])
    plane = HSICPlane().fit(X, (Y[:, 0] > 0).astype(int))
    with pytest.raises(
        ValueError, match=r"`layers\[1\]` has 29 samples but fit saw 30"
    ):
        plane.transform([X, X[:29]])
    with pytest.raises(
        TypeError,
        match=r"`layers` must be a list \(or dict\).*for one layer pass \[H\]",
    ):
        plane.transform(X)
    torch = pytest.importorskip("torch")
    with pytest.raises(
        ValueError,
        match=r"must use the same namespace and device as fit: fitted on numpy",
    ):
        plane.transform([torch.asarray(X)])


# ---- scikit-learn contract and public API


@parametrize_with_checks(
    [
        HSIC(),
        HSIC(kernel_x="linear", estimator="unbiased", normalized=True),
        HSIC(method="approximate", approximation="nystrom", random_state=0),
    ]
)
def test_scikit_learn_contract(estimator, check):
    check(estimator)


_LAYERS = (
    "HSICPlane.transform takes a list of layer activations of the fitted samples "
    "and returns one row per layer; the check passes one array (of other "
    "samples) and expects one row per sample"
)
#: Every check scikit-learn runs on HSICPlane that fails, and why: all for its
#: transform, whose input and output are not the per-sample kind the generic
#: checks assume. fit, parameters, cloning, pickling and the rest pass.
PLANE_EXPECTED_FAILURES = {
    "check_n_features_in_after_fitting": (
        "each layer has its own width: transform checks the sample count of "
        "each layer, not X's n_features_in_"
    ),
    "check_estimators_nan_inf": (
        "the check passes one array to transform, which refuses it as not a "
        "list of layers before reading its values (a layer with NaN is refused "
        "by name: test_messages_name_the_argument_and_the_fix)"
    ),
    "check_transformer_general": (
        "no fit_transform: fit takes the inputs and labels, transform the "
        "layers, different variables"
    ),
    "check_transformer_data_not_an_array": "no fit_transform (as above)",
    "check_transformer_preserve_dtypes": (
        "no fit_transform; transform keeps the fitted dtype "
        "(test_plane_equals_hsic_of_each_layer_on_every_backend)"
    ),
    **{
        name: _LAYERS
        for name in (
            "check_array_api_input",
            "check_array_api_mixed_inputs",
            "check_array_api_same_namespace",
            "check_dict_unchanged",
            "check_dtype_object",
            "check_estimators_dtypes",
            "check_estimators_pickle",
            "check_f_contiguous_array_estimator",
            "check_fit2d_predict1d",
            "check_fit_idempotent",
            "check_methods_sample_order_invariance",
            "check_methods_subset_invariance",
        )
    },
}


@parametrize_with_checks(
    [
        HSICPlane(),
        HSICPlane(method="approximate", approximation="nystrom", random_state=0),
    ],
    expected_failed_checks=lambda estimator: PLANE_EXPECTED_FAILURES,
)
def test_scikit_learn_contract_of_the_plane(estimator, check):
    check(estimator)


def test_estimator_equals_the_functions():
    X, Y = dependent(seed=24, n=50)
    est = HSIC(normalized=True, estimator="unbiased").fit(X, Y)
    assert est.hsic_ == pytest.approx(hsic(X, Y, estimator="unbiased"), rel=F64)
    assert est.cka_ == pytest.approx(cka(X, Y, estimator="unbiased"), rel=F64)
    assert est.sigma_x_ == pytest.approx(median_sigma(X))
    assert est.sigma_y_ == pytest.approx(median_sigma(Y))


def test_public_names():
    for name in ("hsic", "cka", "hsic_test", "HSIC", "HSICPlane"):
        assert getattr(infoscope, name) is getattr(hsic_module, name)


def test_hyppo_statistic_is_unbiased_cka_with_x_median_shared():
    # The recipe of the user guide. hyppo is heavy (numba, statsmodels,
    # pandas), so it is not a test extra: this runs where it is installed.
    independence = pytest.importorskip("hyppo.independence")
    for seed in range(3):
        x, y = dependent(seed=30 + seed, n=50)
        y = y * 10**seed  # y's own scale does not matter to hyppo's bandwidth
        s = median_sigma(x)
        assert independence.Hsic().statistic(x, y) == pytest.approx(
            cka(x, y, sigma_x=s, estimator="unbiased"), rel=1e-9
        )
        assert independence.Hsic(bias=True).statistic(x, y) == pytest.approx(
            math.sqrt(cka(x, y, sigma_x=s)), rel=1e-9
        )


# ---- the approximate plane


def test_approximate_plane_tracks_the_exact_plane():
    X, H = layer_data(3000, seed=5, d=30)
    rng = np.random.default_rng(5)
    H2 = np.tanh(H @ rng.normal(size=(30, 20)) / 5)
    y = np.digitize(X[:, 0] + X[:, 1], [-1, 0, 1])
    for normalized in (False, True):
        exact = HSICPlane(normalized=normalized).fit(X, y).transform([H, H2])
        plane = HSICPlane(normalized=normalized, method="approximate", random_state=0)
        approximate = plane.fit(X, y).transform([H, H2])
        assert approximate.dtype == np.float32
        np.testing.assert_allclose(approximate, exact, rtol=0.03)
        # An int random_state draws the same features on every call.
        np.testing.assert_array_equal(plane.transform([H, H2]), approximate)


def test_approximate_plane_computes_x_features_once_per_chunk(monkeypatch):
    X, H = layer_data(1000, seed=6, d=10)
    y = (X[:, 0] > 0).astype(int)
    plane = HSICPlane(method="approximate", batch_size=300, random_state=0).fit(X, y)
    calls = []
    original = plane._map_x.blocks
    monkeypatch.setattr(
        plane._map_x, "blocks", lambda A: calls.append(A.shape[0]) or original(A)
    )
    plane.transform([H, H, H])
    assert calls == [300, 300, 300, 100]


def test_approximate_plane_needs_no_n_by_n_array():
    # 200,000 samples: the exact plane's Grams would need 320 GB each.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200_000, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    H = np.maximum(X @ rng.normal(size=(4, 8)).astype(np.float32), 0)
    with pytest.raises(ValueError, match="the exact method needs about"):
        HSICPlane().fit(X, y)
    out = HSICPlane(method="approximate", n_components=64, random_state=0).fit(X, y)
    coordinates = out.transform([H, X[:, 1:]])
    # The layer that carries X[:, 0] tells more about the label than one without.
    assert coordinates[0, 1] > 5 * coordinates[1, 1]


def test_approximate_plane_gives_the_same_coordinates_on_every_backend(backend):
    X, y, layers = plane_data(seed=8, n=400)
    expected = (
        HSICPlane(method="approximate", random_state=2).fit(X, y).transform(layers)
    )
    plane = HSICPlane(method="approximate", random_state=2)
    plane.fit(backend.asarray(X), backend.asarray(y))
    got = plane.transform([backend.asarray(H) for H in layers])
    assert type(got) is type(backend.asarray(X))
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-4)


def test_array_likes_follow_the_other_variables_library(backend):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 3))
    y = (X[:, 0] > 0).astype(float).tolist()  # a plain list
    reference = hsic(X, np.asarray(y)[:, None], sigma_x=1.5, sigma_y=1.0)
    assert hsic(backend.asarray(X), y, sigma_x=1.5, sigma_y=1.0) == pytest.approx(
        reference, rel=rtol(np.float32)
    )
    assert hsic(y, backend.asarray(X), sigma_x=1.0, sigma_y=1.5) == pytest.approx(
        reference, rel=rtol(np.float32)
    )
