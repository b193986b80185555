"""Safe persistence: every fitted skmm estimator through skops, with no pickle inside.

Each estimator is fitted once on a small table, saved with ``skops.io.dump`` and
loaded with the types ``skops.io.get_untrusted_types`` lists, which must all be
skmm's, scikit-learn's or numpy's own; its outputs must equal those of the joblib
round trip (the independent reference: pickle stores Python objects as they are).
"""

import io
import json
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from _tiny_hubs import (
    TINY_CLIP_NAME,
)
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skmm import MultimodalClassifier, MultimodalRegressor, MultimodalVectorizer
from skmm._persistence import HFPreprocessor, SkrubState, TensorState, TorchClass
from skmm.encoders import (
    AudioEncoder,
    AudioFeatures,
    ImageEncoder,
    TextEncoder,
    VideoEncoder,
)
from skmm.fusion import LateFusionClassifier, LateFusionRegressor, MultimodalFuser
from skmm.nn import (
    MultimodalMatcher,
    MultimodalNetClassifier,
    MultimodalNetRegressor,
    ZeroShotClassifier,
)
from skmm.utils import DeviceWarning

sio = pytest.importorskip("skops.io")
pytest.importorskip("safetensors")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OWN_PACKAGES = {"skmm", "sklearn", "numpy"}
# The learners' columns: the clips would bring the default video tower (slow).
TABLE = ["image", "title", "audio", "brand", "price"]
N = 24


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * (N // 2))
    X = pd.DataFrame(
        {
            "image": list(rng.integers(0, 256, size=(N, 12, 12, 3), dtype=np.uint8)),
            "title": [f"word{i % 4} thing{i % 3}" for i in range(N)],
            "audio": list(rng.normal(size=(N, 400)).astype(np.float32)),
            "brand": [f"b{i % 3}" for i in range(N)],
            "price": rng.normal(size=N),
            # Clips as frame arrays (n_frames, H, W, C).
            "video": list(rng.integers(0, 256, size=(N, 4, 12, 12, 3), dtype=np.uint8)),
        }
    )
    return X, y


def cpu(**params):
    return dict(device="cpu", random_state=0, **params)


def _vectorizer():
    """The one-line learners' vectorizer, with a small frozen image tower and no
    cache folder (the other kinds as detected: categories, numbers)."""
    return MultimodalVectorizer(
        image=ImageEncoder("cnn", max_epochs=0, **cpu()), memory=None, random_state=0
    )


def _cases():
    """name -> (estimator factory, columns or None for the table, fit with y, output)."""
    img = dict(max_epochs=1, **cpu())
    return {
        "vectorizer": (_vectorizer, TABLE, False, "transform"),
        "one-line classifier": (
            lambda: MultimodalClassifier(vectorizer=_vectorizer(), random_state=0),
            TABLE,
            True,
            "predict_proba",
        ),
        "one-line classifier, best preset": (
            lambda: MultimodalClassifier(
                preset="best", vectorizer=_vectorizer(), cv=2, random_state=0
            ),
            TABLE,
            True,
            "predict_proba",
        ),
        "one-line regressor": (
            lambda: MultimodalRegressor(vectorizer=_vectorizer(), random_state=0),
            TABLE,
            True,
            "predict",
        ),
        "image cnn": (lambda: ImageEncoder("cnn", **img), "image", True, "transform"),
        "text lstm": (lambda: TextEncoder("lstm", **img), "title", True, "transform"),
        "text wordllama": (
            lambda: TextEncoder("wordllama", **cpu()),
            "title",
            False,
            "transform",
        ),
        "image efficientnet_lite0": (
            lambda: ImageEncoder(**cpu()),
            "image",
            False,
            "transform",
        ),
        "audio cnn": (
            lambda: AudioEncoder(1000, duration=0.4, **img),
            "audio",
            True,
            "transform",
        ),
        "video cnn gru": (
            lambda: VideoEncoder("cnn", n_frames=4, pooling="gru", **img),
            "video",
            True,
            "transform",
        ),
        "audio features": (lambda: AudioFeatures(1000), "audio", False, "transform"),
        "fuser pipeline": (
            lambda: make_pipeline(
                MultimodalFuser(
                    [
                        ("img", ImageEncoder("cnn", max_epochs=0, **cpu()), "image"),
                        ("txt", TextEncoder("wordllama", **cpu()), "title"),
                        ("brand", OneHotEncoder(), ["brand"]),
                        ("price", "passthrough", ["price"]),
                    ]
                ),
                LogisticRegression(),
            ),
            None,
            True,
            "predict_proba",
        ),
        "late fusion": (
            lambda: LateFusionClassifier(
                [
                    (
                        "img",
                        make_pipeline(ImageEncoder("cnn", **img), LogisticRegression()),
                        "image",
                    ),
                    (
                        "txt",
                        make_pipeline(TextEncoder("lstm", **img), LogisticRegression()),
                        "title",
                    ),
                ],
                voting="stacking",
                cv=2,
            ),
            None,
            True,
            "predict_proba",
        ),
        "late fusion regressor": (
            lambda: LateFusionRegressor(
                [
                    ("img", make_pipeline(AudioFeatures(1000), Ridge()), "audio"),
                    ("price", Ridge(), ["price"]),
                ]
            ),
            None,
            True,
            "predict",
        ),
        "net": (
            lambda: MultimodalNetClassifier(
                [
                    ("img", ImageEncoder("cnn"), "image"),
                    ("txt", TextEncoder("lstm"), "title"),
                    ("price", "passthrough", ["price"]),
                ],
                max_epochs=2,
                **cpu(),
            ),
            None,
            True,
            "predict_proba",
        ),
        "net regressor": (
            lambda: MultimodalNetRegressor(
                [("snd", AudioEncoder(1000, duration=0.4), "audio")],
                max_epochs=1,
                **cpu(),
            ),
            None,
            True,
            "predict",
        ),
        "matcher": (
            lambda: MultimodalMatcher(
                [
                    ("img", ImageEncoder("cnn"), "image"),
                    ("txt", TextEncoder("lstm"), "title"),
                ],
                embedding_dim=4,
                max_epochs=1,
                **cpu(),
            ),
            ["image", "title"],
            False,
            "decision_function",
        ),
    }


CASES = _cases()


@pytest.fixture(scope="module")
def fitted(table):
    X, y = table
    out = {}
    for name, (make, columns, with_y, method) in CASES.items():
        Xf = X if columns is None else X[columns]
        target = y.astype(float) if "regressor" in name else y
        est = make().fit(Xf, target) if with_y else make().fit(Xf)
        out[name] = (est, Xf, method)
    return out


def _check_no_pickle(path):
    """Every member of a skops file is JSON, a numpy array, safetensors or text bytes,
    or a skops file checked the same way (a skrub state, see SkrubState)."""
    from safetensors.torch import load as load_safetensors

    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            data = z.read(name)
            if name == "schema.json":
                json.loads(data)
            elif name.endswith(".npy"):
                np.load(io.BytesIO(data), allow_pickle=False)
            else:
                assert name.endswith(".bin"), name
                if zipfile.is_zipfile(io.BytesIO(data)):
                    _check_no_pickle(io.BytesIO(data))
                    continue
                try:
                    load_safetensors(data)
                except Exception:  # noqa: BLE001 - then it must be text
                    data.decode("utf-8")


def _save_and_check(est, path, packages=OWN_PACKAGES):
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert {t.split(".")[0] for t in untrusted} <= packages, untrusted
    _check_no_pickle(path)
    return sio.load(path, trusted=untrusted)


@pytest.mark.parametrize("name", list(CASES))
def test_skops_round_trip_equals_joblib(name, fitted, tmp_path):
    est, X, method = fitted[name]
    loaded = _save_and_check(est, tmp_path / "model.skops")
    joblib.dump(est, tmp_path / "model.joblib")
    reference = joblib.load(tmp_path / "model.joblib")
    expected = getattr(reference, method)(X)
    assert_array_equal(getattr(loaded, method)(X), expected)
    assert_array_equal(getattr(est, method)(X), expected)


def test_zero_shot_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x0", "x1"])
    pairs["title"] = [f"colour_{['red', 'blue'][i % 2]}" for i in range(40)]
    matcher = MultimodalMatcher(
        [("point", "passthrough", ["x0", "x1"]), ("title", CountVectorizer(), "title")],
        embedding_dim=4,
        max_epochs=1,
        **cpu(),
    ).fit(pairs)
    clf = ZeroShotClassifier(matcher, classes=["red", "blue"], template="colour_{}")
    clf.fit(pairs[["x0", "x1"]])
    loaded = _save_and_check(clf, tmp_path / "zero_shot.skops")
    reference = pickle.loads(pickle.dumps(clf))
    assert_array_equal(
        loaded.predict_proba(pairs[["x0", "x1"]]),
        reference.predict_proba(pairs[["x0", "x1"]]),
    )


def test_optimizer_and_training_state_survive(fitted, table, tmp_path):
    # partial_fit keeps the optimizer's state (nested dicts with int keys, numbers
    # and tensors) and the training head; a loaded encoder continues from them.
    X, y = table
    enc = ImageEncoder("cnn", **cpu())
    enc.partial_fit(X["image"], y, classes=[0, 1])
    loaded = _save_and_check(enc, tmp_path / "partial.skops")
    assert loaded.optimizer is torch.optim.Adam
    saved, restored = enc._optimizer_state_, loaded._optimizer_state_
    assert restored["param_groups"] == saved["param_groups"]
    assert list(restored["state"]) == list(saved["state"])
    for key, value in saved["state"][0].items():
        assert torch.equal(restored["state"][0][key], value), key
    reference = pickle.loads(pickle.dumps(enc))
    for est in (loaded, reference):
        est.partial_fit(X["image"], y)
    assert_array_equal(loaded.transform(X["image"]), reference.transform(X["image"]))


def _rewrite_member(path, largest, transform):
    """Rewrite the skops file at ``path`` with its largest .bin member transformed."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    name = max(
        (n for n in members if n.endswith(".bin")), key=lambda n: len(members[n])
    )
    assert largest(members[name])
    members[name] = transform(members[name])
    with zipfile.ZipFile(path, "w") as z:
        for key, value in members.items():
            z.writestr(key, value)


def _is_safetensors(data):
    return data[8:9] == b"{"


def test_tampered_weights_fail_to_load(fitted, tmp_path):
    est, _, _ = fitted["image cnn"]
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    trusted = sio.get_untrusted_types(file=path)

    def flip_last_byte(data):
        return data[:-1] + bytes([data[-1] ^ 0xFF])

    _rewrite_member(path, _is_safetensors, flip_last_byte)
    with pytest.raises(
        ValueError, match=r"ImageEncoder.module_ do not match their sha256"
    ):
        sio.load(path, trusted=trusted)

    # A pickle in place of the weights is refused unread.
    sio.dump(est, path)
    buffer = io.BytesIO()
    torch.save(est.module_.state_dict(), buffer)
    _rewrite_member(path, _is_safetensors, lambda data: buffer.getvalue())
    with pytest.raises(ValueError, match="refuses a weights blob"):
        sio.load(path, trusted=trusted)


def test_tampered_pickle_fails_too(fitted):
    # joblib files hold the same blobs: the check is the blob's, not skops'.
    est, _, _ = fitted["image cnn"]
    blob = TensorState.from_state(est.module_.state_dict(), "ImageEncoder.module_")
    data = bytearray(pickle.dumps(est))
    at = data.find(blob.data[-64:])
    assert at > 0
    data[at] ^= 0xFF
    with pytest.raises(ValueError, match="do not match their sha256 digest"):
        pickle.loads(bytes(data))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fall-back to the CPU")
def test_a_gpu_fitted_file_loads_on_the_cpu(fitted, table, tmp_path):
    est, X, _ = fitted["text lstm"]
    expected = est.transform(X)
    est.device_ = "cuda:0"  # as if fitted on a GPU: the file holds CPU tensors
    try:
        sio.dump(est, tmp_path / "gpu.skops")
    finally:
        est.device_ = "cpu"
    trusted = sio.get_untrusted_types(file=tmp_path / "gpu.skops")
    with pytest.warns(DeviceWarning, match="fitted on 'cuda:0'"):
        loaded = sio.load(tmp_path / "gpu.skops", trusted=trusted)
    assert loaded.device_ == "cpu"
    assert_array_equal(loaded.transform(X), expected)


class _UserAdam(torch.optim.Adam):
    pass


def test_a_user_optimizer_is_listed_as_untrusted(table, tmp_path):
    X, y = table
    enc = ImageEncoder("cnn", optimizer=_UserAdam, max_epochs=1, **cpu())
    sio.dump(enc.fit(X["image"], y), tmp_path / "user.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "user.skops")
    assert f"{__name__}._UserAdam" in untrusted


def test_stand_ins_refuse_what_is_not_theirs():
    with pytest.raises(ValueError, match="torch.optim only"):
        TorchClass("os", "system")
    with pytest.raises(ValueError, match="not a torch.optim optimizer class"):
        TorchClass("torch.optim", "lr_scheduler")
    with pytest.raises(ValueError, match="refuses the preprocessor file"):
        HFPreprocessor("tokenizer", {"../tokenizer.json": b"{}"})
    with pytest.raises(ValueError, match="refuses the preprocessor file"):
        HFPreprocessor("tokenizer", {"vocab.pkl": b""})
    with pytest.raises(ValueError, match="too short"):
        TensorState(b"abc", "0")


# -- the one-line learners' skrub part ---------------------------------------------------
def _every_tabular_kind(n=60):
    """A column of each kind skrub's TableVectorizer tells apart, by what it builds."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "brand": [f"b{i % 3}" for i in range(n)],  # one-hot
            "code": [f"code {i} part {i * 7 % 13}" for i in range(n)],  # string encoder
            "price": rng.normal(size=n),
            "count": rng.integers(0, 5, n),
            "flag": rng.integers(0, 2, n).astype(bool),
            "number_text": [str(v) for v in rng.normal(size=n)],
            "day_text": pd.date_range("2020-01-01", periods=n).astype(str),
            "paris": pd.date_range("2020-01-01", periods=n, tz="Europe/Paris"),
            "utc": pd.date_range("2021-03-01", periods=n, freq="h", tz="UTC"),
            "wait": pd.to_timedelta(rng.integers(0, 100, n), unit="s"),
            "category": pd.Categorical([f"c{i % 7}" for i in range(n)]),
            "with_nulls": [None if i % 5 == 0 else f"v{i % 3}" for i in range(n)],
            "empty": [None] * n,
            "constant": [1] * n,
        }
    )


def test_the_skrub_part_holds_only_types_skmm_vouches_for(tmp_path):
    from skmm.auto._tabular import TableVectorizer

    X = _every_tabular_kind()
    vectorizer = TableVectorizer().fit(X)
    assert len(set(vectorizer.column_to_kind_.values())) >= 4, (
        vectorizer.column_to_kind_
    )
    path = tmp_path / "table.skops"
    sio.dump(vectorizer, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert sorted(untrusted) == [
        "skmm._persistence.SkrubState",
        "skmm.auto._tabular.TableVectorizer",
    ]
    _check_no_pickle(path)
    expected = vectorizer.transform(X)
    assert_array_equal(sio.load(path, trusted=untrusted).transform(X), expected)
    assert_array_equal(pickle.loads(pickle.dumps(vectorizer)).transform(X), expected)


def test_a_skrub_state_naming_another_type_is_refused(tmp_path):
    import os

    from skmm.auto._tabular import TableVectorizer

    path = tmp_path / "table.skops"
    sio.dump(TableVectorizer().fit(_every_tabular_kind()), path)
    trusted = sio.get_untrusted_types(file=path)
    # The skrub state swapped for one that names a function of os: the outer file
    # still lists only skmm's types, the stand-in refuses what is inside.
    _rewrite_member(
        path,
        lambda data: zipfile.is_zipfile(io.BytesIO(data)),
        lambda data: sio.dumps({"cols": os.system}),
    )
    assert sio.get_untrusted_types(file=path) == trusted
    with pytest.raises(ValueError, match="refuses the stored state of a skrub Table"):
        sio.load(path, trusted=trusted)


def _edit_schema(data, old, new):
    """A skops file (bytes) with ``old`` replaced by ``new`` in its schema."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["schema.json"] = members["schema.json"].replace(old, new)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, value in members.items():
            z.writestr(name, value)
    return buffer.getvalue()


def test_a_time_zone_read_from_a_file_is_refused(tmp_path):
    # pandas reads a "dateutil/<path>" time zone from that path: a state edited to
    # name one must not make loading open a file of the attacker's choosing.
    from skmm.auto._tabular import TableVectorizer

    X = _every_tabular_kind()[["paris", "price"]]
    path = tmp_path / "table.skops"
    sio.dump(TableVectorizer().fit(X), path)
    trusted = sio.get_untrusted_types(file=path)
    _rewrite_member(
        path,
        lambda data: zipfile.is_zipfile(io.BytesIO(data)),
        lambda data: _edit_schema(
            data, b'\\"Europe/Paris\\"', b'\\"dateutil//etc/passwd\\"'
        ),
    )
    with pytest.raises(ValueError, match="which pandas would read from a file"):
        sio.load(path, trusted=trusted)
    # Nor does a number in place of the file's bytes allocate that many bytes.
    with pytest.raises(ValueError, match="not a skops file"):
        SkrubState(10**12)


def test_pickles_keep_skrubs_own_state():
    # joblib, copy and Dask's pickles need no skops file (its zip times would make
    # two pickles of one model differ, and it costs a second per copy); a date
    # column with a dateutil time zone, which skops cannot store, pickles too.
    import copy

    from skmm.auto._tabular import TableVectorizer

    X = _every_tabular_kind()[["brand", "price", "day_text"]]
    X["stamp"] = pd.date_range("2020-01-01", periods=len(X), tz="dateutil/Europe/Paris")
    vectorizer = TableVectorizer().fit(X)
    assert pickle.dumps(vectorizer) == pickle.dumps(vectorizer)
    assert joblib.hash(vectorizer) == joblib.hash(copy.deepcopy(vectorizer))
    plain = TableVectorizer().fit(X[["brand", "price", "day_text"]])
    assert b"schema.json" not in pickle.dumps(plain)  # no skops file inside
    expected = vectorizer.transform(X)
    assert_array_equal(copy.deepcopy(vectorizer).transform(X), expected)
    assert_array_equal(pickle.loads(pickle.dumps(vectorizer)).transform(X), expected)


class _UserScaler(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2.0


def test_a_user_type_in_the_skrub_part_is_listed_as_skops_would(tmp_path):
    from skmm.auto._tabular import TableVectorizer

    X = _every_tabular_kind()[["brand", "price"]]
    vectorizer = TableVectorizer(numeric=_UserScaler()).fit(X)
    sio.dump(vectorizer, tmp_path / "user.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "user.skops")
    # skmm vouches for its own skrub types only: the whole state is left to the file.
    assert f"{__name__}._UserScaler" in untrusted
    assert any(t.startswith("skrub.") for t in untrusted)
    loaded = sio.load(tmp_path / "user.skops", trusted=untrusted)
    assert_array_equal(loaded.transform(X), vectorizer.transform(X))


# -- pretrained hubs: their tokenizers and configs as data --------------------------------
# Words of the tiny BERT's vocabulary (conftest.hf_bert, built from _tiny_hubs.TITLES).
TITLES = ["nike black shoes", "puma blue tshirt", "titan silver watch"]


def test_hub_preprocessing_round_trips(hf_bert, hf_wav2vec2, clip_file, tmp_path):
    waves = list(np.random.default_rng(0).normal(size=(3, 800)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cases = [
            (TextEncoder(f"hf:{hf_bert}", **cpu()), TITLES),
            (AudioEncoder(8000, backbone=f"hf:{hf_wav2vec2}", **cpu()), waves),
            (
                TextEncoder(
                    f"open_clip:{TINY_CLIP_NAME}", weights=str(clip_file), **cpu()
                ),
                TITLES,
            ),
        ]
        for i, (enc, X) in enumerate(cases):
            expected = enc.fit_transform(X)
            loaded = _save_and_check(enc, tmp_path / f"{i}.skops")
            assert type(
                loaded.processor_ if hasattr(loaded, "processor_") else None
            ) is type(getattr(enc, "processor_", None))
            assert_array_equal(loaded.transform(X), expected)
