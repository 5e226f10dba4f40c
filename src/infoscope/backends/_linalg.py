"""Symmetric eigenvalues with the precision policy of the package."""

from __future__ import annotations

import functools
from typing import Any, Literal

import array_api_compat as compat
import numpy as np
from array_api_compat import array_namespace

from ._dtype import as_float, supports_float64
from ._namespace import compiled, namespace_and_device, refuse_dask

__all__ = ["eigh_top", "eigvals_abs", "eigvalsh", "matmul"]


def check_finite_matrix(a: Any, xp: Any, operation: str) -> None:
    """Raise a ValueError naming `operation` if `a` holds NaN or infinity.

    LAPACK returns NaN, or fails with an internal error, on such input.
    """
    if bool(xp.all(xp.isfinite(a))):
        return
    raise ValueError(
        f"{operation}: the matrix contains NaN or infinity (its entries overflowed, "
        f"or came from non-finite data); eigenvalues need finite entries."
    )


def eigvalsh(
    a: Any,
    /,
    *,
    precision: Literal["float64", "input"] = "float64",
    overwrite: bool = False,
) -> Any:
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
    overwrite : bool, default=False
        Let the solver use `a` as its workspace (NumPy input only), saving one
        copy of the matrix. Pass True only for a matrix you will not read again.

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
    check_finite_matrix(a, xp, "eigvalsh")
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

        try:
            w = scipy.linalg.eigvalsh(a, check_finite=False, overwrite_a=overwrite)
        except np.linalg.LinAlgError as exc:
            raise _no_convergence("eigvalsh", exc) from None
    elif compat.is_jax_namespace(xp):
        solve = compiled(symmetric_eigenvalues, xp, static_argnames=("host",))
        w = solve(a, host=host_lapack(xp, device))
    else:
        try:
            w = xp.linalg.eigvalsh(a)
        except (RuntimeError, np.linalg.LinAlgError) as exc:  # torch's, NumPy's
            raise _no_convergence("eigvalsh", exc) from None
    return xp.astype(w, out_dtype, copy=False)


def host_lapack(xp: Any, device: Any) -> bool:
    """Whether symmetric eigenproblems of `xp` on `device` go to NumPy's LAPACK.

    True for NumPy, and for JAX on the CPU: JAX's ``eigh`` always computes
    the eigenvectors (about three times the work of eigenvalues alone, six
    times for stacks of small blocks), and on the CPU NumPy's LAPACK reads
    the same memory, so the solve is called through ``jax.pure_callback``
    (inside compiled functions too) and gives NumPy's numbers.
    """
    if compat.is_numpy_namespace(xp):
        return True
    if not compat.is_jax_namespace(xp):
        return False
    # A device, or a sharding over several (JAX arrays split over CPU devices).
    devices = getattr(device, "device_set", None) or (device,)
    return all(getattr(d, "platform", "") == "cpu" for d in devices)


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # scikit-learn's dependency: normally present
        return None
    return ThreadpoolController()


def in_callback(fn: Any) -> Any:
    """`fn` for ``jax.pure_callback``: NumPy's BLAS on one thread while it runs.

    The callback runs on one of XLA's threads while XLA's others wait for
    it; BLAS threads of its own then compete with them for the cores (on two
    cores, three to ten times slower when the machine has other work).
    """

    def call(*args: Any) -> Any:
        controller = _blas_controller()
        if controller is None:
            return fn(*args)
        with controller.limit(limits=1, user_api="blas"):
            return fn(*args)

    return call


def lapack_eigvalsh(a: Any, overwrite: bool = False) -> np.ndarray:
    """Ascending eigenvalues by NumPy/SciPy's LAPACK; NaN where it fails."""
    a = np.asarray(a)
    try:
        if a.ndim == 2:
            import scipy.linalg

            return scipy.linalg.eigvalsh(a, check_finite=False, overwrite_a=overwrite)
        return np.linalg.eigvalsh(a)
    except np.linalg.LinAlgError:
        return np.full(a.shape[:-1], np.nan, dtype=a.dtype)


def symmetric_eigenvalues(
    a: Any, *, host: bool = False, overwrite: bool = False
) -> Any:
    """Ascending eigenvalues of the symmetric matrices `a` (..., n, n); traceable.

    No checks and no dtype policy (:func:`eigvalsh` has them): the kernel that
    compiled code calls. `host` routes the solve to NumPy's LAPACK
    (:func:`host_lapack`); a solve that fails there gives NaN. `overwrite`
    lets SciPy use a NumPy `a` as its workspace.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._linalg import symmetric_eigenvalues
    >>> symmetric_eigenvalues(np.array([[2.0, 1.0], [1.0, 2.0]]))
    array([1., 3.])
    """
    if compat.is_numpy_array(a):
        return lapack_eigvalsh(a, overwrite)
    if host:
        import jax

        shape = jax.ShapeDtypeStruct(a.shape[:-1], a.dtype)
        return jax.pure_callback(lapack_eigvalsh, shape, a, vmap_method="broadcast_all")
    xp = array_namespace(a)
    refuse_dask(xp, "eigvalsh")
    return xp.linalg.eigvalsh(a)


def eigh_top(a: Any, k: int, /) -> tuple[Any, Any]:
    """The `k` largest eigenvalues of a real symmetric matrix, with eigenvectors.

    NumPy matrices, and JAX ones on the CPU (:func:`host_lapack`), larger
    than a few hundred rows go to ARPACK (Lanczos, cost O(n^2 k) per restart
    instead of O(n^3)), smaller ones to LAPACK's solver for the top `k`
    alone; other libraries use their own full ``eigh`` and keep the top `k`.
    Each eigenvector's sign is fixed so that its largest-magnitude entry is
    positive, so every library returns the same vectors.

    Parameters
    ----------
    a : array of shape (n, n)
    k : int
        1 <= k <= n.

    Returns
    -------
    values : array of shape (k,)
        Descending.
    vectors : array of shape (n, k)
        Orthonormal columns, in `a`'s namespace, device and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import eigh_top
    >>> values, vectors = eigh_top(np.array([[2.0, 1.0], [1.0, 2.0]]), 1)
    >>> values, vectors[:, 0].round(4)
    (array([3.]), array([0.7071, 0.7071]))
    """
    xp, device = namespace_and_device(a, names=("a",))
    refuse_dask(xp, "eigh_top")
    check_finite_matrix(a, xp, "eigh_top")
    n = a.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, got {k}")
    solve = compiled(eigh_top_kernel, xp, static_argnames=("k", "host"))
    return solve(a, k=k, host=host_lapack(xp, device))


def _lapack_eigh_top(a: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest eigenpairs of the NumPy matrix `a`, in no fixed order.

    Matrices larger than a few hundred rows go to ARPACK (Lanczos, cost
    O(n^2 k) per restart instead of O(n^3)); smaller ones to LAPACK's
    solver for a subset of the spectrum.
    """
    a = np.asarray(a)
    n = a.shape[0]
    if n > 512 and k < n // 4:
        from scipy.sparse.linalg import eigsh

        # A fixed start vector: ARPACK's default draws one at random.
        start = np.ones(n, dtype=a.dtype)
        values, vectors = eigsh(a, k=k, which="LA", v0=start)
    else:
        import scipy.linalg

        values, vectors = scipy.linalg.eigh(
            a, subset_by_index=[n - k, n - 1], check_finite=False
        )
    return values.astype(a.dtype, copy=False), vectors.astype(a.dtype, copy=False)


def eigh_top_kernel(a: Any, *, k: int, host: bool) -> tuple[Any, Any]:
    """:func:`eigh_top` after its checks; traceable where `host` is False or JAX."""
    n = a.shape[0]
    if host and compat.is_numpy_array(a):
        values, vectors = _lapack_eigh_top(a, k)
    elif host:
        import jax

        shapes = (
            jax.ShapeDtypeStruct((k,), a.dtype),
            jax.ShapeDtypeStruct((n, k), a.dtype),
        )
        values, vectors = jax.pure_callback(
            in_callback(lambda m: _lapack_eigh_top(m, k)),
            shapes,
            a,
            vmap_method="sequential",
        )
    else:
        xp = array_namespace(a)
        refuse_dask(xp, "eigh_top")
        values, vectors = xp.linalg.eigh(a)
        values, vectors = values[n - k :], vectors[:, n - k :]
    xp = array_namespace(values, vectors)
    order = xp.flip(xp.argsort(values))
    values = xp.take(values, order)
    vectors = xp.take(vectors, order, axis=1)
    pivot = xp.argmax(xp.abs(vectors), axis=0)
    signs = xp.sign(xp.take_along_axis(vectors, pivot[None, :], axis=0))
    signs = xp.where(signs == 0, xp.ones_like(signs), signs)
    return values, vectors * signs


def eigvals_abs(
    a: Any, /, *, precision: Literal["float64", "input"] = "float64"
) -> Any:
    """Moduli of the (possibly complex) eigenvalues of a general square matrix.

    For non-symmetric operators such as directed kNN graphs. NumPy goes through
    SciPy, PyTorch through ``torch.linalg.eigvals`` on its device, JAX through
    ``jax.numpy.linalg.eigvals`` (on a GPU where the installed jaxlib has a
    GPU kernel, else through the host, as JAX itself decides); libraries
    without a general eigensolver (array-api-strict, CuPy) round-trip through
    NumPy, and so do PyTorch and JAX where their solver fails to converge
    (on some defective matrices). The moduli come back in `a`'s namespace,
    on its device, in its real dtype, in no particular order.

    The eigenvalues of a non-normal matrix can move by ``eps**(1/m)`` for a
    Jordan block of size m (a kNN graph with repeated neighbourhoods has
    them), so ``precision="float64"`` decomposes in float64 where the device
    has it, as :func:`eigvalsh` does: a float32 0/1 matrix then gets the
    eigenvalues of the same matrix in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends import eigvals_abs
    >>> np.sort(eigvals_abs(np.array([[0.0, -1.0], [1.0, 0.0]])))
    array([1., 1.])
    """
    if precision not in ("float64", "input"):
        raise ValueError(f"precision must be 'float64' or 'input', got {precision!r}")
    xp, device = namespace_and_device(a, names=("a",))
    a = as_float(a, xp=xp)
    check_finite_matrix(a, xp, "eigvals_abs")
    out_dtype = a.dtype
    if precision == "float64" and supports_float64(xp, device):
        a = xp.astype(a, xp.float64, copy=False)
    if compat.is_torch_namespace(xp):
        import torch

        try:
            return torch.abs(torch.linalg.eigvals(a)).to(out_dtype)
        except RuntimeError:
            pass  # its solver gives up on some defective matrices: LAPACK's may not
    elif compat.is_jax_namespace(xp):
        import jax.numpy as jnp

        w = jnp.abs(jnp.linalg.eigvals(a)).astype(out_dtype)
        if bool(jnp.all(jnp.isfinite(w))):
            return w
    import scipy.linalg

    from ._convert import to_numpy

    try:
        w = np.abs(scipy.linalg.eigvals(to_numpy(a), check_finite=False))
    except np.linalg.LinAlgError as exc:
        raise _no_convergence("eigvals_abs", exc) from None
    return xp.astype(xp.asarray(w, device=device), out_dtype)


def _no_convergence(operation: str, exc: Exception) -> ValueError:
    return ValueError(
        f"{operation}: the eigensolver did not converge ({exc}); the matrix is "
        f"too ill-conditioned for it. Rescale the data, or use fewer samples."
    )


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
