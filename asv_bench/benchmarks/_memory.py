"""The peak memory of one call, as seen by its backend's allocator.

asv's ``peakmem_*`` figures are the peak resident size of the whole benchmark
process, imports, data and setup included, which on a CPU is mostly the
frameworks' own code. The ``track_*_traced_peak`` benchmarks report instead
what the call itself allocates: the most bytes allocated during the call and
held at once (its result included; memory that was held before the call and
freed during it is not subtracted), as each backend can tell:

- ``numpy``, ``array_api_strict``: :mod:`tracemalloc`, to which NumPy reports
  its buffers (BLAS and LAPACK workspace is not seen).
- ``torch-cpu``: PyTorch's CPU allocator (the profiler's memory events) plus
  NumPy's buffers (tracemalloc), the two peaks added: an upper bound of the
  joint peak, exact when only one of the two allocates much.
- ``torch-cuda``: ``torch.cuda.max_memory_allocated`` (the device only).
- ``cupy``: a memory hook counting the bytes handed out by CuPy's pool.
- ``jax-gpu``: the device's ``peak_bytes_in_use``, which JAX cannot reset:
  skipped when the call does not raise the process's earlier peak.
- ``jax-cpu``: XLA's CPU buffers are seen by no allocator statistics, so the
  growth of the process's resident high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) over its resident size at the start, after the C
  heap's free pages were given back (glibc's ``malloc_trim``). Coarser: it
  counts whatever else the process touches meanwhile (JAX's dispatch and
  compilation caches, Python objects) and whole pages, not pages never
  touched; at a few MiB it varies from run to run. On NumPy the same method
  reads about 5 to 25% above tracemalloc.

A backend that cannot tell is skipped the asv way (``n/a``).

This module imports no framework at import time.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["TRACERS", "framework_backend", "skip", "traced_peak"]

#: How :func:`traced_peak` measures each backend (for reports).
TRACERS = {
    "numpy": "tracemalloc",
    "array_api_strict": "tracemalloc",
    "torch-cpu": "torch profiler + tracemalloc",
    "torch-cuda": "torch.cuda peak allocated",
    "cupy": "CuPy pool hook",
    "jax-gpu": "device peak_bytes_in_use",
    "jax-cpu": "resident high-water mark",
}


def skip(reason: str) -> None:
    """Skip the running benchmark method: asv's ``SkipNotImplemented`` where
    asv is running it (the result is then ``n/a``), else NotImplementedError."""
    try:
        from asv_runner.benchmarks.mark import SkipNotImplemented
    except ImportError:
        raise NotImplementedError(reason) from None
    raise SkipNotImplemented(reason)


def traced_peak(backend: str, fn: Callable[[], Any]) -> float:
    """The most bytes allocated during `fn()` and held at once.

    Parameters
    ----------
    backend : str
        A name of ``_base.BACKENDS``; it chooses how memory is seen (module
        docstring).
    fn : callable
        Called once with no arguments; it must finish its work (synchronise)
        before it returns. Its result is kept until the measurement ends, so
        it counts.

    Returns
    -------
    float
        Bytes.

    Examples
    --------
    >>> import numpy as np
    >>> traced_peak("numpy", lambda: np.ones(1_000_000)) >= 8_000_000
    True
    """
    if backend in ("numpy", "array_api_strict"):
        with _tracemalloc() as peak:
            result = fn()
        del result
        return float(peak())
    if backend == "torch-cpu":
        # tracemalloc inside the profiler: the profiler's own start and stop
        # allocate tens of MB of Python memory.
        with _torch_cpu() as torch_peak, _tracemalloc() as numpy_peak:
            result = fn()
        del result
        return float(numpy_peak() + torch_peak())
    if backend == "torch-cuda":
        return float(_torch_cuda(fn))
    if backend == "cupy":
        return float(_cupy(fn))
    if backend == "jax-gpu":
        return float(_jax_gpu(fn))
    if backend == "jax-cpu":
        return float(_resident(fn))
    skip(f"no memory tracer for backend {backend!r}")
    raise AssertionError  # not reached: skip raises


def framework_backend(framework: str) -> str:
    """The benchmark backend whose tracer sees a `framework` model's memory:
    the adapters compute where the model is (the demo's PyTorch model is on
    the CPU; JAX uses its default device)."""
    if framework == "jax":
        import jax

        return "jax-gpu" if jax.default_backend() == "gpu" else "jax-cpu"
    return "torch-cpu"


@contextlib.contextmanager
def _tracemalloc() -> Iterator[Callable[[], int]]:
    """Traces Python and NumPy allocations; yields a getter of the peak above
    the start (valid once the block has ended)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    gc.collect()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    box = [0]
    try:
        yield lambda: box[0]
        box[0] = max(0, tracemalloc.get_traced_memory()[1] - baseline)
    finally:
        if not was_tracing:
            tracemalloc.stop()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null: the profiler's C++ start and stop
    messages, which Python's sys.stderr cannot catch."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _torch_cpu() -> Iterator[Callable[[], int]]:
    """PyTorch's CPU allocations through the profiler's memory events; yields
    a getter of the peak of their running sum (valid once the block ended)."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    box = [0]
    with _quiet_stderr():
        prof.start()
    try:
        yield lambda: box[0]
    finally:
        with _quiet_stderr():
            prof.stop()
    try:
        events = prof.profiler.kineto_results.events()
        changes = sorted(
            (event.start_ns(), event.nbytes())
            for event in events
            if event.name() == "[memory]" and event.device_type().name == "CPU"
        )
    except AttributeError as exc:  # a PyTorch whose private results differ
        skip(f"this PyTorch's profiler gives no memory events ({exc})")
    held = peak = 0
    for _, nbytes in changes:
        held += nbytes
        peak = max(peak, held)
    box[0] = peak


def _torch_cuda(fn: Callable[[], Any]) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline
    del result
    return max(0, peak)


def _cupy(fn: Callable[[], Any]) -> int:
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        name = "infoscope_benchmark_peak"

        def __init__(self) -> None:
            self.held = self.peak = 0

        def malloc_postprocess(self, **kwargs: Any) -> None:
            self.held += kwargs["mem_size"]
            self.peak = max(self.peak, self.held)

        def free_postprocess(self, **kwargs: Any) -> None:
            self.held -= kwargs["mem_size"]

    cupy.cuda.Device().synchronize()
    hook = PeakHook()
    with hook:
        result = fn()
        cupy.cuda.Device().synchronize()
    del result
    return hook.peak


def _jax_gpu(fn: Callable[[], Any]) -> int:
    import jax

    device = jax.devices("gpu")[0]
    before = device.memory_stats() or {}
    if "peak_bytes_in_use" not in before:
        skip("this JAX GPU reports no peak_bytes_in_use")
    result = fn()
    after = device.memory_stats()
    del result
    if after["peak_bytes_in_use"] <= before["peak_bytes_in_use"]:
        skip(
            "JAX cannot reset its peak: the call stayed below the process's "
            "earlier peak, so its own is unknown"
        )
    return max(0, after["peak_bytes_in_use"] - before["bytes_in_use"])


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's
    ``malloc_trim``), so that reusing them counts again in the resident size."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def _resident(fn: Callable[[], Any]) -> int:
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current VmRSS
        baseline = _status_bytes("VmRSS:")
    except OSError as exc:
        skip(f"the resident high-water mark cannot be reset here ({exc})")
    result = fn()
    peak = _status_bytes("VmHWM:") - baseline
    del result
    return max(0, peak)
