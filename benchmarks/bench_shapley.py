"""Run time of exact modality Shapley values for M = 2, 3 and 5 modalities, 1,000 rows.

``modality_shapley`` predicts X once per coalition (2^M times), so its cost is about
2^M predictions of X: the script prints, side by side, one ``predict_proba`` of the
1,000 rows, ``modality_shapley`` and ``modality_shapley(interactions=True)``, and the
ratio to one prediction. Models: a late-fusion ensemble (one logistic regression per
modality, soft voting), a fuser pipeline (``missing="mean"``, one logistic
regression) and an end-to-end net (``passthrough`` towers), on synthetic numeric
modalities of 8 columns each; and, for M = 2, the AV-digits late-fusion model of the
gallery example (MFCC statistics + pixels), whose audio features are computed inside
the model at each prediction.

    python benchmarks/bench_shapley.py   # ~1 min
"""

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.inspection import modality_shapley

N_ROWS, WIDTH = 1000, 8


def synthetic(n_modalities, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, N_ROWS)
    blocks = {}
    for m in range(n_modalities):
        signal = y[:, None] * (m + 1) / n_modalities
        block = signal + rng.normal(0, 1.0, (N_ROWS, WIDTH))
        for j in range(WIDTH):
            blocks[f"m{m}_{j}"] = block[:, j]
    columns = {
        f"m{m}": [f"m{m}_{j}" for j in range(WIDTH)] for m in range(n_modalities)
    }
    return pd.DataFrame(blocks), y, columns


def models(columns):
    from skmm.nn import MultimodalNetClassifier

    yield (
        "late fusion (LogReg heads)",
        LateFusionClassifier(
            [(name, LogisticRegression(), cols) for name, cols in columns.items()]
        ),
    )
    yield (
        "fuser + LogReg",
        make_pipeline(
            MultimodalFuser(
                [(name, "passthrough", cols) for name, cols in columns.items()],
                missing="mean",
            ),
            LogisticRegression(),
        ),
    )
    yield (
        "MultimodalNetClassifier",
        MultimodalNetClassifier(
            [(name, "passthrough", cols) for name, cols in columns.items()],
            max_epochs=3,
            early_stopping=False,
            device="cpu",
            random_state=0,
        ),
    )


def timed(function, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def report(name, n_modalities, model, X):
    predict = timed(lambda: model.predict_proba(X))
    shapley = timed(lambda: modality_shapley(model, X))
    pairs = timed(lambda: modality_shapley(model, X, interactions=True))
    print(
        f"{name:<34} M={n_modalities}  2^M={2**n_modalities:>2}  "
        f"predict {predict * 1000:8.1f} ms  shapley {shapley * 1000:8.1f} ms  "
        f"(x{shapley / predict:5.1f})  +interactions {pairs * 1000:8.1f} ms"
    )


def av_digits():
    from skmm.datasets import load_av_digits
    from skmm.encoders import AudioFeatures

    X, y = load_av_digits(variant="hard", return_X_y=True)
    X, y = X.iloc[:N_ROWS], y.iloc[:N_ROWS]

    def pixels(images):
        return np.stack(list(images)).reshape(len(images), -1) / 255.0

    model = LateFusionClassifier(
        [
            (
                "audio",
                make_pipeline(
                    AudioFeatures(sample_rate=8000),
                    StandardScaler(),
                    LogisticRegression(max_iter=1000),
                ),
                "audio",
            ),
            (
                "image",
                make_pipeline(FunctionTransformer(pixels), LogisticRegression(C=0.05)),
                "image",
            ),
        ]
    ).fit(X, y)
    return model, X


def main():
    print(f"{N_ROWS} rows, best of 3 runs; ratio = shapley time / one predict_proba")
    for n_modalities in (2, 3, 5):
        X, y, columns = synthetic(n_modalities)
        for name, model in models(columns):
            report(name, n_modalities, model.fit(X, y), X)
    model, X = av_digits()
    report("AV-digits late fusion (MFCC+pixels)", 2, model, X)


if __name__ == "__main__":
    main()
