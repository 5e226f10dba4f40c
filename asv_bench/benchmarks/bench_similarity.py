"""Benchmarks of the similarity and geometry measures (DESIGN section 7).

The claimed figures are same-process ratios to the plainest correct
implementation:

- linear CKA against two centred n x n Gram matrices and their inner product
  (Kornblith et al.'s kernel form). The Grams need ``2 n^2`` floats: at
  n = 100,000 that is 160 GB, so the reference runs at the largest n that
  fits, 10,000 (``LinearCkaVersusGrams``); at 100,000 only infoscope runs
  (``LinearCkaMatrix``), with its time per sample against n / 10 (1 is
  linear in n).
- the geometry measures against NumPy's or the library's own singular values
  (``Geometry.track_ratio_to_svdvals``: about 1 is the claim, the three
  measures from one decomposition).
- mutual kNN alignment against all n^2 distances with every row sorted
  (``NeighbourAlignment.track_ratio_to_full_sort``, n <= 10,000); the exact
  neighbour search dominates (O(n^2 d)); its permutation null relabels the
  neighbours, so ``NeighbourNull`` reports the time of 100 permutations
  over that of one alignment (well under 100).
"""

from __future__ import annotations

import numpy as np

from infoscope import (
    RepresentationGeometry,
    SimilarityMatrix,
    cknna,
    mutual_knn_alignment,
    similarity_matrix,
    similarity_test,
)
from infoscope.backends import matmul, namespace_and_device

from ._base import BackendBenchmark, best_times

N_LAYERS = 4
WIDTH = 128
CPU = ("numpy", "array_api_strict", "torch-cpu", "jax-cpu")
GPU = ("torch-cuda", "jax-gpu", "cupy")


def _layers(rng, n, n_layers=N_LAYERS, width=WIDTH):
    """ReLU layers of a random network on Gaussian inputs (float64 NumPy)."""
    h, out = rng.standard_normal((n, 64)), []
    for _ in range(n_layers):
        W = rng.standard_normal((h.shape[1], width)) / np.sqrt(h.shape[1])
        h = np.maximum(h @ W, 0)
        out.append(h)
    return out


def gram_cka(X, Y):
    """The plainest correct linear CKA: two centred n x n Grams."""
    xp, _ = namespace_and_device(X, Y)
    K, L = matmul(X, X.T), matmul(Y, Y.T)
    K = K - xp.mean(K, axis=0)[None, :] - xp.mean(K, axis=1)[:, None] + xp.mean(K)
    L = L - xp.mean(L, axis=0)[None, :] - xp.mean(L, axis=1)[:, None] + xp.mean(L)
    return float(xp.sum(K * L)) / float(xp.sqrt(xp.sum(K * K)) * xp.sqrt(xp.sum(L * L)))


class LinearCkaVersusGrams(BackendBenchmark):
    """One pair's linear CKA (n x 128 against n x 128): infoscope's feature
    form over the Gram reference, same process, in turns."""

    backends = CPU + GPU
    sizes = (2000, 10_000)
    dtypes = ("float64",)
    timeout = 600

    def setup_data(self, n):
        X, Y = _layers(self.rng, n, n_layers=2)
        self.X, self.Y = self.asarray(X), self.asarray(Y)
        self._ours()
        gram_cka(self.X, self.Y)

    def _ours(self):
        return self.sync(similarity_matrix([self.X], [self.Y]))

    def time_linear_cka(self, backend, n, dtype):
        self._ours()

    def track_ratio_to_grams(self, backend, n, dtype):
        """Best time of infoscope over best time of the Gram reference."""
        ours, grams = best_times(
            self._ours, lambda: gram_cka(self.X, self.Y), repeat=3, budget=20.0
        )
        return ours / grams

    track_ratio_to_grams.unit = "ratio"


class LinearCkaMatrix(BackendBenchmark):
    """The 4 x 4 linear-CKA matrix of 4 layers (n x 128), in memory and
    streamed over chunks of 10,000 samples; no n x n array at any n."""

    backends = CPU + GPU
    sizes = (10_000, 100_000)
    dtypes = ("float32", "float64")
    timeout = 900

    def setup_data(self, n):
        self.layers = [self.asarray(h) for h in _layers(self.rng, n)]
        self._matrix(self.layers)

    def _matrix(self, layers):
        return self.sync(similarity_matrix(layers))

    def _streamed(self):
        est = SimilarityMatrix()
        for start in range(0, self.n, 10_000):
            est.partial_fit([h[start : start + 10_000, ...] for h in self.layers])
        return self.sync(est.matrix_)

    def time_matrix(self, backend, n, dtype):
        self._matrix(self.layers)

    def time_streamed(self, backend, n, dtype):
        self._streamed()

    def time_debiased_matrix(self, backend, n, dtype):
        self.sync(similarity_matrix(self.layers, debiased=True))

    def track_time_per_sample_ratio(self, backend, n, dtype):
        """Time per sample at n over time per sample at n / 10 (1: linear)."""
        small = [h[: self.n // 10, ...] for h in self.layers]
        big, little = best_times(
            lambda: self._matrix(self.layers), lambda: self._matrix(small), repeat=2
        )
        return (big / self.n) / (little / (self.n // 10))

    track_time_per_sample_ratio.unit = "ratio"


def sorted_mutual_knn(X, Y, k=10):
    """The plainest correct mutual kNN alignment: every distance, rows sorted."""
    xp, device = namespace_and_device(X, Y)

    def neighbours(Z):
        sq = xp.sum(Z * Z, axis=1)
        D = sq[:, None] + sq[None, :] - 2 * matmul(Z, Z.T)
        eye = xp.arange(Z.shape[0], device=device)
        D = xp.where(eye[:, None] == eye[None, :], xp.inf, D)
        return xp.argsort(D, axis=1, stable=True)[:, :k]

    a, b = neighbours(X), neighbours(Y)
    shared = xp.any(a[:, :, None] == b[:, None, :], axis=2)
    return float(xp.mean(xp.astype(shared, X.dtype)))


class NeighbourAlignment(BackendBenchmark):
    """Mutual kNN alignment and CKNNA (k = 10) of two n x 128 layers: the exact
    neighbour search (blocked, O(n^2 d)) dominates."""

    backends = CPU + GPU
    sizes = (2000, 10_000, 100_000)  # 2,000: the test suite's smoke size
    dtypes = ("float32",)
    timeout = 1800

    def setup_data(self, n):
        X, Y = _layers(self.rng, n, n_layers=2)
        self.X, self.Y = self.asarray(X), self.asarray(Y)
        if n <= 2000:  # warm-up (JAX's compilation) where it is cheap
            mutual_knn_alignment(self.X, self.Y)

    def time_mutual_knn(self, backend, n, dtype):
        mutual_knn_alignment(self.X, self.Y)

    def time_cknna(self, backend, n, dtype):
        cknna(self.X, self.Y)

    def track_ratio_to_full_sort(self, backend, n, dtype):
        """Mutual kNN alignment over the plainest correct one (all n^2
        distances, each row sorted), at n <= 10,000 where that fits."""
        if n > 10_000:
            raise NotImplementedError("the n x n reference does not fit")
        ours, reference = best_times(
            lambda: mutual_knn_alignment(self.X, self.Y),
            lambda: sorted_mutual_knn(self.X, self.Y),
            repeat=3,
        )
        return ours / reference

    track_ratio_to_full_sort.unit = "ratio"


class NeighbourNull(BackendBenchmark):
    """100 permutations of the mutual-kNN null over one alignment: the null
    relabels the neighbour indices instead of searching again."""

    backends = CPU + GPU
    sizes = (2000, 10_000)
    dtypes = ("float32",)
    timeout = 900

    def setup_data(self, n):
        X, Y = _layers(self.rng, n, n_layers=2)
        self.X, self.Y = self.asarray(X), self.asarray(Y)
        mutual_knn_alignment(self.X, self.Y)

    def track_null_over_one_alignment(self, backend, n, dtype):
        test, one = best_times(
            lambda: similarity_test(
                self.X, self.Y, measure="mutual_knn", n_permutations=100, random_state=0
            ),
            lambda: mutual_knn_alignment(self.X, self.Y),
            repeat=1,
        )
        return test / one

    track_null_over_one_alignment.unit = "ratio"


class Geometry(BackendBenchmark):
    """RankMe, alpha-ReQ and stable rank of an n x 256 layer
    (RepresentationGeometry: a QR and a 256 x 256 SVD per centring, in
    float64); no n x n array at any n."""

    backends = CPU + GPU
    sizes = (2000, 10_000, 100_000)
    dtypes = ("float32", "float64")
    timeout = 600

    def setup_data(self, n):
        (H,) = _layers(self.rng, n, n_layers=1, width=256)
        self.H = self.asarray(H)
        self._geometry()

    def _geometry(self):
        return RepresentationGeometry().fit(self.H)

    def time_geometry(self, backend, n, dtype):
        self._geometry()


class GeometryVersusSvdvals(Geometry):
    """The three measures over the library's own ``svdvals`` of the same
    matrix, the plainest correct spectrum. Up to n = 10,000: JAX's CPU
    ``svdvals`` of a 100,000 x 256 matrix asks for 40 GB (an n x n
    workspace)."""

    sizes = (2000, 10_000)
    dtypes = ("float32", "float64")

    def _svdvals(self):
        return self.sync(self.xp.linalg.svdvals(self.H))

    def track_ratio_to_svdvals(self, backend, n, dtype):
        """Best time of the three measures over one plain ``svdvals``."""
        ours, plain = best_times(self._geometry, self._svdvals, repeat=3)
        return ours / plain

    track_ratio_to_svdvals.unit = "ratio"
