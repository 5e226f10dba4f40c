"""Sinks: where each record goes besides the run (TensorBoard, MLflow, ...).

A sink receives every :class:`~infoscope.runs.Record` after the run has
stored it, so a sink that fails loses nothing: the run holds the record, and
``for record in run.records(): sink.write(record)`` replays a run into any
sink. Every sink names a value ``infoscope/<measure>/<layer>``
(:func:`metric_name`), model-level values under the layer ``model``.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Iterable
from typing import Any

from ._record import Record

__all__ = ["MLflowSink", "Sink", "SinkSet", "TensorBoardSink", "metric_name"]


def metric_name(measure: str, layer: str) -> str:
    """The name every sink gives a value: ``infoscope/<measure>/<layer>``.

    Examples
    --------
    >>> from infoscope.runs import metric_name
    >>> metric_name("dse", "hidden1"), metric_name("loss", "model")
    ('infoscope/dse/hidden1', 'infoscope/loss/model')
    """
    return f"infoscope/{measure}/{layer}"


class Sink:
    """Base class of sinks: ``write(record)`` and ``close()``.

    Subclass it (or give any object with those two methods) to send records
    elsewhere; :class:`~infoscope.Monitor` calls ``write`` after each record
    is stored and ``close`` when it is closed.

    Examples
    --------
    >>> from infoscope.runs import Record, Sink, metric_name
    >>> class PrintSink(Sink):
    ...     def write(self, record):
    ...         for layer, measure, value in record.values:
    ...             print(record.step, metric_name(measure, layer), value)
    >>> PrintSink().write(Record(3, [("fc1", "dse", 2.5)]))
    3 infoscope/dse/fc1 2.5
    """

    def write(self, record: Record) -> None:
        """Send `record` on."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds."""


class TensorBoardSink(Sink):
    """Each record's values as TensorBoard scalars, in an event file of `logdir`.

    Needs neither TensorFlow nor tensorboard to write (tensorboard to view).
    Arrays stay in the run. The file is created at the first record.

    Parameters
    ----------
    logdir : str or os.PathLike
        The folder TensorBoard is pointed at (``tensorboard --logdir``).

    Attributes
    ----------
    path : str or None
        The event file, once the first record is written.

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import Record, TensorBoardSink
    >>> sink = TensorBoardSink(tempfile.mkdtemp())
    >>> sink.write(Record(0, [("fc1", "dse", 2.5), ("model", "loss", 0.7)]))
    >>> sink.close()
    >>> os.path.basename(sink.path).startswith("events.out.tfevents.")
    True
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        self.path: str | None = None  # the event file, from the first record
        self._writer: Any = None

    def write(self, record: Record) -> None:
        from ._tensorboard import EventFileWriter

        if self._writer is None:
            self._writer = EventFileWriter(self.logdir)
            self.path = self._writer.path
        self._writer.add_scalars(
            record.step,
            [(metric_name(m, layer), v) for layer, m, v in record.values],
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getstate__(self) -> dict[str, Any]:
        return {"logdir": self.logdir, "path": None, "_writer": None}  # a new file

    def __repr__(self) -> str:
        return f"TensorBoardSink({self.logdir!r})"


_MLFLOW_UNSAFE = re.compile(r"[^\w\-. :/]")


class MLflowSink(Sink):
    """Each record's values as MLflow metrics (needs ``mlflow`` or ``mlflow-skinny``).

    Parameters
    ----------
    tracking_uri : str, optional
        Where MLflow keeps runs: a local folder (``"file:./mlruns"``; MLflow
        3.7 and later refuse it unless ``MLFLOW_ALLOW_FILE_STORE=true`` is
        set), a database (``"sqlite:///mlflow.db"``, with the full ``mlflow``
        package) or a tracking server's URL; by default MLflow's own default
        (``MLFLOW_TRACKING_URI``).
    experiment : str, default="infoscope"
        The experiment of a run this sink starts.
    run_id : str, optional
        Log into this MLflow run. By default the active run
        (``mlflow.start_run()``) if there is one, else a new run, started at
        the first record and ended by :meth:`close`.
    run_name : str, optional
        The name of a run this sink starts.

    Attributes
    ----------
    run_id : str or None
        The MLflow run logged into, once the first record is written.

    Notes
    -----
    Metric names are ``infoscope/<measure>/<layer>`` with characters MLflow
    does not accept in a name replaced by ``_``; the step is the record's
    step and NaN values are logged as NaN.

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import MLflowSink, Record
    >>> os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.7+: a local folder
    >>> sink = MLflowSink("file:" + tempfile.mkdtemp(), run_name="demo")
    >>> sink.write(Record(3, [("fc1", "dse", 2.5)]))
    >>> sink.close()
    >>> import mlflow
    >>> history = mlflow.MlflowClient(sink.tracking_uri).get_metric_history(
    ...     sink.run_id, "infoscope/dse/fc1")
    >>> [(m.step, m.value) for m in history]
    [(3, 2.5)]
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "infoscope",
        run_id: str | None = None,
        run_name: str | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_id = run_id
        self.run_name = run_name
        self._client: Any = None
        self._started = False

    def _connect(self) -> Any:
        try:
            import mlflow
        except ImportError:
            raise ImportError(
                "MLflowSink needs MLflow: pip install mlflow-skinny (or mlflow)."
            ) from None
        client = mlflow.MlflowClient(self.tracking_uri)
        if self.run_id is None:
            active = mlflow.active_run()
            if active is not None and self.tracking_uri in (
                None,
                mlflow.get_tracking_uri(),
            ):
                self.run_id = active.info.run_id
            else:
                found = client.get_experiment_by_name(self.experiment)
                experiment_id = (
                    found.experiment_id
                    if found is not None
                    else client.create_experiment(self.experiment)
                )
                run = client.create_run(experiment_id, run_name=self.run_name)
                self.run_id, self._started = run.info.run_id, True
        return client

    def write(self, record: Record) -> None:
        from mlflow.entities import Metric

        if self._client is None:
            self._client = self._connect()
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(
                _MLFLOW_UNSAFE.sub("_", metric_name(m, layer)), v, stamp, record.step
            )
            for layer, m, v in record.values
        ]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self._client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def close(self) -> None:
        if self._client is not None and self._started:
            self._client.set_terminated(self.run_id)
            self._started = False
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def __repr__(self) -> str:
        return f"MLflowSink({self.tracking_uri!r}, experiment={self.experiment!r})"


class SinkSet:
    """The monitor's sinks: each record to each, a failure a warning, not an end."""

    def __init__(self, sinks: Iterable[Any] | None):
        self.sinks = list(sinks or [])
        for sink in self.sinks:
            if not callable(getattr(sink, "write", None)):
                raise TypeError(
                    f"Monitor: sinks must have write(record) (infoscope.runs.Sink); "
                    f"got {type(sink).__name__}."
                )
        self.failing: set[int] = set()  # indices of sinks whose last write failed
        self.failures = [0] * len(self.sinks)

    def write(self, record: Record) -> None:
        """Send `record` to every sink; a failing one warns when it starts failing."""
        for i, sink in enumerate(self.sinks):
            try:
                sink.write(record)
            except Exception as error:
                self.failures[i] += 1
                if i not in self.failing:
                    warnings.warn(
                        f"infoscope: the sink {sink!r} failed at step {record.step} "
                        f"({type(error).__name__}: {error}). The record is in the "
                        f"run; the sink is tried again at each record, and this "
                        f"warning is not repeated until it has worked again.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self.failing.add(i)
            else:
                self.failing.discard(i)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as error:
                warnings.warn(
                    f"infoscope: closing the sink {sink!r} failed "
                    f"({type(error).__name__}: {error}).",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def __len__(self) -> int:
        return len(self.sinks)
