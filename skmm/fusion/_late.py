"""Decision-level (late) fusion: one model per modality, their decisions combined.

The voting rules are in :mod:`skmm.fusion._rules`, stacking's final estimator and its
input in :mod:`skmm.fusion._stacking`; this module fits the models on their columns
(the rows where each modality is present) and gathers their outputs.
"""

import warnings
from inspect import Parameter, signature
from numbers import Integral

import numpy as np
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
from sklearn.model_selection import check_cv
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch, check_array, get_tags
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..utils._composition import (
    SHOWN_ROWS,
    ModalityLayout,
    TriplesComposition,
    check_table,
    fit_atomic,
    is_drop,
    present_part,
    target_type,
)
from ..utils._dask import DaskMixin
from ..utils._sklearn_compat import (
    HasMethods,
    StrOptions,
    _check_method_params,
    _fit_context,
    _raise_for_params,
    _routing_enabled,
    _safe_indexing,
    _VisualBlock,
)
from ..utils._threads import parallel_over_modalities
from ..utils._validation import check_fitted
from ._rules import PROBA_RULES, hard_vote, mean_vote, median_vote
from ._stacking import StackingMixin, fit_one, restrict_folds

__all__ = ["LateFusionClassifier", "LateFusionRegressor"]

_SKIP_ADVICE = "Set missing='skip' to let the other models decide those rows."


class _BaseLateFusion(
    DaskMixin, TransformerMixin, MetaEstimatorMixin, StackingMixin, TriplesComposition
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

    def _triples(self):
        """The ``(name, estimator, columns)`` triples every step reads."""
        return self.estimators

    @property
    def estimators_(self):
        """The fitted models that are not ``"drop"``."""
        return [m.estimator for m in self.modalities_.active]

    @property
    def named_estimators_(self):
        """The fitted models by name (a Bunch); dropped ones are ``"drop"``."""
        return self.modalities_.named_estimators()

    @property
    def output_indices_(self):
        """The columns of :meth:`transform` that come from each model."""
        return self.modalities_.output_indices

    # -- checks at fit -----------------------------------------------------------------------
    def _kind(self):
        """ "classifier" or "regressor", as the models and the final estimator must be."""
        return self._head_check.__name__[3:]

    def _check_model(self, name, estimator):
        if not self._head_check(estimator):
            raise ValueError(
                f"The estimator {name!r} ({type(estimator).__name__}) should be a "
                f"{self._kind()}."
            )

    def _check_final_estimator(self, final):
        if not self._head_check(final):
            raise ValueError(
                f"final_estimator must be a {self._kind()}; got {type(final).__name__}."
            )

    def _check_y(self, y, n_samples):
        """``y`` as a 1-D array of one value per row, then the subclass's checks."""
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} rows but y has {len(y)} values.")
        return self._check_target(y)

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
        if weights.ndim != 1 or len(weights) != len(names):
            raise ValueError(
                "Number of `estimators` and weights must be equal; got "
                f"{np.size(weights)} weights, {len(names)} estimators."
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

    def _route(self, modalities, fit_params):
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
        for m in modalities:
            if weight and not _takes_sample_weight(m.estimator):
                raise TypeError(
                    f"Underlying estimator {type(m.estimator).__name__} does not "
                    f"support sample weights (model {m.name!r})."
                )
            routed[m.name] = Bunch(fit=weight)
        return routed

    def _present(self, X, *, training=False):
        """Each active model's columns of X, and the (n_samples, n_models) mask of
        the rows where its modality is present."""
        layout = self.modalities_
        selections = {m.name: layout.select(X, m.name) for m in layout.active}
        missing = layout.missing(
            X,
            selections=selections,
            training=training,
            allowed=self.missing == "skip",
            advice=_SKIP_ADVICE,
        )
        present = np.column_stack([~missing[m.name] for m in layout.active])
        return list(selections.values()), present

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
        y = self._check_y(y, n_samples=X.shape[0])
        self.modalities_ = layout = ModalityLayout.from_triples(
            self._triples(),
            X,
            owner=self,
            param="estimators",
            role="model",
            check=self._check_model,
            strings=("drop",),
            empty_columns="error",
        )
        todo = layout.active
        self._weights_ = self._check_weights(
            layout.names, np.array([m.active for m in layout])
        )
        methods = [self._response_method(m.name, m.estimator) for m in todo]
        routed = self._route(todo, fit_params)
        selections, present = self._present(X, training=True)
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
        tasks = [
            (
                clone(m.estimator),
                _safe_indexing(selection, model_rows),
                y[model_rows],
                _check_method_params(X, routed[m.name].fit, model_rows),
                None
                if splits is None
                else restrict_folds(splits, model_rows, len(y), m.name),
                method,
                type(self).__name__,
                self._log_message(m.name, i, len(todo)),
            )
            for i, (m, selection, model_rows, method) in enumerate(
                zip(todo, selections, rows, methods), start=1
            )
        ]
        results = parallel_over_modalities(self.n_jobs, fit_one, tasks)
        for m, (estimator, _) in zip(todo, results):
            m.estimator = estimator
        self.stack_method_ = methods
        layout.set_outputs(
            {m.name: self._width(method) for m, method in zip(todo, methods)}
        )
        if self.voting == "stacking":
            outputs = [
                _scatter(
                    self._align(oof, np.unique(y[model_rows]), method),
                    model_rows,
                    len(y),
                )
                for (_, oof), model_rows, method in zip(results, rows, methods)
            ]
            meta, index = self._stacking_rows(outputs, present)
            final.fit(
                meta,
                y[index],
                **_check_method_params(y, routed.final_estimator.fit, index),
            )
            self.final_estimator_ = final
        return self

    def _check_heads_see_classes(self, y, rows, methods):
        """Checked by the classifier: decision functions cannot be re-aligned."""

    def _log_message(self, name, i, total):
        return f"({i} of {total}) Processing {name}" if self.verbose else None

    # -- outputs of the models -----------------------------------------------------------
    def _outputs(self, X, method=None):
        """Each model's output, NaN where its modality is missing; and the presence
        mask (False also where a voting rule gives the model a weight of 0)."""
        check_fitted(self)
        X = check_table(self, X, reset=False)
        selections, present = self._present(X)
        outputs = []
        for j, (est, selection) in enumerate(zip(self.estimators_, selections)):
            rows = np.flatnonzero(present[:, j])
            model_method = method or self.stack_method_[j]
            if len(rows):
                out = getattr(est, model_method)(
                    present_part(selection, ~present[:, j])
                )
                # A classifier's classes (fit checked each model's kind with
                # _head_check): its tags are not built again per call.
                out = self._align(out, getattr(est, "classes_", None), model_method)
            else:
                out = np.empty((0, self._width(model_method)))
            outputs.append(_scatter(out, rows, X.shape[0]))
        if self.voting in ("hard", "soft", "product", "max", "weighted"):
            # A model of weight 0 is fitted (as in VotingClassifier) but has no vote:
            # where it is the only model present, the row falls back as if none were.
            present = present & (self._weights_ > 0)
        return outputs, present

    def _vote_weights(self, present):
        """Each model's weight in each row, ``(m, n)``: 0 where it is missing."""
        uniform = self.voting in ("mean", "median")
        weights = np.ones(present.shape[1]) if uniform else self._weights_
        return weights[:, None] * present.T

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
                for m, method in zip(self.modalities_.active, self.stack_method_)
                for feature in self._feature_names(m.name, method)
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
        a weakly regularised one (``LogisticRegression(C=10)``) often does better
        (the user guide measures it on AV-digits).
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
        :func:`joblib.parallel_config` context). Each concurrent fit is capped at
        its share of the CPUs, so that torch encoders do not oversubscribe the
        cores.
    verbose : bool, default=False
        Print the time each model takes to fit.

    Attributes
    ----------
    modalities_ : :class:`~skmm.utils.ModalityLayout`
        The modalities as fitted: names, fitted models, input columns (positions
        and names), output columns of :meth:`transform`;
        ``modalities_.missing(X)`` gives the rows where each modality is missing.
    output_indices_ : dict of str to slice
        The columns of :meth:`transform` that come from each model (an empty slice
        for a dropped one).
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
    (scikit-learn 1.9 deprecates ``SVC(probability=True)``). Where the test
    speakers are new, ordinary shuffled folds put every speaker on both sides of
    each split, so the out-of-fold outputs look far better than the outputs on
    new speakers (the user guide measures the gap on AV-digits); with
    ``LeaveOneGroupOut`` on the speakers stacking learns how far to trust each
    modality.

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

    def _check_y(self, y, n_samples):
        if target_type(y, type(self).__name__) in (
            "multilabel-indicator",
            "multiclass-multioutput",
        ):
            # VotingClassifier's answer to the same targets.
            raise NotImplementedError(
                "Multilabel and multi-output classification is not supported."
            )
        return super()._check_y(y, n_samples)

    def _check_target(self, y):
        kind = target_type(y, type(self).__name__)
        if kind in ("unknown", "continuous", "continuous-multioutput"):
            raise ValueError(
                f"Unknown label type: {kind}. LateFusionClassifier takes class labels; "
                "use LateFusionRegressor for continuous targets."
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
        if self.voting in PROBA_RULES and method != "predict_proba":
            raise ValueError(
                f"voting={self.voting!r} combines probabilities, but model {name!r} "
                f"({type(est).__name__}) has no predict_proba. Use voting='hard' or "
                "'stacking', or wrap the head in CalibratedClassifierCV(head, "
                "ensemble=False)."
            )
        return method

    def _check_heads_see_classes(self, y, rows, methods):
        n_classes = len(self.classes_)
        for m, model_rows, method in zip(self.modalities_.active, rows, methods):
            seen = np.unique(y[model_rows])
            if method == "decision_function" and len(seen) < n_classes:
                raise ValueError(
                    f"model {m.name!r} is trained on the rows where its modality is "
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
        if not rows.any():
            return proba  # the final estimator cannot predict on no row
        if self.voting == "stacking":
            meta = self._meta_features([out[rows] for out in outputs], present[rows])
            proba[rows] = self.final_estimator_.predict_proba(meta)
            return proba
        probas = np.stack([np.nan_to_num(out[rows]) for out in outputs])  # (m, n, k)
        proba[rows] = PROBA_RULES[self.voting](
            probas, self._vote_weights(present[rows])
        )
        return proba

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
        codes = np.full(len(present), np.argmax(self.class_prior_))
        if self.voting == "hard":
            if rows.any():
                labels = np.stack([np.nan_to_num(out[rows, 0]) for out in outputs])
                codes[rows] = hard_vote(
                    labels, self._vote_weights(present[rows]), len(self.classes_)
                )
        elif self.voting == "stacking" and not hasattr(
            self.final_estimator_, "predict_proba"
        ):
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
        Models fitted in parallel by joblib; each concurrent fit is capped at its
        share of the CPUs.
    verbose : bool, default=False
        Print the time each model takes to fit.

    Attributes
    ----------
    modalities_ : :class:`~skmm.utils.ModalityLayout`
        The modalities as fitted: names, fitted models, input columns (positions
        and names), output columns of :meth:`transform`;
        ``modalities_.missing(X)`` gives the rows where each modality is missing.
    output_indices_ : dict of str to slice
        The columns of :meth:`transform` that come from each model (an empty slice
        for a dropped one).
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

    def _check_target(self, y):
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
        if not rows.any():
            return pred
        if self.voting == "stacking":
            meta = self._meta_features([out[rows] for out in outputs], present[rows])
            pred[rows] = self.final_estimator_.predict(meta)
            return pred
        values = np.nan_to_num(np.hstack(outputs)[rows].T)  # (m, n), 0 where missing
        rule = median_vote if self.voting == "median" else mean_vote
        pred[rows] = rule(values, self._vote_weights(present[rows]))
        return pred


def _takes_sample_weight(estimator):
    """Whether ``fit`` takes ``sample_weight``, by name or among its ``**kwargs``."""
    parameters = signature(estimator.fit).parameters
    return "sample_weight" in parameters or any(
        p.kind is Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _scatter(out, rows, n_samples):
    """Place the outputs of ``rows`` in an (n_samples, width) array of NaN."""
    full = np.full((n_samples, out.shape[1]), np.nan)
    full[rows] = out
    return full
