"""The "best" preset: model families fitted on shared folds, weighed by ensemble
selection on their out-of-fold predictions.

Every family but one reads the vectorizer's output, encoded once: feature-level
fusion (the head on every block), one model per image, audio or text column (its
block alone), and gradient boosting over the tabular blocks. The exception trains:
the same fusion with a small CNN in place of the pretrained tower of each image
column, learning from the labels of each fold's training rows (the pretrained
towers never see the labels, and their ImageNet features say little about images
unlike ImageNet's: digits, scans, plots). Out-of-fold predictions come from one
fold object shared by every family (as scikit-learn's ``StackingClassifier`` does),
and the families are combined by greedy ensemble selection with replacement
(Caruana et al., 2004; AutoGluon's weighted ensemble): a weighted mean of their
predictions, the weights being how often each family is picked. Ensemble selection
learns one weight per family, where a stacked logistic regression learns one per
family and class: on a catalogue whose rarest classes have 5 to 10 rows, the stacked
model has almost no row of those classes to learn their coefficients from, and
loses them (macro-F1 0.73 against 0.92 for its own base models in issue 26).
"""

import time

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.parallel import Parallel, delayed

from ..utils._sklearn_compat import _safe_indexing

__all__ = [
    "default_head",
    "ensemble_selection",
    "families",
    "family_input",
    "out_of_fold",
    "predict_family",
]

# Rounds of greedy selection (AutoGluon uses 25 to 100); probabilities are clipped
# away from 0 in the log loss so that a class a fold never saw costs a bounded loss.
_ROUNDS = 50
_EPS = 1e-6
# The boosted trees stop when their training loss stops improving: a few tabular
# columns saturate in tens of rounds, and a class's rounds cost one tree each (twenty
# classes, twenty trees a round). Not on held-out rows: a stratified 10% split fails
# on small tables and on classes of one row.
_TREES = {"early_stopping": True, "validation_fraction": None}
# Kinds whose block gets its own family, and those the boosted trees read.
_MODALITY_KINDS = ("image", "audio", "video", "text")
_TABLE_KINDS = ("categorical", "numeric", "datetime")


def default_head(classifier):
    """The head of the fast preset and of the fused family.

    A logistic regression for classes and a ridge regression with its penalty chosen
    by leave-one-out for values: linear models over standardised embeddings, as
    linear probes of pretrained features are evaluated.
    """
    if classifier:
        return LogisticRegression(C=1.0, max_iter=2000)
    return RidgeCV(alphas=np.logspace(-2, 4, 13))


def families(
    head,
    entry_kinds,
    output_indices,
    classifier,
    random_state,
    trained=None,
):
    """The families of the best preset: ``[(name, estimator, columns)]``.

    ``columns`` are positions in the vectorizer's output (an ndarray), or, for the
    family that trains towers, the names of the table's columns it reads (a list):
    ``trained`` is that family's ``(vectorizer, columns)``, or None. A per-column
    family is left out when it would read the same columns as the fused one.
    """
    width = max((s.stop for s in output_indices.values()), default=0)
    everything = np.arange(width)
    out = [("fused", clone(head), everything)]
    for name, kind in entry_kinds.items():
        columns = np.arange(width)[output_indices[name]]
        if kind in _MODALITY_KINDS and 0 < len(columns) < width:
            out.append((name, clone(head), columns))
    table = [
        np.arange(width)[output_indices[name]]
        for name, kind in entry_kinds.items()
        if kind in _TABLE_KINDS
    ]
    table = np.concatenate(table) if table else np.zeros(0, dtype=int)
    if len(table):
        trees = (
            HistGradientBoostingClassifier
            if classifier
            else HistGradientBoostingRegressor
        )
        # The trees take dense input; the tabular blocks are narrow.
        dense = FunctionTransformer(_to_dense, accept_sparse=True)
        out.append(
            (
                "tabular",
                make_pipeline(dense, trees(**_TREES, random_state=random_state)),
                table,
            )
        )
    if trained is not None:
        vectorizer, columns = trained
        out.append(("fused (trained)", make_pipeline(vectorizer, clone(head)), columns))
    return out


def family_input(columns, X, Z):
    """What a family reads: its columns of the vectorizer's output ``Z``, or of the
    table ``X`` for the family that trains towers."""
    if isinstance(columns, list):
        return X[columns]
    return Z[:, columns]


def _to_dense(Z):
    return Z.toarray() if sp.issparse(Z) else Z


def predict_family(estimator, Z, classes):
    """Class probabilities aligned on ``classes`` (0 for a class the fold lacked), or
    values."""
    if classes is None:
        return estimator.predict(Z)
    proba = estimator.predict_proba(Z)
    out = np.zeros((Z.shape[0], len(classes)))
    out[:, np.searchsorted(classes, estimator.classes_)] = proba
    return out


def _fit_fold(estimator, data, y, train, test, classes):
    estimator = clone(estimator).fit(_safe_indexing(data, train), y[train])
    return test, predict_family(estimator, _safe_indexing(data, test), classes)


def out_of_fold(members, X, Z, y, folds, classes, n_jobs=None, verbose=False, owner=""):
    """Each family's out-of-fold predictions on the shared ``folds``."""
    tasks = [
        (name, estimator, columns, train, test)
        for name, estimator, columns in members
        for train, test in folds
    ]
    start = time.time()
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_fold)(
            estimator, family_input(columns, X, Z), y, train, test, classes
        )
        for name, estimator, columns, train, test in tasks
    )
    shape = (len(y),) if classes is None else (len(y), len(classes))
    predictions = {name: np.zeros(shape) for name, _, _ in members}
    for (name, _, _, _, _), (test, values) in zip(tasks, results):
        predictions[name][test] = values
    if verbose:
        print(
            f"[{owner}] {len(members)} families x {len(folds)} folds fitted in "
            f"{time.time() - start:.1f} s"
        )
    return predictions


def ensemble_selection(predictions, y, classes, rounds=_ROUNDS):
    """Weights of the families by greedy forward selection with replacement.

    Each round adds the family that most lowers the loss (log loss of the class
    probabilities, or squared error) of the running mean of the picked families'
    out-of-fold predictions; a family's weight is how often it was picked.
    """
    names = list(predictions)
    stack = np.stack([predictions[n] for n in names])
    if classes is not None:
        codes = np.searchsorted(classes, y)

        def loss(p):
            return -np.mean(np.log(np.clip(p[np.arange(len(codes)), codes], _EPS, 1)))

    else:

        def loss(p):
            return float(np.mean((p - y) ** 2))

    counts = np.zeros(len(names))
    total = np.zeros_like(stack[0])
    for k in range(1, rounds + 1):
        losses = [loss((total + member) / k) for member in stack]
        best = int(np.argmin(losses))  # ties: the earlier family, "fused" first
        counts[best] += 1
        total += stack[best]
    return dict(zip(names, counts / counts.sum()))
