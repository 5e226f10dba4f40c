"""What every benchmark shares: backends, devices, dtypes, test data and timing.

A benchmark class subclasses :class:`BackendBenchmark`, sets ``sizes`` (and,
where it needs fewer, ``backends`` or ``dtypes``), builds its inputs in
``setup_data`` and measures in ``time_*``, ``track_*`` or ``peakmem_*``
methods. Parameter combinations this machine cannot run (a library that is not
installed, no GPU, no float64 on the device) are skipped the asv way: ``setup``
raises :class:`NotImplementedError` and asv reports them as ``n/a``.

This module imports neither asv nor any framework at import time, so the test
suite can drive the benchmarks without asv, and a missing framework only
skips its own parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from infoscope.backends import supports_float64, synchronize
from infoscope.backends._testing import BACKENDS as SPECS
from infoscope.backends._testing import (
    BackendSpec,
    missing_reason,
    namespace_of,
    place,
)

__all__ = [
    "BACKENDS",
    "DTYPES",
    "SEED",
    "BackendBenchmark",
    "best_times",
    "skip_reason",
]

# The benchmark backends; JAX's x64 flag follows the dtype (see ``spec_for``).
BACKENDS = (
    "numpy",
    "array_api_strict",
    "torch-cpu",
    "torch-cuda",
    "jax-cpu",
    "jax-gpu",
    "cupy",
)
DTYPES = ("float32", "float64")
SEED = 20240601

_SPECS = {spec.id: spec for spec in SPECS}


def spec_for(backend: str, dtype: str) -> BackendSpec:
    """The test-suite backend that benchmark `backend` runs as for `dtype`.

    JAX runs float64 parameters with x64 on and float32 ones with it off
    (JAX's default), so a float32 run measures what a default JAX user gets.

    Examples
    --------
    >>> spec_for("jax-cpu", "float32").x64
    False
    """
    if backend not in BACKENDS:
        raise NotImplementedError(f"unknown backend {backend!r}")
    if backend.startswith("jax-"):
        backend = f"{backend}-{'x64' if dtype == 'float64' else 'x32'}"
    return _SPECS[backend]


def skip_reason(backend: str) -> str | None:
    """Why `backend` cannot run on this machine, or None if it can.

    Examples
    --------
    >>> skip_reason("numpy") is None
    True
    """
    return missing_reason(spec_for(backend, "float64"))


def best_times(
    *fns: Callable[[], Any], repeat: int = 5, budget: float = 1.0
) -> list[float]:
    """The shortest timed call of each of `fns`, in seconds, timed in turns.

    The functions are called in turn (``f, g, f, g, ...``) so that a slow
    spell of the machine hits all of them alike; each must synchronise its own
    result. No new round starts after `repeat` rounds, or once `budget`
    seconds have passed.

    Parameters
    ----------
    *fns : callable
        Called with no arguments.
    repeat : int, default=5
        The most rounds.
    budget : float, default=1.0
        Seconds after which no new round is started (one always runs).

    Returns
    -------
    list of float
        One time per function, in the order given.

    Examples
    --------
    >>> fast, slow = best_times(lambda: None, lambda: sum(range(10_000)))
    >>> fast < slow
    True
    """
    best = [float("inf")] * len(fns)
    start = time.perf_counter()
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best


class BackendBenchmark:
    """Base of the benchmarks parametrised over backend x size x dtype.

    Subclasses set ``sizes`` and may narrow ``backends`` and ``dtypes``; the
    asv ``params`` are built from them when the subclass is defined. They
    override :meth:`setup_data` to build inputs with :meth:`asarray` or
    :meth:`standard_normal`, and wrap every timed result in :meth:`sync`.

    Attributes
    ----------
    backends : tuple of str
        Backend names from :data:`BACKENDS`.
    sizes : tuple of int
        The problem sizes ``n``; required.
    dtypes : tuple of str
        ``"float32"`` and/or ``"float64"``.

    Set by :meth:`setup`: ``backend``, ``n``, ``dtype`` (a NumPy dtype),
    ``xp`` (the array namespace), ``device`` and ``rng`` (a NumPy generator
    seeded with :data:`SEED`, so every parameter combination, in any order,
    sees the same draws).

    Examples
    --------
    >>> class Sum(BackendBenchmark):
    ...     sizes = (10,)
    ...
    ...     def setup_data(self, n):
    ...         self.x = self.standard_normal((n,))
    ...
    ...     def time_sum(self, backend, n, dtype):
    ...         self.sync(self.xp.sum(self.x))
    >>> Sum.params[1:]
    [[10], ['float32', 'float64']]
    >>> bench = Sum()
    >>> bench.setup("numpy", 10, "float32")
    >>> bench.x.dtype
    dtype('float32')
    """

    backends: tuple[str, ...] = BACKENDS
    sizes: tuple[int, ...] = ()
    dtypes: tuple[str, ...] = DTYPES
    param_names: ClassVar[list[str]] = ["backend", "n", "dtype"]
    params: ClassVar[list[list[Any]]] = [[], [], []]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.sizes:
            raise TypeError(f"{cls.__name__} must set `sizes`")
        unknown = set(cls.backends) - set(BACKENDS)
        if unknown:
            raise TypeError(f"{cls.__name__} names unknown backends {sorted(unknown)}")
        cls.params = [list(cls.backends), list(cls.sizes), list(cls.dtypes)]

    def setup(self, backend: str, n: int, dtype: str) -> None:
        """Prepare one parameter combination, or skip it.

        Raises
        ------
        NotImplementedError
            If the backend's library or device is missing here, or its device
            has no `dtype`: asv then reports the combination as ``n/a``.
        """
        spec = spec_for(backend, dtype)
        reason = missing_reason(spec)
        if reason is not None:
            raise NotImplementedError(reason)
        self._jax_x64_before: bool | None = None
        if spec.x64 is not None:
            # A process-wide JAX flag: teardown restores it.
            import jax

            self._jax_x64_before = bool(jax.config.jax_enable_x64)
            jax.config.update("jax_enable_x64", spec.x64)
        self.spec = spec
        self.backend = backend
        self.n = n
        self.dtype = np.dtype(dtype)
        self.xp, self.device = namespace_of(spec)
        if self.dtype == np.float64 and not supports_float64(self.xp, self.device):
            self.teardown(backend, n, dtype)
            raise NotImplementedError(f"{backend} has no float64 on {self.device}")
        self.rng = np.random.default_rng(SEED)
        try:
            self.setup_data(n)
        except BaseException:
            self.teardown(backend, n, dtype)
            raise

    def teardown(self, backend: str, n: int, dtype: str) -> None:
        """Undo what :meth:`setup` changed outside this object (JAX's x64 flag)."""
        before = getattr(self, "_jax_x64_before", None)
        if before is not None:
            import jax

            jax.config.update("jax_enable_x64", before)
            self._jax_x64_before = None

    def setup_data(self, n: int) -> None:
        """Build the inputs of size `n`; subclasses override it."""

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """NumPy data `a` on this backend and device, in `dtype` (default: the
        benchmark's dtype)."""
        a = np.asarray(a, dtype=self.dtype if dtype is None else dtype)
        return self.sync(place(self.spec, a))

    def standard_normal(self, shape: tuple[int, ...]) -> Any:
        """Standard normal draws of `shape` from :attr:`rng`, on the backend."""
        return self.asarray(self.rng.standard_normal(shape))

    @staticmethod
    def sync(x: Any) -> Any:
        """`x` once the computation producing it has finished.

        GPU libraries and JAX return before the work is done; a timed method
        that does not wait on its result measures only the dispatch.
        """
        return synchronize(x)
