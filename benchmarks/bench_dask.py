"""Encode image files on a Dask LocalCluster with 1 and 2 workers, and in one process.

``ImageEncoder("cnn", max_epochs=0).transform`` over N PNG files written from the
MNIST test set (each of its 10,000 digits once as is and once transposed, for
N = 20,000), given as a Dask DataFrame of paths. Printed side by side: wall time,
throughput, and each process's peak resident memory (its own ``ru_maxrss``: every
configuration runs in fresh processes), then a second pass on 2 workers with the
shared ``memory=`` cache, which decodes nothing.

    python benchmarks/bench_dask.py [N]    # ~6 min for N = 20,000 on 2 busy cores
"""

import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import mnist_images
from PIL import Image

BATCH = 256
PARTITION = 4 * BATCH  # whole batches: bit-identical to the in-memory run


def write_pngs(folder, n):
    images = mnist_images()
    paths = []
    for i in range(n):
        image = images[i % len(images)]
        image = image if i < len(images) else image.T
        path = os.path.join(folder, f"{i:05d}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encoder(memory=None):
    from skmm.encoders import ImageEncoder

    return ImageEncoder(
        "cnn", max_epochs=0, batch_size=BATCH, memory=memory, random_state=0
    )


def one_process(paths, queue):
    """In a fresh process: the in-memory transform, its time and peak memory."""
    import torch

    torch.set_num_threads(1)
    import pandas as pd

    table = pd.DataFrame({"image": paths})
    enc = encoder().fit(table.iloc[:BATCH])
    start = time.perf_counter()
    out = enc.transform(table)
    queue.put((time.perf_counter() - start, peak_rss_mb(), out))


def _warm_up():
    import skmm.encoders  # noqa: F401


def on_cluster(paths, n_workers, memory=None, passes=1):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    table = pd.DataFrame({"image": paths})
    enc = encoder(memory).fit(table.iloc[:BATCH])
    frame = dd.from_pandas(table, chunksize=PARTITION)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    with cluster, Client(cluster) as client:
        # Workers import torch and skmm before the clock starts, as a long-lived
        # cluster would have done already.
        client.run(_warm_up)
        times = []
        for _ in range(passes):
            start = time.perf_counter()
            out = enc.transform(frame).compute()
            times.append(time.perf_counter() - start)
        peaks = sorted(client.run(peak_rss_mb).values())
    return times, peaks, out.to_numpy()


def main(n):
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        paths = write_pngs(folder, n)
        print(f"{n} PNG files written in {time.perf_counter() - t0:.1f} s")
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=one_process, args=(paths, queue))
        proc.start()
        t_one, peak_one, reference = queue.get()
        proc.join()
        rows = [("one process (no Dask)", t_one, [peak_one])]
        for n_workers in (1, 2):
            (t,), peaks, out = on_cluster(paths, n_workers)
            assert np.array_equal(out, reference), "Dask result != in-memory result"
            rows.append((f"LocalCluster, {n_workers} worker(s) x 1 thread", t, peaks))
        cache = Path(folder) / "cache"
        (t_first, t_second), peaks, out = on_cluster(paths, 2, cache, passes=2)
        assert np.array_equal(out, reference), "cached result != in-memory result"
        rows.append(("2 workers, memory=: first pass", t_first, peaks))
        rows.append(("2 workers, memory=: second pass", t_second, peaks))

    print(
        f"\n{'configuration':<42}{'time':>9}{'items/s':>10}{'vs 1 proc':>10}  peak RSS"
    )
    for name, t, peaks in rows:
        memory = ", ".join(f"{p:.0f}" for p in peaks) + " MB"
        print(f"{name:<42}{t:>8.1f}s{n / t:>10.0f}{t_one / t:>9.2f}x  {memory}")
    print("\nresults equal to the in-memory transform, bit for bit: yes")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
