"""Resident memory while ImageEncoder encodes large photos: bounded by the batch.

Writes ``N_PHOTOS`` large JPEG photos (2048x1536, as from a phone camera) to a
temporary folder. Each decodes to a 36 MB float32 array, so holding all of them at
once would take 2.3 GB. The encoder keeps the photos' full size (the backbone is a
cheap pooling module, so the forward pass costs little at that size; a small
``image_size`` would let skmm decode JPEGs shrunk, in draft mode, and the decoded items
would be too small to tell a leak from noise). Then, each in a fresh process, the
encoder is fitted on 2 photos, the process's resident-memory high-water mark is reset (Linux
``/proc/self/clear_refs``), and ``transform`` encodes 16 or all 64 photos: the growth
printed is the peak during ``transform`` minus the resident memory just before it, so
the fit does not count.

The same is measured for a deliberately bad encoder that decodes every photo before
the first forward pass: its growth rises by each extra photo's decoded size, and the
script shows that the measurement tells the two apart.

    python benchmarks/bench_memory.py
"""

import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

N_PHOTOS, HEIGHT, WIDTH = 64, 1536, 2048
BATCH_SIZE, NUM_WORKERS = 4, 1
DECODED_MB = HEIGHT * WIDTH * 3 * 4 / 2**20  # one photo as float32 (H, W, 3)


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def encode(folder, n, variant):
    """Run in a child process: fit, reset the peak, transform, print the growth."""
    import torch

    from skmm.encoders import ImageEncoder

    class DecodeAllFirst(ImageEncoder):
        """The flaw to detect: every item decoded before the first forward pass."""

        def _forward(self, column, todo, compute, values):
            decoded = [self._load(column, todo[[i]]) for i in compute]
            super()._forward(column, todo, compute, values)
            del decoded

    cls = DecodeAllFirst if variant == "decode-all-first" else ImageEncoder
    paths = sorted(str(p) for p in Path(folder).glob("*.jpg"))[:n]
    enc = cls(
        torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten()),
        max_epochs=0,
        batch_size=BATCH_SIZE,
        num_workers=NUM_WORKERS,
        device="cpu",
    )
    enc.fit(paths[:2])
    # Hand the heap the fit freed back to the system, so transform cannot reuse it
    # unseen: the growth then counts everything transform holds.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (the peak) to the current resident memory
    before = status_mb("VmRSS")
    out = enc.transform(paths)
    peak = status_mb("VmHWM")
    assert out.shape[0] == n and not np.isnan(out).any()
    print(f"{before:.1f} {peak:.1f}")


def photo(rng):
    """A smooth random colour field with grain: compresses like a real photo."""
    small = rng.random((HEIGHT // 64, WIDTH // 64, 3))
    from PIL import Image

    image = Image.fromarray((small * 255).astype(np.uint8)).resize(
        (WIDTH, HEIGHT), Image.BICUBIC
    )
    grain = rng.integers(-12, 13, (HEIGHT, WIDTH, 3))
    array = np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for i in range(N_PHOTOS):
            photo(rng).save(f"{folder}/{i:03d}.jpg", quality=90)
        size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        print(
            f"{N_PHOTOS} JPEG photos {WIDTH}x{HEIGHT}, {size:.0f} MB on disk, "
            f"{DECODED_MB:.1f} MB each decoded (float32); batch_size={BATCH_SIZE}, "
            f"num_workers={NUM_WORKERS}"
        )
        growth = {}
        for variant in ("skmm", "decode-all-first"):
            for n in (N_PHOTOS // 4, N_PHOTOS):
                line = subprocess.run(
                    [sys.executable, __file__, "--child", folder, str(n), variant],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                before, peak = float(line[0]), float(line[1])
                growth[variant, n] = peak - before
                print(
                    f"{variant:>16}, {n:>3} photos: RSS before transform "
                    f"{before:7.1f} MB, peak {peak:7.1f} MB, growth "
                    f"{growth[variant, n]:7.1f} MB"
                )
    # At most num_workers + 1 batches are decoded at once (see skmm.base._prefetch);
    # each batch also exists stacked and normalised, so the growth is a few times this.
    bound = (NUM_WORKERS + 1) * BATCH_SIZE * DECODED_MB
    # An encoder that held its items would grow by their decoded size for each extra
    # photo; one bounded by the batch grows by nothing beyond run-to-run noise.
    extra = N_PHOTOS - N_PHOTOS // 4
    held = {}
    for variant in ("skmm", "decode-all-first"):
        added = growth[variant, N_PHOTOS] - growth[variant, N_PHOTOS // 4]
        held[variant] = added / (extra * DECODED_MB)
        print(
            f"{variant:>16}: {growth[variant, N_PHOTOS] / DECODED_MB:.1f} decoded "
            f"photos' worth ({growth[variant, N_PHOTOS] / bound:.1f}x the {bound:.0f} MB "
            f"of num_workers + 1 decoded batches); the {extra} extra photos add "
            f"{added:.0f} MB, {100 * held[variant]:.0f}% of their decoded size"
        )
    print(
        "bounded by the batch, not the number of photos (extra photos add < 25% of "
        "their decoded size): "
        + ", ".join(f"{v} {'yes' if h < 0.25 else 'NO'}" for v, h in held.items())
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        encode(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
