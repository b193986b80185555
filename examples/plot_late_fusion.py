"""
=====================================================
Late fusion of audio and images: voting and stacking
=====================================================

Decision-level (late) fusion gives each modality its own complete model and combines
their decisions. Here, on AV-digits (a spoken digit from the Free Spoken Digit
Dataset paired with a handwritten MNIST digit of the same class, both degraded so that
neither is easy), an SVM reads MFCC statistics of the sound and a random forest reads
the pixels. :class:`~skmm.fusion.LateFusionClassifier` combines them with each voting
rule, and :func:`~skmm.inspection.modality_importance` shows which modality each
fused model relies on.

The test speakers (lucas and yweweler) are never heard during training, which is what
makes audio hard, and what makes stacking need grouped folds.
"""

# %%
# The data: one row per pair, split by speaker
# --------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from skmm.datasets import load_av_digits
from skmm.encoders import AudioFeatures
from skmm.fusion import LateFusionClassifier
from skmm.inspection import modality_importance, plot_modality_importance

bunch = load_av_digits(variant="hard")
X, y, speaker = bunch.data, bunch.target.to_numpy(), bunch.speaker
train = np.isin(speaker, ["george", "jackson", "nicolas", "theo"])
test = ~train
print(X.head(3))
print(f"{train.sum()} training rows, {test.sum()} test rows")

# %%
# One model per modality
# ----------------------
# Each ``(name, model, columns)`` triple reads its own column, as in
# :class:`~sklearn.compose.ColumnTransformer`. The audio model turns each waveform
# into MFCC statistics and feeds an SVM; ``CalibratedClassifierCV(SVC(),
# ensemble=False)`` gives the SVM probabilities (scikit-learn 1.9 deprecates
# ``SVC(probability=True)``). The image model flattens the pixels into a random
# forest (``ImageEncoder("cnn")`` could stand in front of it as well).


def flatten_images(images):
    """A column of (28, 28) uint8 images as rows of pixels in [0, 1]."""
    return np.stack(list(images)).reshape(len(images), -1) / 255.0


def image_model():
    return make_pipeline(
        FunctionTransformer(flatten_images),
        RandomForestClassifier(n_estimators=200, random_state=0),
    )


late = LateFusionClassifier(
    [
        (
            "audio",
            make_pipeline(
                AudioFeatures(sample_rate=8000),
                StandardScaler(),
                CalibratedClassifierCV(SVC(), ensemble=False),
            ),
            "audio",
        ),
        ("image", image_model(), "image"),
    ],
    voting="soft",
)
late.fit(X[train], y[train])
print(f"soft voting, test speakers: {late.score(X[test], y[test]):.3f}")

# %%
# ``AudioFeatures`` learns nothing from the data, so its output can be computed once
# and the audio model can read the 40 MFCC columns instead: the same model, without
# recomputing the features in each of the fits below.
features = AudioFeatures(sample_rate=8000).fit(X["audio"])
mfcc = pd.DataFrame(
    features.transform(X["audio"]), columns=features.get_feature_names_out()
)
X_feat = pd.concat([X[["image"]], mfcc], axis=1)
audio_columns = list(mfcc.columns)


def estimators():
    audio = make_pipeline(
        StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False)
    )
    return [("audio", audio, audio_columns), ("image", image_model(), "image")]


soft = LateFusionClassifier(estimators(), voting="soft").fit(X_feat[train], y[train])
np.testing.assert_allclose(
    soft.predict_proba(X_feat[test]), late.predict_proba(X[test]), atol=1e-5
)

# %%
# The voting rules
# ----------------
# ``hard`` counts votes, ``soft`` averages probabilities, ``product`` multiplies
# them, ``max`` follows the most confident model, and ``stacking`` trains a
# logistic regression on the models' out-of-fold probabilities. For stacking, the
# folds matter: with shuffled folds every speaker is on both sides of each split, so
# the out-of-fold audio probabilities are those of familiar voices; grouped by
# speaker (``LeaveOneGroupOut``), they are those of new voices, as at test time.
# Probabilities are small features, so the final logistic regression is weakly
# regularised (``C=10``).
groups = speaker[train]
models = {
    rule: LateFusionClassifier(estimators(), voting=rule)
    for rule in ["hard", "soft", "product", "max"]
}
for name, cv in [
    ("stacking\nshuffled folds", StratifiedKFold(4, shuffle=True, random_state=0)),
    ("stacking\nspeaker folds", LeaveOneGroupOut()),
]:
    models[name] = LateFusionClassifier(
        estimators(),
        voting="stacking",
        cv=cv,
        final_estimator=LogisticRegression(C=10.0, max_iter=1000),
    )

scores = {}
for name, head in [
    ("audio\nonly", soft.named_estimators_.audio),
    ("image\nonly", soft.named_estimators_.image),
]:
    columns = audio_columns if name.startswith("audio") else "image"
    pred = head.predict(X_feat[test][columns])
    scores[name] = (
        accuracy_score(y[test], pred),
        f1_score(y[test], pred, average="macro"),
    )
for name, model in models.items():
    fit_params = {"groups": groups} if "speaker" in name else {}
    model.fit(X_feat[train], y[train], **fit_params)
    pred = model.predict(X_feat[test])
    scores[name] = (
        accuracy_score(y[test], pred),
        f1_score(y[test], pred, average="macro"),
    )
for name, (acc, f1) in scores.items():
    print(f"{name.replace(chr(10), ' '):26s} accuracy {acc:.3f}  macro-F1 {f1:.3f}")

fig, ax = plt.subplots(figsize=(9, 4))
positions = np.arange(len(scores))
values = np.array(list(scores.values()))
ax.bar(positions - 0.2, values[:, 0], width=0.4, label="accuracy")
ax.bar(positions + 0.2, values[:, 1], width=0.4, label="macro-F1")
ax.set_xticks(positions, labels=list(scores))
ax.set_ylim(0, 1)
ax.set_ylabel("score on the test speakers")
ax.set_title("AV-digits (hard): each modality alone and each voting rule")
ax.legend()
fig.tight_layout()

# %%
# How much does stacking trust audio? Count how often it just repeats the audio
# model's answer. Shuffled folds make audio look almost perfect (its out-of-fold
# accuracy is above 90% on familiar voices), so stacking follows it nearly always;
# speaker folds show it is right only about half the time on new voices.
audio_pred = soft.named_estimators_.audio.predict(X_feat[test][audio_columns])
for name in ["stacking\nshuffled folds", "stacking\nspeaker folds"]:
    agree = np.mean(models[name].predict(X_feat[test]) == audio_pred)
    print(f"{name.replace(chr(10), ' ')}: same answer as the audio model {agree:.0%}")

# %%
# With two models, ``hard`` voting is a tie whenever they disagree, and the tie goes
# to the smaller label; it needs three or more models (or unequal ``weights``).
# ``soft`` and ``max`` follow the audio model: its calibrated probabilities are
# confident even on new voices, while the forest spreads its votes over classes.

# %%
# Missing audio
# -------------
# A row whose audio is missing (None) gets no vote from the audio model: the other
# models decide, their weights renormalised, so soft voting does exactly as well as
# the image model on those rows. Stacking fills the missing probabilities and flags
# them in an indicator column; its final estimator was also trained with each model
# masked, so it comes close to the image model there and stays the best overall.
# Here 30% of the test recordings are removed.
X_missing = X_feat[test].reset_index(drop=True)
gone = np.random.RandomState(0).rand(len(X_missing)) < 0.3
X_missing.loc[gone, audio_columns] = None
best = models["stacking\nspeaker folds"]
for name, model in [("soft voting", models["soft"]), ("stacking", best)]:
    pred = model.predict(X_missing)
    print(
        f"{name}: {accuracy_score(y[test][gone], pred[gone]):.3f} on the rows without "
        f"audio, {accuracy_score(y[test], pred):.3f} on all rows"
    )
image_pred = soft.named_estimators_.image.predict(X_missing.loc[gone, "image"])
image_acc = accuracy_score(y[test][gone], image_pred)
print(f"image model alone on the rows without audio: {image_acc:.3f}")

# %%
# Which modality does each model rely on?
# ---------------------------------------
# :func:`~skmm.inspection.modality_importance` shuffles each modality's columns
# together (the 40 MFCC columns as one block) and records the drop of accuracy on
# the test speakers. Soft voting turns out to follow the audio model alone: its
# calibrated SVM is confident even when it is wrong on a new voice, and the random
# forest's spread-out probabilities never outvote it. Stacking with speaker folds
# uses both.
modalities = {"audio": audio_columns, "image": "image"}
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharex=True)
for ax, (name, model) in zip(
    axes, [("soft voting", models["soft"]), ("stacking, speaker folds", best)]
):
    result = modality_importance(
        model, X_feat[test], y[test], columns=modalities, n_repeats=5, random_state=0
    )
    plot_modality_importance(result, ax=ax)
    ax.set_title(name)
fig.tight_layout()
plt.show()
