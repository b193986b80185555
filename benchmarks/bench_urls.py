"""Items behind URLs: throughput from memory:// and a local HTTP server vs local files.

The same fashion photos (``../shared/data``) are encoded by one fitted
``ImageEncoder`` (a small CNN at 64 px, so that reading and decoding weigh as much
as they can against the model) from three sources: local file paths, fsspec's
in-process ``memory://`` store and an HTTP server on 127.0.0.1 started by this script
(Python's threaded ``http.server``). Each source is timed ``PASSES`` times,
alternating; the script prints items/s (best and median) and the ratio to local
files, with and without ``num_workers=4`` (threads reading the next batches while the
model runs), and checks that every source gives the same features.

    OMP_NUM_THREADS=1 python benchmarks/bench_urls.py
"""

import functools
import http.server
import statistics
import threading
import time
from pathlib import Path

import fsspec
import numpy as np
import torch
from _data import fashion

from skmm.encoders import ImageEncoder

N = 256
PASSES = 5


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder):
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main():
    torch.set_num_threads(1)
    paths, _ = fashion(N)
    folder = Path(paths[0]).parent
    names = [Path(p).name for p in paths]
    fs = fsspec.filesystem("memory")
    for path, name in zip(paths, names):
        fs.pipe(f"/bench-urls/{name}", Path(path).read_bytes())
    server, root = serve(folder)
    sources = {
        "local files": paths,
        "memory://": [f"memory://bench-urls/{n}" for n in names],
        "http://127.0.0.1": [f"{root}/{n}" for n in names],
    }
    size = sum(Path(p).stat().st_size for p in paths) / N / 1e3
    print(
        f"torch {torch.__version__}, 1 torch thread; {N} JPEG photos, {size:.1f} kB each"
    )
    print(
        "| source | num_workers | items/s (best) | items/s (median) | vs local files |"
    )
    print("| --- | --- | --- | --- | --- |")
    for workers in (0, 4):
        enc = ImageEncoder(
            "cnn",
            max_epochs=0,
            image_size=64,
            num_workers=workers,
            device="cpu",
            random_state=0,
        ).fit(paths[:32])
        reference = enc.transform(paths)
        times = {name: [] for name in sources}
        for _ in range(PASSES):
            for name, items in sources.items():
                start = time.perf_counter()
                out = enc.transform(items)
                times[name].append(time.perf_counter() - start)
                assert np.array_equal(out, reference), name
        local = statistics.median(times["local files"])
        for name, t in times.items():
            print(
                f"| {name} | {workers} | {N / min(t):.0f} | "
                f"{N / statistics.median(t):.0f} | {local / statistics.median(t):.2f} |",
                flush=True,
            )
    server.shutdown()


if __name__ == "__main__":
    main()
