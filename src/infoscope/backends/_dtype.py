"""Floating-point policy: which float dtypes a device has, and promotion to float."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat as compat

from ._namespace import namespace_and_device

__all__ = ["as_float", "float_dtype", "itemsize", "supports_float64"]


def supports_float64(xp: ModuleType, device: Any = None) -> bool:
    """Whether arrays of `xp` on `device` can hold float64.

    False for JAX without ``jax_enable_x64``, PyTorch's MPS devices and
    array-api-strict's ``no_float64`` devices.

    Examples
    --------
    >>> import numpy as np, array_api_compat
    >>> from infoscope.backends import supports_float64
    >>> supports_float64(array_api_compat.array_namespace(np.ones(1)))
    True
    """
    if compat.is_torch_namespace(xp):
        # torch's namespace info reports float64 whatever the device; MPS lacks it.
        import torch

        return device is None or torch.device(device).type != "mps"
    if compat.is_jax_namespace(xp):
        # What JAX's namespace info reports, read from the flag: its info
        # rebuilds a dtype table per call (half a millisecond on a CPU).
        return _jax_x64()
    info = xp.__array_namespace_info__()
    try:
        dtypes = info.dtypes(device=device, kind="real floating")
    except TypeError:  # namespaces whose info takes no device
        dtypes = info.dtypes(kind="real floating")
    return "float64" in dtypes


def _jax_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def float_dtype(xp: ModuleType, device: Any = None, *, widest: bool = True) -> Any:
    """The widest (or the default) real floating dtype of `xp` on `device`.

    Examples
    --------
    >>> import numpy as np, array_api_compat
    >>> from infoscope.backends import float_dtype
    >>> np.dtype(float_dtype(array_api_compat.array_namespace(np.ones(1))))
    dtype('float64')
    """
    if widest:
        return xp.float64 if supports_float64(xp, device) else xp.float32
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=device)["real floating"]


def itemsize(dtype: Any, /) -> int:
    """Bytes per element of `dtype`, for any supported library's dtype objects.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import itemsize
    >>> itemsize(np.float32), itemsize(np.dtype("float64"))
    (4, 8)
    """
    size = getattr(dtype, "itemsize", None)  # NumPy, CuPy, JAX, PyTorch >= 2.1
    if isinstance(size, int):
        return size
    inner = getattr(dtype, "_np_dtype", None)  # array-api-strict
    if inner is not None:
        return int(inner.itemsize)
    try:
        import numpy as np

        return int(np.dtype(dtype).itemsize)
    except TypeError:
        pass
    digits = "".join(c for c in str(dtype).rsplit(".", 1)[-1] if c.isdigit())
    if not digits:
        raise TypeError(f"cannot tell the size of dtype {dtype!r}")
    return max(1, int(digits) // 8)


def as_float(x: Any, /, *, xp: ModuleType | None = None) -> Any:
    """`x` as a real floating array on its own namespace and device.

    float32 and float64 are kept as given; bool and integer arrays become the
    widest float the device supports; narrower floats (float16, bfloat16)
    become float32, since the linear algebra needs at least that.

    Raises
    ------
    TypeError
        For complex input, whose measures are not defined here.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import as_float
    >>> as_float(np.array([1, 2, 3])).dtype
    dtype('float64')
    >>> as_float(np.array([1.0], dtype=np.float32)).dtype
    dtype('float32')
    """
    if xp is None:
        xp, device = namespace_and_device(x)
    else:
        device = compat.device(x)
    dtype = x.dtype
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(
            f"complex arrays are not supported (got dtype {dtype}); pass the real "
            "part, the magnitude, or real and imaginary parts as separate features"
        )
    if dtype == xp.float32 or dtype == xp.float64:
        return x
    if xp.isdtype(dtype, "real floating"):
        return xp.astype(x, xp.float32)
    if xp.isdtype(dtype, ("bool", "integral")):
        return xp.astype(x, float_dtype(xp, device))
    raise TypeError(f"expected a numeric array, got dtype {dtype}")
