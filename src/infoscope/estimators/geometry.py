"""The rank and eigenspectrum of a representation: RankMe, alpha-ReQ, stable rank.

For activations X (n samples x d features) with singular values
``s_1 >= s_2 >= ...`` (``min(n, d)`` of them):

- RankMe (Garrido et al. 2023): ``p_k = s_k / sum_j s_j + eps``,
  ``RankMe = exp(-sum_k p_k log p_k)``, the entropy-based effective rank of
  Roy & Vetterli (2007) with the paper's ``eps = 1e-7``. Between 1 and
  ``min(n, d)`` (up to eps). The paper uses the embeddings as they are
  (``center=False``).
- alpha-ReQ (Agrawal et al. 2022): the decay exponent alpha of the
  eigenspectrum of the representation covariance, ``lambda_i ~ i^-alpha``,
  fitted by least squares of ``log lambda_i`` on ``log i`` (``center=True``:
  the covariance of centred data). Larger alpha: faster decay, fewer
  effective dimensions.
- stable rank (Rudelson & Vershynin 2007): ``||X||_F^2 / ||X||_2^2 =
  sum_k s_k^2 / s_1^2``, between 1 and the rank; insensitive to small
  singular values.

Centring removes one dimension: the rank of centred data is at most
``min(n - 1, d)``, so with fewer samples than features every measure is
bounded by the sample count, not by the width. Compare layers at one n.

Singular values are the square roots of the eigenvalues of the smaller Gram
(``X^T X`` or ``X X^T``), in float64 where the device has it, as the
entropies of the other families are (:func:`infoscope.backends.eigvalsh`).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_dask_namespace

from ..backends import (
    asarray,
    asarrays,
    compiled,
    matmul,
    namespace_and_device,
    supports_float64,
    to_numpy,
)
from ..backends._linalg import host_lapack, symmetric_eigenvalues
from ._base import (
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_array,
    validate_parameter_constraints,
)

__all__ = ["RepresentationGeometry", "alpha_req", "rankme", "stable_rank"]

_RANKS = [tuple, list, None]
_PARAMETERS = {
    "center": ["boolean"],
    "eps": [Interval(Real, 0, None, closed="left")],
    "ranks": _RANKS,
    "weighting": [StrOptions({"uniform", "inverse_rank"})],
}


def singular_values(X: Any, *, center: bool) -> Any:
    """Descending singular values of X (centred by column means if asked).

    The square roots of the eigenvalues of the smaller Gram, ``X^T X`` or
    ``X X^T``, in float64 where the device has it: one matrix product and a
    min(n, d)-sized eigenproblem, never an n x n array when n > d (some
    libraries' SVD of a 100,000 x 256 matrix allocates 80 GB; NumPy's is 5
    to 30 times slower). Singular values below about ``1e-8 s_1`` come out
    at that level instead of at ``1e-16 s_1`` (eigenvalues resolve to
    ``eps * s_1^2``; rounding negatives are set to 0): this moves RankMe by
    less than its own ``eps`` term does, and alpha-ReQ fits only
    eigenvalues above that floor.
    """
    ((s, s_host),) = _spectra(X, (center,))
    if s is None:
        xp, device = namespace_and_device(X)
        s = asarray(s_host, xp=xp, device=device)
    return s


def _spectra(X: Any, centers: tuple[bool, ...]) -> list[tuple[Any | None, np.ndarray]]:
    """:func:`singular_values` of X for each centring in `centers`.

    Each as (array on X's device, or None where it was computed on the host;
    NumPy copy). Where the eigenproblem is
    solved on the host (NumPy, JAX on the CPU, dask) the Gram is made there
    too: JAX's CPU arrays are read in place by NumPy, whose BLAS forms a
    tall Gram two to four times faster than XLA's CPU backend, and the small
    result needs no trip back through a compiled call. A dask Gram is a sum
    over the chunks, computed where they live (a cluster's workers).
    """
    xp, device = namespace_and_device(X)
    if is_dask_namespace(xp) or host_lapack(xp, device):
        if is_dask_namespace(xp):
            wide = xp.float64 if supports_float64(xp, device) else X.dtype
            grams = [to_numpy(_gram(X, wide=wide, center=c)) for c in centers]
        else:
            X_host = to_numpy(X)
            grams = [_gram(X_host, wide=np.float64, center=c) for c in centers]
        out = []
        for G in grams:
            if not np.all(np.isfinite(G)):
                raise ValueError(_NON_FINITE)
            w = np.flip(symmetric_eigenvalues(G))
            out.append((None, np.sqrt(np.where(w > 0, w, 0.0))))
        return out
    wide = xp.float64 if supports_float64(xp, device) else X.dtype
    kernel = compiled(_singular_values_kernel, xp, static_argnames=("wide", "center"))
    out = []
    for c in centers:
        s, finite = kernel(X, wide=wide, center=c)
        if not bool(finite):
            raise ValueError(_NON_FINITE)
        out.append((s, to_numpy(s)))
    return out


_NON_FINITE = (
    "eigvalsh: the matrix contains NaN or infinity (its entries overflowed, "
    "or came from non-finite data); eigenvalues need finite entries."
)


def _gram(X: Any, *, wide: Any, center: bool) -> Any:
    """The smaller Gram of X (centred by column means if asked), in `wide`."""
    xp = array_namespace(X)
    X = xp.astype(X, wide, copy=False)
    if center:
        X = X - xp.mean(X, axis=0)
    n, d = X.shape
    return matmul(X.T, X) if n >= d else matmul(X, X.T)


def _singular_values_kernel(X: Any, *, wide: Any, center: bool) -> tuple[Any, Any]:
    """:func:`singular_values` on the device, and whether the Gram is finite."""
    xp = array_namespace(X)
    G = _gram(X, wide=wide, center=center)
    w = xp.flip(symmetric_eigenvalues(G))
    return xp.sqrt(xp.where(w > 0, w, xp.zeros_like(w))), xp.all(xp.isfinite(G))


def rankme_from(s: Any, eps: float) -> float:
    """RankMe from singular values."""
    xp, _ = namespace_and_device(s)
    total = float(xp.sum(s))
    p = s / total + eps
    # 0 log 0 = 0 (eps = 0 and an exactly zero singular value)
    terms = xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0)
    return math.exp(-float(xp.sum(terms)))


def stable_rank_from(s: Any) -> float:
    xp, _ = namespace_and_device(s)
    top = float(xp.max(s))
    return float(xp.sum(s * s)) / (top * top)


def fit_power_law(
    eigenvalues: np.ndarray, ranks: Any, weighting: str, caller: str
) -> tuple[float, float]:
    """alpha and R^2 of ``log lambda_i = c - alpha log i`` over `ranks`.

    `eigenvalues` descending (NumPy). ``ranks=None``: every rank whose
    eigenvalue is above the numerical floor ``max(n, d) eps lambda_1``.
    """
    floor = eigenvalues.size * np.finfo(np.float64).eps * eigenvalues[0]
    available = int(np.count_nonzero(eigenvalues > floor))
    if ranks is None:
        first, last = 1, available
    else:
        first, last = (int(r) for r in ranks)
        if not 1 <= first < last:
            raise ValueError(
                f"{caller}: ranks must be (first, last) with 1 <= first < last "
                f"(1-based, inclusive), got {tuple(ranks)}."
            )
        if last > available:
            raise ValueError(
                f"{caller}: ranks ends at {last} but only {available} "
                f"eigenvalue(s) of the covariance are above the numerical floor "
                f"(at most min(n - 1, d) after centring); pass a smaller last rank "
                f"or more samples."
            )
    if last - first < 1:
        raise ValueError(
            f"{caller}: the power-law fit needs at least 2 eigenvalues above the "
            f"numerical floor, got {available}; pass more samples or features."
        )
    i = np.arange(first, last + 1, dtype=np.float64)
    y = np.log(eigenvalues[first - 1 : last])
    w = np.ones_like(i) if weighting == "uniform" else 1.0 / i
    A = np.stack([-np.log(i), np.ones_like(i)], axis=1)
    alpha, intercept = np.linalg.solve(A.T @ (A * w[:, None]), A.T @ (w * y))
    fitted = A @ np.array([alpha, intercept])
    mean = np.average(y, weights=w)
    total = np.sum(w * (y - mean) ** 2)
    r2 = 1.0 - np.sum(w * (y - fitted) ** 2) / total if total > 0 else 1.0
    return float(alpha), float(r2)


def _validated(X, caller, min_samples=1, **params):
    validate_parameter_constraints(
        {k: _PARAMETERS[k] for k in params}, params, caller_name=caller
    )
    return check_array(X, caller=caller, name="X", min_samples=min_samples)


def _check_nonzero(s, caller):
    xp, _ = namespace_and_device(s)
    if not float(xp.max(s)) > 0:
        raise ValueError(
            f"{caller}: X is zero (constant, when centred): it has no spectrum; "
            f"pass activations that vary over the samples."
        )


def rankme(X: Any, *, center: bool = False, eps: float = 1e-7) -> float:
    """RankMe: the entropy-based effective rank of X (Garrido et al. 2023).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Embeddings or activations (more than two axes flattened per sample).
    center : bool, default=False
        Subtract the column means first (the paper does not). Centred data has
        rank at most ``min(n - 1, d)``.
    eps : float, default=1e-7
        Added to every ``p_k``, as in the paper; 0 gives Roy & Vetterli's
        effective rank exactly.

    Returns
    -------
    float
        Between 1 and ``min(n, d)`` (plus about ``min(n, d) eps``).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import rankme
    >>> rng = np.random.default_rng(0)
    >>> round(rankme(np.eye(8), eps=0), 6)
    8.0
    >>> low = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 64))
    >>> rankme(low) < 3.001
    True
    """
    caller = "rankme"
    X = _validated(X, caller, center=center, eps=eps)
    ((_, s),) = _spectra(X, (center,))
    _check_nonzero(s, caller)
    return rankme_from(s, eps)


def stable_rank(X: Any, *, center: bool = False) -> float:
    """Stable rank ``||X||_F^2 / ||X||_2^2`` (sum of squared singular values
    over the largest squared).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    center : bool, default=False
        Subtract the column means first.

    Returns
    -------
    float
        Between 1 and the rank of X.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import stable_rank
    >>> stable_rank(np.diag([2.0, 1.0, 1.0]))
    1.5
    """
    caller = "stable_rank"
    X = _validated(X, caller, center=center)
    ((_, s),) = _spectra(X, (center,))
    _check_nonzero(s, caller)
    return stable_rank_from(s)


def alpha_req(
    X: Any,
    *,
    center: bool = True,
    ranks: tuple[int, int] | None = None,
    weighting: str = "uniform",
) -> float:
    """alpha-ReQ: the power-law decay exponent of the covariance eigenspectrum.

    Agrawal et al. (2022): with ``lambda_1 >= lambda_2 >= ...`` the
    eigenvalues of the covariance of X, alpha is the slope of the least-squares
    line of ``log lambda_i`` against ``-log i``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    center : bool, default=True
        Use the covariance (centred data), as the paper does; False: the
        second-moment matrix.
    ranks : (int, int) or None, default=None
        The first and last rank fitted (1-based, inclusive). None: all
        eigenvalues above the numerical floor (at most ``min(n - 1, d)``
        centred). The smallest eigenvalues of a finite sample fall below the
        power law; excluding the head and the tail (reptrix, by the paper's
        authors, fits ranks 11 to 100) makes alpha less sensitive to n.
    weighting : {"uniform", "inverse_rank"}, default="uniform"
        Least-squares weights: equal, or ``1 / i`` (reptrix's choice, which
        evens out the log-spaced ranks).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import alpha_req
    >>> rng = np.random.default_rng(0)
    >>> scales = np.arange(1, 65) ** -0.75  # covariance eigenvalues i^-1.5
    >>> X = rng.normal(size=(20000, 64)) * scales
    >>> round(alpha_req(X), 1)
    1.5
    """
    caller = "alpha_req"
    X = _validated(
        X, caller, min_samples=2, center=center, ranks=ranks, weighting=weighting
    )
    ((_, s),) = _spectra(X, (center,))
    _check_nonzero(s, caller)
    eigenvalues = s.astype(np.float64) ** 2 / max(X.shape[0] - 1, 1)
    return fit_power_law(eigenvalues, ranks, weighting, caller)[0]


class RepresentationGeometry(InfoscopeEstimator):
    """RankMe, alpha-ReQ and the stable rank of one layer's activations.

    One singular value decomposition per centring serves all three.

    Parameters
    ----------
    center : {"auto", True, False}, default="auto"
        "auto": each measure as its paper defines it (RankMe and the stable
        rank of X as given, alpha-ReQ of the covariance); True or False: all
        three of the centred, or of the uncentred, data.
    eps : float, default=1e-7
        RankMe's eps.
    ranks, weighting
        As in :func:`alpha_req`.

    Attributes
    ----------
    rankme_, alpha_req_, stable_rank_ : float
    alpha_req_r2_ : float
        The (weighted) R^2 of the power-law fit: how much of a power law
        the spectrum is.
    singular_values_ : array of shape (min(n, d),)
        Of the data RankMe is computed on (float64 where available).
    covariance_spectrum_ : array of shape (min(n, d),)
        The eigenvalues alpha-ReQ is fitted to, descending.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import RepresentationGeometry
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 32)) * np.arange(1, 33) ** -1.0
    >>> geometry = RepresentationGeometry().fit(X)
    >>> round(geometry.alpha_req_, 1), geometry.rankme_ > geometry.stable_rank_
    (2.0, True)
    """

    _parameter_constraints = {
        "center": [StrOptions({"auto"}), "boolean"],
        **{k: _PARAMETERS[k] for k in ("eps", "ranks", "weighting")},
    }
    _min_samples = 2

    def __init__(self, *, center="auto", eps=1e-7, ranks=None, weighting="uniform"):
        self.center = center
        self.eps = eps
        self.ranks = ranks
        self.weighting = weighting

    def fit(self, X, y=None):
        """Compute the three measures of X.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        caller = type(self).__name__
        X = self._validate_data(X, reset=True)
        plain = self.center if self.center != "auto" else False
        spectral = self.center if self.center != "auto" else True
        centers = (plain,) if spectral == plain else (plain, spectral)
        spectra = _spectra(X, centers)
        # The summaries of a few hundred numbers are computed on the host.
        xp, device = namespace_and_device(X)
        s, s_host = spectra[0]
        _check_nonzero(s_host, caller)
        self.rankme_ = rankme_from(s_host, self.eps)
        self.stable_rank_ = stable_rank_from(s_host)
        s_cov, s_cov_host = spectra[-1]
        _check_nonzero(s_cov_host, caller)
        scale = max(X.shape[0] - 1, 1)
        eigenvalues = s_cov_host.astype(np.float64) ** 2 / scale
        if s is None:  # computed on the host: both go to the device at once
            s, spectrum = asarrays([s_host, eigenvalues], xp=xp, device=device)
        else:
            spectrum = s_cov * s_cov / scale
        self.singular_values_, self.covariance_spectrum_ = s, spectrum
        self.alpha_req_, self.alpha_req_r2_ = fit_power_law(
            eigenvalues, self.ranks, self.weighting, caller
        )
        return self
