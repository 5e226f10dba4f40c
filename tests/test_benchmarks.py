"""The asv benchmarks run, without asv: every benchmark once, on NumPy, at its
smallest size; and parameters this machine cannot run are skipped the asv way."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ASV_BENCH = Path(__file__).resolve().parents[1] / "asv_bench"
sys.path.insert(0, str(ASV_BENCH))

import benchmarks  # noqa: E402
from benchmarks import _base  # noqa: E402

MODULES = [
    importlib.import_module(info.name)
    for info in pkgutil.iter_modules(benchmarks.__path__, "benchmarks.")
    if not info.name.rpartition(".")[2].startswith("_")
]
CLASSES = [
    cls
    for module in MODULES
    for _, cls in inspect.getmembers(module, inspect.isclass)
    if issubclass(cls, _base.BackendBenchmark) and cls.__module__ == module.__name__
]
PREFIXES = ("time_", "track_", "peakmem_")


def test_benchmarks_are_found():
    names = {cls.__name__ for cls in CLASSES}
    assert {"Eigvalsh", "EigvalshOverhead", "PairwiseMemory", "KnnIndices"} <= names


def test_benchmarks_import_without_asv():
    # None in sys.modules makes an import fail, as if asv were not installed.
    code = (
        "import sys; sys.modules['asv'] = sys.modules['asv_runner'] = None; "
        f"sys.path.insert(0, {str(ASV_BENCH)!r}); "
        + "; ".join(f"import {module.__name__}" for module in MODULES)
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_benchmark_runs_on_numpy(cls):
    assert cls.param_names == ["backend", "n", "dtype"]
    backends, sizes, dtypes = cls.params
    assert "numpy" in backends
    methods = [name for name in dir(cls) if name.startswith(PREFIXES)]
    assert methods, f"{cls.__name__} has no benchmark method"
    n = min(sizes)
    for dtype in dtypes:
        bench = cls()
        bench.setup("numpy", n, dtype)
        try:
            for name in methods:
                result = getattr(bench, name)("numpy", n, dtype)
                if name.startswith("track_"):
                    assert isinstance(result, float), (name, result)
                    assert math.isfinite(result), (name, result)
                    assert result > 0, (name, result)
                    assert getattr(cls, name).unit != "unit", name
        finally:
            bench.teardown("numpy", n, dtype)


def test_pairwise_holds_no_n_by_n_by_d_temporary():
    from benchmarks.bench_backends import PairwiseMemory

    bench = PairwiseMemory()
    n = min(PairwiseMemory.sizes)
    bench.setup("numpy", n, "float64")
    peak = bench.track_pairwise_traced_peak("numpy", n, "float64")
    # The result alone is one n x n array; an n x n x d temporary is d of them.
    assert 1 <= peak < 4, peak


def test_data_is_seeded_and_in_the_requested_dtype():
    from benchmarks.bench_backends import Eigvalsh

    first, second = Eigvalsh(), Eigvalsh()
    first.setup("numpy", 256, "float32")
    second.setup("numpy", 256, "float32")
    assert first.a.dtype.name == "float32"
    assert first.a.shape == (256, 256)
    assert (first.a == second.a).all()
    assert (first.a == first.a.T).all()


def test_setup_skips_a_dtype_the_device_lacks(monkeypatch):
    from benchmarks.bench_backends import Eigvalsh

    monkeypatch.setattr(_base, "supports_float64", lambda xp, device: False)
    with pytest.raises(NotImplementedError, match="no float64"):
        Eigvalsh().setup("numpy", 256, "float64")
    Eigvalsh().setup("numpy", 256, "float32")


def test_setup_skips_unknown_and_missing_backends():
    from benchmarks.bench_backends import Eigvalsh

    with pytest.raises(NotImplementedError, match="unknown backend 'no-such'"):
        Eigvalsh().setup("no-such", 256, "float64")
    for backend in _base.BACKENDS:
        reason = _base.skip_reason(backend)
        if reason is not None:  # e.g. torch-cuda on a machine without a GPU
            with pytest.raises(NotImplementedError, match=re.escape(reason)):
                Eigvalsh().setup(backend, 256, "float32")


def test_jax_x64_follows_the_dtype_and_is_restored():
    jax = pytest.importorskip("jax")
    from benchmarks.bench_backends import Eigvalsh

    before = jax.config.jax_enable_x64
    for dtype, x64 in (("float64", True), ("float32", False)):
        bench = Eigvalsh()
        bench.setup("jax-cpu", 256, dtype)
        try:
            assert jax.config.jax_enable_x64 is x64
            assert str(bench.a.dtype) == dtype
        finally:
            bench.teardown("jax-cpu", 256, dtype)
        assert jax.config.jax_enable_x64 == before


def test_subclass_must_set_sizes():
    with pytest.raises(TypeError, match="sizes"):
        type("NoSizes", (_base.BackendBenchmark,), {})


def test_timeraw_import_runs():
    from benchmarks.bench_backends import timeraw_import_infoscope

    code = timeraw_import_infoscope()
    assert isinstance(code, str)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
