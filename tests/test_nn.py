"""End-to-end multimodal nets: API checks, fusion, training, pickling, real data."""

import gc
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_class_weight

from skmm.callbacks import Callback
from skmm.encoders import AudioEncoder, ImageEncoder, TextEncoder
from skmm.fusion import fuse
from skmm.nn import MultimodalNetClassifier, MultimodalNetRegressor
from skmm.nn._towers import FusionLayer
from skmm.utils import DeviceWarning
from skmm.utils._torch import (
    batch_norm_recalibration,
    state_dict_to_bytes,
    torch_seed,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- synthetic multimodal data -------------------------------------------------------------
AUDIO_RATE = 800
TINY_AUDIO = dict(sample_rate=AUDIO_RATE, duration=0.25, n_fft=64, n_mels=8)
WORDS = [["red", "shirt"], ["blue", "jeans"], ["black", "shoes"]]


def make_data(n=150, n_classes=3, seed=0, missing_audio=0.0):
    """Images, sounds, titles and numbers that each carry the class, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    images, sounds, titles = [], [], []
    t = np.arange(int(AUDIO_RATE * 0.25)) / AUDIO_RATE
    for label in y:
        image = rng.normal(0.3, 0.15, (12, 12))
        image[2:6, 2 + 3 * label : 5 + 3 * label] += 0.6
        images.append((np.clip(image, 0, 1) * 255).astype(np.uint8))
        wave = np.sin(2 * np.pi * (60 + 90 * label) * t) + rng.normal(0, 0.5, len(t))
        sounds.append(wave.astype(np.float32))
        noise = rng.choice(["cotton", "slim", "new", "classic"], 2)
        titles.append(" ".join([*rng.permutation(WORDS[label]), *noise]))
    X = pd.DataFrame(
        {
            "image": images,
            "audio": sounds,
            "title": titles,
            "price": y + rng.normal(0, 1.0, n),
            "size": rng.normal(0, 1, n),
            "colour": rng.choice(["red", "blue", "green"], n),
        }
    )
    if missing_audio:
        X.loc[rng.random(n) < missing_audio, "audio"] = None
    return X, y


def image_audio(**params):
    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn"), "image"),
            ("snd", AudioEncoder(**TINY_AUDIO), "audio"),
        ],
        max_epochs=8,
        lr=3e-3,
        device="cpu",
        random_state=0,
    ).set_params(**params)


def numeric(X, y, sample_weight=None, **params):
    return MultimodalNetClassifier(
        [("left", "passthrough", [0, 1]), ("right", "passthrough", [2, 3])],
        **{"max_epochs": 5, "device": "cpu", "random_state": 0, **params},
    ).fit(X, y, sample_weight=sample_weight)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 2] > 0).astype(int)
    return X, y


# -- fusion --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fusion", ["concat", "sum", "mean", "product", "max", "tensor"]
)
def test_fusion_layer_is_the_numpy_operator(fusion):
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(5, 3)), rng.normal(size=(5, 3))]
    layer = FusionLayer(fusion, [3, 3], projection=None)
    out = layer([torch.from_numpy(b) for b in blocks], torch.ones(5, 2, dtype=bool))
    assert_allclose(out.numpy(), fuse(blocks, fusion), rtol=1e-12)
    assert out.shape[1] == layer.out_features


def _tabular_tower(tower, x):
    """A TabularTower's output from its parameters, in numpy."""
    mean, scale = tower.mean.numpy(), tower.scale.numpy()
    w, b = tower.linear.weight.numpy(), tower.linear.bias.numpy()
    return np.maximum(((x - mean) / scale) @ w.T + b, 0)


def _linear(layer, x):
    return x @ layer.weight.numpy().T.astype(np.float64) + (
        0 if layer.bias is None else layer.bias.numpy()
    )


@pytest.mark.parametrize(
    "fusion, width",
    [
        ("concat", 128),
        ("sum", 64),
        ("mean", 64),
        ("product", 64),
        ("max", 64),
        ("tensor", 17 * 17),
        ("attention", 128),
        ("dot", 64 + 64 + 1),
    ],
)
def test_net_fuses_its_towers_with_the_shared_operators(blobs, fusion, width):
    X, y = blobs
    net = numeric(X, y, fusion=fusion)
    fused = net.transform(X)
    assert fused.shape == (len(X), width) and fused.dtype == np.float32
    assert len(net.get_feature_names_out()) == width
    # The reference is computed in numpy from the parameters, by the formulas of the
    # docs, not by the module's own methods.
    with torch.no_grad():
        towers, layer = net.module_.towers, net.module_.fusion
        blocks = [
            _tabular_tower(towers[0], X[:, :2]),
            _tabular_tower(towers[1], X[:, 2:]),
        ]
        # Each tower's output standardised with its running statistics (TowerNorm).
        blocks = [
            (b - n.running_mean.numpy()) / np.sqrt(n.running_var.numpy() + n.eps)
            for n, b in zip(net.module_.norms, blocks)
        ]
        if layer.projections is not None:
            blocks = [
                np.maximum(_linear(p[0], b), 0)
                for p, b in zip(layer.projections, blocks)
            ]
        if fusion == "attention":
            # Additive attention: v . tanh(W b + c) per modality, a softmax over the
            # modalities, times their number; the weighted blocks side by side.
            scores = np.hstack(
                [
                    _linear(s[2], np.tanh(_linear(s[0], b)))
                    for s, b in zip(layer.scores, blocks)
                ]
            )
            weights = np.exp(scores - scores.max(1, keepdims=True))
            weights = 2 * weights / weights.sum(1, keepdims=True)
            assert weights.std(0).min() > 0  # weights vary from sample to sample
            expected = np.hstack([w[:, None] * b for w, b in zip(weights.T, blocks)])
            assert_allclose(net.modality_weights(X), weights / 2, rtol=1e-4, atol=1e-6)
        elif fusion == "dot":
            dots = np.maximum((blocks[0] * blocks[1]).sum(1, keepdims=True), 0)
            expected = np.hstack([*blocks, dots])
        elif fusion == "tensor":
            ones = np.ones((len(X), 1))
            a, b = (np.hstack([ones, blk]) for blk in blocks)
            expected = (a[:, :, None] * b[:, None, :]).reshape(len(X), -1)
        else:
            stack = np.stack(blocks)
            expected = {
                "concat": lambda: np.hstack(blocks),
                "sum": lambda: stack.sum(0),
                "mean": lambda: stack.mean(0),
                "product": lambda: stack.prod(0),
                "max": lambda: stack.max(0),
            }[fusion]()
    assert_allclose(fused, expected, rtol=1e-4, atol=1e-5)


def test_projection_sets_the_common_width(blobs):
    X, y = blobs
    assert numeric(X, y, fusion="sum", projection=8).transform(X).shape == (120, 8)
    assert numeric(X, y, fusion="concat", projection=5).transform(X).shape == (120, 10)
    assert numeric(X, y, fusion="tensor", projection=3).transform(X).shape == (120, 16)


def test_columns_as_in_column_transformer(blobs):
    X, y = blobs
    net = MultimodalNetClassifier(
        [
            ("mask", "passthrough", np.array([True, True, False, False])),
            ("call", "passthrough", lambda X: [2, 3]),
        ],
        max_epochs=2,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert [cols for *_, cols in net.encoders_][1] == [2, 3]
    same = numeric(X, y, max_epochs=2)
    assert_allclose(net.predict_proba(X), same.predict_proba(X), rtol=1e-6)


def test_attention_ignores_missing_modalities():
    layer = FusionLayer("attention", [4, 4, 4], projection=None)
    blocks = [torch.randn(3, 4) for _ in range(3)]
    available = torch.tensor([[True, False, True], [False, False, False], [1, 1, 1]])
    with torch.no_grad():
        weights = layer.attention(blocks, available.bool())
    assert_allclose(weights[0, 1].item(), 0.0)
    # Weights sum to the number of modalities present: equal scores change nothing.
    assert_allclose(weights.sum(1).numpy(), [2.0, 0.0, 3.0], rtol=1e-6)
    assert weights[2].std() > 0
    assert torch.isfinite(layer(blocks, available.bool())).all()


# -- training ------------------------------------------------------------------------------
def test_early_stopping_stops_on_a_plateau_and_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 6))
    y = X[:, 0] + rng.normal(
        0, 2.0, 150
    )  # weak signal: validation R² peaks, then falls
    params = dict(
        encoders=[("a", "passthrough", [0, 1, 2]), ("b", "passthrough", [3, 4, 5])],
        hidden_layer_sizes=(256,),
        dropout=0.0,
        lr=1e-2,
        validation_fraction=0.3,
        device="cpu",
        random_state=0,
    )
    net = MultimodalNetRegressor(**params, max_epochs=60, n_iter_no_change=4).fit(X, y)
    scores = net.validation_scores_
    best = int(np.argmax(scores))
    assert net.n_iter_ < 60
    assert len(scores) == len(net.loss_curve_) == net.n_iter_ == best + 1 + 4
    assert net.best_validation_score_ == max(scores) > scores[-1]
    # The same run cut at the best epoch has the weights the early-stopped net kept.
    at_best = MultimodalNetRegressor(
        **params, max_epochs=best + 1, n_iter_no_change=100
    ).fit(X, y)
    assert_allclose(net.predict(X), at_best.predict(X), rtol=1e-5)
    assert not np.allclose(net.loss_curve_[-1], net.loss_curve_[best])


def test_classifier_stops_early_on_labels_it_cannot_learn():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 4)), rng.integers(0, 2, 120)
    net = numeric(X, y, max_epochs=40, n_iter_no_change=3, lr=1e-2)
    assert net.n_iter_ < 40
    assert net.best_validation_score_ == max(net.validation_scores_)
    no_stop = numeric(X, y, max_epochs=4, early_stopping=False)
    assert no_stop.validation_scores_ is None and no_stop.n_iter_ == 4
    assert not hasattr(no_stop, "best_validation_score_")


def test_same_seed_same_predictions_on_cpu():
    X, y = make_data(90)
    net = image_audio(max_epochs=3, modality_dropout=0.3, img__augment="default")
    first = clone(net).fit(X, y).predict_proba(X)
    again = clone(net).fit(X, y).predict_proba(X)
    assert_array_equal(first, again)
    other = clone(net).set_params(random_state=1).fit(X, y).predict_proba(X)
    assert not np.allclose(first, other)


class _InitialTowers(Callback):
    def on_train_begin(self, estimator, *, module, optimizer):
        self.states = [
            {k: v.clone() for k, v in t.state_dict().items()} for t in module.towers
        ]


def _changed(tower, initial):
    return [k for k, v in tower.state_dict().items() if not torch.equal(v, initial[k])]


def test_towers_train_jointly_and_encoders_are_cloned():
    X, y = make_data(150)
    img, snd = ImageEncoder("cnn"), AudioEncoder(**TINY_AUDIO)
    initial = _InitialTowers()
    net = MultimodalNetClassifier(
        [("img", img, "image"), ("snd", snd, "audio"), ("txt", "drop", "title")],
        max_epochs=6,
        lr=3e-3,
        callbacks=[initial],
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert net.score(X, y) > 0.9
    # Every weight of both towers moved: they trained with the head.
    for tower, state in zip(net.module_.towers, initial.states):
        weights = {name for name, _ in tower.named_parameters()}
        assert weights <= set(_changed(tower, state)), weights - set(
            _changed(tower, state)
        )
    assert not hasattr(img, "module_") and not hasattr(snd, "image_size_")
    assert list(net.named_encoders_) == ["img", "snd", "txt"]
    assert net.named_encoders_["txt"] == "drop" and len(net.module_.towers) == 2
    fitted = net.named_encoders_["img"]
    assert fitted is not img and fitted.image_size_ == (12, 12)
    # The exposed encoder holds a copy of the jointly trained tower: no tensor is
    # shared with the net, and it encodes on its own.
    tower = net.module_.towers[0]
    assert fitted.module_ is not tower
    assert not {p.data_ptr() for p in fitted.module_.parameters()} & {
        p.data_ptr() for p in net.module_.parameters()
    }
    for (name, a), b in zip(
        tower.state_dict().items(), fitted.module_.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert fitted.transform(X["image"]).shape == (150, 128)
    assert net.get_params()["img__backbone"] == "cnn"
    assert net.loss_curve_[-1] < net.loss_curve_[0]


def test_exposed_encoders_are_standalone_copies():
    """A fitted net's exposed encoder transforms on its own, survives ``del net``, and
    changing its weights does not change the net's predictions (nor the reverse)."""
    X, y = make_data(60)
    net = image_audio(max_epochs=2).fit(X, y)
    proba = net.predict_proba(X)
    enc = net.named_encoders_["img"]
    features = enc.transform(X["image"])
    with torch.no_grad():
        for p in enc.module_.parameters():
            p.add_(1.0)
    assert_array_equal(net.predict_proba(X), proba)
    assert not np.allclose(enc.transform(X["image"]), features)
    again = net.named_encoders_["img"]
    assert_array_equal(again.transform(X["image"]), features)
    with torch.no_grad():
        for p in net.module_.towers[0].parameters():
            p.mul_(0.0)
    assert_array_equal(again.transform(X["image"]), features)
    del net
    gc.collect()
    assert_array_equal(again.transform(X["image"]), features)
    # Nothing of a fitted net's encoders_ holds a module: the towers are the net's.
    net = image_audio(max_epochs=2).fit(X, y)
    assert all(
        "module_" not in vars(e) for _, e, _ in net.encoders_ if not isinstance(e, str)
    )


def test_a_frozen_tower_does_not_train_and_is_encoded_once(monkeypatch, count_loads):
    X, y = make_data(90)
    initial = _InitialTowers()
    loads = count_loads(AudioEncoder)
    net = MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn"), "image"),
            ("snd", AudioEncoder(**TINY_AUDIO, max_epochs=0), "audio"),
        ],
        max_epochs=4,
        early_stopping=False,
        callbacks=[initial],
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert _changed(net.module_.towers[1], initial.states[1]) == []
    assert _changed(net.module_.towers[0], initial.states[0]) != []
    # The frozen tower's features were computed once (plus the statistics sample),
    # not once per epoch: 90 rows at most twice, not 4 x 90.
    assert sum(loads) <= 2 * 90, loads


def test_text_and_tabular_towers():
    X, y = make_data(120)
    net = MultimodalNetClassifier(
        [
            ("txt", TextEncoder("lstm", hidden_size=8, embedding_dim=8), "title"),
            ("num", "passthrough", ["price", "size"]),
            ("cat", OneHotEncoder(), ["colour"]),
        ],
        fusion="attention",
        max_epochs=10,
        batch_size=32,
        lr=1e-2,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert net.score(X, y) > 0.9
    assert net.named_encoders_["txt"].vocabulary_["shirt"] > 1
    assert list(net.named_encoders_["cat"].transformer_.categories_[0]) == [
        "blue",
        "green",
        "red",
    ]
    assert_array_equal(net.feature_names_in_, X.columns)


def test_modality_dropout_copes_with_all_audio_missing():
    X, y = make_data(300, missing_audio=0.1)
    X_test, y_test = make_data(150, seed=1)
    # The image is the weaker modality here: 40% of the images show another class,
    # so a net that may always hear the sound leans on it.
    rng = np.random.default_rng(0)
    for frame in (X, X_test):
        swap = rng.random(len(frame)) < 0.4
        frame.loc[swap, "image"] = pd.Series(
            list(frame["image"].sample(frac=1, random_state=0)), index=frame.index
        )[swap]
    no_audio = X_test.assign(audio=None)
    scores = {}
    for rate in (0.0, 0.5):
        # Without the towers' own losses, only modality dropout teaches the fused
        # head to do without the sound.
        net = image_audio(
            modality_dropout=rate, max_epochs=10, tower_loss_weight=0.0
        ).fit(X, y)
        scores[rate] = (net.score(X_test, y_test), net.score(no_audio, y_test))
    # Measured, both modalities: 0.75 without dropout, 0.83 with; image alone (at most
    # 0.6 + 0.4 / 3 = 0.73 here): 0.74 without dropout, 0.71 with. The towers'
    # outputs are standardised, so a missing block (zeros) is their mean and the head
    # copes even without modality dropout (0.59 before they were).
    assert min(s[0] for s in scores.values()) > 0.72, scores
    assert min(s[1] for s in scores.values()) > 0.65, scores


def test_class_weight_balanced_weights_the_loss():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.where(X[:, 0] + rng.normal(0, 1.0, 200) > 1.4, "rare", "common")
    plain = numeric(X, y, max_epochs=15, early_stopping=False)
    balanced = numeric(
        X, y, max_epochs=15, early_stopping=False, class_weight="balanced"
    )
    expected = compute_class_weight("balanced", classes=balanced.classes_, y=y)
    assert_allclose(balanced._class_weights_, expected, rtol=1e-6)
    assert balanced._class_weights_[1] > 2
    n_rare = [(net.predict(X) == "rare").sum() for net in (plain, balanced)]
    assert n_rare[1] > n_rare[0], n_rare


def test_sample_weight_weighs_the_loss():
    # Same data as above: weighting the rare rows like class_weight="balanced" does
    # must give the same net, and more "rare" predictions than no weights.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.where(X[:, 0] + rng.normal(0, 1.0, 200) > 1.4, "rare", "common")
    params = dict(max_epochs=15, early_stopping=False)
    balanced = numeric(X, y, **params, class_weight="balanced")
    weights = compute_class_weight("balanced", classes=balanced.classes_, y=y)
    weighted = numeric(X, y, **params, sample_weight=weights[(y == "rare").astype(int)])
    plain = numeric(X, y, **params)
    assert_allclose(weighted.predict_proba(X), balanced.predict_proba(X), atol=1e-5)
    n_rare = [(net.predict(X) == "rare").sum() for net in (plain, weighted)]
    assert n_rare[1] > n_rare[0], n_rare


def test_l1_penalty_shrinks_weights(blobs):
    X, y = blobs
    plain = numeric(X, y, early_stopping=False, max_epochs=20, lr=1e-2)
    sparse = numeric(X, y, early_stopping=False, max_epochs=20, lr=1e-2, l1=0.05)
    head = [net.module_.head[-1].weight.abs().mean().item() for net in (plain, sparse)]
    assert head[1] < 0.5 * head[0], head


def test_frozen_pretrained_tower_keeps_its_weights(tmp_path):
    X, y = make_data(60)
    weights = tmp_path / "cnn.pt"
    with torch_seed(3):
        pretrained = ImageEncoder("cnn").set_params(device="cpu")
        pretrained.fit(X["image"], y)
    torch.save(pretrained.module_.state_dict(), weights)
    net = MultimodalNetClassifier(
        [("img", ImageEncoder("cnn", weights=str(weights)), "image")],
        max_epochs=3,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    tower = net.module_.towers[0].state_dict()
    for key, value in pretrained.module_.state_dict().items():
        torch.testing.assert_close(tower[key], value)
    assert net.loss_curve_[-1] < net.loss_curve_[0]  # the head still learned


def test_transform_feeds_another_model(blobs):
    X, y = blobs
    net = numeric(X, y, fusion="max")
    pipe = make_pipeline(FrozenEstimator(net), SVC()).fit(X, y)
    assert pipe.score(X, y) > 0.9
    assert_allclose(pipe[0].transform(X), net.transform(X))
    frame = clone(net).set_output(transform="pandas").fit(X, y).transform(X)
    assert list(frame.columns[:2]) == [
        "multimodalnetclassifier0",
        "multimodalnetclassifier1",
    ]


def test_regressor_multi_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    Y = np.column_stack([X[:, 0] * 10 + 100, X[:, 3] - X[:, 1]])
    net = MultimodalNetRegressor(
        [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
        lr=1e-2,
        max_epochs=40,
        device="cpu",
        random_state=0,
    ).fit(X, Y)
    assert net.predict(X).shape == (150, 2) and net.n_outputs_ == 2
    assert net.score(X, Y) > 0.8
    assert_allclose(net.y_mean_, Y.mean(0))


def test_regressor_tower_predict_is_each_modality_alone():
    # The target is the first group's: the tower that reads it predicts it in the
    # target's units, the other tower only its mean; a missing row is NaN.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = 5 * X[:, 0] + 2 * X[:, 1] + 50
    net = MultimodalNetRegressor(
        [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
        lr=1e-2,
        max_epochs=40,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    X_test = X.copy()
    X_test[:5, 2:] = np.nan  # tower "b" missing in the first 5 rows
    X_test[5, 3] = np.nan  # one value of two: "b" is there, the value imputed
    pred = net.tower_predict(X_test)
    assert list(pred) == ["a", "b"] and pred["a"].shape == (300,)
    assert np.isnan(pred["b"][:5]).all() and not np.isnan(pred["b"][5:]).any()
    r2_a = 1 - ((pred["a"] - y) ** 2).mean() / y.var()
    r2_b = 1 - ((pred["b"][5:] - y[5:]) ** 2).mean() / y[5:].var()
    assert r2_a > 0.9 and r2_b < 0.2, (r2_a, r2_b)


def test_verbose_shows_progress(blobs, capsys):
    X, y = blobs
    net = numeric(X, y, verbose=True, max_epochs=2)
    net.predict(X)
    err = capsys.readouterr().err
    assert "MultimodalNetClassifier fit" in err and "valid_score" in err
    assert "MultimodalNetClassifier predict" in err


# -- pickling ------------------------------------------------------------------------------
def test_pickle_round_trip_stores_the_weights_once():
    X, y = make_data(60)
    net = image_audio(max_epochs=2).fit(X, y)
    data = pickle.dumps(net)
    assert len(data) < 1.3 * len(state_dict_to_bytes(net.module_))
    loaded = pickle.loads(data)
    assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    assert_array_equal(
        loaded.named_encoders_["snd"].transform(X["audio"]),
        net.named_encoders_["snd"].transform(X["audio"]),
    )


def test_net_fitted_on_cuda_loads_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X, y = make_data(60)
    net = image_audio(max_epochs=2).fit(X, y)
    expected = net.predict_proba(X)
    net.device_ = "cuda:0"  # as if fitted on a GPU
    data = pickle.dumps(net)
    with pytest.warns(DeviceWarning, match="fitted on 'cuda:0'"):
        loaded = pickle.loads(data)
    assert loaded.device_ == "cpu"
    assert loaded.named_encoders_["img"].device_ == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(loaded.predict_proba(X), expected)


# -- errors --------------------------------------------------------------------------------
def test_a_failed_fit_leaves_the_net_as_it_was(blobs):
    X, y = make_data(60)
    net = image_audio(max_epochs=1).fit(X, y)
    before = net.predict_proba(X)
    bad = X.copy()
    bad.loc[7, "image"] = "no-such-file.png"
    with pytest.raises(ValueError, match=r"encoder 'img': column 'image', row 7"):
        net.fit(bad, y)
    assert_array_equal(net.predict_proba(X), before)
    with pytest.raises(ValueError, match=r"encoder 'img': column 'image', row 7"):
        net.predict(bad)


@pytest.mark.parametrize(
    "encoders, error, message",
    [
        ([], ValueError, "non-empty list of"),
        ([("a", "passthrough")], ValueError, r"\(name, encoder, columns\) triples"),
        ([("a", "drop", ["x"])], ValueError, "All encoders are dropped"),
        (
            [("a", "passthrough", ["x"]), ("a", "passthrough", ["z"])],
            ValueError,
            "Names provided are not unique",
        ),
        ([("a", "scale", ["x"])], ValueError, "encoder 'a': the only strings allowed"),
        ([("a", object(), ["x"])], TypeError, "encoder 'a' must be an skmm encoder"),
        (
            [("a", "passthrough", ["w"])],
            ValueError,
            r"not columns of the dataframe: {.w.}",
        ),
        ([("a", "passthrough", [])], ValueError, "selects no column of X"),
        ([("a", ImageEncoder, "x")], TypeError, "got estimator class"),
    ],
)
def test_bad_encoders(encoders, error, message):
    X = pd.DataFrame({"x": [0.0, 1.0] * 10, "z": [1.0, 0.0] * 10})
    with pytest.raises(error, match=message):
        MultimodalNetClassifier(encoders, device="cpu").fit(X, [0, 1] * 10)


def test_bad_parameters(blobs):
    X, y = blobs
    two = [("a", "passthrough", [0]), ("b", "passthrough", [1])]
    with pytest.raises(ValueError, match="needs at least 2; got 1"):
        MultimodalNetClassifier(two[:1], fusion="dot").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive"):
        MultimodalNetClassifier(two, hidden_layer_sizes=(8, 0)).fit(X, y)
    with pytest.raises(ValueError, match="'fusion' parameter .* must be a str among"):
        MultimodalNetClassifier(two, fusion="weighted").fit(X, y)
    with pytest.raises(ValueError, match="leaves 1 of the 4 samples for training"):
        MultimodalNetClassifier(two, validation_fraction=0.7).fit(X[:4], y[:4])


def test_missing_items():
    X, y = make_data(40)
    X["audio"] = None
    with pytest.raises(ValueError, match="encoder 'snd': every training item is miss"):
        image_audio().fit(X, y)
    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(100, 4))
    yn = (Xn[:, 0] > 0).astype(int)
    Xn[::3, 2] = np.nan  # the second tower is missing in a third of the rows
    net = numeric(Xn, yn, max_epochs=15, lr=1e-2)
    assert net.score(Xn, yn) > 0.9
    Xn[:, 2:] = np.nan
    assert net.score(Xn, yn) > 0.9
    Xn[0, 0] = np.inf
    with pytest.raises(ValueError, match="encoder 'left'.*infinity"):
        net.predict(Xn)


def test_batch_norm_recalibration_estimates_the_statistics_of_the_data():
    norm = torch.nn.BatchNorm1d(2)
    data = torch.randn(64, 2) * 3 + 5
    frozen = torch.nn.BatchNorm1d(2).eval()
    with batch_norm_recalibration(torch.nn.ModuleList([norm, frozen])) as norms:
        assert norms == [norm]
        for batch in data.split(16):
            norm(batch)
    assert_allclose(norm.running_mean.numpy(), data.mean(0).numpy(), rtol=1e-5)
    assert norm.momentum == 0.1 and frozen.running_mean.abs().sum() == 0


# -- real data -----------------------------------------------------------------------------
TRAIN_SPEAKERS = ["george", "jackson", "nicolas", "theo"]


@pytest.mark.slow
def test_fusion_beats_each_tower_on_hard_av_digits(record_measure):
    """Issue 19: with the encoders' own towers and the nets' default settings, the
    fused nets beat the best single tower on unheard speakers."""
    from skmm.datasets import load_av_digits

    bunch = load_av_digits(variant="hard")
    train = np.isin(bunch.speaker, TRAIN_SPEAKERS)
    X, y = bunch.data, bunch.target.to_numpy()
    img = ("img", ImageEncoder("cnn"), "image")
    snd = ("snd", AudioEncoder(sample_rate=8000, augment="default"), "audio")

    def accuracy(encoders, fusion="concat"):
        net = MultimodalNetClassifier(
            encoders, fusion=fusion, max_epochs=15, device="cpu", random_state=0
        )
        return net.fit(X[train], y[train]).score(X[~train], y[~train])

    single = {"image": accuracy([img]), "audio": accuracy([snd])}
    fused = {f: accuracy([img, snd], f) for f in ("concat", "transformer")}
    best = max(single.values())
    # Measured (seed 0, one thread): image tower 0.7175, audio tower 0.645 (0.505 and
    # 0.47 before the towers' outputs were standardised; audio 0.13 before utterance
    # normalisation, 16 bands and SpecAugment); concat 0.8825, transformer 0.87.
    record_measure("image tower alone", single["image"], 0.66)
    record_measure("audio tower alone", single["audio"], 0.58)
    record_measure("concat - best tower", fused["concat"] - best, 0.12)
    record_measure("transformer - best tower", fused["transformer"] - best, 0.11)


# -- tower heads, stages, token fusion ------------------------------------------------------
def test_transformer_fusion_masks_missing_modalities_and_pickles():
    X, y = make_data(150)
    net = image_audio(fusion="transformer", max_epochs=6).fit(X, y)
    assert net.score(X, y) > 0.9
    assert net.transform(X).shape == (150, 64)
    weights = net.modality_weights(X)
    assert weights.shape == (150, 2)
    assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    no_audio = X.assign(audio=None)
    # A missing modality is masked out of attention: weight 0, and the prediction
    # is the same whatever was in the (ignored) audio cell's place.
    assert_allclose(net.modality_weights(no_audio)[:, 1], 0.0, atol=1e-7)
    proba = net.predict_proba(no_audio)
    assert np.all(np.isfinite(proba)) and proba.shape == (150, 3)
    # Masked, not zero-filled: a zero-filled token would still carry its modality
    # embedding into attention; changing that embedding changes nothing here.
    loaded = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        loaded.module_.fusion.tokens.modality[1] += 3 * torch.randn(64)
    assert_allclose(loaded.predict_proba(no_audio), proba, rtol=1e-5, atol=1e-7)
    assert not np.allclose(loaded.predict_proba(X), net.predict_proba(X), atol=1e-4)
    loaded = pickle.loads(pickle.dumps(net))
    assert_allclose(loaded.predict_proba(no_audio), proba, rtol=1e-6)
    assert_allclose(loaded.modality_weights(X), weights, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="fusion='concat' learns no modality weights"):
        image_audio(max_epochs=1).fit(X, y).modality_weights(X)


def test_tower_heads_predict_from_one_modality_each():
    X, y = make_data(150)
    # The image carries no class here: its own head must be near chance, the audio's
    # near perfect, whatever the fused head does.
    X["image"] = [np.zeros((12, 12), np.uint8) + (i % 5) for i in range(150)]
    net = image_audio(max_epochs=8).fit(X, y)
    proba = net.tower_predict_proba(X.assign(audio=[None] * 10 + list(X.audio[10:])))
    assert list(proba) == ["img", "snd"]
    assert np.isnan(proba["snd"][:10]).all() and not np.isnan(proba["snd"][10:]).any()
    accuracy = {k: (p[10:].argmax(1) == y[10:]).mean() for k, p in proba.items()}
    assert accuracy["snd"] > 0.9 and accuracy["img"] < 0.6, accuracy
    # "auto" weighs the towers' losses by their validation scores: the useless image
    # tower ends with a smaller weight than the audio tower's.
    last = net.history_[-1]["tower_scores"]
    assert last["snd"] > last["img"]


def test_staged_schedule_trains_towers_then_head_then_all():
    X, y = make_data(150)
    snapshots = []

    class Towers(Callback):
        def on_train_begin(self, estimator, *, module, optimizer):
            snapshots.append(
                [
                    {k: v.clone() for k, v in t.state_dict().items()}
                    for t in module.towers
                ]
                + [{k: v.clone() for k, v in module.head.state_dict().items()}]
            )

    net = image_audio(
        schedule="staged", max_epochs=3, early_stopping=False, callbacks=[Towers()]
    ).fit(X, y)
    assert [r["stage"] for r in net.history_] == ["towers"] * 3 + ["head"] * 3 + [
        "tune"
    ] * 3
    assert net.n_iter_ == 9 == len(net.loss_curve_)
    assert [r["epoch"] for r in net.history_] == list(range(1, 10))
    # Stage 1 leaves the fused head as it was; stage 2 leaves the towers as they were.
    towers_start, head_start, tune_start = snapshots
    assert all(torch.equal(v, towers_start[2][k]) for k, v in head_start[2].items())
    for m in (0, 1):
        assert all(torch.equal(v, head_start[m][k]) for k, v in tune_start[m].items())
    assert not all(torch.equal(v, head_start[2][k]) for k, v in tune_start[2].items())
    # The last stage runs at a tenth of the learning rate.
    assert [r["lr"] for r in net.history_][-1] == pytest.approx(3e-4)
    assert net.score(X, y) > 0.9


def test_one_row_predictions_equal_the_batch_with_a_frozen_tower():
    """Row by row (a frozen tower takes its column without an indexed copy when
    nothing is missing) or in one call, rows with a missing sound included: the
    same probabilities, and a copy of the column's mask, not the mask itself."""
    from skmm.utils._validation import Column

    X, y = make_data(60, missing_audio=0.3)
    net = MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", max_epochs=0), "image"),
            ("snd", AudioEncoder(**TINY_AUDIO, max_epochs=0), "audio"),
        ],
        max_epochs=1,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    new, _ = make_data(12, seed=1, missing_audio=0.4)
    assert new["audio"].isna().any() and new["audio"].notna().any()
    batch = net.predict_proba(new)
    for i in range(len(new)):
        # float32 convolutions of 1 and of 12 images round differently (1e-7).
        assert_allclose(net.predict_proba(new.iloc[[i]]), batch[i : i + 1], atol=1e-6)

    column = Column(
        np.array(["a", None, "c"], dtype=object),
        np.array([False, True, False]),
        labels=pd.Index(["r0", "r1", "r2"]),
    )
    whole = column.take(np.arange(3))
    assert whole.items is column.items and list(whole.labels) == ["r0", "r1", "r2"]
    whole.missing[0] = True
    assert not column.missing[0]
    part = column.take(np.array([2, 0]))
    assert list(part.items) == ["c", "a"] and list(part.labels) == ["r2", "r0"]
