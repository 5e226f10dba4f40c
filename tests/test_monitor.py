"""Monitor: every measure for every layer, records kept across crashes and reopenings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("pandas")

from infoscope import (
    HSIC,
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
    HSICPlane,
    Monitor,
    NodeSNR,
    NTKEntropy,
    NTKMutualInformation,
    diffusion_spectral_entropy,
    load_run,
    node_snr_table,
    ntk_entropy,
)
from infoscope.runs import (
    DuplicateStepError,
    Record,
    RunFileError,
    RunInUseError,
    RunWriteError,
)

N_PROBE = 96


def _probe():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_PROBE, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _all_measures():
    return [
        HSICPlane(),
        HSIC(normalized=True),
        DiffusionSpectralEntropy(),
        DiffusionSpectralMutualInformation(random_state=0),
        NodeSNR(),
        NTKEntropy(),
        NTKMutualInformation(),
    ]


def _value(table, step, layer, measure):
    rows = table[
        (table.step == step) & (table.layer == layer) & (table.measure == measure)
    ]
    assert len(rows) == 1, (step, layer, measure, len(rows))
    return rows["value"].iloc[0]


@pytest.fixture
def torch_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )


def _train_step(net, X, y):
    import torch

    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = torch.nn.functional.cross_entropy(
        net(torch.as_tensor(X)), torch.as_tensor(y)
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def test_torch_loop_records_every_measure_as_computed_directly(torch_net, tmp_path):
    import torch

    from infoscope.adapters.torch import activations, dense_layers, empirical_ntk

    X, y = _probe()

    def accuracy(net, X, y):
        with torch.no_grad():
            return (net(torch.as_tensor(X)).argmax(1).numpy() == y).mean()

    mine = _all_measures()
    monitor = Monitor(
        mine,
        X,
        y,
        layers=["1", "2"],
        every=2,
        path=tmp_path / "run.db",
        metrics={"accuracy": accuracy},
        progress=False,
    )
    made = []
    for step in range(5):
        loss = _train_step(torch_net, X, y)
        made.append(monitor.record(step, torch_net, loss=loss) is not None)
        if step == 2:
            snapshot = {k: v.clone() for k, v in torch_net.state_dict().items()}
    assert made == [True, False, True, False, True]
    assert monitor.steps == [0, 2, 4]
    # The user's estimators are copied, never fitted.
    assert not hasattr(mine[2], "entropy_")

    table = monitor.history()
    assert list(table.columns) == ["step", "layer", "measure", "value"]
    assert set(table.step) == {0, 2, 4}

    torch_net.load_state_dict(snapshot)  # the model as it was at step 2
    acts = activations(torch_net, X, ["1", "2"])
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    plane = HSICPlane().fit(Xt, yt).transform(list(acts.values()))
    for i, layer in enumerate(["1", "2"]):
        H = acts[layer]
        assert _value(table, 2, layer, "hsic_x") == pytest.approx(
            float(plane[i, 0]), rel=1e-5
        )
        assert _value(table, 2, layer, "hsic_y") == pytest.approx(
            float(plane[i, 1]), rel=1e-5
        )
        assert _value(table, 2, layer, "cka") == pytest.approx(
            HSIC(normalized=True).fit(H, yt).cka_, rel=1e-5
        )
        assert _value(table, 2, layer, "dse") == pytest.approx(
            diffusion_spectral_entropy(H), rel=1e-5
        )
        assert _value(table, 2, layer, "dsmi") == pytest.approx(
            DiffusionSpectralMutualInformation(random_state=0)
            .fit(H, yt)
            .mutual_information_,
            rel=1e-5,
        )
    for row in node_snr_table(dense_layers(torch_net, X)):
        assert _value(table, 2, row.layer, "snr_optimality") == pytest.approx(
            row.optimality_mean, rel=1e-5
        )
        assert (
            _value(table, 2, row.layer, "snr_sign_disagreements")
            == row.sign_disagreements
        )
    K = empirical_ntk(torch_net, X)
    assert _value(table, 2, "model", "ntk_entropy") == pytest.approx(
        ntk_entropy(K), rel=1e-5
    )
    mi = NTKMutualInformation().fit(K, y)
    off = ~np.eye(3, dtype=bool)
    assert _value(table, 2, "model", "ntk_mi") == pytest.approx(
        float(np.mean(np.asarray(mi.mutual_information_)[off])), rel=1e-5
    )
    assert _value(table, 2, "model", "accuracy") == pytest.approx(
        accuracy(torch_net, X, y)
    )
    assert 0 < _value(table, 2, "model", "loss") < 5

    weights = monitor.arrays("snr_weights")
    assert sorted(weights) == [0, 2, 4]
    np.testing.assert_allclose(weights[2]["2"], torch_net[2].weight.detach().numpy().T)
    eigenvalues = monitor.arrays("ntk_eigenvalues")[2]["model"]
    assert eigenvalues.shape == (N_PROBE,)
    assert monitor.arrays("nothing") == {}

    # What was written is what load_run reads back.
    again = load_run(tmp_path / "run.db")
    assert again.history().equals(table)
    np.testing.assert_array_equal(
        again.arrays("snr_c")[4]["0"], monitor.arrays("snr_c")[4]["0"]
    )


def test_reopening_a_file_continues_the_run(tmp_path, torch_net):
    X, _y = _probe()
    path = tmp_path / "run.db"
    first = Monitor(
        DiffusionSpectralEntropy(), X, layers="1", path=path, progress=False
    )
    for step in range(3):
        first.record(step, torch_net, loss=float(step))
    first.close()  # a run has one writer at a time
    second = Monitor(
        DiffusionSpectralEntropy(), X, layers="1", path=path, progress=False
    )
    assert second.steps == [0, 1, 2]
    assert not second.due(1) and second.due(3)
    with pytest.raises(
        DuplicateStepError,
        match=r"Monitor.record: step 2 is already recorded in '.*run.db' \(steps \[0, 1, 2\]\)",
    ):
        second.record(2, torch_net, loss=99.0)  # never recorded twice
    made = second.record(3, torch_net, loss=3.0)
    assert made.step == 3 and made.value("loss") == 3.0
    table = second.history()
    assert table[table.measure == "loss"].value.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert table.step.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_changed_configuration_on_a_continued_file_warns(tmp_path, torch_net):
    X, _ = _probe()
    path = tmp_path / "run.db"
    Monitor(DiffusionSpectralEntropy(), X, layers="1", path=path, progress=False)
    with pytest.warns(UserWarning, match="recorded with another configuration"):
        Monitor(DiffusionSpectralEntropy(t=3), X, layers="1", path=path, progress=False)


KILLED_RUN = """
import os, signal, numpy as np, torch
torch.set_num_threads(1)
from infoscope import DiffusionSpectralEntropy, Monitor
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 6)).astype(np.float32)
net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())

def dies_at_step_3(model, X, y):
    if dies_at_step_3.calls == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    dies_at_step_3.calls += 1
    return 1.0
dies_at_step_3.calls = 0

monitor = Monitor(DiffusionSpectralEntropy(), X, np.zeros(64), layers="1",
                  path={path!r}, metrics={{"alive": dies_at_step_3}}, progress=False)
for step in range(10):
    monitor.record(step, net, loss=float(step))
"""


def test_a_killed_run_keeps_every_completed_record(tmp_path):
    pytest.importorskip("torch")
    path = str(tmp_path / "run.db")
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN.format(path=path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    run = load_run(path)
    assert run.steps == [0, 1, 2]
    table = run.history()
    assert table[table.measure == "loss"].value.tolist() == [0.0, 1.0, 2.0]
    assert set(table.measure) == {"dse", "alive", "loss"}


def test_history_as_xarray(torch_net):
    pytest.importorskip("xarray")
    X, y = _probe()
    monitor = Monitor(
        [HSICPlane(), NTKEntropy()], X, y, layers=["1", "2"], progress=False
    )
    for step in (0, 10):
        monitor.record(step, torch_net)
    ds = monitor.history("xarray")
    assert list(ds["step"].values) == [0, 10]
    assert set(ds["layer"].values) == {"1", "2", "model"}
    table = monitor.history()
    assert float(ds["hsic_y"].sel(step=10, layer="2")) == _value(
        table, 10, "2", "hsic_y"
    )
    assert np.isnan(float(ds["hsic_y"].sel(step=10, layer="model")))
    assert float(ds["ntk_entropy"].sel(step=0, layer="model")) == _value(
        table, 0, "model", "ntk_entropy"
    )


def test_every_schedules(torch_net):
    X, _ = _probe()
    for every, expected in [
        (3, [0, 3, 6, 9]),
        ([1, 4, 5], [1, 4, 5]),
        (lambda s: s in (0, 1) or s % 5 == 0, [0, 1, 5]),
    ]:
        monitor = Monitor(
            DiffusionSpectralEntropy(), X, layers="1", every=every, progress=False
        )
        for step in range(10):
            monitor.record(step, torch_net)
        assert monitor.steps == expected
    monitor = Monitor(
        DiffusionSpectralEntropy(), X, layers="1", every=100, progress=False
    )
    assert monitor.record(7, torch_net, force=True) and monitor.steps == [7]


def test_a_monitor_pickles_and_goes_on_recording(tmp_path, torch_net):
    """Spawned trainer processes (Lightning's ddp_spawn) pickle their callbacks."""
    import pickle

    X, y = _probe()
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        y,
        layers="1",
        every=[0, 2],
        path=tmp_path / "run.db",
        progress=False,
    )
    monitor.record(0, torch_net)
    copy = pickle.loads(pickle.dumps(monitor))
    assert copy.steps == [0] and not copy.due(1) and copy.due(2)
    # One writer at a time: the original owns the file until it is closed.
    with pytest.raises(RunInUseError, match="being written by another monitor"):
        copy.record(2, torch_net)
    monitor.close()
    assert copy.record(2, torch_net).step == 2
    assert load_run(tmp_path / "run.db").steps == [0, 2]


def test_two_estimators_of_one_class_under_their_own_names(torch_net):
    X, _ = _probe()
    monitor = Monitor(
        {"dse": DiffusionSpectralEntropy(), "dse_t4": DiffusionSpectralEntropy(t=4)},
        X,
        layers="1",
        progress=False,
    )
    monitor.record(0, torch_net)
    table = monitor.history()
    assert _value(table, 0, "1", "dse") > _value(table, 0, "1", "dse_t4")


def test_progress_bar_shows_for_long_records_and_switches_off(torch_net, capsys):
    pytest.importorskip("tqdm")
    X, y = _probe()

    def slow(model, X, y):
        time.sleep(1.3)
        return 0.0

    for progress in (True, False):
        monitor = Monitor(
            DiffusionSpectralEntropy(),
            X,
            y,
            layers="1",
            metrics={"slow": slow},
            progress=progress,
        )
        monitor.record(0, torch_net)
        shown = "infoscope step 0" in capsys.readouterr().err
        assert shown is progress


def test_jax_optax_loop(tmp_path):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    from infoscope.adapters.jax import activations, empirical_ntk

    X, y = _probe()
    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "w1": 0.5 * jax.random.normal(key1, (6, 16)),
        "w2": 0.5 * jax.random.normal(key2, (16, 3)),
    }

    def apply_fn(params, x):
        return jax.nn.relu(x @ params["w1"]) @ params["w2"]

    def loss_fn(params, x, labels):
        return optax.softmax_cross_entropy_with_integer_labels(
            apply_fn(params, x), labels
        ).mean()

    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    @jax.jit
    def update(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    monitor = Monitor(
        [HSICPlane(), DiffusionSpectralEntropy(), NodeSNR(), NTKEntropy()],
        X,
        y,
        every=2,
        path=tmp_path / "jax.db",
        progress=False,
        metrics={"accuracy": lambda f, X, y: jnp.mean(jnp.argmax(f(X), 1) == y)},
    )
    for step in range(4):
        params, state, loss = update(params, state)
        monitor.record(step, apply_fn, params=params, loss=loss)
        if step == 2:
            at_step_2 = params
    params = at_step_2
    assert monitor.steps == [0, 2]
    table = monitor.history()
    acts = activations(apply_fn, params, X)
    assert set(table[table.measure == "dse"].layer) == set(acts)
    layer = next(iter(acts))
    assert _value(table, 2, layer, "dse") == pytest.approx(
        diffusion_spectral_entropy(acts[layer]), rel=1e-4
    )
    assert _value(table, 2, "model", "ntk_entropy") == pytest.approx(
        ntk_entropy(empirical_ntk(apply_fn, params, X)), rel=1e-4
    )
    assert set(table[table.measure == "snr_optimality"].layer) == {"w1", "w2"}
    accuracy = float(jnp.mean(jnp.argmax(apply_fn(params, X), 1) == y))
    assert _value(table, 2, "model", "accuracy") == pytest.approx(accuracy)


def test_bad_configuration_messages(tmp_path, torch_net):
    from sklearn.decomposition import PCA

    X, y = _probe()
    with pytest.raises(
        TypeError,
        match=r"Monitor: measures must be infoscope estimators \(.*HSICPlane.*\), objects with needs and measure\(probe\).*; got PCA",
    ):
        Monitor(PCA(), X, y)
    with pytest.raises(
        ValueError, match=r"y is None, but \['dsmi'\] need the probe labels; pass y="
    ):
        Monitor(DiffusionSpectralMutualInformation(), X)
    with pytest.raises(ValueError, match="two measures named 'dse'; pass a dict"):
        Monitor([DiffusionSpectralEntropy(), DiffusionSpectralEntropy(t=2)], X)
    with pytest.raises(ValueError, match="measures is empty"):
        Monitor([], X)
    with pytest.raises(ValueError, match="every must be >= 1; got 0"):
        Monitor(DiffusionSpectralEntropy(), X, every=0)
    with pytest.raises(TypeError, match="every must be an int"):
        Monitor(DiffusionSpectralEntropy(), X, every="epoch")
    with pytest.raises(ValueError, match="X has 96 samples but y has 95"):
        Monitor(DiffusionSpectralEntropy(), X, y[:-1])
    with pytest.raises(ValueError, match="X has 3 probe samples"):
        Monitor(DiffusionSpectralEntropy(), X[:3])
    with pytest.raises(TypeError, match=r"metrics\['acc'\] must be a callable"):
        Monitor(DiffusionSpectralEntropy(), X, y, metrics={"acc": 0.9})
    bad = tmp_path / "bad.db"
    bad.write_text("not a run")
    with pytest.raises(RunFileError, match="is neither an infoscope run"):
        Monitor(DiffusionSpectralEntropy(), X, path=bad)
    with pytest.raises(ValueError, match=r"names a HDF5 file, but a run is written"):
        Monitor(DiffusionSpectralEntropy(), X, path=tmp_path / "new.h5")
    with pytest.raises(FileNotFoundError, match="No run file at"):
        load_run(tmp_path / "missing.db")
    with pytest.raises(TypeError, match="step must be an integer"):
        Monitor(DiffusionSpectralEntropy(), X, progress=False).record(0.5, torch_net)
    monitor = Monitor(
        DiffusionSpectralEntropy(),
        X,
        y,
        layers="1",
        progress=False,
        metrics={"acc": lambda m, X, y: "high"},
    )
    with pytest.raises(
        TypeError,
        match=r"model must be a torch\.nn\.Module, a keras\.Model, a Flax NNX",
    ):
        monitor.record(0, object())
    with pytest.raises(
        TypeError, match=r"metrics\['acc'\] returned str; it must return one number"
    ):
        monitor.record(0, torch_net)
    assert monitor.steps == []  # a failed record leaves nothing behind
    with pytest.raises(ValueError, match="history: format='csv' is not one of"):
        monitor.history("csv")


def test_a_reader_sees_each_record_as_soon_as_record_returns(tmp_path, torch_net):
    X, _ = _probe()
    path = tmp_path / "run.db"
    monitor = Monitor(
        DiffusionSpectralEntropy(), X, layers="1", path=path, progress=False
    )
    reader = load_run(path)  # open before anything is recorded
    assert reader.steps == [] and len(reader.history()) == 0
    made = monitor.record(0, torch_net, loss=1.0)
    assert reader.steps == [0]
    assert reader.history().value.tolist() == [v for _, _, v in made.values]
    monitor.record(1, torch_net)
    assert reader.steps == [0, 1] and load_run(path).steps == [0, 1]
    with pytest.raises(RunWriteError, match="opened for reading"):
        reader.append(Record(2, []))
