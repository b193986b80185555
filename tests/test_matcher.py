"""Tests of MultimodalMatcher: contrastive two-tower matching and retrieval."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.encoders._backbones._scratch import small_cnn
from skmm.nn import EmbeddingIndex, MultimodalMatcher
from skmm.nn._contrastive import contrastive_loss, generated_negatives
from skmm.nn._retrieval import top_k

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the numeric-array path: two column groups, each with a tabular (MLP) tower ----------
def _numeric(**params):
    params = {
        "embedding_dim": 4,
        "batch_size": 16,
        "max_epochs": 1,
        "random_state": 0,
        "device": "cpu",
        **params,
    }
    return MultimodalMatcher(
        [("a", "passthrough", slice(0, 1)), ("b", "passthrough", slice(1, None))],
        **params,
    )


def _views(n, seed=0, noise=0.05):
    """Two views of one latent vector per row: 5 columns, then 4 columns."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    mix = np.random.default_rng(42)  # the same views for every seed
    a = latent @ mix.normal(size=(3, 5)) + noise * rng.normal(size=(n, 5))
    b = np.tanh(latent @ mix.normal(size=(3, 4))) + noise * rng.normal(size=(n, 4))
    return np.hstack([a, b])


def _views_matcher(**params):
    params = {
        "embedding_dim": 8,
        "batch_size": 32,
        "max_epochs": 20,
        "random_state": 0,
        "device": "cpu",
        **params,
    }
    return MultimodalMatcher(
        [("a", "passthrough", slice(0, 5)), ("b", "passthrough", slice(5, 9))],
        **params,
    )


@pytest.fixture(scope="module")
def fitted_views():
    X = _views(500)
    return _views_matcher().fit(X[:400]), X[400:]


def _with_negatives(X, seed=1):
    """The rows of X, then each row's first side with another row's second side."""
    shift = np.roll(np.arange(len(X)), 1 + seed)
    negatives = np.hstack([X[:, :5], X[shift, 5:]])
    return np.vstack([X, negatives]), np.r_[np.ones(len(X)), np.zeros(len(X))]


def test_learns_to_match_held_out_pairs(fitted_views):
    matcher, X_test = fitted_views
    pairs, y = _with_negatives(X_test)
    similarity = matcher.decision_function(pairs)
    assert similarity.shape == (len(pairs),)
    assert np.all(np.abs(similarity) <= 1 + 1e-6)
    assert roc_auc_score(y, similarity) > 0.95
    pred = matcher.predict(pairs)
    assert set(np.unique(pred)) == {0, 1}
    assert np.array_equal(pred, (similarity >= matcher.threshold_).astype(int))
    assert f1_score(y, pred) > 0.85
    assert matcher.score(pairs, y) == pytest.approx(f1_score(y, pred))
    # Without y, score pairs each row with another row's second side itself.
    assert matcher.score(X_test) > 0.85
    assert matcher.score(X_test) == matcher.score(X_test)


def test_fitted_attributes(fitted_views):
    matcher, _ = fitted_views
    assert matcher.n_iter_ <= 20
    assert len(matcher.loss_curve_) == len(matcher.validation_scores_)
    assert len(matcher.loss_curve_) == matcher.n_iter_
    # The loss falls from the one of guessing among the batch's 32 partners.
    assert matcher.loss_curve_[0] > matcher.loss_curve_[-1]
    assert matcher.best_validation_score_ == max(matcher.validation_scores_)
    assert matcher.best_validation_score_ > 0.9
    assert -1 <= matcher.threshold_ <= 1
    assert 0 < matcher.temperature_ < 1
    assert matcher.temperature_ != pytest.approx(0.07)  # it was learned
    assert list(matcher.classes_) == [0, 1]
    assert matcher.n_features_in_ == 9
    assert matcher.encoders_[1][2] == slice(5, 9)


def test_predict_proba_is_calibrated_and_monotone(fitted_views):
    matcher, X_test = fitted_views
    pairs, y = _with_negatives(X_test)
    proba = matcher.predict_proba(pairs)
    assert proba.shape == (len(pairs), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    order = np.argsort(matcher.decision_function(pairs))
    assert np.all(np.diff(proba[order, 1]) >= 0)
    # Calibrated on as many non-matching pairs as matching ones: the mean
    # probability of a match is about the share of matches.
    assert proba[:, 1].mean() == pytest.approx(0.5, abs=0.1)
    # Far better than the 0.25 of always saying 0.5.
    assert brier_score_loss(y, proba[:, 1]) < 0.15


def test_transform_gives_unit_embeddings_of_both_sides(fitted_views):
    matcher, X_test = fitted_views
    Z = matcher.transform(X_test)
    assert Z.shape == (len(X_test), 16)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z[:, :8], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(Z[:, 8:], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(
        (Z[:, :8] * Z[:, 8:]).sum(1), matcher.decision_function(X_test), atol=1e-6
    )
    names = matcher.get_feature_names_out()
    assert list(names[[0, 7, 8, 15]]) == [
        "a__embedding0",
        "a__embedding7",
        "b__embedding0",
        "b__embedding7",
    ]
    frame = (
        clone(matcher)
        .set_output(transform="pandas")
        .fit(_views(200))
        .transform(X_test[:5])
    )
    assert list(frame.columns) == list(names)


def test_kneighbors_retrieves_partners(fitted_views, record_measure):
    matcher, X_test = fitted_views
    a, b = X_test[:, :5], X_test[:, 5:]
    indices = matcher.kneighbors(a, b, n_neighbors=5)
    assert indices.shape == (len(X_test), 5)
    hits = (indices == np.arange(len(X_test))[:, None]).any(axis=1)
    # Among 100 candidates, chance is 0.05; measured 0.86.
    record_measure("partner in top 5 of 100, a to b", hits.mean(), 0.8)
    similarity, again = matcher.kneighbors(a, b, n_neighbors=5, return_similarity=True)
    assert np.array_equal(indices, again)
    assert np.all(np.diff(similarity, axis=1) <= 0)
    Z = matcher.transform(X_test)
    np.testing.assert_allclose(
        similarity[:, 0], (Z[:, :8] * Z[indices[:, 0], 8:]).sum(1), atol=1e-5
    )
    # The other direction: second-side items as queries.
    back = matcher.kneighbors(b, a, n_neighbors=5, query="b")
    hits = (back == np.arange(len(X_test))[:, None]).any(axis=1)
    # Measured 0.80.
    record_measure("partner in top 5 of 100, b to a", hits.mean(), 0.75)
    # Memory is bounded by batch_size query rows; the result does not depend on it.
    small = pickle.loads(pickle.dumps(matcher)).set_params(batch_size=7)
    assert np.array_equal(small.kneighbors(a, b, n_neighbors=5), indices)


def test_kneighbors_errors(fitted_views):
    matcher, X_test = fitted_views
    a, b = X_test[:, :5], X_test[:, 5:]
    with pytest.raises(ValueError, match=r"query='c' is not the name of an encoder"):
        matcher.kneighbors(a, b, query="c")
    with pytest.raises(ValueError, match="n_neighbors = 101, n_candidates = 100"):
        matcher.kneighbors(a, b, n_neighbors=101)
    with pytest.raises(ValueError, match="encoder 'b': the items have 5 features, but"):
        matcher.kneighbors(a, a)


def test_rows_labelled_0_are_extra_negatives():
    X = _views(300, seed=3)
    pairs, y = _with_negatives(X)
    matcher = _views_matcher(max_epochs=5).fit(pairs, y)
    assert list(matcher.classes_) == [0, 1]
    assert matcher.score(*_with_negatives(_views(100, seed=4))) > 0.8
    # Any two labels: the greater one is a match, as for scikit-learn's classifiers.
    labels = np.where(y == 1, "yes", "no")
    named = _views_matcher(max_epochs=5).fit(pairs, labels)
    assert list(named.classes_) == ["no", "yes"]
    assert set(named.predict(pairs[:50])) <= {"no", "yes"}
    np.testing.assert_allclose(
        named.decision_function(pairs), matcher.decision_function(pairs)
    )


@pytest.mark.parametrize(
    "y, message",
    [
        (np.arange(40) % 3, "Only binary classification is supported"),
        (np.linspace(0, 1, 40), "Unknown label type: "),
        (np.zeros(40), "y has the single class 0.0: the matcher needs"),
        (np.ones(30), "inconsistent numbers of samples"),
    ],
)
def test_bad_y(y, message):
    with pytest.raises(ValueError, match=message):
        _numeric().fit(_views(40), y)


def test_early_stopping_and_fixed_temperature():
    X = _views(200)
    free = _views_matcher(max_epochs=4, early_stopping=False, temperature=0.1).fit(X)
    assert free.n_iter_ == 4 == len(free.validation_scores_)
    assert free.best_validation_score_ == free.validation_scores_[-1]
    assert free.temperature_ == pytest.approx(0.1)
    stopped = _views_matcher(max_epochs=50, n_iter_no_change=1).fit(X)
    assert stopped.n_iter_ < 50
    best = int(np.argmax(stopped.validation_scores_))
    assert stopped.n_iter_ == best + 2  # one epoch without improvement, then stop


def test_same_seed_same_model_and_failed_fit_keeps_the_old_one():
    X = _views(200)
    first = _views_matcher(max_epochs=3).fit(X)
    second = _views_matcher(max_epochs=3).fit(X)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    before = first.decision_function(X)
    bad = X.copy()
    bad[7, 5:] = np.nan  # every value of side b: its item is missing
    with pytest.raises(ValueError, match=r"encoder 'b': row 7: the item is missing"):
        first.fit(bad)
    np.testing.assert_array_equal(first.decision_function(X), before)


def test_pickle_round_trip(fitted_views):
    matcher, X_test = fitted_views
    loaded = pickle.loads(pickle.dumps(matcher))
    np.testing.assert_array_equal(loaded.transform(X_test), matcher.transform(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), matcher.predict(X_test))
    assert loaded.threshold_ == matcher.threshold_


def test_similarities_do_not_depend_on_the_batches(fitted_views):
    matcher, X_test = fitted_views
    expected = matcher.decision_function(X_test)
    other = clone(matcher).set_params(batch_size=7)
    other.__dict__.update({k: v for k, v in vars(matcher).items() if k.endswith("_")})
    np.testing.assert_allclose(other.decision_function(X_test), expected, atol=1e-5)
    subset = np.arange(0, len(X_test), 3)
    np.testing.assert_allclose(
        matcher.decision_function(X_test[subset]), expected[subset], atol=1e-5
    )


def test_grid_search_without_y():
    X = _views(240)
    search = GridSearchCV(
        _views_matcher(max_epochs=3), {"embedding_dim": [2, 8]}, cv=2
    ).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores > 0) & (scores <= 1))
    assert search.best_params_ == {"embedding_dim": [2, 8][int(np.argmax(scores))]}
    assert search.best_estimator_.transform(X[:3]).shape == (
        3,
        2 * search.best_params_["embedding_dim"],
    )


def test_transformer_side():
    X = _views(200)
    matcher = MultimodalMatcher(
        [("a", StandardScaler(), slice(0, 5)), ("b", "passthrough", slice(5, 9))],
        embedding_dim=4,
        max_epochs=2,
        random_state=0,
        device="cpu",
    ).fit(X)
    assert matcher.named_encoders_["a"].transformer_.n_features_in_ == 5
    assert matcher.transform(X).shape == (200, 8)


@pytest.mark.parametrize(
    "encoders, error, message",
    [
        ([("a", "passthrough", [0])], ValueError, "list of two"),
        (("a", "passthrough", [0]), ValueError, "must be an instance of 'list'"),
        (
            [("a", "passthrough", [0]), ("b", "drop", [1])],
            ValueError,
            "encoder 'b': the only strings allowed in place of an encoder are "
            "'passthrough'",
        ),
        (
            [("a", "passthrough", [0]), ("a", "passthrough", [1])],
            ValueError,
            "Names provided are not unique",
        ),
        (
            [("a", "passthrough", [0]), ("b", "passthrough", [])],
            ValueError,
            "encoder 'b' selects no column",
        ),
    ],
)
def test_bad_encoders(encoders, error, message):
    with pytest.raises(error, match=message):
        MultimodalMatcher(encoders, device="cpu").fit(_views(20))


def test_too_few_pairs():
    with pytest.raises(ValueError, match="needs at least 4 matching pairs"):
        _numeric().fit(_views(3))
    with pytest.raises(ValueError, match="n_samples = 1"):
        _numeric().fit(_views(1))
    with pytest.raises(NotFittedError):
        _numeric().kneighbors(_views(3)[:, :1], _views(3)[:, 1:])


def test_generated_negatives_avoid_equal_items():
    groups_a = np.array([0, 1, 2, 3, 4, 5])
    groups_b = np.array([0, 0, 1, 1, 2, 3])  # duplicated titles
    rows, partners = generated_negatives(groups_a, groups_b, 0)
    assert len(rows) == 6
    assert np.all(groups_b[rows] != groups_b[partners])
    assert np.all(rows != partners)
    assert np.array_equal(np.sort(rows), np.arange(6))
    # Nothing to pair when every second item is the same.
    rows, _ = generated_negatives(groups_a, np.zeros(6, int), 0)
    assert len(rows) == 0


def test_contrastive_loss_leaves_out_duplicates():
    torch.manual_seed(0)
    za = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    zb = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    none = torch.zeros(4, 4, dtype=torch.bool)
    # Rows 0 and 3 have the same second item: it is no negative for either.
    same_b = torch.eye(4, dtype=torch.bool)
    same_b[0, 3] = same_b[3, 0] = True
    masked = contrastive_loss(za, zb, 4, 10.0, torch.eye(4, dtype=torch.bool), same_b)
    # The a-to-b cross-entropy of each row over its candidates that are negatives.
    logits = 10.0 * za @ zb.T
    a_to_b = []
    for i in range(4):
        kept = [j for j in range(4) if j == i or not same_b[i, j]]
        target = torch.tensor([kept.index(i)])
        a_to_b.append(torch.nn.functional.cross_entropy(logits[i, kept][None], target))
    b_to_a = torch.nn.functional.cross_entropy(10.0 * zb @ za.T, torch.arange(4))
    expected = (torch.stack(a_to_b).mean() + b_to_a) / 2
    assert float(masked) == pytest.approx(float(expected), rel=1e-5)
    assert float(masked) < float(contrastive_loss(za, zb, 4, 10.0, none, none))


# -- images and texts: the encoders' own towers -----------------------------------------
COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "white": (1, 1, 1)}


def _catalogue(n, seed=0):
    """Small solid-colour pictures with noise, titled by colour and size."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    images, titles = [], []
    for i in range(n):
        colour = names[i % 4]
        large = (i // 4) % 2 == 0
        image = np.zeros((12, 12, 3)) + 0.1 * rng.random((12, 12, 3))
        side = 10 if large else 4
        image[:side, :side] = COLOURS[colour]
        images.append((image * 255).astype(np.uint8))
        titles.append(f"{'large' if large else 'small'} {colour} patch")
    return pd.DataFrame({"picture": images, "title": titles})


def _catalogue_matcher(**params):
    params = {
        "embedding_dim": 8,
        "batch_size": 16,
        "max_epochs": 8,
        "random_state": 0,
        "device": "cpu",
        **params,
    }
    return MultimodalMatcher(
        [
            ("image", ImageEncoder("cnn", image_size=8), "picture"),
            ("text", TextEncoder("gru", embedding_dim=8, hidden_size=8), "title"),
        ],
        **params,
    )


@pytest.fixture(scope="module")
def fitted_catalogue():
    return _catalogue_matcher().fit(_catalogue(96))


def test_image_text_towers(fitted_catalogue, record_measure):
    matcher = fitted_catalogue
    X = _catalogue(32, seed=1)
    # Every title is shared by 12 of the 96 training items: duplicates are no
    # negatives, and the towers still learn which colour and size go with which title.
    shifted = X.assign(title=np.roll(X["title"].to_numpy(), 1))
    wins = matcher.decision_function(X) > matcher.decision_function(shifted)
    record_measure("own title beats the shifted one", wins.mean(), 0.95)  # measured 1.0
    # The exposed encoders are clones holding copies of the trained towers.
    image = matcher.named_encoders_["image"]
    assert image is not matcher.encoders[0][1]
    assert image.module_ is not matcher.module_.towers[0]
    assert image.transform(X["picture"]).shape == (32, 128)
    assert not hasattr(matcher.encoders[0][1], "module_")
    titles = np.unique(X["title"])  # the 8 titles
    best = matcher.kneighbors(X["picture"], titles, n_neighbors=1)[:, 0]
    right = titles[best] == X["title"]
    # Chance is 1/8; one miss in 32 gives 0.97.
    record_measure("right title first of 8", right.mean(), 0.9)  # measured 1.0


def test_image_text_pickle_and_params(fitted_catalogue):
    matcher = fitted_catalogue
    X = _catalogue(16, seed=2)
    loaded = pickle.loads(pickle.dumps(matcher))
    np.testing.assert_array_equal(loaded.transform(X), matcher.transform(X))
    np.testing.assert_array_equal(
        loaded.named_encoders_["text"].transform(X["title"]),
        matcher.named_encoders_["text"].transform(X["title"]),
    )
    params = matcher.get_params()
    assert params["text__hidden_size"] == 8
    other = clone(matcher).set_params(text__hidden_size=4, image__image_size=6)
    assert other.encoders[1][1].hidden_size == 4
    assert matcher.encoders[1][1].hidden_size == 8


def test_pretrained_tower_stays_frozen(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cnn.pt"
    torch.save(small_cnn(3).state_dict(), path)
    saved = torch.load(path, weights_only=True)
    # Pretrained weights and max_epochs="auto": the encoder would not train its tower.
    matcher = _catalogue_matcher(max_epochs=2).set_params(
        image=ImageEncoder("cnn", weights=str(path), image_size=8)
    )
    matcher.fit(_catalogue(48))
    backbone = matcher.module_.towers[0].backbone.state_dict()
    for key, value in saved.items():
        assert torch.equal(backbone[key], value), key
    # The projection head and the text tower did learn.
    assert matcher.loss_curve_[-1] < matcher.loss_curve_[0]


def test_bad_items_are_named(fitted_catalogue, tmp_path):
    X = _catalogue(24)
    X.loc[5, "title"] = None
    with pytest.raises(
        ValueError, match=r"encoder 'text': column 'title', row 5: the item is missing"
    ):
        _catalogue_matcher(max_epochs=1).fit(X)
    X = _catalogue(24)
    X["picture"] = X["picture"].astype(object)
    X.loc[9, "picture"] = str(tmp_path / "missing.png")
    with pytest.raises(
        ValueError, match=r"encoder 'image': column 'picture', row 9: file not found"
    ):
        fitted_catalogue.predict(X)
    X = _catalogue(24).set_index(pd.Index([f"item{i}" for i in range(24)]))
    X["title"] = X["title"].astype(object)
    X.loc["item3", "title"] = 42
    with pytest.raises(
        ValueError,
        match=r"column 'title', row 'item3': expected a string, got int 42",
    ):
        fitted_catalogue.decision_function(X)
    with pytest.raises(ValueError, match=r"columns are missing: \{'title'\}"):
        fitted_catalogue.predict(X.rename(columns={"title": "name"}))


# -- real data ----------------------------------------------------------------------------
@pytest.mark.slow
def test_fashion_titles(shared_data):
    """Fashion photos and their titles, on items never seen in fit."""
    root = shared_data / "fashion"
    styles = pd.read_csv(root / "styles.csv")
    X = pd.DataFrame(
        {
            "image": [str(root / "images" / f"{i}.jpg") for i in styles["id"]],
            "title": styles["productDisplayName"],
        }
    )
    order = np.random.default_rng(0).permutation(len(X))
    train = X.iloc[order[:1500]].reset_index(drop=True)
    test = X.iloc[order[2400:]].reset_index(drop=True)
    matcher = MultimodalMatcher(
        [
            ("image", ImageEncoder("cnn", image_size=32), "image"),
            ("title", TextEncoder("gru"), "title"),
        ],
        max_epochs=4,
        random_state=0,
        device="cpu",
    ).fit(train)
    # The test pairs: each item's true title, then the title of another test item.
    other = np.roll(test["title"].to_numpy(), 1)
    keep = other != test["title"].to_numpy()
    pairs = pd.concat([test, test.assign(title=other)[keep]], ignore_index=True)
    y = np.r_[np.ones(len(test)), np.zeros(keep.sum())]
    similarity = matcher.decision_function(pairs)
    assert roc_auc_score(y, similarity) > 0.83  # measured 0.887
    assert f1_score(y, matcher.predict(pairs)) > 0.72  # measured 0.789


# -- embed, chunked retrieval, EmbeddingIndex -------------------------------------------
def test_embed_gives_each_sides_unit_embeddings(fitted_views):
    matcher, X = fitted_views
    za = matcher.embed(X[:, :5], side="a")
    zb = matcher.embed(X[:, 5:], side="b")
    np.testing.assert_allclose(np.hstack([za, zb]), matcher.transform(X), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(za, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(matcher.embed(X[:, :5]), za)  # None: the first
    with pytest.raises(ValueError, match=r"side 'c' is not the name of an encoder"):
        matcher.embed(X[:, :5], side="c")


def test_embed_selects_the_sides_columns_by_name(fitted_catalogue):
    matcher, X = fitted_catalogue, _catalogue(20)
    np.testing.assert_array_equal(
        matcher.embed(X, side="text"), matcher.embed(X["title"], side="text")
    )


def _brute_force(zq, zc, k):
    """Full similarity matrix, stable full sort: the reference ranking."""
    s = zq @ zc.T
    best = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, best, 1), best


@pytest.mark.parametrize("chunk, block", [(7, 20), (8192, 2**21)])
def test_chunked_kneighbors_equals_the_full_sort(
    fitted_views, monkeypatch, chunk, block
):
    import skmm.nn._retrieval as retrieval_module

    monkeypatch.setattr(retrieval_module, "_CHUNK_SIZE", chunk)
    monkeypatch.setattr(retrieval_module, "_BLOCK_SIZE", block)
    matcher, X = fitted_views
    # Unit vectors with exact dot products (0 or 1, whatever the BLAS kernel): many
    # exact ties, which the merge must order as the full stable sort does (first
    # candidate first), also across chunks.
    rng = np.random.default_rng(0)
    eye = np.eye(8, dtype=np.float32)
    exact_q, exact_c = eye[rng.integers(0, 8, 30)], eye[rng.integers(0, 8, 100)]
    similarity, indices = matcher.kneighbors(
        EmbeddingIndex(exact_q, side="a"),
        EmbeddingIndex(exact_c, side="b"),
        n_neighbors=20,
        return_similarity=True,
    )
    ref_similarity, ref_indices = _brute_force(exact_q, exact_c, 20)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(similarity, ref_similarity)
    zq = matcher.embed(X[:, :5], side="a")
    zc = np.vstack([matcher.embed(X[:, 5:], side="b")] * 3)
    ref_similarity, ref_indices = _brute_force(zq, zc, 10)
    # Every candidate three times, from the items embedded a chunk at a time: float32
    # kernels differ in the last bits between shapes, so the copies are not exactly
    # tied; the same similarities, and the same candidates up to their copies.
    similarity, indices = matcher.kneighbors(
        X[:, :5], np.vstack([X[:, 5:]] * 3), n_neighbors=10, return_similarity=True
    )
    np.testing.assert_allclose(similarity, ref_similarity, atol=1e-5)
    np.testing.assert_allclose(
        np.take_along_axis(zq @ zc.T, indices, 1), ref_similarity, atol=1e-5
    )
    np.testing.assert_array_equal(indices % len(X), ref_indices % len(X))
    # The query side follows from an index's side.
    back = matcher.kneighbors(X[:, 5:], EmbeddingIndex(zq, side="a"), 3)
    np.testing.assert_array_equal(back, _brute_force(zc[: len(X)], zq, 3)[1])


def test_top_k_breaks_ties_at_the_cut_by_position():
    block = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    best = top_k(block, 2)
    assert sorted(best[0]) == [0, 1]
    assert sorted(best[1]) == [0, 1]


def test_embedding_index_errors(fitted_views):
    matcher, X = fitted_views
    zb = matcher.embed(X[:, 5:], side="b")
    with pytest.raises(ValueError, match="of side 'a', but the candidates must be"):
        matcher.kneighbors(X[:, :5], EmbeddingIndex(zb, side="a"), query="a")
    with pytest.raises(ValueError, match="width 4, but this matcher embeds into 8"):
        matcher.kneighbors(X[:, :5], EmbeddingIndex(zb[:, :4], side="b"))
    with pytest.raises(ValueError, match="row 3 of the EmbeddingIndex of 'b' has norm"):
        raw = zb.copy()
        raw[3] *= 2
        matcher.kneighbors(X[:, :5], EmbeddingIndex(raw, side="b"))
    with pytest.raises(ValueError, match="takes a 2-D float array of embeddings"):
        EmbeddingIndex(zb[0], side="b")
    with pytest.raises(ValueError, match="got 0 embeddings"):
        EmbeddingIndex(zb[:0], side="b")
    with pytest.raises(TypeError, match="side must be the name of the encoder"):
        EmbeddingIndex(zb, side=1)
    assert repr(EmbeddingIndex(zb, side="b")) == (
        "EmbeddingIndex(<100 x 8 embeddings>, side='b')"
    )


# -- aligned towers, no training ---------------------------------------------------------
class _Fixed(torch.nn.Module):
    """A fixed random projection of a flattened image: the same in both towers."""

    def __init__(self, seed=0, width=16):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, width)
        torch.nn.init.normal_(
            self.proj.weight, generator=torch.Generator().manual_seed(seed)
        )
        self.out_features = width

    def forward(self, x):
        return self.proj(x.flatten(1))


class _ScaledImageEncoder(ImageEncoder):
    """An encoder whose tower comes with its own temperature, as CLIP towers do."""

    def _init_module(self):
        tower = super()._init_module()
        self.logit_scale_ = 50.0
        return tower


class _OtherScaledImageEncoder(ImageEncoder):
    def _init_module(self):
        tower = super()._init_module()
        self.logit_scale_ = 20.0
        return tower


def _two_photos(n, seed=0):
    """Pairs of photos of one scene: the second a noisy copy of the first."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(size=(n, 8, 8, 3)).astype(np.float32)
    second = np.clip(first + 0.05 * rng.normal(size=first.shape), 0, 1)
    return pd.DataFrame(
        {"first": list(first), "second": list(second.astype(np.float32))}
    )


def _aligned(encoder=ImageEncoder, backbone_b=None, **params):
    params = {
        "embedding_dim": None,
        "max_epochs": 0,
        "random_state": 0,
        "device": "cpu",
        **params,
    }
    backbone = _Fixed()
    return MultimodalMatcher(
        [
            ("first", encoder(backbone, max_epochs=0, device="cpu"), "first"),
            (
                "second",
                encoder(backbone_b or backbone, max_epochs=0, device="cpu"),
                "second",
            ),
        ],
        **params,
    )


def test_aligned_towers_need_no_training():
    X = _two_photos(60)
    matcher = _aligned().fit(X)
    assert matcher.n_iter_ == 0 and matcher.history_ == []
    assert matcher.temperature_ == pytest.approx(0.07)
    assert all(isinstance(h, torch.nn.Identity) for h in matcher.module_.heads)
    # The embeddings are the towers' own features, normalised: no projection.
    enc = matcher.named_encoders_["first"]
    features = enc.transform(X["first"])
    np.testing.assert_allclose(
        matcher.embed(X, side="first"),
        features / np.linalg.norm(features, axis=1, keepdims=True),
        atol=1e-5,
    )
    # One fixed backbone on both sides: each photo finds its noisy twin.
    best = matcher.kneighbors(X["first"], X["second"], n_neighbors=1)[:, 0]
    assert (best == np.arange(len(X))).mean() > 0.95  # measured 1.0
    assert 0.5 < matcher.score(X) <= 1.0


def test_towers_temperature_is_used():
    X = _two_photos(40)
    matcher = _aligned(_ScaledImageEncoder).fit(X)
    assert matcher.temperature_ == pytest.approx(1 / 50)
    # A fixed temperature wins over the towers'.
    fixed = _aligned(_ScaledImageEncoder, temperature=0.5).fit(X)
    assert fixed.temperature_ == pytest.approx(0.5)
    backbone = _Fixed()
    mixed = MultimodalMatcher(
        [
            ("first", _ScaledImageEncoder(backbone, max_epochs=0), "first"),
            ("second", _OtherScaledImageEncoder(backbone, max_epochs=0), "second"),
        ],
        embedding_dim=None,
        max_epochs=0,
        device="cpu",
    )
    with pytest.raises(ValueError, match=r"different logit scales .*Pass a float"):
        mixed.fit(X)


def test_aligned_towers_must_share_a_width():
    X = _two_photos(20)
    with pytest.raises(
        ValueError, match=r"both towers must have the same width; they have \[16, 12\]"
    ):
        _aligned(backbone_b=_Fixed(width=12)).fit(X)
    # With a projection, different widths are fine.
    assert (
        _aligned(backbone_b=_Fixed(width=12), embedding_dim=4)
        .fit(X)
        .module_.out_features
        == 4
    )


def test_aligned_towers_fine_tune_from_their_temperature():
    # max_epochs > 0 trains contrastively from there: with frozen towers and no
    # projection, only the temperature learns (a sharper softmax for twins this close).
    X = _two_photos(60)
    matcher = _aligned(_ScaledImageEncoder, max_epochs=3, early_stopping=False)
    matcher.set_params(batch_size=16, lr=0.1).fit(X)
    assert matcher.n_iter_ == 3
    assert matcher.temperature_ < 1 / 50
