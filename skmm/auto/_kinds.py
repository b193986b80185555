"""Column kinds, decided from a column's values (never from its name).

:func:`detect_kind` reads one column and returns its kind, one of :data:`KINDS`, with
the form its items take (``"path"``, ``"url"``, ``"bytes"``, ``"pil"``, ``"array"``,
``"vector"``, ``"string"``, ...), which the vectorizer needs to encode it. The rules,
in the order they are tried (documented in :class:`MultimodalVectorizer`):

1. Missing cells (None, NaN, pd.NA, NaT, an empty list) are ignored; a column with no
   present cell, or with one distinct value and no missing cell, is ``"drop"``.
2. By dtype: booleans and numbers are ``"numeric"``, datetimes ``"datetime"``, a
   pandas categorical ``"categorical"``.
3. Cells of several items (lists, tuples) take the kind of their items.
4. Items, from a sample of the present cells: PIL images and 2-D/3-D numeric arrays
   are images, 4-D numeric arrays ``(T, H, W, C)`` video clips; 1-D numeric arrays
   are waveforms (``"audio"``) when their lengths differ between rows or reach
   :data:`MIN_WAVEFORM_LENGTH`, else fixed-length vectors (``"numeric"``, one
   feature per coordinate); bytes are recognised by their magic number
   (:data:`FILE_KINDS`).
5. Strings: paths and URLs whose extension is a file kind's (:data:`FILE_KINDS`);
   local files among them are opened (up to :data:`N_OPENED`) and their first bytes
   must carry the kind's magic number, so a ``.png`` path that is not an image is not
   an image; then strings that all parse as numbers (``"numeric"``) or as dates with
   one format (``"datetime"``, skrub's ``ToDatetime``); then ``"text"`` when the
   distinct values average at least :data:`TEXT_MIN_WORDS` words and number at least
   ``min(TEXT_MIN_DISTINCT, 10% of the present rows)`` (AutoGluon's rule), else
   ``"categorical"``.
"""

import os
from dataclasses import dataclass
from datetime import date, datetime
from numbers import Number

import numpy as np
import pandas as pd

from ..encoders._video_io import VIDEO_EXTENSIONS, VIDEO_SIGNATURES
from ..utils._remote import extension
from ..utils._validation import is_group, is_missing

__all__ = ["FILE_KINDS", "KINDS", "detect_kind"]

KINDS = (
    "image",
    "audio",
    "video",
    "text",
    "categorical",
    "numeric",
    "datetime",
    "drop",
)


@dataclass(frozen=True)
class FileKind:
    """A kind whose items are files: their extensions and magic numbers."""

    extensions: frozenset
    # (offset, bytes) pairs: a file of this kind starts with one of them.
    signatures: tuple

    def matches(self, head):
        return any(head[o : o + len(magic)] == magic for o, magic in self.signatures)


# The kinds whose items are files, paths or URLs or bytes. One entry per kind: a new
# kind of file (video, say) is one more entry here and its default encoder.
FILE_KINDS = {
    "image": FileKind(
        frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}),
        (
            (0, b"\x89PNG\r\n\x1a\n"),
            (0, b"\xff\xd8\xff"),
            (0, b"GIF87a"),
            (0, b"GIF89a"),
            (0, b"BM"),
            (8, b"WEBP"),
            (0, b"II*\x00"),
            (0, b"MM\x00*"),
        ),
    ),
    "audio": FileKind(
        frozenset({".wav", ".flac", ".ogg", ".mp3"}),
        (
            (8, b"WAVE"),
            (0, b"fLaC"),
            (0, b"OggS"),
            (0, b"ID3"),
            (0, b"\xff\xfb"),
            (0, b"\xff\xf3"),
            (0, b"\xff\xf2"),
        ),
    ),
    # The video encoder's own list (after audio: Ogg bytes are audio's first).
    "video": FileKind(VIDEO_EXTENSIONS, VIDEO_SIGNATURES),
}

# Present cells whose Python type is inspected, and local files opened, per column.
SAMPLE_SIZE = 200
N_OPENED = 5
# A fixed-length 1-D array this long is a waveform (half a second at 16 kHz), shorter
# ones are vectors (embeddings, spectra); waveforms of different lengths are always
# waveforms.
MIN_WAVEFORM_LENGTH = 8000
# Text against categorical strings (AutoGluon's rule, on the distinct values).
TEXT_MIN_WORDS = 3
TEXT_MIN_DISTINCT = 20
# Bytes read from a file to find its magic number.
_HEAD = 16


@dataclass(frozen=True)
class Detected:
    """A column's kind, the form of its items, and why."""

    kind: str
    form: str
    reason: str


def detect_kind(values, name, *, random_state=0):
    """Decide the kind of one column from its values.

    Parameters
    ----------
    values : Series
        The column.
    name : str
        Its name, for error messages only.
    random_state : int
        Seeds the sample of cells inspected.

    Returns
    -------
    detected : Detected
    """
    dtype = values.dtype
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError(f"column {name!r}: Complex data not supported.")
    if isinstance(dtype, pd.CategoricalDtype):
        return _unless_constant(
            values, Detected("categorical", "category", "categorical dtype")
        )
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_object_dtype(dtype)
    ):
        return _unless_constant(values, Detected("numeric", "number", f"{dtype} dtype"))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _unless_constant(
            values, Detected("datetime", "datetime", f"{dtype} dtype")
        )
    cells = values.to_numpy(dtype=object)
    present = np.flatnonzero([not is_missing(v) for v in cells])
    if len(present) == 0:
        return Detected("drop", "empty", "every cell is missing")
    rng = np.random.default_rng(random_state)
    sample = cells[
        np.sort(rng.choice(present, min(SAMPLE_SIZE, len(present)), replace=False))
    ]
    if not any(is_group(v) for v in sample):
        return _unless_constant(values, _item_kind(sample, name, cells[present]))
    items = [
        item
        for cell in sample
        for item in (cell if is_group(cell) else (cell,))
        if not is_missing(item)
    ]
    found = _item_kind(np.asarray(items + [None], dtype=object)[:-1], name)
    if found.kind not in ("image", "audio", "video", "text", "categorical"):
        raise ValueError(
            f"column {name!r}: its cells are lists of {found.kind} items; cells of "
            "several items are pooled for images, sounds, video clips and texts "
            "only."
        )
    # A list of strings is several texts, whatever their number of words.
    kind = "text" if found.kind == "categorical" else found.kind
    return Detected(kind, f"list of {found.form}", f"lists of {found.reason}")


def _unless_constant(values, detected):
    """``"drop"`` for a column with no present cell, or one distinct value and no
    missing cell."""
    present = values.notna()
    if not present.any():
        return Detected("drop", detected.form, "every cell is missing")
    try:
        distinct = values.nunique()
    except TypeError:  # unhashable cells (arrays): not checked
        return detected
    if distinct == 1 and present.all():
        return Detected("drop", detected.form, f"constant {values.iloc[0]!r:.40}")
    return detected


def _type_of(item):
    """The family of one present item: what decides its column's kind."""
    from PIL import Image

    if isinstance(item, (bool, np.bool_)):
        return "number"
    if isinstance(item, str):
        return "str"
    if isinstance(item, os.PathLike):
        return "path"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(item, Number):
        return "number"
    if isinstance(item, (datetime, date, np.datetime64)):
        return "datetime"
    if isinstance(item, Image.Image):
        return "pil"
    if isinstance(item, np.ndarray) and (
        np.issubdtype(item.dtype, np.number) or item.dtype == bool
    ):
        return "array"
    if isinstance(item, (list, tuple)):
        return "array"  # numbers (is_group said so): a waveform, vector or image
    return type(item).__name__


def _item_kind(sample, name, cells=None):
    """The kind of a column of single items, from a sample of them.

    ``cells`` (all the present cells) is given for a column of single items, whose
    strings are checked whole; cells of several items are judged on the sample.
    """
    types = [_type_of(v) for v in sample]
    found = set(types)
    if found == {"number"}:
        return Detected("numeric", "number", "numbers in an object column")
    if found == {"datetime"}:
        return Detected("datetime", "datetime", "date and time objects")
    if found == {"pil"}:
        return Detected("image", "pil", "PIL images")
    if found == {"array"}:
        return _array_kind(sample, name)
    if found == {"bytes"}:
        return _bytes_kind(sample, name)
    if found <= {"str", "path"}:
        return _string_kind(sample, name, sample if cells is None else cells)
    examples = {t: int(np.flatnonzero(np.asarray(types) == t)[0]) for t in found}
    shown = ", ".join(
        f"{t} (e.g. {sample[i]!r:.40})" for t, i in sorted(examples.items())
    )
    raise ValueError(
        f"column {name!r}: cannot tell its kind from values of types {shown}. A "
        "column holds one kind of item; give it an encoder with "
        f"specific_encoders=[(encoder, [{name!r}])], or drop it with "
        f"specific_encoders=[('drop', [{name!r}])]."
    )


def _array_kind(sample, name):
    arrays = [np.asarray(v) for v in sample]
    dims = {a.ndim for a in arrays}
    if dims <= {2, 3}:
        return Detected("image", "array", "2-D/3-D numeric arrays")
    if dims == {4}:
        return Detected("video", "array", "4-D numeric arrays (frames)")
    if dims != {1}:
        raise ValueError(
            f"column {name!r}: its arrays have {sorted(dims)} dimensions; 1-D arrays "
            "are waveforms or vectors, 2-D and 3-D arrays images, 4-D arrays video "
            "clips."
        )
    lengths = {len(a) for a in arrays}
    waveform_dtype = all(
        np.issubdtype(a.dtype, np.floating) or a.dtype == np.int16 for a in arrays
    )
    if waveform_dtype and (len(lengths) > 1 or min(lengths) >= MIN_WAVEFORM_LENGTH):
        why = (
            "1-D float arrays of different lengths"
            if len(lengths) > 1
            else f"1-D float arrays of {min(lengths)} samples"
        )
        return Detected("audio", "array", why)
    if len(lengths) > 1:
        raise ValueError(
            f"column {name!r}: its 1-D arrays have different lengths "
            f"({min(lengths)} to {max(lengths)}) but are not float waveforms; "
            "vectors must all have one length."
        )
    return Detected("numeric", "vector", f"1-D arrays of {lengths.pop()} numbers")


def _bytes_kind(sample, name):
    heads = [bytes(v[:_HEAD]) for v in sample]
    for kind, spec in FILE_KINDS.items():
        if sum(spec.matches(h) for h in heads) * 2 >= len(heads):
            return Detected(kind, "bytes", f"bytes of {kind} files (magic number)")
    raise ValueError(
        f"column {name!r}: holds bytes that are not image, audio or video files (no "
        f"known magic number; e.g. {heads[0]!r}). Give it an encoder with "
        f"specific_encoders=[(encoder, [{name!r}])] or drop it."
    )


def _string_kind(sample, name, cells):
    extensions = [extension(v) for v in sample]
    for kind, spec in FILE_KINDS.items():
        hits = [v for v, ext in zip(sample, extensions) if ext in spec.extensions]
        if len(hits) * 2 >= len(sample):
            found = _file_kind(kind, spec, hits, name)
            if found is not None:
                return found
    strings = pd.Series([os.fspath(v) for v in cells], dtype=object)
    if pd.to_numeric(strings, errors="coerce").notna().all():
        return Detected("numeric", "string", "strings that all parse as numbers")
    if _dates(strings):
        return Detected("datetime", "string", "strings that all parse as dates")
    distinct = strings.unique()
    words = np.mean([len(s.split()) for s in distinct])
    needed = min(TEXT_MIN_DISTINCT, int(0.1 * len(strings)))
    if words >= TEXT_MIN_WORDS and len(distinct) >= needed:
        return Detected(
            "text",
            "string",
            f"{len(distinct)} distinct strings of {words:.1f} words on average",
        )
    return Detected(
        "categorical",
        "string",
        f"{len(distinct)} distinct strings of {words:.1f} words on average",
    )


def _file_kind(kind, spec, values, name):
    """The kind of paths or URLs with the kind's extensions, after opening a few.

    URLs are taken on their extension (opening them needs the network). Local files
    are opened: the kind holds when at least half of those opened start with one of
    its magic numbers; when none of the sampled files exists, the paths are wrong
    (relative to another folder, say), which is an error rather than text.
    """
    local = [os.fspath(v) for v in values if "://" not in os.fspath(v)]
    if not local:
        return Detected(kind, "url", f"URLs of {kind} files (by extension)")
    opened, matched = 0, 0
    for path in local[:N_OPENED]:
        try:
            with open(path, "rb") as f:
                head = f.read(_HEAD)
        except OSError:
            continue
        opened += 1
        matched += spec.matches(head)
    if opened == 0:
        raise ValueError(
            f"column {name!r} holds paths of {kind} files ({local[0]!r}, ...), but "
            f"none of the {min(len(local), N_OPENED)} opened exists. Relative paths "
            f"are read from the working directory ({os.getcwd()!r}): give full "
            "paths, or drop the column with "
            f"specific_encoders=[('drop', [{name!r}])]."
        )
    if matched * 2 >= opened:
        return Detected(
            kind, "path", f"paths of {kind} files ({matched} of {opened} opened)"
        )
    return None


def _dates(strings):
    """True when every string parses as a date with one format (skrub's rule)."""
    from skrub import ToDatetime

    try:
        ToDatetime().fit_transform(strings.rename("column"))
    except (ValueError, TypeError):  # skrub's RejectColumn is a ValueError
        return False
    return True
