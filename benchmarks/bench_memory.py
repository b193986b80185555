"""Resident memory while ImageEncoder encodes image files: bounded by the batch.

Writes MNIST test images as PNG files to a temporary folder, then encodes 1,000 and
10,000 of them, each in a fresh process, and prints the peak resident-memory growth
of ``transform`` (target <= 1 GB) and the ratio between the two runs (memory that
grew with the number of files would show a ratio near 10).

    python benchmarks/bench_memory.py
"""

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image


def current_rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def encode(folder, n):
    """Run in a child process: fit, then measure the growth during transform."""
    from skmm.encoders import ImageEncoder

    paths = sorted(str(p) for p in Path(folder).glob("*.png"))[:n]
    enc = ImageEncoder("cnn", max_epochs=0, batch_size=256, num_workers=2, device="cpu")
    enc.fit(paths[:1000])
    before = current_rss_mb()
    out = enc.transform(paths)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} {before:.1f} {peak:.1f} {out.shape[0]}")


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from _data import mnist_images

    with tempfile.TemporaryDirectory() as folder:
        for i, image in enumerate(mnist_images()):
            Image.fromarray(image).save(f"{folder}/{i:05d}.png")
        growth = {}
        for n in (1000, 10000):
            line = subprocess.run(
                [sys.executable, __file__, "--child", folder, str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            before, peak = float(line[1]), float(line[2])
            growth[n] = peak - before
            print(
                f"{n:>6} files: RSS before transform {before:7.1f} MB, peak {peak:7.1f} MB, "
                f"growth {growth[n]:6.1f} MB"
            )
    print(
        f"growth ratio 10,000 / 1,000 files: {growth[10000] / max(growth[1000], 1e-9):.2f}"
    )
    print(f"target growth <= 1024 MB: {'met' if growth[10000] <= 1024 else 'MISSED'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        encode(sys.argv[2], int(sys.argv[3]))
    else:
        main()
