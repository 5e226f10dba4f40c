"""The model zoo: small versions of the architectures researchers train.

Shared by the adapters' tests (``tests/adapters/test_zoo.py``: each NTK
against a brute-force per-sample Jacobian contraction) and the benchmarks
(``bench_zoo.py``: each NTK against a plain ``vmap(jacrev)`` contraction).
Each entry builds a model and its inputs from a NumPy generator, in a given
dtype; nothing is downloaded. Frameworks are imported only when a builder
runs.

PyTorch models: ``TORCH_ZOO[name](dtype) -> (model, make_inputs, options)``
where ``make_inputs(rng, n)`` gives the inputs of n samples (a tensor, a
tuple or a dict of tensors) and ``options`` the keyword arguments the
adapters need for it (``output=`` for the HuggingFace model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "TORCH_ZOO",
    "torch_brute_force_ntk",
    "torch_vmap_jacrev_ntk",
]


# --------------------------------------------------------------------------- #
# PyTorch
# --------------------------------------------------------------------------- #


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def torch_mlp(dtype: Any) -> tuple:
    import torch
    from torch import nn

    _seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    ).to(dtype)

    def inputs(rng, n):
        return torch.as_tensor(rng.standard_normal((n, 8)), dtype=dtype)

    return model, inputs, {}


def torch_cnn(dtype: Any) -> tuple:
    import torch
    from torch import nn

    _seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 4),
    ).to(dtype)

    def inputs(rng, n):
        return torch.as_tensor(rng.standard_normal((n, 3, 8, 8)), dtype=dtype)

    return model, inputs, {}


def _randomise_batchnorm(model: Any, rng: np.random.Generator) -> None:
    """Running statistics and affine weights away from their initial values."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.as_tensor(rng.normal(0, 0.5, c)))
                module.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, c)))
                module.weight.copy_(torch.as_tensor(rng.uniform(0.5, 1.5, c)))
                module.bias.copy_(torch.as_tensor(rng.normal(0, 0.2, c)))


def torch_resnet(dtype: Any) -> tuple:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(h)))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.block1 = Block(8)
            self.block2 = Block(8)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.stem(x)))
            h = self.block2(self.block1(h))
            return self.head(h.mean(dim=(2, 3)))

    _seed(2)
    model = ResNet()
    _randomise_batchnorm(model, np.random.default_rng(2))
    model = model.to(dtype)

    def inputs(rng, n):
        return torch.as_tensor(rng.standard_normal((n, 3, 8, 8)), dtype=dtype)

    return model, inputs, {}


def _recurrent(cell: str, dtype: Any) -> tuple:
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(30, 8)
            rnn = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = rnn(8, 12, num_layers=2, batch_first=True)
            self.head = nn.Linear(12, 3)

        def forward(self, tokens):
            h, _ = self.rnn(self.embed(tokens))
            return self.head(h[:, -1])

    _seed(3)
    model = Classifier().to(dtype)

    def inputs(rng, n):
        return torch.as_tensor(rng.integers(0, 30, (n, 6)))

    return model, inputs, {}


def torch_lstm(dtype: Any) -> tuple:
    return _recurrent("lstm", dtype)


def torch_gru(dtype: Any) -> tuple:
    return _recurrent("gru", dtype)


def _padding_mask(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    """True at the padded (trailing) positions; every sample keeps >= 2 tokens."""
    lengths = rng.integers(2, t + 1, n)
    return np.arange(t)[None, :] >= lengths[:, None]


def torch_transformer(dtype: Any) -> tuple:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(30, 16)
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(16, 3)

        def forward(self, tokens, padding_mask):
            h = self.encoder(self.embed(tokens), src_key_padding_mask=padding_mask)
            keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
            return self.head((h * keep).sum(1) / keep.sum(1))

    _seed(4)
    model = Encoder().to(dtype)

    def inputs(rng, n):
        tokens = torch.as_tensor(rng.integers(0, 30, (n, 7)))
        return tokens, torch.as_tensor(_padding_mask(rng, n, 7))

    return model, inputs, {}


def torch_bert(dtype: Any) -> tuple:
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    _seed(5)
    model = BertModel(config).to(dtype)

    def inputs(rng, n):
        ids = torch.as_tensor(rng.integers(0, 40, (n, 7)))
        mask = torch.as_tensor(~_padding_mask(rng, n, 7)).long()
        return {"input_ids": ids, "attention_mask": mask}

    return model, inputs, {"output": "pooler_output"}


def torch_two_inputs(dtype: Any) -> tuple:
    import torch
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3)
            self.dense = nn.Linear(5, 8)
            self.head = nn.Linear(4 * 4 * 4 + 8, 3)

        def forward(self, image, vector):
            a = torch.tanh(self.conv(image)).flatten(1)
            b = torch.relu(self.dense(vector))
            return self.head(torch.cat([a, b], dim=1))

    _seed(6)
    model = TwoInputs().to(dtype)

    def inputs(rng, n):
        image = torch.as_tensor(rng.standard_normal((n, 2, 6, 6)), dtype=dtype)
        return image, torch.as_tensor(rng.standard_normal((n, 5)), dtype=dtype)

    return model, inputs, {}


TORCH_ZOO: dict[str, Callable[[Any], tuple]] = {
    "mlp": torch_mlp,
    "cnn": torch_cnn,
    "resnet": torch_resnet,
    "lstm": torch_lstm,
    "gru": torch_gru,
    "transformer": torch_transformer,
    "bert": torch_bert,
    "two_inputs": torch_two_inputs,
}


def _call(model: Any, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _take(x: Any, i: Any) -> Any:
    if isinstance(x, dict):
        return {k: v[i] for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(v[i] for v in x)
    return x[i]


def _select(out: Any, output: Any) -> Any:
    if output is None:
        return out
    if callable(output):
        return output(out)
    return out[output]


def torch_brute_force_ntk(model: Any, X: Any, n: int, output: Any = None) -> Any:
    """The "mean" NTK by definition: per sample and output, one autograd call.

    The model runs in evaluation mode on each sample alone; the Jacobians are
    over the parameters with ``requires_grad=True``.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    training = model.training
    model.eval()
    rows = []
    try:
        for i in range(n):
            out = _select(_call(model, _take(X, slice(i, i + 1))), output).reshape(-1)
            per_output = []
            for a in range(out.shape[0]):
                grads = torch.autograd.grad(
                    out[a], params, retain_graph=True, allow_unused=True
                )
                per_output.append(
                    torch.cat(
                        [
                            (torch.zeros_like(p) if g is None else g).reshape(-1)
                            for g, p in zip(grads, params, strict=True)
                        ]
                    )
                )
            rows.append(torch.stack(per_output).detach())
    finally:
        model.train(training)
    J = torch.stack(rows)
    return torch.einsum("iap,jap->ij", J, J) / J.shape[1]


def torch_vmap_jacrev_ntk(model: Any, X: Any, n: int, output: Any = None) -> Any:
    """The "mean" NTK as the torch.func tutorial computes it.

    ``vmap(jacrev)`` of the model on one sample over the samples, then an
    einsum per parameter. Where ``vmap`` cannot run the model (recurrent
    layers, data-dependent control flow), ``jacrev`` of each sample in a
    loop: the plain computation a researcher would fall back to.
    """
    import torch
    from torch.func import functional_call, jacrev, vmap

    params = {
        name: p.detach() for name, p in model.named_parameters() if p.requires_grad
    }

    def single(params, x):
        x = _take(x, None)  # a batch of one
        if isinstance(x, dict):
            out = functional_call(model, params, (), x)
        else:
            out = functional_call(
                model, params, tuple(x) if isinstance(x, (tuple, list)) else (x,)
            )
        return _select(out, output).reshape(-1)

    training = model.training
    model.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        try:
            jac = vmap(jacrev(single), (None, 0))(params, X)
        except RuntimeError:
            per_sample = [jacrev(single)(params, _take(X, i)) for i in range(n)]
            jac = {k: torch.stack([j[k] for j in per_sample]) for k in params}
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(training)
    flat = [j.flatten(2) for j in jac.values()]
    total = sum(torch.einsum("iaf,jaf->ij", j, j) for j in flat)
    return total / flat[0].shape[1]


# --------------------------------------------------------------------------- #
# JAX: Flax linen and NNX
# --------------------------------------------------------------------------- #


def _draw(rng: np.random.Generator, names: list[str], shape: tuple) -> np.ndarray:
    """A value for a Flax variable by its name: weights, biases, BatchNorm state.

    Drawn with NumPy (Flax's initialisers would compile a random program per
    shape, seconds each); the batch statistics and scales are set away from
    their initial values so that holding them fixed matters.
    """
    last, owner = names[-1], "/".join(names[:-1]).lower()
    if last == "var":
        return rng.uniform(0.5, 2.0, shape)
    if last == "mean":
        return rng.normal(0.0, 0.5, shape)
    if last == "scale":
        return rng.uniform(0.5, 1.5, shape)
    if last == "bias":
        return rng.normal(
            0.0, 0.3 if "batchnorm" in owner or "bn" in owner else 0.1, shape
        )
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)


def flax_linen_cnn(dtype: Any) -> tuple:
    """A linen CNN with BatchNorm: ``(apply_fn, variables, make_inputs)``.

    The batch statistics are set away from their initial values; the
    adapters must hold them fixed and differentiate ``params`` only.
    """
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), param_dtype=dtype, dtype=dtype)(x)
            x = nn.relu(nn.BatchNorm(True, param_dtype=dtype, dtype=dtype)(x))
            x = nn.Conv(
                6, (3, 3), strides=2, padding="VALID", param_dtype=dtype, dtype=dtype
            )(x)
            x = nn.relu(nn.BatchNorm(True, param_dtype=dtype, dtype=dtype)(x))
            return nn.Dense(3, param_dtype=dtype, dtype=dtype)(x.mean(axis=(1, 2)))

    model = CNN()
    shapes = jax.eval_shape(
        model.init, jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 2), dtype)
    )
    rng = np.random.default_rng(7)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(
            _draw(rng, [str(getattr(k, "key", k)) for k in path], leaf.shape), dtype
        ),
        shapes,
    )

    def inputs(rng, n):
        return np.asarray(rng.standard_normal((n, 8, 8, 2)), dtype)

    return model.apply, variables, inputs


def flax_nnx_net(dtype: Any, seed: int = 0) -> tuple:
    """An NNX model with BatchNorm and Dropout, in training mode as built.

    Returns ``(model, make_inputs)``; the adapters run it in evaluation mode
    without changing it. Two calls with the same seed give the same weights.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(
                2, 4, (3, 3), rngs=rngs, param_dtype=dtype, dtype=dtype
            )
            self.bn = nnx.BatchNorm(4, rngs=rngs, param_dtype=dtype, dtype=dtype)
            self.drop = nnx.Dropout(0.3, rngs=rngs)
            self.hidden = nnx.Linear(4, 8, rngs=rngs, param_dtype=dtype, dtype=dtype)
            self.head = nnx.Linear(8, 3, rngs=rngs, param_dtype=dtype, dtype=dtype)

        def __call__(self, x):
            h = nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2))
            return self.head(self.drop(nnx.tanh(self.hidden(h))))

    abstract = nnx.eval_shape(lambda: Net(nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(8 + seed)
    key = jax.random.key(seed)

    def fill(path, leaf):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        names = [n for n in names if n != "value"]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return key
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.zeros(leaf.shape, leaf.dtype)
        return jnp.asarray(_draw(rng, names, leaf.shape), dtype)

    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))

    def inputs(rng, n):
        return np.asarray(rng.standard_normal((n, 6, 6, 2)), dtype)

    return model, inputs


def jax_brute_force_ntk(f: Callable, params: Any, X: np.ndarray) -> np.ndarray:
    """The "mean" NTK by definition: ``jax.jacrev`` of `f` on each sample alone.

    ``f(params, x)`` maps one batch to outputs; no ``vmap``: a compiled
    Jacobian per sample, contracted in NumPy.
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(params)

    def one(leaves, x):
        p = jax.tree_util.tree_unflatten(treedef, leaves)
        return f(p, x[None]).reshape(-1)

    jac = jax.jit(jax.jacrev(one))
    rows = []
    for x in X:
        J = jac(leaves, x)
        rows.append(
            np.concatenate([np.asarray(j).reshape(j.shape[0], -1) for j in J], 1)
        )
    J = np.stack(rows)
    return np.einsum("iap,jap->ij", J, J) / J.shape[1]


def jax_vmap_jacrev_ntk(f: Callable, params: Any) -> Callable:
    """A compiled ``X -> NTK`` ("mean") as ``vmap(jacrev)`` and ``einsum``.

    neural-tangents' ``JACOBIAN_CONTRACTION`` with ``vmap_axes=0``, over the
    leaves of `params`.
    """
    import jax

    def single(p, x):
        return f(p, x[None]).reshape(-1)

    def ntk(p, X):
        jac = jax.vmap(jax.jacrev(single), (None, 0))(p, X)
        leaves = [j.reshape(j.shape[0], j.shape[1], -1) for j in jax.tree.leaves(jac)]
        total = sum(jax.numpy.einsum("iap,jap->ij", j, j) for j in leaves)
        return total / leaves[0].shape[1]

    compiled = jax.jit(ntk)
    return lambda X: compiled(params, X)


# --------------------------------------------------------------------------- #
# Keras 3
# --------------------------------------------------------------------------- #


def keras_cnn(dtype: str = "float32") -> tuple:
    """A Keras CNN with two Conv2D layers: ``(model, make_inputs)``.

    Built on whichever backend Keras runs, its layers in `dtype`; the
    weights are drawn with NumPy (Keras' random initialisers would compile a
    program per shape on JAX).
    """
    import keras

    zeros = {
        "kernel_initializer": "zeros",
        "bias_initializer": "zeros",
        "dtype": dtype,
    }
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2), dtype=dtype),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv1", **zeros),
            keras.layers.Conv2D(
                4, 3, strides=2, activation="tanh", name="conv2", **zeros
            ),
            keras.layers.Flatten(dtype=dtype),
            keras.layers.Dense(3, name="head", **zeros),
        ]
    )
    rng = np.random.default_rng(9)
    model.set_weights(
        [
            rng.normal(0.0, 1.0 / np.sqrt(np.prod(w.shape[:-1])), w.shape)
            if len(w.shape) > 1
            else rng.normal(0.0, 0.1, w.shape)
            for w in model.get_weights()
        ]
    )

    def inputs(rng, n):
        return rng.standard_normal((n, 8, 8, 2)).astype(dtype)

    return model, inputs
