"""The JAX adapter against the definitions, and against the PyTorch adapter."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from infoscope.adapters import jax as ja  # noqa: E402


@pytest.fixture(autouse=True)
def x64():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def explicit_jacobians(apply_fn, params, X):
    """Per-sample Jacobians (n, k, p) over every leaf: each sample's own
    Jacobian (``jax.jacrev`` of the model on that sample alone), flattened."""
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def f(leaves, x):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), x[None]).reshape(
            -1
        )

    jac = jax.jit(jax.vmap(jax.jacrev(f), in_axes=(None, 0)))(leaves, X)
    # Contracted by hand in NumPy (eager JAX would compile every operation).
    return np.concatenate(
        [np.asarray(j).reshape(*j.shape[:2], -1) for j in jac], axis=2
    )


def reference_ntk(J1, J2, mode):
    n1, k, _ = J1.shape
    n2 = J2.shape[0]
    if mode == "mean":
        return np.einsum("iap,jap->ij", J1, J2) / k
    if mode == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return np.einsum("iap,jbp->iajb", J1, J2).reshape(n1 * k, n2 * k)


def assert_close(K, expected):
    K, expected = np.asarray(K), np.asarray(expected)
    assert K.shape == expected.shape
    assert np.abs(K - expected).max() <= 1e-10 * np.abs(expected).max()


def normal(seed, shape, scale=1.0):
    """Draws made with NumPy and put on the device (eager jax.random would
    compile an operation per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def host_normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def plain_mlp():
    params = {
        "w1": normal(0, (5, 12), 0.5),
        "b1": normal(1, (12,)),
        "w2": normal(2, (12, 3), 1 / 3),
    }

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    return apply_fn, params, (9, 5)


def stax_like():
    # neural-tangents' stax layout: the weight contracted first (tensordot),
    # NTK parameterisation scalars, biases added after scaling.
    params = (
        (normal(3, (5, 8)), normal(4, (8,))),
        (normal(5, (8, 2)), normal(6, (2,))),
    )

    def apply_fn(p, x):
        (W1, b1), (W2, b2) = p
        h = jnp.moveaxis(jnp.tensordot(W1, x, (0, 1)), 0, 1) / np.sqrt(5) + 0.1 * b1
        return jax.nn.relu(h) @ W2 / np.sqrt(8) + 0.1 * b2

    return apply_fn, params, (8, 5)


def flax_mlp():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(12, param_dtype=jnp.float64)(x))
            x = nn.relu(nn.Dense(12, param_dtype=jnp.float64)(x))
            return nn.Dense(3, param_dtype=jnp.float64)(x)

    model = MLP()
    return (
        model.apply,
        jax.jit(model.init)(jax.random.PRNGKey(2), np.ones((1, 5))),
        (9, 5),
    )


def flax_cnn():
    nn = pytest.importorskip("flax.linen")

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), param_dtype=jnp.float64)(x))
            x = nn.Conv(3, (3, 3), strides=2, padding="VALID", param_dtype=jnp.float64)(
                x
            )
            return nn.Dense(4, param_dtype=jnp.float64)(x.reshape(x.shape[0], -1))

    model = CNN()
    variables = jax.jit(model.init)(jax.random.PRNGKey(3), np.ones((1, 6, 6, 2)))
    return model.apply, variables, (7, 6, 6, 2)


MODELS = {
    "plain_mlp": plain_mlp,
    "stax_like": stax_like,
    "flax_mlp": flax_mlp,
    "flax_cnn": flax_cnn,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_ntk_equals_the_definition(name):
    apply_fn, params, shape = MODELS[name]()
    X = host_normal(4, shape)
    X2 = X[:3] * 0.5
    J = explicit_jacobians(apply_fn, params, X)
    J2 = explicit_jacobians(apply_fn, params, X2)
    for mode in ("mean", "sum", "full"):
        # The default batch size (one block here) once; compiling the CNN's
        # per-sample Jacobians for another block shape adds seconds, no check.
        defaults = mode == "mean" and name != "flax_cnn"
        for batch_size in (None, 4) if defaults else (4,):
            K = ja.empirical_ntk(
                apply_fn, params, X, output_mode=mode, batch_size=batch_size
            )
            assert isinstance(K, jax.Array) and K.dtype == jnp.float64
            assert_close(K, reference_ntk(J, J, mode))
        K12 = ja.empirical_ntk(apply_fn, params, X, X2, output_mode=mode, batch_size=4)
        assert_close(K12, reference_ntk(J, J2, mode))


def plan(apply_fn, params, X, mode="mean"):
    model = ja.Model.read("t", apply_fn, params)
    X1 = ja.as_input("t", "X1", model.place(), X)
    return ja.JaxNtk("t", model, X1, None, mode, None).terms


def test_dense_weights_and_biases_take_the_structured_path():
    apply_fn, params, _ = flax_mlp()
    terms = plan(apply_fn, params, np.ones((3, 5)))
    assert {t.kind for t in terms} == {"gram"}  # biases folded into their layers
    assert sorted(t.name for t in terms) == [
        "Dense_0/kernel",
        "Dense_1/kernel",
        "Dense_2/kernel",
    ]
    apply_fn, params, _ = stax_like()
    terms = plan(apply_fn, params, np.ones((3, 5)))
    kinds = {t.name: t.kind for t in terms}
    assert kinds == {"0/0": "gram", "1/0": "gram", "0/1": "jacobian", "1/1": "jacobian"}


def test_a_jitted_apply_fn_is_followed_inside():
    apply_fn, params, shape = plain_mlp()
    X = host_normal(5, shape)
    jitted = jax.jit(apply_fn)
    terms = plan(jitted, params, X)
    assert {t.name: t.kind for t in terms}["w1"] == "gram"
    assert_close(
        ja.empirical_ntk(jitted, params, X), ja.empirical_ntk(apply_fn, params, X)
    )


def test_each_block_is_computed_once_and_each_pair_once(monkeypatch):
    apply_fn, params, _ = plain_mlp()
    X = host_normal(6, (10, 5))
    reference = ja.empirical_ntk(apply_fn, params, X)
    calls = {"features": 0, "contract": 0}
    features, contract = ja.JaxNtk.features, ja.JaxNtk.contract

    def count(name, fn):
        def wrapped(self, *args):
            calls[name] += 1
            return fn(self, *args)

        return wrapped

    monkeypatch.setattr(ja.JaxNtk, "features", count("features", features))
    monkeypatch.setattr(ja.JaxNtk, "contract", count("contract", contract))
    K = ja.empirical_ntk(apply_fn, params, X, batch_size=3)
    assert calls == {"features": 4, "contract": 10}
    assert_close(K, reference)
    calls.update(features=0, contract=0)
    ja.empirical_ntk(apply_fn, params, X, X[:5], batch_size=3)
    assert calls == {"features": 4 + 2, "contract": 4 * 2}


def test_torch_and_jax_ntks_of_the_same_network_agree():
    torch = pytest.importorskip("torch")
    from infoscope.adapters import torch as ta

    rng = np.random.default_rng(7)
    W1, b1 = rng.standard_normal((12, 5)), rng.standard_normal(12)
    W2, b2 = rng.standard_normal((3, 12)), rng.standard_normal(3)
    C, c = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    X = rng.standard_normal((6, 5))
    Xc = rng.standard_normal((5, 2, 5, 5))

    mlp = torch.nn.Sequential(
        torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)
    ).double()
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten()
    ).double()
    with torch.no_grad():
        for layer, (W, b) in ((mlp[0], (W1, b1)), (mlp[2], (W2, b2)), (cnn[0], (C, c))):
            layer.weight.copy_(torch.as_tensor(W))
            layer.bias.copy_(torch.as_tensor(b))

    def mlp_jax(p, x):  # PyTorch's layout: x @ W.T + b
        return jnp.tanh(x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]

    def cnn_jax(p, x):
        y = jax.lax.conv_general_dilated(
            x,
            p["C"],
            (1, 1),
            ((1, 1), (1, 1)),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )
        return jax.nn.relu(y + p["c"][None, :, None, None]).reshape(x.shape[0], -1)

    mlp_params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    cnn_params = {"C": C, "c": c}
    for mode in ("mean", "sum", "full"):
        Kt = ta.empirical_ntk(mlp, X, output_mode=mode).numpy()
        Kj = np.asarray(
            ja.empirical_ntk(
                mlp_jax, jax.tree.map(jnp.asarray, mlp_params), X, output_mode=mode
            )
        )
        np.testing.assert_allclose(Kj, Kt, rtol=1e-10, atol=1e-10 * np.abs(Kt).max())
        Kt = ta.empirical_ntk(cnn, Xc, output_mode=mode).numpy()
        Kj = np.asarray(
            ja.empirical_ntk(
                cnn_jax, jax.tree.map(jnp.asarray, cnn_params), Xc, output_mode=mode
            )
        )
        np.testing.assert_allclose(Kj, Kt, rtol=1e-10, atol=1e-10 * np.abs(Kt).max())


def test_a_model_that_mixes_samples_is_detected():
    params = {"w": jnp.asarray(np.arange(6.0).reshape(3, 2) / 5)}

    def centred(p, x):
        h = x @ p["w"]
        return h - h.mean(0, keepdims=True) + h**2

    X = host_normal(8, (5, 3))
    with pytest.warns(RuntimeWarning, match="mix samples"):
        K = ja.empirical_ntk(centred, params, X)
    J = explicit_jacobians(centred, params, X)  # each sample alone
    assert_close(K, reference_ntk(J, J, "mean"))
    apply_fn, params, _ = plain_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ja.empirical_ntk(apply_fn, params, np.ones((4, 5)))


def test_float32_without_x64():
    jax.config.update("jax_enable_x64", False)
    apply_fn, params, shape = plain_mlp()
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    X = np.random.default_rng(9).standard_normal(shape)  # float64 NumPy input
    K = ja.empirical_ntk(apply_fn, params, X)
    assert K.dtype == jnp.float32 and K.shape == (9, 9)
    J = explicit_jacobians(apply_fn, params, X.astype(np.float32))
    expected = reference_ntk(J, J, "mean")
    assert np.abs(np.asarray(K) - expected).max() <= 1e-4 * expected.max()


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


def test_flax_activations_are_the_submodule_outputs():
    apply_fn, params, shape = flax_mlp()
    X = host_normal(10, shape)
    acts = ja.activations(apply_fn, params, X)
    # The submodules' outputs and the activation functions' between them.
    assert list(acts) == ["Dense_0", "tanh_0", "Dense_1", "relu_0", "Dense_2"]
    p = params["params"]
    h0 = X @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    np.testing.assert_allclose(acts["Dense_0"], h0, rtol=1e-12)
    np.testing.assert_allclose(acts["Dense_2"], apply_fn(params, X), rtol=1e-12)
    np.testing.assert_allclose(acts["tanh_0"], np.tanh(h0), rtol=1e-12)
    h1 = np.tanh(h0) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(acts["relu_0"], np.maximum(h1, 0), rtol=1e-12)
    batched = ja.activations(apply_fn, params, X, layers="Dense_1", batch_size=4)
    np.testing.assert_allclose(batched["Dense_1"], acts["Dense_1"], rtol=1e-12)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "unknown layer name(s) ['Dense_9'] in `layers`; the model has "
            "['Dense_0', 'tanh_0', 'Dense_1', 'relu_0', 'Dense_2']"
        ),
    ):
        ja.activations(apply_fn, params, X, layers=["Dense_9"])


def test_function_activations_are_its_operations():
    apply_fn, params, shape = plain_mlp()
    X = host_normal(11, shape)
    acts = ja.activations(apply_fn, params, X, batch_size=4)
    assert list(acts) == ["dot_0", "add_0", "tanh_0", "dot_1"]
    np.testing.assert_allclose(
        acts["tanh_0"], jnp.tanh(X @ params["w1"] + params["b1"])
    )
    np.testing.assert_allclose(acts["dot_1"], apply_fn(params, X))


def test_dense_layers_give_inputs_and_weights_as_d_in_by_d_out():
    apply_fn, params, shape = stax_like()
    X = host_normal(12, shape)
    layers = ja.dense_layers(apply_fn, params, X)
    assert [name for name, _, _ in layers] == ["0/0", "1/0"]
    (_, x1, W1), (_, x2, W2) = layers
    np.testing.assert_allclose(x1, X)
    assert W1.shape == (5, 8) and W2.shape == (8, 2)
    (W, b), _ = params
    np.testing.assert_allclose(
        x2, jax.nn.relu(X @ W / np.sqrt(5) + 0.1 * b), rtol=1e-12
    )
    apply_fn, params, shape = flax_mlp()
    names = [name for name, _, _ in ja.dense_layers(apply_fn, params, np.ones(shape))]
    assert names == ["Dense_0", "Dense_1", "Dense_2"]
    with pytest.raises(ValueError, match="found no dense layer"):
        ja.dense_layers(lambda p, x: x * p, jnp.ones(3), jnp.ones((2, 3)))


def test_bad_arguments_name_the_argument_and_the_fix():
    apply_fn, params, shape = plain_mlp()
    X = np.ones(shape)
    with pytest.raises(
        ValueError, match=r"`output_mode` must be one of 'mean'.*got 'trace'"
    ):
        ja.empirical_ntk(apply_fn, params, X, output_mode="trace")
    with pytest.raises(
        ValueError, match=r"`batch_size` must be a positive integer.*got -1"
    ):
        ja.empirical_ntk(apply_fn, params, X, batch_size=-1)
    with pytest.raises(
        ValueError,
        match=r"`X2` has samples of shape \(4,\) but `X1` has samples of shape \(5,\)",
    ):
        ja.empirical_ntk(apply_fn, params, X, jnp.ones((2, 4)))
    with pytest.raises(
        ValueError,
        match=r"apply_fn\(params, x\) failed on `X1` \(samples of shape \(7,\)",
    ):
        ja.empirical_ntk(apply_fn, params, jnp.ones((3, 7)))
    with pytest.raises(ValueError, match="must return one output row per sample"):
        ja.empirical_ntk(lambda p, x: (x @ p["w1"]).sum(), params, X)
    with pytest.raises(TypeError, match="`apply_fn` must be a function"):
        ja.empirical_ntk(params, params, X)
    with pytest.raises(ValueError, match="`X` has no samples"):
        ja.activations(apply_fn, params, jnp.ones((0, 5)))


def test_flax_layer_names_are_module_paths_and_activation_functions():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.gelu(nn.Dense(4, name="fc", param_dtype=jnp.float64)(x))

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = Block(name="block")(x)
            return nn.Dense(2, name="head", param_dtype=jnp.float64)(jnp.tanh(h))

    model = Model()
    X = host_normal(13, (5, 3))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), X[:1])
    variables = jax.tree.map(lambda a: normal(14, a.shape, 0.5), variables)
    acts = ja.activations(model.apply, variables, X)
    assert list(acts) == ["block/fc", "block/gelu_0", "block", "tanh_0", "head"]
    np.testing.assert_allclose(acts["block/gelu_0"], jax.nn.gelu(acts["block/fc"]))
    np.testing.assert_allclose(acts["block"], acts["block/gelu_0"])
    np.testing.assert_allclose(acts["tanh_0"], np.tanh(acts["block"]))


def test_nnx_layer_names_are_attribute_paths_in_eval_mode():
    pytest.importorskip("flax")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "asv_bench"))
    from benchmarks import _zoo

    model, inputs = _zoo.flax_nnx_net(jnp.float64)
    X = inputs(np.random.default_rng(15), 5)
    acts = ja.activations(model, None, X)
    assert list(acts) == ["conv", "bn", "relu_0", "hidden", "tanh_0", "drop", "head"]
    bn = model.bn
    scale = bn.scale[...] / np.sqrt(bn.var[...] + bn.epsilon)
    normalised = (np.asarray(acts["conv"]) - bn.mean[...]) * scale + bn.bias[...]
    np.testing.assert_allclose(acts["bn"], normalised, rtol=1e-10)  # running stats
    np.testing.assert_allclose(acts["drop"], acts["tanh_0"])  # dropout off
    assert [name for name, _, _ in ja.dense_layers(model, None, X)] == [
        "hidden",
        "head",
    ]
    assert not model.drop.deterministic  # the model itself is left in training
