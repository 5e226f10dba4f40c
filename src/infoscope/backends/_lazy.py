"""Lazy (dask) arrays: sums over chunks in one pass over the data.

A dask array of activations may be larger than any worker's memory and
recomputed from its source (a zarr store, a random generator) on every
``compute``. The streamed measures therefore take their shift from the first
chunk alone (no reduction over all samples before the sums can start) and
compute every sum of a pass in one graph.
"""

from __future__ import annotations

from typing import Any

import array_api_compat as compat

__all__ = ["computed_together", "stream_row_ranges"]


def stream_row_ranges(X: Any, batch: int | None) -> list[tuple[int, int]]:
    """The (start, stop) row ranges a streamed measure adds one at a time.

    Batches of `batch` rows (all rows when None), except for dask arrays:
    their first chunk, then the rest as one lazy piece, so that the shift
    taken from the first range needs one chunk and the graph of the sums has
    a task per chunk, not per batch.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._lazy import stream_row_ranges
    >>> stream_row_ranges(np.zeros((5, 2)), 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    n = X.shape[0]
    if compat.is_dask_array(X):
        first = int(X.chunks[0][0]) if X.chunks[0] else n
        return [(0, n)] if first >= n else [(0, first), (first, n)]
    step = n if batch is None else max(1, int(batch))
    return [(start, min(start + step, n)) for start in range(0, n, step)] or [(0, 0)]


def computed_together(values: Any) -> Any:
    """`values` (nested lists, tuples and dicts) with their dask arrays computed.

    One ``dask.compute`` for all of them: the chunks they share are read
    once. Each result comes back as a one-chunk dask array, so the caller's
    namespace stays dask; anything else is returned as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.backends._lazy import computed_together
    >>> computed_together({"a": [np.ones(2)]})["a"][0]
    array([1., 1.])
    """
    found: list[Any] = []
    _collect(values, found)
    if not found:
        return values
    import dask
    import dask.array as da
    import numpy as np

    results = dask.compute(*found)
    done = {
        id(a): da.from_array(np.asarray(r), chunks=-1)
        for a, r in zip(found, results, strict=True)
    }
    return _replace(values, done)


def _collect(values: Any, found: list[Any]) -> None:
    if compat.is_dask_array(values):
        found.append(values)
    elif isinstance(values, dict):
        for v in values.values():
            _collect(v, found)
    elif isinstance(values, (list, tuple)):
        for v in values:
            _collect(v, found)


def _replace(values: Any, done: dict[int, Any]) -> Any:
    if compat.is_dask_array(values):
        return done[id(values)]
    if isinstance(values, dict):
        return {k: _replace(v, done) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return type(values)(_replace(v, done) for v in values)
    return values
