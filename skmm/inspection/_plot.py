"""Plots of modality importances and modality Shapley values."""

import numpy as np

__all__ = [
    "plot_modality_importance",
    "plot_modality_shapley",
    "plot_modality_waterfall",
]


def _pyplot(function):
    """matplotlib.pyplot, imported when a plot is drawn (an optional dependency)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{function} needs matplotlib: pip install 'skmm[plot]'."
        ) from exc
    return plt


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
    plt = _pyplot("plot_modality_importance")
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


def plot_modality_shapley(result, ax=None):
    """Bar plot of the global Shapley view: mean absolute value per modality.

    With per-class outputs (probabilities), each bar is split into one segment per
    class, so the plot shows both how much each modality matters overall and for
    which classes. The largest modality is on top.

    Parameters
    ----------
    result : :class:`~sklearn.utils.Bunch`
        The output of :func:`modality_shapley` (its ``mean_abs_values``,
        ``modalities`` and ``output_names``).
    ax : matplotlib Axes, default=None
        The axes to draw on; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    See Also
    --------
    modality_shapley : Compute the values.
    plot_modality_waterfall : One row's values.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.utils import Bunch
    >>> from skmm.inspection import plot_modality_shapley
    >>> result = Bunch(mean_abs_values=np.array([[0.3, 0.1], [0.02, 0.01]]),
    ...                modalities=np.array(["audio", "noise"], dtype=object),
    ...                output_names=np.array(["cat", "dog"]))
    >>> ax = plot_modality_shapley(result)
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['noise', 'audio']
    """
    plt = _pyplot("plot_modality_shapley")
    means = np.asarray(result.mean_abs_values, dtype=float)
    if means.ndim == 1:
        means = means[:, None]
    n_modalities, n_outputs = means.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.6 * n_modalities + 1.5))
    # Ascending order: barh draws the first bar at the bottom.
    order = np.argsort(means.sum(axis=1))
    positions = np.arange(n_modalities)
    names = result.get("output_names")
    left = np.zeros(n_modalities)
    colors = plt.get_cmap("tab10" if n_outputs <= 10 else "tab20")
    for k in range(n_outputs):
        label = None if names is None else str(names[k])
        ax.barh(
            positions,
            means[order, k],
            left=left,
            color=colors(k % colors.N) if n_outputs > 1 else "tab:blue",
            label=label,
        )
        left += means[order, k]
    ax.set_yticks(positions, labels=[str(result.modalities[i]) for i in order])
    ax.set_xlabel("mean |Shapley value| (output explained)")
    ax.set_title("Modality Shapley values")
    if names is not None and n_outputs > 1:
        ax.legend(
            title="class",
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
            borderaxespad=0,
        )
    return ax


def plot_modality_waterfall(result, row, *, output=None, ax=None):
    """Waterfall of one row's Shapley values, from the base value to the output.

    Starting from the output with no modality present (``base_values``), each
    modality's value moves the output up (red) or down (blue) until it reaches the
    output with every modality present. The largest move is on top.

    Parameters
    ----------
    result : :class:`~sklearn.utils.Bunch`
        The output of :func:`modality_shapley` (per-row values, not a score's).
    row : int
        The row's position in the explained X.
    output : class label, int or None, default=None
        With per-class outputs, the class to show (a label of ``output_names``);
        None shows the class with the highest output. For other multi-output
        values, the output's position.
    ax : matplotlib Axes, default=None
        The axes to draw on; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    See Also
    --------
    modality_shapley : Compute the values.
    plot_modality_shapley : The global view.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.utils import Bunch
    >>> from skmm.inspection import plot_modality_waterfall
    >>> result = Bunch(values=np.array([[0.4, -0.1]]), base_values=np.array([0.5]),
    ...                full_values=np.array([0.8]), output_names=None,
    ...                modalities=np.array(["audio", "image"], dtype=object))
    >>> ax = plot_modality_waterfall(result, 0)
    >>> [round(float(bar.get_width()), 2) for bar in ax.patches]
    [-0.1, 0.4]
    """
    plt = _pyplot("plot_modality_waterfall")
    values = np.asarray(result["values"], dtype=float)
    if values.ndim == 1:
        raise ValueError(
            "plot_modality_waterfall shows one row's values; these values explain a "
            "score (modality_shapley was called with scoring)."
        )
    n_rows = values.shape[0]
    if not -n_rows <= row < n_rows:
        raise IndexError(f"row {row} is out of range for {n_rows} explained rows.")
    values = values[row]
    base = np.asarray(result.base_values, dtype=float)[row]
    full = np.asarray(result.full_values, dtype=float)[row]
    title = f"row {row}"
    if values.ndim == 2:
        k = _output_position(result.get("output_names"), output, full)
        values, base, full = values[:, k], base[k], full[k]
        names = result.get("output_names")
        title += f", output {names[k] if names is not None else k}"
    elif output is not None:
        raise ValueError("output is for per-class or multi-output values only.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.6 * len(values) + 1.5))
    # Bars from the bottom (base value) up, the largest move last so it is on top.
    order = np.argsort(np.abs(values))
    starts = base + np.concatenate([[0.0], np.cumsum(values[order])[:-1]])
    positions = np.arange(len(order))
    ax.barh(
        positions,
        values[order],
        left=starts,
        color=np.where(values[order] >= 0, "tab:red", "tab:blue"),
    )
    for position, i, start in zip(positions, order, starts):
        ax.text(
            start + values[i] / 2,
            position,
            f"{values[i]:+.3g}",
            ha="center",
            va="center",
            fontsize="small",
            color="white",
            fontweight="bold",
        )
    ax.set_yticks(positions, labels=[str(result.modalities[i]) for i in order])
    ax.axvline(base, color="grey", linestyle="--", linewidth=1)
    ax.axvline(full, color="black", linestyle="-", linewidth=1)
    ax.set_xlabel(f"output: {base:.3g} with no modality, {full:.3g} with all")
    ax.set_title(f"Modality Shapley values, {title}")
    return ax


def _output_position(names, output, full):
    if output is None:
        return int(np.argmax(full))
    if names is not None:
        matches = np.flatnonzero(np.asarray(names) == output)
        if len(matches) == 0:
            raise ValueError(
                f"output {output!r} is not one of the classes {list(names)}."
            )
        return int(matches[0])
    if not isinstance(output, (int, np.integer)) or not 0 <= output < len(full):
        raise ValueError(
            f"output must be an output position in [0, {len(full)}); got {output!r}."
        )
    return int(output)
