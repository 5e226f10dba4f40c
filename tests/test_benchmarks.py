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


# --- every family's time and memory benchmarks, and the figures script ------

FAMILY_MODULES = (
    "bench_diffusion",
    "bench_hsic",
    "bench_snr",
    "bench_ntk",
    "bench_selection",
    "bench_monitor",
)


def test_new_benchmark_classes_are_found():
    names = {cls.__name__ for cls in CLASSES}
    assert {
        "DiffusionMutualInformation",
        "AdjacencyEntropy",
        "ShannonBaselines",
        "HSICExact",
        "NtkMeasures",
        "EntropySelection",
    } <= names


@pytest.mark.parametrize("name", FAMILY_MODULES)
def test_every_family_has_time_peakmem_and_traced_peak(name):
    module = importlib.import_module(f"benchmarks.{name}")
    methods = {
        method
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
        for method in dir(cls)
    }
    assert any(m.startswith("time_") for m in methods), name
    assert any(m.startswith("peakmem_") for m in methods), name
    traced = [m for m in methods if m.startswith("track_") and m.endswith("_peak")]
    assert traced, name


def test_traced_peak_sees_an_allocation_on_numpy():
    import numpy as np
    from benchmarks._memory import traced_peak

    peak = traced_peak("numpy", lambda: np.ones(1_000_000))
    assert 8_000_000 <= peak < 9_000_000, peak
    # A temporary freed before the end still counts; what was held before not.
    held = np.ones(2_000_000)
    peak = traced_peak("numpy", lambda: float(np.ones(500_000).sum() + held[0]))
    assert 4_000_000 <= peak < 5_000_000, peak


def test_traced_peak_sees_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    from benchmarks._memory import traced_peak

    peak = traced_peak("torch-cpu", lambda: torch.ones(1_000_000, dtype=torch.float64))
    assert 8_000_000 <= peak < 9_000_000, peak


def test_traced_peak_of_jax_cpu_grows_with_the_allocation():
    jnp = pytest.importorskip("jax.numpy")
    from benchmarks._memory import traced_peak

    size = 64 * 2**20  # float32: 256 MiB, touched by the fill
    try:
        peak = traced_peak(
            "jax-cpu",
            lambda: jnp.full(size, 1.0, dtype=jnp.float32).block_until_ready(),
        )
    except NotImplementedError as exc:  # no /proc/self/clear_refs here
        pytest.skip(str(exc))
    assert peak >= 128 * 2**20, peak


def test_traced_peak_skips_a_backend_it_cannot_see():
    from benchmarks._memory import traced_peak

    with pytest.raises(NotImplementedError, match="no memory tracer"):
        traced_peak("no-such", lambda: None)


def test_ntk_traced_peak_runs():
    pytest.importorskip("torch")
    from benchmarks.bench_ntk import EmpiricalNtk

    bench = EmpiricalNtk()
    bench.setup("torch-cpu", 50, "float32")
    try:
        peak = bench.track_empirical_ntk_traced_peak("torch-cpu", 50, "float32")
    finally:
        bench.teardown("torch-cpu", 50, "float32")
    # At least the 50 x 50 float32 result.
    assert isinstance(peak, float) and 50 * 50 * 4 <= peak < 2**30, peak


def test_monitor_record_time_and_memory_methods_run():
    pytest.importorskip("torch")
    from benchmarks.bench_monitor import MonitorRecord

    bench = MonitorRecord()
    bench.setup("torch")
    try:
        bench.time_record("torch")
        bench.peakmem_record("torch")
        peak = bench.track_record_traced_peak("torch")
    finally:
        bench.teardown("torch")
    assert isinstance(peak, float) and math.isfinite(peak) and peak > 0, peak
    assert MonitorRecord.track_record_traced_peak.unit == "bytes"


def test_figures_lists_existing_benchmarks():
    import figures

    for ratio in figures.RATIOS:
        cls = getattr(importlib.import_module(f"benchmarks.{ratio.module}"), ratio.cls)
        for method in ratio.methods:
            assert callable(getattr(cls, method)), (ratio.cls, method)
    for module, name in figures.MEASURES:
        cls = getattr(importlib.import_module(f"benchmarks.{module}"), name)
        assert figures.measure_methods(cls), name


def test_figures_max_size_caps_sizes_but_keeps_each_class_running():
    import figures
    from benchmarks.bench_hsic import HSICApproximateLarge, HSICExact

    def sizes(cls, max_size):
        combos = figures.combinations(
            cls, quick=False, backends=["numpy"], gpu=False, max_size=max_size
        )
        return sorted({params[1] for params in combos})

    assert sizes(HSICExact, None) == sorted(HSICExact.sizes)
    assert sizes(HSICExact, 1000) == [500]
    # Every size is above the cap: the smallest still runs.
    assert sizes(HSICApproximateLarge, 1000) == [min(HSICApproximateLarge.sizes)]


FIGURES_ARGV = [
    "--quick",
    "--only",
    "EigvalshOverhead",
    "--only",
    "ShannonBaselines.time_shannon_entropy",
    "--backend",
    "numpy",
]


@pytest.fixture(scope="module")
def figures_text(tmp_path_factory):
    """What ``figures.py --quick`` writes for two cheap benchmarks on NumPy."""
    import figures

    output = tmp_path_factory.mktemp("figures") / "figures.rst"
    assert figures.main([*FIGURES_ARGV, "--output", str(output)]) == 0
    return output.read_text(), str(output)


def test_figures_quick_writes_machine_command_and_numbers(figures_text):
    text, output = figures_text
    assert re.search(r"^:CPU: .+, \d+ logical cores \(\d+ usable\)$", text, re.M)
    assert re.search(r"^:Python: 3\.\d+", text, re.M)
    assert re.search(r"^:Date: \d{4}-\d\d-\d\d ", text, re.M)
    assert "figures.py " + " ".join([*FIGURES_ARGV, "--output", output]) in text
    # The ratio table: numpy at the smallest size, a positive number.
    ratio = re.search(r"^numpy +256 +float64 +(\d+(?:\.\d+)?)$", text, re.M)
    assert ratio and float(ratio.group(1)) > 0, text
    # The time table: both dtypes at the smallest size, seconds.
    times = re.findall(r"^numpy +2000 +(float32|float64) +(\d\S*)$", text, re.M)
    assert {dtype for dtype, _ in times} == {"float32", "float64"}, text
    assert all(float(seconds) > 0 for _, seconds in times)
    # Only what was asked for ran.
    assert "HSICPlaneLayers" not in text
    assert "time_shannon_mutual_information" not in text


def test_figures_output_is_valid_restructuredtext(figures_text):
    core = pytest.importorskip("docutils.core")
    import io

    warnings = io.StringIO()
    tree = core.publish_doctree(
        figures_text[0],
        settings_overrides={"report_level": 2, "warning_stream": warnings},
    )
    assert warnings.getvalue() == ""
    assert len(list(tree.findall(lambda node: node.tagname == "table"))) == 2


def test_jax_versus_numpy_covers_every_measure_and_returns_ratios():
    pytest.importorskip("jax")
    from benchmarks.bench_jax import MEASURES, JaxCpuVersusNumpy

    assert JaxCpuVersusNumpy.params[0] == list(MEASURES)
    for measure in ("dse", "dsmi", "ntk_mutual_information", "node_snr"):
        bench = JaxCpuVersusNumpy()
        bench.setup(measure, 120, "float32")
        try:
            for name in ("track_ratio_to_numpy", "track_first_call_ratio_to_numpy"):
                ratio = getattr(bench, name)(measure, 120, "float32")
                assert isinstance(ratio, float) and math.isfinite(ratio), name
                assert ratio > 0, (measure, name, ratio)
        finally:
            bench.teardown(measure, 120, "float32")


def test_jax_versus_numpy_computes_the_same_values():
    import numpy as np

    pytest.importorskip("jax")
    from benchmarks.bench_jax import MEASURES, JaxCpuVersusNumpy, _measure

    from infoscope.backends import to_numpy

    bench = JaxCpuVersusNumpy()
    bench.setup("dse", 120, "float64")
    try:
        for measure in MEASURES:
            fn = _measure(measure)
            np.testing.assert_allclose(
                np.asarray(to_numpy(fn(bench.jax)), dtype=float),
                np.asarray(to_numpy(fn(bench.host)), dtype=float),
                rtol=1e-6,
                atol=1e-9,
                err_msg=measure,
            )
    finally:
        bench.teardown("dse", 120, "float64")
