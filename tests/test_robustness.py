"""Tests of skmm.inspection.robustness_curve, RobustnessDisplay and the scorer."""

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import cross_validate
from sklearn.naive_bayes import GaussianNB

from skmm.fusion import LateFusionClassifier
from skmm.inspection import (
    RobustnessDisplay,
    make_robustness_scorer,
    robustness_curve,
)


class Constant(ClassifierMixin, BaseEstimator):
    """Predicts 0: the probes below measure the corruption, not the model."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


def _two_views(n=300, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    X = pd.DataFrame({"a": y + rng.normal(0, 0.3, n), "b": y + rng.normal(0, 0.8, n)})
    return X, y


def _late(X, y):
    return LateFusionClassifier(
        [("a", GaussianNB(), ["a"]), ("b", GaussianNB(), ["b"])]
    ).fit(X, y)


def _items(arrays):
    column = np.empty(len(arrays), dtype=object)
    for row, item in enumerate(arrays):
        column[row] = item
    return column


def test_missing_rates_through_the_models_own_mechanism():
    X, y = _two_views()
    model = _late(X, y)
    curve = robustness_curve(
        model, X, y, modality="a", levels=[0, 0.3, 1], random_state=0
    )
    np.testing.assert_array_equal(curve.levels, [0, 0.3, 1])
    assert curve.scores[0] == model.score(X, y)
    # Fully missing: the other model decides alone.
    alone = GaussianNB().fit(X[["b"]], y).score(X[["b"]], y)
    assert curve.scores[2] == pytest.approx(alone)
    assert curve.scores[0] > curve.scores[1] > curve.scores[2]
    assert curve.modality == "a" and curve.corruption == "missing"
    expected_area = np.trapezoid(curve.scores, curve.levels)
    assert curve.area == pytest.approx(expected_area)

    def missing_fraction(estimator, data, y):
        return data["a"].isna().mean()

    probe = robustness_curve(
        model, X, y, modality="a", levels=[0, 0.1, 0.55, 1], scoring=missing_fraction
    )
    np.testing.assert_allclose(probe.scores, [0, 0.1, 0.55, 1])
    assert X["a"].notna().all()  # the input is not changed


def test_a_modality_of_several_columns_goes_missing_as_a_whole():
    X, y = _two_views()
    X["a2"] = X["a"] * 2

    def rows_partly_missing(estimator, data, y):
        missing = data[["a", "a2"]].isna()
        assert missing.any(axis=1).mean() == pytest.approx(0.4)
        return (missing.any(axis=1) & ~missing.all(axis=1)).mean()

    curve = robustness_curve(
        Constant().fit(X, y),
        X,
        y,
        modality="A",
        columns={"A": ["a", "a2"], "b": "b"},
        levels=[0.4],
        scoring=rows_partly_missing,
    )
    np.testing.assert_array_equal(curve.scores, [0])


def test_random_state_and_repeats():
    X, y = _two_views()
    model = _late(X, y)
    kwargs = dict(modality="a", levels=[0.5], n_repeats=4)
    first = robustness_curve(model, X, y, random_state=0, **kwargs)
    again = robustness_curve(model, X, y, random_state=0, **kwargs)
    other = robustness_curve(model, X, y, random_state=1, **kwargs)
    assert first.all_scores.shape == (1, 4)
    np.testing.assert_array_equal(first.all_scores, again.all_scores)
    assert not np.array_equal(first.all_scores, other.all_scores)
    assert len(np.unique(first.all_scores)) > 1  # each repeat draws again
    assert first.scores_std[0] == pytest.approx(first.all_scores.std())


def test_audio_noise_at_the_asked_snr():
    rng = np.random.RandomState(0)
    waves = [rng.normal(0, 0.1 * (i + 1), 4000).astype(np.float32) for i in range(6)]
    X = pd.DataFrame({"audio": _items(waves)})
    X.loc[2, "audio"] = None

    def snr(estimator, data, y):
        measured = []
        for clean, noisy in zip(waves, data["audio"]):
            if noisy is None:
                continue
            assert noisy.dtype == np.float32
            noise = noisy.astype(float) - clean
            measured.append(10 * np.log10(np.mean(clean**2.0) / np.mean(noise**2)))
        return np.mean(measured)

    curve = robustness_curve(
        Constant().fit(X, None),
        X,
        np.zeros(6),
        modality="audio",
        corruption="noise",
        levels=[20, 0, -5],
        scoring=snr,
        random_state=0,
    )
    assert curve.kind == "audio"  # from the items: 1-D arrays
    assert curve.level_name == "signal-to-noise ratio (dB)"
    np.testing.assert_allclose(curve.scores, [20, 0, -5], atol=0.15)


def test_image_noise_and_pixel_dropout():
    rng = np.random.RandomState(0)
    images = [np.full((20, 20), 128, dtype=np.uint8) for _ in range(5)]
    X = pd.DataFrame({"image": _items(images)})

    def pixel_std(estimator, data, y):
        items = np.stack(list(data["image"]))
        assert items.dtype == np.uint8
        return items.astype(float).std() / 255

    noisy = robustness_curve(
        Constant().fit(X, None),
        X,
        np.zeros(5),
        modality="image",
        corruption="noise",
        levels=[0, 0.1, 0.2],
        scoring=pixel_std,
        random_state=rng,
    )
    assert noisy.kind == "image"
    np.testing.assert_allclose(noisy.scores, [0, 0.1, 0.2], atol=0.01)

    def dropped(estimator, data, y):
        return (np.stack(list(data["image"])) == 0).mean()

    dropout = robustness_curve(
        Constant().fit(X, None),
        X,
        np.zeros(5),
        modality="image",
        corruption="dropout",
        levels=[0, 0.25, 1],
        scoring=dropped,
        random_state=0,
    )
    np.testing.assert_allclose(dropout.scores, [0, 0.25, 1], atol=0.03)


def test_word_dropout_and_numeric_noise():
    texts = ["one two three four five six seven eight nine ten"] * 20
    X = pd.DataFrame({"title": texts, "price": np.arange(20, dtype=float)})

    def kept(estimator, data, y):
        return np.mean([len(t.split()) for t in data["title"]]) / 10

    curve = robustness_curve(
        Constant().fit(X, None),
        X,
        np.zeros(20),
        modality="title",
        corruption="noise",
        levels=[0, 0.5, 1],
        scoring=kept,
        random_state=0,
    )
    assert curve.kind == "text"
    np.testing.assert_allclose(curve.scores, [1, 0.5, 0], atol=0.06)

    def noise_std(estimator, data, y):
        return np.std(data["price"] - np.arange(20)) / np.arange(20).std()

    curve = robustness_curve(
        Constant().fit(X, None),
        X,
        np.zeros(20),
        modality="price",
        corruption="noise",
        levels=[0, 1, 3],
        scoring=noise_std,
        random_state=0,
    )
    assert curve.kind == "numeric"
    np.testing.assert_allclose(curve.scores, [0, 1, 3], rtol=0.25)


def test_callable_corruption():
    X, y = _two_views()
    model = _late(X, y)
    calls = []

    def flip(values, level, rng):
        calls.append(level)
        return np.where(rng.random(len(values)) < level, 1 - values, values)

    curve = robustness_curve(
        model, X, y, modality="a", corruption=flip, levels=[0, 1], random_state=0
    )
    assert calls == [0, 1]
    assert curve.corruption == "custom" and curve.level_name == "flip"
    flipped = X.assign(a=1 - X["a"])
    assert curve.scores[1] == pytest.approx(model.score(flipped, y))


def test_paths_are_refused():
    X = pd.DataFrame({"image": ["a.png", "b.png"], "x": [1.0, 2.0]})
    # A file name of an image is an image, not a text to drop words from.
    with pytest.raises(TypeError, match="column 'image', row 0: 'noise' on image"):
        robustness_curve(
            Constant().fit(X, None), X, [0, 0], modality="image", corruption="noise"
        )
    X = pd.DataFrame({"x": [1.0, 2.0], "thing": [object(), object()]})
    with pytest.raises(ValueError, match="cannot tell the kind of modality 'thing'"):
        robustness_curve(
            Constant().fit(X, None), X, [0, 0], modality="thing", corruption="noise"
        )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(modality="c"), ValueError, r"modality 'c' is not one of .*\['a', 'b'\]"),
        (dict(modality="a", corruption="blur"), ValueError, r"rng\); got 'blur'"),
        (dict(modality="a", levels=[0, 2]), ValueError, "are rates in \\[0, 1\\]"),
        (dict(modality="a", levels=[]), ValueError, "non-empty 1-D"),
        (dict(modality="a", n_repeats=0), ValueError, "n_repeats must be an int"),
        (
            dict(modality="a", corruption=lambda v, level, rng: v),
            ValueError,
            "levels are required with a callable",
        ),
        (
            dict(modality="a", corruption=lambda v, level, rng: v[:3], levels=[1]),
            ValueError,
            "returned an array of shape \\(3,\\) for column 'a'",
        ),
        (dict(modality="a", corruption="noise", kind="video"), ValueError, "kind"),
        (
            dict(modality="a", corruption="noise", levels=[-1]),
            ValueError,
            "standard deviations >= 0",
        ),
    ],
)
def test_invalid_arguments(kwargs, error, message):
    X, y = _two_views(30)
    with pytest.raises(error, match=message):
        robustness_curve(_late(X, y), X, y, **kwargs)


def test_scorer_in_cross_validate():
    X, y = _two_views()
    scorer = make_robustness_scorer("a", levels=[0, 0.5, 1], random_state=0)
    assert "make_robustness_scorer(modality='a'" in repr(scorer)
    model = _late(X, y)
    expected = robustness_curve(
        model, X, y, modality="a", levels=[0, 0.5, 1], random_state=0
    ).area
    assert scorer(model, X, y) == expected
    cv = cross_validate(
        LateFusionClassifier([("a", GaussianNB(), ["a"]), ("b", GaussianNB(), ["b"])]),
        X,
        y,
        cv=3,
        scoring={"accuracy": "accuracy", "robust": scorer},
    )
    assert (cv["test_robust"] < cv["test_accuracy"] - 0.05).all()
    assert (cv["test_robust"] > 0.75).all()  # measured 0.84-0.86
    with pytest.raises(ValueError, match="does not take sample_weight"):
        scorer(model, X, y, sample_weight=np.ones(len(y)))


def test_display(monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    X, y = _two_views()
    model = _late(X, y)
    fig, ax = plt.subplots()
    display = RobustnessDisplay.from_estimator(
        model, X, y, modality="a", levels=[0, 0.5, 1], random_state=0, ax=ax
    )
    curve = robustness_curve(
        model, X, y, modality="a", levels=[0, 0.5, 1], random_state=0
    )
    np.testing.assert_array_equal(display.levels, curve.levels)
    np.testing.assert_array_equal(display.scores, curve.scores)
    np.testing.assert_array_equal(display.line_.get_ydata(), curve.scores)
    assert display.ax_ is ax and display.figure_ is fig
    assert ax.get_xlabel() == "fraction of rows with the modality missing"
    assert ax.get_title() == "Robustness to corrupting 'a'"
    RobustnessDisplay.from_estimator(
        model, X, y, modality="b", levels=[0, 1], name="without b", ax=ax
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["LateFusionClassifier", "without b"]
    assert ax.get_title() == "Robustness curves"  # two modalities on one axes
    plt.close(fig)
    # Decreasing levels (SNR in dB) are drawn from clean (left) to corrupted.
    display = RobustnessDisplay(levels=[30, 10, 0], scores=[0.9, 0.8, 0.5])
    display.plot()
    display.plot(ax=display.ax_)
    assert display.ax_.xaxis_inverted()
    plt.close("all")
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="RobustnessDisplay.plot needs matplotlib"):
        display.plot()
