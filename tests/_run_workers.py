"""Child processes for the run-store tests: writers to kill, readers, second writers.

Imported by name in processes that ``multiprocessing`` starts (a forkserver
preloads it), so each function here is a plain module-level function that
reports through a pipe.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from infoscope.runs import Record, Run, load_run


def _model_and_probe():
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )
    return net, X, y


def stress_monitor():
    """A Monitor whose records carry values and arrays (NodeSNR, NTK)."""
    from infoscope import DiffusionSpectralEntropy, Monitor, NodeSNR, NTKEntropy

    net, X, y = _model_and_probe()
    measures = [DiffusionSpectralEntropy(), NodeSNR(), NTKEntropy()]
    return net, lambda path: Monitor(
        measures, X, y, layers="1", path=path, progress=False
    )


def record_forever(path: str, mode: str, connection) -> None:
    """Record step after step into `path`, saying before and after each one.

    ``mode="monitor"`` records through :class:`~infoscope.Monitor`;
    ``mode="append"`` appends small records in a tight loop, so that a kill
    lands in the middle of a write more often.
    """
    if mode == "monitor":
        net, make = stress_monitor()
        monitor = make(path)
        steps = monitor.steps
    else:
        run = Run(path)
        steps = run.steps
    step = max(steps) + 1 if steps else 0
    connection.send(("opened", steps))
    rng = np.random.default_rng(os.getpid())
    while True:
        connection.send(("start", step))
        if mode == "monitor":
            monitor.record(step, net, loss=float(step))
        else:
            values = [(f"layer{i}", "value", float(step + i)) for i in range(20)]
            arrays = {("noise", "layer0"): rng.standard_normal(200)}
            run.append(Record(step, values, arrays))
        connection.send(("done", step))
        step += 1


def read_forever(path: str, seconds: float, connection) -> None:
    """Read the run again and again; report what each read saw, or the error."""
    deadline = time.monotonic() + seconds
    reads = []
    try:
        while time.monotonic() < deadline:
            table = load_run(path).history()
            counts = table.groupby("step").size().tolist()
            reads.append((sorted(set(table.step)), counts))
            time.sleep(0.005)
        connection.send(("ok", reads))
    except Exception as error:  # reported, then the test fails on it
        connection.send(("error", f"{type(error).__name__}: {error}"))


def second_writer(path: str, connection) -> None:
    """Open a run another process writes and try to record into it."""
    from infoscope.runs import RunInUseError

    run = Run(path)
    started = time.monotonic()
    try:
        run.append(Record(10_000, [("model", "intruder", 1.0)]))
        connection.send(("recorded", None))
    except RunInUseError as error:
        connection.send(("refused", (str(error), time.monotonic() - started)))


def write_with_file_size_limit(path: str, limit: int, connection) -> None:
    """Record until the file-size limit stops a write, then lift it and go on."""
    import resource

    from infoscope.runs import RunWriteError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a signal
    net, make = stress_monitor()
    monitor = make(path)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    done, failure = [], None
    for step in range(10_000):
        try:
            monitor.record(step, net, loss=float(step))
            done.append(step)
        except RunWriteError as error:
            failure = (step, type(error).__mro__[1].__name__, str(error))
            break
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    after = monitor.record(failure[0], net, loss=-1.0).step if failure else None
    connection.send((done, failure, after, monitor.steps))


def write_to_read_only_folder(folder: str, connection) -> None:
    """As an unprivileged user if root: create a run where that is not allowed."""
    import infoscope.runs._sqlite  # noqa: F401  (imported while still readable)

    _, make = stress_monitor()
    # One Monitor in memory first: what it imports lazily (scikit-learn's
    # repr) is imported while the checkout is still readable; nobody may not
    # read it (a checkout in a 0700 folder).
    make(None)
    if os.geteuid() == 0:  # root writes anywhere: become nobody
        os.setgid(65534)
        os.setuid(65534)
    try:
        make(os.path.join(folder, "run.db"))
        connection.send(("created", None))
    except OSError as error:
        connection.send(("refused", (type(error).__name__, str(error))))


def open_new_runs(paths: list[str], start: float, connection) -> None:
    """Open each new run at a shared instant, as the ranks of a job do."""
    outcomes = []
    for i, path in enumerate(paths):
        time.sleep(max(0.0, start + 0.05 * i - time.time()))
        try:
            Run(path, {"rank": os.getpid()}).close()
            outcomes.append("opened")
        except Exception as error:
            outcomes.append(f"{type(error).__name__}: {error}")
    connection.send(outcomes)
