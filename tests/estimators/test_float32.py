"""float32 agrees with float64 to 1e-4 relative, for every measure, on every backend.

Well-conditioned data (Gaussian activations, a Gram of many random
gradients, ReLU inputs of a dense layer) drawn by hypothesis; the reference
is the float64 NumPy value, the candidate the float32 value on each CPU
backend (NumPy, PyTorch, JAX with and without x64).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infoscope
from infoscope.backends import to_numpy
from infoscope.selection import MaxEntropySelector

RTOL = 1e-4
BACKEND_IDS = ("numpy", "torch-cpu", "jax-cpu-x64", "jax-cpu-x32")


def activations(seed, n, d):
    rng = np.random.default_rng(seed)
    # Three classes of fixed sizes: JAX compiles each block shape once.
    y = rng.permutation(np.arange(n) % 3)
    X = rng.normal(size=(n, d)) + 1.5 * y[:, None]
    return X, y


def gram(seed, n):
    J = np.random.default_rng(seed).normal(size=(n, 2 * n))
    return J @ J.T / n


def relu_layer(seed, n, d):
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=(n, d)), 0), rng.normal(size=(d, 4))


def _dse(b, X, y):
    return infoscope.diffusion_spectral_entropy(b(X), sigma="median")


def _dse_fixed_sigma(b, X, y):
    return infoscope.diffusion_spectral_entropy(b(X), sigma=3.0, t=2)


def _dsmi(b, X, y):
    return infoscope.diffusion_spectral_mutual_information(
        b(X), y, sigma=2.0, n_repetitions=2, random_state=0
    )


def clusters(seed, n, d, k):
    """Tight clusters of k points, far apart: a kNN graph without near ties.

    A kNN graph is a step function of the distances, so "well-conditioned"
    means a margin between the k-th and the (k+1)-th neighbour: here the
    k-th is in the point's cluster and the (k+1)-th in another one.
    """
    rng = np.random.default_rng(seed)
    centres = 20.0 * rng.normal(size=(n // k, d))
    return np.repeat(centres, k, axis=0) + 0.01 * rng.normal(size=(n // k * k, d))


def _adjacency(b, X, y):
    knn_data = clusters(int(abs(X[0, 0]) * 1e6), X.shape[0], X.shape[1], 4)
    return [
        infoscope.adjacency_spectral_entropy(b(X), sigma=2.0, variant="gaussian"),
        infoscope.adjacency_spectral_entropy(b(X), sigma=2.0, variant="anisotropic"),
        infoscope.adjacency_spectral_entropy(b(knn_data), variant="knn", n_neighbors=4),
    ]


def _shannon(b, X, y):
    return [
        infoscope.shannon_entropy(b(X), n_bins=3),
        infoscope.shannon_mutual_information(b(X), y, n_bins=3, random_state=0),
    ]


def _hsic(b, X, y):
    H = np.tanh(X @ np.random.default_rng(1).normal(size=(X.shape[1], 6)))
    return [
        infoscope.hsic(b(X), b(H), estimator=e, kernel_x=k, sigma_x=s)
        for e in ("biased", "unbiased")
        for k, s in (("gaussian", "median"), ("gaussian", 10.0), ("linear", "median"))
    ]


def _cka(b, X, y):
    H = np.tanh(X @ np.random.default_rng(1).normal(size=(X.shape[1], 6)))
    return [
        infoscope.cka(b(X), b(H), estimator=e, kernel_x=k)
        for e in ("biased", "unbiased")
        for k in ("gaussian", "linear")
    ]


def _hsic_test(b, X, y):
    H = np.tanh(X @ np.random.default_rng(1).normal(size=(X.shape[1], 6)))
    return [
        infoscope.hsic_test(
            b(X), b(H), method=m, n_permutations=20, random_state=0
        ).statistic
        for m in ("permutation", "gamma")
    ]


def _estimators(b, X, y):
    H = np.tanh(X @ np.random.default_rng(1).normal(size=(X.shape[1], 6)))
    plane = infoscope.HSICPlane(sigma=10.0).fit(b(X), y)
    return [
        *to_numpy(plane.transform([b(H)])).ravel().tolist(),
        infoscope.HSIC(normalized=True).fit(b(X), y).cka_,
        infoscope.DiffusionSpectralEntropy(sigma=2.0).fit(b(X)).entropy_,
    ]


def _node_snr(b, X, y):
    x, W = relu_layer(int(abs(X[0, 0]) * 1e6), X.shape[0], X.shape[1])
    S, F, _ = infoscope.node_snr(b(x), b(W))
    return [*to_numpy(S).tolist(), *to_numpy(F).tolist()]


def _ntk(b, X, y):
    K = gram(int(abs(X[0, 0]) * 1e6), X.shape[0])
    mi = infoscope.ntk_mutual_information(b(K), y, max_combination_size=2)
    chosen = MaxEntropySelector(5, 10, random_state=0).fit(b(K))
    return [
        infoscope.ntk_entropy(b(K)),
        infoscope.ntk_entropy(b(K), normalize=True, effective=True),
        *to_numpy(mi.entropies).tolist(),
        chosen.entropy_,
    ]


MEASURES = {
    "dse": _dse,
    "dse-fixed-sigma": _dse_fixed_sigma,
    "dsmi": _dsmi,
    "adjacency": _adjacency,
    "shannon": _shannon,
    "hsic": _hsic,
    "cka": _cka,
    "hsic_test": _hsic_test,
    "estimators": _estimators,
    "node_snr": _node_snr,
    "ntk": _ntk,
}


@pytest.fixture
def float32_backend(backend):
    if backend.id not in BACKEND_IDS:
        pytest.skip("float32 agreement is checked on the CPU backends")
    return backend


@pytest.mark.parametrize("measure", list(MEASURES))
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**16),
    # Few distinct shapes: JAX compiles once per shape.
    n=st.sampled_from([24, 40]),
    d=st.sampled_from([2, 5]),
)
def test_float32_agrees_with_float64(float32_backend, measure, seed, n, d):
    if float32_backend.spec.library == "jax":
        n, d = 30, 3  # one shape: JAX compiles each kernel once, not per example
    X, y = activations(seed, n, d)
    compute = MEASURES[measure]
    reference = np.atleast_1d(np.asarray(compute(lambda a: a, X, y), dtype=float))

    def single(a):
        return float32_backend.asarray(np.asarray(a, dtype=np.float32))

    got = np.atleast_1d(np.asarray(compute(single, X, y), dtype=float))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=0)
