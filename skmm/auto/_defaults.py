"""What each column kind gets by default: its encoder.

The choices are measured (``benchmarks/bench_auto.py``, ``docs/your_own_table.rst``):
pretrained towers that work offline for images and texts, MFCC statistics for sounds,
skrub's ``TableVectorizer`` for the tabular kinds (cleaning, numbers in strings, date
features, one-hot or string encoding by cardinality).
"""

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "VectorColumns",
    "default_encoder",
    "text_encoder",
    "user_cache_location",
]


def user_cache_location():
    """The per-user folder of the embedding cache: ``$SKMM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/skmm`` or ``~/.cache/skmm``."""
    folder = os.environ.get("SKMM_CACHE_DIR")
    if folder:
        return folder
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(root, "skmm")


def default_encoder(kind, *, memory=None, verbose=False):
    """A fresh default encoder for a column kind.

    Images, video clips and texts get the encoders' own offline pretrained defaults
    (``ImageEncoder()``, EfficientNet-Lite0; ``VideoEncoder()``, the same tower over
    8 frames, averaged; ``TextEncoder()``, wordllama: see ``docs/pretrained.rst``),
    texts with TF-IDF beside them. ``memory`` is the
    embedding cache given to the pretrained towers, ``verbose`` their progress bars.
    """
    if kind == "image":
        from ..encoders import ImageEncoder

        return ImageEncoder(memory=memory, verbose=verbose)
    if kind == "audio":
        from ..encoders import AudioFeatures

        return AudioFeatures()
    if kind == "video":
        from ..encoders import VideoEncoder

        return VideoEncoder(memory=memory, verbose=verbose)
    if kind == "text":
        return text_encoder(memory=memory, verbose=verbose)
    from ._tabular import TableVectorizer

    return TableVectorizer()


def text_encoder(*, memory=None, verbose=False):
    """The pretrained ``TextEncoder()`` beside TF-IDF word weights: texts' default.

    The pretrained embedding knows what words mean; TF-IDF keeps the exact words
    (brands, product codes) that a 256-wide average blurs. Together they beat either
    alone on the fashion catalogue (``docs/your_own_table.rst``).
    """
    from ..encoders import TextEncoder

    return FeatureUnion(
        [
            ("wordllama", TextEncoder(memory=memory, verbose=verbose)),
            ("tfidf", TfidfVectorizer(preprocessor=join_texts)),
        ]
    )


def join_texts(cell):
    """TF-IDF's view of a cell: its texts joined (a cell may hold several), lowered."""
    if not isinstance(cell, str):
        cell = " ".join(text for text in cell if isinstance(text, str))
    return cell.lower()


class VectorColumns(TransformerMixin, BaseEstimator):
    """Spread a column of fixed-length vectors into one feature per coordinate.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from skmm.auto._defaults import VectorColumns
    >>> X = pd.Series([np.array([1.0, 2.0]), np.array([3.0, 4.0])], name="emb")
    >>> VectorColumns().fit_transform(X)
    array([[1., 2.],
           [3., 4.]])
    >>> VectorColumns().fit(X).get_feature_names_out()
    array(['emb_0', 'emb_1'], dtype=object)
    """

    def fit(self, X, y=None):
        """Record the length of the vectors.

        Parameters
        ----------
        X : Series or one-column DataFrame of 1-D arrays
            The vectors.
        y : None
            Ignored.

        Returns
        -------
        self : VectorColumns
        """
        values = self._stack(X)
        self.n_coordinates_ = values.shape[1]
        name = getattr(X, "name", None)
        if name is None and hasattr(X, "columns"):
            name = X.columns[0]
        self.name_ = "x0" if name is None else str(name)
        return self

    def transform(self, X):
        """Stack the vectors into a 2-D array.

        Parameters
        ----------
        X : Series or one-column DataFrame of 1-D arrays
            The vectors, of the length seen in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_coordinates)
        """
        check_is_fitted(self)
        values = self._stack(X)
        if values.shape[1] != self.n_coordinates_:
            raise ValueError(
                f"column {self.name_!r}: vectors of {values.shape[1]} numbers, but "
                f"{self.n_coordinates_} at fit."
            )
        return values

    @staticmethod
    def _stack(X):
        cells = X.iloc[:, 0] if hasattr(X, "columns") else X
        try:
            return np.stack([np.asarray(v, dtype=np.float64) for v in cells])
        except ValueError as exc:
            raise ValueError(
                f"column {getattr(cells, 'name', None)!r}: vectors must all have "
                f"one length ({exc})."
            ) from None

    def get_feature_names_out(self, input_features=None):
        """``<column>_<coordinate>`` names.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        width = len(str(self.n_coordinates_ - 1))
        return np.asarray(
            [f"{self.name_}_{i:0{width}d}" for i in range(self.n_coordinates_)],
            dtype=object,
        )
