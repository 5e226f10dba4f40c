"""Node SNR: how well each node's weights preserve the signal of a dense layer.

Norridge, "Think Global, Act Local" scores every node of a dense layer by how
closely its weight vector points along the covariance between the layer's
inputs and the node's output. For input activations ``x`` (n x d_in) and
weights ``W`` (d_in x d_out), with ``r = x W`` (before any bias):

- ``x~ = x / (max over samples of x + 0.001)``, per input feature (with
  ``normalize_inputs=True``; otherwise ``x~ = x``);
- ``C_ij = sum_n x~_ni (r_nj - mean_n r_nj)``;
  ``A_i = #{n : x_ni > 0}``; ``c_ij = C_ij / (A_i + 1e-4)``;
- SNR optimality ``S_j = sum_i W_ij c^_ij / ||W_:j||`` with
  ``c^_:j = c_:j / (||c_:j|| + 1e-4)``;
- signal factor ``F_j = sum_i W_ij c_ij / (||W_:j|| max_i |c_ij|)``;
- sign disagreements ``#{(i, j) : c_ij W_ij < 0}``.

Everything is a sum over samples: the pass over the data accumulates
``x^T (r - s)``, ``sum_n (r_n - s)`` (``s``, the mean of ``r`` over the first
batch, keeps the sums centred), ``sum_n x_n``, ``A`` and the running maximum of
``x``; the max-normalisation is per input feature, so it rescales the rows of
``C`` at the end and streaming over batches gives the same numbers as one pass.
The cost is the two products ``x W`` and ``x^T r``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..backends import (
    asarray,
    asarrays,
    compiled,
    host_view,
    host_views,
    is_array,
    matmul,
    namespace_and_device,
    private_copy,
    to_numpy,
)
from ..backends._lazy import computed_together, stream_row_ranges
from ._base import BATCH_SIZE, InfoscopeEstimator, check_array, check_params

__all__ = ["NodeSNR", "NodeSNRResult", "NodeSNRRow", "node_snr", "node_snr_table"]

# The epsilons of the definition (DESIGN section 4, after the original).
_MAX_EPS = 0.001  # x~ = x / (max x + 0.001)
_COUNT_EPS = 1e-4  # c = C / (A + 1e-4)
_NORM_EPS = 1e-4  # c^ = c / (||c|| + 1e-4)


class NodeSNRResult(NamedTuple):
    """What :func:`node_snr` returns; unpacks as ``S, F, k = node_snr(X, W)``."""

    #: SNR optimality S of each node, shape (d_out,); NaN for all-zero weights.
    optimality: Any
    #: Signal factor F of each node, shape (d_out,); NaN for all-zero weights
    #: and for nodes whose input-output covariance is all zero.
    signal_factor: Any
    #: The number of (input, node) pairs with c_ij W_ij < 0.
    sign_disagreements: int


class NodeSNRRow(NamedTuple):
    """One layer's summary, a row of :func:`node_snr_table`."""

    #: The layer's name, as given.
    layer: Any
    #: Mean SNR optimality over the nodes where it is defined (NaN if none is).
    optimality_mean: float
    #: Mean signal factor over the nodes where it is defined (NaN if none is).
    signal_factor_mean: float
    #: The number of (input, node) pairs with c_ij W_ij < 0.
    sign_disagreements: int
    #: The number of nodes whose S or F is NaN (dead nodes).
    n_nan_nodes: int
    #: The number of nodes (d_out).
    n_nodes: int


# ---- validation


#: The constraints of the parameters, shared by the functions and NodeSNR.
_PARAMETERS = {
    "normalize_inputs": ["boolean"],
    "batch_size": BATCH_SIZE,
    "weights": ["array-like", callable, None],
}


def _check_weights(W: Any, X: Any, *, caller: str, name: str, x_name: str = "X") -> Any:
    """`W` validated as a finite (d_in, d_out) float array in X's namespace.

    `X` has passed :func:`check_array`. The result has the dtype both `X` and
    `W` promote to; `X` is cast by the caller.
    """
    d_in = X.shape[1]
    if W is None:
        raise ValueError(
            f"{caller}: `{name}` is missing; pass the layer's weights as an "
            f"array of shape (n_features, n_nodes) = ({d_in}, n_nodes), one row "
            f"per input feature of `{x_name}` and one column per node"
            + (
                " (fit(X, weights=W), or NodeSNR(weights=W))."
                if name == "weights"
                else "."
            )
        )
    xp, device = namespace_and_device(X, W, names=(x_name, name))
    shape = tuple(W.shape) if is_array(W) else np.shape(W)
    if len(shape) != 2:
        raise ValueError(
            f"{caller}: `{name}` must be 2-D (n_features, n_nodes), got shape "
            f"{shape}; pass one row per input feature of `{x_name}` and one "
            f"column per node."
        )
    if shape[0] != d_in:
        hint = ""
        if shape[1] == d_in:
            hint = (
                f" `{name}` looks transposed (PyTorch's nn.Linear stores its "
                f"weight as (out, in)): pass {name}.T."
            )
        raise ValueError(
            f"{caller}: `{name}` has {shape[0]} rows but `{x_name}` has {d_in} "
            f"features; `{name}` must have shape (n_features, n_nodes) = "
            f"({d_in}, n_nodes).{hint}"
        )
    if not is_array(W):
        W = asarray(W, xp=xp, device=device)
    try:
        # Complex, non-numeric and empty weights get check_array's messages.
        return check_array(W, caller=caller, name=name, min_samples=1, flatten=False)
    except ValueError:
        # ... but not NaN: weights are no samples to remove.
        if xp.isdtype(W.dtype, "real floating"):
            bad = int(xp.sum(xp.astype(~xp.isfinite(W), xp.int32)))
            if bad:
                raise ValueError(
                    f"{caller}: `{name}` contains NaN or infinity ({bad} of "
                    f"{shape[0] * shape[1]} values); the weights must be finite "
                    f"(has training diverged?)."
                ) from None
        raise


def _common_dtype(X: Any, W: Any) -> tuple[Any, Any]:
    if X.dtype == W.dtype:
        return X, W
    xp = array_namespace(X, W)
    dtype = xp.result_type(X, W)
    return xp.astype(X, dtype, copy=False), xp.astype(W, dtype, copy=False)


# ---- the pass over the samples: sufficient statistics


def _first_moments(X: Any, W: Any) -> tuple[Any, ...]:
    """The statistics of the first batch; the shift is its mean of r."""
    xp = array_namespace(X, W)
    R = matmul(X, W)
    shift = xp.mean(R, axis=0)
    # In place where the library allows (NumPy, PyTorch, CuPy): no second
    # n x d_out array; JAX and dask rebind.
    R -= shift
    return (shift, *_moments(X, R, xp))


def _next_moments(X: Any, W: Any, shift: Any) -> tuple[Any, ...]:
    """The statistics of a later batch, centred by the first batch's shift."""
    xp = array_namespace(X, W, shift)
    R = matmul(X, W)
    R -= shift
    return _moments(X, R, xp)


def _moments(X: Any, R: Any, xp: Any) -> tuple[Any, ...]:
    return (
        matmul(X.T, R),  # sum_n x_n (r_n - s)^T
        xp.sum(R, axis=0),  # sum_n (r_n - s)
        xp.sum(X, axis=0),  # sum_n x_n
        # A, counted as a float column sum: the fastest count on every library
        # (exact to 2**24 samples per batch in float32).
        xp.sum(xp.astype(X > 0, X.dtype), axis=0),
        xp.max(X, axis=0),  # max_n x_n
    )


class _Moments:
    """Sufficient statistics of one layer, accumulated over batches of samples.

    All arrays live in the namespace and on the device of the data.
    """

    def __init__(self) -> None:
        self.n_samples = 0
        self.shift = self.cross = self.sum_r = None
        self.sum_x = self.n_active = self.max_x = None

    def update(self, X: Any, W: Any, batch_size: int | None = None) -> None:
        """Add the samples of `X` (validated, in W's dtype)."""
        # On the CPU NumPy's BLAS computes these products and sums from JAX's
        # own memory faster than XLA does, and compiles nothing per batch.
        X, W = host_views(X, W) or (X, W)
        xp = array_namespace(X, W)
        n = X.shape[0]
        for start, stop in stream_row_ranges(X, batch_size):
            batch = X[start:stop, ...] if (start, stop) != (0, n) else X
            self._add(batch, W, xp)

    def _add(self, X: Any, W: Any, xp: Any) -> None:
        if self.n_samples == 0:
            kernel = compiled(_first_moments, xp)
            (
                self.shift,
                self.cross,
                self.sum_r,
                self.sum_x,
                self.n_active,
                self.max_x,
            ) = kernel(X, W)
        else:
            kernel = compiled(_next_moments, xp)
            cross, sum_r, sum_x, n_active, max_x = kernel(X, W, self.shift)
            self.cross = self.cross + cross
            self.sum_r = self.sum_r + sum_r
            self.sum_x = self.sum_x + sum_x
            self.n_active = self.n_active + n_active
            self.max_x = xp.maximum(self.max_x, max_x)
        self.n_samples += X.shape[0]

    def measures(self, W: Any, normalize_inputs: bool) -> tuple[Any, Any, Any, Any]:
        """S, F, c and the per-node sign disagreements from the statistics."""
        names = ("cross", "sum_r", "sum_x", "n_active", "max_x")
        # dask: every sum of the pass in one graph, the chunks read once.
        values = computed_together([getattr(self, name) for name in names])
        for name, value in zip(names, values, strict=True):
            setattr(self, name, value)
        kernel = compiled(
            _measures, array_namespace(W), static_argnames=("normalize_inputs",)
        )
        return kernel(
            self.cross,
            self.sum_r,
            self.sum_x,
            self.n_active,
            self.max_x,
            W,
            self.n_samples,
            normalize_inputs=normalize_inputs,
        )

    def checked_measures(self, W: Any, normalize_inputs: bool, caller: str):
        """S, F, c and :func:`_summary` of them, refusing a c that is not finite.

        The inputs are finite, so a NaN or infinity in c was made by the
        arithmetic: ``x~`` undefined (a feature's maximum is exactly -0.001),
        or ``x^T r`` beyond the float range.
        """
        device_W = W
        if isinstance(self.cross, np.ndarray) and not isinstance(W, np.ndarray):
            # The sums were made by NumPy on JAX's CPU buffers: so is the rest.
            W = host_view(W)
        S, F, c, signs = self.measures(W, normalize_inputs)
        xp = array_namespace(c)
        if bool(xp.all(xp.isfinite(c))):
            summary = _summary(S, F, signs)
            if W is not device_W:
                xp_W, device = namespace_and_device(device_W)
                S, F, c = asarrays([S, F, c], xp=xp_W, device=device)
            return S, F, c, summary
        if normalize_inputs and bool(xp.any(self.max_x + _MAX_EPS == 0)):
            raise ValueError(
                f"{caller}: an input feature's maximum over the samples is exactly "
                f"-0.001, so x~ = x / (max x + 0.001) is undefined; pass "
                f"normalize_inputs=False for inputs that are not non-negative."
            )
        raise ValueError(
            f"{caller}: the input-output covariance x^T (r - mean r) overflows the "
            f"float range for these activations and weights (up to "
            f"{float(xp.max(xp.abs(self.max_x))):.3g}); rescale the inputs or the "
            f"weights (divide them by a constant)."
        )


def _measures(cross, sum_r, sum_x, n_active, max_x, W, n_samples, *, normalize_inputs):
    """The definition's closing steps, from the sufficient statistics."""
    xp = array_namespace(cross, W)
    # C_ij = sum_n x_ni (r_nj - rbar_j), with rbar = s + sum_n (r_n - s) / n.
    C = cross - sum_x[:, None] * (sum_r / n_samples)[None, :]
    row_scale = 1.0 / (n_active + _COUNT_EPS)
    if normalize_inputs:
        # Per input feature, x~ = x / (m + 0.001) scales row i of C.
        row_scale = _divide(row_scale, max_x + _MAX_EPS, xp)
    c = C * row_scale[:, None]
    # Norms and products from max-normalised columns: weights of 1e-31 or
    # covariances of 1e200 square out of the float range, their ratios do not.
    w_max = xp.max(xp.abs(W), axis=0)
    unit_w = W / xp.where(w_max > 0, w_max, 1.0)
    w_norm = xp.sqrt(xp.sum(unit_w * unit_w, axis=0))
    direction = unit_w / xp.where(w_norm > 0, w_norm, 1.0)  # W_:j / ||W_:j||
    c_max = xp.max(xp.abs(c), axis=0)
    unit_c = c / xp.where(c_max > 0, c_max, 1.0)
    c_norm = xp.sqrt(xp.sum(unit_c * unit_c, axis=0))  # ||c_:j|| / max |c_:j|
    projection = xp.sum(direction * unit_c, axis=0)  # W.c / (||W|| max |c|)
    dead = w_max == 0
    # S = W.c / ((||c|| + eps) ||W||), divided through by max |c|.
    S = xp.where(
        dead,
        xp.nan,
        projection / (c_norm + _NORM_EPS / xp.where(c_max > 0, c_max, 1.0)),
    )
    F = xp.where(dead | (c_max == 0), xp.nan, projection)
    signs = xp.count_nonzero((W > 0) & (c < 0) | (W < 0) & (c > 0), axis=0)
    return S, F, c, signs


def _divide(a: Any, b: Any, xp: Any) -> Any:
    """a / b, NaN where b == 0, without a division-by-zero warning."""
    zero = b == 0
    return xp.where(zero, xp.nan, a / xp.where(zero, 1.0, b))


def _summary(S: Any, F: Any, signs: Any) -> tuple[float, float, int, int]:
    """(mean S, mean F, sign disagreements, NaN nodes) with one host transfer.

    One transfer, not one per number: a GPU synchronises once, and a dask
    graph is computed once.
    """
    views = [host_view(a) for a in (S, F, signs)]
    if all(v is not None for v in views):
        host = np.stack([views[0], views[1], views[2].astype(views[0].dtype)])
    else:
        xp = array_namespace(S, F, signs)
        host = to_numpy(xp.stack([S, F, xp.astype(signs, S.dtype)]))
    means = []
    for values in host[:2]:
        valid = values[~np.isnan(values)]
        means.append(float(valid.mean(dtype=np.float64)) if valid.size else math.nan)
    sign_disagreements = int(host[2].astype(np.int64).sum())
    n_nan_nodes = int(np.count_nonzero(np.isnan(host[0]) | np.isnan(host[1])))
    return means[0], means[1], sign_disagreements, n_nan_nodes


def _layer(
    X: Any,
    W: Any,
    *,
    normalize_inputs: bool,
    batch_size: int | None,
    caller: str,
    x_name: str = "X",
    w_name: str = "W",
) -> tuple[Any, Any, Any, Any]:
    """Validate one layer and compute (S, F, c, :func:`_summary` of them).

    The parameters have been validated by the caller.
    """
    X = check_array(X, caller=caller, name=x_name, min_samples=2)
    W = _check_weights(W, X, caller=caller, name=w_name, x_name=x_name)
    X, W = _common_dtype(X, W)
    moments = _Moments()
    moments.update(X, W, batch_size)
    return moments.checked_measures(W, normalize_inputs, caller)


# ---- public API


def node_snr(
    X: Any,
    W: Any,
    *,
    normalize_inputs: bool = True,
    batch_size: int | None = None,
) -> NodeSNRResult:
    """Per-node SNR optimality and signal factor of a dense layer.

    For input activations ``x`` and weights ``W``, with ``r = x W``:
    ``x~ = x / (max_n x + 0.001)`` per input feature,
    ``C_ij = sum_n x~_ni (r_nj - mean_n r_nj)``, ``A_i = #{n : x_ni > 0}``,
    ``c_ij = C_ij / (A_i + 1e-4)``; then
    ``S_j = sum_i W_ij c^_ij / ||W_:j||`` with
    ``c^_:j = c_:j / (||c_:j|| + 1e-4)``, and
    ``F_j = sum_i W_ij c_ij / (||W_:j|| max_i |c_ij|)`` (Norridge, "Think
    Global, Act Local").

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        The layer's input activations (NumPy, CuPy, PyTorch, JAX, dask, or any
        array-API library); more axes are flattened per sample. At least 2
        samples.
    W : array of shape (n_features, n_nodes)
        The layer's weights, ``d_in x d_out`` (a PyTorch ``nn.Linear`` weight
        is ``d_out x d_in``: pass ``layer.weight.T``), in the namespace and on
        the device of `X` (array-likes are moved there).
    normalize_inputs : bool, default=True
        Divide each input feature by its maximum over the samples plus 0.001
        before the covariance, as the original does (made for non-negative
        inputs: ReLU activations, pixels). False gives the plain covariance
        form ``C = x^T (r - mean r)``.
    batch_size : int, optional
        Samples per pass; bounds the memory for ``r`` at
        ``batch_size x n_nodes``. The result does not depend on it (up to
        rounding).

    Returns
    -------
    NodeSNRResult
        ``(optimality, signal_factor, sign_disagreements)``: S and F as arrays
        of shape (n_nodes,) in `X`'s namespace, device and float dtype, and the
        number of pairs with ``c_ij W_ij < 0`` as an int.

    Raises
    ------
    ValueError
        `W` missing, not 2-D, or with a row count other than `X`'s features;
        NaN or infinity in either; fewer than 2 samples; arrays of different
        libraries or devices.

    Notes
    -----
    A node with all-zero weights (``||W_:j|| = 0``) has NaN for S and F. A
    node whose input-output covariance is all zero (for instance, the whole
    input is never active) has ``c_:j = 0``: its S is 0, as the epsilons of the
    definition make it, and its F is NaN. An input feature that is never
    positive has ``A_i = 0``: it contributes zeros when it is zero throughout
    (a dead ReLU unit), but a feature that is negative throughout gets its
    covariances divided by 1e-4 and dominates S and F. The definition is made
    for non-negative inputs such as ReLU outputs. With
    ``normalize_inputs=True``, a feature whose maximum is exactly -0.001 makes
    ``x~`` undefined: that is an error (pass ``normalize_inputs=False`` for
    inputs that are not non-negative), as is a covariance beyond the float
    range. No warning is raised for the NaN nodes.

    The computation is two products, ``x W`` and ``x^T (r - mean r)``, plus
    passes over ``x`` and ``r``; :class:`NodeSNR` streams it over batches.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import node_snr
    >>> rng = np.random.default_rng(0)
    >>> X = np.maximum(rng.standard_normal((500, 8)), 0)  # ReLU activations
    >>> W = rng.standard_normal((8, 3))
    >>> S, F, k = node_snr(X, W)
    >>> S.shape, F.shape, k
    ((3,), (3,), 1)

    Independent inputs covary with each node along its own weights, so S is
    close to 1; a node with all-zero weights is dead, and NaN:

    >>> W[:, 2] = 0.0
    >>> np.round(node_snr(X, W).optimality, 3)
    array([0.988, 0.988,   nan])
    """
    caller = "node_snr"
    check_params(
        caller, _PARAMETERS, normalize_inputs=normalize_inputs, batch_size=batch_size
    )
    S, F, _, summary = _layer(
        X,
        W,
        normalize_inputs=normalize_inputs,
        batch_size=batch_size,
        caller=caller,
    )
    return NodeSNRResult(S, F, summary[2])


def node_snr_table(
    layers: Iterable[tuple[Any, Any, Any]] | Mapping[Any, tuple[Any, Any]],
    *,
    normalize_inputs: bool = True,
    batch_size: int | None = None,
) -> list[NodeSNRRow]:
    """Node SNR of several dense layers: one summary row per layer.

    Parameters
    ----------
    layers : iterable of (name, X, W) triples, or mapping name -> (X, W)
        Each layer's input activations ``X`` (n_samples x d_in) and weights
        ``W`` (d_in x d_out), as the adapters' ``dense_layers(model, X)``
        returns them, or built by hand. Layers may come from different
        libraries and devices; within a layer, X and W share one.
    normalize_inputs : bool, default=True
        As in :func:`node_snr`.
    batch_size : int, optional
        As in :func:`node_snr`.

    Returns
    -------
    list of NodeSNRRow
        ``(layer, optimality_mean, signal_factor_mean, sign_disagreements,
        n_nan_nodes, n_nodes)`` per layer, in order; the means skip NaN
        nodes, and ``pandas.DataFrame(rows)`` makes a table of them.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import node_snr_table
    >>> rng = np.random.default_rng(0)
    >>> x0 = rng.random((200, 6))
    >>> W1, W2 = rng.standard_normal((6, 4)), rng.standard_normal((4, 2))
    >>> W1[:, 0] = 0.0  # a dead node
    >>> x1 = np.maximum(x0 @ W1, 0)
    >>> for row in node_snr_table([("fc1", x0, W1), ("fc2", x1, W2)]):
    ...     print(row.layer, row.n_nodes, row.n_nan_nodes, f"{row.optimality_mean:.3f}")
    fc1 4 1 0.988
    fc2 2 0 0.612
    """
    check_params(
        "node_snr_table",
        _PARAMETERS,
        normalize_inputs=normalize_inputs,
        batch_size=batch_size,
    )
    if isinstance(layers, Mapping):
        items: Iterable[Any] = ((name, *pair) for name, pair in layers.items())
    else:
        items = layers
    rows = []
    for index, item in enumerate(items):
        try:
            name, X, W = item
        except (TypeError, ValueError):
            raise ValueError(
                f"node_snr_table: layer {index} is not a (name, X, W) triple "
                f"(got {type(item).__name__}); pass (name, layer input, weights) "
                f"triples, or a mapping name -> (X, W)."
            ) from None
        S, _, _, summary = _layer(
            X,
            W,
            normalize_inputs=normalize_inputs,
            batch_size=batch_size,
            caller=f"node_snr_table (layer {name!r})",
        )
        rows.append(NodeSNRRow(name, *summary, int(S.shape[0])))
    return rows


class NodeSNR(InfoscopeEstimator):
    """Node SNR of a dense layer, fitted on its input activations, streamable.

    ``fit(X, weights=W)`` (or ``NodeSNR(weights=W).fit(X)``) computes, for
    every node of a dense layer with input activations ``X`` (n_samples x
    d_in) and weights ``W`` (d_in x d_out), the SNR optimality S and the
    signal factor F of :func:`node_snr`. ``partial_fit`` accumulates the same
    sums over batches of samples, so an evaluation set of any size streams
    through a GPU: after the last batch the attributes equal those of ``fit``
    on all samples at once.

    Parameters
    ----------
    normalize_inputs : bool, default=True
        Divide each input feature by its maximum over all samples plus 0.001
        (the original's normalisation); False gives the plain covariance form.
    batch_size : int, optional
        Samples per pass within one ``fit`` or ``partial_fit`` call; bounds the
        memory for ``r = X W`` without changing the result.
    weights : array of shape (n_features, n_nodes), callable or None, \
default=None
        The layer's weights, when ``fit`` is not given them: an array, or a
        callable ``weights(X)`` that returns them for the validated
        activations ``X`` when a stream starts (``fit``, or the first
        ``partial_fit``), e.g. ``lambda X: layer.weight.T`` to read a
        training model's current weights at every fit. This is also how
        scikit-learn's generic checks, pipelines and searches, which call
        ``fit(X, y)`` only, give NodeSNR its weights. ``fit(X, weights=W)``
        takes precedence.

    Attributes
    ----------
    optimality_ : array of shape (n_nodes,)
        SNR optimality S per node, in X's namespace and on its device; NaN for
        nodes with all-zero weights.
    signal_factor_ : array of shape (n_nodes,)
        Signal factor F per node; NaN for all-zero weights and for nodes whose
        input-output covariance is all zero.
    covariance_ : array of shape (n_features_in, n_nodes)
        ``c``, the (normalised) input-output covariance of each input and node,
        divided by the input's activity count plus 1e-4.
    sign_disagreements_ : int
        The number of (input, node) pairs with ``c_ij W_ij < 0``.
    optimality_mean_ : float
        Mean of S over the nodes where it is not NaN (NaN if none).
    signal_factor_mean_ : float
        Mean of F over the nodes where it is not NaN (NaN if none).
    n_nan_nodes_ : int
        Nodes whose S or F is NaN.
    n_samples_seen_ : int
        Samples accumulated since the last ``fit``.
    n_features_in_ : int
        Input features of the layer (d_in).

    See Also
    --------
    node_snr : The same measures as a function.
    node_snr_table : One summary row per layer of a network.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import NodeSNR
    >>> rng = np.random.default_rng(0)
    >>> X = np.maximum(rng.standard_normal((600, 8)), 0)
    >>> W = rng.standard_normal((8, 3))
    >>> est = NodeSNR().fit(X, weights=W)
    >>> est.optimality_.shape, round(est.optimality_mean_, 3)
    ((3,), 0.993)

    Streaming in batches gives the same numbers:

    >>> stream = NodeSNR()
    >>> for batch in np.array_split(X, 4):
    ...     stream = stream.partial_fit(batch, weights=W)
    >>> stream.n_samples_seen_, bool(np.allclose(stream.optimality_, est.optimality_))
    (600, True)
    """

    _parameter_constraints = _PARAMETERS

    def __init__(
        self,
        normalize_inputs: bool = True,
        batch_size: int | None = None,
        weights: Any | Callable[[Any], Any] = None,
    ):
        self.normalize_inputs = normalize_inputs
        self.batch_size = batch_size
        self.weights = weights

    def fit(self, X: Any, y: Any = None, *, weights: Any = None) -> NodeSNR:
        """Compute the measures of the layer from its input activations.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            The layer's input activations; at least 2 samples.
        y : None
            Ignored; present for scikit-learn's API.
        weights : array of shape (n_features, n_nodes), optional
            The layer's weights ``W`` (d_in x d_out), in X's namespace and on
            its device. Required unless the `weights` parameter gives them.

        Returns
        -------
        self : NodeSNR
        """
        for name in ("_moments", "_weights"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X, y, weights=weights)

    def partial_fit(self, X: Any, y: Any = None, *, weights: Any = None) -> NodeSNR:
        """Add a batch of samples and update the measures.

        The first call (after construction or ``fit``) needs weights (here or
        as the `weights` parameter) and at least 2 samples; later calls take
        batches of any size, reuse those weights, and refuse different ones.

        Parameters
        ----------
        X : array of shape (n_batch, n_features)
            A batch of the layer's input activations, from the library and
            device of the first batch.
        y : None
            Ignored; present for scikit-learn's API.
        weights : array of shape (n_features, n_nodes), optional
            The layer's weights; on the first call, required unless the
            `weights` parameter gives them; optional and checked against the
            first call's afterwards.

        Returns
        -------
        self : NodeSNR
        """
        caller = type(self).__name__
        first = not hasattr(self, "_moments")
        if first:
            self._validate_params()
            X = self._validate_data(X, reset=True)
            if weights is None:
                weights = self.weights
                if callable(weights):
                    weights = weights(X)
            if weights is None and y is not None:
                raise ValueError(
                    f"{caller}: `weights` is missing and `y` was given; the "
                    f"layer's weights go in the keyword: fit(X, weights=W), "
                    f"or in the parameter: NodeSNR(weights=W), with W of shape "
                    f"(n_features, n_nodes) = ({X.shape[1]}, n_nodes)."
                )
            W = _check_weights(weights, X, caller=caller, name="weights")
            X, W = _common_dtype(X, W)
            # A copy: the sums depend on W, which must not change mid-stream.
            self._weights = private_copy(W)
            self._moments = _Moments()
        else:
            X = self._validate_data(X, reset=False, method="partial_fit")
            xp = array_namespace(X)
            W = self._weights
            if weights is not None:
                self._check_same_weights(weights, X, caller)
            X = xp.astype(X, W.dtype, copy=False)
        self._moments.update(X, W, self.batch_size)
        S, F, c, summary = self._moments.checked_measures(
            W, self.normalize_inputs, caller
        )
        self.optimality_, self.signal_factor_, self.covariance_ = S, F, c
        (
            self.optimality_mean_,
            self.signal_factor_mean_,
            self.sign_disagreements_,
            self.n_nan_nodes_,
        ) = summary
        self.n_samples_seen_ = self._moments.n_samples
        return self

    def _check_same_weights(self, weights: Any, X: Any, caller: str) -> None:
        W = _check_weights(weights, X, caller=caller, name="weights")
        xp = array_namespace(W)
        stored = self._weights
        same = tuple(W.shape) == tuple(stored.shape) and bool(
            xp.all(xp.astype(W, stored.dtype) == stored)
        )
        if not same:
            raise ValueError(
                f"{caller}.partial_fit(): `weights` differ from those of the "
                f"first batch; the accumulated sums belong to those weights. "
                f"Pass the same weights (or none) for every batch, or call fit "
                f"to start again with new ones."
            )
