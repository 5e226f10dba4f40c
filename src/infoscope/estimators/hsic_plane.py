"""The HSIC information plane: (HSIC(H, X), HSIC(H, Y)) of each layer H."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.utils import TransformerTags
from sklearn.utils.validation import check_is_fitted

from ..backends import (
    asarray,
    check_random_state,
    host_view,
    host_views,
    is_array,
    namespace_and_device,
)
from ..kernels import centre_gram, gram_inner
from ._base import InfoscopeEstimator, StrOptions, check_array, check_finite_result
from .hsic_features import StreamedHSIC
from .hsic_statistic import (
    ESTIMATOR,
    KERNEL,
    SIGMA,
    HSICOptions,
    KernelChoice,
    Stream,
    check_exact_fits,
    cka_of,
    encode_targets,
    feature_map,
    min_samples,
    normalizer,
    target_kernel,
)

__all__ = ["PLANE_FIT_ARRAYS", "HSICPlane"]

#: Peak n x n arrays of the exact method, as measured (tests/estimators/
#: test_edges.py): the two cached centred Grams, and in transform a layer's
#: Gram with its distances' mask and the median's pairs.
PLANE_FIT_ARRAYS = 5


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
    Both Grams of every inner product are centred, so float32 activations
    keep float32's precision. PyGlow's plane is ``(n - 1)`` times
    ``HSICPlane(sigma=s, kernel_y="gaussian")`` fitted with the network's
    output as y, for its one shared ``s``; see the user guide.

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
        "kernel": KERNEL,
        "sigma": SIGMA,
        "kernel_y": [*KERNEL, None],
        "sigma_y": [*SIGMA, None],
        "target_type": [StrOptions({"auto", "classes", "continuous"})],
        "estimator": ESTIMATOR,
        "normalized": ["boolean"],
        **{
            name: HSICOptions.CONSTRAINTS[name]
            for name in (
                "method",
                "approximation",
                "n_components",
                "batch_size",
                "random_state",
            )
        },
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
        # transform maps a list of layers (one output row per layer, not per
        # sample) in the dtype of the fitted state: X's (exact) or float32.
        exact = ["float64", "float32"]
        preserves = exact if self.method == "exact" else ["float32"]
        tags.transformer_tags = TransformerTags(preserves_dtype=preserves)
        return tags

    def _validate_params(self) -> None:
        super()._validate_params()
        self._options(self.kernel_y).validate(type(self).__name__)

    def _options(self, kernel_y) -> HSICOptions:
        return HSICOptions(
            kernel_x=self.kernel,
            kernel_y=kernel_y,
            sigma_x=self.sigma,
            sigma_y=self.sigma if self.sigma_y is None else self.sigma_y,
            estimator=self.estimator,
            method=self.method,
            approximation=self.approximation,
            n_components=self.n_components,
            batch_size=self.batch_size,
            random_state=self.random_state,
        )

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
        X = self._validate_data(X, reset=True, min_samples=min_samples(self.estimator))
        Y, self.classes_ = encode_targets(X, y, self.target_type, caller)
        options = self._options(
            target_kernel(self.kernel_y, self.classes_, self.kernel)
        )
        kx, ky = options.kernels()
        n = X.shape[0]
        self.n_samples_ = n
        rng = check_random_state(self.random_state)
        views = host_views(X, Y)
        if views is not None and isinstance(kx.kind, str) and isinstance(ky.kind, str):
            # JAX's CPU buffers, read in place (as in hsic): the cached Grams
            # or features, and the layers' in transform, are NumPy's.
            X, Y = views
        if self.method == "approximate":
            return self._fit_features(X, Y, options, rng, caller)
        check_exact_fits(
            n, PLANE_FIT_ARRAYS, X, caller, "Use method='approximate' (linear in n)"
        )
        K, self.sigma_x_, self._factor_x = kx.gram(X, rng, caller)
        self._centred_x = centre_gram(K, unbiased=unbiased)
        L, self.sigma_y_, self._factor_y = ky.gram(Y, rng, caller)
        self._centred_y = centre_gram(L, unbiased=unbiased)
        if self.normalized:
            c = normalizer(n, unbiased)
            self._store_self_terms(
                gram_inner(self._centred_x, self._centred_x) / c,
                gram_inner(self._centred_y, self._centred_y) / c,
                caller,
            )
        return self

    def _store_self_terms(self, scaled_xx, scaled_yy, caller):
        self._scaled_xx, self._scaled_yy = scaled_xx, scaled_yy
        self.hsic_xx_ = _finite(
            scaled_xx * self._factor_x * self._factor_x, caller, "HSIC(X, X)"
        )
        self.hsic_yy_ = _finite(
            scaled_yy * self._factor_y * self._factor_y, caller, "HSIC(Y, Y)"
        )

    def _fit_features(self, X, Y, options, rng, caller):
        """The approximate method: X, Y and their feature maps, kept."""
        stream = Stream(
            options, *options.kernels(), normalized=self.normalized, caller=caller
        )
        X, Y = stream.cast(X, Y)
        stream.start(X, Y, rng)
        self.sigma_x_, self.sigma_y_ = stream.sigma_x, stream.sigma_y
        self._factor_x, self._factor_y = (
            stream.scale_x * stream.scale_x,
            stream.scale_y * stream.scale_y,
        )
        self._map_x, self._map_y = stream.streamed.map_x, stream.streamed.map_y
        self._X, self._Y = stream.scaled(X, Y)
        if self.normalized:
            stream.update(X, Y)
            value = stream.value()
            self._store_self_terms(value.scaled_hsic_xx, value.scaled_hsic_yy, caller)
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
        largest = float(xp.finfo(self._dtype).max)
        too_large = [v for row in rows for v in row if abs(v) > largest]
        if too_large:
            raise ValueError(
                f"{caller}.transform(): a coordinate ({too_large[0]:.3g}) is beyond "
                f"the range of {self._dtype}, the dtype of the fitted state; pass "
                f"float64 activations, rescale them, or use normalized=True (CKA "
                f"coordinates do not depend on the scale)."
            )
        return asarray(rows, xp=xp, dtype=self._dtype, device=device)

    def _coordinates(self, name, to_x, to_y, self_term, factor_h, caller):
        """One layer's row from its scaled inner products with X and Y."""
        where = f"{caller}.transform(): {name}"
        if not self.normalized:
            return [
                _finite(to_x * factor_h * self._factor_x, where, "HSIC(H, X)"),
                _finite(to_y * factor_h * self._factor_y, where, "HSIC(H, Y)"),
            ]
        return [
            cka_of(to_x, self_term, self._scaled_xx, where),
            cka_of(to_y, self_term, self._scaled_yy, where),
        ]

    def _layer_kernel(self) -> KernelChoice:
        return KernelChoice(self.kernel, self.sigma, "x")

    def _transform_grams(self, layers, caller):
        unbiased = self.estimator == "unbiased"
        c = normalizer(self.n_samples_, unbiased)
        kernel = self._layer_kernel()
        rng = check_random_state(self.random_state)
        on_host = isinstance(self._centred_x, np.ndarray)
        rows = []
        for name, H in layers:
            if on_host:
                H = host_view(H)
            K, _, factor_h = kernel.gram(H, rng, caller)
            K = centre_gram(K, unbiased=unbiased)
            to_x = gram_inner(K, self._centred_x) / c
            to_y = gram_inner(K, self._centred_y) / c
            self_term = gram_inner(K, K) / c if self.normalized else None
            rows.append(
                self._coordinates(name, to_x, to_y, self_term, factor_h, caller)
            )
        return rows

    def _transform_features(self, layers, caller):
        """One pass over chunks: X's and Y's features computed once per chunk."""
        kernel = self._layer_kernel()
        rng = check_random_state(self.random_state)
        options = self._options(None)
        if isinstance(self._X, np.ndarray):
            layers = [(name, host_view(H)) for name, H in layers]
        streams, scales = [], []
        for _, H in layers:
            scale = kernel.scale(H)
            H = H / scale if scale != 1.0 else H
            sigma = kernel.bandwidth(H, rng, caller)
            map_h = feature_map(kernel, sigma, H, rng, options, caller)
            scales.append(scale)
            streams.append(
                (
                    StreamedHSIC(
                        map_h,
                        self._map_x,
                        unbiased=options.unbiased,
                        self_terms=("xx",) if self.normalized else (),
                    ),
                    StreamedHSIC(map_h, self._map_y, unbiased=options.unbiased),
                )
            )
        n, batch = self.n_samples_, options.batch
        for start in range(0, n, batch):
            chunk = (slice(start, min(start + batch, n)), ...)
            blocks_x = self._map_x.blocks(self._X[chunk])
            blocks_y = self._map_y.blocks(self._Y[chunk])
            for (_, H), (to_x, to_y), scale in zip(
                layers, streams, scales, strict=True
            ):
                H = H[chunk] / scale if scale != 1.0 else H[chunk]
                blocks_h = to_x.map_x.blocks(H)
                to_x.update_blocks(blocks_h, blocks_x)
                to_y.update_blocks(blocks_h, blocks_y)
        rows = []
        for (name, _), (to_x, to_y), scale in zip(layers, streams, scales, strict=True):
            self_term = to_x.value("xx") if self.normalized else None
            rows.append(
                self._coordinates(
                    name,
                    to_x.value("xy"),
                    to_y.value("xy"),
                    self_term,
                    scale * scale,
                    caller,
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


def _finite(value, caller, what):
    return check_finite_result(
        value,
        caller=caller,
        what=what,
        fix="rescale the activations (divide them by a constant), or pass "
        "normalized=True for CKA coordinates, which do not depend on their scale",
    )
