"""Hardening (issue 29): what an attacker or an unlucky user meets on the surface added
last, each case with the rule it checks, in one shared mechanism.

1. a missing modality never votes (class projections of the fuser; late fusion);
2. a memory-mapped index whose file shrank is refused before it is read;
3. ``partial_fit``: batches too small to train on, failed calls, reproducibility;
4. silent NaN: weights holding NaN/inf, models outputting NaN, overlapping modalities;
6. errors that say what and where (parameter, row, column, file).
"""

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmm import MultimodalClassifier
from skmm.encoders import ImageEncoder
from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.nn import (
    EmbeddingIndex,
    MultimodalMatcher,
    MultimodalNetClassifier,
    ZeroShotClassifier,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- 1. a missing modality never votes --------------------------------------------------
def _two_modalities(n=120, seed=0):
    """An informative "image" always present, an informative "audio" missing in a
    third of the rows. The audio features sit far from 0, so that a zero-filled
    (or mean-filled) audio block scored by the audio classifier is a confident
    vote for one class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    image = y[:, None] + rng.normal(0, 0.8, (n, 2))
    audio = 10.0 + 2.0 * y[:, None] + rng.normal(0, 0.5, (n, 2))
    X = pd.DataFrame(
        {"i0": image[:, 0], "i1": image[:, 1], "a0": audio[:, 0], "a1": audio[:, 1]}
    )
    absent = np.zeros(n, dtype=bool)
    absent[rng.permutation(n)[: n // 3]] = True
    X.loc[absent, ["a0", "a1"]] = np.nan
    return X, y, absent


def _projection_fuser(projection, fusion, missing):
    return MultimodalFuser(
        [
            ("image", "passthrough", ["i0", "i1"]),
            ("audio", "passthrough", ["a0", "a1"]),
        ],
        projection=projection,
        fusion=fusion,
        missing=missing,
        cv=3,
    )


def _reference_scores(X, y, rows, columns, projection):
    """The classifier of one modality fitted by hand on the rows where it is present."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    model.fit(X.loc[rows, columns].to_numpy(), y[rows])
    return model


@pytest.mark.parametrize("missing", ["zero", "mean", "indicator"])
@pytest.mark.parametrize("projection", ["proba", "decision"])
def test_a_missing_modality_gets_equal_scores_for_every_class(missing, projection):
    X, y, absent = _two_modalities()
    fuser = _projection_fuser(projection, "concat", missing).fit(X, y)
    out = fuser.transform(X)
    audio = out[:, 3:6]
    expected = 1 / 3 if projection == "proba" else 0.0
    assert_array_equal(audio[absent], np.full((absent.sum(), 3), expected))
    # The audio classifier learnt from the rows where audio is present only, as
    # one fitted by hand on them (not from filled rows whose labels are arbitrary).
    reference = _reference_scores(X, y, ~absent, ["a0", "a1"], projection)
    fitted = fuser.block_transformers_["audio"][-1].estimator_
    assert_allclose(fitted.coef_, reference[-1].coef_, rtol=1e-4, atol=1e-6)
    if missing == "indicator":
        assert_array_equal(out[:, -1], absent)


@pytest.mark.parametrize("missing", ["zero", "mean", "indicator"])
def test_rows_without_a_modality_are_decided_by_the_others(missing):
    """The issue's case: fusion of probabilities, audio missing in some rows. Where
    it is missing, the fused probabilities are the image's alone (the product
    renormalised), or the image's averaged with the uniform vote (the mean)."""
    X, y, absent = _two_modalities()
    image = _reference_scores(X, y, np.ones(len(y), bool), ["i0", "i1"], "proba")
    p_image = image.predict_proba(X[["i0", "i1"]].to_numpy())
    product = _projection_fuser("proba", "product", missing).fit(X, y)
    assert_allclose(product.transform(X)[absent][:, :3], p_image[absent], rtol=1e-5)
    mean = _projection_fuser("proba", "mean", missing).fit(X, y)
    assert_allclose(
        mean.transform(X)[absent][:, :3], (p_image[absent] + 1 / 3) / 2, rtol=1e-5
    )
    # Without the rule, the filled audio block voted: every row without audio went
    # to the class its filled values fall in.
    predicted = mean.transform(X)[absent][:, :3].argmax(axis=1)
    assert_array_equal(predicted, p_image[absent].argmax(axis=1))


def test_a_modality_present_in_some_classes_only_is_refused_for_projection():
    X, y, _ = _two_modalities()
    X.loc[y == 2, ["a0", "a1"]] = np.nan
    with pytest.raises(ValueError, match=r"'audio' is present only in training rows"):
        _projection_fuser("proba", "mean", "zero").fit(X, y)


def test_late_fusion_skips_a_missing_modality():
    """Late fusion's "skip": the rows without audio get the image model's vote alone."""
    X, y, absent = _two_modalities()
    late = LateFusionClassifier(
        [
            ("image", LogisticRegression(), ["i0", "i1"]),
            ("audio", LogisticRegression(), ["a0", "a1"]),
        ],
        voting="soft",
    ).fit(X, y)
    image = LogisticRegression().fit(X[["i0", "i1"]], y)
    assert_allclose(
        late.predict_proba(X)[absent],
        image.predict_proba(X[["i0", "i1"]])[absent],
        rtol=1e-6,
    )


# -- 3. partial_fit correctness ---------------------------------------------------------
N_TRAIN = 16


def _images(n=N_TRAIN, seed=0):
    rng = np.random.default_rng(seed)
    items = np.empty(n, dtype=object)
    items[:] = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(n)]
    return items


def _trainable(kind, **params):
    """A tiny trainable estimator of each kind, with batch norm in its image tower."""
    image = ImageEncoder("cnn", image_size=8, device="cpu")
    if kind == "encoder":
        return ImageEncoder(
            "cnn", image_size=8, batch_size=4, device="cpu", random_state=0, **params
        )
    triples = [("image", image, "image"), ("number", "passthrough", ["number"])]
    if kind == "net":
        return MultimodalNetClassifier(
            triples, batch_size=4, device="cpu", random_state=0, **params
        )
    return MultimodalMatcher(
        triples, embedding_dim=4, batch_size=4, device="cpu", random_state=0, **params
    )


def _data(kind, n=N_TRAIN, seed=0):
    y = np.arange(n) % 2
    if kind == "encoder":
        return _images(n, seed), y
    X = pd.DataFrame({"image": _images(n, seed), "number": np.arange(n, dtype=float)})
    return X, (y if kind == "net" else None)


def _partial_fit(est, X, y, first=False):
    classes = {"classes": [0, 1]} if first and y is not None else {}
    return est.partial_fit(X, y, **classes)


def _snapshot(est):
    """Everything an estimator holds, its weights and buffers (batch-norm
    statistics) as copies."""
    state = {}
    for key, value in vars(est).items():
        if isinstance(value, torch.nn.Module):
            value = {k: v.clone() for k, v in value.state_dict().items()}
        elif isinstance(value, (list, dict)):
            value = repr(value)
        state[key] = value
    return state


def _assert_same(before, after):
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, dict):
            assert value.keys() == after[key].keys(), key
            for name, tensor in value.items():
                assert torch.equal(tensor, after[key][name]), f"{key}.{name}"
        elif isinstance(value, np.ndarray):
            assert_array_equal(value, after[key])
        elif isinstance(value, (str, int, float, type(None))):
            assert value == after[key] or (value != value), key


KINDS = ["encoder", "net", "matcher"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_with_no_batch_to_train_on_is_refused_and_changes_nothing(kind):
    """One row cannot train batch-norm layers (nor give in-batch negatives): the
    call is refused, with no NaN loss recorded and no statistics estimated."""
    est = _trainable(kind)
    X, y = _data(kind)
    _partial_fit(est, X[:8], None if y is None else y[:8], first=True)
    before = _snapshot(est)
    one = X[8:9]
    with pytest.raises(ValueError, match=r"no training batch of at least 2 rows in 1"):
        _partial_fit(est, one, None if y is None else y[8:9])
    _assert_same(before, _snapshot(est))
    assert np.all(np.isfinite(est.loss_curve_))
    fresh = _trainable(kind)
    with pytest.raises(ValueError, match=r"at least 2"):
        _partial_fit(fresh, one, None if y is None else y[8:9], first=True)
    assert not hasattr(fresh, "module_")


class _FailOnSecondCall:
    """A callback that raises at the end of its second epoch."""

    def __init__(self):
        self.calls = 0

    def __call__(self, estimator, history):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("callback failed")


@pytest.mark.parametrize("kind", KINDS)
def test_a_callback_failing_on_a_later_call_leaves_the_estimator_as_it_was(kind):
    est = _trainable(kind, callbacks=[_FailOnSecondCall()])
    X, y = _data(kind)
    _partial_fit(est, X[:8], None if y is None else y[:8], first=True)
    before = _snapshot(est)
    with pytest.raises(RuntimeError, match="callback failed"):
        _partial_fit(est, X[8:], None if y is None else y[8:])
    _assert_same(before, _snapshot(est))
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1


def _bad_images():
    items = _images()
    items[5] = "no/such/file.png"
    return items


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ["partial_fit", "fit"])
def test_a_failed_first_call_leaves_the_estimator_as_it_was(kind, entry):
    """A bad item read after the first hooks ran (``device_``, the columns,
    ``classes_``) leaves a fresh estimator fresh (a first ``partial_fit``) and a
    fitted one as its fit left it (a second ``fit``, on other labels and columns):
    the first call runs on a copy, adopted on success only."""
    est = _trainable(kind, max_epochs=1)
    X, y = _data(kind)
    if entry == "fit":
        est.fit(X, y)
        # What the failing fit would set anew: other classes, other columns.
        y = None if y is None else y + 3
        X = X if kind == "encoder" else X.assign(extra=0.0)
    before = _snapshot(est)
    bad = _bad_images() if kind == "encoder" else X.assign(image=_bad_images())
    with pytest.raises(ValueError, match=r"row 5"):
        if entry == "fit":
            est.fit(bad, y)
        else:
            _partial_fit(est, bad, y, first=True)
    _assert_same(before, _snapshot(est))


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_runs_with_one_random_state_are_equal(kind):
    """The initial weights, the encoder's training head, the data order: all drawn
    from random_state, whatever torch's global generator holds."""

    def run(global_seed):
        torch.manual_seed(global_seed)  # the global state must not matter
        est = _trainable(kind)
        X, y = _data(kind)
        _partial_fit(est, X[:8], None if y is None else y[:8], first=True)
        _partial_fit(est, X[8:], None if y is None else y[8:])
        return est

    one, two = run(1), run(2)
    for a, b in zip(
        one.module_.state_dict().values(), two.module_.state_dict().values()
    ):
        assert torch.equal(a, b)
    assert one.loss_curve_ == two.loss_curve_


def test_partial_fit_refuses_labels_outside_its_classes():
    est = _trainable("matcher")
    X, _ = _data("matcher")
    est.partial_fit(X[:8], np.r_[np.ones(6), np.zeros(2)].astype(int), classes=[0, 1])
    with pytest.raises(
        ValueError, match=r"label\(s\) \[2\], which are not in classes_"
    ):
        est.partial_fit(X[8:], np.r_[np.ones(6), 2 * np.ones(2)].astype(int))


# -- 4. silent NaN --------------------------------------------------------------------
def test_weights_holding_nan_are_refused_naming_the_file(tmp_path):
    from skmm.encoders._backbones._scratch import small_cnn

    state = small_cnn(1).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    path = tmp_path / "cnn.pt"
    torch.save(state, path)
    enc = ImageEncoder("cnn", weights=str(path), image_size=8, device="cpu")
    with pytest.raises(ValueError, match=rf"cnn.pt' hold NaN or infinite .*{name}"):
        enc.fit(_images())
    assert not hasattr(enc, "module_")
    state[name][0] = 0.0
    torch.save(state, path)
    enc.fit(_images())  # the same file, finite: accepted
    assert np.isfinite(enc.transform(_images())).all()


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=32,
        patch_size=16,
    )
    folder = tmp_path_factory.mktemp("hf_vit")
    model = transformers.ViTModel(config)
    with torch.no_grad():
        model.pooler.dense.weight[0, 0] = float("inf")
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return folder


def test_hub_weights_holding_inf_are_refused(hf_vit):
    images = [np.zeros((32, 32, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"hf:.*hold NaN or infinite.*pooler.dense"):
        ImageEncoder(f"hf:{hf_vit}", device="cpu").fit(images)


def test_a_truncated_hf_weights_file_is_named(hf_vit, tmp_path):
    import shutil

    folder = tmp_path / "vit"
    shutil.copytree(hf_vit, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    images = [np.zeros((32, 32, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"cannot read its weights file .*model.safe"):
        ImageEncoder(f"hf:{folder}", device="cpu").fit(images)


class _NaNWhereBPositive(LogisticRegression):
    """A classifier whose probabilities are NaN in the rows where column "b" > 1."""

    def predict_proba(self, X):
        proba = super().predict_proba(X)
        proba[np.asarray(X)[:, 1] > 1] = np.nan
        return proba


def _nan_model():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 60), "b": rng.normal(0, 1, 60)})
    return _NaNWhereBPositive().fit(X, y), X, y


def test_modality_shapley_of_a_model_outputting_nan_names_the_rows():
    from skmm.inspection import modality_shapley

    model, X, y = _nan_model()
    rows = np.flatnonzero(X["b"] > 1)
    with pytest.raises(ValueError, match=rf"NaN or infinite in {len(rows)} of 60 row"):
        modality_shapley(model, X, baseline="mean")
    with pytest.raises(
        ValueError, match=r"modality_shapley: the model's output is NaN"
    ):
        modality_shapley(model, X, y, scoring="neg_log_loss", baseline="mean")
    # Finite outputs: no error (the rule is about NaN, not about this model).
    finite = X[X["b"] <= 1]
    assert np.isfinite(modality_shapley(model, finite, baseline="mean").values).all()


def test_robustness_curve_of_a_model_outputting_nan_says_so():
    from skmm.inspection import modality_importance, robustness_curve

    model, X, y = _nan_model()
    with pytest.raises(
        ValueError, match=r"robustness_curve: the model's output is NaN .*modality 'a'"
    ):
        robustness_curve(
            model, X, y, modality="a", scoring="neg_log_loss", levels=[0, 0.5]
        )
    with pytest.raises(ValueError, match=r"modality_importance: the model's output"):
        modality_importance(model, X, y, scoring="neg_log_loss")


def test_overlapping_modalities_are_refused_by_modality_shapley():
    """A fuser may give a column to two modalities (as ColumnTransformer does) and
    a voting ensemble every column to every model; but a Shapley player cannot be
    made absent while another reading its column stays present."""
    from skmm.inspection import modality_shapley

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 40), "b": rng.normal(size=40)})
    X["c"] = rng.normal(size=40)
    triples = [("m1", "passthrough", ["a", "b"]), ("m2", "passthrough", ["b", "c"])]
    model = make_pipeline(
        MultimodalFuser(triples, missing="mean"), LogisticRegression()
    ).fit(X, y)
    with pytest.raises(ValueError, match=r"'m1' and 'm2' both read column 'b'"):
        modality_shapley(model, X)
    with pytest.raises(ValueError, match=r"'x' and 'y' both read column 'b'"):
        modality_shapley(model, X, columns={"x": ["a", "b"], "y": ["b"]})
    # Disjoint groups of the same model: accepted.
    values = modality_shapley(model, X, columns={"x": ["a", "b"], "y": ["c"]}).values
    assert values.shape == (40, 2, 2)


# -- 2. a memory-mapped index whose file shrank -------------------------------------------
_SHRUNK_INDEX = """
import os, sys
import numpy as np
from skmm.nn import EmbeddingIndex
from skmm.nn._retrieval import nearest

path = sys.argv[1]
rng = np.random.default_rng(0)
z = rng.normal(size=(20000, 8)).astype(np.float32)
z /= np.linalg.norm(z, axis=1, keepdims=True)
np.save(path, z)
mapped = np.load(path, mmap_mode="r")
index, head = EmbeddingIndex(mapped, side="b"), EmbeddingIndex(mapped[:100], side="b")
os.truncate(path, os.path.getsize(path) // 2)
print("head", nearest(z[:2], head, 1)[1].ravel().tolist())
for make in (lambda: nearest(z[:2], index, 3), lambda: EmbeddingIndex(mapped, "b")):
    try:
        make()
    except ValueError as exc:
        print("refused:", exc)
"""


def test_an_index_whose_file_shrank_is_refused_before_it_is_read(tmp_path):
    """Reading past the end of a shrunk mapping kills the process (SIGBUS): the
    check runs in a child process, so that without it the test fails, not the
    test session."""
    import subprocess
    import sys

    path = tmp_path / "index.npy"
    run = subprocess.run(
        [sys.executable, "-c", _SHRUNK_INDEX, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "head [0, 1]"  # rows still in the file are searched
    # 20,000 rows of 8 float32 after a 128-byte header: 640,128 bytes, cut to half;
    # the second chunk of 8,192 rows ends at byte 128 + 16,384 * 32.
    assert lines[1].startswith(
        f"refused: the EmbeddingIndex of 'b' is memory-mapped from {str(path)!r}, "
        "which now holds 320064 bytes where the index needs 524416"
    )
    assert lines[2].startswith("refused:") and "needs 640128" in lines[2]


# -- 6. errors that say what and where ----------------------------------------------------
@pytest.fixture(scope="module")
def matcher_and_data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(120, 3))
    X = np.hstack([latent @ rng.normal(size=(3, 5)), latent @ rng.normal(size=(3, 4))])
    matcher = MultimodalMatcher(
        [("a", "passthrough", slice(0, 5)), ("b", "passthrough", slice(5, 9))],
        embedding_dim=8,
        batch_size=32,
        max_epochs=1,
        random_state=0,
        device="cpu",
    ).fit(X)
    return matcher, X


def _labels_with_none():
    return np.array(["a", None, "b", "a"] * 4, dtype=object)


def _table(n=16):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"image": _images(n), "number": rng.normal(size=n), "other": rng.normal(size=n)}
    )


def _net_regressor():
    from skmm.nn import MultimodalNetRegressor

    return MultimodalNetRegressor(
        [
            ("i", ImageEncoder("cnn", image_size=8), "image"),
            ("n", "passthrough", ["number"]),
        ],
        batch_size=4,
        device="cpu",
    )


def _after_real_targets(est, X):
    est.partial_fit(X, np.linspace(0, 1, len(X)))
    est.partial_fit(X, np.array(["a", "b"] * (len(X) // 2)))


def _late():
    return LateFusionClassifier(
        [
            ("n", LogisticRegression(), ["number"]),
            ("o", LogisticRegression(), ["other"]),
        ]
    )


def _array_text_under_dask():
    dd = pytest.importorskip("dask.dataframe")
    column = dd.from_pandas(pd.DataFrame({"image": _images(8)}), npartitions=2)
    ImageEncoder("cnn", image_size=8, device="cpu", max_epochs=0).fit(column["image"])


MESSAGES = {
    "fuser y one row short": (
        lambda m: MultimodalFuser(
            [("n", "passthrough", ["number"]), ("o", "passthrough", ["other"])],
            missing="zero",
        ).fit(_table(), np.arange(15) % 2),
        r"inconsistent numbers of samples: \[16, 15\]",
    ),
    "encoder partial_fit classes=[]": (
        lambda m: _trainable("encoder").partial_fit(
            _images(), np.arange(16) % 2, classes=[]
        ),
        r"ImageEncoder: classes=\[\] names 0 class\(es\)",
    ),
    "net partial_fit classes=[]": (
        lambda m: _trainable("net").partial_fit(*_data("net"), classes=[]),
        r"MultimodalNetClassifier: classes=\[\] names 0 class\(es\)",
    ),
    "encoder str label after real targets": (
        lambda m: _after_real_targets(_trainable("encoder"), _images()),
        r"ImageEncoder is trained on real values; y holds binary labels",
    ),
    "net regressor str label after real targets": (
        lambda m: _after_real_targets(_net_regressor(), _table()),
        r"MultimodalNetRegressor is trained on real values; y holds values that are "
        r"not numbers",
    ),
    "encoder labels with None": (
        lambda m: _trainable("encoder", max_epochs=1).fit(
            _images(), _labels_with_none()
        ),
        r"ImageEncoder: y holds missing labels \(None/NaN\) at position\(s\) \[1, 5",
    ),
    "net labels with None": (
        lambda m: _trainable("net", max_epochs=1).fit(_table(), _labels_with_none()),
        r"MultimodalNetClassifier: y holds missing labels .* \[1, 5",
    ),
    "late fusion labels with None": (
        lambda m: _late().fit(_table(), _labels_with_none()),
        r"LateFusionClassifier: y holds missing labels .* \[1, 5",
    ),
    "fuser projection labels with None": (
        lambda m: _projection_fuser("proba", "mean", "zero").fit(
            _two_modalities(16)[0], _labels_with_none()
        ),
        r"MultimodalFuser: y holds missing labels .* \[1, 5",
    ),
    "auto classifier labels with None": (
        lambda m: MultimodalClassifier().fit(
            _table()[["number", "other"]], _labels_with_none()
        ),
        r"MultimodalClassifier: y holds missing labels .* \[1, 5",
    ),
    "zero-shot classes=[]": (
        lambda m: ZeroShotClassifier(m[0], classes=[]).fit(m[1][:, :5]),
        r"classes must be a list of the class names \(at least 2\); got \[\]",
    ),
    "zero-shot classes with None": (
        lambda m: ZeroShotClassifier(m[0], classes=[None, "cat"]).fit(m[1][:, :5]),
        r"classes holds missing labels \(None/NaN\) at position\(s\) \[0\]",
    ),
    "kneighbors n_neighbors=True": (
        lambda m: m[0].kneighbors(
            m[1][:2, :5], EmbeddingIndex(m[0].embed(m[1][:, 5:], side="b"), "b"), True
        ),
        r"n_neighbors = True",
    ),
    "index of the wrong side as candidates": (
        lambda m: m[0].kneighbors(
            m[1][:2, :5], EmbeddingIndex(m[0].embed(m[1][:, :5], side="a"), "a")
        ),
        r"queries were read as items of 'b', the other side of the candidates' "
        r"EmbeddingIndex of 'a'; pass query=",
    ),
    "memory with an unknown protocol": (
        lambda m: (
            ImageEncoder(
                "cnn", image_size=8, device="cpu", max_epochs=0, memory="nosuch://x"
            )
            .fit(_images())
            .transform(_images())
        ),
        r"memory='nosuch://x': Protocol not known",
    ),
    "array text under dask": (
        lambda m: _array_text_under_dask(),
        r"column 'image', row 0: got the text of an array .*dataframe.convert-string",
    ),
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_errors_say_what_and_where(case, matcher_and_data):
    make, message = MESSAGES[case]
    with pytest.raises(ValueError, match=message):
        make(matcher_and_data)
