"""Log-mel spectrograms and MFCCs in torch (so they run on the GPU too).

torchaudio has no release for current torch, so the mel filterbank and the DCT are
written here once and shared by :class:`AudioEncoder` and :class:`AudioFeatures`. They
follow librosa's definitions (Slaney mel scale and normalisation, ``power_to_db`` with
``top_db=80``, orthonormal DCT-II), and the tests check them against librosa.
"""

import math

import numpy as np
import torch

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, 200/3 Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs):
    """Convert Hz to mels on the Slaney scale (librosa's default)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    mels = freqs / _F_SP
    log_part = freqs >= _MIN_LOG_HZ
    mels = np.where(
        log_part,
        _MIN_LOG_MEL + np.log(np.maximum(freqs, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
        mels,
    )
    return mels


def mel_to_hz(mels):
    """Convert mels on the Slaney scale back to Hz."""
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(
        mels >= _MIN_LOG_MEL,
        _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)),
        _F_SP * mels,
    )


def mel_filterbank(sample_rate, n_fft, n_mels, fmin=0.0, fmax=None):
    """Triangular mel filters, shape (n_mels, 1 + n_fft // 2), Slaney-normalised.

    Matches ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)``.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights.astype(np.float32)


def dct_matrix(n_out, n_in):
    """Orthonormal DCT-II matrix of shape (n_out, n_in) (scipy's ``norm='ortho'``)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def default_n_fft(sample_rate):
    """A window of about 32 ms, rounded to a power of two (256 at 8 kHz)."""
    return 2 ** max(4, round(math.log2(0.032 * sample_rate)))


class LogMelSpectrogram(torch.nn.Module):
    """Waveforms (n, samples) to log-mel power spectrograms (n, n_mels, frames) in dB.

    The STFT is centred with zero padding and a periodic Hann window, the power
    spectrogram goes through the mel filterbank, and ``10 log10`` is clipped at
    ``top_db`` below each item's peak, as in ``librosa.power_to_db(..., ref=1.0)``.
    """

    def __init__(self, sample_rate, n_fft, hop_length, n_mels, top_db=80.0):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db = n_fft, hop_length, top_db
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True))
        self.register_buffer(
            "filters", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels))
        )

    def forward(self, waveform):
        spec = torch.stft(
            waveform,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mel = self.filters @ spec.abs().pow(2)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        if self.top_db is not None:
            peak = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db


class MFCC(torch.nn.Module):
    """Waveforms (n, samples) to MFCCs (n, n_mfcc, frames), as ``librosa.feature.mfcc``."""

    def __init__(self, sample_rate, n_fft, hop_length, n_mels, n_mfcc):
        super().__init__()
        self.log_mel = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(n_mfcc, n_mels)))

    def forward(self, waveform):
        return self.dct @ self.log_mel(waveform)
