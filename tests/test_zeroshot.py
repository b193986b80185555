"""ZeroShotClassifier: prompts embedded by a fitted matcher, zero- and few-shot."""

import pickle
import re

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skmm.nn import MultimodalMatcher, ZeroShotClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLOURS = np.array(["blue", "green", "red"])
POINT = ["x0", "x1", "x2"]


def _pairs(n, seed):
    """Points around one corner per colour, with titles naming the colour.

    The title's colour word is ``colour_<name>``: the class name alone ("red") is
    a word the matcher never saw, so the template ``"colour_{}"`` is the one that
    makes a prompt it can read.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=n)
    pairs = pd.DataFrame(rng.normal(size=(n, 3)) + 3 * np.eye(3)[label], columns=POINT)
    pairs["title"] = [f"colour_{c} thing" for c in COLOURS[label]]
    return pairs, COLOURS[label]


@pytest.fixture(scope="module")
def matcher():
    pairs, _ = _pairs(600, 0)
    return MultimodalMatcher(
        [("point", "passthrough", POINT), ("title", CountVectorizer(), "title")],
        embedding_dim=8,
        batch_size=32,
        max_epochs=5,
        random_state=0,
        device="cpu",
    ).fit(pairs)


@pytest.fixture(scope="module")
def data():
    return _pairs(300, 1)


def _softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_zero_shot_scores_are_cosines_to_the_prompts(matcher, data):
    X, y = data
    clf = ZeroShotClassifier(matcher, classes=["red", "green", "blue"])
    clf.set_params(template="colour_{}").fit(X[POINT])
    assert clf.classes_.tolist() == ["blue", "green", "red"]
    assert clf.few_shot_ is None
    assert clf.class_count_.tolist() == [0, 0, 0]
    assert clf.temperature_ == matcher.temperature_
    prompts = matcher.embed(["colour_blue", "colour_green", "colour_red"], side="title")
    np.testing.assert_allclose(clf.prompt_embeddings_, prompts, atol=1e-6)
    np.testing.assert_allclose(clf.coef_, prompts, atol=1e-6)
    z = matcher.embed(X[POINT], side="point")
    scores = z @ prompts.T
    np.testing.assert_allclose(clf.decision_function(X), scores, atol=1e-5)
    np.testing.assert_allclose(
        clf.predict_proba(X), _softmax(scores / matcher.temperature_), atol=1e-5
    )
    assert (clf.predict(X) == COLOURS[scores.argmax(axis=1)]).all()
    assert clf.score(X, y) > 0.9  # measured 0.933
    # The bare class name is a word the matcher never saw: every prompt is the same,
    # every item gets the first class (blue, a third of them).
    bare = clone(clf).set_params(template="{}").fit(X[POINT])
    assert np.ptp(bare.prompt_embeddings_, axis=0).max() < 1e-6
    assert bare.score(X, y) < 0.45


def test_a_list_of_templates_averages_their_embeddings(matcher, data):
    X, _ = data
    clf = ZeroShotClassifier(
        matcher, classes=COLOURS, template=["colour_{}", "colour_{} thing", "{}"]
    ).fit(X)
    expected = np.stack(
        [
            _unit(
                matcher.embed([f"colour_{c}", f"colour_{c} thing", c], side="title")
                .astype(np.float64)
                .mean(axis=0, keepdims=True)
            )[0]
            for c in COLOURS
        ]
    )
    np.testing.assert_allclose(clf.prompt_embeddings_, expected, atol=1e-6)


def test_few_shot_centroid_adds_the_labelled_items_to_the_prompt(matcher, data):
    X, y = data
    rows = np.flatnonzero(y != "red")[:10]
    clf = ZeroShotClassifier(
        matcher,
        classes=COLOURS,
        template="{}",
        few_shot="centroid",
        prompt_weight=2.0,
    ).fit(X.iloc[rows], y[rows])
    assert clf.few_shot_ == "centroid"
    z = matcher.embed(X.iloc[rows], side="point").astype(np.float64)
    prompts = matcher.embed(list(COLOURS), side="title").astype(np.float64)
    for k, colour in enumerate(COLOURS):
        expected = 2.0 * prompts[k] + z[y[rows] == colour].sum(axis=0)
        np.testing.assert_allclose(clf.coef_[k], _unit(expected[None])[0], atol=1e-5)
    # Red has no labelled item: it stays zero-shot, its vector is its prompt.
    assert clf.class_count_.tolist() == [
        (y[rows] == "blue").sum(),
        (y[rows] == "green").sum(),
        0,
    ]
    np.testing.assert_allclose(clf.coef_[2], clf.prompt_embeddings_[2], atol=1e-6)
    # The uninformative prompts are rescued by a few labels (chance is 1/3; the
    # red items, with no label, fall to whichever class is closest).
    assert clf.score(X, y) > 0.55  # measured 0.593
    # sample_weight 2 is the same as the row twice.
    weights = np.where(np.arange(len(rows)) < 3, 2.0, 1.0)
    weighted = clone(clf).fit(X.iloc[rows], y[rows], sample_weight=weights)
    repeated = clone(clf).fit(X.iloc[np.r_[rows, rows[:3]]], y[np.r_[rows, rows[:3]]])
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-5)


def test_few_shot_linear_probe_starts_at_the_prompts(matcher, data):
    X, y = data
    rows = np.arange(30)
    probe = ZeroShotClassifier(
        matcher, classes=COLOURS, template="{}", few_shot="linear_probe", alpha=0.0
    ).fit(X.iloc[rows], y[rows])
    assert probe.few_shot_ == "linear_probe"
    assert probe.score(X, y) > 0.9  # measured 0.94, from prompts at chance
    # A strong pull keeps the weights at the prompts.
    held = clone(probe).set_params(alpha=1e6).fit(X.iloc[rows], y[rows])
    np.testing.assert_allclose(held.coef_, held.prompt_embeddings_, atol=1e-3)
    scores = matcher.embed(X, side="point") @ probe.coef_.T + probe.intercept_
    np.testing.assert_allclose(probe.decision_function(X), scores, atol=1e-5)


def test_few_shot_none_uses_the_labels_for_the_classes_only(matcher, data):
    X, y = data
    clf = ZeroShotClassifier(matcher, template="colour_{}", few_shot=None).fit(X, y)
    assert clf.few_shot_ is None
    np.testing.assert_allclose(clf.coef_, clf.prompt_embeddings_)
    assert clf.class_count_.tolist() == [np.sum(y == c) for c in COLOURS]


def test_binary_decision_function_is_the_difference_of_scores(matcher, data):
    X, y = data
    keep = y != "green"
    clf = ZeroShotClassifier(matcher, template="colour_{}", few_shot=None).fit(
        X[keep], y[keep]
    )
    scores = matcher.embed(X[keep], side="point") @ clf.coef_.T
    decision = clf.decision_function(X[keep])
    np.testing.assert_allclose(decision, scores[:, 1] - scores[:, 0], atol=1e-5)
    assert ((decision > 0) == (clf.predict(X[keep]) == "red")).all()
    np.testing.assert_allclose(
        clf.predict_proba(X[keep])[:, 1],
        1 / (1 + np.exp(-decision / matcher.temperature_)),
        atol=1e-5,
    )


def test_grid_search_chooses_the_template(matcher, data):
    X, y = data
    search = GridSearchCV(
        ZeroShotClassifier(matcher, few_shot=None),
        {"template": ["{}", "{} thing", "colour_{}", ["{}", "colour_{}"]]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"template": "colour_{}"}
    scores = search.cv_results_["mean_test_score"]
    # "{}" and "{} thing" give every class the same prompt: chance (measured 0.33);
    # the readable prompt is right on most items (measured 0.933); averaged with an
    # unreadable one it is diluted (measured 0.877).
    assert scores[2] > 0.9 and scores[0] < 0.45 and scores[1] < 0.45
    assert scores[3] < scores[2]
    # The clones of the search share the fitted matcher: nothing was refitted.
    assert search.best_estimator_.matcher is matcher


def test_pipeline_clone_pickle_and_frozen_matcher(matcher, data):
    X, y = data
    clf = ZeroShotClassifier(matcher, template="colour_{}", few_shot=None)
    assert clone(clf).matcher is matcher
    # The whole table (both sides' columns) goes in: the query side's are selected.
    pipe = make_pipeline(FunctionTransformer(), clf)
    assert cross_val_score(pipe, X, y, cv=3).min() > 0.85  # measured 0.90
    fitted = pipe.fit(X, y)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(
        loaded.predict_proba(X), fitted.predict_proba(X), atol=1e-6
    )
    frozen = ZeroShotClassifier(
        FrozenEstimator(matcher), template="colour_{}", few_shot=None
    ).fit(X, y)
    np.testing.assert_allclose(frozen.coef_, fitted[-1].coef_)


def test_fit_leaves_the_matcher_untouched(matcher, data):
    X, y = data
    before = joblib.hash(matcher)
    ZeroShotClassifier(matcher, template="colour_{}").fit(X, y)
    assert joblib.hash(matcher) == before


def test_errors(matcher, data):
    X, y = data
    unfitted = MultimodalMatcher(matcher.encoders)
    with pytest.raises(NotFittedError, match="needs a fitted MultimodalMatcher"):
        ZeroShotClassifier(unfitted, classes=COLOURS).fit(X)
    with pytest.raises(ValueError, match="Pass classes= for zero-shot, or labels y"):
        ZeroShotClassifier(matcher).fit(X)
    with pytest.raises(ValueError, match=re.escape("with '{}' where the class name")):
        ZeroShotClassifier(matcher, classes=COLOURS, template="a photo").fit(X)
    with pytest.raises(ValueError, match="template is an empty list"):
        ZeroShotClassifier(matcher, classes=COLOURS, template=[]).fit(X)
    with pytest.raises(ValueError, match=re.escape("classes has duplicates: ['red']")):
        ZeroShotClassifier(matcher, classes=["red", "blue", "red"]).fit(X)
    with pytest.raises(ValueError, match="classes has 1 class"):
        ZeroShotClassifier(matcher, classes=["red"]).fit(X)
    with pytest.raises(ValueError, match=re.escape("not in classes: ['green']")):
        ZeroShotClassifier(matcher, classes=["red", "blue"]).fit(X, y)
    with pytest.raises(ValueError, match="query='image' is not the name"):
        ZeroShotClassifier(matcher, classes=COLOURS, query="image").fit(X)
    with pytest.raises(ValueError, match="only one class is present"):
        ZeroShotClassifier(matcher).fit(X, np.full(len(X), "red"))
    with pytest.raises(ValueError, match="Unknown label type"):
        ZeroShotClassifier(matcher).fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="must be an instance of 'str'|'list'"):
        ZeroShotClassifier(matcher, classes=COLOURS, template=3).fit(X)
    with pytest.raises(
        ValueError, match="the items have 2 features, but the tower was fitted on 3"
    ):
        ZeroShotClassifier(matcher, classes=COLOURS).fit(X[POINT[:2]].to_numpy())
    clf = ZeroShotClassifier(matcher, classes=COLOURS).fit(X[POINT].to_numpy())
    with pytest.raises(ValueError, match="X has 2 features, but ZeroShotClassifier"):
        clf.predict(X[POINT[:2]].to_numpy())
    with pytest.raises(NotFittedError):
        ZeroShotClassifier(matcher, classes=COLOURS).predict(X)


# -- real data ---------------------------------------------------------------------------
@pytest.mark.slow
def test_fashion_zero_and_few_shot(shared_data):
    """The setting of plot_zero_shot.py: a matcher fitted on 2,000 photo/title pairs,
    then the 10 most common article types among the photos it never saw."""
    from sklearn.linear_model import LogisticRegression

    from skmm.encoders import ImageEncoder, TextEncoder

    folder = shared_data / "fashion"
    styles = pd.read_csv(folder / "styles.csv")
    items = pd.DataFrame(
        {
            "image": [str(folder / "images" / f"{i}.jpg") for i in styles["id"]],
            "title": styles["productDisplayName"],
            "article": styles["articleType"],
        }
    )
    order = np.random.default_rng(0).permutation(len(items))
    matcher = MultimodalMatcher(
        [
            ("image", ImageEncoder("cnn", image_size=32), "image"),
            ("title", TextEncoder("gru"), "title"),
        ],
        embedding_dim=64,
        batch_size=128,
        max_epochs=5,
        random_state=0,
        device="cpu",
    ).fit(items.iloc[order[:2000]][["image", "title"]])
    unseen = items.iloc[order[2000:]]
    unseen = unseen[unseen["article"].isin(items["article"].value_counts().index[:10])]
    photos, y = unseen["image"].reset_index(drop=True), unseen["article"].to_numpy()
    zero_shot = ZeroShotClassifier(matcher, classes=np.unique(y)).fit(photos[:1])
    # Measured 0.641 on the 621 photos, chance being 0.1 (the issue asks for 4x).
    assert zero_shot.score(photos, y) > 0.6

    z = matcher.embed(photos, side="image")
    few, probe, zero = [], [], []
    for draw in range(3):
        rng = np.random.default_rng(draw)
        labelled = np.concatenate(
            [rng.choice(np.flatnonzero(y == c), 5, replace=False) for c in np.unique(y)]
        )
        rest = np.setdiff1d(np.arange(len(y)), labelled)
        clf = ZeroShotClassifier(matcher).fit(photos[labelled], y[labelled])
        few.append(clf.score(photos[rest], y[rest]))
        lr = LogisticRegression().fit(z[labelled], y[labelled])
        probe.append(lr.score(z[rest], y[rest]))
        zero.append(zero_shot.score(photos[rest], y[rest]))
    # Measured (mean of the 3 draws): few-shot 0.678, LogisticRegression 0.621,
    # zero-shot 0.647 (58 s in all on 2 busy cores).
    assert np.mean(few) > np.mean(zero) + 0.01
    assert np.mean(few) > np.mean(probe) + 0.03
