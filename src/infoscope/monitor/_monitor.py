"""Recording information measures across training: :class:`Monitor`.

A monitor holds configured estimators and a fixed probe set. At each due step
``monitor.record(step, model)`` pulls the layers' activations, dense layers and
empirical NTK out of the model through :mod:`infoscope.adapters`, computes
every measure for every layer, appends one :class:`~infoscope.runs.Record` to
its :class:`~infoscope.runs.Run` (memory, or a crash-safe SQLite file, one
transaction per record) and returns it.
"""

from __future__ import annotations

import json
import numbers
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adapters import map_arrays, n_samples
from ..backends import (
    asarray,
    device_name,
    namespace_and_device,
    namespace_name,
    to_numpy,
)
from ..runs import DuplicateStepError, Record, Run
from ..runs._record import MODEL
from ..runs._sinks import SinkSet
from ._measures import EstimatorMeasure, Measure, Probe, as_measure, split_results
from ._models import Adapted, adapt, is_recording_process

__all__ = ["Monitor"]


def _place(x: Any) -> tuple[str, str]:
    xp, device = namespace_and_device(x)
    return namespace_name(xp), device_name(device)


# ---- the monitor


def _check_measures(measures: Any) -> dict[str, Measure]:
    """The measures by name, each in the measure protocol."""
    if isinstance(measures, Mapping):
        given = list(measures.items())
    elif isinstance(measures, Iterable) and not isinstance(measures, str):
        given = [(None, m) for m in measures]
    else:
        given = [(None, measures)]
    named: dict[str, Measure] = {}
    for name, measure in given:
        name, wrapped = as_measure(measure, name)
        if name in named:
            raise ValueError(
                f"Monitor: measures has two measures named {name!r}; pass a dict "
                f"of name to measure to tell them apart."
            )
        named[name] = wrapped
    if not named:
        raise ValueError("Monitor: measures is empty; give at least one measure.")
    return named


@dataclass(frozen=True)
class _Schedule:
    """Which steps are due (a class, not a lambda, so that a Monitor pickles)."""

    every: int | None = None
    steps: frozenset[int] | None = None
    rule: Callable[[int], Any] | None = None

    def __call__(self, step: int) -> bool:
        if self.every is not None:
            return step % self.every == 0
        if self.steps is not None:
            return step in self.steps
        return bool(self.rule(step))


def _check_every(every: Any) -> _Schedule:
    if isinstance(every, numbers.Integral) and not isinstance(every, bool):
        if every < 1:
            raise ValueError(f"Monitor: every must be >= 1; got {every}.")
        return _Schedule(every=int(every))
    if callable(every):
        return _Schedule(rule=every)
    if isinstance(every, Iterable) and not isinstance(every, str):
        return _Schedule(steps=frozenset(int(s) for s in every))
    raise TypeError(
        f"Monitor: every must be an int (record every k steps), a collection of "
        f"steps or a callable step -> bool; got {every!r}."
    )


def _check_step(step: Any) -> int:
    try:
        return operator.index(step)
    except TypeError:
        raise TypeError(
            f"Monitor.record: step must be an integer (the training step or "
            f"epoch); got {step!r}."
        ) from None


def _span(steps: list[int]) -> str:
    if len(steps) <= 4:
        return str(steps)
    return f"[{steps[0]}, {steps[1]}, ..., {steps[-1]}] ({len(steps)} records)"


class _Metric(Measure):
    """A ``metrics=`` callable ``fn(model, X, y)`` in the measure protocol.

    It receives the probe set as the user gave it, not the device copies.
    """

    needs = frozenset({"model"})

    def __init__(self, name: str, fn: Callable, X: Any, y: Any):
        self.name, self.fn, self.X, self.y = name, fn, X, y

    def measure(self, probe: Probe) -> dict:
        value = self.fn(probe.model, self.X, self.y)
        return {MODEL: _number(f"metrics[{self.name!r}]", value)}

    def __repr__(self) -> str:
        return f"metric {self.name!r}"


def _number(name: str, value: Any) -> float:
    """One number from a Python, NumPy, torch, JAX or CuPy scalar."""
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return float(to_numpy(value))
    except (TypeError, ValueError):
        raise TypeError(
            f"Monitor: {name} returned {type(value).__name__}; it must return one "
            f"number."
        ) from None


class _Progress:
    """A tqdm bar over a record's computations, shown once one takes a second."""

    def __init__(self, enabled: bool, step: int):
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            desc=f"infoscope step {step}",
            delay=1.0,  # only computations that take a while show a bar
            leave=False,
            unit="task",
        )

    def run(self, label: str, fn: Callable, *args: Any) -> Any:
        """``fn(*args)``, shown on the bar as `label`."""
        if self.bar is None:
            return fn(*args)
        self.bar.set_postfix_str(label, refresh=False)
        result = fn(*args)
        self.bar.update()
        return result

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _one_array(inputs: Any) -> Any:
    """A multi-input probe set as one (n, features) array (an array as it is)."""
    arrays: list = []
    map_arrays(arrays.append, inputs)
    if len(arrays) == 1 and arrays[0] is inputs:
        return inputs
    xp = namespace_and_device(arrays[0])[0]
    floating = [a for a in arrays if xp.isdtype(a.dtype, "real floating")]
    chosen = floating or [xp.astype(a, xp.float32) for a in arrays]
    flat = [xp.reshape(a, (a.shape[0], -1)) for a in chosen]
    dtype = xp.result_type(*(a.dtype for a in flat))
    return xp.concat([xp.astype(a, dtype) for a in flat], axis=1)


def _encode_labels(y: Any) -> Any:
    """Labels as integer codes (strings and objects cannot live on a device)."""
    y = to_numpy(y)
    if y.dtype.kind in "OUSb":
        y = np.unique(y, return_inverse=True)[1].reshape(y.shape)
    return y


class Monitor:
    """Record information measures of a model's layers across training.

    Parameters
    ----------
    measures : measure, list of measures, or dict of str to measure
        What to record at each due step. Each is one of:

        - an infoscope estimator (copied; yours stays unfitted), named by
          default after its family:

          - ``HSICPlane``: ``hsic_x``, ``hsic_y`` (``cka_x``, ``cka_y`` when
            ``normalized=True``), fitted once on the probe set;
          - ``HSIC``: ``hsic`` (``cka``) of the layer and the labels;
          - ``DiffusionSpectralEntropy``: ``dse``;
            ``DiffusionSpectralMutualInformation``: ``dsmi`` (with the
            labels);
          - ``RepresentationGeometry``: ``geometry_rankme``,
            ``geometry_alpha_req``, ``geometry_stable_rank`` per layer;
          - ``NodeSNR``: ``snr_optimality``, ``snr_signal_factor`` (means over
            nodes), ``snr_sign_disagreements``, ``snr_nan_nodes``, and the
            arrays ``snr_weights`` and ``snr_c``;
          - ``NTKEntropy``: ``ntk_entropy``, ``ntk_effective_entropy`` and the
            array ``ntk_eigenvalues``; ``NTKMutualInformation``: ``ntk_mi`` and
            ``ntk_mi_normalized`` (means over pairs of classes; only pairs are
            computed unless ``max_combination_size`` is set). Both take the
            empirical NTK of the probe set ("mean" over outputs), computed
            once per record;

        - any object with ``needs`` and ``measure(probe)`` (see
          :class:`~infoscope.monitor.Measure`: it says which inputs it needs
          and returns named values and arrays from a
          :class:`~infoscope.monitor.Probe`), used as given;
        - a callable ``fn(H)`` or ``fn(H, y)``, measured on each layer's
          activations ``H`` (and the probe labels).

        :class:`~infoscope.monitor.ReferenceSimilarity` records each layer's
        CKA (or mutual kNN) with itself at the first record, the previous
        one, or a given checkpoint.

        A dict's keys name the values (``{"dse_t5": DSE(t=5)}`` gives
        ``dse_t5``), which lets two measures of one kind run side by side.
    X : array-like, or tuple, list or dict of them
        The probe inputs, the same at every record: one array, or the several
        inputs of a multi-input model (token ids and a mask, say) sharing
        their first axis. Measures that take the inputs as one array (the
        HSIC plane's ``HSIC(H, X)``) get the floating-point inputs flattened
        per sample and concatenated.
    y : array-like, optional
        The probe labels; needed by DSMI, HSIC, HSICPlane,
        NTKMutualInformation and measures that need ``"labels"``.
    layers : str or list of str, optional
        The layers to measure, named as the model's adapter names them; by
        default the adapter's default (every leaf module for PyTorch).
    every : int, collection of int, or callable, default=1
        Which steps :meth:`record` measures: every k-th, the listed ones, or
        those where ``every(step)`` is true.
    path : str or os.PathLike, optional
        The run's file (SQLite, conventionally ``run.db``), one transaction
        per record, so that a run killed at any moment keeps every record
        :meth:`record` returned; readers (:func:`~infoscope.load_run`) may
        open it while it is written. An existing run is continued (its steps
        cannot be recorded again). The first monitor that records owns the
        file until :meth:`close`. None keeps the records in memory.
    metrics : dict of str to callable, optional
        Model-level values computed at each record, ``fn(model, X, y) ->
        float``, where ``model`` is the model given to :meth:`record` (for
        JAX, ``apply_fn`` bound to its params) and ``X``, ``y`` the probe set
        as given here.
    sinks : list of Sink, optional
        Where each record also goes once it is stored, such as
        :class:`~infoscope.runs.TensorBoardSink` and
        :class:`~infoscope.runs.MLflowSink`. A sink that fails (a server
        down, a full disk) warns once with the cause and is tried again at
        the next record; the run and the training go on.
    batch_size : int, optional
        Samples per forward pass and NTK block, passed to the adapters.
    progress : bool, default=True
        Show a tqdm progress bar over a record's computations when one takes
        more than a second (needs tqdm; without it, no bar).
    step_name : str, default="step"
        What a step counts ("epoch", "batch", ...): stored with the run, so
        that plots and tables (:func:`infoscope.plotting.report`,
        ``infoscope report``) label the steps with it.
    pool : {"mean", "first", "last"}, optional
        Pool sequence layers' activations over their tokens before the
        measures (see the adapters' ``activations``); with `mask` (an array,
        or the key or position of one in `X`) only unmasked tokens count.
    mask : array, str or int, optional
        The token mask for `pool`.
    output : key, int or callable, optional
        Which output of the model the NTK differentiates (a ``ModelOutput``
        key such as ``"logits"``, an index, or a callable), as the adapters'
        ``empirical_ntk`` takes it.

    Attributes
    ----------
    run : Run
        The records so far; ``history()`` and ``arrays(name)`` read them.
    measures : dict of str to measure
        Every measure in the protocol, by name (infoscope's estimators
        wrapped, with the estimator as ``.estimator``).
    estimators : dict of str to estimator
        The monitor's own copies of infoscope's estimators, as last fitted.

    Notes
    -----
    In a distributed job (torch.distributed initialised, or a ``RANK``
    environment variable, or several JAX processes) only rank 0 records;
    :meth:`record` returns None on the other ranks at once, computing
    nothing and taking part in no collective operation. A model wrapped in
    ``DistributedDataParallel`` is measured through its inner module.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from infoscope import DiffusionSpectralEntropy, HSICPlane, Monitor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 8)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
    ...                           torch.nn.Linear(16, 2))
    >>> def mean_activation(H):  # a plain callable: one value per layer
    ...     return H.mean()
    >>> monitor = Monitor([HSICPlane(), DiffusionSpectralEntropy(), mean_activation],
    ...                   X, y, layers=["1", "2"], every=5, progress=False)
    >>> for step in range(10):
    ...     # ... one optimisation step ...
    ...     _ = monitor.record(step, net, loss=0.5)
    ...
    >>> table = monitor.history()
    >>> sorted(table["measure"].unique()), monitor.steps
    (['dse', 'hsic_x', 'hsic_y', 'loss', 'mean_activation'], [0, 5])
    >>> monitor.record(10, net, loss=0.25)  # what was stored
    Record(step=10, values=9, arrays=[])
    >>> monitor.record(11, net) is None  # not due
    True
    """

    def __init__(
        self,
        measures: Any,
        X: Any,
        y: Any = None,
        *,
        layers: Any = None,
        every: Any = 1,
        path: Any = None,
        metrics: Mapping[str, Callable] | None = None,
        sinks: Iterable[Any] | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        step_name: str = "step",
        pool: str | None = None,
        mask: Any = None,
        output: Any = None,
    ):
        self.measures = _check_measures(measures)
        self.X, self.y = X, y
        self.metrics = dict(metrics or {})
        for name, fn in self.metrics.items():
            if not callable(fn):
                raise TypeError(
                    f"Monitor: metrics[{name!r}] must be a callable "
                    f"fn(model, X, y) -> float; got {type(fn).__name__}."
                )
            if name in self.measures:
                raise ValueError(
                    f"Monitor: {name!r} names both a measure and a metric; give "
                    f"them different names."
                )
            self.measures[name] = _Metric(name, fn, X, y)
        if y is None:
            needing = [n for n, m in self.measures.items() if "labels" in m.needs]
            if needing:
                raise ValueError(
                    f"Monitor: y is None, but {needing} need the probe labels; pass y=."
                )
        try:
            n_probe = n_samples(X)
        except ValueError as error:
            raise ValueError(
                f"Monitor: X must be the probe inputs, an array or a tuple, list "
                f"or dict of arrays with the samples along their first axis "
                f"({error})."
            ) from None
        if n_probe < 4:
            raise ValueError(
                f"Monitor: X has {n_probe} probe samples; the measures need at "
                f"least 4 (a few hundred is typical)."
            )
        if y is not None and len(y) != n_probe:
            raise ValueError(
                f"Monitor: X has {n_probe} samples but y has {len(y)}; give one "
                f"label per probe sample."
            )
        self._labels = None if y is None else _encode_labels(y)
        self.n_probe = n_probe
        self.pool, self.mask, self.output = pool, mask, output
        self._probes: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.layers = [layers] if isinstance(layers, str) else layers
        self.every = every
        self._due = _check_every(every)
        self.batch_size = batch_size
        self.progress = progress
        if not isinstance(step_name, str) or not step_name:
            raise TypeError(
                f"Monitor: step_name must be a word such as 'epoch'; got {step_name!r}."
            )
        self.step_name = step_name
        self.sinks = SinkSet(sinks)
        config = self._config(n_probe)
        self.run = Run(path, config)
        if self.run.config is not None and self.run.config != config:
            warnings.warn(
                f"Monitor: {path!r} was recorded with another configuration "
                f"({self.run.config}); new records are appended to it all the same.",
                UserWarning,
                stacklevel=2,
            )
        if path is not None:
            for name, measure in self.measures.items():
                resume = getattr(measure, "resume", None)
                if callable(resume):
                    resume(self.run, name)

    @property
    def estimators(self) -> dict[str, Any]:
        """infoscope's estimators among the measures (the monitor's fitted copies)."""
        return {
            name: m.estimator
            for name, m in self.measures.items()
            if isinstance(m, EstimatorMeasure)
        }

    def close(self) -> None:
        """Close the run's file (giving up ownership) and the sinks; records stay."""
        self.run.close()
        self.sinks.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _config(self, n_samples: int) -> dict:
        return json.loads(
            json.dumps(
                {
                    "measures": {
                        n: repr(m)
                        for n, m in self.measures.items()
                        if n not in self.metrics
                    },
                    "metrics": sorted(self.metrics),
                    "layers": self.layers,
                    "n_probe": n_samples,
                    "step_name": self.step_name,
                },
                default=str,
            )
        )

    @property
    def steps(self) -> list[int]:
        """The steps recorded so far (including those of a continued file)."""
        return self.run.steps

    def due(self, step: int) -> bool:
        """Whether :meth:`record` would measure at `step` (due and not yet stored)."""
        step = _check_step(step)
        return self._due(step) and is_recording_process() and step not in self.run.steps

    def record(
        self,
        step: int,
        model: Any,
        *,
        params: Any = None,
        force: bool = False,
        **values: float,
    ) -> Record | None:
        """Measure `model` on the probe set and append the record, if `step` is due.

        Parameters
        ----------
        step : int
            The training step (or epoch) the record belongs to.
        model : torch.nn.Module, keras.Model or callable
            The model; for JAX, ``apply_fn(params, x)`` with `params`.
        params : pytree, optional
            The JAX model's parameters.
        force : bool, default=False
            Record even if `every` does not select `step`.
        **values : float
            Model-level values the loop already has, such as ``loss=...``.

        Returns
        -------
        Record or None
            The record made and stored, or None when `every` skips `step`
            (and on every process but rank 0 of a distributed job).

        Raises
        ------
        DuplicateStepError
            If the run already holds a record at `step` (checked before
            anything is computed).
        RunWriteError
            If the run's file cannot be written (full disk, read-only path):
            the record is not stored, earlier ones are intact, and the next
            call may record again.
        """
        step = _check_step(step)
        if not (force or self._due(step)) or not is_recording_process():
            return None
        if step in self.run.steps:
            raise DuplicateStepError(
                f"Monitor.record: step {step} is already recorded in "
                f"{self.run.path or 'this run'!r} (steps {_span(self.run.steps)}); "
                f"a step is recorded once. Continue at a later step, or check "
                f"monitor.due(step) first."
            )
        adapted = adapt(model, params)
        rows: list[tuple[str, str, float]] = []
        arrays: dict[tuple[str, str], Any] = {}
        with _Progress(self.progress, step) as progress:
            probe = self._probe(step, adapted, progress)
            for name, measure in self.measures.items():
                results = progress.run(name, measure.measure, probe)
                more_rows, more_arrays = split_results(name, results)
                rows += more_rows
                arrays.update(more_arrays)
        rows += [(MODEL, name, _number(name, v)) for name, v in values.items()]
        record = Record(step, rows, arrays)
        self.run.append(record)
        self.sinks.write(record)
        return record

    def _probe(self, step: int, adapted: Adapted, progress: _Progress) -> Probe:
        """Each input some measure needs, computed once, with the probe set beside."""
        needs = set().union(*(m.needs for m in self.measures.values()))
        activations = dense = ntk = None
        if "activations" in needs:
            activations = progress.run(
                "activations",
                adapted.activations,
                self.X,
                self.layers,
                self.batch_size,
                self.pool,
                self.mask,
            )
        if "dense" in needs:
            dense = progress.run("dense layers", adapted.dense_layers, self.X)
        if "ntk" in needs:
            ntk = progress.run(
                "NTK", adapted.empirical_ntk, self.X, self.batch_size, self.output
            )
        reference = next(iter((activations or {}).values()), None)
        if reference is None and dense:
            reference = dense[0][1]
        if reference is None:
            reference = ntk
        inputs, X, y = self._probe_set(reference)
        return Probe(
            step=step,
            X=X,
            y=y,
            inputs=inputs,
            activations=activations or {},
            dense=dense or [],
            ntk=ntk,
            model=adapted.callable if "model" in needs else None,
        )

    def _probe_set(self, reference: Any) -> tuple[Any, Any, Any]:
        """``(inputs, X, y)`` on `reference`'s library and device (NumPy if None).

        ``inputs`` keeps the structure the model takes; ``X`` is one array of
        them: the array itself, or the floating-point inputs of a multi-input
        model flattened per sample and concatenated (all of them, as floats,
        when none is floating point).
        """
        if reference is None:
            return self.X, _one_array(self.X), self._labels
        place = _place(reference)
        if place not in self._probes:  # one copy per namespace and device
            xp, device = namespace_and_device(reference)
            inputs = map_arrays(lambda a: asarray(a, xp=xp, device=device), self.X)
            y = self._labels
            self._probes[place] = (
                inputs,
                _one_array(inputs),
                None if y is None else asarray(y, xp=xp, device=device),
            )
        return self._probes[place]

    def history(self, format: str = "pandas") -> Any:
        """The records as a tidy table: see :meth:`Run.history`."""
        return self.run.history(format)

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        """Stored arrays, step -> layer -> array: see :meth:`Run.arrays`."""
        return self.run.arrays(name)

    def __repr__(self) -> str:
        where = self.run.path or "memory"
        return (
            f"Monitor(measures={list(self.measures)}, n_probe={self.n_probe}, "
            f"records={len(self.run.steps)}, path={where!r})"
        )
