"""PyTorch adapter: activations, dense layers and empirical NTKs of a torch module.

``import infoscope.adapters.torch`` does not import PyTorch; the first call
does. Every function runs the model in evaluation mode (dropout off,
BatchNorm on its running statistics) and restores each submodule's
``training`` flag afterwards; parameters and their ``requires_grad`` flags are
left as they were and no autograd graph outlives a call. Results are
``torch.Tensor`` objects on the model's device.

The empirical NTK is taken over the model's *trainable* parameters (those
with ``requires_grad=True``). ``torch.nn.Linear``, ``Conv1d`` and ``Conv2d``
layers use the structured form: the per-sample Jacobian of a weight applied
at P positions is the outer product of the layer's input and the signal
back-propagated to its output, so its NTK block is a Hadamard product of an
activation Gram matrix and a signal Gram matrix (or, when cheaper, a product
of per-sample gradients formed from them) and no parameter Jacobian is ever
materialised. All other parameters go through per-sample Jacobians
(``torch.func.vmap`` of ``torch.func.jacrev``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import check_ntk_memory, to_numpy
from ._common import (
    MEMORY_BUDGET,
    LayerOutputs,
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

_PREFIX = "infoscope.adapters.torch."


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


def _as_input(caller: str, name: str, model: Any, X: Any) -> Any:
    """`X` as a tensor on the model's device, with a leading sample axis."""
    torch = _torch()
    device, dtype = _model_place(model)
    if isinstance(X, torch.Tensor):
        if X.device != device:
            raise ValueError(
                f"{caller}: `{name}` is on device {str(X.device)!r} but the model's "
                f"parameters are on {str(device)!r}; move one of them first "
                f"(e.g. `{name}.to({str(device)!r})`)."
            )
        X = X.detach()
    else:
        a = to_numpy(X)
        if a.dtype.kind not in "biuf":
            raise ValueError(
                f"{caller}: `{name}` must hold numbers; got dtype {a.dtype}."
            )
        if not a.flags.writeable:
            # Read-only buffers (from JAX, say): torch warns that it cannot
            # guarantee them; the model never writes to its input, so copy.
            a = a.copy()
        X = torch.as_tensor(a, device=device)
        if X.is_floating_point():
            X = X.to(dtype)
    if X.ndim == 0:
        raise ValueError(
            f"{caller}: `{name}` is a scalar; pass a batch of inputs with the "
            f"samples along the first axis (e.g. `{name}[None]` for one sample)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{caller}: `{name}` has no samples (shape {tuple(X.shape)}).")
    return X


@contextlib.contextmanager
def _evaluation(model: Any) -> Iterator[None]:
    """Run `model` in eval mode, restoring every submodule's own flag after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
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


def _apply(caller: str, model: Any, X: Any, name: str) -> Any:
    """`model(X)`, with a clear error if the model does not take `X`."""
    try:
        return model(X)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"{caller}: the model could not be applied to `{name}` (shape "
            f"{tuple(X.shape)}, dtype {X.dtype}): {exc}. Pass inputs the model "
            f"accepts, samples along the first axis."
        ) from exc


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def activations(
    model: Any, X: Any, layers: Any = None, batch_size: int | None = None
) -> dict[str, Any]:
    """The outputs of a PyTorch model's layers on inputs `X`.

    Parameters
    ----------
    model : torch.nn.Module
        Run in evaluation mode; its mode is restored afterwards.
    X : torch.Tensor or array-like
        Inputs, samples along the first axis. A tensor must be on the model's
        device; other arrays are converted to the model's device and float
        dtype.
    layers : str or list of str, optional
        Names from ``model.named_modules()``. By default every leaf module
        (one without children) whose output has the samples along its first
        axis.
    batch_size : int, optional
        Samples per forward pass; by default all of `X` at once.

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
    """
    caller = _PREFIX + "activations"
    torch = _torch()
    _check_model(caller, model)
    modules = {name: module for name, module in model.named_modules() if name}
    explicit = layers is not None
    if explicit:
        names = check_layers(caller, layers, list(modules))
    else:
        names = [n for n, m in modules.items() if next(m.children(), None) is None]
    batch_size = check_batch_size(caller, batch_size)
    X = _as_input(caller, "X", model, X)
    n = X.shape[0]
    slices = block_slices(n, batch_size or n)

    outputs = LayerOutputs(caller, names, explicit=explicit)

    def hook_for(name: str):
        def hook(module, inputs, output):
            outputs.capture(name, _first_tensor(output))

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    with torch.no_grad(), _evaluation(model), _removing(handles):
        for block in slices:
            outputs.start()
            _apply(caller, model, X[block], "X")
            outputs.finish(block.stop - block.start, lambda o: o.detach())
    return outputs.joined(lambda parts: torch.cat(parts, dim=0))


def dense_layers(model: Any, X: Any) -> list[tuple[str, Any, Any]]:
    """The dense layers of a PyTorch model with the inputs they see on `X`.

    What :class:`infoscope.NodeSNR` takes: for each ``torch.nn.Linear``
    called in the forward pass, its name, its input activations and its
    weight as a ``d_in x d_out`` matrix (the transpose of PyTorch's layout),
    so that the layer computes ``x @ W + b``.

    Parameters
    ----------
    model : torch.nn.Module
        Run once on `X` in evaluation mode; its mode is restored afterwards.
    X : torch.Tensor or array-like
        Inputs, samples along the first axis.

    Returns
    -------
    list of (str, torch.Tensor, torch.Tensor)
        ``(name, inputs, W)`` in the order the layers are first called.
        ``inputs`` is ``(n, d_in)``; a layer applied to more axes (a
        sequence, ``(n, t, d_in)``) has them folded into rows, and a layer
        called several times has its inputs stacked. ``W`` is a detached copy.

    Raises
    ------
    ValueError
        If no ``torch.nn.Linear`` is called on `X`.

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
    X = _as_input(caller, "X", model, X)
    linear = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    inputs: dict[str, list[Any]] = {}

    def hook_for(name: str):
        def hook(module, args):
            x = args[0]
            inputs.setdefault(name, []).append(x.detach().reshape(-1, x.shape[-1]))

        return hook

    handles = [m.register_forward_pre_hook(hook_for(name)) for name, m in linear]
    with torch.no_grad(), _evaluation(model), _removing(handles):
        _apply(caller, model, X, "X")
    if not inputs:
        raise ValueError(
            f"{caller}: the model calls no dense layer (torch.nn.Linear) on `X`; "
            f"dense_layers finds only those."
        )
    weights = dict(linear)
    return [
        (name, torch.cat(xs, dim=0), weights[name].weight.detach().T.clone())
        for name, xs in inputs.items()
    ]


# --------------------------------------------------------------------------- #
# empirical_ntk
# --------------------------------------------------------------------------- #


def empirical_ntk(
    model: Any,
    X1: Any,
    X2: Any = None,
    output_mode: str = "mean",
    batch_size: int | None = None,
) -> Any:
    """The empirical neural tangent kernel of a PyTorch model.

    ``Theta[(i, a), (j, b)] = sum_p df_a(x_i)/dtheta_p df_b(x_j)/dtheta_p``
    over the trainable parameters ``theta`` (``requires_grad=True``), with the
    model in evaluation mode.

    Parameters
    ----------
    model : torch.nn.Module
        Its outputs (all axes after the first flattened into ``k`` outputs)
        must be per-sample: row i depends on sample i only.
    X1 : torch.Tensor or array-like
        ``n1`` inputs, samples along the first axis.
    X2 : torch.Tensor or array-like, optional
        ``n2`` inputs of the same shape; by default `X1` (the symmetric case,
        where each block pair is contracted once and mirrored).
    output_mode : {"mean", "sum", "full"}, default="mean"
        ``"mean"``: ``(1/k) sum_a Theta[(i, a), (j, a)]``, ``n1 x n2`` (as
        neural-tangents with ``trace_axes=(-1,)``). ``"sum"``: the NTK of the
        summed outputs, ``sum_ab Theta[(i, a), (j, b)]``, ``n1 x n2``.
        ``"full"``: ``n1 k x n2 k``, sample-major (row ``i k + a``).
    batch_size : int, optional
        Samples per block. Memory grows with it (the block pairs, one
        forward/backward pass); by default it is chosen from the model's
        size. Per-sample features of all samples are stored once (in groups
        of parameters when they exceed about 512 MiB), so each block passes
        through the network once per group.

    Returns
    -------
    torch.Tensor
        On the model's device, in its output dtype.

    Raises
    ------
    ValueError
        If `output_mode` or `batch_size` is invalid, `X2`'s samples differ
        in shape from `X1`'s, the model does not take the inputs, or no
        parameter requires grad.

    Warns
    -----
    RuntimeWarning
        If the model's outputs mix samples (a batch's outputs differ from the
        outputs of its samples one at a time): the NTK is then computed one
        sample at a time (the per-sample definition), without the structured
        shortcut.

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
        check_same_sample_shape(caller, X1, X2)
    with _evaluation(model):
        ntk = _TorchNtk(caller, model, X1, X2, mode, batch_size)
        _guard_ntk_memory(ntk, X1, X2, caller)
        return ntk.compute()


def _guard_ntk_memory(ntk: Any, X1: Any, X2: Any, caller: str) -> None:
    """The output and the features the engine keeps must fit (backends' guard)."""
    import array_api_compat

    n1, n2 = X1.shape[0], (X1 if X2 is None else X2).shape[0]
    features = sum(t.bytes_per_sample for t in ntk.terms) * (n1 + n2)
    check_ntk_memory(
        n1 * ntk.kk,
        n2 * ntk.kk,
        ntk.dtype,
        working_set=int(min(features, MEMORY_BUDGET)),
        xp=array_api_compat.array_namespace(X1),
        device=X1.device,
        caller=caller,
        full=ntk.kk > 1,
    )


class _TorchNtk:
    """One empirical NTK computation (see :func:`empirical_ntk`)."""

    structured_types = ("Linear", "Conv1d", "Conv2d")

    def __init__(self, caller, model, X1, X2, mode, batch_size):
        torch = _torch()
        self.torch = torch
        self.caller = caller
        self.model = model
        self.X = (X1, X2)
        self.mode = mode
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
        probe = self._probe()
        self.k = probe.shape[1]
        self.dtype = probe.dtype
        self.itemsize = probe.element_size()
        self.kk = self.k if mode == "full" else 1
        self.batch_size = batch_size
        self.mixing = self._mixes_samples(probe)
        # Bytes per sample of the layer inputs and outputs a forward pass keeps
        # (known for the structured layers; the probe output otherwise).
        self.activation_bytes = probe.shape[1] * self.itemsize
        self.terms = self._plan()

    # -- the model as a function --------------------------------------------

    def _outputs(self, out: Any) -> Any:
        """Model outputs as (b, k): flattened, or summed in "sum" mode."""
        if not isinstance(out, self.torch.Tensor):
            raise ValueError(
                f"{self.caller}: the model returns a {type(out).__name__}; the "
                f"NTK needs a model that returns one tensor (wrap it to select "
                f"the output)."
            )
        out = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(-1, 1)
        if self.mode == "sum":
            out = out.sum(dim=1, keepdim=True)
        return out

    def _call(self, params: dict, x: Any) -> Any:
        return self.torch.func.functional_call(self.model, params, (x,))

    def _probe(self) -> Any:
        X1, X2 = self.X
        rows = (
            X1[:3] if X2 is None or X1.shape[0] >= 3 else self.torch.cat([X1, X2])[:3]
        )
        self.probe_x = rows
        with self.torch.no_grad():
            try:
                out = self._call(self.base, rows)
            except (RuntimeError, TypeError, ValueError, IndexError) as exc:
                raise ValueError(
                    f"{self.caller}: the model could not be applied to `X1` "
                    f"(samples of shape {tuple(X1.shape[1:])}, dtype {X1.dtype}): "
                    f"{exc}. Pass inputs the model accepts, samples along the "
                    f"first axis."
                ) from exc
            if isinstance(out, self.torch.Tensor) and (
                out.ndim == 0 or out.shape[0] != rows.shape[0]
            ):
                raise ValueError(
                    f"{self.caller}: the model maps {rows.shape[0]} samples to an "
                    f"output of shape {tuple(out.shape)}; the NTK needs one output "
                    f"row per sample."
                )
            return self._outputs(out)

    def _mixes_samples(self, probe: Any) -> bool:
        torch = self.torch
        m = self.probe_x.shape[0]
        if m < 2:
            return False
        with torch.no_grad():
            singles = torch.cat(
                [
                    self._outputs(self._call(self.base, self.probe_x[i : i + 1]))
                    for i in range(m)
                ]
            )
        scale = float(probe.abs().max()) + 1.0
        tol = 1000 * torch.finfo(probe.dtype).eps * scale
        if float((singles - probe).abs().max()) <= tol:
            return False
        warnings.warn(
            f"{self.caller}: the model's outputs mix samples (a batch's outputs "
            f"differ from those of its samples taken one at a time, as with "
            f"BatchNorm in training mode); computing the NTK one sample at a "
            f"time, without the structured shortcut.",
            RuntimeWarning,
            stacklevel=4,
        )
        return True

    # -- which parameters take which path -----------------------------------

    def _plan(self) -> list[Term]:
        torch = self.torch
        owners: dict[int, int] = {}
        for module in self.model.modules():
            for p in module.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        structured = {}
        if not self.mixing:
            for name, module in self.model.named_modules():
                layer = _layer_spec(torch, module)
                if layer is None:
                    continue
                own = {pn: p for pn, p in module.named_parameters(recurse=False)}
                if any(owners[id(p)] > 1 for p in own.values()):
                    continue  # tied weights: the generic path sums their uses
                weight = own.get("weight")
                bias = own.get("bias")
                layer["weight"] = weight is not None and weight.requires_grad
                layer["bias"] = bias is not None and bias.requires_grad
                if layer["weight"] or layer["bias"]:
                    structured[name] = (module, layer)
        structured = self._self_check(structured)
        covered = set()
        terms = []
        full = self.mode == "full"
        for name, (module, layer) in structured.items():
            n_in = (layer["n_in"] if layer["weight"] else 0) + int(layer["bias"])
            n_out, positions = layer["n_out"], layer["positions"]
            kind = structured_kind(positions, n_in, n_out, self.k, full)
            per = (
                positions * (n_in + self.k * n_out)
                if kind == "gram"
                else self.k * n_in * n_out
            )
            terms.append(Term(name, kind, per * self.itemsize, key=module, info=layer))
            prefix = f"{name}." if name else ""
            for pn in ("weight", "bias"):
                if layer[pn]:
                    covered.add(prefix + pn)
        for pname, p in self.trainable.items():
            if pname not in covered:
                terms.append(
                    Term(
                        pname, "generic", self.k * p.numel() * self.itemsize, key=pname
                    )
                )
        return terms

    def _self_check(self, structured: dict) -> dict:
        """Keep the layers whose structured gradient matches autograd's.

        On one sample, the summed-output gradient of each layer's weight and
        bias formed from its recorded input and back-propagated signal must
        equal the gradient autograd takes through the model. This catches
        layers used in ways forward hooks do not see (weights read directly,
        reparametrised weights) and layers never called; those go through the
        generic path instead. It also counts the positions each layer is
        applied at.
        """
        if not structured:
            return structured
        torch = self.torch
        x = self.probe_x[:1]
        A, G = self._structured_signals(x, structured)
        leaves = {}
        for name, (_module, layer) in structured.items():
            prefix = f"{name}." if name else ""
            for pn in ("weight", "bias"):
                if layer[pn]:
                    leaves[prefix + pn] = (
                        self.base[prefix + pn].clone().requires_grad_(True)
                    )
        with torch.enable_grad():
            out = self._outputs(self._call({**self.base, **leaves}, x))
            grads = torch.autograd.grad(
                out.sum(), list(leaves.values()), allow_unused=True
            )
        grads = dict(zip(leaves, grads, strict=True))
        kept = {}
        for name, (module, layer) in structured.items():
            if A[name] is None:
                continue
            prefix = f"{name}." if name else ""
            ours = torch.einsum("pi,po->io", A[name][0], G[name][0].sum(0))
            ok = True
            row = 0
            if layer["weight"]:
                g = grads[prefix + "weight"]
                ref = (
                    (torch.zeros_like(self.base[prefix + "weight"]) if g is None else g)
                    .reshape(layer["n_out"], -1)
                    .T
                )
                ok &= _close(torch, ours[: ref.shape[0]], ref)
                row = ref.shape[0]
            if layer["bias"]:
                g = grads[prefix + "bias"]
                ref = torch.zeros_like(self.base[prefix + "bias"]) if g is None else g
                ok &= _close(torch, ours[row], ref)
            if ok:
                layer["positions"] = A[name].shape[1]
                kept[name] = (module, layer)
                self.activation_bytes += (
                    A[name].shape[1]
                    * (A[name].shape[2] + G[name].shape[3])
                    * self.itemsize
                )
        return kept

    # -- features of one block ----------------------------------------------

    def _structured_signals(self, x: Any, layers: dict) -> tuple[dict, dict]:
        """Inputs ``A`` (b, P, n_in') and signals ``G`` (b, k, P, n_out) of `layers`.

        One forward pass with forward hooks that record each layer's input
        and add a zero tensor ``eps`` to its output, then ``k`` backward
        passes, one per output: the gradient with respect to ``eps`` is the
        signal back-propagated to the layer's output.
        """
        torch = self.torch
        record: dict[str, list[tuple[Any, Any]]] = {name: [] for name in layers}

        def hook_for(name, layer):
            def hook(module, inputs, output):
                eps = torch.zeros_like(output, requires_grad=True)
                record[name].append((_unfold(torch, inputs[0].detach(), layer), eps))
                return output + eps

            return hook

        handles = [
            module.register_forward_hook(hook_for(name, layer))
            for name, (module, layer) in layers.items()
        ]
        with torch.enable_grad():
            with _removing(handles):
                out = self._outputs(self._call(self.base, x))
            eps = [e for name in layers for _, e in record[name]]
            grads_by_output = _signals(torch, out, eps)
            out_k = out.shape[1]
            del out
        A: dict[str, Any] = {}
        G: dict[str, Any] = {}
        index = 0
        b = x.shape[0]
        for name, (_module, layer) in layers.items():
            calls = record[name]
            if not calls:
                A[name] = G[name] = None
                continue
            parts_a, parts_g = [], []
            for inp, e in calls:
                cols = []
                if layer["weight"]:
                    cols.append(inp)
                if layer["bias"]:
                    cols.append(torch.ones_like(inp[..., :1]))
                parts_a.append(torch.cat(cols, dim=-1) if len(cols) > 1 else cols[0])
                g = grads_by_output[index]  # (k, b, ...)
                if g is None:
                    g = torch.zeros((out_k, *e.shape), dtype=e.dtype, device=e.device)
                g = _positions(torch, g.reshape(-1, *e.shape[1:]), layer)
                parts_g.append(g.reshape(out_k, b, *g.shape[1:]).transpose(0, 1))
                index += 1
            A[name] = torch.cat(parts_a, dim=1).reshape(b, -1, parts_a[0].shape[-1])
            G[name] = torch.cat(parts_g, dim=2)
        return A, G

    def _generic_jacobian(self, x: Any, names: list[str]) -> Any:
        """Per-sample Jacobians of the outputs wrt parameters `names`: (b, k, p)."""
        torch = self.torch
        rest = {name: self.base[name] for name in names}

        def one(params, xi):
            out = self._call({**self.base, **params}, xi.unsqueeze(0))
            return self._outputs(out)[0]

        jac = torch.func.vmap(torch.func.jacrev(one), in_dims=(None, 0))(rest, x)
        b = x.shape[0]
        return torch.cat([jac[name].reshape(b, self.k, -1) for name in names], dim=2)

    def features(self, side: int, block: slice, group: list[Term]) -> list:
        x = self.X[side][block]
        layers = {t.name: (t.key, t.info) for t in group if t.kind != "generic"}
        feats = []
        jacobians = []
        if layers:
            A, G = self._structured_signals(x, layers)
            for t in group:
                if t.kind == "gram":
                    feats.append((A[t.name], G[t.name]))
                elif t.kind == "jacobian":
                    J = self.torch.einsum("bpi,bkpo->bkio", A[t.name], G[t.name])
                    jacobians.append(J.reshape(x.shape[0], self.k, -1))
            del A, G
        generic = [t.key for t in group if t.kind == "generic"]
        if generic:
            jacobians.append(self._generic_jacobian(x, generic))
        if jacobians:
            feats.append(self.torch.cat(jacobians, dim=2))
        return feats

    def contract(self, fi: list, fj: list, group: list[Term]) -> Any:
        torch = self.torch
        full = self.mode == "full"
        total = None
        for a, b in zip(fi, fj, strict=True):
            if isinstance(a, tuple):
                block = _gram_block(torch, a, b, full)
            else:
                ni, nj = a.shape[0], b.shape[0]
                if full:
                    block = a.reshape(ni * self.k, -1) @ b.reshape(nj * self.k, -1).T
                else:
                    block = a.reshape(ni, -1) @ b.reshape(nj, -1).T
            total = block if total is None else total + block
        return total

    # -- the whole kernel ---------------------------------------------------

    def compute(self) -> Any:
        torch = self.torch
        X1, X2 = self.X
        n1 = X1.shape[0]
        n2 = n1 if X2 is None else X2.shape[0]
        per_sample = sum(t.bytes_per_sample for t in self.terms)
        b = self.batch_size
        if b is None:
            working = per_sample + 4 * self.activation_bytes
            b = choose_batch_size(max(n1, n2), working)
            cap = int((2**26 / (4 * self.itemsize)) ** 0.5) // self.kk
            b = max(1, min(b, max(cap, 16)))
        rows = block_slices(n1, b)
        cols = None if X2 is None else block_slices(n2, b)
        groups = group_terms(self.terms, n1 + (0 if X2 is None else n2), MEMORY_BUDGET)
        kk = self.kk
        device = X1.device
        out = torch.zeros((n1 * kk, n2 * kk), dtype=self.dtype, device=device)
        col_slices = rows if cols is None else cols

        def store(i, j, block):
            r = slice(rows[i].start * kk, rows[i].stop * kk)
            c = slice(col_slices[j].start * kk, col_slices[j].stop * kk)
            out[r, c] += block
            if cols is None and i != j:
                out[c, r] += block.T

        with torch.no_grad():
            run_blocked(self.features, self.contract, store, groups, rows, cols)
        if self.mode == "mean":
            out /= self.k
        return out


def _signals(torch: Any, out: Any, eps: list[Any]) -> list[Any]:
    """``d out[:, a].sum() / d eps`` for every output a, stacked: (k, *eps.shape).

    One vectorised backward pass (``is_grads_batched``) where the model's
    operations support it, else one backward pass per output.
    """
    b, k = out.shape
    eye = torch.eye(k, dtype=out.dtype, device=out.device)
    try:
        grads = torch.autograd.grad(
            out,
            eps,
            grad_outputs=eye[:, None, :].expand(k, b, k),
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True,
        )
    except RuntimeError:
        per_output = [
            torch.autograd.grad(
                out[:, a].sum(), eps, retain_graph=True, allow_unused=True
            )
            for a in range(k)
        ]
        grads = tuple(
            None
            if per_output[0][i] is None
            else torch.stack([g[i] for g in per_output])
            for i in range(len(eps))
        )
    return list(grads)


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
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and type(module) in (
        nn.Conv1d,
        nn.Conv2d,
    ):
        if module.groups != 1 or module.padding_mode != "zeros":
            return None
        padding = module.padding
        if isinstance(padding, str):
            if padding != "valid":
                return None
            padding = (0,) * len(module.kernel_size)
        two = isinstance(module, nn.Conv2d)
        spec = {
            "type": "conv2d" if two else "conv1d",
            "kernel": tuple(module.kernel_size),
            "stride": tuple(module.stride),
            "padding": tuple(padding),
            "dilation": tuple(module.dilation),
        }
        spec["n_in"] = module.in_channels * int(np.prod(module.kernel_size))
        spec["n_out"] = module.out_channels
        return spec
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


def _gram_block(torch: Any, fa: tuple, fb: tuple, full: bool) -> Any:
    """``sum_pq (A_ip . A_jq)(G_iap . G_jbq)`` for one layer and two blocks."""
    Ai, Gi = fa
    Aj, Gj = fb
    ni, k, P, _ = Gi.shape
    nj = Gj.shape[0]
    if P == 1 and Aj.shape[1] == 1:
        AA = Ai[:, 0] @ Aj[:, 0].T
        if not full:
            return AA * (Gi.reshape(ni, -1) @ Gj.reshape(nj, -1).T)
        GG = (Gi.reshape(ni * k, -1) @ Gj.reshape(nj * k, -1).T).reshape(ni, k, nj, k)
        return (GG * AA[:, None, :, None]).reshape(ni * k, nj * k)
    AA = torch.einsum("ipd,jqd->ipjq", Ai, Aj)
    if not full:
        GG = torch.einsum("iapo,jaqo->ipjq", Gi, Gj)
        return (AA * GG).sum(dim=(1, 3))
    GG = torch.einsum("iapo,jbqo->iajbpq", Gi, Gj)
    return torch.einsum("iajbpq,ipjq->iajb", GG, AA).reshape(ni * k, nj * k)
