"""Training-loop callbacks that record a :class:`~infoscope.Monitor`.

:class:`LightningCallback` (PyTorch Lightning) and :class:`KerasCallback`
(Keras 3) call ``monitor.record`` from the framework's own training loop, with
the loop's logged scalars (``train_loss``, ``val_accuracy``, ...) as the
record's model-level values.

``import infoscope.callbacks`` imports neither framework: each class is built
on first use (PEP 562), as a subclass of that framework's ``Callback``, so
``from infoscope.callbacks import LightningCallback`` imports Lightning only
then.

A record changes nothing in training: the adapters measure the model in
inference mode without gradients and restore its mode, and the callbacks
restore the random states (Python's, NumPy's global one and PyTorch's CPU and
CUDA generators) that a measure or a user metric may draw from, so a run with
a callback reaches the same weights as the run without it.
"""

from __future__ import annotations

import contextlib
import importlib
import numbers
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

# Both are built on first use by __getattr__ below.
__all__ = ["KerasCallback", "LightningCallback"]  # noqa: F822

_ON = ("epoch", "step")

# Keywords of Monitor.record itself: a logged value of that name is recorded
# under the name followed by "_".
_RESERVED = frozenset({"step", "model", "params", "force"})


# ---- what the framework-specific classes share


def _check_arguments(caller: str, monitor: Any, on: Any) -> None:
    from .monitor import Monitor

    if not isinstance(monitor, Monitor):
        raise TypeError(
            f"{caller}: monitor must be an infoscope.Monitor; got "
            f"{type(monitor).__name__}."
        )
    if not isinstance(on, str) or on not in _ON:
        raise ValueError(f'{caller}: on must be one of "epoch", "step"; got {on!r}.')


def _as_float(value: Any) -> float | None:
    """`value` as a float if it is one number (a 1-element array counts), else None."""
    if isinstance(value, numbers.Real):
        return float(value)
    numel = getattr(value, "numel", None)  # torch.Tensor
    size = numel() if callable(numel) else getattr(value, "size", None)
    item = getattr(value, "item", None)
    if size != 1 or not callable(item):
        return None
    value = item()
    return float(value) if isinstance(value, numbers.Real) else None


def _scalars(metrics: Mapping[Any, Any] | None) -> dict[str, float]:
    """The single numbers of `metrics` as floats, under names `record` accepts.

    Other entries (arrays, strings, ``None``) are left out. A name that is a
    keyword of :meth:`Monitor.record` (``step``, ``model``, ``params``,
    ``force``) gets a trailing ``_`` (more if that name is taken too).
    """
    metrics = dict(metrics or {})
    names = {str(name) for name in metrics}
    values: dict[str, float] = {}
    for name, value in metrics.items():
        number = _as_float(value)
        if number is None:
            continue
        key = name = str(name)
        while key in _RESERVED or key in values or (key != name and key in names):
            key += "_"
        values[key] = number
    return values


def _measured(record: Any, given: Mapping[str, float]) -> dict[str, float]:
    """A record's values under the sinks' names, without those the loop gave it."""
    from .runs import metric_name
    from .runs._record import MODEL

    if record is None:
        return {}
    return {
        metric_name(measure, layer): value
        for layer, measure, value in record.values
        if not (layer == MODEL and measure in given)
    }


@contextlib.contextmanager
def _random_states_kept() -> Iterator[None]:
    """Restore the global random generators training may draw from."""
    python_state = random.getstate()
    # The legacy global generator: what np.random.* and scikit-learn's
    # random_state=None draw from.
    numpy_state = np.random.get_state()  # noqa: NPY002
    torch = sys.modules.get("torch")
    cpu_state = cuda_states = None
    if torch is not None:
        cpu_state = torch.random.get_rng_state()
        if torch.cuda.is_initialized():
            cuda_states = torch.cuda.get_rng_state_all()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
        if cpu_state is not None:
            torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


# ---- PyTorch Lightning

_LIGHTNING_DOC = """Record a :class:`~infoscope.Monitor` while Lightning trains.

    At the end of each training epoch (``on="epoch"``) or after each training
    batch (``on="step"``) the callback calls ``monitor.record(step,
    pl_module, **values)``, so the monitor's ``every`` selects which epochs or
    steps are measured. ``values`` are the single numbers among
    ``trainer.callback_metrics`` (what the module logged with ``self.log``),
    as floats; other entries are left out. Only the global-rank-0 process
    records.

    Parameters
    ----------
    monitor : Monitor
        The monitor to record; its probe set is passed through the model.
    on : {"epoch", "step"}, default="epoch"
        ``"epoch"``: record at each ``on_train_epoch_end`` with step
        ``trainer.current_epoch`` (0 for the first epoch), after that epoch's
        validation. ``"step"``: record the untrained model at
        ``on_train_start`` and then after each training batch, with step
        ``trainer.global_step`` (the number of optimizer steps taken; a step
        reached again under gradient accumulation is not recorded twice).
    log_records : bool, default=False
        Also log each record's values to the trainer's loggers (TensorBoard,
        CSV, W&B, ...) through ``pl_module.log_dict``, named
        ``infoscope/<measure>/<layer>`` (the values the loop logged itself are
        not logged again). They are then in ``trainer.callback_metrics`` too,
        so ``ModelCheckpoint`` or ``EarlyStopping`` can watch one in a
        single-process run. The record of the untrained model (``on="step"``)
        goes to the loggers directly: Lightning allows no ``log`` there.

    Attributes
    ----------
    monitor : Monitor
        The monitor given.
    on : str
        When the callback records.
    log_records : bool
        Whether records go to the trainer's loggers. (Not ``log``: Lightning
        sets ``log`` on every callback.)

    See Also
    --------
    KerasCallback : The same for Keras 3 models.
    Monitor.record : What one record measures.

    Notes
    -----
    The class subclasses the ``Callback`` of every Lightning distribution
    installed (``lightning.pytorch`` and ``pytorch_lightning``), so either
    ``Trainer`` accepts it.

    The values are those Lightning holds when the callback runs: an epoch's
    ``on_epoch=True`` aggregates and its validation metrics are there, but
    values the LightningModule logs in its own ``on_train_epoch_end`` are
    logged after the callbacks' hook, so an epoch's record holds the previous
    epoch's. A value not logged again keeps its last value, as in
    ``trainer.callback_metrics``. A logged name that is a keyword of
    :meth:`Monitor.record` (``step``, ``model``, ``params``, ``force``) is
    recorded with a trailing ``_``.

    Recording does not change training: the model is measured in evaluation
    mode without gradients and put back in its mode, and the global random
    states (Python, NumPy, PyTorch CPU and CUDA) are restored afterwards.

    Examples
    --------
    >>> import lightning.pytorch as pl
    >>> import numpy as np, torch
    >>> from infoscope import DiffusionSpectralEntropy, Monitor
    >>> from infoscope.callbacks import LightningCallback
    >>> class Classifier(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Sequential(
    ...             torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
    ...         )
    ...     def forward(self, X):
    ...         return self.net(X)
    ...     def training_step(self, batch, batch_idx):
    ...         X, y = batch
    ...         loss = torch.nn.functional.cross_entropy(self(X), y)
    ...         self.log("train_loss", loss, on_step=False, on_epoch=True)
    ...         return loss
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 8)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> data = torch.utils.data.DataLoader(
    ...     torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
    ...     batch_size=16,
    ... )
    >>> monitor = Monitor(
    ...     DiffusionSpectralEntropy(), X, layers=["net.1"], progress=False
    ... )
    >>> trainer = pl.Trainer(
    ...     max_epochs=2, callbacks=[LightningCallback(monitor)],
    ...     accelerator="cpu", logger=False, enable_checkpointing=False,
    ...     enable_progress_bar=False, enable_model_summary=False,
    ... )
    >>> trainer.fit(Classifier(), data)
    >>> monitor.steps
    [0, 1]
    >>> monitor.history()[["step", "layer", "measure"]].values.tolist()
    [[0, 'net.1', 'dse'], [0, 'model', 'train_loss'],
     [1, 'net.1', 'dse'], [1, 'model', 'train_loss']]
    """


def _lightning_bases() -> tuple[type, ...]:
    bases = []
    error: ImportError | None = None
    for module in ("lightning.pytorch", "pytorch_lightning"):
        try:
            bases.append(importlib.import_module(module).Callback)
        except ImportError as exc:
            error = exc
    if not bases:
        raise ImportError(
            "infoscope.callbacks.LightningCallback needs PyTorch Lightning: "
            "pip install lightning"
        ) from error
    return tuple(bases)


def _lightning_callback() -> type:
    class LightningCallback(*_lightning_bases()):
        __doc__ = _LIGHTNING_DOC

        def __init__(
            self, monitor: Any, *, on: str = "epoch", log_records: bool = False
        ):
            _check_arguments("LightningCallback", monitor, on)
            self.monitor = monitor
            self.on = on
            self.log_records = bool(log_records)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            """Record the model before training (at ``global_step``) if on="step"."""
            if self.on == "step":
                self._record(trainer, pl_module, trainer.global_step, None, False)

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            """Record at step ``trainer.global_step`` if on="step" and it is due."""
            if self.on == "step":
                self._record(
                    trainer,
                    pl_module,
                    trainer.global_step,
                    trainer.callback_metrics,
                    True,
                )

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            """Record at step ``trainer.current_epoch`` if on="epoch" and it is due."""
            if self.on == "epoch":
                self._record(
                    trainer,
                    pl_module,
                    trainer.current_epoch,
                    trainer.callback_metrics,
                    True,
                )

        def _record(
            self, trainer: Any, pl_module: Any, step: int, metrics, loggable: bool
        ) -> None:
            # Nothing is read (no device synchronisation) at steps not due.
            if not trainer.is_global_zero or not self.monitor.due(step):
                return
            values = _scalars(metrics)
            with _random_states_kept():
                record = self.monitor.record(step, pl_module, **values)
            measured = _measured(record, values) if self.log_records else {}
            if not measured:
                return
            if loggable:
                pl_module.log_dict(
                    measured,
                    on_step=self.on == "step",
                    on_epoch=self.on == "epoch",
                    rank_zero_only=True,
                )
            else:
                for logger in trainer.loggers:
                    logger.log_metrics(measured, step=trainer.global_step)

        def __repr__(self) -> str:
            return (
                f"LightningCallback({self.monitor!r}, on={self.on!r}, "
                f"log_records={self.log_records!r})"
            )

    return LightningCallback


# ---- Keras

_KERAS_DOC = """Record a :class:`~infoscope.Monitor` during Keras ``model.fit``.

    At the end of each epoch (``on="epoch"``) or after each training batch
    (``on="step"``) the callback calls ``monitor.record(step, self.model,
    **values)``, so the monitor's ``every`` selects which epochs or steps are
    measured. ``values`` are the single numbers among the ``logs`` Keras gives
    the hook (``loss``, the compiled metrics, ``val_*`` after validation), as
    floats.

    Parameters
    ----------
    monitor : Monitor
        The monitor to record; its probe set is passed through the model.
    on : {"epoch", "step"}, default="epoch"
        ``"epoch"``: record at each ``on_epoch_end`` with step ``epoch`` (0
        for the first epoch). ``"step"``: record the model at
        ``on_train_begin`` and then after each training batch, with step the
        number of batches trained on, counted from the optimizer's
        ``iterations`` at the start of ``fit`` (so a later ``fit`` continues
        the count).
    log_records : bool, default=False
        Also put each record's values in the ``logs`` Keras passes on to the
        callbacks after this one (``History``, ``CSVLogger``,
        ``TensorBoard``, ...), named ``infoscope/<measure>/<layer>`` (the
        loop's own values are not added again). Place this callback before
        those that should see them. The record of the model before training
        (``on="step"``) has no ``logs`` to go to.

    Attributes
    ----------
    monitor : Monitor
        The monitor given.
    on : str
        When the callback records.
    log_records : bool
        Whether records go into Keras's ``logs``.

    See Also
    --------
    LightningCallback : The same for PyTorch Lightning.
    Monitor.record : What one record measures.

    Notes
    -----
    Keras 3 on the JAX or PyTorch backend (those :mod:`infoscope.adapters.keras`
    supports). On JAX, ``fit`` keeps the weights out of the model between
    epochs; a record after a batch writes them back first
    (``model.jax_state_sync()``), as Keras asks of callbacks that read the
    model. With ``on="epoch"`` the callback overrides no batch hook, so Keras
    may still dispatch batch callbacks asynchronously.

    Epochs are numbered as ``fit`` numbers them: a later ``fit`` of the same
    model starts again at 0 unless given ``initial_epoch`` (epochs the monitor
    holds already are not recorded again). A logged name that is a keyword
    of :meth:`Monitor.record` (``step``, ``model``, ``params``, ``force``) is
    recorded with a trailing ``_``. The
    global random states (Python, NumPy, PyTorch CPU and CUDA) are restored
    after each record.

    Examples
    --------
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras, numpy as np
    >>> from infoscope import DiffusionSpectralEntropy, Monitor
    >>> from infoscope.callbacks import KerasCallback
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 8)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int32)
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu", name="hidden"),
    ...     keras.layers.Dense(2, activation="softmax", name="output"),
    ... ])
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
    ...               metrics=["accuracy"])
    >>> monitor = Monitor(
    ...     DiffusionSpectralEntropy(), X, layers=["hidden"], progress=False
    ... )
    >>> history = model.fit(X, y, epochs=2, batch_size=16, verbose=0,
    ...                     callbacks=[KerasCallback(monitor)])
    >>> monitor.steps
    [0, 1]
    >>> monitor.history()[["step", "layer", "measure"]].values.tolist()
    [[0, 'hidden', 'dse'], [0, 'model', 'accuracy'], [0, 'model', 'loss'],
     [1, 'hidden', 'dse'], [1, 'model', 'accuracy'], [1, 'model', 'loss']]
    """


def _keras() -> Any:
    try:
        keras = importlib.import_module("keras")
    except ImportError as exc:
        if exc.name == "keras":
            raise ImportError(
                "infoscope.callbacks.KerasCallback needs Keras 3: pip install keras"
            ) from exc
        raise ImportError(
            f"infoscope.callbacks.KerasCallback: importing Keras failed ({exc}). "
            f'infoscope supports its "jax" and "torch" backends: set '
            f"KERAS_BACKEND before Keras is first imported."
        ) from exc
    major = str(getattr(keras, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 3:
        raise ImportError(
            f"infoscope.callbacks.KerasCallback needs Keras 3; found Keras "
            f'{getattr(keras, "__version__", "?")}: pip install "keras>=3"'
        )
    return keras


def _keras_callback() -> type:
    keras = _keras()

    class KerasCallback(keras.callbacks.Callback):
        __doc__ = _KERAS_DOC

        def __init__(
            self, monitor: Any, *, on: str = "epoch", log_records: bool = False
        ):
            _check_arguments("KerasCallback", monitor, on)
            super().__init__()
            self.monitor = monitor
            self.on = on
            self.log_records = bool(log_records)
            self._batches = 0  # batches trained on so far (on="step")
            self._epoch_start = 0
            if on == "epoch":
                # Keras dispatches batch hooks asynchronously only while no
                # callback overrides them: keep the default one.
                self.on_train_batch_end = super().on_train_batch_end

        def on_train_begin(self, logs: Mapping | None = None) -> None:
            """Start the batch count (on="step") and record the model there."""
            if self.on != "step":
                return
            optimizer = getattr(self.model, "optimizer", None)
            iterations = getattr(optimizer, "iterations", None)
            if iterations is not None:
                self._batches = int(keras.ops.convert_to_numpy(iterations))
            self._record(self._batches, None)

        def on_epoch_begin(self, epoch: int, logs: Mapping | None = None) -> None:
            """Note where the epoch's batch count starts."""
            self._epoch_start = self._batches

        def on_train_batch_end(self, batch: int, logs: Mapping | None = None) -> None:
            """Record after a batch if on="step" and the count is due."""
            # `batch` is the last batch of the call (steps_per_execution > 1).
            self._batches = self._epoch_start + int(batch) + 1
            self._record(self._batches, logs)

        def on_epoch_end(self, epoch: int, logs: Mapping | None = None) -> None:
            """Record at step `epoch` if on="epoch" and it is due."""
            if self.on == "epoch":
                self._record(epoch, logs)

        def _record(self, step: int, logs: Mapping | None) -> None:
            if not self.monitor.due(step):
                return
            sync: Callable[[], None] | None = getattr(
                self.model, "jax_state_sync", None
            )
            if sync is not None:
                sync()  # the JAX trainer's current weights into the model
            values = _scalars(logs)
            with _random_states_kept():
                record = self.monitor.record(step, self.model, **values)
            if self.log_records and logs is not None:
                logs.update(_measured(record, values))

        def __repr__(self) -> str:
            return (
                f"KerasCallback({self.monitor!r}, on={self.on!r}, "
                f"log_records={self.log_records!r})"
            )

    return KerasCallback


# ---- the classes, built on first use

_FACTORIES: dict[str, Callable[[], type]] = {
    "LightningCallback": _lightning_callback,
    "KerasCallback": _keras_callback,
}

# The examples run under `pytest --doctest-modules` before the classes exist.
# (No __dir__ lists the classes: pytest reads every name dir() gives at
# collection, which would import both frameworks.)
__test__ = {"LightningCallback": _LIGHTNING_DOC, "KerasCallback": _KERAS_DOC}


def __getattr__(name: str) -> Any:
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = factory()
    cls.__module__ = __name__
    cls.__qualname__ = name  # pickle finds it here, through this function
    globals()[name] = cls  # later lookups skip __getattr__
    return cls
