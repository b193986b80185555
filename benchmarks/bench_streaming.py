"""Streaming training: a net fitted in memory, on a Dask DataFrame, by partial_fit.

The hard AV-digits (images and spoken digits; four speakers train, two unheard ones
test) are written to PNG and WAV files, so that a table holds paths and the items are
decoded only when a fit reads them. The same net is trained three ways, each in its
own process:

- ``memory``: ``fit`` on the pandas table: every training item decoded at once;
- ``dask``: ``fit`` on a Dask DataFrame of the same rows in 8 partitions: each epoch
  reads one partition at a time (the next one computed meanwhile);
- ``partial``: ``partial_fit`` on the 8 chunks in turn, ``max_epochs`` passes.

Printed side by side: test accuracy, fit time and the process's peak resident memory.
The memory rows repeat the training rows up to ``--copies`` times (one epoch, Dask
partitions of ``--chunk`` rows), so that the decoded items outweigh torch's own
footprint (about 1 GB): in memory the peak grows with the data, in the stream it
stays that of a partition.

Run: ``python benchmarks/bench_streaming.py [--copies 16] [--chunk 200] [--epochs 15]``.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TEST_SPEAKERS = ("lucas", "yweweler")
N_PARTITIONS = 8


def write_items(folder):
    """The hard AV-digits as PNG and WAV files; a table of their paths."""
    from PIL import Image
    from scipy.io import wavfile

    from skmm.datasets import load_av_digits

    frame = load_av_digits(variant="hard").frame
    rows = []
    for i, row in frame.iterrows():
        image, audio = Path(folder) / f"{i}.png", Path(folder) / f"{i}.wav"
        Image.fromarray(np.asarray(row["image"], dtype=np.uint8)).save(image)
        wave = np.clip(np.asarray(row["audio"]), -1, 1)
        wavfile.write(audio, 8000, (wave * 32767).astype(np.int16))
        rows.append((str(image), str(audio), row["speaker"], row["digit"]))
    table = pd.DataFrame(rows, columns=["image", "audio", "speaker", "digit"])
    table.to_csv(Path(folder) / "table.csv", index=False)


def make_net(epochs, seed=0):
    from skmm.encoders import AudioEncoder, ImageEncoder
    from skmm.nn import MultimodalNetClassifier

    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", device="cpu"), "image"),
            ("snd", AudioEncoder(sample_rate=8000, augment="default"), "audio"),
        ],
        fusion="transformer",
        max_epochs=epochs,
        random_state=seed,
        device="cpu",
    )


def run(folder, mode, copies, epochs, chunk=0, seed=0):
    """Train one way in this process; return accuracy, time and peak memory."""
    import torch

    torch.set_num_threads(1)
    table = pd.read_csv(Path(folder) / "table.csv")
    test = table["speaker"].isin(TEST_SPEAKERS).to_numpy()
    train = pd.concat([table[~test]] * copies, ignore_index=True)
    # Shuffled once, so that each partition holds every speaker and digit.
    train = train.sample(frac=1, random_state=0).reset_index(drop=True)
    X, y = train[["image", "audio"]], train["digit"].to_numpy()
    net = make_net(epochs, seed)
    start = time.perf_counter()
    if mode == "memory":
        net.fit(X, y)
    elif mode == "dask":
        import dask.dataframe as dd

        columns = train[["image", "audio", "digit"]]
        if chunk:
            ddf = dd.from_pandas(columns, chunksize=chunk)
        else:
            ddf = dd.from_pandas(columns, npartitions=N_PARTITIONS)
        net.fit(ddf[["image", "audio"]], ddf["digit"])
    else:
        chunks = np.array_split(np.arange(len(train)), N_PARTITIONS)
        for _ in range(epochs):
            for rows in chunks:
                net.partial_fit(X.iloc[rows], y[rows], classes=np.arange(10))
    seconds = time.perf_counter() - start
    accuracy = net.score(table.loc[test, ["image", "audio"]], table["digit"][test])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "rows": len(train),
        "epochs": net.n_iter_,
        "accuracy": round(float(accuracy), 4),
        "seconds": round(seconds, 1),
        "peak_mb": round(peak),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--child", nargs=6)
    args = parser.parse_args()
    if args.child:
        folder, mode, *numbers = args.child
        print(json.dumps(run(folder, mode, *map(int, numbers))))
        return

    def child(folder, mode, copies, epochs, chunk=0, seed=0):
        command = [sys.executable, __file__, "--child", folder, mode]
        out = subprocess.run(
            [*command, *map(str, (copies, epochs, chunk, seed))],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as folder:
        write_items(folder)
        print(
            f"accuracy: {args.epochs} epochs, seeds 0 to {args.seeds - 1}, "
            f"Dask in {N_PARTITIONS} partitions, partial_fit on {N_PARTITIONS} chunks"
        )
        means = {}
        for mode in ("memory", "dask", "partial"):
            runs = [
                child(folder, mode, 1, args.epochs, 0, s) for s in range(args.seeds)
            ]
            means[mode] = np.mean([r["accuracy"] for r in runs])
            each = ", ".join(f"{r['accuracy']:.4f}" for r in runs)
            print(
                f"  {mode:8s} mean accuracy {means[mode]:.4f} "
                f"({100 * (means[mode] - means['memory']):+.1f} points; "
                f"{each}) "
                f"mean fit {np.mean([r['seconds'] for r in runs]):.0f} s"
            )
        print(
            f"peak memory: one epoch, 1 to {args.copies} copies of the training "
            f"rows; Dask partitions of {args.chunk} rows"
        )
        for copies in sorted({1, args.copies // 4, args.copies}):
            peaks = {
                m: child(folder, m, copies, 1, args.chunk) for m in ("memory", "dask")
            }
            print(
                f"  {peaks['memory']['rows']:6d} rows: in memory "
                f"{peaks['memory']['peak_mb']:5d} MB, Dask "
                f"{peaks['dask']['peak_mb']:5d} MB (ratio "
                f"{peaks['memory']['peak_mb'] / peaks['dask']['peak_mb']:.2f})"
            )


if __name__ == "__main__":
    main()
