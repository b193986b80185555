"""GridSearchCV over a frozen ImageEncoder + SVC, with and without ``memory``.

5 folds x 4 values of ``svc__C`` on 1,000 real product photos (96x96), resnet18
weights from a local file (a frozen, pretrained-style encoder). Prints both run
times, their ratio (target >= 8x) and whether the cv_results_ scores are identical.

    python benchmarks/bench_cached_search.py
"""

import tempfile
import time

import numpy as np
from _data import fashion, pretrained_resnet18
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from skmm.encoders import ImageEncoder


def search(weights, memory):
    pipe = make_pipeline(
        ImageEncoder(
            "resnet18", weights=weights, device="cpu", batch_size=64, memory=memory
        ),
        SVC(),
    )
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return GridSearchCV(pipe, {"svc__C": [0.1, 1.0, 10.0, 100.0]}, cv=cv)


def main():
    paths, y = fashion(1000)
    # Classes with fewer than 5 items cannot be stratified into 5 folds.
    keep = np.isin(y, [c for c, n in zip(*np.unique(y, return_counts=True)) if n >= 5])
    paths, y = [p for p, k in zip(paths, keep) if k], y[keep]
    with tempfile.TemporaryDirectory() as tmp:
        weights = pretrained_resnet18(tmp)
        start = time.perf_counter()
        plain = search(weights, None).fit(paths, y)
        t_plain = time.perf_counter() - start
        start = time.perf_counter()
        cached = search(weights, f"{tmp}/cache").fit(paths, y)
        t_cached = time.perf_counter() - start
    same = np.array_equal(
        plain.cv_results_["mean_test_score"], cached.cv_results_["mean_test_score"]
    )
    print(f"{len(paths)} images, 5 folds x 4 candidates + refit")
    print(f"without memory: {t_plain:7.1f} s")
    print(f"with memory:    {t_cached:7.1f} s")
    print(f"speed-up:       {t_plain / t_cached:7.1f}x   identical scores: {same}")
    print(
        f"best C {plain.best_params_['svc__C']}, best CV accuracy {plain.best_score_:.3f}"
    )


if __name__ == "__main__":
    main()
