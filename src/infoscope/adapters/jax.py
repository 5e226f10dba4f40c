"""JAX adapter: activations, dense layers and empirical NTKs of ``apply_fn(params, x)``.

A JAX model is a function and its parameters:

- a Flax linen ``module.apply`` (or a ``functools.partial`` of it) with the
  variables ``module.init`` returned: only the ``params`` collection is
  differentiated; the others (``batch_stats``, ...) are held fixed;
- a Flax NNX module, passed as ``apply_fn`` with ``params=None``: it is split
  with ``nnx.split(model, nnx.Param, ...)``, its ``nnx.Param`` variables are
  differentiated and the rest (batch statistics, RNG state) held fixed, and
  it runs in evaluation mode (dropout off, BatchNorm on its running
  statistics) without being changed; an ``nnx.State`` passed as `params`
  (the ``nnx.split(model)`` recipe) likewise has only its ``nnx.Param``
  variables differentiated;
- a neural-tangents stax ``apply_fn`` with its params, or any
  ``apply_fn(params, x)`` that maps a batch (samples along the first axis)
  to outputs: every floating leaf of `params` is differentiated (integer
  leaves, RNG keys, are held fixed).

Inputs are one array (``apply_fn(params, X)``), or a tuple or list of arrays
(``apply_fn(params, *X)``) or a dict of them (``apply_fn(params, **X)``)
sharing the first axis. ``import infoscope.adapters.jax`` does not import
JAX; the first call does. Results are ``jax.Array`` objects on the
parameters' device.

The model is read from its jaxpr (the program JAX traces from it,
:mod:`infoscope.adapters._jax_model` and :mod:`infoscope.adapters._jaxpr`):
dense layers are the ``dot_general``
operations that contract an input with a 2-D parameter, and their inputs and
output signals are taken by evaluating that program with taps. The empirical
NTK is computed by the engine of :mod:`infoscope.adapters._ntk`: a dense
weight whose Gram form is the cheaper one is contracted in that form (the
Gram matrix of its inputs times that of the signals back-propagated to its
outputs), every other parameter through per-sample Jacobians (``jax.vmap``
of ``jax.jacrev``). Each sample is evaluated on its own, so the NTK is that of
the per-sample function even for a model that mixes samples (which is
detected and warned about).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import (
    check_batch_size,
    check_layers,
    check_output_mode,
    check_pool,
    pool_activations,
)
from ._inputs import Inputs, check_same_inputs
from ._jax_model import (
    Model,
    Program,
    abstract_inputs,
    as_input,
    dense_taps,
    flax_linen_module,
    import_jax,
    import_nnx,
    layer_name,
    trace,
)
from ._jax_ntk import JaxNtk
from ._jaxpr import evaluate, per_sample_ops
from ._ntk import block_slices

__all__ = ["activations", "dense_layers", "empirical_ntk"]


_PREFIX = "infoscope.adapters.jax."


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def activations(
    apply_fn: Any,
    params: Any,
    X: Any,
    layers: Any = None,
    batch_size: int | None = None,
    *,
    pool: str | None = None,
    mask: Any = None,
) -> dict[str, Any]:
    """The outputs of a JAX model's layers on inputs `X`.

    Parameters
    ----------
    apply_fn : callable or flax.nnx.Module
        ``apply_fn(params, x)``, mapping a batch to outputs, or an NNX
        module (with ``params=None``).
    params : pytree or None
        The parameters (a Flax variables dict, stax params, ...).
    X : jax.Array or array-like, or tuple, list or dict of them
        Inputs, samples along the first axis of every array; a tuple or list
        is passed as positional arguments, a dict as keyword arguments.
    layers : str or list of str, optional
        Which layers, by name; by default all of them. Names follow the
        model's own module paths and the functions it calls:

        - Flax (linen or NNX): the outputs of its submodules' ``__call__``
          (``"Dense_0"``, ``"block/Conv_1"``; NNX: the attribute paths,
          ``"linear1"``), and the outputs of the activation functions the
          model's code applies (``jax.nn`` functions, ``tanh``), named by
          the module they ran in and the function (``"relu_0"``,
          ``"block/gelu_0"``);
        - any other function: each operation whose output has the samples
          along the first axis, named by the function or primitive that
          emitted it (``"dot_0"``, ``"add_0"``, ``"relu_0"``, ``"conv_0"``),
          prefixed by the ``jax.named_scope`` it ran in, if any.
    batch_size : int, optional
        Samples per call; by default all of `X` at once.
    pool : {"mean", "first", "last"}, optional
        Pool each activation with three or more axes over its second axis
        (tokens): see :func:`infoscope.adapters.torch.activations`.
    mask : array-like, str or int, optional
        With `pool`: ``(n, t)``, nonzero for the tokens that count, or the
        key or position of that array in `X`.

    Returns
    -------
    dict of str to jax.Array
        Layer name to its output, in forward order.

    Raises
    ------
    ValueError
        If a name in `layers` is not a layer of the model (the message lists
        them).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from infoscope.adapters.jax import activations
    >>> def apply_fn(params, x):
    ...     return jax.nn.relu(x @ params["w1"]) @ params["w2"]
    >>> params = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
    >>> acts = activations(apply_fn, params, jnp.ones((5, 3)))
    >>> {name: a.shape for name, a in acts.items()}
    {'dot_0': (5, 4), 'relu_0': (5, 4), 'dot_1': (5, 2)}
    """
    caller = _PREFIX + "activations"
    jax = import_jax()
    pool = check_pool(caller, pool, mask)
    model = Model.read(caller, apply_fn, params)
    batch_size = check_batch_size(caller, batch_size)
    inputs = as_input(caller, "X", model.place(), X)
    n = inputs.n
    names, run = _intermediates(caller, model, inputs, apply_fn)
    chosen = check_layers(caller, layers, names)
    host = [np.asarray(a) for a in inputs.arrays]  # no compile per slice shape
    blocks = [
        run([a[block] for a in host]) for block in block_slices(n, batch_size or n)
    ]
    if len(blocks) == 1:
        result = {name: blocks[0][name] for name in chosen}
    else:
        result = {
            name: jax.numpy.concatenate([b[name] for b in blocks], axis=0)
            for name in chosen
        }
    if pool is None:
        return result
    return pool_activations(caller, result, pool, mask, inputs)


def _intermediates(caller: str, model: Model, X: Inputs, apply_fn: Any):
    """The per-sample layer names of `model` and a runner that computes them."""
    fn = model.capture
    progs = {
        b: trace(caller, model, X, abstract_inputs(X, b), "X", fn=fn or model.raw)
        for b in (2, 3)
    }
    j2, j3 = progs[2].closed.jaxpr, progs[3].closed.jaxpr
    if len(j2.eqns) != len(j3.eqns):
        raise ValueError(
            f"{caller}: apply_fn traces to different programs for different batch "
            f"sizes; its layers cannot be named. Compute the activations in the "
            f"model."
        )
    n = progs[2].n_leaves + len(progs[2].fixed)
    ops, follow = per_sample_ops(j2, j3, set(j2.invars[n:]), set(j3.invars[n:]))
    root = _root_scope(apply_fn)
    if model.linen is not None or root is not None:
        ops = [op for op in ops if op.activation and not op.library]
    named: dict[tuple, str] = {}
    counts: dict[str, int] = {}
    order: list[tuple[tuple, int, str]] = []
    for op in ops:
        scope = _relative(op.scope, root)
        base = f"{scope}/{op.name}" if scope else op.name
        count = counts.get(base, 0)
        counts[base] = count + 1
        named[op.path] = f"{base}_{count}"
        order.append((op.path, 0, named[op.path]))
    outputs: dict[int, str] = {}
    if model.capture is not None:
        # A submodule's output computed by an operation listed comes after
        # it (a block ending in gelu, a dropout passing its input on).
        outputs = _captured(progs[2], progs[3])
        defined = {}
        for index, eqn in enumerate(j2.eqns):
            for var in eqn.outvars:
                defined[var] = (index,)
        for i, name in outputs.items():
            var = j2.outvars[i]
            order.append((defined.get(var, (-1,)), 1, name))
    order.sort(key=lambda entry: (entry[0], entry[1]))
    names = [name for _, _, name in order]

    class Hooks:
        def __init__(self, found):
            self.follow = follow
            self.found = found

        def __call__(self, path, eqn, invals, outvals):
            if path in named:
                self.found[named[path]] = outvals[0]
            return None

    def run(arrays):
        prog = trace(caller, model, X, arrays, "X", fn=fn or model.raw)
        key = (
            "activations",
            str(prog.closed.jaxpr),
            tuple(named.items()),
            tuple(sorted(follow)),
            tuple(outputs.items()),
        )

        def program(leaves, fixed, consts, arrays, jaxpr=prog.closed.jaxpr):
            found: dict = {}
            args = [*leaves, *fixed, *arrays]
            outs = evaluate(jaxpr, consts, args, Hooks(found))
            found.update({name: outs[i] for i, name in outputs.items()})
            return found

        compiled = _jitted(key, program)
        return compiled(prog.leaves, prog.fixed, list(prog.closed.consts), arrays)

    return names, run


# Jitted programs of activations and dense_layers by what they evaluate (the
# traced program and its taps): the parameters are arguments, so a training
# loop's records reuse one compiled function. The last few are kept.
_PROGRAMS: dict = {}


def _jitted(key: tuple, program: Any) -> Any:
    """``jax.jit(program)``, or the one made before for the same `key`."""
    jax = import_jax()
    fn = _PROGRAMS.pop(key, None)
    if fn is None:
        fn = jax.jit(program)
    _PROGRAMS[key] = fn  # most recent last
    while len(_PROGRAMS) > 16:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    return fn


def _root_scope(apply_fn: Any) -> str | None:
    """The name scope of a Flax model's root module (stripped from names)."""
    linen = flax_linen_module(apply_fn)
    if linen is not None:
        return type(linen).__name__
    nnx = import_nnx()
    if nnx is not None and isinstance(apply_fn, nnx.Module):
        return ""
    return None


def _relative(scope: str, root: str | None) -> str:
    if root and (scope == root or scope.startswith(root + "/")):
        return scope[len(root) + 1 :]
    return scope


def _captured(prog2: Program, prog3: Program) -> dict[int, str]:
    """Outputs of the linen program that are submodule outputs, by position.

    The traced function returns ``(output, {"intermediates": ...})``; Flax
    records each submodule's ``__call__`` output as
    ``.../<submodule>/__call__/0``.
    """
    jax = import_jax()
    found = {}
    paths2 = jax.tree_util.tree_flatten_with_path(prog2.out_tree)[0]
    paths3 = jax.tree_util.tree_flatten_with_path(prog3.out_tree)[0]
    for i, ((path, leaf2), (_, leaf3)) in enumerate(zip(paths2, paths3, strict=True)):
        parts = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if "intermediates" not in parts:
            continue
        parts = parts[parts.index("intermediates") + 1 :]
        if len(parts) < 3 or parts[-2] != "__call__" or parts[-1] != "0":
            continue
        if leaf2.shape[:1] == (2,) and leaf3.shape[:1] == (3,):
            found[i] = "/".join(parts[:-2])
    return found


def dense_layers(apply_fn: Any, params: Any, X: Any) -> list[tuple[str, Any, Any]]:
    """The dense layers of a JAX model with the inputs they see on `X`.

    What :class:`infoscope.NodeSNR` takes: for each 2-D parameter that the
    model contracts with its input (a Flax ``Dense`` kernel, a stax ``Dense``
    weight, ``x @ W`` in a plain function), its name, its input activations
    and the weight as ``d_in x d_out``.

    Parameters
    ----------
    apply_fn : callable or flax.nnx.Module
        ``apply_fn(params, x)``, or an NNX module (with ``params=None``).
    params : pytree or None
        The parameters.
    X : jax.Array or array-like, or tuple, list or dict of them
        Inputs, samples along the first axis.

    Returns
    -------
    list of (str, jax.Array, jax.Array)
        ``(name, inputs, W)`` in the order the layers are applied. ``name``
        is the layer's path (the weight's path in the trainable parameters
        without a final ``kernel``: ``"Dense_0"``, ``"block/fc"``; ``"w1"``
        for a plain dict). ``inputs`` is ``(m, d_in)`` (a layer applied to
        more axes has them folded into rows; one used twice has both inputs
        stacked).

    Raises
    ------
    ValueError
        If the model has no dense layer.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from infoscope.adapters.jax import dense_layers
    >>> def apply_fn(params, x):
    ...     return jnp.tanh(x @ params["w1"]) @ params["w2"]
    >>> params = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
    >>> [(name, x.shape, W.shape) for name, x, W in
    ...  dense_layers(apply_fn, params, jnp.ones((5, 3)))]
    [('w1', (5, 3), (3, 4)), ('w2', (5, 4), (4, 2))]
    """
    caller = _PREFIX + "dense_layers"
    jax = import_jax()
    jnp = jax.numpy
    model = Model.read(caller, apply_fn, params)
    inputs = as_input(caller, "X", model.place(), X)
    taps, _, follow = dense_taps(model, inputs, caller, "X")
    if not taps:
        raise ValueError(
            f"{caller}: found no dense layer (a 2-D parameter contracted with the "
            f"input by dot_general, as in Flax Dense or x @ W) in apply_fn."
        )
    prog = trace(caller, model, inputs, inputs.arrays, "X")
    by_path = {t.path: t for t in taps}

    class Hooks:
        def __init__(self, seen):
            self.follow = follow
            self.seen = seen

        def __call__(self, path, eqn, invals, outvals):
            tap = by_path.get(path)
            if tap is not None:
                x = jnp.moveaxis(invals[tap.x_pos], tap.x_axis, -1)
                self.seen.setdefault(tap.leaf, []).append(x.reshape(-1, x.shape[-1]))
            return None

    def program(leaves, fixed, consts, arrays):
        seen: dict[int, list] = {}
        evaluate(prog.closed.jaxpr, consts, [*leaves, *fixed, *arrays], Hooks(seen))
        return seen

    key = ("dense", str(prog.closed.jaxpr), tuple(taps), tuple(sorted(follow)))
    recorded = _jitted(key, program)(
        prog.leaves, prog.fixed, list(prog.closed.consts), inputs.arrays
    )
    result = []
    for tap in taps:
        if tap.leaf not in recorded:
            continue
        xs = recorded.pop(tap.leaf)
        W = prog.leaves[tap.leaf]
        W = W if tap.w_axis == 0 else W.T
        name = layer_name(prog.names[tap.leaf])
        result.append((name, jnp.concatenate(xs, axis=0), W))
    return result


# --------------------------------------------------------------------------- #
# empirical_ntk
# --------------------------------------------------------------------------- #


def empirical_ntk(
    apply_fn: Any,
    params: Any,
    X1: Any,
    X2: Any = None,
    output_mode: str = "mean",
    batch_size: int | None = None,
    *,
    output: Any = None,
) -> Any:
    """The empirical neural tangent kernel of a JAX model.

    ``Theta[(i, a), (j, b)] = sum_p df_a(x_i)/dtheta_p df_b(x_j)/dtheta_p``
    over the trainable parameters ``theta`` (a linen model's ``params``
    collection, an NNX model's ``nnx.Param`` variables, every floating leaf
    of any other `params`), each sample evaluated on its own.

    Parameters
    ----------
    apply_fn : callable or flax.nnx.Module
        ``apply_fn(params, x)``, or an NNX module (with ``params=None``); all
        output axes after the first are flattened into ``k`` outputs.
    params : pytree or None
        The parameters; not modified.
    X1 : jax.Array or array-like, or tuple, list or dict of them
        ``n1`` inputs, samples along the first axis of every array.
    X2 : same as X1, optional
        ``n2`` inputs of the same structure and sample shapes; by default
        `X1` (the symmetric case, where each block pair is contracted once
        and mirrored).
    output_mode : {"mean", "sum", "full"}, default="mean"
        ``"mean"``: ``(1/k) sum_a Theta[(i, a), (j, a)]``, ``n1 x n2``
        (neural-tangents' ``trace_axes=(-1,)``). ``"sum"``: the NTK of the
        summed outputs, ``sum_ab Theta[(i, a), (j, b)]``. ``"full"``:
        ``n1 k x n2 k``, sample-major (row ``i k + a``).
    batch_size : int, optional
        Samples per block; by default chosen from the model's size. Each
        block is compiled once per shape (the last block is padded).
    output : str, int or callable, optional
        Which array of apply_fn's output the NTK is of, when it returns more
        than one: a key, an index or a callable ``output(out) -> array``.

    Returns
    -------
    jax.Array
        On the parameters' device.

    Raises
    ------
    ValueError
        If `output_mode` or `batch_size` is invalid, `X2`'s samples differ in
        structure or shape from `X1`'s, or apply_fn does not take the inputs.

    Warns
    -----
    RuntimeWarning
        If the model's outputs on a batch differ from its outputs on the
        samples one at a time (it mixes samples, like BatchNorm with batch
        statistics): the NTK returned is that of the per-sample function.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from infoscope.adapters.jax import empirical_ntk
    >>> def apply_fn(params, x):
    ...     return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]
    >>> k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    >>> params = {"w1": jax.random.normal(k1, (4, 16)), "b1": jnp.zeros(16),
    ...           "w2": jax.random.normal(k2, (16, 3))}
    >>> X = jax.random.normal(k1, (5, 4))
    >>> K = empirical_ntk(apply_fn, params, X)
    >>> K.shape, bool(jnp.allclose(K, K.T))
    ((5, 5), True)
    >>> empirical_ntk(apply_fn, params, X, X[:2], output_mode="full").shape
    (15, 6)
    """
    caller = _PREFIX + "empirical_ntk"
    model = Model.read(caller, apply_fn, params, output)
    return _ntk_of(caller, model, X1, X2, output_mode, batch_size)


def _ntk_of(
    caller: str, model: Model, X1: Any, X2: Any, output_mode: str, batch_size: Any
) -> Any:
    """The NTK of a model read as a function (also what the Keras adapter calls)."""
    mode = check_output_mode(caller, output_mode)
    batch_size = check_batch_size(caller, batch_size)
    X1 = as_input(caller, "X1", model.place(), X1)
    if X2 is not None:
        X2 = as_input(caller, "X2", model.place(), X2)
        check_same_inputs(caller, X1, X2)
    return JaxNtk(caller, model, X1, X2, mode, batch_size).compute()
