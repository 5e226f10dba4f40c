"""neural-tangents 0.6.5 reference for the empirical-NTK benchmarks (bench_ntk.py).

neural-tangents 0.6.5 needs an old JAX, so it runs in its own environment::

    python -m venv /tmp/nt-venv
    /tmp/nt-venv/bin/pip install "jax[cpu]==0.4.30" neural-tangents==0.6.5
    /tmp/nt-venv/bin/python asv_bench/reference/nt_reference.py OUT_DIR [n ...]

For each n it times ``nt.empirical_ntk_fn`` on the MLP 64-256-256-10 (stax,
ReLU, float32, "mean" = ``trace_axes=(-1,)``, ``vmap_axes=0``) with the
Jacobian-contraction implementation, each n in a fresh process so that the
peak resident memory (``ru_maxrss``) is that of one call. It writes
``OUT_DIR/nt_reference.json`` (times, memory, versions) and
``OUT_DIR/nt_small.npz`` (the params, inputs and NTK of a small case, in each
output mode, so infoscope's NTK of the same network can be compared with
neural-tangents' own number).
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

WIDTHS = (256, 256, 10)
D_IN = 64


def network():
    from neural_tangents import stax

    layers = []
    for width in WIDTHS[:-1]:
        layers += [stax.Dense(width), stax.Relu()]
    layers.append(stax.Dense(WIDTHS[-1]))
    return stax.serial(*layers)


def one(n: int, implementation: str, batch: int | None) -> dict:
    import jax
    import neural_tangents as nt

    init_fn, apply_fn, _ = network()
    key = jax.random.PRNGKey(0)
    _, params = init_fn(key, (-1, D_IN))
    x = jax.random.normal(jax.random.PRNGKey(1), (n, D_IN))
    kernel_fn = nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,),
        vmap_axes=0,
        implementation=getattr(nt.NtkImplementation, implementation),
    )
    if batch:
        kernel_fn = nt.batch(kernel_fn, batch_size=batch)
    else:
        kernel_fn = jax.jit(kernel_fn)
    t0 = time.perf_counter()
    error = None
    try:
        K = kernel_fn(x, None, params)
        K.block_until_ready()
    except Exception as exc:  # the reference's own failures are results too
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    seconds = time.perf_counter() - t0
    return {
        "n": n,
        "implementation": implementation,
        "batch_size": batch,
        "seconds_first_call": seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "error": error,
    }


def small(out: Path) -> None:
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np

    init_fn, apply_fn, _ = network()
    _, params = init_fn(jax.random.PRNGKey(0), (-1, D_IN))
    x = jax.random.normal(jax.random.PRNGKey(1), (12, D_IN))
    mean = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)(x, None, params)
    full = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x, None, params)
    arrays = {"x": np.asarray(x), "mean": np.asarray(mean), "full": np.asarray(full)}
    for i, layer in enumerate(params):  # Dense: (W, None) with b_std=None
        for j, leaf in enumerate(layer):
            if leaf is not None:
                arrays[f"p{i}_{j}"] = np.asarray(leaf)
    np.savez(out / "nt_small.npz", **arrays)
    del jnp


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if sys.argv[2:3] == ["--small"]:
        small(out)
        return
    if sys.argv[2:3] == ["--one"]:
        n, implementation, batch = int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        print(json.dumps(one(n, implementation, batch or None)))
        return
    sizes = [int(a) for a in sys.argv[2:]] or [1000]
    import jax
    import neural_tangents as nt

    small(out)
    runs = []
    for n in sizes:
        for implementation, batch in (
            ("JACOBIAN_CONTRACTION", 0),
            ("JACOBIAN_CONTRACTION", 100),
            ("STRUCTURED_DERIVATIVES", 0),
        ):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    str(out),
                    "--one",
                    str(n),
                    implementation,
                    str(batch),
                ],
                capture_output=True,
                text=True,
            )
            line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            result = (
                json.loads(line)
                if line.startswith("{")
                else {
                    "n": n,
                    "implementation": implementation,
                    "batch_size": batch or None,
                    "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}",
                }
            )
            print(result, flush=True)
            runs.append(result)
    info = {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "network": f"stax MLP {D_IN}-" + "-".join(map(str, WIDTHS)) + ", ReLU, float32",
        "mode": "trace_axes=(-1,) (infoscope 'mean'), vmap_axes=0",
        "runs": runs,
    }
    (out / "nt_reference.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
