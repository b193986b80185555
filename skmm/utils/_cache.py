"""Per-item embedding cache: each item's features stored once, under a content key.

Keys are content fingerprints: a file path with its size, modification and change
times and inode (or, with ``EmbeddingMemory(hash_files=True)``, a sha256 of the
file's bytes), or a hash of an array, the bytes of a file held in memory, a PIL
image (mode, size, pixels and palette) or a text. Entries live in
``<location>/skmm_embeddings/<layout>/<encoder fingerprint>/<key[:2]>/<key>.npz``,
where the encoder fingerprint hashes the encoder's parameters, fitted attributes and
weights: a retrained encoder gets a new folder and never serves stale rows.

Each entry holds the vector and a sha256 checksum of the encoder fingerprint, the
key and the vector. An entry is served only when it is a finite float32 vector of the
expected width whose checksum matches; a truncated, corrupt, NaN-filled or misplaced
entry (one copied under another key or encoder) is recomputed and overwritten. The
checksum detects accidents, not forgery: whoever can write into the cache folder can
write a consistent entry, so the folder must be trusted as much as the code. Entries
are read with ``allow_pickle=False``: a file there can never run code.

Entries are written to a temporary file and renamed into place, so concurrent workers
and killed processes never leave a half-written entry. A cache that cannot be written
(read-only folder, full disk, a file where the folder should be) warns once per
transform and the features are computed without it.
"""

import hashlib
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np

# Bumped when entries or the decoding of items change: old entries are never read.
_LAYOUT = "v2"
# Chunk size for hashing file contents.
_CHUNK = 1 << 20


class EmbeddingMemory(joblib.Memory):
    """A cache folder for encoders' ``memory=``, optionally keying files by content.

    By default (and with a plain path or ``joblib.Memory``) a file item is keyed by
    its absolute path, size, modification time, change time and inode: nothing is
    read to look an item up, but a file rewritten in place with the same size within
    the file system's timestamp resolution (up to 2 s on FAT, 1 s on some network
    file systems), or whose times were restored by a copy tool on a file system that
    reuses inodes, can be served its old features. ``hash_files=True`` keys each file
    by a sha256 of its bytes instead: every lookup reads the whole file (far cheaper
    than decoding it and running the model, but not free), and identical files share
    one entry wherever they are.

    It is a :class:`joblib.Memory`, so it also serves as a pipeline's ``memory``.

    Parameters
    ----------
    location : str or path
        The cache folder.
    hash_files : bool, default=False
        Key file items by their content instead of their path and file-system
        metadata.
    verbose : int, default=0
        joblib's verbosity, for the joblib side of the cache.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skmm.encoders import ImageEncoder
    >>> from skmm.utils import EmbeddingMemory
    >>> memory = EmbeddingMemory(tempfile.mkdtemp(), hash_files=True)
    >>> images = np.zeros((2, 8, 8), dtype=np.uint8)
    >>> enc = ImageEncoder("cnn", max_epochs=0, memory=memory, device="cpu")
    >>> enc.fit_transform(images).shape
    (2, 128)
    """

    def __init__(self, location, *, hash_files=False, verbose=0):
        super().__init__(location, verbose=verbose)
        self.hash_files = hash_files


def _location(memory):
    """The folder of ``memory``: a path, or a ``joblib.Memory`` (None if disabled)."""
    if isinstance(memory, (str, os.PathLike)):
        return Path(memory)
    location = getattr(memory, "location", None)
    return None if location is None else Path(location)


def fingerprint(*parts):
    """A sha1 hex digest of picklable parts, torch state dicts and arrays."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif hasattr(part, "state_dict"):
            for name, tensor in part.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(pickle.dumps(part, protocol=4))
    return h.hexdigest()


def _file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def item_key(item, *, str_is_path, hash_files=False):
    """The content key of one item, or None if it cannot be fingerprinted.

    ``str_is_path`` says whether a string is a file path (images, sounds) or the
    content itself (texts). A file is keyed by its absolute path, size, times and
    inode, or by a hash of its bytes with ``hash_files`` (its extension is kept in
    the key: it chooses the decoder). Items whose bytes do not say what they decode
    to (object arrays, whose bytes are pointers) get no key and are never cached.
    """
    from PIL import Image

    if isinstance(item, (str, os.PathLike)) and (
        str_is_path or not isinstance(item, str)
    ):
        try:
            if hash_files:
                suffix = os.path.splitext(os.fspath(item))[1].lower()
                return fingerprint("file", suffix, _file_digest(item))
            stat = os.stat(item)
        except OSError:
            return None  # a missing or unreadable file: let the encoder report it
        return fingerprint(
            "path",
            os.path.abspath(item),
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
            stat.st_ino,
        )
    if isinstance(item, str):
        return fingerprint("text", item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return fingerprint("bytes", bytes(item))
    if isinstance(item, np.ndarray):
        return None if item.dtype == object else fingerprint(item)
    if isinstance(item, (list, tuple)):
        try:
            array = np.asarray(item)
        except ValueError:
            return None
        return None if array.dtype == object else fingerprint("list", array)
    if isinstance(item, Image.Image):
        palette = item.palette
        return fingerprint(
            "pil",
            item.mode,
            item.size,
            None if palette is None else (palette.mode, palette.tobytes()),
            item.info.get("transparency"),
            item.tobytes(),
        )
    return None


class EmbeddingCache:
    """Read and write per-item embeddings of one fitted encoder.

    Parameters
    ----------
    memory : str, path or joblib.Memory
        Where the cache lives; an :class:`EmbeddingMemory` may ask for file keys by
        content.
    namespace : str
        The encoder's fingerprint.
    """

    def __init__(self, memory, namespace):
        location = _location(memory)
        self.namespace = namespace
        self.hash_files = bool(getattr(memory, "hash_files", False))
        self.folder = (
            None
            if location is None
            else location / "skmm_embeddings" / _LAYOUT / namespace
        )
        self._writable = True

    def _path(self, key):
        return self.folder / key[:2] / f"{key}.npz"

    def _checksum(self, key, value):
        h = hashlib.sha256()
        for part in (_LAYOUT, self.namespace, key, value.dtype.str, str(value.shape)):
            h.update(part.encode() + b"\0")
        h.update(np.ascontiguousarray(value).tobytes())
        return np.frombuffer(h.digest(), dtype=np.uint8)

    def _read(self, key, shape):
        """The entry of ``key`` if it is there and verified, else None."""
        try:
            # Our own handle: closed even when the entry is not a valid archive.
            with open(self._path(key), "rb") as f, np.load(f, allow_pickle=False) as z:
                value, checksum = z["value"], z["checksum"]
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - absent, unreadable or not an entry: a miss
            return None
        if (
            value.dtype == np.float32
            and value.shape == shape
            and np.all(np.isfinite(value))
            and np.array_equal(checksum, self._checksum(key, value))
        ):
            return value
        return None

    def load(self, keys, out):
        """Fill ``out[i]`` for each cached ``keys[i]``; return the mask of hits."""
        hits = np.zeros(len(keys), dtype=bool)
        if self.folder is None:
            return hits
        for i, key in enumerate(keys):
            value = None if key is None else self._read(key, out.shape[1:])
            if value is not None:
                out[i] = value
                hits[i] = True
        return hits

    def _write(self, key, value):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, value=value, checksum=self._checksum(key, value))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass  # the original error is the one to report
            raise

    def save(self, keys, values):
        """Store ``values[i]`` under ``keys[i]`` (atomically, one file per item).

        Non-finite vectors are never stored. If the folder cannot be written, warn
        once and stop trying: the features are already computed.
        """
        if self.folder is None or not self._writable:
            return
        for key, value in zip(keys, values):
            if key is None or not np.all(np.isfinite(value)):
                continue
            try:
                self._write(key, np.asarray(value, dtype=np.float32))
            except OSError as exc:
                self._writable = False
                warnings.warn(
                    f"the embedding cache {self.folder} cannot be written "
                    f"({type(exc).__name__}: {exc}); features are computed without "
                    "it. Give memory= a writable folder, or memory=None.",
                    UserWarning,
                    stacklevel=2,
                )
                return
