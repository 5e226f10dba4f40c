"""NTK-entropy data selection on scikit-learn's digits.

Choose 30 training points from a pool of digits by three rules, train the
same small network on each choice, and compare:

- **max-entropy**: :class:`infoscope.selection.MaxEntropySelector`, the random
  candidate subset whose NTK has the largest von Neumann entropy (ZnNL's
  ApproximateMaximumEntropy);
- **greedy**: :class:`infoscope.selection.GreedyEntropySelector`, one point at
  a time, each maximising the entropy of the subset so far;
- **random**: :class:`infoscope.selection.RandomSelector`, the baseline. With
  the same seed it draws the max-entropy selector's first candidate.

For every seed the network (64-64-10, tanh) is initialised once; the NTK of
the whole training pool at initialisation ("mean" output mode, from
:func:`infoscope.adapters.torch.empirical_ntk`) drives the three selections,
and a copy of the initial network is trained on each selected set
(full-batch Adam, cross-entropy). The table reports, averaged over seeds, the
NTK entropy of the selected set (bits; at most log2(30) = 4.91) before and
after training, the test accuracy on held-out digits (and its paired
difference with the random baseline of the same seed), and how many of the 10
classes the 30 points cover, and how atypical they are: their mean Euclidean
distance to the mean image of their class in the pool.

Run the full study (20 seeds; about 20 s on 2 CPU cores)::

    python examples/ntk_data_selection.py

``--seeds``, ``--epochs``, ``--n-candidates`` and ``--format rst`` change it;
:func:`run_study` returns the per-seed rows.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

METHODS = ("max-entropy", "greedy", "random")


class Row(NamedTuple):
    """One method on one seed."""

    method: str
    seed: int
    entropy_before: float  # NTK entropy (bits) of the selected set at initialisation
    entropy_after: float  # ... after training on it
    test_accuracy: float
    classes_covered: int
    atypicality: float  # mean distance of the points to their class's mean image


def load_digits_split(test_size: float = 0.4, split_seed: int = 0):
    """Digits scaled to [0, 1], split once into a training pool and a test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / 16.0
    return train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=split_seed
    )


def class_mean_distance(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each sample's Euclidean distance to the mean image of its class."""
    means = {c: X[y == c].mean(axis=0) for c in np.unique(y)}
    return np.linalg.norm(X - np.stack([means[c] for c in y]), axis=1)


def make_model(seed: int, hidden: int = 64):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)
    )


def train(model, X, y, *, epochs: int, lr: float) -> None:
    """Full-batch Adam on cross-entropy."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    model.eval()


def accuracy(model, X, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).double().mean())


def run_study(
    n_select: int = 30,
    seeds: Iterable[int] = range(20),
    epochs: int = 300,
    n_candidates: int = 500,
    lr: float = 1e-2,
    hidden: int = 64,
    pool_size: int | None = None,
    threads: int | None = 1,
) -> list[Row]:
    """Select, train and evaluate; one :class:`Row` per method and seed.

    Parameters
    ----------
    n_select : int
        Training points chosen from the pool.
    seeds : iterable of int
        Each seed fixes the network's initialisation and the selectors'
        random draws (the same seed for all three).
    epochs : int
        Full-batch training steps.
    n_candidates : int
        Candidate subsets scored by the max-entropy selector.
    lr : float
        Adam's learning rate.
    hidden : int
        Width of the hidden layer.
    pool_size : int, optional
        Use only the first `pool_size` training samples as the pool (for a
        quick run); by default all of them (1078).
    threads : int, optional
        PyTorch's intra-op threads during the study (restored after). The
        matrices are small: one thread is as fast as two on an idle machine,
        and on a busy one several threads that wait for each other can make
        the study many times slower. None leaves PyTorch's setting.
    """
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _study(n_select, seeds, epochs, n_candidates, lr, hidden, pool_size)
    finally:
        torch.set_num_threads(previous)


def _study(n_select, seeds, epochs, n_candidates, lr, hidden, pool_size):
    import torch

    from infoscope.adapters.torch import empirical_ntk
    from infoscope.estimators.ntk import ntk_entropy
    from infoscope.selection import (
        GreedyEntropySelector,
        MaxEntropySelector,
        RandomSelector,
    )

    X_pool, X_test, y_pool, y_test = load_digits_split()
    if pool_size is not None:
        X_pool, y_pool = X_pool[:pool_size], y_pool[:pool_size]
    distance = class_mean_distance(X_pool, y_pool)
    X_pool, X_test = torch.from_numpy(X_pool), torch.from_numpy(X_test)
    y_pool, y_test = torch.from_numpy(y_pool), torch.from_numpy(y_test)

    rows = []
    for seed in seeds:
        initial = make_model(seed, hidden)
        K_pool = empirical_ntk(initial, X_pool)  # "mean" mode, pool x pool
        selectors = {
            "max-entropy": MaxEntropySelector(
                n_select, n_candidates, random_state=seed
            ),
            "greedy": GreedyEntropySelector(n_select, random_state=seed),
            "random": RandomSelector(n_select, kernel="precomputed", random_state=seed),
        }
        for method in METHODS:
            selector = selectors[method].fit(K_pool)
            rows_idx = selector.indices_
            X_sel, y_sel = X_pool[rows_idx], y_pool[rows_idx]
            model = copy.deepcopy(initial)
            train(model, X_sel, y_sel, epochs=epochs, lr=lr)
            rows.append(
                Row(
                    method=method,
                    seed=int(seed),
                    entropy_before=selector.entropy_,
                    entropy_after=ntk_entropy(empirical_ntk(model, X_sel)),
                    test_accuracy=accuracy(model, X_test, y_test),
                    classes_covered=int(torch.unique(y_sel).numel()),
                    atypicality=float(distance[rows_idx.numpy()].mean()),
                )
            )
    return rows


COLUMNS = (
    "method",
    "NTK entropy before (bits)",
    "NTK entropy after (bits)",
    "test accuracy",
    "accuracy - random",
    "classes covered",
    "distance to class mean",
)


def summarize(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """One line per method: mean ± standard deviation over the seeds.

    "accuracy - random" is the paired difference with the random baseline of
    the same seed (same initial network), mean ± its standard error.
    """

    def stat(values, digits, error=False):
        values = np.asarray(values, dtype=np.float64)
        spread = values.std(ddof=1) if values.size > 1 else 0.0
        if error:
            spread /= math.sqrt(values.size)
        return f"{values.mean():.{digits}f} ± {spread:.{digits}f}"

    baseline = {row.seed: row.test_accuracy for row in rows if row.method == "random"}
    table = []
    for method in METHODS:
        mine = [row for row in rows if row.method == method]
        if not mine:
            continue
        paired = [
            r.test_accuracy - baseline[r.seed] for r in mine if r.seed in baseline
        ]
        table.append(
            (
                method,
                stat([r.entropy_before for r in mine], 3),
                stat([r.entropy_after for r in mine], 3),
                stat([r.test_accuracy for r in mine], 3),
                stat(paired, 3, error=True) if paired else "n/a",
                stat([r.classes_covered for r in mine], 1),
                stat([r.atypicality for r in mine], 2),
            )
        )
    return table


def format_table(table: Sequence[tuple[str, ...]], fmt: str = "markdown") -> str:
    """The summary as a Markdown or reStructuredText (grid) table."""
    lines = [COLUMNS, *table]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def cells(line, pad=" "):
        return [
            cell.ljust(width, pad) for cell, width in zip(line, widths, strict=True)
        ]

    if fmt == "markdown":
        out = ["| " + " | ".join(cells(COLUMNS)) + " |"]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += ["| " + " | ".join(cells(line)) + " |" for line in table]
        return "\n".join(out)
    if fmt == "rst":
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        header_rule = "+" + "+".join("=" * (w + 2) for w in widths) + "+"
        out = [rule, "| " + " | ".join(cells(COLUMNS)) + " |", header_rule]
        for line in table:
            out += ["| " + " | ".join(cells(line)) + " |", rule]
        return "\n".join(out)
    raise ValueError(f"fmt must be 'markdown' or 'rst', got {fmt!r}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--n-select", type=int, default=30)
    parser.add_argument("--n-candidates", type=int, default=500)
    parser.add_argument("--format", choices=("markdown", "rst"), default="markdown")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run_study(
        n_select=args.n_select,
        seeds=range(args.seeds),
        epochs=args.epochs,
        n_candidates=args.n_candidates,
    )
    elapsed = time.perf_counter() - start
    print(format_table(summarize(rows), args.format))
    X_pool, _, y_pool, _ = load_digits_split()
    print(
        f"\n{args.seeds} seeds, {args.n_select} points, {args.epochs} epochs, "
        f"{args.n_candidates} candidates; maximum entropy "
        f"log2({args.n_select}) = {math.log2(args.n_select):.2f} bits; mean "
        f"distance to class mean over the pool "
        f"{class_mean_distance(X_pool, y_pool).mean():.2f}; {elapsed:.0f} s"
    )


if __name__ == "__main__":
    main()
