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
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import clone

from .backends import (
    asarray,
    device_name,
    namespace_and_device,
    namespace_name,
    to_numpy,
)
from .estimators.diffusion import (
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
)
from .estimators.hsic import HSIC, HSICPlane
from .estimators.ntk import NTKEntropy, NTKMutualInformation
from .estimators.snr import NodeSNR
from .runs import DuplicateStepError, Record, Run
from .runs._record import MODEL

__all__ = ["Monitor"]


# ---- what each estimator contributes to a record


@dataclass(frozen=True)
class _Context:
    """What one record gives the measures: every input in the layers' namespace."""

    activations: dict[str, Any]
    dense: list[tuple[str, Any, Any]]
    ntk: Any
    X: Any
    y: Any


Rows = list[tuple[str, str, float]]
Arrays = dict[tuple[str, str], Any]


@dataclass(frozen=True)
class _Rule:
    """How one estimator class is measured: its input, its names, its values."""

    prefix: str
    needs: str  # "activations", "dense" or "ntk"
    needs_labels: bool
    measure: Callable[[Any, str, _Context], tuple[Rows, Arrays]]


def _per_layer(attribute: str | Callable[[Any], str], with_labels: bool):
    def measure(est: Any, name: str, ctx: _Context) -> tuple[Rows, Arrays]:
        key = attribute(est) if callable(attribute) else attribute
        rows = []
        for layer, H in ctx.activations.items():
            est.fit(H, ctx.y) if with_labels else est.fit(H)
            rows.append((layer, name, float(getattr(est, key))))
        return rows, {}

    return measure


def _hsic_attribute(est: Any) -> str:
    return "cka_" if est.normalized else "hsic_"


def _plane(est: Any, name: str, ctx: _Context) -> tuple[Rows, Arrays]:
    # Fitted once per namespace and device: the input and label Grams are cached.
    if getattr(est, "_fit_backend", None) != _place(ctx.X):
        est.fit(ctx.X, ctx.y)
    coordinates = to_numpy(est.transform(list(ctx.activations.values())))
    rows = []
    for layer, (hx, hy) in zip(ctx.activations, coordinates, strict=False):
        rows += [(layer, f"{name}_x", float(hx)), (layer, f"{name}_y", float(hy))]
    return rows, {}


def _snr(est: Any, name: str, ctx: _Context) -> tuple[Rows, Arrays]:
    rows: Rows = []
    arrays: Arrays = {}
    for layer, inputs, W in ctx.dense:
        est.fit(inputs, weights=W)
        rows += [
            (layer, f"{name}_optimality", est.optimality_mean_),
            (layer, f"{name}_signal_factor", est.signal_factor_mean_),
            (layer, f"{name}_sign_disagreements", est.sign_disagreements_),
            (layer, f"{name}_nan_nodes", est.n_nan_nodes_),
        ]
        arrays[(f"{name}_weights", layer)] = to_numpy(W)
        arrays[(f"{name}_c", layer)] = to_numpy(est.covariance_)
    return [(layer, m, float(v)) for layer, m, v in rows], arrays


def _ntk_entropy(est: Any, name: str, ctx: _Context) -> tuple[Rows, Arrays]:
    est.fit(ctx.ntk)
    rows = [
        (MODEL, f"{name}_entropy", float(est.entropy_)),
        (MODEL, f"{name}_effective_entropy", float(est.effective_entropy_)),
    ]
    return rows, {(f"{name}_eigenvalues", MODEL): to_numpy(est.eigenvalues_)}


def _ntk_mutual_information(est: Any, name: str, ctx: _Context) -> tuple[Rows, Arrays]:
    est.fit(ctx.ntk, ctx.y)
    off_diagonal = ~np.eye(len(est.classes_), dtype=bool)
    mi = to_numpy(est.mutual_information_)[off_diagonal]
    nmi = to_numpy(est.normalized_mutual_information_)[off_diagonal]
    rows = [
        (MODEL, name, float(np.mean(mi))),
        (MODEL, f"{name}_normalized", float(np.mean(nmi))),
    ]
    return rows, {}


_RULES: dict[type, _Rule] = {
    HSICPlane: _Rule("hsic", "activations", True, _plane),
    HSIC: _Rule("hsic", "activations", True, _per_layer(_hsic_attribute, True)),
    DiffusionSpectralEntropy: _Rule(
        "dse", "activations", False, _per_layer("entropy_", False)
    ),
    DiffusionSpectralMutualInformation: _Rule(
        "dsmi", "activations", True, _per_layer("mutual_information_", True)
    ),
    NodeSNR: _Rule("snr", "dense", False, _snr),
    NTKEntropy: _Rule("ntk", "ntk", False, _ntk_entropy),
    NTKMutualInformation: _Rule("ntk_mi", "ntk", True, _ntk_mutual_information),
}


def _default_prefix(est: Any) -> str:
    rule = _RULES[type(est)]
    if isinstance(est, (HSIC, HSICPlane)) and est.normalized:
        return "cka"
    return rule.prefix


def _place(x: Any) -> tuple[str, str]:
    xp, device = namespace_and_device(x)
    return namespace_name(xp), device_name(device)


# ---- models of every framework behind one interface


class _Adapted:
    """A model with its adapter module: the verbs without the model arguments."""

    def __init__(self, module: Any, args: tuple):
        self.module, self.args = module, args

    def activations(self, X: Any, layers: Any, batch_size: Any) -> dict[str, Any]:
        return self.module.activations(*self.args, X, layers, batch_size)

    def dense_layers(self, X: Any) -> list[tuple[str, Any, Any]]:
        return self.module.dense_layers(*self.args, X)

    def empirical_ntk(self, X: Any, batch_size: Any) -> Any:
        return self.module.empirical_ntk(*self.args, X, batch_size=batch_size)

    @property
    def callable(self) -> Any:
        """What user metrics receive: the model, or ``apply_fn`` bound to params."""
        if len(self.args) == 2:
            return partial(self.args[0], self.args[1])
        return self.args[0]


def _adapt(model: Any, params: Any) -> _Adapted:
    from . import adapters

    if params is not None:
        return _Adapted(adapters.jax, (model, params))
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return _Adapted(adapters.keras, (model,))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _Adapted(adapters.torch, (model,))
    raise TypeError(
        f"Monitor.record: model must be a torch.nn.Module or a keras.Model, or a "
        f"JAX apply_fn(params, x) given with params=...; got "
        f"{type(model).__name__}."
    )


# ---- the monitor


def _check_measures(measures: Any) -> dict[str, Any]:
    if isinstance(measures, Mapping):
        named = dict(measures)
    else:
        if not isinstance(measures, Iterable):
            measures = [measures]
        named = {}
        for est in measures:
            _check_estimator(est)
            name = _default_prefix(est)
            if name in named:
                raise ValueError(
                    f"Monitor: measures has two estimators named {name!r}; pass a "
                    f"dict of name to estimator to tell them apart."
                )
            named[name] = est
    if not named:
        raise ValueError("Monitor: measures is empty; give at least one estimator.")
    for name, est in named.items():
        _check_estimator(est)
        if not isinstance(name, str) or not name:
            raise ValueError(f"Monitor: measure names must be strings; got {name!r}.")
    return {name: clone(est) for name, est in named.items()}


def _check_estimator(est: Any) -> None:
    if type(est) not in _RULES:
        supported = ", ".join(sorted(cls.__name__ for cls in _RULES))
        raise TypeError(
            f"Monitor: measures must be infoscope estimators ({supported}); got "
            f"{type(est).__name__}. Record other values with metrics= or as "
            f"keywords of record()."
        )


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
    measures : estimator, list of estimators, or dict of str to estimator
        Configured infoscope estimators (copied; yours stay unfitted). Each
        gives named values per layer (per dense layer for Node SNR, per
        model for the NTK family):

        - ``HSICPlane``: ``hsic_x``, ``hsic_y`` (``cka_x``, ``cka_y`` when
          ``normalized=True``), fitted once on the probe set;
        - ``HSIC``: ``hsic`` (``cka``) of the layer and the labels;
        - ``DiffusionSpectralEntropy``: ``dse``;
          ``DiffusionSpectralMutualInformation``: ``dsmi`` (with the labels);
        - ``NodeSNR``: ``snr_optimality``, ``snr_signal_factor`` (means over
          nodes), ``snr_sign_disagreements``, ``snr_nan_nodes``, and the
          arrays ``snr_weights`` and ``snr_c``;
        - ``NTKEntropy``: ``ntk_entropy``, ``ntk_effective_entropy`` and the
          array ``ntk_eigenvalues``; ``NTKMutualInformation``: ``ntk_mi`` and
          ``ntk_mi_normalized`` (means over pairs of classes; only pairs are
          computed unless ``max_combination_size`` is set). Both take the
          empirical NTK of the probe set ("mean" over outputs), computed once
          per record.

        A dict's keys replace the prefixes (``{"dse_t5": DSE(t=5)}`` gives
        ``dse_t5``), which lets two estimators of one class run side by side.
    X : array-like
        The probe inputs, the same at every record.
    y : array-like, optional
        The probe labels; needed by DSMI, HSIC, HSICPlane and
        NTKMutualInformation.
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
        JAX, ``apply_fn`` bound to its params) and ``X``, ``y`` the probe set.
    batch_size : int, optional
        Samples per forward pass and NTK block, passed to the adapters.
    progress : bool, default=True
        Show a tqdm progress bar over a record's computations when one takes
        more than a second (needs tqdm; without it, no bar).

    Attributes
    ----------
    run : Run
        The records so far; ``history()`` and ``arrays(name)`` read them.
    estimators : dict of str to estimator
        The monitor's own copies of the measures, as last fitted.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from infoscope import DiffusionSpectralEntropy, HSICPlane, Monitor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 8)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
    ...                           torch.nn.Linear(16, 2))
    >>> monitor = Monitor([HSICPlane(), DiffusionSpectralEntropy()], X, y,
    ...                   layers=["1", "2"], every=5, progress=False)
    >>> for step in range(10):
    ...     # ... one optimisation step ...
    ...     _ = monitor.record(step, net, loss=0.5)
    ...
    >>> table = monitor.history()
    >>> sorted(table["measure"].unique()), monitor.steps
    (['dse', 'hsic_x', 'hsic_y', 'loss'], [0, 5])
    >>> monitor.record(10, net, loss=0.25)  # what was stored
    Record(step=10, values=7, arrays=[])
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
        batch_size: int | None = None,
        progress: bool = True,
    ):
        self.estimators = _check_measures(measures)
        self.X, self.y = X, y
        if y is None:
            needing = [
                n for n, e in self.estimators.items() if _RULES[type(e)].needs_labels
            ]
            if needing or metrics:
                raise ValueError(
                    f"Monitor: y is None, but {needing or list(metrics)} need the "
                    f"probe labels; pass y=."
                )
        n_samples = int(np.shape(X)[0]) if np.ndim(X) else 0
        if n_samples < 4:
            raise ValueError(
                f"Monitor: X has {n_samples} probe samples; the measures need at "
                f"least 4 (a few hundred is typical)."
            )
        if y is not None and len(y) != n_samples:
            raise ValueError(
                f"Monitor: X has {n_samples} samples but y has {len(y)}; give one "
                f"label per probe sample."
            )
        self._labels = None if y is None else _encode_labels(y)
        self.n_probe = n_samples
        self._probes: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.layers = [layers] if isinstance(layers, str) else layers
        self.every = every
        self._due = _check_every(every)
        self.metrics = dict(metrics or {})
        for name, fn in self.metrics.items():
            if not callable(fn):
                raise TypeError(
                    f"Monitor: metrics[{name!r}] must be a callable "
                    f"fn(model, X, y) -> float; got {type(fn).__name__}."
                )
        self.batch_size = batch_size
        self.progress = progress
        for est in self.estimators.values():
            if isinstance(est, (NTKEntropy, NTKMutualInformation)):
                est.set_params(kernel="precomputed")
            # The record keeps pairwise values only; larger unions of classes
            # would cost 2**n_classes eigendecompositions for nothing.
            if (
                isinstance(est, NTKMutualInformation)
                and est.max_combination_size is None
            ):
                est.set_params(max_combination_size=2)
        config = self._config(n_samples)
        self.run = Run(path, config)
        if self.run.config is not None and self.run.config != config:
            warnings.warn(
                f"Monitor: {path!r} was recorded with another configuration "
                f"({self.run.config}); new records are appended to it all the same.",
                UserWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        """Close the run's file and give up ownership of it (records stay)."""
        self.run.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _config(self, n_samples: int) -> dict:
        return json.loads(
            json.dumps(
                {
                    "measures": {n: repr(e) for n, e in self.estimators.items()},
                    "metrics": sorted(self.metrics),
                    "layers": self.layers,
                    "n_probe": n_samples,
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
        return self._due(step) and step not in self.run.steps

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
            The record made and stored, or None when `every` skips `step`.

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
        if not (force or self._due(step)):
            return None
        if step in self.run.steps:
            raise DuplicateStepError(
                f"Monitor.record: step {step} is already recorded in "
                f"{self.run.path or 'this run'!r} (steps {_span(self.run.steps)}); "
                f"a step is recorded once. Continue at a later step, or check "
                f"monitor.due(step) first."
            )
        adapted = _adapt(model, params)
        needs = {_RULES[type(e)].needs for e in self.estimators.values()}
        with _Progress(self.progress, step) as progress:
            activations = (
                progress.run(
                    "activations",
                    adapted.activations,
                    self.X,
                    self.layers,
                    self.batch_size,
                )
                if "activations" in needs
                else {}
            )
            dense = (
                progress.run("dense layers", adapted.dense_layers, self.X)
                if "dense" in needs
                else []
            )
            ntk = (
                progress.run("NTK", adapted.empirical_ntk, self.X, self.batch_size)
                if "ntk" in needs
                else None
            )
            context = self._context(activations, dense, ntk)
            rows: Rows = []
            arrays: Arrays = {}
            for name, est in self.estimators.items():
                measure = _RULES[type(est)].measure
                est_rows, est_arrays = progress.run(name, measure, est, name, context)
                rows += est_rows
                arrays.update(est_arrays)
            for name, fn in self.metrics.items():
                value = progress.run(name, self._metric, name, fn, adapted)
                rows.append((MODEL, name, value))
        rows += [(MODEL, name, _number(name, v)) for name, v in values.items()]
        record = Record(step, rows, arrays)
        self.run.append(record)
        return record

    def _context(self, activations: dict, dense: list, ntk: Any) -> _Context:
        reference = next(iter(activations.values()), None)
        if reference is None and dense:
            reference = dense[0][1]
        if reference is None:
            reference = ntk
        place = _place(reference)
        if place not in self._probes:  # one copy per namespace and device
            xp, device = namespace_and_device(reference)
            X = asarray(self.X, xp=xp, device=device)
            y = self._labels
            self._probes[place] = (
                X,
                None if y is None else asarray(y, xp=xp, device=device),
            )
        X, y = self._probes[place]
        return _Context(activations, dense, ntk, X, y)

    def _metric(self, name: str, fn: Callable, adapted: _Adapted) -> float:
        return _number(f"metrics[{name!r}]", fn(adapted.callable, self.X, self.y))

    def history(self, format: str = "pandas") -> Any:
        """The records as a tidy table: see :meth:`Run.history`."""
        return self.run.history(format)

    def arrays(self, name: str) -> dict[int, dict[str, np.ndarray]]:
        """Stored arrays, step -> layer -> array: see :meth:`Run.arrays`."""
        return self.run.arrays(name)

    def __repr__(self) -> str:
        where = self.run.path or "memory"
        return (
            f"Monitor(measures={list(self.estimators)}, n_probe={self.n_probe}, "
            f"records={len(self.run.steps)}, path={where!r})"
        )
