"""AudioFeatures: training-free MFCC statistics, a strong fast baseline for SVMs."""

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..utils._dask import DaskMixin
from ..utils._docs import fill_doc
from ..utils._remote import STORAGE_OPTIONS_DOC
from ..utils._sklearn_compat import Interval, _fit_context
from ..utils._validation import pool_items
from ._audio import _AUDIO_PARAMS, AudioMixin
from ._mel import MFCC


@fill_doc(storage_options=STORAGE_OPTIONS_DOC)
class AudioFeatures(DaskMixin, AudioMixin, TransformerMixin, BaseEstimator):
    """MFCC means and standard deviations over each sound's frames.

    The classic, training-free audio features: each sound (its whole length, not
    cropped) gives ``n_mfcc`` MFCCs per frame, summarised by their mean and standard
    deviation over the frames. The spectrogram code is the one :class:`AudioEncoder`
    uses, in torch, on the CPU. Items are read as :class:`AudioEncoder` reads them
    (video files give their soundtrack; one without is a missing sound).

    Parameters
    ----------
    sample_rate : int, default=16000
        Sample rate the sounds are resampled to, in Hz; waveform arrays must already
        be at this rate.
    n_mfcc : int, default=20
        Cepstral coefficients per frame.
    n_mels : int, default=40
        Mel bands the coefficients are computed from.
    n_fft : int or None, default=None
        STFT window length in samples; None is about 32 ms (256 at 8 kHz).
    hop_length : int or None, default=None
        Samples between frames; None is ``n_fft // 2``.
    {storage_options}

    Attributes
    ----------
    n_features_in_ : int
        Samples per row for a 2-D waveform batch; 1 for a one-column DataFrame.
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame.

    See Also
    --------
    AudioEncoder : Features learnt by a CNN from labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.encoders import AudioFeatures
    >>> t = np.arange(4000) / 8000
    >>> waves = [np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t)]
    >>> feats = AudioFeatures(sample_rate=8000, n_mfcc=13).fit(waves)
    >>> feats.transform(waves).shape
    (2, 26)
    >>> feats.get_feature_names_out()[[0, 13]]
    array(['mfcc00_mean', 'mfcc00_std'], dtype=object)
    """

    _parameter_constraints = {
        **_AUDIO_PARAMS,
        "n_mfcc": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        sample_rate=16000,
        *,
        n_mfcc=20,
        n_mels=40,
        n_fft=None,
        hop_length=None,
        storage_options=None,
    ):
        self.sample_rate = sample_rate
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.storage_options = storage_options

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the input and the parameters; nothing is learnt.

        Parameters
        ----------
        X : sequence of sounds, Series, one-column DataFrame or 2-D array
            WAV paths or 1-D waveforms; a 2-D float array is a batch of waveforms.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        if self.n_mfcc > self.n_mels:
            raise ValueError(
                f"n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels}."
            )
        self._check_input(X, reset=True)
        self.n_features_out_ = 2 * self.n_mfcc
        return self

    def transform(self, X):
        """Compute the MFCC statistics of each sound.

        Parameters
        ----------
        X : sequence of sounds, Series, one-column DataFrame or 2-D array
            As in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, 2 * n_mfcc)
            MFCC means then standard deviations, float32; rows of missing sounds are
            NaN.
        """
        check_is_fitted(self)
        column = self._check_input(X, reset=False)
        if column.nested:
            return pool_items(column, self._statistics)
        return self._statistics(column)

    def _statistics(self, column):
        mfcc = MFCC(
            self.sample_rate,
            self._n_fft(),
            self._hop_length(),
            self.n_mels,
            self.n_mfcc,
        )
        out = np.full((len(column), self.n_features_out_), np.nan, dtype=np.float32)
        rows = column.present()
        with torch.inference_mode():
            for row, wave in zip(rows, self._waves(column, rows)):
                coefs = mfcc(torch.from_numpy(wave)[None])[0]
                out[row, : self.n_mfcc] = coefs.mean(1).numpy()
                out[row, self.n_mfcc :] = coefs.std(1, correction=0).numpy()
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``mfcc00_mean`` ... ``mfcc19_std``.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        width = len(str(self.n_mfcc - 1))
        names = [
            f"mfcc{i:0{width + (width < 2)}d}_{stat}"
            for stat in ("mean", "std")
            for i in range(self.n_mfcc)
        ]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.requires_fit = True
        return tags
