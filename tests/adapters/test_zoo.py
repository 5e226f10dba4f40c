"""The model zoo: each architecture's NTK against a brute-force contraction.

Every model of ``asv_bench/benchmarks/_zoo.py`` (MLP, CNN, ResNet with
BatchNorm and skips, LSTM, GRU, Transformer encoder with a padding mask, a
HuggingFace BERT from a tiny config, a two-input model, a Flax linen CNN with
BatchNorm, a Flax NNX model with BatchNorm and Dropout, a Keras CNN with two
Conv2D layers on each backend) in float64: the adapters' "mean" NTK equals
the per-sample Jacobians' contraction, each Jacobian taken by autograd on
one sample and output at a time, to 1e-10.

Keras reads its backend once per process: the Keras CNN runs here on JAX,
and on PyTorch in the PyTorch-backend process of ``test_keras.py``
(:data:`KERAS_CHECK`, shared).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ASV_BENCH = Path(__file__).resolve().parents[2] / "asv_bench"
sys.path.insert(0, str(ASV_BENCH))

from benchmarks import _zoo  # noqa: E402

N = 6
RTOL = 1e-10


def assert_close(K, expected):
    K, expected = np.asarray(K), np.asarray(expected)
    assert K.shape == expected.shape
    err = np.abs(K - expected).max()
    assert err <= RTOL * np.abs(expected).max(), f"max error {err:.3g}"


# --------------------------------------------------------------------------- #
# PyTorch
# --------------------------------------------------------------------------- #

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


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_ntk_is_the_brute_force_contraction(name):
    torch = pytest.importorskip("torch")
    if name == "bert":
        pytest.importorskip("transformers")
    from infoscope.adapters import torch as ta

    model, inputs, options = _zoo.TORCH_ZOO[name](torch.float64)
    model.train()  # as in a training loop: the adapter measures it in eval mode
    X = inputs(np.random.default_rng(0), N)
    K = ta.empirical_ntk(model, X, batch_size=4, **options)  # two blocks
    assert K.dtype == torch.float64 and K.shape == (N, N)
    assert model.training
    expected = _zoo.torch_brute_force_ntk(model, X, N, options.get("output"))
    assert_close(K, expected)


def test_models_vmap_cannot_run_take_the_sample_loop():
    """Data-dependent control flow: vmap fails, the loop gives the NTK."""
    torch = pytest.importorskip("torch")
    from infoscope.adapters import _torch_ntk
    from infoscope.adapters import torch as ta

    class Branching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 4)
            self.b = torch.nn.Linear(4, 2)

        def forward(self, x):
            h = torch.tanh(self.a(x))
            if float(h.detach().sum()) > 0:  # .item(): no batching rule in vmap
                h = h * 2
            return self.b(h)

    torch.manual_seed(0)
    model = Branching().double()
    X = torch.randn(5, 3, dtype=torch.float64)
    K = ta.empirical_ntk(model, X)
    assert _torch_ntk._PATH.get(model) == "loop"
    assert_close(K, _zoo.torch_brute_force_ntk(model, X, 5))


# --------------------------------------------------------------------------- #
# JAX: Flax linen and NNX
# --------------------------------------------------------------------------- #


@pytest.fixture
def x64():
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def test_flax_linen_cnn_differentiates_params_and_holds_batch_stats(x64):
    pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp

    from infoscope.adapters import jax as ja

    apply_fn, variables, inputs = _zoo.flax_linen_cnn(jnp.float64)
    X = inputs(np.random.default_rng(1), N)
    K = ja.empirical_ntk(apply_fn, variables, X, batch_size=4)
    stats = variables["batch_stats"]

    def f(params, x):
        return apply_fn({"params": params, "batch_stats": stats}, x)

    assert_close(K, _zoo.jax_brute_force_ntk(f, variables["params"], X))
    # A later call (the program read once is kept) sees the new values of
    # both the parameters and the batch statistics.
    variables = jax.tree.map(lambda a: a * 1.1 + 0.05, variables)
    stats = variables["batch_stats"]
    K = ja.empirical_ntk(apply_fn, variables, X)
    assert_close(K, _zoo.jax_brute_force_ntk(f, variables["params"], X))


def test_flax_nnx_with_batchnorm_and_dropout_in_eval_mode(x64):
    pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from infoscope.adapters import jax as ja

    model, inputs = _zoo.flax_nnx_net(jnp.float64)
    X = inputs(np.random.default_rng(2), N)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    K = ja.empirical_ntk(model, None, X, batch_size=4)
    # The model is left as built: training mode, same parameters.
    assert not model.drop.deterministic and not model.bn.use_running_average
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, before, after)

    reference, _ = _zoo.flax_nnx_net(jnp.float64)  # the same weights
    reference.eval()
    graphdef, params, rest = nnx.split(reference, nnx.Param, ...)

    def f(p, x):
        return nnx.merge(graphdef, p, rest)(x)

    expected = _zoo.jax_brute_force_ntk(f, params, X)
    assert_close(K, expected)
    # The nnx.split(model) recipe: an nnx.State as params, Param leaves only.
    graphdef, state = nnx.split(reference)
    K2 = ja.empirical_ntk(lambda s, x: nnx.merge(graphdef, s)(x), state, X)
    assert_close(K2, expected)


def test_torch_and_flax_ntks_of_one_batchnorm_network_agree(x64):
    torch = pytest.importorskip("torch")
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import linen as nn

    from infoscope.adapters import jax as ja
    from infoscope.adapters import torch as ta

    class Flax(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3), param_dtype=jnp.float64, name="conv")(x)
            h = nn.BatchNorm(True, param_dtype=jnp.float64, name="bn")(h)
            return nn.Dense(3, param_dtype=jnp.float64, name="head")(
                nn.relu(h).mean(axis=(1, 2))
            )

    class Torch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))

    rng = np.random.default_rng(3)
    conv_w, conv_b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.3, 4)
    mean, var = rng.normal(0, 0.5, 4), rng.uniform(0.5, 2.0, 4)
    head_w, head_b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    net = Torch().double()
    with torch.no_grad():
        for tensor, value in (
            (net.conv.weight, conv_w),
            (net.conv.bias, conv_b),
            (net.bn.weight, gamma),
            (net.bn.bias, beta),
            (net.bn.running_mean, mean),
            (net.bn.running_var, var),
            (net.head.weight, head_w),
            (net.head.bias, head_b),
        ):
            tensor.copy_(torch.as_tensor(value))
    variables = {
        "params": {
            "conv": {"kernel": conv_w.transpose(2, 3, 1, 0), "bias": conv_b},
            "bn": {"scale": gamma, "bias": beta},
            "head": {"kernel": head_w.T, "bias": head_b},
        },
        "batch_stats": {"bn": {"mean": mean, "var": var}},
    }
    X = rng.standard_normal((N, 2, 5, 5))
    Kt = ta.empirical_ntk(net, X).numpy()
    Kf = np.asarray(ja.empirical_ntk(Flax().apply, variables, X.transpose(0, 2, 3, 1)))
    assert_close(Kf, Kt)


# --------------------------------------------------------------------------- #
# Keras 3, on each backend (Keras reads its backend once: one process each)
# --------------------------------------------------------------------------- #

KERAS_CHECK = """
import numpy as np
import keras
from benchmarks import _zoo
from infoscope.adapters import keras as ka

model, inputs = _zoo.keras_cnn("float64")
X = inputs(np.random.default_rng(4), {n})
K = keras.ops.convert_to_numpy(ka.empirical_ntk(model, X, batch_size=4))
assert K.dtype == np.float64, K.dtype
params = list(model.trainable_variables)
fixed = [v.value for v in model.non_trainable_variables]
if keras.backend.backend() == "jax":
    def f(p, x):
        return model.stateless_call(p, fixed, x, training=False)[0]

    expected = _zoo.jax_brute_force_ntk(f, [v.value for v in params], X)
else:
    import torch

    rows = []
    for x in torch.as_tensor(X):
        out = model(x[None], training=False).reshape(-1)
        rows.append(torch.stack([
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(
                out[a], [p.value for p in params], retain_graph=True)])
            for a in range(out.shape[0])
        ]))
    J = torch.stack(rows).detach().numpy()
    expected = np.einsum("iap,jap->ij", J, J) / J.shape[1]
err = np.abs(K - expected).max() / np.abs(expected).max()
assert err <= {rtol}, f"relative error {{err:.3g}}"
"""


def test_keras_cnn_with_two_conv2d_layers_on_jax(x64):
    """In this process when Keras runs on JAX here (test_keras.py's choice)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()!r} in this process")
    exec(KERAS_CHECK.format(n=N, rtol=RTOL), {})
