"""Framework adapters: from a model to what the estimators take.

One module per framework, each imported on first use and importing its
framework only when called:

- :mod:`infoscope.adapters.torch`: a ``torch.nn.Module``.
- :mod:`infoscope.adapters.jax`: a JAX model as ``apply_fn(params, x)`` (a
  Flax ``module.apply`` with its variables, a neural-tangents stax
  ``apply_fn`` with its params, or any such function).
- :mod:`infoscope.adapters.keras`: a built Keras 3 model.

Each has the same verbs: ``activations`` (layer outputs by name),
``dense_layers`` (the ``(name, inputs, W)`` triples of the dense layers, ``W``
as ``d_in x d_out``) and ``empirical_ntk`` (the empirical neural tangent
kernel, blocked so that memory stays bounded, with the dense and convolutional
layers contracted in their structured form).

Examples
--------
>>> import sys, infoscope.adapters
>>> infoscope.adapters.torch.__name__
'infoscope.adapters.torch'
"""

import importlib

_SUBMODULES = ("torch", "jax", "keras")

__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
