"""Diffusion Spectral Entropy and Mutual Information (Liao et al., CISS 2024).

``G_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))``, ``K = D^-1/2 G D^-1/2`` with
``D = diag(G 1)`` (the spectrum of the diffusion operator ``P = D^-1 G``),
``p_i = |lambda_i|^t / sum_j |lambda_j|^t`` and ``DSE = -sum_i p_i log p_i``.
DSMI compares each class of Y with random subsets of Z of the same size
(:mod:`._subset_mi`). The adjacency variants take the spectrum of G, of K, or
of the directed kNN graph.

The exact method is one symmetric eigendecomposition of K (in float64 where the
device has it) after O(N^2 d) work for the kernel, which is scaled by
broadcasting in place: no dense diagonal products, no symmetry check, and at
most three N x N arrays alive. The approximate method is described in
:func:`diffusion_spectral_entropy`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from ..backends import (
    MemoryLimitError,
    asarray,
    available_memory,
    check_random_state,
    compiled,
    draw_rows,
    eigh_top,
    eigvals_abs,
    eigvalsh,
    float_dtype,
    foreign_host_view,
    host_views,
    matmul,
    namespace_and_device,
    scaled_sq_distances,
    subsample_rows,
    take_rows,
    to_numpy,
)
from ..backends._blocks import block_reductions
from ..backends._linalg import (
    check_finite_matrix,
    eigh_top_kernel,
    host_lapack,
    symmetric_eigenvalues,
)
from ..backends._trace import spectral_sums, top_eigenpairs
from ..kernels import (
    NystromMap,
    gaussian_from_sq_distances,
    gaussian_kernel,
    knn_adjacency,
    resolve_bandwidth,
    symmetric_normalization,
)
from ._base import (
    BASE,
    RANDOM_STATE,
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_array,
    check_finite_result,
    check_params,
    check_square_arrays_fit,
)
from ._subset_mi import (
    SubsetMIOptions,
    paired_classes,
    subset_mutual_information,
)

__all__ = [
    "DiffusionSpectralEntropy",
    "DiffusionSpectralMutualInformation",
    "adjacency_spectral_entropy",
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
]

#: ``method="auto"`` is exact up to this many samples, approximate above.
AUTO_EXACT_MAX_SAMPLES = 5000

_SPECTRUM_PARAMETERS = {
    "sigma": [Interval(Real, 0, None, closed="neither"), StrOptions({"median"})],
    "base": BASE,
    "max_samples": [Interval(Integral, 2, None, closed="left"), None],
    "random_state": RANDOM_STATE,
}
# Below this many samples the approximation decomposes its operator exactly.
_APPROXIMATE_DENSE_BELOW = 600
#: Peak n x n arrays of the exact method, in the widest float of the device,
#: as measured (tests/estimators/test_edges.py): the kernel (scaled in place
#: into the operator) and the eigensolver's copy, with the distances' masks.
EXACT_ARRAYS = 3
#: The same for the directed kNN graph: its distances, the graph, and the
#: general eigensolver's copy in complex arithmetic (the neighbour search
#: itself holds one block of rows, at most 64 MiB). Measured 3.14.
KNN_ARRAYS = 4


@dataclass(frozen=True)
class DiffusionOptions:
    """The parameters of one DSE computation, validated together."""

    sigma: Any = 10.0
    t: float = 1
    base: float = 2
    method: str = "auto"
    max_samples: int | None = None
    random_state: Any = None
    n_probes: int = 48
    n_lanczos_steps: int = 20
    n_deflate: int = 128
    n_landmarks: int | None = None

    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        **_SPECTRUM_PARAMETERS,
        "t": [Interval(Real, 0, None, closed="neither")],
        "method": [StrOptions({"auto", "exact", "approximate"})],
        "n_probes": [Interval(Integral, 1, None, closed="left")],
        "n_lanczos_steps": [Interval(Integral, 1, None, closed="left")],
        "n_deflate": [Interval(Integral, 1, None, closed="left")],
        "n_landmarks": [Interval(Integral, 2, None, closed="left"), None],
    }

    @classmethod
    def of(cls, source: Any, **overrides: Any) -> DiffusionOptions:
        """The options named like `source`'s attributes (an estimator's params)."""
        values = {f.name: getattr(source, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})

    def validate(self, caller: str) -> DiffusionOptions:
        check_params(
            caller,
            self.CONSTRAINTS,
            **{f.name: getattr(self, f.name) for f in fields(self)},
        )
        return self


def _spectral_nats(magnitudes: Any, t: Any, xp: Any) -> Any:
    """``-sum p log p`` (nats) along the last axis, ``p = m^t / sum m^t``; traceable.

    ``0 log 0 = 0``: zero eigenvalues (and a padded block's zeros) add nothing.
    """
    m = xp.abs(magnitudes) ** t
    p = m / xp.sum(m, axis=-1, keepdims=True)
    positive = p > 0
    logs = xp.log(xp.where(positive, p, xp.ones_like(p)))
    return -xp.sum(xp.where(positive, p * logs, xp.zeros_like(p)), axis=-1)


def _entropy(magnitudes: Any, *, t: float, base: float, xp: Any) -> float:
    """``-sum p log_base p`` with ``p = m^t / sum m^t``, ``0 log 0 = 0``."""
    return float(_spectral_nats(magnitudes, t, xp)) / math.log(base)


def _block_nats(w: Any, sizes: Any, dtype: Any, t: Any) -> tuple[Any]:
    """DSE (nats) of each block's spectrum, in the kernel's dtype as `_dse_exact`."""
    xp = array_namespace(w)
    return (_spectral_nats(xp.astype(w, dtype), t, xp),)


def _subset_entropies(Z, options, sigma, caller):
    """DSE of row subsets of `Z` as principal blocks of one kernel, or None.

    Every subset's Gaussian kernel is a principal block of Z's, so the
    kernel is computed once and the subsets' operators ``D^-1/2 G_S D^-1/2``
    are decomposed as stacks (:func:`infoscope.backends._blocks.
    block_reductions`: for JAX, padded to a few compiled shapes). None when
    the exact method does not apply to all of Z, or its kernel would not fit:
    then each subset is computed on its own.
    """
    xp, device = namespace_and_device(Z)
    n = Z.shape[0]
    if _resolve_method(options.method, n) != "exact":
        return None
    try:
        _check_exact_fits(n, xp, device, caller)
    except MemoryLimitError:
        return None
    view = foreign_host_view(Z)
    if view is not None:
        # JAX's CPU buffer read in place: NumPy's LAPACK decomposes the blocks
        # as they are, where JAX pads them to compiled shapes and calls back.
        Z = view
    G = gaussian_kernel(Z, sigma=sigma)

    def entropies(blocks: list[np.ndarray]) -> np.ndarray:
        (nats,) = block_reductions(
            G, blocks, _block_nats, normalize=True, params=(float(options.t),)
        )
        values = nats / math.log(options.base)
        for value in values[~np.isfinite(values)][:1]:
            check_finite_result(
                float(value),
                caller=caller,
                what="the entropy",
                fix="rescale X (divide it by a constant) or pass a larger sigma",
            )
        return values

    return entropies


def _xlogx(w: np.ndarray) -> np.ndarray:
    w = np.abs(w)
    return np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)


def _resolve_sigma(sigma, X, rng, caller) -> float:
    return resolve_bandwidth(sigma, X, caller=caller, random_state=rng)


def _check_exact_fits(
    n: int,
    xp: Any,
    device: Any,
    caller: str,
    *,
    has_method: bool = True,
    count: int = EXACT_ARRAYS,
) -> None:
    """Refuse, before allocating, an exact N x N computation that cannot fit.

    The advice names the options `caller` has: ``method`` (the diffusion
    measures) and ``max_samples`` (all of them).
    """
    method = "Use method='approximate', or " if has_method else "Use "
    check_square_arrays_fit(
        n,
        count,
        float_dtype(xp, device),
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: (
            f"{method}max_samples={fits} (or fewer) to compute on a random subset"
        ),
    )


def _resolve_method(method: str, n: int) -> str:
    if method == "auto":
        return "exact" if n <= AUTO_EXACT_MAX_SAMPLES else "approximate"
    return method


@dataclass
class _Spectrum:
    """What one DSE computation leaves behind for an estimator."""

    entropy: float
    sigma: float
    eigenvalues: Any  # all of them, descending (exact method) or None
    top_values: Any  # leading eigenvalues of K, descending, or None
    top_vectors: Any  # (n, k) eigenvectors of K, or None
    degrees: Any  # row sums of G (exact) or of its approximation
    error: float = 0.0  # estimated absolute error of `entropy` (approximate)
    n_landmarks: int | None = None  # of the Nystrom operator, if one was used


def _exact_operator(X: Any, sigma: float) -> tuple[Any, Any]:
    return symmetric_normalization(gaussian_kernel(X, sigma=sigma))


def _dse_exact(X, xp, device, *, sigma, t, base, n_components, caller) -> _Spectrum:
    _check_exact_fits(X.shape[0], xp, device, caller)
    K, degrees = _exact_operator(X, sigma)
    k = min(n_components + 1, X.shape[0]) if n_components else 0
    check_finite_matrix(K, xp, "eigh_top" if k else "eigvalsh")
    kernel = compiled(_exact_spectrum, xp, static_argnames=("k", "wide", "host"))
    w, nats, top = kernel(
        K,
        t,
        k=k,
        wide=float_dtype(xp, device),
        host=host_lapack(xp, device),
    )
    top_values, top_vectors = top if k else (None, None)
    entropy = float(nats) / math.log(base)
    return _Spectrum(entropy, sigma, w, top_values, top_vectors, degrees)


def _exact_spectrum(K, t, *, k, wide, host):
    """The spectrum of the finite operator K: all eigenvalues (descending, in
    K's dtype, decomposed in `wide`), the entropy in nats and the `k` leading
    eigenpairs; compiled whole for JAX. K is overwritten where NumPy allows."""
    xp = array_namespace(K)
    top = eigh_top_kernel(K, k=k, host=host) if k else None
    w = symmetric_eigenvalues(xp.astype(K, wide, copy=False), host=host, overwrite=True)
    w = xp.flip(xp.astype(w, K.dtype, copy=False))
    return w, _spectral_nats(w, t, xp), top


@dataclass(frozen=True)
class _Operator:
    """``V -> K V`` for the approximate method, with what the probes need.

    `trace` is the sum of the diagonal of the operator that `apply` applies
    (float64). A low-rank-plus-diagonal operator also gives the orthonormal
    `basis` of its low-rank part, the basis's Rayleigh-Ritz `products`, and
    `apply_complement`, the cheaper product with vectors orthogonal to it.
    """

    apply: Any
    degrees: Any
    trace: float
    basis: Any = None
    products: Any = None  # Q^T K Q and (KQ)^T (KQ) for the basis Q
    apply_complement: Any = None
    n_landmarks: int | None = None
    low_rank_values: Any = None  # eigenvalues of C (NumPy): the low-rank part's


#: Float32 entries of the Nystrom basis (n x m) by default, at most: 1 GiB.
_NYSTROM_BASIS_ENTRIES = 2**28
#: Multiply-adds of n m^2 by default, at most (the basis is orthonormalised
#: and projected on itself: about 12 n m^2 flops); 262 landmarks at a million
#: samples, 828 at 100,000.
_NYSTROM_BASIS_WORK = 2**36
#: The most landmarks by default, and the fewest.
_NYSTROM_MAX_LANDMARKS = 2000
_NYSTROM_MIN_LANDMARKS = 64
#: Rows of X whose kernel against the landmarks is computed at once.
_NYSTROM_BLOCK_ENTRIES = 2**22


def default_landmarks(n: int, free: int | None) -> int:
    """Landmarks of the Nystrom operator when `n_landmarks` is None.

    At most 2,000, and fewer where the n x m float32 basis would exceed
    1 GiB or a sixteenth of the free memory (the probes and the kernel blocks
    need about as much again), or ``n m^2`` would exceed 2^36; at least 64.
    Time and memory then grow about linearly in n.

    Examples
    --------
    >>> from infoscope.estimators.diffusion import default_landmarks
    >>> default_landmarks(100_000, None), default_landmarks(1_000_000, None)
    (828, 262)
    """
    m = min(
        _NYSTROM_MAX_LANDMARKS,
        _NYSTROM_BASIS_ENTRIES // n,
        math.isqrt(_NYSTROM_BASIS_WORK // n),
    )
    if free is not None:
        m = min(m, free // (16 * 4 * n))
    return int(max(_NYSTROM_MIN_LANDMARKS, m))


def _nystrom_operator(X, xp, device, sigma, n_landmarks, rng):
    """``K^ = D^-1/2 (B B^T + diag(delta)) D^-1/2`` as ``Q C Q^T + diag(c)``.

    ``B B^T`` is the Nystrom approximation of G from random landmarks
    (:class:`infoscope.kernels.NystromMap`); the diagonal ``delta = 1 -
    diag(B B^T)`` restores G's unit diagonal (and with it the trace). For
    high-dimensional data a Gaussian Gram matrix is close to low rank plus a
    multiple of the identity (El Karoui 2010), which is what this form can
    represent. The scaled features are orthonormalised into the (n, r) basis
    Q (r <= m) with an r x r core C on the host, so that the probes deflate
    the whole low-rank part and see only the diagonal. The kernel against
    the landmarks is computed in blocks of rows: the peak is about two
    n x m float32 arrays (the blocks and the basis they are joined into).
    """
    n = X.shape[0]
    landmarks = take_rows(X, draw_rows(rng, n, min(n_landmarks, n)))
    nystrom = NystromMap(landmarks, functools.partial(gaussian_kernel, sigma=sigma))
    rows = max(1, _NYSTROM_BLOCK_ENTRIES // nystrom.n_components)
    starts = range(0, n, rows)
    blocks = [nystrom.transform(X[i : i + rows, ...]) for i in starts]
    norms = xp.concat([xp.sum(B * B, axis=1) for B in blocks])
    delta = xp.clip(1.0 - norms, 0.0, None)
    wide = float_dtype(xp, device)
    totals = xp.sum(blocks[0], axis=0, dtype=wide)
    for B in blocks[1:]:
        totals = totals + xp.sum(B, axis=0, dtype=wide)
    totals = xp.astype(totals, X.dtype)[:, None]
    degrees = xp.concat([matmul(B, totals)[:, 0] for B in blocks]) + delta
    scale = 1.0 / xp.sqrt(degrees)
    for j, i in enumerate(starts):
        blocks[j] = blocks[j] * scale[i : i + rows, None]
    # Two passes of Gram orthonormalisation on the host, as for the
    # subspace iteration; B = Q R^+ on the span kept, so B B^T = Q C Q^T.
    R = np.eye(blocks[0].shape[1])
    for _ in range(2):
        gram = sum(
            np.asarray(to_numpy(matmul(B.T, B)), dtype=np.float64) for B in blocks
        )
        w, V = np.linalg.eigh((gram + gram.T) / 2)
        keep = w > w[-1] * 1e-10
        T = V[:, keep] / np.sqrt(w[keep])
        R = R @ T
        step = xp.asarray(T, dtype=X.dtype, device=device)
        for j, B in enumerate(blocks):
            blocks[j] = matmul(B, step)
    R_pinv = np.linalg.pinv(R)
    core = R_pinv @ R_pinv.T
    c = (delta / degrees)[:, None]
    # The Rayleigh-Ritz products of Q for K^ Q = Q C + c Q, from
    # E1 = Q^T diag(c) Q and E2 = Q^T diag(c)^2 Q.
    E1, E2 = np.zeros_like(core), np.zeros_like(core)
    for j, i in enumerate(starts):
        cQ = c[i : i + rows] * blocks[j]
        E1 += np.asarray(to_numpy(matmul(blocks[j].T, cQ)), dtype=np.float64)
        E2 += np.asarray(to_numpy(matmul(cQ.T, cQ)), dtype=np.float64)
    del cQ
    E1 = (E1 + E1.T) / 2
    products = (core + E1, core @ core + core @ E1 + E1 @ core + (E2 + E2.T) / 2)
    Q = xp.concat(blocks)
    del blocks
    trace = float(np.trace(core)) + _float64_sum(c)
    core_device = xp.asarray(core, dtype=X.dtype, device=device)

    def apply(V):
        return matmul(Q, matmul(core_device, matmul(Q.T, V))) + c * V

    def apply_complement(V):
        return c * V

    return _Operator(
        apply,
        degrees,
        trace,
        Q,
        products,
        apply_complement,
        landmarks.shape[0],
        np.linalg.eigvalsh(core),
    )


def _float64_sum(x) -> float:
    return float(np.sum(np.asarray(to_numpy(x), dtype=np.float64)))


def _approximate_operator(X, xp, device, sigma, rng, options) -> _Operator:
    """``V -> K V`` in float32: dense, or Nystrom where the dense one won't fit."""
    n = X.shape[0]
    # The probes need no float64: the estimate's error is far above float32's.
    dtype = xp.float32
    Xa = xp.astype(X, dtype)
    landmarks = options.n_landmarks
    if landmarks is None:
        free = available_memory(xp, device)
        if free is not None and 2 * n * n * 4 > free // 2:
            landmarks = default_landmarks(n, free)
    if landmarks is None:
        K, degrees = _exact_operator(Xa, sigma)

        def apply(V):
            return matmul(K, V)

        return _Operator(apply, degrees, _float64_sum(xp.linalg.diagonal(K)))
    return _nystrom_operator(Xa, xp, device, sigma, landmarks, rng)


def _entropy_and_error(sums, *, t, base, n):
    """DSE from the spectral sums of ``|l|^t``, ``|l|^t log |l|^t`` and ``l``,
    and an estimate of its absolute error (both in the units of `base`).

    ``DSE = log S - H / S``. The error estimate adds three parts: three
    standard errors of the probe average (delta method over the independent
    probes); the change of the Lanczos quadrature from half the steps to all
    of them; and the second-order error of deflating with inexact Ritz pairs,
    ``sum_i r_i^2 (f'(theta_i) - f'(mu)) / (theta_i - mu)`` for residual norms
    ``r_i`` and the mean eigenvalue ``mu`` of the complement. Both biases
    raise the DSE estimate for the convex ``x log x``.
    """
    log_base = math.log(base)

    def entropy(estimates):
        S, H = (float(v) for v in estimates[:2])
        return (math.log(S) - H / S) / log_base, S, H

    value, S, H = entropy(sums.estimates)
    probes = sums.probe_terms.shape[0]
    error = 0.0
    if probes > 1:
        influence = (1 / S + H / S**2) * sums.probe_terms[:, 0]
        influence -= sums.probe_terms[:, 1] / S
        error += 3 * float(np.std(influence, ddof=1)) / math.sqrt(probes) / log_base
        error += abs(value - entropy(sums.coarse_estimates)[0])
    theta = sums.ritz_values
    rest = n - theta.shape[0]
    if rest > 0:
        mu = max((float(sums.estimates[2]) - float(np.sum(theta))) / rest, 1e-12)
        slopes = [
            _divided_difference(f, np.abs(theta), mu) for f in _dse_functions(t)[:2]
        ]
        dS, dH = (float(np.sum(sums.residuals * s)) for s in slopes)
        error += abs((1 / S + H / S**2) * dS - dH / S) / log_base
    return value, error


def _nystrom_error(entropy: float, low_rank_values: np.ndarray, t, base) -> float:
    """A bound on the Nystrom operator's error: the estimate less the DSE of
    its low-rank part alone.

    The diagonal that completes the Nystrom operator spreads the kernel's
    residual mass evenly over every sample, which raises the DSE (in every
    benchmark case, never lowers it); the low-rank part alone leaves that
    mass out, which lowers it. The true DSE lay between the two in 71 of the
    72 benchmark cases at 66 to 524 landmarks, the one miss below the
    reference's accuracy (user guide), so their distance bounds the error:
    small where the kernel is close to low rank, and as wide as the
    approximation is uncertain where it is not (small sigma).
    """
    low = _entropy(np.abs(low_rank_values), t=t, base=base, xp=np)
    return max(entropy - low, 0.0)


def _derivative(f, x):
    h = 1e-4 * x
    return (f(x + h) - f(x - h)) / (2 * h)


def _divided_difference(f, x, mu):
    """``(f'(x) - f'(mu)) / (x - mu)``, elementwise, ``f''`` where they meet."""
    x = np.maximum(x, 1e-300)
    gap = x - mu
    near = np.abs(gap) < 1e-3 * np.maximum(x, mu)
    safe = np.where(near, 1.0, gap)
    second = (_derivative(f, x * 1.001) - _derivative(f, x * 0.999)) / (0.002 * x)
    return np.where(near, second, (_derivative(f, x) - _derivative(f, mu)) / safe)


def _dse_functions(t):
    """``|l|^t``, ``|l|^t log |l|^t`` and ``l`` (the control variate)."""
    return [
        lambda w: np.abs(w) ** t,
        lambda w: _xlogx(np.abs(w) ** t),
        lambda w: w,
    ]


def _dse_approximate(
    X, xp, device, *, sigma, t, base, n_components, rng, options, caller
) -> _Spectrum:
    n = X.shape[0]
    if n < _APPROXIMATE_DENSE_BELOW:
        # Probing costs more than decomposing a matrix this small.
        return _dse_exact(
            X,
            xp,
            device,
            sigma=sigma,
            t=t,
            base=base,
            n_components=n_components,
            caller=caller,
        )
    operator = _approximate_operator(X, xp, device, sigma, rng, options)
    sums = spectral_sums(
        operator.apply,
        n,
        _dse_functions(t),
        xp=xp,
        device=device,
        dtype=xp.float32,
        rng=rng,
        n_probes=options.n_probes,
        n_steps=options.n_lanczos_steps,
        n_deflate=options.n_deflate,
        basis=operator.basis,
        products=operator.products,
        apply_complement=operator.apply_complement,
    ).controlled(2, operator.trace)
    power_sum = float(sums.estimates[0])
    if not power_sum > 0:
        raise ValueError(
            f"{caller}: the stochastic estimate of sum |lambda|^t is not positive "
            f"({power_sum:.3g}); use method='exact', or more n_probes."
        )
    entropy, error = _entropy_and_error(sums, t=t, base=base, n=n)
    if operator.low_rank_values is not None:
        error = max(error, _nystrom_error(entropy, operator.low_rank_values, t, base))
    # The estimate is stochastic; the value it estimates lies in [0, log n].
    # Projecting onto those bounds can only bring it closer.
    entropy = min(max(entropy, 0.0), math.log(n) / math.log(base))
    ritz_values = sums.ritz_values
    k = min(n_components + 1, ritz_values.shape[0]) if n_components else 0
    top_values = (
        xp.asarray(ritz_values[:k].copy(), dtype=X.dtype, device=device) if k else None
    )
    top_vectors = xp.astype(sums.ritz_vectors(k), X.dtype) if k else None
    return _Spectrum(
        entropy,
        sigma,
        None,
        top_values,
        top_vectors,
        operator.degrees,
        error,
        operator.n_landmarks,
    )


def _dse(
    X: Any,
    options: DiffusionOptions,
    *,
    rng: Any,
    caller: str,
    n_components: int = 0,
    sigma: float | None = None,
) -> _Spectrum:
    """DSE of the validated `X` (one implementation, for every caller).

    `sigma` is the bandwidth already resolved (DSMI takes it once on all of
    Z); None resolves ``options.sigma`` on `X`. JAX arrays on the CPU are
    computed by NumPy on their buffers (XLA's CPU backend is no faster at
    the kernel and its eigenproblem, and would compile a dozen small functions
    per sample count): the spectrum's
    arrays are then NumPy's.
    """
    view = foreign_host_view(X)
    if view is not None:
        return _dse(
            view,
            options,
            rng=rng,
            caller=caller,
            n_components=n_components,
            sigma=sigma,
        )
    xp, device = namespace_and_device(X)
    if sigma is None:
        sigma = _resolve_sigma(options.sigma, X, rng, caller)
    if _resolve_method(options.method, X.shape[0]) == "exact":
        spectrum = _dse_exact(
            X,
            xp,
            device,
            sigma=sigma,
            t=options.t,
            base=options.base,
            n_components=n_components,
            caller=caller,
        )
    else:
        spectrum = _dse_approximate(
            X,
            xp,
            device,
            sigma=sigma,
            t=options.t,
            base=options.base,
            n_components=n_components,
            rng=rng,
            options=options,
            caller=caller,
        )
    check_finite_result(
        spectrum.entropy,
        caller=caller,
        what="the entropy",
        fix="rescale X (divide it by a constant) or pass a larger sigma",
    )
    return spectrum


def diffusion_spectral_entropy(
    X: Any,
    *,
    sigma: float | str = 10.0,
    t: float = 1,
    base: float = 2,
    method: str = "auto",
    max_samples: int | None = None,
    random_state: Any = None,
    n_probes: int = 48,
    n_lanczos_steps: int = 20,
    n_deflate: int = 128,
    n_landmarks: int | None = None,
) -> float:
    """Diffusion Spectral Entropy of the rows of `X` (Liao et al. 2024).

    ``DSE = -sum_i p_i log p_i`` with ``p_i = |lambda_i|^t / sum_j
    |lambda_j|^t`` over the eigenvalues of the diffusion operator of a
    Gaussian kernel on `X` (module docstring). The value equals dse-dsmi 1.1's
    ``diffusion_spectral_entropy`` with ``max_N=None``, in bits by default.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Activations of any supported library and device; more than two axes
        are flattened per sample. Not rescaled.
    sigma : float or "median", default=10.0
        Kernel bandwidth; "median" uses the median pairwise distance.
    t : float, default=1
        Diffusion time: the power of the eigenvalues.
    base : float, default=2
        Logarithm base (2: bits, ``math.e``: nats).
    method : {"auto", "exact", "approximate"}, default="auto"
        "exact" decomposes the N x N operator (O(N^3), three N x N arrays;
        refused up front when that cannot fit in free memory). "approximate"
        never computes all N eigenvalues: it estimates ``S = sum |lambda|^t``
        and ``H = sum |lambda|^t log |lambda|^t`` by deflated stochastic
        Lanczos quadrature, ``DSE = log S - H / S``. The 128 leading
        eigenvalues, which carry most of the mass of a smooth kernel's
        spectrum, are resolved by randomized subspace iteration (three power
        steps) and summed exactly; 48 Rademacher probes with 20 Lanczos steps
        each estimate the flat remainder. The probes also estimate the trace
        of the operator, which is known exactly (the sum of its diagonal):
        their error on it predicts their error on S and H, and is subtracted
        (a control variate), which cut the error about tenfold. The error was
        at most 0.1% on the benchmark set of the user guide (uniform,
        Gaussian blobs, swiss roll and digits-network activations at several
        bandwidths, N = 2,000 to 10,000); ``DiffusionSpectralEntropy.
        entropy_error_`` estimates it. This costs O(N^2) per operator product
        instead of O(N^3), and the operator is held in float32. When the
        N x N operator would not fit in memory (or when `n_landmarks` is set),
        it is replaced by a Nystrom approximation from m random landmarks plus
        the diagonal that restores G's unit diagonal: O(N m) memory and
        O(N m^2) time, and the probes deflate the whole low-rank part. It is
        a coarser approximation, which raises the DSE most on data near a
        low-dimensional manifold and at small sigma (errors in the user
        guide); ``entropy_error_`` then also bounds its error by the distance
        from the estimate to the DSE of the low-rank part alone, between which
        the true value lay in 71 of 72 benchmark cases. The estimate is
        clipped to ``[0, log_base N]``, the range of the exact value. "auto"
        is exact up to ``AUTO_EXACT_MAX_SAMPLES`` (5,000) samples and
        approximate above.
    max_samples : int, optional
        Compute on this many random rows of `X` (as dse-dsmi's ``max_N``).
    random_state : int, numpy.random.Generator or None
        Seeds the subsample, the probes and the landmarks; the same seed gives
        the same value on every backend.
    n_probes, n_lanczos_steps, n_deflate : int
        Accuracy of the approximate method (see above).
    n_landmarks : int, optional
        Use a Nystrom operator with this many landmarks in the approximate
        method. By default one is used only when the dense operator does not
        fit, with up to 2,000 landmarks, fewer for large N so that time and
        memory stay about linear in N (262 at a million samples:
        ``infoscope.estimators.diffusion.default_landmarks``).

    Returns
    -------
    float

    See Also
    --------
    DiffusionSpectralEntropy : the estimator, with diffusion-map coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import diffusion_spectral_entropy
    >>> X = np.random.default_rng(0).uniform(size=(300, 16))
    >>> round(diffusion_spectral_entropy(X, sigma=1.0), 4)
    5.6571
    """
    caller = "diffusion_spectral_entropy"
    options = DiffusionOptions(
        sigma=sigma,
        t=t,
        base=base,
        method=method,
        max_samples=max_samples,
        random_state=random_state,
        n_probes=n_probes,
        n_lanczos_steps=n_lanczos_steps,
        n_deflate=n_deflate,
        n_landmarks=n_landmarks,
    ).validate(caller)
    X = check_array(X, caller=caller, min_samples=2)
    rng = check_random_state(random_state)
    X, _ = subsample_rows(X, max_samples, rng)
    return _dse(X, options, rng=rng, caller=caller).entropy


def adjacency_spectral_entropy(
    X: Any,
    *,
    sigma: float | str = 10.0,
    variant: str = "gaussian",
    n_neighbors: int = 10,
    base: float = 2,
    max_samples: int | None = None,
    random_state: Any = None,
) -> float:
    """Entropy of the normalised spectrum of an adjacency matrix of `X`.

    ``p_i = |lambda_i| / sum_j |lambda_j|``, ``-sum p_i log p_i``, where the
    lambdas are the eigenvalues of the Gaussian kernel G (``variant=
    "gaussian"``), of ``D^-1/2 G D^-1/2`` (``"anisotropic"``), or of the
    directed kNN indicator graph (``"knn"``: ``A_ij = 1`` when ``x_j`` is
    among the `n_neighbors` nearest points of ``x_i``, itself included; not
    symmetric, so its eigenvalues are complex and their moduli count). Equals
    dse-dsmi 1.1's ``adjacency_spectral_entropy``. Always exact.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    sigma : float or "median", default=10.0
        Bandwidth of the Gaussian variants.
    variant : {"gaussian", "anisotropic", "knn"}, default="gaussian"
    n_neighbors : int, default=10
        Neighbours of the kNN variant.
    base, max_samples, random_state
        As in :func:`diffusion_spectral_entropy`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import adjacency_spectral_entropy
    >>> X = np.random.default_rng(0).uniform(size=(200, 8))
    >>> adjacency_spectral_entropy(X, variant="knn", n_neighbors=5) > 0
    True
    """
    caller = "adjacency_spectral_entropy"
    check_params(
        caller,
        {
            **_SPECTRUM_PARAMETERS,
            "variant": [StrOptions({"gaussian", "anisotropic", "knn"})],
            "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        },
        sigma=sigma,
        base=base,
        max_samples=max_samples,
        random_state=random_state,
        variant=variant,
        n_neighbors=n_neighbors,
    )
    X = check_array(X, caller=caller, min_samples=2)
    xp, device = namespace_and_device(X)
    rng = check_random_state(random_state)
    X, _ = subsample_rows(X, max_samples, rng)
    view = foreign_host_view(X)
    if view is not None:  # JAX on the CPU: NumPy on its buffer, as for DSE
        X = view
        xp, device = namespace_and_device(X)
    if variant == "knn" and n_neighbors > X.shape[0]:
        raise ValueError(
            f"{caller}: n_neighbors={n_neighbors} exceeds the {X.shape[0]} "
            "samples; lower n_neighbors or pass more samples."
        )
    _check_exact_fits(
        X.shape[0],
        xp,
        device,
        caller,
        has_method=False,
        count=KNN_ARRAYS if variant == "knn" else EXACT_ARRAYS,
    )
    if variant == "knn":
        magnitudes = eigvals_abs(knn_adjacency(X, n_neighbors))
    else:
        D2, scale = scaled_sq_distances(X)
        sigma = resolve_bandwidth(
            sigma, X, caller=caller, D2=D2, scale=scale, random_state=rng
        )
        G = gaussian_from_sq_distances(D2, sigma, scale=scale)
        if variant == "anisotropic":
            G, _ = symmetric_normalization(G)
        magnitudes = eigvalsh(G, overwrite=True)
    return check_finite_result(
        _entropy(magnitudes, t=1, base=base, xp=xp),
        caller=caller,
        what="the entropy",
        fix="rescale X (divide it by a constant)",
    )


def _dsmi(Z, y, options, mi_options, *, caller, rng):
    """DSMI of the validated `Z` and the labels `y` (one implementation).

    Returns the subset-matched parts, the classes, each sample's class index,
    the bandwidth and the rows of Z kept by ``max_samples``.
    """
    Z, classes, codes = paired_classes(
        Z,
        y,
        caller=caller,
        max_samples=options.max_samples,
        n_clusters=mi_options.n_clusters,
        rng=rng,
    )
    sigma = _resolve_sigma(options.sigma, Z, rng, caller)
    entropies = _subset_entropies(Z, options, sigma, caller)

    def entropy(subset):
        return _dse(subset, options, rng=rng, caller=caller, sigma=sigma).entropy

    result = subset_mutual_information(
        Z,
        codes,
        entropy,
        entropies=entropies,
        n_classes=classes.shape[0],
        n_repetitions=mi_options.n_repetitions,
        rng=rng,
    )
    return result, classes, codes, sigma, Z


def diffusion_spectral_mutual_information(
    Z: Any,
    Y: Any,
    *,
    sigma: float | str = 10.0,
    t: float = 1,
    base: float = 2,
    method: str = "auto",
    max_samples: int | None = None,
    random_state: Any = None,
    n_repetitions: int = 5,
    n_clusters: int = 10,
    n_probes: int = 48,
    n_lanczos_steps: int = 20,
    n_deflate: int = 128,
    n_landmarks: int | None = None,
) -> float:
    """Diffusion Spectral Mutual Information between activations `Z` and `Y`.

    ``DSMI = sum_c (n_c / N) [mean over n_repetitions draws of DSE(random
    n_c-subset of Z) - DSE(Z_c)]`` over the classes c of `Y`: integer, bool or
    string labels as they are; continuous 1-D `Y` cut into `n_clusters`
    equal-width bins; continuous multi-dimensional `Y` clustered into
    `n_clusters` groups by spectral clustering. The random subsets come from
    `random_state` (dse-dsmi draws them from Python's global ``random``), so
    the value agrees with dse-dsmi 1.1 in distribution, not draw for draw.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
    Y : array of shape (n_samples,) or (n_samples, n_targets)
        Labels or targets, from any library (they are moved to the host).
    n_repetitions : int, default=5
        Random subsets per class.
    n_clusters : int, default=10
        Bins or clusters for continuous `Y`.
    sigma, t, base, method, max_samples, random_state, n_probes, \
n_lanczos_steps, n_deflate, n_landmarks
        As in :func:`diffusion_spectral_entropy`; a "median" sigma is taken
        once, on all of `Z`, and used for every subset.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import diffusion_spectral_mutual_information
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=240)
    >>> Z = rng.normal(size=(240, 8)) + 4.0 * y[:, None]
    >>> diffusion_spectral_mutual_information(Z, y, sigma=2.0, random_state=0) > 0.5
    True
    """
    caller = "diffusion_spectral_mutual_information"
    options = DiffusionOptions(
        sigma=sigma,
        t=t,
        base=base,
        method=method,
        max_samples=max_samples,
        random_state=random_state,
        n_probes=n_probes,
        n_lanczos_steps=n_lanczos_steps,
        n_deflate=n_deflate,
        n_landmarks=n_landmarks,
    ).validate(caller)
    mi_options = SubsetMIOptions(n_repetitions, n_clusters).validate(caller)
    Z = check_array(Z, caller=caller, name="Z", min_samples=2)
    rng = check_random_state(random_state)
    result = _dsmi(Z, Y, options, mi_options, caller=caller, rng=rng)[0]
    return result.mutual_information


def _diffusion_operator_top(X, options, sigma, k, *, rng, caller):
    """The k leading eigenpairs of the diffusion operator of `X`, and its degrees.

    From the operator the entropies used: the exact one, or (approximate
    method) the float32 or Nystrom operator, by randomized subspace iteration
    only; the entropy is not estimated again. NumPy arrays for JAX arrays on
    the CPU, as :func:`_dse`.
    """
    view = foreign_host_view(X)
    if view is not None:
        return _diffusion_operator_top(view, options, sigma, k, rng=rng, caller=caller)
    xp, device = namespace_and_device(X)
    n = X.shape[0]
    exact = _resolve_method(options.method, n) == "exact"
    if exact or n < _APPROXIMATE_DENSE_BELOW:
        _check_exact_fits(n, xp, device, caller)
        K, degrees = _exact_operator(X, sigma)
        values, vectors = eigh_top(K, k)
        return values, vectors, degrees
    operator = _approximate_operator(X, xp, device, sigma, rng, options)
    degrees = operator.degrees
    values, vectors = top_eigenpairs(
        operator.apply,
        n,
        max(k, options.n_deflate),
        xp=xp,
        device=device,
        dtype=xp.float32,
        rng=rng,
        basis=operator.basis,
        products=operator.products,
    )
    k = min(k, values.shape[0])
    return (
        asarray(values[:k].copy(), xp=xp, device=device, dtype=X.dtype),
        xp.astype(vectors[:, :k], X.dtype),
        degrees,
    )


def _diffusion_map(xp, spectrum_values, spectrum_vectors, degrees, t):
    """Right eigenvectors of P (first one constant 1) and their scaled powers.

    ``psi_k = u_k / sqrt(d) * sqrt(sum d)`` from the eigenvectors u_k of K; the
    leading, trivial pair (lambda = 1, psi = 1) is dropped.
    """
    values = spectrum_values[1:]
    psi = spectrum_vectors[:, 1:] / xp.sqrt(degrees)[:, None]
    psi = psi * xp.sqrt(xp.sum(degrees))
    powered = xp.sign(values) * xp.abs(values) ** t
    return values, psi, powered


class _DiffusionMapMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """``transform``: diffusion-map coordinates, Nystrom-extended to new samples."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _store_map(self, X, xp, values, vectors, degrees):
        if isinstance(values, np.ndarray) and not isinstance(X, np.ndarray):
            # Computed by NumPy on a JAX array's buffer: the map is too.
            host = _diffusion_map(
                array_namespace(values), values, vectors, degrees, self.t
            )
            device = namespace_and_device(X)[1]
            # One by one: shapes that follow the sample count (asarrays
            # would compile its cut for each new count).
            arrays = [
                asarray(a, xp=xp, device=device) for a in (*host, host[1] * host[2])
            ]
            self.diffusion_eigenvalues_, self._psi, self._powered, embedding = arrays
        else:
            self.diffusion_eigenvalues_, self._psi, self._powered = _diffusion_map(
                xp, values, vectors, degrees, self.t
            )
            embedding = self._psi * self._powered
        self._X_fit = X
        self.embedding_ = embedding
        self._n_features_out = self.n_components

    def transform(self, X):
        """Diffusion-map coordinates of `X`: ``lambda_k^t psi_k(x)``.

        New samples get the Nystrom extension ``psi_k(x) = sum_j p(x, x_j)
        psi_k(x_j) / lambda_k`` with ``p(x, .)`` the normalised kernel row of
        x against the training samples; for a training sample this returns
        its row of ``embedding_``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples, n_components)
            In `X`'s namespace and device.
        """
        X = self._validate_data(X, reset=False)
        xp, device = namespace_and_device(X)
        fitted = (self._X_fit, self._psi, self._powered, self.diffusion_eigenvalues_)
        views = host_views(X, *fitted)
        if views is not None and not isinstance(X, np.ndarray):
            # JAX on the CPU: NumPy on the buffers, as in fit.
            coordinates = self._extend(array_namespace(views[0]), *views)
            return asarray(coordinates, xp=xp, device=device)
        return self._extend(xp, X, *fitted)

    def _extend(self, xp, X, X_fit, psi, powered, eigenvalues):
        """The Nystrom extension of the fitted map to the rows of `X`."""
        X = xp.astype(X, X_fit.dtype)
        G = gaussian_kernel(X, X_fit, sigma=self.sigma_)
        mass = xp.sum(G, axis=1)
        lost = int(xp.sum(xp.astype(mass == 0, xp.int32)))
        if lost:
            raise ValueError(
                f"{type(self).__name__}.transform(): {lost} sample(s) of `X` are "
                f"so far from every training sample that their kernel weights "
                f"are all 0 at sigma={self.sigma_:.4g}; fit with a larger sigma."
            )
        nonzero = eigenvalues != 0
        scale = xp.where(
            nonzero,
            powered / xp.where(nonzero, eigenvalues, xp.ones_like(eigenvalues)),
            xp.zeros_like(powered),
        )
        return matmul(G / mass[:, None], psi) * scale

    def _check_components(self, n):
        if self.n_components >= n:
            raise ValueError(
                f"{type(self).__name__}: n_components={self.n_components} needs "
                f"more than {self.n_components} samples, got {n}; lower "
                "n_components or pass more samples."
            )


class DiffusionSpectralEntropy(_DiffusionMapMixin, InfoscopeEstimator):
    """Diffusion Spectral Entropy of activations, with diffusion-map coordinates.

    Computes :func:`diffusion_spectral_entropy` in ``fit``; ``transform``
    returns the diffusion-map coordinates of the fitted operator.

    Parameters
    ----------
    sigma, t, base, method, max_samples, random_state, n_probes, \
n_lanczos_steps, n_deflate, n_landmarks
        As in :func:`diffusion_spectral_entropy`.
    n_components : int, default=2
        Diffusion-map coordinates returned by ``transform`` (the trivial
        constant coordinate is left out).

    Attributes
    ----------
    entropy_ : float
    entropy_error_ : float
        Estimated absolute error of ``entropy_``, in the units of `base`: 0
        for the exact method; for the approximate one, three standard errors
        of its probe average plus estimates of its two biases (see
        :func:`diffusion_spectral_entropy`). On the benchmark set of the
        user guide it exceeded the true error in every case. With a Nystrom
        operator (see `n_landmarks_`) it is at least the distance from
        ``entropy_`` to the DSE of the operator's low-rank part alone, a bound
        on that approximation's error (it covered the error in 71 of 72
        benchmark cases, the one miss 0.01% against a reference accurate to
        0.15%): it says how far the value can be trusted, and shrinks with
        more landmarks or a smoother kernel (larger sigma).
    n_landmarks_ : int or None
        Landmarks of the Nystrom operator that replaced the kernel (the
        approximate method, when the dense N x N operator does not fit in
        memory or `n_landmarks` is set), or None. That approximation raises
        the DSE, by up to 25% on a swiss roll at 262 landmarks (user guide).
    eigenvalues_ : array of shape (n_samples,) or None
        All eigenvalues of the operator, descending (exact method only).
    sigma_ : float
        The bandwidth used (resolves "median").
    sample_indices_ : array of shape (max_samples,) or None
        Rows of `X` kept by `max_samples`, ascending, as integers in X's
        namespace and on its device (they index `X` directly).
    diffusion_eigenvalues_ : array of shape (n_components,)
    embedding_ : array of shape (n_fit_samples, n_components)
        Diffusion-map coordinates of the fitted samples.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import DiffusionSpectralEntropy
    >>> X = np.random.default_rng(0).uniform(size=(300, 16))
    >>> dse = DiffusionSpectralEntropy(sigma=1.0).fit(X)
    >>> round(dse.entropy_, 4), dse.transform(X[:5]).shape
    (5.6571, (5, 2))
    """

    _parameter_constraints = {
        **DiffusionOptions.CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        sigma=10.0,
        t=1,
        base=2,
        method="auto",
        max_samples=None,
        random_state=None,
        n_components=2,
        n_probes=48,
        n_lanczos_steps=20,
        n_deflate=128,
        n_landmarks=None,
    ):
        self.sigma = sigma
        self.t = t
        self.base = base
        self.method = method
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_components = n_components
        self.n_probes = n_probes
        self.n_lanczos_steps = n_lanczos_steps
        self.n_deflate = n_deflate
        self.n_landmarks = n_landmarks

    def fit(self, X, y=None):
        """Compute the entropy and the diffusion map of `X`.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._validate_data(X, reset=True)
        xp, device = namespace_and_device(X)
        rng = check_random_state(self.random_state)
        X, rows = subsample_rows(X, self.max_samples, rng)
        self.sample_indices_ = (
            None if rows is None else asarray(rows, xp=xp, device=device)
        )
        self._check_components(X.shape[0])
        spectrum = _dse(
            X,
            DiffusionOptions.of(self),
            rng=rng,
            caller=type(self).__name__,
            n_components=self.n_components,
        )
        self.entropy_ = spectrum.entropy
        self.entropy_error_ = spectrum.error
        self.n_landmarks_ = spectrum.n_landmarks
        self.eigenvalues_ = spectrum.eigenvalues
        if isinstance(self.eigenvalues_, np.ndarray) and not isinstance(X, np.ndarray):
            self.eigenvalues_ = asarray(self.eigenvalues_, xp=xp, device=device)
        self.sigma_ = spectrum.sigma
        self._store_map(
            X, xp, spectrum.top_values, spectrum.top_vectors, spectrum.degrees
        )
        return self

    def fit_transform(self, X, y=None):
        """Fit, and return the diffusion-map coordinates of the fitted samples."""
        return self.fit(X).embedding_


class DiffusionSpectralMutualInformation(_DiffusionMapMixin, InfoscopeEstimator):
    """Diffusion Spectral Mutual Information between activations and labels.

    Computes :func:`diffusion_spectral_mutual_information` in ``fit(Z, y)``;
    ``transform`` returns diffusion-map coordinates of the fitted `Z`.

    Parameters
    ----------
    sigma, t, base, method, max_samples, random_state, n_repetitions, \
n_clusters, n_probes, n_lanczos_steps, n_deflate, n_landmarks
        As in :func:`diffusion_spectral_mutual_information`.
    n_components : int, default=2
        Diffusion-map coordinates returned by ``transform``.

    Attributes
    ----------
    mutual_information_ : float
    classes_ : numpy.ndarray
        The classes DSMI used: the labels, the bins (1 to `n_clusters`) of a
        continuous 1-D target, or the cluster ids of a multi-dimensional one.
    labels_ : numpy.ndarray of int
        Each fitted sample's class, as an index into ``classes_``.
    class_weights_ : numpy.ndarray
        ``n_c / N``.
    conditional_entropies_ : numpy.ndarray
        ``DSE(Z_c)`` per class.
    subset_entropies_ : numpy.ndarray of shape (n_classes, n_repetitions)
        DSE of each random subset.
    sigma_ : float
    diffusion_eigenvalues_, embedding_, n_features_in_
        As in :class:`DiffusionSpectralEntropy`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import DiffusionSpectralMutualInformation
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=240)
    >>> Z = rng.normal(size=(240, 8)) + 4.0 * y[:, None]
    >>> dsmi = DiffusionSpectralMutualInformation(sigma=2.0, random_state=0)
    >>> dsmi.fit(Z, y).classes_
    array([0, 1, 2])
    """

    _parameter_constraints = {
        **DiffusionOptions.CONSTRAINTS,
        **SubsetMIOptions.CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        sigma=10.0,
        t=1,
        base=2,
        method="auto",
        max_samples=None,
        random_state=None,
        n_repetitions=5,
        n_clusters=10,
        n_components=2,
        n_probes=48,
        n_lanczos_steps=20,
        n_deflate=128,
        n_landmarks=None,
    ):
        self.sigma = sigma
        self.t = t
        self.base = base
        self.method = method
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_repetitions = n_repetitions
        self.n_clusters = n_clusters
        self.n_components = n_components
        self.n_probes = n_probes
        self.n_lanczos_steps = n_lanczos_steps
        self.n_deflate = n_deflate
        self.n_landmarks = n_landmarks

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y):
        """Compute DSMI between the activations `X` and the labels `y`.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            The activations Z.
        y : array of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        self._validate_params()
        caller = type(self).__name__
        X = self._validate_data(X, reset=True)
        xp, device = namespace_and_device(X)
        rng = check_random_state(self.random_state)
        options = DiffusionOptions.of(self)
        result, classes, codes, sigma, X = _dsmi(
            X, y, options, SubsetMIOptions.of(self), caller=caller, rng=rng
        )
        self.mutual_information_ = result.mutual_information
        self.classes_ = classes  # stays on the host: labels may be strings
        wide = float_dtype(xp, device)
        self.labels_ = asarray(codes, xp=xp, device=device)
        self.class_weights_ = asarray(result.weights, xp=xp, device=device, dtype=wide)
        self.conditional_entropies_ = asarray(
            result.conditional_entropies, xp=xp, device=device, dtype=wide
        )
        self.subset_entropies_ = asarray(
            result.subset_entropies, xp=xp, device=device, dtype=wide
        )
        self.sigma_ = sigma
        self._check_components(X.shape[0])
        values, vectors, degrees = _diffusion_operator_top(
            X, options, sigma, self.n_components + 1, rng=rng, caller=caller
        )
        self._store_map(X, xp, values, vectors, degrees)
        return self

    def fit_transform(self, X, y):
        """Fit, and return the diffusion-map coordinates of the fitted samples."""
        return self.fit(X, y).embedding_
