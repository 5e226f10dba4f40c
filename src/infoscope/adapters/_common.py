"""What the framework adapters share: argument checks, blocking and the NTK plan.

Nothing here imports a framework. The torch and JAX modules compute, per block
of samples, the *features* of each group of parameters (activation and
back-propagated-signal matrices for dense and convolutional layers, per-sample
Jacobians for everything else) and contract the features of block pairs into
NTK blocks; this module decides the blocks, the groups and the order.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OUTPUT_MODES",
    "LayerOutputs",
    "MEMORY_BUDGET",
    "Term",
    "block_slices",
    "check_batch_size",
    "check_layers",
    "check_output_mode",
    "check_same_sample_shape",
    "choose_batch_size",
    "group_terms",
    "pair_schedule",
]

OUTPUT_MODES = ("mean", "sum", "full")

# Bytes the stored per-sample features of one parameter group may take. When
# the features of all parameters for all samples fit, every sample block is
# passed through the network once; otherwise the parameters are split into
# groups that fit and the blocks are passed once per group.
MEMORY_BUDGET = 512 * 2**20

# Samples per block when `batch_size` is None: the working memory of one block
# pair (and of one forward/backward pass) scales with it.
_WORKING_BYTES = 64 * 2**20


def check_output_mode(caller: str, output_mode: Any) -> str:
    """`output_mode` if it is one of :data:`OUTPUT_MODES`, else a ValueError.

    Examples
    --------
    >>> check_output_mode("f", "full")
    'full'
    """
    if not isinstance(output_mode, str) or output_mode not in OUTPUT_MODES:
        raise ValueError(
            f"{caller}: `output_mode` must be one of 'mean' (average over the "
            f"outputs, n x n), 'sum' (the NTK of the summed outputs, n x n) or "
            f"'full' (every output pair, nk x nk); got {output_mode!r}."
        )
    return output_mode


def check_batch_size(caller: str, batch_size: Any) -> int | None:
    """`batch_size` as an int >= 1, or None; a ValueError otherwise.

    Examples
    --------
    >>> check_batch_size("f", 64), check_batch_size("f", None)
    (64, None)
    """
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(
            f"{caller}: `batch_size` must be a positive integer (samples per "
            f"block) or None (chosen from the memory it needs); got {batch_size!r}."
        )
    if batch_size < 1:
        raise ValueError(
            f"{caller}: `batch_size` must be a positive integer (samples per "
            f"block) or None; got {batch_size}."
        )
    return int(batch_size)


def check_same_sample_shape(caller: str, X1: Any, X2: Any) -> None:
    """Raise unless the samples of `X2` have the shape of those of `X1`.

    Examples
    --------
    >>> import numpy as np
    >>> check_same_sample_shape("f", np.ones((3, 2)), np.ones((5, 2)))
    """
    if tuple(X2.shape[1:]) != tuple(X1.shape[1:]):
        raise ValueError(
            f"{caller}: `X2` has samples of shape {tuple(X2.shape[1:])} but "
            f"`X1` has samples of shape {tuple(X1.shape[1:])}; pass inputs of "
            f"the same model (or X2=None for the NTK of X1 with itself)."
        )


def check_layers(caller: str, layers: Any, available: Sequence[str]) -> list[str]:
    """The requested layer names, each checked against `available`.

    ``None`` asks for all of them; a single string for one.

    Examples
    --------
    >>> check_layers("f", "b", ["a", "b"])
    ['b']
    """
    if layers is None:
        return list(available)
    if isinstance(layers, str):
        layers = [layers]
    try:
        names = list(layers)
    except TypeError:
        raise ValueError(
            f"{caller}: `layers` must be None, a layer name or a list of layer "
            f"names; got {layers!r}."
        ) from None
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(
            f"{caller}: unknown layer name(s) {unknown} in `layers`; the model "
            f"has {list(available)}. Pass names from that list (or layers=None "
            f"for all of them)."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{caller}: `layers` names a layer twice: {names}.")
    return names


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


@dataclass
class Term:
    """One contribution to the NTK: a group of parameters and how it is computed.

    Attributes
    ----------
    name : str
        Readable name (a layer or the parameters of the generic path).
    kind : {"gram", "jacobian"}
        ``"gram"``: a dense or convolutional weight whose per-sample
        Jacobian is the outer product of its input (``A``: samples x
        positions x inputs, a column of ones for the bias) and the signal
        back-propagated to its output (``G``: samples x outputs x positions x
        units); the NTK block is ``sum_pq (A_ip . A_jq)(G_iap . G_jbq)``.
        ``"jacobian"``: per-sample Jacobians (samples x outputs x parameters),
        formed from ``A`` and ``G`` or by the generic path.
    bytes_per_sample : float
        Memory of its stored features, per sample.
    key : Any
        What the framework module needs to find it again (module, leaves).
    """

    name: str
    kind: str
    bytes_per_sample: float
    key: Any = None
    info: dict = field(default_factory=dict)


def structured_kind(positions: int, n_in: int, n_out: int, k: int, full: bool) -> str:
    """``"gram"`` or ``"jacobian"``: the cheaper way to contract one weight.

    Per pair of samples the Gram form costs ``P^2 (n_in + k n_out)`` ("mean")
    or ``P^2 (n_in + k^2 n_out)`` ("full") and the Jacobian form
    ``k n_in n_out`` or ``k^2 n_in n_out``, P being the number of positions
    the weight is applied at (1 for a dense layer on vectors).

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
                stacklevel=4,
            )
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0.0
        current.append(term)
        used += size
    if current:
        groups.append(current)
    return groups


def run_blocked(
    features: Callable[[int, slice, list[Term]], Any],
    contract: Callable[[Any, Any, list[Term]], Any],
    store: Callable[[int, int, Any], None],
    groups: list[list[Term]],
    rows: list[slice],
    cols: list[slice] | None,
) -> None:
    """Drive the blocked NTK: features once per (block, group), pairs once.

    `features(side, block, group)` computes the features of the samples in
    `block` of input set `side` (0: X1, 1: X2); `contract(f_i, f_j, group)`
    turns the features of two blocks into an NTK block; `store(i, j, block)`
    adds it to the result. With ``cols=None`` (symmetric) only pairs
    ``i <= j`` are contracted.
    """
    schedule = pair_schedule(len(rows), None if cols is None else len(cols))
    for group in groups:
        left = [features(0, block, group) for block in rows]
        right = left if cols is None else [features(1, block, group) for block in cols]
        for i, j in schedule:
            store(i, j, contract(left[i], right[j], group))
        del left, right


class LayerOutputs:
    """Per-layer outputs captured by hooks, block by block, joined per call.

    An adapter opens a block with :meth:`start`, its hooks :meth:`capture`
    each call's output, :meth:`finish` checks that every output has the
    block's samples along its first axis, and :meth:`joined` concatenates
    the blocks: ``name`` for a layer's first call in a forward pass,
    ``name:1``, ... for later calls.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.adapters._common import LayerOutputs
    >>> outputs = LayerOutputs("f", ["a"], explicit=True)
    >>> for block in (np.ones((2, 3)), np.zeros((1, 3))):
    ...     outputs.start()
    ...     outputs.capture("a", block)
    ...     outputs.finish(len(block))
    >>> outputs.joined(np.concatenate)["a"].shape
    (3, 3)
    """

    def __init__(self, caller: str, names: Sequence[str], *, explicit: bool):
        self.caller, self.names, self.explicit = caller, list(names), explicit
        self._seen: dict[str, list[Any]] = {}
        self._blocks: dict[str, list[list[Any]]] = {name: [] for name in names}

    def start(self) -> None:
        self._seen = {name: [] for name in self.names}

    def capture(self, name: str, output: Any) -> None:
        self._seen[name].append(output)

    def finish(self, size: int, detach: Callable[[Any], Any] = lambda x: x) -> None:
        for name in self.names:
            outs = self._seen[name]
            if any(o is None or o.ndim == 0 or o.shape[0] != size for o in outs):
                if self.explicit:
                    raise ValueError(
                        f"{self.caller}: layer {name!r} returns no array with the "
                        f"{size} samples along its first axis; it cannot be split "
                        f"into per-sample activations."
                    )
                outs = []  # by default such layers are left out
            self._blocks[name].append([detach(o) for o in outs])

    def joined(self, concatenate: Callable[[list[Any]], Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name in self.names:
            per_block = self._blocks[name]
            calls = min(len(b) for b in per_block)
            if calls == 0 and self.explicit:
                raise ValueError(
                    f"{self.caller}: layer {name!r} was not called in the forward pass."
                )
            for c in range(calls):
                key = name if c == 0 else f"{name}:{c}"
                result[key] = concatenate([b[c] for b in per_block])
        return result
