import numpy as np
import pytest
from _harness import BACKENDS, Backend, available_backends

from infoscope.backends import (
    device_name,
    is_array,
    namespace_and_device,
    namespace_name,
    synchronize,
    to_numpy,
)


def test_namespace_and_device_of_each_backend(backend):
    x = backend.asarray(np.ones((3, 2)))
    xp, device = namespace_and_device(x, None, [1, 2, 3])
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)
    assert namespace_name(xp) in repr(xp) or namespace_name(xp) == "jax"


def test_array_likes_alone_mean_numpy_on_cpu():
    xp, device = namespace_and_device([1.0, 2.0], None, 3.0, np.float64(1.0))
    assert namespace_name(xp) == "numpy"
    assert device_name(device) == "cpu"


def test_is_array_rejects_scalars_and_lists():
    assert is_array(np.ones(2))
    assert not is_array(np.float32(1.0))
    assert not is_array([1.0])
    assert not is_array(1.0)


def _pairs_of_libraries():
    ids = available_backends()
    firsts = {}
    for spec in BACKENDS:
        if spec.id in ids and spec.device == "cpu" and spec.x64 is not False:
            firsts.setdefault(spec.library, spec)
    specs = list(firsts.values())
    return [(a, b) for i, a in enumerate(specs) for b in specs[i + 1 :]]


@pytest.mark.parametrize(
    "pair", _pairs_of_libraries(), ids=lambda p: f"{p[0].id}+{p[1].id}"
)
def test_mixed_namespaces_name_both(pair):
    a, b = (Backend(spec) for spec in pair)
    with pytest.raises(ValueError) as info:
        namespace_and_device(
            a.asarray(np.ones(2, np.float32)),
            b.asarray(np.ones(2, np.float32)),
            names=("X", "Y"),
        )
    message = str(info.value)
    assert f"`X` is a {a.spec.library} array" in message
    assert f"`Y` is a {b.spec.library}" in message
    assert "Convert" in message


def test_mixed_devices_name_both():
    # array-api-strict models several devices on the CPU: the device check runs here.
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray([1.0], device=xps.Device("CPU_DEVICE"))
    y = xps.asarray([1.0], device=xps.Device("device1"))
    with pytest.raises(
        ValueError,
        match=r"`X` is on device 'CPU_DEVICE' but `W` is on device 'device1'",
    ):
        namespace_and_device(x, y, names=("X", "W"))


def test_names_must_match_arrays():
    with pytest.raises(ValueError, match="2 arrays but 1 names"):
        namespace_and_device(np.ones(1), np.ones(1), names=("X",))


def test_synchronize_returns_its_input(backend):
    x = backend.asarray(np.arange(3.0))
    assert synchronize(x) is x


def test_to_numpy_round_trip(backend):
    data = np.arange(6.0).reshape(2, 3)
    out = to_numpy(backend.asarray(data))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, data)


def test_to_numpy_detaches_torch_graph():
    torch = pytest.importorskip("torch")
    t = torch.ones(3, requires_grad=True) * 2
    np.testing.assert_array_equal(to_numpy(t), [2.0, 2.0, 2.0])


def test_to_numpy_of_array_likes():
    np.testing.assert_array_equal(to_numpy([[1, 2]]), np.array([[1, 2]]))
