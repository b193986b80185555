"""
=====================================================================
Which modality decided? Modality Shapley values and robustness curves
=====================================================================

Two questions come up with every multimodal model: which modality drove this
prediction, and what happens when a modality degrades or disappears?

:func:`~skmm.inspection.modality_shapley` answers the first exactly. With ``M``
modalities, it predicts every coalition (subset of present modalities, ``2^M`` of
them, the absent ones made missing the way the model itself handles a missing
modality) once for all rows, and gives each modality its Shapley value: its
contribution to each row's output, averaged over every order in which the
modalities could be added. The values of a row add up to its prediction minus the
prediction with no modality at all.

:func:`~skmm.inspection.robustness_curve` and
:class:`~skmm.inspection.RobustnessDisplay` answer the second: the score as one
modality is made missing in more and more rows, or drowned in noise.

The data are AV-digits (``variant="hard"``): a spoken digit from the Free Spoken
Digit Dataset paired with a degraded MNIST image of the same digit. The test
speakers are never heard in training. To make the story realistic, the camera
fails on a third of the training rows: their image is black.
"""

# %%
# The data: audio features and images, split by speaker
# -----------------------------------------------------
# The audio column is summarised once by :class:`~skmm.encoders.AudioFeatures` (40
# MFCC statistics per recording, training-free), so that the three models below
# read the same table: 40 audio columns and one column of (28, 28) images.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skmm.datasets import load_av_digits
from skmm.encoders import AudioFeatures, ImageEncoder
from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.inspection import (
    RobustnessDisplay,
    modality_shapley,
    plot_modality_shapley,
    plot_modality_waterfall,
    robustness_curve,
)
from skmm.nn import MultimodalNetClassifier

bunch = load_av_digits(variant="hard")
mfcc = AudioFeatures(sample_rate=8000).fit(bunch.data["audio"])
audio_columns = list(mfcc.get_feature_names_out())
table = pd.DataFrame(mfcc.transform(bunch.data["audio"]), columns=audio_columns)
table["image"] = bunch.data["image"].to_numpy()
y = bunch.target.to_numpy()
train = np.isin(bunch.speaker, ["george", "jackson", "nicolas", "theo"])


def black_out(frame, every):
    """Every ``every``-th row (from row 1) gets an all-black image."""
    frame = frame.reset_index(drop=True)
    images = frame["image"].to_numpy(copy=True)
    rows = np.arange(len(frame)) % every == 1
    for row in np.flatnonzero(rows):
        images[row] = np.zeros_like(images[row])
    frame["image"] = images
    return frame, rows


X_train, _ = black_out(table[train], 3)
y_train = y[train]
X_test, y_test = table[~train].reset_index(drop=True), y[~train]
print(f"{len(X_train)} training rows, {len(X_test)} test rows (new speakers)")

# %%
# Three ways of fusing the modalities
# -----------------------------------
# A late-fusion ensemble (one logistic regression per modality, stacked by a
# final logistic regression trained on out-of-fold outputs), a
# feature-level fuser feeding one logistic regression (a missing modality is
# filled with its training mean), and a network trained end to end (a small CNN
# on the images, dense layers on the audio features; modality dropout teaches it
# to cope without either).


def pixels(images):
    """A column of (28, 28) images as rows of pixels in [0, 1]; NaN rows if missing."""
    out = np.full((len(images), 28 * 28), np.nan)
    for row, image in enumerate(images):
        if image is not None:
            out[row] = np.asarray(image).reshape(-1) / 255.0
    return out


models = {
    "late fusion (stacking)": LateFusionClassifier(
        [
            (
                "audio",
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                audio_columns,
            ),
            (
                "image",
                make_pipeline(FunctionTransformer(pixels), LogisticRegression(C=0.05)),
                "image",
            ),
        ],
        voting="stacking",
        # Out-of-fold outputs by speaker, so the final estimator learns how far the
        # audio can be trusted on voices it has not heard.
        cv=LeaveOneGroupOut(),
    ),
    "fuser + logistic regression": make_pipeline(
        MultimodalFuser(
            [
                ("audio", StandardScaler(), audio_columns),
                ("image", FunctionTransformer(pixels), "image"),
            ],
            missing="mean",
        ),
        LogisticRegression(C=0.05, max_iter=1000),
    ),
    "network (CNN + MLP)": MultimodalNetClassifier(
        [
            ("audio", "passthrough", audio_columns),
            ("image", ImageEncoder("cnn"), "image"),
        ],
        modality_dropout=0.3,
        max_epochs=15,
        random_state=0,
        device="cpu",
    ),
}
for name, model in models.items():
    groups = {"groups": bunch.speaker[train]} if name.startswith("late") else {}
    model.fit(X_train, y_train, **groups)
    print(f"{name:<30} test accuracy {model.score(X_test, y_test):.3f}")

# %%
# Shapley values: the global view
# -------------------------------
# For the late-fusion model, the mean absolute Shapley value of each modality, per
# class (the output explained is the probability of each class). Two modalities
# make four coalitions: four predictions of the test set.
late = models["late fusion (stacking)"]
result = modality_shapley(late, X_test)
print("values:", result.values.shape, "(rows, modalities, classes)")
total = result.base_values + result.values.sum(axis=1)
print("efficiency holds:", np.allclose(total, late.predict_proba(X_test)))
plot_modality_shapley(result)
plt.tight_layout()

# %%
# One row, as a waterfall
# -----------------------
# From the output with no modality (the class frequencies) to the predicted
# probability of the predicted class, each modality's push.
plot_modality_waterfall(result, 0)
plt.tight_layout()

# %%
# Which modality decides when the camera fails?
# ---------------------------------------------
# Black out every other test image. On those rows, each model should lean on the
# audio: the audio's share of the explanation of the predicted class rises.
X_black, black = black_out(X_test, 2)
print(f"{'model':<30} audio share: intact image / black image")
for name, model in models.items():
    shap = modality_shapley(model, X_black)
    predicted = shap.full_values.argmax(axis=1)
    values = np.abs(shap.values[np.arange(len(X_black)), :, predicted])
    share = values[:, 0] / values.sum(axis=1)
    print(f"{name:<30} {share[~black].mean():.3f} / {share[black].mean():.3f}")

# %%
# How much of the accuracy each modality brings
# ---------------------------------------------
# With ``y`` and ``scoring``, the Shapley values split the accuracy itself: from
# the accuracy with no modality (chance) to the model's, each modality's share.
for name, model in models.items():
    split = modality_shapley(model, X_test, y_test, scoring="accuracy")
    shares = ", ".join(f"{m} {v:+.3f}" for m, v in zip(split.modalities, split.values))
    print(f"{name:<30} {split.base_values:.3f} -> {split.full_values:.3f}: {shares}")

# %%
# Robustness curves
# -----------------
# The test accuracy as the image goes missing in more and more rows, and as the
# audio does, for the three models on the same axes. A model that leans on one
# modality falls when that one fails.
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, modality in zip(axes, ["image", "audio"]):
    for name, model in models.items():
        RobustnessDisplay.from_estimator(
            model,
            X_test,
            y_test,
            modality=modality,
            levels=[0, 0.25, 0.5, 0.75, 1],
            random_state=0,
            name=name,
            ax=ax,
        )
fig.tight_layout()

# %%
# All three fall as the image goes: it is the stronger modality on new speakers.
# Without the audio, the stacked late-fusion model hardly moves (its final
# estimator, trained on out-of-fold outputs grouped by speaker, learned how little
# an unheard voice can be trusted, and simply skips the missing vote), whereas the
# fuser, which fills a missing block with its training mean, loses more than the
# audio ever brought it.
#
# Noise instead of absence: Gaussian pixel noise of growing strength (a fraction
# of the pixel range) on the images. ``area`` is the average accuracy along the
# curve; :func:`~skmm.inspection.make_robustness_scorer` makes it a scorer for
# ``cross_validate`` or a grid search.
fig, ax = plt.subplots(figsize=(6, 4))
for name, model in models.items():
    curve = robustness_curve(
        model,
        X_test,
        y_test,
        modality="image",
        corruption="noise",
        levels=[0, 0.2, 0.4, 0.8],
        random_state=0,
    )
    print(f"{name:<30} area under the image-noise curve {curve.area:.3f}")
    RobustnessDisplay(
        levels=curve.levels,
        scores=curve.scores,
        level_name=curve.level_name,
        modality="image",
        estimator_name=name,
    ).plot(ax=ax)

# %%
# Noise on the sound itself
# -------------------------
# The corruptions act on the items, so a model must read the items to meet them:
# here the late-fusion model computes the MFCC statistics from the waveforms
# inside its audio pipeline. White noise is added to each recording at a falling
# signal-to-noise ratio (in dB, relative to each recording's own power; the
# recordings already carry noise at 10 dB); the x axis runs from clean to drowned.
items = bunch.data.assign(image=table["image"])
items_train, _ = black_out(items[train], 3)
items_test = items[~train].reset_index(drop=True)
on_waveforms = LateFusionClassifier(
    [
        (
            "audio",
            make_pipeline(
                AudioFeatures(sample_rate=8000),
                StandardScaler(),
                LogisticRegression(max_iter=1000),
            ),
            "audio",
        ),
        (
            "image",
            make_pipeline(FunctionTransformer(pixels), LogisticRegression(C=0.05)),
            "image",
        ),
    ],
    voting="stacking",
    cv=LeaveOneGroupOut(),
).fit(items_train, y_train, groups=bunch.speaker[train])
fig, ax = plt.subplots(figsize=(6, 4))
for modality in ["audio", "image"]:
    RobustnessDisplay.from_estimator(
        on_waveforms,
        items_test,
        y_test,
        modality=modality,
        corruption="missing",
        levels=[0, 0.5, 1],
        random_state=0,
        name=f"{modality} missing",
        ax=ax,
    )
display = RobustnessDisplay.from_estimator(
    on_waveforms,
    items_test,
    y_test,
    modality="audio",
    corruption="noise",
    levels=[30, 20, 10, 5, 0, -5],
    random_state=0,
    name="audio noise (SNR, dB)",
)
for snr, score in zip(display.levels, display.scores):
    print(f"audio at {snr:+.0f} dB: accuracy {score:.3f}")
plt.show()

# %%
# A drowned recording is worse than none: with the audio missing, the stacked model
# lets the image decide, but at 0 dB or below it still trusts a sound it can no
# longer hear, and falls well under its accuracy without audio. Absence and noise
# are different failures, and a model can be robust to one and not to the other.
