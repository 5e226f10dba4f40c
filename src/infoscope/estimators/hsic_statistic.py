"""The HSIC statistic: one computation behind hsic, cka, HSIC, the test and the plane.

For Gram matrices K (of X) and L (of Y) on n samples and ``H = I - 11^T / n``:

- biased HSIC (Gretton et al. 2005): ``tr(K H L H) / (n-1)^2``;
- unbiased HSIC (Song et al. 2012), n >= 4, with ``K~``, ``L~`` the Grams with
  zero diagonals: ``[tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2))
  - 2 / (n-2) 1^T K~ L~ 1] / (n (n-3))``;
- CKA (Kornblith et al. 2019): ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``.

Both estimates are an inner product ``<C(K), C(L)> / c_n`` of the two centred
Grams (:func:`infoscope.kernels.centre_gram`): ``C(K) = H K H`` and ``c_n =
(n-1)^2`` for the biased estimate; ``C(K)`` the U-centred K and ``c_n = n
(n-3)`` for the unbiased one. Centring both sides (the definition needs only
one) keeps float32 results to float32's precision: the raw inner product with
an uncentred, nearly constant Gram cancels away three digits.

Kernels: "gaussian" ``exp(-||a-b||^2 / (2 sigma^2))`` with sigma a number or
"median" (the median of the variable's own pairwise distances), "linear"
``a . b`` (computed from the features, O(n d^2), when that is cheaper than the
Gram), or a callable ``kernel(A, B)`` returning the ``(len(A), len(B))`` Gram.
A linear variable is divided by a power of two before its Gram or features
are formed and the statistic multiplied back, so large activations do not
overflow where the value itself is in range (CKA, a ratio, never needs it).
The approximate method (:mod:`.hsic_features`) uses random Fourier features
or Nystrom features and streams over chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.utils.multiclass import type_of_target

from ..backends import (
    asarray,
    check_random_state,
    device_name,
    draw_rows,
    host_views,
    is_array,
    namespace_and_device,
    namespace_name,
    power_of_two_scale,
    scaled_sq_distances,
    take_rows,
    to_numpy,
)
from ..backends._lazy import stream_row_ranges
from ..kernels import (
    centre_gram,
    gaussian_from_sq_distances,
    gaussian_kernel,
    gram_inner,
    linear_kernel,
    resolve_bandwidth,
)
from ._base import (
    BATCH_SIZE,
    RANDOM_STATE,
    Interval,
    InvalidParameterError,
    StrOptions,
    check_array,
    check_consistent_length,
    check_finite,
    check_finite_result,
    check_params,
    check_square_arrays_fit,
    check_targets,
)
from .hsic_features import (
    FourierFeatures,
    LinearFeatures,
    NystromFeatures,
    StreamedHSIC,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "HSICOptions",
    "HSICValue",
    "KernelChoice",
    "check_pair",
    "encode_targets",
    "feature_map",
    "hsic_statistics",
    "min_samples",
    "normalizer",
]

#: Rows per chunk of the approximate method when `batch_size` is None.
DEFAULT_BATCH_SIZE = 16384

KERNEL = [StrOptions({"gaussian", "linear"}), callable]
SIGMA = [Interval(Real, 0, None, closed="neither"), StrOptions({"median"})]
ESTIMATOR = [StrOptions({"biased", "unbiased"})]
TARGET_TYPE = [StrOptions({"auto", "classes", "continuous"})]


# ---- kernels


@dataclass(frozen=True)
class KernelChoice:
    """One variable's kernel: "gaussian", "linear" or a callable, and sigma.

    `name` is the argument suffix, "x" or "y", for the messages.
    """

    kind: Any
    sigma: Any  # a number or "median" (gaussian only)
    name: str

    def bandwidth(
        self, X: Any, rng: Any, caller: str, D2: Any = None, scale: float = 1.0
    ) -> float | None:
        """The Gaussian bandwidth of `X` (None for other kernels)."""
        if self.kind != "gaussian":
            return None
        return resolve_bandwidth(
            self.sigma,
            X,
            caller=caller,
            argument=f"sigma_{self.name}",
            variable=f"the {self.name.upper()} variable",
            D2=D2,
            scale=scale,
            random_state=rng,
            fix=f"or kernel_{self.name}='linear'",
        )

    def scale(self, X: Any) -> float:
        """The power of two a linear variable is divided by (1 otherwise)."""
        if self.kind != "linear":
            return 1.0
        return power_of_two_scale(X)

    def gram(self, X: Any, rng: Any, caller: str) -> tuple[Any, float | None, float]:
        """The n x n Gram of `X` divided by a factor; the bandwidth; the factor.

        The factor is ``s**2`` for a linear kernel on ``X / s`` and 1 otherwise.
        """
        if self.kind == "gaussian":
            D2, scale = scaled_sq_distances(X)
            sigma = self.bandwidth(X, rng, caller, D2=D2, scale=scale)
            return gaussian_from_sq_distances(D2, sigma, scale=scale), sigma, 1.0
        if self.kind == "linear":
            s = self.scale(X)
            Xs = X / s if s != 1.0 else X
            return linear_kernel(Xs), None, s * s
        return self.call(X, X, caller), None, 1.0

    def call(self, A: Any, B: Any, caller: str) -> Any:
        """``kernel(A, B)`` of a callable kernel, checked."""
        name = self.name
        G = self.kind(A, B)
        if not is_array(G) or tuple(G.shape) != (A.shape[0], B.shape[0]):
            shape = tuple(G.shape) if hasattr(G, "shape") else type(G).__name__
            raise ValueError(
                f"{caller}: kernel_{name}(A, B) must return the "
                f"({A.shape[0]}, {B.shape[0]}) Gram matrix of the rows of A and "
                f"B, got {shape}."
            )
        xp, _ = namespace_and_device(A, G, names=(name.upper(), f"kernel_{name}(A, B)"))
        G = xp.astype(G, A.dtype) if G.dtype != A.dtype else G
        check_finite(G, caller=caller, name=f"kernel_{name}(A, B)")
        return G

    def function(self, sigma: float | None) -> Callable[[Any, Any], Any]:
        """``kernel(A, B)`` for the Nystrom features (picklable)."""
        if self.kind == "gaussian":
            return functools.partial(gaussian_kernel, sigma=sigma)
        if self.kind == "linear":
            return linear_kernel
        return self.kind


# ---- options


@dataclass(frozen=True)
class HSICOptions:
    """The parameters of the HSIC computation, validated together.

    Y's kernel and sigma default to X's (the rule, not the value): `kernel_y`
    and `sigma_y` None mean "as X".
    """

    kernel_x: Any = "gaussian"
    kernel_y: Any = None
    sigma_x: Any = "median"
    sigma_y: Any = None
    estimator: str = "biased"
    method: str = "exact"
    approximation: str = "rff"
    n_components: int = 1024
    batch_size: int | None = None
    random_state: Any = None

    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        "kernel_x": KERNEL,
        "kernel_y": [*KERNEL, None],
        "sigma_x": SIGMA,
        "sigma_y": [*SIGMA, None],
        "estimator": ESTIMATOR,
        "method": [StrOptions({"exact", "approximate"})],
        "approximation": [StrOptions({"rff", "nystrom"})],
        # At least 4 with random Fourier features: checked in validate().
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "batch_size": BATCH_SIZE,
        "random_state": RANDOM_STATE,
    }

    @classmethod
    def of(cls, source: Any, **overrides: Any) -> HSICOptions:
        """The options named like `source`'s attributes (an estimator's params)."""
        values = {f.name: getattr(source, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})

    def validate(self, caller: str) -> HSICOptions:
        """Check every option, before any computation; returns self."""
        check_params(
            caller,
            self.CONSTRAINTS,
            **{f.name: getattr(self, f.name) for f in fields(self)},
        )
        rff = self.method == "approximate" and self.approximation == "rff"
        if rff and self.n_components < 4:
            raise InvalidParameterError(
                f"The 'n_components' parameter of {caller} must be at least 4 "
                f"with approximation='rff' (two independent blocks of a cosine "
                f"and a sine feature). Got {self.n_components!r} instead; pass "
                f"n_components >= 4, or approximation='nystrom'."
            )
        return self

    @property
    def unbiased(self) -> bool:
        return self.estimator == "unbiased"

    @property
    def batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH_SIZE

    def kernels(self) -> tuple[KernelChoice, KernelChoice]:
        kernel_y = self.kernel_x if self.kernel_y is None else self.kernel_y
        sigma_y = self.sigma_x if self.sigma_y is None else self.sigma_y
        return (
            KernelChoice(self.kernel_x, self.sigma_x, "x"),
            KernelChoice(kernel_y, sigma_y, "y"),
        )


def min_samples(estimator: str) -> int:
    """The fewest samples the estimate is defined for."""
    return 4 if estimator == "unbiased" else 2


def normalizer(n: int, unbiased: bool) -> float:
    """``c_n``: ``n (n - 3)`` (unbiased) or ``(n - 1)^2`` (biased)."""
    return float(n * (n - 3)) if unbiased else float((n - 1) ** 2)


# ---- values


@dataclass
class HSICValue:
    """HSIC(X, Y), and with CKA the self terms, in the units of scaled variables.

    A linear variable was divided by s: its HSIC terms carry a factor
    ``1 / s**2`` (`factor_x`, `factor_y` are the ``s**2``); CKA, a ratio, is
    free of them.
    """

    scaled_hsic: float
    scaled_hsic_xx: float | None
    scaled_hsic_yy: float | None
    sigma_x: float | None
    sigma_y: float | None
    factor_x: float = 1.0
    factor_y: float = 1.0

    def hsic(self, caller: str) -> float:
        value = self.scaled_hsic * self.factor_x * self.factor_y
        return _finite(value, caller, "HSIC(X, Y)")

    def hsic_xx(self, caller: str) -> float:
        value = self.scaled_hsic_xx * self.factor_x * self.factor_x
        return _finite(value, caller, "HSIC(X, X)")

    def hsic_yy(self, caller: str) -> float:
        value = self.scaled_hsic_yy * self.factor_y * self.factor_y
        return _finite(value, caller, "HSIC(Y, Y)")

    def cka(self, caller: str) -> float:
        xx, yy = self.scaled_hsic_xx, self.scaled_hsic_yy
        _finite(self.scaled_hsic, caller, "HSIC(X, Y)")
        return cka_of(
            self.scaled_hsic,
            _finite(xx, caller, "HSIC(X, X)"),
            _finite(yy, caller, "HSIC(Y, Y)"),
            caller,
        )


def _finite(value: float, caller: str, what: str) -> float:
    return check_finite_result(
        value,
        caller=caller,
        what=what,
        fix=(
            "rescale the variables (divide them by a constant), or use CKA, "
            "which does not depend on their scale"
        ),
    )


def cka_of(hsic_xy: float, hsic_xx: float, hsic_yy: float, caller: str) -> float:
    """``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))``, refused when undefined.

    Within [-1, 1]: the exact estimates satisfy Cauchy-Schwarz (both inner
    products are over centred Grams), and the random-feature estimates of
    the three terms, independent draws, are clipped to that range, which can
    only bring them closer to the value they estimate.
    """
    denominator = hsic_xx * hsic_yy
    if not denominator > 0:
        raise ValueError(
            f"{caller}: CKA is undefined: HSIC(X, X) or HSIC(Y, Y) is not "
            f"positive (a variable whose Gram is constant after centring, e.g. "
            f"identical samples or a constant feature). Use HSIC, which is 0 "
            f"there."
        )
    value = hsic_xy / math.sqrt(hsic_xx) / math.sqrt(hsic_yy)
    return min(1.0, max(-1.0, value))


# ---- validation shared by the functions and the estimators


def _as_variable(X: Any, caller: str, name: str, n_min: int) -> Any:
    """A variable's samples as a 2-D float array: 1-D input is one feature."""
    if is_array(X) and X.ndim == 1:
        xp, _ = namespace_and_device(X)
        X = xp.reshape(X, (-1, 1))
    elif not is_array(X) and X is not None and np.ndim(X) == 1:
        X = np.reshape(np.asarray(X), (-1, 1))
    return check_array(X, caller=caller, name=name, min_samples=n_min)


def _follow_the_array(value: Any, other: Any) -> Any:
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


def check_pair(
    X: Any, Y: Any, *, caller: str, estimator: str, x_name: str = "X", y_name: str = "Y"
) -> tuple[Any, Any]:
    """X and Y validated, with the same namespace, device, dtype and sample count."""
    n_min = min_samples(estimator)
    X, Y = _follow_the_array(X, Y), _follow_the_array(Y, X)
    X = _as_variable(X, caller, x_name, n_min)
    Y = _as_variable(Y, caller, y_name, n_min)
    namespace_and_device(X, Y, names=(x_name, y_name))
    check_consistent_length(caller=caller, **{x_name: X, y_name: Y})
    xp, _ = namespace_and_device(X)
    dtype = xp.result_type(X, Y)
    return xp.astype(X, dtype, copy=False), xp.astype(Y, dtype, copy=False)


def check_exact_fits(n: int, count: int, X: Any, caller: str, advice: str) -> None:
    """Refuse, before allocating, `count` n x n arrays of X's dtype that cannot fit.

    `advice` names the options `caller` has; the largest sample count that
    would fit is added.
    """
    xp, device = namespace_and_device(X)
    check_square_arrays_fit(
        n,
        count,
        X.dtype,
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: f"{advice}, or pass at most {fits} samples",
    )


#: Peak n x n arrays of the exact statistic, as measured (tests/estimators/
#: test_edges.py): K, L, and the distances' mask and the median's pairs.
EXACT_ARRAYS = 3


# ---- the computation


def _use_features(
    kx: KernelChoice, ky: KernelChoice, n: int, dx: int, dy: int, self_terms: bool
) -> bool:
    """Whether the linear kernels' feature form is cheaper than the Grams."""
    if kx.kind != "linear" or ky.kind != "linear":
        return False
    feature_cost = dx * dy + (dx * dx + dy * dy if self_terms else 0)
    return feature_cost <= n * (dx + dy)


def _exact(X, Y, kx, ky, *, unbiased, normalized, rng, caller) -> HSICValue:
    n = X.shape[0]
    if _use_features(kx, ky, n, X.shape[1], Y.shape[1], normalized):
        stream = Stream(
            HSICOptions(
                kernel_x="linear",
                kernel_y="linear",
                estimator="unbiased" if unbiased else "biased",
            ),
            kx,
            ky,
            normalized=normalized,
            caller=caller,
        )
        stream.start(X, Y, rng)
        stream.update(X, Y)
        return stream.value()
    check_exact_fits(
        n, EXACT_ARRAYS, X, caller, "Use method='approximate' (linear in n)"
    )
    K, sigma_x, factor_x = kx.gram(X, rng, caller)
    K = centre_gram(K, unbiased=unbiased)
    L, sigma_y, factor_y = ky.gram(Y, rng, caller)
    L = centre_gram(L, unbiased=unbiased)
    c = normalizer(n, unbiased)
    xx = yy = None
    if normalized:
        xx, yy = gram_inner(K, K) / c, gram_inner(L, L) / c
    return HSICValue(gram_inner(K, L) / c, xx, yy, sigma_x, sigma_y, factor_x, factor_y)


def feature_map(kernel: KernelChoice, sigma, X, rng, options: HSICOptions, caller):
    """The feature map of one variable for the approximate method.

    Linear kernels keep their exact features; Gaussian kernels get random
    Fourier features (``approximation="rff"``), any kernel Nystrom features
    on ``n_components`` landmarks drawn from the rows of `X`.
    """
    if kernel.kind == "linear":
        return LinearFeatures()
    xp, device = namespace_and_device(X)
    m = options.n_components
    if options.approximation == "rff":
        if kernel.kind != "gaussian":
            raise ValueError(
                f"{caller}: random Fourier features exist for the gaussian "
                f"kernel only, and kernel_{kernel.name} is {kernel.kind!r}; pass "
                f"approximation='nystrom'."
            )
        return FourierFeatures(X.shape[1], m, sigma, rng, xp, device, X.dtype)
    landmarks = take_rows(X, draw_rows(rng, X.shape[0], min(m, X.shape[0])))
    return NystromFeatures(landmarks, kernel.function(sigma))


class Stream:
    """The feature form's state: feature maps and scales fixed by the first chunk.

    Serves the approximate method, the exact feature form of linear kernels,
    and ``HSIC.partial_fit``; holds arrays and options only, so it pickles.
    """

    def __init__(
        self,
        options: HSICOptions,
        kx: KernelChoice,
        ky: KernelChoice,
        *,
        normalized: bool,
        caller: str,
    ):
        self.options, self.kx, self.ky = options, kx, ky
        self.normalized, self.caller = normalized, caller
        self.streamed = None
        self.sigma_x = self.sigma_y = None
        self.scale_x = self.scale_y = 1.0

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
        """Fix the scales, bandwidths and feature maps from the first chunk."""
        options, caller = self.options, self.caller
        self.scale_x, self.scale_y = self.kx.scale(X), self.ky.scale(Y)
        self.sigma_x = self.kx.bandwidth(X, rng, caller)
        self.sigma_y = self.ky.bandwidth(Y, rng, caller)
        map_x = feature_map(self.kx, self.sigma_x, X, rng, options, caller)
        map_y = feature_map(self.ky, self.sigma_y, Y, rng, options, caller)
        self.streamed = StreamedHSIC(
            map_x,
            map_y,
            unbiased=options.unbiased,
            self_terms=("xx", "yy") if self.normalized else (),
        )

    def scaled(self, X: Any, Y: Any) -> tuple[Any, Any]:
        X = X / self.scale_x if self.scale_x != 1.0 else X
        Y = Y / self.scale_y if self.scale_y != 1.0 else Y
        return X, Y

    def update(self, X: Any, Y: Any) -> None:
        """Feed the samples `batch` rows at a time (views, no copy of the data)."""
        for start, stop in stream_row_ranges(X, self.options.batch):
            chunk = (slice(start, stop), ...)
            self.streamed.update(*self.scaled(X[chunk], Y[chunk]))

    @property
    def n_samples(self) -> int:
        return self.streamed.n_samples

    def value(self) -> HSICValue:
        streamed = self.streamed
        xx = yy = None
        if self.normalized:
            xx, yy = streamed.value("xx"), streamed.value("yy")
        return HSICValue(
            streamed.value("xy"),
            xx,
            yy,
            self.sigma_x,
            self.sigma_y,
            self.scale_x * self.scale_x,
            self.scale_y * self.scale_y,
        )


def hsic_statistics(
    X: Any, Y: Any, options: HSICOptions, *, normalized: bool, caller: str
) -> HSICValue:
    """Validated X and Y, validated options -> the value (the one implementation).

    :func:`~infoscope.hsic`, :func:`~infoscope.cka` and :class:`~infoscope.HSIC`
    call this.
    """
    rng = check_random_state(options.random_state)
    kx, ky = options.kernels()
    views = host_views(X, Y)
    if views is not None and isinstance(kx.kind, str) and isinstance(ky.kind, str):
        # JAX's CPU buffers, read in place: the Grams or feature maps and
        # their inner products run as NumPy's, faster than XLA's CPU backend
        # (see host_view) and with nothing to compile per sample count.
        X, Y = views
    if options.method == "exact":
        return _exact(
            X,
            Y,
            kx,
            ky,
            unbiased=options.unbiased,
            normalized=normalized,
            rng=rng,
            caller=caller,
        )
    stream = Stream(options, kx, ky, normalized=normalized, caller=caller)
    X, Y = stream.cast(X, Y)
    stream.start(X, Y, rng)
    stream.update(X, Y)
    return stream.value()


# ---- targets


def one_hot(codes: np.ndarray, n_classes: int, X: Any) -> Any:
    """One-hot rows of the class codes, in X's namespace, device and dtype."""
    xp, device = namespace_and_device(X)
    encoded = codes[:, None] == np.arange(n_classes)[None, :]
    return asarray(encoded, xp=xp, device=device, dtype=X.dtype)


def encode_targets(X: Any, y: Any, target_type: str, caller: str) -> tuple[Any, Any]:
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
        return one_hot(codes.reshape(-1), len(classes), X), classes
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


def encode_chunk(X: Any, y: Any, classes: Any, n_targets: int, caller: str) -> Any:
    """A later chunk's targets, encoded as the first chunk's were."""
    if classes is None:
        Y, _ = encode_targets(X, y, "continuous", caller)
        if Y.shape[1] != n_targets:
            raise ValueError(
                f"{caller}.partial_fit(): `y` has {Y.shape[1]} column(s) but the "
                f"first chunk had {n_targets}; pass the same targets."
            )
        return Y
    labels = to_numpy(check_targets(y, caller=caller))
    check_consistent_length(caller=caller, X=X, y=labels)
    unseen = np.setdiff1d(labels, classes)
    if unseen.size:
        raise ValueError(
            f"{caller}.partial_fit(): `y` holds classes the first chunk did not "
            f"have ({unseen[:5].tolist()}); the classes are fixed by the first "
            f"chunk, so include every class in it."
        )
    return one_hot(np.searchsorted(classes, labels), len(classes), X)


def target_kernel(kernel_y: Any, classes: Any, default: Any) -> Any:
    """Y's kernel: as given, else the delta kernel for classes, else `default`."""
    if kernel_y is not None:
        return kernel_y
    return "linear" if classes is not None else default
