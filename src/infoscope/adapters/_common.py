"""What the framework adapters share besides the NTK engine.

Argument checks, the per-layer outputs of ``activations``, the selection of
a model's output for the NTK, and the pooling of sequence activations.
Nothing here imports a framework; the pooling is written once against the
array API.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = [
    "OUTPUT_MODES",
    "POOLINGS",
    "LayerOutputs",
    "check_batch_size",
    "check_layers",
    "check_output_mode",
    "check_pool",
    "pool_activations",
    "pool_sequence",
    "select_output",
]

OUTPUT_MODES = ("mean", "sum", "full")

POOLINGS = ("mean", "first", "last")


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


# --------------------------------------------------------------------------- #
# The model's output for the NTK
# --------------------------------------------------------------------------- #


def select_output(
    caller: str, out: Any, output: Any, is_array: Callable[[Any], bool]
) -> Any:
    """The array of a model's output `out` that the NTK differentiates.

    `output` is None (the model returns one array), a key (``str``: a
    field of a dict or a HuggingFace ``ModelOutput``; ``int``: a position in
    a tuple or list) or a callable ``output(out) -> array``.

    Examples
    --------
    >>> import numpy as np
    >>> select_output("f", {"logits": np.ones((2, 3))}, "logits",
    ...               lambda a: isinstance(a, np.ndarray)).shape
    (2, 3)
    """
    if output is None:
        selected = out
    elif callable(output):
        selected = output(out)
    else:
        try:
            selected = out[output]
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"{caller}: `output={output!r}` selects nothing from the model's "
                f"output ({_describe(out)}); {_choices(out)}"
            ) from None
    if not is_array(selected):
        what = "the model returns" if output is None else f"`output={output!r}` gives"
        raise ValueError(
            f"{caller}: {what} {_describe(selected)}; the NTK needs one array of "
            f"outputs, one row per sample. {_choices(selected)}"
        )
    return selected


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {list(out)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    return f"a {type(out).__name__}"


def _choices(out: Any) -> str:
    if isinstance(out, Mapping):
        keys = list(out)
        return (
            f"Select one with `output=` a key ({keys[0]!r}, ...) or a callable "
            f"(e.g. `output=lambda out: out[{keys[0]!r}][:, 0]`)."
            if keys
            else "Select an array with `output=` a callable."
        )
    if isinstance(out, (tuple, list)):
        return "Select one with `output=` an index (e.g. `output=0`) or a callable."
    return "Select an array with `output=` a key, an index or a callable."


# --------------------------------------------------------------------------- #
# Pooling sequence activations
# --------------------------------------------------------------------------- #


def check_pool(caller: str, pool: Any, mask: Any) -> str | None:
    """`pool` if it is None or one of :data:`POOLINGS`, else a ValueError.

    Examples
    --------
    >>> check_pool("f", "mean", None)
    'mean'
    """
    if pool is not None and (not isinstance(pool, str) or pool not in POOLINGS):
        raise ValueError(
            f"{caller}: `pool` must be None (activations as the layers return "
            f"them), 'mean' (mean over the unmasked tokens), 'first' (the first "
            f"token) or 'last' (the last unmasked token); got {pool!r}."
        )
    if pool is None and mask is not None:
        raise ValueError(
            f"{caller}: `mask` is given but `pool` is None; the mask only says "
            f"which tokens pooling averages or picks. Pass pool='mean', 'first' "
            f"or 'last'."
        )
    return pool


def pool_sequence(a: Any, pool: str, mask: Any = None) -> Any:
    """One row per sample from a sequence activation ``(n, t, ...)``.

    Parameters
    ----------
    a : array
        Activations with the tokens along the second axis.
    pool : {"mean", "first", "last"}
        ``"mean"``: the mean over the unmasked tokens; ``"first"``: the first
        token (a ``[CLS]`` token); ``"last"``: the last unmasked token.
    mask : array, optional
        ``(n, t)``, nonzero (or True) for the tokens that count, zero for
        padding; by default every token counts. It is moved to the
        namespace and device of `a`.

    Returns
    -------
    array
        ``(n, ...)``, of the namespace, device and dtype of `a`.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(12.0).reshape(2, 3, 2)
    >>> mask = np.array([[1, 1, 0], [1, 1, 1]])
    >>> pool_sequence(a, "mean", mask).tolist()
    [[1.0, 2.0], [8.0, 9.0]]
    >>> pool_sequence(a, "last", mask).tolist()
    [[2.0, 3.0], [10.0, 11.0]]
    """
    xp = compat.array_namespace(a)
    n, t = a.shape[0], a.shape[1]
    device = compat.device(a)
    if mask is None:
        keep = xp.ones((n, t), dtype=a.dtype, device=device)
    else:
        keep = xp.asarray(_to_namespace(mask, xp, device) != 0, dtype=a.dtype)
    positions = xp.arange(1, t + 1, dtype=a.dtype, device=device)[None, :]
    if pool == "first":
        weights = xp.asarray(positions == 1, dtype=a.dtype) * xp.ones_like(keep)
    elif pool == "last":
        last = xp.max(keep * positions, axis=1, keepdims=True)
        weights = xp.asarray(positions == last, dtype=a.dtype)
    else:
        weights = keep
    shape = (n, t) + (1,) * (a.ndim - 2)
    weights = xp.reshape(weights, shape)
    total = xp.sum(weights, axis=1)
    total = xp.where(total == 0, xp.ones_like(total), total)
    return xp.sum(a * weights, axis=1) / total


def pool_activations(
    caller: str, acts: dict, pool: str, mask: Any, inputs: Any
) -> dict:
    """`acts` pooled over their token axis (the adapters' ``pool=`` option).

    `mask` is None, an ``(n, t)`` array, or the key or position of one in
    `inputs` (an :class:`~infoscope.adapters._inputs.Inputs`). Activations with
    fewer than three axes, whose second axis is not ``t`` long, or that are
    not floating (masks) are kept as they are.
    """
    if isinstance(mask, (str, int)) and not isinstance(mask, bool):
        found = [v for key, v, is_arr in inputs.items if is_arr and key == mask]
        if not found:
            keys = [key for key, _, is_arr in inputs.items if is_arr]
            raise ValueError(
                f"{caller}: `mask={mask!r}` names no array of `X` (it has "
                f"{keys}); pass the key or position of the mask in `X`, or the "
                f"mask itself."
            )
        mask = found[0]
    if mask is not None and not hasattr(mask, "shape"):
        mask = np.asarray(mask)
    if mask is not None and (len(mask.shape) != 2 or int(mask.shape[0]) != inputs.n):
        raise ValueError(
            f"{caller}: `mask` must be (n_samples, n_tokens) = ({inputs.n}, t); "
            f"got shape {tuple(mask.shape)}."
        )
    t = None if mask is None else int(mask.shape[1])
    return {
        name: pool_sequence(a, pool, mask)
        if a.ndim >= 3
        and (t is None or a.shape[1] == t)
        and compat.array_namespace(a).isdtype(a.dtype, "real floating")
        else a
        for name, a in acts.items()
    }


def _to_namespace(mask: Any, xp: Any, device: Any) -> Any:
    """`mask` as an array of `xp` on `device` (a copy through NumPy if elsewhere)."""
    if compat.is_array_api_obj(mask) and compat.array_namespace(mask) is xp:
        if compat.device(mask) == device:
            return mask
    from ..backends import to_numpy

    return xp.asarray(to_numpy(mask), device=device)
