"""The demo run: a small MLP trained on scikit-learn's digits, every measure recorded.

:func:`run_demo` is what ``infoscope demo`` runs. It trains with PyTorch when it
is installed, else with JAX, records the HSIC plane, DSE, DSMI, RankMe,
alpha-ReQ, stable rank and linear CKA to the untrained network of each layer,
Node SNR of each dense layer and the NTK's entropy and class mutual
information once per epoch, and writes the run ``metrics.db`` (crash-safe,
readable while the demo trains), ``metrics.csv`` and ``report.png``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .estimators.diffusion import (
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
)
from .estimators.geometry import RepresentationGeometry
from .estimators.hsic import HSICPlane
from .estimators.ntk import NTKEntropy, NTKMutualInformation
from .estimators.snr import NodeSNR
from .monitor import Monitor, ReferenceSimilarity

FRAMEWORKS = ("torch", "jax")
OUTPUTS = ("metrics.db", "metrics.csv", "report.png")
HIDDEN = (64, 32)  # the MLP is 64 -> 64 -> 32 -> 10


def available_framework(framework: str = "auto") -> str:
    """The framework the demo trains with: `framework`, or torch else JAX."""
    if framework not in ("auto", *FRAMEWORKS):
        raise ValueError(
            f"framework={framework!r} is not one of 'auto', 'torch', 'jax'."
        )
    wanted = FRAMEWORKS if framework == "auto" else (framework,)
    for name in wanted:
        if importlib.util.find_spec(name) is not None:
            return name
    raise ImportError(
        "The demo trains with PyTorch or JAX and neither is installed: "
        'pip install "infoscope[demo]" (JAX, CPU) or install torch.'
    )


def digits_split(seed: int = 0, n_probe: int = 500) -> dict[str, np.ndarray]:
    """Digits scaled to [0, 1]: a training set, a test set and a probe set.

    The probe set is `n_probe` training samples, stratified by class: what
    the monitor measures at every epoch.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    _, X_probe, _, y_probe = train_test_split(
        X_train, y_train, test_size=n_probe, stratify=y_train, random_state=seed
    )
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_test": X_test,
        "y_test": y_test,
        "X_probe": X_probe,
        "y_probe": y_probe,
    }


def demo_measures() -> list[Any]:
    """The measures the demo records (every family)."""
    return [
        HSICPlane(),
        DiffusionSpectralEntropy(),
        DiffusionSpectralMutualInformation(random_state=0),
        RepresentationGeometry(),
        ReferenceSimilarity("initial"),
        NodeSNR(),
        NTKEntropy(),
        NTKMutualInformation(),
    ]


def run_demo(
    out: str | os.PathLike,
    *,
    epochs: int = 30,
    framework: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> Monitor:
    """Train the demo MLP on digits, recording every measure once per epoch.

    Parameters
    ----------
    out : str or os.PathLike
        The folder for ``metrics.db`` (the run), ``metrics.csv`` and
        ``report.png``; created if missing.
    epochs : int, default=30
        Training epochs; records are made before training (step 0) and after
        each epoch.
    framework : {"auto", "torch", "jax"}, default="auto"
        "auto" trains with PyTorch when it is installed, else with JAX.
    overwrite : bool, default=False
        Replace the demo's files in `out` if they exist; otherwise their
        presence is an error (a run is never overwritten by accident).
    progress : bool, default=True
        Show progress bars.
    seed : int, default=0
        Seeds the data split, the initial weights and the batch order.

    Returns
    -------
    Monitor
        The monitor, whose ``history()`` holds the records.

    Examples
    --------
    >>> import tempfile
    >>> from infoscope.demo import run_demo
    >>> monitor = run_demo(tempfile.mkdtemp(), epochs=1, progress=False)
    >>> monitor.steps
    [0, 1]
    """
    framework = available_framework(framework)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in OUTPUTS}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} exists; pass --overwrite (overwrite=True) to replace "
            f"the demo's files or choose another --out folder."
        )
    for path in existing:
        os.remove(path)
    for sidecar in ("-wal", "-shm", "-lock"):  # the SQLite run's own files
        if os.path.exists(paths["metrics.db"] + sidecar):
            os.remove(paths["metrics.db"] + sidecar)

    data = digits_split(seed)
    trainer = _torch_trainer if framework == "torch" else _jax_trainer
    with _blas_threads(framework):
        monitor = trainer(data, epochs, paths["metrics.db"], progress, seed)
    monitor.close()
    monitor.run.to_csv(paths["metrics.csv"])
    from .plotting import report

    report(monitor.run).savefig(paths["report.png"], dpi=110)
    return monitor


def _blas_threads(framework: str) -> Any:
    """One BLAS thread for NumPy while JAX trains and is measured, else as is.

    JAX on the CPU has its measures computed by NumPy on its buffers, and
    XLA's thread pool and NumPy's BLAS threads then compete for the cores:
    on 2 cores the demo took 22 to 24 s with NumPy's two BLAS threads and
    14 s with one. PyTorch computes its measures on its own threads.
    """
    if framework != "jax":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _epochs(epochs: int, progress: bool, framework: str):
    if progress:
        try:
            from tqdm.auto import trange

            return trange(1, epochs + 1, desc=f"training ({framework})", unit="epoch")
        except ImportError:
            pass
    return range(1, epochs + 1)


def _batches(n: int, rng: np.random.Generator, size: int = 32) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def _train(
    data: dict,
    epochs: int,
    path: str,
    progress: bool,
    seed: int,
    step: Callable[[np.ndarray, np.ndarray], float],
    predict: Callable[[np.ndarray], np.ndarray],
    record: Callable[[Monitor, int, dict], None],
    layers: list[str],
    framework: str,
) -> Monitor:
    """The loop both frameworks share: train, evaluate, record each epoch."""
    monitor = Monitor(
        demo_measures(),
        data["X_probe"],
        data["y_probe"],
        layers=layers,
        path=path,
        progress=False,
        step_name="epoch",
    )
    rng = np.random.default_rng(seed)

    def accuracy(X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(predict(X), axis=1) == y))

    record(monitor, 0, {"test_accuracy": accuracy(data["X_test"], data["y_test"])})
    for epoch in _epochs(epochs, progress, framework):
        losses = [
            step(data["X_train"][rows], data["y_train"][rows])
            for rows in _batches(len(data["X_train"]), rng)
        ]
        values = {
            "train_loss": float(np.mean(losses)),
            "train_accuracy": accuracy(data["X_train"], data["y_train"]),
            "test_accuracy": accuracy(data["X_test"], data["y_test"]),
        }
        record(monitor, epoch, values)
    return monitor


def demo_network(framework: str, seed: int = 0) -> tuple[Any, Any, list[str]]:
    """The demo's untrained 64-64-32-10 ReLU MLP: ``(model, params, layers)``.

    For PyTorch a ``torch.nn.Sequential`` and ``params=None``; for JAX
    ``apply_fn(params, x)`` and its parameters (PyTorch's default
    initialisation). ``layers`` names the two hidden layers and the logits as
    the framework's adapter names them.

    Examples
    --------
    >>> from infoscope.demo import demo_network
    >>> model, params, layers = demo_network("torch")
    >>> params is None, layers
    (True, ['hidden1', 'hidden2', 'logits'])
    """
    if framework == "torch":
        return _torch_network(seed)
    if framework == "jax":
        return _jax_network(seed)
    raise ValueError(f"framework={framework!r} is not one of 'torch', 'jax'.")


def _torch_network(seed: int) -> tuple[Any, None, list[str]]:
    from collections import OrderedDict

    import torch

    torch.manual_seed(seed)
    (h1, h2), nn = HIDDEN, torch.nn
    net = nn.Sequential(
        OrderedDict(
            [
                ("dense1", nn.Linear(64, h1)),
                ("hidden1", nn.ReLU()),
                ("dense2", nn.Linear(h1, h2)),
                ("hidden2", nn.ReLU()),
                ("logits", nn.Linear(h2, 10)),
            ]
        )
    )
    return net, None, ["hidden1", "hidden2", "logits"]


def _jax_network(seed: int) -> tuple[Any, Any, list[str]]:
    import jax
    import jax.numpy as jnp

    sizes = (64, *HIDDEN, 10)
    rng = np.random.default_rng(seed)
    # float32 whatever JAX's x64 flag says: the same draws, the same training.
    # Drawn by NumPy: jax.random would compile its generator first (seconds).
    params = {
        f"dense{i + 1}": {
            # PyTorch's default initialisation: uniform within 1/sqrt(fan_in).
            "w": jax.device_put(
                (rng.uniform(-1.0, 1.0, (a, b)) / np.sqrt(a)).astype(np.float32)
            ),
            "b": jax.device_put(np.zeros(b, np.float32)),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }

    def apply_fn(params: dict, x: Any) -> Any:
        for i in (1, 2):
            with jax.named_scope(f"hidden{i}"):
                layer = params[f"dense{i}"]
                x = jnp.maximum(x @ layer["w"] + layer["b"], 0.0)
        with jax.named_scope("logits"):
            return x @ params["dense3"]["w"] + params["dense3"]["b"]

    return apply_fn, params, ["hidden1/max_0", "hidden2/max_0", "logits/add_0"]


def _torch_trainer(data, epochs, path, progress, seed) -> Monitor:
    import torch

    net, _, layers = _torch_network(seed)
    nn = torch.nn
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(X: np.ndarray, y: np.ndarray) -> float:
        net.train()
        loss = nn.functional.cross_entropy(
            net(torch.from_numpy(X)), torch.from_numpy(y)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def predict(X: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            return net(torch.from_numpy(X)).numpy()

    def record(monitor: Monitor, epoch: int, values: dict) -> None:
        monitor.record(epoch, net, **values)

    return _train(
        data,
        epochs,
        path,
        progress,
        seed,
        step,
        predict,
        record,
        layers,
        "torch",
    )


def _jax_trainer(data, epochs, path, progress, seed) -> Monitor:
    import jax
    import jax.numpy as jnp

    apply_fn, params, layers = _jax_network(seed)

    def loss_fn(params: dict, X: Any, y: Any) -> Any:
        logits = apply_fn(params, X)
        chosen = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - chosen)

    # Adam, written out: the demo needs nothing beyond JAX itself.
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = {"params": params, "m": zeros, "v": zeros, "t": 0}

    @jax.jit
    def update(params, m, v, t, X, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        scale = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v
        )
        return params, m, v, loss

    def step(X: np.ndarray, y: np.ndarray) -> float:
        state["t"] += 1
        params, m, v, loss = update(
            state["params"], state["m"], state["v"], state["t"], X, y
        )
        state.update(params=params, m=m, v=v)
        return float(loss)

    forward = jax.jit(apply_fn)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(forward(state["params"], X))

    def record(monitor: Monitor, epoch: int, values: dict) -> None:
        monitor.record(epoch, apply_fn, params=state["params"], **values)

    return _train(
        data, epochs, path, progress, seed, step, predict, record, layers, "jax"
    )
