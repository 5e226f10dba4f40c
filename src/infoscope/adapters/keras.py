"""Keras adapter: activations, dense layers and empirical NTKs of a Keras 3 model.

A built ``keras.Model`` (Sequential, functional or subclassed) on the JAX or
PyTorch backend. ``import infoscope.adapters.keras`` does not import Keras;
the functions use the Keras the model comes from, so its backend is the one
chosen (``KERAS_BACKEND``) when Keras was first imported. Results are the
backend's own arrays: ``jax.Array`` for JAX, ``torch.Tensor`` for PyTorch, on
the device of the model's weights.

Every function runs the model in inference mode (``training=False``: dropout
off, BatchNormalization on its moving statistics) and changes nothing in it:
its weights, their ``trainable`` flags and (on PyTorch) its modules'
``training`` flags are left as they were, and no autograd graph outlives a
call. Layer outputs and inputs are read by wrapping the layers' ``call``
methods for the duration of one call (Keras has no forward hooks), so
subclassed models work as well as functional ones.

The empirical NTK is taken over the model's trainable weights
(``model.trainable_variables``) by the JAX or PyTorch adapter, given the
model as a pure function of those weights built on
``model.stateless_call(..., training=False)``:

- JAX: ``apply_fn(params, x)`` with ``params`` the trainable weights by
  path, passed to :func:`infoscope.adapters.jax.empirical_ntk`, so the
  ``Dense`` kernels are contracted in their structured form.
- PyTorch: a ``torch.nn.Module`` whose parameters are the trainable weights
  (sharing their memory), passed to
  :func:`infoscope.adapters.torch.empirical_ntk`; every weight goes through
  per-sample Jacobians there. (A Keras model is itself a
  ``torch.nn.Module``, but its layers read their weights from their Keras
  variables, not from the module's parameter table, so the PyTorch adapter
  cannot substitute them and would return a zero kernel.)

The TensorFlow, NumPy and OpenVINO backends are not supported.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from . import jax as _jax_adapter
from . import torch as _torch_adapter
from ._common import (
    LayerOutputs,
    check_batch_size,
    check_layers,
    check_output_mode,
    check_pool,
    pool_activations,
    select_output,
)
from ._inputs import Inputs, check_same_inputs
from ._jax_model import Model, as_input, leaf_place
from ._ntk import block_slices

__all__ = ["activations", "dense_layers", "empirical_ntk"]

_PREFIX = "infoscope.adapters.keras."

_BACKENDS = ("jax", "torch")

_MISSING = object()


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #


def _check_model(caller: str, model: Any) -> tuple[Any, str]:
    """Keras and the backend name, if `model` is a built Keras 3 model there.

    Keras is taken from ``sys.modules``: a Keras model exists only once Keras
    is imported, so nothing is imported to reject another object.
    """
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, getattr(keras, "Model", ())):
        raise TypeError(
            f"{caller}: `model` must be a Keras 3 model (a keras.Model: "
            f"Sequential, functional or subclassed); got {type(model).__name__}. "
            f"For a torch.nn.Module use infoscope.adapters.torch, for a JAX "
            f"function infoscope.adapters.jax."
        )
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise ValueError(
            f"{caller}: Keras runs on the {backend!r} backend; this adapter "
            f"supports the 'jax' and 'torch' backends. Set the environment "
            f"variable KERAS_BACKEND to 'jax' or 'torch' before Keras is first "
            f"imported."
        )
    if not model.built:
        raise ValueError(
            f"{caller}: `model` is not built (its weights do not exist yet); "
            f"call it on a batch first (`model(X[:1])`), build it "
            f"(`model.build(input_shape)`) or start a Sequential model with "
            f"`keras.Input(shape)`."
        )
    return keras, backend


def _as_input(caller: str, name: str, model: Any, backend: str, X: Any) -> Inputs:
    """`X` as the backend's arrays on the device and float dtype of the weights."""
    if backend == "torch":
        return _torch_adapter._as_input(caller, name, model, X)
    place = leaf_place([v.value for v in model.variables])
    return as_input(caller, name, place, X)


def _is_array(backend: str, x: Any) -> bool:
    if backend == "torch":
        return isinstance(x, sys.modules["torch"].Tensor)
    return isinstance(x, sys.modules["jax"].Array)


def _first_array(backend: str, output: Any) -> Any:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if _is_array(backend, output) else None


def _concatenate(backend: str, arrays: list[Any]) -> Any:
    if len(arrays) == 1:
        return arrays[0]
    if backend == "torch":
        return sys.modules["torch"].cat(arrays, dim=0)
    return sys.modules["jax"].numpy.concatenate(arrays, axis=0)


def _no_graph(backend: str) -> Any:
    """No autograd graph kept (PyTorch); nothing to do on JAX."""
    if backend == "torch":
        return sys.modules["torch"].no_grad()
    return contextlib.nullcontext()


def _detached(backend: str, x: Any) -> Any:
    return x.detach() if backend == "torch" else x


def _apply(caller: str, model: Any, x: Inputs, name: str) -> Any:
    """``model(x, training=False)``, with a clear error if it does not take `x`.

    Keras takes several inputs as one list or dict, so `x` goes in as the
    structure it came in.
    """
    try:
        return model(x.structure(), training=False)
    except Exception as exc:  # the user's model, any error it raises
        raise ValueError(
            f"{caller}: the model could not be applied to `{name}` "
            f"({x.describe()}): {type(exc).__name__}: {exc}. Pass inputs the "
            f"model accepts (an array, or a list or dict of arrays for a model "
            f"with several inputs), samples along the first axis."
        ) from exc


# --------------------------------------------------------------------------- #
# Reading layers: their call methods wrapped for the duration of one call
# --------------------------------------------------------------------------- #


def _recording(original: Callable, record: Callable) -> Callable:
    def call(*args, **kwargs):
        output = original(*args, **kwargs)
        record(args, kwargs, output)
        return output

    return call


@contextlib.contextmanager
def _intercepting(recorders: list[tuple[Any, Callable]]) -> Iterator[None]:
    """Call ``record(args, kwargs, output)`` whenever one of the layers runs.

    The method the layer runs (``call``, or ``quantized_call`` for a
    quantized layer) is shadowed by an instance attribute, which is removed
    (or the one there before put back) on exit.
    """
    saved: list[tuple[Any, str, Any]] = []
    try:
        for layer, record in recorders:
            method = (
                "quantized_call"
                if getattr(layer, "quantization_mode", None) is not None
                else "call"
            )
            saved.append((layer, method, layer.__dict__.get(method, _MISSING)))
            wrapped = _recording(getattr(layer, method), record)
            object.__setattr__(layer, method, wrapped)
        yield
    finally:
        for layer, method, before in reversed(saved):
            if before is _MISSING:
                object.__delattr__(layer, method)
            else:
                object.__setattr__(layer, method, before)


def _named_layers(caller: str, keras: Any, model: Any) -> dict[str, Any]:
    """The model's own layers by name, without its InputLayers, in order."""
    named: dict[str, Any] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name in named and named[layer.name] is not layer:
            raise ValueError(
                f"{caller}: two layers of the model are named {layer.name!r}; "
                f"give them distinct names to tell their outputs apart."
            )
        named[layer.name] = layer
    return named


def _all_layers(model: Any) -> list[Any]:
    """Every layer inside `model`, nested ones included."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    layers, stack = [], list(reversed(model.layers))
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(reversed(getattr(layer, "layers", [])))
    return layers


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def activations(
    model: Any,
    X: Any,
    layers: Any = None,
    batch_size: int | None = None,
    *,
    pool: str | None = None,
    mask: Any = None,
) -> dict[str, Any]:
    """The outputs of a Keras model's layers on inputs `X`.

    Parameters
    ----------
    model : keras.Model
        A built model (Sequential, functional or subclassed) on the JAX or
        PyTorch backend, run with ``training=False``.
    X : array-like, or list, tuple or dict of them
        Inputs, samples along the first axis (a list or dict for a model
        with several inputs, passed to it as one argument, as Keras takes
        them). An array of the backend (``jax.Array``, ``torch.Tensor``)
        must be on the weights' device; other arrays are converted to the
        backend, that device and (floats) the weights' float dtype.
    layers : str or list of str, optional
        Names of layers in ``model.layers`` (``layer.name``). By default
        every one of them except the InputLayers whose output has the
        samples along its first axis.
    batch_size : int, optional
        Samples per forward pass; by default all of `X` at once.
    pool : {"mean", "first", "last"}, optional
        Pool each activation with three or more axes over its second axis
        (tokens): see :func:`infoscope.adapters.torch.activations`.
    mask : array-like, str or int, optional
        With `pool`: ``(n, t)``, nonzero for the tokens that count, or the
        key or position of that array in `X`.

    Returns
    -------
    dict of str to jax.Array or torch.Tensor
        Layer name to its output (the first element of a tuple output), in
        the order of `layers` (of ``model.layers`` by default). A layer
        called more than once per forward pass (a shared layer) gives
        ``name``, ``name:1``, ...

    Raises
    ------
    ValueError
        If a name in `layers` is not a layer of the model (the message lists
        them), a requested layer is not called or returns no per-sample
        array, the model is not built or its backend is not JAX or PyTorch.
    TypeError
        If `model` is not a Keras 3 model.

    Examples
    --------
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras, numpy as np
    >>> from infoscope.adapters.keras import activations
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu", name="hidden"),
    ...     keras.layers.Dropout(0.5, name="drop"),
    ...     keras.layers.Dense(2, name="out"),
    ... ])
    >>> acts = activations(model, np.ones((10, 4)))
    >>> {name: tuple(a.shape) for name, a in acts.items()}
    {'hidden': (10, 8), 'drop': (10, 8), 'out': (10, 2)}
    """
    caller = _PREFIX + "activations"
    keras, backend = _check_model(caller, model)
    pool = check_pool(caller, pool, mask)
    available = _named_layers(caller, keras, model)
    explicit = layers is not None
    names = check_layers(caller, layers, list(available))
    batch_size = check_batch_size(caller, batch_size)
    X = _as_input(caller, "X", model, backend, X)
    n = X.n
    outputs = LayerOutputs(caller, names, explicit=explicit)

    def recorder(name: str) -> Callable:
        def record(args, kwargs, output):
            outputs.capture(name, _first_array(backend, output))

        return record

    recorders = [(available[name], recorder(name)) for name in names]
    with _no_graph(backend), _intercepting(recorders):
        for block in block_slices(n, batch_size or n):
            outputs.start()
            _apply(caller, model, X.take(block), "X")
            outputs.finish(block.stop - block.start, partial(_detached, backend))
    result = outputs.joined(partial(_concatenate, backend))
    if pool is None:
        return result
    return pool_activations(caller, result, pool, mask, X)


def dense_layers(model: Any, X: Any) -> list[tuple[str, Any, Any]]:
    """The dense layers of a Keras model with the inputs they see on `X`.

    What :class:`infoscope.NodeSNR` takes: for each ``keras.layers.Dense``
    called in the forward pass (nested ones included), its name, its input
    activations and its kernel, already ``d_in x d_out`` in Keras, so that
    the layer computes ``activation(x @ W + b)``.

    Parameters
    ----------
    model : keras.Model
        A built model on the JAX or PyTorch backend, run once on `X` with
        ``training=False``.
    X : array-like, or list, tuple or dict of them
        Inputs, samples along the first axis (see :func:`activations`).

    Returns
    -------
    list of (str, array, array)
        ``(layer.name, inputs, W)`` in the order the layers are first called,
        as the backend's arrays. ``inputs`` is ``(n, d_in)``; a layer applied
        to more axes (a sequence, ``(n, t, d_in)``) has them folded into rows
        and a layer called several times has its inputs stacked. ``W`` is a
        copy of the kernel (with a LoRA update, the effective kernel).
        Quantized layers are left out.

    Raises
    ------
    ValueError
        If no ``keras.layers.Dense`` is called on `X`.

    Examples
    --------
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras, numpy as np
    >>> from infoscope.adapters.keras import dense_layers
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu", name="hidden"),
    ...     keras.layers.Dense(2, name="out"),
    ... ])
    >>> [(name, tuple(x.shape), tuple(W.shape)) for name, x, W in
    ...  dense_layers(model, np.ones((10, 4)))]
    [('hidden', (10, 4), (4, 8)), ('out', (10, 8), (8, 2))]
    """
    caller = _PREFIX + "dense_layers"
    keras, backend = _check_model(caller, model)
    X = _as_input(caller, "X", model, backend, X)
    dense = {
        id(layer): layer
        for layer in _all_layers(model)
        if isinstance(layer, keras.layers.Dense)
        and getattr(layer, "quantization_mode", None) is None
    }
    inputs: dict[int, list[Any]] = {}

    def recorder(key: int) -> Callable:
        def record(args, kwargs, output):
            x = args[0] if args else kwargs["inputs"]
            x = _detached(backend, x)
            inputs.setdefault(key, []).append(x.reshape(-1, x.shape[-1]))

        return record

    recorders = [(layer, recorder(key)) for key, layer in dense.items()]
    with _no_graph(backend), _intercepting(recorders):
        _apply(caller, model, X, "X")
    if not inputs:
        raise ValueError(
            f"{caller}: the model calls no dense layer (keras.layers.Dense) on "
            f"`X`; dense_layers finds only those."
        )
    result = []
    for key, xs in inputs.items():
        layer = dense[key]
        W = keras.ops.convert_to_tensor(layer.kernel)
        W = W.detach().clone() if backend == "torch" else W
        result.append((layer.name, _concatenate(backend, xs), W))
    return result


# --------------------------------------------------------------------------- #
# empirical_ntk
# --------------------------------------------------------------------------- #


def empirical_ntk(
    model: Any,
    X1: Any,
    X2: Any = None,
    output_mode: str = "mean",
    batch_size: int | None = None,
    *,
    output: Any = None,
) -> Any:
    """The empirical neural tangent kernel of a Keras model.

    ``Theta[(i, a), (j, b)] = sum_p df_a(x_i)/dtheta_p df_b(x_j)/dtheta_p``
    over the trainable weights ``theta`` (``model.trainable_variables``),
    with the model in inference mode (``training=False``).

    Parameters
    ----------
    model : keras.Model
        A built model on the JAX or PyTorch backend whose output (the array
        `output` selects; all axes after the first flattened into ``k``
        outputs) is per sample: row i depends on sample i only.
    X1 : array-like, or list, tuple or dict of them
        ``n1`` inputs, samples along the first axis (see
        :func:`activations`).
    X2 : same as X1, optional
        ``n2`` inputs of the same structure and sample shapes; by default
        `X1` (the symmetric case, where each block pair is contracted once
        and mirrored).
    output_mode : {"mean", "sum", "full"}, default="mean"
        ``"mean"``: ``(1/k) sum_a Theta[(i, a), (j, a)]``, ``n1 x n2``.
        ``"sum"``: the NTK of the summed outputs, ``sum_ab Theta[(i, a), (j,
        b)]``, ``n1 x n2``. ``"full"``: ``n1 k x n2 k``, sample-major (row
        ``i k + a``).
    batch_size : int, optional
        Samples per block; by default chosen from the model's size.
    output : str, int or callable, optional
        For a model with several outputs: which one (a key of its output
        dict, an index into its output list, or a callable ``output(out) ->
        array``).

    Returns
    -------
    jax.Array or torch.Tensor
        On the weights' device.

    Raises
    ------
    ValueError
        If `output_mode` or `batch_size` is invalid, `X2`'s samples differ in
        structure or shape from `X1`'s, the model does not take the inputs
        or has more than one output and no `output` selects one, has no
        trainable weight, is not built, or its backend is not JAX or
        PyTorch.
    TypeError
        If `model` is not a Keras 3 model.

    Warns
    -----
    RuntimeWarning
        If the model's outputs mix samples (see the JAX and PyTorch
        adapters).

    See Also
    --------
    infoscope.adapters.jax.empirical_ntk, infoscope.adapters.torch.empirical_ntk :
        What computes it, for the JAX and the PyTorch backend.

    Examples
    --------
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras, numpy as np
    >>> from infoscope.adapters.keras import empirical_ntk
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(16, activation="tanh"),
    ...     keras.layers.Dense(3),
    ... ])
    >>> X = np.random.default_rng(0).standard_normal((5, 4))
    >>> K = keras.ops.convert_to_numpy(empirical_ntk(model, X))
    >>> K.shape, bool(np.allclose(K, K.T))
    ((5, 5), True)
    >>> tuple(empirical_ntk(model, X, X[:2], output_mode="full").shape)
    (15, 6)
    """
    caller = _PREFIX + "empirical_ntk"
    _keras, backend = _check_model(caller, model)
    mode = check_output_mode(caller, output_mode)
    batch_size = check_batch_size(caller, batch_size)
    if not model.trainable_variables:
        raise ValueError(
            f"{caller}: the model has no trainable weight; the NTK is taken over "
            f"`model.trainable_variables`. Set `model.trainable = True` (or "
            f"`trainable = True` on the layers to include)."
        )
    X1 = _as_input(caller, "X1", model, backend, X1)
    if X2 is not None:
        X2 = _as_input(caller, "X2", model, backend, X2)
        check_same_inputs(caller, X1, X2)
    checked = _CHECKED.setdefault(model, set())
    signature = (
        X1.sample_signature(),
        output if isinstance(output, str | int) else id(output),
    )
    if signature not in checked:  # once per model and inputs: it runs the model
        _check_outputs(caller, model, backend, X1, output)
        checked.add(signature)
    X1s, X2s = X1.structure(), None if X2 is None else X2.structure()
    if backend == "jax":
        jax_model = _jax_model(caller, model, X1.kind, output)
        return _jax_adapter._ntk_of(caller, jax_model, X1s, X2s, mode, batch_size)
    module = _torch_function(model, X1.kind)
    return _torch_adapter.empirical_ntk(
        module, X1s, X2s, mode, batch_size, output=output
    )


def _check_outputs(
    caller: str, model: Any, backend: str, X: Inputs, output: Any
) -> None:
    """The model applies to `X` and gives one array with a row per sample."""
    x = X.take(slice(0, 2))
    with _no_graph(backend):
        out = _apply(caller, model, x, "X1")
    out = select_output(caller, out, output, partial(_is_array, backend))
    if out.ndim == 0 or out.shape[0] != x.n:
        raise ValueError(
            f"{caller}: the model maps {x.n} samples to an output of shape "
            f"{tuple(out.shape)}; the NTK needs one output row per sample."
        )


def _weight_names(variables: list[Any]) -> list[str]:
    """Names for the weights: their paths, made unique and free of dots."""
    names: list[str] = []
    for i, v in enumerate(variables):
        name = str(v.path).replace(".", "_") or f"weight_{i}"
        names.append(name if name not in names else f"{name}_{i}")
    return names


def _structure(kind: str, args: tuple, kwargs: dict) -> Any:
    """The one argument a Keras model takes: an array, a list or a dict."""
    if kind == "kwargs":
        return kwargs
    return args[0] if kind == "array" else list(args)


def _jax_model(caller: str, model: Any, kind: str, output: Any) -> Any:
    """The model as the JAX adapter's function of its weights.

    The trainable weights (by path) are differentiated, the non-trainable
    ones (moving statistics, seeds) passed through fixed; both are arguments
    of the function, which is the same object for every call on this model,
    so the JAX adapter reads the program once for a training loop. Several
    inputs arrive as positional or keyword arguments (`kind`) and go to the
    model as one list or dict.
    """
    functions = _JAX_FUNCTIONS.setdefault(model, {})
    fn = functions.get(kind)
    if fn is None:
        ref = weakref.ref(model)  # the function must not keep the model alive

        def fn(params: dict[str, Any], fixed: list, *args: Any, **kwargs: Any) -> Any:
            keras_model = ref()
            names = _weight_names(list(keras_model.trainable_variables))
            values = [params[name] for name in names]
            x = _structure(kind, args, kwargs)
            return keras_model.stateless_call(values, fixed, x, training=False)[0]

        functions[kind] = fn
    trainable = list(model.trainable_variables)
    names = _weight_names(trainable)
    params = {name: v.value for name, v in zip(names, trainable, strict=True)}
    fixed = [v.value for v in model.non_trainable_variables]
    return Model(caller, fn, params, fixed, ("keras", fn, kind), output)


# The input structures and outputs whose output shape was checked, per model.
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# One function per Keras model (and input structure), kept while the model is.
_JAX_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_TORCH_FUNCTION: list[type] = []


def _torch_function(model: Any, kind: str) -> Any:
    """The model as a ``torch.nn.Module`` whose parameters it reads.

    Its parameters are the trainable weights (new ``Parameter`` objects that
    share their memory, all requiring grad), its forward pass is
    ``model.stateless_call`` on them, so that ``torch.func.functional_call``
    substitutes them as :mod:`infoscope.adapters.torch` needs.
    """
    if not _TORCH_FUNCTION:
        torch = sys.modules["torch"]

        class KerasFunction(torch.nn.Module):
            def __init__(self, model: Any, kind: str) -> None:
                super().__init__()
                self._kind = kind
                trainable = list(model.trainable_variables)
                self._names = _weight_names(trainable)
                for name, v in zip(self._names, trainable, strict=True):
                    value = v.value.detach()
                    self.register_parameter(name, torch.nn.Parameter(value))
                self._fixed = [v.value.detach() for v in model.non_trainable_variables]
                object.__setattr__(self, "_keras_model", model)  # not a submodule

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                values = [self._parameters[name] for name in self._names]
                x = _structure(self._kind, args, kwargs)
                return self._keras_model.stateless_call(
                    values, self._fixed, x, training=False
                )[0]

        _TORCH_FUNCTION.append(KerasFunction)
    return _TORCH_FUNCTION[0](model, kind)
