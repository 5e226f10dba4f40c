"""How much memory a device has free, so exact methods can refuse before allocating."""

from __future__ import annotations

import os
from typing import Any

import array_api_compat as compat

__all__ = ["available_memory", "format_bytes"]


def available_memory(xp: Any, device: Any) -> int | None:
    """Bytes free on `device` now, or None where the library cannot tell.

    Host memory is read from ``/proc/meminfo`` (``MemAvailable``, which counts
    reclaimable caches) or ``sysconf``; CUDA memory from the library's own
    allocator (``torch.cuda.mem_get_info``, CuPy's ``memGetInfo``, JAX's
    ``memory_stats``).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import available_memory
    >>> available_memory(np, "cpu") > 0
    True
    """
    kind = str(device).lower()
    if compat.is_torch_namespace(xp) and kind.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if compat.is_cupy_namespace(xp):
        import cupy

        with cupy.cuda.Device(getattr(device, "id", 0)):
            return int(cupy.cuda.runtime.memGetInfo()[0])
    if compat.is_jax_namespace(xp) and getattr(device, "platform", "cpu") != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        return None
    return _host_available()


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it at least 1.

    Examples
    --------
    >>> from infoscope.backends import format_bytes
    >>> format_bytes(3 * 2**30)
    '3.0 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
