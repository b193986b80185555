"""MultimodalVectorizer: every column's kind detected from its values, then encoded."""

import os
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted

from ..fusion import MultimodalFuser
from ..utils._composition import check_table_shape, fit_atomic
from ..utils._dask import DaskMixin, is_dask_collection
from ..utils._sklearn_compat import (
    HasMethods,
    StrOptions,
    _fit_context,
    _VisualBlock,
)
from ._defaults import VectorColumns, default_encoder, user_cache_location
from ._kinds import KINDS, detect_kind

__all__ = ["MultimodalVectorizer"]

# The kinds that have an encoder parameter, in the order of the output blocks.
_ENCODED_KINDS = (
    "image",
    "audio",
    "video",
    "text",
    "categorical",
    "numeric",
    "datetime",
)
# Kinds whose columns share one encoder (a table of them), the others get one each.
_TABLE_KINDS = ("categorical", "numeric", "datetime")
# Kinds whose default encoder is a pretrained tower that memory= caches.
_CACHED_KINDS = ("image", "video")


class MultimodalVectorizer(DaskMixin, TransformerMixin, BaseEstimator):
    """Turn a table of images, sounds, texts, categories, numbers and dates into features.

    skrub's ``TableVectorizer`` for every modality: at ``fit`` each column's kind is
    decided from its values (never its name) and recorded in ``column_kinds_``; each
    image, sound or text column gets its own encoder, the categorical, numeric and
    datetime columns one encoder per kind, and the blocks of features are fused side
    by side by a :class:`~skmm.fusion.MultimodalFuser` (``fuser_``), which brings its
    missing-modality policies, its per-block normalisation and its Dask ``transform``.

    Column kinds, tried in this order (cells that are None, NaN, pd.NA or NaT are
    ignored; the values of a sample of at most 200 present cells decide, and strings
    are checked whole):

    - ``"drop"``: every cell missing, or one distinct value and no missing cell;
    - ``"numeric"``: booleans and numbers (by dtype, or as Python objects), strings
      that all parse as numbers, and fixed-length 1-D arrays shorter than 8,000
      values (vectors: one feature per coordinate);
    - ``"datetime"``: datetimes (by dtype, or as Python objects), and strings that
      all parse as dates with one format (skrub's ``ToDatetime``);
    - ``"categorical"``: the pandas ``category`` dtype;
    - ``"image"``: PIL images, 2-D and 3-D numeric arrays, bytes starting with an
      image file's magic number, and paths or URLs ending in an image extension
      (``.png``, ``.jpg``, ``.jpeg``, ``.gif``, ``.bmp``, ``.webp``, ``.tif``,
      ``.tiff``); up to 5 local files are opened and at least half of them must start
      with an image magic number (a ``.png`` path to a text file is not an image), and
      a column none of whose sampled files exists is an error (wrong folder);
    - ``"audio"``: 1-D float (or int16) arrays whose lengths differ between rows or
      reach 8,000 samples (waveforms), audio bytes, and paths or URLs of ``.wav``,
      ``.flac``, ``.ogg`` and ``.mp3`` files, checked as images are;
    - ``"video"``: 4-D numeric arrays (frames ``(T, H, W, C)``), bytes of video
      containers (MP4/MOV, WebM/MKV, AVI, FLV, MPEG-PS, WMV), and paths or URLs of
      video files (``.mp4``, ``.mov``, ``.m4v``, ``.3gp``, ``.webm``, ``.mkv``,
      ``.avi``, ``.flv``, ``.mpg``, ``.mpeg``, ``.wmv``, ``.ogv``, ``.ts``, ``.mts``,
      ``.m2ts``), local files checked by their signature as images are (MPEG-TS
      has none: give such a column with ``specific_encoders=[("video", [...])]``);
    - ``"text"`` or ``"categorical"`` for the other strings: text when the distinct
      values average at least 3 words and number at least ``min(20, 10% of the
      rows)`` (AutoGluon's rule), categorical otherwise;
    - a cell holding several items (a list or tuple of paths, images, arrays or
      texts: a product's photos) makes its column the kind of those items; the
      encoder embeds each item and averages them (a None in a list is skipped, an
      empty list is missing).

    Anything else (a column mixing strings and numbers, dictionaries) is an error
    naming the column; ``specific_encoders`` then says what to do with it.

    Parameters
    ----------
    image, audio, video, text, categorical, numeric, datetime : transformer, \
            "auto", "passthrough" or "drop", default="auto"
        The encoder of each kind (cloned for each column of the image, audio, video
        and text kinds). ``"auto"``: the encoders' own offline pretrained defaults,
        ``ImageEncoder()`` (EfficientNet-Lite0 with its ImageNet weights, frozen;
        the weights ship with skmm's dependencies: no network needed);
        :class:`~skmm.encoders.AudioFeatures` (MFCC statistics; waveform arrays are
        taken at its 16 kHz); ``VideoEncoder()`` (the same frozen tower on 8 frames
        sampled over each clip, averaged; reading files needs ``skmm[video]``); for texts, ``TextEncoder()`` (wordllama, a static
        embedding distilled from LLaMA-2, inside its wheel) beside a
        ``TfidfVectorizer`` (the exact words; the texts of
        a cell of several are joined), in a ``FeatureUnion``; skrub's
        ``TableVectorizer`` for the categorical, numeric and datetime columns
        (cleaning, numbers in strings, date features, one-hot encoding below 40
        distinct values and ``StringEncoder`` above), and a spread of each
        fixed-length vector into columns.
    specific_encoders : list of (transformer or str, list of str) pairs, default=()
        Override the detection for the given columns: ``(encoder, columns)`` encodes
        the columns together with that encoder (their kind is then
        ``"specific"``); ``(kind, columns)``, with a kind name such as ``"text"``,
        gives them that kind and its encoder; ``("drop", columns)`` drops them. A
        column appears at most once.
    normalize : "standard", "block", None or dict, default="standard"
        How each block is scaled before concatenation (see
        :class:`~skmm.fusion.MultimodalFuser`); a dict maps kinds to one of these
        (``"standard"`` for a kind not listed). Standardising every feature, TF-IDF
        weights and one-hot columns included, is what works best on the fashion
        catalogue for every kind (``docs/your_own_table.rst``).
    missing : {"mean", "zero", "indicator", "error"}, default="mean"
        What a missing cell becomes (the fuser's ``missing``): ``"mean"`` fills its
        block with the training mean, ``"indicator"`` also appends a 0/1 column per
        block.
    memory : "auto", None, str, path or :class:`~skmm.utils.EmbeddingMemory`, \
            default="auto"
        The embedding cache of the default image and video encoders: each photo's
        (or clip's) features are stored once, keyed by the file's path, size and
        times, so a second fit on the same photos (a grid search, a re-run) does not
        run the network again.
        ``"auto"`` is a per-user folder (``$SKMM_CACHE_DIR``, else
        ``~/.cache/skmm``), shared by processes; None caches nothing. Encoders you
        pass keep their own ``memory``.
    n_jobs : int or None, default=None
        Encoders fitted and run in parallel (the fuser's ``n_jobs``).
    verbose : bool, default=False
        Print each column's kind and why, and the encoders' progress.
    random_state : int or None, default=None
        Seeds the sample of cells the detection reads (0 when None, so that the
        kinds do not change between fits).

    Attributes
    ----------
    column_kinds_ : dict of str to str
        Each input column's kind: ``"image"``, ``"audio"``, ``"video"``,
        ``"text"``, ``"categorical"``, ``"numeric"``, ``"datetime"``, ``"drop"`` or
        ``"specific"``.
    kind_to_columns_ : dict of str to list of str
        The columns of each kind.
    column_reasons_ : dict of str to str
        Why each column got its kind (``"paths of image files (5 of 5 opened)"``).
    fuser_ : :class:`~skmm.fusion.MultimodalFuser`
        The fitted fuser: one entry per image, audio or text column (named after the
        column), one per table kind (named after it) and one per specific encoder.
    output_indices_ : dict of str to slice
        The output columns of each of the fuser's entries.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Names of the columns seen during fit.

    See Also
    --------
    MultimodalClassifier : The vectorizer and a head, in one estimator.
    skmm.fusion.MultimodalFuser : The same, with the encoders given by hand.
    skrub.TableVectorizer : The tabular part, by column kind.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmm import MultimodalVectorizer
    >>> X = pd.DataFrame({
    ...     "colour": ["red", "blue", "red", "green"],
    ...     "price": ["10.5", "40", "25", None],
    ...     "sold": ["2024-01-02", "2024-02-03", "2024-03-04", "2024-04-05"],
    ...     "shop": ["A", "A", "A", "A"],
    ... })
    >>> vec = MultimodalVectorizer().fit(X)
    >>> vec.column_kinds_
    {'colour': 'categorical', 'price': 'numeric', 'sold': 'datetime', 'shop': 'drop'}
    >>> vec.transform(X).shape
    (4, 8)
    >>> vec.get_feature_names_out()[:3]
    array(['categorical__colour_blue', 'categorical__colour_green',
           'categorical__colour_red'], dtype=object)
    """

    _parameter_constraints = {
        **{
            kind: [StrOptions({"auto", "drop", "passthrough"}), HasMethods(["fit"])]
            for kind in _ENCODED_KINDS
        },
        "specific_encoders": [list, tuple],
        "normalize": [StrOptions({"standard", "block"}), None, dict],
        "missing": [StrOptions({"mean", "zero", "indicator", "error"})],
        "memory": [
            StrOptions({"auto"}),
            None,
            str,
            os.PathLike,
            HasMethods(["cache"]),
        ],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        image="auto",
        audio="auto",
        video="auto",
        text="auto",
        categorical="auto",
        numeric="auto",
        datetime="auto",
        specific_encoders=(),
        normalize="standard",
        missing="mean",
        memory="auto",
        n_jobs=None,
        verbose=False,
        random_state=None,
    ):
        self.image = image
        self.audio = audio
        self.video = video
        self.text = text
        self.categorical = categorical
        self.numeric = numeric
        self.datetime = datetime
        self.specific_encoders = specific_encoders
        self.normalize = normalize
        self.missing = missing
        self.memory = memory
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    # -- fit ---------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Detect each column's kind, then fit the encoders and the fusion.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The table (pandas, or polars and pyarrow through their ``to_pandas``).
        y : array-like of shape (n_samples,), default=None
            Passed to the encoders (frozen ones ignore it).

        Returns
        -------
        self : MultimodalVectorizer
            The fitted vectorizer.
        """
        self.fit_transform(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None):
        """Detect the kinds, fit the encoders and return the features.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The table.
        y : array-like of shape (n_samples,), default=None
            Passed to the encoders.

        Returns
        -------
        X_out : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            The features, side by side (see :meth:`transform`).
        """
        return fit_atomic(self, type(self)._fit_transform, X, y)

    def _fit_transform(self, X, y):
        if is_dask_collection(X):
            raise TypeError(
                "MultimodalVectorizer fits on a pandas DataFrame (a sample of a Dask "
                "one: X.head(n) or X.sample(frac=...).compute()); transform takes "
                "Dask DataFrames partition by partition."
            )
        X = check_table_shape(
            _as_frame(X, "MultimodalVectorizer"), "MultimodalVectorizer"
        )
        if len(X) < 2:
            raise ValueError(
                "n_samples = 1: MultimodalVectorizer needs at least 2 rows (in one row "
                "every column is constant)."
            )
        forced = self._check_specific(X)
        detected = {}
        for column in X.columns:
            if column in forced:
                kind, _ = forced[column]
                detected[column] = (kind, "forced", "specific_encoders")
            else:
                found = detect_kind(
                    X[column],
                    column,
                    random_state=0 if self.random_state is None else self.random_state,
                )
                detected[column] = (found.kind, found.form, found.reason)
            if self.verbose:
                kind, _, reason = detected[column]
                print(f"[MultimodalVectorizer] column {column!r}: {kind} ({reason})")
        self.column_kinds_ = {c: kind for c, (kind, _, _) in detected.items()}
        self.column_reasons_ = {c: reason for c, (_, _, reason) in detected.items()}
        self.kind_to_columns_ = {
            kind: [c for c, k in self.column_kinds_.items() if k == kind]
            for kind in (*KINDS, "specific")
        }
        entries = self._entries(X, detected, forced)
        if not entries:
            raise ValueError(
                "MultimodalVectorizer: no column is left to encode; the kinds found "
                f"are {self.column_kinds_}."
            )
        self._entry_kinds_ = {name: kind for name, kind, _, _ in entries}
        fuser = MultimodalFuser(
            [(name, encoder, columns) for name, _, encoder, columns in entries],
            normalize={name: self._normalize_for(kind) for name, kind, _, _ in entries},
            missing=self.missing,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            random_state=self.random_state,
        )
        out = fuser.fit_transform(X, y)
        self.fuser_ = fuser
        self.n_features_in_ = fuser.n_features_in_
        if hasattr(fuser, "feature_names_in_"):
            self.feature_names_in_ = fuser.feature_names_in_
        return _float64(out)

    def _check_specific(self, X):
        """``{column: (kind, encoder or None)}`` for the columns the user assigns."""
        forced = {}
        for i, pair in enumerate(self.specific_encoders):
            try:
                encoder, columns = pair
            except (TypeError, ValueError):
                raise ValueError(
                    "specific_encoders must be a list of (encoder, list of columns) "
                    f"pairs; got {pair!r} at index {i}."
                ) from None
            if isinstance(columns, str) or not hasattr(columns, "__iter__"):
                columns = [columns]
            if isinstance(encoder, str):
                if encoder not in (*KINDS, "passthrough"):
                    raise ValueError(
                        f"specific_encoders[{i}]: {encoder!r} is neither an encoder nor "
                        f"a kind ({', '.join(KINDS)}, or 'passthrough')."
                    )
                kind = "specific" if encoder == "passthrough" else encoder
            elif hasattr(encoder, "fit"):
                kind = "specific"
            else:
                raise TypeError(
                    f"specific_encoders[{i}]: {encoder!r} is not a transformer (no "
                    "fit method) nor a kind name."
                )
            for column in columns:
                if column not in X.columns:
                    raise ValueError(
                        f"specific_encoders[{i}] names column {column!r}, which X "
                        f"does not have; its columns are {list(X.columns)}."
                    )
                if column in forced:
                    raise ValueError(
                        f"column {column!r} appears twice in specific_encoders (at "
                        f"index {forced[column][2]} and {i})."
                    )
                forced[column] = (kind, encoder if kind == "specific" else None, i)
        return {c: (kind, enc) for c, (kind, enc, _) in forced.items()}

    def _entries(self, X, detected, forced):
        """The fuser's entries: ``(name, kind, encoder, columns)``."""
        # The table kinds' entries are named after their kind; a column's entry is
        # named after the column, unless that name is taken.
        taken = set(MultimodalFuser([]).get_params(deep=False)) | set(_TABLE_KINDS)
        entries = []

        def add(base, kind, encoder, columns):
            name = base if base in _TABLE_KINDS else _free_name(base, taken)
            taken.add(name)
            entries.append((name, kind, encoder, columns))

        for kind in _ENCODED_KINDS:
            param = getattr(self, kind)
            columns = [c for c, (k, _, _) in detected.items() if k == kind]
            if kind in _TABLE_KINDS:
                vectors = [c for c in columns if detected[c][1] == "vector"]
                table = [c for c in columns if c not in vectors]
                if table and not _is_drop(param):
                    add(kind, kind, self._encoder(kind, param), table)
                for column in vectors if not _is_drop(param) else ():
                    add(str(column), kind, self._vector_encoder(param), column)
            elif not _is_drop(param):
                for column in columns:
                    add(str(column), kind, self._encoder(kind, param), column)
        groups = {}
        for column, (kind, encoder) in forced.items():
            if kind == "specific":
                groups.setdefault(id(encoder), (encoder, []))[1].append(column)
        for i, (encoder, columns) in enumerate(groups.values()):
            base = str(columns[0]) if len(columns) == 1 else f"specific{i}"
            add(base, "specific", encoder, columns)
        return entries

    def _encoder(self, kind, param):
        if isinstance(param, str) and param == "auto":
            memory = self._memory() if kind in _CACHED_KINDS else None
            return default_encoder(kind, memory=memory, verbose=self.verbose)
        return param if isinstance(param, str) else clone(param)

    def _vector_encoder(self, param):
        if isinstance(param, str):
            return VectorColumns()
        return make_pipeline(VectorColumns(), clone(param))

    def _memory(self):
        if isinstance(self.memory, str) and self.memory == "auto":
            return user_cache_location()
        return self.memory

    def _normalize_for(self, kind):
        if isinstance(self.normalize, dict):
            unknown = sorted(set(self.normalize) - {*_ENCODED_KINDS, "specific"})
            if unknown:
                raise ValueError(
                    f"normalize has keys {unknown} that are not kinds; the kinds are "
                    f"{[*_ENCODED_KINDS, 'specific']}."
                )
            return self.normalize.get(kind, "standard")
        return self.normalize

    # -- transform ---------------------------------------------------------------------
    def transform(self, X):
        """Encode each column as at fit, and put the blocks side by side.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The columns seen in :meth:`fit`.

        Returns
        -------
        X_out : {ndarray, sparse matrix} of shape (n_samples, n_features_out)
            The features, float64: a CSR matrix when sparse blocks (TF-IDF of a
            large vocabulary) make it less than 30% non-zero, as
            ``ColumnTransformer`` decides; a Dask DataFrame in, a lazy Dask
            DataFrame out (for dense outputs).
        """
        check_is_fitted(self)
        return _float64(self.fuser_.transform(_as_frame(X, "MultimodalVectorizer")))

    @property
    def output_indices_(self):
        """The output columns of each of the fuser's entries."""
        check_is_fitted(self)
        return self.fuser_.output_indices_

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<entry>__<feature>``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; the names seen in :meth:`fit` are used.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return self.fuser_.get_feature_names_out()

    # -- display -------------------------------------------------------------------------
    def _sk_visual_block_(self):
        """The HTML diagram: the columns of each kind and their encoder, then the
        fusion."""
        if hasattr(self, "fuser_"):
            triples = self.fuser_.encoders_
            names = [self._entry_kinds_.get(name, name) for name, _, _ in triples]
            encoders = [encoder for _, encoder, _ in triples]
            details = [
                ", ".join(map(str, np.atleast_1d(columns))) for _, _, columns in triples
            ]
        else:
            names = list(_ENCODED_KINDS)
            encoders = [getattr(self, kind) for kind in _ENCODED_KINDS]
            details = ["columns detected at fit"] * len(names)
        kinds = _VisualBlock("parallel", encoders, names=names, name_details=details)
        fusion = _VisualBlock(
            "single",
            "concat",
            names="fusion='concat'",
            name_details=f"missing={self.missing!r}",
        )
        return _VisualBlock("serial", [kinds, fusion], dash_wrapped=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        tags.requires_fit = True
        return tags


def _is_drop(param):
    return isinstance(param, str) and param == "drop"


def _free_name(base, taken):
    """A fuser entry name from a column name: no ``__``, no clash."""
    name = base.replace("__", "_") or "column"
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _as_frame(X, owner):
    """The input as a pandas DataFrame: polars and pyarrow through ``to_pandas``, a
    2-D array with its positions as column names."""
    if isinstance(X, pd.DataFrame):
        return X
    if hasattr(X, "to_pandas") and hasattr(X, "columns"):
        return X.to_pandas()
    if sp.issparse(X):
        raise TypeError(
            f"{owner} takes a DataFrame or a dense 2-D array, one column per "
            "modality; got a sparse matrix."
        )
    array = np.asarray(X) if hasattr(X, "__array__") else np.asarray(X, dtype=object)
    if array.ndim != 2:
        raise ValueError(
            f"{owner} takes a DataFrame or a 2-D array, one column per modality; got "
            f"an input of shape {array.shape}. Reshape your data, or pass a "
            "DataFrame."
        )
    return pd.DataFrame(array)


def _float64(out):
    return out.astype(np.float64) if sp.issparse(out) else np.asarray(out, np.float64)
