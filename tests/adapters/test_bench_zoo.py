"""The zoo benchmark runs (small n) and checks its two NTKs agree."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ASV_BENCH = Path(__file__).resolve().parents[2] / "asv_bench"
sys.path.insert(0, str(ASV_BENCH))

from benchmarks import bench_zoo  # noqa: E402


def test_every_zoo_model_has_a_benchmark_size():
    assert set(bench_zoo.SAMPLES) == set(bench_zoo.MODELS)
    assert bench_zoo.ZooNtk.params == bench_zoo.MODELS


@pytest.mark.parametrize("model", ["resnet", "flax_nnx"])
def test_speedup_over_vmap_jacrev_runs_and_checks_agreement(model):
    pytest.importorskip("torch" if model == "resnet" else "flax")
    bench = bench_zoo.ZooNtk()
    bench.samples, bench.repeat_turns = 8, 1
    bench.setup(model)  # raises if the two NTKs differ
    bench.time_empirical_ntk(model)
    speedup = bench.track_speedup_over_vmap_jacrev(model)
    assert isinstance(speedup, float) and math.isfinite(speedup) and speedup > 0


def test_a_missing_framework_skips_its_models(monkeypatch):
    monkeypatch.setattr(bench_zoo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(NotImplementedError, match="torch is not installed"):
        bench_zoo.ZooNtk().setup("mlp")
