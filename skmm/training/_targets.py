"""Class labels of a training stream: one check for encoders, nets and the matcher."""

import numpy as np
from sklearn.utils.validation import column_or_1d

from ..utils._composition import check_labels

__all__ = ["check_classes", "encode_labels"]


def check_classes(y, classes=None, *, owner, required=False):
    """The sorted class labels: those of ``classes`` when given, else of ``y``.

    Parameters
    ----------
    y : ndarray
        The labels of this call.
    classes : array-like or None
        ``partial_fit``'s ``classes=``: every label of the stream.
    owner : str
        Named in the errors.
    required : bool
        True on the first ``partial_fit`` call: ``classes`` must be given (a later
        batch may hold a class this one lacks), as scikit-learn's classifiers ask.

    Returns
    -------
    classes : ndarray
    """
    if classes is None:
        if required:
            raise ValueError(
                f"{owner}: classes must be passed on the first call to partial_fit: "
                "a later batch may hold a class this one lacks."
            )
        unique = check_labels(y, owner)
        if len(unique) < 2:
            raise ValueError(
                f"{owner} needs samples of at least 2 classes in y to train on, but "
                f"y contains only one class: {unique[0]!r}."
            )
        return unique
    labels = column_or_1d(np.asarray(classes, dtype=None))
    unique = check_labels(labels, owner, "classes")
    if len(unique) < len(labels):
        raise ValueError(
            f"{owner}: classes has duplicates; each label must appear once."
        )
    if len(unique) < 2:
        raise ValueError(
            f"{owner}: classes={labels.tolist()} names {len(unique)} class(es); at "
            "least 2 are needed."
        )
    return unique


def encode_labels(y, classes, *, owner):
    """The positions of ``y``'s labels in ``classes``; unseen labels are an error."""
    y = np.asarray(y)
    check_labels(y, owner)
    known = set(classes.tolist())
    unseen = sorted({v for v in y.tolist() if v not in known}, key=str)
    if unseen:
        raise ValueError(
            f"{owner}: y holds the label(s) {unseen[:10]}, which are not in classes_ "
            f"{classes.tolist()}: pass every label of the stream as classes= on the "
            "first call to partial_fit."
        )
    return np.searchsorted(classes, y)
