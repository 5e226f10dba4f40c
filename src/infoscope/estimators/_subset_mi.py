"""Mutual information by subset-matched entropies: DSMI's recipe (Liao et al. 2024).

``I(Z; Y) = sum_c (n_c / N) [mean over R draws of H(random n_c-subset) - H(Z_c)]``

Comparing each class with random subsets of the same size, rather than with
all of Z, cancels the dependence of the entropy estimate on the sample size.
Shared by the diffusion (DSMI) and the classic-Shannon baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from ..backends import draw_rows, subsample_rows, take_rows, to_numpy
from ._base import (
    Interval,
    check_consistent_length,
    check_params,
    check_targets,
)

__all__ = [
    "SubsetMIOptions",
    "SubsetMutualInformation",
    "discretize_labels",
    "paired_classes",
    "subset_mutual_information",
]


@dataclass(frozen=True)
class SubsetMIOptions:
    """The recipe's parameters, shared by DSMI and the Shannon MI."""

    n_repetitions: int = 5
    n_clusters: int = 10

    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        "n_repetitions": [Interval(Integral, 1, None, closed="left")],
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
    }

    @classmethod
    def of(cls, source: Any) -> SubsetMIOptions:
        """The options named like `source`'s attributes (an estimator's params)."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})

    def validate(self, caller: str) -> SubsetMIOptions:
        check_params(
            caller,
            self.CONSTRAINTS,
            **{f.name: getattr(self, f.name) for f in fields(self)},
        )
        return self


def discretize_labels(
    y: Any, *, n_clusters: int, random_state: Any, caller: str
) -> tuple[np.ndarray, np.ndarray]:
    """The classes ``y`` defines, and each sample's class index.

    Integer, bool and string labels are classes as they are. Continuous 1-D
    targets are cut into `n_clusters` equal-width bins over their range;
    continuous multi-dimensional targets are clustered into `n_clusters` groups
    by spectral clustering (nearest-neighbour affinity, ``cluster_qr``), as
    dse-dsmi does. Labels live on the host: they only index samples.

    Returns
    -------
    classes : numpy.ndarray
        The distinct labels, bins (1 to `n_clusters`) or cluster ids, sorted.
    codes : numpy.ndarray of int
        ``classes[codes]`` is each sample's class.
    """
    labels = to_numpy(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dtype.kind == "f":
        if labels.ndim == 1:
            low, high = labels.min(), labels.max()
            span = high - low
            scaled = (labels - low) / span if span > 0 else np.zeros_like(labels)
            edges = np.linspace(0, 1, n_clusters + 1)[:-1]
            labels = np.digitize(scaled, bins=edges)
        else:
            from sklearn.cluster import SpectralClustering

            if labels.shape[0] <= n_clusters:
                raise ValueError(
                    f"{caller}: clustering continuous `y` into n_clusters="
                    f"{n_clusters} groups needs more than {n_clusters} samples, "
                    f"got {labels.shape[0]}; lower n_clusters or pass class labels."
                )
            seed = np.random.default_rng(random_state).integers(2**31 - 1)
            labels = (
                SpectralClustering(
                    n_clusters=n_clusters,
                    affinity="nearest_neighbors",
                    assign_labels="cluster_qr",
                    random_state=int(seed),
                )
                .fit(labels)
                .labels_
            )
    elif labels.ndim != 1:
        raise ValueError(
            f"{caller}: class labels `y` must be 1-D, got shape {labels.shape}; "
            "pass one label per sample."
        )
    classes, codes = np.unique(labels, return_inverse=True)
    return classes, codes.reshape(-1)


def paired_classes(
    Z: Any, Y: Any, *, caller: str, max_samples: int | None, n_clusters: int, rng
) -> tuple[Any, np.ndarray, np.ndarray]:
    """`Z` (already checked) and `Y` paired: subsampled together, `Y` as classes.

    Returns the rows of `Z` kept, the classes and each kept sample's class
    index (:func:`discretize_labels`).
    """
    y = check_targets(Y, caller=caller, name="Y")
    check_consistent_length(caller=caller, Z=Z, Y=y)
    Z, rows = subsample_rows(Z, max_samples, rng)
    if rows is not None:
        y = to_numpy(y)[rows]
    classes, codes = discretize_labels(
        y, n_clusters=n_clusters, random_state=rng, caller=caller
    )
    return Z, classes, codes


@dataclass
class SubsetMutualInformation:
    """The parts of the subset-matched estimate, one entry per class."""

    mutual_information: float
    weights: np.ndarray
    conditional_entropies: np.ndarray
    subset_entropies: np.ndarray


def subset_mutual_information(
    Z: Any,
    codes: np.ndarray,
    entropy: Callable[[Any], float],
    *,
    n_classes: int,
    n_repetitions: int,
    rng: np.random.Generator,
    entropies: Callable[[list[np.ndarray]], np.ndarray] | None = None,
) -> SubsetMutualInformation:
    """Subset-matched mutual information between the rows of `Z` and `codes`.

    For every class in turn, `n_repetitions` subsets of its size are drawn
    without replacement from all samples, in that order, from `rng`.
    ``entropy(Z_S)`` is the entropy of the rows S; `entropies`, when given,
    takes every row set at once (the class, then its subsets, class by
    class) and returns their entropies: the same draws, computed together.
    """
    n = Z.shape[0]
    counts = np.bincount(codes, minlength=n_classes)
    if entropies is not None:
        blocks = []
        for c in range(n_classes):
            blocks.append(np.flatnonzero(codes == c))
            blocks.extend(draw_rows(rng, n, counts[c]) for _ in range(n_repetitions))
        values = np.asarray(entropies(blocks), dtype=np.float64)
        values = values.reshape(n_classes, n_repetitions + 1)
        conditional, subsets = values[:, 0].copy(), values[:, 1:].copy()
    else:
        conditional = np.empty(n_classes)
        subsets = np.empty((n_classes, n_repetitions))
        for c in range(n_classes):
            conditional[c] = entropy(take_rows(Z, np.flatnonzero(codes == c)))
            for r in range(n_repetitions):
                subsets[c, r] = entropy(take_rows(Z, draw_rows(rng, n, counts[c])))
    weights = counts / n
    gain = float(np.sum(weights * (subsets.mean(axis=1) - conditional)))
    return SubsetMutualInformation(gain, weights, conditional, subsets)
