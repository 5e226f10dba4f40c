"""The run store: crash safety, live readers, one writer, full disks, damaged files."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import sys
import tempfile
import time

import numpy as np
import pytest

pytest.importorskip("pandas")

import _run_workers

from infoscope.runs import (
    DuplicateStepError,
    Record,
    Run,
    RunFileError,
    RunInUseError,
    RunWriteError,
    load_run,
)

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def processes():
    """Fast child processes: forked from a server that has imported torch once."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["_run_workers", "torch", "infoscope.monitor"])
    return context


def _start(processes, target, *args):
    parent, child = processes.Pipe(duplex=False)
    process = processes.Process(target=target, args=(*args, child), daemon=True)
    process.start()
    child.close()
    return process, parent


def _records():
    return [
        Record(
            0,
            [("hidden/1", "dse", 1.5), ("model", "loss", np.nan), ("é", "m", -np.inf)],
            {("ntk_eigenvalues", "model"): np.arange(3.0), ("w", "a/b"): np.eye(2)},
        ),
        Record(7, [("hidden/1", "dse", 1.25)], {("w", "a/b"): np.ones((2, 2), int)}),
    ]


def _same_run(a: Run, b: Run) -> None:
    assert a.steps == b.steps
    assert a.history().equals(b.history())
    assert a.array_names() == b.array_names()
    for name in a.array_names():
        left, right = a.arrays(name), b.arrays(name)
        assert left.keys() == right.keys()
        for step in left:
            assert left[step].keys() == right[step].keys()
            for layer in left[step]:
                np.testing.assert_array_equal(left[step][layer], right[step][layer])
                assert left[step][layer].dtype == right[step][layer].dtype


# ---- records and the two stores


def test_a_file_run_holds_what_a_memory_run_holds(tmp_path):
    memory, file = Run(), Run(tmp_path / "run.db", {"probe": 3})
    for record in _records():
        memory.append(record)
        file.append(record)
    _same_run(memory, file)
    again = load_run(tmp_path / "run.db")
    _same_run(memory, again)
    assert again.config == {"probe": 3} and again.read_only
    assert list(again.records()) == _records()
    table = again.history()
    assert np.isnan(table.value[1]) and table.value[2] == -np.inf
    assert repr(again).endswith("records=2, read-only)")


def test_record_checks_its_contents():
    with pytest.raises(TypeError, match=r"Record: step must be an int; got 1\.5"):
        Record(1.5)
    with pytest.raises(ValueError, match="two values of 'dse' for layer 'a'"):
        Record(0, [("a", "dse", 1.0), ("a", "dse", 2.0)])
    with pytest.raises(TypeError, match="must be a \\(layer, measure, value\\) triple"):
        Record(0, [("a", 1.0)])
    with pytest.raises(
        TypeError, match="value of 'm' for layer 'a' must be one number"
    ):
        Record(0, [("a", "m", "high")])
    with pytest.raises(TypeError, match="array 'x' of layer 'a' has dtype object"):
        Record(0, [], {("x", "a"): np.array([None])})
    with pytest.raises(TypeError, match=r"\(layer, measure\) must be two non-empty"):
        Record(0, [("", "m", 1.0)])
    with pytest.raises(KeyError, match="no 'loss' for layer 'model'; it holds"):
        Record(0, [("a", "m", 1.0)]).value("loss")


def test_a_step_is_stored_once(tmp_path):
    for run in (Run(), Run(tmp_path / "run.db")):
        run.append(Record(3, [("model", "loss", 1.0)]))
        with pytest.raises(
            DuplicateStepError, match="already holds a record at step 3"
        ):
            run.append(Record(3, [("model", "loss", 0.5)]))
        assert run.history().value.tolist() == [1.0]


def test_a_continued_run_refuses_its_stored_steps(tmp_path):
    path = tmp_path / "run.db"
    with Run(path) as run:
        run.append(Record(0, [("model", "loss", 1.0)]))
    with Run(path) as run:
        assert run.steps == [0]
        with pytest.raises(DuplicateStepError, match="step 0"):
            run.append(Record(0, []))
        run.append(Record(1, []))
    assert load_run(path).steps == [0, 1]


def test_sqlite_url_and_export_extensions(tmp_path):
    url = "sqlite:///" + str(tmp_path / "url.db")
    with Run(url) as run:
        run.append(Record(1, [("model", "loss", 2.0)]))
    assert load_run(tmp_path / "url.db").steps == [1]
    with pytest.raises(ValueError, match="is a 'postgresql' URL; runs are stored in"):
        Run("postgresql://host/db")
    with pytest.raises(ValueError, match=r"names a netCDF file.*run.to_netcdf"):
        Run(tmp_path / "run.nc")
    with pytest.raises(ValueError, match='mode="r" reads a run file'):
        Run(mode="r")


# ---- point 1 and 9: killed writers


class _Reports:
    """What a recording child said: the steps done, and the one in flight."""

    def __init__(self, stored):
        self.done, self.uncertain = list(stored), set()

    def note(self, kind, step):
        if kind == "start":
            self.uncertain = {step}
        else:
            self.done.append(step)
            self.uncertain = set()


def _kill_and_continue(processes, path, mode, rng, kills):
    """Kill a recording child `kills` times; return what the last one said."""
    reports = _Reports([])
    for _ in range(kills):
        process, pipe = _start(processes, _run_workers.record_forever, path, mode)
        kind, stored = pipe.recv()
        assert kind == "opened"
        # What the last child left is readable and is what it said it did.
        assert set(reports.done) <= set(stored)
        assert set(stored) <= set(reports.done) | reports.uncertain
        assert len(stored) == len(set(stored))
        reports = _Reports(stored)
        while len(reports.done) == len(stored):  # until it has recorded once
            reports.note(*pipe.recv())
        time.sleep(rng.uniform(0.0, 0.2))  # then at a random moment
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=30)
        while pipe.poll():
            try:
                reports.note(*pipe.recv())
            except EOFError:
                break
    return reports.done, reports.uncertain


def test_killed_writers_keep_every_completed_record(tmp_path, processes):
    """Point 9: 24 SIGKILLs at random moments, the run continued after each."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for mode, kills in (("append", 12), ("monitor", 12)):
        path = str(tmp_path / f"{mode}.db")
        done, uncertain = _kill_and_continue(processes, path, mode, rng, kills)
        run = load_run(path)
        steps = run.steps
        assert len(steps) == len(set(steps)), "a step was stored twice"
        assert set(done) <= set(steps) <= set(done) | uncertain
        assert len(done) >= kills  # the children did record between kills
        # Every stored record is whole: all of its values and arrays.
        sizes = run.history().groupby("step").size()
        assert sizes.nunique() == 1, sizes.value_counts()
        name = "noise" if mode == "append" else "ntk_eigenvalues"
        assert sorted(run.arrays(name)) == sorted(steps)


# ---- point 3 and 4: readers and a second writer in other processes


def test_readers_never_disturb_the_writer(tmp_path, processes):
    pytest.importorskip("torch")
    path = str(tmp_path / "run.db")
    net, make = _run_workers.stress_monitor()
    monitor = make(path)
    monitor.record(0, net, loss=0.0)
    readers = [
        _start(processes, _run_workers.read_forever, path, 4.0) for _ in range(2)
    ]
    step = 1
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # the writer must never fail
        monitor.record(step, net, loss=float(step))
        step += 1
    for process, pipe in readers:
        kind, reads = pipe.recv()
        process.join(timeout=30)
        assert kind == "ok", reads
        assert len(reads) > 10
        seen = [steps for steps, _ in reads]
        assert all(a == list(range(len(a))) for a in seen)  # whole prefixes
        assert all(len(set(counts)) == 1 for _, counts in reads)  # whole records
        assert [len(s) for s in seen] == sorted(len(s) for s in seen)  # growing
    assert load_run(path).steps == list(range(step))


def test_a_second_writer_is_refused_at_once(tmp_path, processes):
    path = str(tmp_path / "run.db")
    run = Run(path)
    run.append(Record(0, [("model", "loss", 1.0)]))  # this process owns the run
    process, pipe = _start(processes, _run_workers.second_writer, path)
    kind, (message, seconds) = pipe.recv()
    process.join(timeout=30)
    assert kind == "refused"
    assert f"the run {path!r} is being written by another monitor (process " in message
    assert f"{os.getpid()} on" in message and "monitor.close()" in message
    assert seconds < 5  # refused, not left waiting on a lock
    run.append(Record(1, []))
    run.close()  # ownership ends with close: the next writer may go on
    process, pipe = _start(processes, _run_workers.second_writer, path)
    assert pipe.recv()[0] == "recorded"
    process.join(timeout=30)
    assert load_run(path).steps == [0, 1, 10_000]


def test_processes_opening_one_new_run_together_all_open_it(tmp_path, processes):
    # SQLite answers BUSY at once, bypassing its busy timeout, when two
    # connections switch a new file to WAL together: the two ranks of a
    # distributed job opening one run failed in 1 of 9 starts.
    paths = [str(tmp_path / f"run{i}.db") for i in range(40)]
    start = time.time() + 2.0  # every process started and waiting
    started = [_start(processes, _run_workers.open_new_runs, paths, start)]
    started += [_start(processes, _run_workers.open_new_runs, paths, start)]
    started += [_start(processes, _run_workers.open_new_runs, paths, start)]
    outcomes = [pipe.recv() for _, pipe in started]
    for process, _ in started:
        process.join(timeout=30)
    assert outcomes == [["opened"] * len(paths)] * 3
    # Each file is one run, made once, by the first process to reach it.
    assert all(isinstance(load_run(path).config["rank"], int) for path in paths)
    assert all(load_run(path).steps == [] for path in paths)


def test_the_same_process_cannot_write_one_run_twice(tmp_path):
    first, second = Run(tmp_path / "run.db"), Run(tmp_path / "run.db")
    first.append(Record(0, []))
    with pytest.raises(RunInUseError, match="one writer at a time"):
        second.append(Record(1, []))
    first.close()
    second.append(Record(1, []))
    assert load_run(tmp_path / "run.db").steps == [0, 1]


# ---- point 5: full disks and read-only paths


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_a_full_disk_is_one_error_and_recording_goes_on(tmp_path, processes):
    pytest.importorskip("torch")
    path = str(tmp_path / "run.db")
    process, pipe = _start(
        processes, _run_workers.write_with_file_size_limit, path, 96 * 1024
    )
    done, failure, after, steps = pipe.recv()
    process.join(timeout=60)
    assert process.exitcode == 0  # the process lived on
    assert failure is not None and len(done) >= 3
    step, base, message = failure
    assert base == "OSError" and step == len(done)
    assert f"cannot write the run {path!r}" in message
    assert "the record was not stored and earlier records are intact" in message
    assert after == step  # the same monitor recorded again once space was back
    assert load_run(path).steps == [*done, step] == steps


def test_sqlite_full_maps_to_a_write_error(tmp_path):
    path = str(tmp_path / "run.db")
    run = Run(path)
    run.append(Record(0, [("model", "loss", 1.0)]))
    connection = run._store._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = {("w", "model"): np.zeros(100_000)}
    with pytest.raises(RunWriteError, match=r"the disk is full.*\[SQLITE_FULL\]"):
        run.append(Record(1, [("model", "loss", 2.0)], big))
    assert load_run(path).steps == [0]
    assert run._store._connection is connection  # the same connection goes on
    connection.execute("PRAGMA max_page_count = 1000000")
    run.append(Record(1, [("model", "loss", 2.0)], big))
    assert load_run(path).steps == [0, 1]


def test_a_read_only_folder_is_one_clear_error(processes):
    pytest.importorskip("torch")
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o555)
    try:
        process, pipe = _start(
            processes, _run_workers.write_to_read_only_folder, folder
        )
        kind, detail = pipe.recv()
        process.join(timeout=60)
    finally:
        os.chmod(folder, 0o755)
        os.rmdir(folder)
    assert kind == "refused"
    name, message = detail
    assert name == "RunWriteError"
    assert os.path.join(folder, "run.db") in message
    assert "cannot be created or opened" in message


def test_a_run_opened_for_reading_is_not_written(tmp_path):
    Run(tmp_path / "run.db").append(Record(0, []))
    reader = load_run(tmp_path / "run.db")
    with pytest.raises(RunWriteError, match="opened for reading"):
        reader.append(Record(1, []))


# ---- point 6: damaged and foreign files


def _sqlite_file(path, statements):
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def _damaged_files(tmp_path):
    run_path = tmp_path / "good.db"
    with Run(run_path) as run:
        for step in range(40):
            run.append(Record(step, [("model", "x", 1.0)], {("a", "b"): np.zeros(500)}))
    data = run_path.read_bytes()
    files = {
        "truncated": (data[: len(data) // 3], "damaged"),
        "garbage": (b"\x00\x01garbage" * 100, "neither an infoscope run"),
        "text": (b"step,layer\n1,a\n", "neither an infoscope run"),
        "empty": (b"", "holds no run yet"),
        "header only": (data[:100], "damaged"),
    }
    for name, (content, _) in files.items():
        (tmp_path / f"{name}.db").write_bytes(content)
    _sqlite_file(tmp_path / "foreign.db", ["CREATE TABLE users (name TEXT)"])
    files["foreign"] = (None, "SQLite database of another program")
    future = tmp_path / "future.db"
    with Run(future):
        pass
    _sqlite_file(future, ["PRAGMA user_version = 99"])
    files["future"] = (None, "format 99, written by a newer infoscope")
    tampered = tmp_path / "tampered.db"
    with Run(tampered):
        pass
    _sqlite_file(tampered, ["DROP TABLE records"])
    files["tampered"] = (None, "damaged infoscope run")
    return {
        name: (tmp_path / f"{name}.db", match) for name, (_, match) in files.items()
    }


def test_damaged_or_foreign_files_get_one_clear_error(tmp_path):
    for name, (path, match) in _damaged_files(tmp_path).items():
        with pytest.raises(RunFileError, match=match):
            run = load_run(path)
            run.history()  # some damage shows only when the records are read
            for array in run.array_names():
                run.arrays(array)
        assert name  # each case raised


def test_folders_and_fifos_are_not_runs(tmp_path):
    with pytest.raises(RunFileError, match="is a folder; a run is one file"):
        load_run(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(RunFileError, match="is not a regular file"):
            load_run(tmp_path / "fifo")  # would block if it were opened


def test_damaged_hdf5_files_get_one_clear_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    cases = {}
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    cases["other"] = "an HDF5 file but not an infoscope run"
    for name, edit, match in [
        ("no_steps", lambda f: f.__delitem__("steps"), "damaged HDF5 run"),
        ("config", lambda f: f.attrs.__setitem__("config", "{oops"), "damaged HDF5"),
        ("future", lambda f: f.attrs.__setitem__("infoscope_run", 7), "format 7"),
        ("rows", lambda f: f["rows"].__delitem__("layer"), "damaged HDF5 run"),
    ]:
        load_run(os.path.join(DATA, "run_v1.h5")).to_hdf5(tmp_path / f"{name}.h5")
        with h5py.File(tmp_path / f"{name}.h5", "a") as f:
            edit(f)
        cases[name] = match
    for name, match in cases.items():
        with pytest.raises(RunFileError, match=match):
            run = load_run(tmp_path / f"{name}.h5")
            run.config, run.history(), run.arrays("snr_weights")


# ---- point 7: exports and earlier runs


def test_an_hdf5_run_of_an_earlier_version_reads_and_continues_as_sqlite(tmp_path):
    """tests/data/run_v1.h5 was written by infoscope 0.1.0.dev0's HDF5 Run.

    Its last record died mid-write (rows of step 6 and an array, no step), and
    its columns are of unequal length, which that version's reader could not
    read (IndexError).
    """
    old = load_run(os.path.join(DATA, "run_v1.h5"))
    assert old.steps == [0, 2, 4]
    table = old.history()
    assert table[table.measure == "loss"].value.tolist() == [2.0, 1.8, 1.6]
    assert set(table.layer) == {"hidden1/max_0", "model"}
    assert sorted(old.arrays("ntk_eigenvalues")) == [0, 2, 4]
    assert old.arrays("snr_weights")[4]["dense 1"].tolist() == [[4.0] * 3] * 2
    assert old.config["layers"] == ["hidden1/max_0"]
    with pytest.raises(
        RunFileError, match=r"HDF5 run of an earlier infoscope.*to_sqlite"
    ):
        Run(os.path.join(DATA, "run_v1.h5"))
    copy = old.to_sqlite(tmp_path / "continued.db")
    _same_run(old, copy)
    copy.append(Record(6, [("model", "loss", 1.4)]))
    assert load_run(tmp_path / "continued.db").steps == [0, 2, 4, 6]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["continued.db", "continued.db-wal", "continued.db-shm", "continued.db-lock"]
    )


def test_exports_keep_everything(tmp_path):
    run = Run(tmp_path / "run.db", {"probe": 3})
    for record in _records():
        run.append(record)
    run.to_hdf5(tmp_path / "run.h5")
    _same_run(run, load_run(tmp_path / "run.h5"))
    run.to_csv(tmp_path / "run.csv")
    import pandas as pd

    table = pd.read_csv(tmp_path / "run.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(table, run.history())
    for export in (run.to_hdf5, run.to_csv):
        with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
            export(tmp_path / ("run.h5" if export == run.to_hdf5 else "run.csv"))
    os.symlink(tmp_path / "run.db", tmp_path / "link.csv")
    with pytest.raises(FileExistsError, match=r"link\.csv' exists"):
        run.to_csv(tmp_path / "link.csv")  # never through a link without asking
    xr = pytest.importorskip("xarray")
    run.to_netcdf(tmp_path / "run.nc")
    with xr.open_dataset(tmp_path / "run.nc") as ds:
        loaded = ds.load()
    expected = run.history("xarray")
    for name in expected.data_vars:
        np.testing.assert_array_equal(loaded[name].values, expected[name].values)
    arrays = {
        (v.attrs["infoscope_name"], v.attrs["infoscope_layer"]): v
        for v in loaded.data_vars.values()
        if "infoscope_name" in v.attrs
    }
    assert set(arrays) == {("ntk_eigenvalues", "model"), ("w", "a/b")}
    w = arrays["w", "a/b"]
    assert loaded[w.dims[0]].values.tolist() == [0, 7]
    np.testing.assert_array_equal(w.values[1], np.ones((2, 2)))
