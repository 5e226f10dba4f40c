"""The backends the tests run on, and how test data is put on each of them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from infoscope.backends import namespace_and_device, supports_float64


@dataclass(frozen=True)
class BackendSpec:
    """One library on one device, as the tests see it."""

    id: str
    library: str  # the module that must import
    device: str  # "cpu" or "gpu"
    x64: bool | None = None  # JAX only: jax_enable_x64 during the test
    strict_device: str | None = None  # array-api-strict only


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
)


def missing_reason(spec: BackendSpec) -> str | None:
    """Why `spec` cannot run here, or None if it can."""
    if importlib.util.find_spec(spec.library) is None:
        return f"{spec.library} is not installed"
    if spec.device == "cpu":
        return None
    if spec.library == "torch":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device for torch"
    if spec.library == "cupy":
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, no device
            return f"cupy has no usable GPU ({exc})"
        return None
    if spec.library == "jax":
        import jax

        try:
            jax.devices("gpu")
        except RuntimeError:
            return "no GPU for jax"
        return None
    return "unknown backend"


def available_backends() -> list[str]:
    """The ids of the backends this run can use."""
    return [spec.id for spec in BACKENDS if missing_reason(spec) is None]


class Backend:
    """A library and device under test, with helpers to put test data there."""

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.id = spec.id
        self.xp, self.device = self._namespace_and_device()

    def _namespace_and_device(self) -> tuple[Any, Any]:
        spec = self.spec
        if spec.library == "numpy":
            return namespace_and_device(np.empty(0))
        if spec.library == "array_api_strict":
            import array_api_strict as xps

            return xps, xps.Device(spec.strict_device)
        if spec.library == "torch":
            import torch

            t = torch.empty(0, device="cuda" if spec.device == "gpu" else "cpu")
            return namespace_and_device(t)
        if spec.library == "jax":
            import jax
            import jax.numpy as jnp

            return jnp, jax.devices(spec.device)[0]
        if spec.library == "cupy":
            import cupy

            return namespace_and_device(cupy.empty(0))
        raise AssertionError(spec)

    @property
    def has_float64(self) -> bool:
        return supports_float64(self.xp, self.device)

    def float_dtypes(self) -> list[Any]:
        """The float dtypes the device supports, narrowest first."""
        return (
            [self.xp.float32, self.xp.float64]
            if self.has_float64
            else [self.xp.float32]
        )

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """NumPy data `a` as an array of this backend (dtype: a NumPy dtype or None)."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        if not self.has_float64 and a.dtype == np.float64:
            a = a.astype(np.float32)
        if self.spec.library == "jax":
            import jax

            return jax.device_put(a, self.device)
        return self.xp.asarray(a, device=self.device)

    def __repr__(self) -> str:
        return f"Backend({self.id})"


def rtol(dtype: Any) -> float:
    """The tolerance the tests hold a dtype to: 1000 machine epsilons."""
    name = str(dtype)  # dtype objects differ by library; their names agree
    bits = 64 if "64" in name else 16 if "16" in name else 32
    return float(np.finfo(f"float{bits}").eps) * 1000
