"""Spectra of many principal blocks of one symmetric matrix, decomposed as stacks.

DSMI compares classes with random subsets (blocks of one Gaussian kernel),
the NTK's class mutual information takes the blocks of pairs of classes, and
NTK selection scores candidate subsets: each is a list of principal blocks
``M[r][:, r]`` of different sizes whose eigenvalues are reduced to a few
numbers. Here the blocks of one size are gathered and decomposed together,
and for JAX every size is padded up to one of a few bucket sizes
(:func:`bucket`), the stack's length to a power of two and the matrix to a
bucket too, so that a compiled function serves every block of its bucket:
nothing is recompiled for a new class size, subset size or sample count
within a bucket.

Padding does not change any value: a padded block is ``diag(B, s I)`` with
the shift ``s`` below every eigenvalue of B (by Gershgorin's bound), so its
spectrum is B's plus ``s`` repeated, and the ``s`` eigenvalues (the lowest)
are replaced by zeros, which the reductions ignore. On the CPU (NumPy's
LAPACK through ``jax.pure_callback``) each block is decomposed at its own
size instead: padding then costs no eigenvalue work at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat as compat
import numpy as np
from array_api_compat import array_namespace

from ._convert import asarray, to_numpy
from ._dtype import float_dtype
from ._linalg import (
    host_lapack,
    in_callback,
    lapack_eigvalsh,
    symmetric_eigenvalues,
)
from ._namespace import compiled, namespace_and_device, refuse_dask

__all__ = ["block_reductions", "bucket"]

# Stacks of blocks are decomposed in chunks of at most this many bytes.
STACK_BYTES = 64 * 2**20
# JAX decomposes stacks of at most this many blocks (a power of two).
_STACK_BLOCKS = 16


def bucket(n: int) -> int:
    """The padded size of `n` rows: 16, then multiples of 8, at most 8 per octave.

    Above 64 rows padding up to the next bucket costs at most 12.5% more
    rows (42% more O(n^3) work, about 20% on average), and a compiled
    function serves every size of its bucket.

    Examples
    --------
    >>> from infoscope.backends._blocks import bucket
    >>> [bucket(n) for n in (1, 50, 257, 500, 513, 2000)]
    [16, 56, 288, 512, 576, 2048]
    """
    if n <= 16:
        return 16
    step = max(8, 2 ** (math.ceil(math.log2(n)) - 4))
    return -(-n // step) * step


def _stack_length(count: int, limit: int) -> int:
    """A power of two at least `count` (at most `limit`, itself a power of two)."""
    return min(1 << max(0, count - 1).bit_length(), limit)


def _pad_square(M: Any, size: int, xp: Any, device: Any) -> Any:
    """`M` (n, n) in the top-left corner of a (size, size) array of zeros.

    On the CPU through NumPy (no compilation for a new n); elsewhere by a
    small compiled function per shape of `M`.
    """
    n = M.shape[0]
    if host_lapack(xp, device):
        # Always a new array placed on `device`: an array JAX made without a
        # device (uncommitted) would be another signature of the kernel.
        padded = np.zeros((size, size), dtype=np.asarray(M).dtype)
        padded[:n, :n] = np.asarray(M)
        return asarray(padded, xp=xp, device=device)
    if n == size:
        return M
    return compiled(_pad_kernel, xp, static_argnames=("size",))(M, size=size)


def _pad_kernel(M: Any, *, size: int) -> Any:
    import jax.numpy as jnp

    n = M.shape[0]
    return jnp.pad(M, ((0, size - n), (0, size - n)))


def _block_kernel(
    M: Any,
    rows: Any,
    sizes: Any,
    params: tuple,
    *,
    reduce: Callable,
    normalize: bool,
    wide: Any,
    padded: bool,
    host: bool,
) -> tuple:
    """`reduce` of the spectra of the blocks ``M[r][:, r]``, r the rows of `rows`.

    `sizes` (c,) counts the real rows of each block (the first ones); the
    others are padding. Traceable: compiled whole for JAX.
    """
    xp = array_namespace(M, rows)
    n = M.shape[0]
    c, k = rows.shape
    flat = xp.reshape(rows[:, :, None] * n + rows[:, None, :], (-1,))
    B = xp.reshape(xp.take(xp.reshape(M, (-1,)), flat), (c, k, k))
    if padded:
        real = xp.arange(k)[None, :] < sizes[:, None]  # (c, k)
        B = xp.where(real[:, :, None] & real[:, None, :], B, xp.zeros_like(B))
    if normalize:
        # D^-1/2 B D^-1/2 with the degrees of the block (as symmetric_normalization).
        degrees = xp.sum(B, axis=-1)
        if padded:
            degrees = xp.where(real, degrees, xp.ones_like(degrees))
        scale = 1.0 / xp.sqrt(degrees)
        B = B * scale[:, :, None]
        B = B * scale[:, None, :]
    B = xp.astype(B, wide)
    if padded and host:
        # NumPy's LAPACK decomposes each block at its own size: no padded work.
        import jax

        shape = jax.ShapeDtypeStruct((c, k), B.dtype)
        w = jax.pure_callback(
            in_callback(_lapack_blocks), shape, B, sizes, vmap_method="sequential"
        )
    elif padded:
        bound = xp.max(xp.sum(xp.abs(B), axis=-1), axis=-1)  # >= |every eigenvalue|
        shift = xp.where(bound > 0, -2.0 * bound, -xp.ones_like(bound))
        pad = xp.astype(~real, wide) * shift[:, None]
        B = B + pad[:, :, None] * xp.eye(k, dtype=wide)[None, :, :]
        w = symmetric_eigenvalues(B, host=host)
    else:
        w = symmetric_eigenvalues(B, host=host)
    if padded:  # the shifted ones (or the host's placeholders) are the lowest
        w = xp.where(xp.arange(k)[None, :] >= (k - sizes)[:, None], w, 0.0)
    return reduce(w, sizes, M.dtype, *params)


def _lapack_blocks(B: Any, sizes: Any) -> np.ndarray:
    """Eigenvalues of each padded block's leading ``sizes[b]`` rows, by LAPACK.

    Returned in the padded layout: ascending in the last ``sizes[b]``
    entries, zeros before them (which the kernel zeroes anyway).
    """
    B, sizes = np.asarray(B), np.asarray(sizes)
    c, k = B.shape[:2]
    w = np.zeros((c, k), dtype=B.dtype)
    for s in np.unique(sizes):
        s = int(s)
        chosen = np.flatnonzero(sizes == s)
        if s == 0:
            continue
        w[chosen, k - s :] = lapack_eigvalsh(B[chosen][:, :s, :s])
    return w


def block_reductions(
    M: Any,
    blocks: Sequence[np.ndarray],
    reduce: Callable[..., tuple],
    *,
    normalize: bool = False,
    params: tuple = (),
) -> tuple[np.ndarray, ...]:
    """Reduce the spectrum of each principal block ``M[rows][:, rows]``.

    Parameters
    ----------
    M : array of shape (n, n)
        A finite symmetric matrix of any supported library and device.
    blocks : sequence of NumPy integer arrays
        The rows of each block (at least one each).
    reduce : callable
        ``reduce(w, sizes, dtype, *params)`` -> tuple of arrays of shape (c,):
        `w` (c, k) the ascending eigenvalues of c blocks in the widest float
        of the device, with zeros in place of a padded block's extra ones,
        `sizes` (c,) the blocks' real sizes, `dtype` M's. Traceable (a
        module-level function: it is a static argument of the compiled
        kernel, and a new one compiles anew).
    normalize : bool, default=False
        Decompose ``D^-1/2 B D^-1/2``, D the row sums of each block B (the
        diffusion operator of a kernel's block).
    params : tuple
        Numbers passed on to `reduce` (traced: new values do not recompile).

    Returns
    -------
    tuple of numpy.ndarray
        `reduce`'s outputs, one entry per block, in the order of `blocks`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._blocks import block_reductions
    >>> def largest(w, sizes, dtype):
    ...     return (w.max(axis=-1),)
    >>> M = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    >>> blocks = [np.array([0, 1]), np.array([2]), np.array([0, 2])]
    >>> block_reductions(M, blocks, largest)
    (array([3., 5., 5.]),)
    """
    xp, device = namespace_and_device(M)
    refuse_dask(xp, "eigvalsh")
    wide = float_dtype(xp, device)
    jax = compat.is_jax_namespace(xp)
    host = host_lapack(xp, device)
    sizes = np.array([len(rows) for rows in blocks], dtype=np.int64)
    if jax:
        M = _pad_square(M, bucket(M.shape[0]), xp, device)
        width = np.array([bucket(int(s)) for s in sizes])
    else:
        width = sizes
    kernel = compiled(
        _block_kernel,
        xp,
        static_argnames=("reduce", "normalize", "wide", "padded", "host"),
    )
    # Every chunk is dispatched before any result is read: one wait, not one
    # per chunk.
    pending: list[tuple[Any, int]] = []
    order: list[np.ndarray] = []
    for k in np.unique(width):
        members = np.flatnonzero(width == k)
        limit = max(1, STACK_BYTES // (int(k) * int(k) * 16))
        if jax:
            # Stacks of 1, 2, 4, 8 or 16 blocks (fewer where 16 would pass
            # STACK_BYTES): at most five compiled shapes per bucket, whatever
            # the number of blocks.
            limit = min(1 << (limit.bit_length() - 1), _STACK_BLOCKS)
        for start in range(0, members.size, limit):
            chunk = members[start : start + limit]
            c = _stack_length(members.size, limit) if jax else chunk.size
            rows = np.zeros((c, int(k)), dtype=np.int32 if jax else np.int64)
            counts = np.zeros(c, dtype=rows.dtype)
            for i, b in enumerate(chunk):
                rows[i, : sizes[b]] = blocks[b]
                counts[i] = sizes[b]
            outputs = kernel(
                M,
                asarray(rows, xp=xp, device=device),
                asarray(counts, xp=xp, device=device),
                tuple(params),
                reduce=reduce,
                normalize=normalize,
                wide=wide,
                padded=jax,
                host=host,
            )
            pending.append((outputs, chunk.size))
            order.append(chunk)
    results = [[to_numpy(out)[:size] for out in outs] for outs, size in pending]
    inverse = np.argsort(np.concatenate(order), kind="stable")
    return tuple(
        np.concatenate([part[i] for part in results])[inverse]
        for i in range(len(results[0]))
    )
