"""ONNX export: onnxruntime vs torch, per tower, on the same decoded batches.

For each tower (a small CNN on photos, the pretrained EfficientNet-Lite0, the
wordllama embedding and a bidirectional LSTM on titles, the audio CNN on spoken
digits) and for an end-to-end net, exports the fitted estimator with
``skmm.export.to_onnx``, then runs the graph in onnxruntime and the module in torch
on the same inputs (``skmm.export.onnx_inputs``, batches of 32), 5 alternating
passes each, one thread each. Prints the largest absolute difference from skmm's
own output (``transform`` / ``predict_proba``), the items/s of both and their ratio
(onnxruntime / torch: above 1, onnxruntime is faster).

    OMP_NUM_THREADS=1 python benchmarks/bench_export.py
"""

import csv
import statistics
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from _data import SHARED, fashion, fsdd_waves

from skmm.encoders import AudioEncoder, ImageEncoder, TextEncoder
from skmm.export import onnx_inputs, to_onnx
from skmm.export._graphs import EncoderGraph, NetGraph
from skmm.nn import MultimodalNetClassifier

BATCH = 32
PASSES = 5


def torch_graph(estimator):
    """The torch module the graph was exported from (the same computation)."""
    if isinstance(estimator, MultimodalNetClassifier):
        return NetGraph(estimator.module_, classifier=True).eval()
    return EncoderGraph(estimator.module_).eval()


def measure(name, estimator, X, reference):
    start = time.perf_counter()
    model = to_onnx(estimator)
    export_time = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options)
    inputs = onnx_inputs(estimator, X)
    n = len(next(iter(inputs.values())))
    batches = [
        {k: v[i : i + BATCH] for k, v in inputs.items()} for i in range(0, n, BATCH)
    ]
    out = np.concatenate([session.run(None, b)[0] for b in batches])
    diff = float(np.nanmax(np.abs(out - reference)))
    graph = torch_graph(estimator)

    def run_torch():
        with torch.inference_mode():
            for b in batches:
                graph(*(torch.from_numpy(v) for v in b.values()))

    def run_ort():
        for b in batches:
            session.run(None, b)

    times = {"ort": [], "torch": []}
    for _ in range(PASSES):
        for kind, fn in (("ort", run_ort), ("torch", run_torch)):
            start = time.perf_counter()
            fn()
            times[kind].append(time.perf_counter() - start)
    ratios = [t / o for o, t in zip(times["ort"], times["torch"])]
    best = {k: n / min(v) for k, v in times.items()}
    print(
        f"| {name} | {diff:.1e} | {best['ort']:.0f} | {best['torch']:.0f} | "
        f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
        f"{export_time:.0f} s |",
        flush=True,
    )


def main():
    torch.set_num_threads(1)
    photos, labels = fashion(128)
    with open(SHARED / "fashion" / "styles.csv", encoding="utf-8") as f:
        titles = [r["productDisplayName"] for r in csv.DictReader(f)][:256]
    waves = fsdd_waves(256)
    cpu = dict(device="cpu", random_state=0, batch_size=BATCH)
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, 1 thread, batch {BATCH}"
    )
    print(
        "| model | max abs diff | onnxruntime items/s | torch items/s | ratio (median, range) | export |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    cases = [
        (
            "ImageEncoder('cnn'), 96 px photos",
            ImageEncoder("cnn", max_epochs=0, **cpu),
            photos,
        ),
        (
            "ImageEncoder() (EfficientNet-Lite0, pretrained), 224 px photos",
            ImageEncoder(**cpu),
            photos,
        ),
        ("TextEncoder('wordllama'), titles", TextEncoder("wordllama", **cpu), titles),
        (
            "TextEncoder('lstm') (bidirectional), titles",
            TextEncoder("lstm", max_epochs=0, **cpu),
            titles,
        ),
        (
            "AudioEncoder(8000), FSDD 1 s",
            AudioEncoder(8000, max_epochs=0, **cpu),
            waves,
        ),
    ]
    for name, enc, items in cases:
        enc.fit(items)
        measure(name, enc, items, enc.transform(items))
    X = pd.DataFrame({"image": photos, "title": titles[: len(photos)]})
    net = MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", image_size=64), "image"),
            ("txt", TextEncoder("lstm"), "title"),
        ],
        max_epochs=2,
        **cpu,
    ).fit(X, labels)
    measure("MultimodalNetClassifier (CNN 64 px + LSTM)", net, X, net.predict_proba(X))


if __name__ == "__main__":
    main()
