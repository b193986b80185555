"""skmm encoders' transform vs the raw torch forward on the same tensors.

Prints throughput ratios (raw time / skmm time, so 1.0 means no overhead); the
target is >= 0.95. Both sides run the same module with the same batch size and
threads, interleaved, and each keeps its best of several repeats.

    python benchmarks/bench_encoder_overhead.py
"""

import tempfile
import time

import numpy as np
import torch
from _data import fashion, fsdd_waves, pretrained_resnet18
from PIL import Image

from skmm.encoders import AudioEncoder, ImageEncoder

REPEATS, BATCH = 3, 32


def best_of(fn):
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_forward(module, tensors):
    with torch.inference_mode():
        for start in range(0, len(tensors), BATCH):
            module(tensors[start : start + BATCH])


def compare(name, encoder, items, tensors):
    module = encoder.module_.eval()
    raw, ours = [], []
    for _ in range(2):  # interleave the two sides
        raw.append(best_of(lambda: raw_forward(module, tensors)))
        ours.append(best_of(lambda: encoder.transform(items)))
    raw, ours = min(raw), min(ours)
    print(
        f"{name:<34} raw {len(items) / raw:8.1f} items/s   skmm {len(items) / ours:8.1f} "
        f"items/s   ratio {raw / ours:.3f}"
    )
    return raw / ours


def main():
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}"
    )
    paths, _ = fashion(256)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        enc = ImageEncoder(
            "resnet18", weights=pretrained_resnet18(tmp), batch_size=BATCH, device="cpu"
        ).fit(images)
    column = enc._check_input(images, reset=False)
    tensors = enc._load(column, np.arange(len(images)))  # the same preprocessed batch
    compare("ImageEncoder(resnet18) 96x96 RGB", enc, images, tensors)

    waves = fsdd_waves(512)
    audio = AudioEncoder(8000, max_epochs=0, batch_size=BATCH, device="cpu").fit(waves)
    tensors = audio._load(audio._check_input(waves, reset=False), np.arange(len(waves)))
    compare("AudioEncoder 8 kHz, 1 s", audio, waves, tensors)


if __name__ == "__main__":
    main()
