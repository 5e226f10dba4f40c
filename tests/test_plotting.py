"""Plots of a run: the artists drawn match the data (points, step colours,
sorted spectra, disagreement and left-out counts), `ax=` draws in place, any
array library is accepted, bad input names what is available, and the report
keeps only the panels that have data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from infoscope.plotting import (  # noqa: E402
    information_plane,
    measure_curves,
    ntk_spectrum,
    report,
    snr_scatter,
)

LAYERS = ["conv", "fc1", "fc2"]
STEPS = [0, 5, 10, 20]


def make_history(measures=("hsic_x", "hsic_y", "dse"), layers=LAYERS, model=()):
    """Record order: per step, per layer, per measure; then model-level rows."""
    rng = np.random.default_rng(0)
    rows = []
    for step in STEPS:
        for layer in layers:
            rows += [(step, layer, m, rng.uniform()) for m in measures]
        rows += [(step, "model", m, rng.uniform()) for m in model]
    df = pd.DataFrame(rows, columns=["step", "layer", "measure", "value"])
    return df.astype({"step": "int64", "value": "float64"})


def value(df, layer, measure):
    rows = df[(df.layer == layer) & (df.measure == measure)].sort_values("step")
    return rows["value"].to_numpy()


def panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


class FakeRun:
    def __init__(self, history, arrays=None):
        self._history, self._arrays = history, arrays or {}

    def history(self):
        return self._history

    def arrays(self, name):
        return self._arrays.get(name, {})


# --- information_plane -------------------------------------------------------


def test_plane_one_trajectory_per_layer_with_the_data_in_step_order():
    df = make_history()
    df = df.sample(frac=1.0, random_state=1)  # drawing must not rely on row order
    fig = information_plane(df)
    ax = panels(fig)[0]
    lines, points = ax.get_lines(), ax.collections
    assert len(lines) == len(points) == len(LAYERS)
    # layers in order of first appearance in the (shuffled) history
    order = list(dict.fromkeys(df.layer))
    assert [ln.get_label() for ln in lines] == order
    assert [t.get_text() for t in ax.get_legend().get_texts()] == order
    for i, (layer, line, coll) in enumerate(zip(order, lines, points, strict=True)):
        xy = np.column_stack([value(df, layer, "hsic_x"), value(df, layer, "hsic_y")])
        np.testing.assert_allclose(line.get_xydata(), xy)
        np.testing.assert_allclose(coll.get_offsets(), xy)
        np.testing.assert_array_equal(coll.get_array(), STEPS)
        # a layer's points are ringed in its line's colour
        assert line.get_color() == f"C{i}"
        np.testing.assert_allclose(
            coll.get_edgecolors()[0], matplotlib.colors.to_rgba(f"C{i}")
        )
    assert not ax.texts  # no names sitting on the points
    assert ax.get_title() == "HSIC information plane"
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        "HSIC(H, X): dependence on the inputs",
        "HSIC(H, Y): dependence on the labels",
    )
    [cbar] = colorbars(fig)
    assert cbar.get_ylabel() == "step"
    assert all(float(t).is_integer() for t in cbar.get_yticks())


def test_plane_colours_are_the_steps_on_one_shared_scale():
    df = make_history()
    # fc2 is recorded only from step 10: its colours are still on 0..20.
    df = df[~((df.layer == "fc2") & (df.step < 10))]
    ax = panels(information_plane(df, cmap="plasma"))[0]
    for coll in ax.collections:
        assert (coll.norm.vmin, coll.norm.vmax) == (0, 20)
    fc2 = ax.collections[2]
    np.testing.assert_array_equal(fc2.get_array(), [10, 20])
    fc2.update_scalarmappable()
    np.testing.assert_allclose(fc2.get_facecolors(), fc2.cmap(fc2.norm([10, 20])))
    assert fc2.cmap.name == "plasma"


def test_plane_layers_select_and_order_and_cka_labels():
    df = make_history(measures=("cka_x", "cka_y"))
    ax = panels(information_plane(df, x="cka_x", y="cka_y", layers=["fc2", "conv"]))[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["fc2", "conv"]
    assert ax.get_xlabel() == "CKA(H, X): similarity to the inputs"
    assert ax.get_title() == "CKA information plane"
    ax = panels(information_plane(df, x="cka_x", y="cka_x", step_name="epoch"))[0]
    assert ax.get_ylabel() == "CKA(H, X): similarity to the inputs"
    assert colorbars(ax.figure)[0].get_ylabel() == "epoch"


def test_plane_skips_layers_without_both_measures_and_labels_user_measures():
    df = make_history(measures=("mine_x", "mine_y"))
    df = df[~((df.layer == "conv") & (df.measure == "mine_y"))]
    ax = panels(information_plane(df, x="mine_x", y="mine_y"))[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["fc1", "fc2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("mine_x", "mine_y")


def test_plane_draws_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    assert information_plane(make_history(), ax=ax) is fig
    assert len(ax.collections) == len(LAYERS)


def test_plane_bad_input():
    df = make_history()
    with pytest.raises(
        ValueError,
        match=r"x, y: \['cka_x'\] not in the history; available measures: \['hsic_x', 'hsic_y', 'dse'\]",
    ):
        information_plane(df, x="cka_x")
    with pytest.raises(
        ValueError,
        match=r"layers: \['fc9'\] not in the history; available layers with hsic_x and hsic_y: \['conv', 'fc1', 'fc2'\]",
    ):
        information_plane(df, layers=["fc9"])
    with pytest.raises(
        ValueError, match="history is missing the columns \\['measure'\\]; it has"
    ):
        information_plane(df.drop(columns="measure"))
    with pytest.raises(ValueError, match="history must be a pandas DataFrame"):
        information_plane(np.zeros((3, 4)))
    split = df[
        (df.measure == "hsic_x") & (df.layer == "conv")
        | (df.measure == "hsic_y") & (df.layer == "fc1")
    ]
    with pytest.raises(ValueError, match="no layer has both 'hsic_x' and 'hsic_y'"):
        information_plane(split)


# --- measure_curves ----------------------------------------------------------


def test_curves_one_panel_per_measure_one_line_per_layer():
    df = make_history(measures=("dse", "dsmi"), model=("loss", "accuracy"))
    fig = measure_curves(df)
    axes = panels(fig)
    measures = ["dse", "dsmi", "loss", "accuracy"]
    # titled in words, the unit on the vertical axis
    assert [(ax.get_title(), ax.get_ylabel()) for ax in axes] == [
        ("Diffusion spectral entropy of the layer", "bits"),
        ("Diffusion spectral mutual information with\nthe labels", "bits"),
        ("Loss", "loss"),
        ("Accuracy", "fraction"),
    ]
    assert {ax.get_xlabel() for ax in axes} == {"step"}
    for ax, measure in zip(axes[:2], measures, strict=False):
        assert [ln.get_label() for ln in ax.get_lines()] == LAYERS
        assert ax.get_legend() is not None
        for layer, line in zip(LAYERS, ax.get_lines(), strict=True):
            np.testing.assert_array_equal(line.get_xdata(), STEPS)
            np.testing.assert_allclose(line.get_ydata(), value(df, layer, measure))
    for ax in axes[2:]:
        assert len(ax.get_lines()) == 1 and ax.get_legend() is None
    # four panels: a 2 x 3 grid, its two spare cells removed
    assert axes[3].get_subplotspec().rowspan.start == 1
    assert len(fig.axes) == 4


def test_curves_select_measures_and_layers():
    df = make_history(measures=("dse", "dsmi"), model=("loss",))
    fig = measure_curves(df, "loss", step_name="epoch")
    assert [ax.get_title() for ax in fig.axes] == ["Loss"]
    assert fig.axes[0].get_xlabel() == "epoch"
    fig = measure_curves(df, ["dsmi", "loss"], layers=["fc1"])
    dsmi, loss = fig.axes
    assert [ln.get_label() for ln in dsmi.get_lines()] == ["fc1"]
    assert dsmi.get_legend() is None
    assert [ln.get_label() for ln in loss.get_lines()] == ["model"]


def test_curves_bad_input():
    df = make_history(measures=("dse",))
    with pytest.raises(
        ValueError,
        match=r"measures: \['dsmi'\] not in the history; available measures: \['dse'\]",
    ):
        measure_curves(df, ["dse", "dsmi"])
    with pytest.raises(
        ValueError,
        match=r"layers: \['fc9'\] not in the history; available layers: \['conv', 'fc1', 'fc2'\]",
    ):
        measure_curves(df, layers=["fc9"])
    with pytest.raises(
        ValueError, match=r"history is missing the columns \['step', 'value'\]"
    ):
        measure_curves(df[["layer", "measure"]])
    with pytest.raises(ValueError, match="history has no measures to plot"):
        measure_curves(df.iloc[:0])


# --- snr_scatter -------------------------------------------------------------


def snr_arrays(shape=(6, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(shape)


def test_snr_points_are_the_data_split_by_sign():
    W, c = snr_arrays()
    bad = c * W < 0
    n_bad = int(bad.sum())
    assert 0 < n_bad < W.size
    ax = panels(snr_scatter(W, c))[0]
    same, differ = [a for a in ax.collections if isinstance(a, PathCollection)]
    np.testing.assert_array_equal(
        same.get_offsets(), np.column_stack([c[~bad], W[~bad]])
    )
    np.testing.assert_array_equal(
        differ.get_offsets(), np.column_stack([c[bad], W[bad]])
    )
    assert not np.allclose(same.get_facecolors()[0], differ.get_facecolors()[0])
    assert ax.get_title() == f"{n_bad} of {W.size} weights disagree in sign"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"same sign ({W.size - n_bad})", f"sign disagreement ({n_bad})"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        "c_ij: covariance of input i with node j's output",
        "weight W_ij",
    )
    hline, vline = ax.get_lines()
    assert list(hline.get_ydata()) == [0, 0] and list(vline.get_xdata()) == [0, 0]


def test_snr_reports_non_finite_pairs():
    W, c = snr_arrays((3, 3))
    c[0, 0] = np.nan
    ax = panels(snr_scatter(W, c))[0]
    assert sum(len(coll.get_offsets()) for coll in ax.collections) == 8
    assert "(1 non-finite pairs left out)" in ax.get_title()


def test_snr_ax_and_bad_shapes():
    W, c = snr_arrays()
    fig = Figure()
    ax = fig.add_subplot()
    assert snr_scatter(W, c, ax=ax) is fig
    with pytest.raises(
        ValueError,
        match=r"weights and c must have the same shape; got weights \(6, 4\) and c \(4, 6\)",
    ):
        snr_scatter(W, c.T)


# --- ntk_spectrum ------------------------------------------------------------


def test_spectrum_is_sorted_positive_eigenvalues_and_counts_the_rest():
    lam = np.array([0.3, 5.0, -1e-8, 0.0, 2.0, 1e-4])
    ax = panels(ntk_spectrum(lam))[0]
    [line] = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [5.0, 2.0, 0.3, 1e-4])
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "NTK spectrum (2 non-positive eigenvalues left out)"
    assert not colorbars(ax.figure)
    assert panels(ntk_spectrum(np.array([1.0, 2.0])))[0].get_title() == "NTK spectrum"


def test_spectrum_per_step_coloured_by_step():
    rng = np.random.default_rng(0)
    spectra = {s: {"model": rng.uniform(0.1, 1.0, 5)} for s in (20, 0, 10)}
    spectra[10]["model"][0] = -1.0
    fig = ntk_spectrum(spectra, cmap="magma")
    ax = panels(fig)[0]
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["step 0", "step 10", "step 20"]
    for step, line in zip((0, 10, 20), lines, strict=True):
        lam = spectra[step]["model"]
        np.testing.assert_array_equal(line.get_ydata(), np.sort(lam[lam > 0])[::-1])
    [cbar] = colorbars(fig)
    assert cbar.get_ylabel() == "step"
    from matplotlib import colormaps

    expected = [colormaps["magma"](s / 20) for s in (0, 10, 20)]
    np.testing.assert_allclose([ln.get_color() for ln in lines], expected)
    assert "1 non-positive eigenvalue left out" in ax.get_title()
    # step -> array works as well
    flat = {s: v["model"] for s, v in spectra.items()}
    assert len(panels(ntk_spectrum(flat))[0].get_lines()) == 3


def test_spectrum_ax_and_bad_input():
    fig = Figure()
    ax = fig.add_subplot()
    assert ntk_spectrum(np.array([1.0, 0.5]), ax=ax) is fig
    with pytest.raises(ValueError, match="eigenvalues is empty"):
        ntk_spectrum({})
    with pytest.raises(
        ValueError,
        match=r"eigenvalues\[3\] holds several arrays \['a', 'b'\] and no 'model' one",
    ):
        ntk_spectrum({3: {"a": np.ones(2), "b": np.ones(2)}})


# --- other array libraries ---------------------------------------------------


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    W, c = snr_arrays()
    Wt = torch.tensor(W, requires_grad=True)
    ax = panels(snr_scatter(Wt, torch.tensor(c)))[0]
    assert sum(len(coll.get_offsets()) for coll in ax.collections) == W.size
    lam = torch.tensor([3.0, 1.0, -2.0])
    [line] = panels(ntk_spectrum({0: {"model": lam}}))[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), [3.0, 1.0])


def test_jax_inputs():
    jnp = pytest.importorskip("jax.numpy")
    W, c = snr_arrays()
    ax = panels(snr_scatter(jnp.asarray(W), jnp.asarray(c)))[0]
    n_bad = int((c * W < 0).sum())
    assert ax.get_title().startswith(f"{n_bad} of {W.size}")
    [line] = panels(ntk_spectrum(jnp.asarray([0.5, 2.0, 0.0])))[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), [2.0, 0.5])


# --- report ------------------------------------------------------------------


def full_run():
    df = make_history(
        measures=("hsic_x", "hsic_y", "dse"), model=("loss", "ntk_entropy")
    )
    rng = np.random.default_rng(0)
    # A file-backed run lists layers by name: fc10 before fc2.
    dense = ["fc2", "fc10"]
    snr = {s: {la: rng.standard_normal((4, 3)) for la in sorted(dense)} for s in STEPS}
    c = {s: {la: rng.standard_normal((4, 3)) for la in sorted(dense)} for s in STEPS}
    history = pd.concat(
        [
            df,
            pd.DataFrame(
                {
                    "step": STEPS,
                    "layer": "fc2",
                    "measure": "snr_optimality",
                    "value": 1.0,
                }
            ),
            pd.DataFrame(
                {
                    "step": STEPS,
                    "layer": "fc10",
                    "measure": "snr_optimality",
                    "value": 1.0,
                }
            ),
        ]
    ).sort_values("step", kind="stable")
    ntk = {s: {"model": rng.uniform(0.0, 1.0, 8)} for s in STEPS}
    arrays = {"snr_weights": snr, "snr_c": c, "ntk_eigenvalues": ntk}
    return FakeRun(history, arrays), arrays


def test_report_all_panels():
    run, arrays = full_run()
    run.config = {"step_name": "epoch"}  # as a Monitor stores it
    fig = report(run)
    axes = panels(fig)
    titles = [ax.get_title() for ax in axes]
    # plane, dse, loss, ntk_entropy, SNR scatter, NTK spectrum; snr_optimality
    # is 1.0 throughout: no panel, a line under the figure
    assert len(axes) == 6
    assert axes[0].get_xlabel() == "HSIC(H, X): dependence on the inputs"
    assert titles[1:4] == [
        "Diffusion spectral entropy of the layer",
        "Loss",
        "NTK von Neumann entropy",
    ]
    assert [ax.get_xlabel() for ax in axes[1:4]] == ["epoch"] * 3
    assert [t.get_text() for t in fig.texts] == [
        "Constant throughout, not drawn: snr_optimality = 1"
    ]
    assert titles[4].startswith("Node SNR of fc2, epoch 20:\n")
    scatter = [c for c in axes[4].collections if isinstance(c, PathCollection)]
    W, c = arrays["snr_weights"][20]["fc2"], arrays["snr_c"][20]["fc2"]
    points = np.concatenate([s.get_offsets() for s in scatter])
    assert sorted(map(tuple, points)) == sorted(zip(c.ravel(), W.ravel(), strict=True))
    assert len(axes[5].get_lines()) == len(STEPS)
    assert axes[5].get_yscale() == "log"
    assert [bar.get_ylabel() for bar in colorbars(fig)] == ["epoch", "epoch"]
    assert report(run, step_name="batch").axes[1].get_xlabel() == "batch"


def test_report_omits_missing_panels():
    df = make_history(measures=("dse",), model=("loss",))
    axes = panels(report(FakeRun(df)))
    assert [ax.get_title() for ax in axes] == [
        "Diffusion spectral entropy of the layer",
        "Loss",
    ]
    assert not colorbars(axes[0].figure)
    # SNR stored but no NTK; CKA plane instead of HSIC
    df = make_history(measures=("cka_x", "cka_y"))
    W, c = snr_arrays()
    run = FakeRun(df, {"snr_weights": {5: {"fc1": W}}, "snr_c": {5: {"fc1": c}}})
    axes = panels(report(run))
    assert len(axes) == 2
    assert axes[0].get_ylabel() == "CKA(H, Y): similarity to the labels"
    assert axes[1].get_title().startswith("Node SNR of fc1, step 5:\n")
    with pytest.raises(ValueError, match="run has nothing to plot"):
        report(FakeRun(df.iloc[:0]))
    with pytest.raises(
        ValueError, match=r"run.history\(\) is missing the columns \['value'\]"
    ):
        report(FakeRun(df.drop(columns="value")))


def test_report_saves_png(tmp_path):
    run, _ = full_run()
    fig = report(run)
    fig.savefig(tmp_path / "r.png")
    data = (tmp_path / "r.png").read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_without_matplotlib_says_how_to_install():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "try:\n    import infoscope.plotting\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert 'pip install "infoscope[plot]"' in out


# --- similarity_heatmap -----------------------------------------------------


def test_heatmap_draws_the_matrix_with_layer_names_and_nan_grey():
    from infoscope import SimilarityMatrix
    from infoscope.plotting import similarity_heatmap

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    layers = {"a": X, "b": np.tanh(X @ rng.normal(size=(4, 3))), "c": X[:, :2] ** 2}
    est = SimilarityMatrix().fit(layers, [X, X[:, :1]])
    fig = similarity_heatmap(est, label="linear CKA")
    ax = panels(fig)[0]
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array().data, est.matrix_)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "layers_b[0]",
        "layers_b[1]",
    ]
    assert image.origin == "lower"  # the first layer at the bottom
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == f"{est.matrix_[0, 0]:.2f}" and len(texts) == 6
    assert colorbars(fig)[0].get_ylabel() == "linear CKA"
    nan = np.array([[1.0, np.nan], [0.5, 0.2]])
    fig = similarity_heatmap(nan, annotate=False)
    image = panels(fig)[0].get_images()[0]
    assert image.get_array().mask.tolist() == [[False, True], [False, False]]
    assert image.get_cmap().get_bad()[:3] == pytest.approx((0.75, 0.75, 0.75))
    assert not panels(fig)[0].texts


def test_heatmap_accepts_any_library_and_draws_into_given_axes():
    torch = pytest.importorskip("torch")
    from infoscope.plotting import similarity_heatmap

    fig = Figure()
    ax = fig.add_subplot()
    out = similarity_heatmap(
        torch.eye(3, dtype=torch.float64), ax=ax, vmin=None, vmax=None
    )
    assert out is fig and ax.get_images()[0].get_array().shape == (3, 3)


def test_heatmap_bad_input():
    from infoscope.plotting import similarity_heatmap

    with pytest.raises(ValueError, match="must be 2-D"):
        similarity_heatmap(np.ones(3))
    with pytest.raises(
        ValueError, match="labels_a has 1 names but the matrix has 2 rows"
    ):
        similarity_heatmap(np.ones((2, 2)), labels_a=["x"])
