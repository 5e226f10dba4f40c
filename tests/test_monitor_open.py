"""An open Monitor: custom measures, sinks (TensorBoard, MLflow, the trainer's
logger), failing sinks, and one recording rank in distributed training."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("torch")

import _ddp_workers
import torch

from infoscope import DiffusionSpectralEntropy, HSICPlane, Monitor, load_run
from infoscope.monitor import Measure, Probe
from infoscope.runs import Record, Sink, TensorBoardSink, metric_name


def _probe():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    return X, y


@pytest.fixture
def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )


def _value(table, step, layer, measure):
    rows = table[
        (table.step == step) & (table.layer == layer) & (table.measure == measure)
    ]
    assert len(rows) == 1, (step, layer, measure)
    return rows.value.iloc[0]


# ---- point 1: custom measures through the same protocol


class WeightNorms(Measure):
    """Needs the model: the norm of each parameter, and their singular values."""

    needs = frozenset({"model"})

    def measure(self, probe):
        out = {}
        for name, p in probe.model.named_parameters():
            out["model", f"norm_{name}"] = float(p.detach().norm())
        out["model", "sv"] = torch.linalg.svdvals(probe.model[0].weight.detach())
        return out


class LabelSeparation:
    """Duck-typed (no base class): needs activations and labels."""

    needs = {"activations", "labels"}

    def measure(self, probe):
        assert isinstance(probe.y, torch.Tensor)  # on the layers' library
        out = {}
        for layer, H in probe.activations.items():
            centres = [H[probe.y == c].mean(0) for c in (0, 1)]
            out[layer] = float(torch.linalg.norm(centres[0] - centres[1]))
        return out


def test_custom_measures_and_callables_are_recorded_like_estimators(net):
    X, y = _probe()
    seen = []

    def mean_activation(H):
        seen.append(type(H))
        return H.mean()

    def accuracy_of_sign(H, labels):  # two arguments: gets the labels too
        return ((H[:, 0] > 0).long() == labels).float().mean()

    monitor = Monitor(
        {
            "dse": DiffusionSpectralEntropy(),
            "weights": WeightNorms(),
            "separation": LabelSeparation(),
            "mean": mean_activation,
            "sign_acc": accuracy_of_sign,
        },
        X,
        y,
        layers=["1", "2"],
        progress=False,
    )
    record = monitor.record(0, net, loss=0.5)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    with torch.no_grad():
        hidden = torch.relu(net[0](Xt))
        logits = net(Xt)
    assert record.value("mean", "1") == pytest.approx(float(hidden.mean()))
    assert record.value("mean", "2") == pytest.approx(float(logits.mean()))
    assert seen == [torch.Tensor, torch.Tensor]
    expected = float(((logits[:, 0] > 0).long() == yt).float().mean())
    assert record.value("sign_acc", "2") == pytest.approx(expected)
    separation = float(
        torch.linalg.norm(logits[yt == 0].mean(0) - logits[yt == 1].mean(0))
    )
    assert record.value("separation", "2") == pytest.approx(separation, rel=1e-6)
    assert record.value("weights_norm_0.weight") == pytest.approx(
        float(net[0].weight.detach().norm())
    )
    np.testing.assert_allclose(
        record.arrays["weights_sv", "model"],
        torch.linalg.svdvals(net[0].weight.detach()).numpy(),
    )
    assert monitor.arrays("weights_sv")[0]["model"].shape == (6,)
    # infoscope's own estimators are measures of the same protocol.
    dse = monitor.measures["dse"]
    assert dse.needs == {"activations"}
    probe = Probe(step=0, X=Xt, activations={"1": hidden})
    assert dse.measure(probe) == {"1": record.value("dse", "1")}
    assert monitor.estimators["dse"] is dse.estimator


def test_bad_custom_measures_are_clear_errors(net):
    X, y = _probe()

    class Needy(Measure):
        needs = frozenset({"gradients"})

    with pytest.raises(ValueError, match=r"needs \['gradients'\], which the monitor"):
        Monitor({"needy": Needy()}, X, y)
    with pytest.raises(ValueError, match="has no name; pass measures as a dict"):
        Monitor([lambda H: 1.0], X, y)
    with pytest.raises(ValueError, match=r"\['sep'\] need the probe labels; pass y="):
        Monitor({"sep": LabelSeparation()}, X)

    class ReturnsList(Measure):
        needs = frozenset()

        def measure(self, probe):
            return [1.0]

    monitor = Monitor({"bad": ReturnsList()}, X, progress=False)
    with pytest.raises(TypeError, match="measure 'bad' returned list; it must return"):
        monitor.record(0, net)

    class BadKey(Measure):
        needs = frozenset()

        def measure(self, probe):
            return {("model", "a", "b"): 1.0}

    with pytest.raises(TypeError, match=r"returned the key \('model', 'a', 'b'\)"):
        Monitor({"bad": BadKey()}, X, progress=False).record(0, net)
    assert monitor.steps == []  # nothing was stored


# ---- point 2: sinks read back with their own packages


def test_tensorboard_sink_is_read_by_tensorboard(net, tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    X, y = _probe()
    monitor = Monitor(
        [HSICPlane(), DiffusionSpectralEntropy()],
        X,
        y,
        layers=["1", "2"],
        sinks=[TensorBoardSink(tmp_path / "tb")],
        progress=False,
    )
    records = [monitor.record(step, net, loss=1.0 / (step + 1)) for step in range(3)]
    monitor.close()
    reader = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    reader.Reload()
    tags = set(reader.Tags()["scalars"])
    assert tags == {metric_name(m, layer) for layer, m, _ in records[0].values}
    assert "infoscope/hsic_y/2" in tags and "infoscope/loss/model" in tags
    for record in records:
        for layer, measure, value in record.values:
            events = reader.Scalars(metric_name(measure, layer))
            (event,) = [e for e in events if e.step == record.step]
            assert event.value == pytest.approx(value, rel=1e-6)  # float32


def test_mlflow_sink_is_read_by_the_mlflow_client(net, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from infoscope.runs import MLflowSink

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7
    uri = "file:" + str(tmp_path / "mlruns")
    X, y = _probe()
    sink = MLflowSink(uri, experiment="probe", run_name="mlp")
    monitor = Monitor(
        DiffusionSpectralEntropy(), X, y, layers="1", sinks=[sink], progress=False
    )
    records = [monitor.record(step, net, loss=float(step)) for step in range(3)]
    monitor.close()
    client = mlflow.MlflowClient(uri)
    run = client.get_run(sink.run_id)
    assert run.info.run_name == "mlp" and run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"infoscope/dse/1", "infoscope/loss/model"}
    history = client.get_metric_history(sink.run_id, "infoscope/dse/1")
    assert [(m.step, m.value) for m in history] == [
        (r.step, r.value("dse", "1")) for r in records
    ]
    # Inside an active MLflow run, the sink logs into that run.
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as active:
        inner = MLflowSink(uri)
        inner.write(Record(7, [("fc", "dse", 1.5)]))
        inner.close()
    assert inner.run_id == active.info.run_id
    assert client.get_run(active.info.run_id).data.metrics == {"infoscope/dse/fc": 1.5}


# ---- point 3: a failing sink warns once and loses nothing


class Flaky(Sink):
    """Fails while `down` is set, like a server that goes away and comes back."""

    def __init__(self):
        self.down, self.received = True, []

    def write(self, record):
        if self.down:
            raise ConnectionError("connection refused")
        self.received.append(record.step)


def test_a_failing_sink_warns_once_and_training_goes_on(net, tmp_path):
    X, _ = _probe()
    flaky = Flaky()
    broken_dir = tmp_path / "not_a_folder"
    broken_dir.write_text("a file where the log folder should be")
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        layers="1",
        path=tmp_path / "run.db",
        sinks=[flaky, TensorBoardSink(broken_dir)],
        progress=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            assert monitor.record(step, net).step == step
        flaky.down = False
        monitor.record(3, net)
        flaky.down = True
        monitor.record(4, net)
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(messages) == 3  # Flaky twice (it worked in between), TensorBoard once
    assert "Flaky" in messages[0] and "failed at step 0" in messages[0]
    assert "ConnectionError: connection refused" in messages[0]
    assert (
        "TensorBoardSink" in messages[1] and "The record is in the run" in messages[1]
    )
    assert "failed at step 4" in messages[2]
    assert flaky.received == [3]
    assert load_run(tmp_path / "run.db").steps == [0, 1, 2, 3, 4]  # nothing lost
    assert monitor.sinks.failures == [4, 5]


def test_an_unreachable_mlflow_server_does_not_stop_recording(net, monkeypatch):
    pytest.importorskip("mlflow")
    import socket

    from infoscope.runs import MLflowSink

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    X, _ = _probe()
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        layers="1",
        sinks=[MLflowSink(f"http://127.0.0.1:{port}")],
        progress=False,
    )
    with pytest.warns(RuntimeWarning, match="MLflowSink.*failed at step 0") as caught:
        for step in range(2):
            monitor.record(step, net)
    assert len([w for w in caught if "MLflowSink" in str(w.message)]) == 1
    assert monitor.steps == [0, 1]


# ---- the trainer's own logger


def test_lightning_callback_logs_records_to_the_trainers_loggers(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    import pandas as pd

    from infoscope.callbacks import LightningCallback

    X, y = _probe()

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(
                torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
            )

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
        batch_size=20,
    )
    monitor = Monitor(DiffusionSpectralEntropy(), X, layers=["net.1"], progress=False)
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[LightningCallback(monitor, log_records=True)],
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(tmp_path, name="csv"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Classifier(), data)
    logged = pd.read_csv(tmp_path / "csv" / "version_0" / "metrics.csv")
    dse = logged["infoscope/dse/net.1"].dropna().tolist()
    table = monitor.history()
    assert dse == pytest.approx(table[table.measure == "dse"].value.tolist())
    assert "infoscope/train_loss/model" not in logged  # the loop's own, not again
    assert "infoscope/dse/net.1" in trainer.callback_metrics


def test_keras_callback_puts_records_in_the_logs(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "jax"))
    keras = pytest.importorskip("keras")
    if keras.backend.backend() not in ("jax", "torch"):
        pytest.skip(f"Keras on {keras.backend.backend()}")
    from infoscope.callbacks import KerasCallback

    X, y = _probe()
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="output"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    monitor = Monitor(DiffusionSpectralEntropy(), X, layers=["hidden"], progress=False)
    history = model.fit(
        X, y, epochs=2, verbose=0, callbacks=[KerasCallback(monitor, log_records=True)]
    )
    table = monitor.history()
    assert history.history["infoscope/dse/hidden"] == pytest.approx(
        table[table.measure == "dse"].value.tolist()
    )
    assert "infoscope/loss/model" not in history.history


# ---- point 4: distributed training records on one rank


def test_ddp_records_on_rank_zero_only_and_equal_a_single_process(tmp_path):
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for rank in range(2):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=_ddp_workers.train_rank, args=(rank, str(tmp_path), child)
        )
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    results = []
    for pipe, process in zip(pipes, processes, strict=True):
        assert pipe.poll(240), "a rank hung (deadlock?)"
        results.append(pipe.recv())
        process.join(timeout=60)
        assert process.exitcode == 0
    steps = list(range(_ddp_workers.STEPS))
    assert results == [steps, [None] * len(steps)]
    _same_as_one_process(load_run(tmp_path / "run.db"), tmp_path, "", steps)


def _same_as_one_process(run, folder, prefix, steps):
    """The run's records equal a single process's on the weights saved there.

    `prefix` is how the trainer names the network's modules ("" for the
    network itself, "net." for a LightningModule's ``self.net``).
    """
    from collections import OrderedDict

    X, y = _ddp_workers.probe()
    table = run.history()
    assert sorted(set(table.step)) == steps
    for step in steps:
        net = _ddp_workers.network()
        net.load_state_dict(torch.load(os.path.join(folder, f"weights{step}.pt")))
        model = torch.nn.Sequential(OrderedDict(net=net)) if prefix else net
        alone = Monitor(
            _ddp_workers.measures(),
            X,
            y,
            layers=[f"{prefix}1", f"{prefix}2"],
            progress=False,
        )
        for layer, measure, value in alone.record(step, model).values:
            assert _value(table, step, layer, measure) == pytest.approx(
                value, rel=1e-6, abs=1e-9
            ), (step, layer, measure)


@pytest.mark.slow
def test_lightning_ddp_records_on_rank_zero_only(tmp_path):
    pytest.importorskip("lightning")
    import pandas as pd

    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            _ddp_workers.LIGHTNING_SCRIPT.format(
                tests=os.path.dirname(__file__), folder=str(tmp_path)
            )
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None)
    child = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "rank 0 steps [0, 1, 2]" in child.stdout
    assert "rank 1 steps None" in child.stdout
    run = load_run(tmp_path / "run.db")
    _same_as_one_process(run, tmp_path, "net.", [0, 1, 2])
    logged = pd.read_csv(tmp_path / "csv" / "version_0" / "metrics.csv")
    table = run.history()
    dse = table[(table.measure == "dse") & (table.layer == "net.2")].value.tolist()
    assert logged["infoscope/dse/net.2"].dropna().tolist() == pytest.approx(dse)


# ---- issue 20: similarity to a reference and the geometry measures


def _train(net, X, y, steps=5):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(X)), torch.from_numpy(y)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_similarity_to_the_initial_previous_and_a_given_model(net, tmp_path):
    from infoscope import RepresentationGeometry, similarity_matrix
    from infoscope.adapters.torch import activations
    from infoscope.monitor import ReferenceSimilarity

    X, y = _probe()
    layers = ["1", "2"]
    checkpoint = {k: v.clone() for k, v in net.state_dict().items()}
    given = activations(net, X, layers)  # the "checkpoint"'s activations
    monitor = Monitor(
        [
            ReferenceSimilarity(matrix=True),
            ReferenceSimilarity("previous"),
            ReferenceSimilarity(given, measure="mutual_knn", n_neighbors=5),
            RepresentationGeometry(),
        ],
        X,
        y,
        layers=layers,
        path=tmp_path / "run.db",
        progress=False,
    )
    first = monitor.record(0, net)
    assert [first.value("cka_to_initial", la) for la in layers] == pytest.approx(
        [1.0, 1.0],
        abs=1e-6,  # float32 activations
    )
    assert "cka_to_previous" not in {m for _, m, _ in first.values}
    assert first.value("mknn_to_reference", "2") == pytest.approx(1.0)
    initial = activations(net, X, layers)
    previous = initial
    for step in (1, 2):
        _train(net, X, y)
        record = monitor.record(step, net)
        now = activations(net, X, layers)
        to_initial = similarity_matrix(list(now.values()), list(initial.values()))
        np.testing.assert_allclose(
            record.arrays["cka_to_initial_matrix", "model"], to_initial.numpy()
        )
        for i, layer in enumerate(layers):
            assert record.value("cka_to_initial", layer) == pytest.approx(
                float(to_initial[i, i])
            )
            assert record.value("cka_to_previous", layer) == pytest.approx(
                float(similarity_matrix([now[layer]], [previous[layer]])[0, 0])
            )
            knn = similarity_matrix(
                [now[layer]], [given[layer]], measure="mutual_knn", n_neighbors=5
            )
            assert record.value("mknn_to_reference", layer) == pytest.approx(
                float(knn[0, 0])
            )
            geometry = RepresentationGeometry().fit(now[layer])
            assert record.value("geometry_rankme", layer) == pytest.approx(
                geometry.rankme_
            )
            assert record.value("geometry_alpha_req", layer) == pytest.approx(
                geometry.alpha_req_
            )
        previous = now
    assert record.value("cka_to_initial", "2") < 0.999  # training moved it
    monitor.close()
    # A monitor continuing the run compares with the same initial model.
    net.load_state_dict(checkpoint)
    again = Monitor(ReferenceSimilarity(), X, layers=layers, path=tmp_path / "run.db",
                    progress=False)  # fmt: skip
    assert again.record(3, net).value("cka_to_initial", "1") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference='last' is not one of"):
        ReferenceSimilarity("last")


def test_report_draws_similarity_to_the_start_as_layers_by_steps(net):
    pytest.importorskip("matplotlib")
    from infoscope.monitor import ReferenceSimilarity
    from infoscope.plotting import report

    X, y = _probe()
    monitor = Monitor(ReferenceSimilarity(), X, layers=["1", "2"], progress=False,
                      step_name="epoch")  # fmt: skip
    for step in range(4):
        monitor.record(step, net)
        _train(net, X, y, steps=3)
    fig = report(monitor.run)
    ax = fig.axes[0]
    assert ax.get_title() == "Linear CKA of each layer with itself at\nthe start"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "layer")
    [image] = ax.get_images()
    table = monitor.history()
    expected = np.array(
        [table[table.layer == la].sort_values("step").value.to_numpy() for la in "12"]
    )
    np.testing.assert_allclose(np.asarray(image.get_array()), expected)


# ---- issue 17: multi-input models and masked sequences in the probe set


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 4, 3)
        self.dense = torch.nn.Linear(5, 8)
        self.head = torch.nn.Linear(4 * 4 * 4 + 8, 3)

    def forward(self, image, vector):
        a = torch.tanh(self.conv(image)).flatten(1)
        b = torch.relu(self.dense(vector))
        return self.head(torch.cat([a, b], dim=1))


def test_a_two_input_model_is_recorded_on_its_probe_set():
    from infoscope import HSICPlane, NodeSNR, NTKEntropy, hsic, ntk_entropy
    from infoscope.adapters.torch import activations, empirical_ntk

    rng = np.random.default_rng(0)
    X = (
        rng.standard_normal((60, 2, 6, 6)).astype(np.float32),
        rng.standard_normal((60, 5)).astype(np.float32),
    )
    y = rng.integers(0, 3, 60)
    model = TwoInputs()
    monitor = Monitor(
        [HSICPlane(), NodeSNR(), NTKEntropy()], X, y, layers=["dense", "head"],
        progress=False,
    )  # fmt: skip
    record = monitor.record(0, model)
    acts = activations(model, X, ["dense", "head"])
    # HSIC(H, X) takes the inputs as one array: both flattened, side by side.
    flat = np.concatenate([X[0].reshape(60, -1), X[1]], axis=1)
    assert record.value("hsic_x", "head") == pytest.approx(
        hsic(acts["head"], torch.from_numpy(flat)),
        rel=1e-4,  # float32
    )
    assert record.value("ntk_entropy") == pytest.approx(
        ntk_entropy(empirical_ntk(model, X)), rel=1e-5
    )
    assert {layer for layer, m, _ in record.values if m == "snr_optimality"} == {
        "dense",
        "head",
    }
    with pytest.raises(ValueError, match="Monitor: X must be the probe inputs"):
        Monitor(DiffusionSpectralEntropy(), (X[0], X[1][:50]))


def test_a_transformer_with_a_padding_mask_pooled_over_its_tokens():
    from infoscope.adapters.torch import activations

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(30, 16)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, tokens, padding_mask):
            h = self.encoder(self.embed(tokens), src_key_padding_mask=padding_mask)
            keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
            return self.head((h * keep).sum(1) / keep.sum(1))

    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 30, (40, 7))
    padding = np.arange(7)[None, :] >= rng.integers(2, 8, 40)[:, None]
    model = Encoder()
    monitor = Monitor(
        DiffusionSpectralEntropy(), (tokens, padding), layers=["encoder"],
        pool="mean", mask=1, progress=False,
    )  # fmt: skip
    record = monitor.record(0, model)
    pooled = activations(model, (tokens, padding), ["encoder"], pool="mean", mask=1)
    assert pooled["encoder"].shape == (40, 16)
    from infoscope import diffusion_spectral_entropy

    assert record.value("dse", "encoder") == pytest.approx(
        diffusion_spectral_entropy(pooled["encoder"]), rel=1e-5
    )
