"""HSIC from explicit feature maps, streamed over chunks of samples.

When a kernel is an inner product of features, ``k(a, b) = phi(a) . phi(b)``,
HSIC needs no n x n matrix: with ``F`` (n x p) and ``G`` (n x q) the features
of the two variables, the biased estimate is ``||F_c^T G_c||_F^2 / (n-1)^2``
(``F_c``, ``G_c`` column-centred), and Song et al.'s unbiased estimate is a
combination of ``F^T G``, the column sums and three per-sample norms (see
:meth:`PairMoments.hsic`). Every term is a sum over samples, so the data can
arrive in chunks and the cost is linear in n.

Three feature maps:

- :class:`LinearFeatures`: the data themselves (the linear kernel, exact);
- :class:`FourierFeatures`: orthogonal random Fourier features of the Gaussian
  kernel (Rahimi & Recht 2007; Yu et al. 2016), in independent blocks;
- :class:`NystromFeatures`: ``k(x, Z) K_ZZ^{-1/2}`` for landmarks ``Z`` from the
  first chunk (:class:`infoscope.kernels.NystromMap`; any kernel; it keeps the
  top of the kernel's spectrum and so underestimates HSIC when the spectrum
  decays slowly).

Random features estimate each kernel without bias, so the product of two
*independent* estimates is unbiased for HSIC. Block ``r`` of X's features is
paired with block ``r`` of Y's (independent draws); for HSIC(X, X) block ``r``
is paired with block ``r + 1``. Averaging R block pairs of p features has, to
first order, the variance of one pair of R p features, at 1/R of the cost of
the full ``(R p) x (R p)`` cross product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ..backends import (
    asarray,
    float_dtype,
    matmul,
    namespace_and_device,
)
from ..backends._lazy import computed_together
from ..kernels import NystromMap

__all__ = [
    "FourierFeatures",
    "LinearFeatures",
    "NystromFeatures",
    "PairMoments",
    "StreamedHSIC",
]

#: Frequencies per block of Fourier features (2 features each: cos and sin).
FREQUENCIES_PER_BLOCK = 128


class LinearFeatures:
    """The linear kernel's features: the data themselves (exact)."""

    n_blocks = 1
    random = False

    def blocks(self, X: Any) -> list[Any]:
        return [X]


class FourierFeatures:
    """Orthogonal random Fourier features of ``exp(-||a-b||^2 / (2 sigma^2))``.

    ``phi(x) = [cos(x W), sin(x W)] / sqrt(f)`` per block of f frequencies, so
    ``phi(a) . phi(b)`` is an unbiased estimate of the kernel. The columns of
    W are drawn d at a time as a random orthogonal matrix whose columns get
    chi-distributed lengths: each column is marginally N(0, I / sigma^2) and
    the estimate has lower variance than independent columns. Blocks are
    drawn independently of one another.

    Parameters
    ----------
    n_features_in : int
    n_components : int
        Features in all (twice the number of frequencies); at least 4.
    sigma : float
    rng : numpy.random.Generator
    xp, device, dtype
        Where the frequencies live and the features are computed.
    """

    random = True

    def __init__(self, n_features_in, n_components, sigma, rng, xp, device, dtype):
        n_frequencies = n_components // 2
        n_blocks = max(2, math.ceil(n_frequencies / FREQUENCIES_PER_BLOCK))
        sizes = [len(s) for s in np.array_split(np.arange(n_frequencies), n_blocks)]
        # Arrays only (no namespace module): a fitted estimator must pickle.
        self._W = [
            asarray(
                _orthogonal_gaussian(n_features_in, size, rng) / sigma,
                xp=xp,
                device=device,
                dtype=dtype,
            )
            for size in sizes
        ]
        self.n_blocks = n_blocks

    def blocks(self, X: Any) -> list[Any]:
        xp = array_namespace(X)
        out = []
        for W in self._W:
            Z = matmul(X, W)
            scale = 1.0 / math.sqrt(W.shape[1])
            out.append(xp.concat([xp.cos(Z), xp.sin(Z)], axis=1) * scale)
        return out


def _orthogonal_gaussian(d: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """d x m matrix whose columns are N(0, I) marginally, orthogonal in groups of d."""
    columns = []
    for _ in range(math.ceil(m / d)):
        Q, R = np.linalg.qr(rng.standard_normal((d, d)))
        Q *= np.sign(np.diag(R))  # Haar-distributed, not QR's sign convention
        columns.append(Q * np.sqrt(rng.chisquare(d, size=d)))
    return np.concatenate(columns, axis=1)[:, :m]


class NystromFeatures:
    """Nystrom features of any kernel (:class:`infoscope.kernels.NystromMap`).

    Parameters
    ----------
    landmarks : array of shape (m, d)
    kernel : callable
        ``kernel(A, B)`` -> the (len(A), len(B)) Gram matrix.
    """

    n_blocks = 1
    random = False

    def __init__(self, landmarks: Any, kernel: Callable[[Any, Any], Any]):
        self.map = NystromMap(landmarks, kernel)

    def blocks(self, X: Any) -> list[Any]:
        return [self.map.transform(X)]


class PairMoments:
    """Sums over samples that give HSIC between two blocks of features.

    The features are shifted by the first chunk's means before summing, which
    changes neither estimate (both are invariant to adding ``f(a) + f(b) + c``
    to a kernel) and keeps the sums free of cancellation in float32.
    Accumulation is in the widest float the device has.
    """

    def __init__(self, unbiased: bool):
        self.unbiased = unbiased
        self.n = 0

    def update(self, F: Any, G: Any) -> None:
        xp, device = namespace_and_device(F, G)
        wide = float_dtype(xp, device)
        if self.n == 0:
            self._shift_f = xp.mean(F, axis=0)
            self._shift_g = xp.mean(G, axis=0)
        F = F - self._shift_f
        G = G - self._shift_g
        sums = [matmul(F.T, G), xp.sum(F, axis=0), xp.sum(G, axis=0)]
        if self.unbiased:
            f2 = xp.sum(F * F, axis=1)
            g2 = xp.sum(G * G, axis=1)
            sums += [
                xp.sum(f2),
                xp.sum(g2),
                xp.sum(f2 * g2),
                matmul(g2[None, :], F)[0, :],  # sum_i |g_i|^2 f_i
                matmul(f2[None, :], G)[0, :],  # sum_i |f_i|^2 g_i
            ]
        sums = [xp.astype(s, wide) for s in sums]
        if self.n == 0:
            self._sums = sums
        else:
            self._sums = [a + b for a, b in zip(self._sums, sums, strict=True)]
        self.n += F.shape[0]

    def hsic(self) -> float:
        """The biased or unbiased HSIC of the samples seen so far."""
        n = self.n
        C, a, b = self._sums[:3]
        xp = array_namespace(C)
        if not self.unbiased:
            centred = C - a[:, None] * (b / n)[None, :]
            return float(xp.sum(centred * centred)) / (n - 1) ** 2
        kd, ld, kl, v, u = (self._sums[i] for i in range(3, 8))
        # K~ and L~ are the feature Grams with their diagonals set to zero.
        trace = xp.sum(C * C) - kl  # tr(K~ L~)
        sum_k = xp.sum(a * a) - kd  # 1^T K~ 1
        sum_l = xp.sum(b * b) - ld  # 1^T L~ 1
        # 1^T K~ L~ 1 = sum_i (f_i . a - |f_i|^2)(g_i . b - |g_i|^2)
        cross = xp.sum(a * matmul(C, b[:, None])[:, 0]) - xp.sum(u * b)
        cross = cross - xp.sum(v * a) + kl
        value = trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)
        return float(value) / (n * (n - 3))


class StreamedHSIC:
    """HSIC(X, Y) (and self terms for CKA) from feature maps, chunk by chunk.

    Pairs block ``k % R_x`` of X's features with block ``k % R_y`` of Y's for
    ``k < max(R_x, R_y)`` and averages; the self terms (``self_terms``: "xx",
    "yy" or both) pair a random map's block with the next one (independent
    draws), and a deterministic map's only block with itself.
    """

    def __init__(self, map_x, map_y, *, unbiased: bool, self_terms=()):
        self.map_x, self.map_y = map_x, map_y
        n_pairs = max(map_x.n_blocks, map_y.n_blocks)
        xy = [(k % map_x.n_blocks, k % map_y.n_blocks) for k in range(n_pairs)]
        self._moments = {("xy", i, j): PairMoments(unbiased) for i, j in xy}
        for name in self_terms:
            fmap = map_x if name == "xx" else map_y
            for i, j in _self_pairs(fmap):
                self._moments[(name, i, j)] = PairMoments(unbiased)
        self.n_samples = 0

    def update(self, X: Any, Y: Any) -> None:
        self.update_blocks(self.map_x.blocks(X), self.map_y.blocks(Y))

    def update_blocks(self, blocks_x: list, blocks_y: list) -> None:
        """Add a chunk whose features the caller has computed (and may reuse)."""
        blocks = {"x": blocks_x, "y": blocks_y}
        for (kind, i, j), moments in self._moments.items():
            moments.update(blocks[kind[0]][i], blocks[kind[1]][j])
        self.n_samples += blocks_x[0].shape[0]

    def value(self, kind: str = "xy") -> float:
        # dask: every pair's sums in one graph, the chunks read once.
        moments = list(self._moments.values())
        done = computed_together([m._sums for m in moments])
        for m, sums in zip(moments, done, strict=True):
            m._sums = sums
        values = [m.hsic() for (k, _, _), m in self._moments.items() if k == kind]
        return sum(values) / len(values)


def _self_pairs(fmap) -> list[tuple[int, int]]:
    if fmap.random:
        return [(r, (r + 1) % fmap.n_blocks) for r in range(fmap.n_blocks)]
    return [(0, 0)]
