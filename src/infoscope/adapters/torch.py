"""PyTorch adapter: activations, dense layers and empirical NTKs of a torch module.

``import infoscope.adapters.torch`` does not import PyTorch; the first call
does. Every function runs the model in evaluation mode (dropout off,
BatchNorm on its running statistics) with PyTorch's fused attention fast
path off (it sends nested tensors through the layers of a
``TransformerEncoder`` given a padding mask), and restores each submodule's
``training`` flag afterwards; parameters and their ``requires_grad`` flags are
left as they were and no autograd graph outlives a call. Results are
``torch.Tensor`` objects on the model's device.

Inputs are one tensor (``model(X)``), or a tuple or list of tensors
(``model(*X)``) or a dict of them (``model(**X)``) sharing the first axis:
token ids and an attention mask, an image and a vector. Integer and boolean
inputs keep their dtype and are never differentiated.

The empirical NTK is taken over the model's *trainable* parameters (those
with ``requires_grad=True``) by the engine of :mod:`infoscope.adapters._ntk`;
this module gives it, per block of samples, the features of each term:

- ``torch.nn.Linear``, ``Conv1d`` and ``Conv2d`` layers whose Gram form is
  the cheaper one: the layer's input and the signal back-propagated to its
  output, per sample (the weight's Jacobian is their outer product, so it is
  never materialised);
- every other parameter: per-sample Jacobians.

Both come from one function of a single sample, differentiated with
``torch.func.jacrev`` and mapped over the block with ``torch.func.vmap``.
Where ``vmap`` cannot run the model (recurrent layers, data-dependent control
flow, kernels without batching rules) the same function is differentiated
sample by sample, and where ``vmap`` runs but falls back to slow loops inside
(PyTorch warns of missing batching rules), the faster of the two is kept,
timed on the first block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..backends import to_numpy
from ._common import (
    LayerOutputs,
    check_batch_size,
    check_layers,
    check_output_mode,
    check_pool,
    pool_activations,
)
from ._inputs import Inputs, check_same_inputs
from ._ntk import block_slices
from ._torch_ntk import TorchNtk, import_torch, removing

__all__ = ["activations", "dense_layers", "empirical_ntk"]

_PREFIX = "infoscope.adapters.torch."


# --------------------------------------------------------------------------- #
# Shared checks and context managers
# --------------------------------------------------------------------------- #


def _check_model(caller: str, model: Any) -> None:
    torch = import_torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"{caller}: `model` must be a torch.nn.Module; got "
            f"{type(model).__name__}. For a JAX model use infoscope.adapters.jax."
        )


def _model_place(model: Any) -> tuple[Any, Any]:
    """The device and floating dtype of the model's first float tensor."""
    torch = import_torch()
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _as_input(caller: str, name: str, model: Any, X: Any) -> Inputs:
    """`X` as tensors on the model's device, floats in its dtype."""
    torch = import_torch()
    device, dtype = _model_place(model)

    def convert(label: str, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if x.device != device:
                raise ValueError(
                    f"{caller}: `{label}` is on device {str(x.device)!r} but the "
                    f"model's parameters are on {str(device)!r}; move one of them "
                    f"first (e.g. `.to({str(device)!r})`)."
                )
            return x.detach()
        a = to_numpy(x)
        if a.dtype.kind not in "biuf":
            raise ValueError(
                f"{caller}: `{label}` must hold numbers; got dtype {a.dtype}."
            )
        if not a.flags.writeable:
            # Read-only buffers (from JAX, say): torch warns that it cannot
            # guarantee them; the model never writes to its input, so copy.
            a = a.copy()
        t = torch.as_tensor(a, device=device)
        return t.to(dtype) if t.is_floating_point() else t

    return Inputs.read(caller, name, X, convert)


@contextlib.contextmanager
def _evaluation(model: Any) -> Iterator[None]:
    """Run `model` in eval mode without the attention fast path; restore both.

    Every submodule's own ``training`` flag is put back. The fast path of
    ``nn.TransformerEncoder`` and ``nn.MultiheadAttention`` turns a padded
    batch into nested tensors that forward hooks and ``torch.func`` cannot
    handle; the plain path computes the same outputs.
    """
    torch = import_torch()
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)
        for module, training in modes:
            module.training = training


def _first_tensor(output: Any) -> Any:
    torch = import_torch()
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def _apply(caller: str, model: Any, X: Inputs, name: str) -> Any:
    """`model` called on `X`, with a clear error if it does not take `X`."""
    try:
        return X.call(model)
    except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise ValueError(
            f"{caller}: the model could not be applied to `{name}` "
            f"({X.describe()}): {type(exc).__name__}: {exc}. Pass inputs the "
            f"model accepts (a tensor, or a tuple, list or dict of them), samples "
            f"along the first axis."
        ) from exc


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
    """The outputs of a PyTorch model's layers on inputs `X`.

    Parameters
    ----------
    model : torch.nn.Module
        Run in evaluation mode; its mode is restored afterwards.
    X : torch.Tensor or array-like, or tuple, list or dict of them
        Inputs, samples along the first axis; a tuple or list is passed as
        positional arguments, a dict as keyword arguments. A tensor must be
        on the model's device; other arrays are converted to the model's
        device (floats to its float dtype).
    layers : str or list of str, optional
        Names from ``model.named_modules()``. By default every leaf module
        (one without children) whose output has the samples along its first
        axis.
    batch_size : int, optional
        Samples per forward pass; by default all of `X` at once.
    pool : {"mean", "first", "last"}, optional
        Pool each activation with three or more axes (samples, tokens, ...)
        over its second axis: the mean over the unmasked tokens, the first
        token or the last unmasked token. By default activations are
        returned as the layers give them.
    mask : array-like, str or int, optional
        With `pool`: which tokens count, ``(n, t)``, nonzero for real tokens
        and zero for padding (the opposite of PyTorch's
        ``src_key_padding_mask``: pass ``~padding_mask``), or the key or
        position of that array in `X` (``"attention_mask"``). Activations
        whose second axis is not ``t`` long are returned unpooled.

    Returns
    -------
    dict of str to torch.Tensor
        Layer name to its output (the first element of a tuple output),
        detached, on the model's device, in the order of `layers` (of
        ``model.named_modules()`` by default). A module called more than
        once per forward pass gives ``name``, ``name:1``, ...

    Raises
    ------
    ValueError
        If a name in `layers` is not a module of `model` (the message lists
        them) or a requested layer returns no per-sample tensor.

    Examples
    --------
    >>> import torch
    >>> from infoscope.adapters.torch import activations
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    ... )
    >>> acts = activations(model, torch.randn(10, 4))
    >>> {name: tuple(a.shape) for name, a in acts.items()}
    {'0': (10, 8), '1': (10, 8), '2': (10, 2)}

    A sequence model, its token outputs averaged over the real tokens:

    >>> encoder = torch.nn.TransformerEncoder(
    ...     torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
    >>> tokens = torch.randn(3, 5, 8)
    >>> padding = torch.tensor([[0, 0, 0, 1, 1]] * 3, dtype=torch.bool)
    >>> X = {"src": tokens, "src_key_padding_mask": padding}
    >>> acts = activations(encoder, X, layers="layers.0", pool="mean",
    ...                    mask=~padding)
    >>> tuple(acts["layers.0"].shape)
    (3, 8)
    """
    caller = _PREFIX + "activations"
    torch = import_torch()
    _check_model(caller, model)
    pool = check_pool(caller, pool, mask)
    modules = {name: module for name, module in model.named_modules() if name}
    explicit = layers is not None
    if explicit:
        names = check_layers(caller, layers, list(modules))
    else:
        names = [n for n, m in modules.items() if next(m.children(), None) is None]
    batch_size = check_batch_size(caller, batch_size)
    inputs = _as_input(caller, "X", model, X)
    n = inputs.n
    slices = block_slices(n, batch_size or n)

    outputs = LayerOutputs(caller, names, explicit=explicit)

    def hook_for(name: str):
        def hook(module, args, output):
            outputs.capture(name, _first_tensor(output))

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    with torch.no_grad(), _evaluation(model), removing(handles):
        for block in slices:
            outputs.start()
            _apply(caller, model, inputs.take(block), "X")
            outputs.finish(block.stop - block.start, lambda o: o.detach())
    result = outputs.joined(lambda parts: torch.cat(parts, dim=0))
    if pool is None:
        return result
    return pool_activations(caller, result, pool, mask, inputs)


def dense_layers(model: Any, X: Any) -> list[tuple[str, Any, Any]]:
    """The dense layers of a PyTorch model with the inputs they see on `X`.

    What :class:`infoscope.NodeSNR` takes: for each ``torch.nn.Linear``
    used in the forward pass (called as a module, or its weight passed to
    ``torch.nn.functional.linear`` as ``nn.MultiheadAttention`` does with its
    ``out_proj``), its name, its input activations and its weight as a
    ``d_in x d_out`` matrix (the transpose of PyTorch's layout), so that the
    layer computes ``x @ W + b``.

    Parameters
    ----------
    model : torch.nn.Module
        Run once on `X` in evaluation mode; its mode is restored afterwards.
    X : torch.Tensor or array-like, or tuple, list or dict of them
        Inputs, samples along the first axis (see :func:`activations`).

    Returns
    -------
    list of (str, torch.Tensor, torch.Tensor)
        ``(name, inputs, W)`` in the order the layers are first used.
        ``inputs`` is ``(m, d_in)``; a layer applied to more axes (a
        sequence, ``(n, t, d_in)``) has them folded into rows, and a layer
        used several times has its inputs stacked. ``W`` is a detached copy.

    Raises
    ------
    ValueError
        If no ``torch.nn.Linear`` is used on `X`.

    Examples
    --------
    >>> import torch
    >>> from infoscope.adapters.torch import dense_layers
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    ... )
    >>> [(name, tuple(x.shape), tuple(W.shape)) for name, x, W in
    ...  dense_layers(model, torch.randn(10, 4))]
    [('0', (10, 4), (4, 8)), ('2', (10, 8), (8, 2))]
    """
    caller = _PREFIX + "dense_layers"
    torch = import_torch()
    _check_model(caller, model)
    inputs = _as_input(caller, "X", model, X)
    linear = {
        id(module.weight): (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    seen: dict[str, list[Any]] = {}

    def record(x: Any, weight: Any) -> None:
        found = linear.get(id(weight))
        if found is not None:
            x = x.detach()
            seen.setdefault(found[0], []).append(x.reshape(-1, x.shape[-1]))

    with torch.no_grad(), _evaluation(model), _watching_linear(record):
        _apply(caller, model, inputs, "X")
    if not seen:
        raise ValueError(
            f"{caller}: the model uses no dense layer (torch.nn.Linear) on `X`; "
            f"dense_layers finds only those."
        )
    modules = dict(linear.values())
    return [
        (name, torch.cat(xs, dim=0), modules[name].weight.detach().T.clone())
        for name, xs in seen.items()
    ]


@contextlib.contextmanager
def _watching_linear(record: Any) -> Iterator[None]:
    """Call ``record(input, weight)`` on every ``torch.nn.functional.linear``.

    ``nn.Linear`` calls it, and so does ``nn.MultiheadAttention`` with its
    ``out_proj`` weight, which it never calls as a module (forward hooks do
    not see it). The module attribute is swapped for the duration of one
    forward pass: ``torch.nn.functional`` looks it up at each call.
    """
    functional = import_torch().nn.functional
    original = functional.linear

    def linear(input, weight, bias=None):
        record(input, weight)
        return original(input, weight, bias)

    functional.linear = linear
    try:
        yield
    finally:
        functional.linear = original


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
    """The empirical neural tangent kernel of a PyTorch model.

    ``Theta[(i, a), (j, b)] = sum_p df_a(x_i)/dtheta_p df_b(x_j)/dtheta_p``
    over the trainable parameters ``theta`` (``requires_grad=True``), with the
    model in evaluation mode, each sample evaluated on its own.

    Parameters
    ----------
    model : torch.nn.Module
        Its output (the array `output` selects; all axes after the first
        flattened into ``k`` outputs) has one row per sample.
    X1 : torch.Tensor or array-like, or tuple, list or dict of them
        ``n1`` inputs, samples along the first axis of every array (see
        :func:`activations`): token ids and masks are inputs like any other.
    X2 : same as X1, optional
        ``n2`` inputs of the same structure and sample shapes; by default
        `X1` (the symmetric case, where each block pair is contracted once
        and mirrored).
    output_mode : {"mean", "sum", "full"}, default="mean"
        ``"mean"``: ``(1/k) sum_a Theta[(i, a), (j, a)]``, ``n1 x n2`` (as
        neural-tangents with ``trace_axes=(-1,)``). ``"sum"``: the NTK of the
        summed outputs, ``sum_ab Theta[(i, a), (j, b)]``, ``n1 x n2``.
        ``"full"``: ``n1 k x n2 k``, sample-major (row ``i k + a``).
    batch_size : int, optional
        Samples per block. Memory grows with it; by default it is chosen from
        the model's size. Per-sample features of all samples are stored once
        (in groups of parameters when they exceed about 512 MiB), so each
        block passes through the network once per group.
    output : str, int or callable, optional
        Which array of the model's output the NTK is of, when the model does
        not return one tensor: a key (``"pooler_output"`` of a HuggingFace
        ``ModelOutput``, a dict's key), an index into a tuple, or a callable
        ``output(out) -> tensor`` (``lambda out: out.last_hidden_state[:,
        0]``).

    Returns
    -------
    torch.Tensor
        On the model's device, in its output dtype.

    Raises
    ------
    ValueError
        If `output_mode` or `batch_size` is invalid, `X2`'s samples differ
        in structure or shape from `X1`'s, the model does not take the
        inputs or returns no single array (see `output`), or no parameter
        requires grad.

    Warns
    -----
    RuntimeWarning
        If the model's outputs mix samples (a batch's outputs differ from the
        outputs of its samples one at a time): the NTK is that of the
        per-sample function, each sample evaluated on its own.

    Examples
    --------
    >>> import torch
    >>> from infoscope.adapters.torch import empirical_ntk
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ... ).double()
    >>> X = torch.randn(5, 4, dtype=torch.float64)
    >>> K = empirical_ntk(model, X)
    >>> tuple(K.shape), bool(torch.allclose(K, K.T))
    ((5, 5), True)
    >>> tuple(empirical_ntk(model, X, X[:2], output_mode="full").shape)
    (15, 6)
    """
    caller = _PREFIX + "empirical_ntk"
    _check_model(caller, model)
    mode = check_output_mode(caller, output_mode)
    batch_size = check_batch_size(caller, batch_size)
    X1 = _as_input(caller, "X1", model, X1)
    if X2 is not None:
        X2 = _as_input(caller, "X2", model, X2)
        check_same_inputs(caller, X1, X2)
    with _evaluation(model):
        return TorchNtk(caller, model, X1, X2, mode, batch_size, output).compute()
