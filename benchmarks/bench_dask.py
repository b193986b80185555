"""Encode image files on a Dask LocalCluster with 1 and 2 workers, and in one process.

``ImageEncoder("cnn", max_epochs=0).transform`` over N PNG files written from the
MNIST test set (each of its 10,000 digits once as is and once transposed, for
N = 20,000), given as a Dask DataFrame of paths. Printed side by side: wall time,
throughput, the items decoded, and each process's peak resident memory (its own
``ru_maxrss``: every configuration runs in fresh processes); the clusters again
without the ``MALLOC_TRIM_THRESHOLD_`` that Dask's nannies set for their workers
(see ``on_cluster``), which slows torch on the CPU down. Then 2 workers with the
shared ``memory=`` cache: a first pass fills the folder, a second pass reads it and
decodes nothing, and a third reads the same entries through a ``file://`` URL, the
fsspec path that ``s3://`` or ``gs://`` locations take.

    SKMM_SHARED_DATA=/path/to/shared/data python benchmarks/bench_dask.py [N]
    # ~5 min for N = 20,000 on 2 cores shared with other jobs
"""

import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import SHARED
from PIL import Image

BATCH = 256
PARTITION = 4 * BATCH  # whole batches: bit-identical to the in-memory run


def write_pngs(folder, n):
    from skmm.datasets._av_digits import read_idx

    images = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
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
    baseline = peak_rss_mb()  # torch, skmm and the fitted model, before any data
    start = time.perf_counter()
    out = enc.transform(table)
    queue.put((time.perf_counter() - start, peak_rss_mb(), baseline, out))


def _warm_up():
    """On a worker: import torch and skmm, and count the items ImageEncoder decodes."""
    from skmm.encoders import ImageEncoder

    load = ImageEncoder._load
    ImageEncoder.decoded = 0

    def counted(self, column, rows):
        ImageEncoder.decoded += len(rows)
        return load(self, column, rows)

    ImageEncoder._load = counted


def _decoded():
    from skmm.encoders import ImageEncoder

    decoded, ImageEncoder.decoded = ImageEncoder.decoded, 0
    return decoded


def on_cluster(paths, n_workers, memories=(None,), malloc_trim=True):
    """One pass per entry of ``memories`` on a fresh cluster: times, items decoded,
    the workers' peak memory, and the last output.

    Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed
    memory back to the OS); setting it at all also turns off glibc's adaptive mmap
    threshold, so torch's per-batch buffers are mapped and faulted in afresh every
    batch. ``malloc_trim=False`` starts the workers without it.
    """
    import dask
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    table = pd.DataFrame({"image": paths})
    enc = encoder().fit(table.iloc[:BATCH])
    frame = dd.from_pandas(table, chunksize=PARTITION)
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not malloc_trim:
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        # An earlier nanny set it in this process's environment, which workers inherit.
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
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
        if not malloc_trim:
            trims = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()
            assert set(trims) == {None}, "workers started with MALLOC_TRIM_THRESHOLD_"
        passes = []
        for memory in memories:
            # memory= is not part of the fingerprint: every pass shares the entries.
            enc.set_params(memory=memory)
            start = time.perf_counter()
            out = enc.transform(frame).compute()
            elapsed = time.perf_counter() - start
            passes.append((elapsed, sum(client.run(_decoded).values())))
        peaks = sorted(client.run(peak_rss_mb).values())
    return passes, peaks, out.to_numpy()


def main(n):
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        paths = write_pngs(folder, n)
        print(f"{n} PNG files written in {time.perf_counter() - t0:.1f} s")
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=one_process, args=(paths, queue))
        proc.start()
        t_one, peak_one, baseline, reference = queue.get()
        proc.join()
        rows = [("one process (no Dask)", t_one, n, [peak_one])]
        for n_workers in (1, 2):
            [(t, decoded)], peaks, out = on_cluster(paths, n_workers)
            assert np.array_equal(out, reference), "Dask result != in-memory result"
            name = f"LocalCluster, {n_workers} worker(s) x 1 thread"
            rows.append((name, t, decoded, peaks))
        for n_workers in (1, 2):
            [(t, decoded)], peaks, out = on_cluster(paths, n_workers, malloc_trim=False)
            assert np.array_equal(out, reference), "Dask result != in-memory result"
            name = f"LocalCluster, {n_workers} worker(s), no malloc trim"
            rows.append((name, t, decoded, peaks))
        cache = Path(folder) / "cache"
        names = ["first pass (fills it)", "second pass", "third pass, file:// URL"]
        passes, peaks, out = on_cluster(paths, 2, [cache, cache, cache.as_uri()])
        assert np.array_equal(out, reference), "cached result != in-memory result"
        for name, (t, decoded) in zip(names, passes):
            rows.append((f"2 workers, memory=: {name}", t, decoded, peaks))

    print(
        f"\n{'configuration':<46}{'time':>8}{'items/s':>9}{'vs 1 proc':>10}"
        f"{'decoded':>9}  peak RSS per process"
    )
    for name, t, decoded, peaks in rows:
        memory = ", ".join(f"{p:.0f}" for p in peaks) + " MB"
        print(
            f"{name:<46}{t:>7.1f}s{n / t:>9.0f}{t_one / t:>9.2f}x{decoded:>9}  {memory}"
        )
    print("\nresults equal to the in-memory transform, bit for bit: yes")
    print("(the cached configuration's peaks cover its three passes)")
    print(
        f"a process that has imported torch and skmm and fitted the encoder, before "
        f"any data: {baseline:.0f} MB"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
