"""Run chosen asv benchmarks in this process and write their figures as reST.

The benchmark classes of ``asv_bench/benchmarks`` are driven the way
``tests/test_benchmarks.py`` drives them, without asv: ``setup(*params)``,
each method, ``teardown(*params)``, for every parameter combination of the
CPU backends this machine has (the GPU ones too with ``--gpu``). The
reStructuredText written holds the machine, the date and the command line,
then one table per figure the project claims (the ratios, each with a line
saying what it means), then the times and traced peak memory of every
measure, per backend x size x dtype.

Usage::

    python asv_bench/figures.py [--quick] [--max-size N] [--only SUBSTRING ...]
        [--backend NAME ...] [--gpu] [--output PATH]

``--quick`` runs the smallest size of each benchmark only (a smoke test: the
figures of the larger sizes are the ones that show the scaling);
``--max-size N`` drops the sizes above N, keeping a class's smallest where
all are above (for a machine that cannot wait for the largest). ``--only``
keeps the benchmarks whose ``module.Class.method`` contains one of the given
substrings. Parameter combinations this machine cannot run are listed as
skipped; a benchmark that fails is reported in the file and makes the exit
status 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from benchmarks import _base, _memory  # noqa: E402

DEFAULT_OUTPUT = HERE.parent / "docs" / "benchmarks_figures.rst"
GPU_BACKENDS = ("torch-cuda", "jax-gpu", "cupy")
# MonitorRecord's "framework" parameter, as the backend whose memory it uses.
FRAMEWORK_BACKENDS = {"torch": "torch-cpu", "jax": "jax-cpu"}
LIBRARIES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "array-api-compat",
    "array-api-strict",
    "torch",
    "jax",
    "jaxlib",
    "cupy",
    "h5py",
    "dse-dsmi",
)


@dataclass(frozen=True)
class Ratio:
    """A table of claimed figures: `methods` of one class, and their meaning."""

    module: str
    cls: str
    methods: tuple[str, ...]
    meaning: str


RATIOS = (
    Ratio(
        "bench_backends",
        "EigvalshOverhead",
        ("track_overhead_ratio",),
        "infoscope's eigvalsh over the library's own on one float64 matrix "
        "(best times, in turns): about 1 when infoscope adds only dispatch; "
        "below 1 on NumPy, where SciPy's solver runs without its finite check.",
    ),
    Ratio(
        "bench_diffusion",
        "DiffusionExact",
        ("track_ratio_to_eigvalsh",),
        "Exact DSE (n x 256 data) over a bare eigvalsh of its n x n operator, "
        "same backend and dtype: the kernel's cost on top of the "
        "eigendecomposition; target at most 1.25.",
    ),
    Ratio(
        "bench_diffusion",
        "DiffusionVersusReference",
        ("track_exact_speedup", "track_approximate_speedup"),
        "dse-dsmi 1.1's exact DSE (max_N lifted) over infoscope's exact and "
        "approximate DSE, NumPy, d = 256: times faster, higher is better; "
        "approximate target at least 20 at n = 10,000.",
    ),
    Ratio(
        "bench_hsic",
        "HSICPlaneLayers",
        ("track_ratio_to_grams", "track_ratio_to_grams_median_sigma"),
        "HSICPlane.transform on 4 layers over 4 plain n x n Gaussian Grams, "
        "with a fixed sigma (target about 1) and with each layer's median "
        "sigma (its selection is extra work).",
    ),
    Ratio(
        "bench_hsic",
        "HSICApproximateLarge",
        ("track_time_per_sample_ratio",),
        "Approximate HSIC's time per sample at n over that at n / 10, fixed "
        "bandwidths: 1 is linear in n.",
    ),
    Ratio(
        "bench_snr",
        "NodeSnr",
        ("track_ratio_to_products",),
        "node_snr (n x 1024 inputs, 1024 x 1000 weights) over its two "
        "products x W and x^T r alone: 1 would make the rest free; target at "
        "most 1.5 at n = 10,000.",
    ),
    Ratio(
        "bench_ntk",
        "NtkSpeedup",
        ("track_speedup_over_jacobian_contraction",),
        "The per-sample-Jacobian contraction's NTK time over infoscope's "
        "(MLP 64-256-256-10, 'mean' mode, in turns): times faster.",
    ),
    Ratio(
        "bench_zoo",
        "ZooNtk",
        ("track_speedup_over_vmap_jacrev",),
        "A plain vmap(jacrev) contraction's NTK time over infoscope's, per zoo "
        "model (float32, CPU, 'mean' mode, in turns; a loop of jacrev where "
        "vmap cannot run the model): times faster; target at least 0.9.",
    ),
    Ratio(
        "bench_ntk",
        "NtkAgainstNeuralTangents",
        ("track_speedup_over_neural_tangents",),
        "neural-tangents 0.6.5's recorded first-call time "
        "(JACOBIAN_CONTRACTION, unbatched) over infoscope's first call, "
        "compilation included: times faster.",
    ),
    Ratio(
        "bench_monitor",
        "MonitorRecord",
        ("track_ratio_to_direct",),
        "Median time of one Monitor.record of the demo's measures over the "
        "same adapters and estimators called by hand: about 1 when the "
        "bookkeeping is cheap.",
    ),
)

#: The classes whose time_* and track_*_traced_peak methods are tabled.
MEASURES = (
    ("bench_diffusion", "DiffusionExact"),
    ("bench_diffusion", "DiffusionApproximateLarge"),
    ("bench_diffusion", "DiffusionMutualInformation"),
    ("bench_diffusion", "AdjacencyEntropy"),
    ("bench_diffusion", "ShannonBaselines"),
    ("bench_hsic", "HSICExact"),
    ("bench_hsic", "HSICPlaneLayers"),
    ("bench_hsic", "HSICApproximateLarge"),
    ("bench_hsic", "HSICPlaneApproximate"),
    ("bench_snr", "NodeSnr"),
    ("bench_ntk", "EmpiricalNtk"),
    ("bench_ntk", "NtkMeasures"),
    ("bench_selection", "EntropySelection"),
    ("bench_monitor", "MonitorRecord"),
)

TRACED = "_traced_peak"


@dataclass
class Outcome:
    """What one parameter combination of one class gave."""

    params: tuple
    values: dict[str, Any] = field(default_factory=dict)  # method -> float/str
    skipped: str | None = None


@dataclass
class ClassRun:
    module: str
    cls: str
    methods: list[str]
    param_names: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def measure_methods(cls: type) -> list[str]:
    """The ``time_*`` and ``track_*_traced_peak`` methods of `cls`."""
    names = [n for n in dir(cls) if n.startswith("time_")]
    names += [n for n in dir(cls) if n.startswith("track_") and n.endswith(TRACED)]
    return names


def plan(only: list[str]) -> list[tuple[str, str, list[str]]]:
    """(module, class, methods) to run, in table order, after ``--only``."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for ratio in RATIOS:
        wanted.setdefault((ratio.module, ratio.cls), []).extend(ratio.methods)
    for module, name in MEASURES:
        cls = getattr(importlib.import_module(f"benchmarks.{module}"), name)
        methods = wanted.setdefault((module, name), [])
        methods.extend(m for m in measure_methods(cls) if m not in methods)
    selected = []
    for (module, name), methods in wanted.items():
        keep = [
            m
            for m in methods
            if not only or any(s in f"{module}.{name}.{m}" for s in only)
        ]
        if keep:
            selected.append((module, name, keep))
    return selected


def combinations(
    cls: type,
    *,
    quick: bool,
    backends: list[str],
    gpu: bool,
    max_size: int | None = None,
) -> list:
    """The parameter combinations of `cls` to run here.

    `max_size` drops the sizes above it; a class with none at or below it
    keeps its smallest.
    """
    params = cls.params
    if not params or not isinstance(params[0], list | tuple):
        params = [params]
    names = list(getattr(cls, "param_names", [])) or ["param"]
    axes = []
    for name, values in zip(names, params, strict=True):
        values = list(values)
        if name == "backend":
            values = [b for b in values if gpu or b not in GPU_BACKENDS]
            if backends:
                values = [b for b in values if b in backends]
        elif name == "framework" and backends:
            values = [f for f in values if FRAMEWORK_BACKENDS.get(f) in backends]
        elif name == "n" and quick:
            values = [min(values)]
        elif name == "n" and max_size is not None:
            values = [v for v in values if v <= max_size] or [min(values)]
        axes.append(values)
    return list(itertools.product(*axes))


def run_class(
    module: str,
    name: str,
    methods: list[str],
    *,
    quick: bool,
    backends: list[str],
    gpu: bool,
    log: Any,
    max_size: int | None = None,
) -> ClassRun:
    cls = getattr(importlib.import_module(f"benchmarks.{module}"), name)
    names = list(getattr(cls, "param_names", [])) or ["param"]
    run = ClassRun(module, name, methods, names)
    repeat = 1 if quick else 3
    for params in combinations(
        cls, quick=quick, backends=backends, gpu=gpu, max_size=max_size
    ):
        outcome = Outcome(params)
        run.outcomes.append(outcome)
        label = f"{name}{params}"
        start = time.perf_counter()
        bench = cls()
        try:
            bench.setup(*params)
        except NotImplementedError as exc:
            outcome.skipped = str(exc) or type(exc).__name__
            print(f"  {label}: skipped ({outcome.skipped})", file=log, flush=True)
            continue
        except Exception as exc:  # a failing setup fails every method
            outcome.skipped = "error"
            run.errors.append(f"{label} setup: {type(exc).__name__}: {exc}")
            print(f"  {label}: setup failed: {exc!r}", file=log, flush=True)
            continue
        try:
            for method in methods:
                fn = getattr(bench, method)
                try:
                    if method.startswith("time_"):
                        (value,) = _base.best_times(
                            lambda fn=fn, p=params: fn(*p), repeat=repeat, budget=2.0
                        )
                    else:
                        value = float(fn(*params))
                except NotImplementedError as exc:
                    value = f"n/a: {exc}"
                except Exception as exc:
                    value = "error"
                    run.errors.append(f"{label} {method}: {type(exc).__name__}: {exc}")
                outcome.values[method] = value
        finally:
            bench.teardown(*params)
        print(f"  {label}: {time.perf_counter() - start:.1f} s", file=log, flush=True)
    return run


# --- the report -------------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    """(field, value) lines describing this machine and its software."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    memory = "unknown"
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return [
        ("CPU", f"{cpu}, {cores} logical cores ({usable} usable)"),
        ("Memory", memory),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Libraries", ", ".join(versions)),
        ("GPU", gpus()),
        ("infoscope", infoscope_version()),
    ]


def gpus() -> str:
    """The GPU backends this machine has, by device name and model."""
    found = []
    for backend in GPU_BACKENDS:
        if _base.skip_reason(backend) is not None:
            continue
        spec = _base.spec_for(backend, "float32")
        try:
            from infoscope.backends import device_name
            from infoscope.backends._testing import namespace_of

            _, device = namespace_of(spec)
            found.append(f"{backend}: {device_name(device)} ({_gpu_model(backend)})")
        except Exception as exc:  # report, do not fail the figures
            found.append(f"{backend}: unreadable ({exc})")
    return "; ".join(found) if found else "none"


def _gpu_model(backend: str) -> str:
    if backend == "torch-cuda":
        import torch

        return torch.cuda.get_device_name(0)
    if backend == "jax-gpu":
        import jax

        return jax.devices("gpu")[0].device_kind
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def infoscope_version() -> str:
    import infoscope

    text = infoscope.__version__
    try:
        root = HERE.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        text += f" (git {commit}{', uncommitted changes' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    return text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """An rST simple table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

    return [rule, line(header), rule, *(line(r).rstrip() for r in rows), rule]


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return "n/a" if value.startswith("n/a") else value
    if kind == "time":
        return f"{value:.4g}"
    if kind == "bytes":
        return f"{value / 2**20:.1f}"
    return f"{value:.3g}"


def _header(method: str, kind: str) -> str:
    if kind == "time":
        return f"{method} (s)"
    if kind == "bytes":
        return f"{method} (MiB)"
    return method


def class_table(run: ClassRun, methods: list[str], kind: str) -> list[str]:
    rows = []
    for outcome in run.outcomes:
        if outcome.skipped is not None and outcome.skipped != "error":
            continue
        cells = [str(p) for p in outcome.params]
        if outcome.skipped == "error":
            cells += ["error"] * len(methods)
        else:
            cells += [_cell(outcome.values.get(m), kind) for m in methods]
        rows.append(cells)
    if not rows:
        return ["No parameter combination ran on this machine."]
    header = [*run.param_names, *(_header(m, kind) for m in methods)]
    return table(header, rows)


def plain_rst(text: str) -> str:
    """`text` without Sphinx roles (``:func:`~a.b``` becomes ````a.b````), so
    that plain docutils reads the file too."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"``\1``", text)


def _title(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def _reference_note() -> str:
    from benchmarks import bench_ntk

    try:
        info = json.loads(bench_ntk.REFERENCE.read_text())
    except (OSError, ValueError) as exc:
        return f"No neural-tangents reference could be read ({exc})."
    runs = [
        f"n = {r['n']}: {r['seconds_first_call']:.1f} s"
        for r in info.get("runs", [])
        if r.get("implementation") == "JACOBIAN_CONTRACTION"
        and not r.get("batch_size")
        and not r.get("error")
    ]
    return (
        f"The reference (asv_bench/reference/nt_reference.json): neural-tangents "
        f"{info.get('neural_tangents')} on JAX {info.get('jax')}, recorded "
        f"{info.get('recorded')} on {info.get('cpus')} CPUs "
        f"({info.get('machine')}), {'; '.join(runs)}. Its note: "
        f"{info.get('note', '')}"
    )


def report(
    runs: list[ClassRun], *, command: str, started: datetime.datetime, seconds: float
) -> str:
    by_name = {(r.module, r.cls): r for r in runs}
    lines = _title("Benchmark figures", "=")
    lines += [
        "Written by ``asv_bench/figures.py``, which runs the asv benchmarks in "
        "one process without asv. Ratios are taken in turns within one "
        "process and are the figures to compare between machines; times and "
        "memory are this machine's.",
        "",
    ]
    lines += _title("Machine", "-")
    for key, value in machine():
        lines.append(f":{key}: {value}")
    lines.append(f":Date: {started.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    lines.append(f":Duration: {seconds:.0f} s")
    lines += ["", "Command::", "", f"    {command}", ""]

    ratio_lines = []
    for ratio in RATIOS:
        run = by_name.get((ratio.module, ratio.cls))
        if run is None:
            continue
        methods = [m for m in ratio.methods if m in run.methods]
        if not methods:
            continue
        ratio_lines += _title(f"{ratio.cls}", "~")
        ratio_lines += [ratio.meaning, ""]
        if ratio.cls == "NtkAgainstNeuralTangents":
            ratio_lines += [_reference_note(), ""]
        ratio_lines += [*class_table(run, methods, "ratio"), ""]
    if ratio_lines:
        lines += _title("Claimed ratios", "-")
        lines += ratio_lines

    measure_lines = []
    for module, name in MEASURES:
        run = by_name.get((module, name))
        if run is None:
            continue
        times = [m for m in run.methods if m.startswith("time_")]
        peaks = [m for m in run.methods if m.endswith(TRACED)]
        if not times and not peaks:
            continue
        cls = getattr(importlib.import_module(f"benchmarks.{module}"), name)
        doc = plain_rst(" ".join((cls.__doc__ or "").split("\n\n")[0].split()))
        measure_lines += _title(name, "~")
        measure_lines += [doc, ""]
        if times:
            measure_lines += [
                "Best time of one call, in seconds.",
                "",
                *class_table(run, times, "time"),
                "",
            ]
        if peaks:
            measure_lines += [
                "Traced peak of one call, in MiB (see below for how each "
                "backend is traced).",
                "",
                *class_table(run, peaks, "bytes"),
                "",
            ]
    if measure_lines:
        lines += _title("Times and traced peak memory", "-")
        lines += [
            "The traced peak is the most memory allocated during one call "
            "and held at once, its result included, as the backend's "
            "allocator reports it; asv's peakmem_* figures are the whole "
            "process's peak resident size instead, imports included. How "
            "each backend is traced:",
            "",
        ]
        lines += [f"- {b}: {how}" for b, how in _memory.TRACERS.items()]
        lines += [""]
        lines += measure_lines

    skipped = [
        f"- {r.cls}{o.params}: {o.skipped}"
        for r in runs
        for o in r.outcomes
        if o.skipped not in (None, "error")
    ]
    unavailable = [
        f"- {r.cls}{o.params} {m}: {v[len('n/a: ') :]}"
        for r in runs
        for o in r.outcomes
        for m, v in o.values.items()
        if isinstance(v, str) and v.startswith("n/a")
    ]
    if skipped or unavailable:
        lines += _title("Not run here", "-")
        lines += [*skipped, *unavailable, ""]
    errors = [f"- {e}" for r in runs for e in r.errors]
    if errors:
        lines += _title("Errors", "-")
        lines += [*errors, ""]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="figures.py",
        description="Run asv benchmarks in-process and write their figures as reST.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smallest size of each benchmark only"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        metavar="N",
        help="skip sizes above N (a class with none at or below N runs its smallest)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="run the benchmarks whose module.Class.method contains it (repeatable)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        choices=_base.BACKENDS,
        help="run only this backend (repeatable; default: every CPU backend)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="also run the GPU backends this machine has"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"the reST file to write (default: {DEFAULT_OUTPUT})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report; 1 if any benchmark failed."""
    if argv is None:
        argv, program = sys.argv[1:], sys.argv[0]
    else:
        program = os.path.relpath(__file__)
    args = parse(argv)
    command = shlex.join([sys.executable, program, *argv])
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    selected = plan(args.only)
    if not selected:
        print(f"no benchmark matches --only {args.only}", file=sys.stderr)
        return 2
    runs = []
    for module, name, methods in selected:
        print(f"{module}.{name}: {', '.join(methods)}", file=sys.stderr, flush=True)
        runs.append(
            run_class(
                module,
                name,
                methods,
                quick=args.quick,
                backends=args.backend,
                gpu=args.gpu,
                log=sys.stderr,
                max_size=args.max_size,
            )
        )
    text = report(
        runs, command=command, started=started, seconds=time.perf_counter() - clock
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    errors = sum(len(r.errors) for r in runs)
    print(f"wrote {args.output} ({errors} errors)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
