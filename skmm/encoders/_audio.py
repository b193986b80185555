"""AudioEncoder: sounds (WAV paths or waveforms) to CNN features over log-mel spectrograms."""

import io
import math
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from ..base import TorchEncoderMixin
from ..utils._docs import fill_doc
from ..utils._remote import (
    STORAGE_OPTIONS_DOC,
    extension,
    is_url,
    read_url,
    redact,
)
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions
from ..utils._validation import check_column, file_not_found
from ._hub import BackboneMixin
from ._mel import default_n_fft
from ._video_io import is_video_file, mark_clips_without_soundtrack, read_soundtrack

# Full scale of each PCM sample type: the rule that turns integer samples into
# amplitudes in [-1, 1] (uint8 is offset binary, centred on 128).
_PCM_SCALE = {
    np.dtype("int8"): 128.0,
    np.dtype("int16"): 32768.0,
    np.dtype("int32"): 2147483648.0,
    np.dtype("int64"): 9223372036854775808.0,
}
# Float amplitudes beyond the largest PCM scale are not sound under any convention,
# and their power spectrum overflows float32 (NaN features).
_MAX_AMPLITUDE = 2.0**31
# Sample rates a file may declare: a header claiming more is malformed, and would
# make the resampling filter (its length grows with the rate) take any memory.
_MAX_RATE = 1_000_000
# Items sampled to fit the spectrogram normalisation: enough for stable statistics.
_STATS_SAMPLE = 500
# Mixup's Beta(alpha, alpha): 0.2 mostly mixes a little of a second sound into the
# first, the range Zhang et al. found best on speech commands.
MIXUP_ALPHA = 0.2


def _resample(wave, rate, sample_rate):
    if rate == sample_rate:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(sample_rate))
    return resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)


def _pcm_to_float(data, *, from_file=False):
    """Turn samples into float32 amplitudes by their dtype, never by their content.

    The rule (documented in :class:`AudioEncoder`): floats are taken as they are
    (finite, and at most 2**31 in magnitude);
    uint8 is 8-bit PCM, ``(x - 128) / 128``; int8, int16 and int32 are divided by
    their full scale (128, 32768, 2**31), as are int64 samples read from a 64-bit WAV
    file. Other integer arrays (int64 from a Python list of ints, unsigned types)
    carry no sample width, so they are read as 16-bit PCM and must lie in
    [-32768, 32767].
    """
    data = np.asarray(data)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        dtype = data.dtype.newbyteorder("=")
        if dtype in _PCM_SCALE and (from_file or dtype != np.int64):
            return data.astype(np.float32) / np.float32(_PCM_SCALE[dtype])
        low, high = int(data.min(initial=0)), int(data.max(initial=0))
        if low < -32768 or high > 32767:
            raise ValueError(
                f"integer samples of dtype {data.dtype} lie in [{low}, {high}]: "
                "integers other than int8/int16/int32/uint8 are read as 16-bit PCM "
                "and must lie in [-32768, 32767]; pass floats in [-1, 1], or cast to "
                "the PCM type of your data"
            )
        return data.astype(np.float32) / np.float32(32768)
    if np.issubdtype(data.dtype, np.floating):
        # Checked after the cast: a float64 beyond float32's range becomes infinite.
        with np.errstate(over="ignore"):
            wave = data.astype(np.float32)
        if not np.all(np.isfinite(wave)):
            raise ValueError("samples contain NaN or infinity")
        peak = float(np.abs(wave).max(initial=0))
        if peak > _MAX_AMPLITUDE:
            raise ValueError(
                f"samples reach {peak:g}, beyond any PCM scale (2**31): their power "
                "would overflow; float samples are amplitudes, nominally in [-1, 1]"
            )
        return wave
    raise ValueError(f"samples have dtype {data.dtype}, not real numbers")


def _read_wav(source, name):
    """Read a WAV file strictly: any structural flaw is an error, not a warning."""
    import warnings

    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():
            # scipy only warns on a truncated data chunk or an unknown chunk (junk
            # after the header); such a file is broken, as a truncated image is.
            warnings.simplefilter("error", wavfile.WavFileWarning)
            rate, data = wavfile.read(source)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - scipy raises struct.error and others
        message = str(exc) or type(exc).__name__
        raise ValueError(f"cannot read {name} as WAV: {message}") from None
    return rate, data


def read_audio(item, sample_rate, storage_options=None):
    """Load one sound as a mono float32 waveform at ``sample_rate``.

    ``item`` is a file path (WAV through scipy; FLAC, OGG, MP3 through the optional
    ``soundfile`` package; the soundtrack of a video file through the optional PyAV),
    an fsspec URL of such a file (read with ``storage_options``, see
    :mod:`skmm.utils._remote`), the bytes of a WAV or video file, or a 1-D array or
    list of samples
    already at ``sample_rate`` (scaled by dtype, see :func:`_pcm_to_float`). Raises
    ``ValueError`` saying what is wrong with the item: a missing, empty or malformed
    file, no samples, NaN or infinity.
    """
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        source, is_video = item, is_video_file(item)
        if is_url(item):
            name = redact(item)
            source = read_url(item, storage_options)
            path = io.BytesIO(source)
            is_wav = extension(item) == ".wav"
            # A video by its extension (MPEG-TS has no signature) or by its bytes.
            is_video = is_video or is_video_file(source)
        elif isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            name = repr(path)
            if os.path.isdir(path):
                raise ValueError(f"{name} is a directory, not an audio file")
            if not os.path.isfile(path):
                raise file_not_found(path)
            if os.path.getsize(path) == 0:
                raise ValueError(f"{name} is an empty file")
            is_wav = path.lower().endswith(".wav")
        else:
            path, name = io.BytesIO(item), f"{len(item)} bytes"
            is_wav = True  # bytes are read as a WAV file, whatever they hold
        if is_video:
            rate, data = read_soundtrack(source, name)
        elif is_wav:
            rate, data = _read_wav(path, name)
        else:
            try:
                import soundfile
            except ImportError:
                raise ValueError(
                    f"cannot read {name}: formats other than WAV need the optional "
                    "'soundfile' package (pip install 'skmm[audio]')"
                ) from None
            try:
                data, rate = soundfile.read(path, dtype="float32")
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure
                raise ValueError(f"cannot read {name} as audio: {exc}") from None
        if not 1 <= rate <= _MAX_RATE:
            raise ValueError(f"{name} declares a sample rate of {rate} Hz")
        try:
            wave = _pcm_to_float(data, from_file=True)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if wave.ndim == 2:  # (samples, channels): mix down to mono
            wave = wave.mean(axis=1) if wave.shape[1] else wave[:, 0]
        if wave.size == 0:
            raise ValueError(f"{name} holds no samples")
        return _resample(wave, int(rate), int(sample_rate))
    if isinstance(item, (np.ndarray, list, tuple)):
        try:
            wave = np.asarray(item)
        except ValueError:
            raise ValueError(
                "a nested sequence whose rows have different lengths is not a waveform"
            ) from None
        if wave.dtype == object:
            raise ValueError(
                "waveform values must be numbers; got "
                f"{sorted({type(v).__name__ for v in wave.ravel()})}"
            )
        if wave.ndim != 1:
            raise ValueError(
                f"expected a 1-D waveform, got an array of shape {wave.shape}"
            )
        if wave.size == 0:
            raise ValueError("empty waveform")
        if wave.dtype == bool or np.iscomplexobj(wave):
            raise ValueError(f"waveform has dtype {wave.dtype}, not real numbers")
        try:
            return _pcm_to_float(wave)
        except ValueError as exc:
            raise ValueError(f"waveform {exc}") from None
    raise ValueError(
        "expected an audio file path, WAV file bytes or a 1-D waveform; got "
        f"{type(item).__name__}"
    )


def fit_length(wave, n_samples):
    """Crop a waveform to ``n_samples`` or pad it with zeros at the end."""
    out = np.zeros(n_samples, dtype=np.float32)
    out[: min(n_samples, len(wave))] = wave[:n_samples]
    return out


def spec_augment(spec, generator, freq_width=0.15, time_width=0.15):
    """SpecAugment's masking (Park et al., 2019) of spectrograms (n, bands, frames).

    Each spectrogram gets one band of up to ``freq_width`` of its mel bands and one
    span of up to ``time_width`` of its frames set to 0 (their mean, after
    normalisation), drawn from ``generator``.
    """
    n, n_bands, n_frames = spec.shape
    out = spec.clone()
    for axis, size, width in ((1, n_bands, freq_width), (2, n_frames, time_width)):
        span = max(1, int(width * size))
        lengths = torch.randint(0, span + 1, (n,), generator=generator)
        starts = (torch.rand(n, generator=generator) * (size - lengths + 1)).long()
        index = torch.arange(size)
        mask = (index[None] >= starts[:, None]) & (
            index[None] < (starts + lengths)[:, None]
        )
        shape = (n, size, 1) if axis == 1 else (n, 1, size)
        out = out.masked_fill(mask.view(shape).to(out.device), 0.0)
    return out


def mixup(batch, generator, alpha=MIXUP_ALPHA):
    """Mix each item of a batch with another one (mixup, Zhang et al., ICLR 2018).

    One ``lam`` drawn from Beta(``alpha``, ``alpha``) and one random permutation
    ``partner`` of the batch: returns ``(lam * batch + (1 - lam) * batch[partner],
    partner, lam)``; the loss must mix the targets the same way.
    """
    partner = torch.randperm(len(batch), generator=generator)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam * batch + (1 - lam) * batch[partner], partner, lam


class AudioMixin:
    """Audio input handling shared by :class:`AudioEncoder` and :class:`AudioFeatures`."""

    _batch_ndim = (2,)

    def _check_input(self, X, *, reset):
        column = check_column(self, X, batch_ndim=self._batch_ndim, reset=reset)
        # A video file without an audio stream is a missing sound (see read_audio).
        return mark_clips_without_soundtrack(
            column, type(self).__name__, self.storage_options
        )

    def _missing_items(self, selection, missing):
        """The rows of a composite's one-column ``selection`` that this encoder takes
        for missing: the ``missing`` cells, and video files without an audio stream,
        named in a warning (so a fuser's ``missing=`` policy fills them as it fills
        None cells). A batch of waveforms adds none."""
        if missing.all():
            return missing
        # Read as the encoder reads its input, on a clone: the composite's encoder
        # records nothing before its own fit.
        return clone(self)._check_input(selection, reset=True).missing

    def _n_fft(self):
        return self.n_fft if self.n_fft is not None else default_n_fft(self.sample_rate)

    def _hop_length(self):
        # Half-overlapping frames (16 ms at 8 kHz): fine enough for a CNN, and half
        # the cost of librosa's quarter-window hop.
        return self.hop_length if self.hop_length is not None else self._n_fft() // 2

    def _waves(self, column, rows):
        """Read the sounds at ``rows`` as a list of 1-D float32 arrays."""
        if column.batch:
            try:
                return list(_pcm_to_float(column.items[rows]))
            except ValueError as exc:
                raise ValueError(f"waveform batch: {exc}") from None
        waves = []
        for i in rows:
            try:
                waves.append(
                    read_audio(column.items[i], self.sample_rate, self.storage_options)
                )
            except ValueError as exc:
                raise ValueError(f"{column.where(i)}: {exc}") from None
        return waves


_AUDIO_PARAMS = {
    "sample_rate": [Interval(Integral, 1, None, closed="left")],
    "storage_options": [None, dict],
    "n_mels": [Interval(Integral, 1, None, closed="left")],
    "n_fft": [None, Interval(Integral, 2, None, closed="left")],
    "hop_length": [None, Interval(Integral, 1, None, closed="left")],
}


@fill_doc(storage_options=STORAGE_OPTIONS_DOC)
class AudioEncoder(BackboneMixin, AudioMixin, TorchEncoderMixin, BaseEstimator):
    """Encode sounds with a CNN over log-mel spectrograms, or a pretrained audio model.

    Each sound is loaded (WAV files of any sample rate are resampled to
    ``sample_rate``, stereo is mixed down) and cropped or zero-padded to ``duration``
    seconds. With ``backbone="cnn"`` it becomes a log-mel spectrogram in torch (on the
    GPU when there is one), normalised, and passes through a 3-block CNN trained
    with a linear head on ``y``; :meth:`transform` returns the 128 pooled CNN
    features. With a pretrained backbone the tower is frozen by default and
    :meth:`fit` needs no ``y``.

    Parameters
    ----------
    sample_rate : int, default=16000
        Sample rate the sounds are resampled to, in Hz; waveform arrays must already
        be at this rate. An ``"hf:"`` backbone needs the rate it was trained at.
    backbone : {"cnn"} or str or torch.nn.Module, default="cnn"
        ``"cnn"``: the small CNN over log-mel spectrograms. ``"hf:<model id or local
        folder>"``: a Hugging Face audio ``AutoModel`` (wav2vec2, HuBERT, WavLM ...)
        fed by its own ``AutoFeatureExtractor``, its features the mean of
        ``last_hidden_state`` over the frames (extra ``skmm[hf]``). A module: maps a
        waveform batch ``(n, samples)`` to features. The spectrogram parameters
        below only apply to ``"cnn"``.
    n_mels : int or "auto", default="auto"
        Mel bands of the spectrogram. ``"auto"`` is 16 up to 8 kHz and 64 above. At
        8 kHz, 16 bands keep the spectral envelope (the formants, which carry the
        words) and blur the harmonics of the pitch (which carry the voice), so that
        a tower carries to unheard voices (measured in the user guide).
    normalize : {"utterance", "global"}, default="utterance"
        ``"utterance"`` standardises each sound's mel bands over time (cepstral mean
        and variance normalisation), which removes a voice's and a microphone's
        fixed colouring; ``"global"`` uses the training set's mean and standard
        deviation only.
    duration : float, default=1.0
        Seconds each sound is cropped or zero-padded to.
    n_fft : int or None, default=None
        STFT window length in samples; None is about 32 ms (256 at 8 kHz).
    hop_length : int or None, default=None
        Samples between frames; None is ``n_fft // 2``.
    weights : "auto", "DEFAULT", path or None, default="auto"
        ``"auto"``: the checkpoint an ``"hf:"`` backbone names, random weights for
        ``"cnn"``. ``None``: random weights (an ``"hf:"`` architecture from its
        config). A path: a state dict of the CNN tower or of the module (tensors
        only: ``.safetensors`` or ``torch.load(..., weights_only=True)``).
    max_epochs : int or "auto", default="auto"
        Passes over the training items with ``y`` (as in the nets and the matcher, which
        may stop sooner); 0 uses the tower as it is (frozen). ``"auto"`` is 0 (a frozen
        feature extractor, and :meth:`fit` needs no ``y``) when the tower starts from
        pretrained weights, and 10 otherwise.
    train_layers : {"all", "last", "head"}, default="all"
        What trains when ``max_epochs > 0``: the whole tower, its last block and
        what follows it, or none of it (only the head on top).
    augment : {"default", "mixup"} or None, default=None
        ``"default"`` shifts each training sound in time by up to 10% of ``duration``,
        scales its gain by 0.7-1.3 and masks one band of up to 15% of the mel bands
        and one span of up to 15% of the frames (SpecAugment). ``"mixup"`` does the
        same, then mixes each batch with a shuffled copy of itself (mixup: the
        waveforms ``lam * a + (1 - lam) * b``, ``lam`` drawn from Beta(0.2, 0.2)
        per batch) and the loss is ``lam * loss(a's target) + (1 - lam) *
        loss(b's target)``. Mixing the targets is what makes mixup sound, so it
        only applies to the encoder's own :meth:`fit`: a tower of an
        :mod:`skmm.nn` net never sees the targets, and a net refuses a trained
        ``augment="mixup"`` tower with a ``ValueError`` (use ``"default"`` there).
        Its gain is measured in the user guide.
    batch_size : int, default=32
        Sounds per batch in training and in :meth:`transform`.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or ``joblib.Memory``) caching each item's features on disk, keyed by
        the item's content (a file's path, size, times and inode; an array's hash) and
        by a fingerprint of the fitted encoder: its parameters and its weights,
        identified by their source for a frozen pretrained tower, else by a hash of
        the tensors computed once per fit. Cross-validation folds and grid-search
        candidates that share a frozen encoder then encode each item once; a
        retrained encoder has new weights, hence new keys.
        :class:`~skmm.utils.EmbeddingMemory` with ``hash_files=True`` keys files by
        their bytes instead. Entries carry a checksum and are recomputed when it does
        not match; a folder that cannot be written warns once and is not used.
    num_workers : int, default=0
        Threads decoding the next batches while the model runs on the current one in
        :meth:`transform`; 0 decodes in the main thread. At most
        ``num_workers + 1`` batches are in memory at once.
        When :meth:`fit` streams the training items (more than 256 MB decoded),
        worker processes decoding the next batches (a torch ``DataLoader``); the
        model is the same whatever their number.
    {storage_options}
    lr : float, default=1e-3
        Learning rate of the optimizer for this tower when the encoder trains
        alone (inside :mod:`skmm.nn`, the composite's ``lr``/``tower_lr`` apply).
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters with ``lr``.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each training epoch with the history (see
        :mod:`skmm.callbacks`: checkpoints, learning-rate schedules, custom stops).
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        Numerical precision of training and inference: float32, or mixed precision
        through ``torch.autocast`` (bfloat16 or float16 where it is safe, float32
        weights; ``"16-mixed"`` scales the loss so that small gradients do not
        underflow). Features computed at another precision are cached apart.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the model runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the sounds sampled for the spectrogram
        statistics, augmentation and data order.
    verbose : bool, default=False
        Show progress bars while training and encoding.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted tower, on ``device_``.
    device_ : str
        The device used.
    spectrogram_mean_, spectrogram_std_ : float
        Global standardisation of the log-mel spectrogram (``"cnn"``).
    backbone_ : Backbone
        The resolved backbone: where the weights come from (``backbone_.source``)
        and what names them in the cache (``backbone_.identity``).
    hub_config_ : object or None
        The Hugging Face config of an ``"hf:"`` backbone, else None.
    processor_ : object or None
        The Hugging Face feature extractor of an ``"hf:"`` backbone, else None.
    classes_ : ndarray or None
        Classes of ``y`` (None for a real-valued ``y``); set when ``max_epochs > 0``.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        Samples per row for a 2-D waveform batch; 1 for a one-column DataFrame.
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame.

    See Also
    --------
    AudioFeatures : Training-free MFCC statistics, a strong baseline for SVMs.

    Notes
    -----
    An item is a file path (WAV; other formats with the optional ``soundfile``), the
    bytes of a WAV file, or a 1-D array or list of samples at ``sample_rate``; a 2-D
    array is a batch, one sound per row. Samples are scaled by their type, never by
    their content: floats are amplitudes taken as they are (finite, and at most
    2**31 in magnitude); ``int8``, ``int16`` and ``int32`` are divided by their full
    scale (128, 32768, 2**31), ``uint8`` is 8-bit PCM, ``(x - 128) / 128``, and other
    integer arrays (``int64``, as a Python list of ints becomes, or unsigned types)
    carry no sample width, so they are read as 16-bit PCM and must lie in
    [-32768, 32767]. A WAV file's own sample type decides its scale.

    WAV files are read strictly: a truncated file, junk after the header, an
    unknown chunk or a sample rate outside 1 Hz to 1 MHz raise ``ValueError``
    naming the column and row, as do NaN or infinite samples and empty sounds; only
    ``None``/NaN items are missing. A WAV file has no checksum: random bytes of
    exactly the length its header declares are valid (noisy) PCM and are encoded.

    A video file (by its extension, or bytes of an MP4/MOV, WebM/MKV, AVI, FLV,
    MPEG-PS, WMV or Ogg container) gives its first audio stream, decoded by PyAV (``skmm[video]``), so
    the column of a :class:`VideoEncoder` can feed an audio tower too; a video file
    without an audio stream is a missing sound, named in a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.encoders import AudioEncoder
    >>> t = np.arange(800) / 8000
    >>> waves = [np.sin(2 * np.pi * f * t) for f in (300, 310, 2000, 2100)]
    >>> enc = AudioEncoder(sample_rate=8000, duration=0.1, n_mels=16, max_epochs=1,
    ...                    random_state=0, device="cpu")
    >>> enc.fit_transform(waves, ["low", "low", "high", "high"]).shape
    (4, 128)
    """

    _parameter_constraints = {
        **TorchEncoderMixin._encoder_parameter_constraints,
        **_AUDIO_PARAMS,
        "n_mels": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "normalize": [StrOptions({"utterance", "global"})],
        "backbone": [str, HasMethods(["forward"])],
        "duration": [Interval(Real, 0, None, closed="neither")],
        "weights": [None, str, os.PathLike],
        "max_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "train_layers": [StrOptions({"all", "last", "head"})],
        "augment": [None, StrOptions({"default", "mixup"})],
    }

    def __init__(
        self,
        sample_rate=16000,
        *,
        backbone="cnn",
        n_mels="auto",
        normalize="utterance",
        duration=1.0,
        n_fft=None,
        hop_length=None,
        weights="auto",
        max_epochs="auto",
        train_layers="all",
        augment=None,
        batch_size=32,
        memory=None,
        num_workers=0,
        storage_options=None,
        lr=1e-3,
        optimizer=torch.optim.Adam,
        callbacks=None,
        precision="32",
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.sample_rate = sample_rate
        self.backbone = backbone
        self.n_mels = n_mels
        self.normalize = normalize
        self.duration = duration
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.weights = weights
        self.max_epochs = max_epochs
        self.train_layers = train_layers
        self.augment = augment
        self.batch_size = batch_size
        self.memory = memory
        self.num_workers = num_workers
        self.storage_options = storage_options
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    _modality = "audio"

    def _n_samples(self):
        return max(1, round(self.duration * self.sample_rate))

    def _load(self, column, rows):
        n = self._n_samples()
        waves = np.stack([fit_length(w, n) for w in self._waves(column, rows)])
        return self.backbone_.audio_input(self, waves)

    def _fit_preprocessing(self, column, rows):
        backbone = self._resolve_backbone()
        self.spectrogram_mean_, self.spectrogram_std_ = 0.0, 1.0
        features = backbone.audio_features(self)
        if features is None:  # the tower does not start from a log-mel spectrogram
            return
        state = backbone.file_state()
        if state is not None and "features.standardize.mean" in state:
            # A fitted encoder's module_: its standardisation comes with it.
            self.spectrogram_mean_ = float(state["features.standardize.mean"])
            self.spectrogram_std_ = float(state["features.standardize.std"])
            return
        rng = np.random.default_rng(self._seed())
        sample = (
            rows
            if len(rows) <= _STATS_SAMPLE
            else np.sort(rng.choice(rows, _STATS_SAMPLE, replace=False))
        )
        with torch.no_grad():
            log_mel = features.log_mel(self._load(column, sample))
        self.spectrogram_mean_ = float(log_mel.mean())
        self.spectrogram_std_ = (
            max(float(log_mel.std()), 1e-3) if log_mel.numel() > 1 else 1.0
        )

    # -- the module ----------------------------------------------------------------------
    def _n_mels(self):
        if self.n_mels == "auto":
            return 16 if self.sample_rate <= 8000 else 64
        return self.n_mels

    def _tower(self, pretrained):
        return self.backbone_.audio_tower(self, pretrained)

    def _augment(self, batch, generator):
        if self.augment == "mixup":
            raise ValueError(
                "AudioEncoder(augment='mixup') mixes the targets as well as the "
                "sounds, which only its own fit does: a tower in a net or a matcher "
                "sees its inputs, not the targets. Use augment='default' for a tower."
            )
        return self._mask_spectrograms(
            self._shift_and_gain(batch, generator), generator
        )

    def _training_batch(self, batch, generator):
        if self.augment != "mixup":
            return super()._training_batch(batch, generator)
        mixed, partner, lam = mixup(self._shift_and_gain(batch, generator), generator)
        return self._mask_spectrograms(mixed, generator), partner, lam

    def _mask_spectrograms(self, waves, generator):
        """SpecAugment, for a tower that starts from a log-mel spectrogram.

        The tower's front end runs here, so that the masks come from the training
        loop's ``generator``; the tower takes the masked spectrograms as they are.
        """
        features = None if self.augment is None else self.backbone_.audio_features(self)
        if features is None:
            return waves
        with torch.no_grad():
            return spec_augment(features(waves), generator)

    def _shift_and_gain(self, batch, generator):
        """The waveform part of the augmentation: time shift and gain."""
        if self.augment is None:
            return batch
        n, length = batch.shape
        max_shift = max(1, int(0.1 * length))
        shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=generator)
        gains = torch.empty(n, 1).uniform_(0.7, 1.3, generator=generator)
        positions = (torch.arange(length)[None, :] - shifts[:, None]) % length
        return torch.gather(batch, 1, positions) * gains

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        return tags
