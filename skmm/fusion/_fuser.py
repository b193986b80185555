"""MultimodalFuser: encode each modality's column, then fuse the features (early fusion)."""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from sklearn.base import TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import Bunch, check_array, get_tags
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted

from ..utils._composition import (
    TriplesComposition,
    check_table,
    fit_atomic,
    is_drop,
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
    _name_estimators,
    _print_elapsed_time,
    _raise_for_params,
    _routing_enabled,
    _safe_indexing,
    _VisualBlock,
)
from ._missing import (
    all_missing_message,
    column_indices,
    describe_columns,
    missing_message,
    missing_rows,
    row_labels,
    shown_rows,
)
from ._ops import ELEMENTWISE, FUSION_OPERATORS, fuse, tensor_width
from ._projection import (
    CLASS_PROJECTIONS,
    PAIRED_PROJECTIONS,
    ClassProjection,
    PairedProjection,
    default_paired_estimator,
    default_projection_estimator,
)

__all__ = ["MultimodalFuser", "make_fuser"]

# As ColumnTransformer's default sparse_threshold: the output is sparse when some
# block is sparse and the fused matrix is less than 30% non-zero.
_SPARSE_THRESHOLD = 0.3


class MultimodalFuser(DaskMixin, TransformerMixin, TriplesComposition):
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
        ``ColumnTransformer``.
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

        On hard AV-digits (held-out speakers, the demo's CNN and MFCC features),
        mean, product and max fusion reach 0.78, 0.86 and 0.75 with ``"proba"``
        against 0.66, 0.37 and 0.59 with 32 PCA components (the image alone:
        0.66); unsupervised, mean fusion reaches 0.50 after CCA and 0.74 after PLS
        (8 components).
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
        ``"standard"``, the default, is what works best for ``SVC`` and
        ``LogisticRegression`` heads on AV-digits (784 pixels and 40 MFCC
        statistics): equal variance per feature lets the wide but noisy image block
        weigh more than the audio, and beats ``"block"`` there by about 20 points. Try
        ``"block"`` when a wide block would otherwise drown a small informative
        one. Standardising TF-IDF features amplifies rare words: leave such a block
        as it is, e.g. ``normalize={"img": "block", "txt": None}``.
    missing : {"error", "zero", "mean", "indicator"}, default="error"
        What a missing modality becomes in a row. A modality is missing where every
        cell it selects is None, NaN or pd.NA: its encoder never sees those cells
        (a ``TfidfVectorizer`` or a ``FunctionTransformer`` gets no None), and its
        block is filled there. ``"error"`` raises a ValueError naming the modality,
        its columns and the rows; ``"zero"`` fills the block with zeros, ``"mean"``
        with its training mean; ``"indicator"`` fills it with the mean and appends
        one 0/1 column per modality, 1 where the modality is missing. A NaN in some
        of a block's features (a ``"passthrough"`` block with one NaN cell) is
        filled the same way. A modality missing in every training row is an error,
        and so is a present item that its encoder turns into an all-NaN row (a
        broken item is never taken for a missing one). The same names mean the
        same in :class:`LateFusionClassifier`, whose ``"skip"`` gives a missing
        modality no vote.
    remainder : {"drop", "passthrough"} or transformer, default="drop"
        The columns no encoder selects, as in ``ColumnTransformer``: dropped,
        passed through as they are, or encoded by the given transformer, and then
        fused as one more modality named ``"remainder"`` (plain numeric columns
        beside the modalities, say).
    n_jobs : int or None, default=None
        Encoders fitted and run in parallel with joblib. ``None`` is 1 unless in a
        :func:`joblib.parallel_config` context; -1 uses all processors. Keep it
        None with torch encoders, which use several threads each.
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
    encoders_ : list of (str, transformer or "drop", columns) tuples
        The fitted encoders (``"passthrough"`` becomes a fitted
        ``FunctionTransformer``), with their columns resolved.
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
        Whether the output is a sparse matrix (see Notes).
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
    through ``fusion="concat"`` without projection, and the output is then a sparse
    CSR matrix if less than 30% of it is non-zero (``ColumnTransformer``'s default
    rule), dense otherwise; the other fusions and projection densify the block.

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
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.verbose_feature_names_out = verbose_feature_names_out
        self.random_state = random_state

    # -- composition: nested parameters, as ColumnTransformer ----------------------------
    _triples_param = "encoders"

    @property
    def named_encoders_(self):
        """The fitted encoders by name, as a :class:`~sklearn.utils.Bunch`."""
        return Bunch(**{name: encoder for name, encoder, _ in self.encoders_})

    def __getitem__(self, name):
        try:
            return self.named_encoders_[name]
        except AttributeError as exc:
            raise TypeError(
                "MultimodalFuser is subscriptable after it is fitted"
            ) from exc
        except KeyError as exc:
            raise KeyError(f"{name!r} is not an encoder name") from exc

    def _iter(self, fitted):
        """Yield ``(name, encoder, columns)`` of the modalities that are fused.

        One walk over the encoders for fit, transform, feature names and output
        indices: ``"drop"`` and selections of no column are left out. ``fitted``
        walks ``encoders_``, else the given encoders with their resolved columns.
        """
        if fitted:
            triples = self.encoders_
        else:
            triples = [
                (name, encoder, columns)
                for (name, encoder, _), columns in zip(self.encoders, self._columns_)
            ]
            if self._remainder_[2]:
                triples.append(self._remainder_)
        for name, encoder, columns in triples:
            if is_drop(encoder) or len(self._input_indices_[name]) == 0:
                continue
            yield name, encoder, columns

    # -- checks at fit -----------------------------------------------------------------------
    def _validate_encoders(self):
        try:
            names, encoders, _ = zip(*self.encoders)
        except (TypeError, ValueError):
            raise ValueError(
                "encoders must be a non-empty list of (name, encoder, columns) "
                f"triples; got {self.encoders!r}."
            ) from None
        self._validate_names(names)
        self._check_estimators_are_instances(encoders)
        for name, encoder in zip(names, encoders):
            if isinstance(encoder, str):
                if encoder not in ("drop", "passthrough"):
                    raise ValueError(
                        f"encoder {name!r}: the only strings allowed as encoders are "
                        f"'drop' and 'passthrough'; got {encoder!r}."
                    )
            elif not (
                hasattr(encoder, "fit") or hasattr(encoder, "fit_transform")
            ) or not hasattr(encoder, "transform"):
                raise TypeError(
                    f"encoder {name!r}: encoders implement fit and transform, or are "
                    f"'drop' or 'passthrough'; {encoder!r} (type {type(encoder)}) "
                    "does not."
                )
        return list(names)

    def _check_names(self, param, mapping, names):
        unknown = sorted(set(mapping) - set(names), key=str)
        if unknown:
            raise ValueError(
                f"{param} has names {unknown} that are not encoder names; the encoders "
                f"are {names}."
            )

    def _validate_fusion_params(self, names):
        """Check weights and projection against the encoders, before any encoding."""
        if self.weights is not None:
            self._check_names("weights", self.weights, names)
            for name, weight in self.weights.items():
                if (
                    not isinstance(weight, Real)
                    or isinstance(weight, bool)
                    or not np.isfinite(weight)
                    or weight < 0
                ):
                    raise ValueError(
                        f"weights[{name!r}] must be a finite number >= 0; got {weight!r}."
                    )
            if self.fusion in ("product", "max"):
                raise ValueError(
                    f"fusion={self.fusion!r} takes no weights; got weights="
                    f"{self.weights!r}. Use 'sum', 'mean', 'weighted', 'concat' or "
                    "'tensor' to weigh the modalities."
                )
        elif self.fusion == "weighted":
            raise ValueError(
                "fusion='weighted' needs weights, a dict of modality name to weight; "
                "without them use fusion='sum'."
            )
        if isinstance(self.projection, dict):
            self._check_names("projection", self.projection, names)
            for name, k in self.projection.items():
                if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
                    raise ValueError(
                        f"projection[{name!r}] must be an int >= 1; got {k!r}."
                    )
        if isinstance(self.normalize, dict):
            self._check_names("normalize", self.normalize, names)
            for name, how in self.normalize.items():
                if how not in ("standard", "block", None):
                    raise ValueError(
                        f"normalize[{name!r}] must be 'standard', 'block' or None; got "
                        f"{how!r}."
                    )

    def _resolve_columns(self, X):
        """Resolve callables to column selections and record each one's positions;
        the columns no encoder selects go to ``remainder``, as in ColumnTransformer."""
        columns, indices = [], {}
        for name, _, selection in self.encoders:
            if callable(selection):
                selection = selection(X)
            columns.append(selection)
            indices[name] = column_indices(X, selection)
        self._columns_ = columns
        used = {i for positions in indices.values() for i in positions}
        rest = [i for i in range(X.shape[1]) if i not in used]
        indices["remainder"] = rest
        self._remainder_ = ("remainder", self.remainder, rest)
        self._input_indices_ = indices

    def _projection_for(self, name):
        if isinstance(self.projection, dict):
            return self.projection.get(name)
        return self.projection

    def _class_projection(self):
        """True when every block is projected to one class-indexed space."""
        return isinstance(self.projection, str) and self.projection in CLASS_PROJECTIONS

    def _paired_projection(self):
        """True when two blocks are aligned with each other by CCA or PLS."""
        return (
            isinstance(self.projection, str) and self.projection in PAIRED_PROJECTIONS
        )

    def _normalize_for(self, name):
        if isinstance(self.normalize, dict):
            return self.normalize.get(name, "standard")
        return self.normalize

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
        X_out : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            The fused features.
        """
        _raise_for_params(params, self, "fit_transform", allow=["groups"])
        # The fuser holds no torch state, but its fit must be as failure-safe as the
        # encoders': the same helper runs it on a copy and adopts it on success.
        return fit_atomic(self, type(self)._fit_transform, X, y, params)

    def _route(self, params):
        """The metadata of each encoder's fit, the splitter and the projection."""
        if _routing_enabled():
            return process_routing(self, "fit_transform", **params)
        # Without metadata routing, only groups is accepted: it goes to the splitter.
        routed = Bunch(
            splitter=Bunch(split={"groups": params.get("groups")}),
            projection_estimator=Bunch(fit={}),
        )
        for name, _, _ in self.encoders:
            routed[name] = Bunch(fit_transform={})
        routed["remainder"] = Bunch(fit_transform={})
        return routed

    def _fit_transform(self, X, y, params):
        X = check_table(self, X, reset=True, accept_sparse=True)
        names = self._validate_encoders()
        if self.remainder != "drop":
            names.append("remainder")
        self._validate_fusion_params(names)
        self._resolve_columns(X)
        todo = list(self._iter(fitted=False))
        if not todo:
            raise ValueError(
                "MultimodalFuser has nothing to fuse: every encoder is 'drop' or "
                "selects no column."
            )
        routed = self._route(params)
        labels = row_labels(X)
        selections = {
            name: _safe_indexing(X, columns, axis=1) for name, _, columns in todo
        }
        absent = self._absent(todo, selections, labels, fit=True)
        y_array = None if y is None else np.asarray(y)
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_transform_one)(
                _fittable(encoder),
                _safe_indexing(selections[name], np.flatnonzero(~absent[name])),
                None if y is None else y_array[~absent[name]],
                _check_method_params(
                    X, routed[name].fit_transform, np.flatnonzero(~absent[name])
                ),
                self._log_message(name, i, len(todo)),
            )
            for i, (name, encoder, columns) in enumerate(todo, start=1)
        )
        fitted = dict(zip([name for name, _, _ in todo], (e for _, e in results)))
        self.encoders_ = [
            (name, fitted.get(name, encoder), columns)
            for (name, encoder, _), columns in zip(self.encoders, self._columns_)
        ]
        if self._remainder_[2]:
            name, encoder, columns = self._remainder_
            self.encoders_.append((name, fitted.get(name, encoder), columns))
        outputs = [out for out, _ in results]
        self._encoded_widths_ = {}
        blocks = self._blocks(todo, outputs, absent, labels)
        if not blocks:
            raise ValueError(
                "MultimodalFuser has nothing to fuse: every encoder outputs 0 columns."
            )
        return self._fuse(blocks, labels, fit=True, y=y_array, routed=routed)

    def _blocks(self, todo, outputs, absent, labels):
        """The encoders' outputs as blocks over all the rows (NaN where absent).

        A block of no column is left out of the fusion, as ColumnTransformer leaves
        out a transformer that outputs none. An all-NaN output for a present item
        is an error: a present but broken item is never taken for a missing one.
        """
        blocks = {}
        for (name, _, columns), out in zip(todo, outputs):
            present = int((~absent[name]).sum())
            if out is None:
                out = np.empty((0, self._encoded_widths_[name]))
            out = _check_block(name, out, present)
            self._encoded_widths_.setdefault(name, out.shape[1])
            if out.shape[1] == 0:
                continue
            broken = _all_nan_rows(out)
            if broken.any():
                rows = np.zeros(len(absent[name]), dtype=bool)
                rows[np.flatnonzero(~absent[name])[broken]] = True
                raise ValueError(
                    f"MultimodalFuser: encoder {name!r} ({describe_columns(columns)}) "
                    f"returned NaN features for the present item(s) in "
                    f"{int(rows.sum())} row(s): {shown_rows(rows, labels)}; a "
                    "present but broken item is not treated as missing."
                )
            blocks[name] = _scatter(out, absent[name])
        return blocks

    def _absent(self, todo, selections, labels, *, fit):
        """Each modality's rows whose cells are all missing (None, NaN, pd.NA)."""
        absent = {}
        for name, _, columns in todo:
            rows = missing_rows(selections[name])
            if fit and rows.all():
                raise ValueError(
                    all_missing_message("MultimodalFuser", name, columns, len(rows))
                )
            if self.missing == "error" and rows.any():
                raise ValueError(
                    missing_message(
                        "MultimodalFuser",
                        name,
                        columns,
                        rows,
                        labels,
                        "Set missing='zero', 'mean' or 'indicator' to fill missing "
                        "modalities.",
                    )
                )
            absent[name] = rows
        return absent

    def transform(self, X):
        """Encode each modality with its fitted encoder and fuse the features.

        Each encoder runs on the rows where its modality is present; the others
        are filled as ``missing`` says.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            The same columns as in :meth:`fit`.

        Returns
        -------
        X_out : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            The fused features.
        """
        check_is_fitted(self)
        X = check_table(self, X, reset=False, accept_sparse=True)
        todo = list(self._iter(fitted=True))
        selections = {
            name: _safe_indexing(X, self._positions(name, columns), axis=1)
            for name, _, columns in todo
        }
        absent = self._absent(todo, selections, row_labels(X), fit=False)
        jobs = (
            (encoder, selections[name], np.flatnonzero(~absent[name]))
            for name, encoder, _ in todo
        )
        if effective_n_jobs(self.n_jobs) == 1:
            # In this process: no joblib dispatch per call (one-row latency).
            outputs = [_transform_one(*job) for job in jobs]
        else:
            outputs = Parallel(n_jobs=self.n_jobs)(
                delayed(_transform_one)(*job) for job in jobs
            )
        blocks = self._blocks(todo, outputs, absent, row_labels(X))
        return self._fuse(blocks, row_labels(X), fit=False)

    def _positions(self, name, columns):
        """Positions of a modality's columns: a scalar stays a scalar (a 1-D Series)."""
        indices = self._input_indices_[name]
        return indices[0] if np.isscalar(columns) else indices

    def _log_message(self, name, i, total):
        return f"({i} of {total}) Processing {name}" if self.verbose else None

    # -- from encoded blocks to the fused matrix -------------------------------------------
    def _fuse(self, blocks, labels, *, fit, y=None, routed=None):
        """Fill missing rows, normalise, project, weigh and fuse the blocks."""
        missing = {name: _missing_rows(block) for name, block in blocks.items()}
        for name, rows in missing.items():
            if fit and rows.all():
                raise ValueError(
                    f"MultimodalFuser: the output of encoder {name!r} is NaN in all "
                    f"{len(rows)} training rows; there is nothing to fit on."
                )
            if self.missing == "error" and rows.any():
                raise ValueError(
                    f"MultimodalFuser: the output of encoder {name!r} is NaN in "
                    f"{int(rows.sum())} row(s): {shown_rows(rows, labels)}. Set "
                    "missing='zero', 'mean' or 'indicator' to fill missing "
                    "modalities."
                )
        if fit:
            fused = self._fit_blocks(blocks, y, routed)
            self.sparse_output_ = _density(fused) < _SPARSE_THRESHOLD
        else:
            fused = [
                self.block_transformers_[name].transform(self._densify(name, block))
                * self.block_scales_[name]
                for name, block in blocks.items()
            ]
        if self.sparse_output_:
            fused = [sp.csr_matrix(block) for block in fused]
        else:
            fused = [b.toarray() if sp.issparse(b) else b for b in fused]
        weights = None
        if self.weights is not None:
            weights = [self.weights.get(name, 1.0) for name in blocks]
        out = fuse(fused, self.fusion, weights)
        if self.projection == "proba" and self.fusion in ("product", "max"):
            # Probabilities multiplied (or maxed) across modalities, renormalised to
            # sum to one per row: the product and max rules of decision-level fusion.
            total = out.sum(axis=1, keepdims=True)
            out = np.divide(
                out, total, out=np.full_like(out, 1.0 / out.shape[1]), where=total > 0
            )
        if self.missing == "indicator":
            indicator = np.column_stack(list(missing.values())).astype(out.dtype)
            out = (
                sp.hstack([out, indicator], format="csr")
                if sp.issparse(out)
                else np.hstack([out, indicator])
            )
        return out

    def _densify(self, name, block):
        """A sparse block stays sparse only through concatenation without PCA."""
        if sp.issparse(block) and (
            self.fusion != "concat" or self._projection_for(name) is not None
        ):
            return block.toarray()
        return block

    def _fit_blocks(self, blocks, y, routed):
        """Fit each block's imputation, scaling and projection; return the blocks
        ready to fuse, and set the output indices."""
        if self._paired_projection():
            return self._fit_paired_blocks(blocks)
        n_samples = next(iter(blocks.values())).shape[0]
        if self._class_projection():
            if y is None:
                raise ValueError(
                    f"projection={self.projection!r} fits a classifier per modality, "
                    "so fit needs class labels y; without y use projection=<int> "
                    "(PCA)."
                )
            n_classes = len(np.unique(y))
            width = 1 if self.projection == "decision" and n_classes == 2 else n_classes
        widths = {}
        for name, block in blocks.items():
            k = self._projection_for(name)
            if self._class_projection():
                widths[name] = width
                continue
            if k is not None:
                allowed = min(n_samples, block.shape[1])
                if n_samples < 2:
                    raise ValueError(
                        f"projection needs at least 2 samples to fit PCA; got "
                        f"{n_samples} sample."
                    )
                if k > allowed:
                    raise ValueError(
                        f"projection={k} is larger than modality {name!r} allows: its "
                        f"block has {block.shape[1]} feature(s) and {n_samples} "
                        f"training rows, so PCA keeps at most {allowed} components."
                    )
            widths[name] = block.shape[1] if k is None else k
        if self.fusion in ELEMENTWISE and len(set(widths.values())) > 1:
            raise ValueError(
                f"fusion={self.fusion!r} needs blocks of one width, but they have "
                f"widths {widths}; set projection='proba' to map every block to "
                "class probabilities, or projection=k for k PCA components."
            )
        self._warn_unaligned(len(blocks))
        self.block_transformers_, self.block_scales_ = {}, {}
        fused = []
        for name, block in blocks.items():
            block = self._densify(name, block)
            pipe = Pipeline(
                [
                    ("impute", self._imputer()),
                    ("scale", self._scaler(name, sp.issparse(block))),
                    ("project", self._projector(name)),
                ]
            )
            if self._class_projection():
                # Cross-fitted: the training rows are scored by models that did not
                # see them, as new rows will be.
                z = pipe[:-1].fit_transform(block)
                params = routed.get("projection_estimator", Bunch(fit={})).fit
                z = pipe[-1].fit_transform(z, y, **routed.splitter.split, **params)
            else:
                z = pipe.fit_transform(block)
            scale = 1.0
            if self._normalize_for(name) == "block" and not self._class_projection():
                variance = float(
                    mean_variance_axis(sp.csr_matrix(z), axis=0)[1].sum()
                    if sp.issparse(z)
                    else z.var(axis=0).sum()
                )
                scale = 1.0 / np.sqrt(variance) if variance > 0 else 1.0
            self.block_transformers_[name] = pipe
            self.block_scales_[name] = scale
            fused.append(z * scale)
        self._fused_names_ = list(blocks)
        self._set_output_indices(widths)
        return fused

    def _fit_paired_blocks(self, blocks):
        """Impute and scale each of two blocks, then align them with one CCA/PLS."""
        if len(blocks) != 2:
            raise ValueError(
                f"projection={self.projection!r} aligns two modalities with each "
                f"other; got {len(blocks)} ({list(blocks)}). Use projection='proba' "
                "to align any number of modalities."
            )
        self.block_transformers_, self.block_scales_ = {}, {}
        steps, fitted = {}, []
        for name, block in blocks.items():
            steps[name] = Pipeline(
                [
                    ("impute", self._imputer()),
                    ("scale", self._scaler(name, False)),
                ]
            )
            fitted.append(steps[name].fit_transform(self._densify(name, block)))
        if self.projection_estimator is None:
            widths = [z.shape[1] for z in fitted]
            estimator = default_paired_estimator(
                self.projection, widths, len(fitted[0])
            )
        else:
            estimator = clone(self.projection_estimator)
        estimator.fit(fitted[0], fitted[1])
        out = []
        for (name, pipe), side, z in zip(steps.items(), ("x", "y"), fitted):
            project = PairedProjection(estimator, side, self.projection).fit(z)
            pipe.steps.append(("project", project))
            self.block_transformers_[name] = pipe
            self.block_scales_[name] = 1.0
            out.append(project.transform(z))
        width = out[0].shape[1]
        self._fused_names_ = list(blocks)
        self._set_output_indices(dict.fromkeys(blocks, width))
        return out

    def _warn_unaligned(self, n_blocks):
        """Element-wise fusion of unaligned blocks adds apples to oranges: say so."""
        if self.fusion not in ELEMENTWISE or n_blocks < 2:
            return
        if not (self._class_projection() or self._paired_projection()):
            warnings.warn(
                f"fusion={self.fusion!r} combines coordinate k of every block, but "
                f"projection={self.projection!r} does not map the blocks to one space "
                "(coordinate k of one PCA has nothing to do with coordinate k of "
                "another). Set projection='proba' (class probabilities, cross-fitted) "
                "unless the encoders already share one space (as CLIP's image and "
                "text towers do), or use fusion='concat'.",
                UserWarning,
                stacklevel=4,
            )
        elif self.projection == "decision" and self.fusion == "product":
            warnings.warn(
                "fusion='product' of standardised decision values multiplies signed "
                "scores (two negative scores give a positive one); "
                "projection='proba' makes it the product of probabilities.",
                UserWarning,
                stacklevel=4,
            )

    def _imputer(self):
        if self.missing == "error":
            return "passthrough"
        if self.missing == "zero":
            return SimpleImputer(
                strategy="constant", fill_value=0.0, keep_empty_features=True
            )
        return SimpleImputer(strategy="mean", keep_empty_features=True)

    def _scaler(self, name, sparse):
        if self._normalize_for(name) is None:
            return "passthrough"
        # Centring a sparse block would densify it; scaling alone keeps it sparse.
        return StandardScaler(with_mean=not sparse)

    def _projector(self, name):
        if self._class_projection():
            return ClassProjection(
                self.projection, estimator=self.projection_estimator, cv=self.cv
            )
        k = self._projection_for(name)
        if k is None:
            return "passthrough"
        # svd_solver="auto" goes randomized on large blocks: random_state seeds it.
        return PCA(n_components=k, random_state=self.random_state)

    def _set_output_indices(self, widths):
        names = list(widths)
        if self.fusion == "concat":
            starts = np.cumsum([0] + [widths[n] for n in names])
            indices = {
                n: slice(int(a), int(b)) for n, a, b in zip(names, starts, starts[1:])
            }
        else:
            width = (
                tensor_width(list(widths.values()))
                if self.fusion == "tensor"
                else widths[names[0]]
            )
            indices = dict.fromkeys(names, slice(0, width))
        self.output_indices_ = {
            name: indices.get(name, slice(0, 0))
            for name in [name for name, _, _ in self.encoders] + ["remainder"]
        }

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
        for name, encoder, _ in self._iter(fitted=True):
            if name not in self._fused_names_:
                continue  # an encoder that outputs no column
            k = self._projection_for(name)
            if self._class_projection() or self._paired_projection():
                names = self.block_transformers_[name][
                    "project"
                ].get_feature_names_out()
            elif k is not None:
                names = [f"pca{i}" for i in range(k)]
            elif hasattr(encoder, "get_feature_names_out"):
                names = encoder.get_feature_names_out(
                    input_features[self._input_indices_[name]]
                )
            else:
                # ColumnTransformer's wording, for the same situation.
                raise AttributeError(
                    f"Transformer {name} (type {type(encoder).__name__}) does not "
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

    # -- routing and display -----------------------------------------------------------------
    def get_metadata_routing(self):
        """Get the metadata routing of this object.

        Each encoder's ``fit_transform`` (or ``fit``) and ``transform``, the
        splitter of the class projection's cross-fitting and
        ``projection_estimator``'s ``fit`` are routed from :meth:`fit` and
        :meth:`fit_transform`, as in ``ColumnTransformer``.

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
                step = _fittable(step)
            mapping = MethodMapping()
            for caller in ("fit", "fit_transform"):
                if hasattr(step, "fit_transform"):
                    mapping.add(caller=caller, callee="fit_transform")
                else:
                    mapping.add(caller=caller, callee="fit")
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

    def _sk_visual_block_(self):
        """The HTML diagram: each modality's encoder side by side, then the fusion."""
        triples = getattr(self, "encoders_", self.encoders)
        if not hasattr(self, "encoders_") and self.remainder != "drop":
            triples = [*triples, ("remainder", self.remainder, "")]
        names, encoders, columns = zip(*triples) if triples else ((), (), ())
        encoders_block = _VisualBlock(
            "parallel",
            list(encoders),
            names=list(names),
            name_details=[str(c) for c in columns],
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


def _fittable(encoder):
    """A fresh clone of an encoder; "passthrough" becomes an identity transformer."""
    if isinstance(encoder, str):
        return FunctionTransformer(
            accept_sparse=True, check_inverse=False, feature_names_out="one-to-one"
        )
    return clone(encoder)


def _fit_transform_one(encoder, X, y, params, message):
    with _print_elapsed_time("MultimodalFuser", message):
        if hasattr(encoder, "fit_transform"):
            out = encoder.fit_transform(X, y, **params)
        else:
            out = encoder.fit(X, y, **params).transform(X)
    return out, encoder


def _transform_one(encoder, X, rows):
    """The encoder's output on ``rows`` of its columns; None when no row is present."""
    if len(rows) == 0:
        return None
    if len(rows) < X.shape[0]:
        X = _safe_indexing(X, rows)  # a copy, only when some rows are missing
    return encoder.transform(X)


def _scatter(block, absent):
    """Put a block computed on the present rows back among NaN rows for the absent
    ones (which the ``missing`` policy then fills)."""
    if not absent.any():
        return block
    n_samples, width = len(absent), block.shape[1]
    nan_rows = np.full((int(absent.sum()), width), np.nan)
    order = np.argsort(
        np.concatenate([np.flatnonzero(~absent), np.flatnonzero(absent)]), kind="stable"
    )
    if sp.issparse(block):
        return sp.vstack([block, sp.csr_matrix(nan_rows)], format="csr")[order]
    out = np.vstack([block, nan_rows.astype(block.dtype)])[order]
    return out.reshape(n_samples, width)


def _check_block(name, out, n_samples):
    """An encoder's output as a 2-D float array or CSR matrix with ``n_samples`` rows."""
    if hasattr(out, "to_numpy") and not sp.issparse(out):
        # A DataFrame, from an encoder set to output pandas or polars.
        out = out.to_numpy()
    try:
        out = check_array(
            out,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            # No row is present when a modality is missing in every row of a batch.
            ensure_min_samples=0,
            # An encoder may output no column (ColumnTransformer allows it too).
            ensure_min_features=0,
        )
    except ValueError as exc:
        raise ValueError(
            f"the output of encoder {name!r} is not usable: {exc}"
        ) from exc
    if out.shape[0] != n_samples:
        raise ValueError(
            f"encoder {name!r} returned {out.shape[0]} rows for {n_samples} samples."
        )
    return out


def _density(blocks):
    """Fraction of stored values over the blocks; 1.0 when none is sparse."""
    if not any(sp.issparse(b) for b in blocks):
        return 1.0
    stored = sum(b.nnz if sp.issparse(b) else b.size for b in blocks)
    return stored / sum(b.shape[0] * b.shape[1] for b in blocks)


def _all_nan_rows(block):
    """True for the rows of a block that are NaN in every column."""
    if sp.issparse(block):
        dense_nan = np.zeros(block.shape, dtype=bool)
        coo = block.tocoo()
        dense_nan[coo.row, coo.col] = np.isnan(coo.data)
        return dense_nan.all(axis=1)
    return np.isnan(block).all(axis=1)


def _missing_rows(block):
    """True for the rows of a block that hold a NaN (a missing item)."""
    if sp.issparse(block):
        rows = np.zeros(block.shape[0], dtype=bool)
        row_of = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        rows[row_of[np.isnan(block.data)]] = True
        return rows
    return np.isnan(block).any(axis=1)


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
