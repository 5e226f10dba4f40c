"""Element-wise operations in place, where the library allows it."""

from __future__ import annotations

from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = ["exp_inplace"]


def exp_inplace(x: Any, /) -> Any:
    """``exp(x)``, written over `x` where the library allows; returns the result.

    The array API has no ``out=``: NumPy, CuPy and PyTorch write in place
    (an n x n kernel then needs no second n x n array), JAX and the others
    return a new array.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import exp_inplace
    >>> x = np.zeros(2)
    >>> exp_inplace(x) is x, x
    (True, array([1., 1.]))
    """
    if compat.is_numpy_array(x) and x.flags.writeable:
        return np.exp(x, out=x)
    if compat.is_torch_array(x) and not x.requires_grad:
        return x.exp_()
    if compat.is_cupy_array(x):
        import cupy

        return cupy.exp(x, out=x)
    return compat.array_namespace(x).exp(x)
