"""What every infoscope estimator shares: input validation and scikit-learn glue.

The validation functions are also called by the public functions, with the
function's name as `caller`, so a bad input gets the same message whether it
comes through ``infoscope.hsic(...)`` or ``infoscope.HSIC().fit(...)``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, ClassVar

import array_api_compat as compat
import numpy as np
from sklearn.base import BaseEstimator

# scikit-learn's constraint objects are private API: imported here, once, so a
# change in scikit-learn is mended in one place.
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from ..backends import (
    as_float,
    check_memory,
    compiled,
    device_name,
    host_view,
    is_array,
    itemsize,
    namespace_and_device,
    namespace_name,
)
from ..backends._memory import largest_square_that_fits

__all__ = [
    "BASE",
    "BATCH_SIZE",
    "RANDOM_STATE",
    "InfoscopeEstimator",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "check_array",
    "check_consistent_length",
    "check_finite",
    "check_finite_result",
    "check_inputs",
    "check_params",
    "check_square_arrays_fit",
    "check_targets",
    "is_sparse",
    "samples_text",
]

#: The constraints of the parameters that several functions and estimators
#: share, written once (scikit-learn's constraint objects): every function
#: and estimator refuses a bad value with the same InvalidParameterError
#: (a ValueError and a TypeError), naming itself and the parameter.
BASE = [Interval(Real, 1, None, closed="neither")]
BATCH_SIZE = [Interval(Integral, 1, None, closed="left"), None]
RANDOM_STATE = ["random_state"]


def check_params(caller: str, constraints: dict[str, list[Any]], **values: Any) -> None:
    """Validate a function's parameters as its estimator's are validated.

    Examples
    --------
    >>> from infoscope.estimators._base import BATCH_SIZE, check_params
    >>> check_params("demo", {"batch_size": BATCH_SIZE}, batch_size=0)
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'batch_size' \
parameter of demo must be an int in the range [1, inf) or None. Got 0 instead.
    """
    validate_parameter_constraints(
        {name: constraints[name] for name in values}, values, caller_name=caller
    )


def is_sparse(x: Any) -> bool:
    """Whether `x` is a SciPy sparse matrix or array, or a sparse torch tensor."""
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


def samples_text(n: int) -> str:
    """ "1 sample", "2 samples": for messages."""
    return f"{n} sample" + ("" if n == 1 else "s")


def _plain(X: Any, caller: str, name: str) -> Any:
    """`X` without what no measure can use: no data (meta tensors), masks.

    NumPy subclasses (masked arrays without masked values, matrices) become
    plain arrays, whose arithmetic is element-wise.
    """
    if compat.is_torch_array(X) and X.device.type == "meta":
        raise ValueError(
            f"{caller}: `{name}` is a meta tensor, which has a shape but no "
            f"values; pass a tensor with data (on the CPU or a GPU), e.g. "
            f"after loading the model's weights or running it on real inputs."
        )
    if isinstance(X, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(X))
        if masked:
            raise ValueError(
                f"{caller}: `{name}` has {masked} masked value(s); measures need "
                f"every value: drop the samples that hold them or fill them "
                f"({name}.filled(value)) first."
            )
        return np.asarray(X.data)
    if isinstance(X, np.ndarray) and type(X) is not np.ndarray:
        return np.asarray(X)
    return X


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
    if is_sparse(X):
        raise TypeError(
            f"{caller}: `{name}` is a sparse matrix, and sparse input is not "
            f"supported; pass a dense array ({name}.toarray() or "
            f"{name}.to_dense())."
        )
    X = _plain(X, caller, name)
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
            f"{caller}: `{name}` has {samples_text(n_samples)} but the measure needs "
            f"at least {min_samples}; pass more samples."
        )
    if n_features == 0:
        raise ValueError(
            f"{caller}: `{name}` has 0 feature(s) (shape=({n_samples}, 0)) while "
            f"a minimum of 1 is required; pass at least one feature."
        )
    X = as_float(X, xp=xp)
    check_finite(X, caller=caller, name=name)
    return X


def _sum_is_finite(X: Any) -> Any:
    xp = compat.array_namespace(X)
    return xp.isfinite(xp.sum(X))


def check_finite(X: Any, *, caller: str, name: str) -> None:
    """Raise a ValueError naming `caller` and `name` if `X` holds NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_finite
    >>> check_finite(np.array([1.0, np.inf]), caller="demo", name="X")
    Traceback (most recent call last):
    ...
    ValueError: demo: `X` contains NaN or infinity (1 of 2 values); remove or \
impute those samples first.
    """
    xp, _ = namespace_and_device(X)
    # One reduction decides the common case; the count (a mask as large as X)
    # is paid only when the sum is not finite, which a large but finite X can
    # also cause, so the count is what raises.
    view = host_view(X)
    if view is not None:
        if np.isfinite(np.sum(view)):
            return
    elif bool(compiled(_sum_is_finite, xp)(X)):
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
    if is_sparse(y):
        raise TypeError(
            f"{caller}: `{name}` is sparse, and sparse input is not supported; "
            f"pass a dense array."
        )
    y = _plain(y, caller, name)
    if not is_array(y):
        y = np.asarray(y)
    if isinstance(y, np.ndarray) and y.dtype.kind == "O":
        y = _unbox(y)
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
        check_finite(y, caller=caller, name=name)
    return y


def _unbox(y: np.ndarray) -> np.ndarray:
    """An object array (a pandas object Series) as the dtype its values have.

    Integers held as Python objects are class labels as much as an int64
    array is; NumPy infers the dtype from the values themselves. Mixed values
    stay objects.
    """
    try:
        values = np.array(y.tolist())
    except (TypeError, ValueError):
        return y
    if values.shape != y.shape or values.dtype.kind not in "biufUS":
        return y
    return values


def check_inputs(X: Any, *, caller: str, name: str = "X", min_samples: int = 1) -> Any:
    """Inputs of a model or kernel callable: checked, not flattened or cast.

    A kernel may take images, sequences or token ids, so `X` keeps its shape
    and dtype: it needs a sample axis and at least one more axis, no complex
    values, and no NaN or infinity in floating data. Array-likes become NumPy
    arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_inputs
    >>> check_inputs(np.zeros((4, 2, 3), dtype=np.int64), caller="demo").shape
    (4, 2, 3)
    """
    if X is None or is_sparse(X):
        check_array(X, caller=caller, name=name)  # raises its TypeError
    X = _plain(X, caller, name)
    if not is_array(X) or (isinstance(X, np.ndarray) and X.dtype.kind in "OUSV"):
        X = _to_numeric_numpy(X, caller, name)
    xp, _ = namespace_and_device(X, names=(name,))
    if xp.isdtype(X.dtype, "complex floating"):
        raise ValueError(
            f"{caller}: Complex data not supported in `{name}` (dtype {X.dtype}); "
            f"pass the inputs the kernel's model takes."
        )
    if X.ndim < 2:
        raise ValueError(
            f"{caller}: `{name}` must have a sample axis and at least one feature "
            f"axis (n_samples, ...), got a {X.ndim}-D array of shape "
            f"{tuple(X.shape)}. Reshape your data: {name}.reshape(-1, 1) for one "
            f"feature, {name}.reshape(1, -1) for one sample."
        )
    n = X.shape[0]
    if n < min_samples:
        raise ValueError(
            f"{caller}: `{name}` has {samples_text(n)} but the measure needs at "
            f"least {min_samples}; pass more samples."
        )
    if math.prod(X.shape[1:]) == 0:
        raise ValueError(
            f"{caller}: `{name}` has 0 feature(s) (shape={tuple(X.shape)}) while a "
            f"minimum of 1 is required; pass at least one feature."
        )
    if xp.isdtype(X.dtype, "real floating"):
        check_finite(X, caller=caller, name=name)
    return X


def check_finite_result(value: float, *, caller: str, what: str, fix: str) -> float:
    """`value` if finite; else the error that a computation overflowed.

    Inputs are checked finite on entry, so a NaN or infinity in a result was
    made by the arithmetic (an overflow, or a kernel callable's own values):
    it is an error, never a result.

    Examples
    --------
    >>> from infoscope.estimators._base import check_finite_result
    >>> check_finite_result(float("inf"), caller="demo", what="HSIC",
    ...                     fix="rescale X")
    Traceback (most recent call last):
    ...
    ValueError: demo: HSIC is inf, out of the range of floating point numbers \
(an overflow inside the computation); rescale X.
    """
    if math.isfinite(value):
        return value
    raise ValueError(
        f"{caller}: {what} is {value}, out of the range of floating point numbers "
        f"(an overflow inside the computation); {fix}."
    )


def check_square_arrays_fit(
    n: int,
    count: int,
    dtype: Any,
    *,
    xp: Any,
    device: Any,
    caller: str,
    advice: Any,
) -> None:
    """Refuse, before allocating, `count` n x n arrays of `dtype` that cannot fit.

    `advice(fits)` words the fix, given the largest n that would fit; it must
    name options `caller` has. Raises
    :class:`~infoscope.backends.MemoryLimitError` (a ValueError); nothing is
    checked where the free memory cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.estimators._base import check_square_arrays_fit
    >>> check_square_arrays_fit(10, 3, np.float64, xp=np, device="cpu",
    ...     caller="demo", advice=lambda fits: f"use at most {fits} samples")
    """
    size = itemsize(dtype)
    check_memory(
        count * n * n * size,
        xp=xp,
        device=device,
        caller=caller,
        what="the exact method",
        detail=f" for {n} samples ({count} {n} x {n} arrays)",
        advice=lambda free: advice(largest_square_that_fits(free, count, size)),
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
                f"{caller}: `{first_name}` has {samples_text(first.shape[0])} but "
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
