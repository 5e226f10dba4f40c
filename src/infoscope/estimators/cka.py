"""Centered Kernel Alignment (Kornblith et al. 2019), the normalised HSIC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hsic_statistic import HSICOptions, check_pair, hsic_statistics

__all__ = ["cka"]


def cka(
    X: Any,
    Y: Any,
    *,
    kernel_x: str | Callable = "gaussian",
    kernel_y: str | Callable | None = None,
    sigma_x: float | str = "median",
    sigma_y: float | str | None = None,
    estimator: str = "biased",
    method: str = "exact",
    approximation: str = "rff",
    n_components: int = 1024,
    batch_size: int | None = None,
    random_state: Any = None,
) -> float:
    """Centered Kernel Alignment: ``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))``.

    Kornblith et al. 2019. In [0, 1] for the biased estimate, invariant to
    isotropic scaling of either variable and, with linear kernels, to
    orthogonal transforms: representations of different widths compare.

    Parameters
    ----------
    X, Y, kernel_x, kernel_y, sigma_x, sigma_y, estimator, method, \
approximation, n_components, batch_size, random_state
        As in :func:`hsic`.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When HSIC(X, X) or HSIC(Y, Y) is not positive (a constant variable).

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope import cka
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> round(cka(X, 3 * X @ Q, kernel_x="linear"), 6)
    1.0
    """
    caller = "cka"
    options = HSICOptions(
        kernel_x=kernel_x,
        kernel_y=kernel_y,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        estimator=estimator,
        method=method,
        approximation=approximation,
        n_components=n_components,
        batch_size=batch_size,
        random_state=random_state,
    ).validate(caller)
    X, Y = check_pair(X, Y, caller=caller, estimator=estimator)
    return hsic_statistics(X, Y, options, normalized=True, caller=caller).cka(caller)
