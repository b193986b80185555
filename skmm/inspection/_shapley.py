"""Exact Shapley values of whole modalities, over the 2^M coalitions."""

import warnings
from math import factorial

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch

from ..utils._composition import missing_cells
from ._modalities import (
    NonFiniteOutputError,
    check_disjoint,
    check_finite_outputs,
    check_table,
    checked_score,
    column_values,
    replace_columns,
    resolve_modalities,
    set_missing,
)

__all__ = ["modality_shapley"]

# 2^12 = 4,096 predictions of the whole data: beyond, group columns into modalities.
MAX_MODALITIES = 12
_METHODS = ("predict_proba", "decision_function", "predict")
_OWNER = "modality_shapley"


def modality_shapley(
    estimator,
    X,
    y=None,
    *,
    columns=None,
    baseline="missing",
    response_method="auto",
    scoring=None,
    interactions=False,
):
    """Exact Shapley values of each modality, per row, over all coalitions.

    A modality's Shapley value is its average contribution to the model's output
    over every order in which the modalities could be added, starting from none.
    With ``M`` modalities there are ``2^M`` coalitions (sets of present
    modalities); each is predicted once for all rows, so the cost is ``2^M``
    predictions of X (4 for two modalities, 32 for five), and the values are exact,
    not sampled. They satisfy, for every row:

    - efficiency: the values sum to ``f(all modalities) - f(no modality)``;
    - symmetry: two modalities that change the output alike get the same value;
    - dummy: a modality that never changes the output gets 0 (for instance in a row
      where it is already missing).

    A modality is absent the way the model handles a missing one: its cells are
    made missing (None in object columns, NaN in numeric ones), so a
    :class:`~skmm.fusion.LateFusionClassifier` skips its vote, a
    :class:`~skmm.fusion.MultimodalFuser` fills it as its ``missing`` says and a
    :class:`~skmm.nn.MultimodalNetClassifier` zeroes its tower. For a model that
    cannot predict with a modality missing, ``baseline="mean"`` or a background
    sample stands in for it instead.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator that takes X.
    X : DataFrame or ndarray of shape (n_samples, n_columns)
        The rows to explain.
    y : array-like of shape (n_samples,), default=None
        The targets; only used (and required) with ``scoring``.
    columns : dict, list or None, default=None
        The modalities. None takes those of a skmm composite (a
        :class:`~skmm.fusion.MultimodalFuser` at the head of a pipeline, late-fusion
        ensembles, networks; in the estimator's order, with its names), and makes
        every column of X a modality for other estimators. A dict maps each
        modality's name to its columns (as in
        :class:`~sklearn.compose.ColumnTransformer`); a list gives one selection per
        modality.
    baseline : "missing", "mean", DataFrame or ndarray, default="missing"
        What an absent modality becomes. ``"missing"``: missing cells.
        ``"mean"``: each of its columns' mean over X (numbers, or arrays of one
        shape, averaged item-wise). A DataFrame or array with the columns of X: a
        background sample; each absent modality takes the values of every background
        row in turn and the output is averaged over them (``len(baseline)`` times
        the cost).
    response_method : {"auto", "predict_proba", "decision_function", "predict"}, \
            default="auto"
        The output explained. ``"auto"``: ``predict_proba`` for a classifier that
        has it, else ``decision_function``, else ``predict``.
    scoring : str, callable or None, default=None
        Explain a score of the whole of X instead of each row's output (as in
        :func:`~sklearn.metrics.check_scoring`, for instance ``"accuracy"``): the
        values say how much of the score each modality brings.
    interactions : bool, default=False
        Also compute the Shapley interaction values between pairs of modalities.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        Its ``values`` attribute is the values (not the dict method).

        - ``values``: ndarray of shape (n_samples, n_modalities) or (n_samples,
          n_modalities, n_outputs) (one output per class for probabilities); of shape
          (n_modalities,) with ``scoring``.
        - ``base_values``: the output with no modality present, (n_samples,) or
          (n_samples, n_outputs); a float with ``scoring``.
        - ``full_values``: the output with every modality present, of the same shape
          (``base_values + values.sum(axis=1)``).
        - ``modalities``: the names, ndarray of str, in the estimator's order.
        - ``output_names``: the classes for per-class outputs, else None.
        - ``mean_abs_values``: the global view, the mean absolute value of each
          modality over the rows, (n_modalities,) or (n_modalities, n_outputs) (per
          class); with ``scoring``, the absolute values.
        - ``interactions`` (with ``interactions=True``): ndarray of shape
          (n_samples, n_modalities, n_modalities[, n_outputs]), symmetric; the
          off-diagonal entry ``[i, j]`` is half the interaction of ``i`` and ``j``
          (as in SHAP), the diagonal is each modality's value without its
          interactions, so that row ``i`` sums to ``values[:, i]``.

    See Also
    --------
    plot_modality_shapley : Bar plot of the global view.
    plot_modality_waterfall : One row's values, from the base value to the output.
    modality_importance : Permutation importance of modalities.

    Notes
    -----
    The value of modality ``i`` is
    ``sum over S not containing i of |S|! (M - |S| - 1)! / M! (f(S + i) - f(S))``,
    and the interaction of ``i`` and ``j`` is ``sum over S containing neither of
    |S|! (M - |S| - 2)! / (M - 1)! (f(S + i + j) - f(S + i) - f(S + j) + f(S))``
    (Lundberg et al., 2018, "Consistent individualized feature attribution for tree
    ensembles").

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skmm.fusion import MultimodalFuser
    >>> from skmm.inspection import modality_shapley
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> X = pd.DataFrame({"signal": y + rng.normal(0, 0.3, 200),
    ...                   "noise": rng.normal(size=200)})
    >>> fuser = MultimodalFuser([("signal", "passthrough", ["signal"]),
    ...                          ("noise", "passthrough", ["noise"])], missing="mean")
    >>> model = make_pipeline(fuser, LogisticRegression()).fit(X, y)
    >>> result = modality_shapley(model, X)
    >>> result.values.shape  # rows, modalities, classes
    (200, 2, 2)
    >>> result.mean_abs_values.round(2)  # per modality and class
    array([[0.41, 0.41],
           [0.03, 0.03]])
    >>> total = result.base_values + result.values.sum(axis=1)
    >>> bool(np.allclose(total, model.predict_proba(X)))
    True
    >>> modality_shapley(model, X, y, scoring="accuracy").values.round(2)
    array([0.43, 0.01])
    """
    check_table(X, "modality_shapley")
    if not isinstance(interactions, (bool, np.bool_)):
        raise TypeError(f"interactions must be a bool; got {interactions!r}.")
    modalities = resolve_modalities(estimator, X, columns)
    check_disjoint(modalities, X, _OWNER)
    n_modalities = len(modalities)
    if n_modalities > MAX_MODALITIES:
        raise ValueError(
            f"modality_shapley takes at most {MAX_MODALITIES} modalities (2^M "
            f"predictions of X); got {n_modalities}. Group columns into modalities "
            "with columns={name: [columns]}."
        )
    evaluate, output_names = _game(estimator, X, y, scoring, response_method)
    absent = _absent_maker(X, modalities, baseline)
    names = [modality.name for modality in modalities]
    own_missing = isinstance(baseline, str) and baseline == "missing"
    outputs = np.stack(
        [
            _evaluate(evaluate, absent, coalition, names, own_missing)
            for coalition in range(2**n_modalities)
        ]
    )
    # (M, n[, k]) -> (n, M[, k]); a score gives (M,).
    values = np.tensordot(shapley_weights(n_modalities), outputs, axes=(1, 0))
    if values.ndim > 1:
        values = np.moveaxis(values, 0, 1)
    per_row = scoring is None
    result = _ShapleyBunch(
        values=values,
        base_values=outputs[0] if per_row else float(outputs[0]),
        full_values=outputs[-1] if per_row else float(outputs[-1]),
        modalities=np.asarray(names, dtype=object),
        output_names=output_names,
        mean_abs_values=np.abs(values).mean(axis=0) if per_row else np.abs(values),
    )
    if interactions:
        # (M, M, n[, k]) -> (n, M, M[, k]); a score gives (M, M).
        pairs = np.tensordot(interaction_weights(n_modalities), outputs, axes=(2, 0))
        if pairs.ndim > 2:
            pairs = np.moveaxis(pairs, (0, 1), (1, 2))
        result.interactions = pairs
    return result


class _ShapleyBunch(Bunch):
    """A Bunch whose ``values`` attribute is the Shapley values, as in SHAP.

    (A plain Bunch is a dict: ``bunch.values`` would be the dict's method.)
    """

    @property
    def values(self):
        return self["values"]


def shapley_weights(n_modalities):
    """The (M, 2^M) matrix that maps the coalitions' outputs to Shapley values.

    Coalition ``c`` holds modality ``i`` when bit ``i`` of ``c`` is set.
    """
    n_coalitions = 2**n_modalities
    weight = [
        factorial(size) * factorial(n_modalities - size - 1) / factorial(n_modalities)
        for size in range(n_modalities)
    ]
    matrix = np.zeros((n_modalities, n_coalitions))
    for coalition in range(n_coalitions):
        size = coalition.bit_count()
        for i in range(n_modalities):
            if not coalition >> i & 1:
                matrix[i, coalition | 1 << i] += weight[size]
                matrix[i, coalition] -= weight[size]
    return matrix


def interaction_weights(n_modalities):
    """The (M, M, 2^M) tensor that maps the coalitions' outputs to interactions.

    Off the diagonal, half the Shapley interaction index; on it, the Shapley value
    minus the row's interactions.
    """
    n_coalitions = 2**n_modalities
    tensor = np.zeros((n_modalities, n_modalities, n_coalitions))
    if n_modalities > 1:
        weight = [
            factorial(size)
            * factorial(n_modalities - size - 2)
            / (2 * factorial(n_modalities - 1))
            for size in range(n_modalities - 1)
        ]
        for coalition in range(n_coalitions):
            size = coalition.bit_count()
            for i in range(n_modalities):
                for j in range(i + 1, n_modalities):
                    if coalition >> i & 1 or coalition >> j & 1:
                        continue
                    w = weight[size]
                    tensor[i, j, coalition | 1 << i | 1 << j] += w
                    tensor[i, j, coalition | 1 << i] -= w
                    tensor[i, j, coalition | 1 << j] -= w
                    tensor[i, j, coalition] += w
                    tensor[j, i] = tensor[i, j]
    diagonal = shapley_weights(n_modalities) - tensor.sum(axis=1)
    tensor[np.arange(n_modalities), np.arange(n_modalities)] = diagonal
    return tensor


def _game(estimator, X, y, scoring, response_method):
    """The function of a modified X whose value is explained, and the output names."""
    if scoring is not None:
        if response_method != "auto":
            raise ValueError(
                "response_method is for explaining outputs; with scoring, the score "
                f"is explained (got response_method={response_method!r})."
            )
        if y is None:
            raise ValueError("scoring needs y, the targets of X.")
        scorer = check_scoring(estimator, scoring=scoring)
        y = np.asarray(y)
        if len(y) != X.shape[0]:
            raise ValueError(f"y has {len(y)} values for the {X.shape[0]} rows of X.")

        def score(data, repeats, where):
            value = checked_score(
                scorer, estimator, data, np.repeat(y, repeats), _OWNER, where
            )
            return np.asarray(value)

        return score, None
    if response_method == "auto":
        candidates = _METHODS if is_classifier(estimator) else ("predict",)
        method = next((m for m in candidates if hasattr(estimator, m)), None)
        if method is None:
            raise TypeError(
                f"{type(estimator).__name__} has none of the methods "
                f"{', '.join(candidates)}."
            )
    elif response_method in _METHODS:
        method = response_method
        if not hasattr(estimator, method):
            raise TypeError(
                f"{type(estimator).__name__} has no method {method!r} "
                f"(response_method={method!r})."
            )
    else:
        raise ValueError(
            "response_method must be 'auto', 'predict_proba', 'decision_function' or "
            f"'predict'; got {response_method!r}."
        )
    predict = getattr(estimator, method)
    classes = getattr(estimator, "classes_", None)
    output_names = None
    if method == "predict_proba" or (
        method == "decision_function" and classes is not None and len(classes) > 2
    ):
        output_names = np.asarray(classes)

    def output(data, repeats, where):
        out = np.asarray(predict(data), dtype=np.float64)
        check_finite_outputs(out, _OWNER, where)
        # Averaged over the background rows each row was repeated with.
        return out.reshape(-1, repeats, *out.shape[1:]).mean(axis=1)

    return output, output_names


def _absent_maker(X, modalities, baseline):
    """A function ``coalition -> (X with the absent modalities replaced, repeats)``."""
    if isinstance(baseline, str) and baseline == "missing":
        # Each column's all-missing version, made once and shared by the coalitions.
        blanks = {
            j: set_missing(column_values(X, j)[:, None], [0], slice(None))[:, 0]
            for modality in modalities
            for j in modality.indices
        }

        def make(coalition):
            new = {
                j: blanks[j]
                for i, modality in enumerate(modalities)
                if not coalition >> i & 1
                for j in modality.indices
            }
            return replace_columns(X, new), 1

        return make
    if isinstance(baseline, str) and baseline == "mean":
        fills = {
            j: _column_mean(X, j, modality.name)
            for modality in modalities
            for j in modality.indices
        }

        def make(coalition):
            new = {}
            for i, modality in enumerate(modalities):
                if not coalition >> i & 1:
                    for j in modality.indices:
                        new[j] = _constant_column(fills[j], X.shape[0])
            return replace_columns(X, new), 1

        return make
    if isinstance(baseline, str) or not hasattr(baseline, "shape"):
        raise ValueError(
            "baseline must be 'missing', 'mean', or a background sample (a DataFrame "
            f"or an array with the columns of X); got {baseline!r}."
        )
    if len(baseline.shape) != 2 or baseline.shape[1] != X.shape[1]:
        raise ValueError(
            f"the background sample must have the {X.shape[1]} columns of X; got "
            f"shape {tuple(baseline.shape)}."
        )
    if baseline.shape[0] == 0:
        raise ValueError("the background sample has no row.")
    n_background = baseline.shape[0]
    # Every row of X once per background row: rows i*K .. i*K+K-1 are row i.
    originals = {
        j: np.repeat(column_values(X, j), n_background)
        for modality in modalities
        for j in modality.indices
    }
    background = {j: np.tile(column_values(baseline, j), X.shape[0]) for j in originals}
    repeated = replace_columns(
        _take_rows(X, np.repeat(np.arange(X.shape[0]), n_background)), {}
    )

    def make(coalition):
        new = {}
        for i, modality in enumerate(modalities):
            source = originals if coalition >> i & 1 else background
            for j in modality.indices:
                new[j] = source[j]
        return replace_columns(repeated, new), n_background

    return make


def _take_rows(X, rows):
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    return np.asarray(X)[rows]


def _column_mean(X, j, name):
    """The mean of column ``j``'s present items: a number or an array."""
    values = column_values(X, j)
    present = values[~missing_cells(values)]
    label = X.columns[j] if hasattr(X, "columns") else j
    if len(present) == 0:
        raise ValueError(
            f"baseline='mean': column {label!r} (modality {name!r}) has no present "
            "item to average."
        )
    try:
        items = [np.asarray(item, dtype=np.float64) for item in present]
        shapes = {item.shape for item in items}
        if len(shapes) != 1:
            raise ValueError(f"items of {len(shapes)} different shapes")
        mean = np.mean(items, axis=0)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"baseline='mean' cannot average column {label!r} (modality {name!r}): "
            f"{exc}. Pass a background sample as baseline instead."
        ) from exc
    if mean.ndim == 0:
        return mean.item()
    # Items keep their dtype, hence their scale (uint8 pixels are 0-255, floats 0-1).
    dtype = np.asarray(present[0]).dtype
    return (mean.round() if dtype.kind in "iu" else mean).astype(dtype)


def _constant_column(item, n_rows):
    """A column holding ``item`` in each of ``n_rows`` rows: floats, or objects."""
    if np.ndim(item) == 0:
        return np.full(n_rows, item, dtype=np.float64)
    values = np.empty(n_rows, dtype=object)
    for row in range(n_rows):
        values[row] = item
    return values


def _evaluate(evaluate, absent, coalition, names, own_missing):
    """The game's value for one coalition (bit i set: modality i present)."""
    data, repeats = absent(coalition)
    missing = [name for i, name in enumerate(names) if not coalition >> i & 1]
    where = (
        f"with modality(ies) {', '.join(map(repr, missing))} absent"
        if missing
        else "with every modality present"
    )
    if not (own_missing and missing):
        return evaluate(data, repeats, where)
    with warnings.catch_warnings():
        if len(missing) == len(names):
            # With no modality, a late-fusion model warns that every row falls back
            # to the class frequencies: that is the base value, as intended.
            warnings.filterwarnings("ignore", message=".*every modality missing")
        try:
            return evaluate(data, repeats, where)
        except NonFiniteOutputError:
            raise
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"the model cannot predict with modality {', '.join(map(repr, missing))}"
                f" missing ({type(exc).__name__}: {exc}). Use baseline='mean' or a "
                "background sample for models that need every modality."
            ) from exc
