"""
==============================================================
End to end: a CNN and an LSTM trained jointly on product data
==============================================================

The classic multimodal network reads each modality with its own tower, a CNN for the
photo and an LSTM for the title, concatenates the towers' outputs and classifies them
with dense layers, all trained together. :class:`~skmm.nn.MultimodalNetClassifier`
is that network as a scikit-learn estimator, built from the same
:class:`~skmm.encoders.ImageEncoder` and :class:`~skmm.encoders.TextEncoder` objects
used elsewhere in skmm.

The data is the fashion catalogue subset kept beside the project: product photos
(96x96 JPEGs) with their catalogue titles ("Nike Men AS T90 Black Tshirts"). The task
is the product's sub-category (topwear, shoes, bags, watches ...). We compare the
joint network with the same network on each modality alone.
"""

# %%
# The data
# --------
# We keep the sub-categories with at least 50 products and a stratified sample of
# 1,500 of them, to keep the run to a few minutes on two CPU cores. The photos are
# passed as file paths: the encoder reads them.
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from torchvision.transforms import v2

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.nn import MultimodalNetClassifier

# The shared data sit beside the checkout; SKMM_SHARED_DATA points elsewhere.
DATA = Path(
    os.environ.get(
        "SKMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
styles = pd.read_csv(DATA / "fashion" / "styles.csv")
counts = styles["subCategory"].value_counts()
styles = styles[styles["subCategory"].isin(counts.index[counts >= 50])]
styles, _ = train_test_split(
    styles, train_size=1500, stratify=styles["subCategory"], random_state=0
)
X = pd.DataFrame(
    {
        "image": [str(DATA / "fashion" / "images" / f"{i}.jpg") for i in styles["id"]],
        "title": styles["productDisplayName"].to_numpy(),
    }
)
y = styles["subCategory"].to_numpy()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
print(f"{len(X_train)} training and {len(X_test)} test products, {len(set(y))} classes")
print(pd.Series(y).value_counts().to_string())

# %%
# The towers
# ----------
# The image tower is the small 3-block CNN of :class:`~skmm.encoders.ImageEncoder`,
# on photos resized to 64x64. In training each photo is flipped at random, rotated by
# up to 15 degrees and scaled by 0.9-1.1, a fresh draw at every epoch: a torchvision
# transform given as ``augment`` is applied to each image tensor. ``fill=1.0`` fills
# the corners uncovered by the rotation with white, the background of these photos
# (black corners would teach the CNN a cue that test photos never show). The text
# tower is a bidirectional LSTM over word embeddings whose vocabulary is learnt from
# the training titles.
augment = v2.Compose(
    [
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=15, scale=(0.9, 1.1), fill=1.0),
    ]
)
image = ImageEncoder("cnn", image_size=64, augment=augment)
title = TextEncoder("lstm", embedding_dim=32, hidden_size=32, max_length=16)


def make_net(encoders, fusion="concat"):
    """The same network and training for every comparison.

    Early stopping holds out 15% of the training rows (stratified), stops after 5
    epochs without a better validation accuracy and restores the best epoch. The
    classes are weighted by their inverse frequency, so that the many tops do not
    drown the socks and the belts.
    """
    return MultimodalNetClassifier(
        encoders,
        fusion=fusion,
        hidden_layer_sizes=(128,),
        dropout=0.3,
        batch_size=32,
        max_epochs=20,
        validation_fraction=0.15,
        n_iter_no_change=5,
        class_weight="balanced",
        random_state=0,
    )


models = {
    "image (CNN)": make_net([("img", image, "image")]),
    "title (LSTM)": make_net([("txt", title, "title")]),
    "both, concat": make_net([("img", image, "image"), ("txt", title, "title")]),
}

# %%
# Training and testing
# --------------------
# Each network is trained from scratch. ``validation_scores_`` records the
# validation accuracy of every epoch and ``n_iter_`` the epochs run.
results = {}
for name, net in models.items():
    start = time.perf_counter()
    net.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    pred = net.predict(X_test)
    results[name] = {
        "accuracy": np.mean(pred == y_test),
        "macro F1": f1_score(y_test, pred, average="macro"),
        "epochs": net.n_iter_,
        "fit (s)": round(seconds),
    }
results = pd.DataFrame(results).T
print(results.round(3).to_string())

# %%
# The title alone is a strong signal (it often names the article type), the photo a
# weaker one; the joint network uses both. The learning curves show what early
# stopping keeps: the weights of the epoch with the best validation accuracy (the
# dot); a run whose validation accuracy stalls for 5 epochs stops there.
fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(10, 4))
ax_bar.barh(results.index, results["accuracy"], color=["C0", "C1", "C2"])
ax_bar.set_xlim(results["accuracy"].min() - 0.1, 1.0)
ax_bar.set_xlabel("test accuracy")
for i, value in enumerate(results["accuracy"]):
    ax_bar.text(value, i, f" {value:.3f}", va="center")
for i, (name, net) in enumerate(models.items()):
    scores = net.validation_scores_
    best = int(np.argmax(scores))
    ax_curve.plot(range(1, len(scores) + 1), scores, color=f"C{i}", label=name)
    ax_curve.plot(best + 1, scores[best], "o", color=f"C{i}")
ax_curve.set_xlabel("epoch")
ax_curve.set_ylabel("validation accuracy")
ax_curve.legend()
fig.tight_layout()
plt.show()

# %%
# Reusing the jointly trained towers
# ----------------------------------
# :meth:`~skmm.nn.MultimodalNetClassifier.transform` returns the fused vector the
# head reads (here 128 CNN features next to 64 LSTM features). Wrapping the fitted
# network in :class:`~sklearn.frozen.FrozenEstimator` keeps it as it is while another
# head is trained on its output, a logistic regression here.
joint = models["both, concat"]
print("fused representation:", joint.transform(X_test.iloc[:5]).shape)
head = make_pipeline(FrozenEstimator(joint), LogisticRegression(max_iter=1000))
head.fit(X_train, y_train)
print(f"logistic regression on the fused vector: {head.score(X_test, y_test):.3f}")

# %%
# Each fitted encoder also holds its jointly trained tower, so it encodes on its
# own, for instance inside a :class:`~skmm.fusion.MultimodalFuser`.
cnn = joint.named_encoders_["img"]
print("image features:", cnn.transform(X_test["image"].iloc[:5]).shape)
