"""Streamed measures of activations on disk, on a dask.distributed cluster.

Activations of a whole data set, saved as a zarr array, are measured without
loading them: the sums over samples run on the workers, chunk by chunk, and
only the small sums come back. Here a LocalCluster of two worker processes
stands in for a real cluster (pass its scheduler's address to ``Client``).

Usage::

    python examples/dask_cluster.py [N]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster

from infoscope import cka, hsic, node_snr, rankme, similarity_matrix


def save_activations(root: Path, n: int) -> None:
    """Stand-ins for two layers' activations, written in chunks to zarr."""
    rng = np.random.default_rng(0)
    shapes = {"layer1": 64, "layer2": 16}
    stores = {
        name: zarr.open_array(
            str(root / name), mode="w", shape=(n, d), chunks=(100_000, d), dtype="f4"
        )
        for name, d in shapes.items()
    }
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        h1 = np.maximum(rng.standard_normal((rows, 64), dtype=np.float32), 0)
        h2 = np.maximum(h1[:, :16] - 0.5 + rng.standard_normal((rows, 16)), 0)
        stores["layer1"][start : start + rows] = h1
        stores["layer2"][start : start + rows] = h2


def main(n: int = 1_000_000) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB") as cluster,
        Client(cluster),
    ):
        root = Path(tmp)
        save_activations(root, n)
        h1 = da.from_zarr(str(root / "layer1"))  # lazy: nothing is read yet
        h2 = da.from_zarr(str(root / "layer2"))
        W = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)
        snr, _, _ = node_snr(h1, da.from_array(W))
        results = {
            "linear CKA": cka(h1, h2, kernel_x="linear"),
            "approximate HSIC": hsic(
                h1,
                h2,
                sigma_x=10.0,
                sigma_y=3.0,
                method="approximate",
                random_state=0,
            ),
            "similarity (layer1, layer2)": float(
                similarity_matrix([h1, h2], [h1, h2])[0, 1].compute()
            ),
            "RankMe of layer1": rankme(h1),
            "mean Node SNR": float(snr.mean().compute()),
        }
    for name, value in results.items():
        print(f"{name:28s} {value:.4f}")
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
