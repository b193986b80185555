"""
=============================================================
Zero-shot and few-shot classification with a trained matcher
=============================================================

A :class:`~skmm.nn.MultimodalMatcher` trained on product photos and their titles
places photos and titles in one space. That space can sort photos into classes it
was never trained on, with no labelled photo at all: write each class name as a
text, embed it with the title tower, and pick the class whose text is closest to the
photo (zero-shot classification, as CLIP does it).
:class:`~skmm.nn.ZeroShotClassifier` makes that a scikit-learn classifier, and uses
a few labelled photos when there are some (few-shot).

The data is the fashion catalogue subset shipped beside the project (3,000 items,
96x96 photos, titles such as "Nike Men AS T90 Black Tshirts"), read from
``$SKMM_SHARED_DATA`` (default ``../shared/data`` beside the checkout):
:mod:`skmm.datasets` has no loader for it. The matcher is trained on 2,000
photo/title pairs; the classes are the 10 most common article types, and every
accuracy below is measured on photos the matcher never saw. On two CPU cores the
script takes a few minutes.
"""

# %%
# The catalogue, and a matcher trained on 2,000 photo/title pairs
# ---------------------------------------------------------------
# The same two towers as in the image-text matching example (a small CNN over the
# photos, at 32x32 here, and a GRU over the title's words), trained contrastively
# for 5 epochs. The article types are not given to the matcher: only pairs.
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.nn import MultimodalMatcher, ZeroShotClassifier

DATA = Path(
    os.environ.get(
        "SKMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
styles = pd.read_csv(DATA / "fashion" / "styles.csv")
items = pd.DataFrame(
    {
        "image": [str(DATA / "fashion" / "images" / f"{i}.jpg") for i in styles["id"]],
        "title": styles["productDisplayName"],
        "article": styles["articleType"],
    }
)
order = np.random.default_rng(0).permutation(len(items))
pairs = items.iloc[order[:2000]]

matcher = MultimodalMatcher(
    [
        ("image", ImageEncoder("cnn", image_size=32), "image"),
        ("title", TextEncoder("gru"), "title"),
    ],
    embedding_dim=64,
    batch_size=128,
    max_epochs=5,
    random_state=0,
)
matcher.fit(pairs[["image", "title"]])
print(f"epochs: {matcher.n_iter_}, temperature_: {matcher.temperature_:.3f}")

# %%
# The photos the matcher never saw, of the 10 most common article types:
classes = items["article"].value_counts().index[:10]
unseen = items.iloc[order[2000:]]
unseen = unseen[unseen["article"].isin(classes)].reset_index(drop=True)
photos, y = unseen["image"], unseen["article"].to_numpy()
print(f"{len(unseen)} unseen photos of {len(classes)} article types:")
print(unseen["article"].value_counts().to_string())

# %%
# Zero-shot: the class names are all it knows
# -------------------------------------------
# ``fit`` with ``classes`` and no ``y`` learns nothing from the photos: it embeds
# the prompts (here the bare names, ``template="{}"``) with the title tower.
zero_shot = ZeroShotClassifier(matcher, classes=classes).fit(photos)
zero_shot_accuracy = zero_shot.score(photos, y)
print(f"zero-shot accuracy: {zero_shot_accuracy:.3f} (chance: {1 / len(classes):.2f})")

# %%
# ``predict_proba`` is the softmax of the photo's similarities to the prompts, at
# the temperature the matcher was trained at. The most probable classes of a few
# photos:
proba = zero_shot.predict_proba(photos[:4])
for path, p, truth in zip(photos[:4], proba, y[:4]):
    top = np.argsort(-p)[:3]
    guesses = ", ".join(f"{zero_shot.classes_[j]} {p[j]:.2f}" for j in top)
    print(f"{Path(path).name}: {truth:<13} -> {guesses}")

# %%
# Choosing the prompt by cross-validation
# ---------------------------------------
# ``template`` is a parameter: a grid search can choose it. With ``few_shot=None``
# the labels only score the prompts (the class vectors stay the prompts), so the
# search compares zero-shot classifiers. A list of templates averages their
# embeddings (prompt ensembling).
from sklearn.model_selection import GridSearchCV  # noqa: E402

search = GridSearchCV(
    ZeroShotClassifier(matcher, few_shot=None),
    {"template": ["{}", "Men {}", "Women {}", ["Men {}", "Women {}"]]},
    cv=3,
).fit(photos, y)
for template, score in zip(
    search.cv_results_["param_template"], search.cv_results_["mean_test_score"]
):
    print(f"template {template!r}: {score:.3f}")
print(f"chosen: {search.best_params_['template']!r}")

# %%
# Few-shot: 1, 5 and 20 labelled photos per class
# -----------------------------------------------
# With labels, :class:`~skmm.nn.ZeroShotClassifier` trains a linear probe (a
# softmax regression at the matcher's temperature) that starts at the prompt
# embeddings and is pulled back to them: the prompts are a head start that labels
# then correct. The reference is a ``LogisticRegression`` on the matcher's photo
# embeddings with the same labelled photos, which starts from nothing. Each
# accuracy is on the unseen photos that are not labelled, averaged over 3 draws of
# the labelled ones.
embeddings = matcher.embed(photos, side="image")
shots = [1, 5, 20]
few_shot, logistic = {k: [] for k in shots}, {k: [] for k in shots}
for k in shots:
    for draw in range(3):
        rng = np.random.default_rng(draw)
        labelled = np.concatenate(
            [rng.choice(np.flatnonzero(y == c), k, replace=False) for c in classes]
        )
        rest = np.setdiff1d(np.arange(len(y)), labelled)
        clf = ZeroShotClassifier(matcher).fit(photos[labelled], y[labelled])
        few_shot[k].append(clf.score(photos[rest], y[rest]))
        lr = LogisticRegression().fit(embeddings[labelled], y[labelled])
        logistic[k].append(lr.score(embeddings[rest], y[rest]))
    print(
        f"{k:>2} per class: few-shot {np.mean(few_shot[k]):.3f}, "
        f"LogisticRegression {np.mean(logistic[k]):.3f}"
    )

# %%
# Accuracy against the number of labelled photos per class.
fig, ax = plt.subplots(figsize=(6, 4))
ax.axhline(zero_shot_accuracy, color="C2", ls="--", label="zero-shot (no label)")
ax.errorbar(
    shots,
    [np.mean(few_shot[k]) for k in shots],
    yerr=[np.std(few_shot[k]) for k in shots],
    marker="o",
    capsize=3,
    label="ZeroShotClassifier, few-shot",
)
ax.errorbar(
    shots,
    [np.mean(logistic[k]) for k in shots],
    yerr=[np.std(logistic[k]) for k in shots],
    marker="s",
    capsize=3,
    label="LogisticRegression on the embeddings",
)
ax.axhline(1 / len(classes), color="grey", ls=":", label="chance")
ax.set_xscale("log")
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("labelled photos per class")
ax.set_ylabel("accuracy on unseen photos")
ax.set_ylim(0, 1)
ax.legend(loc="lower right")
ax.set_title("10 article types, photos the matcher never saw")
fig.tight_layout()

# %%
# The prompts give the classifier a head start that a model trained from the labels
# alone needs many labelled photos to make up; with one labelled photo per class,
# a single photo can be less typical than the class name, so zero-shot may still
# win there.
