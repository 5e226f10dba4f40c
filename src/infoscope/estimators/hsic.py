"""HSIC between the rows of two variables: the function and the estimator.

The statistic, its kernels and its definitions are in
:mod:`.hsic_statistic`; CKA in :mod:`.cka`, the independence test in
:mod:`.independence`, the information plane in :mod:`.hsic_plane`, the
feature form in :mod:`.hsic_features`. This module re-exports them so that
``infoscope.estimators.hsic`` keeps the family's public names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.utils.metaestimators import available_if

from ..backends import check_random_state
from ._base import InfoscopeEstimator, StrOptions
from .cka import cka
from .hsic_plane import HSICPlane
from .hsic_statistic import (
    HSICOptions,
    HSICValue,
    Stream,
    check_pair,
    encode_chunk,
    encode_targets,
    hsic_statistics,
    min_samples,
    target_kernel,
)
from .independence import HSICTestResult, hsic_test

__all__ = ["HSIC", "HSICPlane", "HSICTestResult", "cka", "hsic", "hsic_test"]


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
    options = HSICOptions(
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
    ).validate(caller)
    X, Y = check_pair(X, Y, caller=caller, estimator=estimator)
    return hsic_statistics(X, Y, options, normalized=False, caller=caller).hsic(caller)


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
        **HSICOptions.CONSTRAINTS,
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

    def _validate_params(self) -> None:
        super()._validate_params()
        HSICOptions.of(self).validate(type(self).__name__)

    def _options(self) -> HSICOptions:
        """The function's options, with y's kernel resolved.

        None stays None for continuous targets: y then takes X's kernel.
        """
        return HSICOptions.of(
            self, kernel_y=target_kernel(self.kernel_y, self.classes_, None)
        )

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
            X, reset=True, min_samples=min_samples(self.estimator), method="fit"
        )
        Y, self.classes_ = encode_targets(X, y, self.target_type, caller)
        value = hsic_statistics(
            X, Y, self._options(), normalized=self.normalized, caller=caller
        )
        self._store(value, caller)
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
            Y, self.classes_ = encode_targets(X, y, self.target_type, caller)
            options = self._options()
            stream = Stream(
                options,
                *options.kernels(),
                normalized=self.normalized,
                caller=caller,
            )
            X, Y = stream.cast(X, Y)
            stream.start(X, Y, check_random_state(self.random_state))
            self._stream = stream
            self._n_targets = Y.shape[1]
        else:
            stream = self._stream
            Y = encode_chunk(X, y, self.classes_, self._n_targets, caller)
            X, Y = stream.cast(X, Y)
        stream.update(X, Y)
        self.n_samples_seen_ = stream.n_samples
        if self.n_samples_seen_ >= min_samples(self.estimator):
            self._store(stream.value(), caller)
        return self

    def _store(self, value: HSICValue, caller: str) -> None:
        self.hsic_ = value.hsic(caller)
        self.sigma_x_ = value.sigma_x
        self.sigma_y_ = value.sigma_y
        if self.normalized:
            self.hsic_xx_ = value.hsic_xx(caller)
            self.hsic_yy_ = value.hsic_yy(caller)
            self.cka_ = value.cka(caller)
