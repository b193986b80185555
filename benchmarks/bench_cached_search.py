"""GridSearchCV over a frozen ImageEncoder + SVC, with and without ``memory``.

5 folds x 4 values of ``svc__C`` on 150 real product photos (96x96), resnet18 weights
from a local file (a frozen, pretrained-style encoder). Without ``memory`` each of the
21 fits (20 folds-candidates + the refit) encodes every photo once (4/5 in ``fit``, 1/5
in ``score``); with it, each photo is encoded once for the whole search. The speed-up
therefore cannot exceed 21x: the script prints that ceiling beside the measurement.

Each cached search starts from an empty cache folder, the two sides alternate, and each
runs ``REPEATS`` times; the script prints every time, the medians and their ratio, and
whether the cv_results_ scores are identical.

    python benchmarks/bench_cached_search.py
"""

import statistics
import tempfile
import time

import numpy as np
from _data import fashion, pretrained_resnet18
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from skmm.encoders import ImageEncoder

N_IMAGES, N_SPLITS, GRID, REPEATS = 150, 5, [0.1, 1.0, 10.0, 100.0], 3


def encoder(weights, memory):
    return ImageEncoder(
        "resnet18", weights=weights, device="cpu", batch_size=64, memory=memory
    )


def search(weights, memory):
    cv = StratifiedKFold(N_SPLITS, shuffle=True, random_state=0)
    pipe = make_pipeline(encoder(weights, memory), SVC())
    return GridSearchCV(pipe, {"svc__C": GRID}, cv=cv)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main():
    paths, y = fashion(N_IMAGES)
    # Classes with fewer than N_SPLITS items cannot be stratified into the folds.
    counts = dict(zip(*np.unique(y, return_counts=True)))
    keep = np.array([counts[label] >= N_SPLITS for label in y])
    paths, y = [p for p, k in zip(paths, keep) if k], y[keep]
    n_fits = N_SPLITS * len(GRID) + 1
    with tempfile.TemporaryDirectory() as tmp:
        weights = pretrained_resnet18(tmp)
        # One encoding of every photo: the work the cache saves 20 times over.
        encoder(weights, None).fit(paths[:1])  # warm-up (first-call allocations)
        t_encode, _ = timed(encoder(weights, None).fit_transform, paths)
        plain_times, cached_times, plain, cached = [], [], None, None
        for repeat in range(REPEATS):
            t, plain = timed(search(weights, None).fit, paths, y)
            plain_times.append(t)
            # A new, empty cache folder for every cached search.
            memory = f"{tmp}/cache{repeat}"
            t, cached = timed(search(weights, memory).fit, paths, y)
            cached_times.append(t)
            print(
                f"repeat {repeat}: without memory {plain_times[-1]:6.1f} s, "
                f"with memory {t:6.1f} s"
            )
    same = np.array_equal(
        plain.cv_results_["mean_test_score"], cached.cv_results_["mean_test_score"]
    )
    t_plain, t_cached = statistics.median(plain_times), statistics.median(cached_times)
    print(
        f"{len(paths)} images, {N_SPLITS} folds x {len(GRID)} candidates + refit "
        f"= {n_fits} fits, {REPEATS} interleaved repeats"
    )
    print(
        f"one encoding of every image: {t_encode:6.1f} s "
        f"(x {n_fits} = {n_fits * t_encode:.1f} s)"
    )
    print(
        f"without memory: median {t_plain:6.1f} s "
        f"(range {min(plain_times):.1f}-{max(plain_times):.1f})"
    )
    print(
        f"with memory:    median {t_cached:6.1f} s "
        f"(range {min(cached_times):.1f}-{max(cached_times):.1f})"
    )
    print(
        f"speed-up: {t_plain / t_cached:.1f}x (ceiling {n_fits}x: {n_fits} encodings "
        f"of every image against 1)   identical scores: {same}"
    )
    print(
        f"best C {plain.best_params_['svc__C']}, best CV accuracy "
        f"{plain.best_score_:.3f}"
    )


if __name__ == "__main__":
    main()
