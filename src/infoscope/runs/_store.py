"""Where a run's records live: the store interface, memory, and the dispatch.

A :class:`Store` keeps complete records and nothing else: ``append`` stores
one whole :class:`~infoscope.runs.Record` or raises with nothing stored.
:func:`open_store` is the one seam that picks a store for a location: memory
for None, SQLite for a file path or a ``sqlite:///`` URL, the read-only
reader of earlier infoscope's HDF5 runs for such a file. A store for a
database server (many machines writing into one place) would be one more
:class:`Store` class, chosen here by its URL scheme.
"""

from __future__ import annotations

import os
import stat
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ._errors import DuplicateStepError, RunFileError
from ._record import Record

__all__ = ["MemoryStore", "Store", "open_store"]


class Store:
    """The operations a run needs from where its records are kept."""

    #: What messages call the store: a path, a URL or "memory".
    location: str = "memory"
    read_only: bool = False

    def header(self) -> dict[str, Any]:
        """``{"config": ..., "infoscope_version": ..., "format": ...}``."""
        raise NotImplementedError

    def steps(self) -> list[int]:
        """The steps of the stored records, in the order they were recorded."""
        raise NotImplementedError

    def rows(self) -> list[tuple[int, str, str, float]]:
        """``(step, layer, measure, value)`` of every stored record, in order."""
        raise NotImplementedError

    def array_names(self) -> list[str]:
        """The names under which arrays are stored."""
        raise NotImplementedError

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        """The arrays stored under `name`: step -> layer -> array."""
        raise NotImplementedError

    def append(self, record: Record) -> None:
        """Store `record` whole, or raise with nothing of it stored."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the store holds (connections, the writer's lock)."""


class MemoryStore(Store):
    """Records kept in this process's memory."""

    def __init__(self, config: Any = None):
        from .. import __version__

        self._header = {
            "config": config,
            "infoscope_version": __version__,
            "format": "memory",
        }
        self._records: list[Record] = []
        self._steps: set[int] = set()

    def header(self) -> dict[str, Any]:
        return dict(self._header)

    def steps(self) -> list[int]:
        return [r.step for r in self._records]

    def rows(self) -> list[tuple[int, str, str, float]]:
        return [(r.step, *row) for r in self._records for row in r.values]

    def array_names(self) -> list[str]:
        return sorted({name for r in self._records for name, _ in r.arrays})

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        out: dict[int, dict[str, np.ndarray]] = {}
        for r in self._records:
            for (array_name, layer), a in r.arrays.items():
                if array_name == name:
                    out.setdefault(r.step, {})[layer] = a
        return out

    def append(self, record: Record) -> None:
        if record.step in self._steps:
            raise DuplicateStepError(
                f"the run in memory already holds a record at step {record.step} "
                f"(a step is recorded once); record the next step instead."
            )
        self._records.append(record)
        self._steps.add(record.step)


_EXPORT_EXTENSIONS = {
    ".h5": "HDF5",
    ".hdf5": "HDF5",
    ".nc": "netCDF",
    ".csv": "CSV",
}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def location_path(location: str | os.PathLike) -> str:
    """The file path of a location: a path, or a ``sqlite:///path`` URL."""
    text = os.fspath(location)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.scheme != "sqlite":
        raise ValueError(
            f"Run: {text!r} is a {parts.scheme!r} URL; runs are stored in SQLite "
            f"files (a path, or sqlite:///path). A store for a database server "
            f"would be one more Store class chosen by its URL scheme in "
            f"infoscope.runs._store.open_store; none ships yet."
        )
    if parts.netloc:
        raise ValueError(
            f"Run: {text!r} names a host; a SQLite run is a local file: "
            f"sqlite:///relative/path or sqlite:////absolute/path."
        )
    return unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)


def open_store(
    location: str | os.PathLike | None, *, writable: bool, config: Any = None
) -> Store:
    """The store for `location`: memory (None), a SQLite run, or an HDF5 run.

    A writable store is created when `location` does not exist; a read-only
    one must exist. HDF5 runs of earlier infoscope versions are read-only.
    """
    if location is None:
        return MemoryStore(config)
    path = location_path(location)
    magic = _magic(path)
    if magic is None and not writable:
        raise FileNotFoundError(f"No run file at {path!r}.")
    extension = os.path.splitext(path)[1].lower()
    if magic is None and extension in _EXPORT_EXTENSIONS:
        raise ValueError(
            f"Run: {path!r} names a {_EXPORT_EXTENSIONS[extension]} file, but a run "
            f"is written to a crash-safe SQLite file; give a path such as "
            f"{os.path.splitext(path)[0] + '.db'!r} and export with "
            f"run.to_{_EXPORT_EXTENSIONS[extension].lower()}({path!r})."
        )
    if magic is not None and magic.startswith(_HDF5_MAGIC):
        from ._hdf5 import HDF5Store, refuse_writing

        if writable:
            refuse_writing(path)
        return HDF5Store(path)
    if magic and not magic.startswith(_SQLITE_MAGIC):
        raise RunFileError(
            f"{path!r} is neither an infoscope run (SQLite) nor a run of an "
            f"earlier infoscope (HDF5); give the file a Monitor or "
            f"`infoscope demo` wrote, or a new path to start a run."
        )
    from ._sqlite import SQLiteStore

    return SQLiteStore(path, writable=writable, config=config)


def _magic(path: str) -> bytes | None:
    """The file's first 16 bytes (b"" if empty), or None if there is no file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        raise RunFileError(
            f"{path!r} is a folder; a run is one file, such as "
            f"{os.path.join(path, 'run.db')!r}."
        )
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise RunFileError(f"{path!r} is not a regular file; a run is a file.")
    with open(path, "rb") as f:
        return f.read(16)
