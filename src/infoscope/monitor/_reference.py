"""Similarity of each layer to itself at a reference: :class:`ReferenceSimilarity`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..backends import to_numpy
from ..estimators.similarity import MEASURES, similarity_matrix
from ._measures import Measure, Probe

__all__ = ["ReferenceSimilarity"]

_SHORT = {
    "linear_cka": "cka",
    "rbf_cka": "rbf_cka",
    "mutual_knn": "mknn",
    "cknna": "cknna",
}


class ReferenceSimilarity(Measure):
    """Each layer's similarity to itself at a reference, recorded per layer.

    A measure for :class:`~infoscope.Monitor`: at each record, entry
    ``(l, l)`` of :func:`~infoscope.similarity_matrix` between the layers'
    activations now and at the reference, on the probe set.

    Parameters
    ----------
    reference : {"initial", "previous"} or mapping of str to array, default="initial"
        ``"initial"``: the first record of the run (the untrained model when
        the loop records before training); ``"previous"``: the record before
        this one (nothing is recorded at the first one); a mapping: the
        activations of a given checkpoint on the same probe set, layer name
        to array, such as ``infoscope.adapters.torch.activations(checkpoint,
        X, layers)``.
    measure : {"linear_cka", "rbf_cka", "mutual_knn", "cknna"}, default="linear_cka"
        As in :func:`~infoscope.similarity_matrix`.
    debiased : bool, default=False
        Song et al.'s unbiased HSIC in the CKA measures.
    n_neighbors : int, default=10
        k of the neighbour measures.
    matrix : bool, default=False
        Also store the whole L x L matrix (row: a layer now, column: a layer
        at the reference) as the record's array ``<name>_matrix``.

    Notes
    -----
    The monitor names the values ``<short>_to_<reference>`` (``cka_to_initial``,
    ``cka_to_previous``, ``cka_to_reference``) unless given a name. With
    ``"initial"`` the reference activations are stored with the first record
    (arrays ``<name>_reference``), so that a monitor continuing the run
    compares with the same initial model.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from infoscope import Monitor
    >>> from infoscope.monitor import ReferenceSimilarity
    >>> X = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
    ...                           torch.nn.Linear(16, 2))
    >>> monitor = Monitor(ReferenceSimilarity(), X, layers=["1", "2"],
    ...                   progress=False)
    >>> round(monitor.record(0, net).value("cka_to_initial", "2"), 6)
    1.0
    >>> with torch.no_grad():
    ...     _ = net[0].weight.mul_(-2.0).add_(0.3)
    >>> monitor.record(1, net).value("cka_to_initial", "2") < 1.0
    True
    """

    needs = frozenset({"activations"})

    def __init__(
        self,
        reference: str | Mapping[str, Any] = "initial",
        *,
        measure: str = "linear_cka",
        debiased: bool = False,
        n_neighbors: int = 10,
        matrix: bool = False,
    ):
        if isinstance(reference, str):
            if reference not in ("initial", "previous"):
                raise ValueError(
                    f"ReferenceSimilarity: reference={reference!r} is not one of "
                    f"'initial', 'previous' or a mapping of layer name to "
                    f"activations."
                )
            self._activations: dict[str, Any] | None = None
        elif isinstance(reference, Mapping):
            self._activations = dict(reference)
        else:
            raise TypeError(
                f"ReferenceSimilarity: reference must be 'initial', 'previous' or "
                f"a mapping of layer name to activations; got "
                f"{type(reference).__name__}."
            )
        if measure not in MEASURES:
            raise ValueError(
                f"ReferenceSimilarity: measure={measure!r} is not one of {MEASURES}."
            )
        self.reference = reference if isinstance(reference, str) else "reference"
        self.measure_name = measure
        self.debiased = debiased
        self.n_neighbors = n_neighbors
        self.matrix = matrix

    @property
    def name(self) -> str:
        """The monitor's default name for the values."""
        return f"{_SHORT[self.measure_name]}_to_{self.reference}"

    def resume(self, run: Any, name: str) -> None:
        """Take the initial activations back from a run this monitor continues."""
        if self.reference == "previous":
            return  # the next record starts a new chain
        if self.reference == "initial" and self._activations is None:
            stored = run.arrays(f"{name}_reference")
            if stored:
                self._activations = dict(stored[min(stored)])
            elif run.steps:
                warnings.warn(
                    f"ReferenceSimilarity {name!r}: the run being continued holds "
                    f"no initial activations; this monitor's first record becomes "
                    f"the reference.",
                    UserWarning,
                    stacklevel=4,
                )

    def measure(self, probe: Probe) -> dict:
        current = dict(probe.activations)
        stored: dict = {}
        if self._activations is None:
            self._activations = current
            if self.reference == "previous":
                return {}
            stored = {(layer, "reference"): to_numpy(H) for layer, H in current.items()}
        reference = self._activations
        if self.reference == "previous":
            self._activations = current
        layers = [layer for layer in current if layer in reference]
        if not layers:
            raise ValueError(
                f"ReferenceSimilarity: none of the layers {list(current)} is in the "
                f"reference, which has {list(reference)}."
            )
        S = similarity_matrix(
            [current[layer] for layer in layers],
            [_like(reference[layer], current[layer]) for layer in layers],
            measure=self.measure_name,
            debiased=self.debiased,
            n_neighbors=self.n_neighbors,
        )
        diagonal = to_numpy(S).diagonal()
        out: dict = {layer: float(v) for layer, v in zip(layers, diagonal, strict=True)}
        out.update(stored)
        if self.matrix:
            out["model", "matrix"] = to_numpy(S)
        return out

    def __repr__(self) -> str:
        return (
            f"ReferenceSimilarity({self.reference!r}, measure={self.measure_name!r}, "
            f"debiased={self.debiased!r})"
        )


def _like(reference: Any, current: Any) -> Any:
    """`reference` in `current`'s library and device (a stored NumPy copy, say)."""
    from ..backends import asarray, namespace_and_device

    xp, device = namespace_and_device(current)
    return asarray(reference, xp=xp, device=device)
