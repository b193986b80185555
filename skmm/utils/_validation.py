"""Checking the 1-D columns of items (images, texts, sounds) that encoders take.

A cell may hold several items of its column's modality (a list, tuple or 1-D object
array of them: a product's photos, a song's clips): :class:`Column` keeps such cells
as they are, :meth:`Column.flatten` lists their items one by one, and
:func:`pool_items` encodes the items and averages each cell's features, so every
encoder built on :class:`Column` gets cells of several items from one implementation.
"""

import numbers
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ._composition import check_table, is_group, is_missing
from ._sklearn_compat import validate_data

# The text numpy prints for an array: brackets around numbers (Dask's default string
# conversion turns a column of arrays into that text).
_ARRAY_TEXT = re.compile(r"\s*\[[-+.,\d\seEnaif\[\]]*\]\s*")


def file_not_found(path):
    """The error for an item naming no file; an array printed as text says how
    it became one."""
    if _ARRAY_TEXT.fullmatch(path):
        shown = path if len(path) <= 40 else f"{path[:37]}..."
        return ValueError(
            f"got the text of an array ({shown!r}), not an array nor a file: Dask "
            "turns object columns into strings by default. Keep arrays as objects "
            'with dask.config.set({"dataframe.convert-string": False}) (see '
            '"Arrays in object columns" in docs/scaling.rst), or pass file paths.'
        )
    return ValueError(f"file not found: {path!r}")


def check_fitted(estimator):
    """scikit-learn's ``check_is_fitted(estimator)``, without building the
    estimator's tags when its attributes already say it is fitted.

    The same test as scikit-learn's (a public attribute ending in ``_``; an
    estimator's own ``__sklearn_is_fitted__`` is asked instead when it has one);
    only the tags, which a composite builds from its children's on every call, are
    left out of the path of every prediction. An unfitted estimator goes through
    ``check_is_fitted``, which raises its ``NotFittedError``.
    """
    fitted = not hasattr(estimator, "__sklearn_is_fitted__") and any(
        k.endswith("_") and not k.startswith("__") for k in vars(estimator)
    )
    if not fitted:
        check_is_fitted(estimator)


@contextmanager
def prefix_errors(prefix):
    """Prefix a ValueError raised in the block with where it happened.

    ``encoder 'img': column 'image', row 'r3': ...``, ``partition 2: ...``: each
    layer that knows a part of the place adds its own.
    """
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{prefix}: {exc}") from exc


@dataclass
class Column:
    """A validated column of items.

    Attributes
    ----------
    items : list or ndarray
        The items, in order. For a numeric batch (``batch=True``) an ndarray whose first
        axis is the rows.
    missing : ndarray of bool
        True where the item is missing.
    name : str or None
        The column name, used in error messages.
    labels : sequence or None
        Row labels (a pandas index) for error messages; positions when None.
    batch : bool
        True when ``items`` is a dense numeric array of shape (n, ...).
    nested : bool
        True when some cell holds several items (see :func:`is_group`).
    positions : ndarray of int or None
        In a column made by :meth:`flatten`, each item's position in its cell.
    """

    items: object
    missing: np.ndarray
    name: object = None
    labels: object = None
    batch: bool = False
    nested: bool = False
    positions: object = None

    def __len__(self):
        return len(self.missing)

    def where(self, i):
        """Say where row ``i`` is, for error messages: ``column 'image', row 17``."""
        label = i if self.labels is None else self.labels[i]
        if isinstance(label, np.generic):
            label = label.item()
        where = (
            f"column {self.name!r}, row {label!r}"
            if self.name is not None
            else (f"row {label!r}")
        )
        if self.positions is not None:
            where += f", item {int(self.positions[i])}"
        return where

    def present(self):
        """Return the positions of the rows whose item is not missing."""
        return np.flatnonzero(~self.missing)

    def take(self, rows):
        """The column of ``rows`` only (their labels kept for error messages)."""
        from ._sklearn_compat import _safe_indexing

        rows = np.asarray(rows)
        if (
            rows.dtype.kind in "iu"
            and len(rows) == len(self)
            and np.array_equal(rows, np.arange(len(self)))
        ):
            # Every row in order (a net's frozen tower when no item is missing):
            # no indexed copy of the items and labels per call (one-row latency).
            # The mask is copied: an encoder may mark more items missing in it.
            return replace(self, missing=self.missing.copy())
        # Positions in the whole column when the rows have no labels.
        labels = rows if self.labels is None else self.labels[rows]
        return Column(
            self.items[rows]
            if isinstance(self.items, np.ndarray)
            else _safe_indexing(self.items, rows),
            self.missing[rows],
            name=self.name,
            labels=labels,
            batch=self.batch,
            nested=self.nested,
            positions=None if self.positions is None else self.positions[rows],
        )

    def flatten(self):
        """The items of the present cells one by one, and the row of each.

        Returns ``(column, owner)``: a column with one item per entry (a None inside
        a cell stays, as a missing item), whose errors name the row and the item's
        position in its cell, and ``owner[k]``, the row item ``k`` comes from.
        """
        items, owner, positions = [], [], []
        for i in self.present():
            cell = self.items[i]
            parts = cell if is_group(cell) else (cell,)
            items.extend(parts)
            owner.extend([i] * len(parts))
            positions.extend(range(len(parts)))
        values = np.empty(len(items), dtype=object)
        values[:] = items
        owner = np.asarray(owner, dtype=np.intp)
        labels = np.arange(len(self)) if self.labels is None else self.labels
        flat = Column(
            values,
            np.fromiter(map(is_missing, values), dtype=bool, count=len(values)),
            name=self.name,
            labels=np.asarray(labels, dtype=object)[owner],
            positions=np.asarray(positions, dtype=np.intp),
        )
        return flat, owner

    def preprocessing_rows(self, rows):
        """The column and rows an encoder learns its preprocessing from.

        ``(self, rows)``, or, for a column of cells of several items, the flattened
        column and the positions of the present items of ``rows``.
        """
        if not self.nested:
            return self, rows
        flat, owner = self.flatten()
        return flat, np.flatnonzero(~flat.missing & np.isin(owner, rows))

    def training_items(self):
        """The items a tower trains on, and the row of each present one.

        ``(self, self.present())``, or, for a column of cells of several items, the
        flattened column and the row of each of its present items: each item
        learns its cell's target (the photos of one product all show that
        product).
        """
        if not self.nested:
            return self, self.present()
        flat, owner = self.flatten()
        return flat, owner[flat.present()]


def pool_items(column, encode):
    """Encode a column whose cells may hold several items; average each cell's.

    ``encode(column)`` returns one feature row per item of a column of single items
    (NaN rows for missing ones). Each cell's features are the mean over its present
    items: a None inside a cell is skipped, and a cell with no present item (an
    empty list) is missing, a NaN row.
    """
    flat, owner = column.flatten()
    features = encode(flat)
    keep = ~flat.missing
    owner, features = owner[keep], features[keep]
    counts = np.bincount(owner, minlength=len(column))
    out = np.full((len(column), features.shape[1]), np.nan, dtype=features.dtype)
    rows = np.flatnonzero(counts)
    # The mean of each row's items: a (rows x items) averaging matrix.
    weights = sp.csr_matrix(
        (1.0 / counts[owner], (np.searchsorted(rows, owner), np.arange(len(owner)))),
        shape=(len(rows), len(owner)),
    )
    out[rows] = weights @ features.astype(np.float64)
    return out


def reject_groups(column, owner):
    """Refuse a column with cells of several items where they cannot be pooled yet."""
    if getattr(column, "nested", False):
        what = "the column" if column.name is None else f"column {column.name!r}"
        raise NotImplementedError(
            f"{owner}: {what} has cells of several items (a list per "
            "cell); a net's or matcher's frozen tower pools such cells into one "
            "feature vector (the mean of the items'), but a tower trained inside a "
            "net or matcher would need that pooling in its forward pass, which is "
            "not supported yet. Keep one item per cell, use a frozen tower, or "
            "train the encoder on its own first (it trains on each item with its "
            "row's target) and give it frozen."
        )


def check_column(estimator, X, *, batch_ndim=(), reset=True):
    """Validate the input of an encoder that takes one column of items.

    Parameters
    ----------
    estimator : estimator
        The encoder; ``n_features_in_`` and ``feature_names_in_`` are set on it (with
        ``reset=True``) or checked (with ``reset=False``) when X is a DataFrame.
    X : sequence, Series, one-column DataFrame or ndarray
        A 1-D sequence of items, a one-column DataFrame, or a dense numeric array whose
        number of dimensions is in ``batch_ndim`` (a batch of images or waveforms).
    batch_ndim : tuple of int
        The numbers of dimensions of a numeric ndarray taken as a batch of items.
    reset : bool
        Whether this is ``fit`` (record the column) or ``transform`` (check it).

    Returns
    -------
    column : Column
    """
    cls = type(estimator).__name__
    if sp.issparse(X):
        raise TypeError(
            f"{cls} takes a column of items or a dense array; sparse data was passed."
        )
    name, labels = None, None
    if not isinstance(X, (pd.DataFrame, pd.Series, np.ndarray, list, tuple)):
        X, name = _foreign_column(estimator, X, reset=reset)
    if (
        isinstance(X, np.ndarray)
        and X.ndim == 1
        and (np.issubdtype(X.dtype, np.number) or X.dtype == bool)
    ):
        raise ValueError(
            f"{cls} got a 1-D numeric array, which is not a column of items. Reshape "
            "your data: wrap a single item in a list, or pass a batch as a 2-D array "
            "(one item per row)."
        )
    if 2 in batch_ndim and _is_numeric_table(X):
        labels = X.index if isinstance(X, pd.DataFrame) else None
        # The dtype is kept: integer samples are scaled by their type, as items are.
        X = validate_data(
            estimator, X, reset=reset, dtype="numeric", ensure_all_finite=False
        )
        _check_finite_rows(X, cls, labels)
        return Column(X, np.zeros(len(X), dtype=bool), labels=labels, batch=True)
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(
                f"{cls} encodes one column; got a DataFrame with {X.shape[1]} columns "
                f"{list(X.columns)}. Select the column, or use MultimodalFuser to encode "
                "several."
            )
        check_table(estimator, X, reset=reset)
        X = X.iloc[:, 0]
    if isinstance(X, pd.Series):
        name, labels = X.name, X.index
        values = X.to_numpy(dtype=object)
    elif isinstance(X, np.ndarray):
        if X.dtype != object and X.ndim in batch_ndim:
            if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
                raise ValueError(
                    f"{cls} takes a numeric batch array; got dtype {X.dtype}."
                )
            _check_finite_rows(X, cls)
            return Column(X, np.zeros(len(X), dtype=bool), batch=True)
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            allowed = ", ".join(f"{d}-D" for d in batch_ndim)
            extra = f" or a numeric {allowed} batch" if batch_ndim else ""
            raise ValueError(
                f"{cls} takes a 1-D sequence of items{extra}; got an array of shape "
                f"{X.shape}."
            )
        values = X.astype(object) if X.dtype != object else X
    elif isinstance(X, (list, tuple)):
        values = np.empty(len(X), dtype=object)
        values[:] = list(X)
    elif isinstance(X, (str, bytes)) or isinstance(X, numbers.Number) or X is None:
        raise ValueError(
            f"{cls} takes a 1-D sequence of items, got a single {type(X).__name__}. "
            "Wrap it in a list."
        )
    else:
        try:
            values = np.empty(len(X), dtype=object)
            values[:] = list(X)
        except TypeError as exc:
            raise ValueError(
                f"{cls} takes a 1-D sequence of items, got {type(X).__name__}."
            ) from exc
    if len(values) == 0:
        raise ValueError(f"{cls} got 0 items; at least one is required.")
    missing = np.fromiter(
        (is_missing(v) for v in values), dtype=bool, count=len(values)
    )
    nested = any(is_group(v) for v in values)
    return Column(values, missing, name=name, labels=labels, nested=nested)


def _check_finite_rows(X, cls, labels=None):
    """Name the first row of a numeric batch holding NaN or infinity.

    In a batch every row is present: NaN there is a broken item, never a missing one.
    """
    if X.dtype.kind not in "fc" or len(X) == 0:
        return
    bad = np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))
    if len(bad):
        label = bad[0] if labels is None else labels[bad[0]]
        label = label.item() if isinstance(label, np.generic) else label
        raise ValueError(
            f"{cls}: row {label!r} of the batch array contains NaN or infinity "
            f"({len(bad)} such row(s)). In a batch array every row is an item; pass "
            "a column of items (a list or Series) with None for missing ones."
        )


def _foreign_column(estimator, X, *, reset):
    """A DataFrame or Series from another library (polars, pyarrow...) as an ndarray.

    Returns ``(values, name)``; the column name is kept for error messages. A
    one-column frame is checked like a pandas one (its feature names recorded).
    """
    cls = type(estimator).__name__
    # polars has ``columns``; pyarrow's ``columns`` are the arrays, its names
    # ``column_names``.
    columns = getattr(X, "column_names", getattr(X, "columns", None))
    name = None
    if columns is not None and not callable(columns) and hasattr(X, "__getitem__"):
        columns = list(columns)
        if len(columns) != 1:
            raise ValueError(
                f"{cls} encodes one column; got a {type(X).__name__} with "
                f"{len(columns)} columns {columns}. Select the column, or use "
                "MultimodalFuser to encode several."
            )
        # The feature names are recorded or checked as for a pandas frame.
        header = pd.DataFrame(columns=columns)
        validate_data(estimator, X=header, skip_check_array=True, reset=reset)
        name, X = columns[0], X[columns[0]]
    name = getattr(X, "name", name)
    name = name if isinstance(name, str) else None
    if hasattr(X, "__array__"):
        values = np.asarray(X)
        if values.dtype == object and callable(getattr(X, "to_list", None)):
            # Nested cells (polars' List columns) as Python lists, as pandas holds
            # them: numpy would make a nested-list image a group of 1-D arrays.
            values = np.empty(len(values), dtype=object)
            values[:] = X.to_list()
        return values, name
    for method in ("to_numpy", "to_list", "to_pylist"):
        if callable(getattr(X, method, None)):
            values = getattr(X, method)()
            return (values if isinstance(values, np.ndarray) else list(values)), name
    return X, name


def _is_numeric_table(X):
    """True for a numeric 2-D array or a DataFrame whose columns are all numeric."""
    if isinstance(X, pd.DataFrame):
        return X.shape[1] > 0 and all(
            pd.api.types.is_numeric_dtype(dtype) for dtype in X.dtypes
        )
    # A 2-D object array of several columns is numbers stored as objects; one object
    # column is a column of items.
    return (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and (X.dtype != object or X.shape[1] > 1)
    )
