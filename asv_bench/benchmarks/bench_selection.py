"""Benchmarks of NTK-entropy data selection (:mod:`infoscope.selection`).

Both selectors run on a precomputed pool NTK (``kernel="precomputed"``), so
the figures are those of the selection itself, not of the network's NTK
(``bench_ntk.EmpiricalNtk`` times that):

- :class:`~infoscope.selection.MaxEntropySelector` scores 100 random
  candidate subsets of 50 samples: 100 batched 50 x 50 eigendecompositions.
- :class:`~infoscope.selection.GreedyEntropySelector` adds 20 samples one at
  a time; step t decomposes the (t + 1) x (t + 1) blocks of every remaining
  pool sample (about ``n * 20^4 / 4`` flops in all).

``peakmem_*`` is asv's peak resident size of the whole benchmark process;
``track_*_traced_peak`` the bytes one ``fit`` itself holds at most, as its
backend's allocator sees them (``_memory.traced_peak``).
"""

from __future__ import annotations

from infoscope.selection import GreedyEntropySelector, MaxEntropySelector

from ._base import BackendBenchmark
from ._memory import traced_peak
from .bench_ntk import ntk_like_kernel

N_SELECT = 50
N_CANDIDATES = 100
N_GREEDY = 20


class EntropySelection(BackendBenchmark):
    """``fit`` of the max-entropy and greedy selectors on a pool of n samples
    whose n x n NTK is given."""

    sizes = (500, 2000)

    def setup_data(self, n):
        K, _ = ntk_like_kernel(self.rng, n, n_classes=10)
        self.K = self.asarray(K)
        self._max_entropy()  # warm-up: imports, JAX's per-shape compilation
        self._greedy()

    def _max_entropy(self):
        selector = MaxEntropySelector(N_SELECT, N_CANDIDATES, random_state=0)
        return self.sync(selector.fit(self.K).candidate_entropies_)

    def _greedy(self):
        selector = GreedyEntropySelector(N_GREEDY, random_state=0)
        return self.sync(selector.fit(self.K).entropy_path_)

    def time_max_entropy(self, backend, n, dtype):
        self._max_entropy()

    def time_greedy(self, backend, n, dtype):
        self._greedy()

    def peakmem_max_entropy(self, backend, n, dtype):
        self._max_entropy()

    def peakmem_greedy(self, backend, n, dtype):
        self._greedy()

    def track_max_entropy_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._max_entropy)

    track_max_entropy_traced_peak.unit = "bytes"

    def track_greedy_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._greedy)

    track_greedy_traced_peak.unit = "bytes"
