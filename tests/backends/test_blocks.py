"""Principal blocks decomposed as stacks; JAX compiles once per bucket of shapes."""

import math

import numpy as np
import pytest
from _harness import rtol
from array_api_compat import array_namespace

from infoscope import diffusion_spectral_mutual_information, ntk_mutual_information
from infoscope.backends import to_numpy
from infoscope.backends._blocks import block_reductions, bucket


def _largest_and_count(w, sizes, dtype):
    xp = array_namespace(w)
    return xp.max(w, axis=-1), xp.sum(xp.astype(w != 0, xp.int32), axis=-1)


def _gram(n, d=6, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return X @ X.T + 0.5 * np.eye(n)


def test_buckets_cover_and_pad_little():
    sizes = np.arange(1, 5000)
    padded = np.array([bucket(int(n)) for n in sizes])
    assert np.all(padded >= sizes)
    assert np.all(np.diff(padded) >= 0)
    above = sizes > 64
    assert np.max(padded[above] / sizes[above]) <= 1.125
    # few shapes: at most eight per octave
    assert len(np.unique(padded)) <= 8 * 9


def test_blocks_match_their_own_decomposition(backend):
    M = _gram(70)
    rng = np.random.default_rng(1)
    blocks = [np.sort(rng.choice(70, size=s, replace=False)) for s in (1, 5, 33, 64, 5)]
    for dtype in backend.float_dtypes():
        A = backend.xp.astype(backend.asarray(M), dtype)
        largest, count = block_reductions(A, blocks, _largest_and_count)
        for b, rows in enumerate(blocks):
            w = np.linalg.eigvalsh(M[np.ix_(rows, rows)])
            assert count[b] == rows.size  # no padded eigenvalue left over
            np.testing.assert_allclose(largest[b], w[-1], rtol=rtol(dtype))


def test_normalized_blocks_are_diffusion_operators():
    M = np.exp(-_gram(40) / 40.0)
    rows = np.arange(3, 30)
    (largest, _) = block_reductions(M, [rows], _largest_and_count, normalize=True)
    np.testing.assert_allclose(largest, [1.0])  # the stationary eigenvalue


# --------------------------------------------------------------------------- #
# No compilation for a new class, subset or sample count within a bucket
# --------------------------------------------------------------------------- #

_COMPILES = []


def _jax_counting():
    jax = pytest.importorskip("jax")
    if not _COMPILES:
        _COMPILES.append(0)

        def listener(event, duration, **kwargs):
            if event == "/jax/core/compile/backend_compile_duration":
                _COMPILES[0] += 1

        jax.monitoring.register_event_duration_secs_listener(listener)
    return jax


def _compiles_during(fn):
    before = _COMPILES[0]
    fn()
    return _COMPILES[0] - before


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_dsmi_compiles_once_for_every_class_size():
    jax = _jax_counting()
    Z = jax.numpy.asarray(np.random.default_rng(0).normal(size=(120, 5)))

    def dsmi(counts):
        y = np.random.default_rng(1).permutation(_labels(counts))
        return diffusion_spectral_mutual_information(Z, y, sigma=2.0, random_state=0)

    dsmi([60, 60])  # compiles: the kernel of Z, stacks of 16 blocks of 64 rows
    # Other class sizes in that bucket (57 to 64 rows): nothing new.
    for counts in ([58, 62], [57, 63], [61, 59]):
        assert _compiles_during(lambda c=counts: dsmi(c)) == 0
    # The value is the one NumPy computes.
    counts = [57, 63]
    y = np.random.default_rng(1).permutation(_labels(counts))
    expected = diffusion_spectral_mutual_information(
        np.asarray(Z), y, sigma=2.0, random_state=0
    )
    np.testing.assert_allclose(dsmi(counts), expected, rtol=rtol(Z.dtype))


def test_ntk_mutual_information_compiles_once_for_every_class_size():
    jax = _jax_counting()
    K = jax.numpy.asarray(_gram(150, d=40))

    def mi(counts):
        return ntk_mutual_information(K, _labels(counts), max_combination_size=2)

    mi([50, 50, 50])  # compiles: single classes (bucket 56), pairs (bucket 112)
    # Classes of 49 to 56 samples whose pairs have 97 to 112 rows: the same
    # buckets, whatever the class sizes.
    for counts in ([49, 52, 49], [51, 50, 49], [52, 49, 49]):
        assert _compiles_during(lambda c=counts: mi(c)) == 0
    result = mi([51, 50, 49])
    expected = ntk_mutual_information(
        np.asarray(K), _labels([51, 50, 49]), max_combination_size=2
    )
    np.testing.assert_allclose(
        to_numpy(result.mutual_information),
        expected.mutual_information,
        rtol=rtol(K.dtype),
        atol=rtol(K.dtype),
    )


def test_matrices_of_one_bucket_share_a_compiled_kernel():
    jax = _jax_counting()
    blocks = [np.arange(10), np.arange(5, 30)]
    block_reductions(jax.numpy.asarray(_gram(60)), blocks, _largest_and_count)
    for n in (57, 62, 64):  # every matrix size padded to the bucket of 64
        M = jax.numpy.asarray(_gram(n))
        assert (
            _compiles_during(
                lambda M=M: block_reductions(M, blocks, _largest_and_count)
            )
            == 0
        )
    assert math.isfinite(float(block_reductions(M, blocks, _largest_and_count)[0][1]))
