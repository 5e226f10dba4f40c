"""Symmetric eigenvalues with the precision policy of the package."""

from __future__ import annotations

from typing import Any, Literal

import array_api_compat as compat

from ._dtype import as_float, supports_float64
from ._namespace import namespace_and_device, refuse_dask

__all__ = ["eigvalsh", "matmul"]


def eigvalsh(a: Any, /, *, precision: Literal["float64", "input"] = "float64") -> Any:
    """Eigenvalues of a real symmetric matrix (or a stack of them), ascending.

    Only the lower triangle of `a` is read; no symmetry check is made.

    Parameters
    ----------
    a : array of shape (..., n, n)
        Real symmetric matrices, from any supported library.
    precision : {"float64", "input"}, default="float64"
        ``"float64"`` decomposes in float64 where the device supports it (and
        in `a`'s own dtype where it does not: JAX without x64, MPS);
        ``"input"`` decomposes in `a`'s dtype. Entropies depend on the small
        eigenvalues, which a float32 decomposition resolves only to about
        ``1e-7 * ||a||``: the float64 solve of the same float32 matrix resolves
        them to about ``1e-16 * ||a||``.

    Returns
    -------
    array of shape (..., n)
        In `a`'s namespace, on `a`'s device, in `a`'s dtype (integer and bool
        input promoted as :func:`as_float` does).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import eigvalsh
    >>> eigvalsh(np.array([[2.0, 1.0], [1.0, 2.0]], dtype=np.float32))
    array([1., 3.], dtype=float32)
    """
    if precision not in ("float64", "input"):
        raise ValueError(f"precision must be 'float64' or 'input', got {precision!r}")
    xp, device = namespace_and_device(a, names=("a",))
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            "eigvalsh needs square matrices of shape (..., n, n), got shape "
            f"{tuple(a.shape)}"
        )
    refuse_dask(xp, "eigvalsh")
    a = as_float(a, xp=xp)
    out_dtype = a.dtype
    if (
        precision == "float64"
        and out_dtype != xp.float64
        and supports_float64(xp, device)
    ):
        a = xp.astype(a, xp.float64)
    if compat.is_numpy_namespace(xp) and a.ndim == 2:
        # NumPy decomposes float32 in float64 behind the caller's back; SciPy
        # honours the dtype (so precision="input" is the faster float32 solve),
        # and skips a finite check the callers already made on their data.
        import scipy.linalg

        w = scipy.linalg.eigvalsh(a, check_finite=False)
    else:
        w = xp.linalg.eigvalsh(a)
    return xp.astype(w, out_dtype, copy=False)


def matmul(a: Any, b: Any, /) -> Any:
    """``a @ b`` at the full precision of the inputs' dtype.

    JAX multiplies float32 matrices on GPUs and TPUs in reduced precision
    (TF32 or bfloat16 passes) unless asked otherwise; kernels built from
    differences of products, such as squared distances, lose most of their
    digits that way. This asks JAX for its highest precision and is plain
    ``a @ b`` elsewhere. PyTorch follows the process-wide
    ``torch.set_float32_matmul_precision``, which infoscope leaves as the
    user set it (its default, "highest", is full precision).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import matmul
    >>> matmul(np.eye(2), np.array([[1.0], [2.0]]))
    array([[1.],
           [2.]])
    """
    if compat.is_jax_array(a) or compat.is_jax_array(b):
        import jax.numpy as jnp

        return jnp.matmul(a, b, precision="highest")
    return a @ b
