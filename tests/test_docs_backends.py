"""The backend table of docs/user_guide/backends.rst is true.

The table between the ``.. backend-table-start`` and ``.. backend-table-end``
markers has one row per public measure, estimator, selector and adapter and
one column per array library and device. Each cell starts with:

- ``yes``: the row runs on that library and device, and its array results
  come back there (scalars are finite Python numbers);
- ``no``: the row refuses that library with the error its footnote quotes
  (the first ``ErrorType: message`` literal of the footnote);
- ``input`` (adapters only): the adapter accepts inputs of that library and
  returns arrays of its own framework.

Every row is called here on tiny data of every library present; the GPU
columns skip on machines without the device. Most of the time goes to JAX,
which compiles each operation at each new shape (the rows share their
shapes to compile less), and to importing Keras, whose PyTorch backend is
checked in a second process started at the beginning.
"""

from __future__ import annotations

import builtins
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import infoscope
from infoscope import selection
from infoscope.backends import (
    device_name,
    is_array,
    namespace_and_device,
    namespace_name,
    supports_float64,
    to_numpy,
)
from infoscope.backends._testing import BACKENDS, missing_reason, namespace_of, place

DOC = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "backends.rst"

# ---- the table, as the page writes it


def _table_lines(text: str) -> list[str]:
    start = text.index(".. backend-table-start")
    end = text.index(".. backend-table-end")
    return text[start:end].splitlines()


def parse_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The column headers and ``row label -> cells`` of the list-table."""
    rows: list[list[str]] = []
    for line in _table_lines(text):
        if line.startswith("   * - "):
            rows.append([line[len("   * - ") :].strip()])
        elif line.startswith("     - "):
            rows[-1].append(line[len("     - ") :].strip())
        elif line.startswith("       ") and rows:  # a wrapped cell
            rows[-1][-1] += " " + line.strip()
    header, *body = rows
    table = {row[0]: row[1:] for row in body}
    assert len(table) == len(body), "two rows have the same first cell"
    for label, cells in table.items():
        assert len(cells) == len(header) - 1, f"row {label!r} has {len(cells)} cells"
    return header[1:], table


def parse_footnotes(text: str) -> dict[str, str]:
    """Footnote label -> its text, whitespace collapsed."""
    notes: dict[str, str] = {}
    label = None
    for line in text.splitlines():
        match = re.match(r"\.\. \[#([\w-]+)\] (.*)", line)
        if match:
            label = match.group(1)
            notes[label] = match.group(2)
        elif label and line.startswith("   ") and line.strip():
            notes[label] += " " + line.strip()
        else:
            label = None
    return notes


TEXT = DOC.read_text(encoding="utf-8")
COLUMNS, TABLE = parse_table(TEXT)
NOTES = parse_footnotes(TEXT)


def documented_error(cell: str) -> tuple[type[BaseException], str]:
    """The exception type and message a ``no [#label]_`` cell's footnote quotes."""
    match = re.search(r"\[#([\w-]+)\]_", cell)
    assert match, f"the cell {cell!r} names no footnote with its error"
    note = NOTES[match.group(1)]
    for literal in re.findall(r"``(.+?)``", note):
        quoted = re.match(r"(\w+Error): (.+)", literal)
        if quoted:
            return getattr(builtins, quoted.group(1)), quoted.group(2)
    if re.search(r"\[#([\w-]+)\]_", note):  # "refused as in note [#other]_"
        return documented_error(note)
    raise AssertionError(f"footnote {match.group(1)!r} quotes no error: {note}")


# ---- the libraries of the columns

COLUMN_SPECS = {
    "NumPy": "numpy",
    "array-api-strict": "array_api_strict",
    "PyTorch CPU": "torch-cpu",
    "PyTorch CUDA": "torch-cuda",
    # JAX runs without x64 here, its default (and the float32 path); the
    # family tests run every backend test with and without it.
    "JAX CPU": "jax-cpu-x32",
    "JAX GPU": "jax-gpu-x32",
    "CuPy": "cupy",
    "dask": None,
}
SPECS = {spec.id: spec for spec in BACKENDS}


class Library:
    """One column: puts NumPy data there and says what results must be."""

    def __init__(self, column: str):
        self.column = column
        spec_id = COLUMN_SPECS[column]
        self.spec = None if spec_id is None else SPECS[spec_id]
        if self.spec is None:
            self.name, self.gpu = "dask", False
        else:
            self.name, self.gpu = self.spec.library, self.spec.device == "gpu"

    def missing(self) -> str | None:
        if self.spec is None:
            found = importlib.util.find_spec("dask") is not None
            return None if found else "dask is not installed"
        return missing_reason(self.spec)

    def setup(self) -> None:
        if self.name == "jax":
            import jax

            jax.config.update("jax_enable_x64", bool(self.spec.x64))
        if self.spec is not None:
            self.xp, self.device = namespace_of(self.spec)
            self.float64 = supports_float64(self.xp, self.device)
        else:
            self.float64 = True

    def put(self, a: Any) -> Any:
        a = np.asarray(a)
        if a.dtype == np.float64 and not self.float64:
            a = a.astype(np.float32)
        if self.spec is None:
            import dask.array as da

            return da.from_array(a, chunks=(max(1, (len(a) + 1) // 2), *a.shape[1:]))
        return place(self.spec, a)


LIBRARIES = {column: Library(column) for column in COLUMNS}


@pytest.fixture
def library(request):
    lib: Library = request.param
    reason = lib.missing()
    if reason is not None:
        pytest.skip(reason)
    if lib.name != "jax":
        lib.setup()
        yield lib
        return
    import jax

    before = jax.config.jax_enable_x64
    lib.setup()
    try:
        yield lib
    finally:
        jax.config.update("jax_enable_x64", before)


# ---- tiny data, the same shapes everywhere (JAX compiles once per shape)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((24, 4))
H = np.tanh(X @ RNG.standard_normal((4, 4)))
Y3 = np.tile([0, 1, 2], 8)  # every class in each half (partial_fit)
W = RNG.standard_normal((4, 3))
_J = RNG.standard_normal((24, 40))
K = _J @ _J.T
# The approximate diffusion methods run from 600 samples (per class) up.
X_LARGE = RNG.uniform(size=(600, 4))
SLQ = {"n_probes": 2, "n_deflate": 4, "n_lanczos_steps": 3, "random_state": 0}


MEASURES: dict[str, Any] = {}


def row(label: str):
    """Register the case that checks the table row whose first cell is `label`."""

    def register(case):
        MEASURES[label] = case
        return case

    return register


@row(':func:`~infoscope.diffusion_spectral_entropy`, ``method="exact"``')
def _dse_exact(put):
    return infoscope.diffusion_spectral_entropy(put(X), method="exact")


@row(':func:`~infoscope.diffusion_spectral_entropy`, ``method="approximate"`` [#slq]_')
def _dse_approximate(put):
    return infoscope.diffusion_spectral_entropy(
        put(X_LARGE), method="approximate", **SLQ
    )


@row(':func:`~infoscope.diffusion_spectral_mutual_information`, ``method="exact"``')
def _dsmi_exact(put):
    return infoscope.diffusion_spectral_mutual_information(
        put(X), Y3, method="exact", random_state=0
    )


@row(
    ":func:`~infoscope.diffusion_spectral_mutual_information`, "
    '``method="approximate"`` [#slq]_'
)
def _dsmi_approximate(put):
    # One class: the class and its random subsets have the shape of X_LARGE,
    # which the row above has compiled already on JAX.
    return infoscope.diffusion_spectral_mutual_information(
        put(X_LARGE), np.zeros(600, int), method="approximate", n_repetitions=1, **SLQ
    )


@row(
    ':func:`~infoscope.adjacency_spectral_entropy`, ``variant="gaussian"`` or '
    '``"anisotropic"``'
)
def _ase(put):
    return (
        infoscope.adjacency_spectral_entropy(put(X)),
        infoscope.adjacency_spectral_entropy(put(X), variant="anisotropic"),
    )


@row(':func:`~infoscope.adjacency_spectral_entropy`, ``variant="knn"``')
def _ase_knn(put):
    return infoscope.adjacency_spectral_entropy(put(X), variant="knn", n_neighbors=3)


@row(":class:`~infoscope.DiffusionSpectralEntropy`")
def _dse_estimator(put):
    est = infoscope.DiffusionSpectralEntropy().fit(put(X))
    return est.entropy_, est.eigenvalues_, est.transform(put(X))


@row(":class:`~infoscope.DiffusionSpectralMutualInformation`")
def _dsmi_estimator(put):
    est = infoscope.DiffusionSpectralMutualInformation(random_state=0)
    est.fit(put(X), Y3)
    return est.mutual_information_, est.transform(put(X))


@row(":func:`~infoscope.shannon_entropy`")
def _shannon(put):
    return infoscope.shannon_entropy(put(X))


@row(":func:`~infoscope.shannon_mutual_information`")
def _shannon_mi(put):
    return infoscope.shannon_mutual_information(put(X), Y3, random_state=0)


@row(':func:`~infoscope.hsic`, ``method="exact"``')
def _hsic_exact(put):
    return infoscope.hsic(put(H), put(X))


@row(':func:`~infoscope.hsic`, ``method="approximate"``')
def _hsic_approximate(put):
    return infoscope.hsic(
        put(H), put(X), method="approximate", n_components=16, random_state=0
    )


@row(":func:`~infoscope.cka`")
def _cka(put):
    return infoscope.cka(put(H), put(X))


@row(':func:`~infoscope.hsic_test`, ``method="permutation"`` or ``"gamma"``')
def _hsic_test(put):
    return (
        infoscope.hsic_test(put(H), put(X), n_permutations=5, random_state=0),
        infoscope.hsic_test(put(H), put(X), method="gamma"),
    )


@row(":class:`~infoscope.HSIC`, ``fit`` and ``partial_fit``")
def _hsic_estimator(put):
    whole = infoscope.HSIC().fit(put(H), Y3).hsic_
    stream = infoscope.HSIC(method="approximate", n_components=16, random_state=0)
    # Two chunks of one shape: one compilation on JAX.
    stream.partial_fit(put(H), Y3).partial_fit(put(X), Y3)
    return whole, stream.hsic_


@row(":class:`~infoscope.HSICPlane`, exact and approximate")
def _plane(put):
    layers = [put(H), put(X)]
    exact = infoscope.HSICPlane().fit(put(X), Y3).transform(layers)
    approximate = infoscope.HSICPlane(
        method="approximate", n_components=16, random_state=0
    )
    return exact, approximate.fit(put(X), Y3).transform(layers)


@row(":func:`~infoscope.node_snr`")
def _node_snr(put):
    return infoscope.node_snr(put(np.abs(X)), put(W))


@row(":func:`~infoscope.node_snr_table`")
def _node_snr_table(put):
    (layer,) = infoscope.node_snr_table([("fc", put(np.abs(X)), put(W))])
    return layer[1:]  # the numbers after the name


@row(":class:`~infoscope.NodeSNR`, ``fit`` and ``partial_fit``")
def _node_snr_estimator(put):
    est = infoscope.NodeSNR().fit(put(np.abs(X)), weights=put(W))
    stream = infoscope.NodeSNR().partial_fit(put(np.abs(X)), weights=put(W))
    stream.partial_fit(put(np.abs(H)), weights=put(W))
    return est.optimality_, est.signal_factor_, stream.optimality_


@row(":func:`~infoscope.ntk_entropy`")
def _ntk_entropy(put):
    return infoscope.ntk_entropy(put(K))


@row(":func:`~infoscope.ntk_mutual_information`")
def _ntk_mi(put):
    result = infoscope.ntk_mutual_information(put(K), Y3)
    return result.mutual_information, result.normalized_mutual_information


@row(":class:`~infoscope.NTKEntropy`")
def _ntk_entropy_estimator(put):
    est = infoscope.NTKEntropy().fit(put(K))
    return est.entropy_, est.eigenvalues_


@row(":class:`~infoscope.NTKMutualInformation`")
def _ntk_mi_estimator(put):
    est = infoscope.NTKMutualInformation().fit(put(K), Y3)
    return est.mutual_information_, est.normalized_mutual_information_


@row(":class:`~infoscope.selection.MaxEntropySelector`")
def _max_entropy(put):
    est = selection.MaxEntropySelector(4, n_candidates=5, random_state=0)
    est.fit(put(K))
    return est.entropy_, est.indices_, est.candidate_entropies_


@row(":class:`~infoscope.selection.GreedyEntropySelector`")
def _greedy(put):
    est = selection.GreedyEntropySelector(2, random_state=0).fit(put(K))
    return est.entropy_, est.indices_


@row(':class:`~infoscope.selection.RandomSelector`, ``kernel="precomputed"``')
def _random(put):
    est = selection.RandomSelector(4, kernel="precomputed", random_state=0)
    est.fit(put(K))
    return est.entropy_, est.indices_


ADAPTERS = {
    ":mod:`infoscope.adapters.torch`: ``activations``, ``dense_layers``, "
    "``empirical_ntk``": "torch",
    ":mod:`infoscope.adapters.jax`: ``activations``, ``dense_layers``, "
    "``empirical_ntk``": "jax",
    ":mod:`infoscope.adapters.keras`: ``activations``, ``dense_layers``, "
    "``empirical_ntk``": "keras",
}


def test_every_row_has_a_case_and_every_case_a_row():
    assert set(TABLE) == set(MEASURES) | set(ADAPTERS)
    assert COLUMNS == list(COLUMN_SPECS)
    for label, cells in TABLE.items():
        for cell in cells:
            word = cell.split()[0]
            assert word in ("yes", "no", "input"), f"{label}: cell {cell!r}"
            assert (word == "input") <= (label in ADAPTERS), f"{label}: {cell!r}"


# ---- checking results


def _leaves(result: Any) -> list[Any]:
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in _leaves(item)]
    return [result]


def assert_on(result: Any, lib: Library, library_name: str | None = None) -> None:
    """Every number finite; every array in `library_name` (or `lib`'s), on its device."""
    expected = library_name or lib.name
    leaves = _leaves(result)
    assert leaves
    for leaf in leaves:
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            assert math.isfinite(leaf), result
            continue
        assert is_array(leaf), f"unexpected result {leaf!r}"
        xp, device = namespace_and_device(leaf)
        assert namespace_name(xp) == expected
        if library_name is None and lib.spec is not None:
            assert device_name(device) == device_name(lib.device)
        assert np.all(np.isfinite(to_numpy(leaf).astype(np.float64)))


def _row_id(label: str) -> str:
    """A short test id: the name, and the first option the row is about."""
    name = re.search(r"infoscope\.(?:selection\.)?([\w.]+)`", label).group(1)
    option = re.search(r'"(\w+)"', label)
    return name + (f"[{option.group(1)}]" if option else "")


def _cells(rows: dict) -> list:
    return [
        pytest.param(
            label,
            LIBRARIES[column],
            TABLE[label][i],
            id=f"{_row_id(label)}-{column.replace(' ', '_')}",
        )
        for label in rows
        for i, column in enumerate(COLUMNS)
    ]


@pytest.mark.parametrize(
    ("label", "library", "cell"), _cells(MEASURES), indirect=["library"]
)
def test_measure_cell(label, library, cell):
    case = MEASURES[label]
    if cell.startswith("yes"):
        assert_on(case(library.put), library)
    else:
        error, message = documented_error(cell)
        with pytest.raises(error) as info:
            case(library.put)
        assert message in " ".join(str(info.value).split())


# ---- adapters: the model lives in its framework, inputs come from anywhere


def _torch_model(device: str):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)
    ).to(device=device, dtype=torch.float64)


def _jax_model(device: Any):
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    params = {
        "w1": rng.standard_normal((4, 6)) / 2,
        "b1": np.zeros(6),
        "w2": rng.standard_normal((6, 2)) / 2,
    }
    params = {k: jax.device_put(jnp.asarray(v), device) for k, v in params.items()}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    return apply_fn, params


def _run_adapter(module: Any, args: tuple, X_in: Any) -> tuple:
    acts = module.activations(*args, X_in)
    dense = module.dense_layers(*args, X_in)
    ntk = module.empirical_ntk(*args, X_in)
    return (*acts.values(), *[a for _, x, w in dense for a in (x, w)], ntk)


# Keras picks its backend once per process: the backend this process does not
# run is checked in a fresh one, started early (see _start_keras) so that it
# runs while the other cells do.
_KERAS_SCRIPT = """
import numpy as np, keras
from infoscope.adapters import keras as ka
from infoscope.backends import namespace_and_device, namespace_name, to_numpy
keras.utils.set_random_seed(0)
with keras.device({device!r}):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.Dense(2)])
X = np.random.default_rng(0).standard_normal((24, 4)).astype(np.float32)
out = [*ka.activations(model, X).values(), ka.empirical_ntk(model, X)]
out += [a for _, x, w in ka.dense_layers(model, X) for a in (x, w)]
for a in out:
    assert namespace_name(namespace_and_device(a)[0]) == {library!r}, type(a)
    where = str(namespace_and_device(a)[1]).lower()
    assert any(kind in where for kind in {kinds!r}), where
    assert np.isfinite(to_numpy(a)).all()
print("ok", keras.backend.backend())
"""
_KERAS_RUNS: dict[tuple[str, str], Any] = {}


def _keras_backend_here() -> str:
    """The backend Keras has, or will have, in this process."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.backend.backend()
    return os.environ.setdefault("KERAS_BACKEND", "jax")


def _keras_elsewhere(library: str, device: str) -> Any:
    """The Keras check of `library` on `device` in a fresh process (started once)."""
    key = (library, device)
    if key not in _KERAS_RUNS:
        kinds = ("cpu",) if device == "cpu" else ("cuda", "gpu")
        script = _KERAS_SCRIPT.format(library=library, device=device, kinds=kinds)
        _KERAS_RUNS[key] = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, "KERAS_BACKEND": library},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return _KERAS_RUNS[key]


def _check_keras_elsewhere(library: str, device: str) -> None:
    run = _keras_elsewhere(library, device)
    if not hasattr(run, "result"):
        run.result = run.communicate(timeout=600)
    out, err = run.result
    assert run.returncode == 0, err[-3000:]
    assert out.split() == ["ok", library]


@pytest.fixture(scope="module", autouse=True)
def _start_keras(request):
    """Start the CPU Keras check of the other backend if a test will need it."""
    other = {"jax": "torch", "torch": "jax"}.get(_keras_backend_here())
    column = {"torch": "PyTorch_CPU", "jax": "JAX_CPU"}.get(other)
    wanted = any(
        f"adapters.keras-{column}]" in item.nodeid for item in request.session.items
    )
    if wanted and all(importlib.util.find_spec(m) for m in ("keras", other)):
        _keras_elsewhere(other, "cpu")
    yield
    for run in _KERAS_RUNS.values():
        if run.poll() is None:
            run.kill()
            run.wait()


def _keras_here(X_in: Any) -> tuple:
    _keras_backend_here()
    import keras

    from infoscope.adapters import keras as ka

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )
    return _run_adapter(ka, (model,), X_in)


@pytest.mark.parametrize(
    ("label", "library", "cell"), _cells(ADAPTERS), indirect=["library"]
)
def test_adapter_cell(label, library, cell):
    framework = ADAPTERS[label]
    assert cell.split()[0] in ("yes", "input")
    native = cell.startswith("yes")
    if framework == "keras":
        pytest.importorskip("keras")
        here = _keras_backend_here()
        if not native:  # inputs of any library, the model on this process's backend
            assert_on(_keras_here(library.put(X)), library, here)
        elif library.gpu or library.name != here:
            _check_keras_elsewhere(library.name, "gpu" if library.gpu else "cpu")
        else:
            assert_on(_keras_here(library.put(X)), library)
        return
    if framework == "torch":
        pytest.importorskip("torch")
        device = "cuda" if native and library.gpu else "cpu"
        args = (_torch_model(device),)
        from infoscope.adapters import torch as adapter
    else:
        jax = pytest.importorskip("jax")
        device = library.device if native else jax.devices("cpu")[0]
        args = _jax_model(device)
        from infoscope.adapters import jax as adapter
    result = _run_adapter(adapter, args, library.put(X))
    assert_on(result, library, None if native else framework)
