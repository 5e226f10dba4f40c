"""The backends the tests run on, and how test data is put on each of them."""

from __future__ import annotations

from typing import Any

import numpy as np

from infoscope.backends import supports_float64
from infoscope.backends._testing import (
    BACKENDS,
    BackendSpec,
    missing_reason,
    namespace_of,
    place,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "available_backends",
    "missing_reason",
    "rtol",
]


def available_backends() -> list[str]:
    """The ids of the backends this run can use."""
    return [spec.id for spec in BACKENDS if missing_reason(spec) is None]


class Backend:
    """A library and device under test, with helpers to put test data there."""

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.id = spec.id
        self.xp, self.device = namespace_of(spec)

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
        return place(self.spec, a)

    def __repr__(self) -> str:
        return f"Backend({self.id})"


def rtol(dtype: Any) -> float:
    """The tolerance the tests hold a dtype to: 1000 machine epsilons."""
    name = str(dtype)  # dtype objects differ by library; their names agree
    bits = 64 if "64" in name else 16 if "16" in name else 32
    return float(np.finfo(f"float{bits}").eps) * 1000
