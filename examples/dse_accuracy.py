"""The accuracy of the approximate DSE on a benchmark set, against the exact value.

The cases are the data a DSE is computed on in practice, at the bandwidths
that give it a range of values: uniform data; Gaussian blobs in 16, 64 and 256
dimensions; a swiss roll mapped linearly into 64 dimensions; and the hidden
activations of a small network trained on scikit-learn's digits (applied to
the digits shifted by one pixel in every direction, 16,173 images). Each at
sigma = 10 (the default), the median pairwise distance, and a small sigma
that makes the kernel local. N runs from 2,000 to 10,000; at 10,000, where
the exact eigendecomposition takes minutes, six of the cases are run.

For every case and N the script prints the exact value, the approximate
value at default settings, its relative error, and the error estimate
``DiffusionSpectralEntropy.entropy_error_`` relative to the exact value; the
user guide's table (docs/user_guide/diffusion.rst) is its output, and
``tests/estimators/test_dse_accuracy.py`` runs a subset at small N.

Usage::

    python examples/dse_accuracy.py [--sizes 2000 6000 10000] [--cache PATH]
    python examples/dse_accuracy.py --sizes 10000 --nystrom 262 1000

``--cache`` keeps the exact values in a JSON file between runs. ``--nystrom``
instead compares, at the first size, the Nystrom operator with each number of
landmarks against the dense operator's estimate (the default below the memory
limit, within 0.15% of the exact value on this set): the approximation that
the approximate method falls back to when the dense operator does not fit.
Each cell is the error and, in brackets, ``entropy_error_``, both relative to
the dense operator's estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infoscope import DiffusionSpectralEntropy, diffusion_spectral_entropy
from infoscope.kernels import resolve_bandwidth

#: The cases run at the largest size only (the exact value takes minutes there).
LARGE_CASES = {
    ("blobs256", "10.0"),
    ("blobs64", "10.0"),
    ("roll", "10.0"),
    ("digits", "2.0"),
    ("uniform", "median"),
    ("blobs16", "3.0"),
}
LARGE = 10000


def uniform(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(n, 128))


def blobs(n: int, d: int) -> np.ndarray:
    from sklearn.datasets import make_blobs

    return make_blobs(n, n_features=d, centers=10, random_state=0)[0]


def swiss_roll(n: int, d: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 4 * np.pi, n)
    roll = np.stack(
        [theta * np.cos(theta), theta * np.sin(theta), rng.uniform(0, 10, n)], 1
    )
    return roll @ rng.standard_normal((3, d))


_ACTIVATIONS: list[np.ndarray] = []


def digits_activations(n: int) -> np.ndarray:
    """`n` random rows of the 64 hidden ReLU units of an MLP trained on digits,
    applied to the digits and their eight one-pixel shifts."""
    if not _ACTIVATIONS:
        from scipy.ndimage import shift
        from sklearn.datasets import load_digits
        from sklearn.neural_network import MLPClassifier

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        net = MLPClassifier((64,), max_iter=400, random_state=0).fit(X, y)
        images = X.reshape(-1, 8, 8)
        moved = [images] + [
            shift(images, (0, dy, dx), order=0)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        ]
        inputs = np.concatenate(moved).reshape(-1, 64)
        hidden = inputs @ net.coefs_[0] + net.intercepts_[0]
        _ACTIVATIONS.append(np.maximum(hidden, 0.0))
    (activations,) = _ACTIVATIONS
    rows = np.random.default_rng(0).choice(activations.shape[0], n, replace=False)
    return activations[rows]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], np.ndarray]
    sigma: float | str

    @property
    def key(self) -> tuple[str, str]:
        return self.name, str(self.sigma)


def cases() -> list[Case]:
    """The benchmark set, in the order of the table."""
    out = [Case("uniform", uniform, s) for s in (10.0, "median", 2.0)]
    for d in (16, 64, 256):
        out += [
            Case(f"blobs{d}", lambda n, d=d: blobs(n, d), s)
            for s in (10.0, "median", 3.0)
        ]
    out += [Case("roll", swiss_roll, s) for s in (10.0, "median", 3.0)]
    out += [Case("digits", digits_activations, s) for s in (10.0, "median", 2.0)]
    return out


@dataclass(frozen=True)
class Row:
    case: Case
    n: int
    sigma: float
    exact: float
    approximate: float
    error_estimate: float
    seconds: float

    @property
    def relative_error(self) -> float:
        return (self.approximate - self.exact) / self.exact

    @property
    def relative_estimate(self) -> float:
        return self.error_estimate / self.exact


def _bandwidth(case: Case, X: np.ndarray) -> float:
    """The case's sigma, the median pairwise distance resolved on `X`."""
    if case.sigma != "median":
        return case.sigma
    return resolve_bandwidth(
        "median", X, caller="dse_accuracy", random_state=np.random.default_rng(0)
    )


def _table_head(columns: list[str]) -> list[str]:
    """The opening lines of a reST list-table with these column headers."""
    first, *rest = columns
    return [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        f"   * - {first}",
        *[f"     - {column}" for column in rest],
    ]


def measure(case: Case, n: int, *, exact: float | None = None, seed: int = 0) -> Row:
    """The exact and the approximate (default settings) DSE of one case."""
    X = case.make(n)
    sigma = _bandwidth(case, X)
    if exact is None:
        exact = diffusion_spectral_entropy(X, sigma=sigma, method="exact")
    start = time.perf_counter()
    estimator = DiffusionSpectralEntropy(
        sigma=sigma, method="approximate", random_state=seed
    ).fit(X)
    seconds = time.perf_counter() - start
    return Row(
        case,
        n,
        sigma,
        exact,
        estimator.entropy_,
        estimator.entropy_error_,
        seconds,
    )


def run(sizes=(2000, 6000, LARGE), cache: Path | None = None) -> list[Row]:
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    rows = []
    for n in sizes:
        for case in cases():
            if n >= LARGE and case.key not in LARGE_CASES:
                continue
            key = f"{case.name}|{case.sigma}|{n}"
            row = measure(case, n, exact=known.get(key, [None])[0])
            known[key] = [row.exact, row.sigma]
            if cache:
                cache.write_text(json.dumps(known))
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: Row) -> str:
    return (
        f"{row.case.name:9s} sigma={row.case.sigma!s:7s} N={row.n:6d} "
        f"exact={row.exact:8.4f} approx={row.approximate:8.4f} "
        f"error={100 * row.relative_error:+.3f}% "
        f"estimate={100 * row.relative_estimate:.3f}% ({row.seconds:.1f} s)"
    )


def table(rows: list[Row]) -> str:
    """The rows as the reST list-table of the user guide."""
    lines = _table_head(
        ["data", "sigma", "N", "exact DSE (bits)", "error", "``entropy_error_``"]
    )
    for row in rows:
        sigma = row.case.sigma
        shown = f"median ({row.sigma:.3g})" if sigma == "median" else f"{sigma:g}"
        lines += [
            f"   * - {row.case.name}",
            f"     - {shown}",
            f"     - {row.n:,}",
            f"     - {row.exact:.4f}",
            f"     - {100 * row.relative_error:+.3f}%",
            f"     - {100 * row.relative_estimate:.3f}%",
        ]
    worst = max(abs(row.relative_error) for row in rows)
    covered = sum(abs(row.relative_error) <= row.relative_estimate for row in rows)
    lines += [
        "",
        f"Largest error {100 * worst:.3f}%; the estimate covered the error in "
        f"{covered} of {len(rows)} cases.",
    ]
    return "\n".join(lines)


def nystrom_table(n: int, landmarks: list[int]) -> str:
    """The Nystrom operator's error and ``entropy_error_``, per case and
    landmark count, as reST: "error (estimate)", both relative to the dense
    operator's estimate."""
    lines = _table_head(
        ["data", "sigma", "dense operator (bits)"]
        + [f"{m:,} landmarks" for m in landmarks]
    )
    covered = total = 0
    for case in cases():
        X = case.make(n)
        sigma = _bandwidth(case, X)
        dense = diffusion_spectral_entropy(
            X, sigma=sigma, method="approximate", random_state=0
        )
        cells = []
        for m in landmarks:
            fit = DiffusionSpectralEntropy(
                sigma=sigma, method="approximate", n_landmarks=m, random_state=0
            ).fit(X)
            error, estimate = fit.entropy_ / dense - 1, fit.entropy_error_ / dense
            covered += abs(error) <= estimate
            total += 1
            cells.append(f"{100 * error:+.2f}% ({100 * estimate:.2f}%)")
        shown = f"median ({sigma:.3g})" if case.sigma == "median" else f"{sigma:g}"
        print(case.name, shown, f"{dense:.4f}", *cells, flush=True)
        lines += [f"   * - {case.name}", f"     - {shown}", f"     - {dense:.4f}"]
        lines += [f"     - {cell}" for cell in cells]
    lines += [
        "",
        f"``entropy_error_`` covered the error in {covered} of {total} cases.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 6000, LARGE])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--nystrom", type=int, nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.nystrom:
        print(nystrom_table(args.sizes[0], args.nystrom))
        return
    rows = run(args.sizes, args.cache)
    print()
    print(table(rows))
    assert all(math.isfinite(row.approximate) for row in rows)


if __name__ == "__main__":
    main()
