"""The catalogue of backends infoscope's own tests and benchmarks run on (private).

One list of (library, device) pairs, why each may be missing on a machine, and
how NumPy data is put on each, shared by ``tests/`` and ``asv_bench/`` (as
scikit-learn shares its namespace/device combinations between them).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._convert import asarray
from ._namespace import namespace_and_device

__all__ = ["BACKENDS", "BackendSpec", "missing_reason", "namespace_of", "place"]


@dataclass(frozen=True)
class BackendSpec:
    """One array library on one kind of device.

    Attributes
    ----------
    id : str
        The name tests and benchmarks are labelled with.
    library : str
        The module that must import.
    device : {"cpu", "gpu"}
    x64 : bool or None
        JAX only: the ``jax_enable_x64`` flag the backend runs under.
    strict_device : str or None
        array-api-strict only: which of its simulated devices.
    """

    id: str
    library: str
    device: str
    x64: bool | None = None
    strict_device: str | None = None


BACKENDS = (
    BackendSpec("numpy", "numpy", "cpu"),
    BackendSpec(
        "array_api_strict", "array_api_strict", "cpu", strict_device="CPU_DEVICE"
    ),
    BackendSpec(
        "array_api_strict-no_float64",
        "array_api_strict",
        "cpu",
        strict_device="no_float64",
    ),
    BackendSpec("torch-cpu", "torch", "cpu"),
    BackendSpec("jax-cpu-x64", "jax", "cpu", x64=True),
    BackendSpec("jax-cpu-x32", "jax", "cpu", x64=False),
    BackendSpec("torch-cuda", "torch", "gpu"),
    BackendSpec("cupy", "cupy", "gpu"),
    BackendSpec("jax-gpu-x64", "jax", "gpu", x64=True),
    BackendSpec("jax-gpu-x32", "jax", "gpu", x64=False),
)


def missing_reason(spec: BackendSpec) -> str | None:
    """Why `spec` cannot run on this machine, or None if it can.

    Examples
    --------
    >>> from infoscope.backends._testing import BACKENDS, missing_reason
    >>> missing_reason(BACKENDS[0]) is None
    True
    """
    if importlib.util.find_spec(spec.library) is None:
        return f"{spec.library} is not installed"
    if spec.device == "cpu":
        return None
    if spec.library == "torch":
        import torch

        if torch.cuda.is_available():
            return None
        if torch.backends.cuda.is_built():
            return (
                "a CUDA build of torch without a CUDA device; array-API checks on "
                "cuda are skipped too"
            )
        return "a CPU build of torch"
    if spec.library == "cupy":
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                return None
        except Exception as exc:  # no driver or runtime: CuPy raises its own types
            return f"cupy has no usable GPU ({exc})"
        return "cupy has no usable GPU"
    if spec.library == "jax":
        import jax

        try:
            jax.devices("gpu")
        except RuntimeError:
            return "no GPU for jax"
        return None
    return f"unknown library {spec.library!r}"


def namespace_of(spec: BackendSpec) -> tuple[Any, Any]:
    """The array namespace and device object of `spec` (which must be present)."""
    if spec.library == "numpy":
        return namespace_and_device(np.empty(0))
    if spec.library == "array_api_strict":
        import array_api_strict as xps

        return xps, xps.Device(spec.strict_device)
    if spec.library == "torch":
        import torch

        return namespace_and_device(torch.empty(0, device=_torch_device(spec)))
    if spec.library == "jax":
        import jax
        import jax.numpy as jnp

        return jnp, jax.devices(spec.device)[0]
    if spec.library == "cupy":
        import cupy

        return namespace_and_device(cupy.empty(0))
    raise ValueError(f"unknown library {spec.library!r}")


def place(spec: BackendSpec, a: Any) -> Any:
    """The NumPy data `a` as an array of `spec` on its device, dtype kept.

    JAX's x64 flag must already be what `spec` says: without it JAX stores
    float64 data as float32.
    """
    xp, device = namespace_of(spec)
    return asarray(np.asarray(a), xp=xp, device=device)


def _torch_device(spec: BackendSpec) -> str:
    return "cuda" if spec.device == "gpu" else "cpu"
