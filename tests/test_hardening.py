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

from skmm.fusion import LateFusionClassifier, MultimodalFuser


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread: these tiny models run several times faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
        [("image", "passthrough", ["i0", "i1"]), ("audio", "passthrough", ["a0", "a1"])],
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
