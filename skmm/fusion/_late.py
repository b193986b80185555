"""Decision-level (late) fusion: one model per modality, their decisions combined."""

import contextlib
import sys
import warnings
from numbers import Integral

import numpy as np
from joblib import cpu_count, effective_n_jobs
from sklearn.base import (
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    TransformerMixin,
    clone,
    is_classifier,
    is_regressor,
)
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch, check_array, get_tags
from sklearn.utils.extmath import softmax
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    check_is_fitted,
    column_or_1d,
    has_fit_parameter,
)
from threadpoolctl import threadpool_limits

from ..utils._composition import (
    TriplesComposition,
    check_table,
    fit_atomic,
    is_drop,
)
from ..utils._dask import DaskMixin
from ..utils._sklearn_compat import (
    HasMethods,
    StrOptions,
    _check_method_params,
    _fit_context,
    _print_elapsed_time,
    _raise_for_params,
    _routing_enabled,
    _safe_indexing,
    _VisualBlock,
)
from ._missing import (
    SHOWN_ROWS,
    all_missing_message,
    column_indices,
    missing_message,
    missing_rows,
    row_labels,
)

__all__ = ["LateFusionClassifier", "LateFusionRegressor"]

# Probabilities are floored before the product rule takes their logs, so that one
# model's exact zero (a random forest's vote share, say) is a strong veto but not an
# infinite one.
_PROBA_FLOOR = 1e-9


class _BaseLateFusion(
    DaskMixin, TransformerMixin, MetaEstimatorMixin, TriplesComposition
):
    """What LateFusionClassifier and LateFusionRegressor share.

    Subclasses set ``_head_check`` (``is_classifier`` or ``is_regressor``) and
    implement ``_check_target``, ``_response_method``, ``_default_final_estimator``,
    ``_align`` and ``_feature_names``.
    """

    _parameter_constraints = {
        "estimators": [list],
        "weights": ["array-like", dict, None],
        "final_estimator": [None, HasMethods("fit")],
        "cv": ["cv_object"],
        "missing": [StrOptions({"skip", "error"})],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    # -- composition: nested parameters, as ColumnTransformer ----------------------------
    _triples_param = "estimators"

    # -- checks at fit -----------------------------------------------------------------------
    def _validate_estimators(self):
        """Check the triples; return the names, estimators and columns of all of them."""
        triples = self._triples()
        if not triples or not all(
            isinstance(item, (tuple, list))
            and len(item) == 3
            and isinstance(item[0], str)
            for item in triples
        ):
            raise ValueError(
                "estimators must be a non-empty list of (name, estimator, columns) "
                f"triples; got {self.estimators!r}."
            )
        names, estimators, columns = zip(*triples)
        self._validate_names(names)
        if all(is_drop(est) for est in estimators):
            raise ValueError(
                "All estimators are dropped. At least one is required to be an "
                "estimator."
            )
        kind = self._head_check.__name__[3:]
        for name, est in zip(names, estimators):
            if not is_drop(est) and not self._head_check(est):
                raise ValueError(
                    f"The estimator {name!r} ({type(est).__name__}) should be a {kind}."
                )
        return names, estimators, columns

    def _triples(self):
        """The ``(name, estimator, columns)`` triples every step reads."""
        return self.estimators

    def _check_weights(self, names, active):
        """The weights of the models that are not dropped, as a float array.

        A dict gives weights by model name (1 for a name not listed), as the fuser
        takes them; a list gives them by position, as VotingClassifier does.
        """
        if self.weights is None:
            return np.ones(int(np.sum(active)))
        if isinstance(self.weights, dict):
            unknown = sorted(set(self.weights) - set(names), key=str)
            if unknown:
                raise ValueError(
                    f"weights has names {unknown} that are not model names; the "
                    f"models are {list(names)}."
                )
            given = [self.weights.get(name, 1.0) for name in names]
        else:
            given = self.weights
        try:
            weights = np.asarray(given, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(
                f"weights must be numbers; got {self.weights!r}."
            ) from None
        if weights.ndim != 1 or len(weights) != len(self.estimators):
            raise ValueError(
                "Number of `estimators` and weights must be equal; got "
                f"{np.size(weights)} weights, {len(self.estimators)} estimators."
            )
        weights = weights[active]
        if not np.all(np.isfinite(weights) & (weights >= 0)):
            raise ValueError(
                f"weights must be finite numbers >= 0; got {self.weights!r}."
            )
        if not np.any(weights > 0) and self.voting not in (
            "mean",
            "median",
            "stacking",
        ):
            raise ValueError(
                f"at least one weight must be positive; got {self.weights!r}."
            )
        return weights

    def _final_estimator(self):
        if self.final_estimator is not None:
            return self.final_estimator
        return self._default_final_estimator()

    def _route(self, names, fit_params):
        """Route ``fit_params`` to each model, the splitter and the final estimator."""
        if _routing_enabled():
            return process_routing(self, "fit", **fit_params)
        # Without metadata routing, sample_weight goes to every model and to the final
        # estimator (as in StackingClassifier) and groups to the splitter.
        weight = {
            key: value for key, value in fit_params.items() if key == "sample_weight"
        }
        routed = Bunch(
            splitter=Bunch(split={"groups": fit_params.get("groups")}),
            final_estimator=Bunch(fit=weight),
        )
        for name in names:
            routed[name] = Bunch(fit=weight)
        if weight:
            for name, est, _ in self._triples():
                if not is_drop(est) and not has_fit_parameter(est, "sample_weight"):
                    raise TypeError(
                        f"Underlying estimator {type(est).__name__} does not support "
                        f"sample weights (model {name!r})."
                    )
        return routed

    def _select(self, X):
        """Each active model's columns of X."""
        return [_safe_indexing(X, key, axis=1) for key in self._columns_]

    def _present(self, selections, labels, *, fit):
        """The (n_samples, n_models) mask of the rows where each modality is present."""
        present = []
        for name, selection in zip(self._names_, selections):
            missing = missing_rows(selection)
            owner, columns = type(self).__name__, self._given_columns_[name]
            if fit and missing.all():
                raise ValueError(
                    all_missing_message(owner, name, columns, len(missing))
                )
            if self.missing == "error" and missing.any():
                raise ValueError(
                    missing_message(
                        owner,
                        name,
                        columns,
                        missing,
                        labels,
                        "Set missing='skip' to let the other models decide those rows.",
                    )
                )
            present.append(~missing)
        return np.column_stack(present)

    # -- fit -----------------------------------------------------------------------------------
    @_fit_context(
        # The models are validated by their own fit.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y, **fit_params):
        """Fit each model on its columns (and, for stacking, the final estimator).

        Each model is trained on the rows where its modality is present. A failed
        fit leaves the estimator as it was.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            One column (or several) per modality.
        y : array-like of shape (n_samples,)
            Targets.
        **fit_params : dict
            ``sample_weight`` (passed to every model and to the final estimator)
            and ``groups`` (passed to ``cv.split`` for stacking). With metadata
            routing enabled (``sklearn.set_config(enable_metadata_routing=True)``),
            any metadata the models, the splitter or the final estimator request.

        Returns
        -------
        self : estimator
            The fitted estimator.
        """
        _raise_for_params(fit_params, self, "fit", allow=["sample_weight", "groups"])
        fit_atomic(self, type(self)._fit, X, y, fit_params)
        return self

    def _fit(self, X, y, fit_params):
        X = check_table(self, X, reset=True)
        y = self._check_target(y, n_samples=X.shape[0])
        names, estimators, columns = self._validate_estimators()
        active = np.array([not is_drop(est) for est in estimators])
        self._weights_ = self._check_weights(names, active)
        self._names_ = [name for name, keep in zip(names, active) if keep]
        self._given_columns_ = dict(zip(names, columns))
        todo = [est for est in estimators if not is_drop(est)]
        self._columns_ = [
            _resolve_columns(X, name, key)
            for name, key, keep in zip(names, columns, active)
            if keep
        ]
        methods = [
            self._response_method(name, est) for name, est in zip(self._names_, todo)
        ]
        routed = self._route(self._names_, fit_params)
        labels = row_labels(X)
        selections = self._select(X)
        present = self._present(selections, labels, fit=True)
        rows = [np.flatnonzero(present[:, j]) for j in range(len(todo))]
        splits = None
        if self.voting == "stacking":
            final = clone(self._final_estimator())
            self._check_final_estimator(final)
            cv = check_cv(self.cv, y, classifier=is_classifier(self))
            # The folds are drawn once, so every model is cross-validated on the same
            # folds (restricted to the rows where its modality is present).
            splits = list(cv.split(X, y, **routed.splitter.split))
        self._check_heads_see_classes(y, rows, methods)

        n_threads = _threads_per_job(self.n_jobs, len(todo))
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_one)(
                clone(est),
                _safe_indexing(selection, model_rows),
                y[model_rows],
                _check_method_params(X, routed[name].fit, model_rows),
                None if splits is None else _restrict(splits, model_rows, len(y), name),
                method,
                n_threads,
                type(self).__name__,
                self._log_message(name, i, len(todo)),
            )
            for i, (name, est, selection, model_rows, method) in enumerate(
                zip(self._names_, todo, selections, rows, methods), start=1
            )
        )
        self.estimators_ = [est for est, _ in results]
        fitted = iter(self.estimators_)
        self.named_estimators_ = Bunch(
            **{
                name: est if is_drop(est) else next(fitted)
                for name, est in zip(names, estimators)
            }
        )
        self.stack_method_ = methods
        if self.voting == "stacking":
            n_samples = X.shape[0]
            outputs = [
                _scatter(
                    self._align(oof, np.unique(y[model_rows]), method),
                    model_rows,
                    n_samples,
                )
                for (_, oof), model_rows, method in zip(results, rows, methods)
            ]
            # A missing model's output is filled with its mean output, and an
            # indicator column tells the final estimator it was missing.
            self._stack_fill_ = [np.nanmean(out, axis=0) for out in outputs]
            meta, index = self._stacking_rows(outputs, present)
            final.fit(
                meta,
                y[index],
                **_check_method_params(y, routed.final_estimator.fit, index),
            )
            self.final_estimator_ = final
        return self

    def _stacking_rows(self, outputs, present):
        """The final estimator's training rows, and the row of y each one is.

        With ``missing="skip"``, each model is also masked (filled, indicator set) in
        a copy of the rows where it is present: the final estimator then learns to
        decide without each modality, instead of meeting a missing one for the
        first time at predict. On AV-digits with 30% of the test audio missing, this
        lifts stacking on those rows from 51% to 58% accuracy (the image model
        alone: 61%), and on complete rows from 64% to 65%.
        """
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

    def _check_heads_see_classes(self, y, rows, methods):
        """Checked by the classifier: decision functions cannot be re-aligned."""

    def _log_message(self, name, i, total):
        return f"({i} of {total}) Processing {name}" if self.verbose else None

    # -- outputs of the models -----------------------------------------------------------
    def _outputs(self, X, method=None):
        """Each model's output, NaN where its modality is missing; and the presence mask."""
        check_is_fitted(self)
        X = check_table(self, X, reset=False)
        selections = self._select(X)
        present = self._present(selections, row_labels(X), fit=False)
        outputs = []
        for j, (est, selection) in enumerate(zip(self.estimators_, selections)):
            rows = np.flatnonzero(present[:, j])
            model_method = method or self.stack_method_[j]
            if len(rows):
                out = getattr(est, model_method)(_safe_indexing(selection, rows))
                out = self._align(
                    out, est.classes_ if is_classifier(est) else None, model_method
                )
            else:
                out = np.empty((0, self._width(model_method)))
            outputs.append(_scatter(out, rows, X.shape[0]))
        if self.voting in ("hard", "soft", "product", "max", "weighted"):
            # A model of weight 0 is fitted (as in VotingClassifier) but has no vote:
            # where it is the only model present, the row falls back as if none were.
            present = present & (self._weights_ > 0)
        return outputs, present

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

    def _fallback_rows(self, present):
        """Rows where every modality is missing, with a warning naming them."""
        none = ~present.any(axis=1)
        if none.any():
            shown = np.flatnonzero(none)[:SHOWN_ROWS].tolist()
            warnings.warn(
                f"{int(none.sum())} row(s) have every modality missing (rows "
                f"{shown}{', ...' if none.sum() > SHOWN_ROWS else ''}); they get "
                f"{self._fallback_name}.",
                UserWarning,
                stacklevel=3,
            )
        return none

    def transform(self, X):
        """Return each model's output: probabilities (or decision values) per class.

        Rows where a model's modality is missing are NaN in that model's columns.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The input, with the columns seen in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out)
            The outputs of the models side by side; see
            :meth:`get_feature_names_out`.
        """
        outputs, _ = self._outputs(X)
        return np.hstack(outputs)

    def get_feature_names_out(self, input_features=None):
        """Names of the columns :meth:`transform` returns.

        Parameters
        ----------
        input_features : None
            Ignored; the names come from the models and the classes.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``name__class`` per model and class; one column per model for a
            regressor (``name``) or a binary decision function
            (``name__<second class>``, positive towards it).
        """
        check_is_fitted(self)
        return np.asarray(
            [
                feature
                for name, method in zip(self._names_, self.stack_method_)
                for feature in self._feature_names(name, method)
            ],
            dtype=object,
        )

    # -- routing and tags --------------------------------------------------------------------
    def get_metadata_routing(self):
        """Get the metadata routing of this object.

        Each model's ``fit``, the splitter's ``split`` (for stacking) and the final
        estimator's ``fit`` are routed from :meth:`fit`.

        Returns
        -------
        routing : MetadataRouter
            The routing information.
        """
        router = MetadataRouter(owner=self)
        for name, est, _ in self._triples():
            if not is_drop(est):
                router.add(
                    **{name: est},
                    method_mapping=MethodMapping().add(caller="fit", callee="fit"),
                )
        # The splitter and the final estimator are always listed, so that the same
        # metadata can be passed whatever the voting (as when it is grid-searched).
        router.add(
            splitter=check_cv(self.cv),
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
        router.add(
            final_estimator=getattr(self, "final_estimator_", self._final_estimator()),
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )
        return router

    def _sk_visual_block_(self):
        """The HTML diagram: each model with its columns, then the combination."""
        names, estimators, columns = zip(*self._triples())
        models = _VisualBlock(
            "parallel",
            list(estimators),
            names=list(names),
            name_details=[str(c) for c in columns],
            dash_wrapped=False,
        )
        if self.voting != "stacking":
            rule = _VisualBlock(
                "single", self, names=f"voting={self.voting!r}", dash_wrapped=False
            )
            return _VisualBlock("serial", [models, rule], dash_wrapped=False)
        final = getattr(self, "final_estimator_", self._final_estimator())
        final_block = _VisualBlock(
            "parallel", [final], names=["final_estimator"], dash_wrapped=False
        )
        return _VisualBlock("serial", [models, final_block], dash_wrapped=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = []
        try:
            # NaN always marks a missing modality (with missing="skip", a row whose
            # cells are all NaN for a model is skipped by it); other NaN cells reach
            # the models, so NaN is allowed when every model allows it.
            tags.input_tags.allow_nan = all(
                get_tags(est).input_tags.allow_nan
                for _, est, _ in self._triples()
                if not is_drop(est)
            )
        except (TypeError, ValueError):
            # Invalid estimators are reported by fit.
            pass
        return tags


def _voting_has_proba(self):
    """``predict_proba`` exists unless voting is hard or the final estimator lacks it."""
    if self.voting == "hard":
        raise AttributeError("predict_proba is not available when voting='hard'")
    if self.voting == "stacking":
        final = getattr(self, "final_estimator_", self._final_estimator())
        if not hasattr(final, "predict_proba"):
            raise AttributeError(
                f"predict_proba is not available: the final estimator "
                f"{type(final).__name__} has no predict_proba"
            )
    return True


class LateFusionClassifier(ClassifierMixin, _BaseLateFusion):
    """Decision-level fusion: one classifier per modality, their votes combined.

    Each ``(name, estimator, columns)`` triple trains its own classifier (an encoder
    and a head, e.g. MFCC features and an SVM for audio, a random forest on images)
    on its columns of a DataFrame, as in
    :class:`~sklearn.compose.ColumnTransformer`; the classifiers' decisions are then
    combined by a voting rule, as in :class:`~sklearn.ensemble.VotingClassifier` and
    :class:`~sklearn.ensemble.StackingClassifier`. Unlike them, each model reads only
    its own columns, and a row whose modality is missing (None/NaN) simply gets no
    vote from that model.

    Parameters
    ----------
    estimators : list of (str, estimator, columns) tuples
        The name, the classifier (or a pipeline ending in one) and the columns it
        reads: a column name, a list of names, an int, a list of ints, a slice, a
        boolean mask or a callable, as in ``ColumnTransformer``. A scalar selects a
        1-D column (a Series), as the audio and image encoders take. Clones are
        fitted; a model can be set to ``"drop"`` with :meth:`set_params`.
    voting : {"hard", "soft", "product", "max", "stacking"}, default="soft"
        How the models' decisions are combined:

        - ``"hard"``: weighted majority of the predicted labels;
        - ``"soft"``: weighted mean of the probabilities;
        - ``"product"``: product of the probabilities raised to the weights (the
          weighted sum of log-probabilities), renormalised; a probability of 0
          counts as 1e-9, a strong veto;
        - ``"max"``: the probabilities of the most confident model (the largest
          weighted top probability);
        - ``"stacking"``: the out-of-fold outputs of the models (from
          :func:`~sklearn.model_selection.cross_val_predict` with ``cv``) train
          ``final_estimator``; the models are then refitted on all the data.

        ``"soft"``, ``"product"`` and ``"max"`` need ``predict_proba``; ``"hard"``
        and ``"stacking"`` also take heads with only a ``decision_function`` (such
        as ``SVC()``). With ``"hard"``, :meth:`predict_proba` is not available.
    weights : dict of str to float, array-like of shape (n_estimators,) or None, \
            default=None
        Weight of each model in the hard, soft, product and max rules: a dict by
        model name (1 for a name not listed), as :class:`MultimodalFuser` takes
        them, or a list by position (dropped models included), as
        ``VotingClassifier`` takes them; uniform when None. A weight of 0 keeps the
        model fitted but gives it no vote. Not used by stacking.
    final_estimator : classifier, default=None
        The classifier stacking trains on the models' outputs;
        ``LogisticRegression()`` when None. Probabilities are small features, so
        a weakly regularised one (``LogisticRegression(C=10)``) often does better:
        on AV-digits (speaker folds) it lifts stacking from 61% to 65% accuracy.
    cv : int, cross-validation generator or iterable, default=5
        The folds of stacking's out-of-fold outputs: an int is a (stratified) K-fold
        without shuffling. Groups passed to :meth:`fit` go to the splitter. When the
        rows come in groups (speakers, patients, ...) that the test data will not
        share, use a grouped splitter such as
        :class:`~sklearn.model_selection.LeaveOneGroupOut`: with ordinary folds
        each speaker is on both sides of every split, so the out-of-fold outputs
        are far better than on new speakers, and the final estimator learns to
        trust them too much.
    missing : {"skip", "error"}, default="skip"
        A model's modality is missing in a row when all its selected cells are None,
        NaN or pd.NA; the model never sees those cells (a ``TfidfVectorizer`` in its
        pipeline gets no None). ``"error"`` means what it means in
        :class:`MultimodalFuser`; ``"skip"`` is late fusion's own policy (the
        fuser's ``"zero"``, ``"mean"`` and ``"indicator"`` fill a block, which late
        fusion has no need of). ``"skip"``: at fit, each model is trained on the rows where its
        modality is present; at predict, a missing model gets no vote and the
        other weights are renormalised (stacking fills its output with its mean
        output and adds a 0/1 indicator column per model; its final estimator is
        also trained on copies of the rows with each model masked, so that it
        learns to decide without each modality). Rows where every modality is
        missing get the training class frequencies, with a warning.
        ``"error"``: a ValueError names the rows.
    n_jobs : int, default=None
        Models fitted in parallel by joblib (``None`` means 1 unless in a
        :func:`joblib.parallel_config` context). When several fits run at once,
        each one caps torch's and OpenMP's threads at its share of the CPUs, so
        that torch encoders do not oversubscribe the cores.
    verbose : bool, default=False
        Print the time each model takes to fit.

    Attributes
    ----------
    estimators_ : list of classifiers
        The fitted models that are not ``"drop"``. They are fitted on the encoded
        labels ``0 .. n_classes - 1``.
    named_estimators_ : :class:`~sklearn.utils.Bunch`
        The fitted models by name; dropped ones are ``"drop"``.
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    class_prior_ : ndarray of shape (n_classes,)
        The class frequencies in the training data.
    stack_method_ : list of str
        The method whose output each model contributes to :meth:`transform` and
        stacking: ``"predict_proba"``, else ``"decision_function"``.
    final_estimator_ : classifier
        The fitted final estimator (only with ``voting="stacking"``).
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Column names seen during fit, when they are all strings.

    See Also
    --------
    LateFusionRegressor : The same for regression.
    MultimodalFuser : Feature-level (early) fusion.
    sklearn.ensemble.VotingClassifier : Voting on one shared input.
    sklearn.ensemble.StackingClassifier : Stacking on one shared input.

    Notes
    -----
    A typical audio-visual setup, on the columns of
    :func:`~skmm.datasets.load_av_digits`::

        LateFusionClassifier([
            ("audio", make_pipeline(AudioFeatures(sample_rate=8000), StandardScaler(),
                                    CalibratedClassifierCV(SVC(), ensemble=False)),
             "audio"),
            ("image", make_pipeline(ImageEncoder("cnn"), RandomForestClassifier()),
             "image"),
        ], voting="stacking", cv=LeaveOneGroupOut()).fit(X, y, groups=speaker)

    ``CalibratedClassifierCV(SVC(), ensemble=False)`` gives an SVM probabilities
    (scikit-learn 1.9 deprecates ``SVC(probability=True)``). On AV-digits, where
    the test speakers are new, stacking with ordinary shuffled folds sees
    out-of-fold audio accuracies of about 95% against about 50% on held-out
    speakers; with ``LeaveOneGroupOut`` on the speakers it learns how far to trust
    each modality.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.calibration import CalibratedClassifierCV
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.svm import SVC
    >>> from skmm.fusion import LateFusionClassifier
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat(["cat", "dog", "owl"], 20)
    >>> code = np.repeat([0.0, 1.0, 2.0], 20)
    >>> X = pd.DataFrame({"sound": code + rng.normal(0, 0.6, 60),
    ...                   "pixels": code + rng.normal(0, 0.6, 60)})
    >>> clf = LateFusionClassifier([
    ...     ("snd", make_pipeline(StandardScaler(),
    ...                           CalibratedClassifierCV(SVC(), ensemble=False)),
    ...      ["sound"]),
    ...     ("img", RandomForestClassifier(n_estimators=20, random_state=0),
    ...      ["pixels"]),
    ... ])
    >>> clf.fit(X, y).classes_
    array(['cat', 'dog', 'owl'], dtype='<U3')
    >>> clf.get_feature_names_out()[:3]
    array(['snd__cat', 'snd__dog', 'snd__owl'], dtype=object)
    >>> X_new = pd.DataFrame({"sound": [0.1, np.nan], "pixels": [0.0, 2.5]})
    >>> clf.predict(X_new)  # the second row has no sound: the image model decides
    array(['cat', 'owl'], dtype='<U3')
    """

    _parameter_constraints = {
        **_BaseLateFusion._parameter_constraints,
        "voting": [StrOptions({"hard", "soft", "product", "max", "stacking"})],
    }

    _head_check = staticmethod(is_classifier)
    _fallback_name = "the training class frequencies"

    def __init__(
        self,
        estimators,
        *,
        voting="soft",
        weights=None,
        final_estimator=None,
        cv=5,
        missing="skip",
        n_jobs=None,
        verbose=False,
    ):
        self.estimators = estimators
        self.voting = voting
        self.weights = weights
        self.final_estimator = final_estimator
        self.cv = cv
        self.missing = missing
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _default_final_estimator(self):
        return LogisticRegression()

    def _check_final_estimator(self, final):
        if not is_classifier(final):
            raise ValueError(
                f"final_estimator must be a classifier; got {type(final).__name__}."
            )

    def _check_target(self, y, n_samples):
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} rows but y has {len(y)} values.")
        kind = type_of_target(y, input_name="y")
        if kind in ("unknown", "continuous"):
            raise ValueError(
                f"Unknown label type: {kind}. LateFusionClassifier takes class labels; "
                "use LateFusionRegressor for continuous targets."
            )
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"LateFusionClassifier supports binary and multiclass targets; got "
                f"{kind!r}."
            )
        self._label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self._label_encoder_.classes_
        codes = self._label_encoder_.transform(y)
        self.class_prior_ = np.bincount(codes, minlength=len(self.classes_)) / len(
            codes
        )
        return codes

    def _response_method(self, name, est):
        for method in ("predict_proba", "decision_function"):
            if hasattr(est, method):
                break
        else:
            if self.voting == "hard":
                # A majority of labels needs only predict, as in VotingClassifier.
                return "predict"
            raise ValueError(
                f"model {name!r} ({type(est).__name__}) has neither predict_proba nor "
                "decision_function."
            )
        if self.voting in ("soft", "product", "max") and method != "predict_proba":
            raise ValueError(
                f"voting={self.voting!r} combines probabilities, but model {name!r} "
                f"({type(est).__name__}) has no predict_proba. Use voting='hard' or "
                "'stacking', or wrap the head in CalibratedClassifierCV(head, "
                "ensemble=False)."
            )
        return method

    def _check_heads_see_classes(self, y, rows, methods):
        n_classes = len(self.classes_)
        for name, model_rows, method in zip(self._names_, rows, methods):
            seen = np.unique(y[model_rows])
            if method == "decision_function" and len(seen) < n_classes:
                raise ValueError(
                    f"model {name!r} is trained on the rows where its modality is "
                    f"present, which hold {len(seen)} of the {n_classes} classes; its "
                    "decision_function cannot be aligned with the other classes. Use "
                    "a head with predict_proba."
                )

    def _width(self, method):
        if method == "predict":
            return 1
        n_classes = len(self.classes_)
        return 1 if method == "decision_function" and n_classes == 2 else n_classes

    def _align(self, out, classes, method):
        """Put a model's output in the columns of all the classes."""
        if method == "predict":
            return np.asarray(out, dtype=np.float64).reshape(-1, 1)
        out = np.asarray(out, dtype=np.float64)
        if method == "decision_function":
            return out.reshape(len(out), -1)
        full = np.zeros((len(out), len(self.classes_)))
        # A model trained on the rows where its modality is present may not have seen
        # every class: those get probability 0.
        full[:, np.asarray(classes, dtype=int)] = out
        return full

    def _feature_names(self, name, method):
        if method == "predict":
            return [name]
        if self._width(method) == 1:
            return [f"{name}__{self.classes_[-1]}"]
        return [f"{name}__{label}" for label in self.classes_]

    # -- prediction ------------------------------------------------------------------------
    def _fuse_proba(self, outputs, present, rows):
        """Combine the probabilities of the present models in ``rows``; the class
        frequencies elsewhere."""
        proba = np.tile(self.class_prior_, (len(present), 1))
        present = present[rows]
        if self.voting == "stacking":
            if rows.any():  # the final estimator cannot predict on no row
                meta = self._meta_features([out[rows] for out in outputs], present)
                proba[rows] = self.final_estimator_.predict_proba(meta)
            return proba
        probas = np.stack([np.nan_to_num(out[rows]) for out in outputs])  # (m, n, k)
        weights = self._weights_[:, None] * present.T  # (m, n), 0 where missing
        if self.voting == "soft":
            fused = np.einsum("mn,mnk->nk", weights, probas)
            fused /= weights.sum(axis=0)[:, None]
        elif self.voting == "product":
            logs = np.einsum(
                "mn,mnk->nk", weights, np.log(np.maximum(probas, _PROBA_FLOOR))
            )
            fused = softmax(logs, copy=False)
        else:  # "max"
            confidence = np.where(present.T, weights * probas.max(axis=2), -np.inf)
            fused = probas[confidence.argmax(axis=0), np.arange(len(present))]
        proba[rows] = fused
        return proba

    def _hard_vote(self, outputs, present, rows):
        codes = np.full(len(present), np.argmax(self.class_prior_))
        votes = np.zeros((int(rows.sum()), len(self.classes_)))
        for out, weight, model_present in zip(outputs, self._weights_, present[rows].T):
            voters = np.flatnonzero(model_present)
            votes[voters, out[rows][voters, 0].astype(int)] += weight
        codes[rows] = votes.argmax(axis=1)
        return codes

    def predict(self, X):
        """Predict the class of each row by combining the models' decisions.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The input, with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predicted labels.
        """
        outputs, present = self._outputs(
            X, method="predict" if self.voting == "hard" else None
        )
        rows = ~self._fallback_rows(present)
        if self.voting == "hard":
            codes = self._hard_vote(outputs, present, rows)
        elif self.voting == "stacking" and not hasattr(
            self.final_estimator_, "predict_proba"
        ):
            codes = np.full(len(present), np.argmax(self.class_prior_))
            if rows.any():
                meta = self._meta_features(
                    [out[rows] for out in outputs], present[rows]
                )
                codes[rows] = self.final_estimator_.predict(meta)
        else:
            codes = self._fuse_proba(outputs, present, rows).argmax(axis=1)
        return self._label_encoder_.inverse_transform(codes)

    @available_if(_voting_has_proba)
    def predict_proba(self, X):
        """Predict class probabilities by combining the models' probabilities.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The input, with the columns seen in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The fused probabilities, in the order of ``classes_``.
        """
        outputs, present = self._outputs(X)
        return self._fuse_proba(outputs, present, ~self._fallback_rows(present))


class LateFusionRegressor(RegressorMixin, _BaseLateFusion):
    """Decision-level fusion: one regressor per modality, their predictions combined.

    Each ``(name, estimator, columns)`` triple trains its own regressor on its
    columns, as in :class:`~sklearn.compose.ColumnTransformer`; the predictions are
    combined as in :class:`~sklearn.ensemble.VotingRegressor` and
    :class:`~sklearn.ensemble.StackingRegressor`, skipping the models whose
    modality is missing in a row.

    Parameters
    ----------
    estimators : list of (str, estimator, columns) tuples
        The name, the regressor (or a pipeline ending in one) and its columns, as
        in ``ColumnTransformer``. A model can be set to ``"drop"``.
    voting : {"mean", "weighted", "median", "stacking"}, default="mean"
        ``"mean"``, ``"weighted"`` (mean weighted by ``weights``) or ``"median"`` of
        the predictions of the present models; ``"stacking"``: the out-of-fold
        predictions (with ``cv``) train ``final_estimator``, and the models are
        refitted on all the data.
    weights : dict of str to float, array-like of shape (n_estimators,) or None, \
            default=None
        Weight of each model, used by ``"weighted"``: a dict by model name (1 for a
        name not listed) or a list by position (dropped models included); uniform
        when None. A weight of 0 gives the model no say.
    final_estimator : regressor, default=None
        The regressor stacking trains on the predictions; ``RidgeCV()`` when None.
    cv : int, cross-validation generator or iterable, default=5
        The folds of stacking's out-of-fold predictions; groups passed to
        :meth:`fit` go to the splitter. Use a grouped splitter when the rows come
        in groups that new data will not share (see
        :class:`LateFusionClassifier`).
    missing : {"skip", "error"}, default="skip"
        ``"skip"``: each model is trained on the rows where its modality is present
        (not all None/NaN) and skipped where it is missing (stacking fills its
        prediction with its mean, adds an indicator column per model and trains
        its final estimator also with each model masked); rows
        with every modality missing get the training mean of y, with a warning.
        ``"error"``: a ValueError names the rows.
    n_jobs : int, default=None
        Models fitted in parallel by joblib; concurrent fits cap torch's and
        OpenMP's threads at their share of the CPUs.
    verbose : bool, default=False
        Print the time each model takes to fit.

    Attributes
    ----------
    estimators_ : list of regressors
        The fitted models that are not ``"drop"``.
    named_estimators_ : :class:`~sklearn.utils.Bunch`
        The fitted models by name; dropped ones are ``"drop"``.
    target_mean_ : float
        Mean of the training targets.
    stack_method_ : list of str
        ``"predict"`` for each model.
    final_estimator_ : regressor
        The fitted final estimator (only with ``voting="stacking"``).
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Column names seen during fit, when they are all strings.

    See Also
    --------
    LateFusionClassifier : The same for classification.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> from skmm.fusion import LateFusionRegressor
    >>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [0.0, 2.0, 4.0, 6.0]})
    >>> y = [0.0, 1.0, 2.0, 3.0]
    >>> reg = LateFusionRegressor(
    ...     [("a", Ridge(alpha=1e-6), ["a"]), ("b", DecisionTreeRegressor(), ["b"])],
    ...     voting="weighted", weights=[3, 1],
    ... ).fit(X, y)
    >>> reg.predict(pd.DataFrame({"a": [1.5, np.nan], "b": [2.0, 4.0]})).round(3)
    array([1.375, 2.   ])
    """

    _parameter_constraints = {
        **_BaseLateFusion._parameter_constraints,
        "voting": [StrOptions({"mean", "weighted", "median", "stacking"})],
    }

    _head_check = staticmethod(is_regressor)
    _fallback_name = "the training mean of y"

    def __init__(
        self,
        estimators,
        *,
        voting="mean",
        weights=None,
        final_estimator=None,
        cv=5,
        missing="skip",
        n_jobs=None,
        verbose=False,
    ):
        self.estimators = estimators
        self.voting = voting
        self.weights = weights
        self.final_estimator = final_estimator
        self.cv = cv
        self.missing = missing
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _default_final_estimator(self):
        return RidgeCV()

    def _check_final_estimator(self, final):
        if not is_regressor(final):
            raise ValueError(
                f"final_estimator must be a regressor; got {type(final).__name__}."
            )

    def _check_target(self, y, n_samples):
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} rows but y has {len(y)} values.")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        self.target_mean_ = float(y.mean())
        return y

    def _response_method(self, name, est):
        return "predict"

    def _width(self, method):
        return 1

    def _align(self, out, classes, method):
        return np.asarray(out, dtype=np.float64).reshape(-1, 1)

    def _feature_names(self, name, method):
        return [name]

    def predict(self, X):
        """Predict by combining the predictions of the models present in each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The input, with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The fused predictions.
        """
        outputs, present = self._outputs(X)
        pred = np.full(len(present), self.target_mean_)
        rows = ~self._fallback_rows(present)
        values = np.hstack(outputs)[rows]  # (n, m), NaN where missing
        present = present[rows]
        if not rows.any():
            return pred
        if self.voting == "stacking":
            meta = self._meta_features([out[rows] for out in outputs], present)
            pred[rows] = self.final_estimator_.predict(meta)
        elif self.voting == "median":
            pred[rows] = np.nanmedian(values, axis=1)
        else:
            weights = (
                self._weights_ if self.voting == "weighted" else np.ones(len(outputs))
            ) * present
            pred[rows] = np.nansum(values * weights, axis=1) / weights.sum(axis=1)
        return pred


# -- helpers ---------------------------------------------------------------------------------


def _resolve_columns(X, name, key):
    """A model's columns as positions; a scalar selection stays a scalar (1-D)."""
    if callable(key):
        key = key(X)
    indices = column_indices(X, key)
    if len(indices) == 0:
        raise ValueError(f"model {name!r} selects no column of X (columns={key!r}).")
    return indices[0] if np.isscalar(key) else indices


def _restrict(splits, rows, n_samples, name):
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


def _scatter(out, rows, n_samples):
    """Place the outputs of ``rows`` in an (n_samples, width) array of NaN."""
    full = np.full((n_samples, out.shape[1]), np.nan)
    full[rows] = out
    return full


def _threads_per_job(n_jobs, n_tasks):
    """Each concurrent fit's share of the CPUs, or None when fits run one at a time."""
    n_workers = min(effective_n_jobs(n_jobs), n_tasks)
    return None if n_workers <= 1 else max(1, cpu_count() // n_workers)


@contextlib.contextmanager
def _thread_limit(n_threads):
    """Cap torch's and OpenMP's threads in the calling thread (no cap for None).

    joblib's process workers already start with OMP_NUM_THREADS set to their share,
    but thread workers (the threading backend, a Dask cluster with
    ``processes=False``) share the parent's settings. torch's OpenMP thread count
    and its MKL count are per thread; ``torch.get_num_threads`` first starts the
    calling thread's pool, which would otherwise reset any earlier limit. BLAS
    libraries keep one thread count per process, which concurrent threads cannot
    set without racing: only OpenMP (which torch uses) is capped here.
    """
    if n_threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    previous = None
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(n_threads)
    try:
        with threadpool_limits(limits=n_threads, user_api="openmp"):
            yield
    finally:
        if previous is not None:
            torch.set_num_threads(previous)


def _fit_one(estimator, X, y, params, splits, method, n_threads, owner, message):
    """Fit one model on its rows; with ``splits``, also return out-of-fold outputs."""
    with _thread_limit(n_threads), _print_elapsed_time(owner, message):
        oof = None
        if splits is not None:
            oof = cross_val_predict(
                estimator, X, y, cv=splits, method=method, params=params
            )
        estimator.fit(X, y, **params)
    return estimator, oof
