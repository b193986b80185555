"""The modalities of a fitted model, and making them absent: shared by inspection tools.

One place knows how to find which columns of X each modality of a fitted skmm
composite reads (a :class:`~skmm.fusion.MultimodalFuser` at the head of a pipeline,
a :class:`~skmm.fusion.LateFusionClassifier` or ``Regressor``, a
:class:`~skmm.nn.MultimodalNetClassifier` or ``Regressor``), and how to make a
modality absent: its cells set to missing (None in object columns, NaN in numeric
ones), which every skmm model handles with its own missing-modality mechanism.
"""

from dataclasses import replace

import numpy as np

from ..utils._composition import Modality, column_indices


def resolve_modalities(estimator, X, columns=None):
    """The modalities of ``estimator`` on ``X``, as a list of
    :class:`~skmm.utils._composition.Modality` whose ``indices`` are positions in
    ``X``.

    ``columns`` (a dict ``{name: selection}`` or a list of selections) overrides the
    estimator's own modalities; with None, a skmm composite gives its modalities
    (its fitted ``modalities_`` layout), and any other estimator gets one modality
    per column of X.
    """
    if columns is not None:
        return _from_columns(X, columns)
    found = _from_estimator(estimator, X)
    if found is not None:
        return found
    names = getattr(X, "columns", range(X.shape[1]))
    return [_modality(str(name), [j]) for j, name in enumerate(names)]


def check_disjoint(modalities, X, owner):
    """Refuse modalities that share a column: a coalition game needs players.

    A composite may give one column to several modalities (as
    ``ColumnTransformer`` gives a column to several transformers, and a voting
    ensemble every column to every model), but making one of them absent then
    blanks part of another, which stays "present": its Shapley value would mix
    both. ``columns=`` names disjoint groups instead.
    """
    names = getattr(X, "columns", None)
    owner_of = {}
    for m in modalities:
        for j in m.indices:
            if j in owner_of and owner_of[j] != m.name:
                column = repr(names[j]) if names is not None else j
                raise ValueError(
                    f"{owner}: modalities {owner_of[j]!r} and {m.name!r} both read "
                    f"column {column}, so one cannot be made absent without the "
                    "other; pass columns={name: columns} with disjoint groups."
                )
            owner_of[j] = m.name


def _modality(name, indices, estimator=None):
    return Modality(name=name, estimator=estimator, columns=indices, indices=indices)


def _composite(estimator):
    """The skmm composite that reads X: unwraps a search and a pipeline's head."""
    estimator = getattr(estimator, "best_estimator_", estimator)
    steps = getattr(estimator, "steps", None)
    if steps:
        heads = [step for _, step in steps if step not in (None, "passthrough")]
        return _composite(heads[0]) if heads else estimator
    return estimator


def _from_estimator(estimator, X):
    """The modalities of a fitted skmm composite, or None for any other estimator."""
    est = _composite(estimator)
    layout = getattr(est, "modalities_", None)
    if layout is not None:
        return [replace(m, indices=layout.positions(X, m.name)) for m in layout.active]
    return None


def _from_columns(X, columns):
    if isinstance(columns, dict):
        items = list(columns.items())
    elif isinstance(columns, (list, tuple)):
        items = [(str(selection), selection) for selection in columns]
    else:
        raise ValueError(
            "columns must be a dict {modality: columns}, a list of columns or None; "
            f"got {type(columns).__name__}."
        )
    if not items:
        raise ValueError("columns names no modality.")
    modalities = []
    for name, selection in items:
        key = selection(X) if callable(selection) else selection
        try:
            indices = column_indices(X, key)
        except (ValueError, IndexError) as exc:
            raise ValueError(
                f"modality {name!r}: cannot select columns {key!r}: {exc}"
            ) from exc
        if len(indices) == 0:
            raise ValueError(f"modality {name!r} selects no column (columns={key!r}).")
        modalities.append(_modality(str(name), list(indices)))
    return modalities


def check_table(X, owner):
    """Check that X is a DataFrame or a 2-D array; return it."""
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(
            f"{owner} takes a DataFrame or a 2-D array, one column (or several) per "
            f"modality; got {type(X).__name__}."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{owner} got X with 0 rows; at least one is required.")
    return X


def column_values(X, j):
    """Column ``j`` of X as a 1-D ndarray (a copy)."""
    if hasattr(X, "iloc"):
        return X.iloc[:, j].to_numpy(copy=True)
    return np.array(np.asarray(X)[:, j], copy=True)


def missing_value(values):
    """The missing marker of a column: NaN in a numeric column, None in others."""
    return np.nan if values.dtype.kind in "fcbiu" else None


def as_missing_capable(values):
    """The column in a dtype that can hold its missing marker (ints become floats)."""
    if values.dtype.kind in "biu":
        return values.astype(np.float64)
    return values


def replace_columns(X, new_columns):
    """A copy of X whose columns ``j`` are replaced by ``new_columns[j]`` (1-D arrays).

    A DataFrame stays a DataFrame with the same index and names; an array may change
    dtype (to float, or object) if a new column needs it.
    """
    if hasattr(X, "iloc"):
        out = X.copy(deep=False)
        for j, values in new_columns.items():
            out.isetitem(j, values)
        return out
    X = np.asarray(X)
    dtypes = [X.dtype] + [np.asarray(v).dtype for v in new_columns.values()]
    out = np.array(X, dtype=np.result_type(*dtypes) if X.dtype != object else object)
    for j, values in new_columns.items():
        out[:, j] = values
    return out


def set_missing(X, indices, rows):
    """A copy of X with the cells of ``indices`` missing in ``rows`` (a mask or slice)."""
    new = {}
    for j in indices:
        values = as_missing_capable(column_values(X, j))
        if values.dtype.kind not in "fc" and values.dtype != object:
            values = values.astype(object)
        values[rows] = missing_value(values)
        new[j] = values
    return replace_columns(X, new)


# -- the model's outputs ------------------------------------------------------------------
_OUTPUT_METHODS = ("predict_proba", "decision_function", "predict")


class NonFiniteOutputError(ValueError):
    """The model's outputs hold NaN or infinity (not a problem of the input)."""


def check_finite_outputs(out, owner, where):
    """Raise when a model's outputs hold NaN or infinity, naming the rows.

    A NaN output gives NaN (or meaningless) values downstream, for every modality
    alike; ``where`` says on which input the model was asked (``"with modality
    'audio' missing"``, say).
    """
    out = np.asarray(out)
    if out.dtype.kind not in "fc":
        return
    finite = np.isfinite(out).reshape(len(out), -1).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise NonFiniteOutputError(
            f"{owner}: the model's output is NaN or infinite in {len(rows)} of "
            f"{len(out)} row(s) (rows {rows[:10].tolist()}"
            f"{', ...' if len(rows) > 10 else ''}) {where}; there is nothing to "
            "explain or score. Check the model (its weights, its training) on "
            "those rows."
        )


def checked_score(scorer, estimator, X, y, owner, where):
    """``scorer(estimator, X, y)``; a failure (or a NaN score) caused by the model's
    outputs holding NaN says so, instead of the metric's raw message."""
    try:
        score = scorer(estimator, X, y)
    except ValueError as exc:
        _diagnose_outputs(estimator, X, owner, where, exc)
        raise
    if not np.isfinite(score):
        _diagnose_outputs(estimator, X, owner, where, None)
    return score


def _diagnose_outputs(estimator, X, owner, where, exc):
    """Predict again (on failure only) to see whether the outputs are the cause."""
    for method in _OUTPUT_METHODS:
        if hasattr(estimator, method):
            try:
                out = getattr(estimator, method)(X)
            except Exception:
                return
            try:
                check_finite_outputs(out, owner, f"({method}, {where})")
            except NonFiniteOutputError as error:
                raise error from exc
