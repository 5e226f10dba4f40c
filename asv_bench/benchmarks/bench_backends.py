"""Benchmarks of the backend layer: eigenvalues, distances, nearest neighbours.

These are the kernels every measure of infoscope spends its time in; each is
timed on every backend this machine has, in float32 and float64.
"""

from __future__ import annotations

import numpy as np

from infoscope.backends import eigvalsh, knn_indices, pairwise_sq_distances

from ._base import BackendBenchmark, best_times
from ._memory import traced_peak


def _symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random symmetric n x n matrix (GOE-like: a spread-out spectrum)."""
    g = rng.standard_normal((n, n))
    return (g + g.T) / 2


class Eigvalsh(BackendBenchmark):
    """:func:`infoscope.backends.eigvalsh` of a dense symmetric matrix.

    With the default ``precision="float64"`` a float32 matrix is decomposed
    in float64 where the device has it, so float32 and float64 cost about the
    same; JAX's float32 runs have x64 off (JAX's default) and solve in
    float32.
    """

    sizes = (256, 512, 1024)

    def setup_data(self, n):
        self.a = self.asarray(_symmetric(self.rng, n))
        # The first call pays for imports (SciPy) and JAX's per-shape compile.
        self.sync(eigvalsh(self.a))

    def time_eigvalsh(self, backend, n, dtype):
        self.sync(eigvalsh(self.a))


class EigvalshOverhead(BackendBenchmark):
    """infoscope's eigvalsh against the library's own, on one float64 matrix.

    The ratio of the two best times, taken in turns in one process: about 1
    when infoscope adds nothing but dispatch. On NumPy it can fall below 1,
    since infoscope calls SciPy's solver without its finite check.
    """

    sizes = (256, 1024)
    dtypes = ("float64",)

    def setup_data(self, n):
        self.a = self.asarray(_symmetric(self.rng, n))
        self.sync(eigvalsh(self.a))
        self.sync(self.xp.linalg.eigvalsh(self.a))

    def track_overhead_ratio(self, backend, n, dtype):
        ours, theirs = best_times(
            lambda: self.sync(eigvalsh(self.a)),
            lambda: self.sync(self.xp.linalg.eigvalsh(self.a)),
        )
        return ours / theirs

    track_overhead_ratio.unit = "ratio"


class PairwiseMemory(BackendBenchmark):
    """Memory of :func:`infoscope.backends.pairwise_sq_distances` (NumPy).

    The distances of n points in d dimensions need one n x n result; the
    direct broadcast ``X[:, None, :] - X[None, :, :]`` would make an
    n x n x d temporary, d = 256 times larger. The tracked peak says how many
    n x n float64 arrays the call holds at once, the result included.
    """

    backends = ("numpy",)
    sizes = (2000,)
    dtypes = ("float64",)
    n_features = 256

    def setup_data(self, n):
        self.X = self.standard_normal((n, self.n_features))

    def peakmem_pairwise_sq_distances(self, backend, n, dtype):
        pairwise_sq_distances(self.X)

    def track_pairwise_traced_peak(self, backend, n, dtype):
        # NumPy reports its buffers to tracemalloc; BLAS workspace is not seen.
        peak = traced_peak(backend, lambda: pairwise_sq_distances(self.X))
        return peak / (n * n * np.dtype(np.float64).itemsize)

    track_pairwise_traced_peak.unit = "n x n float64 arrays"


class KnnIndices(BackendBenchmark):
    """Exact k-nearest-neighbour search, :func:`infoscope.backends.knn_indices`."""

    sizes = (2000,)
    n_features = 64
    n_neighbors = 10

    def setup_data(self, n):
        self.X = self.standard_normal((n, self.n_features))
        # Warm-up: JAX compiles the block kernel once per block shape.
        self.sync(knn_indices(self.X, self.n_neighbors))

    def time_knn_indices(self, backend, n, dtype):
        self.sync(knn_indices(self.X, self.n_neighbors))


def timeraw_import_infoscope():
    """``import infoscope`` in a fresh interpreter (it must stay light)."""
    return "import infoscope"
