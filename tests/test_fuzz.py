"""Fuzzing every public function and estimator: a bounded value or infoscope's error.

Hypothesis draws degenerate data (no samples, no features, constant columns,
duplicated rows, NaN and infinity), extreme scales (1e-300 to 1e300), every
dtype (float16 to float64, integers, bools) and every CPU array library
(NumPy, array-api-strict, PyTorch, JAX), with parameters around their
limits. Each call must either return finite numbers within the measure's
bounds, or raise a ValueError or TypeError from infoscope's own checks (a
``raise`` in an infoscope module, or scikit-learn's parameter validation
called by one): never NaN, infinity, a bound violated, or another library's
exception.

Bounded in time: ``FUZZ_EXAMPLES`` examples per test (about two minutes for
the whole file on two cores).
"""

from __future__ import annotations

import math
import os
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infoscope
from infoscope import backends, kernels
from infoscope.backends import to_numpy
from infoscope.selection import (
    GreedyEntropySelector,
    MaxEntropySelector,
    RandomSelector,
)

# A warning from a library (a mean of nothing, a division by zero) is a case
# infoscope did not handle: an error here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="FUZZ_RANDOM" not in os.environ,
)
PACKAGE = Path(infoscope.__file__).parent
SLACK = 1e-6  # relative slack on the bounds, for rounding

LIBRARIES = ["numpy", "strict", "torch", "jax"]
DTYPES = ["float64", "float32", "float16", "int64", "int8", "bool"]
SCALES = [1e-300, 1e-30, 1e-6, 1.0, 1e6, 1e30, 1e150, 1e300]
PATTERNS = ["normal", "constant", "duplicates", "integers", "one-hot", "nan", "inf"]


def _library_array(library, a):
    # JAX without x64 stores float64 as float32: 1e300 becomes inf, with a
    # warning that belongs to making the input, not to infoscope.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _convert(library, a)


def _convert(library, a):
    if library == "numpy":
        return a
    if library == "strict":
        xps = pytest.importorskip("array_api_strict")
        if a.dtype == np.float16:  # array-api-strict has no float16
            a = a.astype(np.float32)
        return xps.asarray(a)
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.asarray(a)
    jnp = pytest.importorskip("jax.numpy")
    return jnp.asarray(a)


@st.composite
def samples(draw, n_min=0, n_max=24, d_max=4, ndim=2):
    # Degenerate sizes (no sample, one, no feature) as one branch among
    # ordinary ones: hypothesis would otherwise draw them most of the time.
    n = draw(st.integers(n_min, min(3, n_max)) | st.integers(max(4, n_min), n_max))
    d = draw(st.just(0 if ndim == 2 else 1) | st.integers(1, d_max))
    # Ordinary data half of the time, so that the value paths are exercised
    # as much as the refusals.
    pattern = draw(st.sampled_from(PATTERNS + ["normal"] * 5))
    dtype = draw(st.sampled_from(DTYPES + ["float64", "float32"] * 2))
    scale = draw(st.sampled_from(SCALES + [1.0] * 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.normal(size=(n, d))
    if pattern == "constant":
        a = np.full((n, d), rng.normal())
    elif pattern == "duplicates" and n:
        a = a[rng.integers(0, max(1, n // 4), size=n)]
    elif pattern == "integers":
        a = rng.integers(-2, 3, size=(n, d)).astype(float)
    elif pattern == "one-hot" and d:
        a = np.eye(d)[rng.integers(0, d, size=n)]
    with np.errstate(all="ignore"):
        a = a * scale
        if pattern == "nan" and a.size:
            a.flat[rng.integers(a.size)] = np.nan
        if pattern == "inf" and a.size:
            a.flat[rng.integers(a.size)] = np.inf
        a = a.astype(dtype) if dtype != "bool" else a > 0
    if ndim == 1:
        a = a[:, 0] if d else a.reshape(n)
    library = draw(st.sampled_from(LIBRARIES))
    return _library_array(library, a)


def like(X, a):
    """NumPy data `a` in the library and on the device of the array `X`."""
    xp, device = backends.namespace_and_device(X)
    return backends.asarray(a, xp=xp, device=device)


def labels(n, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "classes":
        return rng.integers(0, 3, size=n)
    if kind == "strings":
        return np.array(["a", "b", "c"])[rng.integers(0, 3, size=n)]
    if kind == "one-class":
        return np.zeros(n, dtype=int)
    return rng.normal(size=n)  # continuous


def own_error(exc: BaseException) -> bool:
    """Raised by infoscope's own checks: a ValueError or TypeError whose raise
    is in an infoscope module (or in scikit-learn's parameter validation,
    which infoscope calls)."""
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    last = Path(frames[-1].filename)
    if type(exc).__name__ == "InvalidParameterError":
        return True
    return PACKAGE in last.parents and bool(str(exc))


def outcome(call):
    """The call's value, or None when it raised one of infoscope's own errors."""
    with np.errstate(all="ignore"):
        try:
            return call()
        except Exception as exc:
            if own_error(exc):
                return None
            raise AssertionError(
                f"foreign exception {type(exc).__name__}: {exc}"
            ) from exc


def finite(value):
    a = np.asarray(to_numpy(value), dtype=float)
    assert np.all(np.isfinite(a)), value
    return a


def n_samples(X):
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape else 0


def within_log_n(value, X, base=2):
    n = max(n_samples(X), 1)
    bound = math.log(n) / math.log(base)
    assert -SLACK <= value <= bound * (1 + SLACK) + SLACK, (value, bound)


# ---- the diffusion family


@FUZZ
@given(
    X=samples(),
    sigma=st.sampled_from([1e-300, 1e-3, 1.0, 10.0, 1e300, "median"]),
    t=st.sampled_from([1e-12, 0.5, 1, 3]),
    method=st.sampled_from(["exact", "approximate"]),
)
def test_diffusion_spectral_entropy(X, sigma, t, method):
    value = outcome(
        lambda: infoscope.diffusion_spectral_entropy(
            X, sigma=sigma, t=t, method=method, random_state=0
        )
    )
    if value is not None:
        within_log_n(float(finite(value)), X)


@FUZZ
@given(
    X=samples(),
    sigma=st.sampled_from([1e-300, 1.0, 1e300, "median"]),
    variant=st.sampled_from(["gaussian", "anisotropic", "knn"]),
    k=st.integers(1, 6),
)
def test_adjacency_spectral_entropy(X, sigma, variant, k):
    value = outcome(
        lambda: infoscope.adjacency_spectral_entropy(
            X, sigma=sigma, variant=variant, n_neighbors=k
        )
    )
    if value is not None:
        within_log_n(float(finite(value)), X)


@FUZZ
@given(
    X=samples(n_min=2),
    kind=st.sampled_from(["classes", "strings", "continuous", "one-class"]),
    sigma=st.sampled_from([1.0, "median"]),
    seed=st.integers(0, 100),
)
def test_diffusion_mutual_information_and_estimators(X, kind, sigma, seed):
    y = labels(n_samples(X), seed, kind)
    value = outcome(
        lambda: infoscope.diffusion_spectral_mutual_information(
            X, y, sigma=sigma, n_repetitions=2, n_clusters=3, random_state=0
        )
    )
    if value is not None:
        finite(value)
    est = outcome(lambda: infoscope.DiffusionSpectralEntropy(sigma=sigma).fit(X))
    if est is not None:
        within_log_n(finite(est.entropy_), X)
        finite(est.embedding_)
        mapped = outcome(lambda: est.transform(X))
        if mapped is not None:
            finite(mapped)
    mi = outcome(
        lambda: infoscope.DiffusionSpectralMutualInformation(
            sigma=sigma, n_repetitions=2, n_clusters=3, random_state=0
        ).fit(X, y)
    )
    if mi is not None:
        finite(mi.mutual_information_)
        finite(mi.embedding_)


@FUZZ
@given(
    X=samples(),
    bins=st.integers(1, 4),
    seed=st.integers(0, 100),
    kind=st.sampled_from(["classes", "continuous"]),
)
def test_shannon(X, bins, seed, kind):
    value = outcome(lambda: infoscope.shannon_entropy(X, n_bins=bins))
    if value is not None:
        within_log_n(float(finite(value)), X)
    y = labels(n_samples(X), seed, kind)
    value = outcome(
        lambda: infoscope.shannon_mutual_information(
            X, y, n_bins=bins, n_repetitions=2, n_clusters=3, random_state=0
        )
    )
    if value is not None:
        finite(value)


# ---- the HSIC family


KERNELS = st.sampled_from(
    [
        ("gaussian", "median"),
        ("gaussian", 1e-300),
        ("gaussian", 1.0),
        ("linear", "median"),
    ]
)


@FUZZ
@given(
    X=samples(n_min=1),
    seed=st.integers(0, 100),
    kernel=KERNELS,
    estimator=st.sampled_from(["biased", "unbiased"]),
    method=st.sampled_from(["exact", "approximate"]),
)
def test_hsic_and_cka(X, seed, kernel, estimator, method):
    n = n_samples(X)
    Y = like(X, np.random.default_rng(seed).normal(size=(n, 2)))
    kwargs = dict(
        kernel_x=kernel[0],
        sigma_x=kernel[1],
        estimator=estimator,
        method=method,
        n_components=16,
        random_state=0,
    )
    value = outcome(lambda: infoscope.hsic(X, Y, **kwargs))
    if value is not None:
        value = float(finite(value))
        if estimator == "biased":
            assert value >= -SLACK * abs(value) - 1e-12
    value = outcome(lambda: infoscope.cka(X, X, **kwargs))
    if value is not None:
        assert abs(float(finite(value))) <= 1 + 1e-4


@FUZZ
@given(
    X=samples(n_min=1),
    seed=st.integers(0, 100),
    kernel=KERNELS,
    method=st.sampled_from(["permutation", "gamma"]),
)
def test_hsic_test(X, seed, kernel, method):
    Y = like(X, np.random.default_rng(seed).normal(size=(n_samples(X), 1)))
    result = outcome(
        lambda: infoscope.hsic_test(
            X,
            Y,
            kernel_x=kernel[0],
            sigma_x=kernel[1],
            method=method,
            n_permutations=9,
            random_state=0,
        )
    )
    if result is not None:
        finite(result.statistic)
        assert 0 < result.pvalue <= 1


@FUZZ
@given(
    X=samples(n_min=1),
    seed=st.integers(0, 100),
    kind=st.sampled_from(["classes", "strings", "continuous", "one-class"]),
    kernel=KERNELS,
    normalized=st.booleans(),
    method=st.sampled_from(["exact", "approximate"]),
)
def test_hsic_estimators(X, seed, kind, kernel, normalized, method):
    n = n_samples(X)
    y = labels(n, seed, kind)
    est = outcome(
        lambda: infoscope.HSIC(
            kernel_x=kernel[0],
            sigma_x=kernel[1],
            normalized=normalized,
            method=method,
            n_components=16,
            random_state=0,
        ).fit(X, y)
    )
    if est is not None:
        finite(est.hsic_)
        if normalized:
            assert abs(float(finite(est.cka_))) <= 1 + 1e-4
    plane = outcome(
        lambda: infoscope.HSICPlane(
            kernel=kernel[0],
            sigma=kernel[1],
            normalized=normalized,
            method=method,
            n_components=16,
            random_state=0,
        ).fit(X, y)
    )
    if plane is not None:
        coordinates = outcome(lambda: plane.transform([X]))
        if coordinates is not None:
            finite(coordinates)


# ---- Node SNR


@FUZZ
@given(
    X=samples(n_min=1),
    W=samples(n_max=5),
    normalize=st.booleans(),
    batch=st.sampled_from([None, 1, 3]),
)
def test_node_snr(X, W, normalize, batch):
    Xn, Wn = np.asarray(to_numpy(X), dtype=float), np.asarray(to_numpy(W), dtype=float)
    if Xn.ndim == 2 and Wn.ndim == 2:
        # Weights that fit X, in X's library: the measure's paths, not only
        # its refusals (a mismatch or another library is refused by name).
        if Wn.shape[0] != Xn.shape[1]:
            shape = (Xn.shape[1], max(1, Wn.shape[1]))
            Wn = np.random.default_rng(0).normal(size=shape)
        W = like(X, Wn)
    result = outcome(
        lambda: infoscope.node_snr(X, W, normalize_inputs=normalize, batch_size=batch)
    )
    if result is not None:
        S, F = to_numpy(result.optimality), to_numpy(result.signal_factor)
        dead = np.linalg.norm(Wn, axis=0) == 0
        assert np.all(np.isfinite(S) | dead)
        assert np.all(np.abs(S[np.isfinite(S)]) <= 1 + 1e-4)
        # F is NaN for dead nodes and for nodes whose covariance is all 0.
        assert np.all(np.abs(F[np.isfinite(F)]) <= math.sqrt(Wn.shape[0]) + 1e-4)
    rows = outcome(lambda: infoscope.node_snr_table([("l", X, W)], batch_size=batch))
    est = outcome(lambda: infoscope.NodeSNR(batch_size=batch).fit(X, weights=W))
    if est is not None:
        assert est.n_samples_seen_ == n_samples(X)
    assert rows is None or rows[0].n_nodes >= 1


# ---- the NTK family and selection


@st.composite
def kernel_matrices(draw):
    n = draw(st.integers(0, 2) | st.integers(3, 12))
    rank = draw(st.just(0) | st.integers(1, 6))
    scale = draw(st.sampled_from(SCALES + [1.0] * 6))
    sign = draw(st.sampled_from([1.0, 1.0, 1.0, -1.0]))
    dtype = draw(st.sampled_from(["float64", "float32", "int64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    J = rng.normal(size=(n, rank))
    with np.errstate(all="ignore"):
        K = (sign * scale) * (J @ J.T)
        K = K.astype(dtype)
    return _library_array(draw(st.sampled_from(LIBRARIES)), K)


@FUZZ
@given(
    K=kernel_matrices(),
    normalize=st.booleans(),
    seed=st.integers(0, 100),
    size=st.sampled_from([2, "auto", None]),
)
def test_ntk_functions_and_estimators(K, normalize, seed, size):
    n = n_samples(K)
    value = outcome(lambda: infoscope.ntk_entropy(K, normalize=normalize))
    if value is not None:
        within_log_n(float(finite(value)), K)
    effective = outcome(lambda: infoscope.ntk_entropy(K, effective=True))
    if effective is not None:
        assert -SLACK <= float(finite(effective)) <= 1 + SLACK
    y = labels(n, seed, "classes")
    result = outcome(
        lambda: infoscope.ntk_mutual_information(
            K, y, normalize=normalize, max_combination_size=size
        )
    )
    if result is not None:
        finite(result.entropies)
        finite(result.mutual_information)
        nmi = to_numpy(result.normalized_mutual_information)
        sums = np.add.outer(
            np.diag(to_numpy(result.mutual_information)),
            np.diag(to_numpy(result.mutual_information)),
        )
        # Documented: NaN where S_A + S_B is 0 up to 1000 eps of K's dtype.
        assert np.all(np.isfinite(nmi) | (np.abs(sums) < 1e-3))
    est = outcome(lambda: infoscope.NTKEntropy(normalize=normalize).fit(K))
    if est is not None:
        within_log_n(finite(est.entropy_), K)
    mi = outcome(
        lambda: infoscope.NTKMutualInformation(max_combination_size=2).fit(K, y)
    )
    if mi is not None:
        finite(mi.entropies_)


@FUZZ
@given(K=kernel_matrices(), k=st.integers(1, 4), disjoint=st.booleans())
def test_selectors(K, k, disjoint):
    for make in (
        lambda: MaxEntropySelector(k, 3, disjoint=disjoint, random_state=0),
        lambda: GreedyEntropySelector(k, random_state=0),
        lambda: RandomSelector(k, kernel="precomputed", random_state=0),
    ):
        est = outcome(lambda make=make: make().fit(K))
        if est is not None:
            indices = to_numpy(est.indices_)
            assert len(set(indices.tolist())) == k
            assert np.all((0 <= indices) & (indices < n_samples(K)))
            within_log_n(finite(est.entropy_), np.zeros((k, 1)))


# ---- kernels and backends


@FUZZ
@given(
    X=samples(),
    sigma=st.sampled_from([1e-300, 1e-3, 1.0, 1e300]),
    k=st.integers(1, 5),
    unbiased=st.booleans(),
)
def test_kernels(X, sigma, k, unbiased):
    G = outcome(lambda: kernels.gaussian_kernel(X, sigma=sigma))
    if G is not None:
        G = finite(G)
        assert np.all((G >= 0) & (G <= 1))
    median = outcome(lambda: kernels.median_distance(X))
    if median is not None:
        assert float(finite(median)) >= 0
    bandwidth = outcome(lambda: kernels.resolve_bandwidth("median", X, caller="fuzz"))
    if bandwidth is not None:
        assert float(finite(bandwidth)) > 0
    A = outcome(lambda: kernels.knn_adjacency(X, k))
    if A is not None:
        A = finite(A)
        assert set(np.unique(A)) <= {0.0, 1.0}
        assert np.all(A.sum(axis=1) >= k)
    L = outcome(lambda: kernels.linear_kernel(backends.as_float(X)))
    if L is not None and G is not None and n_samples(X) >= 3:
        centred = outcome(
            lambda: kernels.centre_gram(
                backends.as_float(kernels.gaussian_kernel(X, sigma=sigma)),
                unbiased=unbiased,
            )
        )
        if centred is not None:
            finite(centred)


@FUZZ
@given(X=samples(), k=st.integers(1, 4))
def test_backend_helpers(X, k):
    D2s = outcome(lambda: backends.scaled_sq_distances(X))
    if D2s is not None:
        D, scale = D2s
        D = finite(D)
        assert np.all(D >= 0) and scale > 0
    neighbours = outcome(lambda: backends.knn_indices(X, k))
    if neighbours is not None:
        assert to_numpy(neighbours).shape == (n_samples(X), k)
    floats = outcome(lambda: backends.as_float(X))
    if floats is not None and n_samples(X) and floats.ndim == 2:
        square = outcome(
            lambda: backends.eigvalsh(
                backends.matmul(floats.T, floats) if floats.shape[1] else floats.T
            )
        )
        if square is not None:
            finite(square)
        moduli = outcome(lambda: backends.eigvals_abs(kernels.knn_adjacency(X, 1)))
        if moduli is not None:
            assert np.all(finite(moduli) >= 0)
