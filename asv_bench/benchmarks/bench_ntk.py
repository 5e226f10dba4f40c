"""Benchmarks of the empirical NTK of the framework adapters.

The network is the MLP 64-256-256-10 (ReLU) of issue 6, in float32, "mean"
output mode, in PyTorch (``torch.nn.Sequential``) and JAX (a plain
``apply_fn(params, x)``), with the same weights. Figures:

- ``time_empirical_ntk`` and ``peakmem_empirical_ntk``: infoscope's NTK of
  n samples (peak memory: the benchmark process, setup included).
- ``track_speedup_over_jacobian_contraction``: how many times faster than
  the per-sample-Jacobian contraction, measured in turns in the same
  process: for PyTorch the torch.func tutorial's method (``vmap(jacrev)``
  and an einsum per parameter), for JAX the same in JAX (``vmap(jacrev)``
  and ``einsum``, which is neural-tangents' ``JACOBIAN_CONTRACTION`` with
  ``vmap_axes=0``).
- ``track_speedup_over_neural_tangents``: neural-tangents 0.6.5's time
  (``JACOBIAN_CONTRACTION``, ``vmap_axes=0``, first call) over infoscope's
  first call (compilation included for JAX), at the same n. neural-tangents
  needs JAX 0.4.30 and runs in its own environment
  (``asv_bench/reference/nt_reference.py``); its recorded numbers and
  versions are in ``asv_bench/reference/nt_reference.json``.

- ``track_empirical_ntk_traced_peak``: the bytes one NTK call itself holds
  at most, as the framework's allocator sees them (``_memory.traced_peak``).

``NtkMeasures`` times the measures on an NTK: :func:`infoscope.ntk_entropy`
and :func:`infoscope.ntk_mutual_information` of a precomputed n x n kernel,
on every array backend.

Like the other benchmark modules, this one imports no framework at import
time, and backends this machine lacks are skipped (``n/a``).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infoscope import ntk_entropy, ntk_mutual_information

from ._base import SEED, BackendBenchmark, best_times, skip_reason, spec_for
from ._memory import traced_peak

WIDTHS = (64, 256, 256, 10)
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nt_reference.json"


def mlp_weights(rng: np.random.Generator, dtype: Any) -> list[tuple[Any, Any]]:
    """(W as d_in x d_out, b) per layer, PyTorch's default initialisation."""
    layers = []
    for d_in, d_out in itertools.pairwise(WIDTHS):
        bound = 1 / np.sqrt(d_in)
        W = rng.uniform(-bound, bound, (d_in, d_out)).astype(dtype)
        b = rng.uniform(-bound, bound, d_out).astype(dtype)
        layers.append((W, b))
    return layers


class _Mlp:
    """The MLP and its inputs on one framework and device."""

    def __init__(self, backend: str, n: int, dtype: str):
        spec = spec_for(backend, dtype)
        reason = skip_reason(backend)
        if reason is not None:
            raise NotImplementedError(reason)
        rng = np.random.default_rng(SEED)
        weights = mlp_weights(rng, np.dtype(dtype))
        X = rng.standard_normal((n, WIDTHS[0])).astype(dtype)
        self.framework = spec.library
        if spec.library == "torch":
            import torch

            device = "cuda" if spec.device == "gpu" else "cpu"
            layers: list = []
            for W, b in weights:
                linear = torch.nn.Linear(*W.shape)
                with torch.no_grad():
                    linear.weight.copy_(torch.as_tensor(W.T))
                    linear.bias.copy_(torch.as_tensor(b))
                layers += [linear, torch.nn.ReLU()]
            self.model = torch.nn.Sequential(*layers[:-1]).to(device)
            self.X = torch.as_tensor(X, device=device)
        else:
            import jax
            import jax.numpy as jnp

            self._x64 = bool(jax.config.jax_enable_x64)
            jax.config.update("jax_enable_x64", bool(spec.x64))
            device = jax.devices("gpu" if spec.device == "gpu" else "cpu")[0]
            self.params = jax.device_put(
                [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights], device
            )
            self.X = jax.device_put(jnp.asarray(X), device)

            def apply_fn(params, x):
                for W, b in params[:-1]:
                    x = jax.nn.relu(x @ W + b)
                W, b = params[-1]
                return x @ W + b

            self.apply_fn = apply_fn

    def close(self) -> None:
        if self.framework == "jax":
            import jax

            jax.config.update("jax_enable_x64", self._x64)

    def ntk(self) -> Any:
        if self.framework == "torch":
            from infoscope.adapters.torch import empirical_ntk

            K = empirical_ntk(self.model, self.X)
            if K.is_cuda:
                import torch

                torch.cuda.synchronize()
            return K
        from infoscope.adapters.jax import empirical_ntk

        return empirical_ntk(self.apply_fn, self.params, self.X).block_until_ready()

    def jacobian_contraction(self) -> Any:
        """The per-sample-Jacobian NTK ("mean" mode), computed directly."""
        if self.framework == "torch":
            import torch
            from torch.func import functional_call, jacrev, vmap

            params = {k: v.detach() for k, v in self.model.named_parameters()}

            def fnet_single(params, x):
                return functional_call(self.model, params, (x.unsqueeze(0),)).squeeze(0)

            # The torch.func NTK tutorial's empirical_ntk_jacobian_contraction,
            # "trace" mode, divided by k for the mean.
            jac1 = vmap(jacrev(fnet_single), (None, 0))(params, self.X)
            jac1 = [j.flatten(2) for j in jac1.values()]
            jac2 = vmap(jacrev(fnet_single), (None, 0))(params, self.X)
            jac2 = [j.flatten(2) for j in jac2.values()]
            result = torch.stack(
                [
                    torch.einsum("Naf,Maf->NM", j1, j2)
                    for j1, j2 in zip(jac1, jac2, strict=True)
                ]
            ).sum(0)
            return result / jac1[0].shape[1]
        import jax

        if not hasattr(self, "_contraction"):

            def ntk(params, x):
                jac = jax.vmap(jax.jacrev(self.apply_fn), (None, 0))(params, x[:, None])
                leaves = [
                    j.reshape(j.shape[0], j.shape[2], -1) for j in jax.tree.leaves(jac)
                ]
                total = sum(jax.numpy.einsum("Naf,Maf->NM", j, j) for j in leaves)
                return total / leaves[0].shape[1]

            self._contraction = jax.jit(ntk)
        return self._contraction(self.params, self.X).block_until_ready()


class EmpiricalNtk:
    """infoscope's empirical NTK of the MLP 64-256-256-10, "mean" mode."""

    param_names: ClassVar[list[str]] = ["backend", "n", "dtype"]
    params: ClassVar[list[list[Any]]] = [
        ["torch-cpu", "torch-cuda", "jax-cpu", "jax-gpu"],
        [1000, 4096],
        ["float32"],
    ]
    timeout = 300

    def setup(self, backend, n, dtype):
        self.mlp = _Mlp(backend, n, dtype)
        self.mlp.ntk()  # JAX compiles once per program and block shape

    def teardown(self, backend, n, dtype):
        self.mlp.close()

    def time_empirical_ntk(self, backend, n, dtype):
        self.mlp.ntk()

    def peakmem_empirical_ntk(self, backend, n, dtype):
        self.mlp.ntk()

    def track_empirical_ntk_traced_peak(self, backend, n, dtype):
        """Bytes one NTK call holds at most (the n x n result included)."""
        return traced_peak(backend, self.mlp.ntk)

    track_empirical_ntk_traced_peak.unit = "bytes"


class NtkSpeedup:
    """infoscope's NTK against the per-sample-Jacobian contraction.

    The contraction holds every per-sample Jacobian (n x 10 x 85,002
    numbers, twice in the tutorial's code): at n = 500, 3.4 GB in float32.
    """

    param_names: ClassVar[list[str]] = ["backend", "n", "dtype"]
    params: ClassVar[list[list[Any]]] = [
        ["torch-cpu", "torch-cuda", "jax-cpu", "jax-gpu"],
        [64, 500],
        ["float32"],
    ]
    timeout = 300
    repeat_turns = 3  # turns of best_times (the contraction is slow)

    def setup(self, backend, n, dtype):
        self.mlp = _Mlp(backend, n, dtype)
        ours = np.asarray(_host(self.mlp.ntk()))
        theirs = np.asarray(_host(self.mlp.jacobian_contraction()))
        if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max()):
            raise AssertionError("the two NTKs differ")

    def teardown(self, backend, n, dtype):
        self.mlp.close()

    def track_speedup_over_jacobian_contraction(self, backend, n, dtype):
        ours, theirs = best_times(
            self.mlp.ntk,
            self.mlp.jacobian_contraction,
            repeat=self.repeat_turns,
            budget=30.0,
        )
        return theirs / ours

    track_speedup_over_jacobian_contraction.unit = "times faster"


class NtkAgainstNeuralTangents:
    """infoscope's first NTK call against neural-tangents 0.6.5's (recorded)."""

    param_names: ClassVar[list[str]] = ["backend", "n", "dtype"]
    params: ClassVar[list[list[Any]]] = [
        ["torch-cpu", "jax-cpu"],
        [1000],
        ["float32"],
    ]
    timeout = 300

    def setup(self, backend, n, dtype):
        self.reference = reference_seconds(n)
        self.mlp = _Mlp(backend, n, dtype)

    def teardown(self, backend, n, dtype):
        self.mlp.close()

    def track_speedup_over_neural_tangents(self, backend, n, dtype):
        if self.mlp.framework == "jax":
            from infoscope.adapters import _jax_ntk

            _jax_ntk._COMPILED.clear()  # a first call: compilation included
            _jax_ntk._ANALYSES.clear()  # and the reading of the program
        t0 = time.perf_counter()
        self.mlp.ntk()
        return self.reference / (time.perf_counter() - t0)

    track_speedup_over_neural_tangents.unit = "times faster"


def ntk_like_kernel(rng: np.random.Generator, n: int, n_classes: int) -> tuple:
    """A full-rank "mean"-mode NTK stand-in and balanced labels, in NumPy.

    ``K = J J^T / p + 0.01 I`` for "gradients" J (n x 256) whose rows share
    a class direction and have spread-out norms, as an NTK's do; the labels
    are in `n_classes` classes of equal size (up to one), so the class blocks
    have one shape per class count (JAX compiles once per shape).
    """
    y = rng.permutation(np.arange(n) % n_classes)
    p = 256
    directions = rng.standard_normal((n_classes, p))
    J = directions[y] + rng.standard_normal((n, p))
    J *= rng.uniform(0.3, 3.0, size=(n, 1))
    K = J @ J.T / p + 0.01 * np.eye(n)
    return (K + K.T) / 2, y


class NtkMeasures(BackendBenchmark):
    """The von Neumann entropy of an n x n NTK and the class mutual
    information of its blocks (10 classes, combinations of at most 2 as the
    monitor records them: 10 + 45 blocks)."""

    sizes = (500, 2000)
    n_classes = 10

    def setup_data(self, n):
        K, self.y = ntk_like_kernel(self.rng, n, self.n_classes)
        self.K = self.asarray(K)
        self._entropy()  # warm-up: imports, JAX's per-shape compilation
        self._mi()

    def _entropy(self):
        return ntk_entropy(self.K)

    def _mi(self):
        result = ntk_mutual_information(self.K, self.y, max_combination_size=2)
        return self.sync(result.mutual_information)

    def time_ntk_entropy(self, backend, n, dtype):
        self._entropy()

    def time_ntk_mutual_information(self, backend, n, dtype):
        self._mi()

    def peakmem_ntk_entropy(self, backend, n, dtype):
        self._entropy()

    def peakmem_ntk_mutual_information(self, backend, n, dtype):
        self._mi()

    def track_ntk_entropy_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._entropy)

    track_ntk_entropy_traced_peak.unit = "bytes"

    def track_ntk_mutual_information_traced_peak(self, backend, n, dtype):
        return traced_peak(backend, self._mi)

    track_ntk_mutual_information_traced_peak.unit = "bytes"


def reference_seconds(n: int, path: Path = REFERENCE) -> float:
    """neural-tangents' recorded time at `n` (JACOBIAN_CONTRACTION, unbatched).

    Raises NotImplementedError (asv's skip) when none is recorded.
    """
    if not path.exists():
        raise NotImplementedError(f"no neural-tangents reference at {path}")
    info = json.loads(path.read_text())
    for run in info["runs"]:
        if (
            run["n"] == n
            and run["implementation"] == "JACOBIAN_CONTRACTION"
            and not run.get("batch_size")
            and not run.get("error")
        ):
            return float(run["seconds_first_call"])
    raise NotImplementedError(f"no neural-tangents time recorded for n={n}")


def _host(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x
