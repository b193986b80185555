"""skmm's demo: every way of fusing two modalities, on AV-digits, in one table.

Run ``python -m skmm.demo`` (or ``skmm-demo``). On the shipped AV-digits data set
(``variant="hard"``: degraded MNIST images paired with noisy FSDD recordings of the
same digit), it trains on four speakers and tests on the two others, and prints the
test accuracy, macro-F1 and fit time of: each modality alone, feature-level fusion
with several operators, decision-level fusion (soft voting and stacking, with an SVM
head on audio and a random forest on images), and end-to-end networks (concat and
attention fusion). It writes a bar chart and the confusion matrix of the best model
as PNG files when matplotlib is installed (``pip install "skmm[plot]"``).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .datasets import load_av_digits
from .encoders import AudioEncoder, AudioFeatures, ImageEncoder
from .fusion import LateFusionClassifier, MultimodalFuser
from .nn import MultimodalNetClassifier

TEST_SPEAKERS = ("lucas", "yweweler")

GUIDE = """
Which fusion when:
- concat (feature level) is the safe default: every feature of every modality side by
  side, one head learns how they interact.
- mean / product / max (feature level) need one space: projection="proba" maps each
  modality to its class probabilities (cross-fitted), where they mean what they mean
  in decision-level fusion; product (the naive-Bayes rule) is the strongest when the
  modalities make independent errors, mean is the most robust to one bad modality.
  Without an aligned projection they add unrelated coordinates (skmm warns).
- late fusion (one model per modality) trains and predicts with a modality missing,
  and lets each modality keep its own best head; stacking with grouped folds learns
  how far to trust each one.
- end-to-end nets learn the encoders for the fusion; they need more data and time."""


def _settings(quick):
    """Epochs and sizes: the full run takes a few minutes, --quick under a minute."""
    if quick:
        # 6 takes of each digit by each speaker (360 rows) and the cheaper models.
        return {
            "takes": 6,
            "cnn_epochs": 3,
            "net_epochs": 10,
            "nets": ["transformer"],
            "quick": True,
        }
    return {
        "takes": None,
        "cnn_epochs": 6,
        "net_epochs": 15,
        "nets": ["transformer", "concat, MFCC"],
        "quick": False,
    }


def build_models(seed, settings):
    """The models of the table: (name, family, estimator, needs groups)."""
    epochs = settings["cnn_epochs"]

    def cnn():
        return ImageEncoder(
            "cnn", max_epochs=epochs, batch_size=64, random_state=seed, device="cpu"
        )

    def mfcc():
        return AudioFeatures(sample_rate=8000)

    def fuser(encoders, **params):
        return make_pipeline(MultimodalFuser(encoders, **params), SVC())

    img, snd = ("img", cnn(), "image"), ("snd", mfcc(), "audio")
    audio_head = make_pipeline(
        mfcc(), StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False)
    )
    image_head = make_pipeline(
        cnn(), RandomForestClassifier(n_estimators=300, random_state=seed)
    )
    late = [("snd", audio_head, "audio"), ("img", image_head, "image")]
    models = [
        ("audio only (MFCC + SVC)", "single", fuser([snd]), False),
        ("image only (CNN + SVC)", "single", fuser([img]), False),
        ("fuser concat + SVC", "feature", fuser([img, snd]), False),
        # Element-wise fusion in one class-indexed space: each modality mapped to
        # cross-fitted class probabilities, then averaged, multiplied or maxed.
        (
            "fuser mean (proba) + SVC",
            "feature",
            fuser([img, snd], fusion="mean", projection="proba"),
            False,
        ),
        (
            "fuser product (proba) + SVC",
            "feature",
            fuser([img, snd], fusion="product", projection="proba"),
            False,
        ),
        (
            "fuser max (proba) + SVC",
            "feature",
            fuser([img, snd], fusion="max", projection="proba"),
            False,
        ),
        (
            "fuser tensor (PCA-8) + SVC",
            "feature",
            fuser([img, snd], fusion="tensor", projection=8),
            False,
        ),
        (
            "late soft vote (SVC, RF)",
            "decision",
            LateFusionClassifier(late, voting="soft"),
            False,
        ),
        (
            "late stacking, speaker folds",
            "decision",
            LateFusionClassifier(
                late,
                voting="stacking",
                cv=LeaveOneGroupOut(),
                final_estimator=LogisticRegression(C=10, max_iter=1000),
            ),
            True,
        ),
    ]
    if settings["quick"]:
        models = [
            m
            for m in models
            if "PCA" not in m[0]
            and "stacking" not in m[0]
            and m[0] not in ("fuser mean (proba) + SVC", "fuser max (proba) + SVC")
        ]
    for kind in settings["nets"]:
        if kind == "transformer":
            # The encoders' own towers: a CNN over the images, a CNN over log-mel
            # spectrograms normalised per recording and masked in training
            # (augment="default"), which carries to unheard voices; token fusion.
            audio = AudioEncoder(sample_rate=8000, augment="default", device="cpu")
            encoders = [("img", ImageEncoder("cnn", device="cpu"), "image")]
            encoders.append(("snd", audio, "audio"))
            params = {"fusion": "transformer", "max_epochs": settings["net_epochs"]}
        else:
            # The CNN tower over the images and an MLP tower over the MFCC statistics
            # (the fuser's features), concatenated; the nets' default settings.
            encoders = [
                ("img", ImageEncoder("cnn", device="cpu"), "image"),
                ("snd", mfcc(), "audio"),
            ]
            params = {"max_epochs": settings["net_epochs"]}
        net = MultimodalNetClassifier(
            encoders,
            random_state=seed,
            device="cpu",
            **params,
        )
        models.append((f"end-to-end net ({kind})", "end-to-end", net, False))
    return models


def run(output_dir="skmm_demo_output", seed=0, quick=False, out=sys.stdout):
    """Train every model, print the table, write the figures; return the results."""
    settings = _settings(quick)
    bunch = load_av_digits(variant="hard")
    frame = bunch.frame
    if settings["takes"]:
        frame = frame.groupby(["speaker", "digit"], group_keys=False).head(
            settings["takes"]
        )
    test = frame["speaker"].isin(TEST_SPEAKERS).to_numpy()
    X, y = frame[["image", "audio"]], frame["digit"].to_numpy()
    groups = frame["speaker"].to_numpy()
    print(
        f"AV-digits (hard): {(~test).sum()} training rows (speakers "
        f"{', '.join(sorted(set(groups[~test])))}), {test.sum()} test rows "
        f"({', '.join(TEST_SPEAKERS)}); seed {seed}",
        file=out,
    )
    models = build_models(seed, settings)
    results = []
    for i, (name, family, model, grouped) in enumerate(models, 1):
        print(f"[{i:2d}/{len(models)}] {name} ...", end="", flush=True, file=out)
        start = time.perf_counter()
        extra = {"groups": groups[~test]} if grouped else {}
        model.fit(X[~test], y[~test], **extra)
        fit_time = time.perf_counter() - start
        pred = model.predict(X[test])
        results.append(
            {
                "model": name,
                "family": family,
                "accuracy": accuracy_score(y[test], pred),
                "macro_f1": f1_score(y[test], pred, average="macro"),
                "fit_time": fit_time,
                "predictions": pred,
            }
        )
        print(f" accuracy {results[-1]['accuracy']:.3f} ({fit_time:.1f} s)", file=out)
    print(file=out)
    print(format_table(results), file=out)
    best_single = max(r["accuracy"] for r in results if r["family"] == "single")
    best = max(results, key=lambda r: r["accuracy"])
    print(
        f"\nBest: {best['model']} at {best['accuracy']:.3f}, "
        f"{best['accuracy'] - best_single:+.3f} over the better single modality.",
        file=out,
    )
    print(GUIDE, file=out)
    written = write_figures(results, y[test], Path(output_dir))
    for path in written:
        print(f"wrote {path}", file=out)
    return results


def format_table(results):
    """The results as a fixed-width text table."""
    lines = [
        f"{'model':<32} {'family':<11} {'accuracy':>8} {'macro-F1':>8} {'fit (s)':>8}"
    ]
    lines.append("-" * len(lines[0]))
    for r in results:
        lines.append(
            f"{r['model']:<32} {r['family']:<11} {r['accuracy']:>8.3f} "
            f"{r['macro_f1']:>8.3f} {r['fit_time']:>8.1f}"
        )
    return "\n".join(lines)


def write_figures(results, y_test, output_dir):
    """A bar chart of the accuracies and the best model's confusion matrix (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures (pip install 'skmm[plot]').")
        return []
    output_dir.mkdir(parents=True, exist_ok=True)
    colours = {
        "single": "#999999",
        "feature": "#1f77b4",
        "decision": "#ff7f0e",
        "end-to-end": "#2ca02c",
    }
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(results) + 1.2))
    names = [r["model"] for r in results][::-1]
    accs = [r["accuracy"] for r in results][::-1]
    ax.barh(names, accs, color=[colours[r["family"]] for r in results][::-1])
    for k, acc in enumerate(accs):
        ax.text(acc + 0.005, k, f"{acc:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy (unseen speakers)")
    ax.set_title("AV-digits (hard): single modalities vs fusion")
    fig.tight_layout()
    chart = output_dir / "accuracy.png"
    fig.savefig(chart, dpi=120)
    plt.close(fig)
    best = max(results, key=lambda r: r["accuracy"])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    matrix = confusion_matrix(y_test, best["predictions"], labels=np.arange(10))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, count, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"{best['model']}\naccuracy {best['accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    matrix_path = output_dir / "confusion_matrix.png"
    fig.savefig(matrix_path, dpi=120)
    plt.close(fig)
    return [chart, matrix_path]


def main(argv=None):
    """Command-line entry point of ``python -m skmm.demo`` and ``skmm-demo``."""
    parser = argparse.ArgumentParser(
        prog="skmm-demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--output-dir", default="skmm_demo_output", help="where the PNG files go"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of every model"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller run, under a minute"
    )
    args = parser.parse_args(argv)
    run(args.output_dir, seed=args.seed, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
