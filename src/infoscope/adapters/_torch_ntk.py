"""The empirical NTK of a PyTorch model: its features for the shared engine.

:class:`TorchNtk` reads a ``torch.nn.Module`` (its trainable parameters,
its dense and convolutional layers, checked against autograd on one sample),
plans its terms with :mod:`._ntk` and gives the engine, per block of
samples, the features of one function of a single sample differentiated
with ``torch.func.jacrev``: mapped over the block with ``vmap``, or sample
by sample where ``vmap`` cannot run the model or runs slower (remembered
per model, :data:`_PATH`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._common import select_output
from ._inputs import Inputs
from ._ntk import Layer, mixes_samples, plan_terms, structured_kind, warn_mixing
from ._ntk import compute as compute_ntk
from ._ntk import contract as contract_terms

# How each model's per-sample Jacobians were best taken: "loop" for models
# torch.func.vmap cannot run or runs slower than the sample loop (timed once),
# "vmap" for those timed faster with vmap. Later calls take it at once.
_PATH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_BATCHING_RULE = "There is a performance drop because we have not yet implemented"


def import_torch():
    import torch

    return torch


@contextlib.contextmanager
def removing(handles: list[Any]) -> Iterator[list[Any]]:
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


class TorchNtk:
    """One NTK computation (:func:`infoscope.adapters.torch.empirical_ntk`).

    Reads the model (its trainable parameters, its dense and convolutional
    layers, checked against autograd on one sample) and gives the engine the
    features of each block; :mod:`infoscope.adapters._ntk` does the rest.
    """

    def __init__(self, caller, model, X1, X2, mode, batch_size, output=None):
        torch = import_torch()
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
        self.terms = plan_terms(
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
        with torch.no_grad(), removing(handles):
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
            with removing(handles):
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

    def _checked_layers(self, candidates: dict, probe: Any) -> dict[str, Layer]:
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
            kind = structured_kind(positions, n_in, spec["n_out"], self.k, full)
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
            with torch.enable_grad(), removing(handles):
                out = self._outputs(self._call({**self.base, **leaves}, x))
                wrt = [e for name in planned for e in eps[name]] + list(leaves.values())
                if wrt and out.requires_grad:
                    grads = torch.autograd.grad(out.sum(), wrt, allow_unused=True)
                else:  # no planned layer reaches the output
                    grads = [None] * len(wrt)
        except _Unplanned:
            planned, grads, out = {}, [], None
        if out is not None and self.probe_x.n > 1:
            if mixes_samples(probe[:1], out.detach()):
                warn_mixing(self.caller, stacklevel=4)
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
                layers[name] = Layer(
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
        return contract_terms(self.xp, fi, fj, self.k, self.mode == "full")

    # -- the whole kernel ---------------------------------------------------

    def compute(self) -> Any:
        X1, X2 = self.X
        with self.torch.no_grad():
            return compute_ntk(
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
                contract_fn=self.contract,
                caller=self.caller,
            )


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
