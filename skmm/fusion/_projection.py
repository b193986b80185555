"""Class-aligned projection: each modality mapped to the same class-indexed space.

Element-wise fusion (mean, product, max) adds or multiplies coordinate k of every
block, which means something only when coordinate k means the same thing in every
block. Independent PCAs do not give that; a classifier per modality does: its
probability (or decision value) for class k is about class k whatever the modality.
This is what decision-level fusion combines, brought to the feature level.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ..utils._sklearn_compat import _routing_enabled

__all__ = ["CLASS_PROJECTIONS"]

CLASS_PROJECTIONS = {"proba": "predict_proba", "decision": "decision_function"}
"""Name of a class-aligned projection -> the classifier's method it uses."""


def default_projection_estimator():
    """The per-modality classifier of a class-aligned projection.

    A strongly regularised logistic regression: a modality's block has hundreds of
    features and the training set a few hundred rows, and C=0.1 keeps its
    probabilities from saturating at 0 and 1. On hard AV-digits (held-out speakers),
    C=0.1 against C=1 lifts mean fusion of the probabilities from 0.74 to 0.78 and
    product fusion from 0.84 to 0.86.
    """
    return LogisticRegression(C=0.1, max_iter=1000)


class ClassProjection(TransformerMixin, BaseEstimator):
    """One block projected onto a classifier's per-class outputs, cross-fitted.

    ``fit_transform`` returns out-of-fold outputs (each training row scored by a
    model fitted on the other folds), so that what a head downstream learns from
    matches what it will see on new rows, as in stacking and in
    :class:`~sklearn.preprocessing.TargetEncoder`; ``fit`` then fits the
    classifier on all the rows, and ``transform`` uses that one. Hence
    ``fit(X, y).transform(X)`` differs from ``fit_transform(X, y)``.

    Parameters
    ----------
    kind : {"proba", "decision"}
        ``"proba"``: the class probabilities (``predict_proba``); ``"decision"``:
        the decision values (``decision_function``), standardised.
    estimator : classifier or None
        The classifier; ``default_projection_estimator()`` when None.
    cv : int, cross-validation generator or iterable
        The folds of the cross-fitting.
    """

    def __init__(self, kind, estimator=None, cv=5):
        self.kind = kind
        self.estimator = estimator
        self.cv = cv

    def _check_y(self, y):
        if y is None:
            raise ValueError(
                f"projection={self.kind!r} fits a classifier per modality, so fit "
                "needs class labels y; without y use projection=<int> (PCA)."
            )
        kind = type_of_target(y, input_name="y")
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"projection={self.kind!r} maps each modality to class scores, so y "
                f"must hold class labels; got a {kind!r} target. Use "
                "projection=<int> (PCA) for regression."
            )

    def fit(self, X, y, groups=None, **fit_params):
        """Fit the classifier on all the rows (and the scaler on out-of-fold outputs)."""
        self.fit_transform(X, y, groups=groups, **fit_params)
        return self

    def fit_transform(self, X, y, groups=None, **fit_params):
        """Fit, and return the out-of-fold outputs of the training rows.

        ``groups`` goes to the splitter, ``fit_params`` (such as ``sample_weight``)
        to the classifier's fit.
        """
        self._check_y(y)
        estimator = (
            default_projection_estimator()
            if self.estimator is None
            else clone(self.estimator)
        )
        method = CLASS_PROJECTIONS[self.kind]
        if not hasattr(estimator, method):
            raise ValueError(
                f"projection={self.kind!r} needs a classifier with {method}; "
                f"{type(estimator).__name__} has none."
            )
        cv = check_cv(self.cv, y, classifier=True)
        # With metadata routing on, scikit-learn takes groups only through params.
        if _routing_enabled():
            split = {"params": {**fit_params, "groups": groups}}
        else:
            split = {"groups": groups, "params": fit_params}
        out = cross_val_predict(estimator, X, y, cv=cv, method=method, **split)
        self.estimator_ = estimator.fit(X, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        out = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
        if self.kind == "decision":
            self.scaler_ = StandardScaler().fit(out)
            out = self.scaler_.transform(out)
        self.n_features_out_ = out.shape[1]
        return out

    def transform(self, X):
        """The classifier's outputs on new rows."""
        check_is_fitted(self)
        out = getattr(self.estimator_, CLASS_PROJECTIONS[self.kind])(X)
        out = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
        if self.kind == "decision":
            out = self.scaler_.transform(out)
        return out

    def get_feature_names_out(self, input_features=None):
        """``proba_<class>`` or ``decision_<class>`` (one column for a binary
        decision function, positive towards the second class)."""
        check_is_fitted(self)
        classes = self.classes_[-self.n_features_out_ :]
        return np.asarray([f"{self.kind}_{c}" for c in classes], dtype=object)
