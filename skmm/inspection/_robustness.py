"""Robustness curves: the score as one modality is progressively corrupted."""

import os
from numbers import Integral, Real

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_random_state

from ..utils._composition import is_missing, missing_cells
from ._modalities import (
    check_table,
    checked_score,
    column_values,
    replace_columns,
    resolve_modalities,
    set_missing,
)

__all__ = ["RobustnessDisplay", "make_robustness_scorer", "robustness_curve"]

KINDS = ("image", "audio", "text", "numeric")
_CORRUPTIONS = ("missing", "noise", "dropout")
# The encoders (or the first step of a model's pipeline) that tell a modality's kind.
_ENCODER_KINDS = {
    "ImageEncoder": "image",
    "AudioEncoder": "audio",
    "AudioFeatures": "audio",
    "TextEncoder": "text",
    "TfidfVectorizer": "text",
    "CountVectorizer": "text",
    "HashingVectorizer": "text",
}
_FILE_KINDS = {
    **dict.fromkeys(
        (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"), "image"
    ),
    **dict.fromkeys((".webp", ".ppm", ".pgm"), "image"),
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg"), "audio"),
}
# Default levels: rates for "missing" and "dropout"; noise strength per kind (for
# audio, the signal-to-noise ratio in dB, from clean to drowned).
_DEFAULT_LEVELS = {
    "missing": np.linspace(0, 1, 6),
    "dropout": np.linspace(0, 1, 6),
    ("noise", "image"): np.array([0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]),
    ("noise", "audio"): np.array([40.0, 30, 20, 10, 5, 0, -5]),
    ("noise", "text"): np.linspace(0, 1, 6),
    ("noise", "numeric"): np.array([0, 0.25, 0.5, 1, 2, 4]),
}
_LEVEL_NAMES = {
    "missing": "fraction of rows with the modality missing",
    "dropout": "dropout rate",
    ("noise", "image"): "Gaussian pixel noise (std, fraction of the pixel range)",
    ("noise", "audio"): "signal-to-noise ratio (dB)",
    ("noise", "text"): "word dropout rate",
    ("noise", "numeric"): "Gaussian noise (std, in column standard deviations)",
}


def robustness_curve(
    estimator,
    X,
    y,
    *,
    modality,
    corruption="missing",
    levels=None,
    scoring=None,
    kind=None,
    columns=None,
    n_repeats=1,
    random_state=None,
):
    """Score of a fitted model as one modality is progressively corrupted.

    At each level, the modality's cells of X are corrupted (the other modalities
    are left as they are) and the model is scored, ``n_repeats`` times with
    different random draws. A robust model's curve stays flat; a model that
    relies on one modality alone falls when that modality fails.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator that takes X.
    X : DataFrame or ndarray of shape (n_samples, n_columns)
        Held-out data.
    y : array-like of shape (n_samples,)
        The targets.
    modality : str
        The modality to corrupt: a name of the estimator's modalities (its
        encoders' or models' names in a skmm composite), or of ``columns``.
    corruption : {"missing", "noise", "dropout"} or callable, default="missing"
        - ``"missing"``: the level is the fraction of rows whose modality is made
          missing (None or NaN cells), through the model's own missing-modality
          mechanism.
        - ``"noise"``: noise of the modality's kind. Images: Gaussian noise whose
          standard deviation is the level times the pixel range (255 for integer
          pixels, 1 for floats), clipped to that range. Audio: white noise at a
          signal-to-noise ratio of the level in dB (each sound's own power). Text:
          word dropout, each word removed with probability the level. Numbers:
          Gaussian noise whose standard deviation is the level times the column's.
        - ``"dropout"``: each pixel, audio sample, word or number is set to zero
          (words removed) with probability the level.
        - a callable ``corruption(values, level, rng)`` taking one column of the
          modality as a 1-D array (a copy), the level and a
          :class:`numpy.random.Generator`, and returning the corrupted column.
    levels : array-like of float, default=None
        The levels, in order. None: rates ``0, 0.2, ..., 1`` for ``"missing"`` and
        ``"dropout"``; for ``"noise"``, ``0 ... 1`` (images), SNR ``40 ... -5`` dB
        (audio), ``0 ... 1`` (text), ``0 ... 4`` (numbers). Required for a callable.
    scoring : str, callable or None, default=None
        The score, as in :func:`~sklearn.metrics.check_scoring`; None is the
        estimator's ``score`` method.
    kind : {"image", "audio", "text", "numeric"} or None, default=None
        The modality's kind, for ``"noise"`` and ``"dropout"``. None infers it from
        the modality's encoder (``ImageEncoder``, ``AudioFeatures``, ...) or else
        from its items (2-D arrays are images, 1-D arrays sounds, strings texts
        unless they are file names of images or sounds, numeric columns numbers).
        Noise needs items in memory: paths are refused.
    columns : dict, list or None, default=None
        The modalities, as in :func:`modality_shapley`; None takes the estimator's.
    n_repeats : int, default=1
        Random draws per level.
    random_state : int, RandomState instance or None, default=None
        Seeds the corruptions: one seed per level and repeat is drawn from it.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``levels`` (n_levels,), ``scores`` (n_levels,) (the mean over the repeats),
        ``scores_std``, ``all_scores`` (n_levels, n_repeats), ``area`` (the area under
        the curve divided by the width of the range of levels: the curve's average
        score), ``modality``, ``corruption``, ``kind`` and ``level_name`` (what the
        levels measure).

    See Also
    --------
    RobustnessDisplay : Plot robustness curves.
    make_robustness_scorer : The area under the curve, as a scorer.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from skmm.fusion import LateFusionClassifier
    >>> from skmm.inspection import robustness_curve
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 300)
    >>> X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 300),
    ...                   "b": y + rng.normal(0, 0.8, 300)})
    >>> model = LateFusionClassifier(
    ...     [("a", GaussianNB(), ["a"]), ("b", GaussianNB(), ["b"])]).fit(X, y)
    >>> curve = robustness_curve(model, X, y, modality="a", levels=[0, 0.5, 1],
    ...                          random_state=0)
    >>> curve.scores.round(2)
    array([0.97, 0.87, 0.74])
    """
    check_table(X, "robustness_curve")
    found = _find_modality(estimator, X, modality, columns)
    name, indices, encoder = found.name, found.indices, found.estimator
    _check_corruption(corruption)
    if (
        not isinstance(n_repeats, Integral)
        or isinstance(n_repeats, bool)
        or n_repeats < 1
    ):
        raise ValueError(f"n_repeats must be an int >= 1; got {n_repeats!r}.")
    if corruption in ("noise", "dropout"):
        kind = _infer_kind(X, indices, encoder, name) if kind is None else kind
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None; got {kind!r}.")
    key = (corruption, kind) if corruption == "noise" else corruption
    levels = _check_levels(levels, key, corruption)
    scorer = check_scoring(estimator, scoring=scoring)
    seeds = check_random_state(random_state).randint(
        np.iinfo(np.int32).max, size=(len(levels), n_repeats)
    )
    scales = {j: _column_scale(X, j) for j in indices}
    all_scores = np.empty((len(levels), n_repeats))
    for a, level in enumerate(levels):
        for r in range(n_repeats):
            rng = np.random.default_rng(seeds[a, r])
            if corruption == "missing":
                # The same rows in every column: a modality is missing as a whole.
                rows = rng.permutation(X.shape[0])[: int(round(level * X.shape[0]))]
                corrupted = set_missing(X, indices, rows)
            else:
                corrupted = replace_columns(
                    X,
                    {
                        j: _corrupt(X, j, corruption, kind, level, rng, scales[j])
                        for j in indices
                    },
                )
            all_scores[a, r] = checked_score(
                scorer,
                estimator,
                corrupted,
                y,
                "robustness_curve",
                f"with {corruption if isinstance(corruption, str) else 'custom'} "
                f"corruption at level {level} of modality {name!r}",
            )
    scores = all_scores.mean(axis=1)
    return Bunch(
        levels=levels,
        scores=scores,
        scores_std=all_scores.std(axis=1),
        all_scores=all_scores,
        area=_area(levels, scores),
        modality=name,
        corruption=corruption if isinstance(corruption, str) else "custom",
        kind=kind,
        level_name=_LEVEL_NAMES.get(key, "corruption level")
        if isinstance(corruption, str)
        else getattr(corruption, "__name__", "corruption level"),
    )


def _find_modality(estimator, X, modality, columns):
    modalities = resolve_modalities(estimator, X, columns)
    for found in modalities:
        if found.name == modality:
            return found
    raise ValueError(
        f"modality {modality!r} is not one of the model's modalities "
        f"{[found.name for found in modalities]}."
    )


def _check_corruption(corruption):
    if callable(corruption):
        return
    if not isinstance(corruption, str) or corruption not in _CORRUPTIONS:
        raise ValueError(
            f"corruption must be one of {_CORRUPTIONS} or a callable "
            f"corruption(values, level, rng); got {corruption!r}."
        )


def _check_levels(levels, key, corruption):
    if levels is None:
        if callable(corruption):
            raise ValueError("levels are required with a callable corruption.")
        return _DEFAULT_LEVELS[key].astype(np.float64)
    try:
        levels = np.asarray(levels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"levels must be numbers; got {levels!r}.") from exc
    if levels.ndim != 1 or len(levels) == 0 or not np.isfinite(levels).all():
        raise ValueError(
            f"levels must be a non-empty 1-D list of finite numbers; got {levels!r}."
        )
    rates = corruption in ("missing", "dropout") or key == ("noise", "text")
    if rates and ((levels < 0) | (levels > 1)).any():
        raise ValueError(
            f"the levels of {corruption!r} are rates in [0, 1]; got {levels.tolist()}."
        )
    if key in (("noise", "image"), ("noise", "numeric")) and (levels < 0).any():
        raise ValueError(
            f"noise levels are standard deviations >= 0; got {levels.tolist()}."
        )
    return levels


def _area(levels, scores):
    """The area under the curve over the width of the levels: the average score."""
    if len(levels) == 1:
        return float(scores[0])
    width = levels[-1] - levels[0]
    if width == 0:
        return float(np.mean(scores))
    return float(np.trapezoid(scores, levels) / width)


def _encoder_kind(encoder):
    steps = getattr(encoder, "steps", None)
    if steps:
        encoder = steps[0][1]
    transformer = getattr(encoder, "transformer", None)  # a net's tabular tower
    if transformer is not None and not isinstance(transformer, str):
        encoder = transformer
    return _ENCODER_KINDS.get(type(encoder).__name__)


def _infer_kind(X, indices, encoder, name):
    kind = _encoder_kind(encoder)
    if kind is not None:
        return kind
    values = column_values(X, indices[0])
    if values.dtype.kind in "fbiu":
        return "numeric"
    present = values[~missing_cells(values)]
    item = present[0] if len(present) else None
    if isinstance(item, (str, os.PathLike)):
        # A file name of a known type is an image or a sound, not a text.
        extension = os.path.splitext(os.fspath(item))[1].lower()
        return _FILE_KINDS.get(extension, "text")
    if isinstance(item, Real):
        return "numeric"
    if hasattr(item, "getbands"):  # a PIL image
        return "image"
    if isinstance(item, np.ndarray) and item.ndim == 1:
        return "audio"
    if isinstance(item, np.ndarray) and item.ndim >= 2:
        return "image"
    raise ValueError(
        f"cannot tell the kind of modality {name!r} from its items "
        f"({type(item).__name__}); pass kind='image', 'audio', 'text' or 'numeric'."
    )


def _column_scale(X, j):
    """A numeric column's standard deviation (for numeric noise), else None."""
    values = column_values(X, j)
    if values.dtype.kind in "fbiu":
        values = values.astype(np.float64)
        return float(np.nanstd(values)) if (~np.isnan(values)).any() else 0.0
    return None


def _corrupt(X, j, corruption, kind, level, rng, scale):
    """Column ``j`` of X, corrupted at ``level``."""
    values = column_values(X, j)
    label = X.columns[j] if hasattr(X, "columns") else j
    if callable(corruption):
        out = np.asarray(corruption(values, level, rng))
        if out.shape != values.shape:
            raise ValueError(
                f"the corruption returned an array of shape {out.shape} for column "
                f"{label!r} of shape {values.shape}."
            )
        return out
    if values.dtype.kind in "fbiu":
        values = values.astype(np.float64)
        if corruption == "dropout":
            return values * (rng.random(len(values)) >= level)
        if kind != "numeric":
            raise ValueError(
                f"column {label!r} holds numbers; noise of kind {kind!r} needs items "
                "(arrays or texts). Pass kind='numeric'."
            )
        return values + rng.normal(0, level * scale, len(values))
    out = np.empty(len(values), dtype=object)
    for row, item in enumerate(values):
        if is_missing(item):
            out[row] = item  # a missing item stays missing
        else:
            out[row] = _corrupt_item(item, corruption, kind, level, rng, label, row)
    return out


def _corrupt_item(item, corruption, kind, level, rng, label, row):
    if kind == "text":
        if not isinstance(item, str):
            raise TypeError(
                f"column {label!r}, row {row}: word dropout needs a str; got "
                f"{type(item).__name__}."
            )
        words = item.split()
        return " ".join(w for w, u in zip(words, rng.random(len(words))) if u >= level)
    if isinstance(item, (str, os.PathLike)):
        raise TypeError(
            f"column {label!r}, row {row}: {corruption!r} on {kind} items needs them "
            f"in memory (arrays); got the path {os.fspath(item)!r}. Load the items "
            "first, or pass a callable corruption."
        )
    if isinstance(item, Real) and kind == "numeric":
        item = float(item)
        if corruption == "dropout":
            return 0.0 if rng.random() < level else item
        raise ValueError(
            f"column {label!r}, row {row}: numeric noise needs a numeric column."
        )
    array = np.asarray(item)
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"column {label!r}, row {row}: cannot add {kind} noise to an item of "
            f"type {type(item).__name__} (dtype {array.dtype})."
        )
    if corruption == "dropout":
        return (array * (rng.random(array.shape) >= level)).astype(array.dtype)
    if kind == "audio":
        signal = array.astype(np.float64)
        power = float(np.mean(signal**2)) or 1e-12
        noise = rng.normal(0, np.sqrt(power / 10 ** (level / 10)), array.shape)
        return (signal + noise).astype(
            array.dtype if array.dtype.kind == "f" else np.float32
        )
    if kind == "image":
        top = float(np.iinfo(array.dtype).max) if array.dtype.kind in "iu" else 1.0
        noisy = np.clip(array + rng.normal(0, level * top, array.shape), 0, top)
        return (noisy.round() if array.dtype.kind in "iu" else noisy).astype(
            array.dtype
        )
    return (array + rng.normal(0, level * np.std(array), array.shape)).astype(
        array.dtype if array.dtype.kind == "f" else np.float64
    )


def make_robustness_scorer(
    modality,
    *,
    corruption="missing",
    levels=None,
    scoring=None,
    kind=None,
    columns=None,
    n_repeats=1,
    random_state=None,
):
    """A scorer: the average score along a modality's robustness curve.

    The scorer computes :func:`robustness_curve` on the data it is given and
    returns its ``area`` (the area under the curve over the width of the levels),
    so that :func:`~sklearn.model_selection.cross_validate` or
    :class:`~sklearn.model_selection.GridSearchCV` can compare or tune models on
    how well they hold up when a modality degrades, not only on clean data.

    Parameters
    ----------
    modality : str
        The modality to corrupt.
    corruption, levels, scoring, kind, columns, n_repeats, random_state
        As in :func:`robustness_curve`; ``scoring`` is the score along the curve.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returns the area (greater is better when the
        score is).

    See Also
    --------
    robustness_curve : The curve itself.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.model_selection import cross_validate
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from skmm.fusion import LateFusionClassifier
    >>> from skmm.inspection import make_robustness_scorer
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 300)
    >>> X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 300),
    ...                   "b": y + rng.normal(0, 0.8, 300)})
    >>> model = LateFusionClassifier(
    ...     [("a", GaussianNB(), ["a"]), ("b", GaussianNB(), ["b"])])
    >>> scoring = {"accuracy": "accuracy",
    ...            "robust_a": make_robustness_scorer("a", random_state=0)}
    >>> cv = cross_validate(model, X, y, scoring=scoring, cv=3)
    >>> bool((cv["test_robust_a"] < cv["test_accuracy"]).all())
    True
    """
    return _RobustnessScorer(
        modality=modality,
        corruption=corruption,
        levels=levels,
        scoring=scoring,
        kind=kind,
        columns=columns,
        n_repeats=n_repeats,
        random_state=random_state,
    )


class _RobustnessScorer:
    """The area under a robustness curve, as a scorer ``scorer(estimator, X, y)``."""

    def __init__(self, **params):
        self._params = params

    def __call__(self, estimator, X, y, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "the robustness scorer does not take sample_weight; weight the "
                "scoring it is built with instead."
            )
        return robustness_curve(estimator, X, y, **self._params).area

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"make_robustness_scorer({args})"


class RobustnessDisplay:
    """Robustness curve visualization: the score as a modality is corrupted.

    Build it with :meth:`from_estimator` (which computes the curve with
    :func:`robustness_curve`), or from a computed curve. Calling :meth:`plot` on
    the same ``ax`` with several models draws their curves on the same axes.

    Parameters
    ----------
    levels : ndarray of shape (n_levels,)
        The corruption levels.
    scores : ndarray of shape (n_levels,)
        The score at each level.
    scores_std : ndarray of shape (n_levels,), default=None
        The standard deviation over repeats, drawn as a band.
    level_name : str, default=None
        What the levels measure (the x label).
    modality : str, default=None
        The corrupted modality (in the title).
    estimator_name : str, default=None
        The curve's label in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The curve.
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding the axes.

    See Also
    --------
    robustness_curve : Compute the curve.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from skmm.fusion import LateFusionClassifier
    >>> from skmm.inspection import RobustnessDisplay
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 300)
    >>> X = pd.DataFrame({"a": y + rng.normal(0, 0.3, 300),
    ...                   "b": y + rng.normal(0, 0.8, 300)})
    >>> model = LateFusionClassifier(
    ...     [("a", GaussianNB(), ["a"]), ("b", GaussianNB(), ["b"])]).fit(X, y)
    >>> display = RobustnessDisplay.from_estimator(
    ...     model, X, y, modality="a", levels=[0, 0.5, 1], random_state=0)
    >>> display.levels, display.scores.round(2)
    (array([0. , 0.5, 1. ]), array([0.97, 0.87, 0.74]))
    """

    def __init__(
        self,
        *,
        levels,
        scores,
        scores_std=None,
        level_name=None,
        modality=None,
        estimator_name=None,
    ):
        self.levels = levels
        self.scores = scores
        self.scores_std = scores_std
        self.level_name = level_name
        self.modality = modality
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Plot the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            The axes to draw on (another model's curve may already be there); a
            new figure when None.
        name : str, default=None
            The legend label; ``estimator_name`` when None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : RobustnessDisplay
            This display, with ``line_``, ``ax_`` and ``figure_`` set.
        """
        from ._plot import _pyplot

        plt = _pyplot("RobustnessDisplay.plot")
        if ax is None:
            _, ax = plt.subplots()
        name = self.estimator_name if name is None else name
        levels = np.asarray(self.levels, dtype=float)
        scores = np.asarray(self.scores, dtype=float)
        (self.line_,) = ax.plot(levels, scores, marker="o", label=name, **kwargs)
        if self.scores_std is not None and np.any(self.scores_std):
            std = np.asarray(self.scores_std, dtype=float)
            ax.fill_between(
                levels,
                scores - std,
                scores + std,
                color=self.line_.get_color(),
                alpha=0.2,
            )
        # Degradation reads left to right: decreasing levels (an audio SNR) flip x.
        if len(levels) > 1 and levels[-1] < levels[0] and not ax.xaxis_inverted():
            ax.invert_xaxis()
        ax.set_xlabel(self.level_name or "corruption level")
        ax.set_ylabel("score")
        if self.modality is not None:
            title = f"Robustness to corrupting {self.modality!r}"
            # Curves of different modalities on one axes share a neutral title.
            previous = ax.get_title()
            ax.set_title(title if previous in ("", title) else "Robustness curves")
        if name is not None:
            ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        modality,
        corruption="missing",
        levels=None,
        scoring=None,
        kind=None,
        columns=None,
        n_repeats=1,
        random_state=None,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Compute a fitted model's robustness curve and plot it.

        Parameters
        ----------
        estimator : estimator
            A fitted estimator that takes X.
        X : DataFrame or ndarray of shape (n_samples, n_columns)
            Held-out data.
        y : array-like of shape (n_samples,)
            The targets.
        modality, corruption, levels, scoring, kind, columns, n_repeats, random_state
            As in :func:`robustness_curve`.
        name : str, default=None
            The legend label; the estimator's class name when None.
        ax : matplotlib Axes, default=None
            The axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : RobustnessDisplay
            The plotted display.
        """
        curve = robustness_curve(
            estimator,
            X,
            y,
            modality=modality,
            corruption=corruption,
            levels=levels,
            scoring=scoring,
            kind=kind,
            columns=columns,
            n_repeats=n_repeats,
            random_state=random_state,
        )
        display = cls(
            levels=curve.levels,
            scores=curve.scores,
            scores_std=curve.scores_std if n_repeats > 1 else None,
            level_name=curve.level_name,
            modality=curve.modality,
            estimator_name=type(estimator).__name__ if name is None else name,
        )
        return display.plot(ax=ax, **kwargs)
