"""Classic Shannon baselines for the diffusion family: binned entropy and MI.

Each feature is min-max scaled to [0, 1] and cut into `n_bins` equal bins
(dse-dsmi's ``classic_shannon_entropy``); the entropy is that of the joint
cell counts. The cells are counted on the host: binning is cheap, and NumPy's
``unique(axis=0)`` counts distinct rows, which the array API cannot.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np

from ..backends import check_random_state, subsample_rows, to_numpy
from ._base import BASE, RANDOM_STATE, Interval, check_array, check_params
from ._subset_mi import (
    SubsetMIOptions,
    paired_classes,
    subset_mutual_information,
)

__all__ = ["shannon_entropy", "shannon_mutual_information"]

_PARAMETERS = {
    "n_bins": [Interval(Integral, 1, None, closed="left")],
    "base": BASE,
    "max_samples": [Interval(Integral, 1, None, closed="left"), None],
    "random_state": RANDOM_STATE,
}


def _cells(X: np.ndarray, n_bins: int) -> np.ndarray:
    """Each sample's bin index per feature, bins spanning each feature's range."""
    low, high = X.min(axis=0), X.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    # A constant feature is one bin; its scaled values are all 0.
    scaled = (X - low) / span
    return np.digitize(scaled, bins=np.linspace(0, 1, n_bins + 1)[:-1])


def _cell_entropy(cells: np.ndarray, base: float) -> float:
    counts = np.unique(cells, axis=0, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)) / math.log(base))


def _prepare(X, caller, max_samples, rng):
    X = check_array(X, caller=caller)
    return to_numpy(subsample_rows(X, max_samples, rng)[0])


def shannon_entropy(
    X: Any,
    *,
    n_bins: int = 2,
    base: float = 2,
    max_samples: int | None = None,
    random_state: Any = None,
) -> float:
    """Shannon entropy of `X` binned per feature into `n_bins` equal bins.

    Equals dse-dsmi 1.1's ``diffusion_spectral_entropy(...,
    classic_shannon_entropy=True, num_bins_per_dim=n_bins)``. It is at most
    ``log(n_samples)``: with many features almost every sample has a cell of
    its own, which is why the diffusion measures exist.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    n_bins : int, default=2
        Bins per feature, over the feature's own range.
    base : float, default=2
    max_samples : int, optional
        Use this many random rows.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import shannon_entropy
    >>> shannon_entropy(np.array([[0.0], [0.1], [0.9], [1.0]]))
    1.0
    """
    caller = "shannon_entropy"
    check_params(
        caller,
        _PARAMETERS,
        n_bins=n_bins,
        base=base,
        max_samples=max_samples,
        random_state=random_state,
    )
    X = _prepare(X, caller, max_samples, check_random_state(random_state))
    return _cell_entropy(_cells(X, n_bins), base)


def shannon_mutual_information(
    Z: Any,
    Y: Any,
    *,
    n_bins: int = 2,
    base: float = 2,
    max_samples: int | None = None,
    random_state: Any = None,
    n_repetitions: int = 5,
    n_clusters: int = 10,
) -> float:
    """Binned Shannon mutual information between `Z` and `Y`, the DSMI way.

    The classic-Shannon counterpart of
    :func:`~infoscope.diffusion_spectral_mutual_information` (dse-dsmi's
    ``classic_shannon_entropy=True``): the subset-matched recipe with
    :func:`shannon_entropy` in place of DSE, with one difference from dse-dsmi:
    the bins span the range of all of `Z`, for every subset. dse-dsmi bins each
    subset over its own range, so a class's tight cluster is spread over as
    many cells as the whole data and the "mutual information" of two
    well-separated classes comes out negative; with common bins the entropies
    are of one discretised variable and the estimate is the plug-in mutual
    information, bias-matched by subset size.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
    Y : array of shape (n_samples,) or (n_samples, n_targets)
        Classes as for DSMI.
    n_bins, base, max_samples, random_state
        As in :func:`shannon_entropy`.
    n_repetitions, n_clusters : int
        As in :func:`~infoscope.diffusion_spectral_mutual_information`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import shannon_mutual_information
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, size=400)
    >>> Z = rng.normal(size=(400, 3)) + 3.0 * y[:, None]
    >>> shannon_mutual_information(Z, y, random_state=0) > 0.3
    True
    """
    caller = "shannon_mutual_information"
    check_params(
        caller,
        _PARAMETERS,
        n_bins=n_bins,
        base=base,
        max_samples=max_samples,
        random_state=random_state,
    )
    SubsetMIOptions(n_repetitions, n_clusters).validate(caller)
    rng = check_random_state(random_state)
    Z, classes, codes = paired_classes(
        check_array(Z, caller=caller, name="Z"),
        Y,
        caller=caller,
        max_samples=max_samples,
        n_clusters=n_clusters,
        rng=rng,
    )
    Z = to_numpy(Z)
    result = subset_mutual_information(
        _cells(Z, n_bins),
        codes,
        lambda subset: _cell_entropy(subset, base),
        n_classes=classes.shape[0],
        n_repetitions=n_repetitions,
        rng=rng,
    )
    return result.mutual_information
