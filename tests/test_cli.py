"""The infoscope command: demo, measure, report; bad input gives one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")

from infoscope import (
    HSIC,
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
)
from infoscope.cli import main


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    X = rng.standard_normal((150, 8)) + y[:, None]
    H = np.maximum(X @ rng.standard_normal((8, 12)), 0)
    np.savez(tmp_path / "acts.npz", input=X, hidden=H)
    np.save(tmp_path / "hidden.npy", H)
    np.save(tmp_path / "labels.npy", y)
    np.savetxt(tmp_path / "labels.txt", y, fmt="%d")
    return tmp_path, X, H, y


def _one_error_line(capsys, command):
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    assert lines[0].startswith(f"infoscope {command}: error: ")
    return lines[0]


def test_measure_prints_and_writes_the_definitions_values(saved, capsys):
    path, X, H, y = saved
    csv = path / "values.csv"
    assert (
        main(
            [
                "measure",
                str(path / "acts.npz"),
                "--labels",
                str(path / "labels.txt"),
                "--measures",
                "dse",
                "dsmi",
                "cka",
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "input" in printed and "hidden" in printed and "dsmi" in printed
    import pandas as pd

    table = pd.read_csv(csv)
    assert table.shape == (6, 3)
    value = table.set_index(["layer", "measure"])["value"]
    assert value["hidden", "dse"] == pytest.approx(diffusion_spectral_entropy(H))
    assert value["input", "dsmi"] == pytest.approx(
        diffusion_spectral_mutual_information(X, y, random_state=0)
    )
    assert value["hidden", "cka"] == pytest.approx(HSIC(normalized=True).fit(H, y).cka_)


def test_measure_npy_is_one_layer_named_by_the_file_and_backends_agree(saved, capsys):
    torch = pytest.importorskip("torch")
    path = saved[0]
    tables = []
    for backend in ("numpy", "torch"):
        csv = path / f"{backend}.csv"
        assert (
            main(
                [
                    "measure",
                    str(path / "hidden.npy"),
                    "--labels",
                    str(path / "labels.npy"),
                    "--backend",
                    backend,
                    "--csv",
                    str(csv),
                ]
            )
            == 0
        )
        tables.append(
            np.genfromtxt(csv, delimiter=",", dtype=None, encoding=None, names=True)
        )
    assert set(tables[0]["layer"]) == {"hidden"}
    assert set(tables[0]["measure"]) == {
        "dse",
        "dsmi",
        "hsic",
        "cka",
        "shannon",
        "shannon_mi",
    }
    np.testing.assert_allclose(tables[0]["value"], tables[1]["value"], rtol=1e-6)
    assert torch is not None
    # Without labels only the measures that need none.
    capsys.readouterr()
    assert main(["measure", str(path / "hidden.npy")]) == 0
    assert "dsmi" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.npy"], "no such file: {p}/missing.npy"),
        (["labels.npy"], "layer 'labels' has shape (150,); activations need samples"),
        (["labels.txt"], "activations must be a .npy file (one layer) or a .npz file"),
        (
            ["acts.npz", "--measures", "dse", "entropy"],
            "unknown measure 'entropy'; choose from dse, dsmi, hsic, cka, shannon, shannon_mi.",
        ),
        (["acts.npz", "--measures", "dsmi"], "dsmi needs labels; pass --labels FILE."),
        (
            ["acts.npz", "--labels", "short.npy"],
            "layer 'input' has 150 samples but {p}/short.npy has 100 labels",
        ),
        (["acts.npz", "--labels", "missing.txt"], "no such file: {p}/missing.txt"),
        (["acts.npz", "--labels", "acts.npz"], "a labels .npz must hold one array"),
    ],
)
def test_measure_bad_input_is_one_line(saved, capsys, args, message):
    path = saved[0]
    np.save(path / "short.npy", np.zeros(100))
    args = [
        a if a.startswith("--") or a in ("dse", "dsmi", "entropy") else str(path / a)
        for a in args
    ]
    assert main(["measure", *args]) == 2
    assert message.format(p=path) in _one_error_line(capsys, "measure")


def test_measure_backend_not_installed_is_one_line(saved, capsys):
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert main(["measure", str(saved[0] / "hidden.npy"), "--backend", "cupy"]) == 2
        assert "cupy is not installed" in _one_error_line(capsys, "measure")
    else:
        pytest.skip("cupy is installed here")


def test_measure_never_writes_over_its_inputs(saved, capsys):
    path = saved[0]
    for target in ("acts.npz", "labels.npy"):
        before = (path / target).read_bytes()
        for extra in ([], ["--overwrite"]):
            args = ["measure", str(path / "acts.npz"), "--labels"]
            args += [str(path / "labels.npy"), "--csv", str(path / target), *extra]
            assert main(args) == 2
            line = _one_error_line(capsys, "measure")
            assert f"--csv {path / target} is the input file" in line
            assert (path / target).read_bytes() == before
    # Through a link to an input: still the input.
    (path / "link.csv").symlink_to(path / "acts.npz")
    before = (path / "acts.npz").read_bytes()
    assert (
        main(
            [
                "measure",
                str(path / "acts.npz"),
                "--csv",
                str(path / "link.csv"),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "is the input file" in _one_error_line(capsys, "measure")
    assert (path / "acts.npz").read_bytes() == before


def test_measure_csv_needs_overwrite_for_a_file_or_a_link(saved, capsys):
    path = saved[0]
    acts = str(path / "hidden.npy")
    existing = path / "old.csv"
    existing.write_text("keep me")
    assert main(["measure", acts, "--measures", "dse", "--csv", str(existing)]) == 2
    assert "is an existing file; pass --overwrite" in _one_error_line(capsys, "measure")
    assert existing.read_text() == "keep me"
    victim = path / "elsewhere.txt"
    victim.write_text("not yours")
    link = path / "link.csv"
    link.symlink_to(victim)
    assert main(["measure", acts, "--measures", "dse", "--csv", str(link)]) == 2
    assert "is a symbolic link; pass --overwrite" in _one_error_line(capsys, "measure")
    assert victim.read_text() == "not yours"
    # --overwrite replaces the link by a file: the link's target is untouched.
    argv = ["measure", acts, "--measures", "dse", "--csv", str(link), "--overwrite"]
    assert main(argv) == 0
    assert not link.is_symlink() and "dse" in link.read_text()
    assert victim.read_text() == "not yours"
    assert (
        main(
            [
                "measure",
                acts,
                "--measures",
                "dse",
                "--csv",
                str(existing),
                "--overwrite",
            ]
        )
        == 0
    )
    assert existing.read_text().startswith("layer,measure,value")


def test_measure_refuses_inputs_above_the_size_limit_with_the_fix(tmp_path, capsys):
    # 4 MiB of zeros compress to a few KiB: the limit is on the loaded size.
    np.savez_compressed(tmp_path / "big.npz", layer=np.zeros((1024, 1024), np.float32))
    assert (tmp_path / "big.npz").stat().st_size < 100_000
    argv = ["measure", str(tmp_path / "big.npz"), "--max-input-gb", "0.001"]
    assert main(argv) == 2
    line = _one_error_line(capsys, "measure")
    assert "its arrays take 4.0 MiB once loaded, above the 1.0 MiB" in line
    assert "pass --max-input-gb 1 to read it anyway" in line
    np.save(tmp_path / "labels.npy", np.zeros(2**18))
    np.save(tmp_path / "small.npy", np.zeros((4, 2)))
    argv = ["measure", str(tmp_path / "small.npy"), "--labels"]
    argv += [str(tmp_path / "labels.npy"), "--max-input-gb", "0.001"]
    assert main(argv) == 2
    assert "labels.npy: its arrays take 2.0 MiB" in _one_error_line(capsys, "measure")


def test_measure_default_size_limit_is_documented_and_applied(
    tmp_path, capsys, monkeypatch
):
    import infoscope.cli as cli

    assert cli.MAX_INPUT_BYTES == 2 * 2**30
    monkeypatch.setattr(cli, "MAX_INPUT_BYTES", 1000)
    np.save(tmp_path / "a.npy", np.zeros((100, 10)))
    assert main(["measure", str(tmp_path / "a.npy")]) == 2
    assert "above the 1000.0 B that infoscope measure reads by default" in (
        _one_error_line(capsys, "measure")
    )


def test_measure_never_blocks_on_a_fifo_or_a_directory(tmp_path, capsys):
    import threading

    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    status = []
    worker = threading.Thread(
        target=lambda: status.append(main(["measure", str(fifo)])), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "infoscope measure blocked on a FIFO"
    assert status == [2]
    assert "is a FIFO (named pipe); activations must be read from a regular file" in (
        _one_error_line(capsys, "measure")
    )
    (tmp_path / "folder.npy").mkdir()
    assert main(["measure", str(tmp_path / "folder.npy")]) == 2
    assert "is a directory" in _one_error_line(capsys, "measure")


def test_measure_names_files_that_are_not_numpy_files(tmp_path, capsys):
    (tmp_path / "text.npy").write_text("1,2,3\n4,5,6\n")
    assert main(["measure", str(tmp_path / "text.npy")]) == 2
    line = _one_error_line(capsys, "measure")
    assert "is not a NumPy .npy file (it does not start with NumPy's header)" in line
    assert "pickled" not in line
    (tmp_path / "text.npz").write_text("not a zip")
    assert main(["measure", str(tmp_path / "text.npz")]) == 2
    assert "is not a NumPy .npz file (not a zip archive)" in (
        _one_error_line(capsys, "measure")
    )


def test_measure_bad_values_are_one_line_in_the_users_terms(saved, capsys):
    path, _, H, y = saved
    H = H.copy()
    H[3, 2] = np.nan
    np.save(path / "nan.npy", H)
    assert main(["measure", str(path / "nan.npy")]) == 2
    line = _one_error_line(capsys, "measure")
    assert "layer 'nan' of" in line and "has 1 NaN or infinite value(s)" in line
    labels = y.astype(float)
    labels[0] = np.inf
    np.save(path / "bad_labels.npy", labels)
    argv = [
        "measure",
        str(path / "hidden.npy"),
        "--labels",
        str(path / "bad_labels.npy"),
    ]
    assert main(argv) == 2
    assert "the labels in" in _one_error_line(capsys, "measure")
    # An error from a measure: no exception name, no argument name.
    np.save(path / "constant.npy", np.ones((150, 4)))
    argv = [
        "measure",
        str(path / "constant.npy"),
        "--labels",
        str(path / "labels.npy"),
        "--measures",
        "cka",
    ]
    assert main(argv) == 2
    line = _one_error_line(capsys, "measure")
    assert "layer 'constant', cka:" in line
    for internal in ("ValueError", "`X`", "`y`", "HSIC:"):
        assert internal not in line


def test_measure_memory_refusal_names_max_samples_and_it_works(
    saved, capsys, monkeypatch
):
    import re

    from infoscope.backends import _memory

    # 150 samples need 3 x 150^2 x 8 = 540,000 bytes for the exact DSE.
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 200_000)
    hidden = str(saved[0] / "hidden.npy")
    assert main(["measure", hidden, "--measures", "dse"]) == 2
    line = _one_error_line(capsys, "measure")
    assert "layer 'hidden', dse: needs about" in line
    fits = int(re.search(r"pass --max-samples (\d+) \(or fewer\)", line)[1])
    assert 3 * fits**2 * 8 <= 200_000
    assert (
        main(["measure", hidden, "--measures", "dse", "--max-samples", str(fits)]) == 0
    )
    assert "dse" in capsys.readouterr().out


def test_measure_max_samples_takes_the_same_samples_of_every_layer(saved, capsys):
    path, X, H, y = saved
    csv = path / "sub.csv"
    argv = [
        "measure",
        str(path / "acts.npz"),
        "--labels",
        str(path / "labels.npy"),
        "--measures",
        "dse",
        "hsic",
        "--max-samples",
        "60",
        "--csv",
        str(csv),
    ]
    assert main(argv) == 0
    import pandas as pd

    from infoscope.backends import draw_rows

    rows = draw_rows(np.random.default_rng(0), 150, 60)
    value = pd.read_csv(csv).set_index(["layer", "measure"])["value"]
    assert value["hidden", "dse"] == pytest.approx(diffusion_spectral_entropy(H[rows]))
    assert value["input", "hsic"] == pytest.approx(HSIC().fit(X[rows], y[rows]).hsic_)


def test_demo_writes_the_run_csv_and_report_and_refuses_to_overwrite(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("hsic_y", "dsmi", "snr_optimality", "ntk_entropy", "test_accuracy"):
        assert name in printed
    from infoscope import load_run

    run = load_run(out / "metrics.db")
    assert run.steps == [0, 1, 2]
    table = run.history()
    measures = set(table.measure)
    assert {
        "hsic_x",
        "hsic_y",
        "dse",
        "dsmi",
        "snr_optimality",
        "snr_signal_factor",
        "ntk_entropy",
        "ntk_mi",
        "geometry_rankme",
        "cka_to_initial",
        "train_loss",
        "test_accuracy",
    } <= measures
    to_initial = table[table.measure == "cka_to_initial"]
    assert to_initial[to_initial.step == 0].value.tolist() == pytest.approx([1.0] * 3)
    assert set(table[table.measure == "dse"].layer) == {"hidden1", "hidden2", "logits"}
    import pandas as pd

    csv = pd.read_csv(out / "metrics.csv", dtype={"layer": str})
    np.testing.assert_allclose(csv["value"], table["value"])
    assert csv["measure"].tolist() == table["measure"].tolist()
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000

    assert main(["demo", "--out", str(out), "--epochs", "1", "--no-progress"]) == 2
    assert "metrics.db exists; pass --overwrite" in _one_error_line(capsys, "demo")
    assert load_run(out / "metrics.db").steps == [0, 1, 2]  # nothing lost
    assert (
        main(
            ["demo", "--out", str(out), "--epochs", "1", "--no-progress", "--overwrite"]
        )
        == 0
    )
    assert load_run(out / "metrics.db").steps == [0, 1]
    assert sorted(p.name for p in out.iterdir() if "metrics.db" not in p.name) == [
        "metrics.csv",
        "report.png",
    ]


def test_demo_trains_with_jax_when_asked(tmp_path):
    jax = pytest.importorskip("jax")
    pytest.importorskip("matplotlib")
    from infoscope.demo import run_demo

    # With JAX's x64 flag on (as some users set it globally): the demo trains
    # in float32 all the same.
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        monitor = run_demo(tmp_path, epochs=1, framework="jax", progress=False)
    finally:
        jax.config.update("jax_enable_x64", before)
    table = monitor.history()
    assert set(table[table.measure == "dsmi"].layer) == {
        "hidden1/max_0",
        "hidden2/max_0",
        "logits/add_0",
    }
    accuracy = table[table.measure == "train_accuracy"].value.iloc[-1]
    assert accuracy > 0.5  # one epoch of Adam learns digits well past chance


def test_the_jax_demo_network_does_not_depend_on_the_x64_flag():
    jax = pytest.importorskip("jax")
    from infoscope.demo import demo_network

    before = jax.config.jax_enable_x64
    drawn = {}
    try:
        for x64 in (False, True):
            jax.config.update("jax_enable_x64", x64)
            apply_fn, params, _ = demo_network("jax")
            X = np.linspace(0, 1, 64 * 3, dtype=np.float32).reshape(3, 64)
            drawn[x64] = (
                np.asarray(params["dense1"]["w"]),
                np.asarray(apply_fn(params, X)),
            )
    finally:
        jax.config.update("jax_enable_x64", before)
    assert drawn[True][0].dtype == np.float32
    np.testing.assert_array_equal(drawn[True][0], drawn[False][0])
    np.testing.assert_array_equal(drawn[True][1], drawn[False][1])


def test_the_jax_demo_runs_numpys_blas_on_one_thread_and_restores_it():
    from threadpoolctl import threadpool_info

    from infoscope.demo import _blas_threads

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    with _blas_threads("torch"):
        assert blas_threads() == before
    with _blas_threads("jax"):
        assert blas_threads() and set(blas_threads()) == {1}
    assert blas_threads() == before


def test_report_redraws_a_run_even_while_it_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from infoscope.runs import Record, Run

    path = tmp_path / "run.db"
    run = Run(path)  # the writer stays open: the run is still being written
    for step in range(3):
        run.append(
            Record(
                step,
                [
                    ("fc", "hsic_x", 0.1 * step),
                    ("fc", "hsic_y", 0.2 * step),
                    ("model", "loss", 1.0 / (step + 1)),
                ],
            )
        )
    assert main(["report", str(path)]) == 0
    printed = capsys.readouterr().out
    assert f"{path}: 3 records (steps 0 to 2), 3 measures;" in printed
    assert "hsic_y" not in printed  # the table only when asked
    assert (tmp_path / "run_report.png").stat().st_size > 10_000
    run.append(Record(3, [("model", "loss", 0.2)]))
    out = str(tmp_path / "r.png")
    assert main(["report", str(path), "--out", out, "--table"]) == 0
    printed = capsys.readouterr().out
    assert "3 records" not in printed
    line = next(ln for ln in printed.splitlines() if ln.startswith("loss"))
    assert line.split()[-3:] == ["3", "0.2", "-0.8"]  # the newest record is read
    assert "hsic_y: HSIC(H, Y): dependence of the layer on the labels" in printed
    assert (tmp_path / "r.png").exists()


def test_report_reads_an_hdf5_run_of_an_earlier_version(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("h5py")
    old = Path(__file__).parent / "data" / "run_v1.h5"
    out = str(tmp_path / "old.png")
    assert main(["report", str(old), "--out", out, "--table"]) == 0
    assert "hidden1/max_0" in capsys.readouterr().out
    assert (tmp_path / "old.png").stat().st_size > 10_000


def test_report_bad_input_is_one_line(tmp_path, capsys):
    from infoscope.runs import Record, Run

    assert main(["report", str(tmp_path / "nope.db")]) == 2
    assert "no such file" in _one_error_line(capsys, "report")
    (tmp_path / "x.db").write_text("text")
    assert main(["report", str(tmp_path / "x.db")]) == 2
    assert "is neither an infoscope run" in _one_error_line(capsys, "report")
    with Run(tmp_path / "empty.db"):
        pass
    assert main(["report", str(tmp_path / "empty.db")]) == 2
    assert "holds no completed records yet" in _one_error_line(capsys, "report")
    with Run(tmp_path / "cut.db") as run:
        for step in range(30):
            run.append(
                Record(step, [("model", "loss", 1.0)], {("a", "b"): np.ones(999)})
            )
    data = (tmp_path / "cut.db").read_bytes()
    (tmp_path / "cut.db").write_bytes(data[: len(data) // 3])
    assert main(["report", str(tmp_path / "cut.db")]) == 2
    line = _one_error_line(capsys, "report")
    assert "is not a readable infoscope run: it is damaged" in line
    assert "Error" not in line  # no Python exception names


def test_the_console_command_exits_2_with_one_line(tmp_path):
    child = subprocess.run(
        [sys.executable, "-m", "infoscope", "measure", str(tmp_path / "a.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert child.returncode == 2
    assert (
        child.stderr.strip()
        == f"infoscope measure: error: no such file: {tmp_path}/a.npy"
    )


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "measure", str(tmp_path / "a.npy")])
