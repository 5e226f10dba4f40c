"""Node SNR (Norridge, "Think Global, Act Local"): parity with the definition of
DESIGN section 4 on every backend, streaming, dask, dead nodes, bad input and the
scikit-learn contract."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import infoscope
from infoscope import NodeSNR, node_snr, node_snr_table
from infoscope.backends import (
    asarray,
    device_name,
    namespace_and_device,
    namespace_name,
    to_numpy,
)
from infoscope.estimators.snr import NodeSNRResult, NodeSNRRow

F64 = 1e-10  # the tolerance for float64


# ---- the definition, transcribed independently and plainly (NumPy, float64)


def reference_node_snr(X, W, normalize_inputs=True):
    """S, F, c and the sign-disagreement count exactly as DESIGN section 4 states.

    One node at a time, in the order the definition is written; no streaming,
    no shift, no guards beyond silencing NumPy's 0/0 warnings (dead nodes are
    NaN here by plain IEEE arithmetic).
    """
    x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    W = np.asarray(W, dtype=np.float64)
    r = x @ W
    with np.errstate(divide="ignore", invalid="ignore"):
        x_tilde = x / (x.max(axis=0) + 0.001) if normalize_inputs else x
        C = x_tilde.T @ (r - r.mean(axis=0))
        A = np.array([np.sum(x[:, i] > 0) for i in range(x.shape[1])])
        c = C / (A[:, None] + 1e-4)
        S = np.empty(W.shape[1])
        F = np.empty(W.shape[1])
        for j in range(W.shape[1]):
            w, cj = W[:, j], c[:, j]
            c_hat = cj / (np.linalg.norm(cj) + 1e-4)
            S[j] = np.sum(w * c_hat) / np.linalg.norm(w)
            F[j] = np.sum(w * cj) / (np.linalg.norm(w) * np.max(np.abs(cj)))
        signs = int(np.sum(c * W < 0))
    return S, F, c, signs


def relu_layer(seed=0, n=64, d_in=12, d_out=7):
    """Correlated ReLU inputs with a never-active feature, weights with a dead node."""
    rng = np.random.default_rng(seed)
    X = np.maximum(
        rng.standard_normal((n, d_in)) @ rng.standard_normal((d_in, d_in)), 0
    )
    X += 0.5 * (X > 0)  # a large mean: the centring of r must hold up
    if d_in > 3:
        X[:, 3] = 0.0  # an input that is never active
    W = rng.standard_normal((d_in, d_out))
    if d_out > 5:
        W[:, 5] = 0.0  # a dead node
    return X, W


def assert_close(actual, expected, tol):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=tol, atol=tol)


def tolerance(backend, dtype=np.float64):
    return F64 if backend.has_float64 and dtype == np.float64 else 1e-4


def ambiguous_signs(c, W):
    """Pairs whose sign of c_ij W_ij float32 rounding could flip."""
    p = np.abs(c * W)
    return int(np.sum((p > 0) & (p < 1e-4 * p.max())))


# ---- parity with the definition


@pytest.mark.parametrize("normalize_inputs", [True, False], ids=["max-norm", "plain"])
def test_function_matches_the_definition(backend, normalize_inputs):
    X, W = relu_layer()
    S, F, k = node_snr(
        backend.asarray(X), backend.asarray(W), normalize_inputs=normalize_inputs
    )
    X32, W32 = to_numpy(backend.asarray(X)), to_numpy(backend.asarray(W))
    S_ref, F_ref, c_ref, k_ref = reference_node_snr(X32, W32, normalize_inputs)
    tol = tolerance(backend)
    assert_close(S, S_ref, tol)
    assert_close(F, F_ref, tol)
    assert isinstance(k, int)
    if tol == F64:
        assert k == k_ref
    else:
        assert abs(k - k_ref) <= ambiguous_signs(c_ref, W32)
    assert 0 < k < X.shape[1] * W.shape[1]  # the data has both signs
    xp, device = namespace_and_device(S)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)
    assert S.dtype == F.dtype == backend.asarray(X).dtype


def test_float32_stays_float32(backend):
    X, W = relu_layer(seed=1)
    S, F, k = node_snr(backend.asarray(X, np.float32), backend.asarray(W, np.float32))
    assert S.dtype == F.dtype == backend.xp.float32
    S_ref, F_ref, c_ref, k_ref = reference_node_snr(
        X.astype(np.float32), W.astype(np.float32)
    )
    assert_close(S, S_ref, 1e-4)
    assert_close(F, F_ref, 1e-4)
    assert abs(k - k_ref) <= ambiguous_signs(c_ref, W)


def test_mixed_float_dtypes_promote():
    X, W = relu_layer(seed=2)
    S, _, _ = node_snr(X.astype(np.float32), W)
    assert S.dtype == np.float64
    assert_close(S, reference_node_snr(X.astype(np.float32), W)[0], F64)


def test_plain_form_is_the_sample_covariance():
    # A second, independent route to c for normalize_inputs=False: n - 1 times
    # NumPy's covariance of each input with each node's pre-activation.
    X, W = relu_layer(seed=3, n=50, d_in=6, d_out=4)
    est = NodeSNR(normalize_inputs=False).fit(X, weights=W)
    r = X @ W
    cov = np.cov(np.hstack([X, r]), rowvar=False)[:6, 6:]
    c = (len(X) - 1) * cov / (np.sum(X > 0, axis=0)[:, None] + 1e-4)
    assert_close(est.covariance_, c, F64)
    c_hat = c / (np.linalg.norm(c, axis=0) + 1e-4)
    with np.errstate(invalid="ignore"):
        S = np.sum(W * c_hat, axis=0) / np.linalg.norm(W, axis=0)
    assert_close(est.optimality_, S, F64)


def test_normalisation_changes_the_answer():
    X, W = relu_layer(seed=4)
    X[:, 0] *= 100.0  # one loud input: the max-normalisation quietens it
    S_norm, *_ = node_snr(X, W)
    S_plain, *_ = node_snr(X, W, normalize_inputs=False)
    assert np.nanmax(np.abs(S_norm - S_plain)) > 1e-3
    assert_close(S_plain, reference_node_snr(X, W, False)[0], F64)


def test_feature_maps_are_flattened_per_sample():
    rng = np.random.default_rng(5)
    maps = np.maximum(rng.standard_normal((30, 2, 3, 2)), 0)
    W = rng.standard_normal((12, 4))
    S, _, k = node_snr(maps, W)
    S_ref, _, _, k_ref = reference_node_snr(maps.reshape(30, 12), W)
    assert_close(S, S_ref, F64)
    assert k == k_ref


def test_array_likes_follow_the_arrays(backend):
    X, W = relu_layer(seed=6)
    S, _, _ = node_snr(backend.asarray(X), W.tolist())
    assert namespace_name(namespace_and_device(S)[0]) == backend.spec.library
    assert_close(S, reference_node_snr(X, W)[0], tolerance(backend))


def test_integer_activations_are_promoted():
    rng = np.random.default_rng(7)
    X = rng.integers(0, 3, size=(40, 5))
    W = rng.standard_normal((5, 2))
    S, _, _ = node_snr(X, W)
    assert S.dtype == np.float64
    assert_close(S, reference_node_snr(X, W)[0], F64)


# ---- dead nodes and degenerate inputs: NaN, skipped by the means, no warnings


def test_dead_nodes_are_nan_and_skipped_without_warnings(backend):
    X, W = relu_layer(seed=8)
    W[:, 1] = 0.0  # a second dead node
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = NodeSNR().fit(backend.asarray(X), weights=backend.asarray(W))
        S, F = to_numpy(est.optimality_), to_numpy(est.signal_factor_)
    dead = [1, 5]
    assert np.isnan(S[dead]).all() and np.isnan(F[dead]).all()
    alive = np.setdiff1d(np.arange(W.shape[1]), dead)
    assert np.isfinite(S[alive]).all() and np.isfinite(F[alive]).all()
    assert est.n_nan_nodes_ == 2
    tol = tolerance(backend)
    assert est.optimality_mean_ == pytest.approx(S[alive].mean(), rel=tol)
    assert est.signal_factor_mean_ == pytest.approx(F[alive].mean(), rel=tol)
    # The never-active input contributes zeros, not NaN.
    c = to_numpy(est.covariance_)
    assert (c[3] == 0).all() and np.isfinite(c).all()


def test_inputs_never_active_leave_s_zero_and_f_nan():
    # All inputs zero: c = 0, so S = 0 by the definition's epsilons, F = 0/0.
    X = np.zeros((10, 4))
    W = np.random.default_rng(9).standard_normal((4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = NodeSNR().fit(X, weights=W)
    np.testing.assert_array_equal(est.optimality_, 0.0)
    assert np.isnan(est.signal_factor_).all()
    assert est.optimality_mean_ == 0.0
    assert math.isnan(est.signal_factor_mean_)
    assert est.n_nan_nodes_ == 3
    assert est.sign_disagreements_ == 0


def test_all_dead_layer_gives_nan_means_without_warnings(backend):
    X, W = relu_layer(seed=10)
    W[:] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = NodeSNR().fit(backend.asarray(X), weights=backend.asarray(W))
        (row,) = node_snr_table([("dead", backend.asarray(X), backend.asarray(W))])
    assert isinstance(est.optimality_mean_, float)
    assert math.isnan(est.optimality_mean_) and math.isnan(est.signal_factor_mean_)
    assert est.n_nan_nodes_ == W.shape[1] == row.n_nan_nodes
    assert math.isnan(row.optimality_mean)


def test_a_maximum_of_minus_epsilon_is_an_error_not_nan_nodes():
    X, W = relu_layer(seed=11)
    X[:, 2] = -0.001  # x / (max + 0.001) divides by zero for this feature
    with pytest.raises(
        ValueError,
        match=r"node_snr: an input feature's maximum over the samples is exactly "
        r"-0\.001, so x~ = x / \(max x \+ 0\.001\) is undefined; pass "
        r"normalize_inputs=False",
    ):
        node_snr(X, W)
    with pytest.raises(ValueError, match=r"NodeSNR: an input feature's maximum"):
        NodeSNR().fit(X, weights=W)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        S_plain, _, _ = node_snr(X, W, normalize_inputs=False)
    assert np.isfinite(np.delete(S_plain, 5)).all()


def test_a_covariance_beyond_the_float_range_is_an_error():
    X, W = relu_layer(seed=12)
    with pytest.raises(
        ValueError,
        match=r"node_snr: the input-output covariance .* "
        r"overflows the float range",
    ):
        node_snr(X * 1e200, W * 1e200)


# ---- streaming: partial_fit over any split equals fit


def _split_fit(X, W, cuts, normalize_inputs=True, batch_size=None):
    est = NodeSNR(normalize_inputs=normalize_inputs, batch_size=batch_size)
    for batch in np.split(X, cuts):
        est.partial_fit(batch, weights=W)
    return est


def _assert_same_fit(streamed, whole, tol=F64):
    assert streamed.n_samples_seen_ == whole.n_samples_seen_
    for name in ("optimality_", "signal_factor_", "covariance_"):
        assert_close(getattr(streamed, name), to_numpy(getattr(whole, name)), tol)
    assert streamed.sign_disagreements_ == whole.sign_disagreements_
    assert streamed.n_nan_nodes_ == whole.n_nan_nodes_
    for name in ("optimality_mean_", "signal_factor_mean_"):
        assert getattr(streamed, name) == pytest.approx(getattr(whole, name), rel=tol)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cuts=st.sets(st.integers(2, 39), max_size=12),
    normalize_inputs=st.booleans(),
    batch_size=st.none() | st.integers(1, 50),
)
def test_partial_fit_over_any_split_equals_fit(
    seed, cuts, normalize_inputs, batch_size
):
    # Any split whose first batch has the 2 samples the measure needs; the
    # maximum over all samples is only known at the end, and still the same.
    X, W = relu_layer(seed=seed, n=40, d_in=6, d_out=4)
    X[seed % 40, :] *= 50.0  # the max of some features arrives late or early
    whole = NodeSNR(normalize_inputs=normalize_inputs).fit(X, weights=W)
    streamed = _split_fit(X, W, sorted(cuts), normalize_inputs, batch_size)
    _assert_same_fit(streamed, whole)
    S_ref, _, _, k_ref = reference_node_snr(X, W, normalize_inputs)
    assert_close(streamed.optimality_, S_ref, F64)
    assert streamed.sign_disagreements_ == k_ref


def test_partial_fit_equals_fit_on_every_backend(backend):
    X, W = relu_layer(seed=12, n=90)
    whole = NodeSNR().fit(backend.asarray(X), weights=backend.asarray(W))
    est = NodeSNR()
    # Batches of 2, 1, 1, 43 and 43 samples (few shapes: JAX compiles per shape).
    for i, batch in enumerate(np.split(X, [2, 3, 4, 47])):
        # The weights are needed once; later batches may repeat them.
        est.partial_fit(
            backend.asarray(batch), weights=backend.asarray(W) if i % 2 == 0 else None
        )
    tol = tolerance(backend)
    _assert_same_fit(est, whole, tol)
    assert_close(est.optimality_, reference_node_snr(X, W)[0], tol)
    xp, device = namespace_and_device(est.covariance_)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)


def test_batch_size_does_not_change_the_result(backend):
    X, W = relu_layer(seed=13, n=64)
    X, W = backend.asarray(X), backend.asarray(W)
    S, F, k = node_snr(X, W)
    S_b, F_b, k_b = node_snr(X, W, batch_size=16)
    tol = tolerance(backend)
    assert_close(S_b, to_numpy(S), tol)
    assert_close(F_b, to_numpy(F), tol)
    assert k_b == k
    est = NodeSNR(batch_size=32).fit(X, weights=W)
    assert_close(est.optimality_, to_numpy(S), tol)


def test_fit_starts_again():
    X, W = relu_layer(seed=14)
    est = NodeSNR().fit(X[:20], weights=W).fit(X, weights=W)
    assert est.n_samples_seen_ == len(X)
    assert_close(est.optimality_, reference_node_snr(X, W)[0], F64)
    # New weights after fit are fine: fit starts a new stream.
    est.fit(X, weights=2.0 * W)
    assert_close(est.signal_factor_, reference_node_snr(X, 2.0 * W)[1], F64)


def test_first_batch_needs_two_samples():
    X, W = relu_layer(seed=15)
    with pytest.raises(
        ValueError,
        match=r"NodeSNR: `X` has 1 sample but the measure needs at least 2; pass more samples",
    ):
        NodeSNR().partial_fit(X[:1], weights=W)
    # Later batches may have one sample.
    est = NodeSNR().partial_fit(X[:2], weights=W).partial_fit(X[2:3])
    assert est.n_samples_seen_ == 3


def test_partial_fit_refuses_other_weights():
    X, W = relu_layer(seed=16)
    est = NodeSNR().partial_fit(X[:10], weights=W)
    W2 = W.copy()
    W2[0, 0] += 1.0
    with pytest.raises(
        ValueError,
        match=r"NodeSNR\.partial_fit\(\): `weights` differ from those of the first batch; .* or call fit to start again",
    ):
        est.partial_fit(X[10:], weights=W2)
    # The weights are copied: changing the caller's array mid-stream is harmless.
    W[0, 0] += 1.0
    est.partial_fit(X[10:])
    W[0, 0] -= 1.0
    assert_close(est.optimality_, reference_node_snr(X, W)[0], F64)


def test_partial_fit_checks_library_and_features(backend):
    X, W = relu_layer(seed=17)
    est = NodeSNR().partial_fit(backend.asarray(X[:10]), weights=backend.asarray(W))
    with pytest.raises(
        ValueError,
        match=r"X has 11 features, but NodeSNR is expecting 12 features as input",
    ):
        est.partial_fit(backend.asarray(X[10:, :11]))
    if backend.spec.library != "numpy":
        with pytest.raises(
            ValueError,
            match=r"NodeSNR\.partial_fit\(\): `X` must use the same namespace and device as fit",
        ):
            est.partial_fit(X[10:])


# ---- dask: the same reductions, lazily


def test_dask_arrays_work_through_the_same_reductions():
    da = pytest.importorskip("dask.array")
    X, W = relu_layer(seed=18, n=120)
    Xd, Wd = da.from_array(X, chunks=(25, -1)), da.from_array(W)
    S, F, k = node_snr(Xd, Wd)
    assert namespace_name(namespace_and_device(S)[0]) == "dask"
    S_ref, F_ref, _, k_ref = reference_node_snr(X, W)
    assert_close(S, S_ref, F64)
    assert_close(F, F_ref, F64)
    assert k == k_ref
    est = NodeSNR(batch_size=50).fit(Xd, weights=Wd)
    assert namespace_name(namespace_and_device(est.optimality_)[0]) == "dask"
    assert_close(est.optimality_, S_ref, F64)
    assert est.sign_disagreements_ == k_ref
    stream = NodeSNR()
    for start in range(0, 120, 40):
        stream.partial_fit(Xd[start : start + 40], weights=Wd)
    assert_close(stream.signal_factor_, F_ref, F64)
    (row,) = node_snr_table([("fc", Xd, Wd)])
    assert row.optimality_mean == pytest.approx(np.nanmean(S_ref), rel=F64)


# ---- properties of the measures


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 100.0),
    normalize_inputs=st.booleans(),
)
def test_properties(seed, scale, normalize_inputs):
    X, W = relu_layer(seed=seed, n=30, d_in=5, d_out=4)
    S, F, k = node_snr(X, W, normalize_inputs=normalize_inputs)
    # Bounds: S is a cosine shrunk by the epsilon; |F| <= ||c|| / max|c|.
    assert (np.abs(S) < 1).all()
    assert (np.abs(F) <= np.sqrt(5) * (1 + 1e-12)).all()
    # Flipping every weight flips r and c: S, F and the count are unchanged.
    S_neg, F_neg, k_neg = node_snr(X, -W, normalize_inputs=normalize_inputs)
    assert_close(S_neg, S, F64)
    assert_close(F_neg, F, F64)
    assert k_neg == k
    # F is invariant to a positive scale of the weights (S only up to the
    # epsilon of c^, so it is not asserted).
    _, F_scaled, k_scaled = node_snr(X, scale * W, normalize_inputs=normalize_inputs)
    assert_close(F_scaled, F, 1e-9)
    assert k_scaled == k
    # A permutation of the samples, and of the inputs, changes nothing.
    rng = np.random.default_rng(seed)
    rows, inputs = rng.permutation(30), rng.permutation(5)
    S_perm, F_perm, _ = node_snr(
        X[rows][:, inputs], W[inputs], normalize_inputs=normalize_inputs
    )
    assert_close(S_perm, S, F64)
    assert_close(F_perm, F, F64)


# ---- the per-layer helper


def test_table_has_one_row_per_layer(backend):
    X1, W1 = relu_layer(seed=19)
    X2, W2 = relu_layer(seed=20)
    W2[:, 0] = 0.0
    layers = [
        ("fc1", backend.asarray(X1), backend.asarray(W1)),
        ("fc2", backend.asarray(X2), backend.asarray(W2)),
    ]
    rows = node_snr_table(layers)
    assert [row.layer for row in rows] == ["fc1", "fc2"]
    assert all(isinstance(row, NodeSNRRow) for row in rows)
    tol = tolerance(backend)
    for row, (X, W) in zip(rows, [(X1, W1), (X2, W2)], strict=True):
        S_ref, F_ref, _, k_ref = reference_node_snr(
            to_numpy(backend.asarray(X)), to_numpy(backend.asarray(W))
        )
        assert row.optimality_mean == pytest.approx(np.nanmean(S_ref), rel=tol)
        assert row.signal_factor_mean == pytest.approx(np.nanmean(F_ref), rel=tol)
        assert row.n_nan_nodes == int(np.sum(np.isnan(F_ref)))
        assert row.n_nodes == W.shape[1]
        assert isinstance(row.optimality_mean, float)
        assert isinstance(row.sign_disagreements, int)
        if tol == F64:
            assert row.sign_disagreements == k_ref
    assert rows[0].n_nan_nodes == 1 and rows[1].n_nan_nodes == 2
    # A mapping name -> (X, W) gives the same rows.
    as_dict = node_snr_table({name: (X, W) for name, X, W in layers})
    assert [row.layer for row in as_dict] == ["fc1", "fc2"]
    assert as_dict[1].optimality_mean == rows[1].optimality_mean


def test_table_takes_the_torch_adapters_triples():
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import dense_layers

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3, dtype=torch.float64),
    )
    with torch.no_grad():
        model[2].weight[1] = 0.0  # a dead node in the last layer
    X = torch.rand(50, 6, dtype=torch.float64)
    layers = dense_layers(model, X)
    rows = node_snr_table(layers)
    assert [row.layer for row in rows] == ["0", "2"]
    assert [row.n_nodes for row in rows] == [8, 3]
    assert rows[1].n_nan_nodes == 1
    hidden = np.maximum(
        X.numpy() @ model[0].weight.detach().numpy().T + model[0].bias.detach().numpy(),
        0,
    )
    S_ref, F_ref, _, k_ref = reference_node_snr(
        hidden, model[2].weight.detach().numpy().T
    )
    assert rows[1].optimality_mean == pytest.approx(np.nanmean(S_ref), rel=F64)
    assert rows[1].signal_factor_mean == pytest.approx(np.nanmean(F_ref), rel=F64)
    assert rows[1].sign_disagreements == k_ref


def test_table_takes_the_jax_adapters_triples():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from infoscope.adapters.jax import dense_layers

    rng = np.random.default_rng(1)
    params = {
        "w1": jnp.asarray(rng.standard_normal((5, 7)), dtype=jnp.float32),
        "w2": jnp.asarray(rng.standard_normal((7, 2)), dtype=jnp.float32),
    }

    def apply_fn(params, x):
        return jnp.maximum(x @ params["w1"], 0) @ params["w2"]

    X = jnp.asarray(rng.random((40, 5)), dtype=jnp.float32)
    rows = node_snr_table(dense_layers(apply_fn, params, X))
    assert [row.layer for row in rows] == ["w1", "w2"]
    hidden = np.maximum(np.asarray(X) @ np.asarray(params["w1"]), 0)
    S_ref, *_ = reference_node_snr(hidden, np.asarray(params["w2"]))
    assert rows[1].optimality_mean == pytest.approx(np.nanmean(S_ref), rel=1e-4)


def test_table_names_the_layer_in_errors():
    X, W = relu_layer(seed=21)
    with pytest.raises(
        ValueError,
        match=r"node_snr_table \(layer 'fc2'\): `W` has 7 rows but `X` has 12 features",
    ):
        node_snr_table([("fc1", X, W), ("fc2", X, W[:7])])
    with pytest.raises(
        ValueError,
        match=r"node_snr_table: layer 1 is not a \(name, X, W\) triple \(got tuple\); pass \(name, layer input, weights\) triples, or a mapping name -> \(X, W\)",
    ):
        node_snr_table([("fc1", X, W), ("fc2", X)])
    assert node_snr_table([]) == []


# ---- bad input: every message names the caller, the argument and the fix


@pytest.mark.parametrize(
    ("X", "W", "error", "message"),
    [
        (
            np.ones((5, 4)),
            np.ones((3, 2)),
            ValueError,
            r"node_snr: `W` has 3 rows but `X` has 4 features; `W` must have shape \(n_features, n_nodes\) = \(4, n_nodes\)\.$",
        ),
        (
            np.ones((5, 4)),
            np.ones((2, 4)),
            ValueError,
            r"node_snr: `W` has 2 rows but `X` has 4 features; .* `W` looks transposed \(PyTorch's nn\.Linear stores its weight as \(out, in\)\): pass W\.T\.",
        ),
        (
            np.ones((5, 4)),
            np.ones(4),
            ValueError,
            r"node_snr: `W` must be 2-D \(n_features, n_nodes\), got shape \(4,\); pass one row per input feature of `X` and one column per node\.",
        ),
        (
            np.ones((5, 4)),
            np.ones((4, 2, 2)),
            ValueError,
            r"node_snr: `W` must be 2-D \(n_features, n_nodes\), got shape \(4, 2, 2\)",
        ),
        (
            np.ones((5, 4)),
            None,
            ValueError,
            r"node_snr: `W` is missing; pass the layer's weights as an array of shape \(n_features, n_nodes\) = \(4, n_nodes\)",
        ),
        (
            np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]),
            np.ones((2, 3)),
            ValueError,
            r"node_snr: `X` contains NaN or infinity \(1 of 6 values\); remove or impute those samples first",
        ),
        (
            np.ones((3, 2)),
            np.array([[1.0, np.inf], [np.nan, 1.0]]),
            ValueError,
            r"node_snr: `W` contains NaN or infinity \(2 of 4 values\); the weights must be finite \(has training diverged\?\)",
        ),
        (
            np.ones((1, 2)),
            np.ones((2, 3)),
            ValueError,
            r"node_snr: `X` has 1 sample but the measure needs at least 2; pass more samples",
        ),
        (
            np.ones(5),
            np.ones((5, 3)),
            ValueError,
            r"node_snr: `X` must be 2-D \(n_samples, n_features\), got a 1-D array",
        ),
        (
            np.ones((4, 2)),
            np.ones((2, 0)),
            ValueError,
            r"node_snr: `W` has 0 feature\(s\)",
        ),
        (
            np.ones((4, 2)),
            np.ones((2, 2), dtype=complex),
            ValueError,
            r"node_snr: Complex data not supported in `W`",
        ),
    ],
    ids=[
        "W-rows",
        "W-transposed",
        "W-1d",
        "W-3d",
        "W-missing",
        "X-nan",
        "W-nan",
        "one-sample",
        "X-1d",
        "W-no-nodes",
        "W-complex",
    ],
)
def test_function_messages(X, W, error, message):
    with pytest.raises(error, match=message):
        node_snr(X, W)


def test_parameter_messages():
    X, W = relu_layer(seed=22)
    with pytest.raises(
        TypeError,
        match=r"The 'normalize_inputs' parameter of node_snr must be an instance of 'bool'",
    ):
        node_snr(X, W, normalize_inputs="yes")
    with pytest.raises(
        ValueError,
        match=r"The 'batch_size' parameter of node_snr must be an int in the range \[1, inf\) or None\. Got 0 instead",
    ):
        node_snr(X, W, batch_size=0)
    with pytest.raises(
        TypeError,
        match=r"The 'batch_size' parameter of node_snr must be an int in the range \[1, inf\) or None\. Got 2\.5 instead",
    ):
        node_snr(X, W, batch_size=2.5)
    with pytest.raises(
        ValueError,
        match=r"The 'batch_size' parameter of NodeSNR must be an int in the range \[1, inf\) or None",
    ):
        NodeSNR(batch_size=0).fit(X, weights=W)
    with pytest.raises(
        ValueError,
        match=r"The 'normalize_inputs' parameter of NodeSNR must be an instance of 'bool'",
    ):
        NodeSNR(normalize_inputs="yes").fit(X, weights=W)


def test_estimator_messages():
    X, W = relu_layer(seed=23)
    with pytest.raises(
        ValueError,
        match=r"NodeSNR: `weights` is missing; pass the layer's weights as an array of shape \(n_features, n_nodes\) = \(12, n_nodes\)",
    ):
        NodeSNR().fit(X)
    with pytest.raises(
        ValueError,
        match=r"NodeSNR: `weights` is missing and `y` was given; the layer's weights go in the keyword: fit\(X, weights=W\)",
    ):
        NodeSNR().fit(X, W)
    with pytest.raises(
        ValueError, match=r"NodeSNR: `weights` has 12 rows but `X` has 11 features"
    ):
        NodeSNR().fit(X[:, :11], weights=W)
    with pytest.raises(
        ValueError, match=r"NodeSNR: `X` contains NaN or infinity \(1 of"
    ):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        NodeSNR().fit(Xn, weights=W)


def test_mixed_libraries_name_both():
    torch = pytest.importorskip("torch")
    X, W = relu_layer(seed=24)
    with pytest.raises(
        ValueError,
        match=r"`X` is a torch array but `W` is a numpy array; .* Convert `W` to torch",
    ):
        node_snr(torch.asarray(X), W)
    with pytest.raises(
        ValueError, match=r"`X` is a torch array but `weights` is a numpy array"
    ):
        NodeSNR().fit(torch.asarray(X), weights=W)


def test_torch_weights_that_require_grad():
    # layer.weight.T of a trained model: a tensor in the autograd graph.
    torch = pytest.importorskip("torch")
    X, W = relu_layer(seed=25)
    weight = torch.nn.Parameter(torch.asarray(W.T.copy()))
    est = NodeSNR().fit(torch.asarray(X), weights=weight.T)
    assert_close(est.optimality_, reference_node_snr(X, W)[0], F64)
    assert isinstance(est.optimality_mean_, float)


# ---- scikit-learn's estimator checks


def seeded_weights(X):
    """A fixed (n_features, 3) W in X's namespace, device and dtype (tests only).

    scikit-learn's generic checks call ``fit(X, y)`` with data of their own;
    NodeSNR takes its weights from the `weights` parameter then, so every
    check (validation, dtypes, pickling, array API inputs, parameters left
    untouched, partial_fit's feature check, ...) runs NodeSNR's own code.
    """
    W = np.random.default_rng(0).standard_normal((X.shape[1], 3))
    xp, device = namespace_and_device(X)
    return asarray(W, xp=xp, device=device, dtype=X.dtype)


@parametrize_with_checks([NodeSNR(weights=seeded_weights)])
def test_scikit_learn_contract(estimator, check):
    check(estimator)


def test_weights_parameter_equals_the_fit_keyword_and_is_read_at_each_fit():
    X, W = relu_layer(seed=28)
    keyword = NodeSNR().fit(X, weights=W)
    parameter = NodeSNR(weights=W).fit(X)
    np.testing.assert_array_equal(parameter.optimality_, keyword.optimality_)
    current = {"W": W}
    live = NodeSNR(weights=lambda X: current["W"]).fit(X)
    np.testing.assert_array_equal(live.optimality_, keyword.optimality_)
    current["W"] = 2.0 * W + 1.0
    np.testing.assert_allclose(
        live.fit(X).optimality_, NodeSNR().fit(X, weights=current["W"]).optimality_
    )
    # The keyword wins over the parameter; a clone keeps the parameter.
    other = NodeSNR(weights=np.ones_like(W)).fit(X, weights=W)
    np.testing.assert_array_equal(other.optimality_, keyword.optimality_)
    assert clone(NodeSNR(weights=W)).weights is not None


def test_unfitted_estimator_says_call_fit():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(NotFittedError, match="This NodeSNR instance is not fitted yet"):
        check_is_fitted(NodeSNR())
    check_is_fitted(
        NodeSNR().fit(*relu_layer(seed=27)[:1], weights=relu_layer(seed=27)[1])
    )


# ---- public API and documentation


def test_public_names():
    assert infoscope.node_snr is node_snr
    assert infoscope.NodeSNR is NodeSNR
    assert infoscope.node_snr_table is node_snr_table
    result = node_snr(*relu_layer(seed=26))
    assert isinstance(result, NodeSNRResult)
    assert result._fields == ("optimality", "signal_factor", "sign_disagreements")
    assert NodeSNRRow._fields == (
        "layer",
        "optimality_mean",
        "signal_factor_mean",
        "sign_disagreements",
        "n_nan_nodes",
        "n_nodes",
    )
