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
The memory rows repeat the training rows ``--copies`` times (one epoch), so that the
decoded items outweigh torch's own footprint: in memory they grow with the data, in
the stream with the partition.

Run: ``python benchmarks/bench_streaming.py [--copies 8] [--epochs 15]``.
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


def make_net(epochs):
    from skmm.encoders import AudioEncoder, ImageEncoder
    from skmm.nn import MultimodalNetClassifier

    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", device="cpu"), "image"),
            ("snd", AudioEncoder(sample_rate=8000, augment="default"), "audio"),
        ],
        fusion="transformer",
        max_epochs=epochs,
        random_state=0,
        device="cpu",
    )


def run(folder, mode, copies, epochs):
    """Train one way in this process; return accuracy, time and peak memory."""
    import torch

    torch.set_num_threads(1)
    table = pd.read_csv(Path(folder) / "table.csv")
    test = table["speaker"].isin(TEST_SPEAKERS).to_numpy()
    train = pd.concat([table[~test]] * copies, ignore_index=True)
    # Shuffled once, so that each partition holds every speaker and digit.
    train = train.sample(frac=1, random_state=0).reset_index(drop=True)
    X, y = train[["image", "audio"]], train["digit"].to_numpy()
    net = make_net(epochs)
    start = time.perf_counter()
    if mode == "memory":
        net.fit(X, y)
    elif mode == "dask":
        import dask.dataframe as dd

        ddf = dd.from_pandas(train[["image", "audio", "digit"]], npartitions=8)
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
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        folder, mode, copies, epochs = args.child
        print(json.dumps(run(folder, mode, int(copies), int(epochs))))
        return

    def child(folder, mode, copies, epochs):
        command = [sys.executable, __file__, "--child", folder, mode]
        out = subprocess.run(
            [*command, str(copies), str(epochs)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as folder:
        write_items(folder)
        print(f"accuracy: {args.epochs} epochs, one copy of the training rows")
        results = [child(folder, m, 1, args.epochs) for m in ("memory", "dask")]
        results.append(child(folder, "partial", 1, args.epochs))
        base = results[0]["accuracy"]
        for r in results:
            print(
                f"  {r['mode']:8s} accuracy {r['accuracy']:.4f} "
                f"({100 * (r['accuracy'] - base):+.1f} points) epochs {r['epochs']:3d} "
                f"{r['seconds']:6.1f} s  peak {r['peak_mb']} MB"
            )
        print(f"memory: one epoch, {args.copies} copies of the training rows")
        for copies in (1, args.copies):
            peaks = {m: child(folder, m, copies, 1) for m in ("memory", "dask")}
            print(
                f"  {peaks['memory']['rows']:6d} rows: in memory "
                f"{peaks['memory']['peak_mb']} MB, Dask {N_PARTITIONS} partitions "
                f"{peaks['dask']['peak_mb']} MB (ratio "
                f"{peaks['memory']['peak_mb'] / peaks['dask']['peak_mb']:.2f})"
            )


if __name__ == "__main__":
    main()
