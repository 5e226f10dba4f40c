"""Framework adapters: from a model to what the estimators take.

One module per framework, each imported on first use and importing its
framework only when called:

- :mod:`infoscope.adapters.torch`: a ``torch.nn.Module``.
- :mod:`infoscope.adapters.jax`: a JAX model as ``apply_fn(params, x)`` (a
  Flax linen ``module.apply`` with its variables, a Flax NNX module, a
  neural-tangents stax ``apply_fn`` with its params, or any such function).
- :mod:`infoscope.adapters.keras`: a built Keras 3 model.

Each has the same verbs: ``activations`` (layer outputs by name, optionally
pooled over a sequence's tokens), ``dense_layers`` (the ``(name, inputs, W)``
triples of the dense layers, ``W`` as ``d_in x d_out``) and
``empirical_ntk`` (the empirical neural tangent kernel, blocked so that
memory stays bounded). One framework-neutral engine computes every NTK
(:mod:`infoscope.adapters._ntk`); the framework modules only read the model.

Inputs are one array, or a tuple, list or dict of arrays sharing the first
(sample) axis (token ids and a mask, an image and a vector), passed to the
model as positional or keyword arguments. :func:`n_samples`,
:func:`take_samples` and :func:`map_arrays` count, slice and convert such
inputs for code that holds them (a probe set).

Examples
--------
>>> import sys, infoscope.adapters
>>> infoscope.adapters.torch.__name__
'infoscope.adapters.torch'
"""

import importlib

from ._inputs import map_arrays, n_samples, take_samples

_SUBMODULES = ("torch", "jax", "keras")

__all__ = [*_SUBMODULES, "map_arrays", "n_samples", "take_samples"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
