"""Reduced runs of the claims gallery's studies (``examples/claims.py``).

Each test runs one study with two seeds and fewer epochs (or smaller
networks) than the gallery, and asserts the direction of the effects that
the full runs (20 seeds, their tables in the ``plot_claim_*`` examples) show
clearly, in every seed of the reduced run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pandas")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEEDS = range(2)


@pytest.fixture(scope="module")
def claims():
    spec = importlib.util.spec_from_file_location("claims", EXAMPLES / "claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_thread_is_undone(claims):
    import torch

    threads = torch.get_num_threads()
    with claims.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads


def test_summary_statistics(claims):
    assert claims.mean_sd([1.0, 2.0, 3.0], 2) == "2.00 ± 1.00"
    low, high = claims.interval([1.0, 2.0, 3.0])
    # mean 2, standard error 1/sqrt(3), t(0.975, 2) = 4.303
    assert low == pytest.approx(2 - 4.302653 / 3**0.5, abs=1e-5)
    assert high == pytest.approx(2 + 4.302653 / 3**0.5, abs=1e-5)
    assert claims.difference([0.5, 0.5]) == "+0.500 [+0.500, +0.500]"
    markdown = claims.format_table(("a", "bb"), [("1", "2"), ("333", "4")])
    assert markdown.splitlines() == [
        "| a   | bb |",
        "|-----|----|",
        "| 1   | 2  |",
        "| 333 | 4  |",
    ]
    rst = claims.format_table(("a", "bb"), [("1", "2")], "rst").splitlines()
    assert rst[0] == "+---+----+" and rst[2] == "+===+====+"
    assert len({len(line) for line in rst}) == 1
    listed = claims.format_table(("a", "bb"), [("1", "2")], "list-table")
    assert listed.splitlines() == [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - a",
        "     - bb",
        "   * - 1",
        "     - 2",
    ]
    with pytest.raises(ValueError, match="fmt must be"):
        claims.format_table(("a",), [("1",)], "html")


def test_snr_dropout_raises_snr_of_the_upper_layers(claims):
    frame = claims.snr_dropout_study(seeds=SEEDS, epochs=20, width=128, every=10)
    assert set(frame["arm"]) == set(claims.SNR_ARMS)
    assert sorted(frame["epoch"].unique()) == [0, 10, 20]
    # Same initial weights in both arms: the same figures at epoch 0.
    start = claims.at_epoch(frame, "snr_optimality", "2", epoch=0)
    np.testing.assert_allclose(start["dropout"], start["no dropout"], rtol=1e-6)
    for measure in ("snr_optimality", "snr_signal_factor"):
        for layer in ("2", "3"):
            end = claims.at_epoch(frame, measure, layer)
            assert (end["dropout"] > end["no dropout"]).all(), (measure, layer)
    rows = {row[0]: row for row in claims.summarize_snr(frame)}
    assert rows["S, layer 3"][4] == "2 of 2"


def test_dsmi_rises_with_true_labels_more_than_with_permuted(claims):
    frame = claims.dsmi_labels_study(
        seeds=SEEDS, epochs=30, record_at=(0, 30), width=128, n_probe=200
    )
    true, permuted = claims.DSMI_ARMS

    def start_end(measure, layer="3"):
        return (
            claims.at_epoch(frame, measure, layer, epoch=0),
            claims.at_epoch(frame, measure, layer),
        )

    start, end = start_end("train_accuracy", "model")
    assert (end[permuted] > start[permuted] + 0.1).all()  # memorising has begun
    for measure in ("dsmi", "dsmi_median"):
        start, end = start_end(measure)
        np.testing.assert_allclose(start[true], start[permuted])  # same network
        assert (end[true] > start[true]).all(), measure
        assert (end[true] > end[permuted]).all(), measure
    # At the fixed sigma = 10, DSMI and DSE rise with the representation's
    # scale even while the network memorises permuted labels.
    for measure in ("dsmi", "dse", "norm"):
        start, end = start_end(measure)
        assert (end[permuted] > start[permuted]).all(), measure
    # At the median bandwidth, learning the true labels lowers DSE.
    start, end = start_end("dse_median")
    assert (end[true] < start[true]).all()


def test_hsic_plane_fits_then_hsic_x_falls_but_cka_x_does_not(claims):
    frame = claims.hsic_plane_study(seeds=SEEDS, epochs=60, arms={"wide": 32})
    for layer in ("1", "3", "4"):
        phases = claims.plane_phases(frame, "wide", layer)
        assert len(phases) == len(SEEDS)
        start = claims.at_epoch(frame, "hsic_y", layer, epoch=0)["wide"]
        end = claims.at_epoch(frame, "hsic_y", layer)["wide"]
        assert (end > 1.5 * start).all()  # fitting
        assert (phases["fit_epoch"] <= phases["peak_epoch"]).all()  # first
        assert (phases["x_fall"] > 0.05).all()  # then HSIC(H, X) turns down
        # ... by far less in the normalised plane: the layer's own kernel
        # shrinks, its alignment with the input does not.
        assert (phases["cka_x_fall"] < phases["x_fall"] / 3).all()


def test_plane_records_nan_where_the_median_bandwidth_is_undefined(claims):
    from infoscope.monitor import Probe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = np.arange(40) % 2
    dead = np.zeros((40, 3))
    dead[:5] = rng.normal(size=(5, 3))  # 35 identical rows: 595 of 780 pairs
    alive = rng.normal(size=(40, 3))
    result = claims.Plane().measure(
        Probe(step=0, X=X, y=y, activations={"dead": dead, "alive": alive})
    )
    assert np.isnan(result["dead", "x"]) and np.isnan(result["dead", "y"])
    expected = claims.HSICPlane().fit(X, y).transform([alive])
    assert result["alive", "x"] == pytest.approx(expected[0, 0])
    assert result["alive", "y"] == pytest.approx(expected[0, 1])


def test_ntk_class_mi_of_different_digits_falls_and_entropy_rises(claims):
    frame = claims.ntk_class_mi_study(seeds=SEEDS, epochs=20, every=10)
    start = claims.at_epoch(frame, "split_other", epoch=0)["training"]
    end = claims.at_epoch(frame, "split_other")["training"]
    assert (end < start).all()
    same = claims.at_epoch(frame, "split_same")["training"]
    assert (same - end > 0.2).all()  # halves of one digit stay alike
    start = claims.at_epoch(frame, "ntk_mi_normalized", epoch=0)["training"]
    end = claims.at_epoch(frame, "ntk_mi_normalized")["training"]
    assert (end < start).all()
    # The NTK's entropy rises here (no "information compression").
    for measure in ("ntk_entropy", "ntk_cos_entropy"):
        start = claims.at_epoch(frame, measure, epoch=0)["training"]
        end = claims.at_epoch(frame, measure)["training"]
        assert (end > start).all(), measure
