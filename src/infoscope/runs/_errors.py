"""What can go wrong with a run's storage, each as its own exception class."""

from __future__ import annotations

__all__ = ["DuplicateStepError", "RunFileError", "RunInUseError", "RunWriteError"]


class RunFileError(ValueError):
    """A file is not a run this infoscope can read.

    Raised for a damaged or truncated file, a file of another program (another
    SQLite database, an HDF5 file that is not a run, text), an empty file, and
    a run written by a newer infoscope. The message names the file and says
    what to do.

    Examples
    --------
    >>> import os, tempfile
    >>> from infoscope.runs import RunFileError, load_run
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.db")
    >>> with open(path, "w") as f:
    ...     _ = f.write("not a run")
    >>> try:
    ...     load_run(path)
    ... except RunFileError as error:
    ...     print(str(error).split(" (SQLite)")[0])
    ... # doctest: +ELLIPSIS
    '...notes.db' is neither an infoscope run
    """


class RunWriteError(OSError):
    """A record could not be written: the disk is full, the path is read-only, ...

    The record is not stored (nothing of it: the write is one transaction),
    every earlier record stays readable, and the same run can be written to
    again once the cause is gone. ``path`` is the run's location and
    ``reason`` the cause in words.

    Examples
    --------
    >>> from infoscope.runs import RunWriteError
    >>> error = RunWriteError("run.db", "the disk is full")
    >>> isinstance(error, OSError), error.path, error.reason
    (True, 'run.db', 'the disk is full')
    """

    def __init__(self, path: str, reason: str, advice: str = ""):
        self.path, self.reason = path, reason
        advice = advice or (
            "the record was not stored and earlier records are intact; remove "
            "the cause and record again"
        )
        super().__init__(f"cannot write the run {path!r}: {reason}; {advice}.")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class RunInUseError(RuntimeError):
    """Another monitor (in this or another process) is writing the run.

    A run has one writer at a time: the first monitor that records into it
    owns it until it is closed (or its process ends, however it ends).
    Readers (:func:`~infoscope.load_run`) are never refused.

    Examples
    --------
    >>> from infoscope.runs import RunInUseError
    >>> issubclass(RunInUseError, RuntimeError)
    True
    """


class DuplicateStepError(ValueError):
    """A record was made at a step the run already holds.

    Examples
    --------
    >>> from infoscope.runs import DuplicateStepError, Record, Run
    >>> run = Run()
    >>> run.append(Record(0, [("model", "loss", 1.0)]))
    >>> try:
    ...     run.append(Record(0, [("model", "loss", 0.5)]))
    ... except DuplicateStepError as error:
    ...     print(error)
    ... # doctest: +ELLIPSIS
    the run in memory already holds a record at step 0 ...
    """
