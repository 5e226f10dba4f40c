"""Similarity matrices between the layers of two networks (or checkpoints).

Entry (l, m) of the L x M matrix is a similarity measure between layer l of
the first collection and layer m of the second, on the same samples in the
same order (a different sample count is an error, never a truncation):

- ``"linear_cka"``: linear CKA (Kornblith et al. 2019), biased or debiased
  (each HSIC replaced by Song et al. 2012's unbiased estimate). Computed from
  sums over samples (:mod:`._cka_moments`) when that is smaller than the
  Grams, so it streams exactly over chunks (``partial_fit``); otherwise from
  the centred n x n Grams. Both give the same numbers.
- ``"rbf_cka"``: CKA with Gaussian kernels, each layer's own median distance
  as bandwidth unless `sigma` is a number (the rule of :func:`infoscope.cka`).
- ``"mutual_knn"`` and ``"cknna"``: :mod:`.neighbors` (Huh et al. 2024).

Each layer's kernel, neighbours or features are prepared once, not once per
pair.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from ..backends import (
    asarray,
    check_random_state,
    device_name,
    host_views,
    is_array,
    matmul,
    namespace_and_device,
    namespace_name,
    pairwise_sq_distances,
)
from ..backends._lazy import stream_row_ranges
from ..kernels import (
    centre_gram,
    gaussian_from_sq_distances,
    gram_inner,
    median_distance,
)
from ._base import (
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_array,
    check_square_arrays_fit,
    validate_parameter_constraints,
)
from ._cka_moments import CrossMoments
from .neighbors import (
    CknnaSide,
    check_n_neighbors,
    cknna_from_sides,
    neighbours,
    overlap,
)

__all__ = ["SimilarityMatrix", "similarity_matrix"]

MEASURES = ("linear_cka", "rbf_cka", "mutual_knn", "cknna")
PARAMETERS = {
    "measure": [StrOptions(set(MEASURES))],
    "debiased": ["boolean"],
    "sigma": [Interval(Real, 0, None, closed="neither"), StrOptions({"median"})],
    "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state", np.random.Generator],
}
#: Samples per chunk when the feature form of linear CKA runs over all of them.
CHUNK = 16384


# ---- validation


def check_layers(layers: Any, *, caller: str, argname: str) -> tuple[list, list | None]:
    """A sequence or mapping of activation arrays -> (arrays, names or None)."""
    if isinstance(layers, Mapping):
        names = [str(k) for k in layers]
        items = [(f"{argname}[{k!r}]", v) for k, v in layers.items()]
    elif (
        is_array(layers) or not isinstance(layers, Sequence) or isinstance(layers, str)
    ):
        raise TypeError(
            f"{caller}: `{argname}` must be a list (or dict) of activation "
            f"arrays, one per layer, got {type(layers).__name__}; for one layer "
            f"pass [H]."
        )
    else:
        names = None
        items = [(f"{argname}[{i}]", v) for i, v in enumerate(layers)]
    if not items:
        raise ValueError(f"{caller}: `{argname}` is empty; pass at least one layer.")
    arrays = [check_array(v, caller=caller, name=name) for name, v in items]
    return list(zip([name for name, _ in items], arrays, strict=True)), names


def check_same_samples(named: list[tuple[str, Any]], caller: str) -> None:
    """One namespace and device, and one sample count, for every layer."""
    first_name, first = named[0]
    for name, array in named[1:]:
        namespace_and_device(first, array, names=(first_name, name))
        if array.shape[0] != first.shape[0]:
            raise ValueError(
                f"{caller}: `{first_name}` has {first.shape[0]} samples but "
                f"`{name}` has {array.shape[0]}; every layer must hold the "
                f"activations of the same samples, in the same order (nothing "
                f"is truncated)."
            )


def _min_samples(measure: str, debiased: bool) -> int:
    if measure in ("linear_cka", "rbf_cka"):
        return 4 if debiased else 2
    return 2


def _as_common_dtype(arrays: list[Any]) -> list[Any]:
    if all(a.dtype == arrays[0].dtype for a in arrays):
        return arrays
    xp, _ = namespace_and_device(*arrays)
    dtype = xp.result_type(*arrays)
    return [xp.astype(a, dtype, copy=False) for a in arrays]


# ---- centred Grams (CKA in its kernel form)


def centred_gram(X: Any, kernel: str, sigma: Any, unbiased: bool, rng: Any) -> Any:
    """One layer's centred linear or Gaussian Gram."""
    if kernel == "linear":
        return centre_gram(matmul(X, X.T), unbiased=unbiased)
    D2 = pairwise_sq_distances(X)
    if sigma == "median":
        sigma = median_distance(X, D2=D2, random_state=rng)
    return centre_gram(gaussian_from_sq_distances(D2, sigma), unbiased=unbiased)


def _cka(cross: float, self_a: float, self_b: float) -> float:
    if not (self_a > 0 and self_b > 0):
        return math.nan
    return cross / math.sqrt(self_a * self_b)


# ---- the matrix, one implementation per kind of measure


def _features_are_smaller(a: list, b: list | None, debiased: bool) -> bool:
    """Whether the feature sums of linear CKA take less memory than the Grams."""
    n = a[0].shape[0]
    widths_a = [X.shape[1] for X in a]
    widths_b = widths_a if b is None else [Y.shape[1] for Y in b]
    P, Q = sum(widths_a), sum(widths_b)
    features = P * Q + sum(w * w for w in widths_a) + sum(w * w for w in widths_b)
    if debiased:
        features += (P + Q) * (len(widths_a) + len(widths_b))
    grams = (len(widths_b) + 2) * n * n
    return features <= grams


def _linear_moments(a, b, debiased) -> tuple[list, list]:
    moments = CrossMoments(unbiased=debiased, symmetric=b is None)
    n = a[0].shape[0]
    for start, stop in stream_row_ranges(a[0], CHUNK):
        rows = slice(start, stop) if (start, stop) != (0, n) else slice(None)
        moments.update(
            [X[rows, ...] for X in a], None if b is None else [Y[rows, ...] for Y in b]
        )
    return moments.cka_matrix()


def _gram_matrix(a, b, kernel, sigma, debiased, random_state, caller):
    n = a[0].shape[0]
    xp, device = namespace_and_device(a[0])
    cached = a if b is None else b
    check_square_arrays_fit(
        n,
        len(cached) + 2,
        8 if a[0].dtype == xp.float64 else 4,
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: (
            f"Use fewer layers per call, measure='linear_cka' (feature form), or "
            f"at most {fits} samples"
        ),
    )
    rng = check_random_state(random_state)
    grams = [centred_gram(Y, kernel, sigma, debiased, rng) for Y in cached]
    selfs = [gram_inner(G, G) for G in grams]
    rows, undefined = [], []
    for i, X in enumerate(a):
        if b is None:
            K, self_k = grams[i], selfs[i]
        else:
            K = centred_gram(X, kernel, sigma, debiased, rng)
            self_k = gram_inner(K, K)
        row = []
        for j, L in enumerate(grams):
            if b is None and j < i:
                row.append(rows[j][i])
                continue
            value = _cka(
                selfs[j] if (b is None and i == j) else gram_inner(K, L),
                self_k,
                selfs[j],
            )
            if math.isnan(value):
                undefined.append((i, j))
            row.append(value)
        rows.append(row)
    return rows, undefined


def _neighbour_matrix(a, b, measure, n_neighbors, caller):
    k = check_n_neighbors(n_neighbors, a[0].shape[0], caller)
    if measure == "mutual_knn":
        prepare, pair = (lambda X: neighbours(X, k)), overlap
    else:
        prepare, pair = (lambda X: CknnaSide(X, neighbours(X, k))), cknna_from_sides
    sides_a = [prepare(X) for X in a]
    sides_b = sides_a if b is None else [prepare(Y) for Y in b]
    rows, undefined = [], []
    for i, sa in enumerate(sides_a):
        row = []
        for j, sb in enumerate(sides_b):
            value = rows[j][i] if (b is None and j < i) else pair(sa, sb)
            if math.isnan(value):
                undefined.append((i, j))
            row.append(value)
        rows.append(row)
    return rows, undefined


def compute_matrix(a, b, params: dict, caller: str) -> tuple[list, list]:
    """Validated layers and parameters -> (rows of floats, undefined pairs)."""
    measure, debiased = params["measure"], params["debiased"]
    if measure in ("linear_cka", "rbf_cka"):
        a, b = _on_host_if_possible(a, b)
    if measure == "linear_cka" and _features_are_smaller(a, b, debiased):
        return _linear_moments(a, b, debiased)
    if measure in ("linear_cka", "rbf_cka"):
        kernel = "linear" if measure == "linear_cka" else "gaussian"
        return _gram_matrix(
            a, b, kernel, params["sigma"], debiased, params["random_state"], caller
        )
    return _neighbour_matrix(a, b, measure, params["n_neighbors"], caller)


def _on_host_if_possible(a: list, b: list | None) -> tuple[list, list | None]:
    """The layers as NumPy views of JAX's CPU buffers, else as they are.

    CKA's Grams and feature sums are matrix products and sums: NumPy's BLAS
    forms them from JAX's own memory faster than XLA's CPU backend does
    (see :func:`~infoscope.backends.host_view`); the result is a few floats.
    """
    views = host_views(*a, *(b or []))
    if views is None:
        return a, b
    return list(views[: len(a)]), None if b is None else list(views[len(a) :])


def _warn_undefined(undefined, names_a, names_b, caller) -> None:
    if not undefined:
        return
    pairs = [(names_a[i], names_b[j]) for i, j in undefined[:5]]
    entries = "entry is" if len(undefined) == 1 else "entries are"
    warnings.warn(
        f"{caller}: {len(undefined)} {entries} "
        f"NaN because a layer is constant over the samples (its self-similarity "
        f"term is 0): {pairs}",
        RuntimeWarning,
        stacklevel=3,
    )


def _prepare(layers_a, layers_b, params, caller, min_samples=None):
    """Validated, same-sample, common-dtype layers and their display names."""
    named_a, names_a = check_layers(layers_a, caller=caller, argname="layers_a")
    named_b, names_b = (None, None)
    if layers_b is not None:
        named_b, names_b = check_layers(layers_b, caller=caller, argname="layers_b")
    check_same_samples(named_a + (named_b or []), caller)
    n = named_a[0][1].shape[0]
    n_min = min_samples or _min_samples(params["measure"], params["debiased"])
    if n < n_min:
        raise ValueError(
            f"{caller}: the layers have {n} samples but measure="
            f"{params['measure']!r}{' (debiased)' if params['debiased'] else ''} "
            f"needs at least {n_min}; pass more samples."
        )
    arrays = _as_common_dtype([x for _, x in named_a + (named_b or [])])
    a = arrays[: len(named_a)]
    b = arrays[len(named_a) :] if named_b is not None else None
    labels_a = names_a or [name for name, _ in named_a]
    labels_b = labels_a if named_b is None else (names_b or [nm for nm, _ in named_b])
    return a, b, (names_a, names_b), (labels_a, labels_b)


def _to_array(rows, like):
    xp, device = namespace_and_device(like)
    return asarray(rows, xp=xp, dtype=like.dtype, device=device)


def similarity_matrix(
    layers_a: Any,
    layers_b: Any = None,
    *,
    measure: str = "linear_cka",
    debiased: bool = False,
    sigma: float | str = "median",
    n_neighbors: int = 10,
    random_state: Any = None,
) -> Any:
    """The L x M matrix of a similarity measure between two sets of layers.

    Parameters
    ----------
    layers_a : sequence or mapping of arrays of shape (n_samples, ...)
        Activations of L layers (of one network, or one checkpoint) on the
        same samples; more than two axes are flattened per sample.
    layers_b : sequence or mapping of arrays, optional
        M layers of a second network or checkpoint, on the same samples in
        the same order. None: `layers_a` against itself (a symmetric matrix).
    measure : {"linear_cka", "rbf_cka", "mutual_knn", "cknna"}, default="linear_cka"
        See the module docstring and the user guide.
    debiased : bool, default=False
        For the CKA measures: Song et al.'s unbiased HSIC in place of the
        biased one (needs 4 samples; entries may be slightly negative).
    sigma : float or "median", default="median"
        The Gaussian bandwidth of ``"rbf_cka"``; "median" is each layer's
        own median pairwise distance.
    n_neighbors : int, default=10
        k of ``"mutual_knn"`` and ``"cknna"``.
    random_state : int, numpy.random.Generator or None, default=None
        For the median's subset of 4,000 samples above that size.

    Returns
    -------
    array of shape (L, M)
        In the layers' namespace, device and (common) float dtype. Entries of
        a constant layer's row or column are NaN (with a RuntimeWarning).

    See Also
    --------
    SimilarityMatrix : the estimator, which also streams linear CKA.
    similarity_test : a permutation p-value and calibrated score for a pair.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import similarity_matrix
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 20))
    >>> layers = [np.tanh(X @ rng.normal(size=(20, 16))) for _ in range(3)]
    >>> S = similarity_matrix(layers)
    >>> S.shape, np.allclose(np.diag(S), 1.0)
    ((3, 3), True)
    """
    caller = "similarity_matrix"
    params = {
        "measure": measure,
        "debiased": debiased,
        "sigma": sigma,
        "n_neighbors": n_neighbors,
        "random_state": random_state,
    }
    validate_parameter_constraints(PARAMETERS, params, caller_name=caller)
    a, b, _, (labels_a, labels_b) = _prepare(layers_a, layers_b, params, caller)
    rows, undefined = compute_matrix(a, b, params, caller)
    _warn_undefined(undefined, labels_a, labels_b, caller)
    return _to_array(rows, a[0])


class SimilarityMatrix(InfoscopeEstimator):
    """The L x M similarity matrix between two sets of layers, as an estimator.

    ``fit(layers_a, layers_b=None)`` computes :func:`similarity_matrix`;
    with ``measure="linear_cka"``, ``partial_fit`` adds chunks of samples and
    the matrix is, after any split, that of all the samples at once
    (the sums over samples of the feature form).

    Parameters
    ----------
    measure, debiased, sigma, n_neighbors, random_state
        As in :func:`similarity_matrix`.

    Attributes
    ----------
    matrix_ : array of shape (L, M)
        In the layers' namespace, device and dtype.
    layer_names_a_, layer_names_b_ : list of str
        The mapping keys, or ``"layers_a[i]"`` for sequences.
    n_samples_seen_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import SimilarityMatrix
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 10))
    >>> start = {"h1": X @ rng.normal(size=(10, 8)), "h2": X[:, :4] ** 2}
    >>> est = SimilarityMatrix()
    >>> for rows in (slice(0, 400), slice(400, 1000)):
    ...     est = est.partial_fit({k: v[rows] for k, v in start.items()})
    >>> bool(np.allclose(est.matrix_, SimilarityMatrix().fit(start).matrix_))
    True
    """

    _parameter_constraints = PARAMETERS

    def __init__(
        self,
        *,
        measure="linear_cka",
        debiased=False,
        sigma="median",
        n_neighbors=10,
        random_state=None,
    ):
        self.measure = measure
        self.debiased = debiased
        self.sigma = sigma
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, layers_a, layers_b=None):
        """Compute the matrix on all samples.

        Parameters
        ----------
        layers_a : sequence or mapping of arrays of shape (n_samples, ...)
        layers_b : sequence or mapping of arrays, optional
            None: `layers_a` against itself.

        Returns
        -------
        self
        """
        self._validate_params()
        caller = type(self).__name__
        params = self.get_params(deep=False)
        self._moments = None
        a, b, _, labels = _prepare(layers_a, layers_b, params, caller)
        self._record_backend(a[0])
        rows, undefined = compute_matrix(a, b, params, caller)
        _warn_undefined(undefined, *labels, caller)
        self.layer_names_a_, self.layer_names_b_ = labels
        self.matrix_ = _to_array(rows, a[0])
        self.n_samples_seen_ = a[0].shape[0]
        return self

    def partial_fit(self, layers_a, layers_b=None):
        """Add a chunk of samples (``measure="linear_cka"`` only).

        Every call passes the same layers (same count and widths, and
        `layers_b` given or not as in the first call) for new samples.

        Parameters
        ----------
        layers_a : sequence or mapping of arrays of shape (n_chunk, ...)
        layers_b : sequence or mapping of arrays, optional

        Returns
        -------
        self
        """
        caller = type(self).__name__
        first = getattr(self, "_moments", None) is None
        if first:
            self._validate_params()
            if self.measure != "linear_cka":
                raise ValueError(
                    f"{caller}.partial_fit(): measure={self.measure!r} is not a "
                    f"sum over samples; only 'linear_cka' streams. Call fit on "
                    f"all samples instead."
                )
        params = self.get_params(deep=False)
        a, b, _, labels = _prepare(layers_a, layers_b, params, caller, min_samples=1)
        if first:
            self._record_backend(a[0])
            self._moments = CrossMoments(unbiased=self.debiased, symmetric=b is None)
            self._widths = (
                [X.shape[1] for X in a],
                None if b is None else [Y.shape[1] for Y in b],
            )
            self.layer_names_a_, self.layer_names_b_ = labels
            self.n_samples_seen_ = 0
        else:
            self._check_chunk(a, b, caller)
        self._moments.update(*_on_host_if_possible(a, b))
        self.n_samples_seen_ += a[0].shape[0]
        if self.n_samples_seen_ >= _min_samples("linear_cka", self.debiased):
            rows, undefined = self._moments.cka_matrix()
            _warn_undefined(undefined, self.layer_names_a_, self.layer_names_b_, caller)
            self.matrix_ = _to_array(rows, a[0])
        return self

    def _record_backend(self, X):
        xp, device = namespace_and_device(X)
        self._fit_backend = (namespace_name(xp), device_name(device))

    def _check_chunk(self, a, b, caller):
        self._check_fit_backend(a[0], name="layers_a", method="partial_fit")
        widths = (
            [X.shape[1] for X in a],
            None if b is None else [Y.shape[1] for Y in b],
        )
        if widths != self._widths:
            raise ValueError(
                f"{caller}.partial_fit(): the layers' widths {widths} differ from "
                f"the first chunk's {self._widths}; pass the same layers (and "
                f"layers_b, or not) in every call."
            )
