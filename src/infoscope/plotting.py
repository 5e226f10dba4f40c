"""Plots of the information measures that :mod:`infoscope.monitor` records.

Each function draws with :class:`matplotlib.figure.Figure` directly (no pyplot,
so no global state and no window) and returns the figure:

- :func:`information_plane`: layer trajectories in the HSIC (or CKA) plane;
- :func:`measure_curves`: every measure against step, one line per layer;
- :func:`snr_scatter`: Node SNR weights against their input-output covariance;
- :func:`ntk_spectrum`: NTK eigenvalues against rank, one curve per step;
- :func:`similarity_heatmap`: an L x M layer-similarity matrix (CKA, ...);
- :func:`report`: all of the above for a whole run.

The history is the monitor's tidy :class:`pandas.DataFrame` with the columns
``step``, ``layer``, ``measure`` and ``value``; arrays may come from any
library :func:`infoscope.backends.to_numpy` converts. Needs matplotlib:
``pip install "infoscope[plot]"``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'infoscope.plotting needs matplotlib: pip install "infoscope[plot]"'
    ) from exc

from .backends import to_numpy
from .runs import describe_measure

__all__ = [
    "information_plane",
    "measure_curves",
    "ntk_spectrum",
    "report",
    "similarity_heatmap",
    "snr_scatter",
]

_COLUMNS = ("step", "layer", "measure", "value")
_AXES = {
    "hsic_x": "HSIC(H, X): dependence on the inputs",
    "hsic_y": "HSIC(H, Y): dependence on the labels",
    "cka_x": "CKA(H, X): similarity to the inputs",
    "cka_y": "CKA(H, Y): similarity to the labels",
}
_PLANES = (("hsic_x", "hsic_y"), ("cka_x", "cka_y"))
_MODEL = "model"


def _check_history(history: Any, name: str = "history") -> Any:
    columns = getattr(history, "columns", None)
    if columns is None:
        raise ValueError(
            f"{name} must be a pandas DataFrame with the columns "
            f"{list(_COLUMNS)}; got {type(history).__name__}"
        )
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{name} is missing the columns {missing}; it has {list(columns)}"
        )
    return history


def _first_seen(values: Any) -> list:
    return list(dict.fromkeys(values))


def _check_in(wanted: Sequence, available: list, argname: str, what: str) -> None:
    missing = [w for w in wanted if w not in available]
    if missing:
        raise ValueError(
            f"{argname}: {missing} not in the history; available {what}: {available}"
        )


def _as_list(names: str | Sequence[str] | None) -> list[str] | None:
    return [names] if isinstance(names, str) else None if names is None else list(names)


def _wrapped(text: str, width: int = 42) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _new_axes(ax: Axes | None) -> Axes:
    return Figure(layout="constrained").add_subplot() if ax is None else ax


def _grid(n: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for extra in axes[n:]:
        fig.delaxes(extra)
    return fig, axes[:n]


def information_plane(
    history: Any,
    *,
    x: str = "hsic_x",
    y: str = "hsic_y",
    layers: Sequence[str] | None = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
    step_name: str = "step",
) -> Figure:
    """Each layer's trajectory in the information plane, coloured by step.

    Each layer is one line (its colour in the legend) through its records,
    whose points are coloured by step (the colour bar). The title names the
    plane; the axes say what each coordinate measures.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``step``, ``layer``, ``measure``, ``value``.
    x, y : str, default "hsic_x", "hsic_y"
        Measures on the horizontal and vertical axes (e.g. ``"cka_x"``).
    layers : sequence of str, optional
        Layers to draw, in this order; default every layer with both measures.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure by default.
    cmap : str, default "viridis"
        Colour map of the steps, shared by all layers.
    step_name : str, default "step"
        What a step counts ("epoch", say), for the colour bar.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> from infoscope.plotting import information_plane
    >>> history = pd.DataFrame({"step": [0, 0, 1, 1], "layer": ["fc1"] * 4,
    ...     "measure": ["hsic_x", "hsic_y"] * 2, "value": [0.9, 0.2, 0.8, 0.5]})
    >>> ax = information_plane(history).axes[0]
    >>> ax.get_title(), ax.get_xlabel()
    ('HSIC information plane', 'HSIC(H, X): dependence on the inputs')
    """
    df = _check_history(history)
    _check_in([x, y], _first_seen(df["measure"]), "x, y", "measures")
    wide = (
        df[df["measure"].isin([x, y])]
        .pivot_table(
            index=["layer", "step"], columns="measure", values="value", aggfunc="last"
        )
        .dropna(subset=[x, y])
    )
    with_both = set(wide.index.get_level_values("layer"))
    having = [la for la in _first_seen(df["layer"]) if la in with_both]
    if layers is None:
        layers = having
    else:
        _check_in(layers, having, "layers", f"layers with {x} and {y}")
    if not layers:
        raise ValueError(f"history: no layer has both {x!r} and {y!r}")
    ax = _new_axes(ax)
    steps = wide.loc[list(layers)].index.get_level_values("step")
    norm = Normalize(vmin=float(steps.min()), vmax=float(steps.max()))
    for i, layer in enumerate(layers):
        points = wide.loc[layer].sort_index()
        xs, ys = points[x].to_numpy(), points[y].to_numpy()
        ax.plot(xs, ys, color=f"C{i % 10}", linewidth=1.5, zorder=1, label=layer)
        ax.scatter(
            xs,
            ys,
            c=points.index.to_numpy(dtype=float),
            cmap=cmap,
            norm=norm,
            s=22,
            edgecolors=f"C{i % 10}",
            linewidths=0.8,
            zorder=2,
        )
    ax.set_xlabel(_AXES.get(x, x))
    ax.set_ylabel(_AXES.get(y, y))
    ax.set_title(f"{x.split('_')[0].upper()} information plane", fontsize="medium")
    ax.legend(fontsize="small", title="layer", title_fontsize="small")
    _step_colorbar(ax, norm, cmap, step_name)
    return ax.figure


def _step_colorbar(ax: Axes, norm: Normalize, cmap: str, step_name: str) -> None:
    bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label(step_name)
    bar.locator = MaxNLocator(integer=True)  # steps are whole numbers
    bar.update_ticks()


def _draw_curves(
    ax: Axes, df: Any, measure: str, layers: list[str] | None, step_name: str
) -> None:
    rows = df[df["measure"] == measure]
    drawn = 0
    for layer in _first_seen(rows["layer"]):
        if layers is not None and layer != _MODEL and layer not in layers:
            continue
        line = rows[rows["layer"] == layer].sort_values("step", kind="stable")
        ax.plot(
            line["step"].to_numpy(),
            line["value"].to_numpy(),
            marker="o",
            markersize=3,
            label=str(layer),
        )
        drawn += 1
    if drawn == 0:
        ax.text(
            0.5,
            0.5,
            "no data for these layers",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    if drawn > 1:
        ax.legend(fontsize="small")
    title, unit = describe_measure(measure)
    ax.set_title(_wrapped(title), fontsize="medium")
    ax.set_ylabel(unit or measure)
    ax.set_xlabel(step_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def measure_curves(
    history: Any,
    measures: str | Sequence[str] | None = None,
    *,
    layers: Sequence[str] | None = None,
    step_name: str = "step",
) -> Figure:
    """Every measure against step: one subplot per measure, one line per layer.

    Each subplot is titled with what the measure is and labelled with its
    unit (:func:`infoscope.runs.describe_measure`; a name it does not know is
    its own title).

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``step``, ``layer``, ``measure``, ``value``.
    measures : str or sequence of str, optional
        Measures to draw, in this order; default every measure of the
        history in order of first appearance.
    layers : sequence of str, optional
        Layers to draw; model-level values (layer ``"model"``: loss,
        accuracy, NTK entropy) are always drawn.
    step_name : str, default "step"
        What a step counts ("epoch", say), for the horizontal axes.

    Returns
    -------
    matplotlib.figure.Figure
        Up to three subplots a row.

    Examples
    --------
    >>> import pandas as pd
    >>> from infoscope.plotting import measure_curves
    >>> history = pd.DataFrame({"step": [0, 0, 0, 1, 1, 1],
    ...     "layer": ["fc1", "fc2", "model"] * 2,
    ...     "measure": ["dse", "dse", "loss"] * 2,
    ...     "value": [3.1, 2.5, 0.9, 2.8, 2.0, 0.4]})
    >>> fig = measure_curves(history, step_name="epoch")
    >>> [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes]
    [('Diffusion spectral entropy of the layer', 'bits'), ('Loss', 'loss')]
    >>> fig.axes[0].get_xlabel()
    'epoch'

    """
    df = _check_history(history)
    available = _first_seen(df["measure"])
    measures = _as_list(measures)
    if measures is None:
        measures = available
    else:
        _check_in(measures, available, "measures", "measures")
    if not measures:
        raise ValueError("history has no measures to plot")
    layers = _as_list(layers)
    if layers is not None:
        _check_in(layers, _first_seen(df["layer"]), "layers", "layers")
    fig, axes = _grid(len(measures))
    for ax, measure in zip(axes, measures, strict=True):
        _draw_curves(ax, df, measure, layers, step_name)
    return fig


def snr_scatter(weights: Any, c: Any, *, ax: Axes | None = None) -> Figure:
    """Node SNR scatter: each weight ``W_ij`` against its covariance ``c_ij``.

    Weights whose sign disagrees with their ``c_ij`` (``c_ij * W_ij < 0``)
    are drawn in red and counted in the legend and the title. Non-finite
    pairs cannot be drawn; their number is given in the title.

    Parameters
    ----------
    weights : array of shape (d_in, d_out)
        A dense layer's weights ``W`` (any library).
    c : array of the same shape
        The normalised input-output covariance (NodeSNR's ``covariance_``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure by default.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.plotting import snr_scatter
    >>> fig = snr_scatter(np.array([[0.5, -0.2], [0.3, 0.1]]),
    ...                   np.array([[0.4, 0.3], [0.2, 0.6]]))
    >>> fig.axes[0].get_title()
    '1 of 4 weights disagree in sign'
    """
    w, cov = to_numpy(weights), to_numpy(c)
    if w.shape != cov.shape:
        raise ValueError(
            f"weights and c must have the same shape; got weights {w.shape} "
            f"and c {cov.shape}"
        )
    w = np.asarray(w, dtype=float).ravel()
    cov = np.asarray(cov, dtype=float).ravel()
    finite = np.isfinite(w) & np.isfinite(cov)
    w, cov = w[finite], cov[finite]
    disagree = cov * w < 0
    n_bad = int(disagree.sum())
    ax = _new_axes(ax)
    ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=0)
    ax.axvline(0.0, color="0.5", linewidth=0.6, zorder=0)
    ax.scatter(
        cov[~disagree],
        w[~disagree],
        s=8,
        color="C0",
        alpha=0.7,
        label=f"same sign ({w.size - n_bad})",
    )
    ax.scatter(
        cov[disagree],
        w[disagree],
        s=8,
        color="C3",
        alpha=0.9,
        label=f"sign disagreement ({n_bad})",
    )
    title = f"{n_bad} of {w.size} weights disagree in sign"
    if not finite.all():
        title += f"\n({int((~finite).sum())} non-finite pairs left out)"
    ax.set_title(title)
    ax.set_xlabel("c_ij: covariance of input i with node j's output")
    ax.set_ylabel("weight W_ij")
    ax.legend(fontsize="small")
    return ax.figure


def similarity_heatmap(
    matrix: Any,
    *,
    labels_a: Sequence[str] | None = None,
    labels_b: Sequence[str] | None = None,
    ax: Axes | None = None,
    cmap: str = "magma",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    annotate: bool | None = None,
    label: str = "similarity",
) -> Figure:
    """Heatmap of an L x M layer-similarity matrix.

    Row l (y axis, first layer at the bottom) is layer l of the first
    collection, column m (x axis) layer m of the second, as
    :func:`infoscope.similarity_matrix` returns them. NaN entries (a constant
    layer) are drawn grey.

    Parameters
    ----------
    matrix : array of shape (L, M), or a fitted SimilarityMatrix
        Any library; an estimator brings its layer names as labels.
    labels_a, labels_b : sequence of str, optional
        Row and column names (default: the estimator's, else 0, 1, ...).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure by default.
    cmap : str, default="magma"
    vmin, vmax : float or None, default=0.0 and 1.0
        The colour range; None: the data's.
    annotate : bool or None, default=None
        Write each value in its cell; None: when there are at most 100 cells.
    label : str, default="similarity"
        The colour bar's label (e.g. "linear CKA").

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.plotting import similarity_heatmap
    >>> fig = similarity_heatmap(np.array([[1.0, 0.4, 0.1], [0.4, 1.0, 0.6]]),
    ...                          labels_a=["conv", "fc"])
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['conv', 'fc']
    """
    if hasattr(matrix, "matrix_"):
        labels_a = labels_a if labels_a is not None else matrix.layer_names_a_
        labels_b = labels_b if labels_b is not None else matrix.layer_names_b_
        matrix = matrix.matrix_
    values = np.asarray(to_numpy(matrix), dtype=float)
    if values.ndim != 2:
        raise ValueError(
            f"similarity_heatmap: `matrix` must be 2-D (L x M), got shape "
            f"{values.shape}; pass similarity_matrix(...) or a fitted "
            f"SimilarityMatrix."
        )
    rows, columns = values.shape
    labels_a = list(labels_a) if labels_a is not None else [str(i) for i in range(rows)]
    labels_b = (
        list(labels_b) if labels_b is not None else [str(j) for j in range(columns)]
    )
    for name, names, size in (
        ("labels_a", labels_a, rows),
        ("labels_b", labels_b, columns),
    ):
        if len(names) != size:
            raise ValueError(
                f"similarity_heatmap: {name} has {len(names)} names but the "
                f"matrix has {size} {'rows' if name == 'labels_a' else 'columns'}."
            )
    ax = _new_axes(ax)
    colours = _colormap(cmap)
    image = ax.imshow(
        np.ma.masked_invalid(values),
        origin="lower",
        cmap=colours,
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(columns), labels_b, rotation=45 if columns > 6 else 0)
    ax.set_yticks(range(rows), labels_a)
    if annotate is None:
        annotate = rows * columns <= 100
    if annotate:
        middle = (
            np.nanmean(values) if vmin is None or vmax is None else (vmin + vmax) / 2
        )
        for (i, j), v in np.ndenumerate(values):
            text = "nan" if not np.isfinite(v) else f"{v:.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize="small",
                color="black" if np.isfinite(v) and v > middle else "white",
            )
    ax.figure.colorbar(image, ax=ax, label=label)
    return ax.figure


def _colormap(name: str) -> Any:
    """The named colormap with NaN drawn grey (a new object; the global one is kept)."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="0.75")


def _spectra(eigenvalues: Any) -> dict[int, np.ndarray] | None:
    """Step -> eigenvalues for a dict input (step -> array or {layer: array})."""
    if not isinstance(eigenvalues, Mapping):
        return None
    if not eigenvalues:
        raise ValueError("eigenvalues is empty")
    out = {}
    for step, value in sorted(eigenvalues.items()):
        if isinstance(value, Mapping):
            if len(value) != 1 and _MODEL not in value:
                raise ValueError(
                    f"eigenvalues[{step!r}] holds several arrays {list(value)} and "
                    f"no {_MODEL!r} one; pass step -> array"
                )
            value = value[_MODEL] if _MODEL in value else next(iter(value.values()))
        out[step] = value
    return out


def ntk_spectrum(
    eigenvalues: Any,
    *,
    ax: Axes | None = None,
    cmap: str = "viridis",
    step_name: str = "step",
) -> Figure:
    """NTK eigenvalues, largest first, against their rank on a log scale.

    Eigenvalues that are not positive cannot be drawn on a log scale; they
    are left out and counted in the title.

    Parameters
    ----------
    eigenvalues : array or dict
        One array of eigenvalues (any library), or a dict ``step -> array``
        (or ``step -> {"model": array}``, as ``run.arrays("ntk_eigenvalues")``
        returns) drawn as one curve a step, coloured by step.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure by default.
    cmap : str, default "viridis"
        Colour map of the steps (dict input).
    step_name : str, default "step"
        What a step counts, for the colour bar (dict input).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.plotting import ntk_spectrum
    >>> fig = ntk_spectrum(np.array([0.5, 4.0, 1e-3, -1e-9]))
    >>> fig.axes[0].get_title()
    'NTK spectrum (1 non-positive eigenvalue left out)'
    >>> fig = ntk_spectrum({0: {"model": np.array([2.0, 1.0])},
    ...                     10: {"model": np.array([3.0, 0.5])}})
    >>> len(fig.axes[0].get_lines())
    2
    """
    spectra = _spectra(eigenvalues)
    ax = _new_axes(ax)
    curves = {None: eigenvalues} if spectra is None else spectra
    steps = None
    if spectra is not None:
        norm = Normalize(vmin=float(min(spectra)), vmax=float(max(spectra)))
        steps = ScalarMappable(norm=norm, cmap=cmap)
        _step_colorbar(ax, norm, cmap, step_name)
    left_out = 0
    for step, values in curves.items():
        lam = np.asarray(to_numpy(values), dtype=float).ravel()
        positive = -np.sort(-lam[lam > 0])
        left_out += lam.size - positive.size
        ax.plot(
            np.arange(1, positive.size + 1),
            positive,
            color="C0" if steps is None else steps.to_rgba(float(step)),
            label=None if step is None else f"{step_name} {step}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    title = "NTK spectrum"
    if left_out:
        plural = "s" if left_out > 1 else ""
        title += f" ({left_out} non-positive eigenvalue{plural} left out)"
    ax.set_title(title, fontsize="medium")
    return ax.figure


def _last_snr(run: Any, order: list) -> tuple[str, int, Any, Any] | None:
    weights, cs = run.arrays("snr_weights"), run.arrays("snr_c")
    for step in sorted(set(weights) & set(cs), reverse=True):
        both = [la for la in weights[step] if la in cs[step]]
        # A file-backed run returns layers by name; the history keeps model order.
        both.sort(key=lambda la: order.index(la) if la in order else len(order))
        if both:
            layer = both[0]
            return layer, step, weights[step][layer], cs[step][layer]
    return None


# Per-layer similarity to a reference (ReferenceSimilarity): a heatmap.
_TO_REFERENCE = ("_to_initial", "_to_previous", "_to_reference")


def _layer_by_step(ax: Axes, df: Any, measure: str, step_name: str) -> None:
    """`measure` as a heatmap: one row per layer, one column per step."""
    table = df[df["measure"] == measure].pivot_table(
        index="layer", columns="step", values="value", aggfunc="last", sort=False
    )
    table = table.reindex(columns=sorted(table.columns))
    title, unit = describe_measure(measure)
    similarity_heatmap(
        table.to_numpy(),
        labels_a=[str(layer) for layer in table.index],
        labels_b=[str(step) for step in table.columns],
        ax=ax,
        cmap="viridis",
        annotate=False,
        label=unit or measure,
    )
    ax.set_title(_wrapped(title), fontsize="medium")
    ax.set_xlabel(step_name)
    ax.set_ylabel("layer")
    if len(table.columns) > 12:  # label every few steps only
        every = math.ceil(len(table.columns) / 12)
        for i, label in enumerate(ax.get_xticklabels()):
            label.set_visible(i % every == 0)


def _constant(df: Any, measure: str) -> float | None:
    """The one value `measure` takes throughout (every step and layer), if so."""
    values = df.loc[df["measure"] == measure, "value"].to_numpy(dtype=float)
    if values.size > 1 and np.all(values == values[0]):
        return float(values[0])
    return None


def report(run: Any, *, step_name: str | None = None) -> Figure:
    """One figure for a whole run: information plane, curves, SNR and NTK.

    Each measure's panel is titled in words with its unit on the vertical
    axis; a layer's similarity to a reference (``cka_to_initial``, ...) is a
    heatmap of layers by steps. Panels without data are left out: the
    information plane when neither ``hsic_x``/``hsic_y`` nor
    ``cka_x``/``cka_y`` are recorded for one layer, the SNR scatter (last
    step, first dense layer) when ``snr_weights`` and ``snr_c`` are not
    stored, the NTK spectrum when ``ntk_eigenvalues`` is not. A measure with
    one value throughout (no dead nodes, say) gets no panel; a line under
    the figure gives its value.

    Parameters
    ----------
    run : object
        Anything with ``history()`` (the tidy DataFrame) and ``arrays(name)``
        (``step -> {layer: array}``, ``{}`` when nothing is stored), such as a
        monitor's run.
    step_name : str, optional
        What a step counts ("epoch", say); by default the run's own
        (``run.config["step_name"]``, which :class:`~infoscope.Monitor`
        stores), else "step".

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> from infoscope.plotting import report
    >>> class Run:
    ...     config = {"step_name": "epoch"}
    ...     def history(self):
    ...         return pd.DataFrame({"step": [0, 1, 0, 1],
    ...                              "layer": ["model"] * 4,
    ...                              "measure": ["loss", "loss", "lr", "lr"],
    ...                              "value": [1.0, 0.5, 0.1, 0.1]})
    ...     def arrays(self, name):
    ...         return {}
    >>> fig = report(Run())
    >>> [(ax.get_title(), ax.get_xlabel()) for ax in fig.axes]
    [('Loss', 'epoch')]
    >>> [text.get_text() for text in fig.texts]
    ['Constant throughout, not drawn: lr = 0.1']
    """
    df = _check_history(run.history(), "run.history()")
    if step_name is None:
        config = getattr(run, "config", None)
        step_name = (config or {}).get("step_name", "step")
        step_name = step_name if isinstance(step_name, str) else "step"
    measures = _first_seen(df["measure"])
    planes = []
    for x, y in _PLANES:
        if x in measures and y in measures:
            both = df[df["measure"].isin([x, y])].groupby("layer")["measure"]
            if (both.nunique() == 2).any():
                planes.append((x, y))
    in_plane = {m for pair in planes for m in pair}
    constants = {m: _constant(df, m) for m in measures if m not in in_plane}
    constants = {m: v for m, v in constants.items() if v is not None}
    curves = [m for m in measures if m not in in_plane and m not in constants]
    heatmaps = [m for m in curves if m.endswith(_TO_REFERENCE)]
    curves = [m for m in curves if m not in heatmaps]
    snr = _last_snr(run, _first_seen(df["layer"]))
    ntk = run.arrays("ntk_eigenvalues")
    n = len(planes) + len(heatmaps) + len(curves) + (snr is not None) + bool(ntk)
    if n == 0 and not constants:
        raise ValueError("run has nothing to plot: its history and arrays are empty")
    fig, axes = _grid(max(n, 1), width=4.8, height=3.8)
    panels = iter(axes)
    for x, y in planes:
        information_plane(df, x=x, y=y, ax=next(panels), step_name=step_name)
    for measure in heatmaps:
        _layer_by_step(next(panels), df, measure, step_name)
    for measure in curves:
        _draw_curves(next(panels), df, measure, None, step_name)
    if snr is not None:
        layer, step, w, c = snr
        ax = next(panels)
        snr_scatter(w, c, ax=ax)
        ax.set_title(
            f"Node SNR of {layer}, {step_name} {step}:\n{ax.get_title()}",
            fontsize="medium",
        )
    if ntk:
        ntk_spectrum(ntk, ax=next(panels), step_name=step_name)
    if constants:
        listed = ", ".join(f"{m} = {v:.4g}" for m, v in constants.items())
        fig.text(
            0.01,
            0.0,
            _wrapped(f"Constant throughout, not drawn: {listed}", 150),
            fontsize="small",
            va="bottom",
        )
        fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    return fig
