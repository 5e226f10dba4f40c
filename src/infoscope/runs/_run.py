"""A monitored run's records, and what can be done with them: :class:`Run`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._record import Record
from ._store import Store, location_path, open_store

__all__ = ["Run", "load_run"]

_COLUMNS = ["step", "layer", "measure", "value"]


class Run:
    """The records of one monitored run, in memory or in a crash-safe file.

    A file run is a SQLite database in write-ahead-logging mode: each record
    is one transaction, so a process killed at any instant leaves every
    record whose :meth:`append` returned and nothing of the one that did not;
    readers (:func:`load_run`, ``infoscope report``) open it while it is
    being written and see whole records only. One writer at a time: the first
    :class:`Run` that appends owns the file until :meth:`close` (or until its
    process ends); another gets :class:`~infoscope.runs.RunInUseError`.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The run's file (conventionally ``.db``), or a ``sqlite:///path`` URL;
        created when missing, continued when it holds a run. None keeps the
        records in memory. An HDF5 run of an earlier infoscope opens
        read-only (see :meth:`to_sqlite`).
    config : dict, optional
        JSON-serialisable description of what is measured, stored when the
        run is created.
    mode : {"a", "r"}, default="a"
        ``"a"`` appends (creating the run if needed), ``"r"`` only reads an
        existing run (what :func:`load_run` gives).

    Attributes
    ----------
    path : str or None
        The run's file, or None in memory.

    See Also
    --------
    load_run : Open a run to read it.
    infoscope.Monitor : Records a run.

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import Record, Run
    >>> path = os.path.join(tempfile.mkdtemp(), "run.db")
    >>> with Run(path) as run:
    ...     run.append(Record(0, [("fc1", "dse", 2.5), ("model", "loss", 0.75)]))
    ...     run.append(Record(1, [("fc1", "dse", 2.25), ("model", "loss", 0.5)]))
    >>> run = Run(path, mode="r")
    >>> run.steps, run.history().value.tolist()
    ([0, 1], [2.5, 0.75, 2.25, 0.5])
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        config: Any = None,
        *,
        mode: str = "a",
    ):
        if mode not in ("a", "r"):
            raise ValueError(f'Run: mode={mode!r} is not one of "a", "r".')
        if path is None and mode == "r":
            raise ValueError('Run: mode="r" reads a run file; give its path.')
        self._store: Store = open_store(path, writable=mode == "a", config=config)
        self.path = None if path is None else location_path(path)

    @property
    def config(self) -> Any:
        """The configuration stored when the run was created."""
        return self._store.header()["config"]

    @property
    def read_only(self) -> bool:
        """Whether the run was opened for reading only."""
        return self._store.read_only

    @property
    def steps(self) -> list[int]:
        """The steps of the complete records, in the order they were recorded.

        A run opened for reading follows its writer: each access sees the
        records committed so far.
        """
        return self._store.steps()

    def append(self, record: Record) -> None:
        """Store one whole record (one transaction), or raise with none of it stored.

        Raises
        ------
        DuplicateStepError
            If the run already holds a record at ``record.step``.
        RunWriteError
            If the file cannot be written (full disk, read-only path); the
            run stays as it was and can be appended to once the cause is
            gone.
        RunInUseError
            If another writer owns the run.
        """
        if not isinstance(record, Record):
            raise TypeError(
                f"Run.append takes an infoscope.runs.Record; got "
                f"{type(record).__name__}."
            )
        self._store.append(record)

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
        frame = pd.DataFrame(self._store.rows(), columns=_COLUMNS)
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
            index=["step", "layer"],
            columns="measure",
            values="value",
            sort=False,
            dropna=False,
        )
        table.columns.name = None
        return table.to_xarray()

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        """The arrays stored under `name`: step -> layer -> NumPy array.

        Empty when nothing is stored under `name` (e.g. ``"ntk_eigenvalues"``
        in a run without an NTK measure).
        """
        return self._store.arrays(name)

    def array_names(self) -> list[str]:
        """The names under which the run stores arrays."""
        return sorted(self._store.array_names())

    def records(self) -> Iterator[Record]:
        """The complete records, in the order they were recorded."""
        rows = self._store.rows()
        arrays = {name: self._store.arrays(name) for name in self._store.array_names()}
        by_step: dict[int, list[tuple[str, str, float]]] = {}
        for step, layer, measure, value in rows:
            by_step.setdefault(step, []).append((layer, measure, value))
        for step in self._store.steps():
            yield Record(
                step,
                by_step.get(step, ()),
                {
                    (name, layer): a
                    for name, steps in arrays.items()
                    for layer, a in steps.get(step, {}).items()
                },
            )

    # ---- copies in other formats

    def to_sqlite(self, path: str | os.PathLike, *, overwrite: bool = False) -> Run:
        """Copy every record into a new run file (SQLite), e.g. to continue an HDF5 run.

        Returns the new run, open for appending.
        """
        path = os.fspath(path)
        _refuse_existing(path, overwrite)
        folder = os.path.dirname(os.path.abspath(path))
        handle, partial = tempfile.mkstemp(suffix=".db.partial", dir=folder)
        os.close(handle)  # an empty file: the copy's store creates its tables
        try:
            with Run(partial, self.config) as copy:
                for record in self.records():
                    copy.append(record)
            os.replace(partial, path)
        finally:
            for leftover in (
                partial,
                *(partial + s for s in ("-lock", "-wal", "-shm")),
            ):
                if os.path.exists(leftover):
                    os.remove(leftover)
        return Run(path)

    def to_hdf5(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write every record to an HDF5 file (the layout of earlier runs).

        :func:`load_run` reads the file back. Needs h5py.
        """
        from ._hdf5 import write_hdf5

        write_hdf5(
            os.fspath(path), self._store.header(), self.records(), overwrite=overwrite
        )

    def to_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write :meth:`history` (the values, not the arrays) to a CSV file."""
        path = os.fspath(path)
        _refuse_existing(path, overwrite)
        _write_atomically(path, lambda p: self.history().to_csv(p, index=False))

    def to_netcdf(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the run to a netCDF file through xarray: values and arrays.

        The values are the variables of ``history("xarray")`` over
        ``(step, layer)``. Each stored array ``(name, layer)`` is one more
        variable, ``array_<k>`` with attributes ``infoscope_name`` and
        ``infoscope_layer``, over its own step dimension and its axes
        (arrays whose shape changes between steps are padded with NaN).
        """
        from ._netcdf import netcdf_engine, run_dataset

        path = os.fspath(path)
        _refuse_existing(path, overwrite)
        dataset = run_dataset(self)
        engine = netcdf_engine(dataset)
        _write_atomically(path, lambda p: dataset.to_netcdf(p, engine=engine))

    # ---- lifetime

    def close(self) -> None:
        """Close the file and give up ownership; reading again reopens it."""
        self._store.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self.path is None else repr(self.path)
        mode = ", read-only" if self.read_only else ""
        return f"Run({where}, records={len(self.steps)}{mode})"


def _refuse_existing(path: str, overwrite: bool) -> None:
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True to replace it or choose another "
            f"path."
        )


def _write_atomically(path: str, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename it over."""
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] + ".partial"
    handle, partial = tempfile.mkstemp(suffix=suffix, dir=folder)
    os.close(handle)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def load_run(path: str | os.PathLike) -> Run:
    """Open the records of a run to read them, while it is written or after.

    Parameters
    ----------
    path : str or os.PathLike
        The run's file: what a :class:`~infoscope.Monitor` or ``infoscope
        demo`` wrote (SQLite), or an HDF5 run of an earlier infoscope.

    Returns
    -------
    Run
        Read-only, with ``history()``, ``arrays(name)``, ``steps`` and the
        exports. It never disturbs a writer, and each read sees the records
        committed so far.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    RunFileError
        If `path` is not a run this infoscope reads (damaged, foreign, empty,
        or of a newer format).

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import Record, Run, load_run
    >>> path = os.path.join(tempfile.mkdtemp(), "run.db")
    >>> Run(path).append(Record(5, [("model", "loss", 0.25)]))
    >>> load_run(path).history().to_dict("records")
    [{'step': 5, 'layer': 'model', 'measure': 'loss', 'value': 0.25}]
    """
    return Run(path, mode="r")
