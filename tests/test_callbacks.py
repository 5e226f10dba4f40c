"""Lightning and Keras callbacks: records at the loop's epochs and steps, with its
logged values, equal to a direct computation, and training left as it was."""

from __future__ import annotations

import os

# Keras reads its backend once, when it is first imported.
os.environ.setdefault("KERAS_BACKEND", "jax")

import pickle
import random
import subprocess
import sys
import types

import numpy as np
import pytest

pytest.importorskip("pandas")

from infoscope import (
    HSIC,
    DiffusionSpectralEntropy,
    Monitor,
    diffusion_spectral_entropy,
)

N_PROBE = 96
BATCH = 32  # 3 batches per epoch


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_PROBE, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


def _value(table, step, layer, measure):
    rows = table[
        (table.step == step) & (table.layer == layer) & (table.measure == measure)
    ]
    assert len(rows) == 1, (step, layer, measure, len(rows))
    return rows["value"].iloc[0]


def _series(table, measure, layer="model"):
    rows = table[(table.layer == layer) & (table.measure == measure)]
    return dict(zip(rows.step.tolist(), rows.value.tolist(), strict=True))


def _draw(model, X, y):
    """A user metric that draws from every global generator training uses."""
    import torch

    return random.random() + np.random.rand() + torch.rand(()).item()  # noqa: NPY002


# ---- PyTorch Lightning


@pytest.fixture
def pl():
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning.pytorch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads contend on a small busy machine
    yield lightning
    torch.set_num_threads(threads)


def _classifier(pl):
    import torch

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(6, 16),
                torch.nn.ReLU(),
                torch.nn.Dropout(0.2),  # training mode matters, and draws
                torch.nn.Linear(16, 3),
            )

        def forward(self, X):
            return self.net(X)

        def training_step(self, batch, batch_idx):
            X, y = batch
            loss = torch.nn.functional.cross_entropy(self(X), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    return Classifier()


def _fit(pl, callbacks, max_epochs=3, seed=0):
    import torch

    X, y = _data()
    pl.seed_everything(seed, verbose=False)
    module = _classifier(pl)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
        batch_size=BATCH,
        shuffle=True,
    )
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, loader)
    return trainer, module


def _lightning_spy(pl, hook):
    """A callback that keeps train_loss as the trainer holds it at `hook`."""

    class Spy(pl.Callback):
        def __init__(self):
            self.seen = {}

        def on_train_epoch_end(self, trainer, pl_module):
            if hook == "epoch":
                metric = trainer.callback_metrics["train_loss"]
                self.seen[trainer.current_epoch] = float(metric)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if hook == "step":
                metric = trainer.callback_metrics["train_loss"]
                self.seen[trainer.global_step] = float(metric)

    return Spy()


def test_lightning_records_each_epoch_with_the_logged_loss(pl):
    import torch

    from infoscope.adapters.torch import activations
    from infoscope.callbacks import LightningCallback

    X, y = _data()
    layers = ["net.1", "net.3"]
    monitor = Monitor(
        [DiffusionSpectralEntropy(), HSIC()], X, y, layers=layers, progress=False
    )
    spy = _lightning_spy(pl, "epoch")
    trainer, module = _fit(pl, [LightningCallback(monitor), spy])

    assert monitor.steps == [0, 1, 2]
    table = monitor.history()
    for step in range(3):
        for layer in layers:
            for measure in ("dse", "hsic"):
                _value(table, step, layer, measure)  # one row each
    assert set(table.layer) == {*layers, "model"}
    # The epoch's mean loss, as Lightning logged it, at every epoch.
    assert _series(table, "train_loss") == spy.seen
    assert _value(table, 2, "model", "train_loss") == float(
        trainer.callback_metrics["train_loss"]
    )
    assert _value(table, 2, "model", "train_loss_epoch") == float(
        trainer.callback_metrics["train_loss_epoch"]
    )

    # The last record is the trained module's: measure it again directly.
    acts = activations(module, X, layers)
    for layer in layers:
        assert _value(table, 2, layer, "dse") == pytest.approx(
            diffusion_spectral_entropy(acts[layer]), rel=1e-6
        )
        assert _value(table, 2, layer, "hsic") == pytest.approx(
            HSIC().fit(acts[layer], torch.as_tensor(y)).hsic_, rel=1e-6
        )
    assert module.training  # put back in training mode after every record


def test_lightning_on_step_records_the_due_global_steps(pl):
    from infoscope.callbacks import LightningCallback

    X, _ = _data()
    monitor = Monitor(
        DiffusionSpectralEntropy(), X, layers=["net.1"], every=2, progress=False
    )
    spy = _lightning_spy(pl, "step")
    _fit(pl, [LightningCallback(monitor, on="step"), spy], max_epochs=2)

    # The model before training (step 0), then after every 2nd of 6 steps.
    assert monitor.steps == [0, 2, 4, 6]
    table = monitor.history()
    assert _series(table, "dse", layer="net.1").keys() == {0, 2, 4, 6}
    # Nothing was logged before training; afterwards the step's loss.
    losses = _series(table, "train_loss")
    assert losses == {step: spy.seen[step] for step in (2, 4, 6)}


def test_lightning_training_is_the_same_with_and_without_the_callback(pl):
    import torch

    from infoscope.callbacks import LightningCallback

    X, y = _data()
    _, alone = _fit(pl, [], max_epochs=2)
    # Measured after every batch, with a metric that draws random numbers:
    # shuffling, dropout and the weights must not notice.
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        y,
        layers=["net.2"],
        metrics={"draw": _draw},
        progress=False,
    )
    _, monitored = _fit(pl, [LightningCallback(monitor, on="step")], max_epochs=2)
    assert monitor.steps == list(range(7))
    for (name, a), (_, b) in zip(
        alone.state_dict().items(), monitored.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_lightning_records_on_global_rank_zero_only():
    torch = pytest.importorskip("torch")
    pytest.importorskip("lightning.pytorch")
    from infoscope.callbacks import LightningCallback

    X, _ = _data()
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU())
    monitor = Monitor(DiffusionSpectralEntropy(), X, progress=False)
    callback = LightningCallback(monitor)
    metrics = {"train_loss": torch.tensor(0.5), "vec": torch.ones(3)}

    other_rank = types.SimpleNamespace(
        is_global_zero=False, current_epoch=0, callback_metrics=metrics
    )
    callback.on_train_epoch_end(other_rank, net)
    assert monitor.steps == []

    rank_zero = types.SimpleNamespace(
        is_global_zero=True, current_epoch=0, callback_metrics=metrics
    )
    callback.on_train_epoch_end(rank_zero, net)
    assert monitor.steps == [0]
    assert _series(monitor.history(), "train_loss") == {0: 0.5}


def test_lightning_callback_is_a_callback_of_every_installed_lightning():
    pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning.pytorch")
    from infoscope.callbacks import LightningCallback

    X, _ = _data()
    callback = LightningCallback(Monitor(DiffusionSpectralEntropy(), X), on="step")
    assert isinstance(callback, lightning.Callback)
    assert LightningCallback.__module__ == "infoscope.callbacks"
    assert repr(callback).startswith("LightningCallback(Monitor(")
    # Pickled by reference, as the module-level class it stands for.
    assert pickle.loads(pickle.dumps(LightningCallback)) is LightningCallback
    try:
        import pytorch_lightning
    except ImportError:
        return
    assert isinstance(callback, pytorch_lightning.Callback)
    pytorch_lightning.Trainer(callbacks=[callback], logger=False, accelerator="cpu")


# ---- Keras


@pytest.fixture
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() not in ("jax", "torch"):
        pytest.skip(f"Keras runs on {keras.backend.backend()}, not JAX or PyTorch")
    return keras


def _keras_model(keras, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="output"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _keras_spy(keras):
    """A callback that keeps the logs Keras gives callbacks after each batch."""

    class Spy(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(dict(logs))

    return Spy()


def test_keras_records_each_epoch_with_the_logs(keras):
    from infoscope.adapters.keras import activations
    from infoscope.callbacks import KerasCallback

    X, y = _data()
    layers = ["hidden", "output"]
    monitor = Monitor(DiffusionSpectralEntropy(), X, layers=layers, progress=False)
    model = _keras_model(keras)
    history = model.fit(
        X,
        y,
        epochs=3,
        batch_size=BATCH,
        validation_data=(X[:32], y[:32]),
        callbacks=[KerasCallback(monitor)],
        verbose=0,
    )

    assert monitor.steps == [0, 1, 2]
    table = monitor.history()
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert _series(table, name) == dict(enumerate(history.history[name]))
    for step in range(3):
        for layer in layers:
            _value(table, step, layer, "dse")
    acts = activations(model, X, layers)
    for layer in layers:
        assert _value(table, 2, layer, "dse") == pytest.approx(
            float(diffusion_spectral_entropy(acts[layer])), rel=1e-6
        )


def test_keras_on_step_records_the_current_weights_and_continues_the_count(keras):
    from infoscope.adapters.keras import activations
    from infoscope.callbacks import KerasCallback

    X, y = _data()
    monitor = Monitor(
        DiffusionSpectralEntropy(), X, layers=["hidden"], every=2, progress=False
    )
    model = _keras_model(keras)
    spy = _keras_spy(keras)
    fit = {"batch_size": BATCH, "verbose": 0}
    model.fit(X, y, epochs=2, callbacks=[KerasCallback(monitor, on="step"), spy], **fit)

    assert monitor.steps == [0, 2, 4, 6]
    table = monitor.history()
    # The batch logs (running means over the epoch) at the due steps.
    assert _series(table, "loss") == {s: spy.seen[s - 1]["loss"] for s in (2, 4, 6)}
    # Step 6 is recorded after the last batch, before fit's own end-of-epoch
    # synchronisation of the JAX weights: it measured the trained weights.
    H = activations(model, X, ["hidden"])["hidden"]
    assert _value(table, 6, "hidden", "dse") == pytest.approx(
        float(diffusion_spectral_entropy(H)), rel=1e-6
    )

    # A later fit, with a new callback, counts on from the optimizer's steps.
    model.fit(X, y, epochs=1, callbacks=[KerasCallback(monitor, on="step")], **fit)
    assert monitor.steps == [0, 2, 4, 6, 8]


def test_keras_training_is_the_same_with_and_without_the_callback(keras):
    from infoscope.callbacks import KerasCallback

    X, y = _data()
    fit = {"epochs": 2, "batch_size": BATCH, "verbose": 0}
    alone = _keras_model(keras)
    alone.fit(X, y, **fit)
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        y,
        layers=["hidden"],
        metrics={"draw": lambda model, X, y: random.random() + np.random.rand()},  # noqa: NPY002
        progress=False,
    )
    monitored = _keras_model(keras)
    monitored.fit(X, y, callbacks=[KerasCallback(monitor, on="step")], **fit)
    assert monitor.steps == list(range(7))
    for a, b in zip(alone.get_weights(), monitored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keras_on_epoch_keeps_keras_default_batch_hook(keras):
    from keras.src.utils.python_utils import is_default

    from infoscope.callbacks import KerasCallback

    X, _ = _data()
    monitor = Monitor(DiffusionSpectralEntropy(), X)
    assert is_default(KerasCallback(monitor).on_train_batch_end)
    assert not is_default(KerasCallback(monitor, on="step").on_train_batch_end)
    assert isinstance(KerasCallback(monitor), keras.callbacks.Callback)


# ---- what both share


def test_logged_values_become_floats_under_names_record_accepts():
    torch = pytest.importorskip("torch")
    from infoscope.callbacks import _scalars

    values = _scalars(
        {
            "loss": torch.tensor(0.25),
            "one": torch.tensor([2.0]),
            "vector": torch.ones(3),
            "count": np.int64(4),
            "ratio": np.float32(0.5),
            "flag": True,
            "name": "text",
            "none": None,
            "step": 7.0,  # a keyword of Monitor.record
            "step_": 8.0,  # and the name it would get
        }
    )
    assert values == {
        "loss": 0.25,
        "one": 2.0,
        "count": 4.0,
        "ratio": 0.5,
        "flag": 1.0,
        "step__": 7.0,
        "step_": 8.0,
    }
    assert all(type(v) is float for v in values.values())
    assert _scalars(None) == {}


@pytest.mark.parametrize("name", ["LightningCallback", "KerasCallback"])
def test_bad_arguments_are_named(name):
    pytest.importorskip("torch" if name == "LightningCallback" else "keras")
    if name == "LightningCallback":
        pytest.importorskip("lightning.pytorch")
    import infoscope.callbacks

    cls = getattr(infoscope.callbacks, name)
    X, _ = _data()
    with pytest.raises(
        TypeError,
        match=rf"{name}: monitor must be an infoscope\.Monitor; got DiffusionSpectralEntropy\.",
    ):
        cls(DiffusionSpectralEntropy())
    monitor = Monitor(DiffusionSpectralEntropy(), X)
    with pytest.raises(
        ValueError,
        match=rf"{name}: on must be one of \"epoch\", \"step\"; got 'batch'\.",
    ):
        cls(monitor, on="batch")
    with pytest.raises(TypeError, match="takes 2 positional arguments"):
        cls(monitor, "step")  # on is keyword-only


def test_missing_frameworks_name_the_install(monkeypatch):
    import infoscope.callbacks as callbacks

    for module in ("lightning", "lightning.pytorch", "pytorch_lightning", "keras"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails
    for name in ("LightningCallback", "KerasCallback"):
        monkeypatch.delitem(vars(callbacks), name, raising=False)
    with pytest.raises(
        ImportError, match="needs PyTorch Lightning: pip install lightning"
    ):
        callbacks.LightningCallback  # noqa: B018
    with pytest.raises(ImportError, match="needs Keras 3: pip install keras"):
        from infoscope.callbacks import KerasCallback  # noqa: F401
    with pytest.raises(
        AttributeError, match=r"module 'infoscope\.callbacks' has no attribute 'nope'"
    ):
        callbacks.nope  # noqa: B018


def test_import_pulls_in_no_framework():
    frameworks = ("lightning", "pytorch_lightning", "keras", "torch", "jax")
    code = (
        "import sys, infoscope.callbacks\n"
        f"print(','.join(m for m in {frameworks!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing infoscope.callbacks imported {out}"
