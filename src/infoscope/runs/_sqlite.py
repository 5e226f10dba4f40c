"""The run store: one SQLite file in WAL mode, one transaction per record.

Layout (format 2; ``PRAGMA application_id`` marks the file as a run and
``PRAGMA user_version`` holds the format)::

    meta(key, value)                    config (JSON), infoscope_version, created
    records(seq, step UNIQUE, recorded_at)           one row per complete record
    record_values(seq, pos, layer, measure, value)   NaN is stored as NULL
    arrays(name, layer, seq, npy)                    NumPy .npy bytes

A record is written in one ``BEGIN IMMEDIATE ... COMMIT`` with
``synchronous=FULL``: once :meth:`SQLiteStore.append` returns, the record
survives the process being killed and the machine losing power; a record
whose transaction did not commit leaves nothing. Write-ahead logging lets
readers in while the writer works, each read seeing whole records only.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.request import pathname2url

import numpy as np

from ._errors import DuplicateStepError, RunFileError, RunWriteError
from ._owner import OwnerLock
from ._record import Record
from ._store import Store

__all__ = ["FORMAT", "SQLiteStore"]

FORMAT = 2
APPLICATION_ID = 0x49534350  # "ISCP": what `file` and SQLite tools report
_BUSY_TIMEOUT_S = 10.0
_TABLES = ("meta", "records", "record_values", "arrays")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, step INTEGER NOT NULL UNIQUE,
    recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS record_values (
    seq INTEGER NOT NULL REFERENCES records (seq), pos INTEGER NOT NULL,
    layer TEXT NOT NULL, measure TEXT NOT NULL, value REAL,
    PRIMARY KEY (seq, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arrays (
    name TEXT NOT NULL, layer TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES records (seq), npy BLOB NOT NULL,
    PRIMARY KEY (name, layer, seq)) WITHOUT ROWID;
"""


class SQLiteStore(Store):
    """A run in a SQLite file: read-only, or written by one owner at a time."""

    def __init__(self, path: str, *, writable: bool, config: Any = None):
        self.location = path
        self.read_only = not writable
        self._owner = OwnerLock(path)
        self._mutex = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._steps: set[int] | None = None
        if writable:
            self._writing(lambda c: _initialise(c, config))
        else:
            self._reading(_check_format)

    # ---- connections

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross fork(): a child opens its own.
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        # SQLite answers SQLITE_BUSY at once, without its busy handler, when
        # two processes switch a new file to WAL together (two ranks of a
        # distributed job opening one run, say): wait here as it would.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        pause = 0.005
        while True:
            try:
                return self._open_connection()
            except sqlite3.OperationalError as error:
                busy = getattr(error, "sqlite_errorname", "").startswith(
                    ("SQLITE_BUSY", "SQLITE_LOCKED")
                )
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.1)

    def _open_connection(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"file:{pathname2url(os.path.abspath(self.location))}?mode=ro"
            connection = sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT_S, check_same_thread=False
            )
        else:
            connection = sqlite3.connect(
                self.location, timeout=_BUSY_TIMEOUT_S, check_same_thread=False
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error:
                connection.close()
                raise
        connection.isolation_level = None  # transactions are explicit
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _reading(self, read: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `read` in one read transaction: a consistent view of whole records."""
        with self._mutex:
            try:
                connection = self._connect()
                connection.execute("BEGIN")
                try:
                    return read(connection)
                finally:
                    connection.execute("COMMIT")
            except sqlite3.Error as error:
                self._drop_connection()
                raise _read_error(self.location, error) from None

    def _writing(self, write: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `write` in one write transaction; all of it is stored or nothing."""
        with self._mutex:
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                self._drop_connection()
                raise _write_error(self.location, error) from None
            try:
                result = write(connection)
                connection.execute("COMMIT")
                return result
            except BaseException as error:
                try:
                    # SQLite may have rolled back already (a full disk, say).
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop_connection()  # a fresh one starts clean
                if isinstance(error, sqlite3.Error):
                    raise _write_error(self.location, error) from None
                raise

    def _drop_connection(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
        self._connection = None

    def close(self) -> None:
        with self._mutex:
            self._drop_connection()
            self._owner.release()
            self._steps = None

    # ---- reading

    def header(self) -> dict[str, Any]:
        def read(c: sqlite3.Connection) -> dict[str, Any]:
            meta = dict(c.execute("SELECT key, value FROM meta"))
            return {
                "config": json.loads(meta.get("config", "null")),
                "infoscope_version": meta.get("infoscope_version"),
                "format": FORMAT,
            }

        return self._reading(read)

    def steps(self) -> list[int]:
        return self._reading(
            lambda c: [s for (s,) in c.execute("SELECT step FROM records ORDER BY seq")]
        )

    def rows(self) -> list[tuple[int, str, str, float]]:
        def read(c: sqlite3.Connection) -> list[tuple[int, str, str, float]]:
            query = (
                "SELECT r.step, v.layer, v.measure, v.value FROM record_values v "
                "JOIN records r USING (seq) ORDER BY v.seq, v.pos"
            )
            return [
                (step, layer, measure, np.nan if value is None else value)
                for step, layer, measure, value in c.execute(query)
            ]

        return self._reading(read)

    def array_names(self) -> list[str]:
        return self._reading(
            lambda c: [n for (n,) in c.execute("SELECT DISTINCT name FROM arrays")]
        )

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        def read(c: sqlite3.Connection) -> list[tuple[int, str, bytes]]:
            query = (
                "SELECT r.step, a.layer, a.npy FROM arrays a JOIN records r "
                "USING (seq) WHERE a.name = ? ORDER BY a.seq, a.layer"
            )
            return c.execute(query, (name,)).fetchall()

        out: dict[int, dict[str, np.ndarray]] = {}
        for step, layer, npy in self._reading(read):
            out.setdefault(step, {})[layer] = _from_npy(self.location, npy)
        return out

    # ---- writing

    def append(self, record: Record) -> None:
        if self.read_only:
            raise RunWriteError(
                self.location,
                "it was opened for reading (load_run)",
                "record through a Monitor, or open it with Run(path)",
            )
        with self._mutex:
            if not self._owner.held:
                try:
                    self._owner.acquire()
                except OSError as error:  # the lock file could not be made
                    raise RunWriteError(self.location, _os_reason(error)) from None
                self._steps = None  # another writer may have added records
            if self._steps is None:
                self._steps = set(self.steps())
            if record.step in self._steps:
                raise DuplicateStepError(
                    f"the run {self.location!r} already holds a record at step "
                    f"{record.step} (a step is recorded once); record the next "
                    f"step instead."
                )
            arrays = [
                (name, layer, _to_npy(a)) for (name, layer), a in record.arrays.items()
            ]

            def write(c: sqlite3.Connection) -> None:
                seq = c.execute(
                    "INSERT INTO records (step, recorded_at) VALUES (?, ?)",
                    (record.step, time.time()),
                ).lastrowid
                c.executemany(
                    "INSERT INTO record_values VALUES (?, ?, ?, ?, ?)",
                    [(seq, pos, *row) for pos, row in enumerate(record.values)],
                )
                c.executemany(
                    "INSERT INTO arrays VALUES (?, ?, ?, ?)",
                    [(name, layer, seq, npy) for name, layer, npy in arrays],
                )

            self._writing(write)
            self._steps.add(record.step)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (a spawned process, say) reopens the file; it owns nothing yet.
        return {"location": self.location, "read_only": self.read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], writable=not state["read_only"])


# ---- format


def _initialise(c: sqlite3.Connection, config: Any) -> None:
    """Create the run's tables in an empty database, or check an existing run."""
    application_id = c.execute("PRAGMA application_id").fetchone()[0]
    tables = _tables(c)
    if application_id == 0 and not tables:
        from .. import __version__

        for statement in _SCHEMA.split(";")[:-1]:  # executescript would COMMIT
            c.execute(statement)
        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        c.execute(f"PRAGMA user_version = {FORMAT}")
        c.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("config", json.dumps(config, default=str)),
                ("infoscope_version", __version__),
                ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            ],
        )
        return
    _check_format(c, application_id, tables)


def _check_format(
    c: sqlite3.Connection, application_id: int | None = None, tables: Any = None
) -> None:
    if application_id is None:
        application_id = c.execute("PRAGMA application_id").fetchone()[0]
        tables = _tables(c)
    path = _path_of(c)
    if application_id != APPLICATION_ID:
        if not tables and application_id == 0:
            raise RunFileError(
                f"{path!r} holds no run yet (an empty file or database): a "
                f"Monitor writing to it has not started; try again once it has "
                f"recorded."
            )
        raise RunFileError(
            f"{path!r} is a SQLite database of another program (tables "
            f"{sorted(tables)}), not an infoscope run; give the file a Monitor "
            f"or `infoscope demo` wrote."
        )
    version = c.execute("PRAGMA user_version").fetchone()[0]
    if version > FORMAT:
        raise RunFileError(
            f"{path!r} is a run of format {version}, written by a newer infoscope "
            f"than this one (which reads formats up to {FORMAT}); upgrade "
            f"infoscope: pip install -U infoscope."
        )
    missing = [t for t in _TABLES if t not in tables]
    if missing or version < 1:
        raise RunFileError(
            f"{path!r} is a damaged infoscope run (missing tables {missing}, "
            f"format {version}); it cannot be read."
        )


def _tables(c: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }


def _path_of(c: sqlite3.Connection) -> str:
    for _, name, file in c.execute("PRAGMA database_list"):
        if name == "main":
            return file
    return "?"


def _to_npy(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, a, allow_pickle=False)
    return buffer.getvalue()


def _from_npy(path: str, npy: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(npy), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise RunFileError(
            f"{path!r} holds a damaged array ({error}); the run's values can still "
            f"be read with history()."
        ) from None


# ---- errors in the user's terms


def _read_error(path: str, error: sqlite3.Error) -> Exception:
    name = getattr(error, "sqlite_errorname", "")
    if isinstance(error, sqlite3.DatabaseError) and name.startswith(
        ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_ERROR")
    ):
        return RunFileError(
            f"{path!r} is not a readable infoscope run: it is damaged or is "
            f"another kind of file ({error}); give the file a Monitor or "
            f"`infoscope demo` wrote."
        )
    if name.startswith("SQLITE_BUSY"):
        return OSError(
            f"cannot read the run {path!r}: another process kept it locked for "
            f"more than {_BUSY_TIMEOUT_S:.0f} s; try again."
        )
    return OSError(f"cannot read the run {path!r}: {error}.")


_REASONS = {
    "SQLITE_FULL": "the disk is full (or a file-size limit was reached)",
    "SQLITE_READONLY": "the file or its folder is read-only",
    "SQLITE_PERM": "the file or its folder is read-only",
    "SQLITE_CANTOPEN": "the file cannot be created or opened (does its folder "
    "exist, and may this process write there?)",
    "SQLITE_IOERR": "the disk reported an I/O error (is it full or gone?)",
    "SQLITE_BUSY": "another process kept the file locked for more than "
    f"{_BUSY_TIMEOUT_S:.0f} s",
}


def _write_error(path: str, error: sqlite3.Error) -> Exception:
    name = getattr(error, "sqlite_errorname", "")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return RunFileError(
            f"{path!r} is not a writable infoscope run: it is damaged or is "
            f"another kind of file ({error}); give the Monitor a new path."
        )
    for prefix, reason in _REASONS.items():
        if name.startswith(prefix):
            return RunWriteError(path, f"{reason} [{name}]")
    return RunWriteError(path, str(error))


def _os_reason(error: OSError) -> str:
    import errno

    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "the folder is not writable by this process",
        errno.EPERM: "the folder is not writable by this process",
        errno.ENOENT: "its folder does not exist",
    }
    return reasons.get(error.errno, error.strerror or str(error))
