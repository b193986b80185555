"""Dask fits and predictions on awkward partitions: empty ones (after filtering),
ones whose items are all missing, a ``y`` in another order than X, a bad item in a
prediction's partition."""

import numpy as np
import pandas as pd
import pytest

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.nn import MultimodalNetClassifier

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDES = [("left", "passthrough", ["a", "b"]), ("right", "passthrough", ["c", "d"])]


@pytest.fixture(autouse=True)
def object_columns_stay_objects():
    # Dask turns object columns into pyarrow strings by default; these tables hold
    # arrays (images) in object columns.
    with dask.config.set({"dataframe.convert-string": False}):
        yield


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    y = (X["a"] + X["c"] > 0).astype(int).to_numpy()
    return X, y


def _net(**params):
    return MultimodalNetClassifier(
        SIDES, lr=1e-2, batch_size=32, random_state=0, device="cpu", **params
    )


def _filtered(X, y, keep):
    """X and y as Dask collections of 4 partitions, then filtered to ``keep``."""
    frame = dd.from_pandas(X.assign(target=y, keep=keep), npartitions=4)
    frame = frame[frame["keep"]]
    return frame[list(X.columns)], frame["target"]


@pytest.mark.parametrize("empty", [[1], [0], [0, 3]], ids=["middle", "first", "ends"])
def test_empty_partitions_are_skipped(table, empty):
    X, y = table
    keep = np.ones(400, dtype=bool)
    for i in empty:
        keep[100 * i : 100 * (i + 1)] = False
    Xd, yd = _filtered(X, y, keep)
    assert (Xd.map_partitions(len).compute() == 0).sum() == len(empty)
    stream = _net(max_epochs=4, early_stopping=False).fit(Xd, yd)
    assert stream.n_iter_ == 4
    # measured 0.927, 0.923, 0.955 (middle, first, ends empty)
    assert stream.score(X[keep], y[keep]) > 0.9
    pred = stream.predict(Xd).compute()
    np.testing.assert_array_equal(pred.to_numpy(), stream.predict(X[keep]))


def test_every_partition_empty_is_refused(table):
    X, y = table
    Xd, yd = _filtered(X, y, np.zeros(400, dtype=bool))
    net = _net(max_epochs=1)
    with pytest.raises(ValueError, match=r"every partition of X \(4\) is empty"):
        net.fit(Xd, yd)
    assert "module_" not in vars(net)


def _texts(n=100, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([1, 0] * (n // 2))
    words = np.where(y == 1, "good stuff here", "bad thing there")
    return pd.DataFrame({"t": words.astype(object), "n": rng.normal(size=n)}), y


@pytest.mark.parametrize("missing", [0, 1], ids=["first", "second"])
def test_a_text_partition_of_missing_items_is_skipped(missing):
    X, y = _texts()
    X.loc[25 * missing : 25 * missing + 24, "t"] = None
    frame = dd.from_pandas(X.assign(target=y), npartitions=4)
    assert frame["t"].partitions[missing].isna().all().compute()
    enc = TextEncoder("lstm", max_epochs=2, batch_size=8, random_state=0, device="cpu")
    enc.fit(frame[["t"]], frame["target"])
    # Trained on the 3 other partitions: 2 epochs of their 75 rows.
    assert enc.n_iter_ == 2
    assert set(enc.vocabulary_) >= {"good", "bad", "stuff", "thing"}
    out = enc.transform(frame[["t"]]).compute()
    gone = X["t"].isna().to_numpy()
    assert np.isnan(out.to_numpy()[gone]).all()
    assert np.isfinite(out.to_numpy()[~gone]).all()
    net = MultimodalNetClassifier(
        [("t", TextEncoder("lstm"), "t"), ("n", "passthrough", ["n"])],
        max_epochs=2,
        batch_size=8,
        random_state=0,
        device="cpu",
    )
    net.fit(frame[["t", "n"]], frame["target"])
    assert net.predict(frame[["t", "n"]]).compute().shape == (100,)


def test_every_text_item_missing_is_refused_by_name():
    X, y = _texts()
    X["t"] = None
    frame = dd.from_pandas(X.assign(target=y), npartitions=4)
    enc = TextEncoder("lstm", max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="TextEncoder: every item is missing"):
        enc.fit(frame[["t"]], frame["target"])


def test_y_in_another_order_than_X_is_refused(table):
    X, y = table
    Xd = dd.from_pandas(X, npartitions=4)
    shuffled = pd.Series(y, index=X.index).iloc[np.r_[1:100, 0, 100:400]]
    yd = dd.from_pandas(shuffled, npartitions=4, sort=False)
    net = _net(max_epochs=1)
    with pytest.raises(
        ValueError,
        match=r"partition 0: the index of y is not X's \(position 0: X's row 0, "
        r"y's row 1\)",
    ):
        net.fit(Xd, yd)
    assert "module_" not in vars(net)
    weight = dd.from_pandas(
        pd.Series(1.0, index=X.index[::-1]), npartitions=4, sort=False
    )
    with pytest.raises(ValueError, match="the index of sample_weight is not X's"):
        _net(max_epochs=1).fit(Xd, dd.from_pandas(pd.Series(y), 4), weight)


def test_y_aligned_or_as_an_array_is_paired_by_position(table):
    X, y = table
    Xd = dd.from_pandas(X, npartitions=4)
    as_series = _net(max_epochs=1).fit(Xd, dd.from_pandas(pd.Series(y), npartitions=4))
    import dask.array as da

    as_array = _net(max_epochs=1).fit(Xd, da.from_array(y, chunks=100))
    np.testing.assert_array_equal(as_series.predict_proba(X), as_array.predict_proba(X))


def test_a_bad_item_in_a_prediction_names_its_partition():
    rng = np.random.default_rng(0)
    images = list(rng.random((32, 8, 8, 3)).astype("float32"))
    enc = ImageEncoder("cnn", max_epochs=0, device="cpu").fit(
        pd.DataFrame({"img": pd.Series(images, dtype=object)})
    )
    images[29] = np.full((8, 8, 3), 7.0, dtype="float32")  # outside [0, 1]
    frame = dd.from_pandas(
        pd.DataFrame({"img": pd.Series(images, dtype=object)}), npartitions=4
    )
    with pytest.raises(ValueError, match=r"partition 3: .*row 29"):
        enc.transform(frame).compute()
