"""Tests of skmm.inspection.modality_shapley and its plots.

The references here are written independently of the implementation: Shapley
values by averaging marginal contributions over every order of the modalities
(not the subset weights), absent modalities made missing by the test's own code.
"""

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skmm.fusion import LateFusionClassifier, LateFusionRegressor, MultimodalFuser
from skmm.inspection import (
    modality_shapley,
    plot_modality_shapley,
    plot_modality_waterfall,
)

TRAIN_SPEAKERS = ["george", "jackson", "nicolas", "theo"]


class GameRegressor(RegressorMixin, BaseEstimator):
    """Output a known function of which columns are present (not NaN) in each row.

    ``f(row) = table[mask] + sum over present columns i of x_i * slopes[mask, i]``,
    where ``mask`` has bit ``i`` set when column ``i`` is present: any game over
    the columns, and one that also depends on the row's values.
    """

    def __init__(self, table, slopes=None):
        self.table = table
        self.slopes = slopes

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        present = ~np.isnan(X)
        mask = present @ (1 << np.arange(X.shape[1]))
        out = np.asarray(self.table, dtype=float)[mask]
        if self.slopes is not None:
            slopes = np.asarray(self.slopes, dtype=float)[mask]
            out = out + np.where(present, X * slopes, 0).sum(axis=1)
        return out


def _without(X, absent):
    """X with the columns named in ``absent`` missing (None, or NaN if numeric)."""
    X = X.copy()
    for column in absent:
        numeric = X[column].dtype.kind in "fiu"
        X[column] = np.nan if numeric else pd.Series([None] * len(X), dtype=object)
    return X


def _brute_force(predict, X, names):
    """Shapley values by averaging marginal contributions over all orders."""
    cache = {}

    def value(present):
        key = frozenset(present)
        if key not in cache:
            cache[key] = np.asarray(predict(_without(X, set(names) - key)), float)
        return cache[key]

    orders = list(itertools.permutations(names))
    phi = {name: 0.0 for name in names}
    for order in orders:
        before = []
        for name in order:
            phi[name] = phi[name] + (value(before + [name]) - value(before)) / len(
                orders
            )
            before.append(name)
    return np.stack([phi[name] for name in names], axis=1), value


def _game_data(n=40, m=3, seed=0):
    rng = np.random.RandomState(seed)
    X = pd.DataFrame(rng.normal(size=(n, m)), columns=[f"c{i}" for i in range(m)])
    table = rng.normal(size=2**m)
    slopes = rng.normal(size=(2**m, m))
    return X, GameRegressor(table, slopes).fit(X)


def _signal_data(n=400, seed=0, n_noise=5, spread=0.5):
    """One modality (5 columns) decides y; another (``n_noise`` columns) is noise."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    signal = y[:, None] + rng.normal(0, spread, (n, 5))
    noise = rng.normal(size=(n, n_noise))
    X = pd.DataFrame(
        np.hstack([signal, noise]),
        columns=[f"s{i}" for i in range(5)] + [f"n{i}" for i in range(n_noise)],
    )
    return X, y


def _blocks_fuser(X):
    signal = [c for c in X.columns if c.startswith("s")]
    noise = [c for c in X.columns if c.startswith("n")]
    return MultimodalFuser(
        [("signal", "passthrough", signal), ("noise", "passthrough", noise)],
        missing="mean",
    )


def _shares(result):
    """Each modality's share of the total mean |value| (summed over outputs)."""
    totals = result.mean_abs_values.reshape(len(result.modalities), -1).sum(axis=1)
    return totals / totals.sum()


def test_import_does_not_load_torch_or_matplotlib():
    code = (
        "import sys, skmm.inspection; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("m", [2, 3])
def test_equals_brute_force_on_a_game(m):
    X, model = _game_data(m=m)
    result = modality_shapley(model, X)
    expected, value = _brute_force(model.predict, X, list(X.columns))
    assert list(result.modalities) == list(X.columns)
    assert result.values.shape == (len(X), m)
    np.testing.assert_allclose(result.values, expected, atol=1e-6)
    np.testing.assert_allclose(result.base_values, value([]), atol=1e-12)
    np.testing.assert_allclose(result.full_values, model.predict(X), atol=1e-12)
    np.testing.assert_allclose(
        result.mean_abs_values, np.abs(expected).mean(axis=0), atol=1e-6
    )


@pytest.mark.parametrize("m", [2, 3])
def test_equals_brute_force_on_late_fusion_probabilities(m):
    """Absent modalities are the model's own missing cells (soft votes skipped)."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 150)
    X = pd.DataFrame(
        {f"m{i}": y + rng.normal(0, 0.5 + i, 150) for i in range(m)}, dtype=float
    )
    model = LateFusionClassifier(
        [(name, GaussianNB(), [name]) for name in X.columns]
    ).fit(X, y)
    with pytest.warns(UserWarning, match="every modality missing"):
        expected, _ = _brute_force(model.predict_proba, X, list(X.columns))
    result = modality_shapley(model, X)
    assert result.values.shape == (150, m, 3)
    np.testing.assert_array_equal(result.output_names, model.classes_)
    np.testing.assert_allclose(result.values, expected, atol=1e-6)
    # With no modality, the model falls back on the class frequencies.
    np.testing.assert_allclose(
        result.base_values, np.tile(np.bincount(y) / 150, (150, 1)), atol=1e-12
    )


def test_efficiency_for_every_row_and_output():
    X, y = _signal_data()
    for model in [
        make_pipeline(_blocks_fuser(X), LogisticRegression()),
        LateFusionClassifier(
            [
                ("signal", GaussianNB(), [f"s{i}" for i in range(5)]),
                ("noise", GaussianNB(), [f"n{i}" for i in range(5)]),
            ],
            voting="stacking",
        ),
    ]:
        model.fit(X, y)
        result = modality_shapley(model, X, interactions=True)
        total = result.base_values + result.values.sum(axis=1)
        np.testing.assert_allclose(total, model.predict_proba(X), atol=1e-6)
        np.testing.assert_allclose(
            result.interactions.sum(axis=2), result.values, atol=1e-9
        )
        np.testing.assert_allclose(
            result.interactions, np.swapaxes(result.interactions, 1, 2), atol=1e-12
        )


def test_regressors_and_searches_give_their_modalities():
    X, y = _signal_data()
    signal, noise = [f"s{i}" for i in range(5)], [f"n{i}" for i in range(5)]
    regressor = LateFusionRegressor(
        [("signal", Ridge(), signal), ("noise", Ridge(), noise)], voting="stacking"
    ).fit(X, y)
    result = modality_shapley(regressor, X)
    assert result.values.shape == (len(X), 2) and result.output_names is None
    total = result.base_values + result.values.sum(axis=1)
    np.testing.assert_allclose(total, regressor.predict(X), atol=1e-6)
    # With no modality, the training mean of y.
    np.testing.assert_allclose(result.base_values, y.mean())
    search = GridSearchCV(
        make_pipeline(_blocks_fuser(X), LogisticRegression()),
        {"logisticregression__C": [0.1, 1.0]},
        cv=2,
    ).fit(X, y)
    result = modality_shapley(search, X)
    assert list(result.modalities) == ["signal", "noise"]
    total = result.base_values + result.values.sum(axis=1)
    np.testing.assert_allclose(total, search.predict_proba(X), atol=1e-6)


def test_symmetry_and_dummy():
    # Columns a and b play the same role (the output counts how many are present,
    # and they hold the same values); c never changes the output.
    count = np.array([(mask & 1) + (mask >> 1 & 1) for mask in range(8)])
    table = 0.5 + count**2  # a non-additive game
    slopes = np.zeros((8, 3))
    slopes[:, :2] = (count > 0)[:, None]
    rng = np.random.RandomState(1)
    shared = rng.normal(size=30)
    X = pd.DataFrame({"a": shared, "b": shared, "c": rng.normal(size=30)})
    model = GameRegressor(table, slopes).fit(X)
    result = modality_shapley(model, X, interactions=True)
    np.testing.assert_allclose(result.values[:, 0], result.values[:, 1], atol=1e-12)
    np.testing.assert_allclose(result.values[:, 2], 0, atol=1e-12)
    np.testing.assert_allclose(result.interactions[:, 2], 0, atol=1e-12)
    assert np.abs(result.values[:, 0]).mean() > 1  # not trivially zero: 2.1


def test_a_modality_missing_in_a_row_gets_zero_in_that_row():
    X, model = _game_data(m=3)
    X.loc[[3, 7], "c1"] = np.nan
    result = modality_shapley(model, X)
    np.testing.assert_allclose(result.values[[3, 7], 1], 0, atol=1e-12)
    assert (np.abs(result.values[:, 1]) > 1e-9).sum() == len(X) - 2


def test_interactions():
    # The AND game: the output is 1 only with both modalities.
    X = pd.DataFrame({"a": np.ones(5), "b": np.ones(5)})
    result = modality_shapley(GameRegressor([0, 0, 0, 1]).fit(X), X, interactions=True)
    np.testing.assert_allclose(result.values, 0.5)
    np.testing.assert_allclose(result.interactions, [[[0, 0.5], [0.5, 0]]] * 5)
    # M = 3: half the interaction index of i and j is half the difference between
    # i's Shapley value in the game without j where j is always present and where
    # it is always absent.
    X, model = _game_data(m=3)
    result = modality_shapley(model, X, interactions=True)
    names = list(X.columns)
    for i, j in itertools.permutations(range(3), 2):
        rest = [name for k, name in enumerate(names) if k != j]
        with_j, _ = _brute_force(
            lambda data, j=j: model.predict(data.assign(**{names[j]: X[names[j]]})),
            X,
            rest,
        )
        without_j, _ = _brute_force(
            lambda data, j=j: model.predict(data.assign(**{names[j]: np.nan})), X, rest
        )
        expected = (with_j - without_j)[:, rest.index(names[i])] / 2
        np.testing.assert_allclose(result.interactions[:, i, j], expected, atol=1e-9)


def test_ground_truth_signal_and_noise_modalities():
    X, y = _signal_data()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = make_pipeline(_blocks_fuser(X), LogisticRegression()).fit(X_train, y_train)
    result = modality_shapley(model, X_test)
    shares = _shares(result)
    assert list(result.modalities) == ["signal", "noise"]
    assert shares[0] > 0.97  # measured 0.991
    assert shares[1] < 0.03  # measured 0.009
    scored = modality_shapley(model, X_test, y_test, scoring="accuracy")
    assert scored.values.shape == (2,)
    assert scored.full_values == pytest.approx(model.score(X_test, y_test))
    assert scored.base_values + scored.values.sum() == pytest.approx(scored.full_values)
    assert scored.values[0] > 0.6  # measured 0.69 (from 0.29 with no modality)
    assert abs(scored.values[1]) < 0.02  # measured 0.000


def test_a_model_that_overfits_the_noise_shows_it():
    """A forest memorises its training rows through the noise columns too."""
    X, y = _signal_data(n_noise=20, spread=2.0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = make_pipeline(
        _blocks_fuser(X), RandomForestClassifier(n_estimators=100, random_state=0)
    ).fit(X_train, y_train)
    on_train = modality_shapley(model, X_train, y_train, scoring="accuracy")
    on_test = modality_shapley(model, X_test, y_test, scoring="accuracy")
    # The noise brings training accuracy (1.0 in all), and none on new rows.
    assert on_train.values[1] > 0.2  # measured 0.287
    assert on_test.values[1] < 0.02  # measured -0.05
    assert on_test.values[0] > 0.25  # measured 0.35 (test accuracy 0.59)
    train_share = _shares(modality_shapley(model, X_train))[1]
    test_share = _shares(modality_shapley(model, X_test))[1]
    assert train_share > test_share + 0.07  # measured 0.392 and 0.279


def test_baseline_mean_and_background_for_a_model_that_needs_every_column():
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
    y = X @ [1.0, -2.0, 0.5] + 3
    model = LinearRegression().fit(X, y)
    with pytest.raises(
        ValueError, match="cannot predict with modality 'a', 'b', 'c' missing"
    ):
        modality_shapley(model, X)
    # For a linear model, the value of a column is its coefficient times its
    # distance to the baseline.
    result = modality_shapley(model, X, baseline="mean")
    expected = (X - X.mean()).to_numpy() * model.coef_
    np.testing.assert_allclose(result.values, expected, atol=1e-9)
    background = X.iloc[:7]
    result = modality_shapley(model, X, baseline=background)
    expected = (X - background.mean()).to_numpy() * model.coef_
    np.testing.assert_allclose(result.values, expected, atol=1e-9)
    np.testing.assert_allclose(
        result.base_values, model.predict(background).mean(), atol=1e-9
    )


def test_baseline_mean_averages_array_items_in_their_dtype():
    images = np.empty(4, dtype=object)
    images[:] = [np.full((2, 2), v, dtype=np.uint8) for v in (0, 10, 20, 31)]
    X = pd.DataFrame({"image": images, "x": [1.0, 2.0, 3.0, 4.0]})
    seen = []

    def record(column):
        seen.append(list(column))
        return np.stack(list(column)).reshape(len(column), -1).astype(float)

    fuser = MultimodalFuser(
        [("img", FunctionTransformer(record), "image"), ("x", "passthrough", ["x"])]
    )
    model = make_pipeline(fuser, LinearRegression()).fit(X, [0, 1, 2, 3])
    seen.clear()
    modality_shapley(model, X, baseline="mean")
    means = [item for column in seen for item in column if item.max() == 15]
    assert means and all(item.dtype == np.uint8 for item in means)  # 61/4 -> 15
    text = pd.DataFrame({"t": ["a", "b"], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="cannot average column 't' \\(modality 'T'"):
        modality_shapley(model, text, baseline="mean", columns={"T": "t", "x": "x"})


def test_response_methods_and_output_shapes():
    X, y = _signal_data(n=120)
    model = make_pipeline(_blocks_fuser(X), LogisticRegression()).fit(X, y)
    decision = modality_shapley(model, X, response_method="decision_function")
    assert decision.values.shape == (120, 2, 3)
    total = decision.base_values + decision.values.sum(axis=1)
    np.testing.assert_allclose(total, model.decision_function(X), atol=1e-6)
    binary = y.clip(0, 1)
    model.fit(X, binary)
    decision = modality_shapley(model, X, response_method="decision_function")
    assert decision.values.shape == (120, 2) and decision.output_names is None
    predicted = modality_shapley(model, X, response_method="predict")
    total = predicted.base_values + predicted.values.sum(axis=1)
    np.testing.assert_allclose(total, model.predict(X), atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(baseline="median"), ValueError, "baseline must be 'missing', 'mean'"),
        (dict(baseline=np.zeros((2, 5))), ValueError, "must have the 3 columns of X"),
        (dict(baseline=np.zeros((0, 3))), ValueError, "background sample has no row"),
        (dict(response_method="proba"), ValueError, "response_method must be"),
        (dict(response_method="predict_proba"), TypeError, "no method 'predict_proba'"),
        (dict(scoring="r2"), ValueError, "scoring needs y"),
        (dict(interactions=1), TypeError, "interactions must be a bool"),
        (dict(columns={"x": "nope"}), ValueError, "modality 'x': cannot select"),
    ],
)
def test_invalid_arguments(kwargs, error, message):
    X, model = _game_data(m=3)
    with pytest.raises(error, match=message):
        modality_shapley(model, X, **kwargs)


def test_too_many_modalities():
    X = pd.DataFrame(np.zeros((3, 13)))
    model = GameRegressor(np.zeros(2**13)).fit(X)
    with pytest.raises(ValueError, match="at most 12 modalities .* got 13"):
        modality_shapley(model, X)


def test_network_modalities_and_efficiency():
    pytest.importorskip("torch")
    from skmm.nn import MultimodalNetClassifier

    X, y = _signal_data(n=200)
    net = MultimodalNetClassifier(
        [
            ("signal", "passthrough", [f"s{i}" for i in range(5)]),
            ("noise", "passthrough", [f"n{i}" for i in range(5)]),
        ],
        max_epochs=5,
        early_stopping=False,
        random_state=0,
        device="cpu",
    ).fit(X, y)
    result = modality_shapley(net, X)
    assert list(result.modalities) == ["signal", "noise"]
    total = result.base_values + result.values.sum(axis=1)
    np.testing.assert_allclose(total, net.predict_proba(X), atol=1e-6)
    assert _shares(result)[0] > 0.7  # measured 0.85


def test_plots(monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    X, y = _signal_data(n=120)
    model = make_pipeline(_blocks_fuser(X), LogisticRegression()).fit(X, y)
    result = modality_shapley(model, X)
    fig, ax = plt.subplots()
    assert plot_modality_shapley(result, ax=ax) is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == ["noise", "signal"]
    widths = np.array([bar.get_width() for bar in ax.patches]).reshape(3, 2)
    np.testing.assert_allclose(widths, result.mean_abs_values[::-1].T)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    plt.close(fig)

    fig, ax = plt.subplots()
    plot_modality_waterfall(result, 5, output=2, ax=ax)
    ends = [bar.get_x() + bar.get_width() for bar in ax.patches]
    assert ends[-1] == pytest.approx(result.full_values[5, 2])
    assert ax.patches[0].get_x() == pytest.approx(result.base_values[5, 2])
    plt.close(fig)
    with pytest.raises(ValueError, match="output 7 is not one of the classes"):
        plot_modality_waterfall(result, 0, output=7)
    with pytest.raises(IndexError, match="row 500 is out of range for 120"):
        plot_modality_waterfall(result, 500)
    scored = modality_shapley(model, X, y, scoring="accuracy")
    with pytest.raises(ValueError, match="these values explain a score"):
        plot_modality_waterfall(scored, 0)
    plt.close("all")
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="plot_modality_shapley needs matplotlib"):
        plot_modality_shapley(result)


def _stack(column):
    return np.stack(list(column)).reshape(len(column), -1) / 255.0


def _blank_images(frame, every):
    """Every ``every``-th row (from row 1) with an all-black image; and those rows."""
    frame = frame.reset_index(drop=True)
    images = frame["image"].to_numpy(copy=True)
    rows = np.arange(len(frame)) % every == 1
    for row in np.flatnonzero(rows):
        images[row] = np.zeros_like(images[row])
    frame["image"] = images
    return frame, rows


@pytest.mark.slow
@pytest.mark.parametrize(
    "voting, intact_share, blank_share",
    # measured: stacking 0.691 -> 0.977, product 0.772 -> 0.990
    [("stacking", 0.75, 0.93), ("product", 0.82, 0.95)],
)
def test_av_digits_audio_share_rises_where_the_image_is_blanked(
    voting, intact_share, blank_share
):
    """A third of the training images are blanked (a failing camera), so the
    model can learn that a black image says nothing; on new speakers, the audio's
    share of each prediction rises on the rows whose image is black.

    (Trained on intact images only, the models read a black image as evidence of
    some digit, and the audio share does not rise: Shapley values report what the
    model does, and blanking is not the same as missing.)
    """
    from skmm.datasets import load_av_digits
    from skmm.encoders import AudioFeatures

    bunch = load_av_digits(variant="hard")
    train = np.isin(bunch.speaker, TRAIN_SPEAKERS)
    y = bunch.target.to_numpy()
    X_train, _ = _blank_images(bunch.data[train], 3)
    X_test, blanked = _blank_images(bunch.data[~train], 2)
    model = LateFusionClassifier(
        [
            (
                "audio",
                make_pipeline(
                    AudioFeatures(sample_rate=8000),
                    StandardScaler(),
                    LogisticRegression(max_iter=1000),
                ),
                "audio",
            ),
            (
                "image",
                make_pipeline(
                    FunctionTransformer(_stack),
                    LogisticRegression(C=0.05, max_iter=500),
                ),
                "image",
            ),
        ],
        voting=voting,
    ).fit(X_train, y[train])
    result = modality_shapley(model, X_test)
    assert list(result.modalities) == ["audio", "image"]
    # Each row's audio share in the explanation of its predicted class.
    predicted = result.full_values.argmax(axis=1)
    values = np.abs(result.values[np.arange(len(X_test)), :, predicted])
    audio_share = values[:, 0] / values.sum(axis=1)
    intact, blank = audio_share[~blanked].mean(), audio_share[blanked].mean()
    print(f"\n{voting}: audio share {intact:.3f} (intact), {blank:.3f} (black images)")
    assert intact < intact_share
    assert blank > blank_share
    total = result.base_values + result.values.sum(axis=1)
    np.testing.assert_allclose(total, model.predict_proba(X_test), atol=1e-6)
