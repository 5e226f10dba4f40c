"""Model inputs: one array, or a tuple, list or dict of arrays.

A model may take several inputs (token ids and an attention mask, an image
and a vector). The adapters take them as they would be passed to the model:

- one array ``X``: the model is called as ``model(X)``;
- a tuple or list of arrays ``(A, B)``: ``model(A, B)``;
- a dict of arrays ``{"input_ids": A, "attention_mask": M}``:
  ``model(input_ids=A, attention_mask=M)``.

Every array shares the first (sample) axis. Other values in a tuple, list or
dict (``None``, a flag, a number) are passed to every call unchanged. Only
floating arrays take the model's float dtype; integer and boolean arrays
(token ids, masks) keep theirs and are never differentiated.

Nothing here imports a framework: the adapters pass in how to convert one
array. The public helpers (:func:`n_samples`, :func:`take_samples`,
:func:`map_arrays`) let code that holds a probe set (a monitor) count, slice
and convert inputs of any of these forms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["Inputs", "map_arrays", "n_samples", "take_samples"]


def _is_array(x: Any) -> bool:
    """An array of some library (not a Python scalar, list or None)."""
    return (
        hasattr(x, "shape")
        and hasattr(x, "dtype")
        and not isinstance(x, (np.generic, type))
    )


def _structure(X: Any) -> str:
    """``"array"``, ``"args"`` (tuple or list of arrays) or ``"kwargs"`` (dict)."""
    if isinstance(X, Mapping):
        return "kwargs"
    if isinstance(X, (tuple, list)) and X and all(_is_array(v) for v in X):
        return "args"
    if isinstance(X, tuple) and X and any(_is_array(v) for v in X):
        return "args"
    return "array"


class Inputs:
    """A model's inputs split into per-sample arrays and constants.

    Parameters
    ----------
    kind : {"array", "args", "kwargs"}
        How the model is called (see the module docstring).
    items : list of (key, value, is_array)
        The values in call order: ``key`` is the position or the keyword.
    n : int
        Samples (the first axis of every array).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.adapters._inputs import Inputs
    >>> X = Inputs.read("f", "X", (np.ones((4, 2)), np.zeros(4, dtype=int)))
    >>> X.n, X.kind, [tuple(a.shape) for a in X.arrays]
    (4, 'args', [(4, 2), (4,)])
    >>> float(X.take(slice(1, 3)).call(lambda a, b: a.sum() + b.sum()))
    4.0
    """

    def __init__(self, kind: str, items: list[tuple[Any, Any, bool]], n: int):
        self.kind, self.items, self.n = kind, items, n

    @classmethod
    def read(
        cls,
        caller: str,
        name: str,
        X: Any,
        convert: Callable[[str, Any], Any] = lambda label, x: x,
    ) -> Inputs:
        """Check `X` and convert each of its arrays with ``convert(label, x)``.

        ``label`` names the array in messages (``X``, ``X[1]``,
        ``X['attention_mask']``). Raises a ValueError for an empty
        collection, a scalar, no samples, or arrays with different numbers
        of samples.
        """
        kind = _structure(X)
        if kind == "array":
            entries = [(None, X, True)]
        elif kind == "args":
            entries = [(i, v, _is_array(v)) for i, v in enumerate(X)]
        else:
            entries = [(k, v, _is_array(v)) for k, v in X.items()]
        if kind != "array" and not any(is_arr for _, _, is_arr in entries):
            raise ValueError(
                f"{caller}: `{name}` is a {type(X).__name__} with no array in it; "
                f"pass the inputs as an array, or a tuple, list or dict of arrays "
                f"with the samples along their first axis."
            )
        items = []
        counts: dict[str, int] = {}
        for key, value, is_arr in entries:
            label = name if key is None else f"{name}[{key!r}]"
            if not is_arr:
                items.append((key, value, False))
                continue
            value = convert(label, value)
            if value.ndim == 0:
                raise ValueError(
                    f"{caller}: `{label}` is a scalar; pass a batch of inputs with "
                    f"the samples along the first axis (e.g. `{label}[None]` for "
                    f"one sample)."
                )
            if value.shape[0] == 0:
                raise ValueError(
                    f"{caller}: `{label}` has no samples (shape {tuple(value.shape)})."
                )
            counts[label] = int(value.shape[0])
            items.append((key, value, True))
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"{caller}: the arrays of `{name}` must share the first (sample) "
                f"axis; they have {counts} samples."
            )
        return cls(kind, items, next(iter(counts.values())))

    @property
    def arrays(self) -> list[Any]:
        """The per-sample arrays, in call order."""
        return [value for _, value, is_arr in self.items if is_arr]

    def with_arrays(self, arrays: list[Any]) -> Inputs:
        """The same inputs with the arrays replaced (constants kept)."""
        it = iter(arrays)
        items = [
            (key, next(it) if is_arr else value, is_arr)
            for key, value, is_arr in self.items
        ]
        first = arrays[0] if arrays else None
        n = int(first.shape[0]) if first is not None and first.ndim else self.n
        return Inputs(self.kind, items, n)

    def take(self, index: Any) -> Inputs:
        """The samples at `index` (a slice or an index array) of every array."""
        return self.with_arrays([a[index] for a in self.arrays])

    def args(self, arrays: list[Any] | None = None) -> tuple[tuple, dict]:
        """``(args, kwargs)`` to call the model with (`arrays` in place of ours)."""
        it = iter(self.arrays if arrays is None else arrays)
        values = [(key, next(it) if is_arr else v) for key, v, is_arr in self.items]
        if self.kind == "kwargs":
            return (), dict(values)
        return tuple(v for _, v in values), {}

    def structure(self, arrays: list[Any] | None = None) -> Any:
        """The inputs as given: one array, a tuple of values or a dict."""
        args, kwargs = self.args(arrays)
        if self.kind == "kwargs":
            return kwargs
        return args[0] if self.kind == "array" else args

    def call(self, fn: Callable, *leading: Any, arrays: list[Any] | None = None) -> Any:
        """``fn(*leading, *args, **kwargs)`` with these inputs."""
        args, kwargs = self.args(arrays)
        return fn(*leading, *args, **kwargs)

    def describe(self) -> str:
        """Shapes and dtypes of the arrays, for messages."""
        parts = [
            f"{'' if key is None else f'{key!r}: '}{tuple(v.shape[1:])} {v.dtype}"
            for key, v, is_arr in self.items
            if is_arr
        ]
        return "samples of shape " + ", ".join(parts)

    def sample_signature(self) -> tuple:
        """What two input sets of the same model share: keys and sample shapes."""
        return tuple(
            (key, tuple(v.shape[1:]) if is_arr else None)
            for key, v, is_arr in self.items
        )


def check_same_inputs(caller: str, X1: Inputs, X2: Inputs) -> None:
    """Raise unless `X2` has the structure and sample shapes of `X1`.

    Examples
    --------
    >>> import numpy as np
    >>> a = Inputs.read("f", "X1", np.ones((3, 2)))
    >>> check_same_inputs("f", a, Inputs.read("f", "X2", np.ones((5, 2))))
    """
    if X1.sample_signature() == X2.sample_signature():
        return
    if X1.kind == X2.kind == "array":
        s1, s2 = tuple(X1.arrays[0].shape[1:]), tuple(X2.arrays[0].shape[1:])
        raise ValueError(
            f"{caller}: `X2` has samples of shape {s2} but `X1` has samples of "
            f"shape {s1}; pass inputs of the same model (or X2=None for the NTK "
            f"of X1 with itself)."
        )
    raise ValueError(
        f"{caller}: `X2` ({X2.describe()}) does not match `X1` ({X1.describe()}); "
        f"pass inputs of the same model, in the same structure (or X2=None for "
        f"the NTK of X1 with itself)."
    )


# --------------------------------------------------------------------------- #
# Public helpers for code that holds inputs (a monitor's probe set)
# --------------------------------------------------------------------------- #


def n_samples(X: Any) -> int:
    """The number of samples in model inputs `X`.

    `X` is an array, or a tuple, list or dict of arrays sharing the first
    axis, as the adapters take it.

    Raises
    ------
    ValueError
        If `X` holds no array, a scalar, or arrays with different numbers of
        samples.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.adapters import n_samples
    >>> n_samples({"input_ids": np.zeros((8, 5), dtype=int),
    ...            "attention_mask": np.ones((8, 5), dtype=int)})
    8
    >>> n_samples(np.ones((3, 2)))
    3
    """
    return Inputs.read("infoscope.adapters.n_samples", "X", X, _host_array).n


def take_samples(X: Any, index: Any) -> Any:
    """The samples of `X` at `index`, in the structure of `X`.

    Parameters
    ----------
    X : array, or tuple, list or dict of arrays
        Model inputs, samples along the first axis of every array.
    index : slice or array of int
        Which samples; applied to every array of `X` (other values are kept).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.adapters import take_samples
    >>> X = (np.arange(10.0).reshape(5, 2), np.arange(5))
    >>> image, ids = take_samples(X, np.array([0, 3]))
    >>> image.tolist(), ids.tolist()
    ([[0.0, 1.0], [6.0, 7.0]], [0, 3])
    """
    return map_arrays(lambda a: a[index], X)


def map_arrays(fn: Callable[[Any], Any], X: Any) -> Any:
    """``fn`` applied to each array of `X`, in the structure of `X`.

    What converts a multi-input probe set to another library or device, e.g.
    ``map_arrays(torch.as_tensor, X)``. Values that are not arrays (None, a
    flag) are kept.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.adapters import map_arrays
    >>> out = map_arrays(lambda a: a * 2, {"x": np.ones(2), "flag": True})
    >>> out["x"].tolist(), out["flag"]
    ([2.0, 2.0], True)
    """
    kind = _structure(X)
    if kind == "array":
        return fn(X)
    if kind == "kwargs":
        return {k: fn(v) if _is_array(v) else v for k, v in X.items()}
    return type(X)(fn(v) if _is_array(v) else v for v in X)


def _host_array(label: str, x: Any) -> Any:
    return x if _is_array(x) else np.asarray(x)
