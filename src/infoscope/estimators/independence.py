"""The HSIC test of independence: permutations, or Gretton et al.'s gamma law."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from ..backends import check_random_state, host_views, namespace_and_device
from ..kernels import centre_gram, gram_inner
from ._base import Interval, StrOptions, check_finite_result, check_params
from .hsic_statistic import (
    HSICOptions,
    check_exact_fits,
    check_pair,
    normalizer,
)

__all__ = ["PERMUTATION_ARRAYS", "HSICTestResult", "hsic_test"]

_CONSTRAINTS = {
    **{
        name: HSICOptions.CONSTRAINTS[name]
        for name in ("kernel_x", "kernel_y", "sigma_x", "sigma_y", "estimator")
    },
    "method": [StrOptions({"permutation", "gamma"})],
    "n_permutations": [Interval(Integral, 1, None, closed="left")],
    "random_state": HSICOptions.CONSTRAINTS["random_state"],
}
#: Peak n x n arrays of the test, as measured (tests/estimators/test_hsic.py):
#: the two centred Grams, and a permuted Gram with its half-permuted
#: intermediate.
PERMUTATION_ARRAYS = 4


class HSICTestResult(NamedTuple):
    """What :func:`hsic_test` returns; unpacks as ``statistic, pvalue``."""

    #: The HSIC estimate (biased or unbiased, as asked).
    statistic: float
    #: The p-value of the null hypothesis that X and Y are independent.
    pvalue: float


def hsic_test(
    X: Any,
    Y: Any,
    *,
    kernel_x: str | Callable = "gaussian",
    kernel_y: str | Callable | None = None,
    sigma_x: float | str = "median",
    sigma_y: float | str | None = None,
    estimator: str = "biased",
    method: str = "permutation",
    n_permutations: int = 1000,
    random_state: Any = None,
) -> HSICTestResult:
    """HSIC test of independence between the rows of `X` and `Y`.

    Parameters
    ----------
    X, Y, kernel_x, kernel_y, sigma_x, sigma_y, estimator
        As in :func:`hsic` (exact method).
    method : {"permutation", "gamma"}, default="permutation"
        "permutation": the p-value ``(1 + #{b : HSIC(X, Y_pi_b) >= HSIC(X,
        Y)}) / (1 + n_permutations)`` over random permutations of Y's samples
        (each O(n^2) from the cached centred Gram of X). "gamma": Gretton et
        al. (2008)'s two-moment gamma approximation of the null distribution
        of the biased statistic, O(n^2) in all.
    n_permutations : int, default=1000
    random_state : int, numpy.random.Generator or None, default=None
        For the permutations (and the median's subset above 4,000 samples).

    Returns
    -------
    HSICTestResult
        ``(statistic, pvalue)``.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import hsic_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> hsic_test(x, np.sin(3 * x) + 0.5 * rng.normal(size=200),
    ...           random_state=0).pvalue < 0.01
    True
    """
    caller = "hsic_test"
    check_params(
        caller,
        _CONSTRAINTS,
        kernel_x=kernel_x,
        kernel_y=kernel_y,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        estimator=estimator,
        method=method,
        n_permutations=n_permutations,
        random_state=random_state,
    )
    if method == "gamma" and estimator != "biased":
        raise ValueError(
            f"{caller}: the gamma approximation is derived for the biased "
            f"statistic; pass estimator='biased', or method='permutation'."
        )
    X, Y = check_pair(X, Y, caller=caller, estimator=estimator)
    n = X.shape[0]
    if method == "gamma" and n < 6:
        raise ValueError(
            f"{caller}: the gamma approximation needs at least 6 samples, got "
            f"{n}; pass more samples, or method='permutation'."
        )
    rng = check_random_state(random_state)
    kx, ky = HSICOptions(
        kernel_x=kernel_x, kernel_y=kernel_y, sigma_x=sigma_x, sigma_y=sigma_y
    ).kernels()
    unbiased = estimator == "unbiased"
    views = host_views(X, Y)
    if views is not None and isinstance(kx.kind, str) and isinstance(ky.kind, str):
        X, Y = views  # JAX's CPU buffers, read in place (as in hsic's exact method)
    check_exact_fits(
        n,
        PERMUTATION_ARRAYS,
        X,
        caller,
        "The test needs the n x n Grams; subsample X and Y (the same rows of both)",
    )
    K, _, factor_x = kx.gram(X, rng, caller)
    L, _, factor_y = ky.gram(Y, rng, caller)
    if method == "gamma":
        statistic, pvalue = _gamma_test(K, L)
    else:
        statistic, pvalue = _permutation_test(K, L, n_permutations, unbiased, rng)
    statistic = check_finite_result(
        statistic * factor_x * factor_y,
        caller=caller,
        what="the HSIC statistic",
        fix="rescale X or Y (divide them by a constant); the p-value does not "
        "depend on their scale",
    )
    return HSICTestResult(statistic, pvalue)


def _permutation_test(K, L, n_permutations, unbiased, rng) -> tuple[float, float]:
    """The statistic and its permutation p-value, both Grams centred.

    Centring commutes with permuting the samples (``P H P^T = H``, and
    likewise for the U-centring), so the centred L is permuted directly:
    the same inner product as :func:`~infoscope.hsic`, at float32's precision
    in float32.
    """
    xp, device = namespace_and_device(K, L)
    n = K.shape[0]
    Kc = centre_gram(K, unbiased=unbiased)
    Lc = centre_gram(L, unbiased=unbiased)
    observed = gram_inner(Kc, Lc)
    null = np.empty(n_permutations)
    for b in range(n_permutations):
        order = xp.asarray(rng.permutation(n), device=device)
        null[b] = gram_inner(Kc, xp.take(xp.take(Lc, order, axis=0), order, axis=1))
    # Ties within rounding count as ties: discrete Y permutes to equal values,
    # whose inner products differ only by the order of the sums.
    eps = float(xp.finfo(K.dtype).eps)
    tolerance = 1000 * eps * max(abs(observed), float(np.max(np.abs(null))))
    exceed = int(np.count_nonzero(null >= observed - tolerance))
    return observed / normalizer(n, unbiased), (1 + exceed) / (1 + n_permutations)


def _gamma_test(K: Any, L: Any) -> tuple[float, float]:
    """Gretton et al. (2008)'s gamma approximation (their HSIC uses 1/n^2)."""
    xp, _ = namespace_and_device(K, L)
    n = K.shape[0]
    diagonal_k = float(xp.sum(xp.linalg.diagonal(K))) / n
    diagonal_l = float(xp.sum(xp.linalg.diagonal(L))) / n
    mu_x = (float(xp.sum(K)) - n * diagonal_k) / (n * (n - 1))
    mu_y = (float(xp.sum(L)) - n * diagonal_l) / (n * (n - 1))
    Kc = centre_gram(K, unbiased=False)
    Lc = centre_gram(L, unbiased=False)
    statistic = gram_inner(Kc, Lc)  # tr(K H L H)
    product = Kc * Lc
    product *= product
    off_diagonal = float(xp.sum(product)) - float(xp.sum(xp.linalg.diagonal(product)))
    variance = (
        2.0
        * (n - 4)
        * (n - 5)
        / (n * (n - 1) * (n - 2) * (n - 3))
        * off_diagonal
        / (n * (n - 1))
    )
    mean = (diagonal_k - mu_x) * (diagonal_l - mu_y) / n
    scaled = statistic / n  # n times Gretton's HSIC_b = tr(KHLH) / n^2
    if not (mean > 0 and variance > 0):
        pvalue = 1.0
    else:
        shape = mean * mean / variance
        scale = n * variance / mean
        pvalue = float(stats.gamma.sf(scaled, shape, scale=scale))
    return statistic / (n - 1) ** 2, pvalue
