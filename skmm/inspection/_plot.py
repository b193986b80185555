"""Plot of modality importances."""

import numpy as np

__all__ = ["plot_modality_importance"]


def plot_modality_importance(result, ax=None):
    """Bar plot of each modality's permutation importance, the largest on top.

    Bars show the mean decrease of the score with its standard deviation; dots show
    the individual permutations.

    Parameters
    ----------
    result : :class:`~sklearn.utils.Bunch`
        The output of :func:`modality_importance`.
    ax : matplotlib Axes, default=None
        The axes to draw on; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    See Also
    --------
    modality_importance : Compute the importances.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.utils import Bunch
    >>> from skmm.inspection import plot_modality_importance
    >>> importances = np.array([[0.02, 0.01], [0.30, 0.28]])
    >>> result = Bunch(importances=importances,
    ...                importances_mean=importances.mean(axis=1),
    ...                importances_std=importances.std(axis=1),
    ...                modalities=np.array(["noise", "audio"], dtype=object))
    >>> ax = plot_modality_importance(result)
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['noise', 'audio']
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "plot_modality_importance needs matplotlib: pip install 'skmm[plot]'."
        ) from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.6 * len(result.modalities) + 1.5))
    # Ascending order: barh draws the first bar at the bottom.
    order = np.argsort(result.importances_mean)
    positions = np.arange(len(order))
    ax.barh(
        positions,
        result.importances_mean[order],
        xerr=result.importances_std[order],
        color="tab:blue",
        alpha=0.6,
    )
    # Each repeat as a dot, so the spread of the permutations shows.
    for position, i in zip(positions, order):
        repeats = result.importances[i]
        ax.plot(repeats, np.full(len(repeats), position), "k.", markersize=4)
    ax.set_yticks(positions, labels=[str(result.modalities[i]) for i in order])
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("decrease in score when the modality is shuffled")
    ax.set_title("Modality importance")
    return ax
