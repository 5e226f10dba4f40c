"""The records of monitored runs: :class:`Run`, :class:`Record`, :func:`load_run`.

A record is everything measured at one step: named values per layer and
arrays (NTK eigenvalues, Node SNR weights). A run keeps its records in memory
or in one SQLite file in write-ahead-logging mode, one transaction per
record: a process killed at any instant leaves every record whose write
returned and nothing of the one that did not; readers open the file while it
is written; one writer owns it at a time; a full disk or a read-only path is
one :class:`RunWriteError` after which the run goes on. Runs export to HDF5,
netCDF and CSV, and HDF5 runs of earlier infoscope versions are read. Sinks
(:class:`TensorBoardSink`, :class:`MLflowSink`, or any :class:`Sink`) receive
each record a :class:`~infoscope.Monitor` stores.

Examples
--------
>>> from infoscope.runs import Record, Run
>>> run = Run()
>>> run.append(Record(0, [("fc1", "dse", 2.5)]))
>>> run.steps, run.history()["value"].tolist()
([0], [2.5])
"""

from ._describe import describe_measure
from ._errors import DuplicateStepError, RunFileError, RunInUseError, RunWriteError
from ._record import Record
from ._run import Run, load_run
from ._sinks import MLflowSink, Sink, TensorBoardSink, metric_name

__all__ = [
    "DuplicateStepError",
    "MLflowSink",
    "Record",
    "Run",
    "RunFileError",
    "RunInUseError",
    "RunWriteError",
    "Sink",
    "TensorBoardSink",
    "describe_measure",
    "load_run",
    "metric_name",
]

# Public under this module's name: in tracebacks, reprs and pickles.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
