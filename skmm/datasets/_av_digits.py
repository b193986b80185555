"""AV-digits: spoken digits (FSDD) paired with handwritten digits (MNIST)."""

import gzip
import os
import re
from importlib import resources

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
SAMPLE_RATE = 8000
TAKES = 20
SEED = 0
_FILE = "av_digits.npz"
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def read_idx(path):
    """Read an IDX file (MNIST's format), gzipped or not, into a uint8 array."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_av_digits(fsdd_dir, mnist_images, mnist_labels, *, takes=TAKES, seed=SEED):
    """Pair FSDD recordings with MNIST images of the same digit.

    This is how the shipped data set was made (with ``takes=20, seed=0`` on the full
    FSDD recordings and the MNIST test set, as :func:`fetch_fsdd` and
    :func:`fetch_mnist` download them): recordings ``0..takes-1`` of every speaker and
    digit, in file-name order, each paired with a distinct MNIST image of its digit
    drawn without replacement by ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    fsdd_dir : path
        Folder of FSDD's ``{digit}_{speaker}_{index}.wav`` files.
    mnist_images, mnist_labels : path
        MNIST IDX files (gzipped or not) of images and labels.
    takes : int, default=20
        Recordings kept per speaker and digit.
    seed : int, default=0
        Seed of the image draw.

    Returns
    -------
    arrays : dict of ndarray
        ``audio`` (all waveforms as int16, concatenated), ``offsets`` (start of each
        waveform in ``audio``, plus the end), ``image`` (n, 28, 28) uint8, ``digit``,
        ``speaker`` (index into ``SPEAKERS``), ``take`` and ``mnist_index``.

    Examples
    --------
    >>> from skmm.datasets import fetch_fsdd, fetch_mnist, make_av_digits
    >>> fsdd, mnist = fetch_fsdd(), fetch_mnist()  # doctest: +SKIP
    >>> images, labels = mnist.files  # doctest: +SKIP
    >>> folder = fsdd.frame["path"][0].rsplit("/", 1)[0]  # doctest: +SKIP
    >>> arrays = make_av_digits(folder, images, labels)  # doctest: +SKIP
    >>> arrays["image"].shape  # doctest: +SKIP
    (1200, 28, 28)
    """
    from scipy.io import wavfile

    records = []
    for name in sorted(os.listdir(fsdd_dir)):
        match = _NAME.match(name)
        if match and int(match[3]) < takes and match[2] in SPEAKERS:
            records.append(
                (int(match[1]), SPEAKERS.index(match[2]), int(match[3]), name)
            )
    waves = []
    for *_, name in records:
        rate, wave = wavfile.read(os.path.join(fsdd_dir, name))
        if rate != SAMPLE_RATE or wave.dtype != np.int16:
            raise ValueError(
                f"{name}: expected 8 kHz 16-bit PCM, got {rate} Hz {wave.dtype}"
            )
        waves.append(wave)
    images, labels = read_idx(mnist_images), read_idx(mnist_labels)
    digits = np.array([r[0] for r in records])
    rng = np.random.default_rng(seed)
    mnist_index = np.empty(len(records), dtype=np.int64)
    for digit in range(10):
        rows = np.flatnonzero(digits == digit)
        mnist_index[rows] = rng.choice(
            np.flatnonzero(labels == digit), len(rows), replace=False
        )
    return {
        "audio": np.concatenate(waves),
        "offsets": np.cumsum([0] + [len(w) for w in waves]),
        "image": images[mnist_index],
        "digit": digits,
        "speaker": np.array([r[1] for r in records]),
        "take": np.array([r[2] for r in records]),
        "mnist_index": mnist_index,
    }


def degrade(images, waves, *, seed=SEED, keep=0.4, image_noise=0.2, snr_db=10.0):
    """The ``variant="hard"`` degradation, deterministic for a seed.

    Each pixel is kept with probability ``keep`` (else set to 0), then Gaussian noise
    of standard deviation ``image_noise`` (on a 0-1 scale) is added and the result
    clipped; each waveform gets white noise ``snr_db`` dB below its own mean power.
    One ``numpy.random.default_rng(seed)`` draws the pixel mask, the pixel noise, then
    the audio noise of each recording in row order.
    """
    rng = np.random.default_rng(seed)
    pixels = images.astype(np.float32) / 255
    pixels *= rng.random(images.shape) < keep
    pixels += rng.normal(0, image_noise, images.shape)
    images = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    noisy = []
    for wave in waves:
        power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-12
        noise = rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)
        noisy.append((wave + noise).astype(np.float32))
    return images, noisy


def load_av_digits(*, variant="clean", as_frame=True, return_X_y=False):
    """Load AV-digits: spoken and handwritten digits, paired by label (10 classes).

    1,200 rows shipped with skmm (no download): each pairs a recording of a spoken
    digit from the Free Spoken Digit Dataset (6 speakers, 8 kHz) with an MNIST image
    of the same digit. The ``speaker`` column lets you split by speaker, which is what
    makes audio hard: a model has to recognise voices it has never heard.

    =================   ==========================================
    Rows                1,200 (6 speakers x 10 digits x 20 takes)
    Classes             10 (digits 0-9), 120 rows each
    ``image``           (28, 28) uint8 array (MNIST test set)
    ``audio``           1-D float32 waveform, 8 kHz, 0.14-2.3 s
    ``speaker``         george, jackson, lucas, nicolas, theo, yweweler
    =================   ==========================================

    Parameters
    ----------
    variant : {"clean", "hard"}, default="clean"
        ``"hard"`` drops 60% of each image's pixels, adds pixel noise, and adds white
        noise at 10 dB SNR to each recording (deterministically, see ``DESCR``), so
        that neither modality alone is near perfect.
    as_frame : bool, default=True
        Return pandas objects (``data`` a DataFrame with columns ``image`` and
        ``audio``). With False, ``data`` is a (n, 2) object array.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``frame`` (image, audio, speaker, digit; only with ``as_frame=True``),
        ``data``, ``target`` (the digit), ``speaker`` (ndarray of names, for
        grouped splits), ``feature_names``, ``target_names``, ``DESCR``.
    (data, target) : tuple if ``return_X_y`` is True

    Examples
    --------
    >>> from skmm.datasets import load_av_digits
    >>> bunch = load_av_digits()
    >>> bunch.data.shape
    (1200, 2)
    >>> bunch.data["image"].iloc[0].shape, bunch.data["audio"].iloc[0].dtype
    ((28, 28), dtype('float32'))
    >>> sorted(set(bunch.speaker))[:2]
    ['george', 'jackson']
    """
    if variant not in ("clean", "hard"):
        raise ValueError(f"variant must be 'clean' or 'hard', got {variant!r}.")
    with resources.files(__package__).joinpath("data", _FILE).open("rb") as f:
        arrays = dict(np.load(f))
    offsets = arrays["offsets"]
    waves = [
        arrays["audio"][offsets[i] : offsets[i + 1]].astype(np.float32) / 32768
        for i in range(len(offsets) - 1)
    ]
    images = arrays["image"]
    if variant == "hard":
        images, waves = degrade(images, waves)
    speaker = np.asarray(SPEAKERS, dtype=object)[arrays["speaker"]]
    image_col = np.empty(len(images), dtype=object)
    image_col[:] = list(images)
    audio_col = np.empty(len(waves), dtype=object)
    audio_col[:] = waves
    target = arrays["digit"].astype(np.int64)
    frame = pd.DataFrame(
        {"image": image_col, "audio": audio_col, "speaker": speaker, "digit": target}
    )
    data = (
        frame[["image", "audio"]]
        if as_frame
        else np.column_stack([image_col, audio_col])
    )
    target = frame["digit"] if as_frame else target
    if return_X_y:
        return data, target
    descr = resources.files(__package__).joinpath("descr", "av_digits.rst").read_text()
    return Bunch(
        frame=frame if as_frame else None,
        data=data,
        target=target,
        speaker=speaker,
        feature_names=["image", "audio"],
        target_names=np.arange(10),
        DESCR=descr,
    )
