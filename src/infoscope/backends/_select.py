"""Order statistics without a full sort, where the library has a selection."""

from __future__ import annotations

from typing import Any

import array_api_compat as compat

from ._namespace import namespace_and_device

__all__ = ["order_statistics"]


def order_statistics(x: Any, ranks: tuple[int, ...], /) -> list[float]:
    """The values of ranks `ranks` (0 = smallest) of the 1-D array `x`.

    NumPy and CuPy select with ``partition`` and PyTorch with ``kthvalue``, in
    O(n); other libraries sort. The median of the n^2 / 2 pairwise distances
    of the bandwidth heuristic is the use: a sort there costs more than the
    Gram matrix itself.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import order_statistics
    >>> order_statistics(np.array([5.0, 1.0, 4.0, 2.0]), (1, 2))
    [2.0, 4.0]
    """
    xp, _ = namespace_and_device(x, names=("x",))
    if compat.is_numpy_namespace(xp) or compat.is_cupy_namespace(xp):
        # array-api-compat's NumPy and CuPy namespaces wrap, not re-export,
        # partition: the array's own method is the library's.
        chosen = x.copy()
        chosen.partition(list(ranks))
        return [float(chosen[r]) for r in ranks]
    if compat.is_torch_namespace(xp):
        return [float(x.kthvalue(r + 1).values) for r in ranks]
    ordered = xp.sort(x)
    return [float(ordered[r]) for r in ranks]
