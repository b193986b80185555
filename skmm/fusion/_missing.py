"""Missing cells, found by the composites themselves for any encoder or model.

A modality is missing in a row when every cell it selects is None, NaN or pd.NA. The
fuser and the late-fusion ensembles find those rows in their input, fit and run each
encoder or model on the other rows only, and apply their ``missing`` policy to the
rest: so a ``TfidfVectorizer`` or a ``FunctionTransformer`` never meets a None cell.
"""

import numpy as np

from ..utils._sklearn_compat import _get_column_indices
from ..utils._validation import is_missing

# Rows named in a "modality is missing" message; the count says how many there are.
SHOWN_ROWS = 10


def _missing_cells(values):
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype == object:
        return np.fromiter(map(is_missing, values), dtype=bool, count=len(values))
    return np.zeros(len(values), dtype=bool)


def missing_rows(selection):
    """True for the rows whose every selected cell is missing (None, NaN, pd.NA)."""
    if hasattr(selection, "iloc"):
        frame = selection.to_frame() if selection.ndim == 1 else selection
        columns = [frame.iloc[:, j].to_numpy() for j in range(frame.shape[1])]
    elif hasattr(selection, "tocsc"):
        # A sparse selection: a stored NaN is missing, an implicit zero is not.
        dense_nan = np.zeros(selection.shape, dtype=bool)
        coo = selection.tocoo()
        dense_nan[coo.row, coo.col] = np.isnan(coo.data)
        columns = list(dense_nan.T)
        return np.logical_and.reduce(columns) if columns else np.zeros(0, bool)
    else:
        values = np.asarray(selection)
        columns = [values] if values.ndim == 1 else list(values.T)
    if not columns:
        return np.zeros(0, dtype=bool)
    return np.logical_and.reduce([_missing_cells(column) for column in columns])


def column_indices(X, key):
    """Positions of the columns ``key`` selects, as ``ColumnTransformer`` reads it.

    ``slice(None)`` (every column) is also taken on arrays, where scikit-learn's
    helper, which reads an open slice as one of names, refuses it.
    """
    if isinstance(key, slice) and key.start is None and key.stop is None:
        key = slice(0, None, key.step)
    return _get_column_indices(X, key)


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


def missing_message(owner, name, columns, rows, labels, fix):
    """A ValueError message naming the composite, the modality, its columns and rows."""
    return (
        f"{owner}: modality {name!r} ({describe_columns(columns)}) is missing "
        f"(None/NaN) in {int(rows.sum())} row(s): {shown_rows(rows, labels)}. {fix}"
    )


def all_missing_message(owner, name, columns, n_rows):
    """The message for a modality missing in every training row."""
    what = "encoder" if owner == "MultimodalFuser" else "model"
    return (
        f"{owner}: modality {name!r} ({describe_columns(columns)}) is missing "
        f"(None/NaN) in all {n_rows} training rows; there is nothing to fit its "
        f"{what} on."
    )
