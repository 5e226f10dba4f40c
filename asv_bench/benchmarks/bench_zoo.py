"""The NTK of every zoo model against a plain ``vmap(jacrev)`` contraction.

The models of :mod:`benchmarks._zoo` (MLP, CNN, ResNet with BatchNorm, LSTM,
GRU, Transformer encoder with a padding mask, HuggingFace BERT, a two-input
model, Flax linen and NNX models with BatchNorm, a Keras CNN), in float32,
"mean" output mode, on the CPU. Figures:

- ``track_speedup_over_vmap_jacrev``: on :data:`SAMPLES` samples, the
  reference's time over
  infoscope's, both timed in turns in the same process (best of a few), so
  a figure above 1 means infoscope is faster. The reference is what a
  researcher writes by hand: for PyTorch the torch.func tutorial's
  ``vmap(jacrev)`` and an einsum per parameter, over the trainable
  parameters (``jacrev`` of each sample in a loop where ``vmap`` cannot run
  the model: the LSTM, GRU and BERT with a 2-D mask); for JAX ``jax.vmap``
  of ``jax.jacrev`` over the trainable parameters and ``einsum``, compiled
  with ``jax.jit`` (neural-tangents' ``JACOBIAN_CONTRACTION`` with
  ``vmap_axes=0``). Keras runs on the backend ``KERAS_BACKEND`` chose
  (JAX by default), against that backend's reference. Compilation is
  excluded on both sides (one warm-up call in setup).
- ``time_empirical_ntk``: infoscope's NTK alone.

Setup checks that the two NTKs agree. Like the other benchmark modules,
this one imports no framework at import time; a missing one skips its
models (``n/a``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, ClassVar

import numpy as np

from . import _zoo
from ._base import SEED, best_times

TORCH_MODELS = [
    "mlp",
    "cnn",
    "resnet",
    "lstm",
    "gru",
    "transformer",
    "bert",
    "two_inputs",
]
JAX_MODELS = ["flax_linen_cnn", "flax_nnx"]
MODELS = [*TORCH_MODELS, *JAX_MODELS, "keras_cnn"]

# Samples per model: an NTK of the size researchers measure, where the
# reference's per-sample Jacobians (n x k x p numbers) stay within a few
# hundred MB; the models vmap cannot run (GRU, BERT with a 2-D mask) take
# seconds per hundred samples on both sides.
SAMPLES = {
    "mlp": 1024,
    "cnn": 1024,
    "resnet": 1024,
    "lstm": 512,
    "gru": 256,
    "transformer": 512,
    "bert": 256,
    "two_inputs": 1024,
    "flax_linen_cnn": 1024,
    "flax_nnx": 1024,
    "keras_cnn": 1024,
}


def _require(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise NotImplementedError(f"{module} is not installed")


class ZooCase:
    """One zoo model on n samples: infoscope's NTK and the reference."""

    def __init__(self, name: str, n: int):
        rng = np.random.default_rng(SEED)
        if name in TORCH_MODELS:
            _require("torch", *(["transformers"] if name == "bert" else []))
            self._torch(name, n, rng)
        elif name in JAX_MODELS:
            _require("jax", "flax")
            self._jax(name, n, rng)
        else:
            _require("keras")
            self._keras(n, rng)

    def _torch(self, name: str, n: int, rng: np.random.Generator) -> None:
        import torch

        from infoscope.adapters import torch as ta

        model, inputs, options = _zoo.TORCH_ZOO[name](torch.float32)
        model.eval()
        X = inputs(rng, n)
        output = options.get("output")
        self.ours = lambda: ta.empirical_ntk(model, X, **options)
        self.reference = lambda: _zoo.torch_vmap_jacrev_ntk(model, X, n, output)

    def _jax(self, name: str, n: int, rng: np.random.Generator) -> None:
        import jax.numpy as jnp

        from infoscope.adapters import jax as ja

        if name == "flax_linen_cnn":
            apply_fn, variables, inputs = _zoo.flax_linen_cnn(jnp.float32)
            stats = variables["batch_stats"]
            params, args = variables["params"], (apply_fn, variables)

            def f(p, x):
                return apply_fn({"params": p, "batch_stats": stats}, x)

        else:
            from flax import nnx

            model, inputs = _zoo.flax_nnx_net(jnp.float32)
            reference, _ = _zoo.flax_nnx_net(jnp.float32)
            reference.eval()
            graphdef, params, rest = nnx.split(reference, nnx.Param, ...)
            args = (model, None)

            def f(p, x):
                return nnx.merge(graphdef, p, rest)(x)

        X = inputs(rng, n)
        contraction = _zoo.jax_vmap_jacrev_ntk(f, params)
        self.ours = lambda: ja.empirical_ntk(*args, X).block_until_ready()
        self.reference = lambda: contraction(X).block_until_ready()

    def _keras(self, n: int, rng: np.random.Generator) -> None:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        from infoscope.adapters import keras as ka

        backend = keras.backend.backend()
        if backend not in ("jax", "torch"):
            raise NotImplementedError(f"Keras runs on {backend!r}")
        model, inputs = _zoo.keras_cnn("float32")
        X = inputs(rng, n)
        self.ours = lambda: _sync(ka.empirical_ntk(model, X))
        fixed = [v.value for v in model.non_trainable_variables]
        if backend == "jax":
            params = [v.value for v in model.trainable_variables]

            def f(p, x):
                return model.stateless_call(p, fixed, x, training=False)[0]

            contraction = _zoo.jax_vmap_jacrev_ntk(f, params)
            self.reference = lambda: contraction(X).block_until_ready()
        else:
            import torch

            from infoscope.adapters import keras as keras_adapter

            module = keras_adapter._torch_function(model, "array")
            Xt = torch.as_tensor(X)
            self.reference = lambda: _zoo.torch_vmap_jacrev_ntk(module, Xt, n)

    def check(self) -> None:
        ours, theirs = _host(self.ours()), _host(self.reference())
        scale = np.abs(theirs).max()
        if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * scale):
            raise AssertionError("infoscope's NTK and the reference differ")


class ZooNtk:
    """infoscope's NTK of each zoo model against ``vmap(jacrev)``, same process.

    ``n`` samples from :data:`SAMPLES` (``samples`` overrides it, for tests).
    """

    param_names: ClassVar[list[str]] = ["model"]
    params: ClassVar[list[Any]] = MODELS
    timeout = 600
    repeat_turns = 5  # turns of best_times
    samples: int | None = None

    def setup(self, model):
        self.case = ZooCase(model, self.samples or SAMPLES[model])
        self.case.check()  # and the warm-up: JAX compiles, torch allocates

    def teardown(self, model):
        self.case = None  # the model and its inputs, freed between models

    def time_empirical_ntk(self, model):
        self.case.ours()

    def track_speedup_over_vmap_jacrev(self, model):
        ours, theirs = best_times(
            self.case.ours, self.case.reference, repeat=self.repeat_turns, budget=60.0
        )
        return theirs / ours

    track_speedup_over_vmap_jacrev.unit = "times faster"


def _sync(x: Any) -> Any:
    if hasattr(x, "block_until_ready"):
        return x.block_until_ready()
    return x


def _host(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
