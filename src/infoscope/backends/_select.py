"""Order statistics without a full sort."""

from __future__ import annotations

from typing import Any

import array_api_compat as compat
import numpy as np

from ._convert import to_numpy
from ._namespace import namespace_and_device

__all__ = ["off_diagonal_middle", "order_statistics"]


def order_statistics(x: Any, ranks: tuple[int, ...], /) -> list[float]:
    """The values of ranks `ranks` (0 = smallest) of the 1-D array `x`.

    Arrays in host memory (NumPy, array-api-strict, PyTorch and JAX on the
    CPU) are selected by NumPy's ``partition`` on a host view, in O(n); CuPy
    uses its own ``partition``, PyTorch on a GPU ``kthvalue``, anything else a
    sort. The median of the n^2 / 2 pairwise distances of the bandwidth
    heuristic is the use: a sort there costs more than the Gram matrix itself.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import order_statistics
    >>> order_statistics(np.array([5.0, 1.0, 4.0, 2.0]), (1, 2))
    [2.0, 4.0]
    """
    xp, _ = namespace_and_device(x, names=("x",))
    if _in_host_memory(x, xp):
        chosen = np.array(to_numpy(x))  # a copy: partition works in place
        chosen.partition(list(ranks))
        return [float(chosen[r]) for r in ranks]
    if compat.is_cupy_namespace(xp):
        chosen = x.copy()
        chosen.partition(list(ranks))
        return [float(chosen[r]) for r in ranks]
    if compat.is_torch_namespace(xp):
        return [float(x.kthvalue(r + 1).values) for r in ranks]
    ordered = xp.sort(x)
    return [float(ordered[r]) for r in ranks]


def _in_host_memory(x: Any, xp: Any) -> bool:
    if compat.is_numpy_namespace(xp) or compat.is_array_api_strict_namespace(xp):
        return True
    if compat.is_torch_namespace(xp):
        return x.device.type == "cpu"
    if compat.is_jax_namespace(xp):
        return all(device.platform == "cpu" for device in x.devices())
    return False


def off_diagonal_middle(D2: Any, /) -> tuple[float, float]:
    """The two middle values of the strict upper triangle of the (n, n) `D2`.

    `D2` is a symmetric matrix with a zero diagonal and no negative entry
    (squared distances); the median of its ``m = n (n - 1) / 2`` pairs is the
    mean of the two (equal when m is odd). In host memory the upper triangle
    is gathered and partitioned; elsewhere the flattened matrix is used as it
    is: it holds the n zeros of the diagonal, its smallest values, and every
    pair twice, so the pairs' middle values sit at ranks n + m - 1 and n + m.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import off_diagonal_middle
    >>> D2 = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 9.0], [4.0, 9.0, 0.0]])
    >>> off_diagonal_middle(D2)  # the pairs 1, 4, 9
    (4.0, 4.0)
    """
    xp, _ = namespace_and_device(D2, names=("D2",))
    n = D2.shape[0]
    m = n * (n - 1) // 2
    if _in_host_memory(D2, xp):
        host = to_numpy(D2)
        i = np.arange(n)
        pairs = host[i[:, None] < i[None, :]]  # a new array: partition in place
        pairs.partition([(m - 1) // 2, m // 2])
        return float(pairs[(m - 1) // 2]), float(pairs[m // 2])
    low, high = order_statistics(xp.reshape(D2, (-1,)), (n + m - 1, n + m))
    return low, high
