import numpy as np
import pytest
from _toy import CovarianceSpectrumEntropy
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from infoscope.backends import (
    device_name,
    namespace_and_device,
    namespace_name,
    to_numpy,
)
from infoscope.estimators._base import (
    check_array,
    check_consistent_length,
    check_targets,
)

NAME = "CovarianceSpectrumEntropy"


@parametrize_with_checks([CovarianceSpectrumEntropy()])
def test_scikit_learn_contract(estimator, check):
    check(estimator)


# ---- check_array: every rejection names the caller, the argument and the fix


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (None, TypeError, r"demo: `acts` is None; pass an array of shape"),
        (
            np.ones(3),
            ValueError,
            r"demo: `acts` must be 2-D .* got a 1-D array of shape \(3,\)\. Reshape your data: acts\.reshape\(-1, 1\)",
        ),
        (np.ones(()), ValueError, r"demo: `acts` must be 2-D .* got a 0-D array"),
        (
            np.ones((1, 3)),
            ValueError,
            r"demo: `acts` has 1 sample but the measure needs at least 2; pass more samples",
        ),
        (
            np.ones((0, 3)),
            ValueError,
            r"demo: `acts` has 0 samples but the measure needs at least 2",
        ),
        (
            np.ones((4, 0)),
            ValueError,
            r"demo: `acts` has 0 feature\(s\) \(shape=\(4, 0\)\) while a minimum of 1 is required; pass at least one feature",
        ),
        (
            np.array([[1.0, np.nan], [0.0, np.inf], [1.0, 1.0]]),
            ValueError,
            r"demo: `acts` contains NaN or infinity \(2 of 6 values\); remove or impute those samples first",
        ),
        (
            np.ones((3, 2), dtype=complex),
            ValueError,
            r"demo: Complex data not supported in `acts` \(dtype complex128\); pass the real part",
        ),
        (
            np.array([["a", "b"], ["c", "d"]]),
            TypeError,
            r"demo: `acts` holds strings or raw bytes \(dtype <U1\); pass an array of numbers",
        ),
        (
            np.array([[1.0, {"a": 1}], [2.0, 3.0]], dtype=object),
            TypeError,
            r"`acts` holds non-numeric values \(.*argument must be a string or a real number.*\)",
        ),
    ],
    ids=[
        "none",
        "1d",
        "0d",
        "one-sample",
        "no-samples",
        "no-features",
        "nan-inf",
        "complex",
        "strings",
        "object",
    ],
)
def test_check_array_messages(X, error, message):
    with pytest.raises(error, match=message):
        check_array(X, caller="demo", name="acts", min_samples=2)


def test_check_array_rejects_sparse_with_the_fix():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(
        TypeError,
        match=r"demo: `X` is a sparse matrix, and sparse input is not supported; pass a dense array \(X\.toarray\(\)",
    ):
        check_array(sparse.csr_array(np.eye(3)), caller="demo")


def test_check_array_rejects_torch_sparse():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="sparse input is not supported"):
        check_array(torch.eye(3).to_sparse(), caller="demo")


def test_check_array_rejects_nan_on_every_backend(backend):
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"demo: `X` contains NaN or infinity \(1 of 12 values\)"
    ):
        check_array(backend.asarray(X), caller="demo")


def test_check_array_accepts_finite_values_whose_sum_overflows(backend):
    # The finiteness check sums first; a sum that overflows is not a NaN.
    big = np.finfo(np.float32).max
    X = np.full((4, 3), big / 2)
    checked = check_array(backend.asarray(X, dtype="float32"), caller="demo")
    assert checked.shape == (4, 3)


def test_check_array_rejects_complex_on_every_backend(backend):
    x = backend.xp.ones((3, 2), dtype=backend.xp.complex64, device=backend.device)
    with pytest.raises(ValueError, match=r"demo: Complex data not supported in `X`"):
        check_array(x, caller="demo")


def test_check_array_flattens_feature_maps_per_sample(backend):
    maps = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = check_array(backend.asarray(maps), caller="demo")
    assert tuple(out.shape) == (2, 60)
    np.testing.assert_array_equal(to_numpy(out), maps.reshape(2, 60))
    xp, device = namespace_and_device(out)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)


def test_check_array_keeps_float32_and_promotes_ints(backend):
    assert (
        check_array(backend.asarray(np.ones((2, 2), np.float32)), caller="demo").dtype
        == backend.xp.float32
    )
    out = check_array(backend.asarray(np.ones((2, 2), np.int32)), caller="demo")
    assert out.dtype == (
        backend.xp.float64 if backend.has_float64 else backend.xp.float32
    )


def test_check_array_can_refuse_to_flatten():
    with pytest.raises(
        ValueError,
        match=r"demo: `X` must be 2-D .* got shape \(2, 3, 4\); reshape it to one row per sample",
    ):
        check_array(np.ones((2, 3, 4)), caller="demo", flatten=False)


def test_check_array_converts_array_likes():
    out = check_array([[1, 2], [3, 4]], caller="demo")
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    numeric_objects = np.array([[1, 2.5], [3, 4]], dtype=object)
    np.testing.assert_array_equal(
        check_array(numeric_objects, caller="demo"), [[1, 2.5], [3, 4]]
    )


def test_check_consistent_length_names_both():
    with pytest.raises(
        ValueError,
        match=r"demo: `Z` has 5 samples but `Y` has 4; pass one row of `Y` per sample of `Z`",
    ):
        check_consistent_length(caller="demo", Z=np.ones((5, 2)), Y=np.ones(4))
    check_consistent_length(caller="demo", Z=np.ones((5, 2)), Y=np.ones(5), W=None)


def test_check_targets():
    np.testing.assert_array_equal(check_targets([1, 0, 1], caller="demo"), [1, 0, 1])
    # Labels held as Python objects (a pandas object Series) take their
    # values' dtype: strings stay strings, integers become integers.
    assert (
        check_targets(np.array(["a", "b"], dtype=object), caller="demo").dtype.kind
        == "U"
    )
    assert (
        check_targets(np.array([1, 2], dtype=object), caller="demo").dtype.kind == "i"
    )
    mixed = np.array([1, "a", None], dtype=object)
    assert check_targets(mixed, caller="demo").dtype == object
    with pytest.raises(
        ValueError, match=r"demo: `y` contains NaN or infinity \(1 of 3 values\)"
    ):
        check_targets([1.0, np.nan, 0.0], caller="demo")
    with pytest.raises(ValueError, match=r"demo: Complex data not supported in `y`"):
        check_targets(np.ones(3, dtype=complex), caller="demo")
    with pytest.raises(
        ValueError,
        match=r"demo: `y` must be 1-D \(one label per sample\) or 2-D .* got shape \(2, 2, 2\)",
    ):
        check_targets(np.ones((2, 2, 2)), caller="demo")
    with pytest.raises(TypeError, match=r"demo: `y` holds strings or raw bytes"):
        check_targets(["1", "2"], caller="demo", numeric=True)
    with pytest.raises(
        ValueError,
        match=r"demo requires y to be passed, but the target y is None; pass one label per sample as `y`",
    ):
        check_targets(None, caller="demo")


# ---- the estimator glue


def test_parameters_are_validated_in_fit_with_the_estimator_name():
    with pytest.raises(
        ValueError,
        match=rf"The 'base' parameter of {NAME} must be a float in the range \(0(\.0)?, inf\)",
    ):
        CovarianceSpectrumEntropy(base=-1.0).fit(
            np.random.default_rng(0).random((5, 2))
        )
    with pytest.raises(
        ValueError, match=rf"The 'precision' parameter of {NAME} must be a str among"
    ):
        CovarianceSpectrumEntropy(precision="half").fit(
            np.random.default_rng(0).random((5, 2))
        )


def test_fit_errors_name_the_estimator():
    with pytest.raises(
        ValueError, match=rf"{NAME}: `X` has 1 sample but the measure needs at least 2"
    ):
        CovarianceSpectrumEntropy().fit(np.ones((1, 3)))


def test_unfitted_transform_says_call_fit():
    with pytest.raises(
        NotFittedError, match=rf"This {NAME} instance is not fitted yet\. Call 'fit'"
    ):
        CovarianceSpectrumEntropy().transform(np.ones((3, 2)))


def test_transform_checks_feature_count():
    est = CovarianceSpectrumEntropy().fit(np.random.default_rng(0).random((6, 3)))
    with pytest.raises(
        ValueError,
        match=rf"X has 2 features, but {NAME} is expecting 3 features as input; pass the activations of the layer it was fitted on",
    ):
        est.transform(np.ones((2, 2)))


def test_fitted_attributes_follow_the_input(backend):
    X = np.random.default_rng(0).standard_normal((20, 4))
    est = CovarianceSpectrumEntropy().fit(backend.asarray(X))
    xp, device = namespace_and_device(est.eigenvalues_)
    assert namespace_name(xp) == backend.spec.library
    assert device_name(device) == device_name(backend.device)
    assert isinstance(est.entropy_, float)
    reference = CovarianceSpectrumEntropy().fit(X).entropy_
    assert est.entropy_ == pytest.approx(reference, rel=1e-5)
    assert est.n_features_in_ == 4


def test_transform_with_another_library_names_both(backend):
    if backend.spec.library == "numpy":
        pytest.skip("needs a library other than numpy")
    X = np.random.default_rng(0).standard_normal((20, 4))
    est = CovarianceSpectrumEntropy().fit(backend.asarray(X))
    fitted = (
        f"fitted on {backend.spec.library} \\(device {device_name(backend.device)!r}\\)"
    )
    with pytest.raises(
        ValueError,
        match=rf"{NAME}\.transform\(\): `X` must use the same namespace and device as fit: {fitted}, got numpy \(device 'cpu'\)\. Pass arrays of the same library and device, or fit again\.",
    ):
        est.transform(X)


def test_transform_on_another_device_names_both():
    xps = pytest.importorskip("array_api_strict")
    X = np.random.default_rng(0).standard_normal((10, 3))
    est = CovarianceSpectrumEntropy().fit(xps.asarray(X, device=xps.Device("device1")))
    with pytest.raises(
        ValueError,
        match=r"fitted on array_api_strict \(device 'device1'\), got array_api_strict \(device 'CPU_DEVICE'\)",
    ):
        est.transform(xps.asarray(X))


def test_works_inside_a_pipeline():
    X = np.random.default_rng(0).standard_normal((30, 5))
    pipe = make_pipeline(StandardScaler(), CovarianceSpectrumEntropy()).fit(X)
    out = pipe.transform(X)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    direct = CovarianceSpectrumEntropy().fit(StandardScaler().fit_transform(X)).entropy_
    assert pipe[-1].entropy_ == pytest.approx(direct)


def test_feature_maps_are_flattened_by_fit():
    maps = np.random.default_rng(0).standard_normal((8, 2, 3, 3))
    est = CovarianceSpectrumEntropy().fit(maps)
    assert est.n_features_in_ == 18
    assert est.entropy_ == pytest.approx(
        CovarianceSpectrumEntropy().fit(maps.reshape(8, 18)).entropy_
    )


def test_tags_are_honest():
    tags = CovarianceSpectrumEntropy().__sklearn_tags__()
    assert tags.array_api_support
    assert not tags.input_tags.allow_nan
    assert tags.input_tags.three_d_array
    assert not tags.input_tags.sparse
