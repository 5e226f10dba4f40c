"""
The studies behind the claims gallery
=====================================

Four papers' claims, rerun on scikit-learn's digits. Each
``plot_claim_*.py`` example runs one study of this module over a few seeds
and draws it; the full runs are this module's command line (20 seeds each,
the tables the examples quote)::

    python examples/claims.py snr    # Node SNR with and without dropout
    python examples/claims.py dsmi   # DSMI with true and permuted labels, DSE
    python examples/claims.py hsic   # the HSIC plane: fitting, then compression?
    python examples/claims.py ntk    # the NTK's class mutual information

``--seeds N`` runs seeds 0..N-1; ``--format rst`` prints the table as a
reStructuredText grid, ``--format list-table`` as the directive the
examples' pages show; ``--save run.csv`` keeps the tidy table of the run.

Every study trains small PyTorch networks on the digits (pixels scaled to
[0, 1]; the same stratified split into 1,257 training and 540 test images as
the other examples), records its measures with :class:`infoscope.Monitor`
and returns them as one tidy table (columns ``seed``, ``arm``, ``epoch``,
``layer``, ``measure``, ``value``); a ``summarize_*`` function turns that
into the table of the claim, and ``bands`` draws a measure's mean over
the seeds with a band of one standard deviation. The studies run PyTorch and
BLAS on one thread (restored afterwards): the matrices are small, and on a
busy machine several threads that wait for each other are slower than one.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd

from infoscope import (
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
    HSICPlane,
    Monitor,
    NodeSNR,
    NTKEntropy,
    NTKMutualInformation,
)
from infoscope.monitor import Measure

# ---- shared set-up ---------------------------------------------------------


def digits_split(test_size: float = 0.3, split_seed: int = 0):
    """Digits scaled to [0, 1]: ``X_train, X_test, y_train, y_test`` (NumPy)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(
        (X / 16.0).astype(np.float32),
        y,
        test_size=test_size,
        stratify=y,
        random_state=split_seed,
    )


@contextmanager
def one_thread():
    """PyTorch and BLAS on one thread inside the block, as before after it."""
    import threadpoolctl
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def mlp(sizes: Sequence[int], *, dropout: float = 0.0, seed: int):
    """A ReLU network with the layer sizes given, initialised from `seed`.

    With `dropout`, a ``Dropout`` follows every hidden ReLU. The modules are
    numbered as ``torch.nn.Sequential`` numbers them: without dropout the
    hidden ReLUs of a 4-layer-size network are ``"1"`` and ``"3"`` and the
    logits ``"4"``.
    """
    import torch

    torch.manual_seed(seed)
    modules = []
    for d_in, d_out in itertools.pairwise(sizes[:-1]):
        modules += [torch.nn.Linear(d_in, d_out), torch.nn.ReLU()]
        if dropout:
            modules.append(torch.nn.Dropout(dropout))
    modules.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    return torch.nn.Sequential(*modules)


def train_epoch(model, optimizer, X, y, *, batch_size: int, generator) -> None:
    """One pass over (X, y) in shuffled mini-batches of cross-entropy steps."""
    import torch

    model.train()
    order = torch.randperm(len(X), generator=generator)
    for start in range(0, len(X), batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X[batch]), y[batch]).backward()
        optimizer.step()
    model.eval()


def accuracy(model, X, y) -> float:
    """The share of `X` the model classifies as `y` (evaluation mode)."""
    import torch

    training = model.training
    model.eval()
    with torch.no_grad():
        predicted = model(torch.as_tensor(X)).argmax(dim=1)
    model.train(training)
    return float((predicted == torch.as_tensor(y)).double().mean())


def tagged(history: pd.DataFrame, *, seed: int, arm: str) -> pd.DataFrame:
    """A monitor's history with the seed and arm, ``step`` renamed ``epoch``."""
    frame = history.rename(columns={"step": "epoch"})
    frame.insert(0, "arm", arm)
    frame.insert(0, "seed", seed)
    return frame


# ---- statistics and tables -------------------------------------------------


def at_epoch(
    frame: pd.DataFrame, measure: str, layer: str = "model", epoch: int | None = None
) -> pd.DataFrame:
    """One value per seed (rows) and arm (columns), at `epoch` (default: the last)."""
    rows = frame[(frame["measure"] == measure) & (frame["layer"] == layer)]
    if rows.empty:
        raise ValueError(f"no {measure!r} for layer {layer!r} in the study's frame")
    epoch = rows["epoch"].max() if epoch is None else epoch
    rows = rows[rows["epoch"] == epoch]
    return rows.pivot_table(index="seed", columns="arm", values="value", sort=False)


def paired_by_epoch(
    frame: pd.DataFrame, measure: str, layer: str, first: str, second: str
) -> pd.DataFrame:
    """Per epoch, the paired difference `first` - `second` of two arms: its
    mean and standard deviation over the seeds, and in how many seeds it is
    above and below 0."""
    rows = frame[(frame["measure"] == measure) & (frame["layer"] == layer)]
    table = rows.pivot_table(index=["epoch", "seed"], columns="arm", values="value")
    diff = (table[first] - table[second]).unstack("seed")
    return pd.DataFrame(
        {
            "mean": diff.mean(axis=1),
            "sd": diff.std(axis=1, ddof=1),
            "seeds above 0": (diff > 0).sum(axis=1),
            "seeds below 0": (diff < 0).sum(axis=1),
        }
    )


def mean_sd(values: Iterable[float], digits: int = 3) -> str:
    """``"mean ± sd"`` over the seeds (sd with n - 1; 0 for one seed)."""
    values = np.asarray(list(values), dtype=np.float64)
    sd = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (paired differences, say)."""
    from scipy import stats

    values = np.asarray(list(values), dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1)
    half /= math.sqrt(values.size)
    return mean - half, mean + half


def difference(values: Iterable[float], digits: int = 3) -> str:
    """``"mean [low, high]"``: the mean of paired differences and its 95% interval."""
    values = np.asarray(list(values), dtype=np.float64)
    low, high = interval(values)
    return f"{values.mean():+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str = "markdown"
) -> str:
    """A table as Markdown, a reStructuredText grid table (``"rst"``) or a
    reStructuredText ``list-table`` directive (``"list-table"``: short lines,
    for the examples' pages)."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def cells(line):
        return " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))

    if fmt == "markdown":
        out = ["| " + cells(lines[0]) + " |"]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += ["| " + cells(line) + " |" for line in lines[1:]]
        return "\n".join(out)
    if fmt == "rst":
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        out = [rule, "| " + cells(lines[0]) + " |", rule.replace("-", "=")]
        for line in lines[1:]:
            out += ["| " + cells(line) + " |", rule]
        return "\n".join(out)
    if fmt == "list-table":
        out = [".. list-table::", "   :header-rows: 1", ""]
        for line in lines:
            out += [f"   {'*' if i == 0 else ' '} - {c}" for i, c in enumerate(line)]
        return "\n".join(out)
    raise ValueError(
        f"format_table: fmt must be 'markdown', 'rst' or 'list-table', got {fmt!r}"
    )


def bands(
    ax,
    frame: pd.DataFrame,
    measure: str,
    *,
    layer: str = "model",
    arms: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    scale: float = 1.0,
    linestyle: str = "-",
    suffix: str = "",
    label: str | None = None,
):
    """Mean over the seeds of `measure` against the epoch, one line per arm,
    with a band of one standard deviation either side.

    Each line is labelled with its arm (or `label`), `suffix` and the number
    of seeds.
    """
    rows = frame[(frame["measure"] == measure) & (frame["layer"] == layer)]
    arms = list(dict.fromkeys(rows["arm"])) if arms is None else list(arms)
    for i, arm in enumerate(arms):
        table = rows[rows["arm"] == arm].pivot_table(
            index="epoch", columns="seed", values="value"
        )
        mean = table.mean(axis=1) * scale
        sd = table.std(axis=1, ddof=1).fillna(0.0) * scale
        color = colors[i] if colors else f"C{i}"
        name = f"{arm if label is None else label}{suffix} (n={table.shape[1]})"
        ax.plot(mean.index, mean, color=color, linestyle=linestyle, label=name)
        ax.fill_between(mean.index, mean - sd, mean + sd, color=color, alpha=0.25)
    ax.set_xlabel("epoch")
    return ax


# ---- 1. Node SNR with and without dropout (Norridge) -----------------------

SNR_ARMS = ("no dropout", "dropout")


def snr_dropout_study(
    seeds: Iterable[int] = range(20),
    *,
    epochs: int = 100,
    width: int = 256,
    dropout: float = 0.5,
    lr: float = 0.1,
    batch_size: int = 60,
    every: int = 10,
) -> pd.DataFrame:
    """Train the same initial 64-width-width-10 network with and without dropout.

    Plain SGD (learning rate `lr`, mini-batches of `batch_size`) on the 1,257
    training digits; dropout (probability `dropout`) after each hidden ReLU
    in the "dropout" arm. Every `every` epochs the monitor records
    :class:`~infoscope.NodeSNR` of each dense layer (``"0"``, ``"3"``, ``"6"``
    with dropout, ``"0"``, ``"2"``, ``"4"`` without: renamed ``"1"``, ``"2"``,
    ``"3"`` here), fitted on its inputs over the 540 test digits in
    evaluation mode (no dropout), and the test accuracy.
    """
    import torch

    X_train, X_test, y_train, y_test = map(torch.from_numpy, digits_split())
    frames = []
    with one_thread():
        for seed in seeds:
            for arm in SNR_ARMS:
                net = mlp(
                    (64, width, width, 10),
                    dropout=dropout if arm == "dropout" else 0.0,
                    seed=seed,
                )
                monitor = Monitor(
                    NodeSNR(),
                    X_test,
                    y_test,
                    every=every,
                    metrics={"test_accuracy": accuracy},
                    progress=False,
                    step_name="epoch",
                )
                optimizer = torch.optim.SGD(net.parameters(), lr=lr)
                generator = torch.Generator().manual_seed(seed)
                for epoch in range(epochs + 1):
                    if epoch > 0:
                        train_epoch(
                            net,
                            optimizer,
                            X_train,
                            y_train,
                            batch_size=batch_size,
                            generator=generator,
                        )
                    monitor.record(epoch, net)
                history = monitor.history()
                names = [n for n in history["layer"].unique() if n != "model"]
                renamed = {name: str(i) for i, name in enumerate(names, start=1)}
                history["layer"] = history["layer"].replace(renamed)
                frames.append(tagged(history, seed=seed, arm=arm))
    return pd.concat(frames, ignore_index=True)


SNR_COLUMNS = (
    "quantity",
    "no dropout",
    "dropout",
    "dropout - none [95% CI]",
    "seeds higher with dropout",
)


def summarize_snr(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Per dense layer, S and F at the last epoch, and the test accuracy."""
    rows = []
    quantities = [
        (f"{label}, layer {layer}", measure, layer, 3)
        for measure, label in (("snr_optimality", "S"), ("snr_signal_factor", "F"))
        for layer in ("1", "2", "3")
    ]
    quantities.append(("test accuracy", "test_accuracy", "model", 4))
    for label, measure, layer, digits in quantities:
        table = at_epoch(frame, measure, layer)
        diff = table["dropout"] - table["no dropout"]
        rows.append(
            (
                label,
                mean_sd(table["no dropout"], digits),
                mean_sd(table["dropout"], digits),
                difference(diff, digits),
                f"{int((diff > 0).sum())} of {diff.size}",
            )
        )
    return rows


# ---- 2. DSMI with true and permuted labels, and DSE (Liao et al.) ----------

DSMI_ARMS = ("true labels", "permuted labels")


def mean_norm(H) -> float:
    """The mean Euclidean norm of a layer's activation vectors (the rows of H)."""
    from infoscope.backends import to_numpy

    return float(np.linalg.norm(to_numpy(H), axis=1).mean())


DSMI_EPOCHS = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def dsmi_labels_study(
    seeds: Iterable[int] = range(20),
    *,
    epochs: int = 100,
    record_at: Iterable[int] = DSMI_EPOCHS,
    n_train: int = 600,
    n_probe: int = 400,
    width: int = 256,
    lr: float = 1e-3,
    batch_size: int = 50,
) -> pd.DataFrame:
    """Train on the true labels, and the same initial network on permuted ones.

    A 64-width-width-10 ReLU network, Adam (`lr`, mini-batches of
    `batch_size`) on the first `n_train` training digits; in the "permuted
    labels" arm the training labels are shuffled once (with the seed), so the
    network can only memorise them. At the epochs of `record_at` the monitor
    records, for the second hidden layer (``"3"``, the penultimate
    representation) on the first `n_probe` test digits with their *true*
    labels: DSMI and DSE with the paper's bandwidth (sigma = 10: ``dsmi``,
    ``dse``) and with each representation's median distance
    (``dsmi_median``, ``dse_median``); the representation's scale, the mean
    Euclidean norm of its vectors (``norm``); and the accuracy on the labels
    trained on (``train_accuracy``) and on the probe digits
    (``test_accuracy``).
    """
    import torch

    X_train, X_test, y_train, y_test = digits_split()
    X_train, y_train = X_train[:n_train], y_train[:n_train]
    X_probe, y_probe = X_test[:n_probe], y_test[:n_probe]
    X_train, y_train = torch.from_numpy(X_train), torch.from_numpy(y_train)
    record_at = sorted({int(e) for e in record_at if e <= epochs})
    measures = {
        "dsmi": DiffusionSpectralMutualInformation(random_state=0),
        "dse": DiffusionSpectralEntropy(),
        "dsmi_median": DiffusionSpectralMutualInformation(
            sigma="median", random_state=0
        ),
        "dse_median": DiffusionSpectralEntropy(sigma="median"),
        "norm": mean_norm,
    }
    frames = []
    with one_thread():
        for seed in seeds:
            permuted = np.random.default_rng(seed).permutation(len(y_train))
            for arm in DSMI_ARMS:
                labels = y_train if arm == "true labels" else y_train[permuted]
                net = mlp((64, width, width, 10), seed=seed)
                monitor = Monitor(
                    measures,
                    X_probe,
                    y_probe,
                    layers="3",
                    every=record_at,
                    progress=False,
                    step_name="epoch",
                )
                optimizer = torch.optim.Adam(net.parameters(), lr=lr)
                generator = torch.Generator().manual_seed(seed)
                for epoch in range(epochs + 1):
                    if epoch > 0:
                        train_epoch(
                            net,
                            optimizer,
                            X_train,
                            labels,
                            batch_size=batch_size,
                            generator=generator,
                        )
                    if monitor.due(epoch):
                        monitor.record(
                            epoch,
                            net,
                            train_accuracy=accuracy(net, X_train, labels),
                            test_accuracy=accuracy(net, X_probe, y_probe),
                        )
                frames.append(tagged(monitor.history(), seed=seed, arm=arm))
    return pd.concat(frames, ignore_index=True)


DSMI_COLUMNS = (
    "quantity",
    "epoch 0",
    "true labels, end",
    "permuted, end",
    "rise, true [95% CI]",
    "rise, permuted [95% CI]",
    "true - permuted, end [95% CI]",
)


def summarize_dsmi(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each quantity at epoch 0 and at the end, its rise in each arm, and the
    paired difference between the arms at the end."""
    rows = []
    for label, measure, layer in (
        ("accuracy on the labels trained on", "train_accuracy", "model"),
        ("test accuracy (true labels)", "test_accuracy", "model"),
        ("DSMI(Z; Y), sigma = 10 (bits)", "dsmi", "3"),
        ("DSE(Z), sigma = 10 (bits)", "dse", "3"),
        ("DSMI(Z; Y), median sigma (bits)", "dsmi_median", "3"),
        ("DSE(Z), median sigma (bits)", "dse_median", "3"),
        ("mean norm of the vectors of Z", "norm", "3"),
    ):
        start = at_epoch(frame, measure, layer, epoch=0)
        end = at_epoch(frame, measure, layer)
        true, permuted = DSMI_ARMS
        rows.append(
            (
                label,
                mean_sd(start[true]),
                mean_sd(end[true]),
                mean_sd(end[permuted]),
                difference(end[true] - start[true]),
                difference(end[permuted] - start[permuted]),
                difference(end[true] - end[permuted]),
            )
        )
    return rows


# ---- 3. The HSIC plane: fitting, then compression (PyGlow / Tishby) --------

HSIC_ARMS = {"wide": 32, "bottleneck": 4}


class Plane(Measure):
    """:class:`~infoscope.HSICPlane` of each layer, NaN where it is undefined.

    The median bandwidth of a layer is undefined when the layer's output is
    the same for at least half of the pairs of probe samples, as happens
    behind a narrow ReLU layer whose units are off for most inputs (the
    4-unit bottleneck of one seed at initialisation, and the logits after
    it). Such a record of the layer is NaN here; in float32 the median
    computed from the centred activations is then rounding noise (about
    1e-6) rather than 0, so the test is made on the activations themselves.
    Each layer has its own bandwidth, so the other layers' coordinates are
    those of the monitor's own HSICPlane measure.
    """

    needs = frozenset({"activations", "labels"})

    def __init__(self, normalized: bool = False):
        self.plane = HSICPlane(normalized=normalized)
        self._fitted_on = None

    def measure(self, probe):
        from infoscope.backends import to_numpy

        if self._fitted_on is not probe.X:  # the Grams of X and y, once
            self.plane.fit(probe.X, probe.y)
            self._fitted_on = probe.X
        out = {}
        for layer, H in probe.activations.items():
            rows = to_numpy(H).reshape(H.shape[0], -1)
            _, counts = np.unique(rows, axis=0, return_counts=True)
            n = rows.shape[0]
            if (counts * (counts - 1)).sum() >= n * (n - 1) / 2:
                hx = hy = float("nan")  # at least half of the pairs identical
            else:
                ((hx, hy),) = to_numpy(self.plane.transform([H])).tolist()
            out[layer, "x"], out[layer, "y"] = hx, hy
        return out


def hsic_plane_study(
    seeds: Iterable[int] = range(20),
    *,
    epochs: int = 150,
    every: int = 5,
    arms: dict[str, int] | None = None,
    lr: float = 0.02,
    batch_size: int = 32,
    n_probe: int = 400,
) -> pd.DataFrame:
    """Record the HSIC and CKA planes of 64-64-w-10 ReLU networks over training.

    One arm per entry of `arms` (name -> width w of the second hidden layer;
    default a 32-unit layer, "wide", and a 4-unit bottleneck). Plain SGD
    (`lr`, mini-batches of `batch_size`) on the 1,257 training digits, as in
    the HSIC-plane example but for longer. Every `every` epochs the monitor
    records :class:`~infoscope.HSICPlane` (``hsic_x``, ``hsic_y``) and its
    normalised form (``cka_x``, ``cka_y``) of the two hidden layers (``"1"``,
    ``"3"``) and the logits (``"4"``) on the first `n_probe` test digits
    (through :class:`Plane`: NaN where a layer's bandwidth is undefined), and
    the test accuracy.
    """
    import torch

    X_train, X_test, y_train, y_test = digits_split()
    X_probe, y_probe = X_test[:n_probe], y_test[:n_probe]
    X_train, y_train = torch.from_numpy(X_train), torch.from_numpy(y_train)
    arms = HSIC_ARMS if arms is None else arms
    frames = []
    with one_thread():
        for seed in seeds:
            for arm, width in arms.items():
                net = mlp((64, 64, width, 10), seed=seed)
                monitor = Monitor(
                    {"hsic": Plane(), "cka": Plane(normalized=True)},
                    X_probe,
                    y_probe,
                    layers=["1", "3", "4"],
                    every=every,
                    metrics={"test_accuracy": accuracy},
                    progress=False,
                    step_name="epoch",
                )
                optimizer = torch.optim.SGD(net.parameters(), lr=lr)
                generator = torch.Generator().manual_seed(seed)
                for epoch in range(epochs + 1):
                    if epoch > 0:
                        train_epoch(
                            net,
                            optimizer,
                            X_train,
                            y_train,
                            batch_size=batch_size,
                            generator=generator,
                        )
                    monitor.record(epoch, net)
                frames.append(tagged(monitor.history(), seed=seed, arm=arm))
    return pd.concat(frames, ignore_index=True)


def plane_phases(frame: pd.DataFrame, arm: str, layer: str) -> pd.DataFrame:
    """Per seed, the two phases of one layer's trajectory.

    Columns: ``fit_epoch``, the first epoch at which ``hsic_y`` has made 90%
    of its largest rise over epoch 0; ``peak_epoch``, the epoch of the
    largest ``hsic_x``; ``x_fall``, ``hsic_x``'s fall from that peak to the
    last epoch, as a fraction of the peak; ``y_kept``, ``hsic_y`` at the last
    epoch as a fraction of its largest value; ``cka_x_fall``, as ``x_fall``
    for ``cka_x``. Seeds with a missing (NaN) record of the layer are left
    out.
    """
    out = {}
    rows = frame[(frame["arm"] == arm) & (frame["layer"] == layer)]
    for seed, group in rows.groupby("seed"):
        wide = group.pivot_table(
            index="epoch", columns="measure", values="value", dropna=False
        )
        hy, hx, cx = wide["hsic_y"], wide["hsic_x"], wide["cka_x"]
        if wide[["hsic_x", "hsic_y", "cka_x"]].isna().any(axis=None):
            continue  # a record where the layer's bandwidth was undefined
        rise = hy - hy.iloc[0]
        fit_epoch = rise.index[np.argmax(rise.to_numpy() >= 0.9 * rise.max())]
        out[seed] = {
            "fit_epoch": fit_epoch,
            "peak_epoch": hx.idxmax(),
            "x_fall": (hx.max() - hx.iloc[-1]) / hx.max(),
            "y_kept": hy.iloc[-1] / hy.max(),
            "cka_x_fall": (cx.max() - cx.iloc[-1]) / cx.max(),
        }
    return pd.DataFrame.from_dict(out, orient="index")


HSIC_COLUMNS = (
    "arm, layer",
    "seeds",
    "HSIC(H, Y) x 1000: epoch 0 -> end",
    "90% of the HSIC(H, Y) rise by epoch",
    "HSIC(H, X) peaks at epoch",
    "HSIC(H, X) fall after its peak (%)",
    "HSIC(H, Y) kept at the end (%)",
    "CKA(H, X) fall after its peak (%)",
    "seeds fitting first",
    "seeds compressing",
)


def summarize_hsic(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Per arm and layer, the fitting and the compression phase, mean ± sd.

    The last two columns count seeds: "fitting first" where HSIC(H, Y) has
    made 90% of its rise no later than HSIC(H, X) peaks; "compressing" where
    HSIC(H, X) falls by more than 5% after its peak while HSIC(H, Y) ends
    within 5% of its highest value.
    """
    rows = []
    for arm in dict.fromkeys(frame["arm"]):
        arm_frame = frame[frame["arm"] == arm]
        n_seeds = arm_frame["seed"].nunique()
        for layer in ("1", "3", "4"):
            phases = plane_phases(arm_frame, arm, layer)
            fitting_first = phases["fit_epoch"] <= phases["peak_epoch"]
            compressing = (phases["x_fall"] > 0.05) & (phases["y_kept"] > 0.95)
            kept = arm_frame["seed"].isin(phases.index)
            start = at_epoch(arm_frame[kept], "hsic_y", layer, epoch=0)[arm] * 1000
            end = at_epoch(arm_frame[kept], "hsic_y", layer)[arm] * 1000
            rows.append(
                (
                    f"{arm}, {layer}",
                    f"{len(phases)} of {n_seeds}",
                    f"{mean_sd(start, 1)} -> {mean_sd(end, 1)}",
                    mean_sd(phases["fit_epoch"], 0),
                    mean_sd(phases["peak_epoch"], 0),
                    mean_sd(100 * phases["x_fall"], 1),
                    mean_sd(100 * phases["y_kept"], 1),
                    mean_sd(100 * phases["cka_x_fall"], 1),
                    f"{int(fitting_first.sum())} of {len(phases)}",
                    f"{int(compressing.sum())} of {len(phases)}",
                )
            )
        accuracy = at_epoch(arm_frame, "test_accuracy")[arm]
        rows.append(
            (f"{arm}: test accuracy", f"{n_seeds}", mean_sd(accuracy), *[""] * 7)
        )
    return rows


# ---- 4. The NTK's class mutual information during training (ZnNL) ----------


class SplitClassMI(Measure):
    """NTK class mutual information of halves of the same class and of others.

    Each class of the probe set is cut in two halves (its first and second
    half in probe order); :class:`~infoscope.NTKMutualInformation` is fitted
    on the NTK with the halves as classes, and the measure returns the mean
    normalised MI, ``2 I / (S_A + S_B)``, between the two halves of one class
    (``same``) and between halves of different classes (``other``): classes
    of equal size, so the two compare.
    """

    needs = frozenset({"ntk", "labels"})

    def measure(self, probe):
        from infoscope.backends import to_numpy

        y = to_numpy(probe.y)
        halves = np.empty_like(y)
        for label in np.unique(y):
            where = np.flatnonzero(y == label)
            halves[where] = 2 * label + (np.arange(where.size) >= where.size // 2)
        mi = NTKMutualInformation(max_combination_size=2).fit(probe.ntk, halves)
        nmi = to_numpy(mi.normalized_mutual_information_)
        owner = np.asarray(mi.classes_) // 2
        same = (owner[:, None] == owner[None, :]) & ~np.eye(owner.size, dtype=bool)
        other = owner[:, None] != owner[None, :]
        return {
            ("model", "same"): float(nmi[same].mean()),
            ("model", "other"): float(nmi[other].mean()),
        }


def ntk_class_mi_study(
    seeds: Iterable[int] = range(20),
    *,
    epochs: int = 100,
    every: int = 5,
    n_train: int = 300,
    per_class: int = 10,
    lr: float = 0.005,
    momentum: float = 0.9,
    batch_size: int = 10,
) -> pd.DataFrame:
    """The NTK's entropy and class mutual information while a network learns.

    ZnNL's Neural-Mutual-Information notebook's set-up, on digits: a
    64-32-32-10 ReLU network, SGD with momentum (`lr`, `momentum`,
    mini-batches of `batch_size`) on the first `n_train` training digits.
    The probe set is the first `per_class` training digits of each class (as
    the notebook takes training points). Every `every` epochs the monitor
    records the NTK's entropy (``ntk_entropy``; ``ntk_cos_entropy`` with the
    cosine-normalised kernel), the class mutual information averaged over
    the 45 pairs of digits (``ntk_mi``, ``ntk_mi_normalized``),
    :class:`SplitClassMI` (``split_same``, ``split_other``) and the test
    accuracy (``test_accuracy``, on the 540 test digits).
    """
    import torch

    X_train, X_test, y_train, y_test = digits_split()
    X_train, y_train = X_train[:n_train], y_train[:n_train]
    probe = np.concatenate(
        [np.flatnonzero(y_train == c)[:per_class] for c in range(10)]
    )
    X_probe, y_probe = X_train[probe], y_train[probe]
    X_train, y_train = torch.from_numpy(X_train), torch.from_numpy(y_train)
    frames = []
    with one_thread():
        for seed in seeds:
            net = mlp((64, 32, 32, 10), seed=seed)
            monitor = Monitor(
                {
                    "ntk": NTKEntropy(),
                    "ntk_cos": NTKEntropy(normalize=True),
                    "ntk_mi": NTKMutualInformation(),
                    "split": SplitClassMI(),
                },
                X_probe,
                y_probe,
                every=every,
                progress=False,
                step_name="epoch",
            )
            optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
            generator = torch.Generator().manual_seed(seed)
            for epoch in range(epochs + 1):
                if epoch > 0:
                    train_epoch(
                        net,
                        optimizer,
                        X_train,
                        y_train,
                        batch_size=batch_size,
                        generator=generator,
                    )
                if monitor.due(epoch):
                    monitor.record(
                        epoch, net, test_accuracy=accuracy(net, X_test, y_test)
                    )
            frames.append(tagged(monitor.history(), seed=seed, arm="training"))
    return pd.concat(frames, ignore_index=True)


NTK_COLUMNS = (
    "quantity",
    "epoch 0",
    "end",
    "end - epoch 0 [95% CI]",
    "seeds where it fell",
)


def summarize_ntk(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each NTK quantity at epoch 0 and at the end, and the paired change."""
    rows = []
    for label, measure in (
        ("NTK entropy (bits)", "ntk_entropy"),
        ("NTK entropy, cosine-normalised (bits)", "ntk_cos_entropy"),
        ("class MI, mean over digit pairs (bits)", "ntk_mi"),
        ("normalised class MI, digit pairs", "ntk_mi_normalized"),
        ("normalised MI, halves of one digit", "split_same"),
        ("normalised MI, halves of two digits", "split_other"),
        ("test accuracy", "test_accuracy"),
    ):
        start = at_epoch(frame, measure, epoch=0)["training"]
        end = at_epoch(frame, measure)["training"]
        change = end - start
        rows.append(
            (
                label,
                mean_sd(start),
                mean_sd(end),
                difference(change),
                f"{int((change < 0).sum())} of {change.size}",
            )
        )
    return rows


# ---- the command line ------------------------------------------------------

STUDIES = {
    "snr": (snr_dropout_study, summarize_snr, SNR_COLUMNS),
    "dsmi": (dsmi_labels_study, summarize_dsmi, DSMI_COLUMNS),
    "hsic": (hsic_plane_study, summarize_hsic, HSIC_COLUMNS),
    "ntk": (ntk_class_mi_study, summarize_ntk, NTK_COLUMNS),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run one of the claims gallery's studies and print its table."
    )
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    parser.add_argument(
        "--format", choices=("markdown", "rst", "list-table"), default="markdown"
    )
    parser.add_argument("--save", help="write the tidy table of the run to this CSV")
    args = parser.parse_args(argv)
    study, summarize, columns = STUDIES[args.study]
    start = time.perf_counter()
    frame = study(seeds=range(args.seeds))
    elapsed = time.perf_counter() - start
    if args.save:
        frame.to_csv(args.save, index=False)
    print(format_table(columns, summarize(frame), args.format))
    print(f"\n{args.study}: {args.seeds} seeds, {elapsed:.0f} s")


if __name__ == "__main__":
    main()
