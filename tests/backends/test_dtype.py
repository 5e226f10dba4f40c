import numpy as np
import pytest

from infoscope.backends import (
    as_float,
    asarray,
    device_name,
    float_dtype,
    namespace_and_device,
    supports_float64,
    to_numpy,
)


def test_supports_float64_matches_the_device(backend):
    expected = not (
        backend.spec.strict_device == "no_float64" or backend.spec.x64 is False
    )
    assert supports_float64(backend.xp, backend.device) is expected
    assert backend.has_float64 is expected


def test_supports_float64_reads_what_the_namespace_info_reports(backend):
    # JAX is answered from its x64 flag (its info rebuilds a table per call):
    # the answer must stay the one the standard's inspection API gives.
    info = backend.xp.__array_namespace_info__()
    try:
        dtypes = info.dtypes(device=backend.device, kind="real floating")
    except TypeError:
        dtypes = info.dtypes(kind="real floating")
    expected = "float64" in dtypes
    if backend.spec.library == "torch":
        # torch's info lists float64 on every device; MPS lacks it.
        expected = device_name(backend.device) != "mps"
    assert supports_float64(backend.xp, backend.device) is expected


def test_float_dtype_is_the_widest(backend):
    xp = backend.xp
    widest = float_dtype(xp, backend.device)
    assert widest == (xp.float64 if backend.has_float64 else xp.float32)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_])
def test_ints_and_bools_promote_to_the_widest_float(backend, dtype):
    if backend.spec.x64 is False and dtype == np.int64:
        dtype = np.int32  # JAX without x64 has no 64-bit ints either
    x = backend.asarray(np.array([[0, 1], [1, 0]], dtype=dtype))
    out = as_float(x)
    assert out.dtype == float_dtype(backend.xp, backend.device)
    np.testing.assert_array_equal(to_numpy(out), [[0, 1], [1, 0]])


def test_float32_and_float64_are_kept(backend):
    for dtype in backend.float_dtypes():
        x = backend.xp.ones(3, dtype=dtype, device=backend.device)
        assert as_float(x) is x


def test_half_precision_becomes_float32(backend):
    xp = backend.xp
    if not hasattr(xp, "float16"):
        pytest.skip(f"{backend.id} has no float16")
    x = xp.ones(3, dtype=xp.float16, device=backend.device)
    assert as_float(x).dtype == xp.float32


def test_complex_is_rejected(backend):
    xp = backend.xp
    x = xp.ones(2, dtype=xp.complex64, device=backend.device)
    with pytest.raises(TypeError, match="complex arrays are not supported"):
        as_float(x)


def test_asarray_puts_array_likes_on_the_device(backend):
    out = asarray([[1.0, 2.0]], xp=backend.xp, device=backend.device)
    _, device = namespace_and_device(out)
    assert device_name(device) == device_name(backend.device)
    assert tuple(out.shape) == (1, 2)
