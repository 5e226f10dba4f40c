"""Permutation null for the similarity measures: a p-value and a calibrated score.

Raw CKA and mutual-kNN scores are not zero for unrelated representations and
their chance level grows with width and shrinks with the sample count, so a
raw 0.3 can be chance in one setting and strong in another. Permuting the
samples of Y breaks the correspondence with X while keeping each
representation's own geometry: the scores of B permutations are the null
distribution of the measure for *these* two representations.

- p-value: ``(1 + #{b : s_b >= s}) / (1 + B)`` (valid for any B);
- threshold ``tau``: the ``ceil((1 - alpha)(B + 1))``-th smallest of the
  observed and null scores together;
- calibrated score (Groger, Wen & Brbic 2026): ``clip((s - tau) / (1 - tau),
  0, 1)``: 0 whenever the score is within the null's top ``alpha``, 1 at the
  maximum;
- adjusted score: ``(s - mean_null) / (1 - mean_null)``, chance-corrected like
  the adjusted Rand index (0 at chance on average, 1 at the maximum, negative
  below chance); and the z-score ``(s - mean_null) / std_null``.

The calibrated score is the one to report across widths and sample counts
(its zero is a significance statement); the adjusted score is the one to
average over repeats or plot as a trend, since it is not clipped. The z-score
grows with sqrt(n) for a fixed effect: a measure of evidence, not of size.

Each measure permutes what it has prepared once: linear CKA its centred
features (or centred Gram), RBF CKA its centred Gram, mutual kNN its
neighbour indices (relabelled, O(n k) per permutation, no new search), CKNNA
its neighbours and centred features. Permutations are drawn with NumPy from
`random_state` and moved to the device: same seed, same p-value everywhere.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np

from ..backends import check_random_state, host_views, namespace_and_device
from ..kernels import gram_inner
from ._base import Interval, validate_parameter_constraints
from ._cka_moments import pair_hsic
from .neighbors import (
    CknnaSide,
    check_n_neighbors,
    check_pair,
    cknna_from_sides,
    neighbours,
    overlap,
    relabel,
)
from .similarity import PARAMETERS, centred_gram

__all__ = ["SimilarityTestResult", "similarity_test"]

_TEST_PARAMETERS = {
    **PARAMETERS,
    "n_permutations": [Interval(Integral, 1, None, closed="left")],
    "alpha": [Interval(Real, 0, 1, closed="neither")],
}


class SimilarityTestResult(NamedTuple):
    """What :func:`similarity_test` returns (see its module for the formulas)."""

    #: The measure between X and Y.
    statistic: float
    #: ``(1 + #{null >= statistic}) / (1 + n_permutations)``.
    pvalue: float
    #: ``clip((statistic - threshold) / (1 - threshold), 0, 1)``.
    calibrated: float
    #: ``(statistic - null_mean) / (1 - null_mean)``.
    adjusted: float
    #: The (1 - alpha) critical value of the observed and null scores.
    threshold: float
    null_mean: float
    null_std: float

    @property
    def zscore(self) -> float:
        """``(statistic - null_mean) / null_std`` (inf when the null is constant)."""
        if self.null_std == 0:
            return math.copysign(math.inf, self.statistic - self.null_mean)
        return (self.statistic - self.null_mean) / self.null_std


def summarize(statistic: float, null: np.ndarray, alpha: float) -> SimilarityTestResult:
    """The result from the observed score and the null scores (maximum 1)."""
    null = np.asarray(null, dtype=np.float64)
    # Ties within rounding count as ties (discrete measures permute to equal values).
    tolerance = 1e-12 * max(1.0, abs(statistic))
    exceed = int(np.count_nonzero(null >= statistic - tolerance))
    pvalue = (1 + exceed) / (1 + null.size)
    combined = np.sort(np.append(null, statistic))
    index = min(max(math.ceil((1 - alpha) * combined.size) - 1, 0), combined.size - 1)
    threshold = float(combined[index])
    if statistic <= threshold:
        calibrated = 0.0
    elif threshold >= 1.0:
        calibrated = 1.0
    else:
        calibrated = min(1.0, (statistic - threshold) / (1.0 - threshold))
    mean = float(null.mean())
    adjusted = (statistic - mean) / (1.0 - mean) if mean < 1.0 else math.nan
    return SimilarityTestResult(
        statistic=float(statistic),
        pvalue=pvalue,
        calibrated=float(calibrated),
        adjusted=float(adjusted),
        threshold=threshold,
        null_mean=mean,
        null_std=float(null.std()),
    )


class _LinearFeatures:
    """Linear CKA with Y's samples permuted: only the cross term changes."""

    def __init__(self, X, Y, debiased):
        self.X, self.Y, self.debiased = X, Y, debiased
        self.self_x = pair_hsic(X, X, debiased)
        self.self_y = pair_hsic(Y, Y, debiased)

    def __call__(self, order):
        Y = self.Y if order is None else _take(self.Y, order)
        return _ratio(pair_hsic(self.X, Y, self.debiased), self.self_x, self.self_y)


class _Grams:
    """CKA from centred Grams; permuting samples permutes rows and columns."""

    def __init__(self, X, Y, kernel, sigma, debiased, rng):
        self.K = centred_gram(X, kernel, sigma, debiased, rng)
        self.L = centred_gram(Y, kernel, sigma, debiased, rng)
        self.self_x, self.self_y = (
            gram_inner(self.K, self.K),
            gram_inner(self.L, self.L),
        )

    def __call__(self, order):
        L = self.L if order is None else _take(_take(self.L, order), order, axis=1)
        return _ratio(gram_inner(self.K, L), self.self_x, self.self_y)


class _MutualKnn:
    def __init__(self, X, Y, k):
        self.nn_x, self.nn_y = neighbours(X, k), neighbours(Y, k)

    def __call__(self, order):
        nn_y = self.nn_y if order is None else relabel(self.nn_y, order)
        return overlap(self.nn_x, nn_y)


class _Cknna:
    def __init__(self, X, Y, k):
        self.x = CknnaSide(X, neighbours(X, k))
        self.y = CknnaSide(Y, neighbours(Y, k))

    def __call__(self, order):
        y = self.y if order is None else self.y.permuted(order)
        return cknna_from_sides(self.x, y)


def _take(A, order, axis=0):
    xp, device = namespace_and_device(A)
    return xp.take(A, xp.asarray(order, device=device), axis=axis)


def _ratio(cross, self_x, self_y):
    if not (self_x > 0 and self_y > 0):
        return math.nan
    return cross / math.sqrt(self_x * self_y)


def _measure(X, Y, params, rng, caller):
    measure, debiased = params["measure"], params["debiased"]
    views = host_views(X, Y)
    if views is not None and measure in ("linear_cka", "rbf_cka"):
        # JAX on the CPU: NumPy on its buffers, as similarity_matrix does
        # (the kNN measures search on XLA and continue on NumPy by themselves).
        X, Y = views
    if measure == "mutual_knn":
        return _MutualKnn(
            X, Y, check_n_neighbors(params["n_neighbors"], X.shape[0], caller)
        )
    if measure == "cknna":
        return _Cknna(
            X, Y, check_n_neighbors(params["n_neighbors"], X.shape[0], caller)
        )
    n, p, q = X.shape[0], X.shape[1], Y.shape[1]
    if measure == "linear_cka" and p * q <= n * n:
        return _LinearFeatures(X, Y, debiased)
    kernel = "linear" if measure == "linear_cka" else "gaussian"
    return _Grams(X, Y, kernel, params["sigma"], debiased, rng)


def similarity_test(
    X: Any,
    Y: Any,
    *,
    measure: str = "linear_cka",
    debiased: bool = False,
    sigma: float | str = "median",
    n_neighbors: int = 10,
    n_permutations: int = 200,
    alpha: float = 0.05,
    random_state: Any = None,
) -> SimilarityTestResult:
    """A similarity between X and Y, its permutation p-value and calibrated score.

    Parameters
    ----------
    X : array of shape (n_samples, n_features_x)
    Y : array of shape (n_samples, n_features_y)
        The same samples in the same order, from one library and device.
    measure, debiased, sigma, n_neighbors
        As in :func:`similarity_matrix`.
    n_permutations : int, default=200
        The p-value cannot go below ``1 / (1 + n_permutations)``.
    alpha : float, default=0.05
        The level of the calibrated score's threshold.
    random_state : int, numpy.random.Generator or None, default=None
        For the permutations (and the median's subset above 4,000 samples).

    Returns
    -------
    SimilarityTestResult
        ``statistic``, ``pvalue``, ``calibrated``, ``adjusted``,
        ``threshold``, ``null_mean``, ``null_std`` (floats) and ``zscore``.

    Notes
    -----
    Linear CKA costs one ``X^T Y`` product per permutation (or one n x n
    inner product when ``n^2 < p q``); RBF CKA one n x n inner product;
    mutual kNN O(n k^2); CKNNA O(n k (p + q)).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import similarity_test
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 300))
    >>> noise = similarity_test(X, rng.normal(size=(100, 300)), random_state=0)
    >>> round(noise.statistic, 2), noise.pvalue > 0.05, noise.calibrated
    (0.76, True, 0.0)
    >>> related = similarity_test(X, X[:, :150], random_state=0)
    >>> related.pvalue < 0.01, related.calibrated > 0.5
    (True, True)
    """
    caller = "similarity_test"
    params = {
        "measure": measure,
        "debiased": debiased,
        "sigma": sigma,
        "n_neighbors": n_neighbors,
        "random_state": random_state,
        "n_permutations": n_permutations,
        "alpha": alpha,
    }
    validate_parameter_constraints(_TEST_PARAMETERS, params, caller_name=caller)
    n_min = 4 if (debiased and measure.endswith("cka")) else 2
    X, Y = check_pair(X, Y, caller=caller, min_samples=n_min)
    xp, _ = namespace_and_device(X)
    dtype = xp.result_type(X, Y)
    X, Y = xp.astype(X, dtype), xp.astype(Y, dtype)
    rng = check_random_state(random_state)
    score = _measure(X, Y, params, rng, caller)
    statistic = score(None)
    if math.isnan(statistic):
        raise ValueError(
            f"{caller}: the measure is undefined because X or Y is constant over "
            f"the samples (its self-similarity term is 0); drop that layer."
        )
    n = X.shape[0]
    null = np.array([score(rng.permutation(n)) for _ in range(n_permutations)])
    return summarize(statistic, null, alpha)
