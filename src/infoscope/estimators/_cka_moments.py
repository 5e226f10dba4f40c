"""Linear CKA between every layer of two collections, from sums over samples.

For column-centred features ``X`` (n x p) and ``Y`` (n x q), linear CKA is
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` (Kornblith et al. 2019); the
debiased form replaces each HSIC by Song et al. (2012)'s unbiased estimate.
Both are functions of sums over samples (``X^T Y``, the column sums, the
squared row norms and their products), so the samples can arrive in chunks and
the result is that of one pass over all of them: :class:`CrossMoments` keeps
those sums for L layers against M layers with one matrix product per chunk.

With ``K = F F^T`` and ``K~`` its off-diagonal part, the unbiased estimate
``[tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2 1'K~L~1 / (n-2)] / (n (n-3))``
is, in feature form (``a = sum_i f_i``, ``b = sum_i g_i``, ``C = F^T G``)::

    tr(K~ L~)  = ||C||^2 - sum_i |f_i|^2 |g_i|^2
    1'K~1      = |a|^2 - sum_i |f_i|^2
    1'K~L~1    = a'C b - a . sum_i |g_i|^2 f_i - b . sum_i |f_i|^2 g_i
                 + sum_i |f_i|^2 |g_i|^2
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ..backends import (
    compiled,
    float_dtype,
    matmul,
    namespace_and_device,
    to_numpy,
)
from ..backends._lazy import computed_together

__all__ = ["CrossMoments", "hsic_from_sums", "pair_hsic"]


def _offsets(widths: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for w in widths:
        out.append((start, start + w))
        start += w
    return out


def hsic_from_sums(n, unbiased, C, a, b, kl=None, v=None, u=None, kd=None, ld=None):
    """HSIC of one pair of feature blocks from its sums (module docstring).

    ``C = F^T G``, ``a``, ``b`` the column sums; for the unbiased estimate
    also ``kl = sum_i |f_i|^2 |g_i|^2``, ``v = sum_i |g_i|^2 f_i``,
    ``u = sum_i |f_i|^2 g_i``, ``kd = sum_i |f_i|^2``, ``ld = sum_i |g_i|^2``.
    """
    xp = namespace_and_device(C)[0]
    if not unbiased:
        centred = C - a[:, None] * (b / n)[None, :]
        return float(xp.sum(centred * centred)) / (n - 1) ** 2
    trace = float(xp.sum(C * C)) - kl
    sum_k = float(xp.sum(a * a)) - kd
    sum_l = float(xp.sum(b * b)) - ld
    cross = float(xp.sum(a * matmul(C, b[:, None])[:, 0]))
    cross += -float(xp.sum(v * a)) - float(xp.sum(u * b)) + kl
    value = trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)
    return value / (n * (n - 3))


def pair_hsic(F: Any, G: Any, unbiased: bool) -> float:
    """Linear-kernel HSIC of two in-memory feature arrays (one pass).

    The permutation null calls it once per permutation of G's samples.
    """
    xp, device = namespace_and_device(F, G)
    wide = float_dtype(xp, device)
    F = xp.astype(F - xp.mean(F, axis=0), wide)
    G = xp.astype(G - xp.mean(G, axis=0), wide)
    C, a, b = matmul(F.T, G), xp.sum(F, axis=0), xp.sum(G, axis=0)
    if not unbiased:
        return hsic_from_sums(F.shape[0], False, C, a, b)
    f2, g2 = xp.sum(F * F, axis=1), xp.sum(G * G, axis=1)
    return hsic_from_sums(
        F.shape[0],
        True,
        C,
        a,
        b,
        kl=float(xp.sum(f2 * g2)),
        v=matmul(g2[None, :], F)[0, :],
        u=matmul(f2[None, :], G)[0, :],
        kd=float(xp.sum(f2)),
        ld=float(xp.sum(g2)),
    )


def _means(layers: list[Any]) -> list[Any]:
    xp = array_namespace(layers[0])
    return [xp.mean(X, axis=0) for X in layers]


def _row_norms(layers: list[Any], xp: Any) -> Any:
    """(chunk, L): each layer's squared row norms."""
    return xp.stack([xp.sum(F * F, axis=1) for F in layers], axis=1)


def _chunk_sums(layers_a, layers_b, shift_a, shift_b, *, unbiased, wide) -> dict:
    """The sums of one chunk (one compiled program under JAX).

    ``layers_b`` None: the second collection is the first.
    """
    xp = array_namespace(layers_a[0])
    fa = [X - s for X, s in zip(layers_a, shift_a, strict=True)]
    FA = xp.concat(fa, axis=1)
    sums = {"a": xp.sum(FA, axis=0)}
    if layers_b is None:
        sums["ab"] = matmul(FA.T, FA)
    else:
        fb = [Y - s for Y, s in zip(layers_b, shift_b, strict=True)]
        FB = xp.concat(fb, axis=1)
        sums["b"] = xp.sum(FB, axis=0)
        sums["ab"] = matmul(FA.T, FB)
        sums["aa"] = [matmul(F.T, F) for F in fa]
        sums["bb"] = [matmul(G.T, G) for G in fb]
    if unbiased:
        ra = _row_norms(fa, xp)
        sums["ra"] = xp.sum(ra, axis=0)
        sums["fa_ra"] = matmul(FA.T, ra)  # sum_i |f^l_i|^2 f^k_i, (P, L)
        if layers_b is None:
            sums["ra_rb"] = matmul(ra.T, ra)
        else:
            rb = _row_norms(fb, xp)
            sums["rb"] = xp.sum(rb, axis=0)
            sums["ra_rb"] = matmul(ra.T, rb)  # sum_i |f^l_i|^2 |g^m_i|^2
            sums["ra_ra"] = xp.sum(ra * ra, axis=0)
            sums["rb_rb"] = xp.sum(rb * rb, axis=0)
            sums["fa_rb"] = matmul(FA.T, rb)  # (P, M)
            sums["fb_ra"] = matmul(FB.T, ra)  # (Q, L)
            sums["fb_rb"] = matmul(FB.T, rb)  # (Q, M)
    return {
        k: [xp.astype(x, wide) for x in v]
        if isinstance(v, list)
        else xp.astype(v, wide)
        for k, v in sums.items()
    }


def _add_sums(old: dict, new: dict) -> dict:
    return {
        k: [a + b for a, b in zip(v, new[k], strict=True)]
        if isinstance(v, list)
        else v + new[k]
        for k, v in old.items()
    }


class CrossMoments:
    """The sums over samples behind the L x M linear-CKA matrix.

    Parameters
    ----------
    unbiased : bool
        Keep the extra sums of the debiased estimate.
    symmetric : bool
        The second collection is the first (one matrix product per chunk
        instead of two, and the matrix is symmetric with a unit diagonal).

    Every layer is shifted by its mean over the first chunk before summing,
    which changes neither estimate (both are invariant to adding
    ``g(a) + g(b) + c`` to a kernel) and keeps float32 sums free of
    cancellation; sums are held in the widest float of the device.
    """

    def __init__(self, *, unbiased: bool, symmetric: bool):
        self.unbiased = unbiased
        self.symmetric = symmetric
        self.n = 0

    def update(self, layers_a: list[Any], layers_b: list[Any] | None) -> None:
        """Add one chunk: the same samples' activations in every layer (2-D)."""
        xp, device = namespace_and_device(*layers_a)
        if self.symmetric:
            layers_b = None
        if self.n == 0:
            means = compiled(_means, xp)
            self._shift_a = means(layers_a)
            self._shift_b = None if self.symmetric else means(layers_b)
            self._widths_a = [X.shape[1] for X in layers_a]
            self._widths_b = None if self.symmetric else [Y.shape[1] for Y in layers_b]
        kernel = compiled(_chunk_sums, xp, static_argnames=("unbiased", "wide"))
        sums = kernel(
            layers_a,
            layers_b,
            self._shift_a,
            self._shift_b,
            unbiased=self.unbiased,
            wide=float_dtype(xp, device),
        )
        if self.n == 0:
            self._sums = sums
        else:
            self._sums = compiled(_add_sums, xp)(self._sums, sums)
        self.n += layers_a[0].shape[0]

    def host_sums(self) -> dict:
        """The sums as float64 NumPy arrays: P x Q at most, copied once.

        The per-pair algebra is many small operations on blocks of these; on
        the host it costs microseconds, where eager JAX would compile each
        operation for each block shape.
        """
        out = {}
        self._sums = computed_together(self._sums)
        for k, v in self._sums.items():
            if isinstance(v, list):
                out[k] = [to_numpy(x).astype(np.float64) for x in v]
            else:
                out[k] = to_numpy(v).astype(np.float64)
        return out

    def hsic_matrices(self) -> tuple[list[list[float]], list[float], list[float]]:
        """HSIC(X_l, Y_m) for every pair, and the self terms of each side."""
        s = self.host_sums()
        oa = _offsets(self._widths_a)
        ob = oa if self.symmetric else _offsets(self._widths_b)
        b_sum = s["a"] if self.symmetric else s["b"]
        self_a = [self._self_hsic(s, "a", i, lo, hi) for i, (lo, hi) in enumerate(oa)]
        self_b = (
            self_a
            if self.symmetric
            else [self._self_hsic(s, "b", j, lo, hi) for j, (lo, hi) in enumerate(ob)]
        )
        cross = []
        for i, (alo, ahi) in enumerate(oa):
            row = []
            for j, (blo, bhi) in enumerate(ob):
                if self.symmetric and j < i:
                    row.append(cross[j][i])
                    continue
                if self.symmetric and j == i:
                    row.append(self_a[i])
                    continue
                C = s["ab"][alo:ahi, blo:bhi]
                a, b = s["a"][alo:ahi], b_sum[blo:bhi]
                extra = {}
                if self.unbiased:
                    rb_key = "ra" if self.symmetric else "rb"
                    fa_rb = s["fa_ra"] if self.symmetric else s["fa_rb"]
                    fb_ra = s["fa_ra"] if self.symmetric else s["fb_ra"]
                    extra = {
                        "kl": float(s["ra_rb"][i, j]),
                        "v": fa_rb[alo:ahi, j],
                        "u": fb_ra[blo:bhi, i],
                        "kd": float(s["ra"][i]),
                        "ld": float(s[rb_key][j]),
                    }
                row.append(hsic_from_sums(self.n, self.unbiased, C, a, b, **extra))
            cross.append(row)
        return cross, self_a, self_b

    def _self_hsic(self, s: dict, side: str, i: int, lo: int, hi: int) -> float:
        a = s[side][lo:hi]
        if self.symmetric:
            G = s["ab"][lo:hi, lo:hi]
        else:
            G = s[side + side][i]
        if not self.unbiased:
            return hsic_from_sums(self.n, self.unbiased, G, a, a)
        r = "r" + side
        if self.symmetric:
            kl, w = float(s["ra_rb"][i, i]), s["fa_ra"][lo:hi, i]
        else:
            kl = float(s[r + "_" + r][i])
            w = s[f"f{side}_{r}"][lo:hi, i]
        kd = float(s[r][i])
        return hsic_from_sums(
            self.n, self.unbiased, G, a, a, kl=kl, v=w, u=w, kd=kd, ld=kd
        )

    def cka_matrix(self) -> tuple[list[list[float]], list[tuple[int, int]]]:
        """CKA for every pair; NaN (and the pair listed) where a self term is <= 0."""
        cross, self_a, self_b = self.hsic_matrices()
        out, undefined = [], []
        for i, row in enumerate(cross):
            values = []
            for j, h in enumerate(row):
                if self_a[i] > 0 and self_b[j] > 0:
                    values.append(h / math.sqrt(self_a[i] * self_b[j]))
                else:
                    values.append(math.nan)
                    undefined.append((i, j))
            out.append(values)
        return out, undefined
