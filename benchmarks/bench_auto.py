"""The one-line learner (issue 26): accuracy, time to first result, Dask, detection.

Sections (all by default, or name some: ``python benchmarks/bench_auto.py fashion``):

- ``detection``: a table with a column of every kind, and the kinds detected.
- ``fashion``: the catalogue (3,000 rows), 2/3 to train and 1/3 to test (one split for
  every model), targets subCategory and usage (classes with at least 5 training
  rows); inputs the photo's path, productDisplayName, gender, baseColour, season,
  year. ``MultimodalClassifier()`` and ``preset="best"`` against the plain baseline
  (TF-IDF title + one-hot categoricals + LogisticRegression), the best hand-built
  skmm pipeline (EfficientNet-Lite0 + wordllama + one-hot, concat, LogisticRegression)
  and a plain ``StackingClassifier`` over three families (the baseline, the
  hand-built fuser, the image alone). Every photo is encoded once for all of them,
  through one embedding cache.
- ``time``: time to first result, ``MultimodalClassifier().fit`` on the catalogue's
  training rows with an empty cache, then again with the cache of the first fit
  (2 torch threads). The second fit still reads every photo's entry, encodes the
  titles and fits the head: its ceiling is the cold time over that rest.
- ``avdigits``: hard AV-digits, unheard speakers (lucas, yweweler) as in
  ``skmm/demo.py``, against the README's demo table.
- ``dask``: ``predict`` on a Dask DataFrame of 8 partitions, through the learner and
  through a plain ``Pipeline(vectorizer, LogisticRegression)``: partitions computed
  when ``predict`` is called, and when its result is computed.

    python benchmarks/bench_auto.py             # about 40 min on a loaded 2-core CPU
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from _data import SHARED
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skmm import MultimodalClassifier, MultimodalVectorizer
from skmm.auto._defaults import pretrained_image_encoder
from skmm.auto._kinds import detect_kind
from skmm.encoders import AudioFeatures, TextEncoder
from skmm.fusion import MultimodalFuser

COLUMNS = ["photo", "productDisplayName", "gender", "baseColour", "season", "year"]
CATEGORICAL = ["gender", "baseColour", "season", "year"]


def catalogue():
    rows = pd.read_csv(SHARED / "fashion" / "styles.csv")
    rows["photo"] = [str(SHARED / "fashion" / "images" / f"{i}.jpg") for i in rows.id]
    train, test = train_test_split(
        np.arange(len(rows)), test_size=1 / 3, random_state=0
    )
    return rows, train, test


def target_split(rows, train, test, target):
    """Rows of the classes with at least 5 training rows (and a target)."""
    y = rows[target]
    counts = y.iloc[train].value_counts()
    keep = y.isin(counts[counts >= 5].index).to_numpy()
    return train[keep[train]], test[keep[test]], y.to_numpy(dtype=object)


def scores(y_true, y_pred):
    return accuracy_score(y_true, y_pred), f1_score(y_true, y_pred, average="macro")


# -- the models ---------------------------------------------------------------------------
def baseline():
    columns = ColumnTransformer(
        [
            ("title", TfidfVectorizer(), "productDisplayName"),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def _image(memory):
    return pretrained_image_encoder(memory=memory)


def hand_built(memory):
    fuser = MultimodalFuser(
        [
            ("img", _image(memory), "photo"),
            ("txt", TextEncoder("wordllama"), "productDisplayName"),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ],
        missing="mean",
    )
    return make_pipeline(fuser, LogisticRegression(max_iter=2000))


def image_only(memory):
    fuser = MultimodalFuser([("img", _image(memory), "photo")])
    return make_pipeline(fuser, LogisticRegression(max_iter=2000))


def plain_stacking(memory):
    families = [
        ("baseline", baseline()),
        ("fuser", hand_built(memory)),
        ("image", image_only(memory)),
    ]
    return StackingClassifier(
        families, final_estimator=LogisticRegression(max_iter=2000)
    )


# -- sections ----------------------------------------------------------------------------
def detection():
    """Every kind, detected from values (a cell of each column printed)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp()
    photos = sorted(str(p) for p in (SHARED / "fashion" / "images").glob("*.jpg"))[:6]
    fake = os.path.join(folder, "notes.png")
    with open(fake, "w") as f:
        f.write("not an image")
    wavs = sorted(str(p) for p in (SHARED / "fsdd" / "recordings").glob("*.wav"))[:6]
    table = pd.DataFrame(
        {
            "a": photos,
            "b": [photos[0:2], [photos[2]], [], None, [None, photos[3]], photos[4:6]],
            "c": ["https://example.org/shoe.jpg?w=96", None] * 3,
            "d": [Image.open(p) for p in photos],
            "e": [rng.integers(0, 255, (28, 28), dtype=np.uint8) for _ in range(6)],
            "f": wavs,
            "g": [rng.normal(size=800 + 100 * i).astype(np.float32) for i in range(6)],
            "h": [rng.normal(size=32) for _ in range(6)],
            "i": [f"Nike Men Black Running Shoe {i}" for i in range(6)],
            "j": ["Navy Blue", "Red", None, "Red", "Green", "Red"],
            "k": ["1.5", "2", None, "3", "4e1", "5"],
            "l": ["2024-01-02", "2024-02-03", None, "2024-03-04", "2024-04-05", None],
            "m": [True, False, True, True, False, True],
            "n": [fake, None] * 3,
            "o": ["same"] * 6,
            "p": [None] * 6,
        }
    )
    # What MultimodalVectorizer.fit decides (without encoding: the URL is not
    # fetched).
    print("| column | first cell | kind | why |")
    print("| --- | --- | --- | --- |")
    for column in table.columns:
        found = detect_kind(table[column], column)
        cell = repr(table[column].iloc[0]).replace("|", "/")
        cell = cell if len(cell) < 40 else cell[:37] + "..."
        print(f"| {column} | `{cell}` | {found.kind} | {found.reason} |")


def fashion(cache):
    rows, train, test = catalogue()
    X = rows[COLUMNS]
    models = {
        "baseline (TF-IDF + one-hot + LR)": lambda: baseline(),
        "hand-built (EfficientNet-Lite0 + wordllama + one-hot, concat, LR)": lambda: (
            hand_built(cache)
        ),
        "plain StackingClassifier (baseline, fuser, image)": lambda: plain_stacking(
            cache
        ),
        "MultimodalClassifier()": lambda: MultimodalClassifier(
            vectorizer=MultimodalVectorizer(memory=cache), random_state=0
        ),
        'MultimodalClassifier(preset="best")': lambda: MultimodalClassifier(
            preset="best",
            vectorizer=MultimodalVectorizer(memory=cache),
            random_state=0,
        ),
    }
    print("| model | target | accuracy | macro-F1 | fit (s) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for target in ("subCategory", "usage"):
        a, b, y = target_split(rows, train, test, target)
        for name, make in models.items():
            start = time.perf_counter()
            model = make().fit(X.iloc[a], y[a])
            elapsed = time.perf_counter() - start
            acc, f1 = scores(y[b], model.predict(X.iloc[b]))
            print(f"| {name} | {target} | {acc:.3f} | {f1:.3f} | {elapsed:.0f} |")
            if hasattr(model, "weights_"):
                weights = {k: round(v, 2) for k, v in model.weights_.items()}
                print(f"|   weights | {target} | {weights} | | |", flush=True)
    print(
        f"({len(train)} training rows, {len(test)} test rows; classes with >= 5 "
        "training rows)"
    )


def time_to_first_result(folder):
    rows, train, _ = catalogue()
    X, y = rows[COLUMNS].iloc[train], rows["subCategory"].to_numpy()[train]
    torch.set_num_threads(2)
    times = {}
    for run in ("cold", "second", "third"):
        if run == "cold":
            shutil.rmtree(folder, ignore_errors=True)
        clf = MultimodalClassifier(vectorizer=MultimodalVectorizer(memory=folder))
        start = time.perf_counter()
        clf.fit(X, y)
        times[run] = time.perf_counter() - start
        print(f"{run} fit: {times[run]:.1f} s", flush=True)
    entries = sum(len(files) for _, _, files in os.walk(folder))
    print(
        f"{len(X)} rows, {entries} cached photo entries; cold / second fit: "
        f"{times['cold'] / times['second']:.1f}x, cold / third: "
        f"{times['cold'] / times['third']:.1f}x"
    )


def avdigits(cache):
    from skmm.datasets import load_av_digits

    frame = load_av_digits(variant="hard").frame
    test = frame["speaker"].isin(["lucas", "yweweler"]).to_numpy()
    X, y = frame[["image", "audio"]], frame["digit"].to_numpy()
    speakers = frame["speaker"].to_numpy()[~test]
    by_speaker = [
        (np.flatnonzero(speakers != s), np.flatnonzero(speakers == s))
        for s in np.unique(speakers)
    ]
    settings = {
        "MultimodalClassifier()": {},
        'MultimodalClassifier(preset="best")': {"preset": "best"},
        'preset="best", folds by speaker': {"preset": "best", "cv": by_speaker},
    }
    print("| model | audio encoder | accuracy | macro-F1 | fit (s) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for audio in ("auto", AudioFeatures(sample_rate=8000)):
        label = "default (16 kHz)" if audio == "auto" else "AudioFeatures(8000)"
        for name, params in settings.items():
            vec = MultimodalVectorizer(audio=audio, memory=cache)
            clf = MultimodalClassifier(vectorizer=vec, random_state=0, **params)
            start = time.perf_counter()
            clf.fit(X[~test], y[~test])
            elapsed = time.perf_counter() - start
            acc, f1 = scores(y[test], clf.predict(X[test]))
            print(f"| {name} | {label} | {acc:.3f} | {f1:.3f} | {elapsed:.0f} |")
    print(f"({(~test).sum()} training rows, {test.sum()} test rows)", flush=True)


def dask_predict(cache):
    import dask
    import dask.dataframe as dd
    from dask.callbacks import Callback

    rows, train, test = catalogue()
    X, y = rows[COLUMNS], rows["usage"].fillna("Casual").to_numpy()
    fitted = MultimodalClassifier(vectorizer=MultimodalVectorizer(memory=cache)).fit(
        X.iloc[train], y[train]
    )
    pipe = make_pipeline(MultimodalVectorizer(memory=cache), LogisticRegression())
    pipe.fit(X.iloc[train], y[train])
    frame = dd.from_pandas(X.iloc[test].reset_index(drop=True), npartitions=8)

    class Counter(Callback):
        def __init__(self):
            super().__init__()
            self.parts = 0

        def _posttask(self, key, result, dsk, state, worker_id):
            name = key[0] if isinstance(key, tuple) else key
            if "apply_partition" in str(name) or "_apply_partition" in str(name):
                self.parts += 1

    print("| route | partitions computed by predict() | by compute() | result |")
    print("| --- | ---: | ---: | --- |")
    for name, model in (("MultimodalClassifier", fitted), ("Pipeline", pipe)):
        with dask.config.set(scheduler="sync"), Counter() as calls:
            out = model.predict(frame)
            at_call = calls.parts
            lazy = dask.is_dask_collection(out)
            if lazy:
                values = out.compute().to_numpy()
        computed = calls.parts - at_call
        if not lazy:
            values = out
        same = np.array_equal(values, fitted.predict(X.iloc[test]))
        print(
            f"| {name} | {at_call} | {computed if lazy else '-'} | "
            f"{'lazy Dask Series' if lazy else type(out).__name__}, "
            f"{'same' if same else 'different'} predictions |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sections = ["detection", "fashion", "time", "avdigits", "dask"]
    parser.add_argument("sections", nargs="*", default=sections, choices=sections)
    parser.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "skmm_bench_auto_cache"),
        help="embedding cache shared by the sections (fashion, avdigits, dask)",
    )
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}, python {sys.version.split()[0]}")
    for section in args.sections:
        print(f"\n## {section}\n", flush=True)
        start = time.perf_counter()
        if section == "detection":
            detection()
        elif section == "fashion":
            fashion(args.cache)
        elif section == "time":
            time_to_first_result(tempfile.mkdtemp(prefix="skmm_time_"))
        elif section == "avdigits":
            avdigits(args.cache)
        else:
            dask_predict(args.cache)
        print(f"({section}: {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
