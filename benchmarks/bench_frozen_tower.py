"""A frozen tower is encoded once per fit: a net's fit time with 1 and 10 epochs.

A net over a frozen pretrained image tower (here ResNet-18 with ``max_epochs=0``:
the tower is used as it is) computes the tower's features once per fit, through the
encoder's batched encoding, and trains only its fusion and head in every epoch. The
same net with the tower trainable runs the tower forward and backward in every epoch.
Printed side by side from one run: fit time with 1 and with 10 epochs, and their
ratio (1.0 would be free epochs; 10 is the cost of running the tower every epoch).

Run: ``python benchmarks/bench_frozen_tower.py [n_images]``.
"""

import sys
import time

import numpy as np
import pandas as pd
import torch

from skmm.encoders import ImageEncoder
from skmm.nn import MultimodalNetClassifier


def fit_seconds(images, y, epochs, frozen):
    tower = ImageEncoder(
        "resnet18", weights=None, image_size=64, max_epochs=0 if frozen else 1
    )
    net = MultimodalNetClassifier(
        [("img", tower, "image")],
        max_epochs=epochs,
        early_stopping=False,
        batch_size=32,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    net.fit(images, y)
    return time.perf_counter() - start


def main(n=256):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = pd.DataFrame(
        {"image": list(rng.integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8))}
    )
    y = rng.integers(0, 4, n)
    print(f"{n} images of 64x64, ResNet-18 tower, 1 torch thread")
    fit_seconds(images.iloc[:32], y[:32], 1, True)  # warm-up: torch's first-call costs
    print(f"{'tower':<10} {'1 epoch (s)':>12} {'10 epochs (s)':>14} {'ratio':>7}")
    for frozen in (True, False):
        one = fit_seconds(images, y, 1, frozen)
        ten = fit_seconds(images, y, 10, frozen)
        name = "frozen" if frozen else "trained"
        print(f"{name:<10} {one:12.1f} {ten:14.1f} {ten / one:7.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
