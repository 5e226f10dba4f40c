"""Moving arrays between libraries: host views, grouped transfers, private copies.

JAX on the CPU computes the measures whose work is matrix products and small
eigenproblems with NumPy on JAX's own buffers (``host_view``); these tests
pin what that promises: no copy, nothing inside ``jax.jit``, NumPy's numbers
exactly, results back on JAX's device, and nothing compiled for a new sample
count (the kNN search, which stays on XLA, compiles once per bucket of
counts and never for new data).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import array_api_compat
import numpy as np
import pytest

import infoscope as isc
from infoscope.backends import asarrays, host_view, host_views, private_copy


def test_host_view_of_numpy_is_the_array_itself():
    a = np.arange(6.0).reshape(2, 3)
    assert host_view(a) is a
    assert host_views(a, a) == (a, a)


def test_host_view_refuses_other_libraries():
    torch = pytest.importorskip("torch")
    xps = pytest.importorskip("array_api_strict")
    assert host_view(torch.ones(3)) is None
    assert host_view(xps.ones(3)) is None
    assert host_views(np.ones(3), torch.ones(3)) is None


def test_host_view_reads_jax_memory_in_place():
    jax = pytest.importorskip("jax")
    x = jax.device_put(np.arange(12, dtype=np.float32).reshape(3, 4))
    view = host_view(x)
    assert isinstance(view, np.ndarray)
    # The same buffer, not a copy; and NumPy may not write to it.
    assert view.__array_interface__["data"][0] == x.unsafe_buffer_pointer()
    assert not view.flags.writeable
    np.testing.assert_array_equal(view, np.arange(12).reshape(3, 4))


def test_host_view_is_none_while_jax_traces():
    jax = pytest.importorskip("jax")
    seen = []

    @jax.jit
    def f(x):
        seen.append(host_view(x))
        return x + 1

    f(jax.device_put(np.ones(3)))
    assert seen == [None]


def test_asarrays_sends_arrays_of_one_dtype_together():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    parts = [
        np.arange(3.0, dtype=np.float32),
        np.ones((2, 4), np.float32),
        np.zeros(0, np.float32),
    ]
    out = asarrays(parts, xp=jnp, device=jax.devices("cpu")[0])
    assert all(array_api_compat.is_jax_array(o) for o in out)
    for got, want in zip(out, parts, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
    # Mixed dtypes go one by one, each keeping its own.
    a, b = asarrays([np.ones(2, np.float32), np.arange(2, dtype=np.int32)], xp=jnp)
    assert (a.dtype, b.dtype) == (np.float32, np.int32)


def test_asarrays_for_numpy_returns_numpy():
    import array_api_compat.numpy as xp

    a, b = asarrays([np.ones(2), np.zeros((1, 2))], xp=xp)
    assert isinstance(a, np.ndarray) and b.shape == (1, 2)


def test_private_copy_is_independent_of_later_writes():
    torch = pytest.importorskip("torch")
    for a in (np.zeros(3), torch.zeros(3)):
        b = private_copy(a)
        a[0] = 1.0
        assert float(b[0]) == 0.0


def test_private_copy_keeps_immutable_jax_arrays():
    jax = pytest.importorskip("jax")
    x = jax.device_put(np.ones(3))
    assert private_copy(x) is x


def _layers(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12)).astype(np.float32)
    H = np.tanh(X @ rng.standard_normal((12, 6)).astype(np.float32))
    W = rng.standard_normal((12, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    J = rng.standard_normal((n, 20))
    K = (J @ J.T / 20).astype(np.float32)
    return X, H, W, y, K, H[:7].copy()  # the last: new samples for transform


def _measures(X, H, W, y, K, Q):
    geometry = isc.RepresentationGeometry().fit(H)
    snr = isc.NodeSNR().fit(X, weights=W)
    dse = isc.DiffusionSpectralEntropy(sigma="median").fit(H)
    return {
        "mutual_knn": isc.mutual_knn_alignment(X, H, n_neighbors=5),
        "cknna": isc.cknna(X, H, n_neighbors=5),
        "knn_adjacency": isc.adjacency_spectral_entropy(
            H, variant="knn", n_neighbors=5
        ),
        "dse": dse.entropy_,
        "dse_eigenvalues": dse.eigenvalues_,
        "dse_embedding": dse.embedding_,
        "dse_transform": dse.transform(Q),
        "dsmi_embedding": isc.DiffusionSpectralMutualInformation(random_state=0)
        .fit(H, y)
        .embedding_,
        "hsic": isc.hsic(X, H),
        "hsic_approximate": isc.hsic(X, H, method="approximate", random_state=0),
        "cka": isc.cka(X, H, kernel_x="linear", kernel_y="linear"),
        "hsic_test": isc.hsic_test(X, H, n_permutations=20, random_state=0).statistic,
        "plane": isc.HSICPlane().fit(X, y).transform([H]),
        "plane_approximate": isc.HSICPlane(method="approximate", random_state=0)
        .fit(X, y)
        .transform([H]),
        "rbf_cka_test": isc.similarity_test(
            X, H, measure="rbf_cka", n_permutations=10, random_state=0
        ).pvalue,
        "similarity": isc.similarity_matrix([X, H]),
        "rankme": geometry.rankme_,
        "spectrum": geometry.covariance_spectrum_,
        "snr": snr.optimality_,
        "snr_c": snr.covariance_,
        "ntk_entropy": isc.ntk_entropy(K),
        "greedy_selection": isc.selection.GreedyEntropySelector(
            n_select=5, random_state=0
        )
        .fit(K)
        .indices_,
        "ntk_mi": isc.ntk_mutual_information(K, y).mutual_information,
        "dsmi": isc.diffusion_spectral_mutual_information(H, y, random_state=0),
    }


def test_jax_cpu_measures_equal_numpys_and_stay_on_jax():
    jax = pytest.importorskip("jax")
    host = _layers(60)
    on_jax = [jax.device_put(a) for a in host]
    expected = _measures(*host)
    got = _measures(*on_jax)
    for name, value in expected.items():
        if isinstance(value, float):
            assert got[name] == value, name
        else:
            assert array_api_compat.is_jax_array(got[name]), name
            # Float64 results (on the host) arrive as float32 (JAX without x64).
            want = np.asarray(value).astype(got[name].dtype)
            np.testing.assert_array_equal(np.asarray(got[name]), want, err_msg=name)


@contextlib.contextmanager
def _counting_compiles():
    """A list that collects one entry per XLA compilation while open."""
    monitoring = pytest.importorskip("jax.monitoring")
    compiles = []

    def listener(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        monitoring.unregister_event_duration_listener(listener)


def test_jax_cpu_knn_search_compiles_once_per_bucket_not_per_data():
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(3)
    counts = []
    with _counting_compiles() as compiles:
        for n, scale in ((120, 1.0), (120, 1e3), (117, 1e-3)):  # one bucket
            H = jax.device_put(rng.standard_normal((n, 6)).astype(np.float32) * scale)
            compiles.clear()
            found = isc.backends.knn_indices(H, 4, include_self=False)
            counts.append(len(compiles))
            expected = isc.backends.knn_indices(np.asarray(H), 4, include_self=False)
            np.testing.assert_array_equal(np.asarray(found), expected)
    # New data and a new count in the bucket: nothing compiled after the first.
    assert counts[1:] == [0, 0]


def test_jax_cpu_measures_compile_nothing_for_a_new_sample_count():
    jax = pytest.importorskip("jax")
    with _counting_compiles() as compiles:
        _measures(*[jax.device_put(a) for a in _layers(50)])
        compiles.clear()
        # 53 samples: the bucket of 50 (56 rows), where the kNN search was compiled.
        _measures(*[jax.device_put(a) for a in _layers(53, seed=1)])
    assert compiles == []


_SHARDED = """
import numpy as np, jax, infoscope as isc
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices("cpu")), ("d",))
rng = np.random.default_rng(5)
H = rng.standard_normal((96, 8)).astype(np.float32)
G = np.tanh(H @ rng.standard_normal((8, 3))).astype(np.float32)
W = rng.standard_normal((8, 5)).astype(np.float32)
y = rng.integers(0, 3, 96)
Hs, Gs, Ws = (jax.device_put(a, NamedSharding(mesh, P("d", None))) for a in (H, G, W))
dse = isc.DiffusionSpectralEntropy().fit(Hs)
geometry = isc.RepresentationGeometry().fit(Hs)
snr = isc.NodeSNR().fit(Hs, weights=Ws)
pairs = [
    (dse.entropy_, isc.DiffusionSpectralEntropy().fit(H).entropy_),
    (geometry.rankme_, isc.RepresentationGeometry().fit(H).rankme_),
    (isc.hsic(Hs, Gs), isc.hsic(H, G)),
    (isc.mutual_knn_alignment(Hs, Gs), isc.mutual_knn_alignment(H, G)),
    (isc.diffusion_spectral_mutual_information(Hs, y, random_state=0),
     isc.diffusion_spectral_mutual_information(H, y, random_state=0)),
]
assert all(a == b for a, b in pairs), pairs
arrays = [dse.eigenvalues_, dse.embedding_, dse.transform(Hs), geometry.singular_values_,
          snr.optimality_, isc.similarity_matrix([Hs, Gs])]
assert all(len(a.devices()) == 4 for a in arrays), [a.sharding for a in arrays]
print("ok")
"""


def test_jax_arrays_sharded_over_cpu_devices_get_their_results_there():
    # A spectrum of 96 values cannot take the input's (rows, columns)
    # sharding: host results are replicated on the same devices instead.
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run(
        [sys.executable, "-c", _SHARDED],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
