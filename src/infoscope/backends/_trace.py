"""Traces of matrix functions without the spectrum: stochastic Lanczos quadrature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from ._convert import to_numpy
from ._linalg import matmul
from ._namespace import namespace_and_device

__all__ = ["SpectralSums", "spectral_sums", "top_eigenpairs"]


@dataclass(frozen=True)
class SpectralSums:
    """What :func:`spectral_sums` estimates, with the parts it is made of.

    ``estimates[j] = deflated[j] + mean(probe_terms[:, j])``: the exact sum
    over the deflated Ritz values plus Hutchinson's mean over the probes of
    the orthogonal complement. The probes are independent, so the spread of
    ``probe_terms`` measures the estimate's random error.
    """

    deflated: np.ndarray  # (n_functions,)
    probe_terms: np.ndarray  # (n_probes, n_functions)
    ritz_values: np.ndarray  # (n_deflate,), descending
    basis: Any  # (n, n_deflate) orthonormal, in the operator's namespace
    rotation: np.ndarray  # (n_deflate, n_deflate): Ritz vectors = basis @ rotation
    residuals: np.ndarray  # (n_deflate,): ||A y_i - theta_i y_i||^2
    coarse_terms: np.ndarray  # probe_terms from the first half of the steps

    def ritz_vectors(self, k: int) -> Any:
        """The `k` leading Ritz vectors, (n, k), in the operator's namespace."""
        xp, device = namespace_and_device(self.basis)
        rotation = self.rotation[:, :k].copy()
        return matmul(
            self.basis, xp.asarray(rotation, dtype=self.basis.dtype, device=device)
        )

    @property
    def estimates(self) -> np.ndarray:
        return self.deflated + _mean(self.probe_terms)

    @property
    def coarse_estimates(self) -> np.ndarray:
        """The estimates from the first half of the Lanczos steps."""
        return self.deflated + _mean(self.coarse_terms)

    def controlled(self, index: int, exact: float) -> SpectralSums:
        """The same sums with ``tr f_index(A) = exact`` known: a control variate.

        Each function's probe terms are corrected by its regression on the
        probe terms of function `index`, whose exact complement sum is
        ``exact - deflated[index]``: ``z^T f(A) z - c (z^T g(A) z - tr g)``
        keeps the mean and removes the part of the spread that g explains
        (for a diffusion operator g = identity: the trace is the sum of the
        diagonal, known exactly, and the two DSE sums move with it).
        """
        return SpectralSums(
            self.deflated,
            _regressed(self.probe_terms, index, exact - self.deflated[index]),
            self.ritz_values,
            self.basis,
            self.rotation,
            self.residuals,
            _regressed(self.coarse_terms, index, exact - self.deflated[index]),
        )


def _mean(terms: np.ndarray) -> np.ndarray:
    return terms.mean(axis=0) if terms.shape[0] else np.zeros(terms.shape[1])


def _regressed(terms: np.ndarray, index: int, target: float) -> np.ndarray:
    if terms.shape[0] < 3:
        return terms
    g = terms[:, index] - terms[:, index].mean()
    spread = float(g @ g)
    if not spread > 0:
        return terms
    slopes = (terms - terms.mean(axis=0)).T @ g / spread
    return terms - np.outer(terms[:, index] - target, slopes)


def spectral_sums(
    apply: Callable[[Any], Any],
    n: int,
    functions: Sequence[Callable[[np.ndarray], np.ndarray]],
    *,
    xp: Any,
    device: Any,
    dtype: Any,
    rng: np.random.Generator,
    n_probes: int = 48,
    n_steps: int = 20,
    n_deflate: int = 128,
    n_power: int = 3,
    basis: Any = None,
    products: tuple[np.ndarray, np.ndarray] | None = None,
    apply_complement: Callable[[Any], Any] | None = None,
) -> SpectralSums:
    """Estimates of ``tr f(A) = sum_i f(lambda_i)`` for a symmetric operator A.

    Deflated stochastic Lanczos quadrature. A randomized subspace iteration
    finds the `n_deflate` leading eigenpairs, whose contribution is summed
    exactly from their Ritz values; on the orthogonal complement, Rademacher
    probes each run `n_steps` Lanczos steps, and Gauss quadrature on the
    resulting tridiagonal matrices estimates the remaining trace (Ubaru, Chen
    and Saad 2017; the deflation is the Hutch++ idea of Meyer et al. 2021).
    Deflation matters where a few eigenvalues carry most of the spectrum's
    mass, as in diffusion operators of smooth kernels; the probes then only
    see a flat remainder, for which Hutchinson's estimator has small variance.

    Every probe is drawn with NumPy from `rng` and moved to `device`, so the
    same generator gives the same estimate on every library; the small
    tridiagonal eigenproblems are solved on the host.

    Parameters
    ----------
    apply : callable
        ``apply(V)`` returns ``A @ V`` for an (n, b) array `V` in `xp`.
    n : int
        Order of A.
    functions : sequence of callables
        Each maps a NumPy array of eigenvalues to the values f(lambda).
    xp, device, dtype
        Namespace, device and float dtype of the vectors.
    rng : numpy.random.Generator
    n_probes, n_steps, n_deflate, n_power : int
        Probe vectors, Lanczos steps per probe, deflated eigenpairs and power
        iterations of the subspace iteration (three: with one, the deflated
        pairs of the diffusion operators we measured were inexact enough to
        bias the DSE by up to 0.25%).
    basis : array of shape (n, k), optional
        An orthonormal basis to deflate instead of the subspace iteration's
        (`n_deflate` and `n_power` are then unused): the span that holds the
        operator's leading part when it is known, as the range of a low-rank
        term. Its Rayleigh-Ritz pairs are computed 64 columns at a time.
    products : pair of arrays of shape (k, k), optional
        ``Q^T A Q`` and ``(AQ)^T (AQ)`` for the `basis` Q, where the operator
        knows them more cheaply than two products with A (float64, NumPy).
    apply_complement : callable, optional
        ``V -> A @ V`` for V orthogonal to `basis`, where that is cheaper than
        `apply` (for ``A = Q C Q^T + diag(c)``: ``c * V``); the probes use it.

    Returns
    -------
    SpectralSums
        ``estimates`` (one per function) and the parts they are made of: the
        deflated sums, the per-probe terms (and those of half the steps), the
        Ritz values, the basis and rotation of the Ritz vectors, and their
        residual norms.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._trace import spectral_sums
    >>> A = np.diag(np.linspace(0.0, 1.0, 300))
    >>> sums = spectral_sums(lambda V: A @ V, 300, [lambda w: w**2, lambda w: w],
    ...     xp=np, device="cpu", dtype=np.float64, rng=np.random.default_rng(0))
    >>> bool(abs(sums.estimates[0] / np.sum(np.diag(A) ** 2) - 1) < 0.05)
    True
    >>> round(float(sums.controlled(1, np.trace(A)).estimates[1]), 9)  # known
    150.0
    """
    Q, theta, U, residuals = _ritz_pairs(
        apply,
        n,
        n_deflate,
        basis=basis,
        products=products,
        xp=xp,
        device=device,
        dtype=dtype,
        rng=rng,
        n_power=n_power,
    )
    deflated = np.array([np.sum(f(theta)) for f in functions], dtype=np.float64)
    if Q.shape[1] >= n:
        empty = np.zeros((0, len(functions)))
        return SpectralSums(deflated, empty, theta, Q, U, residuals, empty)

    def project_out(V: Any) -> Any:
        return V - matmul(Q, matmul(Q.T, V))

    step = apply if apply_complement is None else apply_complement
    signs = rng.integers(0, 2, size=(n, n_probes)) * 2.0 - 1.0
    Z = project_out(xp.asarray(signs, dtype=dtype, device=device))
    del signs
    norms = xp.linalg.vector_norm(Z, axis=0)
    V = Z / norms
    del Z
    V_prev = xp.zeros_like(V)
    beta = xp.zeros_like(norms)
    alphas, betas = [], []
    steps = min(n_steps, n - Q.shape[1])
    for _ in range(steps):
        W = project_out(step(V))
        alpha = xp.sum(W * V, axis=0)
        W = W - alpha * V - beta * V_prev
        beta = xp.linalg.vector_norm(W, axis=0)
        alphas.append(alpha)
        betas.append(beta)
        V_prev, V = V, W / xp.where(beta > 0, beta, xp.ones_like(beta))
    del V, V_prev, W
    alphas = np.asarray(to_numpy(xp.stack(alphas)), dtype=np.float64)
    betas = np.asarray(to_numpy(xp.stack(betas)), dtype=np.float64)
    weights = np.asarray(to_numpy(norms), dtype=np.float64) ** 2
    terms = np.empty((n_probes, len(functions)))
    coarse = np.empty((n_probes, len(functions)))
    half = max(1, steps // 2)
    for p in range(n_probes):
        # A run that broke down early (beta = 0) leaves decoupled blocks that
        # the start vector never reaches: their quadrature weights are 0.
        for out, k in ((terms, steps), (coarse, half)):
            nodes, vectors = scipy.linalg.eigh_tridiagonal(
                alphas[:k, p], betas[: k - 1, p]
            )
            tau = weights[p] * vectors[0] ** 2
            out[p] = [np.sum(tau * f(nodes)) for f in functions]
    return SpectralSums(deflated, terms, theta, Q, U, residuals, coarse)


#: Columns of a given basis that one Rayleigh-Ritz product takes at a time:
#: a basis of a million rows is a gigabyte, and A times all of it another.
_RAYLEIGH_RITZ_COLUMNS = 64


def top_eigenpairs(
    apply: Callable[[Any], Any],
    n: int,
    k: int,
    *,
    xp: Any,
    device: Any,
    dtype: Any,
    rng: np.random.Generator,
    n_power: int = 1,
    basis: Any = None,
    products: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, Any]:
    """Approximate leading eigenpairs of a symmetric operator (Ritz pairs).

    The randomized subspace iteration that :func:`spectral_sums` deflates
    with, on its own, for the diffusion map of an operator whose entropy is
    not needed again; or, given an orthonormal `basis` (and, optionally, its
    `products` as in :func:`spectral_sums`), the Rayleigh-Ritz pairs of that
    basis.

    Returns
    -------
    values : numpy.ndarray of shape (k,)
        Descending.
    vectors : array of shape (n, k)
        In `xp` on `device`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._trace import top_eigenpairs
    >>> A = np.diag([10.0, 9.0] + [0.01] * 8)
    >>> values, _ = top_eigenpairs(lambda V: A @ V, 10, 2, xp=np, device="cpu",
    ...                            dtype=np.float64, rng=np.random.default_rng(0))
    >>> values.round(3)
    array([10.,  9.])
    """
    Q, theta, U, _ = _ritz_pairs(
        apply,
        n,
        k,
        basis=basis,
        products=products,
        xp=xp,
        device=device,
        dtype=dtype,
        rng=rng,
        n_power=n_power,
    )
    k = min(k, theta.shape[0])
    rotation = xp.asarray(U[:, :k].copy(), dtype=Q.dtype, device=device)
    return theta[:k], matmul(Q, rotation)


def _ritz_pairs(apply, n, k, *, basis, products, xp, device, dtype, rng, n_power):
    """The deflation basis Q (`basis`, or `k` columns of subspace iteration)
    and the Rayleigh-Ritz pairs of A on it: Q, theta, U, residuals."""
    if basis is None:
        Q = _power_basis(
            apply,
            n,
            min(k, n),
            xp=xp,
            device=device,
            dtype=dtype,
            rng=rng,
            n_power=n_power,
        )
        columns = None
    else:
        Q, columns = basis, _RAYLEIGH_RITZ_COLUMNS
    theta, U, residuals = _rayleigh_ritz(
        apply, Q, xp=xp, device=device, columns=columns, products=products
    )
    return Q, theta, U, residuals


def _power_basis(apply, n, k, *, xp, device, dtype, rng, n_power):
    """An orthonormal basis of ``A^(n_power + 1) Y`` for a Gaussian (n, k) Y."""
    Y = xp.asarray(rng.standard_normal((n, k)), dtype=dtype, device=device)
    for i in range(n_power + 1):
        Y = apply(Y)
        if i < n_power:
            Y = _orthonormalize(Y, xp, device)
    return _orthonormalize(Y, xp, device)


def _rayleigh_ritz(apply, Q, *, xp, device, columns=None, products=None):
    """Ritz values (descending), their rotation U (Ritz vectors ``Q U``) and
    the squared residual norms ``||A y_i - theta_i y_i||^2`` of the pairs.

    The residual of pair i is ``(AQ) u_i - theta_i Q u_i``, orthogonal to Q,
    so its squared norm is ``u_i^T (AQ)^T (AQ) u_i - theta_i^2``: a k x k
    product. With `columns`, AQ is never held whole: each block of columns
    is applied twice, ``(AQ)^T (A q) = Q^T A (A q)`` for symmetric A. Given
    `products` (T, M), no product with A is made.
    """
    k = Q.shape[1]

    def host(a):
        return np.asarray(to_numpy(a), dtype=np.float64)

    if products is not None:
        T, M = products
    elif columns is None or columns >= k:
        AQ = apply(Q)
        T, M = host(matmul(Q.T, AQ)), host(matmul(AQ.T, AQ))
        del AQ
    else:
        T, M = np.empty((k, k)), np.empty((k, k))
        for start in range(0, k, columns):
            block = slice(start, min(start + columns, k))
            AQ = apply(Q[:, block])
            T[:, block] = host(matmul(Q.T, AQ))
            M[:, block] = host(matmul(Q.T, apply(AQ)))
            del AQ
        M = (M + M.T) / 2
    theta, U = np.linalg.eigh((T + T.T) / 2)
    theta, U = theta[::-1], U[:, ::-1].copy()
    residuals = np.clip(np.einsum("ji,jk,ki->i", U, M, U) - theta**2, 0.0, None)
    return theta, U, residuals


def _orthonormalize(Y: Any, xp: Any, device: Any) -> Any:
    """An orthonormal basis of the columns of `Y` that carry any weight.

    Two passes of eigen-based Gram orthogonalisation (the r x r Gram matrix
    is decomposed on the host, in float64): Householder QR is slow on the
    nearly parallel columns a power iteration produces (LAPACK rescales its
    reflectors column by column), and the host solve makes every library use
    the same basis. Directions below ``1e-10`` of the largest are dropped.
    """
    for _ in range(2):
        gram = np.asarray(to_numpy(matmul(Y.T, Y)), dtype=np.float64)
        w, V = np.linalg.eigh((gram + gram.T) / 2)
        keep = w > w[-1] * 1e-10
        T = V[:, keep] / np.sqrt(w[keep])
        Y = matmul(Y, xp.asarray(T, dtype=Y.dtype, device=device))
    return Y
