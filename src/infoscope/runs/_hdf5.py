"""HDF5 runs: the read-only store for earlier infoscope's files, and the export.

Earlier versions wrote runs to HDF5 (format 1); :func:`~infoscope.load_run`
still reads them, and :meth:`Run.to_hdf5 <infoscope.runs.Run.to_hdf5>` writes
the same layout, so an exported run reads back like one of those::

    /            attrs: infoscope_run (format 1), infoscope_version, config (JSON)
    /rows/step     int64   one entry per (step, layer, measure) row
    /rows/layer    str
    /rows/measure  str
    /rows/value    float64
    /steps         int64   the complete records' steps, written last
    /arrays/<name>/<layer>/<step>   one dataset per stored array

Names are percent-encoded in group paths, so names holding ``/`` survive.
Rows whose step is not in ``/steps`` belong to a record that was being
written when its writer died; they are not read.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from ._errors import RunFileError, RunWriteError
from ._record import Record
from ._store import Store

__all__ = ["HDF5Store", "refuse_writing", "write_hdf5"]

FORMAT = 1
_COLUMNS = ("step", "layer", "measure", "value")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            'Reading or writing HDF5 runs needs h5py: pip install "infoscope[monitor]".'
        ) from None
    return h5py


def refuse_writing(path: str) -> None:
    """Tell a writer that HDF5 runs are read-only now, and how to continue one."""
    raise RunFileError(
        f"{path!r} is an HDF5 run of an earlier infoscope; runs are now written to "
        f"crash-safe SQLite files. Copy it into one and continue that: "
        f"load_run({path!r}).to_sqlite('run.db'), then Monitor(..., path='run.db')."
    )


class HDF5Store(Store):
    """A run in an HDF5 file of format 1, read-only."""

    read_only = True

    def __init__(self, path: str):
        self.location = path
        self._read(lambda f: None)  # checks the file at once

    def _read(self, read: Callable[[Any], Any]) -> Any:
        h5py = _h5py()
        try:
            with h5py.File(self.location, "r") as f:
                version = f.attrs.get("infoscope_run")
                if version is None:
                    raise RunFileError(
                        f"{self.location!r} is an HDF5 file but not an infoscope "
                        f"run; give the file a Monitor or `infoscope demo` wrote."
                    )
                if int(version) > FORMAT:
                    raise RunFileError(
                        f"{self.location!r} is an HDF5 run of format {int(version)}, "
                        f"newer than this infoscope reads; upgrade infoscope."
                    )
                return read(f)
        except RunFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError) as error:
            raise RunFileError(
                f"{self.location!r} is a damaged HDF5 run ({type(error).__name__}: "
                f"{error}); it cannot be read."
            ) from None

    def header(self) -> dict[str, Any]:
        def read(f: Any) -> dict[str, Any]:
            stored = f.attrs.get("config")
            return {
                "config": json.loads(stored) if stored else None,
                "infoscope_version": f.attrs.get("infoscope_version"),
                "format": FORMAT,
            }

        return self._read(read)

    def steps(self) -> list[int]:
        return self._read(lambda f: [int(s) for s in f["steps"][...]])

    def rows(self) -> list[tuple[int, str, str, float]]:
        def read(f: Any) -> list[tuple[int, str, str, float]]:
            rows = f["rows"]
            # A writer killed between two columns' extensions leaves them
            # unequal; the tail beyond the shortest is of an unfinished record.
            n = min(rows[name].shape[0] for name in _COLUMNS)
            step = rows["step"][:n]
            layer = rows["layer"].asstr()[:n]
            measure = rows["measure"].asstr()[:n]
            value = rows["value"][:n]
            done = np.isin(step, f["steps"][...])
            return [
                (int(s), str(lay), str(m), float(v))
                for s, lay, m, v in zip(
                    step[done], layer[done], measure[done], value[done], strict=True
                )
            ]

        return self._read(read)

    def array_names(self) -> list[str]:
        return self._read(lambda f: [unquote(name) for name in f["arrays"]])

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        def read(f: Any) -> dict[int, dict[str, np.ndarray]]:
            done = {int(s) for s in f["steps"][...]}
            group = f["arrays"].get(quote(name, safe=""))
            out: dict[int, dict[str, np.ndarray]] = {}
            for layer_key, layer_group in (group or {}).items():
                for step_key, data in layer_group.items():
                    if int(step_key) in done:
                        layers = out.setdefault(int(step_key), {})
                        layers[unquote(layer_key)] = data[...]
            return {step: out[step] for step in sorted(out)}

        return self._read(read)

    def append(self, record: Record) -> None:
        refuse_writing(self.location)


def write_hdf5(
    path: str, header: dict[str, Any], records: Iterable[Record], *, overwrite: bool
) -> None:
    """Write `records` to a new HDF5 file of format 1, all or nothing."""
    h5py = _h5py()
    from .. import __version__

    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True to replace it or choose another "
            f"path."
        )
    folder = os.path.dirname(os.path.abspath(path))
    handle, partial = tempfile.mkstemp(suffix=".h5.partial", dir=folder)
    os.close(handle)
    try:
        with h5py.File(partial, "w") as f:
            f.attrs["infoscope_run"] = FORMAT
            f.attrs["infoscope_version"] = __version__
            f.attrs["config"] = json.dumps(header.get("config"), default=str)
            columns: dict[str, list] = {name: [] for name in _COLUMNS}
            steps = []
            arrays = f.create_group("arrays")
            for record in records:
                steps.append(record.step)
                for layer, measure, value in record.values:
                    for name, item in zip(
                        _COLUMNS, (record.step, layer, measure, value), strict=True
                    ):
                        columns[name].append(item)
                for (name, layer), a in record.arrays.items():
                    group = arrays.require_group(quote(name, safe=""))
                    group = group.require_group(quote(layer, safe=""))
                    group.create_dataset(str(record.step), data=a)
            rows = f.create_group("rows")
            string = h5py.string_dtype()
            rows.create_dataset("step", data=np.asarray(columns["step"], np.int64))
            rows.create_dataset("layer", data=columns["layer"], dtype=string)
            rows.create_dataset("measure", data=columns["measure"], dtype=string)
            rows.create_dataset("value", data=np.asarray(columns["value"], np.float64))
            f.create_dataset("steps", data=np.asarray(steps, np.int64))
        os.replace(partial, path)
    except OSError as error:
        raise RunWriteError(
            path, error.strerror or str(error), "nothing was written"
        ) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
