"""skmm encoders' transform vs the raw torch forward on the same tensors.

Prints throughput ratios (raw time / skmm time, so 1.0 means no overhead); the
target is >= 0.95. Both sides run the same module with the same batch size and
threads. They alternate run by run, ``PAIRS`` times, so that load from other
processes falls on both alike; the ratio is that of the two best times, and the
spread is the range of the ratios within each pair. skmm's side also turns the items
into tensors, which the raw side gets for free: the script times that step alone, so
the ratio can be read against it, and checks that both sides give the same features
(a transform that did less work would otherwise look fast).

    python benchmarks/bench_encoder_overhead.py
"""

import statistics
import tempfile
import time

import numpy as np
import torch
from _data import fashion, fsdd_waves, pretrained_resnet18
from PIL import Image

from skmm.encoders import AudioEncoder, ImageEncoder

PAIRS, BATCH = 5, 32


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_forward(module, tensors):
    with torch.inference_mode():
        return torch.cat(
            [
                module(tensors[start : start + BATCH])
                for start in range(0, len(tensors), BATCH)
            ]
        ).numpy()


def compare(name, encoder, items):
    column = encoder._check_input(items, reset=False)
    tensors = encoder._load(column, np.arange(len(items)))  # the same preprocessing
    module = encoder.module_.eval()
    np.testing.assert_allclose(
        encoder.transform(items), raw_forward(module, tensors), rtol=1e-4, atol=1e-5
    )
    raw, ours, to_tensors = [], [], []
    for _ in range(PAIRS):  # alternate the two sides, run by run
        raw.append(timed(lambda: raw_forward(module, tensors)))
        ours.append(timed(lambda: encoder.transform(items)))
        to_tensors.append(
            timed(
                lambda: [
                    encoder._load(column, np.arange(i, min(i + BATCH, len(items))))
                    for i in range(0, len(items), BATCH)
                ]
            )
        )
    ratios = [r / o for r, o in zip(raw, ours)]
    n = len(items)
    print(
        f"{name:<34} raw {n / min(raw):7.1f} items/s   skmm {n / min(ours):7.1f} "
        f"items/s   ratio {min(raw) / min(ours):.3f} (per pair "
        f"{min(ratios):.3f}-{max(ratios):.3f}, median {statistics.median(ratios):.3f}); "
        f"items to tensors alone {100 * min(to_tensors) / min(ours):.1f}% of skmm's time"
    )


def main():
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
        f"{PAIRS} alternating pairs"
    )
    paths, _ = fashion(256)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        enc = ImageEncoder(
            "resnet18", weights=pretrained_resnet18(tmp), batch_size=BATCH, device="cpu"
        ).fit(images)
    compare("ImageEncoder(resnet18) 96x96 RGB", enc, images)

    waves = fsdd_waves(512)
    audio = AudioEncoder(8000, max_epochs=0, batch_size=BATCH, device="cpu").fit(waves)
    compare("AudioEncoder 8 kHz, 1 s", audio, waves)


if __name__ == "__main__":
    main()
