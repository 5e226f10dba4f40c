"""Moving arrays between libraries: to NumPy, and from array-likes onto a device."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat as compat
import numpy as np

from ._dtype import supports_float64
from ._namespace import is_array

__all__ = [
    "asarray",
    "asarrays",
    "foreign_host_view",
    "host_view",
    "host_views",
    "private_copy",
    "to_numpy",
]


def to_numpy(x: Any, /) -> np.ndarray:
    """A NumPy copy (or view, where possible) of `x`, from any supported library.

    Detaches PyTorch tensors from the autograd graph, copies GPU arrays to the
    host and computes dask arrays. Array-likes (lists, pandas objects) go
    through :func:`numpy.asarray`.

    Examples
    --------
    >>> import array_api_strict as xps
    >>> from infoscope.backends import to_numpy
    >>> to_numpy(xps.asarray([1.0, 2.0]))
    array([1., 2.])
    """
    if isinstance(x, np.ndarray):
        return x
    if not is_array(x):
        return np.asarray(x)
    if compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if compat.is_cupy_array(x):
        return x.get()
    if compat.is_dask_array(x):
        return np.asarray(x.compute())
    if compat.is_jax_array(x):
        return np.asarray(x)
    if compat.is_array_api_strict_namespace(compat.array_namespace(x)):
        # Only its CPU device converts; the others model accelerators.
        import array_api_strict

        cpu = array_api_strict.Device("CPU_DEVICE")
        return np.from_dlpack(x.to_device(cpu))
    return np.from_dlpack(compat.to_device(x, "cpu"))


def host_view(x: Any, /) -> np.ndarray | None:
    """A read-only NumPy array on `x`'s own memory, or None.

    For NumPy arrays and JAX arrays on the CPU, whose buffers NumPy reads in
    place (no copy). Small reductions of such arrays (sums, moments, tall
    Grams) are faster through NumPy: JAX pays 10 to 100 microseconds to
    dispatch each operation, and XLA's CPU matrix products run two to four
    times slower than NumPy's BLAS (500 x 32 and 2,000 x 64 Grams, float32
    and float64). None for every other library and device, and for JAX
    values being traced (inside ``jax.jit``).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import host_view
    >>> host_view(np.ones(2))
    array([1., 1.])
    """
    if isinstance(x, np.ndarray):
        return x
    if compat.is_jax_array(x):
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
        if all(d.platform == "cpu" for d in x.devices()):
            return np.asarray(x)
    return None


def foreign_host_view(x: Any, /) -> np.ndarray | None:
    """:func:`host_view` of an array that is not NumPy's own, else None.

    What a computation switches to when it hands a JAX CPU array to NumPy;
    a NumPy array needs no switch (None), nor can other libraries' arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import foreign_host_view
    >>> foreign_host_view(np.ones(2)) is None
    True
    """
    return None if isinstance(x, np.ndarray) else host_view(x)


def host_views(*arrays: Any) -> tuple[np.ndarray, ...] | None:
    """:func:`host_view` of every one of `arrays`, or None if one has none.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import host_views
    >>> host_views(np.ones(1), np.zeros(1))
    (array([1.]), array([0.]))
    """
    views = tuple(host_view(a) for a in arrays)
    return None if any(v is None for v in views) else views


def private_copy(x: Any, /) -> Any:
    """A copy of `x` that no later in-place write to `x` can change.

    JAX arrays are immutable: they are returned as they are, without the
    cost of an eager copy.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import private_copy
    >>> a = np.zeros(2)
    >>> b = private_copy(a)
    >>> a[0] = 1.0
    >>> b
    array([0., 0.])
    """
    if compat.is_jax_array(x):
        return x
    xp = compat.array_namespace(x)
    return xp.asarray(x, copy=True)


def asarray(x: Any, /, *, xp: ModuleType, device: Any = None, dtype: Any = None) -> Any:
    """`x` as an array of namespace `xp` on `device`.

    Arrays already in `xp` stay where they are unless `device` differs;
    array-likes are converted through NumPy first, so pandas objects and
    nested lists work for every library. Without an explicit `dtype`, float64
    array-likes become float32 on devices without float64 (JAX without x64
    does the same), since they cannot be held there at all.

    Examples
    --------
    >>> import array_api_strict as xps
    >>> from infoscope.backends import asarray
    >>> asarray([[1, 2], [3, 4]], xp=xps).shape
    (2, 2)
    """
    if not is_array(x):
        x = np.asarray(x)
        if dtype is None and x.dtype == np.float64 and not supports_float64(xp, device):
            dtype = xp.float32
    if isinstance(x, np.ndarray) and compat.is_jax_namespace(xp):
        # jax.numpy.asarray compiles a conversion for every new shape;
        # device_put copies without compiling anything.
        import jax

        x = x.astype(jax.dtypes.canonicalize_dtype(dtype or x.dtype), copy=False)
        return jax.device_put(x, _jax_placement(device, x.shape))
    return xp.asarray(x, device=device, dtype=dtype)


def _jax_placement(device: Any, shape: tuple[int, ...]) -> Any:
    """Where a host result of `shape` goes for an input placed on `device`.

    `device` itself, unless it is a named sharding the result cannot take (a
    result of another rank than the sharded input, or a length the mesh
    does not divide, such as a spectrum of 399 values): then the result is
    replicated on the same devices.
    """
    import jax

    if not isinstance(device, jax.sharding.NamedSharding):
        return device
    if len(device.spec) <= len(shape):
        try:
            device.shard_shape(shape)
            return device
        except ValueError:  # the mesh does not divide the sharded axes
            pass
    return jax.sharding.NamedSharding(device.mesh, jax.sharding.PartitionSpec())


def asarrays(
    arrays: Sequence[np.ndarray], /, *, xp: ModuleType, device: Any = None
) -> tuple:
    """:func:`asarray` of each NumPy array of `arrays`, in one transfer for JAX.

    JAX spends 30 to 40 microseconds on each transfer, however small the
    array: arrays of one dtype are sent as one buffer and cut on the device
    by a compiled function, one per combination of shapes; so for results
    whose shapes do not follow the sample count (per-feature or per-node
    arrays), which would otherwise compile a cut for each new count.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from infoscope.backends import asarrays
    >>> a, b = asarrays([np.zeros(2), np.ones((2, 2))], xp=xp)
    >>> b.shape
    (2, 2)
    """
    arrays = [np.asarray(a) for a in arrays]
    dtypes = {a.dtype for a in arrays}
    if not compat.is_jax_namespace(xp) or len(arrays) < 2 or len(dtypes) > 1:
        return tuple(asarray(a, xp=xp, device=device) for a in arrays)
    flat = asarray(
        np.concatenate([a.reshape(-1) for a in arrays]), xp=xp, device=device
    )
    shapes = tuple(tuple(a.shape) for a in arrays)
    return _cut(flat, shapes=shapes)


@functools.cache
def _jax_cut() -> Any:
    import jax

    def cut(flat: Any, *, shapes: tuple) -> tuple:
        pieces, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            pieces.append(flat[start : start + size].reshape(shape))
            start += size
        return tuple(pieces)

    return jax.jit(cut, static_argnames=("shapes",))


def _cut(flat: Any, *, shapes: tuple) -> tuple:
    return _jax_cut()(flat, shapes=shapes)
