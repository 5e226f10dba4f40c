"""What every infoscope estimator shares: input validation and scikit-learn glue.

The validation functions are also called by the public functions, with the
function's name as `caller`, so a bad input gets the same message whether it
comes through ``infoscope.hsic(...)`` or ``infoscope.HSIC().fit(...)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

# scikit-learn's constraint objects are private API: imported here, once, so a
# change in scikit-learn is mended in one place.
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from ..backends import (
    as_float,
    available_memory,
    device_name,
    format_bytes,
    is_array,
    namespace_and_device,
    namespace_name,
)

__all__ = [
    "InfoscopeEstimator",
    "Interval",
    "Options",
    "StrOptions",
    "check_array",
    "check_consistent_length",
    "check_square_arrays_fit",
    "check_targets",
    "subsample_rows",
]


def _is_sparse(x: Any) -> bool:
    if hasattr(x, "tocsr") and hasattr(x, "nnz"):  # SciPy sparse matrix or array
        return True
    layout = getattr(x, "layout", None)  # torch.sparse_coo, sparse_csr, ...
    return layout is not None and "sparse" in str(layout)


def _to_numeric_numpy(x: Any, caller: str, name: str) -> np.ndarray:
    """Array-likes (lists, pandas, object arrays of numbers) as a numeric NumPy array.

    Strings are refused even when they spell numbers: activations that arrive
    as text have gone wrong upstream.
    """
    a = np.asarray(x)
    if a.dtype.kind in "USV":
        raise TypeError(
            f"{caller}: `{name}` holds strings or raw bytes (dtype {a.dtype}); "
            "pass an array of numbers."
        )
    if a.dtype.kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # TypeError, with NumPy's own words ("argument must be a string or a
            # real number") kept, as scikit-learn's conventions expect.
            raise TypeError(
                f"{caller}: `{name}` holds non-numeric values ({exc}); pass an "
                f"array of numbers."
            ) from None
    return a


def _samples(n: int) -> str:
    return f"{n} sample" + ("" if n == 1 else "s")


def check_array(
    X: Any,
    *,
    caller: str,
    name: str = "X",
    min_samples: int = 1,
    flatten: bool = True,
) -> Any:
    """`X` validated as a 2-D float array of its own namespace and device.

    Parameters
    ----------
    X : array or array-like
        Activations: one row per sample. Arrays of a supported library keep
        their namespace and device; array-likes become NumPy arrays.
    caller : str
        The estimator or function name, for the messages.
    name : str, default="X"
        The argument name, for the messages.
    min_samples : int, default=1
        The fewest samples the measure is defined for.
    flatten : bool, default=True
        Flatten arrays of more than two axes (convolutional feature maps) to
        one row per sample; if False, they are an error.

    Returns
    -------
    array of shape (n_samples, n_features)
        float32 or float64 as given; bools and integers promoted to the widest
        float of the device.

    Raises
    ------
    TypeError
        None, sparse, or non-numeric input.
    ValueError
        Complex values, fewer than two axes, too few samples, no features, NaN
        or infinity. Every message names `caller`, `name` and the fix.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_array
    >>> check_array(np.ones((4, 2, 3), dtype=np.int64), caller="demo").shape
    (4, 6)
    """
    if X is None:
        raise TypeError(
            f"{caller}: `{name}` is None; pass an array of shape "
            "(n_samples, n_features)."
        )
    if _is_sparse(X):
        raise TypeError(
            f"{caller}: `{name}` is a sparse matrix, and sparse input is not "
            f"supported; pass a dense array ({name}.toarray() or "
            f"{name}.to_dense())."
        )
    if not is_array(X):
        X = _to_numeric_numpy(X, caller, name)
    elif isinstance(X, np.ndarray) and X.dtype.kind in "OUSV":
        X = _to_numeric_numpy(X, caller, name)
    xp, _ = namespace_and_device(X, names=(name,))
    if xp.isdtype(X.dtype, "complex floating"):
        raise ValueError(
            f"{caller}: Complex data not supported in `{name}` (dtype {X.dtype}); "
            f"pass the real part, the modulus, or real and imaginary parts as "
            f"separate features."
        )
    if X.ndim < 2:
        raise ValueError(
            f"{caller}: `{name}` must be 2-D (n_samples, n_features), got a "
            f"{X.ndim}-D array of shape {tuple(X.shape)}. Reshape your data: "
            f"{name}.reshape(-1, 1) for one feature, {name}.reshape(1, -1) for "
            f"one sample."
        )
    if X.ndim > 2:
        if not flatten:
            raise ValueError(
                f"{caller}: `{name}` must be 2-D (n_samples, n_features), got "
                f"shape {tuple(X.shape)}; reshape it to one row per sample."
            )
        X = xp.reshape(X, (X.shape[0], -1))
    n_samples, n_features = X.shape
    if n_samples < min_samples:
        raise ValueError(
            f"{caller}: `{name}` has {_samples(n_samples)} but the measure needs "
            f"at least {min_samples}; pass more samples."
        )
    if n_features == 0:
        raise ValueError(
            f"{caller}: `{name}` has 0 feature(s) (shape=({n_samples}, 0)) while "
            f"a minimum of 1 is required; pass at least one feature."
        )
    X = as_float(X, xp=xp)
    _check_finite(X, xp, caller, name)
    return X


def _check_finite(X: Any, xp: Any, caller: str, name: str) -> None:
    # One reduction decides the common case; the count (a mask as large as X)
    # is paid only when the sum is not finite, which a large but finite X can
    # also cause, so the count is what raises.
    if bool(xp.isfinite(xp.sum(X))):
        return
    bad = int(xp.sum(xp.astype(~xp.isfinite(X), xp.int32)))
    if bad:
        total = int(np.prod(X.shape))
        raise ValueError(
            f"{caller}: `{name}` contains NaN or infinity ({bad} of {total} "
            f"values); remove or impute those samples first."
        )


def check_targets(
    y: Any, *, caller: str, name: str = "y", numeric: bool = False
) -> Any:
    """Labels or targets validated: 1-D or 2-D, no complex, no NaN or infinity.

    Class labels of any dtype are accepted as they are (strings stay a NumPy
    array); with ``numeric=True`` the targets must be numbers and are promoted
    to float like :func:`check_array` does. A 2-D single column stays 2-D.

    Examples
    --------
    >>> from infoscope.estimators._base import check_targets
    >>> check_targets(["cat", "dog"], caller="demo")
    array(['cat', 'dog'], dtype='<U3')
    """
    if y is None:
        # A ValueError with these words is what scikit-learn's checks expect.
        raise ValueError(
            f"{caller} requires y to be passed, but the target y is None; pass "
            f"one label per sample as `{name}`."
        )
    if _is_sparse(y):
        raise TypeError(
            f"{caller}: `{name}` is sparse, and sparse input is not supported; "
            f"pass a dense array."
        )
    if not is_array(y):
        y = np.asarray(y)
    if isinstance(y, np.ndarray) and y.dtype.kind in "OUSV":
        if numeric:
            y = _to_numeric_numpy(y, caller, name)
        else:
            if y.ndim not in (1, 2):
                raise ValueError(
                    f"{caller}: `{name}` must be 1-D or 2-D, got shape {y.shape}."
                )
            return y
    xp, _ = namespace_and_device(y, names=(name,))
    if xp.isdtype(y.dtype, "complex floating"):
        raise ValueError(
            f"{caller}: Complex data not supported in `{name}` (dtype {y.dtype})."
        )
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{caller}: `{name}` must be 1-D (one label per sample) or 2-D (one "
            f"row of targets per sample), got shape {tuple(y.shape)}."
        )
    if numeric:
        y = as_float(y, xp=xp)
    if xp.isdtype(y.dtype, "real floating"):
        _check_finite(y, xp, caller, name)
    return y


def check_square_arrays_fit(
    n: int,
    count: int,
    itemsize: int,
    *,
    xp: Any,
    device: Any,
    caller: str,
    advice: Any,
) -> None:
    """Refuse, before allocating, `count` n x n arrays that cannot fit on `device`.

    `advice(fits)` words the fix, given the largest n that would fit. Nothing
    is checked where the free memory cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_square_arrays_fit
    >>> check_square_arrays_fit(10, 3, 8, xp=np, device="cpu", caller="demo",
    ...                         advice=lambda fits: f"use at most {fits} samples")
    """
    needed = count * n * n * itemsize
    free = available_memory(xp, device)
    if free is None or needed <= free:
        return
    fits = math.isqrt(free // (count * itemsize))
    raise ValueError(
        f"{caller}: the exact method needs about {format_bytes(needed)} for {n} "
        f"samples ({count} {n} x {n} arrays), but only {format_bytes(free)} is "
        f"free on {device}. {advice(fits)}."
    )


def check_consistent_length(*, caller: str, **arrays: Any) -> None:
    """Raise if the named arrays do not all have the same number of samples.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_consistent_length
    >>> check_consistent_length(caller="demo", X=np.ones((3, 2)), y=np.ones(2))
    Traceback (most recent call last):
    ...
    ValueError: demo: `X` has 3 samples but `y` has 2; pass one row of `y` per
    sample of `X`.
    """
    items = [(k, v) for k, v in arrays.items() if v is not None]
    if not items:
        return
    first_name, first = items[0]
    for name, array in items[1:]:
        if array.shape[0] != first.shape[0]:
            raise ValueError(
                f"{caller}: `{first_name}` has {_samples(first.shape[0])} but "
                f"`{name}` has {array.shape[0]}; pass one row of `{name}` per "
                f"sample of `{first_name}`."
            )


class InfoscopeEstimator(BaseEstimator):
    """Base class of the infoscope estimators.

    Subclasses declare ``_parameter_constraints`` (scikit-learn's constraint
    objects) and start ``fit`` with ``self._validate_params()`` and
    ``self._validate_data(X, reset=True)``. Later calls use
    ``self._validate_data(X, reset=False)``, which also checks that `X` comes
    from the library, device and feature count seen in ``fit``.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}
    #: The fewest samples the estimator's measure is defined for.
    _min_samples: ClassVar[int] = 2

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.allow_nan = False
        tags.input_tags.three_d_array = True  # flattened per sample
        return tags

    def _validate_params(self) -> None:
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(deep=False),
            caller_name=type(self).__name__,
        )

    def _validate_data(
        self,
        X: Any,
        *,
        reset: bool,
        name: str = "X",
        min_samples: int | None = None,
        method: str = "transform",
    ) -> Any:
        """`X` checked by :func:`check_array`; records or checks its backend.

        `min_samples` defaults to ``_min_samples`` in ``fit`` (reset) and to 1
        afterwards, when a single row is a valid thing to transform. `method`
        names the calling method in the messages of later calls.
        """
        caller = type(self).__name__
        if not reset:
            check_is_fitted(self)
        if min_samples is None:
            min_samples = self._min_samples if reset else 1
        X = check_array(X, caller=caller, name=name, min_samples=min_samples)
        if reset:
            xp, device = namespace_and_device(X)
            self.n_features_in_ = X.shape[1]
            self._fit_backend = (namespace_name(xp), device_name(device))
            return X
        self._check_fit_backend(X, name=name, method=method)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but {caller} is expecting "
                f"{self.n_features_in_} features as input; pass the activations "
                f"of the layer it was fitted on."
            )
        return X

    def _check_fit_backend(self, X: Any, *, name: str, method: str) -> None:
        """Raise if `X` is not on the library and device seen in ``fit``."""
        xp, device = namespace_and_device(X)
        backend = (namespace_name(xp), device_name(device))
        if backend != self._fit_backend:
            fitted = "{} (device {!r})".format(*self._fit_backend)
            given = "{} (device {!r})".format(*backend)
            raise ValueError(
                f"{type(self).__name__}.{method}(): `{name}` must use the same "
                f"namespace and device as fit: fitted on {fitted}, got {given}. "
                f"Pass arrays of the same library and device, or fit again."
            )


def subsample_rows(X: Any, max_samples: int | None, rng: Any) -> tuple[Any, Any]:
    """`X` reduced to `max_samples` random rows, kept in their order.

    Returns `X` itself and None when it has no more rows than that; otherwise
    the subset and the NumPy indices of the rows kept, drawn from the NumPy
    Generator `rng` so that every backend keeps the same rows.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import subsample_rows
    >>> subsample_rows(np.arange(10.0)[:, None], 3, np.random.default_rng(0))[1]
    array([5, 6, 9])
    """
    if max_samples is None or X.shape[0] <= max_samples:
        return X, None
    xp, device = namespace_and_device(X)
    rows = np.sort(rng.choice(X.shape[0], size=max_samples, replace=False))
    return xp.take(X, xp.asarray(rows, device=device), axis=0), rows
