"""A minimal estimator on the shared base, so the contract is tested on its own."""

import math
from numbers import Real

from sklearn.base import TransformerMixin

from infoscope.backends import eigvalsh, namespace_and_device
from infoscope.estimators._base import InfoscopeEstimator, Interval, StrOptions


class CovarianceSpectrumEntropy(TransformerMixin, InfoscopeEstimator):
    """Test-only: entropy of the normalised covariance spectrum of X; transform centres.

    Parameters
    ----------
    base : float, default=2
    precision : {"float64", "input"}, default="float64"
    """

    _parameter_constraints = {
        "base": [Interval(Real, 0, None, closed="neither")],
        "precision": [StrOptions({"float64", "input"})],
    }

    def __init__(self, base=2.0, precision="float64"):
        self.base = base
        self.precision = precision

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None):
        self._validate_params()
        X = self._validate_data(X, reset=True)
        xp, _ = namespace_and_device(X)
        self.mean_ = xp.mean(X, axis=0)
        Xc = X - self.mean_
        lam = eigvalsh(Xc.T @ Xc, precision=self.precision)
        self.n_clipped_ = int(xp.sum(xp.astype(lam < 0, xp.int32)))
        lam = xp.clip(lam, min=0.0)
        total = xp.sum(lam)
        p = lam / total if float(total) > 0 else lam
        nz = p[p > 0]
        self.entropy_ = float(-xp.sum(nz * xp.log(nz))) / math.log(self.base)
        self.eigenvalues_ = lam
        return self

    def transform(self, X):
        X = self._validate_data(X, reset=False)
        return X - self.mean_
