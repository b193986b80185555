import csv
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from skmm.encoders import TextEncoder

TEXTS = [
    "Red cotton shirt",
    "blue denim jeans",
    "red silk shirt!",
    "black jeans",
    "A shirt",
]
LABELS = ["top", "bottom", "top", "bottom", "top"]


def tiny(**params):
    defaults = dict(
        backbone="lstm",
        hidden_size=8,
        embedding_dim=8,
        max_epochs=1,
        random_state=0,
        device="cpu",
    )
    return TextEncoder(**{**defaults, **params})


@pytest.fixture(scope="module")
def fashion(shared_data):
    with open(
        shared_data / "fashion" / "styles.csv", newline="", encoding="utf-8"
    ) as f:
        rows = list(csv.DictReader(f))
    return (
        np.array([r["productDisplayName"] for r in rows], dtype=object),
        np.array([r["masterCategory"] for r in rows]),
    )


@pytest.mark.slow
def test_titles_predict_master_category(fashion, record_measure):
    X, y = fashion
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, test = order[:2000], order[2000:]
    enc = TextEncoder("lstm", max_epochs=4, random_state=0, device="cpu")
    Z = enc.fit_transform(X[train], y[train])
    clf = LogisticRegression(max_iter=2000).fit(Z, y[train])
    accuracy = clf.score(enc.transform(X[test]), y[test])
    record_measure("masterCategory accuracy", accuracy, 0.95)  # measured 0.980


def test_vocabulary_and_tokens():
    enc = tiny(max_features=3).fit(TEXTS, LABELS)
    assert enc.vocabulary_ == {"<pad>": 0, "<unk>": 1, "shirt": 2, "jeans": 3, "red": 4}
    ids = enc._load(enc._check_input(["red hat shirt", "!!!"], reset=False), [0, 1])
    assert ids.tolist() == [[4, 1, 2], [1, 0, 0]]
    chars = tiny(tokenizer="char").fit(["ab", "ba"], [0, 1])
    assert set(chars.vocabulary_) == {"<pad>", "<unk>", "a", "b"}
    custom = tiny(tokenizer=str.split, max_length=2).fit(["x y z", "y"], [0, 1])
    assert set(custom.vocabulary_) == {"<pad>", "<unk>", "x", "y"}


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_a_text(rnn, pooling, bidirectional):
    enc = tiny(backbone=rnn, pooling=pooling, bidirectional=bidirectional).fit(
        TEXTS, LABELS
    )
    together = enc.transform(TEXTS)
    alone = np.vstack([enc.transform([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert together.shape == (5, 8 * (2 if bidirectional else 1))


def test_fit_without_y_points_to_tfidf():
    with pytest.raises(ValueError, match="requires y to be passed.*TfidfVectorizer"):
        TextEncoder("lstm", device="cpu").fit(TEXTS)
    assert tiny(max_epochs=0).fit(TEXTS).transform(TEXTS).shape == (5, 16)


def test_bad_and_missing_texts():
    enc = tiny().fit(TEXTS, LABELS)
    column = pd.Series(["ok", 42, "fine"], name="title", index=[10, 11, 12])
    with pytest.raises(
        ValueError, match=r"column 'title', row 11: expected a string, got int 42"
    ):
        enc.transform(column)
    with pytest.raises(ValueError, match=r"row 1: empty text"):
        enc.transform(["ok", "   "])
    out = enc.transform(["red shirt", None, np.nan])
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    # y of the missing rows is ignored at fit.
    tiny().fit([*TEXTS, None], [*LABELS, "whatever"])


def test_regression_target_and_unknown_target():
    enc = tiny().fit(TEXTS, [0.1, 2.0, 0.2, 1.9, 0.3])
    assert enc.classes_ is None
    with pytest.raises(ValueError, match="Unknown label type"):
        tiny().fit(TEXTS, [{"a": 1}] * 5)
    with pytest.raises(ValueError, match="y should be a 1d array"):
        tiny().fit(TEXTS, [[0, 1]] * 5)


def test_pickle_clone_reproducibility():
    enc = tiny(max_epochs=2).fit(TEXTS, LABELS)
    expected = enc.transform(TEXTS)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(enc)).transform(TEXTS), expected
    )
    np.testing.assert_array_equal(
        clone(enc).fit(TEXTS, LABELS).transform(TEXTS), expected
    )
    np.testing.assert_allclose(
        clone(enc).fit_transform(TEXTS, LABELS), expected, atol=1e-6
    )
    assert enc.get_feature_names_out()[-1] == "textencoder15"


def test_repeated_texts_are_encoded_once(monkeypatch):
    enc = tiny().fit(TEXTS, LABELS)
    seen = []
    original = TextEncoder._load

    def spy(self, column, rows):
        seen.extend(column.items[rows])
        return original(self, column, rows)

    monkeypatch.setattr(TextEncoder, "_load", spy)
    out = enc.transform(["a shirt", "jeans", "a shirt", "a shirt"])
    assert sorted(seen) == ["a shirt", "jeans"]
    np.testing.assert_array_equal(out[0], out[3])


def test_wordllama_one_text_equals_its_row_of_a_batch():
    """One text is tokenised on its own (not through the batch tokenizer); its
    ids, mask and features are those of its row in a batch."""
    import torch

    from skmm.encoders._backbones._wordllama import ids_and_mask

    sequences = [[5, 6, 7, 8], [], [9], list(range(1, 20))]
    got = ids_and_mask(sequences, 6)
    # By hand: cut to 6 ids, an empty text is one padding id, padded with 0.
    expected = torch.tensor(
        [
            [[5, 6, 7, 8, 0, 0], [1, 1, 1, 1, 0, 0]],
            [[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]],
            [[9, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]],
            [[1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1]],
        ]
    )
    assert got.dtype == torch.long and torch.equal(got, expected)

    enc = TextEncoder("wordllama", device="cpu").fit(TEXTS)
    batch = enc.transform(TEXTS)
    backbone = enc.backbone_
    for i, text in enumerate(TEXTS):
        one = backbone.text_input(enc, [text])
        row = backbone.text_input(enc, [text, TEXTS[0] * 40])[:1, :, : one.shape[2]]
        assert torch.equal(one, row)
        np.testing.assert_array_equal(enc.transform([text])[0], batch[i])
