"""Traces of matrix functions without the spectrum: stochastic Lanczos quadrature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg

from ._convert import to_numpy
from ._linalg import matmul

__all__ = ["spectral_sums", "top_eigenpairs"]


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
    n_power: int = 1,
) -> tuple[list[float], np.ndarray, Any]:
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
        iterations of the subspace iteration.

    Returns
    -------
    sums : list of float
        One estimate per function.
    ritz_values : numpy.ndarray of shape (n_deflate,)
        Descending approximations of the leading eigenvalues.
    ritz_vectors : array of shape (n, n_deflate)
        The matching vectors, in `xp` on `device`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._trace import spectral_sums
    >>> A = np.diag(np.linspace(0.0, 1.0, 300))
    >>> sums, _, _ = spectral_sums(lambda V: A @ V, 300, [lambda w: w**2],
    ...     xp=np, device="cpu", dtype=np.float64, rng=np.random.default_rng(0))
    >>> bool(abs(sums[0] / np.sum(np.diag(A) ** 2) - 1) < 0.05)
    True
    """
    n_deflate = min(n_deflate, n)
    theta, ritz_vectors, Q = _subspace_iteration(
        apply,
        n,
        n_deflate,
        xp=xp,
        device=device,
        dtype=dtype,
        rng=rng,
        n_power=n_power,
    )
    sums = [float(np.sum(f(theta))) for f in functions]
    if n_deflate >= n:
        return sums, theta, ritz_vectors

    def project_out(V: Any) -> Any:
        return V - matmul(Q, matmul(Q.T, V))

    signs = rng.integers(0, 2, size=(n, n_probes)) * 2.0 - 1.0
    Z = project_out(xp.asarray(signs, dtype=dtype, device=device))
    norms = xp.linalg.vector_norm(Z, axis=0)
    V = Z / norms
    V_prev = xp.zeros_like(V)
    beta = xp.zeros_like(norms)
    alphas, betas = [], []
    steps = min(n_steps, n - n_deflate)
    for _ in range(steps):
        W = project_out(apply(V))
        alpha = xp.sum(W * V, axis=0)
        W = W - alpha * V - beta * V_prev
        beta = xp.linalg.vector_norm(W, axis=0)
        alphas.append(alpha)
        betas.append(beta)
        V_prev, V = V, W / xp.where(beta > 0, beta, xp.ones_like(beta))
    alphas = np.asarray(to_numpy(xp.stack(alphas)), dtype=np.float64)
    betas = np.asarray(to_numpy(xp.stack(betas)), dtype=np.float64)
    weights = np.asarray(to_numpy(norms), dtype=np.float64) ** 2
    totals = np.zeros(len(functions))
    for p in range(n_probes):
        # A run that broke down early (beta = 0) leaves decoupled blocks that
        # the start vector never reaches: their quadrature weights are 0.
        nodes, vectors = scipy.linalg.eigh_tridiagonal(alphas[:, p], betas[:-1, p])
        tau = weights[p] * vectors[0] ** 2
        totals += [np.sum(tau * f(nodes)) for f in functions]
    return (
        [s + t / n_probes for s, t in zip(sums, totals, strict=True)],
        theta,
        ritz_vectors,
    )


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
) -> tuple[np.ndarray, Any]:
    """Approximate leading eigenpairs of a symmetric operator (Ritz pairs).

    The randomized subspace iteration that :func:`spectral_sums` deflates
    with, on its own: for the diffusion map of an operator whose entropy is
    not needed again.

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
    theta, vectors, _ = _subspace_iteration(
        apply,
        n,
        min(k, n),
        xp=xp,
        device=device,
        dtype=dtype,
        rng=rng,
        n_power=n_power,
    )
    return theta, vectors


def _subspace_iteration(apply, n, k, *, xp, device, dtype, rng, n_power):
    """Ritz values (descending), Ritz vectors and the orthonormal basis Q."""
    sketch = xp.asarray(rng.standard_normal((n, k)), dtype=dtype, device=device)
    Y = apply(sketch)
    for _ in range(n_power):
        Y = apply(_orthonormalize(Y, xp, device))
    Q = _orthonormalize(Y, xp, device)
    AQ = apply(Q)
    T = np.asarray(to_numpy(matmul(Q.T, AQ)), dtype=np.float64)
    theta, U = np.linalg.eigh((T + T.T) / 2)
    theta, U = theta[::-1], U[:, ::-1].copy()
    return theta, matmul(Q, xp.asarray(U, dtype=dtype, device=device)), Q


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
