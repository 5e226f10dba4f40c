"""The NTK benchmarks run (small n), and neural-tangents' convention is ours."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ASV_BENCH = Path(__file__).resolve().parents[2] / "asv_bench"
sys.path.insert(0, str(ASV_BENCH))

from benchmarks import bench_ntk  # noqa: E402

BACKENDS = [
    pytest.param(
        "torch-cpu",
        marks=pytest.mark.skipif(
            bench_ntk.skip_reason("torch-cpu") is not None, reason="torch missing"
        ),
    ),
    pytest.param(
        "jax-cpu",
        marks=pytest.mark.skipif(
            bench_ntk.skip_reason("jax-cpu") is not None, reason="jax missing"
        ),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_speedup_benchmark_runs_and_checks_agreement(backend):
    bench = bench_ntk.NtkSpeedup()
    bench.repeat_turns = 1
    bench.setup(backend, 64, "float32")  # asserts that the two NTKs agree
    try:
        speedup = bench.track_speedup_over_jacobian_contraction(backend, 64, "float32")
    finally:
        bench.teardown(backend, 64, "float32")
    assert isinstance(speedup, float) and math.isfinite(speedup) and speedup > 0


def test_time_and_peakmem_methods_run(monkeypatch):
    bench = bench_ntk.EmpiricalNtk()
    bench.setup("torch-cpu", 50, "float32")
    try:
        bench.time_empirical_ntk("torch-cpu", 50, "float32")
        bench.peakmem_empirical_ntk("torch-cpu", 50, "float32")
    finally:
        bench.teardown("torch-cpu", 50, "float32")


def test_neural_tangents_reference_is_read_or_skipped(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(NotImplementedError, match="no neural-tangents reference"):
        bench_ntk.reference_seconds(1000, missing)
    recorded = tmp_path / "nt.json"
    recorded.write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "n": 1000,
                        "implementation": "JACOBIAN_CONTRACTION",
                        "batch_size": 100,
                        "seconds_first_call": 40.0,
                        "error": None,
                    },
                    {
                        "n": 1000,
                        "implementation": "JACOBIAN_CONTRACTION",
                        "batch_size": None,
                        "seconds_first_call": 14.1,
                        "error": None,
                    },
                ]
            }
        )
    )
    assert bench_ntk.reference_seconds(1000, recorded) == 14.1
    with pytest.raises(NotImplementedError, match="n=4096"):
        bench_ntk.reference_seconds(4096, recorded)


def test_the_committed_reference_names_its_versions():
    info = json.loads(bench_ntk.REFERENCE.read_text())
    assert info["neural_tangents"] == "0.6.5"
    assert info["jax"].startswith("0.4.")
    assert bench_ntk.reference_seconds(1000) > 0


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_neural_tangents_ntk_of_the_same_network_is_ours(framework):
    """neural-tangents 0.6.5's own NTK of a stax MLP (recorded by
    nt_reference.py), in "mean" (trace_axes=(-1,)) and "full" mode, equals
    ours on the same weights: the output-mode conventions agree."""
    pytest.importorskip(framework)
    data = np.load(ASV_BENCH / "reference" / "nt_small.npz")
    x = data["x"].astype(np.float64)
    # stax.Dense's defaults: NTK parameterisation, W_std=1, no bias
    # (b_std=None): h -> h @ W / sqrt(d_in).
    weights = [data[f"p{i}_0"].astype(np.float64) for i in (0, 2, 4)]
    expected = {"mean": data["mean"], "full": data["full"]}
    k = 10
    n = x.shape[0]
    expected["full"] = expected["full"].transpose(0, 2, 1, 3).reshape(n * k, n * k)
    if framework == "torch":
        import torch

        from infoscope.adapters.torch import empirical_ntk

        class Stax(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.ParameterList(
                    [torch.nn.Parameter(torch.as_tensor(W)) for W in weights]
                )

            def forward(self, h):
                for i, W in enumerate(self.w):
                    h = h @ W / math.sqrt(W.shape[0])
                    if i < len(self.w) - 1:
                        h = torch.relu(h)
                return h

        model = Stax()
        got = {
            m: empirical_ntk(model, torch.as_tensor(x), output_mode=m).numpy()
            for m in expected
        }
    else:
        import jax

        from infoscope.adapters.jax import empirical_ntk

        def apply_fn(params, h):
            for i, W in enumerate(params):
                h = h @ W / math.sqrt(W.shape[0])
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            return h

        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            params = [jax.numpy.asarray(W) for W in weights]
            got = {
                m: np.asarray(empirical_ntk(apply_fn, params, x, output_mode=m))
                for m in expected
            }
        finally:
            jax.config.update("jax_enable_x64", before)
    for mode in expected:  # neural-tangents ran in float32
        np.testing.assert_allclose(
            got[mode],
            expected[mode],
            rtol=1e-4,
            atol=1e-4 * np.abs(expected[mode]).max(),
        )
