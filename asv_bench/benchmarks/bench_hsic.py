"""Benchmarks of the HSIC family: the information plane and HSIC at scale.

:class:`infoscope.HSICPlane` caches the centred Grams of the inputs and labels
in ``fit``, so ``transform`` on L layers should cost about L plain Gram
matrices of the same size; the ratio benchmarks say how close it comes (with
a fixed bandwidth, and with each layer's own median bandwidth, whose
selection over n^2 / 2 distances is extra work).

The approximate HSIC streams random Fourier features in chunks: its time
should grow linearly in n, and n = 1,000,000 samples of d = 100 should take
under 30 s on 2 CPU cores. The approximate plane does the same for L layers
in one pass.

``HSICExact`` times the exact :func:`infoscope.hsic` and :func:`infoscope.cka`
with median bandwidths. The ``track_*_traced_peak`` figures are the bytes a
call itself holds at most, as its backend's allocator sees them
(``_memory.traced_peak``); ``peakmem_*`` is asv's peak resident size of the
whole benchmark process.
"""

from __future__ import annotations

import numpy as np

from infoscope import HSICPlane, cka, hsic
from infoscope.kernels import gaussian_kernel

from ._base import BackendBenchmark, best_times
from ._memory import traced_peak

N_LAYERS = 4
D_INPUT = 64
D_LAYER = 128


class HSICPlaneLayers(BackendBenchmark):
    """``HSICPlane.transform`` on 4 layers (n x 128) after ``fit`` on n x 64
    inputs and 10 classes; and its time over that of 4 plain n x n Grams."""

    sizes = (500, 3000)

    def setup_data(self, n):
        X = self.rng.standard_normal((n, D_INPUT))
        y = self.rng.integers(0, 10, size=n)
        weights = [self.rng.standard_normal((D_INPUT, D_LAYER)) / 8]
        weights += [
            self.rng.standard_normal((D_LAYER, D_LAYER)) / 11
            for _ in range(N_LAYERS - 1)
        ]
        layers, h = [], X
        for W in weights:
            h = np.maximum(h @ W, 0)
            layers.append(h)
        self.X = self.asarray(X)
        self.layers = [self.asarray(h) for h in layers]
        self.median = HSICPlane().fit(self.X, y)
        self.fixed = HSICPlane(sigma=5.0, sigma_y=1.0).fit(self.X, y)
        # Warm-up: imports, JAX's per-shape compilation, BLAS thread start-up.
        self._transform(self.fixed)
        self._grams()

    def _transform(self, plane):
        return self.sync(plane.transform(self.layers))

    def _grams(self):
        """What transform cannot avoid: one Gram per layer, alone."""
        for h in self.layers:
            out = self.sync(gaussian_kernel(h, sigma=5.0))
        return out

    def time_transform(self, backend, n, dtype):
        self._transform(self.median)

    def peakmem_transform(self, backend, n, dtype):
        self._transform(self.median)

    def track_transform_traced_peak(self, backend, n, dtype):
        """Bytes ``transform`` (median sigma) holds at most, beyond the Grams
        cached by ``fit``."""
        return traced_peak(backend, lambda: self._transform(self.median))

    track_transform_traced_peak.unit = "bytes"

    def track_ratio_to_grams(self, backend, n, dtype):
        """Best time of transform (fixed sigma) over best time of the Grams.

        Target: about 1 (the inner products with the cached Grams are O(n^2),
        like the exp of the Gram).
        """
        ours, grams = best_times(
            lambda: self._transform(self.fixed), self._grams, budget=3.0
        )
        return ours / grams

    track_ratio_to_grams.unit = "ratio"

    def track_ratio_to_grams_median_sigma(self, backend, n, dtype):
        """The same ratio with each layer's own median bandwidth."""
        ours, grams = best_times(
            lambda: self._transform(self.median), self._grams, budget=3.0
        )
        return ours / grams

    track_ratio_to_grams_median_sigma.unit = "ratio"


class HSICApproximateLarge(BackendBenchmark):
    """Approximate HSIC (random Fourier features, 1,024 per variable) between
    n x 100 inputs and a ReLU layer of them, n up to 1,000,000; target under
    30 s on 2 CPU cores, with memory independent of n beyond the data."""

    sizes = (100_000, 1_000_000)
    dtypes = ("float32",)
    timeout = 600

    def setup_data(self, n):
        X = self.rng.standard_normal((n, 100), dtype=np.float32)
        A = (self.rng.standard_normal((100, 100)) / 10).astype(np.float32)
        self.X = self.asarray(X)
        self.H = self.asarray(np.maximum(X @ A + 0.1, 0))

    def time_hsic_approximate(self, backend, n, dtype):
        hsic(self.X, self.H, method="approximate", random_state=0)

    def peakmem_hsic_approximate(self, backend, n, dtype):
        hsic(self.X, self.H, method="approximate", random_state=0)

    def track_hsic_approximate_traced_peak(self, backend, n, dtype):
        """Bytes the approximate HSIC holds at most: should not grow with n."""
        return traced_peak(
            backend,
            lambda: hsic(self.X, self.H, method="approximate", random_state=0),
        )

    track_hsic_approximate_traced_peak.unit = "bytes"

    def track_time_per_sample_ratio(self, backend, n, dtype):
        """Time per sample at n over time per sample at n / 10: 1 is linear.

        With fixed bandwidths, so that the median's fixed cost (a subset of
        4,000 samples) does not flatter the larger n.
        """
        small = n // 10
        X_small, H_small = self.X[:small, ...], self.H[:small, ...]
        params = {"method": "approximate", "sigma_x": 14.0, "sigma_y": 3.0}
        big_time, small_time = best_times(
            lambda: hsic(self.X, self.H, random_state=0, **params),
            lambda: hsic(X_small, H_small, random_state=0, **params),
            repeat=1,
        )
        return (big_time / n) / (small_time / small)

    track_time_per_sample_ratio.unit = "ratio"


class HSICPlaneApproximate(BackendBenchmark):
    """``HSICPlane(method="approximate").transform`` on 4 layers (n x 128) of
    n x 64 inputs and 10 classes: one pass over the samples for all layers."""

    sizes = (10_000, 100_000)
    dtypes = ("float32",)
    timeout = 600

    def setup_data(self, n):
        X = self.rng.standard_normal((n, D_INPUT), dtype=np.float32)
        y = self.rng.integers(0, 10, size=n)
        layers, h = [], X
        for d_in in (D_INPUT, D_LAYER, D_LAYER, D_LAYER):
            W = self.rng.standard_normal((d_in, D_LAYER), dtype=np.float32)
            h = np.maximum(h @ (W / np.sqrt(d_in)), 0)
            layers.append(h)
        self.X = self.asarray(X)
        self.layers = [self.asarray(h) for h in layers]
        self.plane = HSICPlane(method="approximate", random_state=0).fit(self.X, y)

    def time_transform(self, backend, n, dtype):
        self.sync(self.plane.transform(self.layers))

    def peakmem_transform(self, backend, n, dtype):
        self.plane.transform(self.layers)

    def track_transform_traced_peak(self, backend, n, dtype):
        """Bytes the approximate transform holds at most: the features of one
        chunk of samples per layer, whatever n."""
        return traced_peak(
            backend, lambda: self.sync(self.plane.transform(self.layers))
        )

    track_transform_traced_peak.unit = "bytes"


class HSICExact(BackendBenchmark):
    """Exact :func:`infoscope.hsic` and :func:`infoscope.cka` (biased, Gaussian
    kernels, each variable's median bandwidth) between n x 64 inputs and a
    ReLU layer of them (n x 128). HSIC builds two n x n Grams; CKA also
    needs HSIC(X, X) and HSIC(H, H) from the same Grams."""

    sizes = (500, 3000)

    def setup_data(self, n):
        X = self.rng.standard_normal((n, D_INPUT))
        W = self.rng.standard_normal((D_INPUT, D_LAYER)) / np.sqrt(D_INPUT)
        self.X = self.asarray(X)
        self.H = self.asarray(np.maximum(X @ W, 0))
        self._hsic()  # warm-up: imports, JAX's per-shape compilation
        self._cka()

    def _hsic(self):
        return hsic(self.X, self.H)

    def _cka(self):
        return cka(self.X, self.H)

    def time_hsic(self, backend, n, dtype):
        self._hsic()

    def time_cka(self, backend, n, dtype):
        self._cka()

    def peakmem_hsic(self, backend, n, dtype):
        self._hsic()

    def peakmem_cka(self, backend, n, dtype):
        self._cka()

    def track_hsic_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._hsic)

    track_hsic_traced_peak.unit = "bytes"

    def track_cka_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._cka)

    track_cka_traced_peak.unit = "bytes"
