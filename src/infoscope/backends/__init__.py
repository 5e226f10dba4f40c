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

from ._convert import (
    asarray,
    asarrays,
    foreign_host_view,
    host_view,
    host_views,
    private_copy,
    to_numpy,
)
from ._distances import (
    knn_indices,
    pairwise_sq_distances,
    power_of_two_scale,
    scaled_sq_distances,
)
from ._dtype import as_float, float_dtype, itemsize, supports_float64
from ._elementwise import exp_inplace
from ._linalg import eigh_top, eigvals_abs, eigvalsh, matmul
from ._memory import (
    MemoryLimitError,
    available_memory,
    check_memory,
    check_ntk_memory,
    format_bytes,
)
from ._namespace import (
    compiled,
    device_name,
    is_array,
    namespace_and_device,
    namespace_name,
    synchronize,
)
from ._random import check_random_state
from ._rows import draw_rows, subsample_rows, take_rows
from ._select import off_diagonal_middle, order_statistics

__all__ = [
    "MemoryLimitError",
    "as_float",
    "available_memory",
    "asarray",
    "asarrays",
    "check_memory",
    "check_ntk_memory",
    "check_random_state",
    "compiled",
    "device_name",
    "draw_rows",
    "exp_inplace",
    "eigh_top",
    "eigvals_abs",
    "eigvalsh",
    "float_dtype",
    "foreign_host_view",
    "format_bytes",
    "host_view",
    "host_views",
    "is_array",
    "itemsize",
    "knn_indices",
    "matmul",
    "namespace_and_device",
    "private_copy",
    "namespace_name",
    "off_diagonal_middle",
    "order_statistics",
    "pairwise_sq_distances",
    "power_of_two_scale",
    "scaled_sq_distances",
    "subsample_rows",
    "supports_float64",
    "synchronize",
    "take_rows",
    "to_numpy",
]
