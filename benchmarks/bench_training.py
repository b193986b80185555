"""The training engine at scale: memory, loop overhead, streaming, precision, GPUs.

Each part prints skmm against its reference, measured side by side in one run (the
timed parts alternate the two sides, repeated, with one torch thread, and print
the spread over the repeats):

- ``memory``: peak resident memory of fitting ``ImageEncoder("cnn")`` and a net
  with that tower on N photo files at 224 px (the fashion catalogue's photos
  enlarged and written as JPEGs), N from 500 to 8,000, each fit in a fresh process: the growth per 1,000 photos
  (least squares over N), skmm (streamed) against the in-memory source (every
  item decoded before the first step, as every fit did before this engine, and
  as skmm still does below 256 MB), which shows that the measurement detects a
  growth;
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
import json
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
MEMORY_SIZES = (500, 1000, 2000, 4000, 8000)
# The in-memory source holds at least 0.6 GB per 1,000 photos: not beyond this.
IN_MEMORY_LIMIT = 2000
SEEDS = (0,)  # of the accuracy part
PHOTO_SIZE = 224


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


def cpu_timed(function):
    """``(wall seconds, CPU seconds of this process, result)``: on a machine shared
    with other jobs the CPU time of a one-thread run varies far less than its wall
    time (it leaves out the waits for a core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = function()
    return time.perf_counter() - wall, time.process_time() - cpu, out


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

    # Alternate which side runs first, so that neither always follows the other.
    ours, theirs = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}
    for i in range(REPEATS):
        for side in ("raw", "skmm") if i % 2 == 0 else ("skmm", "raw"):
            if side == "raw":
                wall, cpu, trained = cpu_timed(raw)
                times = theirs
            else:
                wall, cpu, fitted = cpu_timed(skmm_fit)
                times = ours
            times["wall"].append(wall)
            times["cpu"].append(cpu)
    # The same weights (batch-norm statistics aside).
    mine = fitted.module_.state_dict()
    for name, value in trained[0].state_dict().items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-5)
    print(
        f"loop: ImageEncoder('cnn').fit, {epochs} epochs on {n} MNIST digits, batch "
        f"{batch_size}, {REPEATS} alternating pairs; same weights: yes"
    )
    for clock in ("cpu", "wall"):
        ratios = [r / o for r, o in zip(theirs[clock], ours[clock])]
        print(
            f"  {clock:<4} time: skmm {n * epochs / min(ours[clock]):.0f} items/s, raw "
            f"loop {n * epochs / min(theirs[clock]):.0f} items/s; raw/skmm best "
            f"{min(theirs[clock]) / min(ours[clock]):.3f}, per pair {spread(ratios)}"
        )


# -- photo files ---------------------------------------------------------------------
def write_photos(folder, n):
    """``n`` RGB JPEG photos at 224 px: the fashion catalogue's photos (96 px)
    enlarged, cycling over its 3,000 when ``n`` is larger; their paths and
    ``subCategory`` labels. Each decodes to 0.6 MB of float32."""
    from PIL import Image

    sources, labels = fashion(3000)
    paths = []
    for i in range(n):
        path = Path(folder) / f"{i:05d}.jpg"
        if not path.exists():
            with Image.open(sources[i % len(sources)]) as photo:
                photo = photo.convert("RGB").resize(
                    (PHOTO_SIZE, PHOTO_SIZE), Image.BICUBIC
                )
                photo.save(path, quality=90)
        paths.append(str(path))
    return paths, labels[np.arange(n) % len(labels)]


def pooling_backbone():
    """A trainable backbone that costs little at 224 px, so that the decoding (what
    streaming is about) dominates: 8x8 average pooling, a convolution with batch norm,
    global pooling. Seeded: every fit starts from the same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.AvgPool2d(8),
            torch.nn.Conv2d(3, 16, 3),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )


def model(kind, **params):
    from skmm.encoders import ImageEncoder
    from skmm.nn import MultimodalNetClassifier

    tower = ImageEncoder(
        pooling_backbone(),
        image_size=PHOTO_SIZE,
        max_epochs=1,
        batch_size=32,
        device="cpu",
    )
    if kind == "encoder":
        return tower.set_params(random_state=0, **params)
    return MultimodalNetClassifier(
        [("img", tower, "image"), ("num", "passthrough", ["number"])],
        max_epochs=1,
        batch_size=32,
        random_state=0,
        device="cpu",
        **params,
    )


def table(paths, y):
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"image": paths, "number": rng.normal(size=len(paths))}), y


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(kind, variant, n, folder):
    """In a fresh process: the peak memory of one fit on ``n`` photos, above the
    resident memory before it."""
    import skmm.training._sources as sources

    if variant == "in-memory":
        sources.IN_MEMORY_BYTES = float(
            "inf"
        )  # every item decoded before the first step
    paths, y = write_photos(folder, n)
    X, y = table(paths, y)
    estimator = model(kind)
    before = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident memory
    seconds, _ = timed(lambda: estimator.fit(X if kind == "net" else X["image"], y))
    print(json.dumps({"growth": status_mb("VmHWM") - before, "seconds": seconds}))


def run_child(*args, launcher=None):
    """Run ``--child args`` in a fresh process (or under ``launcher``, torchrun); its
    last line of output, as JSON."""
    command = [*(launcher or (sys.executable,)), __file__, "--child", *map(str, args)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(sizes, values):
    """Growth per 1,000 photos (least squares)."""
    return 1000 * np.polyfit(np.asarray(sizes, float), np.asarray(values, float), 1)[0]


def part_memory():
    folder = Path(tempfile.gettempdir()) / "skmm_bench_training_fashion224"
    folder.mkdir(exist_ok=True)
    write_photos(folder, max(MEMORY_SIZES))
    decoded = PHOTO_SIZE * PHOTO_SIZE * 3 * 4 / 2**20
    print(
        f"memory: peak growth during fit (MB), 1 epoch, photos {PHOTO_SIZE}x"
        f"{PHOTO_SIZE} RGB JPEG ({decoded:.2f} MB decoded each), batch 32"
    )
    in_memory = [n for n in MEMORY_SIZES if n <= IN_MEMORY_LIMIT]
    for kind in ("encoder", "net"):
        for variant, sizes in (("skmm", MEMORY_SIZES), ("in-memory", in_memory)):
            runs = [run_child("memory", kind, variant, n, folder) for n in sizes]
            growth = [run["growth"] for run in runs]
            cells = "  ".join(f"{n}: {g:5.0f}" for n, g in zip(sizes, growth))
            print(
                f"  {kind:<7} {variant:<9} {cells}   per 1,000 photos "
                f"{slope(sizes, growth):5.0f} MB  (fit {runs[-1]['seconds']:.0f} s "
                f"at {sizes[-1]})",
                flush=True,
            )


# -- throughput: in memory against streamed -------------------------------------------
def part_throughput(n=1000, epochs=2):
    import skmm.training._sources as sources

    folder = Path(tempfile.gettempdir()) / "skmm_bench_training_fashion224"
    folder.mkdir(exist_ok=True)
    paths, y = write_photos(folder, n)
    budget = sources.IN_MEMORY_BYTES
    sides = {
        "in memory": (float("inf"), 0),
        "streamed, 0 workers": (0, 0),
        "streamed, 2 workers": (0, 2),
    }

    def fit(limit, workers):
        sources.IN_MEMORY_BYTES = limit
        try:
            return model("encoder", max_epochs=epochs, num_workers=workers).fit(
                paths, y
            )
        finally:
            sources.IN_MEMORY_BYTES = budget

    times = {name: [] for name in sides}
    weights = {}
    for _ in range(3):
        for name, (limit, workers) in sides.items():
            t, fitted = timed(lambda limit=limit, workers=workers: fit(limit, workers))
            times[name].append(t)
            weights[name] = fitted.module_.state_dict()
    for name in sides:  # the same model, whatever the path
        for key, value in weights[name].items():
            torch.testing.assert_close(value, weights["in memory"][key])
    base = min(times["in memory"])
    print(
        f"throughput: ImageEncoder(pooling backbone).fit, {epochs} epochs on {n} "
        f"JPEG photos at {PHOTO_SIZE} px (decoding dominates); the same weights on "
        "every side"
    )
    for name in sides:
        ratios = [b / t for b, t in zip(times["in memory"], times[name])]
        print(
            f"  {name:<20} {n * epochs / min(times[name]):6.0f} items/s   in-memory "
            f"time / this: best {base / min(times[name]):.2f}, per run {spread(ratios)}"
        )


# -- precision: bf16-mixed against 32 on the CPU --------------------------------------
def part_precision(n=2000, epochs=1):
    from sklearn.linear_model import LogisticRegression

    from skmm.encoders import ImageEncoder

    images, y = mnist(n + 1000)
    train, test = slice(0, n), slice(n, n + 1000)

    def fit(precision):
        return ImageEncoder(
            "cnn", max_epochs=epochs, precision=precision, random_state=0, device="cpu"
        ).fit(images[train], y[train])

    times = {"32": {"wall": [], "cpu": []}, "bf16-mixed": {"wall": [], "cpu": []}}
    fitted = {}
    for _ in range(3):
        for precision in times:
            wall, cpu, fitted[precision] = cpu_timed(
                lambda precision=precision: fit(precision)
            )
            times[precision]["wall"].append(wall)
            times[precision]["cpu"].append(cpu)
    scores = {}
    for precision, enc in fitted.items():
        head = LogisticRegression(max_iter=2000)
        head.fit(enc.transform(images[train]), y[train])
        scores[precision] = head.score(enc.transform(images[test]), y[test])
    try:  # bfloat16 speed depends on these instructions (oneDNN uses them)
        flags = Path("/proc/cpuinfo").read_text().split()
        bf16 = sorted({f for f in flags if "bf16" in f}) or ["none"]
    except OSError:
        bf16 = ["unknown"]
    print(
        f"precision: ImageEncoder('cnn').fit, {epochs} epoch on {n} MNIST digits, CPU "
        f"(bfloat16 instructions: {', '.join(bf16)}); "
        f"linear model on the features, 1,000 held-out digits: fp32 {scores['32']:.3f}, "
        f"bf16-mixed {scores['bf16-mixed']:.3f}"
    )
    for clock in ("cpu", "wall"):
        fp32, bf16 = times["32"][clock], times["bf16-mixed"][clock]
        ratios = [a / b for a, b in zip(fp32, bf16)]
        print(
            f"  {clock:<4} time: fp32 {n * epochs / min(fp32):.0f} items/s, bf16-mixed "
            f"{n * epochs / min(bf16):.0f} items/s; fp32 time / bf16 time "
            f"{spread(ratios)}"
        )


# -- recalibration: what the batch-norm pass after an encoder's fit changes ------------
def part_recalibration(n=2000, epochs=3, seeds=(0, 1, 2)):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skmm.encoders import ImageEncoder
    from skmm.utils._torch import batch_norm_recalibration

    images, y = mnist(n + 1000)
    train, test = slice(0, n), slice(n, n + 1000)
    print(
        f"recalibration: ImageEncoder('cnn'), {epochs} epochs on {n} MNIST digits; a "
        "standardised logistic regression on the features, 1,000 held-out digits"
    )
    for seed in seeds:
        t_fit, enc = timed(
            lambda seed=seed: ImageEncoder(
                "cnn", max_epochs=epochs, random_state=seed, device="cpu"
            ).fit(images[train], y[train])
        )
        column = enc._check_input(images[train], reset=False)
        scores = {}
        for name in ("without (skmm)", "with the pass"):
            if name == "with the pass":
                start = time.perf_counter()
                module = enc.module_.train()
                with batch_norm_recalibration(module), torch.no_grad():
                    for i in range(0, n, enc.batch_size):
                        rows = np.arange(i, min(i + enc.batch_size, n))
                        module(enc._load(column, rows))
                module.eval()
                t_pass = time.perf_counter() - start
            head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            head.fit(enc.transform(images[train]), y[train])
            scores[name] = head.score(enc.transform(images[test]), y[test])
        print(
            f"  seed {seed}: accuracy without the pass {scores['without (skmm)']:.4f}, "
            f"with it {scores['with the pass']:.4f}; the pass costs "
            f"{t_pass / t_fit:.1%} of the fit"
        )


# -- accuracy: streamed and 2-process training on the AV-digits net -------------------
def av_digits():
    from skmm.datasets import load_av_digits

    frame = load_av_digits(variant="hard").frame
    test = frame["speaker"].isin(("lucas", "yweweler")).to_numpy()
    train = frame[~test].sample(frac=1, random_state=0).reset_index(drop=True)
    return (
        train[["image", "audio"]],
        train["digit"].to_numpy(),
        frame.loc[test, ["image", "audio"]],
        frame["digit"][test].to_numpy(),
    )


def av_net(seed):
    from skmm.encoders import AudioEncoder, ImageEncoder
    from skmm.nn import MultimodalNetClassifier

    encoders = [
        ("img", ImageEncoder("cnn"), "image"),
        ("snd", AudioEncoder(8000, max_epochs=10, augment="default"), "audio"),
    ]
    return MultimodalNetClassifier(
        encoders, max_epochs=10, random_state=seed, device="cpu"
    )


def child_ddp_accuracy(seed):
    X, y, X_test, y_test = av_digits()
    net = av_net(int(seed)).fit(X, y)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"accuracy": net.score(X_test, y_test)}))


def part_accuracy():
    import skmm.training._sources as sources

    X, y, X_test, y_test = av_digits()
    print(
        "accuracy: hard AV-digits net (image CNN and audio CNN towers, 10 epochs, "
        "trained on 4 speakers, tested on the 2 unheard ones)"
    )
    scores = {"in memory": [], "streamed": [], "2 gloo processes": []}
    for seed in SEEDS:
        memory = av_net(seed).fit(X, y)
        budget = sources.IN_MEMORY_BYTES
        sources.IN_MEMORY_BYTES = 0  # streamed
        try:
            streamed = av_net(seed).set_params(num_workers=2).fit(X, y)
        finally:
            sources.IN_MEMORY_BYTES = budget
        same = np.array_equal(
            memory.predict_proba(X_test), streamed.predict_proba(X_test)
        )
        gloo = run_child("ddp-accuracy", seed, launcher=torchrun(2))["accuracy"]
        scores["in memory"].append(memory.score(X_test, y_test))
        scores["streamed"].append(streamed.score(X_test, y_test))
        scores["2 gloo processes"].append(gloo)
        print(
            f"  seed {seed}: in memory {scores['in memory'][-1]:.4f}, streamed with 2 "
            f"workers {scores['streamed'][-1]:.4f} (the same predictions: "
            f"{'yes' if same else 'no'}), 2 gloo processes {gloo:.4f}",
            flush=True,
        )
    means = ", ".join(f"{k} {np.mean(v):.4f}" for k, v in scores.items())
    print(f"  mean over seeds {', '.join(map(str, SEEDS))}: {means}")


# -- GPU: precision and several GPUs (needs CUDA; not run on the CPU machine) ---------
def gpu_model(precision, epochs):
    from skmm.encoders import ImageEncoder

    return ImageEncoder(
        "resnet18",
        weights=None,
        max_epochs=epochs,
        image_size=PHOTO_SIZE,
        batch_size=64,
        num_workers=4,
        precision=precision,
        random_state=0,
    )


def child_gpu_fit(precision, n, epochs):
    # (Without CUDA the child runs on the CPU: a check of the script, not a figure.)
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else type(None)
    paths, y = fashion(int(n))
    synchronize()
    start = time.perf_counter()
    encoder = gpu_model(precision, int(epochs)).fit(paths, y)
    synchronize()
    if int(os.environ.get("RANK", "0")) == 0:
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "loss": encoder.loss_curve_[-1]}))


def torchrun(processes):
    return (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    )


def part_gpu(n=3000, epochs=2):
    if not torch.cuda.is_available():
        print("gpu: skipped, no CUDA device here (run this part on a GPU machine)")
        return
    print(
        f"gpu: ImageEncoder('resnet18', weights=None).fit, {epochs} epochs on {n} "
        f"fashion photos at {PHOTO_SIZE} px, batch 64, 4 workers, "
        f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    )
    precisions = ["32", "16-mixed"]
    if torch.cuda.is_bf16_supported():
        precisions.insert(1, "bf16-mixed")
    else:
        print("  bf16-mixed: skipped, this GPU has no bfloat16 support")
    runs = {p: [] for p in precisions}
    for _ in range(3):
        for precision in precisions:
            runs[precision].append(
                run_child("gpu-fit", precision, n, epochs, launcher=torchrun(1))
            )
    for precision in precisions:
        seconds = [run["seconds"] for run in runs[precision]]
        ratios = [r["seconds"] / s for r, s in zip(runs["32"], seconds)]
        print(
            f"  1 GPU, {precision:<10} {n * epochs / min(seconds):6.0f} items/s, last "
            f"training loss {runs[precision][-1]['loss']:.3f}; fp32 time / this "
            f"{spread(ratios)}"
        )
    if torch.cuda.device_count() < 2:
        print("  1 vs 2 GPUs: skipped, this machine has one GPU")
        return
    for precision in precisions[1:]:
        one, two = [], []
        for _ in range(3):
            one.append(run_child("gpu-fit", precision, n, epochs, launcher=torchrun(1)))
            two.append(run_child("gpu-fit", precision, n, epochs, launcher=torchrun(2)))
        ratios = [a["seconds"] / b["seconds"] for a, b in zip(one, two)]
        print(
            f"  2 GPUs, {precision}, the same global batch: 1-GPU time / 2-GPU time "
            f"{spread(ratios)}; last training loss {one[-1]['loss']:.3f} on 1, "
            f"{two[-1]['loss']:.3f} on 2"
        )


PARTS = {
    "memory": part_memory,
    "loop": part_loop,
    "throughput": part_throughput,
    "precision": part_precision,
    "recalibration": part_recalibration,
    "accuracy": part_accuracy,
    "gpu": part_gpu,
}
CHILDREN = {
    "memory": lambda kind, variant, n, folder: child_memory(
        kind, variant, int(n), folder
    ),
    "ddp-accuracy": child_ddp_accuracy,
    "gpu-fit": child_gpu_fit,
}


def main():
    global MEMORY_SIZES, SEEDS
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        torch.set_num_threads(1)
        return CHILDREN[sys.argv[2]](*sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", choices=[*PARTS, []])
    parser.add_argument(
        "--sizes",
        help="photo counts of the memory part, comma-separated (default: "
        + ",".join(map(str, MEMORY_SIZES))
        + ")",
    )
    parser.add_argument(
        "--seeds", help="seeds of the accuracy part, comma-separated (default: 0)"
    )
    args = parser.parse_args()
    if args.seeds:
        SEEDS = tuple(int(seed) for seed in args.seeds.split(","))
    if args.sizes:
        MEMORY_SIZES = tuple(int(n) for n in args.sizes.split(","))
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    for part in args.parts or PARTS:
        PARTS[part]()


if __name__ == "__main__":
    main()
