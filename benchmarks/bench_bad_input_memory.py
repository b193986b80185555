"""Peak memory of a batch holding a huge item, against a batch of ordinary items.

Issue 14, items 4 and 9: one 1 MB text among 300 short titles took 4 GB (the
de-duplication built an n x longest-text fixed-width array), and four 8000x8000
photos in one batch took 4 GB (decoded at full size, in float32, before resizing).
Each run is a fresh process; the script prints the peak resident-memory growth of
``transform`` for the ordinary batch and for the one with huge items, side by side,
and their ratio. For the photos it also runs the full-size decode (the encoder's
decode size hint switched off) as the reference the reduction is measured against.

    python benchmarks/bench_bad_input_memory.py          # ~1 min
    python benchmarks/bench_bad_input_memory.py --old    # also the old text dedup
                                                         # (allocates ~5 GB)
"""

import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HUGE_SIDE = 8000


def current_rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def reset_peak():
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so that a child measures its
    own peak and not the one inherited from its parent at fork."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # the peak then includes the imports: still a fair comparison


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def titles(n):
    return [f"cotton shirt {i} blue" for i in range(n)]


def child_text(case):
    """Encode 301 texts: all short, or 300 short and one of 1 MB."""
    import pandas as pd

    from skmm.encoders import TextEncoder

    enc = TextEncoder("lstm", max_epochs=0, random_state=0, device="cpu").fit(
        titles(300)
    )
    texts = titles(300) + ["word " * 200_000 if case != "short" else "cotton shirt"]
    items = np.empty(len(texts), dtype=object)
    items[:] = texts
    reset_peak()
    before = current_rss_mb()
    if case == "old-dedup":
        # The de-duplication line skmm used before issue 14, alone.
        np.unique(items.astype(str), return_index=True, return_inverse=True)
    else:
        enc.transform(pd.Series(items))
    print(before, peak_rss_mb())


def child_image(folder, case):
    """Encode four photos: ordinary (640x480) or huge (8000x8000), JPEG or PNG."""
    from skmm.encoders import ImageEncoder

    enc = ImageEncoder("cnn", image_size=64, max_epochs=0, device="cpu")
    enc.fit([np.zeros((64, 64, 3), dtype=np.uint8)] * 2)
    kind, fmt = case.split("-")[:2]
    if case.endswith("full"):
        enc._decode_size = lambda: None  # the full-size decode, for reference
    paths = sorted(str(p) for p in Path(folder).glob(f"{kind}_*.{fmt}"))
    reset_peak()
    before = current_rss_mb()
    out = enc.transform(paths)
    assert out.shape == (4, 128) and np.isfinite(out).all()
    print(before, peak_rss_mb())


def run(*args):
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    before, peak = float(out[-2]), float(out[-1])
    return peak - before


def photo(height, width):
    """A smooth picture with a little noise (compresses like a photo)."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    rgb = np.array([0.9, 0.5, 0.2], dtype=np.float32)
    image = (y * rgb + x * rgb[::-1]) * 127
    image = image + rng.integers(0, 8, size=(height, 1, 1))
    return image.astype(np.uint8)


def write_photos(folder):
    for kind, (h, w) in (("small", (480, 640)), ("huge", (HUGE_SIDE, HUGE_SIDE))):
        image = Image.fromarray(photo(h, w))
        for fmt in ("jpg", "png"):
            first = Path(folder) / f"{kind}_0.{fmt}"
            image.save(first, quality=90) if fmt == "jpg" else image.save(first)
            for i in range(1, 4):  # distinct paths: each one is decoded
                shutil.copy(first, Path(folder) / f"{kind}_{i}.{fmt}")


def main():
    rows = []
    short = run("text", "short")
    long_text = run("text", "long")
    rows.append(("301 texts, one of 1 MB", long_text, "301 short titles", short))
    if "--old" in sys.argv:
        old = run("text", "old-dedup")
        rows.append(
            ("old dedup line alone (1 MB text)", old, "301 short titles", short)
        )
    with tempfile.TemporaryDirectory() as folder:
        # In a child, so that this process stays small for the ones it starts.
        subprocess.run([sys.executable, __file__, "--photos", folder], check=True)
        for fmt in ("jpg", "png"):
            small = run("image", folder, f"small-{fmt}")
            huge = run("image", folder, f"huge-{fmt}")
            full = run("image", folder, f"huge-{fmt}-full")
            side = f"{HUGE_SIDE}x{HUGE_SIDE}"
            rows.append((f"4 {side} {fmt.upper()} photos", huge, "4 640x480", small))
            rows.append(("  same, full-size decode", full, "4 640x480", small))
    print(
        f"{'batch':<36} {'peak growth':>12}   {'ordinary batch':<18} {'growth':>8}  ratio"
    )
    for name, grown, reference, base in rows:
        print(
            f"{name:<36} {grown:9.1f} MB   {reference:<18} {base:6.1f} MB  "
            f"{grown / max(base, 1.0):5.1f}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--photos"]:
        write_photos(sys.argv[2])
    elif sys.argv[1:2] == ["--child"]:
        if sys.argv[2] == "text":
            child_text(sys.argv[3])
        else:
            child_image(sys.argv[3], sys.argv[4])
    else:
        main()
