"""infoscope: information measures of neural-network representations.

Estimators and functions accept NumPy, CuPy, PyTorch and JAX arrays and compute
on the array's own library and device. ``import infoscope`` imports no
deep-learning framework and not even scikit-learn: subpackages and public
names load on first use (PEP 562).

Examples
--------
>>> import infoscope
>>> infoscope.backends.namespace_name(infoscope.backends.namespace_and_device([1.0])[0])
'numpy'
"""

import importlib

__version__ = "0.1.0.dev0"

_SUBMODULES = (
    "adapters",
    "backends",
    "estimators",
    "selection",
    "monitor",
    "runs",
    "plotting",
    "callbacks",
)

# Public name -> the module (relative to this package) that defines it. Each
# family adds its functions and estimators here; nothing is imported until a
# name is first used.
_EXPORTS: dict[str, str] = {
    "diffusion_spectral_entropy": ".estimators.diffusion",
    "diffusion_spectral_mutual_information": ".estimators.diffusion",
    "adjacency_spectral_entropy": ".estimators.diffusion",
    "DiffusionSpectralEntropy": ".estimators.diffusion",
    "DiffusionSpectralMutualInformation": ".estimators.diffusion",
    "shannon_entropy": ".estimators.shannon",
    "shannon_mutual_information": ".estimators.shannon",
    "hsic": ".estimators.hsic",
    "cka": ".estimators.cka",
    "hsic_test": ".estimators.independence",
    "HSIC": ".estimators.hsic",
    "HSICPlane": ".estimators.hsic_plane",
    "ntk_entropy": ".estimators.ntk",
    "ntk_mutual_information": ".estimators.ntk",
    "NTKEntropy": ".estimators.ntk",
    "NTKMutualInformation": ".estimators.ntk",
    "node_snr": ".estimators.snr",
    "node_snr_table": ".estimators.snr",
    "NodeSNR": ".estimators.snr",
    "similarity_matrix": ".estimators.similarity",
    "SimilarityMatrix": ".estimators.similarity",
    "similarity_test": ".estimators.permutation",
    "mutual_knn_alignment": ".estimators.neighbors",
    "cknna": ".estimators.neighbors",
    "rankme": ".estimators.geometry",
    "alpha_req": ".estimators.geometry",
    "stable_rank": ".estimators.geometry",
    "RepresentationGeometry": ".estimators.geometry",
    "Monitor": ".monitor",
    "load_run": ".runs",
}

__all__ = ["__version__", *_SUBMODULES, *_EXPORTS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
