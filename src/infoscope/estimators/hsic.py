"""HSIC, CKA, the HSIC independence test and the HSIC information plane.

For Gram matrices K (of X) and L (of Y) on n samples and ``H = I - 11^T / n``:

- biased HSIC (Gretton et al. 2005): ``tr(K H L H) / (n-1)^2``;
- unbiased HSIC (Song et al. 2012), n >= 4, with ``K~``, ``L~`` the Grams with
  zero diagonals: ``[tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2))
  - 2 / (n-2) 1^T K~ L~ 1] / (n (n-3))``;
- CKA (Kornblith et al. 2019): ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``.

Both estimates are an inner product ``<C(K), L> / c_n`` of one centred Gram
with the other, raw: ``C(K) = H K H`` and ``c_n = (n-1)^2`` for the biased
estimate; ``C(K)`` the U-centred K (zero diagonal) and ``c_n = n (n-3)`` for
the unbiased one. That is why :class:`HSICPlane` caches the centred Grams of
the inputs and labels and needs one plain Gram per layer.

Kernels: "gaussian" ``exp(-||a-b||^2 / (2 sigma^2))`` with sigma a number or
"median" (the median of the variable's own pairwise distances), "linear"
``a . b`` (computed from the features, O(n d^2), when that is cheaper than the
Gram), or a callable ``kernel(A, B)`` returning the ``(len(A), len(B))`` Gram.
The approximate method (:mod:`._hsic_features`) uses random Fourier features
or Nystrom features and streams over chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple

import array_api_extra as xpx
import numpy as np
from scipy import stats
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ..backends import (
    asarray,
    check_random_state,
    device_name,
    is_array,
    matmul,
    namespace_and_device,
    namespace_name,
    pairwise_sq_distances,
    to_numpy,
)
from ..kernels import gaussian_from_sq_distances, gaussian_kernel, median_distance
from ._base import (
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_array,
    check_consistent_length,
    check_square_arrays_fit,
    check_targets,
    validate_parameter_constraints,
)
from ._hsic_features import (
    FourierFeatures,
    LinearFeatures,
    NystromFeatures,
    StreamedHSIC,
)

__all__ = ["HSIC", "HSICPlane", "HSICTestResult", "cka", "hsic", "hsic_test"]

_KERNEL = [StrOptions({"gaussian", "linear"}), callable]
_SIGMA = [Interval(Real, 0, None, closed="neither"), StrOptions({"median"})]
_HSIC_PARAMETERS = {
    "kernel_x": _KERNEL,
    "kernel_y": [*_KERNEL, None],
    "sigma_x": _SIGMA,
    "sigma_y": [*_SIGMA, None],
    "estimator": [StrOptions({"biased", "unbiased"})],
    "method": [StrOptions({"exact", "approximate"})],
    "approximation": [StrOptions({"rff", "nystrom"})],
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left"), None],
    "random_state": ["random_state"],
}
_TEST_PARAMETERS = {
    **{k: _HSIC_PARAMETERS[k] for k in ("kernel_x", "kernel_y", "sigma_x", "sigma_y")},
    "estimator": _HSIC_PARAMETERS["estimator"],
    "method": [StrOptions({"permutation", "gamma"})],
    "n_permutations": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
}
#: Rows per chunk of the approximate method when `batch_size` is None.
DEFAULT_BATCH_SIZE = 16384


# ---- kernels


@dataclass(frozen=True)
class _Kernel:
    """One variable's kernel: "gaussian", "linear" or a callable, and sigma."""

    kind: Any
    sigma: Any  # a number or "median" (gaussian only)
    name: str  # the argument suffix, "x" or "y", for the messages

    def bandwidth(self, X: Any, rng: Any, caller: str, D2: Any = None) -> float | None:
        if self.kind != "gaussian":
            return None
        if not isinstance(self.sigma, str):
            return float(self.sigma)
        sigma = median_distance(X, D2=D2, random_state=rng)
        if sigma == 0:
            raise ValueError(
                f"{caller}: sigma_{self.name}='median' is undefined because the "
                f"median distance between the samples of the {self.name.upper()} "
                f"variable is 0 (at least half of the pairs of samples are "
                f"identical); pass a positive number as sigma_{self.name}, or "
                f"kernel_{self.name}='linear'."
            )
        return sigma

    def gram(self, X: Any, rng: Any, caller: str) -> tuple[Any, float | None]:
        """The n x n Gram of `X` and the bandwidth used."""
        if self.kind == "gaussian":
            D2 = pairwise_sq_distances(X)
            sigma = self.bandwidth(X, rng, caller, D2=D2)
            return gaussian_from_sq_distances(D2, sigma), sigma
        if self.kind == "linear":
            return matmul(X, X.T), None
        return _call_kernel(self.kind, X, X, caller, self.name), None

    def function(self, sigma: float | None) -> Callable[[Any, Any], Any]:
        """``kernel(A, B)`` for the Nystrom features."""
        if self.kind == "gaussian":
            return functools.partial(gaussian_kernel, sigma=sigma)
        if self.kind == "linear":
            return lambda A, B: matmul(A, B.T)
        return self.kind


def _call_kernel(kernel, A, B, caller, name):
    G = kernel(A, B)
    xp, _ = namespace_and_device(A)
    if not is_array(G) or tuple(G.shape) != (A.shape[0], B.shape[0]):
        shape = tuple(G.shape) if hasattr(G, "shape") else type(G).__name__
        raise ValueError(
            f"{caller}: kernel_{name}(A, B) must return the "
            f"({A.shape[0]}, {B.shape[0]}) Gram matrix of the rows of A and B, "
            f"got {shape}."
        )
    namespace_and_device(A, G, names=(name.upper(), f"kernel_{name}(A, B)"))
    return xp.astype(G, A.dtype) if G.dtype != A.dtype else G


def _kernels(kernel_x, kernel_y, sigma_x, sigma_y) -> tuple[_Kernel, _Kernel]:
    """Y's kernel and sigma default to X's (the rule, not the value)."""
    if kernel_y is None:
        kernel_y = kernel_x
    if sigma_y is None:
        sigma_y = sigma_x
    return _Kernel(kernel_x, sigma_x, "x"), _Kernel(kernel_y, sigma_y, "y")


def _kernels_of(params: dict) -> tuple[_Kernel, _Kernel]:
    return _kernels(
        params["kernel_x"], params["kernel_y"], params["sigma_x"], params["sigma_y"]
    )


def _target_kernel(kernel_y: Any, classes: Any, default: Any) -> Any:
    """Y's kernel: as given, else the delta kernel for classes, else `default`."""
    if kernel_y is not None:
        return kernel_y
    return "linear" if classes is not None else default


# ---- centred Grams and their inner products


def _centre(G: Any, unbiased: bool) -> Any:
    """``H G H`` (biased) or the U-centred G with zero diagonal (unbiased).

    In place where the library allows.
    """
    xp, _ = namespace_and_device(G)
    n = G.shape[0]
    if not unbiased:
        rows = xp.mean(G, axis=1)
        columns = xp.mean(G, axis=0)
        total = xp.mean(rows)
        G -= rows[:, None]
        G -= columns[None, :]
        G += total
        return G
    diagonal = _diagonal(G)
    rows = xp.sum(G, axis=1) - diagonal  # row sums of G with a zero diagonal
    columns = xp.sum(G, axis=0) - diagonal
    total = xp.sum(rows)
    G -= rows[:, None] / (n - 2)
    G -= columns[None, :] / (n - 2)
    G += total / ((n - 1) * (n - 2))
    return _zero_diagonal(G)


def _diagonal(G: Any) -> Any:
    xp, _ = namespace_and_device(G)
    n = G.shape[0]
    return xp.reshape(G, (-1,))[:: n + 1]


def _zero_diagonal(G: Any) -> Any:
    xp, _ = namespace_and_device(G)
    n = G.shape[0]
    flat = xpx.at(xp.reshape(G, (-1,)))[:: n + 1].set(0.0)
    return xp.reshape(flat, (n, n))


def _inner(A: Any, B: Any) -> float:
    """``sum_ij A_ij B_ij`` without an n x n temporary."""
    xp, _ = namespace_and_device(A, B)
    return float(xp.tensordot(A, B, axes=2))


def _normalizer(n: int, unbiased: bool) -> float:
    return float(n * (n - 3)) if unbiased else float((n - 1) ** 2)


# ---- validation shared by the functions and the estimators


def _as_variable(X: Any, caller: str, name: str, min_samples: int) -> Any:
    """A variable's samples as a 2-D float array: 1-D input is one feature."""
    if is_array(X) and X.ndim == 1:
        xp, _ = namespace_and_device(X)
        X = xp.reshape(X, (-1, 1))
    elif not is_array(X) and X is not None and np.ndim(X) == 1:
        X = np.reshape(np.asarray(X), (-1, 1))
    return check_array(X, caller=caller, name=name, min_samples=min_samples)


def _min_samples(estimator: str) -> int:
    return 4 if estimator == "unbiased" else 2


def _follow_the_array(value, other):
    """A numeric array-like `value` moved to array `other`'s library and device."""
    if is_array(value) or not is_array(other):
        return value
    try:
        host = np.asarray(value)
    except (TypeError, ValueError):
        return value  # left for _as_variable to refuse with its message
    if host.dtype.kind not in "biuf":
        return value
    xp, device = namespace_and_device(other)
    return asarray(value, xp=xp, device=device)


def _pair(X, Y, *, caller, estimator, x_name="X", y_name="Y"):
    """X and Y validated, with the same namespace, device and sample count."""
    n_min = _min_samples(estimator)
    X, Y = _follow_the_array(X, Y), _follow_the_array(Y, X)
    X = _as_variable(X, caller, x_name, n_min)
    Y = _as_variable(Y, caller, y_name, n_min)
    namespace_and_device(X, Y, names=(x_name, y_name))
    check_consistent_length(caller=caller, **{x_name: X, y_name: Y})
    xp, _ = namespace_and_device(X)
    dtype = xp.result_type(X, Y)
    return xp.astype(X, dtype, copy=False), xp.astype(Y, dtype, copy=False)


def _check_exact_fits(n: int, count: int, X: Any, caller: str) -> None:
    """Refuse, before allocating, `count` n x n arrays of X's dtype that cannot fit."""
    xp, device = namespace_and_device(X)
    check_square_arrays_fit(
        n,
        count,
        8 if X.dtype == xp.float64 else 4,
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: (
            f"Use method='approximate' (linear in n), or pass at most {fits} samples"
        ),
    )


# ---- the computations


def _use_features(kx: _Kernel, ky: _Kernel, n: int, dx: int, dy: int, self_terms):
    """Whether the linear kernels' feature form is cheaper than the Grams."""
    if kx.kind != "linear" or ky.kind != "linear":
        return False
    feature_cost = dx * dy + (dx * dx + dy * dy if self_terms else 0)
    return feature_cost <= n * (dx + dy)


@dataclass
class _Value:
    """HSIC(X, Y), and with CKA the self terms; the bandwidths used."""

    hsic: float
    hsic_xx: float | None
    hsic_yy: float | None
    sigma_x: float | None
    sigma_y: float | None

    @property
    def cka(self) -> float:
        return _cka(self.hsic, self.hsic_xx, self.hsic_yy)


def _cka(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float:
    denominator = hsic_xx * hsic_yy
    if not denominator > 0:
        raise ValueError(
            "CKA is undefined: HSIC(X, X) or HSIC(Y, Y) is not positive (a "
            "variable whose Gram is constant after centring, e.g. identical "
            "samples or a constant feature). Use HSIC, which is 0 there."
        )
    return hsic_xy / math.sqrt(denominator)


def _exact(X, Y, kx, ky, *, unbiased, normalized, rng, caller) -> _Value:
    n = X.shape[0]
    if _use_features(kx, ky, n, X.shape[1], Y.shape[1], normalized):
        streamed = StreamedHSIC(
            LinearFeatures(),
            LinearFeatures(),
            unbiased=unbiased,
            self_terms=("xx", "yy") if normalized else (),
        )
        _update_in_chunks(streamed, X, Y, DEFAULT_BATCH_SIZE)
        return _streamed_value(streamed, normalized, None, None)
    _check_exact_fits(n, 3, X, caller)
    K, sigma_x = kx.gram(X, rng, caller)
    L, sigma_y = ky.gram(Y, rng, caller)
    K = _centre(K, unbiased)
    c = _normalizer(n, unbiased)
    if not normalized:
        return _Value(_inner(K, L) / c, None, None, sigma_x, sigma_y)
    L = _centre(L, unbiased)
    return _Value(
        _inner(K, L) / c, _inner(K, K) / c, _inner(L, L) / c, sigma_x, sigma_y
    )


def _update_in_chunks(streamed: StreamedHSIC, X: Any, Y: Any, batch: int) -> None:
    """Feed `streamed` `batch` rows at a time (views, no copy of the data)."""
    n = X.shape[0]
    if n <= batch:
        streamed.update(X, Y)
        return
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        streamed.update(X[start:stop, ...], Y[start:stop, ...])


def _streamed_value(streamed, normalized, sigma_x, sigma_y) -> _Value:
    if not normalized:
        return _Value(streamed.value("xy"), None, None, sigma_x, sigma_y)
    return _Value(
        streamed.value("xy"),
        streamed.value("xx"),
        streamed.value("yy"),
        sigma_x,
        sigma_y,
    )


def _feature_map(kernel: _Kernel, sigma, X, rng, params: dict, caller: str):
    """The feature map of one variable for the approximate method.

    Linear kernels keep their exact features; Gaussian kernels get random
    Fourier features (``approximation="rff"``), any kernel Nystrom features
    on ``n_components`` landmarks drawn from the rows of `X`.
    """
    if kernel.kind == "linear":
        return LinearFeatures()
    xp, device = namespace_and_device(X)
    m = params["n_components"]
    if params["approximation"] == "rff":
        if kernel.kind != "gaussian":
            raise ValueError(
                f"{caller}: random Fourier features exist for the gaussian "
                f"kernel only, and kernel_{kernel.name} is {kernel.kind!r}; pass "
                f"approximation='nystrom'."
            )
        if m < 4:
            raise ValueError(
                f"{caller}: random Fourier features need n_components >= 4 (two "
                f"independent blocks of a cosine and a sine feature), got {m}; "
                f"pass more, or approximation='nystrom'."
            )
        return FourierFeatures(X.shape[1], m, sigma, rng, xp, device, X.dtype)
    rows = np.sort(rng.choice(X.shape[0], min(m, X.shape[0]), replace=False))
    landmarks = xp.take(X, xp.asarray(rows, device=device), axis=0)
    return NystromFeatures(landmarks, kernel.function(sigma))


class _Stream:
    """The approximate method's state: feature maps fixed by the first chunk."""

    def __init__(self, params: dict, kx: _Kernel, ky: _Kernel, caller: str):
        self.params, self.kx, self.ky, self.caller = params, kx, ky, caller
        self.streamed = None
        self.sigma_x = self.sigma_y = None

    @property
    def exact(self) -> bool:
        """Linear kernels on both sides: the features are the data."""
        return self.kx.kind == "linear" and self.ky.kind == "linear"

    def cast(self, X: Any, Y: Any) -> tuple[Any, Any]:
        """Random features are held in float32: their noise dwarfs its rounding."""
        if self.exact:
            return X, Y
        xp, _ = namespace_and_device(X)
        return (
            xp.astype(X, xp.float32, copy=False),
            xp.astype(Y, xp.float32, copy=False),
        )

    def start(self, X: Any, Y: Any, rng: Any) -> None:
        params = self.params
        self.sigma_x = self.kx.bandwidth(X, rng, self.caller)
        self.sigma_y = self.ky.bandwidth(Y, rng, self.caller)
        map_x = _feature_map(self.kx, self.sigma_x, X, rng, params, self.caller)
        map_y = _feature_map(self.ky, self.sigma_y, Y, rng, params, self.caller)
        self.streamed = StreamedHSIC(
            map_x,
            map_y,
            unbiased=params["estimator"] == "unbiased",
            self_terms=("xx", "yy") if params["normalized"] else (),
        )

    def update(self, X: Any, Y: Any) -> None:
        batch = self.params["batch_size"] or DEFAULT_BATCH_SIZE
        _update_in_chunks(self.streamed, X, Y, batch)

    def value(self) -> _Value:
        return _streamed_value(
            self.streamed, self.params["normalized"], self.sigma_x, self.sigma_y
        )


def _compute(X, Y, params: dict, caller: str) -> _Value:
    """Validated X and Y, validated params -> the value (one implementation)."""
    rng = check_random_state(params["random_state"])
    kx, ky = _kernels_of(params)
    if params["method"] == "exact":
        return _exact(
            X,
            Y,
            kx,
            ky,
            unbiased=params["estimator"] == "unbiased",
            normalized=params["normalized"],
            rng=rng,
            caller=caller,
        )
    stream = _Stream(params, kx, ky, caller)
    X, Y = stream.cast(X, Y)
    stream.start(X, Y, rng)
    stream.update(X, Y)
    return stream.value()


def _function_params(caller, **params) -> dict:
    normalized = params.pop("normalized")
    validate_parameter_constraints(_HSIC_PARAMETERS, params, caller_name=caller)
    return {**params, "normalized": normalized}


# ---- public functions


def hsic(
    X: Any,
    Y: Any,
    *,
    kernel_x: str | Callable = "gaussian",
    kernel_y: str | Callable | None = None,
    sigma_x: float | str = "median",
    sigma_y: float | str | None = None,
    estimator: str = "biased",
    method: str = "exact",
    approximation: str = "rff",
    n_components: int = 1024,
    batch_size: int | None = None,
    random_state: Any = None,
) -> float:
    """Hilbert-Schmidt Independence Criterion between the rows of `X` and `Y`.

    ``tr(K H L H) / (n-1)^2`` (biased) or Song et al.'s unbiased estimate,
    with K a kernel on X and L one on Y (module docstring). Zero in
    expectation when X and Y are independent (unbiased estimate).

    Parameters
    ----------
    X, Y : arrays of shape (n_samples,) or (n_samples, n_features)
        The same samples of two variables, from one library and device; 1-D
        input is one feature, more than two axes are flattened per sample.
        Values are numbers: pass class labels one-hot encoded (with
        ``kernel_y="linear"``), or use :class:`HSIC` / :class:`HSICPlane`,
        which encode classes themselves. A kernel on integer codes would
        make class 1 closer to class 2 than to class 9.
    kernel_x : {"gaussian", "linear"} or callable, default="gaussian"
        A callable ``kernel(A, B)`` returns the ``(len(A), len(B))`` Gram of
        the rows of A and B in their namespace.
    kernel_y : {"gaussian", "linear"}, callable or None, default=None
        None: the same as `kernel_x`.
    sigma_x : float or "median", default="median"
        Gaussian bandwidth; "median" is the median distance between distinct
        samples of X (over a random subset of 4,000 samples above that).
    sigma_y : float, "median" or None, default=None
        None: the same rule as `sigma_x` ("median" is then Y's own median).
    estimator : {"biased", "unbiased"}, default="biased"
        The unbiased estimate needs at least 4 samples and can be negative.
    method : {"exact", "approximate"}, default="exact"
        "exact" builds the n x n Grams (O(n^2 d) time, three n x n arrays;
        linear kernels use their O(n d^2) feature form when it is cheaper).
        "approximate" uses explicit features, `n_components` per variable,
        in float32 and in chunks of `batch_size` samples: time linear in n,
        memory independent of it. Linear kernels stay exact.
    approximation : {"rff", "nystrom"}, default="rff"
        "rff": orthogonal random Fourier features (gaussian kernels only),
        unbiased for HSIC, relative error of about 1% at the default size.
        "nystrom": `n_components` landmarks drawn from the samples; any
        kernel, deterministic given the landmarks, but it keeps only the top
        of the kernel's spectrum and so underestimates HSIC, badly for
        high-dimensional data (use it for low intrinsic dimension).
    n_components : int, default=1024
        Features per variable for the approximate method.
    batch_size : int or None, default=None
        Samples per chunk for the approximate method (None: 16,384).
    random_state : int, numpy.random.Generator or None, default=None
        For the median's subset, the random features and the landmarks.

    Returns
    -------
    float

    See Also
    --------
    cka : the normalised form.
    hsic_test : a p-value for independence.
    HSIC : the estimator, which also streams over chunks (``partial_fit``).

    Notes
    -----
    PyGlow's information-plane numbers are ``(n - 1) * hsic(X, Y,
    sigma_x=s)`` for its shared sigma ``s`` (one value for both variables and
    every layer), with the network's output as Y. hyppo's ``Hsic`` statistic
    is ``cka(x, y, sigma_x=s, estimator="unbiased")`` with ``s`` the median
    distance of x alone (shared by y); see the user guide.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import hsic
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> hsic(X, X[:, :1] ** 2) > 10 * hsic(X, rng.normal(size=(500, 1)))
    True
    """
    caller = "hsic"
    params = _function_params(
        caller,
        kernel_x=kernel_x,
        kernel_y=kernel_y,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        estimator=estimator,
        method=method,
        approximation=approximation,
        n_components=n_components,
        batch_size=batch_size,
        random_state=random_state,
        normalized=False,
    )
    X, Y = _pair(X, Y, caller=caller, estimator=estimator)
    return _compute(X, Y, params, caller).hsic


def cka(
    X: Any,
    Y: Any,
    *,
    kernel_x: str | Callable = "gaussian",
    kernel_y: str | Callable | None = None,
    sigma_x: float | str = "median",
    sigma_y: float | str | None = None,
    estimator: str = "biased",
    method: str = "exact",
    approximation: str = "rff",
    n_components: int = 1024,
    batch_size: int | None = None,
    random_state: Any = None,
) -> float:
    """Centered Kernel Alignment: ``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))``.

    Kornblith et al. 2019. In [0, 1] for the biased estimate, invariant to
    isotropic scaling of either variable and, with linear kernels, to
    orthogonal transforms: representations of different widths compare.

    Parameters
    ----------
    X, Y, kernel_x, kernel_y, sigma_x, sigma_y, estimator, method, \
approximation, n_components, batch_size, random_state
        As in :func:`hsic`.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When HSIC(X, X) or HSIC(Y, Y) is not positive (a constant variable).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import cka
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> round(cka(X, 3 * X @ Q, kernel_x="linear"), 6)
    1.0
    """
    caller = "cka"
    params = _function_params(
        caller,
        kernel_x=kernel_x,
        kernel_y=kernel_y,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        estimator=estimator,
        method=method,
        approximation=approximation,
        n_components=n_components,
        batch_size=batch_size,
        random_state=random_state,
        normalized=True,
    )
    X, Y = _pair(X, Y, caller=caller, estimator=estimator)
    value = _compute(X, Y, params, caller)
    try:
        return value.cka
    except ValueError as exc:
        raise ValueError(f"{caller}: {exc}") from None


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
    params = {
        "kernel_x": kernel_x,
        "kernel_y": kernel_y,
        "sigma_x": sigma_x,
        "sigma_y": sigma_y,
        "estimator": estimator,
        "method": method,
        "n_permutations": n_permutations,
        "random_state": random_state,
    }
    validate_parameter_constraints(_TEST_PARAMETERS, params, caller_name=caller)
    if method == "gamma" and estimator != "biased":
        raise ValueError(
            f"{caller}: the gamma approximation is derived for the biased "
            f"statistic; pass estimator='biased', or method='permutation'."
        )
    X, Y = _pair(X, Y, caller=caller, estimator=estimator)
    if method == "gamma" and X.shape[0] < 6:
        raise ValueError(
            f"{caller}: the gamma approximation needs at least 6 samples, got "
            f"{X.shape[0]}; pass more samples, or method='permutation'."
        )
    rng = check_random_state(random_state)
    kx, ky = _kernels(kernel_x, kernel_y, sigma_x, sigma_y)
    n = X.shape[0]
    unbiased = estimator == "unbiased"
    _check_exact_fits(n, 3, X, caller)
    K, _ = kx.gram(X, rng, caller)
    L, _ = ky.gram(Y, rng, caller)
    if method == "gamma":
        return _gamma_test(K, L)
    Kc = _centre(K, unbiased)
    c = _normalizer(n, unbiased)
    observed = _inner(Kc, L)
    xp, device = namespace_and_device(L)
    null = np.empty(n_permutations)
    for b in range(n_permutations):
        order = xp.asarray(rng.permutation(n), device=device)
        permuted = xp.take(xp.take(L, order, axis=0), order, axis=1)
        null[b] = _inner(Kc, permuted)
    # Ties within rounding count as ties: discrete Y permutes to equal values.
    tolerance = 1e-12 * max(abs(observed), float(np.max(np.abs(null))))
    exceed = int(np.count_nonzero(null >= observed - tolerance))
    return HSICTestResult(observed / c, (1 + exceed) / (1 + n_permutations))


def _gamma_test(K: Any, L: Any) -> HSICTestResult:
    """Gretton et al. (2008)'s gamma approximation (their HSIC uses 1/n^2)."""
    xp, _ = namespace_and_device(K, L)
    n = K.shape[0]
    diagonal_k = float(xp.sum(_diagonal(K))) / n
    diagonal_l = float(xp.sum(_diagonal(L))) / n
    mu_x = (float(xp.sum(K)) - n * diagonal_k) / (n * (n - 1))
    mu_y = (float(xp.sum(L)) - n * diagonal_l) / (n * (n - 1))
    Kc = _centre(K, unbiased=False)
    Lc = _centre(L, unbiased=False)
    statistic = _inner(Kc, Lc)  # tr(K H L H)
    product = Kc * Lc
    product *= product
    off_diagonal = float(xp.sum(product)) - float(xp.sum(_diagonal(product)))
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
    return HSICTestResult(statistic / (n - 1) ** 2, pvalue)


def _one_hot(codes: np.ndarray, n_classes: int, X: Any) -> Any:
    """One-hot rows of the class codes, in X's namespace, device and dtype."""
    xp, device = namespace_and_device(X)
    one_hot = codes[:, None] == np.arange(n_classes)[None, :]
    return asarray(one_hot, xp=xp, device=device, dtype=X.dtype)


def _encode_targets(X, y, target_type, caller):
    """Targets as a 2-D float array in X's namespace, device and dtype.

    Class labels (``target_type="classes"``, or "auto" and
    :func:`sklearn.utils.multiclass.type_of_target` says binary or multiclass)
    are one-hot encoded; continuous targets are kept (1-D as one column). `y`
    follows `X` to its library and device. Returns the array and the classes
    (None for continuous targets).
    """
    xp, device = namespace_and_device(X)
    y = check_targets(y, caller=caller)
    check_consistent_length(caller=caller, X=X, y=y)
    kind = target_type
    host = to_numpy(y) if kind != "continuous" else None
    if kind == "auto":
        found = type_of_target(host)
        kind = "classes" if found in ("binary", "multiclass") else "continuous"
    if kind == "classes":
        if host.ndim != 1:
            raise ValueError(
                f"{caller}: class labels `y` must be 1-D, got shape {host.shape}; "
                f"pass one label per sample, or target_type='continuous' for "
                f"multi-output targets."
            )
        classes, codes = np.unique(host, return_inverse=True)
        return _one_hot(codes, len(classes), X), classes
    y = check_targets(y, caller=caller, numeric=True)
    y_xp, y_device = namespace_and_device(y)
    if (namespace_name(y_xp), device_name(y_device)) != (
        namespace_name(xp),
        device_name(device),
    ):
        y = asarray(to_numpy(y), xp=xp, device=device)  # y follows X
    if y.ndim == 1:
        y = xp.reshape(y, (-1, 1))
    return xp.astype(y, X.dtype), None


# ---- estimators


class HSIC(InfoscopeEstimator):
    """HSIC (and CKA) between activations `X` and a second variable `y`.

    ``fit`` computes :func:`hsic` (and, with ``normalized=True``, the self
    terms and :func:`cka`); ``partial_fit`` streams over chunks of samples
    with the approximate method or linear kernels, so the activations never
    need to be in memory at once.

    Parameters
    ----------
    kernel_x, sigma_x, sigma_y, estimator, method, approximation, \
n_components, batch_size, random_state
        As in :func:`hsic`.
    kernel_y : {"gaussian", "linear"}, callable or None, default=None
        None: for class labels, the linear kernel of their one-hot encoding
        (``L_ij = 1`` when samples i and j share a class); otherwise
        `kernel_x`.
    target_type : {"auto", "classes", "continuous"}, default="auto"
        How `y` is read. "auto" follows
        :func:`sklearn.utils.multiclass.type_of_target`: integer, boolean and
        string labels are classes (one-hot encoded), floats are continuous.
    normalized : bool, default=False
        Also compute HSIC(X, X), HSIC(y, y) and CKA.

    Attributes
    ----------
    hsic_ : float
        HSIC(X, y).
    hsic_xx_, hsic_yy_, cka_ : float
        Present with ``normalized=True``.
    classes_ : ndarray or None
        The class labels of `y` (None for continuous targets).
    sigma_x_, sigma_y_ : float or None
        The Gaussian bandwidths used (None for other kernels).
    n_samples_seen_ : int
    n_features_in_ : int

    Notes
    -----
    With ``partial_fit``, a "median" bandwidth, the random features, the
    Nystrom landmarks and the classes are fixed by the first chunk; for linear
    kernels, and for random Fourier features with a numeric sigma, any split
    of the samples gives the value of one pass.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import HSIC
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 10))
    >>> y = np.tanh(X[:, 0]) + 0.1 * rng.normal(size=2000)
    >>> est = HSIC(method="approximate", random_state=0)
    >>> for start in range(0, 2000, 500):
    ...     est = est.partial_fit(X[start:start + 500], y[start:start + 500])
    >>> round(est.hsic_ / HSIC().fit(X, y).hsic_, 1)
    1.0
    """

    _parameter_constraints = {
        **_HSIC_PARAMETERS,
        "target_type": [StrOptions({"auto", "classes", "continuous"})],
        "normalized": ["boolean"],
    }

    def __init__(
        self,
        *,
        kernel_x="gaussian",
        kernel_y=None,
        sigma_x="median",
        sigma_y=None,
        target_type="auto",
        estimator="biased",
        normalized=False,
        method="exact",
        approximation="rff",
        n_components=1024,
        batch_size=None,
        random_state=None,
    ):
        self.kernel_x = kernel_x
        self.kernel_y = kernel_y
        self.sigma_x = sigma_x
        self.sigma_y = sigma_y
        self.target_type = target_type
        self.estimator = estimator
        self.normalized = normalized
        self.method = method
        self.approximation = approximation
        self.n_components = n_components
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.one_d_labels = False
        tags.non_deterministic = self.method == "approximate"
        return tags

    def _params(self) -> dict:
        """The function's parameters, with y's kernel resolved."""
        params = self.get_params(deep=False)
        del params["target_type"]
        # None stays None for continuous targets: _kernels then takes X's.
        return {
            **params,
            "kernel_y": _target_kernel(self.kernel_y, self.classes_, None),
        }

    def fit(self, X, y):
        """Compute HSIC(X, y) on all samples.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,) or (n_samples, n_targets)
            Class labels or numbers, moved to X's library and device.

        Returns
        -------
        self
        """
        self._validate_params()
        self._stream = None
        caller = type(self).__name__
        X = self._validate_data(
            X, reset=True, min_samples=_min_samples(self.estimator), method="fit"
        )
        Y, self.classes_ = _encode_targets(X, y, self.target_type, caller)
        self._store(_compute(X, Y, self._params(), caller))
        self.n_samples_seen_ = X.shape[0]
        return self

    def _streams(self) -> bool:
        return self.method == "approximate" or (
            self.kernel_x == "linear" and self.kernel_y in (None, "linear")
        )

    @available_if(_streams)
    def partial_fit(self, X, y):
        """Add a chunk of samples (approximate method or linear kernels).

        Available with ``method="approximate"``, or with linear kernels for
        both variables (exact: their sums over samples are the statistic).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        caller = type(self).__name__
        first = getattr(self, "_stream", None) is None
        if first:
            self._validate_params()
        X = self._validate_data(X, reset=first, min_samples=1, method="partial_fit")
        if first:
            Y, self.classes_ = _encode_targets(X, y, self.target_type, caller)
            params = self._params()
            stream = _Stream(params, *_kernels_of(params), caller)
        else:
            stream = self._stream
            Y = self._encode_chunk(X, y, caller)
        X, Y = stream.cast(X, Y)
        if first:
            stream.start(X, Y, check_random_state(self.random_state))
            self._stream = stream
            self._n_targets = Y.shape[1]
            self.n_samples_seen_ = 0
        stream.update(X, Y)
        self.n_samples_seen_ += X.shape[0]
        if self.n_samples_seen_ >= _min_samples(self.estimator):
            self._store(stream.value())
        return self

    def _encode_chunk(self, X, y, caller):
        """A later chunk's targets, encoded as the first chunk's were."""
        if self.classes_ is None:
            Y, _ = _encode_targets(X, y, "continuous", caller)
            if Y.shape[1] != self._n_targets:
                raise ValueError(
                    f"{caller}.partial_fit(): `y` has {Y.shape[1]} column(s) but "
                    f"the first chunk had {self._n_targets}; pass the same targets."
                )
            return Y
        labels = to_numpy(check_targets(y, caller=caller))
        check_consistent_length(caller=caller, X=X, y=labels)
        unseen = np.setdiff1d(labels, self.classes_)
        if unseen.size:
            raise ValueError(
                f"{caller}.partial_fit(): `y` holds classes the first chunk did "
                f"not have ({unseen[:5].tolist()}); the classes are fixed by the "
                f"first chunk, so include every class in it."
            )
        return _one_hot(np.searchsorted(self.classes_, labels), len(self.classes_), X)

    def _store(self, value: _Value) -> None:
        self.hsic_ = value.hsic
        self.sigma_x_ = value.sigma_x
        self.sigma_y_ = value.sigma_y
        if self.normalized:
            self.hsic_xx_ = value.hsic_xx
            self.hsic_yy_ = value.hsic_yy
            try:
                self.cka_ = value.cka
            except ValueError as exc:
                raise ValueError(f"{type(self).__name__}: {exc}") from None


class HSICPlane(InfoscopeEstimator):
    """The HSIC information plane: (HSIC(H, X), HSIC(H, Y)) for each layer H.

    ``fit(X, y)`` caches the centred Grams of the inputs and of the targets;
    ``transform(layers)`` then costs one Gram per layer. Every variable gets
    its own bandwidth (sigma="median"): layers of different widths and scales
    are measured on their own scale.

    Parameters
    ----------
    kernel : {"gaussian", "linear"} or callable, default="gaussian"
        The kernel of the inputs and of every layer.
    sigma : float or "median", default="median"
        Its bandwidth; "median" is each variable's own median distance.
    kernel_y : {"gaussian", "linear"}, callable or None, default=None
        The targets' kernel. None: for class labels, the linear kernel of
        their one-hot encoding (``L_ij = 1`` when samples i and j share a
        class, else 0; a Gaussian kernel on one-hot codes is the same after
        centring, up to a factor); for continuous targets, `kernel`.
    sigma_y : float, "median" or None, default=None
        None: the rule of `sigma`.
    target_type : {"auto", "classes", "continuous"}, default="auto"
        "auto" follows :func:`sklearn.utils.multiclass.type_of_target`:
        integer, boolean and string labels are classes, floats are continuous.
    estimator : {"biased", "unbiased"}, default="biased"
    normalized : bool, default=False
        CKA coordinates, ``HSIC(H, X) / sqrt(HSIC(H, H) HSIC(X, X))``, so
        that layers of different widths compare (one more centring per layer).
    method : {"exact", "approximate"}, default="exact"
        "exact" caches the two centred n x n Grams (n up to about 10^4 on a
        large machine); "approximate" keeps X and the encoded targets and
        streams every layer, with X's and Y's features, over chunks of
        samples (:func:`hsic`'s approximate method): time linear in n,
        memory that of the activations.
    approximation, n_components, batch_size
        As in :func:`hsic`, for ``method="approximate"``.
    random_state : int, numpy.random.Generator or None, default=None
        For the median's subset above 4,000 samples, the random features and
        the landmarks. ``transform`` draws each layer's features afresh from
        it, so with an int it returns the same numbers on every call.

    Attributes
    ----------
    n_samples_ : int
    n_features_in_ : int
    classes_ : ndarray or None
        The class labels (None for continuous targets).
    sigma_x_, sigma_y_ : float or None
    hsic_xx_, hsic_yy_ : float
        HSIC(X, X) and HSIC(Y, Y) (with ``normalized=True``).

    Notes
    -----
    PyGlow's plane is ``(n - 1)`` times ``HSICPlane(sigma=s, kernel_y=
    "gaussian")`` fitted with the network's output as y, for its one shared
    ``s``; see the user guide.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import HSICPlane
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> W = rng.normal(size=(8, 16))
    >>> plane = HSICPlane().fit(X, y)
    >>> plane.transform([np.maximum(X @ W, 0), rng.normal(size=(300, 4))]).shape
    (2, 2)
    """

    _parameter_constraints = {
        "kernel": _KERNEL,
        "sigma": _SIGMA,
        "kernel_y": [*_KERNEL, None],
        "sigma_y": [*_SIGMA, None],
        "target_type": [StrOptions({"auto", "classes", "continuous"})],
        "estimator": _HSIC_PARAMETERS["estimator"],
        "normalized": ["boolean"],
        "method": _HSIC_PARAMETERS["method"],
        "approximation": _HSIC_PARAMETERS["approximation"],
        "n_components": _HSIC_PARAMETERS["n_components"],
        "batch_size": _HSIC_PARAMETERS["batch_size"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        kernel="gaussian",
        sigma="median",
        kernel_y=None,
        sigma_y=None,
        target_type="auto",
        estimator="biased",
        normalized=False,
        method="exact",
        approximation="rff",
        n_components=1024,
        batch_size=None,
        random_state=None,
    ):
        self.kernel = kernel
        self.sigma = sigma
        self.kernel_y = kernel_y
        self.sigma_y = sigma_y
        self.target_type = target_type
        self.estimator = estimator
        self.normalized = normalized
        self.method = method
        self.approximation = approximation
        self.n_components = n_components
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _feature_params(self) -> dict:
        return {
            "approximation": self.approximation,
            "n_components": self.n_components,
        }

    def fit(self, X, y):
        """Cache the centred Grams of the inputs `X` and the targets `y`.

        Parameters
        ----------
        X : array of shape (n_samples, ...)
            The network's inputs (flattened per sample).
        y : array of shape (n_samples,) or (n_samples, n_targets)
            Class labels or continuous targets.

        Returns
        -------
        self
        """
        self._validate_params()
        caller = type(self).__name__
        unbiased = self.estimator == "unbiased"
        X = self._validate_data(X, reset=True, min_samples=_min_samples(self.estimator))
        Y, self.classes_ = _encode_targets(X, y, self.target_type, caller)
        kernel_y = _target_kernel(self.kernel_y, self.classes_, self.kernel)
        n = X.shape[0]
        self.n_samples_ = n
        rng = check_random_state(self.random_state)
        kx = _Kernel(self.kernel, self.sigma, "x")
        sigma_y = self.sigma if self.sigma_y is None else self.sigma_y
        ky = _Kernel(kernel_y, sigma_y, "y")
        if self.method == "approximate":
            return self._fit_features(X, Y, kx, ky, rng, caller)
        _check_exact_fits(n, 4, X, caller)
        K, self.sigma_x_ = kx.gram(X, rng, caller)
        self._centred_x = _centre(K, unbiased)
        L, self.sigma_y_ = ky.gram(Y, rng, caller)
        self._centred_y = _centre(L, unbiased)
        if self.normalized:
            c = _normalizer(n, unbiased)
            self.hsic_xx_ = _inner(self._centred_x, self._centred_x) / c
            self.hsic_yy_ = _inner(self._centred_y, self._centred_y) / c
        return self

    def _fit_features(self, X, Y, kx, ky, rng, caller):
        """The approximate method: X, Y and their feature maps, kept."""
        params = {
            **self._feature_params(),
            "estimator": self.estimator,
            "normalized": self.normalized,
            "batch_size": self.batch_size,
        }
        stream = _Stream(params, kx, ky, caller)
        X, Y = stream.cast(X, Y)
        stream.start(X, Y, rng)
        self.sigma_x_, self.sigma_y_ = stream.sigma_x, stream.sigma_y
        self._map_x, self._map_y = stream.streamed.map_x, stream.streamed.map_y
        self._X, self._Y = X, Y
        if self.normalized:
            stream.update(X, Y)
            value = stream.value()
            self.hsic_xx_, self.hsic_yy_ = value.hsic_xx, value.hsic_yy
        return self

    def transform(self, layers):
        """(HSIC(H, X), HSIC(H, Y)) of each layer's activations H.

        Parameters
        ----------
        layers : sequence or mapping of arrays of shape (n_samples, ...)
            The activations of the fitted samples, one array per layer, from
            the library and device of `X` (a mapping's values, in order).

        Returns
        -------
        array of shape (n_layers, 2)
            In X's namespace, device and dtype (float32 with
            ``method="approximate"``); CKA coordinates with ``normalized=True``.
        """
        check_is_fitted(self)
        caller = type(self).__name__
        if isinstance(layers, Mapping):
            named = [(f"layers[{k!r}]", v) for k, v in layers.items()]
        elif (
            is_array(layers)
            or not isinstance(layers, Sequence)
            or isinstance(layers, str)
        ):
            raise TypeError(
                f"{caller}.transform(): `layers` must be a list (or dict) of "
                f"activation arrays, one per layer, got {type(layers).__name__}; "
                f"for one layer pass [H]."
            )
        else:
            named = [(f"layers[{i}]", v) for i, v in enumerate(layers)]
        if not named:
            raise ValueError(f"{caller}.transform(): `layers` is empty.")
        layers = [(name, self._check_layer(H, name, caller)) for name, H in named]
        if self.method == "approximate":
            rows = self._transform_features(layers, caller)
        else:
            rows = self._transform_grams(layers, caller)
        xp, device = namespace_and_device(layers[0][1])
        return xp.asarray(rows, dtype=self._dtype, device=device)

    def _coordinates(self, name, to_x, to_y, self_term, caller):
        if not self.normalized:
            return [to_x, to_y]
        try:
            return [
                _cka(to_x, self_term, self.hsic_xx_),
                _cka(to_y, self_term, self.hsic_yy_),
            ]
        except ValueError as exc:
            raise ValueError(f"{caller}.transform(): {name}: {exc}") from None

    def _transform_grams(self, layers, caller):
        unbiased = self.estimator == "unbiased"
        c = _normalizer(self.n_samples_, unbiased)
        kernel = _Kernel(self.kernel, self.sigma, "x")
        rng = check_random_state(self.random_state)
        rows = []
        for name, H in layers:
            K, _ = kernel.gram(H, rng, caller)
            to_x = _inner(K, self._centred_x) / c
            to_y = _inner(K, self._centred_y) / c
            self_term = None
            if self.normalized:
                K = _centre(K, unbiased)
                self_term = _inner(K, K) / c
            rows.append(self._coordinates(name, to_x, to_y, self_term, caller))
        return rows

    def _transform_features(self, layers, caller):
        """One pass over chunks: X's and Y's features computed once per chunk."""
        kernel = _Kernel(self.kernel, self.sigma, "x")
        rng = check_random_state(self.random_state)
        params = self._feature_params()
        unbiased = self.estimator == "unbiased"
        streams = []
        for _, H in layers:
            sigma = kernel.bandwidth(H, rng, caller)
            map_h = _feature_map(kernel, sigma, H, rng, params, caller)
            streams.append(
                (
                    StreamedHSIC(
                        map_h,
                        self._map_x,
                        unbiased=unbiased,
                        self_terms=("xx",) if self.normalized else (),
                    ),
                    StreamedHSIC(map_h, self._map_y, unbiased=unbiased),
                )
            )
        n, batch = self.n_samples_, self.batch_size or DEFAULT_BATCH_SIZE
        for start in range(0, n, batch):
            chunk = slice(start, min(start + batch, n))
            blocks_x = self._map_x.blocks(self._X[chunk, ...])
            blocks_y = self._map_y.blocks(self._Y[chunk, ...])
            for (_, H), (to_x, to_y) in zip(layers, streams, strict=True):
                blocks_h = to_x.map_x.blocks(H[chunk, ...])
                to_x.update_blocks(blocks_h, blocks_x)
                to_y.update_blocks(blocks_h, blocks_y)
        rows = []
        for (name, _), (to_x, to_y) in zip(layers, streams, strict=True):
            self_term = to_x.value("xx") if self.normalized else None
            rows.append(
                self._coordinates(
                    name, to_x.value("xy"), to_y.value("xy"), self_term, caller
                )
            )
        return rows

    @property
    def _dtype(self):
        """The dtype of the fitted state (and of the coordinates)."""
        if self.method == "approximate":
            return self._X.dtype
        return self._centred_x.dtype

    def _check_layer(self, H, name, caller):
        H = check_array(H, caller=caller, name=name, min_samples=1)
        self._check_fit_backend(H, name=name, method="transform")
        if H.shape[0] != self.n_samples_:
            raise ValueError(
                f"{caller}.transform(): `{name}` has {H.shape[0]} samples but fit "
                f"saw {self.n_samples_}; pass each layer's activations of the "
                f"samples given to fit, in the same order."
            )
        xp, _ = namespace_and_device(H)
        return xp.astype(H, self._dtype, copy=False)
