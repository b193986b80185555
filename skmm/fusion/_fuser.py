"""MultimodalFuser: encode each modality's column, then fuse the features (early fusion)."""

from contextlib import contextmanager
from itertools import chain
from numbers import Integral, Real

import numpy as np
from sklearn.base import TransformerMixin, clone
from sklearn.model_selection import check_cv
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import Bunch, get_tags
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from ..utils._composition import (
    ModalityLayout,
    TriplesComposition,
    check_table,
    fit_atomic,
    present_part,
    row_labels,
)
from ..utils._dask import DaskMixin
from ..utils._sklearn_compat import (
    HasMethods,
    Hidden,
    Interval,
    StrOptions,
    _check_feature_names_in,
    _check_method_params,
    _fit_context,
    _get_output_config,
    _name_estimators,
    _print_elapsed_time,
    _raise_for_params,
    _routing_enabled,
    _safe_set_output,
    _VisualBlock,
)
from ..utils._threads import parallel_over_modalities
from ..utils._validation import check_fitted
from ._blocks import BlockPipelineMixin
from ._ops import ELEMENTWISE, FUSION_OPERATORS
from ._projection import (
    CLASS_PROJECTIONS,
    PAIRED_PROJECTIONS,
    default_projection_estimator,
)

__all__ = ["MultimodalFuser", "make_fuser"]

_FILL_ADVICE = "Set missing='zero', 'mean' or 'indicator' to fill missing modalities."
# ColumnTransformer's message for a scalar selection given to a 2-D transformer.
_ONE_D_MESSAGE = (
    "1D data passed to a transformer that expects 2D data. Try to specify the column "
    "selection as a list of one item instead of a scalar."
)


class MultimodalFuser(
    DaskMixin, TransformerMixin, BlockPipelineMixin, TriplesComposition
):
    """Encode each modality's column with its encoder, then fuse the features.

    Feature-level (early) fusion: a DataFrame with one column per modality goes in,
    each ``(name, encoder, columns)`` triple encodes its columns exactly as in
    :class:`~sklearn.compose.ColumnTransformer`, and the per-modality blocks of
    features are fused into one matrix for any scikit-learn head (``SVC``,
    ``LogisticRegression``, ``RandomForestClassifier``, ...). Between encoding and
    fusion, each block goes through the same steps, all fitted on the training data:

    1. each encoder is fitted and run on the rows where its modality is present
       (not every selected cell None, NaN or pd.NA), and the other rows are filled
       as ``missing`` says;
    2. the block is normalised as ``normalize`` says;
    3. the block is projected as ``projection`` says (PCA, or a class-aligned
       space), when asked;
    4. the block is multiplied by its entry of ``weights`` and fused by ``fusion``.

    With ``normalize=None``, no projection and ``missing="error"``, no step touches
    the blocks and the fuser is a ``ColumnTransformer``: each block is concatenated
    as its encoder returned it (with ``set_output(transform="pandas")``, a
    DataFrame keeping each column's dtype).

    Parameters
    ----------
    encoders : list of (str, transformer, columns) tuples
        One triple per modality, as in ``ColumnTransformer``: a name (no ``__``), a
        transformer (any scikit-learn transformer works: skmm's encoders,
        ``TfidfVectorizer`` on a text column, ``StandardScaler`` on numbers), or
        ``"passthrough"`` (the columns as they are) or ``"drop"``, and the columns:
        a name or position (the encoder gets a 1-D Series, which is what skmm's
        encoders and ``TfidfVectorizer`` take), a list of them, a slice, a boolean
        mask or a callable returning one of those. The list is not changed; fitted
        clones are in ``encoders_``. A selection of no column is skipped, as in
        ``ColumnTransformer``. The list may be empty when ``remainder`` encodes the
        columns.
    fusion : {"concat", "sum", "mean", "weighted", "product", "max", "tensor"}, \
            default="concat"
        How the blocks become one matrix (see :mod:`skmm.fusion`'s operators):

        - ``"concat"``: side by side, each block scaled by its weight;
        - ``"sum"``, ``"mean"``: element-wise (weighted) sum or mean;
        - ``"weighted"``: the element-wise sum weighted by ``weights`` (required);
        - ``"product"``, ``"max"``: element-wise product or maximum (no weights);
        - ``"tensor"``: the flattened outer product of ``[1, z_m]`` over the
          modalities (Tensor Fusion Network): it keeps every block's features, every
          product of two features from different blocks, and so on. The width is
          ``prod(width_m + 1)``: it grows multiplicatively, so project the blocks
          (``projection=8`` gives 81 features for two modalities, 729 for three).

        The element-wise fusions need blocks of one width and one space: coordinate
        k must mean the same thing in every block. Set ``projection="proba"``
        unless the encoders already share a space (the fuser warns otherwise).
    projection : {"proba", "decision", "cca", "pls"}, int, dict of str to int, \
            or None, default=None
        How each block is projected after normalisation, fitted on the training
        data:

        - ``"proba"``: onto the class probabilities of a classifier fitted on the
          block (``projection_estimator``), so that every modality lives in one
          class-indexed space. ``fit_transform`` gives the training rows
          cross-fitted probabilities (from models that did not see them, with
          ``cv``), as stacking does, so the head learns from outputs like those of
          new rows; ``fit(X, y).transform(X)`` therefore differs from
          ``fit_transform(X, y)``. ``"mean"`` then averages the probabilities, and
          ``"product"`` and ``"max"`` are renormalised to sum to 1 per row: the
          product and max rules of decision-level fusion. Needs class labels ``y``.
        - ``"decision"``: the same with the classifier's decision values,
          standardised (a product of signed scores means little: the fuser warns).
        - ``"cca"``, ``"pls"``: exactly two modalities aligned with each other,
          without labels: a :class:`~sklearn.cross_decomposition.CCA` or
          :class:`~sklearn.cross_decomposition.PLSCanonical` (``projection_estimator``,
          by default with min(8, widths, rows) components) fitted on the two
          blocks; each block becomes its scores, component k of one paired with
          component k of the other.
        - an int: that many principal components (PCA); a dict projects only the
          named blocks. It cannot exceed a block's width nor the number of training
          rows. PCA spaces are not aligned across modalities.
        - None keeps the blocks as they are.

        The user guide compares these projections on AV-digits.
    projection_estimator : estimator or None, default=None
        The classifier of ``projection="proba"`` or ``"decision"``, cloned per
        modality; ``LogisticRegression(C=0.1, max_iter=1000)`` when None (strongly
        regularised, so that its probabilities do not saturate on blocks of
        hundreds of features). With ``"cca"`` or ``"pls"``, the cross-decomposition
        estimator fitted on the two blocks.
    cv : int, cross-validation generator or iterable, default=5
        The folds of the class projection's cross-fitting (an int is a stratified
        K-fold without shuffling). ``groups`` passed to :meth:`fit` go to the
        splitter: use a grouped splitter when rows come in groups (speakers,
        patients) that new data will not share.
    weights : dict of str to float or None, default=None
        Weight of each modality by name (1 for a name not listed). ``"concat"`` and
        ``"tensor"`` scale each block by its weight, ``"sum"`` and ``"weighted"``
        take the weighted sum, ``"mean"`` the weighted mean. ``"product"`` and
        ``"max"`` take no weights.
    normalize : {"standard", "block"}, None or dict, default="standard"
        How each block is scaled before projection and fusion; a dict of modality
        name to one of these sets it per modality (``"standard"`` for a name not
        listed):

        - ``"standard"``: every feature to zero mean and unit variance (a sparse
          block is only scaled, not centred, so it stays sparse);
        - ``"block"``: ``"standard"``, then each block (after projection) divided
          by the square root of its total variance, so that every modality carries
          the same total variance whatever its width;
        - None: the encoders' features as they are.

        Blocks on their own scales swamp each other: MFCC statistics (values in the
        hundreds) next to pixels drown the image in an RBF-kernel ``SVC``.
        ``"standard"``, the default, suits ``SVC`` and ``LogisticRegression`` heads
        on dense encoder features: equal variance per feature lets a wide but noisy
        block weigh more than a small one. Try ``"block"`` when a wide block would
        otherwise drown a small informative one. Keep a TF-IDF block ``"standard"``
        too, under a linear head (``LogisticRegression``): leaving it as it is
        (``{"img": "block", "txt": None}``) loses the rare words that tell classes
        apart. Under an RBF-kernel ``SVC`` the many standardised TF-IDF features
        dominate the kernel's distances instead; prefer a linear head over a
        TF-IDF block (the user guide measures both).
    missing : {"error", "zero", "mean", "indicator"}, default="error"
        What a missing modality becomes in a row. A modality is missing where every
        cell it selects is None, NaN or pd.NA (see :class:`~skmm.utils.ModalityLayout`):
        its encoder never sees those cells (a ``TfidfVectorizer`` or a
        ``FunctionTransformer`` gets no None), and its block is filled there.
        ``"error"`` raises a ValueError naming the modality, its columns and the
        rows; ``"zero"`` fills the encoder's features with zeros, ``"mean"`` with
        their training mean; ``"indicator"`` fills them with the mean and appends
        one 0/1 column per modality, 1 where the modality is missing. The fill
        comes before the block's scaling and projection, as a ``SimpleImputer``
        ahead of a ``StandardScaler`` in a pipeline: the scaler's statistics count
        the filled rows, and with ``normalize="standard"`` a zero-filled row is
        then where a raw zero sits, not at 0 (the mean fill lands at 0). A NaN in some of a modality's
        cells is not a missing modality: it reaches the encoder, and a NaN in some of
        a block's features is filled as ``"zero"`` and ``"mean"`` say (with
        ``"error"`` it is kept, as ``ColumnTransformer`` keeps it). A modality
        missing in every training row is an error, and so is a present item that
        its encoder turns into an all-NaN row (a broken item is never taken for a
        missing one). With a class projection (``"proba"``, ``"decision"``) a
        missing modality never votes, whatever the policy: its classifier is fitted
        on the rows where it is present, and where it is missing its block is the
        same score for every class (the uniform probabilities; a standardised
        decision value of 0), so the other modalities decide the row. The same
        names mean the same in :class:`LateFusionClassifier`, whose ``"skip"``
        gives a missing modality no vote.
    remainder : {"drop", "passthrough"} or transformer, default="drop"
        The columns no encoder selects, as in ``ColumnTransformer``: dropped,
        passed through as they are, or encoded by the given transformer, and then
        fused as one more modality named ``"remainder"`` (plain numeric columns
        beside the modalities, say).
    sparse_threshold : float, default=0.3
        As in ``ColumnTransformer``: when some block is sparse (``TfidfVectorizer``
        without projection) and ``fusion="concat"``, the output is a sparse CSR
        matrix if less than this fraction of it is non-zero, dense otherwise; 0
        always gives a dense output.
    n_jobs : int or None, default=None
        Encoders fitted and run in parallel with joblib. ``None`` is 1 unless in a
        :func:`joblib.parallel_config` context; -1 uses all processors. Each
        concurrent encoder is capped at its share of the CPUs (torch encoders use
        several threads each).
    verbose : bool, default=False
        Print the time each encoder takes to fit.
    verbose_feature_names_out : bool, str or callable, default=True
        As in ``ColumnTransformer``: True prefixes each block's feature names with
        its modality name (``img__imageencoder0``), False keeps them (they must then
        be unique), a str is a format such as
        ``"{transformer_name}:{feature_name}"`` and a callable maps
        ``(transformer_name, feature_name)`` to a name. Element-wise fusions name
        their features ``fused0``, ``fused1``, ...; projected blocks name theirs
        ``pca0``, ``pca1``, ... (``proba_<class>`` with a class projection) before
        prefixing.
    random_state : int, RandomState instance or None, default=None
        Seeds the PCA projection (its randomized solver on large blocks).

    Attributes
    ----------
    modalities_ : :class:`~skmm.utils.ModalityLayout`
        The modalities as fitted: names, fitted encoders, input columns (positions
        and names), output columns; ``modalities_.missing(X)`` gives the rows where
        each modality is missing.
    encoders_ : list of (str, transformer or "drop", columns) tuples
        The fitted encoders (``"passthrough"`` becomes a fitted
        ``FunctionTransformer``), with their columns resolved; then
        ``("remainder", ..., columns)`` when some columns are left over.
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name.
    output_indices_ : dict of str to slice
        The output columns of each modality (and of ``"remainder"``): its block for
        ``"concat"``; the whole fused block, which every modality shares, for the
        other fusions; an empty slice for a dropped modality or one whose encoder
        outputs no column. With ``missing="indicator"``, the last
        columns are the indicators, one per fused modality in ``encoders`` order.
    block_transformers_ : dict of str to :class:`~sklearn.pipeline.Pipeline`
        The fitted steps between each encoder and the fusion: ``impute`` (a
        :class:`~sklearn.impute.SimpleImputer`), ``scale`` (a
        :class:`~sklearn.preprocessing.StandardScaler`) and ``project`` (a
        :class:`~sklearn.decomposition.PCA`, or the class projection with its
        fitted ``estimator_``), each ``"passthrough"`` when unused.
    block_scales_ : dict of str to float
        The factor each block is multiplied by after ``block_transformers_``
        (``normalize="block"``; 1.0 otherwise).
    sparse_output_ : bool
        Whether the output is a sparse matrix (see ``sparse_threshold``).
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Column names seen during fit, when they are all strings.

    See Also
    --------
    make_fuser : Build a fuser with names made from the encoders' classes.
    sklearn.compose.ColumnTransformer : Concatenation of column-wise transformers.
    skmm.fusion.fuse : The fusion operators, on arrays and torch tensors.

    Notes
    -----
    ``fit_transform`` encodes each column once and passes ``y`` to the encoders
    (skmm's encoders train on it). A sparse block (``TfidfVectorizer``) stays sparse
    through ``fusion="concat"`` without projection; the other fusions and
    projection densify the block. Fitted on a DataFrame with string column names,
    the fuser reads later DataFrames by column name: their column order and extra
    columns do not matter, as in ``ColumnTransformer``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmm.fusion import MultimodalFuser
    >>> X = pd.DataFrame({
    ...     "title": ["red shirt", "blue jeans", "red dress", "black jeans"],
    ...     "price": [10.0, 40.0, 25.0, 35.0],
    ...     "weight": [0.2, 0.8, 0.3, 0.7],
    ... })
    >>> fuser = MultimodalFuser([
    ...     ("txt", TfidfVectorizer(), "title"),
    ...     ("num", StandardScaler(), ["price", "weight"]),
    ... ], normalize=None)
    >>> fuser.fit_transform(X).shape
    (4, 8)
    >>> fuser.get_feature_names_out()[[0, -1]]
    array(['txt__black', 'num__weight'], dtype=object)
    >>> fuser.output_indices_["num"]
    slice(6, 8, None)
    >>> fuser.set_params(fusion="concat", remainder="drop").fit_transform(X).shape
    (4, 8)

    Element-wise fusion in one space, the modalities' class probabilities:

    >>> y = ["cheap", "dear", "cheap", "dear"]
    >>> fuser.set_params(fusion="product", projection="proba", cv=2)
    MultimodalFuser(...)
    >>> fuser.fit(X, y).transform(X).round(2)
    array([[0.62, 0.38],
           [0.4 , 0.6 ],
           [0.56, 0.44],
           [0.43, 0.57]])
    """

    _parameter_constraints = {
        "encoders": [list, Hidden(tuple)],
        "fusion": [StrOptions(set(FUSION_OPERATORS))],
        "projection": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions(set(CLASS_PROJECTIONS) | set(PAIRED_PROJECTIONS)),
            dict,
            None,
        ],
        "projection_estimator": [HasMethods("fit"), None],
        "cv": ["cv_object"],
        "weights": [dict, None],
        "normalize": [StrOptions({"standard", "block"}), None, dict],
        "missing": [StrOptions({"error", "zero", "mean", "indicator"})],
        "remainder": [StrOptions({"drop", "passthrough"}), HasMethods("transform")],
        "sparse_threshold": [Interval(Real, 0, 1, closed="both")],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "verbose_feature_names_out": ["boolean", str, callable],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        encoders,
        *,
        fusion="concat",
        projection=None,
        projection_estimator=None,
        cv=5,
        weights=None,
        normalize="standard",
        missing="error",
        remainder="drop",
        sparse_threshold=0.3,
        n_jobs=None,
        verbose=False,
        verbose_feature_names_out=True,
        random_state=None,
    ):
        self.encoders = encoders
        self.fusion = fusion
        self.projection = projection
        self.projection_estimator = projection_estimator
        self.cv = cv
        self.weights = weights
        self.normalize = normalize
        self.missing = missing
        self.remainder = remainder
        self.sparse_threshold = sparse_threshold
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.verbose_feature_names_out = verbose_feature_names_out
        self.random_state = random_state

    # -- composition: nested parameters, as ColumnTransformer ----------------------------
    _triples_param = "encoders"

    @property
    def encoders_(self):
        """The fitted ``(name, encoder, columns)`` triples, remainder last."""
        return self.modalities_.triples()

    @property
    def named_encoders_(self):
        """The fitted encoders by name, as a :class:`~sklearn.utils.Bunch`."""
        return self.modalities_.named_estimators()

    @property
    def output_indices_(self):
        """Each modality's output columns (see the class description)."""
        return self.modalities_.output_indices

    def __getitem__(self, name):
        try:
            return self.named_encoders_[name]
        except AttributeError as exc:
            raise TypeError(
                f"{type(self).__name__} is subscriptable after it is fitted"
            ) from exc
        except KeyError as exc:
            raise KeyError(
                f"'{name}' is not a valid transformer name: the encoders are "
                f"{self.modalities_.names}"
            ) from exc

    def set_output(self, *, transform=None):
        """Set the output container of :meth:`transform` and :meth:`fit_transform`.

        As in ``ColumnTransformer``, the encoders (given and fitted) and the
        remainder are set too, so that the blocks keep their dtypes in a DataFrame
        output.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            The output container; None leaves it unchanged.

        Returns
        -------
        self : MultimodalFuser
            This fuser.
        """
        super().set_output(transform=transform)
        triples = self.encoders if isinstance(self.encoders, (list, tuple)) else []
        fitted = self.encoders_ if hasattr(self, "modalities_") else []
        children = [
            triple[1]
            for triple in chain(triples, fitted)
            if isinstance(triple, (list, tuple)) and len(triple) == 3
        ]
        for child in [*children, self.remainder]:
            if not isinstance(child, str):
                _safe_set_output(child, transform=transform)
        return self

    # -- fit and transform -----------------------------------------------------------------
    def fit(self, X, y=None, **params):
        """Fit the encoders on their columns, and the fusion on their output.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            One column (or several) per modality.
        y : array-like of shape (n_samples,), default=None
            Targets, passed to every encoder's ``fit`` (skmm's encoders train on
            them); class labels are required by ``projection="proba"`` and
            ``"decision"``.
        **params : dict
            ``groups``, passed to the splitter of the class projection's
            cross-fitting. With metadata routing enabled
            (``sklearn.set_config(enable_metadata_routing=True)``), any metadata
            the encoders, the splitter or ``projection_estimator`` request (such as
            ``sample_weight``).

        Returns
        -------
        self : MultimodalFuser
            The fitted fuser.
        """
        self.fit_transform(X, y, **params)
        return self

    @_fit_context(
        # The encoders are validated by their own fit.
        prefer_skip_nested_validation=False
    )
    def fit_transform(self, X, y=None, **params):
        """Fit the encoders and the fusion, and return the fused features.

        Each column is encoded once. A failed fit leaves the fuser as it was. With
        a class projection, the training rows get cross-fitted class scores (see
        ``projection``), so the output differs from ``fit(X, y).transform(X)``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            One column (or several) per modality.
        y : array-like of shape (n_samples,), default=None
            Targets, passed to every encoder's ``fit``.
        **params : dict
            Metadata, as in :meth:`fit`.

        Returns
        -------
        X_out : {ndarray, sparse matrix, DataFrame} of shape (n_samples, \
n_features_out)
            The fused features.
        """
        _raise_for_params(params, self, "fit_transform", allow=["groups"])
        # The fuser holds no torch state, but its fit must be as failure-safe as the
        # encoders': the same helper runs it on a copy and adopts it on success.
        return fit_atomic(self, type(self)._fit_transform, X, y, params)

    def _fit_transform(self, X, y, params):
        X = check_table(self, X, reset=True, accept_sparse=True)
        if y is not None:
            # Before y is split by modality: scikit-learn's message, not an
            # IndexError from inside.
            check_consistent_length(X, y)
        self.modalities_ = layout = ModalityLayout.from_triples(
            self.encoders,
            X,
            owner=self,
            remainder=self.remainder,
            require_active=False,
        )
        names = [name for name, _, _ in self.encoders]
        self._validate_fusion_params(
            names + ["remainder"] if self.remainder != "drop" else names
        )
        todo = layout.active
        routed = self._route(params, "fit_transform")
        labels = row_labels(X)
        selections = {m.name: layout.select(X, m.name) for m in todo}
        absent = layout.missing(
            X,
            selections=selections,
            training=True,
            allowed=self.missing != "error",
            advice=_FILL_ADVICE,
        )
        y_array = None if y is None else np.asarray(y)
        tasks = []
        for i, m in enumerate(todo, start=1):
            rows = np.flatnonzero(~absent[m.name])
            tasks.append(
                (
                    self._fittable(m.estimator),
                    present_part(selections[m.name], absent[m.name]),
                    None if y is None else y_array[rows],
                    _row_params(X, routed[m.name], rows),
                    type(self).__name__,
                    self._log_message(m.name, i, len(todo)),
                )
            )
        with _one_d_message():
            results = parallel_over_modalities(self.n_jobs, _fit_transform_one, tasks)
        for m, (_, encoder) in zip(todo, results):
            m.estimator = encoder
        self._encoded_widths_ = {}
        outputs = [out for out, _ in results]
        blocks = self._blocks(todo, outputs, absent, labels)
        # With a dataframe output, the names of the encoders' dataframe columns are
        # the feature names of an encoder without get_feature_names_out (as in
        # ColumnTransformer).
        framed = _get_output_config("transform", self)["dense"] != "default"
        self._frame_columns_ = {
            m.name: list(out.columns)
            for m, out in zip(todo, outputs)
            if framed and _has_columns(out)
        }
        return self._fuse(
            blocks,
            absent,
            fit=True,
            n_samples=X.shape[0],
            y=y_array,
            routed=routed,
        )

    def transform(self, X, **params):
        """Encode each modality with its fitted encoder and fuse the features.

        Each encoder runs on the rows where its modality is present; the others
        are filled as ``missing`` says.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The same columns as in :meth:`fit` (a DataFrame is read by column name
            when the fuser was fitted on one).
        **params : dict
            With metadata routing enabled, metadata the encoders' ``transform``
            request.

        Returns
        -------
        X_out : {ndarray, sparse matrix, DataFrame} of shape (n_samples, \
n_features_out)
            The fused features.
        """
        _raise_for_params(params, self, "transform")
        check_fitted(self)
        X = check_table(self, X, reset=False, accept_sparse=True)
        layout = self.modalities_
        todo = layout.active
        routed = self._route(params, "transform")
        selections = {m.name: layout.select(X, m.name) for m in todo}
        absent = layout.missing(
            X,
            selections=selections,
            allowed=self.missing != "error",
            advice=_FILL_ADVICE,
        )
        tasks = [
            (
                m.estimator,
                selections[m.name],
                absent[m.name],
                _row_params(
                    X, routed[m.name].transform, np.flatnonzero(~absent[m.name])
                ),
            )
            for m in todo
        ]
        outputs = parallel_over_modalities(self.n_jobs, _transform_one, tasks)
        blocks = self._blocks(todo, outputs, absent, row_labels(X))
        return self._fuse(blocks, absent, fit=False, n_samples=X.shape[0])

    def _fittable(self, encoder):
        """A fresh clone of an encoder; "passthrough" becomes an identity transformer
        that outputs what the fuser is set to output."""
        if isinstance(encoder, str):
            identity = FunctionTransformer(
                accept_sparse=True, check_inverse=False, feature_names_out="one-to-one"
            )
            return identity.set_output(
                transform=_get_output_config("transform", self)["dense"]
            )
        return clone(encoder)

    def _log_message(self, name, i, total):
        return f"({i} of {total}) Processing {name}" if self.verbose else None

    # -- metadata routing ------------------------------------------------------------------
    def _route(self, params, caller):
        """The metadata of each encoder, the splitter and the projection."""
        if _routing_enabled():
            return process_routing(self, caller, **params)
        # Without metadata routing, only groups is accepted: it goes to the splitter.
        routed = Bunch(
            splitter=Bunch(split={"groups": params.get("groups")}),
            projection_estimator=Bunch(fit={}),
        )
        for name in [name for name, _, _ in self.encoders] + ["remainder"]:
            routed[name] = Bunch(fit_transform={}, fit={}, transform={})
        return routed

    def get_metadata_routing(self):
        """Get the metadata routing of this object.

        Each encoder's ``fit_transform`` (or ``fit`` and ``transform``) and
        ``transform``, the splitter of the class projection's cross-fitting and
        ``projection_estimator``'s ``fit`` are routed from :meth:`fit`,
        :meth:`fit_transform` and :meth:`transform`, as in ``ColumnTransformer``.

        Returns
        -------
        routing : MetadataRouter
            The routing information.
        """
        router = MetadataRouter(owner=self)
        children = list(self.encoders)
        if self.remainder != "drop":
            children.append(("remainder", self.remainder, None))
        for name, step, _ in children:
            if isinstance(step, str):
                # "passthrough" is an identity FunctionTransformer: it requests nothing.
                step = self._fittable(step)
            mapping = MethodMapping()
            if hasattr(step, "fit_transform"):
                for caller in ("fit", "fit_transform"):
                    mapping.add(caller=caller, callee="fit_transform")
            else:
                for caller in ("fit", "fit_transform"):
                    mapping.add(caller=caller, callee="fit")
                    mapping.add(caller=caller, callee="transform")
            mapping.add(caller="transform", callee="transform")
            router.add(method_mapping=mapping, **{name: step})
        router.add(
            splitter=check_cv(self.cv),
            method_mapping=MethodMapping()
            .add(caller="fit", callee="split")
            .add(caller="fit_transform", callee="split"),
        )
        if self._class_projection():
            router.add(
                projection_estimator=self.projection_estimator
                or default_projection_estimator(),
                method_mapping=MethodMapping()
                .add(caller="fit", callee="fit")
                .add(caller="fit_transform", callee="fit"),
            )
        return router

    # -- feature names -----------------------------------------------------------------------
    def get_feature_names_out(self, input_features=None):
        """Names of the fused features.

        ``img__imageencoder0``, ... for ``"concat"`` (see
        ``verbose_feature_names_out``); ``fused0``, ... for the element-wise
        fusions; products such as ``img__pca0*snd__pca1`` (and ``1`` for the
        constant) for ``"tensor"``; then ``missingindicator_<name>`` columns with
        ``missing="indicator"``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input column names; None uses ``feature_names_in_`` (or ``x0``, ...).

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        input_features = _check_feature_names_in(self, input_features)
        names = self._fused_names_
        if self.fusion in ELEMENTWISE:
            width = self.output_indices_[names[0]].stop
            out = [f"fused{i}" for i in range(width)]
        else:
            blocks = self._block_feature_names(input_features)
            if self.fusion == "concat":
                out = [f for block in blocks for f in block]
            else:
                out = [""]
                for block in blocks:
                    out = [
                        f"{a}*{b}" if a and b else a or b
                        for a in out
                        for b in ["", *block]
                    ]
                out[0] = "1"
        if self.missing == "indicator":
            out += [f"missingindicator_{name}" for name in names]
        return np.asarray(out, dtype=object)

    def _block_feature_names(self, input_features):
        """Each fused block's feature names, prefixed as verbose_feature_names_out says."""
        blocks = []
        for name in self._fused_names_:
            m = self.modalities_[name]
            k = self._projection_for(name)
            if self._class_projection() or self._paired_projection():
                names = self.block_transformers_[name][
                    "project"
                ].get_feature_names_out()
            elif k is not None:
                names = [f"pca{i}" for i in range(k)]
            elif hasattr(m.estimator, "get_feature_names_out"):
                names = m.estimator.get_feature_names_out(input_features[m.indices])
            elif name in self._frame_columns_:
                names = self._frame_columns_[name]
            else:
                # ColumnTransformer's wording, for the same situation.
                raise AttributeError(
                    f"Transformer {name} (type {type(m.estimator).__name__}) does not "
                    "provide get_feature_names_out."
                )
            blocks.append((name, list(names)))
        if self.verbose_feature_names_out is False:
            seen = [f for _, names in blocks for f in names]
            duplicates = sorted({f for f in seen if seen.count(f) > 1})
            if duplicates:
                shown = str(duplicates[:5])
                if len(duplicates) > 5:
                    shown = shown[:-1] + ", ...]"
                raise ValueError(
                    f"Output feature names: {shown} are not unique. Please "
                    "set verbose_feature_names_out=True to add prefixes to feature "
                    "names"
                )
            return [names for _, names in blocks]
        prefix = self.verbose_feature_names_out
        if prefix is True:
            prefix = "{transformer_name}__{feature_name}"
        if isinstance(prefix, str):
            fmt = prefix

            def prefix(transformer_name, feature_name):
                return fmt.format(
                    transformer_name=transformer_name, feature_name=feature_name
                )

        return [[prefix(name, f) for f in names] for name, names in blocks]

    # -- display and tags ----------------------------------------------------------------------
    def _sk_visual_block_(self):
        """The HTML diagram: each modality's encoder side by side (as
        ColumnTransformer draws them), then the fusion."""
        if hasattr(self, "modalities_"):
            triples = [t for t in self.encoders_ if t[0] != "remainder"]
            layout = self.modalities_
            if self.remainder != "drop" and "remainder" in layout:
                rest = layout["remainder"]
                columns = rest.columns
                if rest.feature_names is not None:
                    columns = rest.feature_names
                triples.append(("remainder", rest.estimator, columns))
        else:
            triples = list(self.encoders)
            if self.remainder != "drop":
                triples.append(("remainder", self.remainder, []))
        names, encoders, columns = zip(*triples) if triples else ((), (), ())
        encoders_block = _VisualBlock(
            "parallel", encoders, names=names, name_details=columns
        )
        fusion = f"fusion={self.fusion!r}"
        if self.projection is not None:
            fusion += f", projection={self.projection!r}"
        fusion_block = _VisualBlock(
            "single", self, names=fusion, name_details=f"missing={self.missing!r}"
        )
        return _VisualBlock(
            "serial", [encoders_block, fusion_block], dash_wrapped=False
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            children = [
                get_tags(e) for _, e, _ in self.encoders if not isinstance(e, str)
            ]
            tags.input_tags.sparse = all(t.input_tags.sparse for t in children)
            # missing="error" refuses a modality whose every cell is NaN (a NaN in
            # some of its cells reaches its encoder, as in ColumnTransformer).
            tags.input_tags.allow_nan = self.missing != "error" and all(
                t.input_tags.allow_nan for t in children
            )
            tags.input_tags.string = any(t.input_tags.string for t in children)
            preserved = ["float64", "float32"]
            for t in children:
                if t.transformer_tags is not None:
                    kept = t.transformer_tags.preserves_dtype
                    preserved = [d for d in preserved if d in kept]
            tags.transformer_tags.preserves_dtype = preserved
        except (TypeError, ValueError, AttributeError):
            # Malformed encoders are reported by fit's validation.
            pass
        return tags


@contextmanager
def _one_d_message():
    """ColumnTransformer's advice when a scalar selection meets a 2-D transformer."""
    try:
        yield
    except ValueError as exc:
        if "Expected 2D array, got 1D array instead" in str(exc):
            raise ValueError(_ONE_D_MESSAGE) from exc
        raise


def _has_columns(out):
    return hasattr(out, "columns") and hasattr(out, "shape")


def _row_params(X, params, rows):
    """Metadata restricted to ``rows`` (a Bunch of method -> params, or params)."""
    if isinstance(params, Bunch) and all(isinstance(v, dict) for v in params.values()):
        return Bunch(
            **{
                method: _check_method_params(X, values, rows)
                for method, values in params.items()
            }
        )
    return _check_method_params(X, params, rows)


def _fit_transform_one(encoder, X, y, params, owner, message):
    with _print_elapsed_time(owner, message):
        if hasattr(encoder, "fit_transform"):
            out = encoder.fit_transform(X, y, **params.get("fit_transform", {}))
        else:
            encoder.fit(X, y, **params.get("fit", {}))
            out = encoder.transform(X, **params.get("transform", {}))
    return out, encoder


def _transform_one(encoder, X, absent, params):
    """The encoder's output on the rows where the modality is present; None when no
    row is."""
    if absent.all():
        return None
    return encoder.transform(present_part(X, absent), **params)


def make_fuser(*encoders, **kwargs):
    """Build a :class:`MultimodalFuser` from ``(encoder, columns)`` pairs.

    The names are made from the encoders' class names, lowercased, as
    :func:`~sklearn.compose.make_column_transformer` does.

    Parameters
    ----------
    *encoders : tuples of (encoder, columns)
        Each encoder (or ``"passthrough"``/``"drop"``) with its columns.
    **kwargs : dict
        The other parameters of :class:`MultimodalFuser` (``fusion``, ``missing``,
        ...).

    Returns
    -------
    fuser : MultimodalFuser

    Examples
    --------
    >>> from sklearn.preprocessing import StandardScaler, MinMaxScaler
    >>> from skmm.fusion import make_fuser
    >>> fuser = make_fuser((StandardScaler(), [0, 1]), (MinMaxScaler(), [2]))
    >>> [name for name, _, _ in fuser.encoders]
    ['standardscaler', 'minmaxscaler']
    """
    if not encoders:
        raise ValueError("make_fuser needs at least one (encoder, columns) pair.")
    try:
        estimators, columns = zip(*encoders)
    except (TypeError, ValueError):
        raise ValueError(
            f"make_fuser takes (encoder, columns) pairs; got {encoders!r}."
        ) from None
    names = [name for name, _ in _name_estimators(estimators)]
    return MultimodalFuser(list(zip(names, estimators, columns)), **kwargs)
