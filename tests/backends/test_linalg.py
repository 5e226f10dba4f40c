import numpy as np
import pytest
from _harness import rtol
from hypothesis import given, settings
from hypothesis import strategies as st

from infoscope.backends import (
    device_name,
    eigh_top,
    eigvalsh,
    matmul,
    namespace_and_device,
    namespace_name,
    to_numpy,
)


def _symmetric_with_spectrum(eigenvalues, seed=0):
    n = len(eigenvalues)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * np.asarray(eigenvalues)) @ q.T


def test_matches_numpy_float64_reference(backend):
    a = _symmetric_with_spectrum(np.linspace(-3.0, 5.0, 12))
    expected = np.linalg.eigvalsh(a)
    for dtype in backend.float_dtypes():
        x = backend.xp.astype(backend.asarray(a), dtype)
        w = eigvalsh(x)
        xp, device = namespace_and_device(w)
        assert namespace_name(xp) == backend.spec.library
        assert device_name(device) == device_name(backend.device)
        assert w.dtype == dtype
        assert tuple(w.shape) == (12,)
        np.testing.assert_allclose(
            to_numpy(w), expected, rtol=rtol(dtype), atol=rtol(dtype) * 5
        )


def test_ascending_on_stacks(backend):
    a = np.stack([_symmetric_with_spectrum([3.0, 1.0, 2.0], seed=s) for s in range(4)])
    w = to_numpy(eigvalsh(backend.asarray(a)))
    assert w.shape == (4, 3)
    np.testing.assert_allclose(w, np.tile([1.0, 2.0, 3.0], (4, 1)), atol=1e-5)


def test_integer_input_is_promoted(backend):
    a = backend.asarray(np.array([[2, 1], [1, 2]], dtype=np.int32))
    w = eigvalsh(a)
    assert backend.xp.isdtype(w.dtype, "real floating")
    np.testing.assert_allclose(to_numpy(w), [1.0, 3.0], rtol=1e-6)


def test_float64_precision_resolves_small_eigenvalues_of_float32_input(backend):
    if not backend.has_float64:
        pytest.skip(f"{backend.id} has no float64 to decompose in")
    # A float32 matrix whose exact spectrum spans eight orders of magnitude.
    a32 = _symmetric_with_spectrum(np.geomspace(1e-8, 1.0, 40)).astype(np.float32)
    exact = np.linalg.eigvalsh(a32.astype(np.float64))[:10]
    x = backend.asarray(a32)
    high = to_numpy(eigvalsh(x, precision="float64"))[:10]
    low = to_numpy(eigvalsh(x, precision="input"))[:10]
    err_high = np.max(np.abs(high - exact))
    err_low = np.max(np.abs(low - exact))
    assert err_high <= 1e-12
    if backend.spec.library != "array_api_strict":  # it decomposes in float64 anyway
        assert err_high * 100 < err_low


def test_rejects_non_square(backend):
    with pytest.raises(
        ValueError,
        match=r"square matrices of shape \(\.\.\., n, n\), got shape \(2, 3\)",
    ):
        eigvalsh(backend.asarray(np.ones((2, 3))))


def test_rejects_unknown_precision():
    with pytest.raises(
        ValueError, match="precision must be 'float64' or 'input', got 'double'"
    ):
        eigvalsh(np.eye(2), precision="double")


def test_dask_is_refused_with_the_fix():
    da = pytest.importorskip("dask.array")
    with pytest.raises(
        TypeError,
        match=r"eigvalsh does not run on dask arrays: .* Call \.compute\(\) first",
    ):
        eigvalsh(da.eye(3))
    with pytest.raises(TypeError, match=r"eigh_top does not run on dask arrays"):
        eigh_top(da.eye(3), 1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8), st.integers(0, 2**16))
def test_property_recovers_any_spectrum(values, seed):
    a = _symmetric_with_spectrum(values, seed)
    scale = max(1.0, max(abs(v) for v in values))
    np.testing.assert_allclose(eigvalsh(a), np.sort(values), atol=1e-10 * scale)


def test_matmul_matches_numpy_at_full_precision(backend):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 3))
    for dtype in backend.float_dtypes():
        out = matmul(
            backend.xp.astype(backend.asarray(a), dtype),
            backend.xp.astype(backend.asarray(b), dtype),
        )
        assert out.dtype == dtype
        np.testing.assert_allclose(
            to_numpy(out), a @ b, rtol=rtol(dtype), atol=rtol(dtype)
        )


def test_matmul_asks_jax_for_its_highest_precision(monkeypatch):
    jax = pytest.importorskip("jax")
    seen = {}
    real = jax.numpy.matmul

    def spy(a, b, precision=None):
        seen["precision"] = precision
        return real(a, b, precision=precision)

    monkeypatch.setattr(jax.numpy, "matmul", spy)
    matmul(jax.numpy.ones((2, 2)), jax.numpy.ones((2, 2)))
    assert seen["precision"] == "highest"
