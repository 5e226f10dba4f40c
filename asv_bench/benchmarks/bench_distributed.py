"""The streamed measures on a dask.distributed cluster, up to n = 10,000,000.

A ``LocalCluster`` of two worker processes with one thread each holds
activations X (n x 64) and Y (n x 8) as lazy dask arrays in chunks of 250,000
samples, drawn on the workers (2.6 GB of X at n = 10^7: more than the 1 GiB
each worker may use, and nothing the size of X ever reaches this process).
Each time includes drawing the chunks. ``peakmem_*`` is the peak resident size
of this (the client) process: flat in n when only the sums come back.
``tests/estimators/test_distributed.py`` checks the values against the
in-memory ones.

Measured at n = 10^7 on the 2-core machine (``python -c`` driving
``setup`` and each ``_<measure>`` once): linear CKA 33 s, approximate HSIC
142 s, Node SNR 14 s, similarity matrix 36 s, RankMe 13 s.
"""

from __future__ import annotations

import numpy as np

from infoscope import cka, hsic, node_snr, rankme, similarity_matrix

from ._base import BackendBenchmark

N_FEATURES, N_TARGETS, CHUNK = 64, 8, 250_000


class DistributedStreaming(BackendBenchmark):
    """Linear CKA, approximate HSIC, Node SNR, a linear-CKA similarity matrix
    and RankMe of dask arrays on a two-process LocalCluster."""

    backends = ("numpy",)  # the chunks are NumPy arrays on the workers
    dtypes = ("float32",)
    sizes = (20_000, 10_000_000)
    timeout = 1200

    def setup_data(self, n):
        try:
            import dask.array as da
            import distributed
        except ImportError as error:
            raise NotImplementedError(f"dask.distributed is missing: {error}") from None
        self.cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="1GiB",
            dashboard_address=None,
        )
        self.client = distributed.Client(self.cluster)
        rng = da.random.default_rng(0)
        chunks = (min(CHUNK, n), -1)
        X = rng.standard_normal((n, N_FEATURES), chunks=chunks, dtype=np.float32)
        noise = rng.standard_normal((n, N_TARGETS), chunks=chunks, dtype=np.float32)
        self.X = da.abs(X)
        self.Y = 0.5 * self.X[:, :N_TARGETS] + noise
        W = np.random.default_rng(1).standard_normal((N_FEATURES, 16))
        self.W = da.from_array(W.astype(np.float32))

    def teardown(self, backend, n, dtype):
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.cluster.close()
            self.client = None
        super().teardown(backend, n, dtype)

    def _linear_cka(self):
        return cka(self.X, self.Y, kernel_x="linear")

    def _approximate_hsic(self):
        return hsic(
            self.X,
            self.Y,
            sigma_x=10.0,
            sigma_y=3.0,
            method="approximate",
            n_components=256,
            random_state=0,
        )

    def _node_snr(self):
        S, F, _ = node_snr(self.X, self.W)
        return S.compute(), F.compute()

    def _similarity_matrix(self):
        return similarity_matrix([self.X, self.Y], [self.X, self.Y]).compute()

    def _rankme(self):
        return rankme(self.X)

    def time_linear_cka(self, backend, n, dtype):
        self._linear_cka()

    def time_approximate_hsic(self, backend, n, dtype):
        self._approximate_hsic()

    def time_node_snr(self, backend, n, dtype):
        self._node_snr()

    def time_similarity_matrix(self, backend, n, dtype):
        self._similarity_matrix()

    def time_rankme(self, backend, n, dtype):
        self._rankme()

    def peakmem_linear_cka(self, backend, n, dtype):
        self._linear_cka()

    def peakmem_approximate_hsic(self, backend, n, dtype):
        self._approximate_hsic()
