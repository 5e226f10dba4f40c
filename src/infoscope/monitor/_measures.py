"""What the Monitor records: the measure protocol, and infoscope's estimators in it.

Every measure the Monitor records, infoscope's estimators included, is an
object with two members:

- ``needs``: which inputs it takes at a record, a subset of
  :data:`NEEDS` (``"activations"``, ``"dense"``, ``"ntk"``, ``"labels"``,
  ``"model"``); the monitor computes each input once per record, whatever
  number of measures need it;
- ``measure(probe)``: the values, from a :class:`Probe`. It returns a mapping
  whose keys are a layer name (the value is named after the measure) or a
  ``(layer, suffix)`` pair (named ``<measure>_<suffix>``); model-level values
  go under the layer ``"model"``. A number (or 0-d array of any library) is
  a value; an array of one or more axes is stored with the record as an array.

A plain callable is measured per layer: ``fn(H)``, or ``fn(H, y)`` when it
takes two positional arguments, for each layer's activations ``H``.

A measure may also have ``resume(run, name)``: a monitor continuing an
existing run calls it once with the run and the measure's name, so that a
measure that keeps state between records (a reference, say) can take it back
from the stored records.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from ..backends import to_numpy
from ..estimators.diffusion import (
    DiffusionSpectralEntropy,
    DiffusionSpectralMutualInformation,
)
from ..estimators.geometry import RepresentationGeometry
from ..estimators.hsic import HSIC, HSICPlane
from ..estimators.ntk import NTKEntropy, NTKMutualInformation
from ..estimators.snr import NodeSNR
from ..runs._record import MODEL

__all__ = ["NEEDS", "Measure", "Probe", "as_measure", "split_results"]

#: The inputs a measure may need at a record.
NEEDS = frozenset({"activations", "dense", "ntk", "labels", "model"})


@dataclass(frozen=True)
class Probe:
    """The probe set as the model stands at one record: what measures receive.

    Attributes
    ----------
    step : int
        The record's step.
    X : array
        The probe inputs as one array, on the library and device of the
        model's outputs (a multi-input model's floating-point inputs
        flattened per sample and concatenated).
    y : array or None
        The probe labels as integer codes, likewise (None without labels).
    activations : dict of str to array
        Each measured layer's outputs on the probe set (if some measure
        needs ``"activations"``; else empty).
    dense : list of (str, array, array)
        ``(name, layer input, W as d_in x d_out)`` per dense layer (if
        needed; else empty).
    ntk : array or None
        The empirical NTK of the probe set, "mean" over outputs (if needed).
    model : object or None
        The model as given to ``record`` (for JAX, ``apply_fn`` with its
        params bound), if some measure needs ``"model"``.
    inputs : array, or tuple, list or dict of arrays, or None
        The probe inputs in the structure the model takes them, on the same
        library and device.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.monitor import Probe
    >>> probe = Probe(step=3, X=np.zeros((4, 2)), activations={"fc": np.ones((4, 5))})
    >>> probe.step, list(probe.activations), probe.ntk is None
    (3, ['fc'], True)
    """

    step: int
    X: Any
    y: Any = None
    activations: Mapping[str, Any] = field(default_factory=dict)
    dense: Sequence[tuple[str, Any, Any]] = ()
    ntk: Any = None
    model: Any = None
    inputs: Any = None


class Measure:
    """Base class of measures the Monitor records (subclassing it is optional).

    Any object with ``needs`` and ``measure(probe)`` is a measure; see the
    module's description for what ``measure`` returns.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.monitor import Measure, Probe
    >>> class MeanActivation(Measure):
    ...     needs = frozenset({"activations"})
    ...     def measure(self, probe):
    ...         return {layer: float(np.mean(H))
    ...                 for layer, H in probe.activations.items()}
    >>> probe = Probe(step=0, X=np.ones((4, 2)), activations={"fc": np.eye(4)})
    >>> MeanActivation().measure(probe)
    {'fc': 0.25}
    """

    needs: frozenset[str] = frozenset()

    def measure(self, probe: Probe) -> Mapping[Any, Any]:
        """The values at one record: layer or (layer, suffix) -> number or array."""
        raise NotImplementedError


# ---- infoscope's estimators as measures


def _hsic_measure(est: Any, probe: Probe, memo: dict) -> dict:
    key = "cka_" if est.normalized else "hsic_"
    return {
        layer: float(getattr(est.fit(H, probe.y), key))
        for layer, H in probe.activations.items()
    }


def _dse_measure(est: Any, probe: Probe, memo: dict) -> dict:
    return {layer: float(est.fit(H).entropy_) for layer, H in probe.activations.items()}


def _dsmi_measure(est: Any, probe: Probe, memo: dict) -> dict:
    return {
        layer: float(est.fit(H, probe.y).mutual_information_)
        for layer, H in probe.activations.items()
    }


def _geometry_measure(est: Any, probe: Probe, memo: dict) -> dict:
    out: dict = {}
    for layer, H in probe.activations.items():
        est.fit(H)
        out[layer, "rankme"] = float(est.rankme_)
        out[layer, "alpha_req"] = float(est.alpha_req_)
        out[layer, "stable_rank"] = float(est.stable_rank_)
    return out


def _plane_measure(est: Any, probe: Probe, memo: dict) -> dict:
    # Fitted once per probe array (the monitor keeps one per library and
    # device): the estimator caches the input and label Grams.
    if memo.get("fitted_on") is not probe.X:
        est.fit(probe.X, probe.y)
        memo["fitted_on"] = probe.X
    coordinates = to_numpy(est.transform(list(probe.activations.values())))
    out: dict = {}
    for layer, (hx, hy) in zip(probe.activations, coordinates, strict=True):
        out[layer, "x"], out[layer, "y"] = float(hx), float(hy)
    return out


def _snr_measure(est: Any, probe: Probe, memo: dict) -> dict:
    out: dict = {}
    for layer, inputs, W in probe.dense:
        est.fit(inputs, weights=W)
        out[layer, "optimality"] = est.optimality_mean_
        out[layer, "signal_factor"] = est.signal_factor_mean_
        out[layer, "sign_disagreements"] = est.sign_disagreements_
        out[layer, "nan_nodes"] = est.n_nan_nodes_
        out[layer, "weights"] = to_numpy(W)
        out[layer, "c"] = to_numpy(est.covariance_)
    return out


def _ntk_entropy_measure(est: Any, probe: Probe, memo: dict) -> dict:
    est.fit(probe.ntk)
    return {
        (MODEL, "entropy"): float(est.entropy_),
        (MODEL, "effective_entropy"): float(est.effective_entropy_),
        (MODEL, "eigenvalues"): to_numpy(est.eigenvalues_),
    }


def _ntk_mi_measure(est: Any, probe: Probe, memo: dict) -> dict:
    est.fit(probe.ntk, probe.y)
    off_diagonal = ~np.eye(len(est.classes_), dtype=bool)
    mi = to_numpy(est.mutual_information_)[off_diagonal]
    nmi = to_numpy(est.normalized_mutual_information_)[off_diagonal]
    return {MODEL: float(np.mean(mi)), (MODEL, "normalized"): float(np.mean(nmi))}


@dataclass(frozen=True)
class _Family:
    """How one estimator class is measured: its default name, inputs and values."""

    prefix: str
    needs: frozenset[str]
    measure: Callable[[Any, Probe, dict], dict]


_ACTIVATIONS = frozenset({"activations"})
_WITH_LABELS = frozenset({"activations", "labels"})
_FAMILIES: dict[type, _Family] = {
    HSICPlane: _Family("hsic", _WITH_LABELS, _plane_measure),
    HSIC: _Family("hsic", _WITH_LABELS, _hsic_measure),
    DiffusionSpectralEntropy: _Family("dse", _ACTIVATIONS, _dse_measure),
    DiffusionSpectralMutualInformation: _Family("dsmi", _WITH_LABELS, _dsmi_measure),
    RepresentationGeometry: _Family("geometry", _ACTIVATIONS, _geometry_measure),
    NodeSNR: _Family("snr", frozenset({"dense"}), _snr_measure),
    NTKEntropy: _Family("ntk", frozenset({"ntk"}), _ntk_entropy_measure),
    NTKMutualInformation: _Family(
        "ntk_mi", frozenset({"ntk", "labels"}), _ntk_mi_measure
    ),
}


class EstimatorMeasure(Measure):
    """One of infoscope's estimators in the measure protocol (a copy of it)."""

    def __init__(self, estimator: BaseEstimator):
        family = _FAMILIES[type(estimator)]
        self.estimator = clone(estimator)
        self.needs = family.needs
        self._measure = family.measure
        self._memo: dict = {}  # what a family keeps between records
        if isinstance(self.estimator, (NTKEntropy, NTKMutualInformation)):
            self.estimator.set_params(kernel="precomputed")
        # The record keeps pairwise values only; larger unions of classes
        # would cost 2**n_classes eigendecompositions for nothing.
        if isinstance(
            self.estimator, NTKMutualInformation
        ) and self.estimator.max_combination_size in (None, "auto"):
            self.estimator.set_params(max_combination_size=2)

    @property
    def default_name(self) -> str:
        est = self.estimator
        if isinstance(est, (HSIC, HSICPlane)) and est.normalized:
            return "cka"
        return _FAMILIES[type(est)].prefix

    def measure(self, probe: Probe) -> dict:
        return self._measure(self.estimator, probe, self._memo)

    def __repr__(self) -> str:
        return repr(self.estimator)


class LayerFunction(Measure):
    """A plain callable measured per layer: ``fn(H)`` or ``fn(H, y)``."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.with_labels = _positional_arguments(fn) >= 2
        self.needs = _WITH_LABELS if self.with_labels else _ACTIVATIONS

    @property
    def default_name(self) -> str | None:
        name = getattr(self.fn, "__name__", None)
        return None if name is None or name.startswith("<") else name

    def measure(self, probe: Probe) -> dict:
        if self.with_labels:
            return {
                layer: self.fn(H, probe.y) for layer, H in probe.activations.items()
            }
        return {layer: self.fn(H) for layer, H in probe.activations.items()}

    def __repr__(self) -> str:
        return f"LayerFunction({getattr(self.fn, '__name__', self.fn)!r})"


def _positional_arguments(fn: Callable) -> int:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(p.kind in kinds and p.default is p.empty for p in parameters)


def as_measure(measure: Any, name: str | None) -> tuple[str, Measure]:
    """`measure` in the protocol, with its name (given, or its default)."""
    if isinstance(measure, BaseEstimator) and type(measure) in _FAMILIES:
        wrapped: Any = EstimatorMeasure(measure)
        default = wrapped.default_name
    elif callable(getattr(measure, "measure", None)) and hasattr(measure, "needs"):
        wrapped = measure
        default = getattr(measure, "name", None) or type(measure).__name__.lower()
        unknown = set(measure.needs) - NEEDS
        if unknown:
            raise ValueError(
                f"Monitor: measure {name or default!r} needs {sorted(unknown)}, "
                f"which the monitor does not provide; needs is a subset of "
                f"{sorted(NEEDS)}."
            )
    elif callable(measure) and not isinstance(measure, BaseEstimator):
        wrapped = LayerFunction(measure)
        default = wrapped.default_name
    else:
        supported = ", ".join(sorted(cls.__name__ for cls in _FAMILIES))
        raise TypeError(
            f"Monitor: measures must be infoscope estimators ({supported}), "
            f"objects with needs and measure(probe) (infoscope.monitor.Measure), "
            f"or callables fn(H) / fn(H, y) measured per layer; got "
            f"{type(measure).__name__}. Record other values with metrics= or as "
            f"keywords of record()."
        )
    name = name if name is not None else default
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"Monitor: measure {measure!r} has no name; pass measures as a dict "
            f"of name to measure."
        )
    return name, wrapped


def split_results(
    name: str, results: Mapping[Any, Any]
) -> tuple[list[tuple[str, str, float]], dict[tuple[str, str], np.ndarray]]:
    """A measure's results as record rows ``(layer, measure, value)`` and arrays."""
    if not isinstance(results, Mapping):
        raise TypeError(
            f"Monitor: measure {name!r} returned {type(results).__name__}; it must "
            f"return a dict of layer (or (layer, suffix)) to number or array."
        )
    rows, arrays = [], {}
    for key, value in results.items():
        layer, suffix = (key, "") if isinstance(key, str) else _pair(name, key)
        measure = f"{name}_{suffix}" if suffix else name
        if not isinstance(value, numbers.Number):
            value = to_numpy(value)
        array = np.asarray(value)
        if array.ndim == 0:
            rows.append((layer, measure, _number(name, layer, array)))
        else:
            arrays[measure, layer] = array
    return rows, arrays


def _pair(name: str, key: Any) -> tuple[str, str]:
    if (
        isinstance(key, tuple)
        and len(key) == 2
        and all(isinstance(part, str) for part in key)
    ):
        return key
    raise TypeError(
        f"Monitor: measure {name!r} returned the key {key!r}; keys are a layer "
        f"name or a (layer, suffix) pair of strings."
    )


def _number(name: str, layer: str, array: np.ndarray) -> float:
    try:
        return float(array)
    except (TypeError, ValueError):
        raise TypeError(
            f"Monitor: measure {name!r} returned {array.dtype} for layer {layer!r}; "
            f"values must be numbers."
        ) from None
