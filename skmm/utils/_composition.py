"""``(name, estimator, columns)`` triples, as ColumnTransformer holds them, and their
layout.

The feature-level fuser, the late-fusion ensembles and the networks keep the user's
list of triples as given; :class:`TriplesComposition` exposes it to scikit-learn's
``_BaseComposition`` as ``(name, estimator)`` pairs, so that nested parameters
(``img__lr``) and replacing a child (``set_params(img="drop")``) work the same in
all of them. At fit, each of them turns the triples into one
:class:`ModalityLayout` (validated names, estimators and columns; the input columns
resolved to positions and names; the output columns of each modality; and which
rows each modality is missing in), exposed as the fitted attribute ``modalities_``.
"""

import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils import Bunch, check_array
from sklearn.utils.multiclass import type_of_target

from ._sklearn_compat import (
    _BaseComposition,
    _determine_key_type,
    _get_column_indices,
    _safe_indexing,
    validate_data,
)

# Rows named in a "modality is missing" message; the count says how many there are.
SHOWN_ROWS = 10


def is_fitted_attribute(name):
    """True for a fitted attribute's name: ``coef_``, not ``__dict__`` or ``_private``."""
    return name.endswith("_") and not name.startswith("__")


def fit_atomic(estimator, fit, *args, **kwargs):
    """Run ``fit(work, *args)`` on a fresh copy and adopt its state only on success.

    ``work`` has the estimator's parameters and private settings (such as its
    ``set_output`` configuration) but none of its fitted attributes. A failed fit (a bad
    item at row 9,000, say) leaves the estimator as it was, including the model of a
    previous successful fit. Used by every skmm estimator, torch-backed or not.
    """
    work = object.__new__(type(estimator))
    work.__dict__.update(
        {k: v for k, v in estimator.__dict__.items() if not is_fitted_attribute(k)}
    )
    result = fit(work, *args, **kwargs)
    estimator.__dict__.clear()
    estimator.__dict__.update(work.__dict__)
    return result


def check_table_shape(X, owner):
    """Check that ``X`` is 2-D with at least one row and one column; return it.

    The input of the composites: one column (or several) per modality.
    """
    if len(X.shape) != 2:
        raise ValueError(
            f"{owner} takes a 2-D input, one column (or several) per modality; got an "
            f"input of shape {X.shape}. Reshape your data, or pass a DataFrame."
        )
    for axis, what in enumerate(("sample", "feature")):
        if X.shape[axis] == 0:
            raise ValueError(
                f"Found array with 0 {what}(s) (shape={tuple(X.shape)}) while a "
                f"minimum of 1 is required by {owner}."
            )
    return X


def check_table(estimator, X, *, reset, accept_sparse=False):
    """Validate the table a composite takes: one column (or several) per modality.

    The one check of every composite (the fuser, the late-fusion ensembles, the nets
    and the matcher) and of an encoder given a one-column DataFrame: DataFrames and
    arrays are kept as they are (their cells are items, checked by the encoders),
    other input becomes an object array; the shape must be 2-D with at least one row
    and one column; ``n_features_in_`` and ``feature_names_in_`` are set (``reset``)
    or checked as scikit-learn does. A fitted composite given a DataFrame after
    fitting on one reads its columns by name (its ``modalities_`` layout says which):
    the order of the columns and extra columns do not matter, as in
    ``ColumnTransformer``.

    Parameters
    ----------
    estimator : estimator
        The composite; named in the errors and given the fitted input attributes.
    X : DataFrame, array-like or sparse matrix
        The table.
    reset : bool
        True in ``fit``: record the columns; False afterwards: check them.
    accept_sparse : bool, default=False
        Accept a sparse matrix (made CSC, for column selection).

    Returns
    -------
    X : DataFrame, ndarray or sparse matrix
    """
    owner = type(estimator).__name__
    if sp.issparse(X):
        if not accept_sparse:
            raise TypeError(
                f"{owner} takes a DataFrame or a dense array, one column (or several) "
                "per modality; got a sparse matrix."
            )
        X = X.tocsc()
    elif not (hasattr(X, "__array__") and hasattr(X, "shape")):
        X = check_array(X, ensure_all_finite=False, dtype=None, ensure_2d=False)
    if isinstance(X, np.ndarray) and np.iscomplexobj(X):
        # As scikit-learn's check_array: no modality reads complex numbers.
        raise ValueError(f"Complex data not supported\n{X}\n")
    check_table_shape(X, owner)
    layout = None if reset else getattr(estimator, "modalities_", None)
    if layout is not None and layout.by_name(X):
        layout.check_columns(X)
    else:
        validate_data(estimator, X=X, skip_check_array=True, reset=reset)
    return X


def is_drop(estimator):
    """True for the ``"drop"`` placeholder of a triple."""
    return isinstance(estimator, str) and estimator == "drop"


def is_passthrough(estimator):
    """True for the ``"passthrough"`` placeholder of a triple."""
    return isinstance(estimator, str) and estimator == "passthrough"


# -- missing cells: the one meaning of "missing" -------------------------------------------
def is_missing(item):
    """Return True if ``item`` marks a missing value (None, NaN, pd.NA, NaT).

    A cell of several items (see :func:`is_group`) is missing when none of its items
    is present: an empty list, or a list of None.
    """
    if item is None or item is pd.NA or item is pd.NaT:
        return True
    if isinstance(item, (float, np.floating)):
        return bool(np.isnan(item))
    if is_group(item):
        return all(is_missing(v) for v in item)
    return False


# What a single item can be made of: numbers (a waveform or vector as a list) and
# nested lists (an image as a nested list) make one item, not several.
_ONE_ITEM_PARTS = (numbers.Number, np.generic, list, tuple)


def is_group(cell):
    """True for a cell holding several items: a list, tuple or 1-D object array whose
    elements are items (paths, texts, bytes, images, arrays) or None.

    A list of numbers is one item (a waveform, a vector) and a list of lists one
    nested-list image; an empty list is a group of no item, hence missing.
    """
    if isinstance(cell, np.ndarray):
        if cell.dtype != object or cell.ndim != 1:
            return False
    elif not isinstance(cell, (list, tuple)):
        return False
    return not any(isinstance(v, _ONE_ITEM_PARTS) for v in cell)


def check_labels(y, owner, what="y"):
    """Return the sorted labels of ``y``, refusing missing and unorderable ones.

    The one check of class labels before scikit-learn sorts them (where a None
    among strings fails with ``'<' not supported between 'NoneType' and 'str'``):
    a missing label (None, NaN) is named by position, and labels of types that
    cannot be ordered (str and numbers) are named by type.
    """
    y = np.asarray(y)
    missing = np.flatnonzero(missing_cells(y.ravel()))
    if len(missing):
        raise ValueError(
            f"{owner}: {what} holds missing labels (None/NaN) at position(s) "
            f"{missing[:5].tolist()}{', ...' if len(missing) > 5 else ''}; "
            + ("every row needs a label." if what == "y" else "each must be a label.")
        )
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y.ravel()})
        raise ValueError(
            f"{owner}: {what} mixes labels of types {kinds}, which cannot be "
            "ordered; use one type (all str, or all numbers)."
        ) from None


def target_type(y, owner):
    """scikit-learn's ``type_of_target`` of ``y``, with its wording ("Unknown label
    type") where it has one; where it fails on labels it cannot sort (a None among
    strings: ``'<' not supported between 'NoneType' and 'str'``),
    :func:`check_labels` names the positions or the types instead."""
    try:
        return type_of_target(y, input_name="y")
    except TypeError:
        check_labels(y, owner)
        raise


def missing_cells(values):
    """True where a 1-D column holds a missing item (None, NaN, pd.NA, NaT)."""
    values = np.asarray(values)
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind == "M" or values.dtype.kind == "m":
        return np.isnat(values)
    if values.dtype == object:
        return np.fromiter(map(is_missing, values), dtype=bool, count=len(values))
    return np.zeros(len(values), dtype=bool)


def nan_mask(values):
    """Where a numeric array or sparse matrix is NaN (a stored NaN, if sparse)."""
    if sp.issparse(values):
        mask = np.zeros(values.shape, dtype=bool)
        coo = values.tocoo()
        mask[coo.row, coo.col] = np.isnan(coo.data)
        return mask
    return np.isnan(values)


def present_part(selection, absent):
    """The rows of a modality's ``selection`` where it is present (``~absent``).

    The selection itself when no row is missing: no indexed copy of the table per
    call (pandas' ``.iloc`` on one row costs more than the rest of the bookkeeping).
    """
    if not absent.any():
        return selection
    return _safe_indexing(selection, np.flatnonzero(~absent))


def missing_rows(selection):
    """True for the rows whose every selected cell is missing (None, NaN, pd.NA).

    ``selection`` is a modality's columns (a Series or DataFrame, pandas or polars,
    an array or a sparse matrix, where a stored NaN is missing and an implicit zero
    is not). See :class:`ModalityLayout` for why "every cell".
    """
    if sp.issparse(selection):
        return nan_mask(selection).all(axis=1)
    if isinstance(selection, np.ndarray) and selection.dtype.kind in "fc":
        # Features (an encoder's output): one vectorised test, not one per column.
        if selection.ndim == 1:
            return np.isnan(selection)
        if selection.shape[1] == 0:
            return np.zeros(selection.shape[0], dtype=bool)
        return np.isnan(selection).all(axis=1)
    if hasattr(selection, "iloc"):  # pandas
        if selection.ndim == 1:  # no frame built around one column (one-row latency)
            columns = [selection.to_numpy()]
        else:
            columns = [
                selection.iloc[:, j].to_numpy() for j in range(selection.shape[1])
            ]
    elif hasattr(selection, "get_column") or hasattr(selection, "to_list"):  # polars
        frame = selection.to_frame() if len(selection.shape) == 1 else selection
        columns = [frame.to_series(j).to_numpy() for j in range(frame.shape[1])]
    else:
        values = np.asarray(selection)
        columns = [values] if values.ndim == 1 else list(values.T)
    if not columns:
        return np.zeros(selection.shape[0], dtype=bool)
    return np.logical_and.reduce([missing_cells(column) for column in columns])


def row_labels(X):
    """The DataFrame's index (to name rows in messages), or None for arrays."""
    index = getattr(X, "index", None)
    return None if index is None or isinstance(X, np.ndarray) else index


def shown_rows(rows, labels):
    """The first rows of a mask, as labels, for a message: ``'r1', 'r4', ...``."""
    positions = np.flatnonzero(rows)
    shown = positions[:SHOWN_ROWS]
    shown = shown.tolist() if labels is None else list(labels[shown])
    more = ", ..." if len(positions) > SHOWN_ROWS else ""
    return f"{', '.join(map(repr, shown))}{more}"


def describe_columns(columns):
    """A column selection for a message: ``column 'image'`` or ``columns [0, 1]``."""
    if np.isscalar(columns):
        return f"column {columns!r}"
    if isinstance(columns, slice) or callable(columns):
        return f"columns {columns!r}"
    return f"columns {list(columns)!r}"


# -- the layout ------------------------------------------------------------------------------
def check_transformer(name, estimator):
    """The estimator check of a triple whose estimator transforms (the fuser's).

    As ColumnTransformer: ``fit`` (or ``fit_transform``) and ``transform``.
    """
    if not (
        hasattr(estimator, "fit") or hasattr(estimator, "fit_transform")
    ) or not hasattr(estimator, "transform"):
        raise TypeError(
            "All estimators should implement fit and transform, or can be 'drop' or "
            f"'passthrough' specifiers. Encoder {name!r}: {estimator!r} (type "
            f"{type(estimator)}) doesn't."
        )


@dataclass
class Modality:
    """One modality of a fitted composite: one ``(name, estimator, columns)`` triple.

    Attributes
    ----------
    name : str
        The modality's name (``"remainder"`` for the columns no triple selects).
    estimator : estimator, "drop" or "passthrough"
        The fitted estimator (a fitted clone of the given one; ``"passthrough"`` may
        be replaced by a fitted identity transformer). A dropped modality, or one
        whose selection holds no column, keeps the estimator it was given.
    columns : str, int, list, slice or array-like
        The selection as given, a callable replaced by what it returned on the
        training ``X`` (as ``ColumnTransformer.transformers_`` shows it).
    indices : list of int
        Positions of the selected columns in the training ``X``.
    feature_names : list of str or None
        Their names, when the training ``X`` had string column names: a later
        DataFrame is read by these names.
    scalar : bool
        The selection is one name or position, so the estimator gets a 1-D column
        (a Series), which is what skmm's encoders and ``TfidfVectorizer`` take.
    outputs : slice
        The composite's output columns that come from this modality (an empty slice
        for a dropped modality or one that outputs nothing).
    """

    name: str
    estimator: object
    columns: object
    indices: list
    feature_names: list = None
    scalar: bool = False
    outputs: slice = field(default_factory=lambda: slice(0, 0))

    @property
    def dropped(self):
        """True for ``"drop"``."""
        return is_drop(self.estimator)

    @property
    def active(self):
        """True when the modality is fitted and used: not dropped, some columns."""
        return not self.dropped and len(self.indices) > 0


class ModalityLayout:
    """The modalities of a fitted composite: names, estimators, columns, missing rows.

    Every composite of ``(name, estimator, columns)`` triples (the
    :class:`~skmm.fusion.MultimodalFuser`, the late-fusion ensembles, the networks)
    builds one at fit with :meth:`from_triples`, which validates the triples once
    for all of them, and exposes it as its fitted attribute ``modalities_``.
    Inspection tools read it to find each modality's columns.

    **Missing.** A modality is *missing* in a row when every cell it selects is
    missing: None, NaN, ``pd.NA`` or NaT (a stored NaN in a sparse matrix; an
    implicit zero is a value). This is the one meaning every composite uses, through
    :meth:`missing`: the fuser fills such rows as its ``missing`` policy says, late
    fusion gives the modality no vote there, and each composite fits and runs the
    modality's estimator on the other rows only, so that a ``TfidfVectorizer`` never
    meets a None. A NaN in *some* of a modality's cells (one of two numeric columns)
    is a missing value inside a present modality: the modality's estimator gets it,
    as in ``ColumnTransformer`` (the fuser's ``missing="mean"`` imputes it). A
    present but broken item (an unreadable file) is never missing: its encoder
    raises.

    Parameters
    ----------
    modalities : list of :class:`Modality`
        In the order of the triples, then ``"remainder"`` when it has columns.
    n_features_in : int
        Number of columns of the training ``X``.
    feature_names_in : ndarray of str or None, default=None
        Their names, when they are all strings.
    owner : str, default="composite"
        The composite's class name, for messages.
    role : str, default="encoder"
        What the composite calls its estimators in messages (``"encoder"``,
        ``"model"``).
    remainder : bool, default=False
        Whether :attr:`output_indices` has a ``"remainder"`` entry even when no
        column is left for it (as ``ColumnTransformer.output_indices_``).

    Attributes
    ----------
    names : list of str
        The names of all the modalities, dropped ones included.
    active : list of :class:`Modality`
        The modalities that are fitted and used (not dropped, with columns).
    output_indices : dict of str to slice
        Each modality's output columns, by name.

    See Also
    --------
    skmm.fusion.MultimodalFuser : Its ``modalities_`` is one of these.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmm.fusion import MultimodalFuser
    >>> X = pd.DataFrame({"a": [1.0, None, 3.0], "b": [4.0, 5.0, 6.0],
    ...                   "c": [None, None, 1.0]})
    >>> fuser = MultimodalFuser([("ab", StandardScaler(), ["a", "b"]),
    ...                          ("c", "passthrough", ["c"])], missing="zero").fit(X)
    >>> layout = fuser.modalities_
    >>> layout.names
    ['ab', 'c']
    >>> layout["ab"].feature_names, layout["ab"].outputs
    (['a', 'b'], slice(0, 2, None))
    >>> layout.missing(X)["c"]  # every cell of "c" is missing in rows 0 and 1
    array([ True,  True, False])
    >>> layout.missing(X)["ab"]  # one cell of two is not a missing modality
    array([False, False, False])
    """

    def __init__(
        self,
        modalities,
        *,
        n_features_in,
        feature_names_in=None,
        owner="composite",
        role="encoder",
        remainder=False,
    ):
        self.modalities = list(modalities)
        self.n_features_in = n_features_in
        self.feature_names_in = feature_names_in
        self.owner = owner
        self.role = role
        self.remainder = remainder

    # -- building and validating ---------------------------------------------------------
    @classmethod
    def from_triples(
        cls,
        triples,
        X,
        *,
        owner,
        param="encoders",
        role="encoder",
        check=check_transformer,
        strings=("drop", "passthrough"),
        remainder=None,
        empty_columns="skip",
        require_active=True,
        n_modalities=None,
    ):
        """Validate the triples and resolve their columns on the training ``X``.

        The one validation of every composite: the triples' shape; the names
        (unique, no ``__``, no clash with a parameter); the estimators (instances,
        the strings in ``strings``, ``check`` on the others); the columns (a
        callable is called on ``X``; names, positions, slices and masks become
        positions). ``X`` must have passed :func:`check_table` (with ``reset``).

        Parameters
        ----------
        triples : list of (str, estimator, columns) tuples
            The composite's triples, as the user gave them.
        X : DataFrame, ndarray or sparse matrix
            The training table.
        owner : estimator
            The composite: its parameters are the names a modality cannot take, and
            its class is named in messages.
        param : str, default="encoders"
            The parameter holding the triples, named in messages.
        role : str, default="encoder"
            What the composite calls its estimators in messages.
        check : callable, default=check_transformer
            ``check(name, estimator)`` raises for an estimator the composite cannot
            use (strings excepted).
        strings : tuple of str, default=("drop", "passthrough")
            The strings allowed in place of an estimator.
        remainder : estimator, str or None, default=None
            The ``remainder`` of a composite that has one: the columns no triple
            selects become one more modality, ``"remainder"``. None for composites
            without a remainder.
        empty_columns : {"skip", "error"}, default="skip"
            What a selection of no column is: an inactive modality, as in
            ``ColumnTransformer``, or an error.
        require_active : bool, default=True
            Whether at least one modality must not be dropped.
        n_modalities : int or None, default=None
            The number of triples required (2 for a matcher); any when None.

        Returns
        -------
        layout : ModalityLayout
        """
        name = type(owner).__name__
        remainder_encodes = remainder is not None and not is_drop(remainder)
        _check_triples_shape(triples, param, n_modalities, remainder_encodes)
        names = [triple[0] for triple in triples]
        estimators = [triple[1] for triple in triples]
        if names:
            owner._validate_names(names)
            owner._check_estimators_are_instances(estimators)
        for key, estimator in zip(names, estimators):
            if isinstance(estimator, str):
                if estimator not in strings:
                    allowed = " and ".join(repr(s) for s in strings)
                    raise ValueError(
                        f"{role} {key!r}: the only strings allowed in place of an "
                        f"{role} are {allowed}; got {estimator!r}."
                    )
            else:
                check(key, estimator)
        if require_active and triples and all(map(is_drop, estimators)):
            raise ValueError(
                f"All {param} are dropped. At least one is required to be an estimator."
            )
        feature_names_in = _feature_names(X)
        modalities = []
        for key, estimator, columns in triples:
            if callable(columns):
                columns = columns(X)
            indices = list(column_indices(X, columns))
            if not indices and empty_columns == "error":
                raise ValueError(
                    f"{role} {key!r} selects no column of X (columns={columns!r}); X "
                    f"has {X.shape[1]} feature(s)."
                )
            modalities.append(
                _modality(key, estimator, columns, indices, feature_names_in)
            )
        if remainder is not None:
            used = {i for m in modalities for i in m.indices}
            rest = [i for i in range(X.shape[1]) if i not in used]
            if rest:
                columns = _remainder_columns(
                    [c for _, _, c in triples], rest, X.shape[1], feature_names_in
                )
                modalities.append(
                    _modality("remainder", remainder, columns, rest, feature_names_in)
                )
        return cls(
            modalities,
            n_features_in=X.shape[1],
            feature_names_in=feature_names_in,
            owner=name,
            role=role,
            remainder=remainder is not None,
        )

    # -- the modalities ------------------------------------------------------------------
    @property
    def names(self):
        """The names of all the modalities, dropped ones included."""
        return [m.name for m in self.modalities]

    @property
    def active(self):
        """The modalities that are fitted and used (not dropped, with columns)."""
        return [m for m in self.modalities if m.active]

    def __getitem__(self, key):
        if isinstance(key, str):
            for m in self.modalities:
                if m.name == key:
                    return m
            raise KeyError(
                f"{key!r} is not a modality; the modalities are {self.names}"
            )
        return self.modalities[key]

    def __iter__(self):
        return iter(self.modalities)

    def __len__(self):
        return len(self.modalities)

    def __contains__(self, name):
        return name in self.names

    def __repr__(self):
        parts = []
        for m in self.modalities:
            estimator = (
                m.estimator
                if isinstance(m.estimator, str)
                else type(m.estimator).__name__
            )
            columns = m.feature_names if m.feature_names is not None else m.indices
            parts.append(f"{m.name!r}: {estimator} on {columns}")
        return f"ModalityLayout({', '.join(parts)})"

    def triples(self):
        """The ``(name, estimator, columns)`` triples, as ``transformers_`` lists them."""
        return [(m.name, m.estimator, m.columns) for m in self.modalities]

    def named_estimators(self):
        """The estimators by name, as a :class:`~sklearn.utils.Bunch`."""
        return Bunch(**{m.name: m.estimator for m in self.modalities})

    @property
    def output_indices(self):
        """Each modality's output columns, by name (``ColumnTransformer``'s
        ``output_indices_``)."""
        out = {m.name: m.outputs for m in self.modalities}
        if self.remainder:
            out.setdefault("remainder", slice(0, 0))
        return out

    def set_outputs(self, widths):
        """Record the output columns: ``widths`` maps names to a width (the outputs
        lie side by side in that order) or to a slice."""
        start = 0
        for name, width in widths.items():
            if isinstance(width, slice):
                self[name].outputs = width
            else:
                self[name].outputs = slice(start, start + int(width))
                start += int(width)

    # -- reading X ----------------------------------------------------------------------
    def by_name(self, X):
        """True when ``X`` is read by column names: a DataFrame, after fitting on a
        DataFrame with string column names."""
        return self.feature_names_in is not None and _is_dataframe(X)

    def check_columns(self, X):
        """Check that a DataFrame has every column an active modality reads."""
        needed = {name for m in self.modalities if m.active for name in m.feature_names}
        missing = needed - set(X.columns)
        if missing:
            raise ValueError(f"{self.owner}: columns are missing: {missing}")

    def positions(self, X, name):
        """Positions of a modality's columns in ``X`` (found by name in a DataFrame
        read by name)."""
        m = self[name]
        if self.by_name(X):
            columns = list(X.columns)
            return [columns.index(c) for c in m.feature_names]
        return list(m.indices)

    def select(self, X, name, rows=None):
        """A modality's columns of ``X`` (a 1-D column for a scalar selection), in
        ``rows`` (positions or a mask) when given."""
        m = self[name]
        if self.by_name(X):
            key = list(m.feature_names)
        elif _determine_key_type(m.columns) == "str":
            # Names cannot say which columns of an array to read (as in
            # ColumnTransformer).
            raise ValueError(
                f"{self.owner}: {self.role} {name!r} selects columns by name "
                f"({m.columns!r}): Specifying the columns using strings is only "
                "supported for dataframes."
            )
        else:
            key = list(m.indices)
        if self.by_name(X) and hasattr(X, "iloc"):
            # pandas by name: plain column access, as _safe_indexing's .loc gives,
            # without its indexer machinery on every call (one-row latency).
            selection = X[key[0]] if m.scalar else X[key]
        else:
            selection = _safe_indexing(X, key[0] if m.scalar else key, axis=1)
        return selection if rows is None else _safe_indexing(selection, rows)

    def missing(
        self,
        X,
        *,
        selections=None,
        training=False,
        allowed=True,
        advice="",
        labels=None,
    ):
        """The rows where each active modality is missing (every cell missing).

        Parameters
        ----------
        X : DataFrame, ndarray or sparse matrix
            The table.
        selections : dict of str to array-like, default=None
            Each modality's columns of ``X``, when already selected.
        training : bool, default=False
            A modality missing in every row is an error (there is nothing to fit
            its estimator on).
        allowed : bool, default=True
            False: a missing modality is an error naming the modality, its columns
            and the rows; ``advice`` ends the message.
        advice : str, default=""
            How to allow missing modalities (the composite's policy).
        labels : sequence or None, default=None
            Row labels for messages; X's index when None.

        Returns
        -------
        missing : dict of str to ndarray of bool
            One mask per active modality.
        """
        labels = row_labels(X) if labels is None else labels
        out = {}
        for m in self.active:
            selection = (
                self.select(X, m.name) if selections is None else selections[m.name]
            )
            rows = missing_rows(selection)
            # An encoder may take more items for missing than None/NaN cells (the
            # audio encoders: a video file without a soundtrack); it names them.
            own = getattr(m.estimator, "_missing_items", None)
            if own is not None and not rows.all():
                rows = own(selection, rows)
            where = f"{self.owner}: modality {m.name!r} ({describe_columns(m.columns)})"
            if training and rows.all():
                raise ValueError(
                    f"{where} is missing (None/NaN) in all {len(rows)} training rows; "
                    f"there is nothing to fit its {self.role} on."
                )
            if not allowed and rows.any():
                raise ValueError(
                    f"{where} is missing (None/NaN) in {int(rows.sum())} row(s): "
                    f"{shown_rows(rows, labels)}. {advice}".rstrip()
                )
            out[m.name] = rows
        return out


def _check_triples_shape(triples, param, n_modalities, may_be_empty):
    well_formed = isinstance(triples, (list, tuple)) and all(
        isinstance(t, (tuple, list)) and len(t) == 3 and isinstance(t[0], str)
        for t in triples
    )
    if well_formed and n_modalities is not None:
        well_formed = len(triples) == n_modalities
    elif well_formed:
        well_formed = len(triples) > 0 or may_be_empty
    if not well_formed:
        count = "a non-empty list" if n_modalities is None else "a list of two"
        sides = "" if n_modalities is None else ", one per side"
        raise ValueError(
            f"Invalid {param!r} attribute, {param!r} should be {count} of (name, "
            f"{param.removesuffix('s')}, columns) triples{sides}; got {triples!r}."
        )


def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "shape") and not sp.issparse(X)


def _feature_names(X):
    """X's column names when they are all strings (as ``feature_names_in_``)."""
    if not _is_dataframe(X):
        return None
    names = np.asarray(list(X.columns), dtype=object)
    return names if all(isinstance(n, str) for n in names) else None


def column_indices(X, key):
    """Positions of the columns ``key`` selects, as ``ColumnTransformer`` reads it.

    ``slice(None)`` (every column) is also taken on arrays, where scikit-learn's
    helper, which reads an open slice as one of names, refuses it.
    """
    if isinstance(key, slice) and key.start is None and key.stop is None:
        key = slice(0, None, key.step)
    return _get_column_indices(X, key)


def _modality(name, estimator, columns, indices, feature_names_in):
    return Modality(
        name=name,
        estimator=estimator,
        columns=columns,
        indices=indices,
        feature_names=(
            None if feature_names_in is None else list(feature_names_in[indices])
        ),
        scalar=bool(np.isscalar(columns)),
    )


def _remainder_columns(keys, rest, n_columns, feature_names_in):
    """The remainder's columns in the kind of key the triples use, as in
    ``ColumnTransformer``: names for names, a mask for masks, else positions."""
    try:
        kinds = {_determine_key_type(key) for key in keys}
    except ValueError:  # a callable
        kinds = {"int"}
    kind = kinds.pop() if len(kinds) == 1 else "int"
    if kind == "str" and feature_names_in is not None:
        return list(feature_names_in[rest])
    if kind == "bool":
        return [i in rest for i in range(n_columns)]
    return rest


class TriplesComposition(_BaseComposition):
    """get/set_params over the triples held in the parameter ``_triples_param``."""

    _triples_param = "encoders"

    @property
    def _pairs(self):
        triples = getattr(self, self._triples_param)
        try:
            return [(name, estimator) for name, estimator, _ in triples]
        except (TypeError, ValueError):
            return triples  # malformed: fit reports it

    @_pairs.setter
    def _pairs(self, value):
        triples = getattr(self, self._triples_param)
        try:
            value = [
                (name, estimator, columns)
                for (name, estimator), (_, _, columns) in zip(value, triples)
            ]
        except (TypeError, ValueError):
            pass
        setattr(self, self._triples_param, value)

    def get_params(self, deep=True):
        """Get the parameters, with each child's as ``name__param``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the children and their parameters.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("_pairs", deep=deep)

    def set_params(self, **params):
        """Set the parameters; ``name=...`` replaces a child, ``name__p=...`` sets one.

        Parameters
        ----------
        **params : dict
            Parameters of this estimator and of its children.

        Returns
        -------
        self : estimator
            This estimator.
        """
        self._set_params("_pairs", **params)
        return self
