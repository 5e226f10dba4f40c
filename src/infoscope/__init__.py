"""infoscope: information measures of neural-network representations.

Estimators and functions accept NumPy, CuPy, PyTorch and JAX arrays and compute
on the array's own library and device. Importing infoscope imports no deep
learning framework.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
