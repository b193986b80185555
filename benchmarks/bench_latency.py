"""One-row latency of fitted models, against the raw decode + forward of their towers.

A web service scores one product at a time: a photo path and a title. For three
fitted models on the fashion data (``../shared/data``):

- a fuser pipeline: the default towers (``ImageEncoder()``, the pretrained and
  frozen EfficientNet-Lite0; ``TextEncoder()``, wordllama's embedding), fused,
  under a ``LogisticRegression``;
- late fusion: one ``LogisticRegression`` per tower, soft voting;
- a net: the same two frozen towers under a trained fusion head
  (``MultimodalNetClassifier``);

it times ``predict_proba`` on a one-row DataFrame, and the floor: the same work in
plain torch with nothing of skmm (Pillow decodes the photo, torchvision resizes and
crops it, the tokenizer encodes the title, the fitted towers run on one item each).
The two alternate, row after row, over ``ROWS`` different rows; it prints the p50
and p95 of each, their ratio (target: one row within 1.3x of the floor), the
overhead in ms (the p50 over rows of ours minus the floor, timed one after the
other: readable whatever the machine's load, which stretches both sides), the part
of it that is scikit-learn's heads (``LogisticRegression.predict_proba`` on the
row's features, one per tower for late fusion, timed in the same loop; the net has
none), and the batch throughput of ``predict_proba`` on all the rows at once
against the floor's batched forward. Both sides' outputs are checked to agree.

    OMP_NUM_THREADS=1 python benchmarks/bench_latency.py
"""

import time

import numpy as np
import torch
from _data import fashion_table
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.nn import MultimodalNetClassifier

N_TRAIN = 300
ROWS = 150  # rows timed one at a time (after the training rows)
WARMUP = 10


def image_encoder():
    # The default: the pretrained, frozen EfficientNet-Lite0 shipped in its wheel.
    return ImageEncoder(device="cpu")


def text_encoder():
    return TextEncoder("wordllama", device="cpu")


# -- the floor: plain torch, the fitted towers, nothing of skmm -------------------------
class Floor:
    """Decode one photo and one title, run the two towers (and a net's head)."""

    def __init__(self, image_enc, text_enc, network=None):
        self.image = image_enc
        self.text = text_enc
        self.network = network

    def decode_image(self, path):
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        x = torch.from_numpy(array).permute(2, 0, 1).float() / 255
        mode = InterpolationMode(self.image.interpolation_)
        size = list(self.image.image_size_)
        if self.image.resize_size_ is None:
            return TF.resize(x, size, mode, antialias=True)
        x = TF.resize(x, self.image.resize_size_, mode, antialias=True)
        return TF.center_crop(x, size)

    def decode_text(self, title):
        ids = self.text.processor_.encode(title, add_special_tokens=False).ids
        ids = torch.tensor(ids[: self.text.max_length])
        return torch.stack([ids, torch.ones_like(ids)])

    def __call__(self, paths, titles):
        images = torch.stack([self.decode_image(p) for p in paths])
        texts = [self.decode_text(t) for t in titles]
        width = max(t.shape[1] for t in texts)
        tokens = torch.zeros(len(texts), 2, width, dtype=torch.long)
        for i, t in enumerate(texts):
            tokens[i, :, : t.shape[1]] = t
        with torch.inference_mode():
            if self.network is None:
                return (self.image.module_(images), self.text.module_(tokens))
            towers = self.network.towers
            blocks = [
                norm(tower(x))
                for tower, norm, x in zip(towers, self.network.norms, (images, tokens))
            ]
            available = torch.ones(len(paths), 2, dtype=torch.bool)
            return torch.softmax(
                self.network.head(self.network.fusion(blocks, available)), dim=1
            )


def percentiles(times):
    return np.percentile(np.asarray(times) * 1e3, [50, 95])


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def sklearn_heads(model, X):
    """Per row, the calls of scikit-learn's heads on that row's features (fitted
    towers' output computed beforehand): what of one-row latency is not skmm's."""
    if isinstance(model, Pipeline):
        features = model[:-1].transform(X)
        return [[(model[-1].predict_proba, features[i : i + 1])] for i in range(len(X))]
    if isinstance(model, LateFusionClassifier):
        towers = [
            (pipe[-1].predict_proba, pipe[:-1].transform(X[column]))
            for pipe, column in (
                (model.named_estimators_["img"], "image"),
                (model.named_estimators_["txt"], "title"),
            )
        ]
        return [[(head, z[i : i + 1]) for head, z in towers] for i in range(len(X))]
    return [[] for _ in range(len(X))]  # a net's head is torch, inside the floor


def measure(name, model, floor, X):
    rows = [X.iloc[[i]] for i in range(len(X))]
    for path in X["image"]:  # every photo in the page cache: both sides read it warm
        with open(path, "rb") as f:
            f.read()
    for row in rows[:WARMUP]:
        model.predict_proba(row)
        floor(row["image"].tolist(), row["title"].tolist())
    heads = sklearn_heads(model, X)
    ours, base, sklearn = [], [], []
    for i, row in enumerate(rows):
        paths, titles = row["image"].tolist(), row["title"].tolist()
        # Alternating which side goes first, so that neither always follows the other.
        if i % 2:
            base.append(timed(floor, paths, titles))
            ours.append(timed(model.predict_proba, row))
        else:
            ours.append(timed(model.predict_proba, row))
            base.append(timed(floor, paths, titles))
        sklearn.append(sum(timed(head, z) for head, z in heads[i]))
    (o50, o95), (b50, b95) = percentiles(ours), percentiles(base)
    ratios = np.asarray(ours) / np.asarray(base)
    overhead = np.median(np.asarray(ours) - np.asarray(base)) * 1e3
    in_sklearn = np.median(sklearn) * 1e3
    start = time.perf_counter()
    model.predict_proba(X)
    batch = len(X) / (time.perf_counter() - start)
    start = time.perf_counter()
    floor(X["image"].tolist(), X["title"].tolist())
    floor_batch = len(X) / (time.perf_counter() - start)
    print(
        f"| {name} | {o50:.1f} / {o95:.1f} | {b50:.1f} / {b95:.1f} | "
        f"{o50 / b50:.2f} (pairs: {np.median(ratios):.2f}) | {overhead:.2f} | "
        f"{in_sklearn:.2f} | {batch:.0f} | {floor_batch:.0f} |",
        flush=True,
    )


def models(X_train, y_train, image_encoder, text_encoder):
    """The three model kinds on the given towers, fitted, with their floors."""
    head = dict(max_iter=1000)
    fuser = make_pipeline(
        MultimodalFuser(
            [("img", image_encoder(), "image"), ("txt", text_encoder(), "title")]
        ),
        LogisticRegression(**head),
    ).fit(X_train, y_train)
    late = LateFusionClassifier(
        [
            (
                "img",
                make_pipeline(image_encoder(), LogisticRegression(**head)),
                "image",
            ),
            ("txt", make_pipeline(text_encoder(), LogisticRegression(**head)), "title"),
        ],
        voting="soft",
    ).fit(X_train, y_train)
    net = MultimodalNetClassifier(
        [("img", image_encoder(), "image"), ("txt", text_encoder(), "title")],
        max_epochs=3,
        device="cpu",
        random_state=0,
    ).fit(X_train, y_train)
    img, txt = net.named_encoders_["img"], net.named_encoders_["txt"]
    return {
        "fuser pipeline": (fuser, Floor(fuser[0]["img"], fuser[0]["txt"])),
        "late fusion": (
            late,
            Floor(late.named_estimators_["img"][0], late.named_estimators_["txt"][0]),
        ),
        "net": (net, Floor(img, txt, network=net.module_.eval())),
    }


def check_floors(fitted, X):
    """Both sides compute the same: the net's probabilities, the towers' features."""
    net, floor = fitted["net"]
    got = floor(X["image"][:8].tolist(), X["title"][:8].tolist())
    assert np.abs(got.numpy() - net.predict_proba(X[:8])).max() < 1e-4, "not the net"
    fuser, floor = fitted["fuser pipeline"]
    features = floor(X["image"][:4].tolist(), X["title"][:4].tolist())
    reference = fuser[0]["img"].transform(X["image"][:4])
    assert np.abs(features[0].numpy() - reference).max() < 1e-4, "not the same tower"


def small_image_encoder():
    return ImageEncoder(
        "cnn", max_epochs=0, image_size=64, device="cpu", random_state=0
    )


def main():
    torch.set_num_threads(1)
    X, y = fashion_table(N_TRAIN + ROWS)
    X_train, y_train, X_test = X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:]
    print(
        f"torch {torch.__version__}, 1 thread; {ROWS} rows one at a time, alternating"
    )
    print(
        "| model | one row p50 / p95 (ms) | floor p50 / p95 (ms) | ratio of p50 "
        "(median of pairs) | overhead p50 (ms) | of which sklearn heads (ms) | "
        "batch rows/s | floor batch rows/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    towers = {
        "EfficientNet-Lite0 + wordllama": image_encoder,
        "small CNN at 64 px + wordllama": small_image_encoder,
    }
    for label, make_image in towers.items():
        fitted = models(X_train, y_train, make_image, text_encoder)
        check_floors(fitted, X_test)
        for kind, (model, floor) in fitted.items():
            measure(f"{kind}, {label}", model, floor, X_test)


if __name__ == "__main__":
    main()
