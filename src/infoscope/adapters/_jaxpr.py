"""Reading a JAX model from its jaxpr: evaluation with taps, dense layers, names.

What :mod:`infoscope.adapters.jax` needs from the program JAX traces from a
model: an evaluator that calls hooks on every equation (to record a layer's
input and add a zero to its output), the dense layers (``dot_general`` of an
input with a 2-D parameter, with a bias added to the output folded in), and
readable names for the operations (``relu``, ``gelu``, ``conv``), taken from
the functions that emitted them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "Op",
    "Tap",
    "eqn_at",
    "evaluate",
    "find_taps",
    "inner_program",
    "is_literal",
    "op_label",
    "per_sample_ops",
]

# Call-like primitives whose inner program is followed (a jitted apply_fn, or
# jnp functions that are jitted without inlining).
CALLS = ("pjit", "jit", "closed_call", "core_call")


def bind(eqn: Any, invals: list) -> list:
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: list = []
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def inner_program(eqn: Any) -> Any:
    """The ClosedJaxpr a call-like equation runs, or None."""
    if eqn.primitive.name not in CALLS:
        return None
    program = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if hasattr(program, "jaxpr") and hasattr(program, "consts"):
        return program
    return None


def evaluate(
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
        inner = inner_program(eqn)
        if inner is not None and here in hooks.follow:
            outvals = evaluate(inner.jaxpr, list(inner.consts), invals, hooks, here)
        else:
            outvals = bind(eqn, invals)
        replaced = hooks(here, eqn, invals, outvals)
        if replaced is not None:
            outvals = replaced
        for var, val in zip(eqn.outvars, outvals, strict=True):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


@dataclass(frozen=True)
class Tap:
    """A dense layer: ``dot_general`` of an input with a 2-D parameter leaf."""

    path: tuple
    leaf: int  # index into the flattened params
    x_pos: int  # which operand is the input (0 or 1)
    x_axis: int  # the input's contracted axis
    w_axis: int  # the weight's contracted axis
    out_w_axis: int  # where the weight's free axis sits in the output
    bias: int | None = None  # a bias leaf added to the output, folded in


def find_taps(closed: Any, n_leaves: int) -> tuple[list[Tap], set[int], set]:
    """The dense layers of a traced program.

    Returns the taps, the leaves used anywhere else (those take the generic
    path, and so do the taps on them), and the paths of the call-like
    equations to follow.
    """
    taps: list[Tap] = []
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
            invars = [(pos, v) for pos, v in enumerate(eqn.invars) if not is_literal(v)]
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
            inner = inner_program(eqn)
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
                        Tap(here, leaf, 1 - w_pos, int(x_c[0]), int(w_c[0]), out_w_axis)
                    )
                    found = True
                    continue
            other.update(leaf for _, leaf in used)
        for v in jaxpr.outvars:
            if not is_literal(v) and v in alias:
                other.add(alias[v])
            if not is_literal(v) and v in shaped:
                other.add(shaped[v])
        if adds:
            uses = Counter(v for e in jaxpr.eqns for v in e.invars if not is_literal(v))
            uses.update(v for v in jaxpr.outvars if not is_literal(v))
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
        out = eqn_at(top, tap.path).outvars[0].aval
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


def eqn_at(jaxpr: Any, path: tuple) -> Any:
    eqn = jaxpr.eqns[path[0]]
    for index in path[1:]:
        eqn = inner_program(eqn).jaxpr.eqns[index]
    return eqn


def is_literal(v: Any) -> bool:
    from jax.extend.core import Literal

    return isinstance(v, Literal)


# --------------------------------------------------------------------------- #
# Readable names for the operations of a program
# --------------------------------------------------------------------------- #

# Primitives renamed for reading; the others keep their name.
_PRIMITIVES = {
    "dot_general": "dot",
    "conv_general_dilated": "conv",
    "logistic": "sigmoid",
}

# Primitives that are activation functions on their own (jnp.tanh, ...).
_ACTIVATION_PRIMITIVES = ("tanh", "logistic")

_NN_FILE = "jax/_src/nn/functions.py"


@dataclass(frozen=True)
class Op:
    """One operation of a traced program, as a reader names it.

    Attributes
    ----------
    path : tuple
        Where its output is computed (see :func:`evaluate`).
    scope : str
        The name scope it ran in (a Flax module's path, a ``jax.named_scope``).
    name : str
        The function that emitted it: a ``jax.nn`` function (``relu``,
        ``gelu``), a jitted function's name, or the primitive's
        (``dot``, ``conv``, ``tanh``, ``add``).
    activation : bool
        Whether it is an activation function (``jax.nn``, ``tanh``).
    library : bool
        Whether it was called from inside Flax (a layer's own arithmetic)
        rather than by the model's code.
    """

    path: tuple
    scope: str
    name: str
    activation: bool
    library: bool


def _frames(eqn: Any) -> list[tuple[str, str, int]]:
    """``(file, function, line)`` of the Python frames that emitted `eqn`."""
    traceback = getattr(eqn.source_info, "traceback", None)
    frames = getattr(traceback, "frames", None) or []
    return [(f.file_name, f.function_name, f.line_num) for f in frames]


def _in(path: str, package: str) -> bool:
    path = path.replace("\\", "/")
    return f"/{package}/" in path or path.startswith(f"{package}/")


def _called_name(eqn: Any) -> tuple[str | None, str]:
    """The name and source file of the function a call-like equation runs."""
    name = eqn.params.get("name")
    program = eqn.params.get("call_jaxpr", eqn.params.get("jaxpr"))
    info = getattr(getattr(program, "jaxpr", None), "debug_info", None)
    source = str(getattr(info, "func_src_info", "") or "")
    if not name and source:
        name = source.split(" at ")[0]
    return name, source


def op_label(eqn: Any) -> tuple[str, bool, bool, tuple]:
    """``(name, activation, library, call site)`` of one equation (see Op)."""
    frames = _frames(eqn)
    site = next(
        ((f, line) for f, _, line in frames if not _in(f, "jax")),
        ("", 0),
    )
    library = _in(site[0], "flax") or _in(site[0], "keras")
    primitive = eqn.primitive.name
    nn = [fn for f, fn, _ in frames if f.replace("\\", "/").endswith(_NN_FILE)]
    if primitive in (*CALLS, "custom_jvp_call", "custom_vjp_call"):
        name, source = _called_name(eqn)
        if name:
            return name, _NN_FILE in source.replace("\\", "/"), library, site
    if nn:
        return nn[-1], True, library, site
    activation = primitive in _ACTIVATION_PRIMITIVES
    return _PRIMITIVES.get(primitive, primitive), activation, library, site


def per_sample_ops(
    jaxpr2: Any, jaxpr3: Any, inputs2: set, inputs3: set
) -> tuple[list[Op], set]:
    """The operations whose outputs have the samples along their first axis.

    `jaxpr2` and `jaxpr3` are one program traced at batch sizes 2 and 3 (an
    output counts as per sample if its first axis is 2, then 3), `inputs2`
    and `inputs3` their input variables. The equations one function call
    emitted (the eight of an inlined ``gelu``) form one operation, whose
    output is the last one's. Returns the operations in program order and
    the paths of the call-like equations followed into.
    """
    ops: list[Op] = []
    follow: set = set()

    def collect(j2, j3, path, depends2, depends3):
        group: tuple | None = None
        for index, (e2, e3) in enumerate(zip(j2.eqns, j3.eqns, strict=False)):
            here = (*path, index)
            dep2 = [not is_literal(v) and v in depends2 for v in e2.invars]
            dep3 = [not is_literal(v) and v in depends3 for v in e3.invars]
            if not any(dep2):
                continue
            depends2.update(e2.outvars)
            depends3.update(e3.outvars)
            inner2, inner3 = inner_program(e2), inner_program(e3)
            name, activation, library, site = op_label(e2)
            if inner2 is not None and inner3 is not None and not _named_call(e2):
                follow.add(here)
                collect(
                    inner2.jaxpr,
                    inner3.jaxpr,
                    here,
                    {v for v, d in zip(inner2.jaxpr.invars, dep2, strict=True) if d},
                    {v for v, d in zip(inner3.jaxpr.invars, dep3, strict=True) if d},
                )
                group = None
                continue
            out2, out3 = e2.outvars[0].aval, e3.outvars[0].aval
            per_sample = (
                len(e2.outvars) == 1
                and getattr(out2, "shape", ())[:1] == (2,)
                and getattr(out3, "shape", ())[:1] == (3,)
                and _floating(out2)
            )
            key = (str(e2.source_info.name_stack), name, site)
            if per_sample:
                if group == key and ops and ops[-1].path[:-1] == path:
                    ops.pop()  # the same call goes on: its output is this one's
                ops.append(Op(here, key[0], name, activation, library))
                group = key
            elif group != key:
                group = None

    collect(jaxpr2, jaxpr3, (), set(inputs2), set(inputs3))
    return ops, follow


def _floating(aval: Any) -> bool:
    """Activations are floating arrays (masks and indices are not)."""
    import jax.numpy as jnp

    try:
        return bool(jnp.issubdtype(aval.dtype, jnp.floating))
    except TypeError:  # extended dtypes (RNG keys)
        return False


def _named_call(eqn: Any) -> bool:
    """A jitted ``jax.nn`` function: one operation, not a program to enter."""
    name, source = _called_name(eqn)
    return bool(name) and _NN_FILE in source.replace("\\", "/")
