"""What each recorded measure is, in words, and its unit: for tables and plots."""

from __future__ import annotations

__all__ = ["describe_measure"]

# The names the Monitor gives infoscope's estimators by default, and the
# values the demo and the callbacks record.
_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "hsic_x": ("HSIC(H, X): dependence of the layer on the inputs", "HSIC"),
    "hsic_y": ("HSIC(H, Y): dependence of the layer on the labels", "HSIC"),
    "cka_x": ("CKA(H, X): similarity of the layer to the inputs", "CKA, 0 to 1"),
    "cka_y": ("CKA(H, Y): similarity of the layer to the labels", "CKA, 0 to 1"),
    "hsic": ("HSIC of the layer and the labels", "HSIC"),
    "cka": ("CKA of the layer and the labels", "CKA, 0 to 1"),
    "dse": ("Diffusion spectral entropy of the layer", "bits"),
    "dsmi": ("Diffusion spectral mutual information with the labels", "bits"),
    "snr_optimality": (
        "Node SNR optimality, mean over the layer's nodes",
        "cosine, -1 to 1",
    ),
    "snr_signal_factor": ("Node SNR signal factor, mean over the nodes", "ratio"),
    "snr_sign_disagreements": (
        "Weights whose sign disagrees with their input-output covariance",
        "count",
    ),
    "snr_nan_nodes": ("Dead nodes (all-zero weights)", "count"),
    "ntk_entropy": ("NTK von Neumann entropy", "bits"),
    "ntk_effective_entropy": (
        "NTK entropy over its maximum, log(n)",
        "fraction, 0 to 1",
    ),
    "ntk_mi": ("NTK mutual information between classes, mean over pairs", "bits"),
    "ntk_mi_normalized": (
        "NTK class mutual information, normalised",
        "fraction, 0 to 1",
    ),
    "geometry_rankme": ("RankMe: effective rank of the layer", "rank"),
    "geometry_alpha_req": ("alpha-ReQ: decay of the layer's eigenspectrum", "exponent"),
    "geometry_stable_rank": ("Stable rank of the layer", "rank"),
    "cka_to_initial": (
        "Linear CKA of each layer with itself at the start",
        "CKA, 0 to 1",
    ),
    "cka_to_previous": (
        "Linear CKA of each layer with its previous record",
        "CKA, 0 to 1",
    ),
    "cka_to_reference": (
        "Linear CKA of each layer with the reference model",
        "CKA, 0 to 1",
    ),
    "loss": ("Loss", "loss"),
    "train_loss": ("Training loss (cross-entropy)", "nats"),
    "val_loss": ("Validation loss", "loss"),
    "accuracy": ("Accuracy", "fraction"),
    "train_accuracy": ("Training accuracy", "fraction"),
    "test_accuracy": ("Test accuracy", "fraction"),
    "val_accuracy": ("Validation accuracy", "fraction"),
}


def describe_measure(name: str) -> tuple[str, str]:
    """``(title, unit)`` of a recorded measure; ``(name, "")`` for unknown names.

    Examples
    --------
    >>> from infoscope.runs import describe_measure
    >>> describe_measure("dsmi")
    ('Diffusion spectral mutual information with the labels', 'bits')
    >>> describe_measure("my_measure")
    ('my_measure', '')
    """
    return _DESCRIPTIONS.get(name, (name, ""))
