"""The streamed measures on a dask.distributed cluster, on data larger than a worker.

Two worker processes with one thread each and a memory limit below the size of
X (a zarr array on disk): a measure that pulled X into one worker would be
refused by the scheduler or kill the worker, so equal values mean the sums
over samples were computed chunk by chunk where the chunks live. Each value
is compared with the same measure of the arrays in memory.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from infoscope import (  # noqa: E402
    RepresentationGeometry,
    cka,
    hsic,
    node_snr,
    rankme,
    similarity_matrix,
)

N, P, Q, CHUNK = 160_000, 64, 8, 40_000
MEMORY_LIMIT = 32 * 2**20  # below X's 39 MiB


@pytest.fixture(scope="module")
def client():
    import dask

    # A worker process's own footprint (Python, NumPy, dask: about 135 MiB)
    # is above this limit, so the nanny's thresholds (spill, pause,
    # terminate) are off; the scheduler still refuses any task whose inputs
    # exceed the limit, and the test checks what the workers hold.
    memory = "distributed.worker.memory."
    off = {memory + key: False for key in ("target", "spill", "pause", "terminate")}
    with dask.config.set(off):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=MEMORY_LIMIT,
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """X (N x P) and Y (N x Q) in zarr on disk, and the same in memory."""
    root = tmp_path_factory.mktemp("zarr")
    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((N, P), dtype=np.float32))
    Y = 0.5 * X[:, :Q] + rng.standard_normal((N, Q), dtype=np.float32)
    for name, values in (("x", X), ("y", Y)):
        stored = zarr.open_array(
            str(root / name),
            mode="w",
            shape=values.shape,
            chunks=(CHUNK, None),
            dtype="f4",
        )
        stored[...] = values
    Xd = da.from_zarr(str(root / "x"))
    Yd = da.from_zarr(str(root / "y"))
    assert Xd.nbytes > MEMORY_LIMIT
    return X, Y, Xd, Yd


def _weights(X):
    W = np.random.default_rng(1).standard_normal((P, 3)).astype("f4")
    return da.from_array(W) if isinstance(X, da.Array) else W


MEASURES = {
    "linear HSIC": lambda X, Y: hsic(X, Y, kernel_x="linear"),
    "linear CKA, unbiased": lambda X, Y: cka(
        X, Y, kernel_x="linear", estimator="unbiased"
    ),
    "approximate HSIC": lambda X, Y: hsic(
        X,
        Y,
        sigma_x=8.0,
        sigma_y=3.0,
        method="approximate",
        n_components=16,
        random_state=0,
    ),
    "approximate CKA": lambda X, Y: cka(
        X,
        Y,
        sigma_x=8.0,
        sigma_y=3.0,
        method="approximate",
        n_components=16,
        random_state=0,
    ),
    "node SNR": lambda X, Y: np.concatenate(
        [np.asarray(part) for part in node_snr(X, _weights(X))[:2]]
    ),
    "similarity matrix": lambda X, Y: np.asarray(similarity_matrix([X, Y], [Y])),
    "rankme": lambda X, Y: rankme(X),
    "alpha-ReQ": lambda X, Y: RepresentationGeometry().fit(X).alpha_req_,
}


@pytest.mark.parametrize("name", MEASURES)
def test_streamed_measure_on_a_cluster_equals_the_in_memory_value(client, arrays, name):
    X, Y, Xd, Yd = arrays
    measure = MEASURES[name]
    on_cluster = measure(Xd, Yd)
    if hasattr(on_cluster, "compute"):
        on_cluster = on_cluster.compute()
    in_memory = measure(X, Y)
    np.testing.assert_allclose(on_cluster, in_memory, rtol=2e-4)
    # Nothing the size of X came back to this process or stayed on a worker.
    held = client.run(lambda dask_worker: dask_worker.state.nbytes)
    assert max(held.values()) < MEMORY_LIMIT // 4


@pytest.mark.parametrize(
    "name, most_reads",
    [
        ("linear_cka", 3),  # finiteness, the power-of-two scale, the sums
        ("approximate_hsic", 3),  # finiteness, the median's rows, the sums
        ("node_snr", 2),  # finiteness, the sums
        ("similarity_matrix", 3),
        ("rankme", 2),  # finiteness, the Gram
    ],
)
def test_a_streamed_measure_reads_each_chunk_in_few_passes(name, most_reads):
    """The sums of a pass are one graph: a chunk is drawn from its source (a
    zarr store, a generator on a worker) once for them, not once per sum."""
    import dask

    reads: dict[tuple, int] = {}

    def counted(block, block_info=None):
        where = block_info[0]["chunk-location"]
        reads[where] = reads.get(where, 0) + 1
        return block

    rng = np.random.default_rng(0)
    X_host = np.abs(rng.standard_normal((4000, 16)))
    Y_host = X_host[:, :4] + rng.standard_normal((4000, 4))
    X = da.from_array(X_host, chunks=(1000, -1)).map_blocks(counted, dtype=float)
    Y = da.from_array(Y_host, chunks=(1000, -1))
    W = da.from_array(rng.standard_normal((16, 5)))
    calls = {
        "linear_cka": lambda: cka(X, Y, kernel_x="linear"),
        "approximate_hsic": lambda: hsic(
            X, Y, method="approximate", n_components=64, random_state=0
        ),
        "node_snr": lambda: [a.compute() for a in node_snr(X, W)[:2]],
        "similarity_matrix": lambda: similarity_matrix([X, Y], [X, Y]).compute(),
        "rankme": lambda: rankme(X),
    }
    with dask.config.set(scheduler="synchronous"):
        calls[name]()
    assert sorted(reads) == [(i, 0) for i in range(4)]
    assert max(reads.values()) <= most_reads, reads
