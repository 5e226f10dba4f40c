"""Benchmarks of Node SNR on the paper's network: 1024 inputs, 1000 nodes.

:func:`infoscope.node_snr` costs two GEMM-sized products, ``x W`` and
``x^T (r - mean r)``, plus passes over ``x`` and ``r`` (validation, the
maximum, the activity count, the sums). The ratio benchmark says how much the
passes add to the products alone; the target is at most 1.5 at the paper's
n = 10,000 evaluation samples.

The memory figures: ``peakmem_*`` is asv's peak resident size of the whole
benchmark process; ``track_*_traced_peak`` the bytes one call itself holds at
most, as its backend's allocator sees them (``_memory.traced_peak``). The
function holds ``r = x W`` (n x 1000) whole; the estimator with
``batch_size`` streams it in blocks, so its peak should not grow with n.
"""

from __future__ import annotations

import numpy as np

from infoscope import NodeSNR, node_snr
from infoscope.backends import matmul

from ._base import BackendBenchmark, best_times
from ._memory import traced_peak

D_IN = 1024
D_OUT = 1000
BATCH = 500


class NodeSnr(BackendBenchmark):
    """:func:`infoscope.node_snr` on a ReLU layer input (n x 1024) and weights
    (1024 x 1000): its time, and its time over that of the two products alone.
    """

    # n = 10,000 is the paper's evaluation set; 500 keeps the test suite's
    # run of every benchmark (at the smallest size) fast.
    sizes = (500, 10_000)

    def setup_data(self, n):
        x = np.maximum(self.rng.standard_normal((n, D_IN)), 0.0)
        self.X = self.asarray(x)
        self.W = self.asarray(self.rng.standard_normal((D_IN, D_OUT)) / np.sqrt(D_IN))
        # Warm-up: imports, JAX's per-shape compilation, BLAS thread start-up.
        self._snr()
        self._products()
        self._batched()

    def _snr(self):
        return self.sync(node_snr(self.X, self.W).optimality)

    def _products(self):
        """The two products node_snr cannot avoid, alone: x W, then x^T r."""
        R = matmul(self.X, self.W)
        return self.sync(matmul(self.X.T, R))

    def _batched(self):
        """The estimator, streaming the samples in blocks of ``BATCH``."""
        fitted = NodeSNR(batch_size=BATCH).fit(self.X, weights=self.W)
        return self.sync(fitted.optimality_)

    def time_node_snr(self, backend, n, dtype):
        self._snr()

    def time_estimator_batched(self, backend, n, dtype):
        self._batched()

    def peakmem_node_snr(self, backend, n, dtype):
        self._snr()

    def peakmem_estimator_batched(self, backend, n, dtype):
        self._batched()

    def track_node_snr_traced_peak(self, backend, n, dtype):
        """Bytes node_snr holds at most (``r = x W`` is n x 1000)."""
        return traced_peak(backend, self._snr)

    track_node_snr_traced_peak.unit = "bytes"

    def track_estimator_batched_traced_peak(self, backend, n, dtype):
        """Bytes ``NodeSNR(batch_size=500).fit`` holds at most: about the same
        at every n."""
        return traced_peak(backend, self._batched)

    track_estimator_batched_traced_peak.unit = "bytes"

    def track_ratio_to_products(self, backend, n, dtype):
        """Best time of node_snr over best time of ``x W`` and ``x^T r``.

        Both are timed in turns in one process (best of up to 5 rounds); a
        ratio of 1 would mean the rest of the measure is free. Target: at
        most 1.5.
        """
        ours, products = best_times(self._snr, self._products, budget=3.0)
        return ours / products

    track_ratio_to_products.unit = "ratio"
