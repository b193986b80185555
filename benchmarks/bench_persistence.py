"""joblib vs skops: file size, save and load time of fitted skmm models.

Two models, fitted on fashion photos and titles from ``../shared/data``:

- a fuser pipeline with the pretrained towers that are the offline defaults
  (``ImageEncoder()``: EfficientNet-Lite0 and its ImageNet weights;
  ``TextEncoder()``: wordllama, 34 MB of embedding and its tokenizer) and a
  ``LogisticRegression``;
- an end-to-end net (a small CNN on the photos, an LSTM on the titles).

Each is saved with ``joblib.dump`` and ``skops.io.dump``, then loaded 5 times with
each, alternating; the script prints the sizes, the median save and load times with
their range, and checks that every loaded model predicts exactly what the fitted one
does (on the first ``CHECKED`` rows).

    OMP_NUM_THREADS=1 python benchmarks/bench_persistence.py
"""

import statistics
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import skops.io as sio
import torch
from _data import fashion_table
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skmm.encoders import ImageEncoder, TextEncoder
from skmm.fusion import MultimodalFuser
from skmm.nn import MultimodalNetClassifier

N = 200
REPEATS = 5
# Rows whose probabilities every loaded model must give exactly (a pretrained image
# tower takes a good part of a second per photo on one shared CPU thread).
CHECKED = 16


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def spread(times):
    return f"{statistics.median(times) * 1e3:.0f} ms ({min(times) * 1e3:.0f}-{max(times) * 1e3:.0f})"


def compare(name, model, X, folder):
    X = X[:CHECKED]
    expected = model.predict_proba(X)
    paths = {"joblib": folder / f"{name}.joblib", "skops": folder / f"{name}.skops"}
    save = {
        "joblib": lambda: joblib.dump(model, paths["joblib"]),
        "skops": lambda: sio.dump(model, paths["skops"]),
    }
    trusted = None
    saves = {k: [] for k in paths}
    loads = {k: [] for k in paths}
    for _ in range(REPEATS):
        for kind in paths:  # alternating: the machine's load hits both alike
            saves[kind].append(timed(save[kind])[0])
            if kind == "skops" and trusted is None:
                trusted = sio.get_untrusted_types(file=paths["skops"])
            loader = {
                "joblib": lambda: joblib.load(paths["joblib"]),
                "skops": lambda t=trusted: sio.load(paths["skops"], trusted=t),
            }[kind]
            seconds, loaded = timed(loader)
            loads[kind].append(seconds)
            assert np.array_equal(loaded.predict_proba(X), expected), kind
    print(f"untrusted types listed by skops for {name}: {trusted}")
    for kind, path in paths.items():
        print(
            f"| {name} | {kind} | {path.stat().st_size / 1e6:.1f} MB | "
            f"{spread(saves[kind])} | {spread(loads[kind])} |"
        )
    ratio = [s / j for s, j in zip(loads["skops"], loads["joblib"])]
    print(
        f"| {name} | skops / joblib load time | | | median {statistics.median(ratio):.2f}"
        f" ({min(ratio):.2f}-{max(ratio):.2f}) |"
    )


def main():
    torch.set_num_threads(1)
    X, y = fashion_table(N)
    cpu = dict(device="cpu", random_state=0)
    fuser = make_pipeline(
        MultimodalFuser(
            [
                ("img", ImageEncoder(**cpu), "image"),
                ("txt", TextEncoder(**cpu), "title"),
            ]
        ),
        LogisticRegression(max_iter=500),
    ).fit(X, y)
    net = MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", image_size=64), "image"),
            ("txt", TextEncoder("lstm"), "title"),
        ],
        max_epochs=2,
        **cpu,
    ).fit(X, y)
    print(
        f"torch {torch.__version__}, 1 thread; {N} fashion rows; {REPEATS} loads each"
    )
    print("| model | format | file | save (median, range) | load (median, range) |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        compare("fuser pipeline", fuser, X, Path(tmp))
        compare("net", net, X, Path(tmp))


if __name__ == "__main__":
    main()
