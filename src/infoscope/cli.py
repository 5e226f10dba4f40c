"""The ``infoscope`` command: ``demo``, ``measure`` and ``report``.

``infoscope demo`` trains a small MLP on scikit-learn's digits and records
every measure; ``infoscope measure`` measures saved activations;
``infoscope report`` redraws a run's figures. Errors are one line on stderr
(exit status 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import __version__

# `infoscope measure` names -> (needs labels, what it computes on (H, y)).
MEASURES: dict[str, tuple[bool, Callable[[Any, Any], float]]] = {}


def _measure(name: str, needs_labels: bool):
    def register(fn: Callable[[Any, Any], float]):
        MEASURES[name] = (needs_labels, fn)
        return fn

    return register


@_measure("dse", False)
def _dse(H: Any, y: Any) -> float:
    from .estimators.diffusion import diffusion_spectral_entropy

    return diffusion_spectral_entropy(H)


@_measure("dsmi", True)
def _dsmi(H: Any, y: Any) -> float:
    from .estimators.diffusion import diffusion_spectral_mutual_information

    return diffusion_spectral_mutual_information(H, y, random_state=0)


@_measure("hsic", True)
def _hsic(H: Any, y: Any) -> float:
    from .estimators.hsic import HSIC

    return HSIC().fit(H, y).hsic_


@_measure("cka", True)
def _cka(H: Any, y: Any) -> float:
    from .estimators.hsic import HSIC

    return HSIC(normalized=True).fit(H, y).cka_


@_measure("shannon", False)
def _shannon(H: Any, y: Any) -> float:
    from .estimators.shannon import shannon_entropy

    return shannon_entropy(H)


@_measure("shannon_mi", True)
def _shannon_mi(H: Any, y: Any) -> float:
    from .estimators.shannon import shannon_mutual_information

    return shannon_mutual_information(H, y, random_state=0)


class CommandError(Exception):
    """A problem with the command's input, reported as one line."""


# ---- infoscope demo


def _demo(args: argparse.Namespace) -> None:
    from .demo import OUTPUTS, run_demo

    try:
        monitor = run_demo(
            args.out,
            epochs=args.epochs,
            framework=args.framework,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    print(
        "Each measure at epoch 0 (before training) and after the last epoch; "
        "the layers are the MLP's hidden ReLU outputs and its logits, 'model' "
        "the whole network.\n"
    )
    print(summary(monitor.history(), "epoch"))
    written = ", ".join(os.path.join(args.out, name) for name in OUTPUTS)
    print(f"\nwrote {written}")


def summary(history: Any, step_name: str = "step", *, legend: bool = True) -> str:
    """A text table of each (measure, layer): its first and last values, with units.

    Below the table, what each measure is (:func:`infoscope.runs.describe_measure`)
    unless `legend` is false.

    Examples
    --------
    >>> import pandas as pd
    >>> from infoscope.cli import summary
    >>> table = pd.DataFrame({"step": [0, 5], "layer": ["fc", "fc"],
    ...                       "measure": ["dse", "dse"], "value": [1.25, 2.5]})
    >>> print(summary(table, "epoch"))
    measure layer unit  first epoch  first  last epoch  last  change
    dse     fc    bits            0   1.25           5   2.5    1.25
    <BLANKLINE>
    dse: Diffusion spectral entropy of the layer
    """
    from .runs import describe_measure

    if len(history) == 0:
        return "(no records)"
    ordered = history.sort_values("step", kind="stable")
    grouped = ordered.groupby(["measure", "layer"], sort=False)
    table = grouped.agg(
        first_step=("step", "first"),
        first=("value", "first"),
        last_step=("step", "last"),
        last=("value", "last"),
    ).reset_index()
    table.insert(2, "unit", [describe_measure(m)[1] for m in table["measure"]])
    table["change"] = table["last"] - table["first"]
    table = table.rename(
        columns={"first_step": f"first {step_name}", "last_step": f"last {step_name}"}
    )
    text = table.to_string(
        index=False,
        float_format=lambda v: f"{v:.4g}",
        justify="left",
        formatters={
            name: f"{{:<{table[name].str.len().max()}}}".format
            for name in ("measure", "layer", "unit")
        },
    )
    lines = [line.rstrip() for line in text.splitlines()]
    if legend:
        known = []
        for measure in dict.fromkeys(table["measure"]):
            title = describe_measure(measure)[0]
            if title != measure:
                known.append(f"{measure}: {title}")
        if known:
            lines += ["", *known]
    return "\n".join(lines)


# ---- infoscope measure

BACKENDS = ("numpy", "torch", "jax", "cupy")
#: ``infoscope measure`` refuses inputs whose arrays hold more than this many
#: bytes once loaded (a compressed .npz can hold far more than its size on
#: disk); ``--max-input-gb`` raises the limit.
MAX_INPUT_BYTES = 2 * 2**30
_NPY_MAGIC = b"\x93NUMPY"


def _format_size(n: float) -> str:
    from .backends import format_bytes

    return format_bytes(n)


def _check_input_file(path: str, what: str) -> None:
    """A regular file: never a FIFO, device or directory (reading one can block)."""
    import stat

    if not os.path.lexists(path):
        raise CommandError(f"no such file: {path}")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CommandError(f"{path}: cannot be read ({exc.strerror}).") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "not a regular file"
        )
        raise CommandError(
            f"{path}: is {kind}; {what} must be read from a regular file saved "
            f"with numpy.save or numpy.savez."
        )


def _npy_bytes(handle: Any, path: str) -> int:
    """The bytes of the array a .npy stream holds, from its header alone."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, SyntaxError) as exc:
        raise CommandError(
            f"{path}: is not a readable NumPy .npy file ({exc}); save arrays "
            f"with numpy.save."
        ) from None
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _stored_bytes(path: str, suffix: str) -> int:
    """The bytes the arrays of a .npy or .npz file take once loaded.

    Checks the file's format from its first bytes: NumPy's own message for a
    file of another kind ("contains pickled data") misleads.
    """
    import zipfile

    with open(path, "rb") as handle:
        start = handle.read(len(_NPY_MAGIC))
        if suffix == ".npy":
            if start != _NPY_MAGIC:
                raise CommandError(
                    f"{path}: is not a NumPy .npy file (it does not start with "
                    f"NumPy's header); save activations with numpy.save, or "
                    f"several layers with numpy.savez as a .npz file."
                )
            handle.seek(0)
            return _npy_bytes(handle, path)
    if not zipfile.is_zipfile(path):
        raise CommandError(
            f"{path}: is not a NumPy .npz file (not a zip archive); save layers "
            f"with numpy.savez(path, name=array, ...)."
        )
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise CommandError(
                    f"{path}: holds {info.filename!r}, which is not a NumPy "
                    f"array; a .npz file must hold arrays only (numpy.savez)."
                )
            with archive.open(info) as member:
                total += _npy_bytes(member, f"{path}:{info.filename}")
    return total


def _check_size(path: str, suffix: str, limit: int) -> None:
    size = _stored_bytes(path, suffix)
    if size > limit:
        raise CommandError(
            f"{path}: its arrays take {_format_size(size)} once loaded, above "
            f"the {_format_size(limit)} that infoscope measure reads by default; "
            f"pass --max-input-gb {math.ceil(size / 2**30)} to read it anyway "
            f"(and --max-samples N to measure a random subset of the samples)."
        )


def _load_activations(path: str, limit: int = MAX_INPUT_BYTES) -> dict[str, np.ndarray]:
    _check_input_file(path, "activations")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        raise CommandError(
            f"{path}: activations must be a .npy file (one layer) or a .npz file "
            f"(one array per layer); got {suffix or 'no extension'}."
        )
    _check_size(path, suffix, limit)
    try:
        loaded = np.load(path, allow_pickle=False)
        if suffix == ".npy":
            layers = {os.path.splitext(os.path.basename(path))[0]: loaded}
        else:
            with loaded:
                layers = {name: loaded[name] for name in loaded.files}
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot be read as {suffix} ({exc})") from None
    if not layers:
        raise CommandError(f"{path}: holds no arrays.")
    for name, H in layers.items():
        if H.ndim < 2:
            raise CommandError(
                f"{path}: layer {name!r} has shape {H.shape}; activations need "
                f"samples along the first axis and at least one feature, "
                f"shape (n_samples, n_features, ...)."
            )
        if H.dtype.kind not in "biuf":
            raise CommandError(
                f"{path}: layer {name!r} has dtype {H.dtype}; activations must "
                f"be numbers."
            )
        _check_finite_values(H, f"layer {name!r} of {path}")
    return layers


def _check_finite_values(a: np.ndarray, what: str) -> None:
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise CommandError(
                f"{what} has {bad} NaN or infinite value(s) of {a.size}; remove "
                f"the samples that hold them (or impute them) before measuring."
            )


def _load_labels(path: str, limit: int = MAX_INPUT_BYTES) -> np.ndarray:
    _check_input_file(path, "labels")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".npy", ".npz"):
        _check_size(path, suffix, limit)
    elif os.path.getsize(path) > limit:
        raise CommandError(
            f"{path}: {_format_size(os.path.getsize(path))} of text labels, above "
            f"the {_format_size(limit)} infoscope measure reads by default; pass "
            f"--max-input-gb to read it anyway."
        )
    try:
        if suffix == ".npy":
            y = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as loaded:
                if len(loaded.files) != 1:
                    raise CommandError(
                        f"{path}: a labels .npz must hold one array; it holds "
                        f"{loaded.files}."
                    )
                y = loaded[loaded.files[0]]
        else:  # text: one label per line (or comma separated)
            y = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=1)
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot be read as labels ({exc})") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise CommandError(
            f"{path}: labels must be one value per sample, shape (n_samples,); "
            f"got shape {y.shape}."
        )
    _check_finite_values(y, f"the labels in {path}")
    return y


def _to_backend(backend: str, array: np.ndarray) -> Any:
    if backend == "numpy":
        return array
    try:
        if backend == "torch":
            import torch

            return torch.from_numpy(np.ascontiguousarray(array))
        if backend == "jax":
            import jax.numpy as jnp

            return jnp.asarray(array)
        import cupy

        return cupy.asarray(array)
    except ImportError:
        raise CommandError(
            f"--backend {backend}: {backend} is not installed; install it or "
            f"choose one of {', '.join(BACKENDS)}."
        ) from None


def _check_output(path: str, inputs: list[str], overwrite: bool) -> None:
    """Refuse to write the CSV over an input, an existing file or a symlink."""
    target = os.path.realpath(path)
    for given in inputs:
        if given is not None and (
            os.path.realpath(given) == target
            or (
                os.path.exists(path)
                and os.path.exists(given)
                and os.path.samefile(path, given)
            )
        ):
            raise CommandError(
                f"--csv {path} is the input file {given}; write the values to "
                f"another file."
            )
    if os.path.lexists(path) and not overwrite:
        kind = "a symbolic link" if os.path.islink(path) else "an existing file"
        raise CommandError(
            f"--csv {path} is {kind}; pass --overwrite to replace it (a link is "
            f"replaced by a file, never written through), or choose a new name."
        )


def _write_csv(table: Any, path: str, overwrite: bool) -> None:
    """Write `table` to `path`: a new file, or (overwrite) atomically replaced.

    Never follows a symbolic link: a new file is created with O_EXCL and
    O_NOFOLLOW, and a replacement is written beside the path and renamed over
    it, which replaces a link itself.
    """
    if not overwrite:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(path, flags, 0o644)
        except FileExistsError:
            raise CommandError(
                f"--csv {path} appeared while measuring; pass --overwrite to "
                f"replace it."
            ) from None
        except OSError as exc:
            raise CommandError(
                f"--csv {path}: cannot be written ({exc.strerror})."
            ) from None
        with os.fdopen(descriptor, "w", newline="") as handle:
            table.to_csv(handle, index=False)
        return
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix=".infoscope-", suffix=".csv", dir=folder
    )
    try:
        with os.fdopen(descriptor, "w", newline="") as handle:
            table.to_csv(handle, index=False)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# Argument names in the library's messages, in the command's terms.
_USER_TERMS = (
    ("`X`", "the activations"),
    ("`Z`", "the activations"),
    ("`y`", "the labels"),
    ("`Y`", "the labels"),
)


def _in_user_terms(message: str) -> str:
    """A library error's message without its function prefix and argument names."""
    head, colon, rest = message.partition(": ")
    if colon and head.isidentifier():
        message = rest
    for name, words in _USER_TERMS:
        message = message.replace(name, words)
    return message


def _measure_error(exc: Exception, layer: str, name: str, n: int) -> CommandError:
    from .backends import MemoryLimitError

    where = f"layer {layer!r}, {name}"
    if isinstance(exc, MemoryLimitError):
        fits = max(2, int(n * math.sqrt(exc.available / exc.needed)))
        return CommandError(
            f"{where}: needs about {_format_size(exc.needed)} for {n} samples, but "
            f"only {_format_size(exc.available)} is free; pass --max-samples "
            f"{fits} (or fewer) to measure a random subset."
        )
    return CommandError(f"{where}: {_in_user_terms(str(exc))}")


def _subsample(layers, y, max_samples):
    """The same random `max_samples` samples (seed 0) of every layer and y."""
    n = next(iter(layers.values())).shape[0]
    if max_samples is None or n <= max_samples:
        return layers, y
    from .backends import draw_rows

    rows = draw_rows(np.random.default_rng(0), n, max_samples)
    layers = {name: (H[rows] if H.shape[0] == n else H) for name, H in layers.items()}
    return layers, (None if y is None or len(y) != n else y[rows])


def _measure_command(args: argparse.Namespace) -> None:
    limit = int(args.max_input_gb * 2**30)
    if args.csv is not None:
        _check_output(args.csv, [args.activations, args.labels], args.overwrite)
    layers = _load_activations(args.activations, limit)
    unknown = [m for m in args.measures or [] if m not in MEASURES]
    if unknown:
        raise CommandError(
            f"unknown measure {unknown[0]!r}; choose from {', '.join(MEASURES)}."
        )
    y = None if args.labels is None else _load_labels(args.labels, limit)
    applicable = [m for m, (needs_labels, _) in MEASURES.items() if not needs_labels]
    names = args.measures or (list(MEASURES) if y is not None else applicable)
    if y is None:
        needing = [m for m in names if MEASURES[m][0]]
        if needing:
            raise CommandError(
                f"{', '.join(needing)} {'needs' if len(needing) == 1 else 'need'} "
                f"labels; pass --labels FILE."
            )
    for layer, H in layers.items():
        if y is not None and len(y) != H.shape[0]:
            raise CommandError(
                f"layer {layer!r} has {H.shape[0]} samples but {args.labels} has "
                f"{len(y)} labels; give one label per sample."
            )
    layers, y = _subsample(layers, y, args.max_samples)
    rows = []
    for layer, H in layers.items():
        H_b = _to_backend(args.backend, H)
        y_b = None if y is None else _to_backend(args.backend, y)
        for name in names:
            try:
                value = float(MEASURES[name][1](H_b, y_b))
            except (ValueError, TypeError) as exc:
                raise _measure_error(exc, layer, name, H.shape[0]) from None
            rows.append((layer, name, value))
    import pandas as pd

    table = pd.DataFrame(rows, columns=["layer", "measure", "value"])
    if args.csv:
        _write_csv(table, args.csv, args.overwrite)
    wide = table.pivot(index="layer", columns="measure", values="value")
    wide = wide.loc[list(layers), names]
    print(wide.to_string(float_format=lambda v: f"{v:.6g}"))


# ---- infoscope report


def _report(args: argparse.Namespace) -> None:
    from .plotting import report
    from .runs import RunFileError, load_run

    if not os.path.exists(args.run):
        raise CommandError(f"no such file: {args.run}")
    out = args.out or os.path.splitext(args.run)[0] + "_report.png"
    try:
        run = load_run(args.run)
        history = run.history()  # the records completed so far
        if len(history) == 0:
            raise CommandError(f"{args.run} holds no completed records yet.")
        figure = report(run)
    except (RunFileError, OSError) as exc:
        raise CommandError(str(exc)) from None
    figure.savefig(out, dpi=110)
    step_name = (run.config or {}).get("step_name", "step")
    if args.table:
        print(summary(history, step_name))
    else:
        steps = run.steps
        print(
            f"{args.run}: {len(steps)} records ({step_name}s {steps[0]} to "
            f"{steps[-1]}), {history.measure.nunique()} measures; --table prints "
            f"their first and last values."
        )
    print(f"wrote {out}")


# ---- the parser


def build_parser() -> argparse.ArgumentParser:
    """The ``infoscope`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="infoscope",
        description="Information measures of neural-network representations.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one line"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train a small MLP on digits, record every measure, draw the report",
    )
    demo.add_argument("--out", default="infoscope-demo", help="output folder")
    demo.add_argument("--epochs", type=_positive_int, default=30)
    demo.add_argument(
        "--framework",
        choices=("auto", "torch", "jax"),
        default="auto",
        help="auto: torch when installed, else JAX",
    )
    demo.add_argument("--overwrite", action="store_true", help="replace a past demo")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)

    measure = commands.add_parser(
        "measure", help="measure saved activations (.npy: one layer, .npz: several)"
    )
    measure.add_argument("activations", help="ACTIVATIONS.npy or .npz")
    measure.add_argument("--labels", help="labels: .npy, .npz, .csv or .txt")
    measure.add_argument(
        "--measures",
        nargs="+",
        metavar="NAME",
        help=f"any of {', '.join(MEASURES)} (default: all that apply)",
    )
    measure.add_argument("--backend", choices=BACKENDS, default="numpy")
    measure.add_argument(
        "--csv", help="also write the values to this CSV file (a new file)"
    )
    measure.add_argument(
        "--overwrite",
        action="store_true",
        help="let --csv replace an existing file or link (never an input)",
    )
    measure.add_argument(
        "--max-samples",
        type=_positive_int,
        metavar="N",
        help="measure a random subset of N samples (the same for every layer)",
    )
    measure.add_argument(
        "--max-input-gb",
        type=_positive_float,
        default=MAX_INPUT_BYTES / 2**30,
        metavar="GB",
        help=(
            "refuse inputs whose arrays take more than this once loaded "
            f"(default {MAX_INPUT_BYTES / 2**30:g} GiB)"
        ),
    )
    measure.set_defaults(handler=_measure_command)

    report = commands.add_parser("report", help="redraw the figures of a run")
    report.add_argument(
        "run", help="RUN.db, written by a Monitor or the demo (or an older RUN.h5)"
    )
    report.add_argument("--out", help="the PNG to write (default: RUN_report.png)")
    report.add_argument(
        "--table", action="store_true", help="print each measure's first and last value"
    )
    report.set_defaults(handler=_report)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``infoscope`` command; returns the exit status.

    Examples
    --------
    >>> from infoscope.cli import main
    >>> main(["measure", "missing.npy"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print(f"infoscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, CommandError):
            message = str(exc)
        elif isinstance(exc, (ValueError, TypeError, OSError)):
            message = _in_user_terms(str(exc))
        else:  # a bug: say so, without Python's words for it
            message = (
                f"internal error ({exc}); rerun with --debug for the details, "
                f"and report it"
            )
        message = " ".join(message.split())  # one line, whatever raised it
        print(f"infoscope {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
