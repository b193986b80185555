"""Video digits: AV-digits as MP4 clips, a handwritten digit moving to its spoken name."""

import json
import math
import os
import tempfile
from fractions import Fraction
from importlib import resources

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ..encoders._video_io import import_av
from ._av_digits import SAMPLE_RATE, SEED, degrade, load_av_digits
from ._fetch import get_data_home

# Frames per second, the canvas side (pixels) and the fewest frames of a clip.
FPS = 10
CANVAS = 56
MIN_FRAMES = 6
_DIGIT = 28
# Bumped when the clips change: a data home holding older clips rebuilds them.
_VERSION = 1
_MANIFEST = "manifest.json"


def write_mp4(path, frames, fps, *, audio=None, sample_rate=SAMPLE_RATE, times=None):
    """Write a clip as an MP4 file: H.264 video and, optionally, an ALAC soundtrack.

    Parameters
    ----------
    path : path
        The file written.
    frames : ndarray of shape (T, H, W) or (T, H, W, 3), uint8
        The frames; H and W even (the video is YUV 4:2:0).
    fps : int
        Frame rate.
    audio : ndarray of shape (n_samples,), int16, default=None
        A mono soundtrack, stored losslessly (Apple Lossless): decoding gives the
        samples back exactly.
    sample_rate : int, default=8000
        Sample rate of ``audio``.
    times : sequence of float, default=None
        The time (seconds) of each frame, for a variable frame rate; None shows
        frame ``i`` at ``i / fps``.
    """
    av = import_av("writing an MP4 file")
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    with av.open(os.fspath(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        # One encoder thread: the same bytes on every machine.
        video.options = {"crf": "18", "threads": "1"}
        if times is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            sound = container.add_stream("alac", rate=sample_rate, layout="mono")
            sound.codec_context.format = "s16p"
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            samples = np.asarray(audio, dtype=np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16p", layout="mono")
            frame.sample_rate = sample_rate
            container.mux(sound.encode(frame))
            container.mux(sound.encode())


def _moving_digit(image, n_frames, rng):
    """``n_frames`` canvases with ``image`` moving in a straight line across them."""
    free = CANVAS - _DIGIT
    start, stop = rng.integers(0, free + 1, size=(2, 2))
    frames = np.zeros((n_frames, CANVAS, CANVAS), dtype=np.uint8)
    for i in range(n_frames):
        y, x = np.rint(start + (stop - start) * i / max(1, n_frames - 1)).astype(int)
        frames[i, y : y + _DIGIT, x : x + _DIGIT] = image
    return frames


def make_video_digits(folder, *, variant="clean", seed=SEED):
    """Write the clips of the video digits into ``folder``; return their file names.

    Row ``i`` of :func:`load_av_digits` becomes clip ``i``: its MNIST image moves in
    a straight line (start and end drawn by ``numpy.random.default_rng(seed)``, row by
    row) across a ``CANVAS`` x ``CANVAS`` black frame at ``FPS`` frames per second for
    as long as its recording lasts (at least ``MIN_FRAMES`` frames), with the
    recording as the soundtrack (16-bit, lossless). With ``variant="hard"`` each
    frame is degraded on its own (the pixel dropout and noise of AV-digits' hard
    variant, drawn with seed ``seed + 1 + i``) and the soundtrack is the hard
    variant's noisy recording.
    """
    clean = load_av_digits(variant="clean").frame
    frame = clean if variant == "clean" else load_av_digits(variant=variant).frame
    rng = np.random.default_rng(seed)
    names = []
    for i, row in enumerate(frame.itertuples()):
        wave = row.audio
        n_frames = max(MIN_FRAMES, math.ceil(len(wave) / SAMPLE_RATE * FPS))
        frames = _moving_digit(clean["image"].iloc[i], n_frames, rng)
        if variant == "hard":
            frames, _ = degrade(frames, [], seed=seed + 1 + i)
        pcm = np.clip(np.rint(wave * 32768), -32768, 32767).astype(np.int16)
        name = f"{i:04d}_{row.digit}_{row.speaker}.mp4"
        # Written beside, then renamed: an interrupted build leaves no half clip.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".mp4")
        os.close(fd)
        try:
            write_mp4(tmp, frames, FPS, audio=pcm)
            os.replace(tmp, os.path.join(folder, name))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        names.append(name)
    return names


def _built(folder, variant):
    """The clip names of a complete build in ``folder``, or None."""
    try:
        with open(os.path.join(folder, _MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if manifest.get("version") != _VERSION or manifest.get("variant") != variant:
        return None
    sizes = manifest.get("sizes", {})
    for name, size in sizes.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return None
    return list(sizes)


def load_video_digits(data_home=None, *, variant="clean", return_X_y=False):
    """Load the video digits: MP4 clips of a moving handwritten digit, with its name spoken.

    1,200 clips made from :func:`load_av_digits` (no download) and written once into
    the data home, as MP4 files with an H.264 video stream (a 28 x 28 MNIST digit
    moving across a 56 x 56 frame, 10 frames per second) and a lossless soundtrack
    (the FSDD recording of the same digit, 8 kHz, Apple Lossless). Later calls read
    the clips already written. The ``speaker`` column gives the grouped split that
    makes audio hard (voices never heard in training).

    =================   ==========================================
    Rows                1,200 (6 speakers x 10 digits x 20 takes)
    Classes             10 (digits 0-9), 120 rows each
    ``video``           path of an MP4 file: 6 to 23 frames of 56 x 56
    ``speaker``         george, jackson, lucas, nicolas, theo, yweweler
    =================   ==========================================

    Writing the clips needs PyAV (``pip install 'skmm[video]'``) and takes a few
    seconds.

    Parameters
    ----------
    data_home : str or path, default=None
        Where the clips are written (in ``video_digits/<variant>``); see
        :func:`get_data_home`.
    variant : {"clean", "hard"}, default="clean"
        ``"hard"`` degrades each frame on its own (60% of the pixels dropped, pixel
        noise) and adds white noise at 10 dB SNR to the soundtrack, as
        :func:`load_av_digits` does to its image and recording: one frame is much
        less legible than the clip.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``frame`` (video, speaker, digit), ``data`` (a DataFrame with the ``video``
        column), ``target`` (the digit), ``speaker`` (ndarray of names, for grouped
        splits), ``feature_names``, ``target_names``, ``DESCR``.
    (data, target) : tuple if ``return_X_y`` is True

    Examples
    --------
    >>> from skmm.datasets import load_video_digits
    >>> bunch = load_video_digits()  # doctest: +SKIP
    >>> bunch.data.shape  # doctest: +SKIP
    (1200, 1)
    >>> bunch.data["video"].iloc[0]  # doctest: +SKIP
    '.../video_digits/clean/0000_0_george.mp4'
    """
    if variant not in ("clean", "hard"):
        raise ValueError(f"variant must be 'clean' or 'hard', got {variant!r}.")
    folder = get_data_home(data_home) / "video_digits" / variant
    folder.mkdir(parents=True, exist_ok=True)
    names = _built(folder, variant)
    if names is None:
        names = make_video_digits(folder, variant=variant)
        manifest = {
            "version": _VERSION,
            "variant": variant,
            "sizes": {n: os.path.getsize(folder / n) for n in names},
        }
        with open(folder / _MANIFEST, "w") as f:
            json.dump(manifest, f)
    source = load_av_digits(variant="clean").frame
    frame = pd.DataFrame(
        {
            "video": [str(folder / n) for n in names],
            "speaker": source["speaker"].to_numpy(),
            "digit": source["digit"].to_numpy(),
        }
    )
    data, target = frame[["video"]], frame["digit"]
    if return_X_y:
        return data, target
    descr = resources.files(__package__).joinpath("descr", "video_digits.rst")
    return Bunch(
        frame=frame,
        data=data,
        target=target,
        speaker=frame["speaker"].to_numpy(),
        feature_names=["video"],
        target_names=np.arange(10),
        DESCR=descr.read_text(),
    )
