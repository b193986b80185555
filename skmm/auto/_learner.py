"""MultimodalClassifier and MultimodalRegressor: the vectorizer and a head, one line."""

import time
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..encoders import ImageEncoder
from ..utils._composition import (
    check_table_shape,
    fit_atomic,
    missing_rows,
    target_type,
)
from ..utils._dask import DaskMixin, is_dask_collection
from ..utils._sklearn_compat import HasMethods, StrOptions, _fit_context
from ._ensemble import (
    default_head,
    ensemble_selection,
    families,
    family_input,
    out_of_fold,
    predict_family,
)
from ._vectorizer import MultimodalVectorizer, _as_frame

__all__ = ["MultimodalClassifier", "MultimodalRegressor"]

# The trained image towers of the best preset: skmm's small CNN at 32 px (CIFAR's
# size: what a few hundred to a few thousand labelled images can teach it, at a
# small fraction of the pretrained tower's cost per image), for its default epochs.
_TRAINED_IMAGE = {"backbone": "cnn", "image_size": 32}


class _MultimodalLearner(DaskMixin, BaseEstimator):
    """What the classifier and the regressor share: vectorize, then the preset."""

    _parameter_constraints = {
        "preset": [StrOptions({"fast", "best"})],
        "vectorizer": [None, HasMethods(["fit", "transform"])],
        "head": [None, HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        preset="fast",
        vectorizer=None,
        head=None,
        cv=5,
        n_jobs=None,
        verbose=False,
        random_state=None,
    ):
        self.preset = preset
        self.vectorizer = vectorizer
        self.head = head
        self.cv = cv
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    _classifier = False

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Detect the columns' kinds, encode them, and fit the preset's models.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The table: images, sounds, texts, categories, numbers and dates, one
            column each (see :class:`MultimodalVectorizer`).
        y : array-like of shape (n_samples,)
            The targets.

        Returns
        -------
        self : object
            The fitted learner.
        """
        fit_atomic(self, type(self)._fit, X, y)
        return self

    def _log(self, message, start):
        if self.verbose:
            print(f"[{type(self).__name__}] {message} ({time.time() - start:.1f} s)")

    def _fit(self, X, y):
        if is_dask_collection(X) or is_dask_collection(y):
            raise TypeError(
                f"{type(self).__name__} fits on a pandas DataFrame; predict takes "
                "Dask DataFrames partition by partition."
            )
        X = check_table_shape(_as_frame(X, type(self).__name__), type(self).__name__)
        y = self._check_y(y, len(X))
        start = time.time()
        vectorizer = (
            MultimodalVectorizer(verbose=self.verbose, random_state=self.random_state)
            if self.vectorizer is None
            else clone(self.vectorizer)
        )
        Z = vectorizer.fit_transform(X, y)
        self.vectorizer_ = vectorizer
        self._log(f"{len(X)} rows vectorized into {Z.shape[1]} features", start)
        head = default_head(self._classifier) if self.head is None else self.head
        start = time.time()
        if self.preset == "fast":
            self.head_ = clone(head).fit(Z, y)
            self._log(f"head {type(head).__name__} fitted", start)
        else:
            self._fit_best(X, Z, y, head)
            self._log("best preset fitted", start)
        self.n_features_in_ = vectorizer.n_features_in_
        if hasattr(vectorizer, "feature_names_in_"):
            self.feature_names_in_ = vectorizer.feature_names_in_

    def _folds(self, Z, y):
        """One fold object shared by every family (shuffled when ``cv`` is an int)."""
        if isinstance(self.cv, Integral):
            splitter = StratifiedKFold if self._classifier else KFold
            cv = splitter(self.cv, shuffle=True, random_state=self.random_state or 0)
        else:
            cv = check_cv(self.cv, y, classifier=self._classifier)
        with warnings.catch_warnings():
            # A class rarer than the folds is missing from some folds' training
            # rows: its column is zero in their predictions, which ensemble
            # selection (one weight per family) tolerates.
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            return list(cv.split(Z, y))

    def _trained_family(self, X, folds):
        """The vectorizer of the family that trains towers, and the columns it
        reads; None when no image column can train one.

        The fitted vectorizer's parameters, with a small CNN given by
        ``specific_encoders`` to each image column that the user did not assign
        (a cell of several images trains it on each, with the row's label):
        refitted on each fold's rows, its other encoders are those of the fused
        family (the pretrained ones read the embedding cache).
        """
        vectorizer = self.vectorizer_

        def images_in_every_fold(column):
            # A CNN needs images to train on in every fold's training rows. Only
            # the image column is read (the layout's masks of every modality would
            # open the audio columns' video files to look for soundtracks).
            missing = missing_rows(X[column])
            return not any(missing[train].all() for train, _ in folds)

        columns = [
            column
            for name, _, column in vectorizer.fuser_.encoders
            if vectorizer._entry_kinds_[name] == "image"
            and vectorizer.column_reasons_[column] != "specific_encoders"
            and images_in_every_fold(column)
        ]
        if not columns:
            return None
        towers = [
            (
                ImageEncoder(
                    **_TRAINED_IMAGE,
                    random_state=self.random_state,
                    verbose=self.verbose,
                ),
                [column],
            )
            for column in columns
        ]
        trained = clone(vectorizer).set_params(
            specific_encoders=[*vectorizer.specific_encoders, *towers]
        )
        return trained, list(X.columns)

    def _fit_best(self, X, Z, y, head):
        if self._classifier and not hasattr(head, "predict_proba"):
            raise ValueError(
                f"preset='best' weighs the families' class probabilities, and head "
                f"{type(head).__name__} has no predict_proba; use a probabilistic "
                "head (LogisticRegression, or CalibratedClassifierCV around yours)."
            )
        folds = self._folds(Z, y)
        members = families(
            head,
            self.vectorizer_._entry_kinds_,
            self.vectorizer_.output_indices_,
            self._classifier,
            self.random_state,
            trained=self._trained_family(X, folds),
        )
        classes = self.classes_ if self._classifier else None
        predictions = out_of_fold(
            members,
            X,
            Z,
            y,
            folds,
            classes,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            owner=type(self).__name__,
        )
        self.family_scores_ = {
            name: self._score_predictions(p, y) for name, p in predictions.items()
        }
        self.weights_ = ensemble_selection(predictions, y, classes)
        # Only the families ensemble selection kept are refitted on every row.
        self.estimators_ = [
            (name, clone(estimator).fit(family_input(columns, X, Z), y), columns)
            for name, estimator, columns in members
            if self.weights_[name] > 0
        ]
        if self.verbose:
            for name, score in self.family_scores_.items():
                print(
                    f"[{type(self).__name__}] family {name!r}: out-of-fold "
                    f"{self._metric} {score:.3f}, weight {self.weights_[name]:.2f}"
                )

    def _features(self, X):
        check_is_fitted(self)
        X = _as_frame(X, type(self).__name__)
        return X, self.vectorizer_.transform(X)

    def _blend(self, X, Z):
        """The weighted mean of the kept families' predictions."""
        classes = self.classes_ if self._classifier else None
        return sum(
            self.weights_[name]
            * predict_family(estimator, family_input(columns, X, Z), classes)
            for name, estimator, columns in self.estimators_
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        return tags


class MultimodalClassifier(ClassifierMixin, _MultimodalLearner):
    """Classify the rows of a table of images, sounds, texts and tabular columns.

    One line from a DataFrame to a model: a :class:`MultimodalVectorizer` detects
    each column's kind from its values and encodes it (pretrained towers that work
    offline for images and texts, MFCC statistics for sounds, skrub's encoders for
    categories, numbers and dates), and a head learns on the features.

    - ``preset="fast"``: one head over every block (feature-level fusion), a
      ``LogisticRegression`` unless ``head`` says otherwise.
    - ``preset="best"``: several model families, combined by their out-of-fold
      predictions: the head over every block, the head over each image, audio and
      text column alone, gradient-boosted trees over the tabular columns, and,
      when there are image columns, the head over every block with a small CNN
      trained on the labels in place of their pretrained
      tower (at 32 px: the pretrained tower never sees the labels, and images
      unlike ImageNet's, such as digits or scans, need a tower that does).
      All are fitted on one shared set of stratified folds, then weighed by
      ensemble selection (greedy forward selection of the family that most lowers
      the log loss of the running average, as AutoGluon's weighted ensemble; one
      weight per family, which rare classes cannot mislead as they mislead a
      stacked per-class model). The families with a weight are refitted on every
      row. The vectorizer's features are computed once, before the folds (its
      encoders are frozen and unsupervised); the family with trained CNNs is
      fitted on each fold (the pretrained towers' embeddings come from the cache),
      and once more on every row when it keeps a weight.

    Parameters
    ----------
    preset : {"fast", "best"}, default="fast"
        The models fitted on the features (see above).
    vectorizer : MultimodalVectorizer or None, default=None
        The vectorizer, cloned; None is ``MultimodalVectorizer()`` with this
        learner's ``verbose`` and ``random_state``. Pass one to reach its
        parameters (``vectorizer__image``) in a grid search.
    head : classifier or None, default=None
        The model over the features, cloned; None is
        ``LogisticRegression(max_iter=2000)``. Pass one to reach its parameters
        (``head__C``).
    cv : int, cross-validation generator or iterable, default=5
        The folds of the best preset: an int is a shuffled stratified K-fold seeded
        by ``random_state``; pass a grouped splitter when rows come in groups
        (speakers, shops) that new rows will not share.
    n_jobs : int or None, default=None
        Fold fits run in parallel in the best preset.
    verbose : bool, default=False
        Print each column's kind, the encoders' progress and each stage's time.
    random_state : int or None, default=None
        Seeds the folds, the trees and the detection's sample.

    Attributes
    ----------
    vectorizer_ : MultimodalVectorizer
        The fitted vectorizer (``vectorizer_.column_kinds_`` says what was
        detected).
    head_ : classifier
        The fitted head (``preset="fast"``).
    estimators_ : list of (str, classifier, ndarray or list) tuples
        The families with a weight, refitted on every row, with the output columns
        of the vectorizer each reads (an ndarray of positions), or the table's
        columns the family that trains towers reads (a list of names)
        (``preset="best"``).
    weights_ : dict of str to float
        Each family's ensemble weight (``preset="best"``).
    family_scores_ : dict of str to float
        Each family's out-of-fold accuracy (``preset="best"``).
    classes_ : ndarray
        The class labels.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Names of the columns seen during fit.

    See Also
    --------
    MultimodalVectorizer : The features alone, for a pipeline of your own.
    MultimodalRegressor : The same for real-valued targets.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmm import MultimodalClassifier
    >>> X = pd.DataFrame({
    ...     "colour": ["red", "blue", "red", "blue", "red", "blue"],
    ...     "price": [10.0, 40.0, 12.0, 38.0, 11.0, 41.0],
    ... })
    >>> y = ["cheap", "dear", "cheap", "dear", "cheap", "dear"]
    >>> clf = MultimodalClassifier().fit(X, y)
    >>> clf.vectorizer_.column_kinds_
    {'colour': 'categorical', 'price': 'numeric'}
    >>> clf.predict(X.head(2))
    array(['cheap', 'dear'], dtype='<U5')
    """

    _classifier = True
    _metric = "accuracy"

    def _check_y(self, y, n_rows):
        y = column_or_1d(np.asarray(y, dtype=None), warn=True)
        target_type(y, type(self).__name__)  # missing or mixed labels named
        check_classification_targets(y)
        if len(y) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(y)} values.")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; "
                f"got one class only: {self.classes_[0]!r}."
            )
        return y

    def _score_predictions(self, proba, y):
        return float(np.mean(self.classes_[proba.argmax(axis=1)] == y))

    def predict(self, X):
        """Predict the class of each row.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The columns seen in :meth:`fit` (a Dask DataFrame gives a lazy Dask
            Series, computed partition by partition).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X, Z = self._features(X)
        if self.preset == "fast":
            return self.head_.predict(Z)
        return self.classes_[self._blend(X, Z).argmax(axis=1)]

    def _has_proba(self):
        return (
            self.preset == "best"
            or self.head is None
            or hasattr(self.head, "predict_proba")
        )

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Predict the class probabilities of each row.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The columns seen in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            In the order of ``classes_``.
        """
        X, Z = self._features(X)
        if self.preset == "fast":
            return self.head_.predict_proba(Z)
        return self._blend(X, Z)


class MultimodalRegressor(RegressorMixin, _MultimodalLearner):
    """Predict a value for each row of a table of images, sounds, texts and columns.

    The regression twin of :class:`MultimodalClassifier`: the same vectorizer, a
    ``RidgeCV`` head (its penalty chosen by leave-one-out) in ``preset="fast"``,
    and in ``preset="best"`` the ridge over every block, over each image, audio and
    text column, gradient-boosted trees over the tabular columns, and the ridge over
    every block with a small CNN trained on the targets in place of the image
    columns' pretrained towers, weighed by ensemble selection on shuffled K-fold
    out-of-fold predictions (squared error).

    Parameters
    ----------
    preset : {"fast", "best"}, default="fast"
        The models fitted on the features.
    vectorizer : MultimodalVectorizer or None, default=None
        The vectorizer, cloned; None is ``MultimodalVectorizer()``.
    head : regressor or None, default=None
        The model over the features, cloned; None is ``RidgeCV``.
    cv : int, cross-validation generator or iterable, default=5
        The folds of the best preset (an int: a shuffled K-fold).
    n_jobs : int or None, default=None
        Fold fits run in parallel in the best preset.
    verbose : bool, default=False
        Print each column's kind, the encoders' progress and each stage's time.
    random_state : int or None, default=None
        Seeds the folds, the trees and the detection's sample.

    Attributes
    ----------
    vectorizer_ : MultimodalVectorizer
        The fitted vectorizer.
    head_ : regressor
        The fitted head (``preset="fast"``).
    estimators_ : list of (str, regressor, ndarray or list) tuples
        The families with a weight and the output columns each reads, or the
        table's columns for the family that trains towers (``preset="best"``).
    weights_ : dict of str to float
        Each family's ensemble weight (``preset="best"``).
    family_scores_ : dict of str to float
        Each family's out-of-fold R² (``preset="best"``).
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Names of the columns seen during fit.

    See Also
    --------
    MultimodalClassifier : The same for classes.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmm import MultimodalRegressor
    >>> X = pd.DataFrame({"size": ["S", "L", "S", "L", "M", "M"],
    ...                   "weight": [1.0, 3.0, 1.2, 2.9, 2.0, 2.1]})
    >>> reg = MultimodalRegressor().fit(X, [10.0, 30.0, 11.0, 29.0, 20.0, 21.0])
    >>> reg.predict(X).shape
    (6,)
    """

    _metric = "R2"

    def _check_y(self, y, n_rows):
        y = column_or_1d(np.asarray(y, dtype=np.float64), warn=True)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{type(self).__name__}: y contains NaN or infinity.")
        if len(y) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(y)} values.")
        return y

    def _score_predictions(self, values, y):
        total = np.sum((y - y.mean()) ** 2)
        return float(1 - np.sum((y - values) ** 2) / total) if total > 0 else 0.0

    def predict(self, X):
        """Predict the value of each row.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The columns seen in :meth:`fit` (a Dask DataFrame gives a lazy Dask
            Series, computed partition by partition).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X, Z = self._features(X)
        if self.preset == "fast":
            return self.head_.predict(Z)
        return self._blend(X, Z)
