"""How much memory a computation may still take, so it can refuse before allocating.

The host's limit is the tighter of what the machine has free (``/proc/meminfo``)
and what this process's control group allows (cgroup v2 ``memory.max`` or v1
``memory.limit_in_bytes``, minus the group's current usage): inside a container
limited to 2 GiB on a 64 GiB machine, the machine's figure would let a
computation start that the kernel then kills. Accelerators report their own
free memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import array_api_compat as compat

__all__ = [
    "MemoryLimitError",
    "available_memory",
    "check_memory",
    "check_ntk_memory",
    "format_bytes",
]

# Where the kernel exposes control groups and process information; tests point
# these at fake trees.
_CGROUP_ROOT = "/sys/fs/cgroup"
_PROC = "/proc"
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value.
_UNLIMITED = 2**62


class MemoryLimitError(ValueError):
    """A computation would need more memory than is free where it would run.

    A ``ValueError`` (bad input for this machine), with the numbers as
    attributes so that a caller (the command line, a monitor) can word the
    fix in its own terms.

    Attributes
    ----------
    caller : str
    needed, available : int
        Bytes.
    device : str

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import MemoryLimitError, check_memory
    >>> try:
    ...     check_memory(2**80, xp=np, device="cpu", caller="demo",
    ...                  what="a tensor", advice="pass fewer samples")
    ... except MemoryLimitError as error:
    ...     error.needed == 2**80 and error.available < error.needed
    True
    """

    def __init__(
        self, message: str, *, caller: str, needed: int, available: int, device: str
    ):
        super().__init__(message)
        self.caller = caller
        self.needed = needed
        self.available = available
        self.device = device

    def __reduce__(self):
        return (
            _rebuild_memory_error,
            (str(self), self.caller, self.needed, self.available, self.device),
        )


def _rebuild_memory_error(message, caller, needed, available, device):
    return MemoryLimitError(
        message, caller=caller, needed=needed, available=available, device=device
    )


def available_memory(xp: Any, device: Any) -> int | None:
    """Bytes a new allocation on `device` can take now, or None if unknown.

    - CUDA through PyTorch: ``torch.cuda.mem_get_info`` (free device memory);
    - CuPy: the runtime's ``memGetInfo``;
    - JAX on a GPU or TPU: ``bytes_limit - bytes_in_use`` of the device's
      allocator (JAX reserves most of the device up front, so the driver's
      figure would be wrong);
    - host memory (NumPy, array-api-strict, PyTorch and JAX on the CPU, dask):
      the smaller of ``MemAvailable`` in ``/proc/meminfo`` (which counts
      reclaimable caches; ``sysconf`` where there is no ``/proc``) and the
      room left under the memory limit of every control group the process
      belongs to, cgroup v2 (``memory.max - memory.current``) or v1
      (``memory.limit_in_bytes - memory.usage_in_bytes``), walking up to the
      root.

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
    return host_available_memory()


def host_available_memory() -> int | None:
    """Bytes of host memory this process can still allocate, or None if unknown.

    The smaller of the machine's available memory and the room under every
    control-group limit that applies (see :func:`available_memory`).
    """
    figures = [f for f in (_meminfo_available(), _cgroup_room()) if f is not None]
    return min(figures) if figures else None


def _meminfo_available() -> int | None:
    try:
        with open(os.path.join(_PROC, "meminfo")) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_paths() -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and v1 memory-controller path."""
    v2 = v1 = None
    try:
        with open(os.path.join(_PROC, "self", "cgroup")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: str, path: str) -> list[str]:
    """`base`/`path` and every directory above it up to `base`, deepest first.

    Inside a cgroup namespace the process's path names a directory that may
    not exist under the mount (the mount's root is the group itself): the
    base, always included, is then the group.
    """
    parts = [p for p in path.split("/") if p]
    folders = [os.path.join(base, *parts[:i]) for i in range(len(parts), 0, -1)]
    return [f for f in folders if os.path.isdir(f)] + [base]


def _cgroup_room() -> int | None:
    """The least room (limit - usage) over the memory cgroups of this process."""
    v2, v1 = _cgroup_paths()
    rooms = []
    if v2 is not None and os.path.exists(
        os.path.join(_CGROUP_ROOT, "cgroup.controllers")
    ):
        for folder in _ancestors(_CGROUP_ROOT, v2):
            limit = _read_int(os.path.join(folder, "memory.max"))
            usage = _read_int(os.path.join(folder, "memory.current"))
            if limit is not None and usage is not None:
                rooms.append(limit - usage)
    if v1 is not None:
        base = os.path.join(_CGROUP_ROOT, "memory")
        if os.path.isdir(base):
            for folder in _ancestors(base, v1):
                limit = _read_int(os.path.join(folder, "memory.limit_in_bytes"))
                usage = _read_int(os.path.join(folder, "memory.usage_in_bytes"))
                if limit is not None and usage is not None and limit < _UNLIMITED:
                    rooms.append(limit - usage)
    return max(0, min(rooms)) if rooms else None


def check_memory(
    needed: int,
    *,
    xp: Any,
    device: Any,
    caller: str,
    what: str,
    advice: str | Callable[[int], str],
    detail: str = "",
) -> None:
    """Raise :class:`MemoryLimitError` before allocating `needed` bytes that won't fit.

    Parameters
    ----------
    needed : int
        The bytes the computation will hold at its peak.
    xp, device
        Where it will run (:func:`available_memory`).
    caller : str
        The function or estimator, for the message.
    what : str
        What needs the memory, e.g. ``"the exact method"``.
    advice : str or callable
        The fix: an option that exists for `caller`. A callable receives the
        free bytes and returns the words (to compute a size that would fit).
    detail : str, optional
        Words after the size, e.g. ``" for 1000 samples (3 1000 x 1000
        arrays)"``.

    Nothing is checked where the free memory cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import check_memory
    >>> check_memory(800, xp=np, device="cpu", caller="demo", what="a vector",
    ...              advice="pass fewer samples")
    >>> check_memory(2**80, xp=np, device="cpu", caller="demo", what="a tensor",
    ...              advice="pass fewer samples")
    Traceback (most recent call last):
    ...
    infoscope...MemoryLimitError: demo: a tensor needs about ... pass fewer samples.
    """
    free = available_memory(xp, device)
    if free is None or needed <= free:
        return
    words = advice(free) if callable(advice) else advice
    raise MemoryLimitError(
        f"{caller}: {what} needs about {format_bytes(needed)}{detail}, but only "
        f"{format_bytes(free)} is free on {device}. {words}.",
        caller=caller,
        needed=int(needed),
        available=int(free),
        device=str(device),
    )


def check_ntk_memory(
    rows: int,
    cols: int,
    dtype: Any,
    *,
    working_set: int,
    xp: Any,
    device: Any,
    caller: str,
    full: bool,
) -> None:
    """Refuse, before computing it, an empirical NTK that cannot fit on `device`.

    The adapters' ``empirical_ntk`` calls this once the output's shape is
    known: the ``rows x cols`` result (``n1 x n2``, or ``n1 k x n2 k`` for
    ``output_mode="full"``) plus the engine's working set (the per-sample
    features it keeps and one block pair). The advice names the options
    ``empirical_ntk`` has.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import check_ntk_memory
    >>> check_ntk_memory(10, 10, np.float32, working_set=0, xp=np, device="cpu",
    ...                  caller="empirical_ntk", full=False)
    """
    from ._dtype import itemsize

    needed = rows * cols * itemsize(dtype) + working_set
    mode = " or output_mode='mean' (n1 x n2, not n1 k x n2 k)" if full else ""
    check_memory(
        needed,
        xp=xp,
        device=device,
        caller=caller,
        what=f"the {rows} x {cols} NTK",
        detail=f" (with {format_bytes(working_set)} of per-sample features)",
        advice=f"Pass fewer samples in X1 (and X2){mode}",
    )


def largest_square_that_fits(free: int, count: int, itemsize: int) -> int:
    """The largest n with ``count * n * n * itemsize <= free``.

    Examples
    --------
    >>> from infoscope.backends._memory import largest_square_that_fits
    >>> largest_square_that_fits(8 * 100 * 3, 3, 8)
    10
    """
    return math.isqrt(max(0, free) // max(1, count * itemsize))


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
