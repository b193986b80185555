"""Accuracy of the offline pretrained defaults against what they replaced.

The numbers of ``docs/pretrained.rst``, on the fashion catalogue, a
``LogisticRegression`` on each encoder's features, unseen rows scored:

- ``ImageEncoder()`` (EfficientNet-Lite0) with its weights' own preprocessing
  (inputs scaled to [-1, 1], as TensorFlow's EfficientNet-Lite was trained) against
  the same network with ImageNet's mean and standard deviation, at 224 (the
  default) and at the photos' own 96 px; 10 article types, 20 labelled photos each,
  30 others scored.
- ``TextEncoder()`` (wordllama, frozen) against ``TextEncoder("lstm")`` trained on
  the labelled titles, for two targets and two label budgets, mean of 3 draws.

    python benchmarks/bench_pretrained_defaults.py
"""

import csv

import numpy as np
import torch
from _data import SHARED
from sklearn.linear_model import LogisticRegression

from skmm.encoders import ImageEncoder, TextEncoder

IMAGENET = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def rows():
    with open(SHARED / "fashion" / "styles.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def per_class(y, classes, n, rng, exclude=()):
    return np.concatenate(
        [
            rng.choice(np.setdiff1d(np.flatnonzero(y == c), exclude), n, replace=False)
            for c in classes
        ]
    )


def score(Z_train, y_train, Z_test, y_test):
    clf = LogisticRegression(max_iter=3000).fit(Z_train, y_train)
    return clf.score(Z_test, y_test)


def images(table):
    paths = np.array(
        [str(SHARED / "fashion" / "images" / f"{r['id']}.jpg") for r in table],
        dtype=object,
    )
    y = np.array([r["articleType"] for r in table])
    types, counts = np.unique(y, return_counts=True)
    classes = types[np.argsort(-counts, kind="stable")[:10]]
    rng = np.random.default_rng(0)
    train = per_class(y, classes, 20, rng)
    test = per_class(y, classes, 30, rng, exclude=train)
    print("| image size | normalisation | accuracy |")
    print("| --- | --- | --- |")
    for size in (None, 96):
        enc = ImageEncoder(image_size=size, batch_size=64, device="cpu")
        enc.fit(paths[train])
        for name in ("the weights' own ([-1, 1])", "ImageNet's"):
            if name == "ImageNet's":
                mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
                enc.module_.normalize.mean.copy_(mean)
                enc.module_.normalize.std.copy_(std)
            accuracy = score(
                enc.transform(paths[train]),
                y[train],
                enc.transform(paths[test]),
                y[test],
            )
            print(f"| {enc.image_size_[0]} | {name} | {accuracy:.3f} |", flush=True)


def titles(table):
    texts = np.array([r["productDisplayName"] for r in table], dtype=object)
    print("| target | labelled per class | TextEncoder() | TextEncoder('lstm') |")
    print("| --- | --- | --- | --- |")
    for target in ("articleType", "usage"):
        y = np.array([r[target] for r in table])
        types, counts = np.unique(y, return_counts=True)
        classes = types[counts >= 40]
        for n in (5, 20):
            scores = {"wordllama": [], "lstm": []}
            for seed in range(3):
                train = per_class(y, classes, n, np.random.default_rng(seed))
                test = np.setdiff1d(np.flatnonzero(np.isin(y, classes)), train)
                for backbone in scores:
                    enc = TextEncoder(backbone, device="cpu", random_state=seed)
                    Z = enc.fit_transform(texts[train], y[train])
                    scores[backbone].append(
                        score(Z, y[train], enc.transform(texts[test]), y[test])
                    )
            wordllama, lstm = (np.mean(v) for v in scores.values())
            print(
                f"| {target} ({len(classes)} classes) | {n} | {wordllama:.3f} | "
                f"{lstm:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    table = rows()
    images(table)
    titles(table)
