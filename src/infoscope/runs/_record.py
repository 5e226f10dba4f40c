"""One record of a run: everything measured at one step."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["Record"]

MODEL = "model"  # the layer name of model-level values (NTK, loss, metrics)


class Record:
    """Everything measured at one step: named values per layer, and arrays.

    What :meth:`Monitor.record <infoscope.Monitor.record>` returns and what
    :meth:`Run.append <infoscope.runs.Run.append>` stores, as one
    transaction.

    Parameters
    ----------
    step : int
        The training step (or epoch) the record belongs to.
    values : iterable of (layer, measure, value)
        One number per (layer, measure); model-level values go under the
        layer ``"model"``. NaN is a value like any other.
    arrays : mapping of (name, layer) to array-like, optional
        Arrays kept with the record (NTK eigenvalues, Node SNR weights),
        stored as NumPy arrays of numbers.

    Attributes
    ----------
    step : int
    values : tuple of (str, str, float)
        In the order given.
    arrays : dict of (str, str) to numpy.ndarray

    Examples
    --------
    >>> from infoscope.runs import Record
    >>> record = Record(3, [("fc1", "dse", 2.5), ("model", "loss", 0.25)],
    ...                 {("ntk_eigenvalues", "model"): [2.0, 1.0]})
    >>> record
    Record(step=3, values=2, arrays=['ntk_eigenvalues/model'])
    >>> record.value("dse", "fc1"), record.value("loss")
    (2.5, 0.25)
    """

    __slots__ = ("arrays", "step", "values")

    def __init__(
        self,
        step: int,
        values: Iterable[tuple[str, str, float]] = (),
        arrays: Mapping[tuple[str, str], Any] | None = None,
    ):
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"Record: step must be an int; got {step!r}.")
        if not -(2**63) <= int(step) < 2**63:
            raise ValueError(f"Record: step {step} does not fit in 64 bits.")
        self.step = int(step)
        self.values = tuple(_check_value(v) for v in values)
        seen: set[tuple[str, str]] = set()
        for layer, measure, _ in self.values:
            if (layer, measure) in seen:
                raise ValueError(
                    f"Record: step {self.step} has two values of {measure!r} for "
                    f"layer {layer!r}; give each (layer, measure) once."
                )
            seen.add((layer, measure))
        self.arrays = {
            _check_key(key): _check_array(key, a) for key, a in (arrays or {}).items()
        }

    def value(self, measure: str, layer: str = MODEL) -> float:
        """The value of `measure` for `layer` (model-level values by default)."""
        for row_layer, row_measure, value in self.values:
            if row_layer == layer and row_measure == measure:
                return value
        held = sorted({f"{m}/{lay}" for lay, m, _ in self.values})
        raise KeyError(
            f"Record at step {self.step} has no {measure!r} for layer {layer!r}; "
            f"it holds {held}."
        )

    def to_frame(self) -> Any:
        """The values as a tidy DataFrame: step, layer, measure, value."""
        import pandas as pd

        rows = [(self.step, *row) for row in self.values]
        frame = pd.DataFrame(rows, columns=["step", "layer", "measure", "value"])
        return frame.astype({"step": "int64", "value": "float64"})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.step == other.step
            and _same_values(self.values, other.values)
            and self.arrays.keys() == other.arrays.keys()
            and all(
                np.array_equal(a, other.arrays[k], equal_nan=a.dtype.kind in "fc")
                for k, a in self.arrays.items()
            )
        )

    __hash__ = None  # mutable arrays inside

    def __repr__(self) -> str:
        arrays = [f"{name}/{layer}" for name, layer in self.arrays]
        return f"Record(step={self.step}, values={len(self.values)}, arrays={arrays})"


def _same_values(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (np.isnan(x[2]) and np.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def _check_value(row: Any) -> tuple[str, str, float]:
    try:
        layer, measure, value = row
    except (TypeError, ValueError):
        raise TypeError(
            f"Record: each value must be a (layer, measure, value) triple; got {row!r}."
        ) from None
    _check_key((layer, measure), what="(layer, measure)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"Record: the value of {measure!r} for layer {layer!r} must be one "
            f"number; got {type(value).__name__}."
        ) from None
    return layer, measure, number


def _check_key(key: Any, what: str = "(name, layer)") -> tuple[str, str]:
    if (
        not isinstance(key, tuple)
        or len(key) != 2
        or not all(isinstance(part, str) and part for part in key)
    ):
        raise TypeError(f"Record: {what} must be two non-empty strings; got {key!r}.")
    return key


def _check_array(key: tuple[str, str], a: Any) -> np.ndarray:
    array = np.asarray(a)
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"Record: array {key[0]!r} of layer {key[1]!r} has dtype {array.dtype}; "
            f"a run keeps arrays of numbers (bool, int, float, complex)."
        )
    return array
