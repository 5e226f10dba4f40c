"""Models with several inputs, sequence models with masks, pooled activations.

Inputs as a tuple, list or dict of arrays in every verb of every adapter; a
``TransformerEncoder`` with a padding mask (PyTorch's fast path would send
nested tensors through the layers); a HuggingFace BERT with a 2-D attention
mask and a ``ModelOutput`` selected by ``output=``; pooling over tokens.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from infoscope.adapters import map_arrays, n_samples, take_samples
from infoscope.adapters._common import pool_sequence

ASV_BENCH = Path(__file__).resolve().parents[2] / "asv_bench"
sys.path.insert(0, str(ASV_BENCH))

from benchmarks import _zoo  # noqa: E402

RTOL = 1e-10


def assert_close(K, expected, rtol=RTOL):
    K, expected = np.asarray(K), np.asarray(expected)
    assert K.shape == expected.shape
    err = np.abs(K - expected).max()
    assert err <= rtol * np.abs(expected).max(), f"max error {err:.3g}"


# --------------------------------------------------------------------------- #
# The helpers a probe set uses
# --------------------------------------------------------------------------- #


def test_helpers_count_slice_and_convert_any_structure():
    ids = np.arange(12).reshape(4, 3)
    mask = np.ones((4, 3), dtype=bool)
    X = {"input_ids": ids, "attention_mask": mask, "return_dict": True}
    assert n_samples(X) == 4 and n_samples((ids, mask)) == 4 and n_samples(ids) == 4
    part = take_samples(X, np.array([3, 1]))
    assert part["input_ids"].tolist() == [[9, 10, 11], [3, 4, 5]]
    assert part["return_dict"] is True
    doubled = map_arrays(lambda a: a * 2, [ids, ids])
    assert isinstance(doubled, list) and doubled[1][0].tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match=r"must share the first \(sample\) axis"):
        n_samples((ids, mask[:2]))
    with pytest.raises(ValueError, match="with no array in it"):
        n_samples({"flag": True})


def test_pooling_by_the_definition():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5, 2))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    mean = pool_sequence(a, "mean", mask)
    for i, t in enumerate(mask.sum(1)):
        np.testing.assert_allclose(mean[i], a[i, :t].mean(0))
    last = pool_sequence(a, "last", mask)
    np.testing.assert_allclose(last, a[np.arange(3), mask.sum(1) - 1])
    np.testing.assert_allclose(pool_sequence(a, "first", mask), a[:, 0])
    np.testing.assert_allclose(pool_sequence(a, "mean"), a.mean(1))
    np.testing.assert_allclose(pool_sequence(a, "last"), a[:, -1])


# --------------------------------------------------------------------------- #
# PyTorch
# --------------------------------------------------------------------------- #


def torch_transformer():
    torch = pytest.importorskip("torch")
    model, inputs, _ = _zoo.torch_transformer(torch.float64)
    tokens, padding = inputs(np.random.default_rng(1), 5)
    return torch, model, tokens, padding


def test_transformer_with_padding_mask_in_every_verb():
    torch, model, tokens, padding = torch_transformer()
    from infoscope.adapters import torch as ta

    model.eval()  # PyTorch's fast path applies: eval, no grad, a padding mask
    fast = torch.backends.mha.get_fastpath_enabled()
    names = ["encoder.layers.0.self_attn", "encoder.layers.1", "head"]
    acts = ta.activations(model, (tokens, padding), layers=names)
    assert torch.backends.mha.get_fastpath_enabled() == fast
    with torch.no_grad():
        out = model(tokens, padding)
    torch.testing.assert_close(acts["head"], out)
    layer = acts["encoder.layers.1"]
    assert layer.shape == (5, 7, 16) and not layer.is_nested
    keep = ~padding
    pooled = ta.activations(
        model, (tokens, padding), layers="encoder.layers.1", pool="mean", mask=keep
    )["encoder.layers.1"]
    for i in range(5):
        torch.testing.assert_close(pooled[i], layer[i, keep[i]].mean(0))

    # MultiheadAttention applies its out_proj without calling it.
    dense = {name: (x, W) for name, x, W in ta.dense_layers(model, (tokens, padding))}
    x, W = dense["encoder.layers.0.self_attn.out_proj"]
    b = model.encoder.layers[0].self_attn.out_proj.bias
    # Its rows come token-major, as MultiheadAttention folds them.
    attention = acts["encoder.layers.0.self_attn"].transpose(0, 1).reshape(-1, 16)
    torch.testing.assert_close(x @ W + b, attention)
    assert list(dense)[:3] == [
        "encoder.layers.0.self_attn.out_proj",
        "encoder.layers.0.linear1",
        "encoder.layers.0.linear2",
    ]

    K = ta.empirical_ntk(model, (tokens, padding), (tokens[:2], padding[:2]))
    expected = _zoo.torch_brute_force_ntk(model, (tokens, padding), 5)
    assert_close(K, expected[:, :2])


def test_huggingface_bert_with_a_2d_attention_mask():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from infoscope.adapters import torch as ta

    model, inputs, _ = _zoo.torch_bert(torch.float64)
    X = inputs(np.random.default_rng(2), 4)
    mask = X["attention_mask"]
    acts = ta.activations(model, X, layers=["encoder.layer.1", "pooler"])
    hidden = acts["encoder.layer.1"]
    assert hidden.shape == (4, 7, 16)
    pooled = ta.activations(
        model, X, layers="encoder.layer.1", pool="mean", mask="attention_mask"
    )["encoder.layer.1"]
    for i in range(4):
        torch.testing.assert_close(pooled[i], hidden[i, mask[i].bool()].mean(0))
    first = ta.activations(model, X, layers="encoder.layer.1", pool="first")
    torch.testing.assert_close(first["encoder.layer.1"], hidden[:, 0])

    names = [name for name, _, _ in ta.dense_layers(model, X)]
    assert names[:4] == [
        "encoder.layer.0.attention.self.query",
        "encoder.layer.0.attention.self.key",
        "encoder.layer.0.attention.self.value",
        "encoder.layer.0.attention.output.dense",
    ]

    def cls(out):
        return out.last_hidden_state[:, 0]

    K = ta.empirical_ntk(model, X, output=cls)
    assert_close(K, _zoo.torch_brute_force_ntk(model, X, 4, cls))
    with pytest.raises(
        ValueError,
        match=r"the model returns a BaseModelOutputWithPoolingAndCrossAttentions "
        r"with keys \['last_hidden_state', 'pooler_output'\].*`output=`",
    ):
        ta.empirical_ntk(model, X)
    with pytest.raises(ValueError, match=r"`output='logits'` selects nothing"):
        ta.empirical_ntk(model, X, output="logits")


def test_torch_inputs_as_a_list_or_a_dict():
    torch = pytest.importorskip("torch")
    from infoscope.adapters import torch as ta

    model, inputs, _ = _zoo.torch_two_inputs(torch.float64)
    image, vector = inputs(np.random.default_rng(3), 5)
    K = ta.empirical_ntk(model, (image, vector))
    assert_close(K, _zoo.torch_brute_force_ntk(model, (image, vector), 5))
    as_list = ta.empirical_ntk(model, [image.numpy(), vector.numpy()])
    as_dict = ta.empirical_ntk(model, {"image": image, "vector": vector})
    assert_close(as_list, K)
    assert_close(as_dict, K)
    acts = ta.activations(model, {"image": image, "vector": vector}, batch_size=2)
    assert acts["head"].shape == (5, 3) and acts["conv"].shape == (5, 4, 4, 4)
    dense = ta.dense_layers(model, (image, vector))
    assert [name for name, _, _ in dense] == ["dense", "head"]
    torch.testing.assert_close(dense[0][1], vector)


def test_bad_inputs_name_the_argument_and_the_fix():
    torch = pytest.importorskip("torch")
    from infoscope.adapters import torch as ta

    model, inputs, _ = _zoo.torch_two_inputs(torch.float64)
    image, vector = inputs(np.random.default_rng(4), 5)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`X1` must share the first (sample) axis; they have "
            "{'X1[0]': 5, 'X1[1]': 3} samples"
        ),
    ):
        ta.empirical_ntk(model, (image, vector[:3]))
    with pytest.raises(
        ValueError, match=r"`X2` \(samples of shape .*\) does not match"
    ):
        ta.empirical_ntk(model, (image, vector), (image, vector[:, :2]))
    with pytest.raises(ValueError, match=r"`pool` must be None .* got 'max'"):
        ta.activations(model, (image, vector), pool="max")
    with pytest.raises(ValueError, match="`mask` is given but `pool` is None"):
        ta.activations(model, (image, vector), mask=np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"`mask='ids'` names no array of `X`"):
        ta.activations(model, (image, vector), pool="mean", mask="ids")


# --------------------------------------------------------------------------- #
# JAX and Keras
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


def test_jax_inputs_as_a_tuple_or_a_dict_with_a_mask(x64):
    import jax
    import jax.numpy as jnp

    from infoscope.adapters import jax as ja

    rng = np.random.default_rng(5)
    params = {
        "embed": jnp.asarray(rng.standard_normal((10, 4))),
        "w": jnp.asarray(rng.standard_normal((4, 4)) / 2),
        "head": jnp.asarray(rng.standard_normal((4, 2))),
    }

    def apply_fn(p, tokens, mask):
        h = jnp.tanh(p["embed"][tokens] @ p["w"])  # (n, t, 4)
        m = mask[..., None].astype(h.dtype)
        return ((h * m).sum(1) / m.sum(1)) @ p["head"]

    tokens = rng.integers(0, 10, (5, 6))
    mask = np.arange(6)[None, :] < rng.integers(2, 7, (5, 1))
    K = ja.empirical_ntk(apply_fn, params, (tokens, mask))
    expected = _zoo.jax_brute_force_ntk(
        lambda p, x: apply_fn(p, x[..., 0].astype(int), x[..., 1] > 0),
        params,
        np.stack([tokens, mask], axis=-1).astype(float),
    )
    assert_close(K, expected)
    as_dict = ja.empirical_ntk(apply_fn, params, {"tokens": tokens, "mask": mask})
    assert_close(as_dict, K)
    acts = ja.activations(apply_fn, params, (tokens, mask), pool="mean", mask=1)
    h = jnp.tanh(params["embed"][tokens] @ params["w"])
    np.testing.assert_allclose(
        acts["tanh_0"], pool_sequence(np.asarray(h), "mean", mask)
    )
    (name, x, _), (head, pooled, _) = ja.dense_layers(apply_fn, params, (tokens, mask))
    assert (name, head) == ("w", "head") and x.shape == (30, 4)
    assert pooled.shape == (5, 4)
    np.testing.assert_allclose(x, np.asarray(params["embed"][tokens]).reshape(-1, 4))
    del jax


def test_keras_model_with_two_inputs(x64):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()!r} in this process")
    from infoscope.adapters import keras as ka

    a = keras.Input((3,), name="a", dtype="float64")
    b = keras.Input((2,), name="b", dtype="float64")
    h = keras.layers.Dense(4, activation="tanh", name="da", dtype="float64")(a)
    g = keras.layers.Dense(4, name="db", dtype="float64")(b)
    out = keras.layers.Dense(2, name="out", dtype="float64")(
        keras.layers.Concatenate(dtype="float64")([h, g])
    )
    model = keras.Model([a, b], out)
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    K = ka.empirical_ntk(model, [A, B])
    params = [v.value for v in model.trainable_variables]

    def f(p, x):
        return model.stateless_call(p, [], [x[:, :3], x[:, 3:]], training=False)[0]

    assert_close(K, _zoo.jax_brute_force_ntk(f, params, np.concatenate([A, B], 1)))
    acts = ka.activations(model, [A, B], layers=["da", "out"])
    assert acts["da"].shape == (5, 4) and acts["out"].shape == (5, 2)
    names = [name for name, _, _ in ka.dense_layers(model, [A, B])]
    assert names == ["da", "db", "out"]
