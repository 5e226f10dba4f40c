"""The diffusion family against its definition, dse-dsmi 1.1, and itself across backends."""

import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.datasets import make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import infoscope
from infoscope import (
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
    adjacency_spectral_entropy,
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
    shannon_entropy,
    shannon_mutual_information,
)
from infoscope.backends import (
    device_name,
    namespace_and_device,
    namespace_name,
    to_numpy,
)
from infoscope.estimators import diffusion


@pytest.fixture(scope="module")
def dse_dsmi():
    """dse-dsmi 1.1, imported without letting it silence warnings for the process."""
    filters = warnings.filters[:]
    try:
        module = pytest.importorskip("dse_dsmi")
    finally:
        warnings.filters[:] = filters
    return module


@pytest.fixture
def keep_python_random():
    # dse-dsmi reseeds Python's global RNG; give the rest of the run its state back.
    state = random.getstate()
    yield
    random.setstate(state)


def data(n=240, d=12, seed=0, scale=3.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale


def definition_dse(X, sigma, t):
    """A plain transcription of DESIGN section 4, independent of the package."""
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    G = np.exp(-D2 / (2 * sigma**2))
    d = G.sum(1)
    K = G / np.sqrt(np.outer(d, d))
    lam = np.abs(np.linalg.eigvalsh(K)) ** t
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# ---- exact values: the definition and dse-dsmi 1.1, on every backend


@pytest.mark.parametrize(
    ("sigma", "t"), [(1.0, 1), (5.0, 2), (10.0, 1), (10.0, 3), (4.0, 0.5)]
)
def test_exact_dse_equals_dse_dsmi(backend, dse_dsmi, sigma, t):
    X = data()
    reference = dse_dsmi.diffusion_spectral_entropy(X, gaussian_kernel_sigma=sigma, t=t)
    assert reference == pytest.approx(definition_dse(X, sigma, t), rel=1e-10)
    for dtype, rel in ((np.float64, 1e-9), (np.float32, 1e-4)):
        if dtype == np.float64 and not backend.has_float64:
            continue
        value = diffusion_spectral_entropy(
            backend.asarray(X, dtype), sigma=sigma, t=t, method="exact"
        )
        assert isinstance(value, float)
        assert value == pytest.approx(reference, rel=rel)


@pytest.mark.parametrize(
    ("variant", "reference_options"),
    [
        ("gaussian", {}),
        ("anisotropic", {"anisotropic": True}),
        ("knn", {"use_knn": True, "knn": 7}),
    ],
)
def test_adjacency_variants_equal_dse_dsmi(
    backend, dse_dsmi, variant, reference_options
):
    X = data(n=200)
    reference = dse_dsmi.adjacency_spectral_entropy(
        X, gaussian_kernel_sigma=6.0, **reference_options
    )
    for dtype, rel in ((np.float64, 1e-9), (np.float32, 1e-4)):
        if dtype == np.float64 and not backend.has_float64:
            continue
        value = adjacency_spectral_entropy(
            backend.asarray(X, dtype), sigma=6.0, variant=variant, n_neighbors=7
        )
        assert value == pytest.approx(reference, rel=rel)


def test_knn_graph_counts_ties_at_the_kth_place_like_dse_dsmi(dse_dsmi):
    # A lattice: many neighbours tie at the k-th distance.
    X = np.array([[i, j] for i in range(8) for j in range(8)], dtype=float)
    reference = dse_dsmi.adjacency_spectral_entropy(X, use_knn=True, knn=3)
    assert adjacency_spectral_entropy(X, variant="knn", n_neighbors=3) == pytest.approx(
        reference, rel=1e-9
    )


def test_dsmi_class_entropies_equal_dse_dsmi(backend, dse_dsmi):
    X = data(n=150)
    y = np.repeat([0, 1, 2], 50)
    X[y == 1] += 4.0
    estimator = DiffusionSpectralMutualInformation(sigma=5.0, random_state=0)
    estimator.fit(backend.asarray(X, np.float64 if backend.has_float64 else None), y)
    rel = 1e-9 if backend.has_float64 else 1e-4
    for c in range(3):
        reference = dse_dsmi.diffusion_spectral_entropy(
            X[y == c], gaussian_kernel_sigma=5.0
        )
        assert float(estimator.conditional_entropies_[c]) == pytest.approx(
            reference, rel=rel
        )
    assert list(estimator.classes_) == [0, 1, 2]
    np.testing.assert_allclose(
        to_numpy(estimator.class_weights_), [1 / 3] * 3, rtol=rel
    )


def test_dsmi_agrees_with_dse_dsmi_in_distribution(dse_dsmi, keep_python_random):
    """Same data, 40 seeds each: a two-sample KS test and a z-test on the means.

    The class terms are deterministic (tested above to 1e-9); only the random
    subsets differ, ours from `random_state`, dse-dsmi's from Python's `random`.
    If the two drew subsets differently (with replacement, of other sizes,
    from one class only), the distributions would separate: the subset
    entropies vary by about 1% between draws, while a wrong subset size
    shifts them by several percent.
    """
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=120)
    X = rng.normal(size=(120, 10)) * 3.0 + 2.0 * y[:, None]
    ours = np.array(
        [
            diffusion_spectral_mutual_information(X, y, sigma=5.0, random_state=seed)
            for seed in range(40)
        ]
    )
    theirs = np.array(
        [
            dse_dsmi.diffusion_spectral_mutual_information(
                X, y, gaussian_kernel_sigma=5.0, random_seed=seed
            )[0]
            for seed in range(40)
        ]
    )
    assert np.std(ours) > 0
    assert stats.ks_2samp(ours, theirs).pvalue > 0.01
    standard_error = math.sqrt(np.var(ours) / 40 + np.var(theirs) / 40)
    assert abs(ours.mean() - theirs.mean()) < 4 * standard_error


def test_continuous_targets_are_binned_like_dse_dsmi(dse_dsmi, keep_python_random):
    rng = np.random.default_rng(2)
    target = rng.uniform(-3, 5, size=200)
    X = rng.normal(size=(200, 4)) + target[:, None]
    estimator = DiffusionSpectralMutualInformation(sigma=3.0, random_state=0).fit(
        X, target
    )
    _, reference = dse_dsmi.diffusion_spectral_mutual_information(
        X, target, gaussian_kernel_sigma=3.0, num_repetitions=1
    )
    np.testing.assert_array_equal(
        estimator.classes_[to_numpy(estimator.labels_)], reference[:, 0]
    )
    assert len(estimator.classes_) == 10


def test_multidimensional_targets_are_clustered():
    Y, centres = make_blobs(
        300,
        n_features=3,
        centers=4,
        cluster_std=0.5,
        center_box=(-20, 20),
        random_state=0,
    )
    X = Y + np.random.default_rng(0).normal(size=Y.shape)
    estimator = DiffusionSpectralMutualInformation(
        sigma=2.0, n_clusters=4, random_state=0
    )
    estimator.fit(X, Y)
    assert len(estimator.classes_) == 4
    # Clusters of well-separated blobs are the blobs, up to naming.
    contingency = np.zeros((4, 4), int)
    np.add.at(contingency, (to_numpy(estimator.labels_), centres), 1)
    assert contingency.max(axis=1).sum() == 300


def test_shannon_entropy_equals_dse_dsmi_classic_entropy(dse_dsmi):
    X = data(n=300, d=5)
    for bins in (2, 3):
        reference = dse_dsmi.diffusion_spectral_entropy(
            X, classic_shannon_entropy=True, num_bins_per_dim=bins
        )
        assert shannon_entropy(X, n_bins=bins) == pytest.approx(reference, rel=1e-9)


# ---- properties


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 40),
    seed=st.integers(0, 2**16),
    sigma=st.floats(0.05, 50.0),
    t=st.floats(0.25, 4.0),
)
def test_dse_lies_between_zero_and_log_n(n, seed, sigma, t):
    X = np.random.default_rng(seed).normal(size=(n, 3))
    value = diffusion_spectral_entropy(X, sigma=sigma, t=t)
    assert -1e-9 <= value <= math.log2(n) + 1e-9


def test_dse_is_invariant_to_order_and_translation_and_converts_base():
    X = data(n=120)
    value = diffusion_spectral_entropy(X, sigma=4.0)
    assert diffusion_spectral_entropy(X[::-1] + 100.0, sigma=4.0) == pytest.approx(
        value, rel=1e-9
    )
    nats = diffusion_spectral_entropy(X, sigma=4.0, base=math.e)
    assert nats == pytest.approx(value * math.log(2), rel=1e-12)


def test_dse_limits_of_the_bandwidth():
    X = data(n=64)
    # sigma -> 0: G -> I, all eigenvalues 1, entropy log2(n).
    assert diffusion_spectral_entropy(X, sigma=1e-3) == pytest.approx(6.0, rel=1e-9)
    # sigma -> infinity: G -> 1 1^T, one eigenvalue, entropy 0.
    assert diffusion_spectral_entropy(X, sigma=1e6) == pytest.approx(0.0, abs=1e-6)


def test_median_sigma_is_the_median_pairwise_distance():
    X = data(n=50)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    median = np.median(D[np.triu_indices(50, 1)])
    estimator = DiffusionSpectralEntropy(sigma="median").fit(X)
    assert estimator.sigma_ == pytest.approx(median, rel=1e-12)
    assert estimator.entropy_ == pytest.approx(definition_dse(X, median, 1), rel=1e-9)


def test_dsmi_separates_informative_from_random_labels():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=400)
    X = rng.normal(size=(400, 6)) + 6.0 * np.eye(4, 6)[y]
    informative = diffusion_spectral_mutual_information(X, y, sigma=3.0, random_state=0)
    shuffled = diffusion_spectral_mutual_information(
        X, rng.permutation(y), sigma=3.0, random_state=0
    )
    assert informative > 1.0
    assert abs(shuffled) < 0.1


def test_shannon_mutual_information_is_plugin_mi_with_common_bins():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=400)
    X = rng.normal(size=(400, 3)) + 3.0 * y[:, None]
    dependent = shannon_mutual_information(X, y, random_state=0)
    independent = shannon_mutual_information(X, rng.permutation(y), random_state=0)
    assert 0.5 < dependent <= 1.0 + 1e-12  # at most H(Y) = 1 bit
    assert abs(independent) < 0.05


# ---- the approximate method


def manifold(n, d, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 4 * np.pi, n)
    roll = np.stack(
        [theta * np.cos(theta), theta * np.sin(theta), rng.uniform(0, 10, n)], 1
    )
    return roll @ rng.standard_normal((3, d))


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.random.default_rng(0).uniform(size=(2500, 128)),
        lambda: make_blobs(2500, n_features=64, centers=10, random_state=0)[0],
        lambda: manifold(2500, 64, 0),
    ],
    ids=["uniform", "blobs", "manifold"],
)
def test_approximate_dse_is_within_one_percent(make):
    X = make()
    exact = diffusion_spectral_entropy(X, method="exact")
    approximate = diffusion_spectral_entropy(X, method="approximate", random_state=0)
    assert approximate == pytest.approx(exact, rel=0.01)


def test_auto_switches_to_the_approximation_above_its_threshold(monkeypatch):
    X = np.random.default_rng(0).uniform(size=(900, 32))
    exact = diffusion_spectral_entropy(X, method="exact")
    monkeypatch.setattr(diffusion, "AUTO_EXACT_MAX_SAMPLES", 800)
    auto = diffusion_spectral_entropy(X, random_state=0)
    assert auto == diffusion_spectral_entropy(X, method="approximate", random_state=0)
    assert auto != exact
    assert auto == pytest.approx(exact, rel=0.01)


def test_nystrom_operator_trade_off_on_smooth_data():
    # The fallback for N whose dense operator does not fit; coarser, and
    # documented as such. Uniform data in 64 dimensions at sigma = 10 is
    # close to low rank plus a multiple of the identity, its intended case.
    X = np.random.default_rng(0).uniform(size=(2000, 64))
    exact = diffusion_spectral_entropy(X, method="exact")
    nystrom = diffusion_spectral_entropy(
        X, method="approximate", n_landmarks=500, random_state=0
    )
    assert nystrom == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_nystrom_error_estimate_covers_its_error(sigma):
    # entropy_error_ of a Nystrom fit bounds the approximation's error by
    # the distance to the DSE of its low-rank part alone: wide at a local
    # bandwidth, tight at a smooth one. Data outside the benchmark set
    # (two moons embedded in 8 dimensions, with noise).
    from sklearn.datasets import make_moons

    moons, _ = make_moons(n_samples=1500, noise=0.08, random_state=3)
    mixing = np.random.default_rng(4).normal(size=(2, 8))
    X = moons @ mixing + 0.05 * np.random.default_rng(5).normal(size=(1500, 8))
    exact = diffusion_spectral_entropy(X, sigma=sigma, method="exact")
    errors = []
    for m in (40, 150):
        fit = infoscope.DiffusionSpectralEntropy(
            sigma=sigma, method="approximate", n_landmarks=m, random_state=0
        ).fit(X)
        assert fit.n_landmarks_ == m
        assert abs(fit.entropy_ - exact) <= fit.entropy_error_
        # Not vacuous: the interval is narrower than the DSE's whole range.
        assert fit.entropy_error_ < math.log2(1500)
        errors.append(fit.entropy_error_)
    assert errors[1] < errors[0]  # more landmarks, a narrower bound


def test_nystrom_operator_is_its_dense_form_in_low_rank_plus_diagonal_terms():
    # K^ = D^-1/2 (B B^T + diag(delta)) D^-1/2, held as Q C Q^T + diag(c)
    # with the Rayleigh-Ritz products of Q: all of it against the dense form.
    from infoscope.kernels import NystromMap, gaussian_kernel

    X = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    rng = np.random.default_rng(1)
    operator = diffusion._nystrom_operator(X, np, "cpu", 1.5, 40, rng)
    landmarks = X[np.sort(np.random.default_rng(1).choice(300, 40, replace=False))]
    B = NystromMap(
        landmarks.astype(np.float64), lambda a, b: gaussian_kernel(a, b, sigma=1.5)
    ).transform(X.astype(np.float64))
    delta = np.clip(1 - np.sum(B * B, axis=1), 0, None)
    G = B @ B.T + np.diag(delta)
    d = G.sum(axis=1)
    K = G / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(operator.degrees, d, rtol=1e-4)
    np.testing.assert_allclose(
        operator.apply(np.eye(300, dtype=np.float32)), K, atol=2e-6
    )
    assert operator.trace == pytest.approx(np.trace(K), rel=1e-5)
    Q = operator.basis.astype(np.float64)
    assert Q.shape == (300, 40)
    np.testing.assert_allclose(Q.T @ Q, np.eye(40), atol=1e-5)
    T, M = operator.products
    np.testing.assert_allclose(T, Q.T @ K @ Q, atol=1e-5)
    np.testing.assert_allclose(M, Q.T @ K @ K @ Q, atol=1e-5)
    V = np.random.default_rng(2).normal(size=(300, 3))
    V -= Q @ (Q.T @ V)
    np.testing.assert_allclose(
        operator.apply_complement(V.astype(np.float32)), K @ V, atol=1e-5
    )
    assert operator.n_landmarks == 40


def test_default_landmarks_keep_time_and_memory_about_linear_in_n():
    landmarks = diffusion.default_landmarks
    assert landmarks(20_000, None) == 1853
    assert landmarks(1_000_000, None) == 262
    sizes = [10**4, 10**5, 10**6, 10**7]
    counts = [landmarks(n, None) for n in sizes]
    assert counts == sorted(counts, reverse=True)
    # The basis (n x m float32) stays within 1 GiB and n m^2 within 2^36.
    assert all(
        n * m * 4 <= 2**30 and n * m * m <= 2**36
        for n, m in zip(sizes[1:3], counts[1:3], strict=True)
    )
    # Free memory caps it, but never below 64 landmarks.
    assert landmarks(100_000, 2**30) == 2**30 // (64 * 100_000)
    assert landmarks(100_000, 2**20) == 64


def test_dse_beyond_the_dense_operator_holds_its_memory(monkeypatch):
    # With 200 MB free, 60,000 samples get the Nystrom operator (the dense one
    # would take 29 GB) with as many landmarks as fit, and stay within it.
    import tracemalloc

    from infoscope.backends import _memory

    free = 200 * 2**20
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: free)
    monkeypatch.setattr(diffusion, "available_memory", lambda xp, device: free)
    X = np.random.default_rng(0).uniform(size=(60_000, 16))
    tracemalloc.start()
    try:
        estimator = infoscope.DiffusionSpectralEntropy(
            method="approximate", random_state=0
        ).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert estimator.n_landmarks_ == 64
    assert peak < free
    assert 0 < estimator.entropy_ <= math.log2(60_000)
    assert (
        infoscope.DiffusionSpectralEntropy(method="approximate", random_state=0)
        .fit(X[:2000])
        .n_landmarks_
        is None
    )


def test_same_seed_same_value_on_every_backend(backend):
    X = np.random.default_rng(5).uniform(size=(700, 16))
    reference = diffusion_spectral_entropy(
        X, sigma=1.0, method="approximate", random_state=3
    )
    value = diffusion_spectral_entropy(
        backend.asarray(X), sigma=1.0, method="approximate", random_state=3
    )
    assert value == pytest.approx(reference, rel=1e-4)


# ---- memory guard and side effects


def test_exact_method_refuses_what_cannot_fit_before_allocating(monkeypatch):
    from infoscope.backends import _memory

    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 50 * 2**20)
    X = np.zeros((5000, 2))
    with pytest.raises(ValueError) as info:
        diffusion_spectral_entropy(X, method="exact")
    message = str(info.value)
    assert "the exact method needs about 572.2 MiB for 5000 samples" in message
    assert "only 50.0 MiB is free" in message
    assert "method='approximate', or max_samples=1478" in message
    # The suggestion is the largest size that fits.
    assert 3 * 1478**2 * 8 <= 50 * 2**20 < 3 * 1479**2 * 8


def test_approximate_mutual_information_estimator_needs_no_exact_operator(
    monkeypatch,
):
    from infoscope.backends import _memory

    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 10 * 2**20)
    X = data(n=1200)
    y = np.arange(1200) % 3
    with pytest.raises(ValueError, match="the exact method needs"):
        DiffusionSpectralMutualInformation(method="exact").fit(X, y)
    estimator = DiffusionSpectralMutualInformation(
        method="approximate", n_landmarks=300, random_state=0
    ).fit(X, y)
    assert estimator.mutual_information_ == diffusion_spectral_mutual_information(
        X, y, method="approximate", n_landmarks=300, random_state=0
    )
    assert estimator.embedding_.shape == (1200, estimator.n_components)
    assert np.all(np.isfinite(estimator.embedding_))


def test_no_global_side_effects(keep_python_random):
    filters = warnings.filters[:]
    python_state = random.getstate()
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global state is what must not change)
    X = data(n=800)
    diffusion_spectral_entropy(X, method="approximate", random_state=0)
    diffusion_spectral_mutual_information(X, np.arange(800) % 2, random_state=0)
    assert warnings.filters == filters
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002


# ---- estimators


@parametrize_with_checks(
    [
        DiffusionSpectralEntropy(sigma=2.0),
        DiffusionSpectralMutualInformation(sigma=2.0, n_repetitions=2, random_state=0),
    ]
)
def test_scikit_learn_contract(estimator, check):
    check(estimator)


def test_estimator_attributes_follow_the_input_backend(backend):
    X = backend.asarray(data(n=100))
    estimator = DiffusionSpectralEntropy(sigma=4.0, n_components=3).fit(X)
    xp, _ = namespace_and_device(X)
    for attribute in (estimator.eigenvalues_, estimator.embedding_):
        assert namespace_and_device(attribute)[0] is xp
    assert estimator.embedding_.shape == (100, 3)
    assert isinstance(estimator.entropy_, float)
    reference = DiffusionSpectralEntropy(sigma=4.0, n_components=3).fit(data(n=100))
    rel = 1e-7 if backend.has_float64 else 1e-3
    np.testing.assert_allclose(
        to_numpy(estimator.embedding_), reference.embedding_, rtol=rel, atol=rel
    )
    assert estimator.entropy_ == pytest.approx(reference.entropy_, rel=rel)


def test_diffusion_map_is_the_scaled_eigenvectors_of_p():
    X = data(n=80)
    estimator = DiffusionSpectralEntropy(sigma=4.0, n_components=3, t=2).fit(X)
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    G = np.exp(-D2 / 32.0)
    P = G / G.sum(1, keepdims=True)
    coords, lam = estimator.embedding_, estimator.diffusion_eigenvalues_
    # P psi = lambda psi for psi = coords / lambda^t; lambda are P's next-largest.
    psi = coords / lam**2
    np.testing.assert_allclose(P @ psi, psi * lam, atol=1e-10)
    np.testing.assert_allclose(
        lam, np.sort(np.linalg.eigvals(P).real)[::-1][1:4], rtol=1e-9
    )
    np.testing.assert_allclose(estimator.transform(X), coords, atol=1e-10)


def test_nystrom_extension_of_a_new_sample_is_near_its_neighbour():
    X = data(n=200)
    estimator = DiffusionSpectralEntropy(sigma=6.0).fit(X)
    nudged = estimator.transform(X[:5] + 1e-4)
    np.testing.assert_allclose(nudged, estimator.embedding_[:5], atol=1e-4)


def test_estimators_work_in_a_pipeline():
    X, y = make_blobs(150, n_features=5, centers=3, random_state=0)
    pipeline = make_pipeline(
        StandardScaler(), DiffusionSpectralMutualInformation(sigma=1.0)
    )
    coordinates = pipeline.fit_transform(X, y)
    assert coordinates.shape == (150, 2)
    assert pipeline[-1].mutual_information_ > 0.5


def test_max_samples_subsamples_reproducibly():
    X = data(n=300)
    a = DiffusionSpectralEntropy(sigma=4.0, max_samples=100, random_state=7).fit(X)
    b = DiffusionSpectralEntropy(sigma=4.0, max_samples=100, random_state=7).fit(X)
    assert a.entropy_ == b.entropy_
    assert a.entropy_ == pytest.approx(
        diffusion_spectral_entropy(X[a.sample_indices_], sigma=4.0), rel=1e-12
    )


def test_sample_indices_live_with_x_and_index_it(backend):
    X = backend.asarray(data(n=120))
    est = DiffusionSpectralEntropy(sigma=4.0, max_samples=50, random_state=3).fit(X)
    indices = est.sample_indices_
    assert type(indices) is type(X)
    assert device_name(namespace_and_device(indices)[1]) == device_name(
        namespace_and_device(X)[1]
    )
    kept = backend.xp.take(X, indices, axis=0)
    assert est.entropy_ == pytest.approx(
        diffusion_spectral_entropy(kept, sigma=4.0), rel=1e-9
    )


def test_public_names_are_exported_lazily():
    assert infoscope.DiffusionSpectralEntropy is DiffusionSpectralEntropy
    assert namespace_name(namespace_and_device(data(5))[0]) == "numpy"


# ---- bad input: the message names the caller, the argument and the fix


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: diffusion_spectral_entropy(data(10), sigma=-1.0),
            ValueError,
            r"The 'sigma' parameter of diffusion_spectral_entropy must be",
        ),
        (
            lambda: diffusion_spectral_entropy(data(10), method="fast"),
            ValueError,
            r"'method' parameter .* must be a str among",
        ),
        (
            lambda: diffusion_spectral_entropy(np.array([[np.nan, 1.0], [0.0, 1.0]])),
            ValueError,
            r"diffusion_spectral_entropy: `X` contains NaN or infinity",
        ),
        (
            lambda: diffusion_spectral_entropy(np.ones((1, 3))),
            ValueError,
            r"`X` has 1 sample but the measure needs at least 2",
        ),
        (
            lambda: diffusion_spectral_mutual_information(data(10), np.arange(9)),
            ValueError,
            r"diffusion_spectral_mutual_information: `Z` has 10 samples but `Y` has 9",
        ),
        (
            lambda: adjacency_spectral_entropy(data(5), variant="knn", n_neighbors=9),
            ValueError,
            r"n_neighbors=9 exceeds the 5 samples; lower n_neighbors",
        ),
        (
            lambda: DiffusionSpectralEntropy(n_components=5).fit(data(5)),
            ValueError,
            r"DiffusionSpectralEntropy: n_components=5 needs more than 5 samples",
        ),
        (
            lambda: DiffusionSpectralMutualInformation(n_clusters=10).fit(
                data(8), data(8, 2)
            ),
            ValueError,
            r"clustering continuous `y` into n_clusters=10 groups needs more than 10 samples",
        ),
    ],
)
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_transform_refuses_samples_the_kernel_cannot_reach():
    estimator = DiffusionSpectralEntropy(sigma=0.1).fit(data(50))
    with pytest.raises(
        ValueError, match=r"1 sample\(s\) of `X` are so far from every training sample"
    ):
        estimator.transform(np.full((1, 12), 1e6))
