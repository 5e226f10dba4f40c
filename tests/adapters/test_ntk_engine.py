"""The framework-neutral NTK engine on plain arrays (NumPy, array-api-strict).

The engine gets per-block features from a framework module; here they come
from fixed per-sample Jacobians and Gram pairs, so the result can be held to
``J J^T`` exactly, whatever the blocks, groups and mode.
"""

from __future__ import annotations

import numpy as np
import pytest

from infoscope.adapters import _ntk


def reference(J1, J2, mode):
    n1, k, _ = J1.shape
    n2 = J2.shape[0]
    if mode == "mean":
        return np.einsum("iap,jap->ij", J1, J2) / k
    if mode == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return np.einsum("iap,jbp->iajb", J1, J2).reshape(n1 * k, n2 * k)


class Features:
    """Features of two terms: a Gram layer (A, G) and plain Jacobians.

    The Gram layer's Jacobian is ``einsum("bpi,bkpo->bkio", A, G)``; padding
    rows (as JAX's blocks have) are added and must be cut by the engine.
    """

    def __init__(self, xp, X1, X2, k, pad=0):
        rng = np.random.default_rng(0)
        self.xp, self.k, self.pad = xp, k, pad
        self.sides = []
        for n in (X1, X2):
            if n is None:
                self.sides.append(None)
                continue
            A = rng.standard_normal((n, 3, 4))
            G = rng.standard_normal((n, k, 3, 2))
            J = rng.standard_normal((n, k, 5))
            self.sides.append((A, G, J))
        self.calls = 0

    def jacobians(self, side):
        A, G, J = self.sides[side]
        gram = np.einsum("bpi,bkpo->bkio", A, G).reshape(len(A), self.k, -1)
        return np.concatenate([gram, J], axis=2)

    def __call__(self, side, block, group):
        self.calls += 1
        A, G, J = (a[block] for a in self.sides[side])
        b = A.shape[0]
        if self.pad:
            A, G, J = (
                np.concatenate([a, a[:1].repeat(self.pad, 0)]) for a in (A, G, J)
            )
        feats = []
        for term in group:
            if term.kind == "gram":
                feats.append((self.xp.asarray(A), self.xp.asarray(G)))
        if any(t.kind == "jacobian" for t in group):
            feats.append(self.xp.asarray(J))
        return feats, b


TERMS = [_ntk.Term("layer", "gram", 8.0), _ntk.Term("rest", "jacobian", 8.0)]


@pytest.mark.parametrize("mode", ["mean", "sum", "full"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_blocked_ntk_is_the_jacobian_contraction(mode, symmetric):
    k = 1 if mode == "sum" else 3
    n1, n2 = 7, None if symmetric else 4
    features = Features(np, n1, n2, k, pad=2)
    K = _ntk.compute(
        np,
        features,
        TERMS,
        n1=n1,
        n2=n2,
        k=k,
        mode=mode,
        batch_size=3,
        dtype=np.float64,
        device="cpu",
        itemsize=8,
    )
    J1 = features.jacobians(0)
    J2 = J1 if symmetric else features.jacobians(1)
    if mode == "sum":  # the outputs summed before: one output
        J1, J2 = J1.sum(1, keepdims=True), J2.sum(1, keepdims=True)
    np.testing.assert_allclose(K, reference(J1, J2, mode), rtol=1e-12, atol=1e-12)
    # Each block's features once (3 + 0 or 2 column blocks).
    assert features.calls == 3 + (0 if symmetric else 2)


def test_groups_pass_the_blocks_once_each_within_the_budget():
    features = Features(np, 6, None, 2)
    with pytest.warns(RuntimeWarning, match="more than the"):
        K = _ntk.compute(
            np,
            features,
            TERMS,
            n1=6,
            n2=None,
            k=2,
            mode="mean",
            batch_size=4,
            dtype=np.float64,
            device="cpu",
            itemsize=8,
            budget=1,  # each term its own group
        )
    assert features.calls == 2 * 2  # two groups, two blocks
    J = features.jacobians(0)
    np.testing.assert_allclose(K, reference(J, J, "mean"), rtol=1e-12)


def test_written_once_against_the_array_api():
    xps = pytest.importorskip("array_api_strict")
    features = Features(xps, 5, None, 2)
    K = _ntk.compute(
        xps,
        features,
        TERMS,
        n1=5,
        n2=None,
        k=2,
        mode="full",
        batch_size=2,
        dtype=xps.float64,
        device=None,
        itemsize=8,
    )
    J = features.jacobians(0)
    np.testing.assert_allclose(np.asarray(K), reference(J, J, "full"), rtol=1e-12)


def test_the_plan_takes_the_cheaper_contraction_per_layer():
    # A dense layer on vectors: one position, the Gram form; a convolution
    # applied at 64 positions: its Jacobians (the Gram form would cost
    # 64^2 (27 + 10 x 16) per pair against 10 x 27 x 16).
    dense = _ntk.Layer("fc", 1, 257, 256, [("fc.w", 65536), ("fc.b", 256)])
    conv = _ntk.Layer("conv", 64, 27, 16, [("conv.w", 432)])
    params = [("conv.w", 432, 0), ("fc.w", 65536, 1), ("fc.b", 256, 2), ("ln", 0, 3)]
    terms = _ntk.plan_terms([dense, conv], params, 10, "mean", 4)
    assert [(t.name, t.kind) for t in terms] == [("fc", "gram"), ("conv.w", "jacobian")]
    assert terms[0].bytes_per_sample == 1 * (257 + 10 * 256) * 4
    assert terms[1].bytes_per_sample == 10 * 432 * 4


def test_block_size_default_and_cap():
    assert _ntk.block_size(100_000, None, 8 * 1000, 4, 1) == 2048
    assert _ntk.block_size(100_000, None, 8 * 1000, 8, 1) == 1448
    assert _ntk.block_size(100_000, None, 8 * 1000, 4, 10) == 204
    assert _ntk.block_size(10, None, 1e9, 4, 1) == 10
    assert _ntk.block_size(100, 7, 1.0, 4, 1) == 7


def test_mixing_is_a_difference_beyond_rounding():
    batch = np.ones((3, 2))
    assert not _ntk.mixes_samples(batch, batch + 1e-14)
    assert _ntk.mixes_samples(batch, batch + 1e-6)
