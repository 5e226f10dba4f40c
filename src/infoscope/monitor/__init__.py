"""Recording information measures across training: :class:`Monitor`.

A monitor holds measures and a fixed probe set. At each due step
``monitor.record(step, model)`` pulls what the measures need out of the model
through :mod:`infoscope.adapters` (each layer's activations, the dense layers,
the empirical NTK, once per record), computes every measure, appends one
:class:`~infoscope.runs.Record` to its :class:`~infoscope.runs.Run` (memory,
or a crash-safe SQLite file, one transaction per record), sends it to the
sinks and returns it.

A measure is one of infoscope's estimators, any object of the measure
protocol (:class:`Measure`: ``needs`` and ``measure(probe)``, receiving a
:class:`Probe`), or a callable measured per layer.

Examples
--------
>>> from infoscope.monitor import Measure
>>> class Width(Measure):
...     needs = frozenset({"activations"})
...     def measure(self, probe):
...         return {layer: H.shape[1] for layer, H in probe.activations.items()}
"""

from ._measures import NEEDS as NEEDS  # the inputs a measure may need
from ._measures import Measure, Probe
from ._monitor import Monitor
from ._reference import ReferenceSimilarity

__all__ = ["Measure", "Monitor", "Probe", "ReferenceSimilarity"]

# Public under this module's name: in tracebacks, reprs and pickles.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
