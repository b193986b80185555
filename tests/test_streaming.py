"""Streaming training: partial_fit with the optimizer state kept, fit on Dask input."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skmm.datasets import load_av_digits
from skmm.encoders import AudioFeatures, ImageEncoder, TextEncoder
from skmm.nn import MultimodalMatcher, MultimodalNetClassifier, MultimodalNetRegressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDES = [("left", "passthrough", ["a", "b"]), ("right", "passthrough", ["c", "d"])]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    y = (X["a"] + X["c"] > 0).astype(int).to_numpy()
    return X, y


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["dark", "light"] * (n // 2))
    images = rng.random((n, 8, 8, 3)) * 0.5 + (y == "light")[:, None, None, None] / 2
    return list(images.astype("float32")), y


def _net(**params):
    return MultimodalNetClassifier(
        SIDES, lr=1e-2, batch_size=32, random_state=0, device="cpu", **params
    )


def _record_rows(monkeypatch, cls, method, rows_of):
    """Replace ``cls.method`` by a spy; returns the list of the rows each call got."""
    sizes, original = [], getattr(cls, method)

    def spy(self, *args):
        sizes.append(len(rows_of(*args)))
        return original(self, *args)

    monkeypatch.setattr(cls, method, spy)
    return sizes


def _steps(state):
    return sorted({int(s["step"]) for s in state["state"].values()})


# -- partial_fit: the optimizer state is kept ---------------------------------------
def test_encoder_partial_fit_keeps_the_optimizer_state():
    images, y = _images(40)
    enc = ImageEncoder("cnn", batch_size=16, random_state=0, device="cpu")
    enc.partial_fit(images[:20], y[:20], classes=["dark", "light"])
    # 20 rows in batches of 16: 2 Adam steps (16, then 4), kept on the CPU.
    assert _steps(enc._optimizer_state_) == [2]
    assert enc.n_iter_ == 1 and len(enc.loss_curve_) == 1
    enc.partial_fit(images[20:], y[20:])
    assert _steps(enc._optimizer_state_) == [4]
    assert enc.n_iter_ == 2 and len(enc.loss_curve_) == 2
    tensors = [
        v
        for s in enc._optimizer_state_["state"].values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    ]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    assert enc.transform(images).shape == (40, enc.module_.out_features)


def test_encoder_partial_fit_resumes_what_a_fresh_optimizer_would_not():
    images, y = _images(48)
    first = ImageEncoder("cnn", batch_size=16, random_state=0, device="cpu")
    first.partial_fit(images[:24], y[:24], classes=["dark", "light"])
    fresh = pickle.loads(pickle.dumps(first))
    del fresh._optimizer_state_  # what a partial_fit without kept state would do
    resumed = pickle.loads(pickle.dumps(first))
    for enc in (first, fresh, resumed):
        enc.partial_fit(images[24:], y[24:])
    # The pickled state resumes exactly; dropping it changes the weights.
    np.testing.assert_array_equal(first.transform(images), resumed.transform(images))
    assert not np.allclose(first.transform(images), fresh.transform(images))


def test_encoder_partial_fit_classes_and_labels():
    images, y = _images(8)
    enc = ImageEncoder("cnn", random_state=0, device="cpu")
    # scikit-learn's rule: every class on the first call, which then leaves the
    # encoder unfitted when they are missing.
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        enc.partial_fit(images, y)
    assert not hasattr(enc, "classes_") and not hasattr(enc, "module_")
    with pytest.raises(ValueError, match="at least 2 are needed"):
        enc.partial_fit(images, y, classes=[])
    enc.partial_fit(images, y, classes=["dark", "light"])
    assert enc.classes_.tolist() == ["dark", "light"]
    with pytest.raises(
        ValueError, match=r"\['grey'\], which are not in classes_ .* classes="
    ):
        enc.partial_fit(images[:2], ["dark", "grey"])
    enc = ImageEncoder("cnn", random_state=0, device="cpu")
    enc.partial_fit(images, y, classes=["dark", "light", "grey"])
    assert enc.classes_.tolist() == ["dark", "grey", "light"]
    with pytest.raises(ValueError, match=r"label\(s\) \['white'\], which are not in"):
        enc.partial_fit(images[:2], ["dark", "white"])


def test_encoder_partial_fit_regression_keeps_the_first_scale():
    texts = ["a cat", "a dog", "the cat sat", "the dog ran"] * 5
    values = np.linspace(0.5, 9.5, 20) ** 2  # real values: a regression
    enc = TextEncoder("lstm", random_state=0, device="cpu", batch_size=8)
    enc.partial_fit(texts, values)
    assert enc.classes_ is None
    np.testing.assert_allclose(enc._target_scale_, (values.mean(), values.std()))
    enc.partial_fit(texts[:4], values[:4] + 100)
    np.testing.assert_allclose(enc._target_scale_, (values.mean(), values.std()))


def test_encoder_partial_fit_bad_item_leaves_it_as_it_was():
    images, y = _images(16)
    enc = ImageEncoder("cnn", random_state=0, device="cpu")
    enc.partial_fit(images, y, classes=["dark", "light"])
    state = {k: v.clone() for k, v in enc.module_.state_dict().items()}
    steps = _steps(enc._optimizer_state_)
    bad = [*images[:3], np.full((8, 8, 3), 7.0, dtype="float32")]
    with pytest.raises(ValueError, match="row 3"):
        enc.partial_fit(bad, y[:4])
    for k, v in enc.module_.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert _steps(enc._optimizer_state_) == steps and enc.n_iter_ == 1


def test_encoder_partial_fit_after_fit_continues_from_the_fitted_weights():
    images, y = _images(32)
    enc = ImageEncoder("cnn", max_epochs=2, random_state=0, device="cpu").fit(images, y)
    before = {k: v.clone() for k, v in enc.module_.named_parameters()}
    enc.set_params(lr=1e-12).partial_fit(images, y)
    # A re-initialised tower would have other weights; a tiny step keeps them (the
    # batch-norm running statistics move on with the training pass itself).
    for name, weight in enc.module_.named_parameters():
        torch.testing.assert_close(weight, before[name], rtol=0, atol=1e-6)
    assert enc.n_iter_ == 3


# -- partial_fit on the nets and the matcher -------------------------------------------
def test_net_partial_fit_learns_and_keeps_its_state(table):
    X, y = table
    net = _net()
    for _ in range(5):
        for rows in np.array_split(np.arange(400), 4):
            net.partial_fit(X.iloc[rows], y[rows], classes=[0, 1])
    assert net.n_iter_ == 20 and len(net.history_) == 20
    # 100-row chunks in batches of 32: 4 steps each, over 20 calls.
    assert _steps(net._optimizer_state_) == [80]
    assert net.score(X, y) > 0.9  # measured 0.925
    copy = pickle.loads(pickle.dumps(net))
    for model in (net, copy):
        model.partial_fit(X.iloc[:100], y[:100])
    np.testing.assert_array_equal(net.predict_proba(X), copy.predict_proba(X))


def test_net_partial_fit_errors(table):
    X, y = table
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        _net().partial_fit(X, y)
    with pytest.raises(ValueError, match="class_weight='balanced' needs the number"):
        _net(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="schedule='staged' needs fit"):
        _net(schedule="staged").partial_fit(X, y, classes=[0, 1])
    net = _net().partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"label\(s\) \[2\], which are not in"):
        net.partial_fit(X.iloc[:3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"columns are missing: \{'d'\}"):
        net.partial_fit(X.iloc[:, :3], y)


@pytest.mark.parametrize("max_epochs", [10, 0], ids=["trained", "frozen"])
def test_net_partial_fit_bad_item_leaves_it_as_it_was(max_epochs):
    images, y = _images(16)
    column = pd.Series(images, dtype=object)
    X = pd.DataFrame({"img": column, "img2": column, "n": np.arange(16.0)})
    encoders = [
        (name, ImageEncoder("cnn", max_epochs=max_epochs), name)
        for name in ("img", "img2")
    ]
    net = MultimodalNetClassifier(
        [*encoders, ("n", "passthrough", ["n"])], random_state=0, device="cpu"
    )
    net.partial_fit(X, y, classes=["dark", "light"])
    before = net.predict_proba(X)
    features = net.named_encoders_["img"].transform(X["img"])
    bad = X.copy()
    bad.at[5, "img2"] = np.full((8, 8, 3), 7.0, dtype="float32")
    with pytest.raises(ValueError, match="encoder 'img2'.*row 5"):
        net.partial_fit(bad, y)
    np.testing.assert_array_equal(net.predict_proba(X), before)
    assert net.n_iter_ == 1
    np.testing.assert_array_equal(
        net.named_encoders_["img"].transform(X["img"]), features
    )


def test_regressor_partial_fit_keeps_the_first_scale(table):
    X, y = table
    target = 3 * X["a"].to_numpy() + 10
    net = MultimodalNetRegressor(SIDES, lr=1e-2, random_state=0, device="cpu")
    net.partial_fit(X.iloc[:200], target[:200])
    mean = net.y_mean_.copy()
    for _ in range(10):
        net.partial_fit(X.iloc[200:], target[200:] + 1)
    np.testing.assert_array_equal(net.y_mean_, mean)
    # measured 0.764 (half the calls' targets are shifted by 1)
    assert net.score(X, target) > 0.7


def test_matcher_partial_fit():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    b = a @ rng.normal(size=(4, 4)) + 0.1 * rng.normal(size=(200, 4))
    X = np.hstack([a, b])
    sides = [("a", "passthrough", [0, 1, 2, 3]), ("b", "passthrough", [4, 5, 6, 7])]
    matcher = MultimodalMatcher(sides, lr=1e-2, random_state=0, device="cpu")
    matcher.partial_fit(X[:50])
    steps = _steps(matcher._optimizer_state_)[0]
    for k in range(19):
        matcher.partial_fit(X[np.array_split(np.arange(200), 4)[(k + 1) % 4]])
    assert _steps(matcher._optimizer_state_) == [20 * steps]
    assert matcher.n_iter_ == 20 and matcher.classes_.tolist() == [0, 1]
    assert matcher.score(X) > 0.9  # F1, measured 0.973
    copy = pickle.loads(pickle.dumps(matcher))
    for model in (matcher, copy):
        model.partial_fit(X[:50])
    np.testing.assert_array_equal(
        matcher.decision_function(X), copy.decision_function(X)
    )


# -- fit on a Dask DataFrame: one partition at a time ---------------------------------
dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(autouse=True)
def object_columns_stay_objects():
    # Dask turns object columns into pyarrow strings by default; these tables hold
    # arrays (images) in object columns.
    with dask.config.set({"dataframe.convert-string": False}):
        yield


def _dask(X, y, npartitions=4):
    frame = dd.from_pandas(X.assign(target=y), npartitions=npartitions)
    return frame[list(X.columns)], frame["target"]


def test_net_fit_on_dask_reads_one_partition_at_a_time(table, monkeypatch):
    X, y = table
    sizes = _record_rows(monkeypatch, MultimodalNetClassifier, "_data", lambda *a: a[3])
    stream = _net(max_epochs=6).fit(*_dask(X, y))
    # Each epoch decodes the 4 partitions of 100 rows, one at a time; then one more
    # pass estimates the statistics that standardise the towers' outputs. The 40
    # held-out rows (10 of each partition) are decoded once, together.
    assert [s for s in sizes if s != 40] == [100] * 4 * (stream.n_iter_ + 1)
    assert sizes.count(40) == 1
    assert stream.n_iter_ == len(stream.history_) and stream.n_iter_ <= 6
    assert stream.validation_scores_ and stream.best_validation_score_ > 0.9
    in_memory = _net(max_epochs=6).fit(X, y)
    # measured: 0.9875 on Dask, 0.975 in memory
    assert stream.score(X, y) > in_memory.score(X, y) - 0.03
    assert stream.n_features_in_ == 4
    assert stream.feature_names_in_.tolist() == list("abcd")


def test_net_fit_on_dask_targets_from_the_whole_stream(table):
    X, y = table
    labels = np.where(np.arange(400) < 300, "a", np.where(y == 1, "b", "c"))
    with pytest.warns(UserWarning, match=r"partition \d holds \d of the 3 classes"):
        stream = _net(max_epochs=1, class_weight="balanced").fit(*_dask(X, labels))
    # The first partition holds only "a": the classes come from the whole of y.
    assert stream.classes_.tolist() == ["a", "b", "c"]
    in_memory = _net(max_epochs=1, class_weight="balanced").fit(X, labels)
    np.testing.assert_allclose(stream._class_weights_, in_memory._class_weights_)
    target = 3 * X["a"].to_numpy() + 10
    reg = MultimodalNetRegressor(SIDES, max_epochs=1, random_state=0, device="cpu")
    reg.fit(*_dask(X, target))
    np.testing.assert_allclose(reg.y_mean_, target.mean())
    np.testing.assert_allclose(reg.y_scale_, target.std())


def test_net_fit_on_dask_errors(table):
    X, y = table
    Xd, yd = _dask(X, y)
    with pytest.raises(ValueError, match="y has 2 partitions and X has 4"):
        _net().fit(Xd, dd.from_pandas(pd.Series(y), npartitions=2))
    with pytest.raises(TypeError, match="y must be a Dask Series or Array"):
        _net().fit(Xd, y)
    with pytest.raises(ValueError, match="requires y to be passed"):
        _net().fit(Xd)


def test_net_fit_on_dask_bad_item_names_partition_and_row():
    images, y = _images(32)
    X = pd.DataFrame({"img": pd.Series(images, dtype=object)})
    X.at[29, "img"] = np.full((8, 8, 3), 7.0, dtype="float32")
    net = MultimodalNetClassifier(
        [("img", ImageEncoder("cnn"), "img")],
        max_epochs=2,
        device="cpu",
        random_state=0,  # row 29 is a training row (not held out) with this seed
    )
    Xd, yd = _dask(X, y)
    with pytest.raises(ValueError, match="partition 3: encoder 'img'.*row 29"):
        net.fit(Xd, yd)
    assert "module_" not in vars(net)


def test_encoder_fit_on_dask_reads_one_partition_at_a_time(monkeypatch):
    images, y = _images(64)
    labels = np.where(np.arange(64) < 16, "grey", y)  # the first partition: "grey"
    frame = pd.DataFrame({"img": pd.Series(images, dtype=object), "y": labels})
    ddf = dd.from_pandas(frame, npartitions=4)
    sizes = _record_rows(monkeypatch, ImageEncoder, "_load", lambda *a: a[1])
    enc = ImageEncoder("cnn", max_epochs=3, random_state=0, device="cpu")
    with pytest.warns(UserWarning, match="partition 0 holds 1 of the 3 classes"):
        enc.fit(ddf[["img"]], ddf["y"])
    # 3 epochs of 4 partitions of 16 rows, each decoded on its own (an encoder's
    # own fit ends without a batch-norm statistics pass).
    assert sizes == [16] * 12
    assert enc.classes_.tolist() == ["dark", "grey", "light"]
    assert len(enc.loss_curve_) == 3 and enc.n_iter_ == 3
    with pytest.warns(UserWarning, match="partition 0 holds 1 of the 3 classes"):
        out = enc.fit_transform(ddf[["img"]], ddf["y"])
    assert dask.is_dask_collection(out)
    np.testing.assert_allclose(out.compute().to_numpy(), enc.transform(frame[["img"]]))


def test_net_fit_on_dask_warns_about_partitions_sorted_by_class(table):
    X, y = table
    order = np.argsort(y, kind="stable")
    with pytest.warns(UserWarning, match="partition 0 holds 1 of the 2 classes"):
        _net(max_epochs=1).fit(*_dask(X.iloc[order].reset_index(drop=True), y[order]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _net(max_epochs=1).fit(*_dask(X, y))


@pytest.mark.slow
def test_streaming_matches_in_memory_training_on_av_digits(record_measure):
    """A net trained on 8 Dask partitions, or by partial_fit on 8 chunks, learns as
    well as in memory (hard AV-digits, two unheard speakers)."""
    frame = load_av_digits(variant="hard").frame
    test = frame["speaker"].isin(("lucas", "yweweler")).to_numpy()
    train = frame[~test].sample(frac=1, random_state=0).reset_index(drop=True)
    X, y = train[["image", "audio"]], train["digit"].to_numpy()
    X_test, y_test = frame.loc[test, ["image", "audio"]], frame["digit"][test]

    def net():
        encoders = [
            ("img", ImageEncoder("cnn"), "image"),
            ("snd", AudioFeatures(sample_rate=8000), "audio"),
        ]
        return MultimodalNetClassifier(
            encoders, max_epochs=10, random_state=0, device="cpu"
        )

    in_memory = net().fit(X, y).score(X_test, y_test)
    table = dd.from_pandas(train[["image", "audio", "digit"]], npartitions=8)
    streamed = net().fit(table[["image", "audio"]], table["digit"])
    chunked = net()
    for _ in range(10):
        for rows in np.array_split(np.arange(len(train)), 8):
            chunked.partial_fit(X.iloc[rows], y[rows], classes=np.arange(10))
    # measured (one thread, seed 0): 0.81 in memory, 0.8525 on 8 partitions,
    # 0.85 by partial_fit
    record_measure("in memory", in_memory, 0.77)
    for name, model in (("8 Dask partitions", streamed), ("partial_fit", chunked)):
        score = record_measure(name, model.score(X_test, y_test), 0.81)
        # The bar: within 3 points of the in-memory fit.
        record_measure(f"{name} minus in memory", score - in_memory, -0.03)


def test_matcher_fit_on_dask(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 4))
    b = a @ rng.normal(size=(4, 4)) + 0.1 * rng.normal(size=(400, 4))
    X = pd.DataFrame(np.hstack([a, b]), columns=[f"c{i}" for i in range(8)])
    sides = [
        ("a", "passthrough", list(X.columns[:4])),
        ("b", "passthrough", list(X.columns[4:])),
    ]
    sizes = _record_rows(monkeypatch, MultimodalMatcher, "_data", lambda *a: a[3])

    def matcher():
        return MultimodalMatcher(
            sides, lr=1e-2, max_epochs=10, random_state=0, device="cpu"
        )

    stream = matcher().fit(dd.from_pandas(X, npartitions=4))
    # Both sides of a 100-row partition at a time; the 40 held-out pairs once.
    assert set(sizes) == {100, 40}
    assert sizes.count(40) == 1
    in_memory = matcher().fit(X)
    # measured: F1 0.974 on Dask, 0.988 in memory
    assert stream.score(X) > in_memory.score(X) - 0.03
    assert -1 < stream.threshold_ < 1 and stream.classes_.tolist() == [0, 1]
    with pytest.raises(ValueError, match="partition 1: .*at least 4 matching pairs"):
        matcher().fit(dd.from_pandas(X.iloc[:103], chunksize=100))


def test_partial_fit_resumes_on_another_device(table, monkeypatch):
    from skmm.utils import DeviceWarning

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X, y = table
    net = _net().partial_fit(X.iloc[:200], y[:200], classes=[0, 1])
    reference = pickle.loads(pickle.dumps(net)).partial_fit(X.iloc[200:], y[200:])
    net.device_ = "cuda:0"  # as if trained on a GPU
    with pytest.warns(DeviceWarning, match="fitted on 'cuda:0'"):
        moved = pickle.loads(pickle.dumps(net))
    # The optimizer state is kept on the CPU: it loads wherever the weights go.
    moved.partial_fit(X.iloc[200:], y[200:])
    assert moved.device_ == "cpu"
    np.testing.assert_array_equal(moved.predict_proba(X), reference.predict_proba(X))


def test_encoder_fit_on_dask_warns_about_partitions_sorted_by_class():
    images, y = _images(64)
    order = np.argsort(y, kind="stable")
    frame = pd.DataFrame(
        {"img": pd.Series([images[i] for i in order], dtype=object), "y": y[order]}
    )
    ddf = dd.from_pandas(frame, npartitions=4)
    enc = ImageEncoder("cnn", max_epochs=1, random_state=0, device="cpu")
    with pytest.warns(UserWarning, match=r"partition \d holds 1 of the 2 classes"):
        enc.fit(ddf[["img"]], ddf["y"])
