"""MultimodalFuser: the sklearn API, each step against hand computations, real data."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from skmm.datasets import load_av_digits
from skmm.encoders import AudioFeatures, ImageEncoder, TextEncoder
from skmm.fusion import FUSION_OPERATORS, MultimodalFuser, make_fuser

FUSIONS = sorted(FUSION_OPERATORS)
TEST_SPEAKERS = ["lucas", "yweweler"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# scikit-learn's estimator checks for every fusion run in tests/test_common.py.


# -- small synthetic data -----------------------------------------------------------------
@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(2.0, 3.0, 12),
            "b": rng.normal(-1.0, 0.5, 12),
            "c": rng.normal(10.0, 5.0, 12),
            "d": rng.normal(0.0, 1.0, 12),
        },
        index=[f"r{i}" for i in range(12)],
    )


def _zscore(values, reference=None):
    reference = values if reference is None else reference
    return (values - reference.mean(0)) / reference.std(0)


def fuser(**params):
    encoders = [
        ("x", "passthrough", ["a", "b"]),
        ("y", "passthrough", ["c", "d"]),
    ]
    return MultimodalFuser(encoders, **params)


class Recorder(TransformerMixin, BaseEstimator):
    """Doubles its input and counts the calls it gets (on its own instance)."""

    def fit(self, X, y=None):
        self.fit_calls_ = getattr(self, "fit_calls_", 0) + 1
        self.y_ = None if y is None else np.asarray(y)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        self.transform_calls_ = getattr(self, "transform_calls_", 0) + 1
        return 2.0 * np.asarray(X, dtype=np.float64)

    def get_feature_names_out(self, input_features=None):
        return np.asarray([f"twice_{f}" for f in input_features], dtype=object)


# -- each step by hand ----------------------------------------------------------------------
def test_concat_standardises_each_feature_by_default(frame):
    out = fuser().fit_transform(frame)
    assert_allclose(out, _zscore(frame.to_numpy()))
    assert_allclose(
        fuser(normalize=None).fit_transform(frame), frame.to_numpy(), rtol=1e-12
    )


def test_block_normalisation_gives_each_modality_unit_variance(frame):
    encoders = [("x", "passthrough", ["a"]), ("y", "passthrough", ["b", "c", "d"])]
    out = MultimodalFuser(encoders, normalize="block").fit_transform(frame)
    z = _zscore(frame.to_numpy())
    # Widths 1 and 3: the second block is divided by sqrt(3).
    assert_allclose(out, np.hstack([z[:, :1], z[:, 1:] / np.sqrt(3)]))
    assert_allclose(out[:, :1].var(0).sum(), 1.0)
    assert_allclose(out[:, 1:].var(0).sum(), 1.0)


def test_normalize_per_modality(frame):
    out = fuser(normalize={"x": None, "y": "block"}).fit_transform(frame)
    assert_allclose(out[:, :2], frame[["a", "b"]].to_numpy())
    assert_allclose(out[:, 2:], _zscore(frame[["c", "d"]].to_numpy()) / np.sqrt(2))
    # Modalities not listed are standardised.
    out = fuser(normalize={"x": None}).fit_transform(frame)
    assert_allclose(out[:, 2:], _zscore(frame[["c", "d"]].to_numpy()))


def test_weights_scale_concatenated_blocks(frame):
    out = fuser(weights={"y": 3.0}, normalize=None).fit_transform(frame)
    assert_allclose(out, frame.to_numpy() * [1, 1, 3, 3])


@pytest.mark.parametrize(
    "fusion, weights, expected",
    [
        ("sum", None, lambda x, y: x + y),
        ("mean", None, lambda x, y: (x + y) / 2),
        ("mean", {"x": 3.0}, lambda x, y: (3 * x + y) / 4),
        ("weighted", {"x": 2.0, "y": 0.5}, lambda x, y: 2 * x + 0.5 * y),
        ("product", None, lambda x, y: x * y),
        ("max", None, np.maximum),
    ],
)
def test_elementwise_fusions_by_hand(frame, fusion, weights, expected):
    x, y = frame[["a", "b"]].to_numpy(), frame[["c", "d"]].to_numpy()
    out = fuser(fusion=fusion, weights=weights, normalize=None).fit_transform(frame)
    assert_allclose(out, expected(x, y))


def test_projection_is_pca_of_the_standardised_block(frame):
    encoders = [("x", "passthrough", ["a"]), ("y", "passthrough", ["b", "c", "d"])]
    out = MultimodalFuser(encoders, fusion="sum", projection=1).fit_transform(frame)
    z = _zscore(frame.to_numpy())
    by_hand = PCA(1, random_state=0).fit_transform(z[:, :1]) + PCA(
        1, random_state=0
    ).fit_transform(z[:, 1:])
    assert_allclose(out, by_hand, atol=1e-10)
    # A dict projects only the named blocks.
    out = MultimodalFuser(
        encoders, projection={"y": 1}, normalize=None, fusion="product"
    ).fit_transform(frame)
    pca = PCA(1, random_state=0).fit(frame[["b", "c", "d"]].to_numpy())
    assert_allclose(
        out, frame[["a"]].to_numpy() * pca.transform(frame[["b", "c", "d"]].to_numpy())
    )


def test_tensor_fusion_values_and_names(frame):
    encoders = [("x", "passthrough", ["a"]), ("y", "passthrough", ["c", "d"])]
    fz = MultimodalFuser(encoders, fusion="tensor", normalize=None)
    out = fz.fit_transform(frame)
    a, c, d = (frame[col].to_numpy() for col in "acd")
    one = np.ones_like(a)
    assert_allclose(out, np.column_stack([one, c, d, a, a * c, a * d]))
    assert list(fz.get_feature_names_out()) == [
        "1",
        "y__c",
        "y__d",
        "x__a",
        "x__a*y__c",
        "x__a*y__d",
    ]
    assert fz.output_indices_ == {"x": slice(0, 6), "y": slice(0, 6)}


def test_feature_names(frame):
    fz = fuser().fit(frame)
    assert list(fz.get_feature_names_out()) == ["x__a", "x__b", "y__c", "y__d"]
    fz = fuser(verbose_feature_names_out=False).fit(frame)
    assert list(fz.get_feature_names_out()) == ["a", "b", "c", "d"]
    fz = fuser(verbose_feature_names_out="{feature_name}@{transformer_name}")
    assert fz.fit(frame).get_feature_names_out()[0] == "a@x"
    fz = fuser(verbose_feature_names_out=lambda t, f: f.upper() + t)
    assert fz.fit(frame).get_feature_names_out()[-1] == "Dy"
    fz = fuser(fusion="max", projection=1, missing="indicator").fit(frame)
    assert list(fz.get_feature_names_out()) == [
        "fused0",
        "missingindicator_x",
        "missingindicator_y",
    ]
    fz = fuser(projection=2).fit(frame)
    assert list(fz.get_feature_names_out()) == ["x__pca0", "x__pca1"] + [
        "y__pca0",
        "y__pca1",
    ]
    fz = fuser(projection=2, verbose_feature_names_out=False).fit(frame)
    with pytest.raises(ValueError, match=r"\['pca0', 'pca1'\] are not unique"):
        fz.get_feature_names_out()
    fz = make_fuser((Recorder(), ["a"]), (Recorder(), ["a", "c"])).fit(frame)
    assert list(fz.get_feature_names_out()) == [
        "recorder-1__twice_a",
        "recorder-2__twice_a",
        "recorder-2__twice_c",
    ]
    with pytest.raises(ValueError, match="input_features is not equal"):
        fz.get_feature_names_out(["p", "q", "r", "s"])


def test_pandas_output(frame):
    fz = fuser(missing="indicator").set_output(transform="pandas")
    out = fz.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(fz.get_feature_names_out())
    assert list(out.index) == list(frame.index)
    assert_allclose(fz.transform(frame).to_numpy(), out.to_numpy())


def test_output_indices(frame):
    encoders = [
        ("x", "passthrough", ["a"]),
        ("gone", "drop", ["b"]),
        ("y", "passthrough", ["c", "d"]),
        ("none", StandardScaler(), []),
    ]
    fz = MultimodalFuser(encoders).fit(frame)
    assert fz.output_indices_ == {
        "x": slice(0, 1),
        "gone": slice(0, 0),
        "y": slice(1, 3),
        "none": slice(0, 0),
    }
    assert fz.named_encoders_.gone == "drop"
    # An empty selection is skipped: its encoder stays unfitted, as ColumnTransformer.
    assert not hasattr(fz.named_encoders_.none, "mean_")
    fz = MultimodalFuser(encoders, fusion="sum", projection=1).fit(frame)
    assert fz.output_indices_["y"] == slice(0, 1) == fz.output_indices_["x"]


# -- composition --------------------------------------------------------------------------
def test_nested_params_and_clones(frame):
    scaler = StandardScaler()
    encoders = [("x", scaler, ["a", "b"]), ("y", MinMaxScaler(), ["c"])]
    given = list(encoders)
    fz = MultimodalFuser(encoders)
    params = fz.get_params()
    assert params["x"] is scaler and params["x__with_mean"] is True
    pipe = make_pipeline(fz, SVC()).set_params(
        multimodalfuser__x__with_mean=False, multimodalfuser__fusion="tensor"
    )
    assert scaler.with_mean is False and fz.fusion == "tensor"
    fz.set_params(fusion="concat").fit(frame)
    # The user's list and encoders are left alone; fitted clones are exposed.
    assert fz.encoders is encoders and encoders == given
    assert not hasattr(scaler, "mean_")
    assert fz.named_encoders_.x is not scaler and hasattr(fz["x"], "mean_")
    assert fz.encoders_[0][1] is fz["x"]
    assert [c for _, _, c in fz.encoders_] == [["a", "b"], ["c"]]
    fz.set_params(y="drop")
    assert encoders == given and fz.encoders[1] == ("y", "drop", ["c"])
    assert pipe.fit(frame, [0, 1] * 6).predict(frame).shape == (12,)
    with pytest.raises(KeyError, match="'z' is not an encoder name"):
        fz["z"]
    with pytest.raises(TypeError, match="subscriptable after it is fitted"):
        MultimodalFuser(encoders)["x"]


def test_fit_transform_encodes_each_column_once_and_passes_y(frame):
    fz = MultimodalFuser([("r", Recorder(), ["a", "b"])], normalize=None)
    y = np.arange(12)
    out = fz.fit_transform(frame, y)
    assert_allclose(out, 2 * frame[["a", "b"]].to_numpy())
    assert fz["r"].fit_calls_ == 1 and fz["r"].transform_calls_ == 1
    assert_array_equal(fz["r"].y_, y)


def test_fit_transform_equals_fit_then_transform(frame):
    fz = fuser(fusion="tensor", missing="indicator")
    assert_allclose(fz.fit_transform(frame), fz.fit(frame).transform(frame))


# Starting the worker processes (each imports torch) takes seconds.
@pytest.mark.slow
def test_parallel_encoders_give_the_same_result(frame):
    serial = fuser(fusion="mean", projection=1).fit(frame)
    parallel = fuser(fusion="mean", projection=1, n_jobs=2).fit(frame)
    assert_allclose(parallel.transform(frame), serial.transform(frame))
    assert_allclose(parallel.fit_transform(frame), serial.transform(frame))


def test_verbose_reports_each_encoder(frame, capsys):
    fuser(verbose=True).fit(frame)
    out = capsys.readouterr().out
    assert "[MultimodalFuser]" in out
    assert "(1 of 2) Processing x" in out and "(2 of 2) Processing y" in out
    fuser().fit(frame)
    assert capsys.readouterr().out == ""


def test_make_fuser(frame):
    fz = make_fuser(
        (StandardScaler(), ["a"]), ("passthrough", ["b"]), fusion="sum", missing="zero"
    )
    assert [name for name, _, _ in fz.encoders] == ["standardscaler", "passthrough"]
    assert fz.fusion == "sum" and fz.missing == "zero"
    assert fz.fit_transform(frame).shape == (12, 1)
    with pytest.raises(ValueError, match="at least one"):
        make_fuser()


# -- missing modalities --------------------------------------------------------------------
@pytest.fixture
def holes(frame):
    """``frame`` with modality x missing in rows r1 and r4."""
    frame = frame.copy()
    frame.loc[["r1", "r4"], ["a", "b"]] = np.nan
    return frame


def test_missing_error_names_the_modality_and_rows(frame, holes):
    with pytest.raises(
        ValueError,
        match=r"modality 'x' is missing \(NaN features\) in 2 row\(s\): 'r1', 'r4'",
    ):
        fuser().fit(holes)
    fz = fuser().fit(frame)
    with pytest.raises(ValueError, match=r"in 2 row\(s\): 'r1', 'r4'\. Set missing="):
        fz.transform(holes)
    many = frame.copy()
    many["a"] = np.nan
    many.loc["r0", "a"] = 1.0
    with pytest.raises(ValueError, match=r"in 11 row\(s\): 'r1', .*'r10', \.\.\."):
        fz.transform(many)


def test_missing_zero_mean_indicator_by_hand(holes):
    present = holes[["a", "b"]].dropna().to_numpy()
    rows = holes.index.isin(["r1", "r4"])
    zero = fuser(missing="zero", normalize=None).fit_transform(holes)
    assert_allclose(zero[rows, :2], 0.0)
    mean = fuser(missing="mean", normalize=None).fit_transform(holes)
    assert_allclose(mean[rows, :2], [present.mean(0)] * 2)
    assert_allclose(mean[~rows], holes[~rows].to_numpy())
    fz = fuser(missing="indicator", normalize=None)
    indicator = fz.fit_transform(holes)
    assert indicator.shape == (12, 6)
    assert_allclose(indicator[:, :4], mean)
    assert_array_equal(indicator[:, 4], rows)
    assert_array_equal(indicator[:, 5], 0)
    # A fuser fitted without holes fills with its training mean at transform.
    clean = holes.fillna(0.0)
    fz = fuser(missing="mean", normalize=None).fit(clean)
    assert_allclose(fz.transform(holes)[rows, :2], [clean[["a", "b"]].mean()] * 2)


def test_modality_missing_everywhere_is_an_error(frame):
    frame = frame.assign(a=np.nan)
    with pytest.raises(ValueError, match="'x' is missing \\(NaN\\) in all 12 training"):
        fuser(missing="mean").fit(frame)


def test_skmm_encoder_nan_rows_with_each_policy():
    rng = np.random.default_rng(0)
    waves = [rng.normal(size=400).astype(np.float32) for _ in range(8)]
    waves[3] = None
    X = pd.DataFrame({"audio": pd.Series(waves, dtype=object), "n": rng.normal(size=8)})
    encoders = [
        ("snd", AudioFeatures(sample_rate=100, n_fft=16, n_mels=8, n_mfcc=4), "audio"),
        ("num", "passthrough", ["n"]),
    ]
    with pytest.raises(
        ValueError, match=r"'snd' is missing \(NaN features\) in 1 row\(s\): 3"
    ):
        MultimodalFuser(encoders).fit(X)
    for missing, width in [("zero", 9), ("mean", 9), ("indicator", 11)]:
        out = MultimodalFuser(encoders, missing=missing).fit_transform(X)
        assert out.shape == (8, width) and np.isfinite(out).all()


# -- sparse blocks --------------------------------------------------------------------------
def test_sparse_tfidf_block():
    titles = ["red shirt", "blue jeans", "green dress", "black belt", "tan shoes"]
    X = pd.DataFrame(
        {"title": titles, "price": [10, 40, 25, 35, 20.0], "stock": [1, 0, 3, 2, 5.0]}
    )
    encoders = [("txt", TfidfVectorizer(), "title"), ("num", "passthrough", ["price"])]
    tfidf = TfidfVectorizer().fit_transform(X["title"]).toarray()
    # 10 + 5 values stored of 55: sparse output, as ColumnTransformer would give.
    fz = MultimodalFuser(encoders, normalize=None)
    out = fz.fit_transform(X)
    assert fz.sparse_output_ and sp.issparse(out) and out.format == "csr"
    assert_allclose(out.toarray(), np.hstack([tfidf, X[["price"]].to_numpy()]))
    assert sp.issparse(fz.transform(X))
    # Standardising a sparse block scales it without centring, so it stays sparse.
    out = MultimodalFuser(encoders).fit_transform(X)
    assert sp.issparse(out)
    assert_allclose(out[:, :10].toarray(), tfidf / tfidf.std(0))
    # A denser result is dense: 10 + 3 * 5 values stored of 65.
    fz = MultimodalFuser(
        encoders + [("more", "passthrough", ["price", "stock"])], normalize=None
    )
    out = fz.fit_transform(X)
    assert not fz.sparse_output_ and isinstance(out, np.ndarray)
    assert_allclose(out[:, :10], tfidf)
    # Element-wise fusions and projection densify.
    out = MultimodalFuser(encoders, fusion="sum", projection=1).fit_transform(X)
    assert isinstance(out, np.ndarray) and out.shape == (5, 1)


# -- validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, error, match",
    [
        (
            {"encoders": []},
            ValueError,
            "non-empty list of \\(name, encoder, columns\\)",
        ),
        ({"encoders": [("x", StandardScaler())]}, ValueError, "triples"),
        (
            {"encoders": [("x", StandardScaler(), ["a"]), ("x", "drop", ["b"])]},
            ValueError,
            "Names provided are not unique",
        ),
        ({"encoders": [("x__1", StandardScaler(), ["a"])]}, ValueError, "__"),
        ({"encoders": [("fusion", StandardScaler(), ["a"])]}, ValueError, "conflict"),
        ({"encoders": [("x", "keep", ["a"])]}, ValueError, "'drop' and 'passthrough'"),
        ({"encoders": [("x", StandardScaler, ["a"])]}, TypeError, "estimator instance"),
        ({"encoders": [("x", PCA(), ["a"]), ("y", object(), ["b"])]}, TypeError, "'y'"),
        ({"encoders": [("x", "drop", ["a"])]}, ValueError, "nothing to fuse"),
        ({"fusion": "attention"}, ValueError, "'fusion' parameter"),
        ({"weights": {"z": 1.0}}, ValueError, "weights has names \\['z'\\]"),
        ({"weights": {"x": -1.0}}, ValueError, "finite number >= 0"),
        ({"fusion": "weighted"}, ValueError, "needs weights"),
        ({"fusion": "max", "weights": {"x": 2.0}}, ValueError, "takes no weights"),
        ({"projection": {"x": 0}}, ValueError, "int >= 1"),
        ({"projection": {"z": 1}}, ValueError, "projection has names \\['z'\\]"),
        ({"normalize": {"x": "l2"}}, ValueError, "'standard', 'block' or None"),
        ({"projection": 3}, ValueError, "projection=3 is larger than modality 'x'"),
        ({"fusion": "sum"}, ValueError, "widths \\{'x': 2, 'y': 1\\}; set projection"),
    ],
)
def test_invalid_parameters(frame, params, error, match):
    encoders = [("x", "passthrough", ["a", "b"]), ("y", "passthrough", ["c"])]
    with pytest.raises(error, match=match):
        MultimodalFuser(**{"encoders": encoders, **params}).fit(frame)


def test_bad_encoder_output_names_the_encoder(frame):
    frame = frame.assign(word=["w"] * 12)
    with pytest.raises(ValueError, match="the output of encoder 'raw' is not usable"):
        MultimodalFuser([("raw", "passthrough", ["word"])]).fit(frame)


def test_transform_checks_its_input(frame):
    with pytest.raises(NotFittedError):
        fuser().transform(frame)
    fz = fuser().fit(frame)
    with pytest.raises(ValueError, match="feature names should match"):
        fz.transform(frame[["d", "c", "b", "a"]])
    with pytest.raises(ValueError, match="Reshape your data"):
        fz.transform(frame["a"].to_numpy())


def test_failed_fit_leaves_the_fuser_as_it_was(frame, holes):
    fz = fuser(missing="error").fit(frame)
    before = fz.transform(frame)
    state = dict(vars(fz))
    with pytest.raises(ValueError, match="missing"):
        fz.fit(holes)
    assert vars(fz).keys() == state.keys()
    assert all(vars(fz)[k] is v for k, v in state.items())
    assert_allclose(fz.transform(frame), before)


def test_pickle_round_trip(frame):
    fz = fuser(fusion="tensor", projection=1, missing="indicator").fit(frame)
    again = pickle.loads(pickle.dumps(fz))
    assert_allclose(again.transform(frame), fz.transform(frame))


# -- real data: AV-digits ------------------------------------------------------------------
@pytest.fixture(scope="module")
def av_digits():
    bunch = load_av_digits(variant="hard")
    test = np.isin(bunch.speaker, TEST_SPEAKERS)
    X, y = bunch.data, bunch.target.to_numpy()
    return X[~test], X[test], y[~test], y[test], bunch.speaker[~test]


def av_encoders():
    return [
        ("img", ImageEncoder(torch.nn.Flatten(), max_epochs=0, device="cpu"), "image"),
        ("snd", AudioFeatures(sample_rate=8000), "audio"),
    ]


def av_pipeline(encoders=None, **params):
    fuser = MultimodalFuser(encoders or av_encoders(), **params)
    return Pipeline([("fuser", fuser), ("svc", SVC())])


@pytest.mark.slow
def test_av_digits_fusion_beats_each_modality(av_digits):
    X_train, X_test, y_train, y_test, _ = av_digits
    fused = av_pipeline().fit(X_train, y_train).score(X_test, y_test)
    single = {
        triple[0]: av_pipeline([triple]).fit(X_train, y_train).score(X_test, y_test)
        for triple in av_encoders()
    }
    # Raw pixels into an SVC, the plain image baseline, for comparison.
    pixels = np.stack(X_train["image"].to_list()).reshape(len(X_train), -1) / 255
    test_pixels = np.stack(X_test["image"].to_list()).reshape(len(X_test), -1) / 255
    single["pixels"] = SVC().fit(pixels, y_train).score(test_pixels, y_test)
    print(f"AV-digits fused concat: {fused:.4f}, single: {single}")
    assert fused >= max(single.values()) + 0.05, (fused, single)


@pytest.fixture(scope="module")
def av_encoded(av_digits):
    """The AV-digits blocks encoded once, as numeric columns, to sweep the fusions."""
    X_train, X_test, y_train, y_test, _ = av_digits
    train, test = [], []
    for name, encoder, column in av_encoders():
        encoder.fit(X_train[column])
        for blocks, X in ((train, X_train), (test, X_test)):
            block = encoder.transform(X[column])
            columns = [f"{name}{j}" for j in range(block.shape[1])]
            blocks.append(pd.DataFrame(block, columns=columns))
    return pd.concat(train, axis=1), pd.concat(test, axis=1), y_train, y_test


# Accuracy floors on the test speakers, about 5 points under what was measured:
# concat 0.80, sum and mean 0.64, weighted 0.66, product 0.28, max 0.56, tensor 0.67
# (image alone 0.675, audio alone 0.53, chance 0.1).
FLOORS = {
    ("concat", None): 0.75,
    ("sum", 32): 0.59,
    ("mean", 32): 0.59,
    ("weighted", 32): 0.6,
    ("product", 32): 0.2,
    ("max", 32): 0.5,
    ("tensor", 16): 0.62,
}


@pytest.mark.slow
@pytest.mark.parametrize("fusion, projection", list(FLOORS), ids=lambda p: str(p))
def test_av_digits_every_fusion(av_encoded, fusion, projection):
    X_train, X_test, y_train, y_test = av_encoded
    encoders = [
        (name, "passthrough", [c for c in X_train.columns if c.startswith(name)])
        for name in ("img", "snd")
    ]
    weights = {"img": 1.0, "snd": 0.5} if fusion == "weighted" else None
    pipe = av_pipeline(encoders, fusion=fusion, projection=projection, weights=weights)
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    print(f"AV-digits fusion={fusion} projection={projection}: {accuracy:.4f}")
    assert accuracy >= FLOORS[fusion, projection], accuracy


@pytest.mark.slow
def test_av_digits_missing_images(av_digits):
    X_train, X_test, y_train, y_test, _ = av_digits
    rng = np.random.default_rng(0)
    X_train, X_test = X_train.copy(), X_test.copy()
    for X in (X_train, X_test):
        holes = rng.random(len(X)) < 0.2
        X.loc[holes, "image"] = None
    with pytest.raises(ValueError, match=r"modality 'img' is missing .* row\(s\): \d+"):
        av_pipeline().fit(X_train, y_train)
    audio = av_pipeline([av_encoders()[1]]).fit(X_train, y_train).score(X_test, y_test)
    for missing in ("zero", "mean", "indicator"):
        accuracy = (
            av_pipeline(missing=missing).fit(X_train, y_train).score(X_test, y_test)
        )
        print(f"AV-digits, 20% images missing, missing={missing}: {accuracy:.4f}")
        assert accuracy >= max(audio + 0.1, 0.65), (missing, accuracy, audio)


@pytest.mark.slow
def test_grid_search_and_joblib_round_trip(av_digits, tmp_path):
    X_train, X_test, y_train, _, speakers = av_digits
    # Every other training row keeps the grid quick; folds are speakers.
    X, y, groups = X_train[::2], y_train[::2], speakers[::2]
    grid = GridSearchCV(
        av_pipeline(projection=16),
        {"fuser__fusion": ["concat", "mean"], "fuser__snd__n_mfcc": [13, 20]},
        cv=GroupKFold(2),
    ).fit(X, y, groups=groups)
    assert len(grid.cv_results_["params"]) == 4
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    best = grid.best_estimator_
    assert (
        best.named_steps["fuser"]["snd"].n_mfcc
        == grid.best_params_["fuser__snd__n_mfcc"]
    )
    joblib.dump(grid, tmp_path / "grid.joblib")
    loaded = joblib.load(tmp_path / "grid.joblib")
    assert_array_equal(loaded.predict(X_test), grid.predict(X_test))


# -- real data: fashion catalogue -----------------------------------------------------------
@pytest.fixture(scope="module")
def fashion(shared_data):
    """600 products (50 of each of the 12 subcategories with 50 or more), images as
    24x24 RGB arrays (decoded once), titles and subcategory."""
    from PIL import Image

    root = shared_data / "fashion"
    styles = pd.read_csv(root / "styles.csv")
    counts = styles["subCategory"].value_counts()
    styles = styles[styles["subCategory"].isin(counts[counts >= 50].index)]
    styles = styles.sample(frac=1, random_state=0)
    styles = styles[styles.groupby("subCategory").cumcount() < 50]
    images = np.empty(len(styles), dtype=object)
    for i, product in enumerate(styles["id"]):
        with Image.open(root / "images" / f"{product}.jpg") as image:
            images[i] = np.asarray(image.convert("RGB").resize((24, 24)))
    X = pd.DataFrame(
        {"image": images, "title": styles["productDisplayName"].to_numpy()}
    )
    return X, styles["subCategory"].to_numpy()


def fashion_image():
    return ImageEncoder(torch.nn.Flatten(), max_epochs=0, device="cpu")


def _cv_accuracy(pipe, X, y):
    scores = []
    for train, test in StratifiedKFold(4, shuffle=True, random_state=0).split(X, y):
        model = clone(pipe).fit(X.iloc[train], y[train])
        scores.append(model.score(X.iloc[test], y[test]))
    return float(np.mean(scores))


@pytest.mark.slow
def test_fashion_image_and_tfidf_titles(fashion):
    X, y = fashion
    image = ("img", fashion_image(), "image")
    text = ("txt", TfidfVectorizer(), "title")
    # TF-IDF keeps its own geometry; the image block gets unit total variance, half
    # the weight of the text.
    fused = make_pipeline(
        MultimodalFuser(
            [image, text],
            normalize={"img": "block", "txt": None},
            weights={"img": 0.5},
        ),
        SVC(),
    )
    scores = {
        "fused": _cv_accuracy(fused, X, y),
        "image": _cv_accuracy(make_pipeline(MultimodalFuser([image]), SVC()), X, y),
        "tfidf": _cv_accuracy(
            make_pipeline(MultimodalFuser([text], normalize=None), SVC()), X, y
        ),
    }
    print(f"fashion, image + TF-IDF titles (4-fold accuracy): {scores}")
    assert scores["fused"] > max(scores["image"], scores["tfidf"]), scores


@pytest.mark.slow
def test_fashion_image_and_text_encoder(fashion):
    X, y = fashion
    train, test = next(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    text_encoder = TextEncoder(
        embedding_dim=16, hidden_size=16, max_epochs=20, lr=1e-2, random_state=0
    )
    encoders = [
        ("img", fashion_image(), "image"),
        ("txt", text_encoder.set_params(device="cpu"), "title"),
    ]
    scores = {}
    for name, chosen in [("fused", encoders), ("image", encoders[:1])]:
        pipe = make_pipeline(MultimodalFuser(chosen, normalize="block"), SVC())
        scores[name] = pipe.fit(X.iloc[train], y[train]).score(X.iloc[test], y[test])
    pipe = make_pipeline(MultimodalFuser(encoders[1:]), SVC())
    scores["text"] = pipe.fit(X.iloc[train], y[train]).score(X.iloc[test], y[test])
    print(f"fashion, image + TextEncoder titles: {scores}")
    assert scores["fused"] > max(scores["image"], scores["text"]), scores
