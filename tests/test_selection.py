"""NTK-entropy data selection: every pool index drawable, candidates scored by the
definition, the greedy step checked by brute force, the same picks on every
backend, kernel callables (pool NTK once or per candidate), bad input and the
scikit-learn contract."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from infoscope.backends import (
    as_float,
    device_name,
    namespace_and_device,
    namespace_name,
    pairwise_sq_distances,
    to_numpy,
)
from infoscope.selection import (
    AUTO_FULL_MAX_POOL,
    GreedyEntropySelector,
    MaxEntropySelector,
    RandomSelector,
)

F64 = 1e-10


def reference_entropy(K, base=2.0, normalize=False):
    """DESIGN section 4, plainly: eigenvalues, negatives to 0, -sum p log p."""
    K = np.asarray(K, dtype=np.float64)
    if normalize:
        d = np.sqrt(np.diag(K))
        K = K / np.outer(d, d)
    lam = np.clip(np.linalg.eigvalsh(K), 0.0, None)
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)) / math.log(base))


def block(K, rows):
    rows = np.asarray(rows)
    return K[np.ix_(rows, rows)]


def pool_kernel(n=40, dim=10, seed=0):
    """A pool's "NTK": Gram matrix of gradients of uneven norms and directions."""
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((n, dim)) * rng.uniform(0.2, 3.0, size=(n, 1))
    return J @ J.T


def last_index_is_unique(n=12):
    """A pool where every sample but the last has the same gradient direction."""
    J = np.zeros((n, 2))
    J[:-1, 0] = 1.0
    J[-1, 1] = 1.0
    return J @ J.T


def gaussian_kernel_callable(X):
    """A kernel callable on ordinary 2-D data, in X's library."""
    xp, _ = namespace_and_device(X)
    X = as_float(X)
    return xp.exp(-pairwise_sq_distances(X) / (2.0 * X.shape[1]))


class CountingKernel:
    """A kernel callable that records the sizes it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, X):
        self.calls.append(X.shape[0])
        return gaussian_kernel_callable(X)


def assert_on_backend(array, backend):
    xp, device = namespace_and_device(array)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)


# ---- every pool index can be drawn (ZnNL's draw never reaches the last one)


def test_every_pool_index_is_drawn():
    K = pool_kernel(n=7)
    est = MaxEntropySelector(1, n_candidates=300, random_state=0).fit(K)
    drawn = np.unique(est.candidate_indices_)
    np.testing.assert_array_equal(drawn, np.arange(7))
    # Uniform: each of 7 indices about 300 / 7 = 43 times (binomial sd 6).
    counts = np.bincount(est.candidate_indices_.ravel(), minlength=7)
    assert counts.min() > 20 and counts.max() < 70
    # Disjoint candidates that use the whole pool partition it.
    partition = MaxEntropySelector(
        3, n_candidates=4, disjoint=True, random_state=1
    ).fit(pool_kernel(n=12))
    np.testing.assert_array_equal(
        np.sort(partition.candidate_indices_.ravel()), np.arange(12)
    )
    # The random baseline reaches the last index too.
    picks = {
        int(RandomSelector(1, random_state=s).fit(K).indices_[0]) for s in range(60)
    }
    assert picks == set(range(7))


@pytest.mark.parametrize("disjoint", [False, True])
def test_the_last_index_is_chosen_when_it_is_the_only_good_one(disjoint):
    # Only subsets holding the last sample have a second eigenvalue; a draw that
    # never reaches it (ZnNL's) would find nothing but entropy 0.
    K = last_index_is_unique(n=12)
    est = MaxEntropySelector(3, n_candidates=4, disjoint=disjoint, random_state=0).fit(
        K
    )
    assert 11 in est.indices_.tolist()
    assert est.entropy_ > 0.5
    holds_last = np.any(est.candidate_indices_ == 11, axis=1)
    np.testing.assert_array_equal(est.candidate_entropies_ > 0.5, holds_last)
    greedy = GreedyEntropySelector(2, random_state=0).fit(K)
    assert 11 in greedy.indices_.tolist()


# ---- max-entropy selection against the definition


def test_candidates_are_scored_by_the_definition(backend):
    K = pool_kernel(n=30, seed=1)
    for normalize in (False, True):
        est = MaxEntropySelector(
            6, n_candidates=25, normalize=normalize, base=math.e, random_state=3
        ).fit(backend.asarray(K))
        candidates = to_numpy(est.candidate_indices_)
        assert candidates.shape == (25, 6)
        assert np.all(np.diff(candidates, axis=1) > 0)  # ascending, no repeats
        K_used = to_numpy(backend.asarray(K))
        expected = [
            reference_entropy(block(K_used, c), base=math.e, normalize=normalize)
            for c in candidates
        ]
        tol = F64 if backend.has_float64 else 1e-4
        np.testing.assert_allclose(
            to_numpy(est.candidate_entropies_), expected, rtol=tol
        )
        best = int(np.argmax(expected))
        assert est.best_candidate_ == best
        np.testing.assert_array_equal(to_numpy(est.indices_), candidates[best])
        assert est.entropy_ == pytest.approx(expected[best], rel=tol)
        assert isinstance(est.entropy_, float)
        assert est.n_clipped_ >= 0
        for attribute in (
            est.indices_,
            est.candidate_indices_,
            est.candidate_entropies_,
        ):
            assert_on_backend(attribute, backend)


def test_same_seed_same_picks_on_every_backend(backend):
    K = pool_kernel(n=25, seed=2)
    reference = MaxEntropySelector(5, n_candidates=30, random_state=4).fit(K)
    est = MaxEntropySelector(5, n_candidates=30, random_state=4).fit(backend.asarray(K))
    np.testing.assert_array_equal(
        to_numpy(est.candidate_indices_), reference.candidate_indices_
    )
    np.testing.assert_array_equal(to_numpy(est.indices_), reference.indices_)
    rand = RandomSelector(5, kernel="precomputed", random_state=4).fit(
        backend.asarray(K)
    )
    np.testing.assert_array_equal(
        to_numpy(rand.indices_), reference.candidate_indices_[0]
    )
    greedy_ref = GreedyEntropySelector(5, random_state=4).fit(K)
    greedy = GreedyEntropySelector(5, random_state=4).fit(backend.asarray(K))
    np.testing.assert_array_equal(to_numpy(greedy.indices_), greedy_ref.indices_)
    tol = F64 if backend.has_float64 else 1e-4
    np.testing.assert_allclose(
        to_numpy(greedy.entropy_path_), greedy_ref.entropy_path_, rtol=tol, atol=tol
    )
    assert_on_backend(greedy.entropy_path_, backend)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(4, 30),
    k_fraction=st.floats(0.05, 1.0),
    n_candidates=st.integers(1, 40),
)
def test_max_entropy_never_loses_to_the_random_pick_of_its_seed(
    seed, n, k_fraction, n_candidates
):
    K = pool_kernel(n=n, dim=6, seed=seed)
    k = max(1, round(k_fraction * n))
    best = MaxEntropySelector(k, n_candidates, random_state=seed).fit(K)
    rand = RandomSelector(k, kernel="precomputed", random_state=seed).fit(K)
    np.testing.assert_array_equal(rand.indices_, best.candidate_indices_[0])
    assert best.entropy_ >= rand.entropy_ - 1e-12
    assert best.entropy_ == pytest.approx(float(np.max(best.candidate_entropies_)))
    assert rand.entropy_ == pytest.approx(reference_entropy(block(K, rand.indices_)))


def test_pool_kernel_once_or_per_candidate_agree():
    X = np.random.default_rng(5).standard_normal((30, 4))
    full_kernel, subsets_kernel = CountingKernel(), CountingKernel()
    full = MaxEntropySelector(
        5, n_candidates=12, kernel=full_kernel, pool_kernel="full", random_state=6
    ).fit(X)
    subsets = MaxEntropySelector(
        5, n_candidates=12, kernel=subsets_kernel, pool_kernel="subsets", random_state=6
    ).fit(X)
    assert full_kernel.calls == [30]  # the pool's NTK, once
    assert subsets_kernel.calls == [5] * 12  # one NTK per candidate
    np.testing.assert_array_equal(full.indices_, subsets.indices_)
    np.testing.assert_allclose(
        full.candidate_entropies_, subsets.candidate_entropies_, rtol=1e-12
    )
    assert full.entropy_ == pytest.approx(subsets.entropy_, rel=1e-12)
    # "auto" computes the pool's NTK once for a pool of this size.
    auto_kernel = CountingKernel()
    MaxEntropySelector(5, 12, kernel=auto_kernel, random_state=6).fit(X)
    assert auto_kernel.calls == [30] and AUTO_FULL_MAX_POOL >= 30


def test_auto_computes_per_candidate_above_the_pool_limit(monkeypatch):
    import infoscope.selection as selection

    monkeypatch.setattr(selection, "AUTO_FULL_MAX_POOL", 20)
    kernel = CountingKernel()
    X = np.random.default_rng(7).standard_normal((30, 3))
    MaxEntropySelector(4, 3, kernel=kernel, random_state=0).fit(X)
    assert kernel.calls == [4, 4, 4]


# ---- greedy selection


def test_each_greedy_step_is_the_brute_force_best(backend):
    K = pool_kernel(n=20, dim=8, seed=8)
    est = GreedyEntropySelector(7, normalize=True, random_state=9).fit(
        backend.asarray(K)
    )
    order = to_numpy(est.indices_).tolist()
    assert len(set(order)) == 7
    assert order[0] == np.random.default_rng(9).integers(20)  # a random start
    K_used = to_numpy(backend.asarray(K))
    path = [0.0]
    for step in range(1, 7):
        chosen = order[:step]
        scores = {
            i: reference_entropy(block(K_used, [*chosen, i]), normalize=True)
            for i in range(20)
            if i not in chosen
        }
        best = max(scores.values())
        assert scores[order[step]] == pytest.approx(best, rel=1e-6)
        path.append(scores[order[step]])
    tol = F64 if backend.has_float64 else 1e-4
    np.testing.assert_allclose(to_numpy(est.entropy_path_), path, rtol=tol, atol=tol)
    assert est.entropy_ == pytest.approx(path[-1], rel=tol)


def test_greedy_breaks_ties_by_pool_order_and_avoids_copies():
    # Five copies of one direction and three orthogonal directions: starting
    # from a copy, every step adds an orthogonal direction (lowest index first).
    J = np.zeros((8, 4))
    J[:5, 0] = 1.0
    J[5:, 1:] = np.eye(3)
    K = J @ J.T
    starts = {}
    for seed in range(20):
        est = GreedyEntropySelector(4, random_state=seed).fit(K)
        starts[int(est.indices_[0])] = est.indices_.tolist()
        assert est.entropy_ == pytest.approx(2.0, rel=1e-12)
    for first, order in starts.items():
        if first < 5:
            assert order == [first, 5, 6, 7]
        else:
            rest = [i for i in (5, 6, 7) if i != first]
            assert order == [first, 0, *rest]  # a copy ties the others: index 0


def test_greedy_with_a_kernel_callable_computes_the_pool_ntk_once():
    X = np.random.default_rng(10).standard_normal((25, 3))
    kernel = CountingKernel()
    est = GreedyEntropySelector(6, kernel=kernel, random_state=0).fit(X)
    assert kernel.calls == [25]
    pre = GreedyEntropySelector(6, random_state=0).fit(gaussian_kernel_callable(X))
    np.testing.assert_array_equal(est.indices_, pre.indices_)


def test_greedy_beats_random_candidates_on_a_clustered_pool():
    # Gradients in 4 tight clusters: greedy takes one from each cluster first.
    rng = np.random.default_rng(11)
    centres = np.eye(4) * 5
    J = np.repeat(centres, 10, axis=0) + 0.01 * rng.standard_normal((40, 4))
    K = J @ J.T
    greedy = GreedyEntropySelector(4, random_state=0).fit(K)
    assert sorted(int(i) // 10 for i in greedy.indices_) == [0, 1, 2, 3]
    assert greedy.entropy_ == pytest.approx(2.0, abs=1e-3)
    # Random candidates often take two samples of one cluster (entropy ~1.5).
    best = MaxEntropySelector(4, n_candidates=3, random_state=0).fit(K)
    per_cluster = [np.bincount(c // 10, minlength=4) for c in best.candidate_indices_]
    for counts, entropy in zip(per_cluster, best.candidate_entropies_, strict=True):
        assert (entropy > 1.99) == bool(np.all(counts == 1))


# ---- kernel callables from the adapters


def test_torch_ntk_callable_equals_the_precomputed_pool():
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import empirical_ntk

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)
    ).double()
    X = torch.randn(24, 5, dtype=torch.float64)
    kernel = functools.partial(empirical_ntk, model)
    K = empirical_ntk(model, X)
    for mode in ("full", "subsets"):
        est = MaxEntropySelector(
            5, n_candidates=8, kernel=kernel, pool_kernel=mode, random_state=1
        ).fit(X)
        pre = MaxEntropySelector(5, n_candidates=8, random_state=1).fit(K)
        torch.testing.assert_close(est.indices_, pre.indices_)
        torch.testing.assert_close(
            est.candidate_entropies_, pre.candidate_entropies_, rtol=1e-9, atol=1e-12
        )
        assert isinstance(est.indices_, torch.Tensor)
    greedy = GreedyEntropySelector(5, kernel=kernel, random_state=2).fit(X)
    torch.testing.assert_close(
        greedy.indices_, GreedyEntropySelector(5, random_state=2).fit(K).indices_
    )
    rand = RandomSelector(5, kernel=kernel, random_state=3).fit(X)
    assert rand.entropy_ == pytest.approx(
        reference_entropy(block(K.numpy(), rand.indices_.numpy())), rel=1e-10
    )


# ---- the baseline


def test_random_selector_without_a_kernel_only_draws():
    images = np.zeros((15, 1, 3, 3))
    est = RandomSelector(4, random_state=0).fit(images)
    assert est.entropy_ is None and est.n_clipped_ is None
    assert est.n_features_in_ == 9
    np.testing.assert_array_equal(
        est.indices_, np.sort(np.random.default_rng(0).choice(15, 4, replace=False))
    )


# ---- bad input: the message names the caller, the argument and the fix


@pytest.mark.parametrize(
    ("estimator", "X", "error", "message"),
    [
        (
            MaxEntropySelector(5, 10),
            np.eye(4),
            ValueError,
            r"MaxEntropySelector: n_select=5 exceeds the pool, which has 4 samples; lower n_select or pass a larger pool\.",
        ),
        (
            GreedyEntropySelector(2),
            np.eye(1),
            ValueError,
            r"GreedyEntropySelector: n_select=2 exceeds the pool, which has 1 sample; lower n_select",
        ),
        (
            RandomSelector(3),
            np.zeros((2, 5)),
            ValueError,
            r"RandomSelector: n_select=3 exceeds the pool, which has 2 samples",
        ),
        (
            MaxEntropySelector(2, 0),
            np.eye(4),
            ValueError,
            r"The 'n_candidates' parameter of MaxEntropySelector must be an int in the range \[1, inf\)\. Got 0 instead\.",
        ),
        (
            MaxEntropySelector(0),
            np.eye(4),
            ValueError,
            r"The 'n_select' parameter of MaxEntropySelector must be an int in the range \[1, inf\)",
        ),
        (
            MaxEntropySelector(2, 3, disjoint=True),
            np.eye(5),
            ValueError,
            r"MaxEntropySelector: disjoint=True needs n_candidates \* n_select = 3 \* 2 = 6 pool samples, but the pool has 5; lower n_candidates or n_select, or pass disjoint=False\.",
        ),
        (
            MaxEntropySelector(2, pool_kernel="lazy"),
            np.eye(4),
            ValueError,
            r"The 'pool_kernel' parameter of MaxEntropySelector must be a str among",
        ),
        (
            MaxEntropySelector(2, 3),
            np.ones((4, 3)),
            ValueError,
            r"MaxEntropySelector: `K` must be a square kernel matrix \(n, n\), got shape \(4, 3\)",
        ),
        (
            GreedyEntropySelector(2),
            np.triu(np.ones((4, 4))),
            ValueError,
            r"GreedyEntropySelector: `K` is not symmetric",
        ),
        (
            MaxEntropySelector(2, 3),
            np.array([[1.0, np.nan], [np.nan, 1.0]]),
            ValueError,
            r"MaxEntropySelector: `K` contains NaN or infinity",
        ),
        (
            GreedyEntropySelector(2, kernel=lambda X: np.eye(2 * X.shape[0])),
            np.ones((4, 3)),
            ValueError,
            r"GreedyEntropySelector: kernel\(X\) returned a 8 x 8 matrix for 4 samples; selection needs one row per sample: use an NTK in output_mode='mean' or 'sum'\.",
        ),
        (
            MaxEntropySelector(
                2, 3, kernel=lambda X: np.eye(2 * X.shape[0]), pool_kernel="subsets"
            ),
            np.ones((4, 3)),
            ValueError,
            r"MaxEntropySelector: kernel\(X\) returned a 4 x 4 matrix for 2 samples",
        ),
        (
            MaxEntropySelector(2, 3),
            np.zeros((4, 4)),
            ValueError,
            r"MaxEntropySelector: no candidate subset has a positive NTK eigenvalue",
        ),
        (
            GreedyEntropySelector(2),
            np.zeros((4, 4)),
            ValueError,
            r"GreedyEntropySelector: no subset of 2 samples has a positive NTK eigenvalue",
        ),
        (
            RandomSelector(2, kernel="precomputed"),
            np.zeros((4, 4)),
            ValueError,
            r"RandomSelector: the K of the selected samples has no positive eigenvalue",
        ),
        (
            RandomSelector(2, kernel=gaussian_kernel_callable),
            np.ones(4),
            ValueError,
            r"RandomSelector: `X` must have a sample axis and at least one feature axis",
        ),
    ],
    ids=[
        "too-many-max",
        "too-many-greedy",
        "too-many-random",
        "no-candidates",
        "n-select-0",
        "disjoint-too-many",
        "pool-kernel",
        "K-not-square",
        "K-asymmetric",
        "K-nan",
        "full-mode-pool",
        "full-mode-subset",
        "zero-kernel-max",
        "zero-kernel-greedy",
        "zero-kernel-random",
        "X-1d",
    ],
)
def test_messages(estimator, X, error, message):
    with pytest.raises(error, match=message):
        estimator.fit(X)


# ---- the scikit-learn contract


@parametrize_with_checks(
    [
        MaxEntropySelector(3, 5, random_state=0),
        MaxEntropySelector(3, 5, kernel=gaussian_kernel_callable, random_state=0),
        GreedyEntropySelector(3, kernel=gaussian_kernel_callable, random_state=0),
        RandomSelector(3, random_state=0),
        RandomSelector(3, kernel="precomputed", random_state=0),
    ]
)
def test_scikit_learn_contract(estimator, check):
    # "precomputed" sets the pairwise tag: the checks pass square kernel matrices.
    check(estimator)


def test_params_and_clone():
    est = MaxEntropySelector(4, 50, normalize=True, disjoint=True, random_state=3)
    params = est.get_params()
    assert params["n_select"] == 4 and params["n_candidates"] == 50
    assert params["pool_kernel"] == "auto" and params["disjoint"] is True
    copy = clone(est).set_params(n_select=2)
    assert copy.n_select == 2 and est.n_select == 4
    fitted = est.set_params(n_candidates=5).fit(pool_kernel(n=30))
    assert not hasattr(clone(fitted), "indices_")
    assert clone(GreedyEntropySelector(3)).get_params()["kernel"] == "precomputed"
    assert RandomSelector(3).get_params()["kernel"] is None
    assert not RandomSelector(3).__sklearn_tags__().input_tags.pairwise
    assert MaxEntropySelector(3).__sklearn_tags__().input_tags.pairwise
