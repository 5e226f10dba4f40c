"""The backend layer: one array-API code path for NumPy, CuPy, PyTorch and JAX.

Every public entry point of infoscope asks :func:`namespace_and_device` for the
namespace ``xp`` and device of its inputs and computes with ``xp``; what the
array API standard lacks, or what one library does much faster its own way,
lives here and nowhere else.

Policy
------
- Device: results live on the inputs' device; inputs from different libraries
  or devices raise a ``ValueError`` that names both.
- Dtype: float32 and float64 are kept; bools and integers become the widest
  float of the device (:func:`as_float`); eigenvalues that decide an entropy
  are computed in float64 where the device has it (:func:`eigvalsh`).
- Randomness: drawn with NumPy from one seed (:func:`check_random_state`) and
  moved to the device, so every backend sees the same draws.
"""

from ._convert import asarray, to_numpy
from ._distances import knn_indices, pairwise_sq_distances
from ._dtype import as_float, float_dtype, supports_float64
from ._linalg import eigh_top, eigvals_abs, eigvalsh, matmul
from ._memory import available_memory, format_bytes
from ._namespace import (
    compiled,
    device_name,
    is_array,
    namespace_and_device,
    namespace_name,
    synchronize,
)
from ._random import check_random_state
from ._select import off_diagonal_middle, order_statistics

__all__ = [
    "as_float",
    "available_memory",
    "asarray",
    "check_random_state",
    "compiled",
    "device_name",
    "eigh_top",
    "eigvals_abs",
    "eigvalsh",
    "float_dtype",
    "format_bytes",
    "is_array",
    "knn_indices",
    "matmul",
    "namespace_and_device",
    "namespace_name",
    "off_diagonal_middle",
    "order_statistics",
    "pairwise_sq_distances",
    "supports_float64",
    "synchronize",
    "to_numpy",
]
