"""The records of a monitored run, in memory or in an HDF5 file: :class:`Run`.

A record is everything measured at one step: tidy rows ``(layer, measure,
value)`` and named arrays (NTK eigenvalues, Node SNR weights and covariances).
In a file, each record is written and the file closed before the next one is
computed, so a run killed mid-way keeps every completed record. The file
layout (format version 1)::

    /            attrs: infoscope_run (format version), infoscope_version, config
    /rows/step     int64   one entry per (step, layer, measure) row
    /rows/layer    str
    /rows/measure  str
    /rows/value    float64
    /steps         int64   the completed records' steps, written last
    /arrays/<name>/<layer>/<step>   one dataset per stored array

Names are percent-encoded in group paths, so layer names with ``/`` survive.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

__all__ = ["Run", "load_run"]

FORMAT_VERSION = 1
_COLUMNS = ("step", "layer", "measure", "value")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            'Saving a run needs h5py: pip install "infoscope[monitor]" (or keep '
            "the records in memory with path=None)."
        ) from None
    return h5py


class Run:
    """The records of one monitored run, in memory or in an HDF5 file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The HDF5 file; created when missing, continued when it holds a run.
        None keeps the records in memory.
    config : dict, optional
        JSON-serialisable description of what is measured, stored with a new
        file.

    Examples
    --------
    >>> from infoscope.runs import Run
    >>> run = Run()
    >>> run.append(0, [("fc1", "dse", 2.5)], {})
    >>> run.steps, run.history()["value"].tolist()
    ([0], [2.5])
    """

    def __init__(self, path: str | os.PathLike | None = None, config: Any = None):
        self.path = None if path is None else os.fspath(path)
        self._rows: list[tuple[int, str, str, float]] = []
        self._arrays: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        self._steps: list[int] = []
        self.config = config
        if self.path is None:
            return
        h5py = _h5py()
        if os.path.exists(self.path):
            self._check_file(h5py)
            with h5py.File(self.path, "r") as f:
                self._steps = [int(s) for s in f["steps"][...]]
                stored = f.attrs.get("config")
                self.config = json.loads(stored) if stored else None
            return
        from . import __version__

        with h5py.File(self.path, "w") as f:
            f.attrs["infoscope_run"] = FORMAT_VERSION
            f.attrs["infoscope_version"] = __version__
            f.attrs["config"] = json.dumps(config)
            rows = f.create_group("rows")
            rows.create_dataset("step", (0,), np.int64, maxshape=(None,), chunks=True)
            for name in ("layer", "measure"):
                rows.create_dataset(
                    name, (0,), h5py.string_dtype(), maxshape=(None,), chunks=True
                )
            rows.create_dataset(
                "value", (0,), np.float64, maxshape=(None,), chunks=True
            )
            f.create_dataset("steps", (0,), np.int64, maxshape=(None,), chunks=True)
            f.create_group("arrays")

    def _check_file(self, h5py: Any) -> None:
        try:
            with h5py.File(self.path, "r") as f:
                version = f.attrs.get("infoscope_run")
        except OSError as exc:
            raise ValueError(
                f"{self.path!r} is not a readable HDF5 file ({exc}); an infoscope "
                f"run is the .h5 file a Monitor writes."
            ) from None
        if version is None:
            raise ValueError(
                f"{self.path!r} is an HDF5 file but not an infoscope run (the "
                f".h5 file a Monitor writes)."
            )
        if int(version) > FORMAT_VERSION:
            raise ValueError(
                f"{self.path!r} has run format {int(version)}, newer than this "
                f"infoscope reads ({FORMAT_VERSION}); upgrade infoscope."
            )

    @property
    def steps(self) -> list[int]:
        """The steps of the completed records, in the order they were recorded."""
        return list(self._steps)

    def append(
        self,
        step: int,
        rows: list[tuple[str, str, float]],
        arrays: dict[tuple[str, str], Any],
    ) -> None:
        """Add one complete record: its rows and its ``(name, layer)`` arrays."""
        step = int(step)
        arrays = {key: np.asarray(a) for key, a in arrays.items()}
        if self.path is None:
            self._rows.extend((step, layer, m, float(v)) for layer, m, v in rows)
            for (name, layer), a in arrays.items():
                self._arrays.setdefault(name, {}).setdefault(step, {})[layer] = a
            self._steps.append(step)
            return
        h5py = _h5py()
        with h5py.File(self.path, "a") as f:
            _drop_incomplete(f)
            columns = {
                "step": np.full(len(rows), step, dtype=np.int64),
                "layer": np.array([r[0] for r in rows], dtype=object),
                "measure": np.array([r[1] for r in rows], dtype=object),
                "value": np.array([r[2] for r in rows], dtype=np.float64),
            }
            for name, values in columns.items():
                _extend(f["rows"][name], values)
            for (name, layer), a in arrays.items():
                group = f["arrays"].require_group(quote(name, safe=""))
                group = group.require_group(quote(layer, safe=""))
                if str(step) in group:  # left by a record that never completed
                    del group[str(step)]
                group.create_dataset(str(step), data=a)
            # Last: a record counts as complete only once its step is listed.
            _extend(f["steps"], np.array([step], dtype=np.int64))
        self._steps.append(step)

    def history(self, format: str = "pandas") -> Any:
        """The records as a tidy table, one row per (step, layer, measure).

        Parameters
        ----------
        format : {"pandas", "xarray"}, default="pandas"
            ``"pandas"``: a DataFrame with columns step, layer, measure,
            value, in record order. ``"xarray"``: a Dataset with one
            variable per measure over the dimensions (step, layer), NaN where
            a measure does not apply to a layer.

        Returns
        -------
        pandas.DataFrame or xarray.Dataset
        """
        if format not in ("pandas", "xarray"):
            raise ValueError(
                f'history: format={format!r} is not one of "pandas", "xarray".'
            )
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                'history() needs pandas: pip install "infoscope[monitor]".'
            ) from None
        frame = pd.DataFrame(self._read_rows(), columns=list(_COLUMNS))
        frame = frame.astype({"step": "int64", "value": "float64"})
        if format == "pandas":
            return frame
        try:
            import xarray  # noqa: F401
        except ImportError:
            raise ImportError(
                'history(format="xarray") needs xarray: pip install xarray.'
            ) from None
        table = frame.pivot_table(
            index=["step", "layer"], columns="measure", values="value", sort=False
        )
        table.columns.name = None
        return table.to_xarray()

    def _read_rows(self) -> Any:
        if self.path is None:
            return self._rows
        h5py = _h5py()
        with h5py.File(self.path, "r") as f:
            rows = f["rows"]
            step = rows["step"][...]
            layer = rows["layer"].asstr()[...]
            measure = rows["measure"].asstr()[...]
            value = rows["value"][...]
            done = np.isin(step, f["steps"][...])
        columns = (step[done], layer[done], measure[done], value[done])
        return list(zip(*columns, strict=True))

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        """The arrays stored under `name`: step -> layer -> NumPy array.

        Empty when nothing is stored under `name` (e.g. ``"ntk_eigenvalues"``
        in a run without an NTK measure).
        """
        if self.path is None:
            stored = self._arrays.get(name, {})
            return {step: dict(layers) for step, layers in stored.items()}
        h5py = _h5py()
        out: dict[int, dict[str, np.ndarray]] = {}
        with h5py.File(self.path, "r") as f:
            done = {int(s) for s in f["steps"][...]}
            group = f["arrays"].get(quote(name, safe=""))
            if group is None:
                return out
            for layer_key, layer_group in group.items():
                for step_key, data in layer_group.items():
                    if int(step_key) in done:
                        layers = out.setdefault(int(step_key), {})
                        layers[unquote(layer_key)] = data[...]
        return {step: out[step] for step in sorted(out)}


def _drop_incomplete(f: Any) -> None:
    """Remove the rows of a record that was being written when the run died."""
    step = f["rows"]["step"][...]
    incomplete = ~np.isin(step, f["steps"][...])
    if incomplete.any():
        keep = int(np.argmax(incomplete))  # such rows can only be the tail
        for dataset in f["rows"].values():
            dataset.resize((keep,))


def _extend(dataset: Any, values: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize((start + len(values),))
    dataset[start:] = values


def load_run(path: str | os.PathLike) -> Run:
    """Open the records of a run saved by a :class:`~infoscope.Monitor`.

    Parameters
    ----------
    path : str or os.PathLike
        The run's HDF5 file.

    Returns
    -------
    Run
        With ``history()``, ``arrays(name)`` and ``steps``.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If `path` is not an infoscope run.

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import Run, load_run
    >>> path = os.path.join(tempfile.mkdtemp(), "run.h5")
    >>> Run(path).append(5, [("model", "loss", 0.25)], {})
    >>> load_run(path).history().to_dict("records")
    [{'step': 5, 'layer': 'model', 'measure': 'loss', 'value': 0.25}]
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No run file at {os.fspath(path)!r}.")
    return Run(path)
