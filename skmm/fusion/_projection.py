"""Class-aligned projection: each modality mapped to the same class-indexed space.

Element-wise fusion (mean, product, max) adds or multiplies coordinate k of every
block, which means something only when coordinate k means the same thing in every
block. Independent PCAs do not give that; a classifier per modality does: its
probability (or decision value) for class k is about class k whatever the modality.
This is what decision-level fusion combines, brought to the feature level.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.cross_decomposition import CCA, PLSCanonical
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ..utils._composition import target_type
from ..utils._sklearn_compat import _routing_enabled

__all__ = ["CLASS_PROJECTIONS", "PAIRED_PROJECTIONS"]

CLASS_PROJECTIONS = {"proba": "predict_proba", "decision": "decision_function"}
"""Name of a class-aligned projection -> the classifier's method it uses."""


def default_projection_estimator():
    """The per-modality classifier of a class-aligned projection.

    A strongly regularised logistic regression: a modality's block has hundreds of
    features and the training set a few hundred rows, and C=0.1 keeps its
    probabilities from saturating at 0 and 1 (the user guide measures what it gains
    over C=1).
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
        kind = target_type(y, "MultimodalFuser")
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


PAIRED_PROJECTIONS = {"cca": CCA, "pls": PLSCanonical}
"""Name of an unsupervised alignment of two modalities -> its estimator class."""

# Components of the default CCA/PLS: enough for 10 classes' worth of shared structure,
# few enough for a small training set.
_PAIRED_COMPONENTS = 8


def default_paired_estimator(kind, widths, n_samples):
    """``CCA`` or ``PLSCanonical`` with as many components as the blocks allow."""
    k = min(_PAIRED_COMPONENTS, *widths, n_samples)
    return PAIRED_PROJECTIONS[kind](n_components=k)


class PairedProjection(TransformerMixin, BaseEstimator):
    """One side of a CCA or PLS fitted on two blocks: that block's scores.

    CCA and PLS pair their components: component k of the first block's scores is
    the most correlated with component k of the second's, so the two blocks live in
    one space, coordinate by coordinate, and element-wise fusion means something.
    The shared ``estimator`` is fitted on both blocks beforehand; each side
    centres (and, when the estimator scales, scales) its block as the estimator
    did, and multiplies it by its rotations.

    Parameters
    ----------
    estimator : fitted CCA, PLSCanonical or other ``_PLS`` estimator
        The shared alignment.
    side : {"x", "y"}
        Which of the two blocks this is.
    kind : str
        The prefix of the feature names (``cca0``, ``cca1``, ...).
    """

    def __init__(self, estimator, side, kind):
        self.estimator = estimator
        self.side = side
        self.kind = kind

    def fit(self, X, y=None):
        """Record the centring and scaling the estimator applied to this block."""
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        if getattr(self.estimator, "scale", True):
            std = X.std(axis=0, ddof=1)
            std[std == 0.0] = 1.0
        else:
            std = np.ones(X.shape[1])
        self.std_ = std
        self.rotations_ = getattr(self.estimator, f"{self.side}_rotations_")
        return self

    def transform(self, X):
        """The block's scores on the paired components."""
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        return ((X - self.mean_) / self.std_) @ self.rotations_

    def get_feature_names_out(self, input_features=None):
        """``cca0``, ``cca1``, ... (or ``pls0``, ...)."""
        check_is_fitted(self)
        width = self.rotations_.shape[1]
        return np.asarray([f"{self.kind}{i}" for i in range(width)], dtype=object)
