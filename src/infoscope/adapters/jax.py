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
:mod:`infoscope.adapters._jaxpr`): dense layers are the ``dot_general``
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

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import to_numpy
from . import _ntk
from ._common import (
    check_batch_size,
    check_layers,
    check_output_mode,
    check_pool,
    pool_activations,
    select_output,
)
from ._inputs import Inputs, check_same_inputs
from ._jaxpr import (
    Tap,
    eqn_at,
    evaluate,
    find_taps,
    per_sample_ops,
)

__all__ = ["activations", "dense_layers", "empirical_ntk"]

_PREFIX = "infoscope.adapters.jax."


def _jax():
    import jax

    return jax


# --------------------------------------------------------------------------- #
# The model: a function of its trainable parameters
# --------------------------------------------------------------------------- #


def _check_apply(caller: str, apply_fn: Any) -> None:
    if not callable(apply_fn):
        raise TypeError(
            f"{caller}: `apply_fn` must be a function apply_fn(params, x) (a Flax "
            f"`module.apply`, a stax apply_fn, ...) or a Flax NNX module; got "
            f"{type(apply_fn).__name__}. For a PyTorch model use "
            f"infoscope.adapters.torch."
        )


def _flax_linen_module(apply_fn: Any) -> Any:
    """The linen module whose ``apply`` (or a partial of it) `apply_fn` is, or None."""
    if "flax" not in sys.modules:
        return None
    while isinstance(apply_fn, functools.partial):
        apply_fn = apply_fn.func
    owner = getattr(apply_fn, "__self__", None)
    if owner is None or getattr(apply_fn, "__name__", "") != "apply":
        return None
    try:
        from flax import linen
    except ImportError:  # pragma: no cover - flax half-installed
        return None
    return owner if isinstance(owner, linen.Module) else None


def _nnx() -> Any:
    """``flax.nnx`` if Flax is imported (a model of it can exist), else None."""
    if "flax" not in sys.modules:
        return None
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return None
    return nnx


def _path_name(path: tuple) -> str:
    """A leaf's key path as ``params/Dense_0/kernel``."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if len(parts) > 1 and parts[-1] == "value":  # an NNX Variable's value
        parts = parts[:-1]
    return "/".join(parts)


class _Model:
    """A JAX model as ``fn(trainable, fixed, *args, **kwargs)``.

    `trainable` is what the NTK differentiates, `fixed` the state held
    fixed and passed through (batch statistics, RNG state, integer leaves);
    both are arguments, never constants of the traced program, so the
    program read once serves every later call with new values (see
    :data:`_ANALYSES`).

    Attributes
    ----------
    key : tuple
        What identifies the function across calls (``apply_fn``, an NNX
        graph definition, the output selected), for the caches.
    linen : flax.linen.Module or None
        The module, for a linen ``apply``.
    capture : callable or None
        ``fn`` returning also each submodule's output (Flax).
    """

    def __init__(
        self,
        caller: str,
        fn: Any,
        trainable: Any,
        fixed: Any,
        key: tuple,
        output: Any = None,
        capture: Any = None,
        linen: Any = None,
    ):
        jax = _jax()
        self.caller = caller
        self.raw = fn
        self.trainable, self.fixed = trainable, fixed
        self.capture, self.linen = capture, linen
        self.key = (
            *key,
            output if output is None or isinstance(output, str | int) else id(output),
        )

        def selected(p, f, *args, **kwargs):
            out = fn(p, f, *args, **kwargs)
            return select_output(
                caller, out, output, lambda a: isinstance(a, jax.Array)
            )

        self.fn = selected

    @classmethod
    def read(cls, caller: str, apply_fn: Any, params: Any, output: Any = None):
        """The trainable and fixed parts of ``apply_fn(params, x)``."""
        jax = _jax()
        _check_apply(caller, apply_fn)
        linen = _flax_linen_module(apply_fn)
        nnx = _nnx()
        if nnx is not None and isinstance(apply_fn, nnx.Module):
            if params is not None:
                raise ValueError(
                    f"{caller}: `apply_fn` is a Flax NNX module, so `params` must be "
                    f"None (its nnx.Param variables are the parameters); got "
                    f"{type(params).__name__}."
                )
            graphdef, trainable, rest = nnx.split(apply_fn, nnx.Param, ...)

            def fn(p, r, *args, **kwargs):
                return _nnx_eval(nnx, graphdef, p, r)(*args, **kwargs)

            def capture(p, r, *args, **kwargs):
                model = _nnx_eval(nnx, graphdef, p, r)
                record = _record_submodules(nnx, model)
                out = model(*args, **kwargs)
                calls = {name: {"__call__": (v,)} for name, v in record.items()}
                return out, {"intermediates": calls}

            return cls(caller, fn, trainable, rest, ("nnx", graphdef), output, capture)
        if nnx is not None and isinstance(params, nnx.State):
            trainable, rest = nnx.split_state(params, nnx.Param, ...)

            def fn(p, r, *args, **kwargs):
                return apply_fn(nnx.merge_state(p, r), *args, **kwargs)

            return cls(caller, fn, trainable, rest, ("nnx-state", apply_fn), output)
        if linen is not None and isinstance(params, Mapping) and "params" in params:
            fixed = {c: v for c, v in params.items() if c != "params"}

            def fn(p, f, *args, **kwargs):
                return apply_fn({**f, "params": p}, *args, **kwargs)

            def capture(p, f, *args, **kwargs):
                return apply_fn(
                    {**f, "params": p},
                    *args,
                    capture_intermediates=True,
                    mutable=["intermediates"],
                    **kwargs,
                )

            return cls(
                caller,
                fn,
                params["params"],
                fixed,
                ("linen", apply_fn),
                output,
                capture,
                linen,
            )
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        names = [_path_name(path) for path, _ in flat]
        floating = [_is_floating(leaf) for _, leaf in flat]
        if all(floating):

            def fn(p, f, *args, **kwargs):
                return apply_fn(p, *args, **kwargs)

            return cls(caller, fn, params, (), ("fn", apply_fn), output)
        trainable = {
            n: leaf for n, (_, leaf), f in zip(names, flat, floating, strict=True) if f
        }
        fixed = {
            n: leaf
            for n, (_, leaf), f in zip(names, flat, floating, strict=True)
            if not f
        }

        def fn(p, f, *args, **kwargs):
            leaves = [p[n] if n in p else f[n] for n in names]
            return apply_fn(
                jax.tree_util.tree_unflatten(treedef, leaves), *args, **kwargs
            )

        return cls(caller, fn, trainable, fixed, ("fn", apply_fn, treedef), output)

    def place(self) -> tuple[Any, Any]:
        return _leaf_place(self.trainable)


def _nnx_eval(nnx: Any, graphdef: Any, params: Any, rest: Any) -> Any:
    """A fresh NNX model from its parts, in evaluation mode (the user's is kept)."""
    model = nnx.merge(graphdef, params, rest)
    model.set_attributes(
        deterministic=True, use_running_average=True, raise_if_not_found=False
    )
    return model


def _record_submodules(nnx: Any, model: Any) -> dict[str, Any]:
    """Record the first output of each submodule of `model` (a fresh copy).

    NNX has no forward hooks: each submodule's class is swapped for a
    subclass whose ``__call__`` records, on this copy only.
    """
    record: dict[str, Any] = {}
    for path, sub in nnx.iter_modules(model):
        if not path:
            continue
        name = "/".join(map(str, path))

        class Recording(type(sub)):
            def __call__(self, *args, _name=name, **kwargs):
                out = super().__call__(*args, **kwargs)
                record.setdefault(_name, out)
                return out

        sub.__class__ = Recording
    return record


def _is_floating(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return isinstance(leaf, float)
    jnp = _jax().numpy
    try:
        return bool(jnp.issubdtype(dtype, jnp.inexact))
    except TypeError:  # extended dtypes (RNG keys)
        return False


def _leaf_place(params: Any) -> tuple[Any, Any]:
    """The device and floating dtype of the first floating leaf of `params`."""
    jax = _jax()
    for leaf in jax.tree_util.tree_leaves(params):
        if isinstance(leaf, jax.Array) and _is_floating(leaf):
            return next(iter(leaf.devices())), leaf.dtype
    return jax.devices()[0], jax.numpy.zeros(()).dtype


def _as_input(caller: str, name: str, place: tuple[Any, Any], X: Any) -> Inputs:
    """`X` as JAX arrays on `place` (the parameters' device and float dtype)."""
    jax = _jax()
    jnp = jax.numpy
    device, dtype = place

    def convert(label: str, x: Any) -> Any:
        if isinstance(x, jax.Array):
            devices = x.devices()
            if device not in devices:
                raise ValueError(
                    f"{caller}: `{label}` is on device {sorted(map(str, devices))} "
                    f"but the parameters are on {str(device)!r}; move one of them "
                    f"first (jax.device_put)."
                )
            return x
        a = to_numpy(x)
        if a.dtype.kind not in "biuf":
            raise ValueError(
                f"{caller}: `{label}` must hold numbers; got dtype {a.dtype}."
            )
        return jax.device_put(
            jnp.asarray(a, dtype=dtype if a.dtype.kind == "f" else None), device
        )

    return Inputs.read(caller, name, X, convert)


@dataclass
class _Program:
    """The model traced on a batch: its jaxpr and the flattened parameters.

    The program's inputs are the trainable leaves, then the fixed ones,
    then the input arrays.
    """

    closed: Any
    leaves: list
    names: list[str]
    fixed: list
    out_tree: Any = None

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    def args(self, arrays: list, leaves: list | None = None) -> list:
        """The program's arguments: (trainable) leaves, fixed leaves, arrays."""
        return [*(self.leaves if leaves is None else leaves), *self.fixed, *arrays]


def _abstract(X: Inputs, b: int) -> list:
    """Stand-ins for `b` samples of each array of `X` (tracing needs shapes)."""
    jax = _jax()
    return [jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for a in X.arrays]


def _trace(
    caller: str,
    model: _Model,
    X: Inputs,
    arrays: list,
    name: str,
    fn: Any = None,
) -> _Program:
    """`model` traced on `arrays` (in the structure of `X`).

    With the default `fn` (the selected output), checks that the program
    returns one array with a row per sample.
    """
    jax = _jax()
    single = fn is None
    fn = model.fn if fn is None else fn
    flat, treedef = jax.tree_util.tree_flatten_with_path(model.trainable)
    leaves = [leaf for _, leaf in flat]
    names = [_path_name(path) for path, _ in flat]
    fixed, fixed_def = jax.tree_util.tree_flatten(model.fixed)
    n, m = len(leaves), len(fixed)

    def flat_fn(*args):
        params = jax.tree_util.tree_unflatten(treedef, args[:n])
        state = jax.tree_util.tree_unflatten(fixed_def, args[n : n + m])
        return X.call(fn, params, state, arrays=list(args[n + m :]))

    try:
        closed, out_tree = jax.make_jaxpr(flat_fn, return_shape=True)(
            *leaves, *fixed, *arrays
        )
    except ValueError as exc:
        if str(exc).startswith(caller):
            raise  # our own message (the output selection)
        raise _apply_error(caller, X, name, exc) from exc
    except Exception as exc:  # the user's function, any error it raises
        raise _apply_error(caller, X, name, exc) from exc
    b = arrays[0].shape[0]
    if single:
        out = closed.jaxpr.outvars[0].aval
        if len(closed.jaxpr.outvars) != 1:
            raise ValueError(
                f"{caller}: apply_fn returns {len(closed.jaxpr.outvars)} arrays; "
                f"select one with `output=` (a key, an index or a callable)."
            )
        if len(out.shape) == 0 or out.shape[0] != b:
            raise ValueError(
                f"{caller}: apply_fn maps {b} samples to an output of shape "
                f"{tuple(out.shape)}; it must return one output row per sample."
            )
    return _Program(closed, leaves, names, fixed, out_tree)


def _apply_error(caller: str, X: Inputs, name: str, exc: Exception) -> ValueError:
    return ValueError(
        f"{caller}: apply_fn(params, x) failed on `{name}` ({X.describe()}): "
        f"{type(exc).__name__}: {exc}. Pass the params and inputs the model "
        f"takes, samples along the first axis."
    )


def _dense_taps(model: _Model, X: Inputs, caller: str, name: str):
    """Taps found in the programs traced at two batch sizes, sample axis first.

    A tap counts only if the same equation contracts an input whose first
    axis is the batch at both sizes (so that its rows are samples).
    """
    reps = []
    for b in (2, 3):
        prog = _trace(caller, model, X, _abstract(X, b), name)
        taps, other, follow = find_taps(prog.closed, prog.n_leaves)
        reps.append((prog, b, taps, other, follow))
    (p2, _, t2, o2, f2), (p3, _, t3, o3, f3) = reps
    if [t.path for t in t2] != [t.path for t in t3]:
        return [], set(range(p2.n_leaves)), set()
    good = []
    for tap2, tap3 in zip(t2, t3, strict=True):
        if tap2 != tap3:
            continue
        ok = True
        for prog, b, tap in ((p2, 2, tap2), (p3, 3, tap3)):
            eqn = eqn_at(prog.closed.jaxpr, tap.path)
            if eqn.invars[tap.x_pos].aval.shape[0] != b:
                ok = False
        if ok:
            good.append(tap2)
    bad = {t.leaf for t in t2} - {t.leaf for t in good}
    return good, o2 | o3 | bad, f2 | f3


def _layer_name(weight: str) -> str:
    """A dense layer's name from its weight's path (``Dense_0/kernel``: ``Dense_0``)."""
    parts = weight.split("/")
    if len(parts) > 1 and parts[-1] in ("kernel", "weight", "w", "W"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[0] == "params":
        parts = parts[1:]
    return "/".join(parts)


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
    jax = _jax()
    pool = check_pool(caller, pool, mask)
    model = _Model.read(caller, apply_fn, params)
    batch_size = check_batch_size(caller, batch_size)
    inputs = _as_input(caller, "X", model.place(), X)
    n = inputs.n
    names, run = _intermediates(caller, model, inputs, apply_fn)
    chosen = check_layers(caller, layers, names)
    host = [np.asarray(a) for a in inputs.arrays]  # no compile per slice shape
    blocks = [
        run([a[block] for a in host]) for block in _ntk.block_slices(n, batch_size or n)
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


def _intermediates(caller: str, model: _Model, X: Inputs, apply_fn: Any):
    """The per-sample layer names of `model` and a runner that computes them."""
    jax = _jax()
    fn = model.capture
    progs = {
        b: _trace(caller, model, X, _abstract(X, b), "X", fn=fn or model.raw)
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

    compiled: dict = {}

    def run(arrays):
        prog = _trace(caller, model, X, arrays, "X", fn=fn or model.raw)
        key = str(prog.closed.jaxpr)
        if key not in compiled:

            def program(leaves, fixed, consts, arrays, jaxpr=prog.closed.jaxpr):
                found: dict = {}
                args = [*leaves, *fixed, *arrays]
                outs = evaluate(jaxpr, consts, args, Hooks(found))
                found.update({name: outs[i] for i, name in outputs.items()})
                return found

            compiled[key] = jax.jit(program)
        return compiled[key](prog.leaves, prog.fixed, list(prog.closed.consts), arrays)

    return names, run


def _root_scope(apply_fn: Any) -> str | None:
    """The name scope of a Flax model's root module (stripped from names)."""
    linen = _flax_linen_module(apply_fn)
    if linen is not None:
        return type(linen).__name__
    nnx = _nnx()
    if nnx is not None and isinstance(apply_fn, nnx.Module):
        return ""
    return None


def _relative(scope: str, root: str | None) -> str:
    if root and (scope == root or scope.startswith(root + "/")):
        return scope[len(root) + 1 :]
    return scope


def _captured(prog2: _Program, prog3: _Program) -> dict[int, str]:
    """Outputs of the linen program that are submodule outputs, by position.

    The traced function returns ``(output, {"intermediates": ...})``; Flax
    records each submodule's ``__call__`` output as
    ``.../<submodule>/__call__/0``.
    """
    jax = _jax()
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
    jax = _jax()
    jnp = jax.numpy
    model = _Model.read(caller, apply_fn, params)
    inputs = _as_input(caller, "X", model.place(), X)
    taps, _, follow = _dense_taps(model, inputs, caller, "X")
    if not taps:
        raise ValueError(
            f"{caller}: found no dense layer (a 2-D parameter contracted with the "
            f"input by dot_general, as in Flax Dense or x @ W) in apply_fn."
        )
    prog = _trace(caller, model, inputs, inputs.arrays, "X")
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

    recorded = jax.jit(program)(
        prog.leaves, prog.fixed, list(prog.closed.consts), inputs.arrays
    )
    result = []
    for tap in taps:
        if tap.leaf not in recorded:
            continue
        xs = recorded.pop(tap.leaf)
        W = prog.leaves[tap.leaf]
        W = W if tap.w_axis == 0 else W.T
        name = _layer_name(prog.names[tap.leaf])
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
    model = _Model.read(caller, apply_fn, params, output)
    return _ntk_of(caller, model, X1, X2, output_mode, batch_size)


def _ntk_of(
    caller: str, model: _Model, X1: Any, X2: Any, output_mode: str, batch_size: Any
) -> Any:
    """The NTK of a model read as a function (also what the Keras adapter calls)."""
    mode = check_output_mode(caller, output_mode)
    batch_size = check_batch_size(caller, batch_size)
    X1 = _as_input(caller, "X1", model.place(), X1)
    if X2 is not None:
        X2 = _as_input(caller, "X2", model.place(), X2)
        check_same_inputs(caller, X1, X2)
    return _JaxNtk(caller, model, X1, X2, mode, batch_size).compute()


def _signature(tree: Any) -> tuple:
    """A pytree's structure, shapes and dtypes (what a trace depends on)."""
    jax = _jax()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((np.shape(a), str(getattr(a, "dtype", ""))) for a in leaves))


class _JaxNtk:
    """One empirical NTK computation (see :func:`empirical_ntk`).

    Reads the program (its dense layers, its parameters) and gives the
    engine the features of each block, computed by one compiled function of
    the block; :mod:`infoscope.adapters._ntk` does the rest. What it reads
    depends only on the function, the shapes and the mode, so it is kept
    (:data:`_ANALYSES`) and a training loop's later calls trace nothing.
    """

    def __init__(self, caller, model, X1, X2, mode, batch_size):
        jax = _jax()
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
            _ntk.warn_mixing(self.caller, stacklevel=3)
        self.leaves = jax.tree_util.tree_leaves(model.trainable)
        self.fixed = jax.tree_util.tree_leaves(model.fixed)
        self._fns: dict = {}

    def _read(self) -> tuple:
        """The program, its outputs, its dense layers and the plan."""
        caller, model, (X1, _) = self.caller, self.model, self.X
        self.prog = _trace(caller, model, X1, _abstract(X1, 1), "X1")
        out = self.prog.closed.jaxpr.outvars[0].aval
        self.k = 1 if self.mode == "sum" else int(np.prod(out.shape[1:], dtype=int))
        self.dtype = out.dtype
        self.itemsize = np.dtype(out.dtype).itemsize
        mixes = self._mixes_samples()
        taps, other, follow = _dense_taps(model, X1, caller, "X1")
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
        batch_prog = _trace(self.caller, self.model, X1, _abstract(X1, rows.n), "X1")

        def outputs(prog, arrays):
            fn = _program_fn(prog.closed.jaxpr)
            out = np.asarray(fn(list(prog.closed.consts), prog.args(arrays)))
            out = out.reshape(out.shape[0], -1)
            return out.sum(axis=1, keepdims=True) if self.mode == "sum" else out

        batch = outputs(batch_prog, host)
        singles = np.concatenate(
            [outputs(self.prog, [a[i : i + 1] for a in host]) for i in range(rows.n)]
        )
        return _ntk.mixes_samples(batch, singles)

    # -- which leaves take which path ---------------------------------------

    def _plan(self) -> list[_ntk.Term]:
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
                _ntk.Layer(prog.names[leaf], positions, n_in, n_out, covered, key=leaf)
            )
        params = [
            (name, int(np.prod(np.shape(value), dtype=int)), leaf)
            for leaf, (name, value) in enumerate(
                zip(prog.names, prog.leaves, strict=True)
            )
        ]
        return _ntk.plan_terms(layers, params, self.k, self.mode, self.itemsize)

    # -- features of one block ----------------------------------------------

    def _feature_fn(self, group: list[_ntk.Term]):
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
        self.device = _leaf_place(self.leaves)[0]

        def on_blocks(b: int) -> None:
            self.block = min(b, max(X1.n, X1.n if X2 is None else X2.n))

        try:
            return _ntk.compute(
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
            )
        finally:
            self.host = (None, None)


# Jitted feature functions by (program, plan); a few are kept (see _feature_fn).
_COMPILED: dict = {}

# What _JaxNtk reads from a model, by function, shapes and mode: a training
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
    jax = _jax()
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
        jax = _jax()

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
        jax = _jax()
        fn = _remember(
            key, jax.jit(functools.partial(_ntk.contract, jax.numpy, k=k, full=full))
        )
    return fn
