"""Which array library and which device a set of arrays lives on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = [
    "compiled",
    "device_name",
    "is_array",
    "namespace_and_device",
    "namespace_name",
    "synchronize",
]

# Predicates in the order they are tried: the first that matches names the library.
_LIBRARIES = (
    ("numpy", compat.is_numpy_namespace),
    ("array_api_strict", compat.is_array_api_strict_namespace),
    ("torch", compat.is_torch_namespace),
    ("jax", compat.is_jax_namespace),
    ("cupy", compat.is_cupy_namespace),
    ("dask", compat.is_dask_namespace),
)


def is_array(obj: Any) -> bool:
    """Whether `obj` is an array of a library infoscope dispatches on.

    Lists, tuples, scalars (NumPy scalars included), pandas objects and SciPy
    sparse matrices are not: they are "array-likes" that follow the namespace
    and device of the arrays they are passed with (NumPy when there are none).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import is_array
    >>> is_array(np.ones(3)), is_array([1.0, 2.0]), is_array(np.float64(1.0))
    (True, False, False)
    """
    return compat.is_array_api_obj(obj) and not isinstance(obj, np.generic)


def namespace_name(xp: ModuleType) -> str:
    """The short name of an array namespace.

    One of ``"numpy"``, ``"array_api_strict"``, ``"torch"``, ``"jax"``,
    ``"cupy"``, ``"dask"``, or the namespace's module name for any other
    library that implements the array API standard.

    Examples
    --------
    >>> import numpy as np, array_api_compat
    >>> from infoscope.backends import namespace_name
    >>> namespace_name(array_api_compat.array_namespace(np.ones(2)))
    'numpy'
    """
    for name, predicate in _LIBRARIES:
        if predicate(xp):
            return name
    return xp.__name__


def device_name(device: Any) -> str:
    """A stable, readable name for a device object (``"cpu"``, ``"cuda:0"``, ...).

    Examples
    --------
    >>> import numpy as np, array_api_compat
    >>> from infoscope.backends import device_name
    >>> device_name(array_api_compat.device(np.ones(2)))
    'cpu'
    """
    text = str(device)
    # array-api-strict prints its devices as Device('CPU_DEVICE').
    if text.startswith("array_api_strict.Device("):
        text = text[len("array_api_strict.Device(") : -1].strip("'\"")
    return text


def namespace_and_device(
    *arrays: Any, names: tuple[str, ...] | None = None
) -> tuple[ModuleType, Any]:
    """The array namespace and device shared by `arrays`.

    ``None`` and array-likes that belong to no library (lists, scalars,
    pandas objects) are ignored: they follow the arrays. With no array at
    all the answer is NumPy on the CPU.

    Parameters
    ----------
    *arrays : array or array-like or None
        The inputs of one call.
    names : tuple of str, optional
        The argument names of `arrays`, used in the error message.

    Returns
    -------
    xp : module
        The array-API-compatible namespace (``array_api_compat``'s wrapper
        for NumPy, CuPy and PyTorch; ``jax.numpy``; ``array_api_strict``).
    device : object
        The device all arrays are on.

    Raises
    ------
    ValueError
        If the arrays come from different libraries or lie on different
        devices; the message names both.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import namespace_and_device
    >>> xp, device = namespace_and_device(np.ones((3, 2)), None, [0, 1, 2])
    >>> xp.__name__, device
    ('array_api_compat.numpy', 'cpu')
    """
    if names is None:
        names = tuple(f"argument {i}" for i in range(len(arrays)))
    elif len(names) != len(arrays):
        raise ValueError(f"got {len(arrays)} arrays but {len(names)} names")

    first: tuple[str, ModuleType, Any, str] | None = None
    for name, array in zip(names, arrays, strict=True):
        if array is None or not is_array(array):
            continue
        xp = compat.array_namespace(array)
        device = compat.device(array)
        here = (name, xp, device, namespace_name(xp))
        if first is None:
            first = here
            continue
        if here[3] != first[3]:
            raise ValueError(
                f"`{first[0]}` is a {first[3]} array but `{name}` is a {here[3]} "
                f"array; infoscope computes on one library at a time. Convert "
                f"`{name}` to {first[3]} (or `{first[0]}` to {here[3]}) first."
            )
        if device_name(device) != device_name(first[2]):
            raise ValueError(
                f"`{first[0]}` is on device {device_name(first[2])!r} but "
                f"`{name}` is on device {device_name(device)!r}; move both to "
                f"one device first."
            )
    if first is None:
        xp = compat.array_namespace(np.empty(0))
        return xp, compat.device(np.empty(0))
    return first[1], first[2]


def refuse_dask(xp: ModuleType, operation: str) -> None:
    """Raise a clear TypeError if `xp` is dask: `operation` is no sum over chunks.

    Dask arrays are supported where a computation streams over samples; a
    full eigendecomposition or a nearest-neighbour search does not.
    """
    if compat.is_dask_namespace(xp):
        raise TypeError(
            f"{operation} does not run on dask arrays: it is not a sum over "
            "chunks of samples. Call .compute() first, or use a method that "
            "streams."
        )


def synchronize(x: Any) -> Any:
    """Wait until the computation producing `x` has finished; return `x`.

    GPU libraries and JAX run asynchronously: time a computation only after
    synchronising on its result. A no-op for NumPy and other eager CPU
    libraries.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import synchronize
    >>> synchronize(np.ones(2))
    array([1., 1.])
    """
    if compat.is_jax_array(x):
        x.block_until_ready()
    elif compat.is_torch_array(x):
        if x.device.type == "cuda":
            import torch

            torch.cuda.synchronize(x.device)
    elif compat.is_cupy_array(x):
        x.device.synchronize()
    return x


def compiled(
    fn: Callable[..., Any], xp: ModuleType, *, static_argnames: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """`fn` compiled with ``jax.jit`` when `xp` is JAX, else `fn` itself.

    Eager JAX compiles every primitive for every new shape; a kernel of many
    small operations is much faster compiled whole. `fn` must take arrays and
    the hashable `static_argnames` only, and have shapes that do not depend on
    values.

    Examples
    --------
    >>> import numpy as np, array_api_compat
    >>> from infoscope.backends import compiled
    >>> def double(x):
    ...     return 2 * x
    >>> compiled(double, array_api_compat.array_namespace(np.ones(1))) is double
    True
    """
    if not compat.is_jax_namespace(xp):
        return fn
    return _jitted(fn, static_argnames)


@functools.cache
def _jitted(
    fn: Callable[..., Any], static_argnames: tuple[str, ...]
) -> Callable[..., Any]:
    import jax

    return jax.jit(fn, static_argnames=static_argnames)
