"""infoscope: information measures of neural-network representations.

Estimators and functions accept NumPy, CuPy, PyTorch and JAX arrays and compute
on the array's own library and device. ``import infoscope`` imports no
deep-learning framework and not even scikit-learn: subpackages load on first
use (PEP 562).

Examples
--------
>>> import infoscope
>>> infoscope.backends.namespace_name(infoscope.backends.namespace_and_device([1.0])[0])
'numpy'
"""

import importlib

__version__ = "0.1.0.dev0"

_SUBMODULES = ("backends", "estimators")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
