"""JAX on the CPU against NumPy, measure by measure, and the JAX demo against torch's.

``JaxCpuVersusNumpy.track_ratio_to_numpy`` times every measure of the package
on the same data as JAX arrays on the CPU and as NumPy arrays, in the same
process and in turns (:func:`._base.best_times`), after one call of each
(JAX's compilation for that shape, which later calls reuse). The ratio is
JAX's time over NumPy's: the JAX path should stay within 1.5.
``track_first_call_ratio_to_numpy`` is the same ratio for JAX's first call on
a new sample count (compilation included; the count is in the bucket of a
shape compiled before, as a training loop's probe set is), over NumPy's best.

``DemoJaxVersusTorch.track_jax_over_torch`` runs ``infoscope demo``'s default
run (30 epochs, every measure per epoch) with PyTorch, then with JAX, in one
process: JAX's time (compilation included) over PyTorch's.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._base import SEED, best_times

MEASURES = (
    "dse",
    "dsmi",
    "adjacency_knn",
    "shannon_mi",
    "hsic",
    "cka",
    "hsic_plane",
    "hsic_test",
    "node_snr",
    "ntk_entropy",
    "ntk_mutual_information",
    "geometry",
    "similarity_matrix",
    "mutual_knn",
    "cknna",
)


def _measure(name: str) -> Callable[[dict], Any]:
    """The call timed for measure `name`, on a dict of inputs (one library)."""
    import infoscope as isc

    calls: dict[str, Callable[[dict], Any]] = {
        "dse": lambda d: isc.DiffusionSpectralEntropy().fit(d["H"]).entropy_,
        "dsmi": lambda d: isc.diffusion_spectral_mutual_information(
            d["H"], d["y"], random_state=0
        ),
        "adjacency_knn": lambda d: isc.adjacency_spectral_entropy(
            d["H"][:200], variant="knn"
        ),
        "shannon_mi": lambda d: isc.shannon_mutual_information(
            d["H"][:, :8], d["y"], random_state=0
        ),
        "hsic": lambda d: isc.hsic(d["H"], d["G"]),
        "cka": lambda d: isc.cka(d["H"], d["G"]),
        "hsic_plane": lambda d: (
            isc.HSICPlane().fit(d["X"], d["y"]).transform([d["H"], d["G"]])
        ),
        "hsic_test": lambda d: isc.hsic_test(
            d["H"], d["G"], n_permutations=20, random_state=0
        ),
        "node_snr": lambda d: isc.NodeSNR().fit(d["X"], weights=d["W"]).optimality_,
        "ntk_entropy": lambda d: isc.ntk_entropy(d["K"]),
        "ntk_mutual_information": lambda d: (
            isc.ntk_mutual_information(
                d["K"], d["y"], max_combination_size=2
            ).mutual_information
        ),
        "geometry": lambda d: isc.RepresentationGeometry().fit(d["H"]).alpha_req_,
        "similarity_matrix": lambda d: isc.similarity_matrix(
            [d["H"], d["G"]], [d["X"]]
        ),
        "mutual_knn": lambda d: isc.mutual_knn_alignment(d["H"], d["G"]),
        "cknna": lambda d: isc.cknna(d["H"], d["G"]),
    }
    return calls[name]


def _inputs(n: int, dtype: str) -> dict[str, np.ndarray]:
    """Activations of three widths, labels of ten classes and an NTK-like Gram."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, 64))
    H = np.maximum(X @ rng.standard_normal((64, 32)) / 8.0, 0.0)
    G = np.tanh(H @ rng.standard_normal((32, 10)))
    y = rng.integers(0, 10, size=n)
    J = rng.standard_normal((n, 96))
    return {
        "X": X.astype(dtype),
        "H": H.astype(dtype),
        "G": G.astype(dtype),
        "W": (rng.standard_normal((64, 32)) / 8.0).astype(dtype),
        "K": (J @ J.T / 96.0).astype(dtype),
        "y": y,
    }


def _synchronized(fn: Callable[[dict], Any], data: dict) -> Callable[[], Any]:
    from infoscope.backends import synchronize

    def call():
        result = fn(data)
        return synchronize(result) if hasattr(result, "shape") else result

    return call


class JaxCpuVersusNumpy:
    """Every measure on JAX-CPU arrays over the same measure on NumPy arrays."""

    # 500: calls of a millisecond, where JAX's fixed cost per call shows;
    # 2,000: the demo's probe-set scale, where the computation does.
    params = [list(MEASURES), [500, 2000], ["float32", "float64"]]
    param_names = ["measure", "n", "dtype"]
    timeout = 300

    def setup(self, measure, n, dtype):
        if importlib.util.find_spec("jax") is None:
            raise NotImplementedError("jax is not installed")
        import jax

        self._x64_before = bool(jax.config.jax_enable_x64)
        # float64 needs x64; float32 runs as a default JAX user's does.
        jax.config.update("jax_enable_x64", dtype == "float64")
        self.cpu = jax.devices("cpu")[0]
        self.fn = _measure(measure)
        self.n, self.dtype = n, dtype
        self.host = _inputs(n, dtype)
        self.jax = self._on_jax(self.host)
        self.calls = (
            _synchronized(self.fn, self.jax),
            _synchronized(self.fn, self.host),
        )
        for call in self.calls:  # JAX compiles for these shapes here
            call()

    def teardown(self, measure, n, dtype):
        import jax

        jax.config.update("jax_enable_x64", self._x64_before)

    def _on_jax(self, data: dict) -> dict:
        import jax

        return {k: jax.device_put(v, self.cpu) for k, v in data.items()}

    def track_ratio_to_numpy(self, measure, n, dtype):
        """Best JAX-CPU time over best NumPy time, after one call of each."""
        jax_time, numpy_time = best_times(*self.calls, repeat=200, budget=3.0)
        return jax_time / numpy_time

    track_ratio_to_numpy.unit = "ratio"

    def track_first_call_ratio_to_numpy(self, measure, n, dtype):
        """JAX's first call on a new sample count (n - 7) over NumPy's best."""
        host = _inputs(n - 7, dtype)
        data = self._on_jax(host)
        start = time.perf_counter()
        _synchronized(self.fn, data)()
        first = time.perf_counter() - start
        (numpy_time,) = best_times(_synchronized(self.fn, host), repeat=3)
        return first / numpy_time

    track_first_call_ratio_to_numpy.unit = "ratio"


class DemoJaxVersusTorch:
    """``infoscope demo`` (30 epochs) with JAX over the same with PyTorch."""

    timeout = 900
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self):
        for framework in ("torch", "jax"):
            if importlib.util.find_spec(framework) is None:
                raise NotImplementedError(f"{framework} is not installed")
        self.folder = tempfile.mkdtemp()

    def teardown(self):
        shutil.rmtree(self.folder, ignore_errors=True)

    def _seconds(self, framework: str, epochs: int) -> float:
        from infoscope.demo import run_demo

        start = time.perf_counter()
        run_demo(
            self.folder, epochs=epochs, framework=framework, overwrite=True,
            progress=False,
        )  # fmt: skip
        return time.perf_counter() - start

    def track_jax_over_torch(self, epochs: int = 30):
        """JAX demo's time (its compilation included) over the torch demo's."""
        torch_time = self._seconds("torch", epochs)
        return self._seconds("jax", epochs) / torch_time

    track_jax_over_torch.unit = "ratio"
