"""Permutation importance of whole modalities."""

from numbers import Integral

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_random_state

from ._modalities import check_table, checked_score, resolve_modalities

__all__ = ["modality_importance"]


def modality_importance(
    estimator, X, y, *, columns=None, scoring=None, n_repeats=5, random_state=None
):
    """Permutation importance of each modality, its columns shuffled together.

    For each modality, the rows of its columns are shuffled with one permutation
    (so the columns of a modality, say 40 MFCC statistics, keep their relation to
    each other but lose their relation to the target and to the other modalities),
    and the drop of the score is recorded, ``n_repeats`` times. This is
    :func:`sklearn.inspection.permutation_importance` with groups of columns; it
    works for any fitted estimator that takes X: a pipeline with a
    :class:`~skmm.fusion.MultimodalFuser`, a
    :class:`~skmm.fusion.LateFusionClassifier`, a network.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator that takes X.
    X : DataFrame or ndarray of shape (n_samples, n_columns)
        The data to score on (held-out data tells what the model relies on to
        generalise).
    y : array-like of shape (n_samples,)
        The targets.
    columns : dict, list or None, default=None
        The modalities. A dict maps each modality's name to its columns (a name, a
        list of names, an int, a list of ints, a slice, a boolean mask or a
        callable, as in :class:`~sklearn.compose.ColumnTransformer`); a list gives
        one column (or selection) per modality, named after it. None takes the
        modalities of a skmm composite (a :class:`~skmm.fusion.MultimodalFuser` at
        the head of a pipeline, the late-fusion ensembles, the networks), with its
        names, and makes every column of X a modality for other estimators.
    scoring : str, callable or None, default=None
        The score, as in :func:`~sklearn.metrics.check_scoring`; None is the
        estimator's ``score`` method.
    n_repeats : int, default=5
        Permutations per modality.
    random_state : int, RandomState instance or None, default=None
        Seeds the permutations: one seed per modality is drawn from it, in order,
        as :func:`~sklearn.inspection.permutation_importance` does per column.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``importances_mean`` and ``importances_std`` of shape (n_modalities,),
        ``importances`` of shape (n_modalities, n_repeats) (the score decreases),
        ``modalities`` (the names, ndarray of str) and ``baseline_score``.

    See Also
    --------
    plot_modality_importance : Plot the result.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skmm.inspection import modality_importance
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 200),
    ...                   "b": y + rng.normal(0, 0.3, 200),
    ...                   "noise": rng.normal(size=200)})
    >>> model = LogisticRegression().fit(X, y)
    >>> result = modality_importance(
    ...     model, X, y, columns={"signal": ["a", "b"], "noise": "noise"},
    ...     random_state=0)
    >>> result.modalities
    array(['signal', 'noise'], dtype=object)
    >>> bool(result.importances_mean[0] > 0.3), bool(abs(result.importances_mean[1]) < 0.05)
    (True, True)
    """
    if (
        not isinstance(n_repeats, Integral)
        or isinstance(n_repeats, bool)
        or n_repeats < 1
    ):
        raise ValueError(f"n_repeats must be an int >= 1; got {n_repeats!r}.")
    check_table(X, "modality_importance")
    modalities = resolve_modalities(estimator, X, columns)
    scorer = check_scoring(estimator, scoring=scoring)
    baseline = checked_score(
        scorer, estimator, X, y, "modality_importance", "on X as given"
    )
    random_state = check_random_state(random_state)
    seeds = random_state.randint(np.iinfo(np.int32).max, size=len(modalities))
    importances = np.empty((len(modalities), n_repeats))
    for i, (modality, seed) in enumerate(zip(modalities, seeds)):
        indices = modality.indices
        rng = np.random.RandomState(seed)
        for repeat in range(n_repeats):
            shuffled = _permute_columns(X, indices, rng.permutation(X.shape[0]))
            importances[i, repeat] = baseline - checked_score(
                scorer,
                estimator,
                shuffled,
                y,
                "modality_importance",
                f"with modality {modality.name!r} permuted",
            )
    return Bunch(
        importances_mean=importances.mean(axis=1),
        importances_std=importances.std(axis=1),
        importances=importances,
        modalities=np.asarray([modality.name for modality in modalities], dtype=object),
        baseline_score=baseline,
    )


def _permute_columns(X, indices, permutation):
    """A copy of X whose ``indices`` columns have their rows in ``permutation`` order."""
    if hasattr(X, "iloc"):
        shuffled = X.copy()
        for j in indices:
            shuffled.isetitem(j, X.iloc[permutation, j].to_numpy())
        return shuffled
    shuffled = np.array(X, copy=True)
    shuffled[:, indices] = np.asarray(X)[permutation][:, indices]
    return shuffled
