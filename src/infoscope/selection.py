"""NTK-entropy data selection: pick the training subset whose NTK has most entropy.

A subset of a pool of samples is scored by the von Neumann entropy of its
NTK (:func:`infoscope.estimators.ntk.ntk_entropy`): high when the samples'
gradients are spread over many directions with similar weight, low when a
few directions dominate. Three selectors share one interface, ``fit(X)`` on
the pool, and one fitted attribute, ``indices_``:

- :class:`MaxEntropySelector` draws random candidate subsets and keeps the one
  of largest entropy (ZnNL's ``ApproximateMaximumEntropy``, with every pool
  index drawable: ZnNL's draw never reaches the last one);
- :class:`GreedyEntropySelector` adds one sample at a time, each time the one
  that maximises the entropy of the subset so far;
- :class:`RandomSelector` draws a subset uniformly at random: the baseline.
  With the same `random_state` it draws exactly the first candidate of
  :class:`MaxEntropySelector`, so the max-entropy pick never has less
  entropy than the random pick of the same seed.

The kernel is either precomputed on the pool (``kernel="precomputed"``,
``fit(K_pool)``), or a callable ``kernel(X) -> K`` such as
``functools.partial(infoscope.adapters.torch.empirical_ntk, model)`` (its
"mean" or "sum" mode: one row per sample). Random draws are made with NumPy
from `random_state`, so the same seed picks the same candidates on every
backend. The indices are returned in the library and on the device of the
pool `X` they index; the entropies in those of the kernel matrix (the same
unless a kernel callable returns another library's arrays, as the PyTorch
adapter does for NumPy inputs).
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np

from .backends import (
    asarray,
    check_random_state,
    draw_rows,
    float_dtype,
    namespace_and_device,
    take_rows,
)
from .estimators._base import (
    RANDOM_STATE,
    InfoscopeEstimator,
    Interval,
    StrOptions,
    check_inputs,
    samples_text,
)
from .estimators.ntk import (
    ENTROPY_PARAMETERS,
    block_entropies_nats,
    check_kernel_fits,
    check_kernel_matrix,
    cosine_normalized,
    kernel_spectrum,
    n_features,
    submatrix,
)

__all__ = ["GreedyEntropySelector", "MaxEntropySelector", "RandomSelector"]

#: ``pool_kernel="auto"`` computes the pool's NTK once up to this many samples
#: (128 MiB in float64), and one NTK per candidate above.
AUTO_FULL_MAX_POOL = 4096

_SELECTOR_PARAMETERS = {
    "n_select": [Interval(Integral, 1, None, closed="left")],
    **ENTROPY_PARAMETERS,
    "random_state": RANDOM_STATE,
}
_KERNEL = {"kernel": [callable, StrOptions({"precomputed"})]}


def _draw_subsets(
    rng: np.random.Generator, n: int, k: int, count: int, disjoint: bool
) -> np.ndarray:
    """`count` subsets of size `k` of ``range(n)``, each sorted, shape (count, k).

    Each subset is drawn without replacement from all n indices;
    ``disjoint=True`` draws all of them at once, so no index is in two.
    """
    if disjoint:
        return np.sort(rng.permutation(n)[: count * k].reshape(count, k), axis=1)
    return np.stack([draw_rows(rng, n, k) for _ in range(count)])


class _Selector(InfoscopeEstimator):
    """Pool validation and subset entropies shared by the selectors."""

    _min_samples = 1

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # With a precomputed kernel, X is the (n, n) matrix of the pool; a
        # kernel callable (or none) takes X in any shape.
        precomputed = isinstance(self.kernel, str)
        tags.input_tags.pairwise = precomputed
        tags.input_tags.three_d_array = not precomputed
        return tags

    def _kernel_name(self) -> str:
        return "K" if isinstance(self.kernel, str) else "kernel(X)"

    def _pool(self, X: Any) -> tuple[Any, Any, int]:
        """(pool kernel matrix or None, checked X, pool size); checks n_select."""
        caller = type(self).__name__
        K = None
        if isinstance(self.kernel, str):  # "precomputed"
            K = X = check_kernel_matrix(X, caller=caller, name="K")
        else:
            X = check_inputs(X, caller=caller)
        n = X.shape[0]
        self.n_features_in_ = n_features(X)
        if self.n_select > n:
            raise ValueError(
                f"{caller}: n_select={self.n_select} exceeds the pool, which has "
                f"{samples_text(n)}; lower n_select or pass a larger pool."
            )
        return K, X, n

    def _pool_kernel(self, X: Any, n: int) -> Any:
        """``kernel(X)`` on the whole pool, checked to have one row per sample."""
        caller = type(self).__name__
        check_kernel_fits(X, caller)
        K = check_kernel_matrix(self.kernel(X), caller=caller, name="kernel(X)")
        self._check_rows(K, n)
        return K

    def _check_rows(self, K: Any, n: int) -> None:
        if K.shape[0] != n:
            raise ValueError(
                f"{type(self).__name__}: kernel(X) returned a {K.shape[0]} x "
                f"{K.shape[0]} matrix for {samples_text(n)}; selection needs one row "
                f"per sample: use an NTK in output_mode='mean' or 'sum'."
            )

    def _subset_spectrum(self, K: Any, X: Any, rows: np.ndarray):
        """The entropy of the subset `rows`: from the pool kernel, or computed."""
        caller = type(self).__name__
        if K is None:
            K = check_kernel_matrix(
                self.kernel(take_rows(X, rows)), caller=caller, name="kernel(X)"
            )
            self._check_rows(K, rows.size)
        else:
            K = submatrix(K, rows)
        xp, device = namespace_and_device(K)
        return kernel_spectrum(
            K,
            xp,
            device,
            base=self.base,
            normalize=self.normalize,
            caller=caller,
            name=self._kernel_name(),
            what=f"the {self._kernel_name()} of the selected samples",
        )

    def _store(self, X: Any, indices: np.ndarray, spectrum) -> None:
        self.indices_ = _like(X, indices)
        self.entropy_ = spectrum.entropy if spectrum is not None else None
        self.n_clipped_ = spectrum.n_clipped if spectrum is not None else None


def _all_undefined(caller: str, what: str) -> ValueError:
    return ValueError(
        f"{caller}: no {what} has a positive NTK eigenvalue, so no entropy is "
        f"defined: the kernel is zero (or not positive semi-definite) on the "
        f"pool. Check the model's trainable parameters and the inputs."
    )


def _like(X: Any, indices: np.ndarray) -> Any:
    """Integer `indices` in the library and on the device of the pool `X`."""
    xp, device = namespace_and_device(X)
    return xp.asarray(indices, device=device)


def _on_device(values: np.ndarray, K: Any) -> Any:
    """Host `values` in K's library, on its device, in its widest float."""
    xp, device = namespace_and_device(K)
    return asarray(values, xp=xp, device=device, dtype=float_dtype(xp, device))


class MaxEntropySelector(_Selector):
    """The random candidate subset whose NTK has the largest entropy.

    Draws `n_candidates` random subsets of `n_select` pool samples and keeps
    the one whose NTK has the largest von Neumann entropy (ZnNL's
    ``ApproximateMaximumEntropy``). Every pool index can be drawn.

    Parameters
    ----------
    n_select : int
        Samples to select.
    n_candidates : int, default=100
        Random candidate subsets to score.
    kernel : "precomputed" or callable, default="precomputed"
        "precomputed": ``fit`` takes the pool's (n, n) kernel matrix. A
        callable maps samples to their kernel matrix, one row per sample
        (e.g. ``functools.partial(empirical_ntk, model)``); `X` is passed to
        it as given (anything with the samples along its first axis).
    normalize : bool, default=False
        Cosine-normalise the kernel before taking entropies.
    base : float, default=2
        Logarithm base of the entropies (2: bits).
    disjoint : bool, default=False
        False: each candidate is drawn independently (without repeated
        samples within it), so two candidates may share samples and, rarely,
        coincide; the first candidate is the subset :class:`RandomSelector`
        draws with the same `random_state`. True: the candidates share no
        sample, as ZnNL's are (needs ``n_candidates * n_select`` pool
        samples).
    pool_kernel : {"auto", "full", "subsets"}, default="auto"
        With a kernel callable: "full" computes ``kernel(X)`` once on the
        whole pool and reads each candidate's block from it (memory n^2
        floats; each candidate's entropy then costs one small
        eigendecomposition, batched); "subsets" calls the kernel on each
        candidate (memory n_select^2, ``n_candidates`` kernel calls: cheaper
        when ``n_candidates * n_select`` is much smaller than the pool);
        "auto" is "full" for pools of at most ``AUTO_FULL_MAX_POOL`` (4096)
        samples. Both give the same entropies (up to rounding).
    random_state : int, numpy.random.Generator or None
        Seeds the candidates; the same seed draws the same ones on every
        backend.

    Attributes
    ----------
    indices_ : array of int, shape (n_select,)
        The selected pool indices, ascending, in the library and on the
        device of `X` (the pool's samples, or its kernel matrix), to index it:
        ``xp.take(X, indices_, axis=0)``.
    entropy_ : float
        The entropy of the selected subset's NTK.
    n_clipped_ : int
        Negative eigenvalues of the selected subset's NTK, clipped to 0.
    candidate_indices_ : array of int, shape (n_candidates, n_select)
        Every candidate, each ascending; like ``indices_``.
    candidate_entropies_ : array of shape (n_candidates,)
        Each candidate's entropy, in the kernel's library and on its device.
    best_candidate_ : int
        The row of ``candidate_indices_`` selected (the first of equal
        maxima).
    n_features_in_ : int
        With "precomputed", the pool size; otherwise the values per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.selection import MaxEntropySelector, RandomSelector
    >>> rng = np.random.default_rng(0)
    >>> J = rng.standard_normal((50, 8)) * rng.uniform(0.1, 3.0, size=(50, 1))
    >>> K = J @ J.T  # the pool's kernel: 50 samples
    >>> best = MaxEntropySelector(5, n_candidates=200, random_state=0).fit(K)
    >>> best.indices_.shape, best.candidate_entropies_.shape
    ((5,), (200,))
    >>> baseline = RandomSelector(5, kernel="precomputed", random_state=0).fit(K)
    >>> bool(best.entropy_ >= baseline.entropy_)
    True
    """

    _parameter_constraints = {
        **_SELECTOR_PARAMETERS,
        **_KERNEL,
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "disjoint": ["boolean"],
        "pool_kernel": [StrOptions({"auto", "full", "subsets"})],
    }

    def __init__(
        self,
        n_select,
        n_candidates=100,
        *,
        kernel="precomputed",
        normalize=False,
        base=2,
        disjoint=False,
        pool_kernel="auto",
        random_state=None,
    ):
        self.n_select = n_select
        self.n_candidates = n_candidates
        self.kernel = kernel
        self.normalize = normalize
        self.base = base
        self.disjoint = disjoint
        self.pool_kernel = pool_kernel
        self.random_state = random_state

    def fit(self, X, y=None):
        """Draw the candidates and keep the one of largest NTK entropy.

        Parameters
        ----------
        X : array of shape (n, n), or the pool's samples
            The pool's kernel matrix (``kernel="precomputed"``), or the pool
            samples the `kernel` callable takes.
        y : None
            Ignored.

        Returns
        -------
        self : MaxEntropySelector
        """
        self._validate_params()
        caller = type(self).__name__
        K, X, n = self._pool(X)
        k, count = self.n_select, self.n_candidates
        if self.disjoint and count * k > n:
            raise ValueError(
                f"{caller}: disjoint=True needs n_candidates * n_select = "
                f"{count} * {k} = {count * k} pool samples, but the pool has "
                f"{n}; lower n_candidates or n_select, or pass disjoint=False."
            )
        candidates = _draw_subsets(
            check_random_state(self.random_state), n, k, count, self.disjoint
        )
        mode = self.pool_kernel
        if mode == "auto":
            mode = "full" if n <= AUTO_FULL_MAX_POOL else "subsets"
        if K is None and mode == "full":
            K = self._pool_kernel(X, n)
        if K is not None:
            xp, device = namespace_and_device(K)
            work = cosine_normalized(K, xp, caller=caller) if self.normalize else K
            nats, _ = block_entropies_nats(work, candidates, xp, device)
            entropies = nats / math.log(self.base)
            reference = K
        else:
            spectra = [self._subset_spectrum(None, X, rows) for rows in candidates]
            entropies = np.array([s.entropy for s in spectra])
            reference = spectra[0].eigenvalues
        if np.all(np.isnan(entropies)):
            raise _all_undefined(caller, "candidate subset")
        best = int(np.nanargmax(entropies))
        self.candidate_indices_ = _like(X, candidates)
        self.candidate_entropies_ = _on_device(entropies, reference)
        self.best_candidate_ = best
        if K is None:
            spectrum = spectra[best]
        else:
            spectrum = self._subset_spectrum(K, X, candidates[best])
        self._store(X, candidates[best], spectrum)
        return self


class GreedyEntropySelector(_Selector):
    """Subset built one sample at a time, each maximising the NTK entropy so far.

    The first sample is drawn at random (every single sample has entropy 0);
    each later step adds the pool sample ``i`` that maximises the entropy of
    ``K[S + i, S + i]``, the first such in pool order when several tie.

    The pool's NTK is needed whole: with a kernel callable it is computed
    once, ``kernel(X)`` on the pool (memory n^2 floats: 128 MiB for 4096
    samples in float64). Step t decomposes the (t + 1) x (t + 1) blocks of
    all remaining samples as stacks (memory about n (t + 1)^2 floats per
    chunk, capped at 64 MiB), so the whole selection costs about
    ``n * n_select^4 / 4`` flops on top of the NTK.

    Parameters
    ----------
    n_select : int
        Samples to select.
    kernel : "precomputed" or callable, default="precomputed"
        As in :class:`MaxEntropySelector`.
    normalize : bool, default=False
        Cosine-normalise the kernel before taking entropies.
    base : float, default=2
        Logarithm base of the entropies (2: bits).
    random_state : int, numpy.random.Generator or None
        Seeds the first sample.

    Attributes
    ----------
    indices_ : array of int, shape (n_select,)
        The selected pool indices in the order they were picked (its first t
        entries are the greedy subset of size t), in the library and on the
        device of `X`.
    entropy_ : float
        The entropy of the selected subset's NTK.
    entropy_path_ : array of shape (n_select,)
        The entropy of the first t + 1 picks, for each t (0 for one sample);
        in the kernel's library and on its device.
    n_clipped_ : int
        Negative eigenvalues of the selected subset's NTK, clipped to 0.
    n_features_in_ : int
        With "precomputed", the pool size; otherwise the values per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.selection import GreedyEntropySelector
    >>> # Five copies of one gradient direction and three orthogonal ones.
    >>> J = np.zeros((8, 4))
    >>> J[:5, 0] = 1.0
    >>> J[5:, 1:] = np.eye(3)
    >>> greedy = GreedyEntropySelector(4, random_state=0).fit(J @ J.T)
    >>> sorted(greedy.indices_.tolist())  # one of the copies, and the rest
    [0, 5, 6, 7]
    >>> greedy.entropy_
    2.0
    """

    _parameter_constraints = {**_SELECTOR_PARAMETERS, **_KERNEL}

    def __init__(
        self,
        n_select,
        *,
        kernel="precomputed",
        normalize=False,
        base=2,
        random_state=None,
    ):
        self.n_select = n_select
        self.kernel = kernel
        self.normalize = normalize
        self.base = base
        self.random_state = random_state

    def fit(self, X, y=None):
        """Select `n_select` samples greedily.

        Parameters
        ----------
        X : array of shape (n, n), or the pool's samples
            The pool's kernel matrix (``kernel="precomputed"``), or the pool
            samples the `kernel` callable takes.
        y : None
            Ignored.

        Returns
        -------
        self : GreedyEntropySelector
        """
        self._validate_params()
        caller = type(self).__name__
        K, X, n = self._pool(X)
        if K is None:
            K = self._pool_kernel(X, n)
        xp, device = namespace_and_device(K)
        work = cosine_normalized(K, xp, caller=caller) if self.normalize else K
        rng = check_random_state(self.random_state)
        chosen = [int(rng.integers(n))]
        first, _ = block_entropies_nats(work, np.asarray([chosen]), xp, device)
        path = [float(first[0])]
        available = np.ones(n, dtype=bool)
        available[chosen[0]] = False
        for step in range(1, self.n_select):
            rest = np.flatnonzero(available)
            rows = np.empty((rest.size, step + 1), dtype=np.int64)
            rows[:, :step] = chosen
            rows[:, step] = rest
            nats, _ = block_entropies_nats(work, rows, xp, device)
            if np.all(np.isnan(nats)):
                raise _all_undefined(caller, f"subset of {step + 1} samples")
            best = int(np.nanargmax(nats))
            chosen.append(int(rest[best]))
            path.append(float(nats[best]))
            available[rest[best]] = False
        indices = np.asarray(chosen, dtype=np.int64)
        self.entropy_path_ = _on_device(np.asarray(path) / math.log(self.base), K)
        self._store(X, indices, self._subset_spectrum(K, X, indices))
        return self


class RandomSelector(_Selector):
    """A uniformly random subset of the pool: the baseline of the selectors.

    With the same `random_state` it draws the first candidate of
    :class:`MaxEntropySelector` (with ``disjoint=False``).

    Parameters
    ----------
    n_select : int
        Samples to select.
    kernel : None, "precomputed" or callable, default=None
        None: only draw (``entropy_`` is None, and `X` is any array with the
        samples along its first axis). "precomputed": ``fit`` takes the
        pool's kernel matrix, and ``entropy_`` is that of the selected block.
        A callable: ``entropy_`` is that of ``kernel(X[indices_])``.
    normalize : bool, default=False
        Cosine-normalise the kernel before taking the entropy.
    base : float, default=2
        Logarithm base of the entropy (2: bits).
    random_state : int, numpy.random.Generator or None
        Seeds the draw.

    Attributes
    ----------
    indices_ : array of int, shape (n_select,)
        The selected pool indices, ascending, in the library and on the
        device of `X`.
    entropy_ : float or None
        The entropy of the selected subset's NTK (None without a kernel).
    n_clipped_ : int or None
        Negative eigenvalues of the selected subset's NTK, clipped to 0.
    n_features_in_ : int
        With "precomputed", the pool size; otherwise the values per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from infoscope.selection import RandomSelector
    >>> RandomSelector(3, random_state=0).fit(np.zeros((10, 2))).indices_
    array([5, 6, 9])
    """

    _parameter_constraints = {
        **_SELECTOR_PARAMETERS,
        "kernel": [callable, StrOptions({"precomputed"}), None],
    }

    def __init__(
        self, n_select, *, kernel=None, normalize=False, base=2, random_state=None
    ):
        self.n_select = n_select
        self.kernel = kernel
        self.normalize = normalize
        self.base = base
        self.random_state = random_state

    def fit(self, X, y=None):
        """Draw `n_select` pool samples uniformly at random.

        Parameters
        ----------
        X : array of shape (n, n), or the pool's samples
            The pool's kernel matrix (``kernel="precomputed"``), or the pool
            samples.
        y : None
            Ignored.

        Returns
        -------
        self : RandomSelector
        """
        self._validate_params()
        K, X, n = self._pool(X)
        rng = check_random_state(self.random_state)
        (indices,) = _draw_subsets(rng, n, self.n_select, 1, disjoint=False)
        spectrum = None
        if self.kernel is not None:
            spectrum = self._subset_spectrum(K, X, indices)
        self._store(X, indices, spectrum)
        return self
