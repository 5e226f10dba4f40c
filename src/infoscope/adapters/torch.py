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
import time
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import to_numpy
from . import _ntk
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

__all__ = ["activations", "dense_layers", "empirical_ntk"]

_PREFIX = "infoscope.adapters.torch."

# How each model's per-sample Jacobians were best taken: "loop" for models
# torch.func.vmap cannot run or runs slower than the sample loop (timed once),
# "vmap" for those timed faster with vmap. Later calls take it at once.
_PATH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_BATCHING_RULE = "There is a performance drop because we have not yet implemented"


def _torch():
    import torch

    return torch


# --------------------------------------------------------------------------- #
# Shared checks and context managers
# --------------------------------------------------------------------------- #


def _check_model(caller: str, model: Any) -> None:
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"{caller}: `model` must be a torch.nn.Module; got "
            f"{type(model).__name__}. For a JAX model use infoscope.adapters.jax."
        )


def _model_place(model: Any) -> tuple[Any, Any]:
    """The device and floating dtype of the model's first float tensor."""
    torch = _torch()
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _as_input(caller: str, name: str, model: Any, X: Any) -> Inputs:
    """`X` as tensors on the model's device, floats in its dtype."""
    torch = _torch()
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
    torch = _torch()
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


@contextlib.contextmanager
def _removing(handles: list[Any]) -> Iterator[list[Any]]:
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def _first_tensor(output: Any) -> Any:
    torch = _torch()
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
    torch = _torch()
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
    slices = _ntk.block_slices(n, batch_size or n)

    outputs = LayerOutputs(caller, names, explicit=explicit)

    def hook_for(name: str):
        def hook(module, args, output):
            outputs.capture(name, _first_tensor(output))

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    with torch.no_grad(), _evaluation(model), _removing(handles):
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
    torch = _torch()
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
    functional = _torch().nn.functional
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
        return _TorchNtk(caller, model, X1, X2, mode, batch_size, output).compute()


class _TorchNtk:
    """One empirical NTK computation (see :func:`empirical_ntk`).

    Reads the model (its trainable parameters, its dense and convolutional
    layers, checked against autograd on one sample) and gives the engine the
    features of each block; :mod:`infoscope.adapters._ntk` does the rest.
    """

    def __init__(self, caller, model, X1, X2, mode, batch_size, output=None):
        torch = _torch()
        self.torch = torch
        self.caller = caller
        self.model = model
        self.X = (X1, X2)
        self.mode = mode
        self.output = output
        self.batch_size = batch_size
        self.trainable = {
            name: p for name, p in model.named_parameters() if p.requires_grad
        }
        if not self.trainable:
            raise ValueError(
                f"{caller}: no parameter of the model requires grad; the NTK is "
                f"taken over the trainable parameters. Call "
                f"`model.requires_grad_(True)` (or on the layers to include)."
            )
        self.base = {name: p.detach() for name, p in model.named_parameters()}
        self.base.update(dict(model.named_buffers()))
        self.vmap = _PATH.get(model) != "loop"
        self.timed = model in _PATH
        self.chunk: int | None = None
        self._fns: dict = {}
        candidates = self._candidates()
        probe, self.shapes = self._probe(candidates)
        self.k = probe.shape[1]
        self.dtype = probe.dtype
        self.itemsize = probe.element_size()
        self.xp = _namespace(probe)
        self.working_bytes = float(self.k * self.itemsize)
        self.layers = self._checked_layers(candidates, probe)
        params = [(n, p.numel(), n) for n, p in self.trainable.items()]
        self.terms = _ntk.plan_terms(
            list(self.layers.values()), params, self.k, mode, self.itemsize
        )

    # -- the model as a function --------------------------------------------

    def _outputs(self, out: Any) -> Any:
        """Model outputs as (b, k): selected, flattened, summed in "sum" mode."""
        torch = self.torch
        out = select_output(
            self.caller, out, self.output, lambda a: isinstance(a, torch.Tensor)
        )
        out = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(-1, 1)
        if self.mode == "sum":
            out = out.sum(dim=1, keepdim=True)
        return out

    def _call(self, params: dict, X: Inputs, arrays: list | None = None) -> Any:
        args, kwargs = X.args(arrays)
        return self.torch.func.functional_call(self.model, params, args, kwargs)

    def _probe(self, candidates: dict) -> tuple[Any, dict]:
        """The outputs on a few samples, and each candidate's output shapes.

        The shapes (one per call of the layer in a forward pass) say where
        each weight is applied, hence its planned cost.
        """
        torch = self.torch
        X1, X2 = self.X
        rows = X1.take(slice(0, 3))
        if rows.n < 2 and X2 is not None:
            more = X2.take(slice(0, 3 - rows.n))
            rows = rows.with_arrays(
                [
                    torch.cat([a, b])
                    for a, b in zip(rows.arrays, more.arrays, strict=True)
                ]
            )
        self.probe_x = rows
        shapes: dict[str, list[tuple]] = {name: [] for name in candidates}

        def hook_for(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor):
                    shapes[name].append(tuple(output.shape))

            return hook

        handles = [
            module.register_forward_hook(hook_for(name))
            for name, (module, _, _) in candidates.items()
        ]
        with torch.no_grad(), _removing(handles):
            try:
                out = self._call(self.base, rows)
            except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
                raise ValueError(
                    f"{self.caller}: the model could not be applied to `X1` "
                    f"({X1.describe()}): {type(exc).__name__}: {exc}. Pass inputs "
                    f"the model accepts, samples along the first axis."
                ) from exc
            out = self._outputs(out)
        if out.shape[0] != rows.n:
            raise ValueError(
                f"{self.caller}: the model maps {rows.n} samples to an output of "
                f"{out.shape[0]} rows; the NTK needs one output row per sample."
            )
        shapes = {
            name: s
            for name, s in shapes.items()
            if s and all(shape[:1] == (rows.n,) for shape in s)
        }
        return out, shapes

    # -- the per-sample function --------------------------------------------

    def _per_sample(self, layers: list[str], params: list[str]):
        """``f(eps, gen, arrays) -> (outputs, inputs)`` on one sample.

        `arrays` are the sample's input arrays (no sample axis); `gen` maps
        the names in `params` to the values used for them; `eps` maps each
        layer in `layers` to one zero tensor per call, added to that call's
        output (the Jacobian with respect to it is the back-propagated
        signal). Returns the ``k`` outputs and, as auxiliary output, the
        input of each call of each layer.
        """
        modules = {name: self.layers[name].key for name in layers}
        X = self.probe_x

        def f(eps, gen, arrays):
            record: dict[str, list[Any]] = {name: [] for name in layers}

            def hook_for(name):
                def hook(module, inputs, output):
                    calls = record[name]
                    if len(calls) >= len(eps[name]):
                        raise _Unplanned(name)
                    e = eps[name][len(calls)]
                    calls.append(inputs[0])
                    return output + e

                return hook

            handles = [
                modules[name][0].register_forward_hook(hook_for(name))
                for name in layers
            ]
            with _removing(handles):
                out = self._call(
                    {**self.base, **gen}, X, [a.unsqueeze(0) for a in arrays]
                )
            return self._outputs(out)[0], record

        return f

    def _jacobians(self, f, eps: dict, gen: dict, arrays: list) -> tuple:
        """``((d/d eps, d/d gen), inputs)`` of `f` for a block, samples first.

        ``vmap`` over the block where it runs; otherwise (and where it runs
        slower than a loop, timed once) sample by sample.
        """
        func = self.torch.func
        b = arrays[0].shape[0]
        if self.vmap:
            jac = func.jacrev(f, argnums=(0, 1), has_aux=True)
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = func.vmap(jac, in_dims=(None, None, 0))(eps, gen, arrays)
            except Exception:  # the model's operations under vmap, any failure
                self.vmap = False
                _PATH[self.model] = "loop"
            else:
                slow = False
                for w in caught:
                    if _BATCHING_RULE in str(w.message):
                        slow = True  # vmap loops inside: maybe slower than we do
                    else:
                        warnings.warn_explicit(
                            w.message, w.category, w.filename, w.lineno
                        )
                if slow and not self.timed and b > 1:
                    self.timed = True
                    per_vmap = (time.perf_counter() - t0) / b
                    t0 = time.perf_counter()
                    self._loop(f, eps, gen, [a[:2] for a in arrays])
                    self.vmap = per_vmap <= (time.perf_counter() - t0) / 2
                    _PATH[self.model] = "vmap" if self.vmap else "loop"
                return result
        return self._loop(f, eps, gen, arrays)

    def _loop(self, f, eps: dict, gen: dict, arrays: list) -> tuple:
        """The Jacobians of `f` sample by sample, stacked (no vmap over samples).

        ``jacrev`` maps over the outputs with vmap; where even that fails,
        the outputs are taken one at a time (``chunk_size=1``).
        """
        torch = self.torch
        results = []
        with warnings.catch_warnings():
            # jacrev maps over the outputs with vmap: its fallbacks are ours.
            warnings.filterwarnings("ignore", message=f".*{_BATCHING_RULE}")
            for i in range(arrays[0].shape[0]):
                results.append(self._one(f, eps, gen, [a[i] for a in arrays]))
        return torch.utils._pytree.tree_map(lambda *xs: torch.stack(xs), *results)

    def _one(self, f, eps: dict, gen: dict, sample: list) -> tuple:
        """The Jacobians of `f` on one sample."""
        jacrev = self.torch.func.jacrev
        try:
            return jacrev(f, argnums=(0, 1), has_aux=True, chunk_size=self.chunk)(
                eps, gen, sample
            )
        except Exception:  # vmap over the outputs failed too: one at a time
            if self.chunk == 1:
                raise
            self.chunk = 1
            return jacrev(f, argnums=(0, 1), has_aux=True, chunk_size=1)(
                eps, gen, sample
            )

    # -- which parameters take which path -----------------------------------

    def _candidates(self) -> dict[str, tuple]:
        """Dense and convolutional layers with a trainable weight of their own."""
        torch = self.torch
        owners: dict[int, int] = {}
        for module in self.model.modules():
            for p in module.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        candidates: dict[str, tuple] = {}
        for name, module in self.model.named_modules():
            spec = _layer_spec(torch, module)
            if spec is None:
                continue
            prefix = f"{name}." if name else ""
            own = dict(module.named_parameters(recurse=False))
            if any(owners[id(p)] > 1 for p in own.values()):
                continue  # tied weights: their Jacobians sum their uses
            weight, bias = own.get("weight"), own.get("bias")
            if weight is None or not weight.requires_grad:
                continue
            spec["bias"] = bias is not None and bias.requires_grad
            covered = [prefix + "weight"] + ([prefix + "bias"] if spec["bias"] else [])
            candidates[name] = (module, spec, covered)
        return candidates

    def _checked_layers(self, candidates: dict, probe: Any) -> dict[str, _ntk.Layer]:
        """The layers the Gram form is planned for, checked against autograd.

        A layer takes the Gram form where that is the cheaper contraction
        (planned from where it is applied). On one sample, its weight's and
        bias's gradient formed from its recorded inputs and back-propagated
        signals must equal the one autograd takes through the model: this
        catches weights used in ways forward hooks do not see (read
        directly, re-parametrised) and layers not called; those go through
        per-sample Jacobians. The same pass gives the sample's output alone,
        which a batch's must match (else the model mixes samples).
        """
        torch = self.torch
        full = self.mode == "full"
        planned = {}
        for name, shapes in self.shapes.items():
            module, spec, covered = candidates[name]
            positions = sum(_n_positions(shape, spec) for shape in shapes)
            n_in = spec["n_in"] + int(spec["bias"])
            kind = _ntk.structured_kind(positions, n_in, spec["n_out"], self.k, full)
            if kind == "gram":
                planned[name] = (module, spec, covered, positions)
        x = self.probe_x.take(slice(0, 1))
        eps = {
            name: [
                torch.zeros(
                    (1, *s[1:]), dtype=self.dtype, device=self._device()
                ).requires_grad_(True)
                for s in self.shapes[name]
            ]
            for name in planned
        }
        leaves = {
            p: self.base[p].clone().requires_grad_(True)
            for _, _, covered, _ in planned.values()
            for p in covered
        }
        record: dict[str, list[Any]] = {name: [] for name in planned}

        def hook_for(name):
            def hook(module, inputs, output):
                calls = record[name]
                if len(calls) >= len(eps[name]):
                    raise _Unplanned(name)
                calls.append(inputs[0].detach())
                return output + eps[name][len(calls) - 1]

            return hook

        handles = [
            module.register_forward_hook(hook_for(name))
            for name, (module, _, _, _) in planned.items()
        ]
        try:
            with torch.enable_grad(), _removing(handles):
                out = self._outputs(self._call({**self.base, **leaves}, x))
                wrt = [e for name in planned for e in eps[name]] + list(leaves.values())
                if wrt and out.requires_grad:
                    grads = torch.autograd.grad(out.sum(), wrt, allow_unused=True)
                else:  # no planned layer reaches the output
                    grads = [None] * len(wrt)
        except _Unplanned:
            planned, grads, out = {}, [], None
        if out is not None and self.probe_x.n > 1:
            if _ntk.mixes_samples(probe[:1], out.detach()):
                _ntk.warn_mixing(self.caller, stacklevel=4)
        grads = list(grads)
        g_eps = {name: [grads.pop(0) for _ in eps[name]] for name in planned}
        g_leaf = dict(zip(leaves, grads, strict=True))
        layers = {}
        for name, (module, spec, covered, positions) in planned.items():
            if len(record[name]) != len(eps[name]):
                continue
            A = torch.cat([_unfold(torch, inp, spec)[0] for inp in record[name]], dim=0)
            if spec["bias"]:
                A = torch.cat([A, torch.ones_like(A[:, :1])], dim=1)
            G = torch.cat(
                [
                    _positions(torch, torch.zeros_like(e) if g is None else g, spec)[0]
                    for e, g in zip(eps[name], g_eps[name], strict=True)
                ],
                dim=0,
            )
            ours = A.T @ G  # (n_in', n_out)
            weight = g_leaf[covered[0]]
            weight = torch.zeros_like(leaves[covered[0]]) if weight is None else weight
            ok = _close(
                torch, ours[: spec["n_in"]], weight.reshape(spec["n_out"], -1).T
            )
            if spec["bias"]:
                bias = g_leaf[covered[1]]
                bias = torch.zeros_like(leaves[covered[1]]) if bias is None else bias
                ok = ok and _close(torch, ours[-1], bias)
            if ok:
                n_in = A.shape[1]
                sizes = [(p, self.trainable[p].numel()) for p in covered]
                layers[name] = _ntk.Layer(
                    name, positions, n_in, spec["n_out"], sizes, key=(module, spec)
                )
                self.working_bytes += (
                    4 * positions * (n_in + spec["n_out"]) * self.itemsize
                )
        return layers

    def _zeros(self, layers: list[str]) -> dict[str, list[Any]]:
        torch = self.torch
        return {
            name: [
                torch.zeros((1, *shape[1:]), dtype=self.dtype, device=self._device())
                for shape in self.shapes[name]
            ]
            for name in layers
        }

    def _device(self) -> Any:
        return self.X[0].arrays[0].device

    def _layer_features(
        self, name: str, spec: dict, inputs: list, signals: list, b: int
    ) -> tuple[Any, Any]:
        """``A`` (b, P, n_in') and ``G`` (b, k, P, n_out) of one layer's calls."""
        torch = self.torch
        parts_a, parts_g = [], []
        for inp, g in zip(inputs, signals, strict=True):
            a = _unfold(torch, inp.reshape(b, *inp.shape[2:]), spec)
            if spec["bias"]:
                a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
            parts_a.append(a)
            g = g.reshape(b * self.k, *g.shape[3:])  # (b, k, 1, ...) -> (bk, ...)
            g = _positions(torch, g, spec)
            parts_g.append(g.reshape(b, self.k, *g.shape[1:]))
        return torch.cat(parts_a, dim=1), torch.cat(parts_g, dim=2)

    # -- features of one block ----------------------------------------------

    def features(self, side: int, block: slice, group: list) -> tuple[list, int]:
        torch = self.torch
        key = tuple(t.name for t in group)
        if key not in self._fns:
            layers = [t.name for t in group if t.kind == "gram"]
            params = [t.key for t in group if t.kind == "jacobian"]
            self._fns[key] = (self._per_sample(layers, params), layers, params)
        f, layers, params = self._fns[key]
        arrays = self.X[side].take(block).arrays
        b = arrays[0].shape[0]
        eps = self._zeros(layers)
        gen = {p: self.base[p] for p in params}
        with torch.enable_grad():
            (j_eps, j_gen), record = self._jacobians(f, eps, gen, arrays)
        feats = []
        for name in layers:
            spec = self.layers[name].key[1]
            feats.append(self._layer_features(name, spec, record[name], j_eps[name], b))
        if params:
            feats.append(
                torch.cat([j_gen[p].reshape(b, self.k, -1) for p in params], 2)
            )
        return feats, b

    def contract(self, fi: list, fj: list) -> Any:
        return _ntk.contract(self.xp, fi, fj, self.k, self.mode == "full")

    # -- the whole kernel ---------------------------------------------------

    def compute(self) -> Any:
        X1, X2 = self.X
        with self.torch.no_grad():
            return _ntk.compute(
                self.xp,
                self.features,
                self.terms,
                n1=X1.n,
                n2=None if X2 is None else X2.n,
                k=self.k,
                mode=self.mode,
                batch_size=self.batch_size,
                dtype=self.dtype,
                device=self._device(),
                itemsize=self.itemsize,
                working_bytes=self.working_bytes,
                budget=MEMORY_BUDGET,
                contract_fn=self.contract,
            )


MEMORY_BUDGET = _ntk.MEMORY_BUDGET


def _namespace(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(x)


class _Unplanned(Exception):
    """A layer was called more often than on the probe: no structured form."""


def _n_positions(shape: tuple, spec: dict) -> int:
    """Where a layer with output `shape` (batch first) applies its weight."""
    if spec["type"] == "linear":
        return int(np.prod(shape[1:-1], dtype=int))
    return int(np.prod(shape[2:], dtype=int))


def _close(torch: Any, a: Any, b: Any) -> bool:
    scale = float(b.abs().max()) + float(a.abs().max()) + 1e-30
    tol = 1e4 * torch.finfo(b.dtype).eps * scale
    return a.shape == b.shape and float((a - b).abs().max()) <= tol


def _layer_spec(torch: Any, module: Any) -> dict | None:
    """How a dense or convolutional layer unfolds, or None if it is neither."""
    nn = torch.nn
    if isinstance(module, nn.Linear):
        return {
            "type": "linear",
            "n_in": module.in_features,
            "n_out": module.out_features,
        }
    if type(module) in (nn.Conv1d, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros":
            return None
        padding = module.padding
        if isinstance(padding, str):
            if padding != "valid":
                return None
            padding = (0,) * len(module.kernel_size)
        two = isinstance(module, nn.Conv2d)
        return {
            "type": "conv2d" if two else "conv1d",
            "kernel": tuple(module.kernel_size),
            "stride": tuple(module.stride),
            "padding": tuple(padding),
            "dilation": tuple(module.dilation),
            "n_in": module.in_channels * int(np.prod(module.kernel_size)),
            "n_out": module.out_channels,
        }
    return None


def _unfold(torch: Any, x: Any, layer: dict) -> Any:
    """A layer's input as (b, positions, n_in): what each output position sees."""
    if layer["type"] == "linear":
        return x.reshape(x.shape[0], -1, x.shape[-1])
    if layer["type"] == "conv1d":
        x = x.unsqueeze(2)
        kernel, stride = (1, *layer["kernel"]), (1, *layer["stride"])
        padding, dilation = (0, *layer["padding"]), (1, *layer["dilation"])
    else:
        kernel, stride = layer["kernel"], layer["stride"]
        padding, dilation = layer["padding"], layer["dilation"]
    cols = torch.nn.functional.unfold(
        x, kernel, dilation=dilation, padding=padding, stride=stride
    )
    return cols.transpose(1, 2)


def _positions(torch: Any, g: Any, layer: dict) -> Any:
    """A signal at a layer's output as (b, positions, n_out)."""
    if layer["type"] == "linear":
        return g.reshape(g.shape[0], -1, g.shape[-1])
    return g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)
