"""Entropy and class mutual information of an empirical NTK (ZnNL / papyrus).

For a symmetric positive semi-definite kernel matrix ``Theta`` (an empirical
neural tangent kernel, from :func:`infoscope.adapters.torch.empirical_ntk` or
:func:`infoscope.adapters.jax.empirical_ntk`, or any Gram matrix):

- ``lambda`` are the eigenvalues of ``Theta``; negative ones (rounding noise of
  a singular NTK, or a matrix that is not PSD) are clipped to 0 and counted;
- ``p = lambda / sum(lambda)`` (the spectrum of the trace-normalised matrix);
- the von Neumann entropy ``S = -sum p log p`` (``0 log 0 = 0``), in `base`
  (2 by default: bits);
- the effective entropy ``S / log(m)``, ``m`` the number of eigenvalues (the
  logarithm in the same base, so it does not depend on the base), in [0, 1];
- optional cosine normalisation ``Theta_ij / sqrt(Theta_ii Theta_jj)`` before
  all of this (every sample's gradient scaled to unit norm);
- between the classes A and B of labelled samples,
  ``I(A; B) = S(Theta_AA) + S(Theta_BB) - S(Theta_(A u B))``, each block
  normalised by its own trace, and ``2 I / (S_A + S_B)``.

One implementation of the entropy of a kernel matrix (for one matrix, or for
a stack of principal blocks decomposed together) serves the entropy, the
mutual information and :mod:`infoscope.selection`. The eigenvalues are
computed in float64 wherever the device has it
(:func:`infoscope.backends.eigvalsh`).

Differences from ZnNL's ``EntropyAnalysis``: ZnNL raises every eigenvalue
below ``1e-14`` to ``1e-14`` before normalising, where this module clips
negative ones to 0. Each such eigenvalue adds ``q log(1 / q)`` with
``q = 1e-14 / sum(lambda)`` to ZnNL's entropy (in nats), so the two agree to
about ``1e-12`` for a kernel whose trace is 1 or more; for a kernel of tiny
scale ZnNL's floor dominates and its entropy depends on the scale, which this
module's does not. ZnNL's cosine normalisation maps rows with a zero diagonal
to 0, as this one does.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..backends import (
    asarray,
    compiled,
    float_dtype,
    foreign_host_view,
    host_view,
    is_array,
    itemsize,
    namespace_and_device,
    to_numpy,
)
from ..backends._blocks import block_reductions
from ..backends._linalg import (
    check_finite_matrix,
    host_lapack,
    symmetric_eigenvalues,
)
from ._base import (
    BASE,
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_array,
    check_consistent_length,
    check_inputs,
    check_params,
    check_square_arrays_fit,
    check_targets,
    is_sparse,
)

__all__ = [
    "NTKEntropy",
    "NTKMutualInformation",
    "NTKMutualInformationResult",
    "ntk_entropy",
    "ntk_mutual_information",
]

#: Parameters shared by every entropy of the family.
ENTROPY_PARAMETERS = {
    "normalize": ["boolean"],
    "base": BASE,
}
#: ``kernel`` of the estimators: a callable mapping X to its NTK, or "precomputed".
KERNEL_PARAMETER = {"kernel": [callable, StrOptions({"precomputed"})]}

# The symmetry tolerance, relative to max |K|: the square root of the dtype's
# epsilon, far above the rounding of any route to an NTK (a blocked sum of
# per-parameter contractions) and far below a matrix that is not symmetric.
_SYMMETRY_RTOL = {4: 2.0**-11.5, 8: 2.0**-26}  # itemsize -> sqrt(eps)
_SYMMETRY_BLOCK_ELEMENTS = 2**20


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def check_kernel_matrix(
    K: Any, *, caller: str, name: str = "K", min_samples: int = 1
) -> Any:
    """`K` validated: a finite, square, symmetric float matrix of its own library.

    Only the lower triangle is read by the eigensolver; the symmetry check
    refuses matrices whose two triangles differ by more than rounding.
    """
    if K is None or is_sparse(K):
        check_array(K, caller=caller, name=name)  # raises its TypeError
    shape = tuple(K.shape) if is_array(K) else np.shape(K)
    if len(shape) == 2:
        # Non-numeric, complex, empty, NaN: check_array's messages come first.
        K = check_array(
            K, caller=caller, name=name, min_samples=min_samples, flatten=False
        )
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"{caller}: `{name}` must be a square kernel matrix (n, n), got shape "
            f"{shape}. Pass the NTK of the samples with themselves, e.g. "
            f"empirical_ntk(model, X) without X2 (any output_mode: a 'full' "
            f"NTK of shape (n k, n k) is square too)."
        )
    view = host_view(K)
    if view is not None:
        # JAX's CPU buffer read in place: NumPy's blocks, no eager dispatches.
        _check_symmetric(view, array_namespace(view), caller, name)
    else:
        _check_symmetric(K, namespace_and_device(K)[0], caller, name)
    return K


def _check_symmetric(K: Any, xp: Any, caller: str, name: str) -> None:
    # Row blocks against column blocks, so the check holds a few MiB rather
    # than two n x n temporaries beside a kernel that may fill the device.
    n = K.shape[0]
    if n == 0:
        return
    step = max(1, _SYMMETRY_BLOCK_ELEMENTS // n)
    scale = asymmetry = None
    for start in range(0, n, step):
        stop = min(start + step, n)  # the standard leaves stops past the end open
        rows, cols = K[start:stop, :], K[:, start:stop]
        block_scale = xp.max(xp.abs(rows))
        # Halves: the difference of two entries near the float maximum
        # would overflow.
        block_asymmetry = 2.0 * xp.max(xp.abs(rows * 0.5 - cols.T * 0.5))
        if scale is None:
            scale, asymmetry = block_scale, block_asymmetry
        else:
            scale = xp.maximum(scale, block_scale)
            asymmetry = xp.maximum(asymmetry, block_asymmetry)
    scale, asymmetry = float(scale), float(asymmetry)
    if scale == 0.0:
        return
    tolerance = _SYMMETRY_RTOL[itemsize(K.dtype)]
    if asymmetry > tolerance * scale:
        raise ValueError(
            f"{caller}: `{name}` is not symmetric: max |K - K.T| = {asymmetry:.3g} "
            f"is {asymmetry / scale:.3g} of max |K| (tolerance {tolerance:.2g}). "
            f"An NTK of a set of samples with itself is symmetric: pass "
            f"empirical_ntk(model, X) without X2, or, if the difference is "
            f"rounding, (K + K.T) / 2."
        )


def n_features(X: Any) -> int:
    """Values per sample of `X` (the features of a 2-D `X`)."""
    return X.shape[1] if X.ndim == 2 else math.prod(X.shape[1:])


def _kernel_of(
    kernel: Callable[[Any], Any] | str,
    X: Any,
    *,
    caller: str,
    min_samples: int = 1,
) -> tuple[Any, Any]:
    """The validated kernel matrix (`X`, or ``kernel(X)``) and the checked `X`."""
    if isinstance(kernel, str):  # "precomputed"
        K = check_kernel_matrix(X, caller=caller, name="K", min_samples=min_samples)
        return K, K
    X = check_inputs(X, caller=caller, min_samples=min_samples)
    check_kernel_fits(X, caller)
    K = check_kernel_matrix(kernel(X), caller=caller, name="kernel(X)")
    return K, X


#: Peak n x n arrays of an entropy, in the widest float of the device, as
#: measured (tests/estimators/test_edges.py): the matrix widened for the
#: eigensolver, the solver's own copy, and the symmetry check's blocks.
SPECTRUM_ARRAYS = 3


def check_kernel_fits(X: Any, caller: str) -> None:
    """Refuse, before calling a kernel on `X`, an n x n result that cannot fit.

    The (n, n) kernel matrix and its copy for the eigensolver, in the widest
    float of X's device; a kernel that needs more (an NTK's gradients, a
    "full" NTK) is guarded by the adapter that computes it.
    """
    xp, device = namespace_and_device(X)
    check_square_arrays_fit(
        X.shape[0],
        SPECTRUM_ARRAYS,
        float_dtype(xp, device),
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: (
            f"Pass at most {fits} samples (the selectors of "
            f"infoscope.selection score subsets of a larger pool)"
        ),
    )


# --------------------------------------------------------------------------- #
# The computation
# --------------------------------------------------------------------------- #


class KernelSpectrum(NamedTuple):
    """The entropy of one matrix and what it was computed from."""

    entropy: float  # in the requested base
    effective_entropy: float  # S / log m; NaN for a 1 x 1 matrix
    eigenvalues: Any  # all of them, descending, unclipped, in K's dtype
    n_clipped: int  # negative eigenvalues set to 0


def _entropy_nats(w: Any, xp: Any, m: Any = None) -> Any:
    """``-sum p log p`` in nats along the last axis of eigenvalues `w`.

    ``p = lam / sum(lam)`` and ``0 log 0 = 0``, where ``lam`` keeps the
    eigenvalues above the eigensolver's rounding, ``m eps max|w|`` (the
    tolerance of a numerical rank): below it a "positive" eigenvalue is noise,
    and a negative definite matrix would otherwise get an entropy from noise.
    NaN where no eigenvalue is above it. `w` may be a stack of shape (..., k);
    `m` (...,) the number of eigenvalues of each (default k: a padded block
    has fewer, and zeros in place of the others).
    """
    m = w.shape[-1] if m is None else xp.astype(m, w.dtype)[..., None]
    eps = float(xp.finfo(w.dtype).eps)
    largest = xp.max(xp.abs(w), axis=-1, keepdims=True)
    # Divided by the largest magnitude first: the sum cannot overflow.
    lam = w / xp.where(largest > 0, largest, 1.0)
    lam = xp.where(lam > m * eps, lam, 0.0)
    total = xp.sum(lam, axis=-1, keepdims=True)
    defined = total > 0
    p = lam / xp.where(defined, total, 1.0)
    positive = p > 0
    logs = xp.log(xp.where(positive, p, 1.0))
    nats = 0.0 - xp.sum(xp.where(positive, p * logs, 0.0), axis=-1)  # no -0.0
    return xp.where(defined[..., 0], nats, xp.nan)


def cosine_normalized(K: Any, xp: Any, *, caller: str, name: str = "K") -> Any:
    """``K_ij / sqrt(K_ii K_jj)``; rows and columns with ``K_ii = 0`` become 0."""
    d = xp.linalg.diagonal(K)
    negative = int(xp.sum(xp.astype(d < 0, xp.int32)))
    if negative:
        raise ValueError(
            f"{caller}: normalize=True divides by sqrt(K_ii K_jj), but `{name}` has "
            f"{negative} negative diagonal entr{'y' if negative == 1 else 'ies'}; "
            f"an NTK's diagonal holds squared gradient norms and is never "
            f"negative. Check how `{name}` was computed, or pass normalize=False."
        )
    scale = xp.where(d > 0, 1.0 / xp.sqrt(xp.where(d > 0, d, 1.0)), 0.0)
    return K * scale[:, None] * scale[None, :]


def kernel_spectrum(
    K: Any,
    xp: Any,
    device: Any,
    *,
    base: float,
    normalize: bool,
    caller: str,
    name: str = "K",
    what: str | None = None,
) -> KernelSpectrum:
    """The entropy of the validated matrix `K` (one eigendecomposition).

    `name` is the argument's name and `what` describes the matrix in messages
    (default: the argument).
    """
    what = f"`{name}`" if what is None else what
    view = foreign_host_view(K)
    if view is not None:
        # JAX on the CPU: NumPy's LAPACK on JAX's buffer, read in place (the
        # compiled path would call it back anyway, after a copy).
        spectrum = kernel_spectrum(
            view,
            *namespace_and_device(view),
            base=base,
            normalize=normalize,
            caller=caller,
            name=name,
            what=what,
        )
        eigenvalues = asarray(spectrum.eigenvalues, xp=xp, device=device)
        return spectrum._replace(eigenvalues=eigenvalues)
    check_square_arrays_fit(
        K.shape[0],
        SPECTRUM_ARRAYS,
        float_dtype(xp, device),
        xp=xp,
        device=device,
        caller=caller,
        advice=lambda fits: f"Pass a kernel matrix of at most {fits} samples",
    )
    owned = False
    if normalize:
        K = cosine_normalized(K, xp, caller=caller, name=name)
        owned = True
        # A validated K is finite; its normalisation may overflow.
        check_finite_matrix(K, xp, "eigvalsh")
    wide = float_dtype(xp, device)
    kernel = compiled(
        _spectrum_kernel, xp, static_argnames=("wide", "overwrite", "host")
    )
    w, negative, nats = kernel(
        K,
        wide=wide,
        overwrite=owned or K.dtype != wide,
        host=host_lapack(xp, device),
    )
    m = w.shape[0]
    n_clipped, nats = int(negative), float(nats)
    if math.isnan(nats):
        raise ValueError(
            f"{caller}: {what} has no positive eigenvalue above rounding ({m} "
            f"eigenvalues, {n_clipped} negative), so its entropy is undefined. "
            f"An NTK is positive semi-definite: a zero NTK means no trainable "
            f"parameter moves the outputs on these samples, a negative one a "
            f"sign error; check the model, its trainable parameters, the inputs "
            f"and how the matrix was computed."
        )
    entropy = nats / math.log(base)
    effective = nats / math.log(m) if m > 1 else math.nan
    return KernelSpectrum(entropy, effective, xp.astype(w, K.dtype), n_clipped)


def _spectrum_kernel(K: Any, *, wide: Any, overwrite: bool, host: bool) -> tuple:
    """Descending eigenvalues of the finite `K` in `wide`, the count of negative
    ones and the entropy in nats; compiled whole for JAX."""
    xp = array_namespace(K)
    work = xp.astype(K, wide, copy=False)
    w = xp.flip(symmetric_eigenvalues(work, host=host, overwrite=overwrite))
    return w, xp.sum(xp.astype(w < 0, xp.int32)), _entropy_nats(w, xp)


def _nats_and_clipped(w: Any, sizes: Any, dtype: Any) -> tuple[Any, Any]:
    """Entropy (nats) and negative-eigenvalue count of each block's spectrum."""
    xp = array_namespace(w)
    return _entropy_nats(w, xp, sizes), xp.sum(xp.astype(w < 0, xp.int32), axis=-1)


def block_entropies_nats(
    K: Any, rows: np.ndarray | list[np.ndarray], xp: Any, device: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy (nats) and negative-eigenvalue count of each principal block.

    `K` has been validated (and normalised if asked); `rows` holds the rows
    of each block ``K[r][:, r]`` (a (c, k) array, or c arrays of any sizes).
    They are decomposed as stacks, in float64 where the device has it
    (:func:`infoscope.backends._blocks.block_reductions`). Returns NumPy
    arrays of shape (c,); NaN for a block without a positive eigenvalue.
    """
    nats, negative = block_reductions(K, list(rows), _nats_and_clipped)
    return nats.astype(np.float64), negative.astype(np.int64)


def submatrix(K: Any, rows: np.ndarray) -> Any:
    """The principal block ``K[rows][:, rows]`` (rows: NumPy integers)."""
    xp, device = namespace_and_device(K)
    view = foreign_host_view(K)
    if view is not None:
        # JAX on the CPU: gathered by NumPy (JAX compiles a gather per shape).
        return asarray(view[np.ix_(rows, rows)], xp=xp, device=device)
    index = asarray(rows, xp=xp, device=device)
    return xp.take(xp.take(K, index, axis=0), index, axis=1)


# --------------------------------------------------------------------------- #
# Entropy
# --------------------------------------------------------------------------- #


def ntk_entropy(
    K: Any,
    *,
    effective: bool = False,
    normalize: bool = False,
    base: float = 2,
) -> float:
    """Von Neumann entropy of a (neural tangent) kernel matrix.

    ``S = -sum_i p_i log p_i`` with ``p = lambda / sum(lambda)`` over the
    eigenvalues ``lambda`` of `K`, negative ones clipped to 0 (ZnNL's
    ``EntropyAnalysis.compute_von_neumann_entropy``; see the module docstring
    for how its ``1e-14`` floor differs).

    Parameters
    ----------
    K : array of shape (n, n)
        A symmetric kernel matrix: an empirical NTK in "mean" or "sum" mode
        (n samples), or in "full" mode (n k rows, one per sample and output),
        of any supported library and device. Only its lower triangle is read
        by the eigensolver, after a check that the matrix is symmetric to
        within ``sqrt(eps)`` of its largest entry.
    effective : bool, default=False
        Return ``S / log(m)`` with ``m = n`` the number of eigenvalues: 0 for
        a rank-1 kernel, 1 for a multiple of the identity, whatever the base.
        Needs ``n >= 2``.
    normalize : bool, default=False
        First replace ``K_ij`` by ``K_ij / sqrt(K_ii K_jj)`` (the kernel of the
        unit-normalised gradients); samples whose gradient is zero
        (``K_ii = 0``) get zero rows.
    base : float, default=2
        Logarithm base: 2 gives bits, ``math.e`` nats (as ZnNL).

    Returns
    -------
    float
        Between 0 and ``log_base(n)`` (``effective=False``), or in [0, 1].

    Raises
    ------
    ValueError
        `K` not square, not symmetric, with NaN or infinity, or without a
        positive eigenvalue; ``normalize=True`` with a negative diagonal entry;
        ``effective=True`` for a 1 x 1 `K`.

    See Also
    --------
    NTKEntropy : the estimator, which can also compute the NTK of `X`.

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from infoscope import ntk_entropy
    >>> ntk_entropy(np.eye(8))  # 8 equal eigenvalues: 3 bits
    3.0
    >>> J = np.random.default_rng(0).standard_normal((6, 40))
    >>> K = J @ J.T  # a Gram matrix of 6 "gradients"
    >>> round(ntk_entropy(K, base=math.e, effective=True), 4)
    0.9418
    """
    caller = "ntk_entropy"
    check_params(
        caller,
        {**ENTROPY_PARAMETERS, "effective": ["boolean"]},
        effective=effective,
        normalize=normalize,
        base=base,
    )
    K = check_kernel_matrix(K, caller=caller)
    if effective and K.shape[0] < 2:
        raise ValueError(
            f"{caller}: effective=True divides by log(m), which is 0 for the "
            f"1 x 1 `K`; pass at least 2 samples, or effective=False."
        )
    xp, device = namespace_and_device(K)
    spectrum = kernel_spectrum(
        K, xp, device, base=base, normalize=normalize, caller=caller
    )
    return spectrum.effective_entropy if effective else spectrum.entropy


class _KernelEstimatorMixin:
    """Fitting on a precomputed kernel matrix or on the inputs of a kernel callable."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # With a precomputed kernel, X is an (n, n) matrix of the samples;
        # a kernel callable takes X in any shape.
        precomputed = isinstance(self.kernel, str)
        tags.input_tags.pairwise = precomputed
        tags.input_tags.three_d_array = not precomputed
        return tags

    def _fit_kernel(self, X: Any) -> Any:
        caller = type(self).__name__
        K, X = _kernel_of(self.kernel, X, caller=caller, min_samples=self._min_samples)
        self.n_features_in_ = n_features(X)
        return K

    def _kernel_name(self) -> str:
        return "K" if isinstance(self.kernel, str) else "kernel(X)"


class NTKEntropy(_KernelEstimatorMixin, InfoscopeEstimator):
    """Von Neumann entropy of an empirical NTK, with its effective form.

    ``fit(K)`` takes a precomputed kernel matrix; with a `kernel` callable,
    ``fit(X)`` computes ``K = kernel(X)`` first, for instance the NTK of a
    model on the inputs `X` (:func:`ntk_entropy` gives the definitions).

    Parameters
    ----------
    kernel : "precomputed" or callable, default="precomputed"
        "precomputed": ``fit`` takes the (n, n) kernel matrix. A callable
        maps ``X`` to its (n, n) kernel matrix, such as an adapter's
        ``empirical_ntk`` bound to a model:
        ``functools.partial(infoscope.adapters.torch.empirical_ntk, model)``.
        `X` is then passed to it as given (images, sequences, token ids:
        anything with a sample axis first; array-likes become NumPy arrays),
        and the fitted arrays live in the library and on the device of the
        matrix it returns.
    normalize : bool, default=False
        Cosine-normalise the kernel first: ``K_ij / sqrt(K_ii K_jj)``.
    base : float, default=2
        Logarithm base of ``entropy_`` (2: bits, ``math.e``: nats).

    Attributes
    ----------
    entropy_ : float
        ``S = -sum p log p``, ``p = lambda / sum(lambda)``, in `base`.
    effective_entropy_ : float
        ``S / log(n)``, in [0, 1].
    eigenvalues_ : array of shape (n,)
        The kernel's eigenvalues, descending, before clipping; in its library,
        on its device, in its dtype (computed in float64 where the device has
        it).
    n_clipped_ : int
        Negative eigenvalues, clipped to 0. Rounding makes some of the zero
        eigenvalues of a singular NTK slightly negative; compare their size
        with ``eigenvalues_[0]``.
    n_features_in_ : int
        With "precomputed", n (the columns of K); with a callable, the values
        per sample of `X`.

    See Also
    --------
    ntk_entropy : the function.
    NTKMutualInformation : the mutual information between classes.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import NTKEntropy
    >>> J = np.random.default_rng(0).standard_normal((6, 3))
    >>> est = NTKEntropy().fit(J @ J.T)  # rank 3
    >>> round(est.entropy_, 4), est.eigenvalues_.shape
    (0.8535, (6,))

    With an NTK computed from a model:

    >>> import functools, torch
    >>> from infoscope.adapters.torch import empirical_ntk
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ... ).double()
    >>> X = torch.randn(10, 4, dtype=torch.float64)
    >>> est = NTKEntropy(kernel=functools.partial(empirical_ntk, model)).fit(X)
    >>> type(est.eigenvalues_).__name__, 0.0 <= est.effective_entropy_ <= 1.0
    ('Tensor', True)
    """

    _parameter_constraints = {**KERNEL_PARAMETER, **ENTROPY_PARAMETERS}

    def __init__(self, *, kernel="precomputed", normalize=False, base=2):
        self.kernel = kernel
        self.normalize = normalize
        self.base = base

    def fit(self, X, y=None):
        """Compute the entropy of the kernel matrix.

        Parameters
        ----------
        X : array of shape (n, n), or the inputs of `kernel`
            The kernel matrix (``kernel="precomputed"``), or the n samples
            whose kernel matrix the `kernel` callable computes. At least 2.
        y : None
            Ignored.

        Returns
        -------
        self : NTKEntropy
        """
        self._validate_params()
        K = self._fit_kernel(X)
        xp, device = namespace_and_device(K)
        spectrum = kernel_spectrum(
            K,
            xp,
            device,
            base=self.base,
            normalize=self.normalize,
            caller=type(self).__name__,
            name=self._kernel_name(),
        )
        self.entropy_ = spectrum.entropy
        self.effective_entropy_ = spectrum.effective_entropy
        self.eigenvalues_ = spectrum.eigenvalues
        self.n_clipped_ = spectrum.n_clipped
        return self


# --------------------------------------------------------------------------- #
# Mutual information between classes
# --------------------------------------------------------------------------- #


class NTKMutualInformationResult(NamedTuple):
    """What :func:`ntk_mutual_information` returns."""

    #: (n_classes, n_classes): ``I(A; B)``, with ``S_A`` on the diagonal.
    mutual_information: Any
    #: (n_classes, n_classes): ``2 I(A; B) / (S_A + S_B)``, 1 on the diagonal;
    #: NaN where ``S_A + S_B`` is 0 up to rounding (1000 eps of K's dtype).
    normalized_mutual_information: Any
    #: (n_combinations,): the entropy of each combination's block.
    entropies: Any
    #: Each combination of classes, as a tuple of labels, in itertools order.
    combinations: list[tuple[Any, ...]]
    #: The classes, in the order of the matrices' rows.
    classes: np.ndarray
    #: (n_combinations,): negative eigenvalues clipped in each block (ints).
    n_clipped: Any


_MI_PARAMETERS = {
    **ENTROPY_PARAMETERS,
    "max_combination_size": [
        Interval(Integral, 2, None, closed="left"),
        StrOptions({"auto"}),
        None,
    ],
}
#: ``max_combination_size="auto"`` computes every combination size while the
#: blocks number at most this many, and stops at the largest size that keeps
#: within it (pairs always: the matrices need them).
AUTO_MAX_COMBINATIONS = 255
#: Requests for more blocks than this are refused (2^17 - 1 for 17 classes,
#: each an eigendecomposition): they do not finish in practice. Single classes
#: and pairs are never refused.
MAX_COMBINATIONS = 2**16


def _combination_sizes(
    n_classes: int, max_combination_size: Any, caller: str
) -> tuple[int, int]:
    """The largest combination size to compute, and the blocks it skips.

    "auto" stops where the count would pass ``AUTO_MAX_COMBINATIONS`` (and
    says so with a warning); a number or None (all sizes) beyond
    ``MAX_COMBINATIONS`` blocks is refused.
    """
    counts = [math.comb(n_classes, size) for size in range(n_classes + 1)]
    total = 2**n_classes - 1
    if max_combination_size == "auto":
        largest = min(2, n_classes)
        while largest < n_classes and sum(counts[1 : largest + 2]) <= (
            AUTO_MAX_COMBINATIONS
        ):
            largest += 1
    elif max_combination_size is None:
        largest = n_classes
    else:
        largest = min(max_combination_size, n_classes)
    wanted = sum(counts[1 : largest + 1])
    if largest > 2 and wanted > MAX_COMBINATIONS:
        requested = "None" if max_combination_size is None else largest
        raise ValueError(
            f"{caller}: max_combination_size={requested} asks for the entropies "
            f"of {wanted:,} combinations of the {n_classes} classes, each an "
            f"eigendecomposition; above {MAX_COMBINATIONS:,} that does not finish "
            f"in practice. Pass max_combination_size='auto' (the default) or 2 "
            f"(all the matrices need)."
        )
    skipped = total - wanted
    if skipped and max_combination_size == "auto":
        warnings.warn(
            f"{caller}: computed the entropies of the {wanted:,} combinations of "
            f"at most {largest} of the {n_classes} classes and skipped the "
            f"{skipped:,} larger ones (max_combination_size='auto' stops at "
            f"{AUTO_MAX_COMBINATIONS} blocks; the mutual-information matrices "
            f"need only pairs). Pass max_combination_size={n_classes} for all of "
            f"them, or 2 to silence this.",
            UserWarning,
            stacklevel=4,
        )
    return largest, skipped


def _class_members(
    K: Any, y: Any, classes: Any, *, caller: str, name: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The classes, and the rows of `K` of each (every class needs one)."""
    y = check_targets(y, caller=caller)
    labels = to_numpy(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"{caller}: class labels `y` must be 1-D, got shape {labels.shape}; "
            f"pass one label per row of `{name}`."
        )
    check_consistent_length(caller=caller, **{name: K, "y": labels})
    if classes is None:
        classes = np.unique(labels)
    else:
        classes = np.asarray(to_numpy(classes))
        if classes.ndim != 1 or classes.size == 0:
            raise ValueError(
                f"{caller}: `classes` must be a non-empty 1-D sequence of labels, "
                f"got shape {classes.shape}; pass e.g. classes=[0, 1]."
            )
        if np.unique(classes).size != classes.size:
            raise ValueError(
                f"{caller}: `classes` lists a label more than once "
                f"({classes.tolist()!r}); pass each class once."
            )
    members = [np.flatnonzero(labels == c) for c in classes]
    empty = [
        c for c, rows in zip(classes.tolist(), members, strict=True) if not rows.size
    ]
    if empty:
        raise ValueError(
            f"{caller}: class{'es' if len(empty) > 1 else ''} "
            f"{', '.join(repr(c) for c in empty)} of `classes` "
            f"{'have' if len(empty) > 1 else 'has'} no sample in `y`, and every "
            f"class needs at least 1; drop {'them' if len(empty) > 1 else 'it'} "
            f"from `classes`, or pass samples of {'them' if len(empty) > 1 else 'it'}."
        )
    return classes, members


def _mutual_information(
    K: Any,
    y: Any,
    *,
    classes: Any,
    normalize: bool,
    base: float,
    max_combination_size: int | str | None,
    caller: str,
    name: str = "K",
) -> NTKMutualInformationResult:
    xp, device = namespace_and_device(K)
    classes, members = _class_members(K, y, classes, caller=caller, name=name)
    # JAX on the CPU: the blocks are decomposed by NumPy's LAPACK on JAX's
    # buffer, read in place, as they are (no padding to compiled shapes).
    view = host_view(K)
    work_xp, work_device = (
        (xp, device) if view is None else (array_namespace(view), None)
    )
    K = K if view is None else view
    if normalize:
        # The normalisation is entry-wise: normalising once normalises every block.
        K = cosine_normalized(K, work_xp, caller=caller, name=name)
    n_classes = len(classes)
    largest, _ = _combination_sizes(n_classes, max_combination_size, caller)
    labels = classes.tolist()
    combos = [
        combo
        for size in range(1, largest + 1)
        for combo in itertools.combinations(range(n_classes), size)
    ]
    blocks = [np.sort(np.concatenate([members[j] for j in combo])) for combo in combos]
    nats, clipped = block_entropies_nats(K, blocks, work_xp, work_device)
    undefined = np.flatnonzero(np.isnan(nats))
    if undefined.size:
        combo = combos[undefined[0]]
        raise ValueError(
            f"{caller}: the block of classes {tuple(labels[j] for j in combo)!r} "
            f"has no positive eigenvalue above rounding ({blocks[undefined[0]].size} "
            f"eigenvalues, {clipped[undefined[0]]} negative), so its entropy is "
            f"undefined. An NTK is positive semi-definite: a zero NTK means no "
            f"trainable parameter moves the outputs on these samples, a negative "
            f"one a sign error; check the model, its trainable parameters, the "
            f"inputs and how the matrix was computed."
        )
    entropies = nats / math.log(base)
    combinations = [tuple(labels[j] for j in combo) for combo in combos]
    pair_entropy = {
        combo: float(value)
        for combo, value in zip(combos, entropies, strict=True)
        if len(combo) <= 2
    }
    mi = np.empty((n_classes, n_classes))
    nmi = np.empty((n_classes, n_classes))
    # Two rank-one blocks have S_A + S_B = 0 exactly, but rounding leaves
    # ~1e-15 there, which would turn 2 I / (S_A + S_B) into -1e15.
    zero = 1000 * float(xp.finfo(K.dtype).eps) / math.log(base)
    for a in range(n_classes):
        mi[a, a] = pair_entropy[(a,)]
        nmi[a, a] = 1.0
        for b in range(a + 1, n_classes):
            s_a, s_b = pair_entropy[(a,)], pair_entropy[(b,)]
            mi[a, b] = mi[b, a] = s_a + s_b - pair_entropy[(a, b)]
            total = s_a + s_b
            nmi[a, b] = nmi[b, a] = 2.0 * mi[a, b] / total if total > zero else math.nan
    wide = float_dtype(xp, device)
    return NTKMutualInformationResult(
        asarray(mi, xp=xp, device=device, dtype=wide),
        asarray(nmi, xp=xp, device=device, dtype=wide),
        asarray(entropies, xp=xp, device=device, dtype=wide),
        combinations,
        classes,
        asarray(clipped, xp=xp, device=device),
    )


def ntk_mutual_information(
    K: Any,
    y: Any,
    *,
    classes: Any = None,
    normalize: bool = False,
    base: float = 2,
    max_combination_size: int | str | None = "auto",
) -> NTKMutualInformationResult:
    """Mutual information between classes from the entropies of NTK blocks.

    For classes A and B, ``I(A; B) = S(K_AA) + S(K_BB) - S(K_(A u B))`` with
    ``S`` the von Neumann entropy of :func:`ntk_entropy`, each block
    normalised by its own trace (its eigenvalues by their sum), and the
    normalised ``2 I(A; B) / (S_A + S_B)``. The entropies of the combinations
    of classes are computed in :func:`itertools.combinations` order, sizes
    from 1 up: ZnNL computes all ``2^c - 1`` of them for c classes (1,023
    eigendecompositions for 10 classes), which `max_combination_size` bounds;
    the matrices need only sizes 1 and 2.

    Parameters
    ----------
    K : array of shape (n, n)
        The kernel matrix (an NTK in "mean" or "sum" mode: one row per
        sample). For a "full" NTK (one row per sample and output, sample-major)
        pass ``y`` repeated per output, ``numpy.repeat(y, k)``.
    y : array of shape (n,)
        The class label of each row of `K` (any library; used on the host).
    classes : sequence, optional
        The classes to compare, in the order of the matrices' rows; rows of
        other classes are left out. By default every label of `y`, sorted.
        Every class needs at least one sample.
    normalize : bool, default=False
        Cosine-normalise `K` first (see :func:`ntk_entropy`).
    base : float, default=2
        Logarithm base (2: bits, ``math.e``: nats).
    max_combination_size : int, "auto" or None, default="auto"
        The largest combination of classes whose entropy is computed (at
        least 2). "auto": all sizes while that is at most
        ``AUTO_MAX_COMBINATIONS`` (255) blocks (all of them up to 8 classes),
        else the largest size that stays within it (pairs always), with a
        ``UserWarning`` that says how many were skipped. None: all sizes.
        A request for more than ``MAX_COMBINATIONS`` (65,536) blocks of
        three or more classes is refused.

    Returns
    -------
    NTKMutualInformationResult
        ``(mutual_information, normalized_mutual_information, entropies,
        combinations, classes, n_clipped)``: the arrays in `K`'s library and
        on its device (the entropies in its widest float dtype, `n_clipped`
        as integers); `combinations` a list of tuples of labels; `classes` a
        NumPy array.

    Notes
    -----
    For two classes whose gradients are orthogonal (a block-diagonal K) the
    union's spectrum is the two blocks' spectra, weighted by their traces
    ``t_A`` and ``t_B``; ``S_(A u B) = w_A S_A + w_B S_B + H(w)`` with
    ``w = t / (t_A + t_B)``, so ``I = (1 - w_A) S_A + (1 - w_B) S_B - H(w)``:
    with equal traces ``I = (S_A + S_B) / 2 - 1`` bit, negative when the
    blocks' own entropies are small (two rank-one blocks give -1 bit) and
    growing with them. The measure is not Shannon mutual information and is
    not bounded below by 0.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import ntk_mutual_information
    >>> J = np.random.default_rng(0).standard_normal((6, 4))
    >>> y = np.array([0, 0, 1, 1, 2, 2])
    >>> result = ntk_mutual_information(J @ J.T, y)
    >>> result.combinations
    [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    >>> result.mutual_information.shape, np.diag(result.normalized_mutual_information)
    ((3, 3), array([1., 1., 1.]))
    """
    caller = "ntk_mutual_information"
    check_params(
        caller,
        _MI_PARAMETERS,
        normalize=normalize,
        base=base,
        max_combination_size=max_combination_size,
    )
    K = check_kernel_matrix(K, caller=caller)
    return _mutual_information(
        K,
        y,
        classes=classes,
        normalize=normalize,
        base=base,
        max_combination_size=max_combination_size,
        caller=caller,
    )


class NTKMutualInformation(_KernelEstimatorMixin, InfoscopeEstimator):
    """Mutual information between classes from the entropies of NTK blocks.

    ``fit(K, y)`` computes :func:`ntk_mutual_information`: the entropy of the
    block of every class and every union of classes, and the classes x
    classes matrices ``I(A; B) = S_A + S_B - S_(A u B)`` and
    ``2 I / (S_A + S_B)``.

    Parameters
    ----------
    kernel : "precomputed" or callable, default="precomputed"
        As in :class:`NTKEntropy`.
    normalize : bool, default=False
        Cosine-normalise the kernel first.
    base : float, default=2
        Logarithm base (2: bits, ``math.e``: nats).
    max_combination_size : int, "auto" or None, default="auto"
        As in :func:`ntk_mutual_information`: "auto" computes every
        combination up to 8 classes and bounds the work above (with a
        warning); None all ``2^c - 1``.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The classes, in the order of the matrices' rows.
    combinations_ : list of tuple
        Every class and every union of classes whose entropy was computed
        (sizes 1 to `max_combination_size`), as tuples of labels, in
        :func:`itertools.combinations` order.
    entropies_ : array of shape (n_combinations,)
        The entropy of each combination's block, in `base`.
    mutual_information_ : array of shape (n_classes, n_classes)
        ``I(A; B)``; the diagonal holds ``S_A``.
    normalized_mutual_information_ : array of shape (n_classes, n_classes)
        ``2 I(A; B) / (S_A + S_B)``; 1 on the diagonal, NaN where
        ``S_A + S_B`` is 0 up to rounding, 1000 eps of K's dtype (two
        one-sample or rank-one classes).
    n_clipped_ : array of int, shape (n_combinations,)
        Negative eigenvalues clipped in each block.
    n_features_in_ : int
        As in :class:`NTKEntropy`.

    The arrays but ``classes_`` live in the kernel matrix's library and on
    its device.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import NTKMutualInformation
    >>> J = np.random.default_rng(0).standard_normal((8, 5))
    >>> y = np.array(["a", "a", "a", "b", "b", "b", "c", "c"])
    >>> mi = NTKMutualInformation().fit(J @ J.T, y, classes=["a", "b"])
    >>> mi.combinations_
    [('a',), ('b',), ('a', 'b')]
    >>> bool(mi.mutual_information_[0, 1] == mi.mutual_information_[1, 0])
    True
    """

    _parameter_constraints = {**KERNEL_PARAMETER, **_MI_PARAMETERS}
    _min_samples = 1

    def __init__(
        self,
        *,
        kernel="precomputed",
        normalize=False,
        base=2,
        max_combination_size="auto",
    ):
        self.kernel = kernel
        self.normalize = normalize
        self.base = base
        self.max_combination_size = max_combination_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y, classes=None):
        """Compute the entropies of the class blocks and the mutual information.

        Parameters
        ----------
        X : array of shape (n, n), or the inputs of `kernel`
            The kernel matrix (``kernel="precomputed"``), or the n samples
            whose kernel matrix the `kernel` callable computes.
        y : array of shape (n,)
            Class labels, one per row of the kernel matrix.
        classes : sequence, optional
            The classes to compare (default: all labels of `y`, sorted).

        Returns
        -------
        self : NTKMutualInformation
        """
        self._validate_params()
        caller = type(self).__name__
        if y is None:
            check_targets(y, caller=caller)  # the ValueError scikit-learn expects
        K = self._fit_kernel(X)
        result = _mutual_information(
            K,
            y,
            classes=classes,
            normalize=self.normalize,
            base=self.base,
            max_combination_size=self.max_combination_size,
            caller=caller,
            name=self._kernel_name(),
        )
        self.classes_ = result.classes
        self.combinations_ = result.combinations
        self.entropies_ = result.entropies
        self.mutual_information_ = result.mutual_information
        self.normalized_mutual_information_ = result.normalized_mutual_information
        self.n_clipped_ = result.n_clipped
        return self
