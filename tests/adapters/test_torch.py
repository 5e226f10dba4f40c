"""The PyTorch adapter against the definitions, by hand."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infoscope.adapters import _ntk  # noqa: E402
from infoscope.adapters import torch as ta  # noqa: E402

nn = torch.nn
F64 = torch.float64


def explicit_jacobians(model, X):
    """Per-sample Jacobians (n, k, p) over the trainable parameters, one
    autograd call per sample and output."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for x in X:
        out = model(x[None]).reshape(-1)
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
        rows.append(torch.stack(per_output))
    return torch.stack(rows).detach()


def reference_ntk(J1, J2, mode):
    n1, k, _ = J1.shape
    n2 = J2.shape[0]
    if mode == "mean":
        return torch.einsum("iap,jap->ij", J1, J2) / k
    if mode == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return torch.einsum("iap,jbp->iajb", J1, J2).reshape(n1 * k, n2 * k)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)
    ).to(F64)


def cnn():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 4),
    ).to(F64)


def conv1d_layernorm():
    # Conv1d with dilation, and LayerNorm parameters on the generic path.
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=2, dilation=2),
        nn.LayerNorm([4, 7]),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(28, 2),
    ).to(F64)


MODELS = {
    "mlp": (mlp, (9, 5)),
    "cnn": (cnn, (7, 2, 6, 6)),
    "conv1d_layernorm": (conv1d_layernorm, (6, 2, 7)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_ntk_equals_the_definition(name):
    make, shape = MODELS[name]
    model = make()
    X = torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    X2 = X[:3] * 0.5
    J = explicit_jacobians(model, X)
    J2 = explicit_jacobians(model, X2)
    for mode in ("mean", "sum", "full"):
        expected = reference_ntk(J, J, mode)
        for batch_size in (None, 4) if mode == "mean" else (4,):
            K = ta.empirical_ntk(model, X, output_mode=mode, batch_size=batch_size)
            assert K.dtype == F64 and not K.requires_grad
            assert K.shape == expected.shape
            assert torch.allclose(
                K, expected, rtol=0, atol=1e-10 * expected.abs().max()
            )
        K12 = ta.empirical_ntk(model, X, X2, output_mode=mode, batch_size=2)
        expected12 = reference_ntk(J, J2, mode)
        assert torch.allclose(
            K12, expected12, rtol=0, atol=1e-10 * expected12.abs().max()
        )


def plan(model, X, mode="mean"):
    with ta._evaluation(model):
        X1 = ta._as_input("t", "X1", model, X)
        return ta.TorchNtk("t", model, X1, None, mode, None).terms


def test_structured_path_is_taken_where_its_contraction_is_cheaper():
    # The dense head (one position) takes the Gram form; the convolutions,
    # applied at 36 and 4 positions, cost less as per-sample Jacobians.
    kinds = {t.name: t.kind for t in plan(cnn(), torch.randn(4, 2, 6, 6, dtype=F64))}
    assert kinds == {
        "5": "gram",
        "0.weight": "jacobian",
        "0.bias": "jacobian",
        "2.weight": "jacobian",
        "2.bias": "jacobian",
    }
    terms = plan(conv1d_layernorm(), torch.randn(4, 2, 7, dtype=F64))
    assert [t.name for t in terms if t.kind == "gram"] == ["4"]
    assert sorted(t.name for t in terms if t.kind == "jacobian") == [
        "0.bias",
        "0.weight",
        "1.bias",
        "1.weight",
    ]


class Tied(nn.Module):
    """A weight used by two layers, and one read directly (no hook sees it)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.c = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.tanh(self.b(torch.tanh(self.a(x))))
        return self.c(h) + h[:, :2] @ self.c.weight[:, :2].T


def test_tied_and_directly_read_weights_fall_back_correctly():
    torch.manual_seed(4)
    model = Tied().to(F64)
    X = torch.randn(6, 4, dtype=F64)
    J = explicit_jacobians(model, X)
    for mode in ("mean", "full"):
        K = ta.empirical_ntk(model, X, output_mode=mode, batch_size=4)
        expected = reference_ntk(J, J, mode)
        assert torch.allclose(K, expected, rtol=0, atol=1e-10 * expected.abs().max())


def test_frozen_parameters_are_left_out_and_flags_and_modes_are_restored():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 2)
    ).to(F64)
    model[0].weight.requires_grad_(False)
    model.train()
    model[4].eval()  # a mixed state, restored module by module
    before = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    X = torch.randn(6, 4, dtype=F64)
    K = ta.empirical_ntk(model, X)  # eval mode: dropout off, running statistics
    assert {name: m.training for name, m in model.named_modules()} == before
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert K.grad_fn is None
    model.eval()
    J = explicit_jacobians(model, X)
    assert J.shape[2] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert torch.allclose(K, reference_ntk(J, J, "mean"), rtol=0, atol=1e-10)


class Centred(nn.Module):
    """Mixes samples: subtracts the batch mean."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return h - h.mean(0, keepdim=True) + h**2


def test_a_model_that_mixes_samples_is_detected_and_computed_per_sample():
    torch.manual_seed(6)
    model = Centred().to(F64)
    X = torch.randn(5, 3, dtype=F64)
    with pytest.warns(RuntimeWarning, match="mix samples"):
        K = ta.empirical_ntk(model, X)
    J = explicit_jacobians(model, X)  # each sample alone, as the definition says
    assert torch.allclose(K, reference_ntk(J, J, "mean"), rtol=0, atol=1e-10)


def test_no_warning_for_a_per_sample_model():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ta.empirical_ntk(mlp(), torch.randn(4, 5, dtype=F64))


def counting(monkeypatch, cls):
    calls = {"features": 0, "contract": 0}
    features, contract = cls.features, cls.contract

    def count_features(self, *args):
        calls["features"] += 1
        return features(self, *args)

    def count_contract(self, *args):
        calls["contract"] += 1
        return contract(self, *args)

    monkeypatch.setattr(cls, "features", count_features)
    monkeypatch.setattr(cls, "contract", count_contract)
    return calls


def test_each_block_is_computed_once_and_each_pair_once(monkeypatch):
    model = mlp()
    X = torch.randn(10, 5, dtype=F64)
    reference = ta.empirical_ntk(model, X)
    calls = counting(monkeypatch, ta.TorchNtk)
    K = ta.empirical_ntk(model, X, batch_size=3)  # blocks of 3, 3, 3, 1
    assert calls == {"features": 4, "contract": 4 * 5 // 2}
    assert torch.allclose(K, reference, rtol=0, atol=1e-12)
    calls.update(features=0, contract=0)
    ta.empirical_ntk(model, X, X[:5], batch_size=3)  # 4 row and 2 column blocks
    assert calls == {"features": 4 + 2, "contract": 4 * 2}


def test_parameter_groups_split_when_features_exceed_the_budget(monkeypatch):
    model = cnn()
    X = torch.randn(6, 2, 6, 6, dtype=F64)
    reference = ta.empirical_ntk(model, X, output_mode="full")
    monkeypatch.setattr(_ntk, "MEMORY_BUDGET", 1)
    calls = counting(monkeypatch, ta.TorchNtk)
    with pytest.warns(RuntimeWarning, match="more than the"):
        K = ta.empirical_ntk(model, X, output_mode="full", batch_size=4)
    n_terms = len(plan(model, X, "full"))
    assert calls["features"] == 2 * n_terms
    assert calls["contract"] == 3 * n_terms
    assert torch.allclose(K, reference, rtol=0, atol=1e-10 * reference.abs().max())


def test_batch_size_default_keeps_blocks_modest():
    assert _ntk.choose_batch_size(100_000, 8 * 5000) == 1677
    assert _ntk.block_slices(7, 3)[-1] == slice(6, 7)


# --------------------------------------------------------------------------- #
# activations and dense_layers
# --------------------------------------------------------------------------- #


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))))


def test_activations_are_the_layer_outputs():
    torch.manual_seed(7)
    model = Shared().to(F64)
    X = torch.randn(11, 4, dtype=F64)
    acts = ta.activations(model, X)
    h1 = model.fc1(X)
    expected = {
        "fc1": h1,
        "fc2": model.fc2(torch.relu(h1)),
        "act": torch.relu(h1),
        "act:1": torch.relu(model.fc2(torch.relu(h1))),
    }
    assert list(acts) == ["fc1", "fc2", "act", "act:1"]
    for name, value in expected.items():
        assert torch.allclose(acts[name], value)
        assert acts[name].grad_fn is None and not acts[name].requires_grad
    batched = ta.activations(model, X, layers=["fc2"], batch_size=4)
    assert list(batched) == ["fc2"]
    assert torch.allclose(batched["fc2"], expected["fc2"])
    assert ta.activations(model, X.numpy(), layers="fc1")["fc1"].dtype == F64


def test_activations_restore_the_mode_and_use_eval():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.9)).to(F64).train()
    X = torch.randn(50, 3, dtype=F64)
    out = ta.activations(model, X)["1"]
    assert torch.allclose(out, model[0](X))  # dropout off
    assert model.training and model[1].training


def test_unknown_layer_lists_the_available_ones():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "unknown layer name(s) ['fc9'] in `layers`; the model has ['fc1', 'fc2', 'act']"
        ),
    ):
        ta.activations(Shared(), torch.randn(2, 4), layers=["fc1", "fc9"])


def test_dense_layers_give_inputs_and_weights_as_d_in_by_d_out():
    torch.manual_seed(8)
    model = Shared().to(F64)
    X = torch.randn(9, 4, dtype=F64)
    layers = ta.dense_layers(model, X)
    assert [name for name, _, _ in layers] == ["fc1", "fc2"]
    (_, x1, W1), (_, x2, W2) = layers
    assert torch.equal(x1, X)
    assert torch.allclose(x2, torch.relu(model.fc1(X)))
    assert torch.equal(W1, model.fc1.weight.T) and W2.shape == (6, 3)
    assert torch.allclose(x2 @ W2 + model.fc2.bias, model.fc2(x2))
    W1 += 1  # a copy: the model is untouched
    assert not torch.equal(W1, model.fc1.weight.T)


def test_dense_layers_need_a_linear_layer():
    with pytest.raises(ValueError, match="uses no dense layer"):
        ta.dense_layers(nn.Sequential(nn.Tanh()), torch.randn(2, 3))


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #


def test_bad_arguments_name_the_argument_and_the_fix():
    model = mlp()
    X = torch.randn(4, 5, dtype=F64)
    with pytest.raises(
        ValueError, match=r"`output_mode` must be one of 'mean'.*got 'trace'"
    ):
        ta.empirical_ntk(model, X, output_mode="trace")
    with pytest.raises(
        ValueError, match=r"`batch_size` must be a positive integer.*got 0"
    ):
        ta.empirical_ntk(model, X, batch_size=0)
    with pytest.raises(
        ValueError,
        match=r"`X2` has samples of shape \(4,\) but `X1` has samples of shape \(5,\)",
    ):
        ta.empirical_ntk(model, X, torch.randn(3, 4, dtype=F64))
    with pytest.raises(
        ValueError, match=r"could not be applied to `X1` \(samples of shape \(7,\)"
    ):
        ta.empirical_ntk(model, torch.randn(3, 7, dtype=F64))
    with pytest.raises(ValueError, match="`X1` has no samples"):
        ta.empirical_ntk(model, torch.zeros(0, 5, dtype=F64))
    with pytest.raises(TypeError, match=r"`model` must be a torch\.nn\.Module"):
        ta.empirical_ntk(lambda x: x, X)
    frozen = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter of the model requires grad"):
        ta.empirical_ntk(frozen, X)
    with pytest.raises(ValueError, match="must be a positive integer"):
        ta.activations(model, X, batch_size=1.5)


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, infoscope.adapters.torch, infoscope.adapters.jax\n"
        "print([m for m in ('torch', 'jax', 'flax') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_numpy_inputs_are_moved_to_the_model():
    model = mlp()
    X = np.random.default_rng(0).standard_normal((4, 5))
    K = ta.empirical_ntk(model, X)
    assert isinstance(K, torch.Tensor) and K.dtype == F64
    assert torch.allclose(K, ta.empirical_ntk(model, torch.as_tensor(X)))


def test_activations_of_layers_without_per_sample_outputs():
    class Total(torch.nn.Module):
        def forward(self, x):
            return x.sum()  # a scalar: no per-sample rows

    class Pooled(torch.nn.Module):
        """A layer whose output is not per sample, and one never called."""

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.total = Total()
            self.unused = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.total(self.fc(x))

    model = Pooled()
    X = torch.randn(6, 4)
    acts = ta.activations(model, X, batch_size=4)  # by default they are left out
    assert list(acts) == ["fc"] and acts["fc"].shape == (6, 3)
    with pytest.raises(
        ValueError, match="layer 'total' returns no array with the 4 samples"
    ):
        ta.activations(model, X, layers=["total"], batch_size=4)
    with pytest.raises(
        ValueError, match="layer 'unused' was not called in the forward pass"
    ):
        ta.activations(model, X, layers=["unused"])


def test_read_only_inputs_give_no_warning():
    # torch warns about a non-writable NumPy buffer once per process, so the
    # check runs in a fresh one.
    import subprocess
    import sys

    code = (
        "import warnings, numpy as np, torch\n"
        "from infoscope.adapters.torch import activations\n"
        "X = np.ones((4, 3), dtype=np.float32); X.setflags(write=False)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(3, 2))\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('error')\n"
        "    out = activations(model, X)\n"
        "print(sorted(out), tuple(out['0'].shape))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['0'] (4, 2)"
