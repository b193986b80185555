"""Tests of skmm.inspection: permutation importance of modalities, and its plot."""

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.inspection import modality_importance, plot_modality_importance

TRAIN_SPEAKERS = ["george", "jackson", "nicolas", "theo"]


class SameValues(ClassifierMixin, BaseEstimator):
    """Predicts 1 where columns a and b hold the same value."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return (X["a"].to_numpy() == X["b"].to_numpy()).astype(int)


def _signal_data(n=300, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = pd.DataFrame(
        {
            "strong": y + rng.normal(0, 0.3, n),
            "weak": y + rng.normal(0, 1.5, n),
            "noise": rng.normal(size=n),
        }
    )
    return X, y


def test_columns_of_a_modality_are_shuffled_together():
    X = pd.DataFrame({"a": np.arange(50), "b": np.arange(50)})
    y = np.ones(50, dtype=int)
    model = SameValues().fit(X, y)
    together = modality_importance(
        model, X, y, columns={"pair": ["a", "b"]}, n_repeats=4, random_state=0
    )
    np.testing.assert_array_equal(together.importances, [[0, 0, 0, 0]])
    apart = modality_importance(model, X, y, n_repeats=4, random_state=0)
    assert list(apart.modalities) == ["a", "b"]
    # Shuffling one column alone breaks almost every pair.
    assert (apart.importances > 0.8).all()


def test_ranks_modalities_and_noise_last():
    X, y = _signal_data()
    model = LateFusionClassifier(
        [(name, GaussianNB(), [name]) for name in X.columns]
    ).fit(X, y)
    result = modality_importance(model, X, y, n_repeats=5, random_state=0)
    assert result.importances.shape == (3, 5)
    assert result.baseline_score == pytest.approx(model.score(X, y))
    np.testing.assert_allclose(result.importances_mean, result.importances.mean(1))
    np.testing.assert_allclose(result.importances_std, result.importances.std(1))
    order = list(result.modalities[np.argsort(-result.importances_mean)])
    assert order == ["strong", "weak", "noise"]
    assert result.importances_mean[0] > 0.3
    assert abs(result.importances_mean[2]) < 0.05
    again = modality_importance(model, X, y, n_repeats=5, random_state=0)
    np.testing.assert_array_equal(again.importances, result.importances)


def test_reads_the_modalities_of_the_fitted_composite_by_name():
    """The columns come from the composite's modalities_, found by name in a
    DataFrame whose columns are in another order."""
    X, y = _signal_data()
    model = LateFusionClassifier(
        [("both", GaussianNB(), ["strong", "weak"]), ("noise", GaussianNB(), ["noise"])]
    ).fit(X, y)
    shuffled = X[["noise", "weak", "strong"]]
    result = modality_importance(model, shuffled, y, n_repeats=3, random_state=0)
    assert list(result.modalities) == ["both", "noise"]
    assert result.baseline_score == pytest.approx(model.score(X, y))
    assert result.importances_mean[0] > 0.3 > abs(result.importances_mean[1])


def test_arrays_lists_of_columns_and_scoring():
    X, y = _signal_data()
    X = X.to_numpy()
    model = LogisticRegression().fit(X, y)
    result = modality_importance(
        model, X, y, columns=[[0, 1], 2], scoring="f1_macro", random_state=0
    )
    assert list(result.modalities) == ["[0, 1]", "2"]
    assert result.importances_mean[0] > 0.3
    assert abs(result.importances_mean[1]) < 0.05
    assert result.baseline_score < 1


def test_works_on_a_fuser_pipeline_with_item_columns():
    """Cells hold arrays (one per row), as images and sounds do."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 120)
    image = np.empty(120, dtype=object)
    image[:] = [np.full((2, 2), label) + rng.normal(0, 0.4, (2, 2)) for label in y]
    noise = np.empty(120, dtype=object)
    noise[:] = list(rng.normal(size=(120, 3)))
    X = pd.DataFrame({"image": image, "noise": noise})

    def stack(column):
        return np.stack(list(column)).reshape(len(column), -1)

    fuser = MultimodalFuser(
        [
            ("img", FunctionTransformer(stack), "image"),
            ("noise", FunctionTransformer(stack), "noise"),
        ]
    )
    model = make_pipeline(fuser, LogisticRegression()).fit(X, y)
    result = modality_importance(model, X, y, n_repeats=3, random_state=0)
    assert list(result.modalities) == ["img", "noise"]  # the fuser's names
    assert result.importances_mean[0] > 0.3 > abs(result.importances_mean[1])
    # The input is not changed.
    np.testing.assert_array_equal(X["image"].iloc[0], image[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(columns={"x": "missing_column"}), "modality 'x': cannot select"),
        (dict(columns={"x": []}), "modality 'x' selects no column"),
        (dict(columns={}), "names no modality"),
        (dict(columns="strong"), "must be a dict"),
        (dict(n_repeats=0), "n_repeats must be an int >= 1"),
    ],
)
def test_invalid_arguments(kwargs, message):
    X, y = _signal_data(30)
    model = GaussianNB().fit(X, y)
    with pytest.raises(ValueError, match=message):
        modality_importance(model, X, y, **kwargs)


def test_plot(monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    X, y = _signal_data()
    model = GaussianNB().fit(X, y)
    result = modality_importance(model, X, y, n_repeats=3, random_state=0)
    fig, ax = plt.subplots()
    assert plot_modality_importance(result, ax=ax) is ax
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["noise", "weak", "strong"]  # the largest on top
    widths = [bar.get_width() for bar in ax.patches]
    np.testing.assert_allclose(widths, np.sort(result.importances_mean))
    plt.close(fig)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="needs matplotlib"):
        plot_modality_importance(result)


@pytest.mark.slow
def test_av_digits_noise_modality_ranks_last(shared_data):
    """Audio, images and a modality of pure noise, stacked; scored on new speakers.

    (With soft voting, the importances show that the over-confident audio model
    decides alone: shuffling the images changes nothing.)
    """
    from skmm.datasets import load_av_digits
    from skmm.encoders import AudioFeatures

    bunch = load_av_digits(variant="hard")
    train = np.flatnonzero(np.isin(bunch.speaker, TRAIN_SPEAKERS))[::3]
    test = np.flatnonzero(~np.isin(bunch.speaker, TRAIN_SPEAKERS))[::3]
    rows = np.concatenate([train, test])
    data = bunch.data.iloc[rows].reset_index(drop=True)
    mfcc = AudioFeatures(sample_rate=8000).fit(data["audio"])
    X = pd.DataFrame(
        mfcc.transform(data["audio"]), columns=mfcc.get_feature_names_out()
    )
    X["image"] = data["image"]
    noise = np.empty(len(X), dtype=object)
    noise[:] = list(np.random.RandomState(0).normal(size=(len(X), 16)))
    X["noise"] = noise
    y = bunch.target.to_numpy()[rows]

    def stack(column):
        return np.stack(list(column)).reshape(len(column), -1)

    audio = list(mfcc.get_feature_names_out())
    model = LateFusionClassifier(
        [
            (
                "audio",
                make_pipeline(
                    StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False)
                ),
                audio,
            ),
            (
                "image",
                make_pipeline(
                    FunctionTransformer(stack),
                    RandomForestClassifier(n_estimators=100, random_state=0),
                ),
                "image",
            ),
            (
                "noise",
                make_pipeline(
                    FunctionTransformer(stack),
                    RandomForestClassifier(n_estimators=50, random_state=0),
                ),
                "noise",
            ),
        ],
        voting="stacking",
        cv=LeaveOneGroupOut(),
        final_estimator=LogisticRegression(C=10.0, max_iter=1000),
    ).fit(X.iloc[: len(train)], y[: len(train)], groups=bunch.speaker[train])
    result = modality_importance(
        model,
        X.iloc[len(train) :],
        y[len(train) :],
        columns={"audio": audio, "image": "image", "noise": "noise"},
        n_repeats=3,
        random_state=0,
    )
    print(
        "\nAV-digits modality importance (accuracy drop): "
        + ", ".join(
            f"{name} {mean:.3f}±{std:.3f}"
            for name, mean, std in zip(
                result.modalities, result.importances_mean, result.importances_std
            )
        )
    )
    assert result.modalities[np.argmin(result.importances_mean)] == "noise"
    assert min(result.importances_mean[:2]) > 0.05
