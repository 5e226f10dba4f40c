"""The empirical NTK engine shared by every framework adapter.

The framework modules only read the model: for a block of samples they
return the *features* of each term, and this module does the rest, written
once against the array namespace of those features:

- the plan: which dense or convolutional weights are contracted in their
  structured (Gram) form and which parameters through per-sample Jacobians,
  by the planned cost of each (:func:`plan_terms`);
- the memory plan: samples per block (:func:`block_size`) and parameter
  groups whose features fit the budget (:func:`group_terms`);
- the blocked contraction: features once per block, each block pair
  contracted once, the symmetric half mirrored (:func:`compute`);
- the check that a model's outputs are per sample (:func:`mixes_samples`).

A term's features for a block of ``b`` samples are either a pair ``(A, G)``
(``"gram"``: a weight applied at ``P`` positions, ``A`` its inputs, ``b x P x
n_in``, with a column of ones for a bias, and ``G`` the signals
back-propagated to its outputs, ``b x k x P x n_out``) or per-sample
Jacobians ``J``, ``b x k x p`` (``"jacobian"``); the Jacobians of a group's
parameters are concatenated along the last axis into one array.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import array_api_compat as compat
import numpy as np

from ..backends import check_ntk_memory

__all__ = [
    "MEMORY_BUDGET",
    "Layer",
    "Term",
    "block_size",
    "compute",
    "contract",
    "gram_block",
    "group_terms",
    "pair_schedule",
    "plan_terms",
    "mixes_samples",
    "structured_kind",
    "warn_mixing",
]

# Bytes the stored per-sample features of one parameter group may take. When
# the features of all parameters for all samples fit, every sample block is
# passed through the network once; otherwise the parameters are split into
# groups that fit and the blocks are passed once per group.
MEMORY_BUDGET = 512 * 2**20

# Samples per block when `batch_size` is None: the working memory of one block
# pair (and of one forward/backward pass) scales with it.
_WORKING_BYTES = 64 * 2**20


@dataclass
class Layer:
    """A dense or convolutional weight the structured form may contract.

    Attributes
    ----------
    name : str
        Readable name (the layer's path in the model).
    positions : int
        How many positions per sample the weight is applied at (1 for a
        dense layer on vectors, the output pixels of a convolution, the
        tokens of a sequence; summed over the calls of a shared layer).
    n_in, n_out : int
        Rows of ``A`` (inputs per position, plus one for a bias folded in)
        and units per position.
    params : list of (str, int)
        The parameters it covers (weight, and bias if folded in) by name,
        with their sizes: they go through per-sample Jacobians when the Gram
        form is not the cheaper one.
    key : Any
        What the framework module needs to find the layer again.
    """

    name: str
    positions: int
    n_in: int
    n_out: int
    params: list[tuple[str, int]]
    key: Any = None


@dataclass
class Term:
    """One contribution to the NTK: a Gram layer, or one parameter's Jacobians.

    Attributes
    ----------
    name : str
        The layer's or the parameter's name.
    kind : {"gram", "jacobian"}
        How its features look and are contracted (see the module docstring).
    bytes_per_sample : float
        Memory of its stored features, per sample.
    key : Any
        What the framework module needs to compute its features.
    """

    name: str
    kind: str
    bytes_per_sample: float
    key: Any = None


# --------------------------------------------------------------------------- #
# Planning
# --------------------------------------------------------------------------- #


def structured_kind(positions: int, n_in: int, n_out: int, k: int, full: bool) -> str:
    """``"gram"`` or ``"jacobian"``: the cheaper way to contract one weight.

    Per pair of samples the Gram form costs ``P^2 (n_in + k n_out)`` ("mean")
    or ``P^2 (n_in + k^2 n_out)`` ("full") and the Jacobian form
    ``k n_in n_out`` or ``k^2 n_in n_out``, P being the number of positions
    the weight is applied at (1 for a dense layer on vectors). The features
    are in the same ratio, within a factor k.

    Examples
    --------
    >>> structured_kind(1, 256, 256, 10, full=False)
    'gram'
    >>> structured_kind(64, 27, 16, 10, full=False)
    'jacobian'
    """
    kk = k * k if full else k
    gram = positions * positions * (n_in + kk * n_out)
    jac = kk * n_in * n_out
    return "gram" if gram <= jac else "jacobian"


def plan_terms(
    layers: Sequence[Layer],
    params: Sequence[tuple[str, int, Any]],
    k: int,
    mode: str,
    itemsize: int,
) -> list[Term]:
    """The terms of the NTK: Gram layers where cheaper, Jacobians for the rest.

    Parameters
    ----------
    layers : sequence of Layer
        The weights that may take the structured form.
    params : sequence of (name, size, key)
        Every differentiated parameter, in order. Those a Gram layer covers
        are left out of the Jacobian terms.
    k : int
        Outputs per sample (1 in "sum" mode).
    mode : {"mean", "sum", "full"}
    itemsize : int
        Bytes per number of the features.

    Examples
    --------
    >>> dense = Layer("fc", 1, 257, 256, [("fc.w", 65536), ("fc.b", 256)], "fc")
    >>> conv = Layer("conv", 64, 27, 16, [("conv.w", 432)], "conv")
    >>> params = [("conv.w", 432, 0), ("fc.w", 65536, 1), ("fc.b", 256, 2)]
    >>> [(t.name, t.kind) for t in plan_terms([dense, conv], params, 10, "mean", 4)]
    [('fc', 'gram'), ('conv.w', 'jacobian')]
    """
    full = mode == "full"
    terms: list[Term] = []
    covered: set[str] = set()
    for layer in layers:
        if structured_kind(layer.positions, layer.n_in, layer.n_out, k, full) != "gram":
            continue
        per = layer.positions * (layer.n_in + k * layer.n_out)
        terms.append(Term(layer.name, "gram", per * itemsize, key=layer.key))
        covered.update(name for name, _ in layer.params)
    for name, size, key in params:
        if name not in covered and size > 0:
            terms.append(Term(name, "jacobian", k * size * itemsize, key=key))
    return terms


def choose_batch_size(n: int, bytes_per_sample: float) -> int:
    """Samples per block so that one block's working memory stays modest.

    Examples
    --------
    >>> choose_batch_size(10_000, 8 * 1000)
    8192
    >>> choose_batch_size(100, 8 * 1000)
    100
    """
    b = int(_WORKING_BYTES // max(bytes_per_sample, 1.0))
    b = max(16, min(b, 8192))
    return max(1, min(n, b))


def block_size(
    n: int, batch_size: int | None, bytes_per_sample: float, itemsize: int, kk: int
) -> int:
    """Samples per block: `batch_size`, or chosen from the memory one needs.

    By default about 64 MiB of per-sample features per block, at most as
    many samples as keep one ``kk b x kk b`` block pair under 64 MiB of
    float32 temporaries (2,048 samples in float32, 1,448 in float64, ``kk``
    times fewer in "full" mode), at least 16, at most `n`.

    Examples
    --------
    >>> block_size(100_000, None, 8 * 1000, 4, 1)
    2048
    >>> block_size(100, 7, 8 * 1000, 4, 1)
    7
    """
    if batch_size is not None:
        return batch_size
    b = choose_batch_size(n, bytes_per_sample)
    cap = int((2**26 / (4 * itemsize)) ** 0.5) // kk
    return max(1, min(b, max(cap, 16)))


def block_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of ``range(n)`` of length `batch_size` (the last shorter).

    Examples
    --------
    >>> block_slices(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def pair_schedule(n_rows: int, n_cols: int | None) -> list[tuple[int, int]]:
    """The block pairs to contract: the upper triangle when symmetric.

    ``n_cols=None`` means the column blocks are the row blocks (``X2 is
    None``): then only pairs ``(i, j)`` with ``i <= j`` are contracted and
    the others are filled in by transposition.

    Examples
    --------
    >>> pair_schedule(3, None)
    [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    >>> len(pair_schedule(2, 3))
    6
    """
    if n_cols is None:
        return [(i, j) for i in range(n_rows) for j in range(i, n_rows)]
    return [(i, j) for i in range(n_rows) for j in range(n_cols)]


def group_terms(
    terms: Sequence[Term], n_samples: int, budget: float = MEMORY_BUDGET
) -> list[list[Term]]:
    """Split `terms` into groups whose features for all samples fit `budget`.

    Each group costs one pass of every sample block through the network, so
    the groups are as few as the budget allows. A term larger than the budget
    on its own forms its own group (with a warning: it will take more memory
    than the budget).

    Examples
    --------
    >>> ts = [Term("a", "gram", 8.0), Term("b", "gram", 8.0)]
    >>> [[t.name for t in g] for g in group_terms(ts, 10, budget=200)]
    [['a', 'b']]
    >>> [[t.name for t in g] for g in group_terms(ts, 10, budget=100)]
    [['a'], ['b']]
    """
    groups: list[list[Term]] = []
    current: list[Term] = []
    used = 0.0
    for term in terms:
        size = term.bytes_per_sample * n_samples
        if size > budget:
            warnings.warn(
                f"the per-sample features of {term.name!r} take "
                f"{size / 2**30:.2f} GiB for {n_samples} samples, more than the "
                f"{budget / 2**30:.2f} GiB budget; computing them anyway",
                RuntimeWarning,
                stacklevel=5,
            )
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0.0
        current.append(term)
        used += size
    if current:
        groups.append(current)
    return groups


# --------------------------------------------------------------------------- #
# Contraction
# --------------------------------------------------------------------------- #


def gram_block(xp: Any, fa: tuple, fb: tuple, full: bool) -> Any:
    """``sum_pq (A_ip . A_jq)(G_iap . G_jbq)`` for one layer and two blocks.

    ``A``: ``b x P x n_in``; ``G``: ``b x k x P x n_out``. Returns ``ni x
    nj`` (the sum over ``a = b``: "mean" and "sum" modes before scaling) or
    ``ni k x nj k`` (``full``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A, G = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 5, 2, 6))
    >>> J = np.einsum("bpi,bkpo->bkio", A, G).reshape(3, 5, -1)
    >>> bool(np.allclose(gram_block(np, (A, G), (A, G), False),
    ...                  np.einsum("iap,jap->ij", J, J)))
    True
    """
    Ai, Gi = fa
    Aj, Gj = fb
    ni, k, P, o = Gi.shape
    nj, Q = Gj.shape[0], Gj.shape[2]
    d = Ai.shape[2]
    if P == 1 and Q == 1:
        AA = xp.matmul(xp.reshape(Ai, (ni, d)), xp.reshape(Aj, (nj, d)).T)
        if not full:
            GG = xp.matmul(xp.reshape(Gi, (ni, k * o)), xp.reshape(Gj, (nj, k * o)).T)
            return AA * GG
        GG = xp.matmul(xp.reshape(Gi, (ni * k, o)), xp.reshape(Gj, (nj * k, o)).T)
        GG = xp.reshape(GG, (ni, k, nj, k)) * AA[:, None, :, None]
        return xp.reshape(GG, (ni * k, nj * k))
    AA = xp.matmul(xp.reshape(Ai, (ni * P, d)), xp.reshape(Aj, (nj * Q, d)).T)
    AA = xp.reshape(AA, (ni, P, nj, Q))
    if not full:
        # (i, p, a, o) . (j, q, a, o) -> (i, p, j, q)
        gi = xp.reshape(xp.permute_dims(Gi, (0, 2, 1, 3)), (ni * P, k * o))
        gj = xp.reshape(xp.permute_dims(Gj, (0, 2, 1, 3)), (nj * Q, k * o))
        GG = xp.reshape(xp.matmul(gi, gj.T), (ni, P, nj, Q))
        return xp.sum(AA * GG, axis=(1, 3))
    # (i, a, p, o) . (j, b, q, o) -> (i, a, p, j, b, q), weighted by (i, p, j, q)
    GG = xp.matmul(xp.reshape(Gi, (ni * k * P, o)), xp.reshape(Gj, (nj * k * Q, o)).T)
    GG = xp.reshape(GG, (ni, k, P, nj, k, Q)) * AA[:, None, :, :, None, :]
    return xp.reshape(xp.sum(GG, axis=(2, 5)), (ni * k, nj * k))


def contract(xp: Any, fi: list, fj: list, k: int, full: bool) -> Any:
    """The NTK block of two sample blocks from their features (one group).

    Examples
    --------
    >>> import numpy as np
    >>> J = np.arange(12.0).reshape(2, 3, 2)  # 2 samples, 3 outputs, 2 params
    >>> contract(np, [J], [J], 3, False).tolist()
    [[55.0, 145.0], [145.0, 451.0]]
    """
    total = None
    for a, b in zip(fi, fj, strict=True):
        if isinstance(a, tuple):
            block = gram_block(xp, a, b, full)
        else:
            ni, nj = a.shape[0], b.shape[0]
            if full:
                block = xp.matmul(
                    xp.reshape(a, (ni * k, -1)), xp.reshape(b, (nj * k, -1)).T
                )
            else:
                block = xp.matmul(xp.reshape(a, (ni, -1)), xp.reshape(b, (nj, -1)).T)
        total = block if total is None else total + block
    return total


class _Canvas:
    """The ``N1 x N2`` result, filled block by block.

    Mutable namespaces are written in place on the device; JAX arrays are
    immutable, so their blocks are assembled in host memory and put on the
    device once at the end (an update per block would copy the whole matrix).
    """

    def __init__(self, xp: Any, shape: tuple[int, int], dtype: Any, device: Any):
        self.xp, self.device = xp, device
        self.host = compat.is_jax_namespace(xp)
        if self.host:
            self.out = np.zeros(shape, dtype=np.dtype(dtype))
        else:
            self.out = xp.zeros(shape, dtype=dtype, device=device)

    def add(self, rows: slice, cols: slice, block: Any, mirror: bool) -> None:
        if self.host:
            block = np.asarray(block)
        self.out[rows, cols] += block
        if mirror:
            self.out[cols, rows] += block.T

    def finish(self, scale: float) -> Any:
        if scale != 1:
            self.out /= scale
        if self.host:
            return self.xp.asarray(self.out, device=self.device)
        return self.out


def compute(
    xp: Any,
    features: Callable[[int, slice, list[Term]], tuple[list, int]],
    terms: Sequence[Term],
    *,
    n1: int,
    n2: int | None,
    k: int,
    mode: str,
    batch_size: int | None,
    dtype: Any,
    device: Any,
    itemsize: int,
    working_bytes: float = 0.0,
    budget: float | None = None,
    contract_fn: Callable[[list, list], Any] | None = None,
    on_blocks: Callable[[int], None] | None = None,
    caller: str = "empirical_ntk",
) -> Any:
    """The blocked empirical NTK from a framework's per-block features.

    Refuses at once (:func:`infoscope.backends.check_ntk_memory`) an NTK
    whose result and stored features would not fit in the memory the
    machine, its container or the device has.

    Parameters
    ----------
    xp : namespace
        The namespace of the features and of the result.
    features : callable
        ``features(side, block, group) -> (feats, b)``: the features of the
        terms of `group` for the samples in `block` of input set `side` (0:
        X1, 1: X2), gram terms first in group order, then the group's
        Jacobians concatenated; ``b`` is the number of real samples (the
        features may have more rows, padding, that are cut).
    terms : sequence of Term
        From :func:`plan_terms`.
    n1, n2 : int
        Samples of X1 and X2 (``n2=None``: X2 is X1, the symmetric case).
    k : int
        Outputs per sample (1 in "sum" mode).
    mode : {"mean", "sum", "full"}
    batch_size : int or None
        Samples per block (None: :func:`block_size` chooses).
    dtype, device :
        Of the result.
    itemsize : int
        Bytes per number.
    budget : float, optional
        Bytes the stored features of one group may take; by default
        :data:`MEMORY_BUDGET`.
    working_bytes : float
        Memory per sample of one forward and backward pass besides the
        features (layer inputs and outputs), for the default block size.
    contract_fn : callable, optional
        ``contract_fn(fi, fj)``; by default :func:`contract` with `xp` (JAX
        passes a compiled one).
    on_blocks : callable, optional
        Called with the block size chosen, before any features are computed.
    caller : str, default="empirical_ntk"
        The public function, for the memory error.

    Returns
    -------
    array
        ``n1 kk x n2 kk`` of namespace `xp` on `device`, ``kk = k`` in
        "full" mode and 1 otherwise; divided by ``k`` in "mean" mode.
    """
    full = mode == "full"
    kk = k if full else 1
    symmetric = n2 is None
    n2_ = n1 if symmetric else n2
    per_sample = sum(t.bytes_per_sample for t in terms)
    b = block_size(max(n1, n2_), batch_size, per_sample + working_bytes, itemsize, kk)
    if on_blocks is not None:
        on_blocks(b)
    rows = block_slices(n1, b)
    cols = rows if symmetric else block_slices(n2_, b)
    budget = MEMORY_BUDGET if budget is None else budget  # read at each call
    stored = n1 + (0 if symmetric else n2_)
    check_ntk_memory(
        n1 * kk,
        n2_ * kk,
        dtype,
        working_set=int(min(per_sample * stored, max(budget, 0))),
        xp=xp,
        device=device,
        caller=caller,
        full=full and k > 1,
    )
    groups = group_terms(terms, stored, budget)
    if contract_fn is None:
        contract_fn = partial(contract, xp, k=k, full=full)
    canvas = _Canvas(xp, (n1 * kk, n2_ * kk), dtype, device)
    for group in groups:
        left = [features(0, block, group) for block in rows]
        right = left if symmetric else [features(1, block, group) for block in cols]
        for i, j in pair_schedule(len(rows), None if symmetric else len(cols)):
            (fi, bi), (fj, bj) = left[i], right[j]
            block = contract_fn(fi, fj)
            if block.shape != (bi * kk, bj * kk):
                block = block[: bi * kk, : bj * kk]
            r = slice(rows[i].start * kk, rows[i].stop * kk)
            c = slice(cols[j].start * kk, cols[j].stop * kk)
            canvas.add(r, c, block, mirror=symmetric and i != j)
        del left, right
    return canvas.finish(k if mode == "mean" else 1)


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #


def mixes_samples(batch: Any, singles: Any) -> bool:
    """Whether a batch's outputs differ from the same samples' taken alone.

    `batch` holds a model's outputs on a few samples taken together,
    `singles` its outputs on each of them alone (both ``m x k`` arrays of one
    namespace). They differ when the model mixes samples (BatchNorm on batch
    statistics, a batch mean).

    Examples
    --------
    >>> import numpy as np
    >>> mixes_samples(np.ones((3, 2)), np.ones((3, 2)))
    False
    """
    xp = compat.array_namespace(batch, singles)
    scale = float(xp.max(xp.abs(batch))) + 1.0
    tol = 1000 * float(xp.finfo(batch.dtype).eps) * scale
    return float(xp.max(xp.abs(batch - singles))) > tol


def warn_mixing(caller: str, stacklevel: int) -> None:
    """The warning for a model whose outputs mix samples (see above).

    The NTK the adapters compute is that of the per-sample function, each
    sample evaluated on its own.
    """
    warnings.warn(
        f"{caller}: the model's outputs mix samples (a batch's outputs differ "
        f"from those of its samples taken one at a time, as with BatchNorm on "
        f"batch statistics); the NTK computed is that of the per-sample "
        f"function, each sample evaluated on its own.",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
