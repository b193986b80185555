"""Reading video files through PyAV: frames sampled over a clip, and the soundtrack.

PyAV (FFmpeg's libraries) is the optional extra ``skmm[video]``, imported only when a
video file is read. Every FFmpeg failure becomes a ``ValueError`` saying what is wrong
with the file; the callers add the column and the row.
"""

import contextlib
import dataclasses
import io
import math
import os
import warnings

import numpy as np

from ..utils._composition import is_group
from ..utils._remote import extension, is_url, read_url, redact

# File extensions of video containers. A video column takes any container FFmpeg
# reads; the audio encoders read the soundtrack of files and URLs with these extensions
# (and of bytes that start with a signature of VIDEO_SIGNATURES).
VIDEO_EXTENSIONS = frozenset(
    {
        ".3gp",
        ".avi",
        ".flv",
        ".m2ts",
        ".m4v",
        ".mkv",
        ".mov",
        ".mp4",
        ".mpeg",
        ".mpg",
        ".mts",
        ".ogv",
        ".ts",
        ".webm",
        ".wmv",
    }
)
# The largest frame decoded (8K UHD): a header declaring more is refused before any
# frame is decoded, as Pillow refuses decompression bombs.
MAX_FRAME_PIXELS = 7680 * 4320
# The (offset, bytes) signatures of video containers: the MP4/MOV/3GP top-level
# boxes that can open a file, Matroska/WebM's EBML header, AVI's RIFF form type, FLV,
# an MPEG program stream's pack header, ASF (WMV) and Ogg. MPEG-TS has none (its sync
# byte is one byte every 188).
VIDEO_SIGNATURES = (
    *((4, box) for box in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")),
    (0, b"\x1a\x45\xdf\xa3"),
    (8, b"AVI "),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),
    (0, b"OggS"),
)
# Rows named in the warning about clips without a soundtrack.
_ROWS_SHOWN = 20


def import_av(what):
    """Import PyAV, or say which extra installs it."""
    try:
        import av
    except ImportError:
        raise ImportError(
            f"{what} needs the optional package 'av' (PyAV), which is not installed: "
            "pip install 'skmm[video]'"
        ) from None
    return av


def is_video_file(item):
    """True for a path or URL with a video extension, or bytes of a video container.

    A URL's extension is its path's: the query string (a pre-signed URL's
    ``?X-Amz-Signature=...``) and the fragment are not part of it.
    """
    if isinstance(item, (str, os.PathLike)):
        return extension(item) in VIDEO_EXTENSIONS
    if isinstance(item, (bytes, bytearray, memoryview)):
        head = bytes(item[:16])
        return any(head[o : o + len(magic)] == magic for o, magic in VIDEO_SIGNATURES)
    return False


def _source(item, name=None):
    """What ``av.open`` reads for a path or bytes item, and how errors name it
    (``name``, when given, names bytes: the URL they were read from)."""
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        name = repr(path)
        if os.path.isdir(path):
            raise ValueError(f"{name} is a directory, not a video file")
        if not os.path.isfile(path):
            raise ValueError(f"file not found: {name}")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{name} is an empty file")
        return path, name
    if len(item) == 0:
        raise ValueError("empty bytes, not a video file")
    return io.BytesIO(bytes(item)), name or f"{len(item)} bytes"


def _reason(exc):
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@contextlib.contextmanager
def open_container(item, what="reading a video file", name=None):
    """Open a path or bytes with PyAV; yield ``(container, name)``.

    Any FFmpeg error, on opening or later in the block (a corrupt packet), becomes a
    ``ValueError`` naming the item (bytes by ``name``, when given).
    """
    av = import_av(what)
    source, name = _source(item, name)
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise ValueError(
            f"cannot decode {name} (not a container FFmpeg reads: {_reason(exc)})"
        ) from None
    try:
        yield container, name
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot decode {name} ({_reason(exc)})") from None
    finally:
        container.close()


# -- frames ----------------------------------------------------------------------------
def read_video(item, n_frames, fps=None, min_size=None):
    """Sample frames of one clip: a list of 1 to ``n_frames`` arrays (H, W[, C]).

    ``item`` is a video file path, the bytes of a video file, or an array (or nested
    list) of frames (T, H, W) or (T, H, W, C). Without ``fps``, ``n_frames`` frames
    are sampled uniformly over the clip: the frame shown at the middle of each of
    ``n_frames`` equal spans of its duration (a frame repeats when the clip has fewer
    frames). With ``fps``, the frames shown at ``0, 1/fps, 2/fps...`` seconds from the
    start, at most ``n_frames`` of them; an array's frames are taken as already at
    ``fps``. Frames of files are RGB uint8, decoded one at a time and shrunk while
    converted (area filter, by an integer factor keeping both sides at least
    ``min_size=(height, width)``) when they are more than twice that size; arrays are
    returned as they are (their values are checked by the image side).

    Raises ``ValueError`` saying what is wrong with the item.
    """
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        with open_container(item) as (container, name):
            return _read_frames(container, name, n_frames, fps, min_size)
    if isinstance(item, (np.ndarray, list, tuple)):
        return _array_frames(item, n_frames, fps)
    raise ValueError(
        "expected a video file path, video file bytes or an array of frames (T, H, W) "
        f"or (T, H, W, C); got {type(item).__name__}"
    )


def _array_frames(item, n_frames, fps):
    try:
        # An object array (of frames, say) is read through its nested lists.
        array = np.asarray(
            item.tolist()
            if isinstance(item, np.ndarray) and item.dtype == object
            else item
        )
    except (ValueError, TypeError):
        raise ValueError(
            "a nested sequence whose frames have different shapes is not a clip"
        ) from None
    if array.ndim not in (3, 4):
        raise ValueError(
            "expected a clip array of shape (T, H, W) or (T, H, W, C); got shape "
            f"{array.shape}"
        )
    if len(array) == 0:
        raise ValueError(f"zero-length clip: the array holds no frames {array.shape}")
    if fps is not None:
        return list(array[:n_frames])
    # The frame shown at the middle of each of n_frames equal spans, frame i being
    # shown over [i, i + 1): the rule files follow with their timestamps.
    index = np.floor((np.arange(n_frames) + 0.5) * len(array) / n_frames).astype(int)
    return list(array[index])


def sample_times(start, end, n_frames, fps):
    """The instants (seconds) frames are taken at, for a clip shown over [start, end)."""
    if fps is None:
        return start + (np.arange(n_frames) + 0.5) * (end - start) / n_frames
    times = start + np.arange(n_frames) / fps
    return times[times < end] if times[0] < end else times[:1]


def _check_size(width, height, name):
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(
            f"refusing to decode {name}: its frames are {width} x {height} pixels, "
            f"more than the limit of {MAX_FRAME_PIXELS} (8K UHD, "
            "skmm.encoders._video_io.MAX_FRAME_PIXELS)"
        )


def _time_span(container, stream):
    """When the video stream starts and ends, in seconds (None when unknown)."""
    base = stream.time_base
    start = None if stream.start_time is None else float(stream.start_time * base)
    if start is None and container.start_time is not None:
        start = container.start_time / 1e6  # AV_TIME_BASE
    start = start or 0.0
    if stream.duration:
        return start, start + float(stream.duration * base)
    if container.duration:
        origin = (container.start_time or 0) / 1e6
        return start, origin + container.duration / 1e6
    return start, None


def _scan_end(container, stream):
    """The end of the last packet, read without decoding (no duration in the header)."""
    end = None
    for packet in container.demux(stream):
        if packet.pts is not None:
            stop = float((packet.pts + (packet.duration or 0)) * stream.time_base)
            end = stop if end is None else max(end, stop)
    if end is not None:
        container.seek(0)  # back to the start, to decode
    return end


def _read_frames(container, name, n_frames, fps, min_size):
    if container.format.name.endswith("_pipe") or container.format.name == "image2":
        raise ValueError(
            f"{name} is a still image ({container.format.name}), not a video"
        )
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        hint = " (an audio file in a video column?)" if "audio" in kinds else ""
        raise ValueError(f"{name} has no video stream{hint}; its streams: {kinds}")
    stream = container.streams.video[0]
    _check_size(stream.codec_context.width, stream.codec_context.height, name)
    start, end = _time_span(container, stream)
    if end is None:
        end = _scan_end(container, stream)
    if end is None or end <= start:
        raise ValueError(f"zero-length clip: {name} holds no video frames")
    return _ClipReader(container, stream, name, min_size).read(
        sample_times(start, end, n_frames, fps)
    )


class _ClipReader:
    """Decode the frames shown at given instants, one frame held at a time.

    The frame shown at ``t`` is the last one whose timestamp is at most ``t`` (so
    variable frame rates are followed as they are). Frames are decoded in order;
    when the next instant lies further ahead than the longest interval seen between
    two keyframes, the reader seeks to the keyframe before it instead of decoding
    the frames in between (a long clip is not decoded whole to take a few frames).
    """

    def __init__(self, container, stream, name, min_size):
        self.container = container
        self.stream = stream
        self.name = name
        self.min_size = min_size
        rate = stream.average_rate or stream.guessed_rate
        self.step = 1 / float(rate) if rate else 0.04
        # A frame stamped within a tick of an instant is the one shown at it: stamps
        # are rounded to the time base (MPEG-TS's 90 kHz clock has no exact 1/7 s).
        # Far less than a frame, where the time base is the frame period (AVI).
        self.tie = min(float(stream.time_base), self.step / 100)
        # One converter for the clip: its scaling context is made once, not per frame
        # (PyAV is imported: the container is open).
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()

    def _frames(self):
        """Decoded frames and their times (seconds), from the current position."""
        last = None
        for frame in self.container.decode(self.stream):
            if frame.pts is not None:
                last = frame.time
            else:  # no timestamp: one frame period after the previous frame
                last = 0.0 if last is None else last + self.step
            yield frame, last

    def _array(self, frame):
        _check_size(frame.width, frame.height, self.name)
        width, height = frame.width, frame.height
        if self.min_size is not None:
            factor = min(height // self.min_size[0], width // self.min_size[1])
            if factor >= 2:
                width, height = max(1, width // factor), max(1, height // factor)
        return self.reformatter.reformat(
            frame, width, height, "rgb24", interpolation="AREA"
        ).to_ndarray()

    def read(self, targets):
        out = [None] * len(targets)
        frames = self._frames()
        # Longest keyframe interval seen: seeking further than that skips frames.
        gop, keys = math.inf, []
        held, held_time, held_array = None, None, None
        k, sought = 0, -1
        while k < len(targets):
            if held is not None and k > sought and targets[k] - held_time > gop:
                # Once per instant: a seek that lands behind is not retried.
                offset = int(targets[k] / self.stream.time_base)
                self.container.seek(offset, backward=True, stream=self.stream)
                frames, held, keys, sought = self._frames(), None, [], k
            frame, time = next(frames, (None, None))
            if frame is None:
                break
            if frame.key_frame:
                keys.append(time)
                if len(keys) >= 2:
                    gop = max(keys[-1] - keys[-2], 0.0 if gop == math.inf else gop)
            if time > targets[k] + self.tie:
                # The held frame is shown until this one: it serves every instant
                # before it (the first frame serves the instants before it too).
                if held is None:
                    held, held_time, held_array = frame, time, None
                if held_array is None:
                    held_array = self._array(held)
                while k < len(targets) and targets[k] + self.tie < time:
                    out[k] = held_array
                    k += 1
                if held is frame:
                    continue
            held, held_time, held_array = frame, time, None
        if k < len(targets):
            if held is None:
                raise ValueError(f"zero-length clip: {self.name} holds no video frames")
            held_array = self._array(held) if held_array is None else held_array
            out[k:] = [held_array] * (len(targets) - k)
        return out


# -- the soundtrack --------------------------------------------------------------------
def read_soundtrack(item, name=None):
    """The first audio stream of a video file: ``(sample rate, samples)``.

    Samples are an array (n, channels) of the decoded sample type (int16 for 16-bit
    PCM, ALAC or FLAC; float32 for AAC, Opus...), so the audio side scales them by
    their type as it does a WAV file's. Raises ``ValueError`` for a file without an
    audio stream or without samples (bytes are named by ``name``, when given).
    """
    what = "reading a video file's soundtrack"
    with open_container(item, what, name) as (container, name):
        if not container.streams.audio:
            raise ValueError(f"{name} has no audio stream")
        stream = container.streams.audio[0]
        chunks, rate = [], stream.codec_context.sample_rate
        for frame in container.decode(stream):
            samples = frame.to_ndarray()
            # Planar formats give (channels, n); packed ones (1, n * channels).
            chunks.append(
                samples.T
                if frame.format.is_planar
                else samples.reshape(-1, len(frame.layout.channels))
            )
            rate = frame.sample_rate or rate
    if not chunks:
        raise ValueError(f"{name} has an audio stream without samples")
    return rate, np.concatenate(chunks)


def has_soundtrack(item, storage_options=None):
    """Whether a video file has an audio stream (its header only is read).

    A URL is read whole (with ``storage_options``): a container's header may lie at
    its end (an MP4 whose index was written last), which only ranged reads would
    reach without the rest.
    """
    name = None
    if is_url(item):
        name = redact(item)
        item = read_url(item, storage_options)
    what = "reading a video file's soundtrack"
    with open_container(item, what, name) as (container, _):
        return bool(container.streams.audio)


def mark_clips_without_soundtrack(column, owner, storage_options=None):
    """Mark the video files of ``column`` that have no audio stream as missing.

    For the audio encoders: a clip without a soundtrack is a missing sound (NaN
    features, the fuser's ``missing=`` rule), named in one warning; inside a cell of
    several items it becomes a None there, skipped as a cell's missing items are. A
    file that is not a readable container raises ``ValueError`` naming its row.
    Video URLs (by their path's extension) are read with ``storage_options`` to
    look, so they are fetched twice: here, and when their soundtrack is decoded.
    """
    if column.batch:
        return column
    silent, cells, n_files = [], {}, 0
    for i in column.present():
        cell = column.items[i]
        group = column.nested and is_group(cell)
        for k, item in enumerate(cell if group else (cell,)):
            if not is_video_file(item):
                continue
            try:
                found = has_soundtrack(item, storage_options)
            except ValueError as exc:
                where = column.where(i) + (f", item {k}" if group else "")
                raise ValueError(f"{where}: {exc}") from None
            if found:
                continue
            n_files += 1
            if group:
                cells.setdefault(i, list(cell))[k] = None
            else:
                column.missing[i] = True
            if not silent or silent[-1] != i:
                silent.append(i)
    if cells:
        items = np.array(column.items, dtype=object)
        for i, cell in cells.items():
            items[i] = cell
        column = dataclasses.replace(column, items=items)
    if silent:
        labels = [i if column.labels is None else column.labels[i] for i in silent]
        labels = [v.item() if isinstance(v, np.generic) else v for v in labels]
        shown = ", ".join(map(repr, labels[:_ROWS_SHOWN]))
        more = (
            f" and {len(labels) - _ROWS_SHOWN} more"
            if len(labels) > _ROWS_SHOWN
            else ""
        )
        where = "" if column.name is None else f" of column {column.name!r}"
        warnings.warn(
            f"{owner}: {n_files} video file(s){where} have no audio stream and are "
            f"missing for the audio side (NaN features): rows {shown}{more}.",
            UserWarning,
            stacklevel=3,
        )
    return column
