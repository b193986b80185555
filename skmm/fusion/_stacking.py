"""Stacking in decision-level fusion: out-of-fold outputs train a final estimator.

The folds are drawn once on all the rows and restricted, for each model, to the rows
where its modality is present, so that every model is cross-validated on the same
folds. A missing model's output is filled with its mean output and a 0/1 indicator
column per model tells the final estimator it was missing.
"""

import numpy as np
from sklearn.model_selection import cross_val_predict

from ..utils._sklearn_compat import _print_elapsed_time


def restrict_folds(splits, rows, n_samples, name):
    """The folds restricted to ``rows``, renumbered as positions within them."""
    position = np.full(n_samples, -1)
    position[rows] = np.arange(len(rows))
    restricted = []
    for i, (train, test) in enumerate(splits):
        train, test = position[train], position[test]
        train, test = train[train >= 0], test[test >= 0]
        if len(test) == 0:
            continue
        if len(train) == 0:
            raise ValueError(
                f"model {name!r}: fold {i} has no training row where its modality is "
                "present."
            )
        restricted.append((train, test))
    return restricted


def fit_one(estimator, X, y, params, splits, method, owner, message):
    """Fit one model on its rows; with ``splits``, also return out-of-fold outputs."""
    with _print_elapsed_time(owner, message):
        oof = None
        if splits is not None:
            oof = cross_val_predict(
                estimator, X, y, cv=splits, method=method, params=params
            )
        estimator.fit(X, y, **params)
    return estimator, oof


class StackingMixin:
    """The final estimator's input, at fit and at predict.

    Reads the ensemble's ``missing``, ``stack_method_`` and ``_stack_fill_``, and
    its ``classes_`` when it has them.
    """

    def _meta_features(self, outputs, present):
        """The final estimator's input: outputs, filled where missing, and indicators."""
        blocks = []
        for out, fill, method in zip(outputs, self._stack_fill_, self.stack_method_):
            out = np.where(np.isnan(out), fill, out)
            if method == "predict_proba" and len(self.classes_) == 2:
                # Two probabilities summing to one are collinear; keep the second.
                out = out[:, 1:]
            blocks.append(out)
        if self.missing == "skip":
            blocks.append((~present).astype(np.float64))
        return np.hstack(blocks)

    def _stacking_rows(self, outputs, present):
        """The final estimator's training rows, and the row of y each one is.

        With ``missing="skip"``, each model is also masked (filled, indicator set) in
        a copy of the rows where it is present: the final estimator then learns to
        decide without each modality, instead of meeting a missing one for the
        first time at predict (the user guide measures what it gains).
        """
        self._stack_fill_ = [np.nanmean(out, axis=0) for out in outputs]
        blocks = [self._meta_features(outputs, present)]
        index = [np.arange(len(present))]
        if self.missing == "skip" and len(outputs) > 1:
            for j in range(len(outputs)):
                rows = np.flatnonzero(present[:, j])
                masked = present[rows].copy()
                masked[:, j] = False
                blocks.append(
                    self._meta_features(
                        [
                            np.full_like(out[rows], np.nan) if k == j else out[rows]
                            for k, out in enumerate(outputs)
                        ],
                        masked,
                    )
                )
                index.append(rows)
        return np.vstack(blocks), np.concatenate(index)
