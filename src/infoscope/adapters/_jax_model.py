"""Reading a JAX model: its trainable parameters, its inputs, its program.

What :mod:`infoscope.adapters.jax` and its NTK (:mod:`._jax_ntk`) share: the
model as a function of its trainable parameters and its fixed state
(:class:`Model`, for Flax linen and NNX, stax and plain functions), inputs
as JAX arrays, the program traced from it, and its dense layers.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..backends import to_numpy
from ._common import select_output
from ._inputs import Inputs
from ._jaxpr import eqn_at, find_taps


def import_jax():
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


def flax_linen_module(apply_fn: Any) -> Any:
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


def import_nnx() -> Any:
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


class Model:
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
        jax = import_jax()
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
        jax = import_jax()
        _check_apply(caller, apply_fn)
        linen = flax_linen_module(apply_fn)
        nnx = import_nnx()
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
        return leaf_place(self.trainable)


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
    jnp = import_jax().numpy
    try:
        return bool(jnp.issubdtype(dtype, jnp.inexact))
    except TypeError:  # extended dtypes (RNG keys)
        return False


def leaf_place(params: Any) -> tuple[Any, Any]:
    """The device and floating dtype of the first floating leaf of `params`."""
    jax = import_jax()
    for leaf in jax.tree_util.tree_leaves(params):
        if isinstance(leaf, jax.Array) and _is_floating(leaf):
            return next(iter(leaf.devices())), leaf.dtype
    return jax.devices()[0], jax.numpy.zeros(()).dtype


def as_input(caller: str, name: str, place: tuple[Any, Any], X: Any) -> Inputs:
    """`X` as JAX arrays on `place` (the parameters' device and float dtype)."""
    jax = import_jax()
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
class Program:
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


def abstract_inputs(X: Inputs, b: int) -> list:
    """Stand-ins for `b` samples of each array of `X` (tracing needs shapes)."""
    jax = import_jax()
    return [jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for a in X.arrays]


def trace(
    caller: str,
    model: Model,
    X: Inputs,
    arrays: list,
    name: str,
    fn: Any = None,
) -> Program:
    """`model` traced on `arrays` (in the structure of `X`).

    With the default `fn` (the selected output), checks that the program
    returns one array with a row per sample.
    """
    jax = import_jax()
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
    return Program(closed, leaves, names, fixed, out_tree)


def _apply_error(caller: str, X: Inputs, name: str, exc: Exception) -> ValueError:
    return ValueError(
        f"{caller}: apply_fn(params, x) failed on `{name}` ({X.describe()}): "
        f"{type(exc).__name__}: {exc}. Pass the params and inputs the model "
        f"takes, samples along the first axis."
    )


def dense_taps(model: Model, X: Inputs, caller: str, name: str):
    """Taps found in the programs traced at two batch sizes, sample axis first.

    A tap counts only if the same equation contracts an input whose first
    axis is the batch at both sizes (so that its rows are samples).
    """
    reps = []
    for b in (2, 3):
        prog = trace(caller, model, X, abstract_inputs(X, b), name)
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


def layer_name(weight: str) -> str:
    """A dense layer's name from its weight's path (``Dense_0/kernel``: ``Dense_0``)."""
    parts = weight.split("/")
    if len(parts) > 1 and parts[-1] in ("kernel", "weight", "w", "W"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[0] == "params":
        parts = parts[1:]
    return "/".join(parts)
