"""The training engine at scale: memory, loop overhead, streaming, precision, GPUs.

Each part prints skmm against its reference, measured side by side in one run (the
timed parts alternate the two sides, repeated, with one torch thread, and print
the spread over the repeats):

- ``memory``: peak resident memory of fitting ``ImageEncoder("cnn")`` and a net
  with that tower on N photo files at 224 px (RGB PNGs written from MNIST digits),
  N from 500 to 8,000, each fit in a fresh process: the growth per 1,000 photos
  (least squares over N), skmm (streamed) against the in-memory variant (every
  item decoded before the first step, as before this engine; N <= 2,000), which
  shows that the measurement detects a growth;
- ``loop``: ``ImageEncoder("cnn").fit`` (3 epochs, 2,000 MNIST digits, batches
  of 32, Adam) against a hand-written torch loop on the same module, initial
  weights, batches, optimizer and decoded tensors; both end with the same weights
  (checked). The ratio is raw time / skmm time (1.0: no overhead);
- ``throughput``: training items per second on fashion JPEGs (decoded and resized
  every epoch when streamed), in memory against streamed with 0 and 2 workers;
- ``precision``: ``precision="bf16-mixed"`` against ``"32"`` on the CPU (time and
  accuracy of the CNN encoder on MNIST);
- ``recalibration``: what the batch-norm recalibration pass after an encoder's fit
  changes (features, and a linear model's accuracy on them) and what it costs;
- ``accuracy``: the hard AV-digits net (image and sound towers, unheard speakers)
  trained in memory, streamed (the same seed: the same predictions) and on 2 gloo
  processes (torchrun) with the same global batch;
- ``gpu``: on a machine with CUDA GPUs (not run here): fp32 against bf16-mixed and
  16-mixed, and 1 against 2 GPUs (torchrun), fine-tuning a ResNet-18.

    OMP_NUM_THREADS=1 python benchmarks/bench_training.py [part ...]
"""

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _data import SHARED, fashion

REPEATS = 5


def mnist(n):
    """The first ``n`` MNIST test digits (uint8, 28x28) and their labels."""

    def idx(name, header):
        with gzip.open(SHARED / "mnist" / name, "rb") as f:
            dims = np.frombuffer(f.read(header), ">i4")[1:]
            return np.frombuffer(f.read(), np.uint8).reshape(dims)

    images = idx("t10k-images-idx3-ubyte.gz", 16)[:n]
    return images, idx("t10k-labels-idx1-ubyte.gz", 8)[:n]


def timed(function):
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def spread(values):
    return (
        f"{min(values):.3f}-{max(values):.3f} (median {statistics.median(values):.3f})"
    )


# -- loop: skmm's fit against a hand-written loop ------------------------------------
def _capture_initial_state():
    """A callback keeping the module's initial weights (of the tower and the head)."""
    from skmm.callbacks import Callback

    class Initial(Callback):
        def on_train_begin(self, estimator, *, module, optimizer):
            self.state = {k: v.clone() for k, v in module.state_dict().items()}
            self.module = module

    return Initial()


def raw_loop(module, items, target, seed, epochs, batch_size):
    """The loop a user would write: the same batches, Adam, cross-entropy."""
    optimizer = torch.optim.Adam(
        [p for p in module.parameters() if p.requires_grad], lr=1e-3
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(items), generator=generator)
        for start in range(0, len(items), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue
            loss = loss_fn(module(items[index]), target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return module


def part_loop(n=2000, epochs=3, batch_size=32):
    import copy

    from skmm.encoders import ImageEncoder

    images, y = mnist(n)
    initial = _capture_initial_state()

    def skmm_fit():
        enc = ImageEncoder(
            "cnn",
            max_epochs=epochs,
            batch_size=batch_size,
            callbacks=[initial],
            random_state=0,
            device="cpu",
        )
        return enc.fit(images, y)

    fitted = skmm_fit()  # warm-up (imports), and the module to start the raw loop from
    column = fitted._check_input(images, reset=False)
    items = fitted._load(column, np.arange(n))
    target = torch.as_tensor(np.searchsorted(fitted.classes_, y))
    template = copy.deepcopy(initial.module)
    template.load_state_dict(initial.state)
    seed = fitted._seed()

    def raw():
        module = copy.deepcopy(template)
        return raw_loop(module, items, target, seed, epochs, batch_size)

    ours, theirs = [], []
    for _ in range(REPEATS):
        t, trained = timed(raw)
        theirs.append(t)
        t, fitted = timed(skmm_fit)
        ours.append(t)
    # The same weights (batch-norm statistics aside, which skmm recalibrates).
    mine = fitted.module_.state_dict()
    for name, value in trained[0].state_dict().items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-5)
    ratios = [r / o for r, o in zip(theirs, ours)]
    print(
        f"loop: ImageEncoder('cnn').fit, {epochs} epochs on {n} MNIST digits, batch "
        f"{batch_size}: skmm {n * epochs / min(ours):.0f} items/s, raw loop "
        f"{n * epochs / min(theirs):.0f} items/s; raw/skmm best {min(theirs) / min(ours):.3f}, "
        f"per pair {spread(ratios)}; same weights: yes"
    )


PARTS = {"loop": part_loop}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=list(PARTS), choices=list(PARTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} cores"
    )
    for part in args.parts:
        PARTS[part]()


if __name__ == "__main__":
    main()
