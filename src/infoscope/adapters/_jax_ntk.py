"""The empirical NTK of a JAX model: its features for the shared engine.

:class:`JaxNtk` reads the program of a model (:mod:`._jax_model`), plans
its terms with :mod:`._ntk` and gives the engine, per block of samples, the
features computed by one compiled function; what it reads and compiles is
kept for later calls (:data:`_ANALYSES`, :data:`_COMPILED`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._jax_model import abstract_inputs, dense_taps, import_jax, leaf_place, trace
from ._jaxpr import Tap, eqn_at, evaluate, find_taps
from ._ntk import Layer, Term, mixes_samples, plan_terms, warn_mixing
from ._ntk import compute as compute_ntk
from ._ntk import contract as contract_terms


def _signature(tree: Any) -> tuple:
    """A pytree's structure, shapes and dtypes (what a trace depends on)."""
    jax = import_jax()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((np.shape(a), str(getattr(a, "dtype", ""))) for a in leaves))


class JaxNtk:
    """One empirical NTK computation (see :func:`empirical_ntk`).

    Reads the program (its dense layers, its parameters) and gives the
    engine the features of each block, computed by one compiled function of
    the block; :mod:`infoscope.adapters._ntk` does the rest. What it reads
    depends only on the function, the shapes and the mode, so it is kept
    (:data:`_ANALYSES`) and a training loop's later calls trace nothing.
    """

    def __init__(self, caller, model, X1, X2, mode, batch_size):
        jax = import_jax()
        self.jax = jax
        self.caller = caller
        self.model = model
        self.X = (X1, X2)
        self.mode = mode
        self.batch_size = batch_size
        key = (
            model.key,
            _signature(model.trainable),
            _signature(model.fixed),
            X1.sample_signature(),
            tuple(str(a.dtype) for a in X1.arrays),
            mode,
            bool(jax.config.jax_enable_x64),
        )
        try:
            cached = _ANALYSES.get(key)
        except TypeError:  # an unhashable part: read it again each time
            key, cached = None, None
        if cached is None:
            cached = self._read()
            if key is not None:
                _ANALYSES[key] = cached
                while len(_ANALYSES) > 16:
                    _ANALYSES.pop(next(iter(_ANALYSES)))
        (self.prog, self.k, self.dtype, self.itemsize, self.follow, self.taps) = cached[
            :6
        ]
        self.terms, mixes, self.program_text = cached[6:]
        if mixes:
            warn_mixing(self.caller, stacklevel=3)
        self.leaves = jax.tree_util.tree_leaves(model.trainable)
        self.fixed = jax.tree_util.tree_leaves(model.fixed)
        self._fns: dict = {}

    def _read(self) -> tuple:
        """The program, its outputs, its dense layers and the plan."""
        caller, model, (X1, _) = self.caller, self.model, self.X
        self.prog = trace(caller, model, X1, abstract_inputs(X1, 1), "X1")
        out = self.prog.closed.jaxpr.outvars[0].aval
        self.k = 1 if self.mode == "sum" else int(np.prod(out.shape[1:], dtype=int))
        self.dtype = out.dtype
        self.itemsize = np.dtype(out.dtype).itemsize
        mixes = self._mixes_samples()
        taps, other, follow = dense_taps(model, X1, caller, "X1")
        self.follow = follow
        taps = [t for t in taps if t.leaf not in other]
        mine = find_taps(self.prog.closed, self.prog.n_leaves)
        if [t.path for t in mine[0]] != [t.path for t in taps] or mine[2] != follow:
            taps = []  # the program differs with the batch size: no shortcut
        self.taps: dict[int, list[Tap]] = {}
        for tap in taps:
            self.taps.setdefault(tap.leaf, []).append(tap)
        terms = self._plan()
        return (
            self.prog,
            self.k,
            self.dtype,
            self.itemsize,
            self.follow,
            self.taps,
            terms,
            mixes,
            str(self.prog.closed.jaxpr),
        )

    def _mixes_samples(self) -> bool:
        """Compare a few samples' outputs in one batch with each alone.

        Both run the traced program, compiled once per program (and kept
        with the feature functions).
        """
        X1, X2 = self.X
        rows = X1.take(slice(0, 3))
        if rows.n < 2 and X2 is not None:
            more = X2.take(slice(0, 3 - rows.n))
            rows = rows.with_arrays(
                [
                    np.concatenate([np.asarray(a), np.asarray(b)])
                    for a, b in zip(rows.arrays, more.arrays, strict=True)
                ]
            )
        if rows.n < 2:
            return False
        host = [np.asarray(a) for a in rows.arrays]
        batch_prog = trace(
            self.caller, self.model, X1, abstract_inputs(X1, rows.n), "X1"
        )

        def outputs(prog, arrays):
            fn = _program_fn(prog.closed.jaxpr)
            out = np.asarray(fn(list(prog.closed.consts), prog.args(arrays)))
            out = out.reshape(out.shape[0], -1)
            return out.sum(axis=1, keepdims=True) if self.mode == "sum" else out

        batch = outputs(batch_prog, host)
        singles = np.concatenate(
            [outputs(self.prog, [a[i : i + 1] for a in host]) for i in range(rows.n)]
        )
        return mixes_samples(batch, singles)

    # -- which leaves take which path ---------------------------------------

    def _plan(self) -> list[Term]:
        prog = self.prog
        layers = []
        for leaf, taps in self.taps.items():
            W = prog.leaves[leaf]
            bias = taps[0].bias
            n_in = W.shape[taps[0].w_axis] + int(bias is not None)
            n_out = W.shape[1 - taps[0].w_axis]
            positions = 0
            for tap in taps:
                x = eqn_at(prog.closed.jaxpr, tap.path).invars[tap.x_pos].aval
                positions += int(np.prod(x.shape, dtype=int)) // x.shape[tap.x_axis]
            covered = [(prog.names[leaf], int(np.size(W)))]
            if bias is not None:
                covered.append((prog.names[bias], int(np.size(prog.leaves[bias]))))
            layers.append(
                Layer(prog.names[leaf], positions, n_in, n_out, covered, key=leaf)
            )
        params = [
            (name, int(np.prod(np.shape(value), dtype=int)), leaf)
            for leaf, (name, value) in enumerate(
                zip(prog.names, prog.leaves, strict=True)
            )
        ]
        return plan_terms(layers, params, self.k, self.mode, self.itemsize)

    # -- features of one block ----------------------------------------------

    def _feature_fn(self, group: list[Term]):
        """A jitted ``f(leaves, fixed, consts, arrays)``: a block's features.

        The parameters are arguments, not constants, so the compiled function
        is shared (see :data:`_COMPILED`) by every call whose traced program,
        group and output mode are the same, as in a training loop.
        """
        closed = self.prog.closed
        gram = [self.taps[t.key] for t in group if t.kind == "gram"]
        generic = tuple(t.key for t in group if t.kind == "jacobian")
        key = (
            self.program_text,
            tuple(tuple(taps) for taps in gram),
            generic,
            tuple(sorted(self.follow)),
            self.mode == "sum",
            self.X[0].sample_signature(),
        )
        fn = _COMPILED.get(key)
        if fn is None:
            fn = _make_feature_fn(
                closed.jaxpr,
                gram,
                generic,
                self.follow,
                self.k,
                self.mode,
            )
            _remember(key, fn)
        return fn

    def features(self, side: int, block: slice, group: list) -> tuple[list, int]:
        key = tuple(t.name for t in group)
        fn = self._fns.get(key)
        if fn is None:
            fn = self._fns[key] = self._feature_fn(group)
        # Blocks are cut on the host and padded to one shape (by repeating
        # the last sample): slicing device arrays would compile an operation
        # per block shape. Padded rows are cut from the contracted blocks.
        arrays = [a[block] for a in self.host[side]]
        b = arrays[0].shape[0]
        if b < self.block:
            arrays = [
                np.concatenate([a, np.repeat(a[-1:], self.block - b, axis=0)])
                for a in arrays
            ]
        arrays = [self.jax.device_put(a, self.device) for a in arrays]
        consts = list(self.prog.closed.consts)
        return fn(self.leaves, self.fixed, consts, arrays), b

    def contract(self, fi: list, fj: list) -> Any:
        return self._contract(fi, fj)

    def compute(self) -> Any:
        jnp = self.jax.numpy
        self._contract = _contract_fn(self.k, self.mode == "full")
        X1, X2 = self.X
        self.host = (
            [np.asarray(a) for a in X1.arrays],
            None if X2 is None else [np.asarray(a) for a in X2.arrays],
        )
        self.device = leaf_place(self.leaves)[0]

        def on_blocks(b: int) -> None:
            self.block = min(b, max(X1.n, X1.n if X2 is None else X2.n))

        try:
            return compute_ntk(
                jnp,
                self.features,
                self.terms,
                n1=X1.n,
                n2=None if X2 is None else X2.n,
                k=self.k,
                mode=self.mode,
                batch_size=self.batch_size,
                dtype=self.dtype,
                device=self.device,
                itemsize=self.itemsize,
                contract_fn=self.contract,
                on_blocks=on_blocks,
                caller=self.caller,
            )
        finally:
            self.host = (None, None)


# Jitted feature functions by (program, plan); a few are kept (see _feature_fn).
_COMPILED: dict = {}

# What JaxNtk reads from a model, by function, shapes and mode: a training
# loop's repeated calls trace and plan once, as jax.jit compiles once.
_ANALYSES: dict = {}


def _flat_outputs(out: Any, mode: str) -> Any:
    """Outputs as (b, k): flattened, or summed in "sum" mode."""
    out = out.reshape(out.shape[0], -1)
    return out.sum(axis=1, keepdims=True) if mode == "sum" else out


def _make_feature_fn(jaxpr, gram, generic, follow, k, mode):
    """The compiled features of a block: Gram pairs, then Jacobians.

    One function of a single sample, evaluated on the traced program with
    taps that record each Gram layer's input and add a zero ``eps`` to its
    output; its Jacobian with respect to ``eps`` (the back-propagated
    signals) and the generic leaves, mapped over the block.
    """
    jax = import_jax()
    jnp = jax.numpy
    tap_list = [tap for taps in gram for tap in taps]
    index = {tap.path: i for i, tap in enumerate(tap_list)}
    out_avals = [eqn_at(jaxpr, tap.path).outvars[0].aval for tap in tap_list]

    class Hooks:
        def __init__(self, eps, record):
            self.follow = follow
            self.eps = eps
            self.record = record

        def __call__(self, path, eqn, invals, outvals):
            i = index.get(path)
            if i is None:
                return None
            self.record[i] = invals[tap_list[i].x_pos]
            return [outvals[0] + self.eps[i]]

    def per_sample(eps, gen, leaves, fixed, consts, xs):
        args = list(leaves)
        for leaf, value in zip(generic, gen, strict=True):
            args[leaf] = value
        record = [None] * len(tap_list)
        inputs = [x[None] for x in xs]
        (out,) = evaluate(jaxpr, consts, [*args, *fixed, *inputs], Hooks(eps, record))
        return _flat_outputs(out, mode)[0], record

    jac = jax.vmap(
        jax.jacrev(per_sample, argnums=(0, 1), has_aux=True),
        in_axes=(None, None, None, None, None, 0),
    )

    def features(leaves, fixed, consts, xs):
        eps0 = [jnp.zeros(a.shape, a.dtype) for a in out_avals]
        gen0 = [leaves[leaf] for leaf in generic]
        (j_eps, j_gen), record = jac(eps0, gen0, leaves, fixed, consts, xs)
        b = xs[0].shape[0]
        feats = []
        for taps in gram:
            parts_a, parts_g = [], []
            for tap in taps:
                i = index[tap.path]
                x = jnp.moveaxis(record[i], tap.x_axis + 1, -1)
                x = x.reshape(b, -1, x.shape[-1])
                if tap.bias is not None:
                    x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
                parts_a.append(x)
                g = jnp.moveaxis(j_eps[i], tap.out_w_axis + 2, -1)
                parts_g.append(g.reshape(b, k, -1, g.shape[-1]))
            feats.append(
                (jnp.concatenate(parts_a, axis=1), jnp.concatenate(parts_g, axis=2))
            )
        if generic:
            feats.append(jnp.concatenate([j.reshape(b, k, -1) for j in j_gen], axis=2))
        return feats

    return jax.jit(features)


def _program_fn(jaxpr: Any):
    """``f(consts, args)``: a traced program compiled (and kept)."""
    key = ("program", str(jaxpr))
    fn = _COMPILED.get(key)
    if fn is None:
        jax = import_jax()

        class NoHooks:
            follow: frozenset = frozenset()

            def __call__(self, *args):
                return None

        def program(consts, args):
            return evaluate(jaxpr, consts, args, NoHooks())[0]

        fn = _remember(key, jax.jit(program))
    return fn


def _remember(key: Any, fn: Any) -> Any:
    """Keep a compiled function; the oldest go beyond a few dozen."""
    _COMPILED[key] = fn
    while len(_COMPILED) > 32:
        _COMPILED.pop(next(iter(_COMPILED)))
    return fn


def _contract_fn(k: int, full: bool):
    """The jitted contraction of two blocks' features (one per k and mode)."""
    key = ("contract", k, full)
    fn = _COMPILED.get(key)
    if fn is None:
        jax = import_jax()
        fn = _remember(
            key, jax.jit(functools.partial(contract_terms, jax.numpy, k=k, full=full))
        )
    return fn
