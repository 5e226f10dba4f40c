"""JAX adapter: activations, dense layers and empirical NTKs of ``apply_fn(params, x)``.

A JAX model is a function and its parameters: a Flax linen ``module.apply``
with its variables, a neural-tangents stax ``apply_fn`` with its params, a
Flax nnx model split into ``graphdef, state`` and applied as
``lambda state, x: nnx.merge(graphdef, state)(x)``, or any
``apply_fn(params, x)`` that maps a batch (samples along the first axis) to
outputs. ``import infoscope.adapters.jax`` does not import JAX; the first call
does. Results are ``jax.Array`` objects on the parameters' device.

The model is read from its jaxpr (the program JAX traces from it): dense
layers are the ``dot_general`` operations that contract an input with a 2-D
parameter, and their inputs and output signals are taken by evaluating that
program with taps. The empirical NTK is taken over every leaf of `params`;
the dense weights use the structured form (the Gram matrix of a layer's
inputs times that of the signals back-propagated to its outputs, see
:mod:`infoscope.adapters.torch`), all other leaves per-sample Jacobians
(``jax.vmap`` of ``jax.jacrev``). Each sample is evaluated on its own, so the
NTK is that of the per-sample function even for a model that mixes samples
(which is detected and warned about).
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..backends import check_ntk_memory, to_numpy
from ._common import (
    MEMORY_BUDGET,
    Term,
    block_slices,
    check_batch_size,
    check_layers,
    check_output_mode,
    check_same_sample_shape,
    choose_batch_size,
    group_terms,
    run_blocked,
    structured_kind,
)

__all__ = ["activations", "dense_layers", "empirical_ntk"]

_PREFIX = "infoscope.adapters.jax."

# Call-like primitives whose inner program is followed (a jitted apply_fn, or
# jnp functions that are jitted without inlining).
_CALLS = ("pjit", "jit", "closed_call", "core_call")


def _jax():
    import jax

    return jax


# --------------------------------------------------------------------------- #
# Inputs and the traced program
# --------------------------------------------------------------------------- #


def _check_apply(caller: str, apply_fn: Any) -> None:
    if not callable(apply_fn):
        raise TypeError(
            f"{caller}: `apply_fn` must be a function apply_fn(params, x) (a Flax "
            f"`module.apply`, a stax apply_fn, ...); got {type(apply_fn).__name__}. "
            f"For a PyTorch model use infoscope.adapters.torch."
        )


def _leaf_place(params: Any) -> tuple[Any, Any]:
    """The device and floating dtype of the first floating leaf of `params`."""
    jax = _jax()
    for leaf in jax.tree_util.tree_leaves(params):
        if isinstance(leaf, jax.Array) and jax.numpy.issubdtype(
            leaf.dtype, jax.numpy.floating
        ):
            return next(iter(leaf.devices())), leaf.dtype
    return jax.devices()[0], jax.numpy.zeros(()).dtype


def _as_input(caller: str, name: str, params: Any, X: Any) -> Any:
    jax = _jax()
    jnp = jax.numpy
    device, dtype = _leaf_place(params)
    if isinstance(X, jax.Array):
        devices = X.devices()
        if device not in devices:
            raise ValueError(
                f"{caller}: `{name}` is on device {sorted(map(str, devices))} but "
                f"the parameters are on {str(device)!r}; move one of them first "
                f"(jax.device_put)."
            )
    else:
        a = to_numpy(X)
        if a.dtype.kind not in "biuf":
            raise ValueError(
                f"{caller}: `{name}` must hold numbers; got dtype {a.dtype}."
            )
        X = jax.device_put(
            jnp.asarray(a, dtype=dtype if a.dtype.kind == "f" else None), device
        )
    if X.ndim == 0:
        raise ValueError(
            f"{caller}: `{name}` is a scalar; pass a batch of inputs with the "
            f"samples along the first axis (e.g. `{name}[None]` for one sample)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{caller}: `{name}` has no samples (shape {tuple(X.shape)}).")
    return X


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
    return "/".join(parts)


@dataclass
class _Program:
    """``apply_fn`` traced on a batch: its jaxpr and the flattened params."""

    closed: Any
    leaves: list
    names: list[str]
    treedef: Any


def _trace(caller: str, apply_fn: Any, params: Any, x: Any, name: str) -> _Program:
    jax = _jax()
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = [leaf for _, leaf in flat]
    names = [_path_name(path) for path, _ in flat]

    def flat_fn(*args):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, args[:-1]), args[-1])

    try:
        closed = jax.make_jaxpr(flat_fn)(*leaves, x)
    except Exception as exc:  # the user's function, any error it raises
        raise ValueError(
            f"{caller}: apply_fn(params, x) failed on `{name}` (samples of shape "
            f"{tuple(x.shape[1:])}, dtype {x.dtype}): {type(exc).__name__}: {exc}. "
            f"Pass the params and inputs the model takes, samples along the first "
            f"axis."
        ) from exc
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(
            f"{caller}: apply_fn returns {len(closed.jaxpr.outvars)} arrays; it must "
            f"return one array of outputs (wrap it to select the output, e.g. for "
            f"Flax with mutable collections)."
        )
    out = closed.jaxpr.outvars[0].aval
    if len(out.shape) == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{caller}: apply_fn maps {x.shape[0]} samples to an output of shape "
            f"{tuple(out.shape)}; it must return one output row per sample."
        )
    return _Program(closed, leaves, names, treedef)


def _bind(eqn: Any, invals: list) -> list:
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: list = []
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _inner(eqn: Any) -> Any:
    """The ClosedJaxpr a call-like equation runs, or None."""
    if eqn.primitive.name not in _CALLS:
        return None
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    return inner if hasattr(inner, "jaxpr") and hasattr(inner, "consts") else None


def _evaluate(
    jaxpr: Any, consts: list, args: list, hooks: Any, path: tuple = ()
) -> list:
    """Evaluate `jaxpr` like ``jax.core.eval_jaxpr``, calling ``hooks`` on the way.

    ``hooks(path, eqn, invals, outvals)`` may return replacement outputs;
    call-like equations whose path ``hooks.follow`` contains are evaluated
    equation by equation so that hooks see inside them.
    """
    from jax.extend.core import Literal

    env: dict = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for index, eqn in enumerate(jaxpr.eqns):
        here = (*path, index)
        invals = [read(v) for v in eqn.invars]
        inner = _inner(eqn)
        if inner is not None and here in hooks.follow:
            outvals = _evaluate(inner.jaxpr, list(inner.consts), invals, hooks, here)
        else:
            outvals = _bind(eqn, invals)
        replaced = hooks(here, eqn, invals, outvals)
        if replaced is not None:
            outvals = replaced
        for var, val in zip(eqn.outvars, outvals, strict=True):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


@dataclass(frozen=True)
class _Tap:
    """A dense layer: ``dot_general`` of an input with a 2-D parameter leaf."""

    path: tuple
    leaf: int  # index into the flattened params
    x_pos: int  # which operand is the input (0 or 1)
    x_axis: int  # the input's contracted axis
    w_axis: int  # the weight's contracted axis
    out_w_axis: int  # where the weight's free axis sits in the output
    bias: int | None = None  # a bias leaf added to the output, folded in


def _find_taps(closed: Any, n_leaves: int) -> tuple[list[_Tap], set[int], set]:
    """The dense layers of a traced program.

    Returns the taps, the leaves used anywhere else (those take the generic
    path, and so do the taps on them), and the paths of the call-like
    equations to follow.
    """
    taps: list[_Tap] = []
    other: set[int] = set()
    follow: set = set()
    shaped: dict = {}  # var -> leaf: a 1-D leaf reshaped or broadcast (a bias?)
    candidates: list[tuple] = []  # (tap index, bias leaf, bias aval, uses of h)

    def walk(jaxpr, alias: dict, path: tuple) -> bool:
        found = False
        tap_out: dict = {}
        adds: list[tuple] = []
        for index, eqn in enumerate(jaxpr.eqns):
            here = (*path, index)
            invars = [
                (pos, v) for pos, v in enumerate(eqn.invars) if not _is_literal(v)
            ]
            used = [(pos, alias[v]) for pos, v in invars if v in alias]
            biases = [(pos, shaped[v]) for pos, v in invars if v in shaped]
            if not used and not biases:
                continue
            name = eqn.primitive.name
            unary = len(eqn.invars) == 1
            if biases:
                if unary and name in (
                    "reshape",
                    "broadcast_in_dim",
                    "convert_element_type",
                ):
                    shaped[eqn.outvars[0]] = biases[0][1]
                    continue
                if name == "add" and not used and len(biases) == 1 and len(invars) == 2:
                    pos, leaf = biases[0]
                    h = eqn.invars[1 - pos]
                    if h in tap_out and eqn.outvars[0].aval.shape == h.aval.shape:
                        adds.append((tap_out[h], leaf, eqn.invars[pos].aval, h))
                        continue
                other.update(leaf for _, leaf in biases)
                if not used:
                    continue
            inner = _inner(eqn)
            if inner is not None:
                inner_alias = {inner.jaxpr.invars[pos]: leaf for pos, leaf in used}
                if walk(inner.jaxpr, inner_alias, here):
                    follow.add(here)
                    found = True
                continue
            if name == "convert_element_type" and unary:
                alias[eqn.outvars[0]] = used[0][1]
                continue
            if (
                name in ("reshape", "broadcast_in_dim")
                and unary
                and len(eqn.invars[0].aval.shape) == 1
            ):
                shaped[eqn.outvars[0]] = used[0][1]
                continue
            if name == "dot_general" and len(used) == 1 and len(eqn.invars) == 2:
                (w_pos, leaf) = used[0]
                w, x = eqn.invars[w_pos], eqn.invars[1 - w_pos]
                (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
                w_c = (lc, rc)[w_pos]
                x_c = (lc, rc)[1 - w_pos]
                if (
                    len(w.aval.shape) == 2
                    and len(w_c) == 1
                    and len(x_c) == 1
                    and not lb
                    and not rb
                    and x_c[0] != 0
                    and len(x.aval.shape) >= 2
                ):
                    x_ndim = len(x.aval.shape)
                    out_w_axis = x_ndim - 1 if w_pos == 1 else 0
                    tap_out[eqn.outvars[0]] = len(taps)
                    taps.append(
                        _Tap(
                            here, leaf, 1 - w_pos, int(x_c[0]), int(w_c[0]), out_w_axis
                        )
                    )
                    found = True
                    continue
            other.update(leaf for _, leaf in used)
        for v in jaxpr.outvars:
            if not _is_literal(v) and v in alias:
                other.add(alias[v])
            if not _is_literal(v) and v in shaped:
                other.add(shaped[v])
        if adds:
            uses = Counter(
                v for e in jaxpr.eqns for v in e.invars if not _is_literal(v)
            )
            uses.update(v for v in jaxpr.outvars if not _is_literal(v))
            candidates.extend((t, leaf, aval, uses[h]) for t, leaf, aval, h in adds)
        return found

    top = closed.jaxpr
    walk(top, {top.invars[i]: i for i in range(n_leaves)}, ())
    # A bias folds into its dense layer (a column of ones beside the input)
    # when it is added, alone, to the output of a weight used once, and that
    # output is used nowhere else.
    per_leaf = Counter(leaf for _, leaf, _, _ in candidates)
    taps_per_weight = Counter(tap.leaf for tap in taps)
    for t, leaf, aval, h_uses in candidates:
        tap = taps[t]
        out = _eqn_at(top, tap.path).outvars[0].aval
        axis = tap.out_w_axis
        shape_ok = len(aval.shape) == len(out.shape) and all(
            size == (out.shape[axis] if i == axis else 1)
            for i, size in enumerate(aval.shape)
        )
        if (
            per_leaf[leaf] == 1
            and leaf not in other
            and h_uses == 1
            and taps_per_weight[tap.leaf] == 1
            and shape_ok
        ):
            taps[t] = replace(tap, bias=leaf)
        else:
            other.add(leaf)
    return taps, other, follow


def _dense_taps(apply_fn: Any, params: Any, x: Any, caller: str, name: str):
    """Taps found in the programs traced at two batch sizes, sample axis first.

    A tap counts only if the same equation contracts an input whose first
    axis is the batch at both sizes (so that its rows are samples).
    """
    jax = _jax()
    reps = []
    for b in (2, 3):
        xb = jax.ShapeDtypeStruct((b, *x.shape[1:]), x.dtype)
        prog = _trace(caller, apply_fn, params, xb, name)
        taps, other, follow = _find_taps(prog.closed, len(prog.leaves))
        reps.append((prog, b, taps, other, follow))
    (p2, _, t2, o2, f2), (p3, _, t3, o3, f3) = reps
    if [t.path for t in t2] != [t.path for t in t3]:
        return [], set(range(len(p2.leaves))), set()
    good = []
    for tap2, tap3 in zip(t2, t3, strict=True):
        if tap2 != tap3:
            continue
        ok = True
        for prog, b, tap in ((p2, 2, tap2), (p3, 3, tap3)):
            eqn = _eqn_at(prog.closed.jaxpr, tap.path)
            if eqn.invars[tap.x_pos].aval.shape[0] != b:
                ok = False
        if ok:
            good.append(tap2)
    bad = {t.leaf for t in t2} - {t.leaf for t in good}
    return good, o2 | o3 | bad, f2 | f3


def _eqn_at(jaxpr: Any, path: tuple) -> Any:
    eqn = jaxpr.eqns[path[0]]
    for index in path[1:]:
        eqn = _inner(eqn).jaxpr.eqns[index]
    return eqn


def _flax_linen_module(apply_fn: Any) -> Any:
    """The Flax linen module whose ``apply`` `apply_fn` is, or None."""
    if "flax" not in sys.modules:
        return None
    owner = getattr(apply_fn, "__self__", None)
    if owner is None or getattr(apply_fn, "__name__", "") != "apply":
        return None
    try:
        from flax import linen
    except ImportError:  # pragma: no cover - flax half-installed
        return None
    return owner if isinstance(owner, linen.Module) else None


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def activations(
    apply_fn: Any,
    params: Any,
    X: Any,
    layers: Any = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The outputs of a JAX model's layers on inputs `X`.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x)``, mapping a batch to outputs.
    params : pytree
        The parameters (a Flax variables dict, stax params, ...).
    X : jax.Array or array-like
        Inputs, samples along the first axis.
    layers : str or list of str, optional
        Which layers, by name; by default all of them. For a Flax linen
        ``module.apply`` the layers are its submodules (``"Dense_0"``,
        ``"block/Conv_1"``: the outputs of their ``__call__``, as Flax's
        ``capture_intermediates`` records them). For any other function
        they are the operations of its traced program whose outputs have the
        samples along the first axis, named ``"<op>_<i>"`` in order
        (``"dot_general_0"``, ``"add_0"``, ``"relu_0"``, ...) and prefixed by
        the name scope they ran in, if any.
    batch_size : int, optional
        Samples per call; by default all of `X` at once.

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
    ...     return jnp.tanh(x @ params["w1"]) @ params["w2"]
    >>> params = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
    >>> acts = activations(apply_fn, params, jnp.ones((5, 3)))
    >>> {name: a.shape for name, a in acts.items()}
    {'dot_general_0': (5, 4), 'tanh_0': (5, 4), 'dot_general_1': (5, 2)}
    """
    caller = _PREFIX + "activations"
    jax = _jax()
    _check_apply(caller, apply_fn)
    batch_size = check_batch_size(caller, batch_size)
    X = _as_input(caller, "X", params, X)
    n = X.shape[0]
    slices = block_slices(n, batch_size or n)
    module = _flax_linen_module(apply_fn)
    if module is not None:
        run = _linen_intermediates(caller, module, params)
    else:
        run = _program_intermediates(caller, apply_fn, params, X)
    host = np.asarray(X)  # blocks cut on the host: no compile per slice shape
    blocks = [run(host[block]) for block in slices]
    names = check_layers(caller, layers, list(blocks[0]))
    if len(blocks) == 1:
        return {name: blocks[0][name] for name in names}
    return {
        name: jax.numpy.concatenate([b[name] for b in blocks], axis=0) for name in names
    }


def _linen_intermediates(caller: str, module: Any, params: Any):
    jax = _jax()

    @jax.jit
    def capture(params, x):
        return module.apply(
            params, x, capture_intermediates=True, mutable=["intermediates"]
        )[1]

    def run(x):
        try:
            state = capture(params, x)
        except Exception as exc:  # the user's model, any error
            raise ValueError(
                f"{caller}: the Flax module could not be applied to `X` (samples "
                f"of shape {tuple(x.shape[1:])}): {type(exc).__name__}: {exc}"
            ) from exc
        found = {}
        flat = jax.tree_util.tree_flatten_with_path(state.get("intermediates", {}))[0]
        for path, value in flat:
            names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
            # .../<submodule>/__call__/<index of the sown value>
            if len(names) < 3 or names[-2] != "__call__" or names[-1] != "0":
                continue
            layer = "/".join(names[:-2])
            if value.ndim and value.shape[0] == x.shape[0]:
                found[layer] = value
        return found

    return run


def _program_intermediates(caller: str, apply_fn: Any, params: Any, X: Any):
    """Names and a runner for the per-sample outputs of a traced program."""
    jax = _jax()
    progs = {b: _trace(caller, apply_fn, params, _abstract(X, b), "X") for b in (2, 3)}
    names: dict[tuple, str] = {}
    counts: dict[str, int] = {}

    def label(eqn):
        op = (
            eqn.params.get("name")
            if eqn.primitive.name in (*_CALLS, "custom_jvp_call", "custom_vjp_call")
            else None
        )
        op = op or eqn.primitive.name
        stack = str(eqn.source_info.name_stack)
        return f"{stack}/{op}" if stack else op

    follow: set = set()

    def collect(jaxpr2, jaxpr3, path, depends2):
        for index, (e2, e3) in enumerate(zip(jaxpr2.eqns, jaxpr3.eqns, strict=False)):
            here = (*path, index)
            dep = [not _is_literal(v) and v in depends2 for v in e2.invars]
            if not any(dep):
                continue
            for v in e2.outvars:
                depends2.add(v)
            inner2, inner3 = _inner(e2), _inner(e3)
            if inner2 is not None and inner3 is not None:
                follow.add(here)
                inner_dep = {
                    v for v, d in zip(inner2.jaxpr.invars, dep, strict=True) if d
                }
                collect(inner2.jaxpr, inner3.jaxpr, here, inner_dep)
                continue
            out2, out3 = e2.outvars[0].aval, e3.outvars[0].aval
            if (
                len(e2.outvars) == 1
                and getattr(out2, "shape", ())[:1] == (2,)
                and getattr(out3, "shape", ())[:1] == (3,)
            ):
                base = label(e2)
                count = counts.get(base, 0)
                counts[base] = count + 1
                names[here] = f"{base}_{count}"

    j2, j3 = progs[2].closed.jaxpr, progs[3].closed.jaxpr
    if len(j2.eqns) != len(j3.eqns):
        raise ValueError(
            f"{caller}: apply_fn traces to different programs for different batch "
            f"sizes; its layers cannot be named. Pass `layers` of a Flax module "
            f"or compute the activations in the model."
        )
    collect(j2, j3, (), {j2.invars[-1]})

    class Hooks:
        def __init__(self, found):
            self.follow = follow
            self.found = found

        def __call__(self, path, eqn, invals, outvals):
            if path in names:
                self.found[names[path]] = outvals[0]
            return None

    compiled: dict = {}

    def run(x):
        prog = _trace(caller, apply_fn, params, x, "X")
        key = str(prog.closed.jaxpr)
        if key not in compiled:

            def evaluate(leaves, consts, x, jaxpr=prog.closed.jaxpr):
                found: dict = {}
                _evaluate(jaxpr, consts, [*leaves, x], Hooks(found))
                return {name: found[name] for name in names.values() if name in found}

            compiled[key] = jax.jit(evaluate)
        found = compiled[key](prog.leaves, list(prog.closed.consts), x)
        return {name: found[name] for name in names.values() if name in found}

    return run


def _abstract(X: Any, b: int) -> Any:
    """A stand-in for `b` samples of `X` (tracing needs only shapes)."""
    return _jax().ShapeDtypeStruct((b, *X.shape[1:]), X.dtype)


def _is_literal(v: Any) -> bool:
    from jax.extend.core import Literal

    return isinstance(v, Literal)


def dense_layers(apply_fn: Any, params: Any, X: Any) -> list[tuple[str, Any, Any]]:
    """The dense layers of a JAX model with the inputs they see on `X`.

    What :class:`infoscope.NodeSNR` takes: for each 2-D parameter that the
    model contracts with its input (a Flax ``Dense`` kernel, a stax ``Dense``
    weight, ``x @ W`` in a plain function), its name (the parameter's path
    in `params`), its input activations and the weight as ``d_in x d_out``.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x)``.
    params : pytree
        The parameters.
    X : jax.Array or array-like
        Inputs, samples along the first axis.

    Returns
    -------
    list of (str, jax.Array, jax.Array)
        ``(name, inputs, W)`` in the order the layers are applied; ``inputs``
        is ``(n, d_in)`` (a layer applied to more axes has them folded into
        rows; one used twice has both inputs stacked).

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
    _check_apply(caller, apply_fn)
    X = _as_input(caller, "X", params, X)
    taps, _, follow = _dense_taps(apply_fn, params, X, caller, "X")
    if not taps:
        raise ValueError(
            f"{caller}: found no dense layer (a 2-D parameter contracted with the "
            f"input by dot_general, as in Flax Dense or x @ W) in apply_fn."
        )
    prog = _trace(caller, apply_fn, params, X, "X")
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

    def evaluate(leaves, consts, x):
        seen: dict[int, list] = {}
        _evaluate(prog.closed.jaxpr, consts, [*leaves, x], Hooks(seen))
        return seen

    recorded = jax.jit(evaluate)(prog.leaves, list(prog.closed.consts), X)
    result = []
    for tap in taps:
        if tap.leaf not in recorded:
            continue
        xs = recorded.pop(tap.leaf)
        W = prog.leaves[tap.leaf]
        W = W if tap.w_axis == 0 else W.T
        result.append((prog.names[tap.leaf], jnp.concatenate(xs, axis=0), W))
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
) -> Any:
    """The empirical neural tangent kernel of a JAX model.

    ``Theta[(i, a), (j, b)] = sum_p df_a(x_i)/dtheta_p df_b(x_j)/dtheta_p``
    over every leaf ``theta`` of `params`, each sample evaluated on its own.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x)``; all output axes after the first are
        flattened into ``k`` outputs.
    params : pytree
        The parameters; not modified.
    X1 : jax.Array or array-like
        ``n1`` inputs, samples along the first axis.
    X2 : jax.Array or array-like, optional
        ``n2`` inputs of the same shape; by default `X1` (the symmetric case,
        where each block pair is contracted once and mirrored).
    output_mode : {"mean", "sum", "full"}, default="mean"
        ``"mean"``: ``(1/k) sum_a Theta[(i, a), (j, a)]``, ``n1 x n2``
        (neural-tangents' ``trace_axes=(-1,)``). ``"sum"``: the NTK of the
        summed outputs, ``sum_ab Theta[(i, a), (j, b)]``. ``"full"``:
        ``n1 k x n2 k``, sample-major (row ``i k + a``).
    batch_size : int, optional
        Samples per block; by default chosen from the model's size. Each
        block is compiled once per shape (the last block is padded).

    Returns
    -------
    jax.Array
        On the parameters' device.

    Raises
    ------
    ValueError
        If `output_mode` or `batch_size` is invalid, `X2`'s samples differ in
        shape from `X1`'s, or apply_fn does not take the inputs.

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
    _check_apply(caller, apply_fn)
    mode = check_output_mode(caller, output_mode)
    batch_size = check_batch_size(caller, batch_size)
    X1 = _as_input(caller, "X1", params, X1)
    if X2 is not None:
        X2 = _as_input(caller, "X2", params, X2)
        check_same_sample_shape(caller, X1, X2)
    ntk = _JaxNtk(caller, apply_fn, params, X1, X2, mode, batch_size)
    _guard_ntk_memory(ntk, X1, X2, caller)
    return ntk.compute()


def _guard_ntk_memory(ntk: Any, X1: Any, X2: Any, caller: str) -> None:
    """The output and the features the engine keeps must fit (backends' guard)."""
    import jax.numpy as jnp

    n1, n2 = X1.shape[0], (X1 if X2 is None else X2).shape[0]
    features = sum(t.bytes_per_sample for t in ntk.terms) * (n1 + n2)
    check_ntk_memory(
        n1 * ntk.kk,
        n2 * ntk.kk,
        ntk.dtype,
        working_set=int(min(features, MEMORY_BUDGET)),
        xp=jnp,
        device=next(iter(X1.devices())),
        caller=caller,
        full=ntk.kk > 1,
    )


class _JaxNtk:
    """One empirical NTK computation (see :func:`empirical_ntk`)."""

    def __init__(self, caller, apply_fn, params, X1, X2, mode, batch_size):
        jax = _jax()
        self.jax = jax
        self.jnp = jax.numpy
        self.caller = caller
        self.apply_fn = apply_fn
        self.X = (X1, X2)
        self.mode = mode
        self.batch_size = batch_size
        one = jax.ShapeDtypeStruct((1, *X1.shape[1:]), X1.dtype)
        self.prog = _trace(caller, apply_fn, params, one, "X1")
        self.leaves = self.prog.leaves
        out = self.prog.closed.jaxpr.outvars[0].aval
        self.k = 1 if mode == "sum" else int(np.prod(out.shape[1:], dtype=int))
        self.kk = self.k if mode == "full" else 1
        self.dtype = out.dtype
        self.itemsize = np.dtype(out.dtype).itemsize
        self._warn_if_mixing(params)
        taps, other, follow = _dense_taps(apply_fn, params, X1, caller, "X1")
        self.follow = follow
        self.taps = [t for t in taps if t.leaf not in other]
        mine = _find_taps(self.prog.closed, len(self.leaves))
        if [t.path for t in mine[0]] != [t.path for t in taps] or mine[2] != follow:
            self.taps = []  # the program differs with the batch size: no shortcut
        self.terms = self._plan()

    def _outputs(self, out):
        return _flat_outputs(out, self.mode)

    def _warn_if_mixing(self, params):
        X1, X2 = self.X
        rows = np.asarray(X1[:3] if X1.shape[0] >= 3 or X2 is None else X1)
        if rows.shape[0] < 3 and X2 is not None:
            rows = np.concatenate([rows, np.asarray(X2)])[:3]
        m = rows.shape[0]
        if m < 2:
            return
        apply = self.jax.jit(self.apply_fn)  # one compile, not one per operation
        batch = np.asarray(self._outputs(apply(params, rows)))
        singles = np.concatenate(
            [
                np.asarray(self._outputs(apply(params, rows[i : i + 1])))
                for i in range(m)
            ]
        )
        scale = float(np.abs(batch).max()) + 1.0
        tol = 1000 * float(np.finfo(batch.dtype).eps) * scale
        if float(np.abs(batch - singles).max()) > tol:
            warnings.warn(
                f"{self.caller}: the model's outputs mix samples (a batch's "
                f"outputs differ from those of its samples taken one at a time, "
                f"as with BatchNorm on batch statistics); the NTK computed is that "
                f"of the per-sample function, each sample evaluated on its own.",
                RuntimeWarning,
                stacklevel=4,
            )

    # -- which leaves take which path ---------------------------------------

    def _plan(self) -> list[Term]:
        full = self.mode == "full"
        terms = []
        structured = set()
        by_leaf: dict[int, list[_Tap]] = {}
        for tap in self.taps:
            by_leaf.setdefault(tap.leaf, []).append(tap)
        prog = self.prog
        for leaf, taps in by_leaf.items():
            W = prog.leaves[leaf]
            n_in = W.shape[taps[0].w_axis] + int(taps[0].bias is not None)
            n_out = W.shape[1 - taps[0].w_axis]
            positions = 0
            for tap in taps:
                x = _eqn_at(prog.closed.jaxpr, tap.path).invars[tap.x_pos].aval
                positions += int(np.prod(x.shape, dtype=int)) // x.shape[tap.x_axis]
            kind = structured_kind(positions, n_in, n_out, self.k, full)
            per = (
                positions * (n_in + self.k * n_out)
                if kind == "gram"
                else self.k * n_in * n_out
            )
            terms.append(
                Term(
                    prog.names[leaf],
                    kind,
                    per * self.itemsize,
                    key=leaf,
                    info={"taps": taps, "positions": positions},
                )
            )
            structured.add(leaf)
            structured.update(t.bias for t in taps if t.bias is not None)
        for leaf, value in enumerate(prog.leaves):
            if leaf in structured:
                continue
            size = int(np.prod(np.shape(value), dtype=int))
            if size == 0:
                continue
            terms.append(
                Term(
                    prog.names[leaf], "generic", self.k * size * self.itemsize, key=leaf
                )
            )
        return terms

    # -- features of one block ----------------------------------------------

    def _feature_fn(self, group: tuple):
        """A jitted ``f(leaves, consts, xb)``: a block's features for `group`.

        The parameters are arguments, not constants, so the compiled function
        is shared (see :data:`_COMPILED`) by every call whose traced program,
        group and output mode are the same, as in a training loop.
        """
        closed = self.prog.closed
        members = [t for t in self.terms if t.name in group]
        structured = [t for t in members if t.kind != "generic"]
        generic = tuple(t.key for t in members if t.kind == "generic")
        key = (
            str(closed.jaxpr),
            tuple((t.kind, tuple(t.info["taps"])) for t in structured),
            generic,
            tuple(sorted(self.follow)),
            self.mode == "sum",
        )
        fn = _COMPILED.get(key)
        if fn is None:
            fn = _make_feature_fn(
                closed.jaxpr, structured, generic, self.follow, self.k, self.mode
            )
            _COMPILED[key] = fn
            while len(_COMPILED) > 16:
                _COMPILED.pop(next(iter(_COMPILED)))
        return fn

    def features(self, side: int, block: slice, group: list[Term]) -> tuple:
        key = tuple(t.name for t in group)
        fn = self._fns.get(key)
        if fn is None:
            fn = self._fns[key] = self._feature_fn(key)
        # Blocks are cut on the host and padded to one shape: slicing device
        # arrays would compile an operation per block shape. Padded rows stay
        # in the features (one compiled contraction for every pair) and are
        # cut from the contracted blocks.
        x = self.host[side][block]
        b = x.shape[0]
        if b < self.block:
            x = np.concatenate([x, np.zeros((self.block - b, *x.shape[1:]), x.dtype)])
        x = self.jax.device_put(x, self.device)
        return fn(self.leaves, list(self.prog.closed.consts), x), b

    def contract(self, fi: tuple, fj: tuple, group: list[Term]) -> Any:
        (feats_i, bi), (feats_j, bj) = fi, fj
        block = np.asarray(self._contract(feats_i, feats_j))
        return block[: bi * self.kk, : bj * self.kk]

    def compute(self) -> Any:
        X1, X2 = self.X
        n1 = X1.shape[0]
        n2 = n1 if X2 is None else X2.shape[0]
        per_sample = sum(t.bytes_per_sample for t in self.terms)
        b = self.batch_size
        if b is None:
            b = choose_batch_size(max(n1, n2), per_sample)
            cap = int((2**26 / (4 * self.itemsize)) ** 0.5) // self.kk
            b = max(1, min(b, max(cap, 16)))
        self.block = min(b, max(n1, n2))
        self.host = (np.asarray(X1), None if X2 is None else np.asarray(X2))
        self.device = _leaf_place(self.leaves)[0]
        rows = block_slices(n1, b)
        cols = None if X2 is None else block_slices(n2, b)
        groups = group_terms(self.terms, n1 + (0 if X2 is None else n2), MEMORY_BUDGET)
        self._fns: dict = {}
        self._contract = _contract_fn(self.k, self.mode == "full")
        kk = self.kk
        # Assembled on the host, then put on the device once: no compiled
        # operation per block shape.
        out = np.zeros((n1 * kk, n2 * kk), dtype=np.dtype(self.dtype))
        col_slices = rows if cols is None else cols

        def store(i, j, block):
            r = slice(rows[i].start * kk, rows[i].stop * kk)
            c = slice(col_slices[j].start * kk, col_slices[j].stop * kk)
            out[r, c] += block
            if cols is None and i != j:
                out[c, r] += block.T

        run_blocked(self.features, self.contract, store, groups, rows, cols)
        self.host = (None, None)
        if self.mode == "mean":
            out /= self.k
        return self.jax.device_put(out, self.device)


# Jitted feature functions by (program, plan); a few are kept (see _feature_fn).
_COMPILED: dict = {}


def _flat_outputs(out: Any, mode: str) -> Any:
    """Outputs as (b, k): flattened, or summed in "sum" mode."""
    out = out.reshape(out.shape[0], -1)
    return out.sum(axis=1, keepdims=True) if mode == "sum" else out


def _make_feature_fn(jaxpr, structured, generic, follow, k, mode):
    jax = _jax()
    jnp = jax.numpy
    tap_list = [tap for t in structured for tap in t.info["taps"]]
    index = {tap.path: i for i, tap in enumerate(tap_list)}
    out_avals = [_eqn_at(jaxpr, tap.path).outvars[0].aval for tap in tap_list]

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

    def per_sample(eps, gen, leaves, consts, x):
        args = list(leaves)
        for leaf, value in zip(generic, gen, strict=True):
            args[leaf] = value
        record = [None] * len(tap_list)
        (out,) = _evaluate(jaxpr, consts, [*args, x[None]], Hooks(eps, record))
        return _flat_outputs(out, mode)[0], record

    jac = jax.vmap(
        jax.jacrev(per_sample, argnums=(0, 1), has_aux=True),
        in_axes=(None, None, None, None, 0),
    )

    def features(leaves, consts, xb):
        eps0 = [jnp.zeros(a.shape, a.dtype) for a in out_avals]
        gen0 = [leaves[leaf] for leaf in generic]
        (j_eps, j_gen), record = jac(eps0, gen0, leaves, consts, xb)
        b = xb.shape[0]
        feats, jacobians = [], []
        for t in structured:
            parts_a, parts_g = [], []
            for tap in t.info["taps"]:
                i = index[tap.path]
                x = jnp.moveaxis(record[i], tap.x_axis + 1, -1)
                x = x.reshape(b, -1, x.shape[-1])
                if tap.bias is not None:
                    x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
                parts_a.append(x)
                g = jnp.moveaxis(j_eps[i], tap.out_w_axis + 2, -1)
                parts_g.append(g.reshape(b, k, -1, g.shape[-1]))
            A = jnp.concatenate(parts_a, axis=1)
            G = jnp.concatenate(parts_g, axis=2)
            if t.kind == "gram":
                feats.append((A, G))
            else:
                J = jnp.einsum("bpi,bkpo->bkio", A, G)
                jacobians.append(J.reshape(b, k, -1))
        jacobians.extend(j.reshape(b, k, -1) for j in j_gen)
        if jacobians:
            feats.append(jnp.concatenate(jacobians, axis=2))
        return feats

    return jax.jit(features)


def _contract_fn(k: int, full: bool):
    """The jitted contraction of two blocks' features (one per k and mode)."""
    key = ("contract", k, full)
    fn = _COMPILED.get(key)
    if fn is None:
        jax = _jax()
        fn = _COMPILED[key] = jax.jit(
            lambda fi, fj: _contract(jax.numpy, fi, fj, k, full)
        )
    return fn


def _contract(jnp: Any, fi: list, fj: list, k: int, full: bool) -> Any:
    total = None
    for a, b in zip(fi, fj, strict=True):
        if isinstance(a, tuple):
            block = _gram_block(jnp, a, b, full)
        else:
            ni, nj = a.shape[0], b.shape[0]
            if full:
                block = a.reshape(ni * k, -1) @ b.reshape(nj * k, -1).T
            else:
                block = a.reshape(ni, -1) @ b.reshape(nj, -1).T
        total = block if total is None else total + block
    return total


def _gram_block(jnp: Any, fa: tuple, fb: tuple, full: bool) -> Any:
    """``sum_pq (A_ip . A_jq)(G_iap . G_jbq)`` for one layer and two blocks."""
    Ai, Gi = fa
    Aj, Gj = fb
    ni, k, P, _ = Gi.shape
    nj = Gj.shape[0]
    if P == 1:
        AA = Ai[:, 0] @ Aj[:, 0].T
        if not full:
            return AA * (Gi.reshape(ni, -1) @ Gj.reshape(nj, -1).T)
        GG = (Gi.reshape(ni * k, -1) @ Gj.reshape(nj * k, -1).T).reshape(ni, k, nj, k)
        return (GG * AA[:, None, :, None]).reshape(ni * k, nj * k)
    AA = jnp.einsum("ipd,jqd->ipjq", Ai, Aj)
    if not full:
        GG = jnp.einsum("iapo,jaqo->ipjq", Gi, Gj)
        return (AA * GG).sum(axis=(1, 3))
    GG = jnp.einsum("iapo,jbqo->iajbpq", Gi, Gj)
    return jnp.einsum("iajbpq,ipjq->iajb", GG, AA).reshape(ni * k, nj * k)
