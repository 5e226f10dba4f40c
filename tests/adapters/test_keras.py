"""The Keras adapter against hand-written forward passes and Jacobians.

This process runs Keras on JAX; the PyTorch backend and an unsupported one
run in subprocesses (Keras reads its backend once, at its first import).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip(
        f"Keras runs on {keras.backend.backend()!r} here; this module tests it on JAX",
        allow_module_level=True,
    )
jax = pytest.importorskip("jax")
jnp = jax.numpy

from infoscope.adapters import keras as ka  # noqa: E402

layers = keras.layers


def host(x):
    return np.asarray(x.value if isinstance(x, keras.Variable) else x)


def weights(layer):
    return [host(w) for w in layer.weights]


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((5,)),
            layers.Dense(7, activation="tanh", name="d1"),
            layers.Dropout(0.5, name="drop"),
            layers.Dense(3, name="d2"),
        ],
        name="mlp",
    )


def mlp_forward(W1, b1, W2, b2, x):
    """The MLP written out (dropout off): any array namespace."""
    return jnp.tanh(x @ W1 + b1) @ W2 + b2


def X_(n=6, d=5, seed=1):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def jacobians(f, params, X):
    """Per-sample Jacobians (n, k, p) of ``f(params, x)`` on each sample alone."""

    def one(params, x):
        return f(params, x[None]).reshape(-1)

    jac = jax.vmap(jax.jacrev(one), in_axes=(None, 0))(params, jnp.asarray(X))
    leaves = jax.tree_util.tree_leaves(jac)
    return np.concatenate(
        [np.asarray(j, dtype=np.float64).reshape(*j.shape[:2], -1) for j in leaves],
        axis=2,
    )


def reference_ntk(J1, J2, mode):
    n1, k, _ = J1.shape
    n2 = J2.shape[0]
    if mode == "mean":
        return np.einsum("iap,jap->ij", J1, J2) / k
    if mode == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return np.einsum("iap,jbp->iajb", J1, J2).reshape(n1 * k, n2 * k)


def assert_close(K, expected, rtol=2e-5):
    K, expected = np.asarray(K), np.asarray(expected)
    assert K.shape == expected.shape
    err = np.abs(K - expected).max()
    assert err <= rtol * np.abs(expected).max(), f"max error {err}"


# --------------------------------------------------------------------------- #
# empirical_ntk
# --------------------------------------------------------------------------- #


def test_ntk_equals_the_jacobian_contraction_in_every_mode():
    model = mlp()
    X, X2 = X_(), X_(3, seed=2)
    params = [
        jnp.asarray(w) for w in weights(model.layers[0]) + weights(model.layers[2])
    ]

    def f(p, x):
        return mlp_forward(*p, x)

    J, J2 = jacobians(f, params, X), jacobians(f, params, X2)
    assert J.shape == (6, 3, 5 * 7 + 7 + 7 * 3 + 3)
    for mode in ("mean", "sum", "full"):
        K = ka.empirical_ntk(model, X, output_mode=mode, batch_size=4)
        assert isinstance(K, jax.Array)
        assert_close(K, reference_ntk(J, J, mode))
        assert_close(
            ka.empirical_ntk(model, X, X2, output_mode=mode), reference_ntk(J, J2, mode)
        )
    assert ka.empirical_ntk(model, X).shape == (6, 6)


def test_ntk_is_over_trainable_weights_in_inference_mode():
    # Dropout off, BatchNormalization on its moving statistics (gamma and
    # beta trainable, the statistics not), a frozen first layer left out.
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(6, name="frozen"),
            layers.BatchNormalization(name="bn"),
            layers.Activation("tanh"),
            layers.Dropout(0.9),
            layers.Dense(2, name="out"),
        ]
    )
    bn = model.get_layer("bn")
    rng = np.random.default_rng(4)
    bn.moving_mean.assign(rng.standard_normal(6).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 6).astype(np.float32))
    bn.gamma.assign(rng.uniform(0.5, 1.5, 6).astype(np.float32))
    model.get_layer("frozen").trainable = False
    before = [host(v) for v in model.variables]
    W1, b1 = (jnp.asarray(w) for w in weights(model.get_layer("frozen")))
    mean, var = jnp.asarray(host(bn.moving_mean)), jnp.asarray(host(bn.moving_variance))

    def f(p, x):
        gamma, beta, W2, b2 = p
        h = (x @ W1 + b1 - mean) / jnp.sqrt(var + bn.epsilon) * gamma + beta
        return jnp.tanh(h) @ W2 + b2

    params = [jnp.asarray(host(v)) for v in (bn.gamma, bn.beta)] + [
        jnp.asarray(w) for w in weights(model.get_layer("out"))
    ]
    X = X_(5, 4, seed=5)
    J = jacobians(f, params, X)
    assert J.shape[2] == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    for mode in ("mean", "full"):
        assert_close(
            ka.empirical_ntk(model, X, output_mode=mode), reference_ntk(J, J, mode)
        )
    assert not model.get_layer("frozen").trainable and model.get_layer("out").trainable
    for a, b in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(a, host(b))


class Residual(keras.Model):
    """A subclassed model: a residual block and a head."""

    def __init__(self):
        super().__init__()
        self.inner = layers.Dense(4, activation="relu", name="inner")
        self.head = layers.Dense(2, name="head")

    def call(self, x, training=False):
        return self.head(x + self.inner(x))


def test_subclassed_models_work_with_all_three_functions():
    keras.utils.set_random_seed(6)
    model = Residual()
    X = X_(5, 4, seed=7)
    with pytest.raises(ValueError, match="`model` is not built"):
        ka.activations(model, X)
    model(X[:1])
    W1, b1 = (jnp.asarray(w) for w in weights(model.inner))
    h = np.maximum(X @ host(W1) + host(b1), 0)
    acts = ka.activations(model, X)
    assert list(acts) == ["inner", "head"]
    np.testing.assert_allclose(acts["inner"], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["head"], host(model(X)), rtol=1e-5, atol=1e-6)
    (n1, x1, _), (n2, x2, W2) = ka.dense_layers(model, X)
    assert (n1, n2) == ("inner", "head")
    np.testing.assert_array_equal(x1, X)
    np.testing.assert_allclose(x2, X + h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(W2, host(model.head.kernel))

    def f(p, x):
        W1, b1, W2, b2 = p
        return (x + jax.nn.relu(x @ W1 + b1)) @ W2 + b2

    params = [W1, b1, *(jnp.asarray(w) for w in weights(model.head))]
    J = jacobians(f, params, X)
    assert_close(
        ka.empirical_ntk(model, X, output_mode="full"), reference_ntk(J, J, "full")
    )


def test_the_ntk_is_computed_once_by_the_jax_adapter(monkeypatch):
    from infoscope.adapters import jax as ja

    calls = []
    original = ja._ntk_of

    def spy(caller, model, *args, **kwargs):
        calls.append((sorted(model.trainable), len(model.fixed)))
        return original(caller, model, *args, **kwargs)

    monkeypatch.setattr(ja, "_ntk_of", spy)
    ka.empirical_ntk(mlp(), X_())
    names = ["mlp/d1/bias", "mlp/d1/kernel", "mlp/d2/bias", "mlp/d2/kernel"]
    assert calls == [(names, 1)]  # the dropout's seed is held fixed


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def shared_model():
    """Functional, with a layer applied twice and a dropout."""
    keras.utils.set_random_seed(8)
    inputs = keras.Input((5,), name="x")
    h = layers.Dense(6, activation="tanh", name="d1")(inputs)
    h = layers.Dropout(0.9, name="drop")(h)
    shared = layers.Dense(6, activation="relu", name="shared")
    h = shared(shared(h))
    return keras.Model(inputs, layers.Dense(2, name="out")(h))


def test_activations_are_the_layer_outputs():
    model = shared_model()
    X = X_(11)
    W1, b1 = weights(model.get_layer("d1"))
    Ws, bs = weights(model.get_layer("shared"))
    Wo, bo = weights(model.get_layer("out"))
    h1 = np.tanh(X @ W1 + b1)  # dropout off
    s1 = np.maximum(h1 @ Ws + bs, 0)
    s2 = np.maximum(s1 @ Ws + bs, 0)
    expected = {
        "d1": h1,
        "drop": h1,
        "shared": s1,
        "shared:1": s2,
        "out": s2 @ Wo + bo,
    }
    acts = ka.activations(model, X)
    assert list(acts) == list(expected)  # the InputLayer left out
    for name, value in expected.items():
        assert isinstance(acts[name], jax.Array)
        np.testing.assert_allclose(acts[name], value, rtol=1e-5, atol=1e-6)
    batched = ka.activations(model, X, layers=["out", "d1"], batch_size=4)
    assert list(batched) == ["out", "d1"]
    np.testing.assert_allclose(batched["out"], expected["out"], rtol=1e-5, atol=1e-6)
    one = ka.activations(model, X.astype(np.float64), layers="drop")
    assert list(one) == ["drop"] and one["drop"].dtype == jnp.float32
    assert all("call" not in layer.__dict__ for layer in model.layers)


def test_dense_layers_give_what_each_layer_sees():
    model = shared_model()
    X = X_(9)
    found = ka.dense_layers(model, X)
    assert [name for name, _, _ in found] == ["d1", "shared", "out"]
    acts = ka.activations(model, X)
    (_, x1, _), (_, xs, _), (_, xo, _) = found
    np.testing.assert_array_equal(x1, X)
    assert xs.shape == (18, 6)  # called twice: both inputs stacked
    np.testing.assert_allclose(xs, np.concatenate([acts["drop"], acts["shared"]]))
    np.testing.assert_allclose(xo, acts["shared:1"])
    for name, x, W in found:
        layer = model.get_layer(name)
        np.testing.assert_array_equal(W, host(layer.kernel))
        pre = host(x) @ host(W) + host(layer.bias)
        out = np.concatenate(
            [acts[name], acts[name + ":1"]] if name == "shared" else [acts[name]]
        )
        np.testing.assert_allclose(
            keras.activations.get(layer.activation)(pre), out, rtol=1e-5, atol=1e-6
        )


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #


def test_unknown_layer_lists_the_available_ones():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "infoscope.adapters.keras.activations: unknown layer name(s) ['d9'] in "
            "`layers`; the model has ['d1', 'drop', 'd2']"
        ),
    ):
        ka.activations(mlp(), X_(), layers=["d1", "d9"])


def test_unbuilt_and_non_keras_models_are_refused():
    unbuilt = keras.Sequential([layers.Dense(3)])
    for fn in (ka.activations, ka.dense_layers, ka.empirical_ntk):
        with pytest.raises(
            ValueError,
            match=re.escape(
                f"infoscope.adapters.keras.{fn.__name__}: `model` is not built (its "
                f"weights do not exist yet); call it on a batch first (`model(X[:1])`)"
            ),
        ):
            fn(unbuilt, X_())
    with pytest.raises(
        TypeError, match=r"`model` must be a Keras 3 model.*got function"
    ):
        ka.activations(lambda x: x, X_())


def test_bad_arguments_name_the_argument_and_the_fix():
    model = mlp()
    X = X_()
    with pytest.raises(ValueError, match=r"`output_mode` must be one of.*got 'trace'"):
        ka.empirical_ntk(model, X, output_mode="trace")
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer"):
        ka.activations(model, X, batch_size=0)
    with pytest.raises(
        ValueError,
        match=r"`X2` has samples of shape \(4,\) but `X1` has samples of shape \(5,\)",
    ):
        ka.empirical_ntk(model, X, X_(3, 4))
    with pytest.raises(
        ValueError,
        match=r"keras\.empirical_ntk: the model could not be applied to `X1` "
        r"\(samples of shape \(4,\)",
    ):
        ka.empirical_ntk(model, X_(3, 4))
    with pytest.raises(ValueError, match=r"could not be applied to `X`"):
        ka.activations(model, X_(3, 4))
    assert all("call" not in layer.__dict__ for layer in model.layers)  # unwrapped
    model.trainable = False
    with pytest.raises(ValueError, match="the model has no trainable weight"):
        ka.empirical_ntk(model, X)
    with pytest.raises(
        ValueError, match=r"calls no dense layer \(keras\.layers\.Dense\)"
    ):
        ka.dense_layers(keras.Sequential([keras.Input((5,)), layers.ReLU()]), X)


def test_a_model_with_two_outputs_needs_output_to_select_one():
    inputs = keras.Input((5,))
    h = layers.Dense(3)(inputs)
    model = keras.Model(inputs, [h, layers.Dense(2)(h)])
    with pytest.raises(
        ValueError,
        match=r"the model returns a list of 2; the NTK needs one array of outputs.*"
        r"`output=` an index",
    ):
        ka.empirical_ntk(model, X_())
    acts = ka.activations(model, X_())  # layer outputs are fine
    assert [tuple(a.shape) for a in acts.values()] == [(6, 3), (6, 2)]
    # output=1: the NTK of the second output, over every weight it depends on.
    second = keras.Model(inputs, model.outputs[1])
    assert_close(
        ka.empirical_ntk(model, X_(), output=1), ka.empirical_ntk(second, X_())
    )


def test_import_does_not_import_keras():
    code = (
        "import sys, infoscope.adapters.keras\n"
        "print([m for m in ('keras', 'torch', 'jax') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- #
# Other backends, each in its own process
# --------------------------------------------------------------------------- #


def run_child(code, backend):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, f"child on {backend} failed:\n{out.stderr[-4000:]}"
    return out.stdout


TORCH_CHILD = """
import sys

import numpy as np
import torch

torch.set_num_threads(1)
import keras

from infoscope.adapters import keras as ka

assert keras.backend.backend() == "torch"
keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input((5,)),
        keras.layers.Dense(7, activation="tanh", name="d1"),
        keras.layers.Dropout(0.9, name="drop"),
        keras.layers.Dense(3, name="d2"),
    ]
)
model.train()  # torch's flag: the adapter must neither use nor change it
before = [v.value.detach().clone() for v in model.variables]
X = torch.as_tensor(np.random.default_rng(1).standard_normal((6, 5)), dtype=torch.float32)
W1, b1 = (w.value.detach() for w in model.get_layer("d1").weights)
W2, b2 = (w.value.detach() for w in model.get_layer("d2").weights)
h = torch.tanh(X @ W1 + b1)

acts = ka.activations(model, X.numpy(), batch_size=4)
assert list(acts) == ["d1", "drop", "d2"], list(acts)
for name, want in {"d1": h, "drop": h, "d2": h @ W2 + b2}.items():
    got = acts[name]
    assert isinstance(got, torch.Tensor) and got.grad_fn is None, name
    assert torch.allclose(got, want, atol=1e-6), f"activation {name} differs"

(n1, x1, V1), (n2, x2, V2) = ka.dense_layers(model, X)
assert (n1, n2) == ("d1", "d2")
assert torch.equal(x1, X) and torch.allclose(x2, h, atol=1e-6), "dense inputs"
assert torch.equal(V1, W1) and torch.equal(V2, W2), "dense kernels"
assert torch.allclose(x2 @ V2 + b2, acts["d2"], atol=1e-6), "x @ W + b"
V1 += 1  # a copy: the model is untouched
assert not torch.equal(V1, W1), "the kernel returned is not a copy"

# The definition: autograd through the Keras variables, one sample and output
# at a time, dropout off.
params = list(model.trainable_variables)


def jacobians(X):
    rows = []
    for x in X:
        out = model(x[None], training=False).reshape(-1)
        rows.append(
            torch.stack(
                [
                    torch.cat(
                        [
                            g.reshape(-1)
                            for g in torch.autograd.grad(
                                out[a], [p.value for p in params], retain_graph=True
                            )
                        ]
                    )
                    for a in range(out.shape[0])
                ]
            )
        )
    return torch.stack(rows).double()


X2 = X[:4] * 0.5
J, J2 = jacobians(X), jacobians(X2)
for mode in ("mean", "sum", "full"):
    if mode == "mean":
        ref = torch.einsum("iap,jap->ij", J, J2) / J.shape[1]
    elif mode == "sum":
        ref = J.sum(1) @ J2.sum(1).T
    else:
        ref = torch.einsum("iap,jbp->iajb", J, J2).reshape(6 * 3, 4 * 3)
    for batch_size in (None, 4) if mode == "mean" else (3,):
        K = ka.empirical_ntk(model, X, X2, output_mode=mode, batch_size=batch_size)
        assert isinstance(K, torch.Tensor) and K.grad_fn is None
        err = float((K.double() - ref).abs().max())
        assert err <= 2e-5 * float(ref.abs().max()), f"NTK {mode}: max error {err}"
K = ka.empirical_ntk(model, X)
assert torch.allclose(K, K.T) and K.shape == (6, 6), "symmetric NTK"

assert model.training and all(m.training for m in model.modules()), "torch flags"
assert all(v.value.requires_grad for v in model.trainable_variables)
for a, v in zip(before, model.variables):
    assert torch.equal(a, v.value.detach()), f"{v.path} changed"
assert all(p.grad is None for p in model.parameters()), "gradients left behind"

# The zoo's CNN with two Conv2D layers (channels-last kernels that torch.func
# cannot vmap): the NTK through the sample loop, against autograd.
sys.path.insert(0, "@BENCH@")
sys.path.insert(0, "@TESTS@")
from test_zoo import KERAS_CHECK, N, RTOL

exec(KERAS_CHECK.format(n=N, rtol=RTOL), {})
print("ok")
"""


def test_torch_backend_agrees_with_the_definitions():
    pytest.importorskip("torch")
    here = Path(__file__).resolve().parent
    code = TORCH_CHILD.replace("@BENCH@", str(here.parents[1] / "asv_bench"))
    code = code.replace("@TESTS@", str(here))
    assert run_child(code, "torch").strip().endswith("ok")


UNSUPPORTED_CHILD = """
import keras, numpy as np
from infoscope.adapters import keras as ka

model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
for fn in (ka.activations, ka.dense_layers, ka.empirical_ntk):
    try:
        fn(model, np.ones((4, 3)))
    except ValueError as exc:
        print(exc)
    else:
        raise AssertionError(f"{fn.__name__} accepted the numpy backend")
"""


def test_unsupported_backends_are_named():
    lines = run_child(UNSUPPORTED_CHILD, "numpy").strip().splitlines()
    assert lines == [
        f"infoscope.adapters.keras.{name}: Keras runs on the 'numpy' backend; this "
        f"adapter supports the 'jax' and 'torch' backends. Set the environment "
        f"variable KERAS_BACKEND to 'jax' or 'torch' before Keras is first imported."
        for name in ("activations", "dense_layers", "empirical_ntk")
    ]
