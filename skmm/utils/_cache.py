"""Per-item embedding cache: each item's features stored once, under a content key.

Keys are content fingerprints: a file path with its size and modification time, or
a hash of an array, an image's pixels or a text. Entries live in
``<location>/skmm_embeddings/<encoder fingerprint>/<key[:2]>/<key>.npy``, where the
encoder fingerprint hashes the encoder's parameters, fitted attributes and weights:
a retrained encoder gets a new folder and never serves stale rows. Each entry is
written to a temporary file and renamed into place, so concurrent workers and killed
processes never leave a half-written entry.
"""

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np


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
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif hasattr(part, "state_dict"):
            for name, tensor in part.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(pickle.dumps(part, protocol=4))
    return h.hexdigest()


def item_key(item, *, str_is_path):
    """The content key of one item, or None if it cannot be fingerprinted.

    ``str_is_path`` says whether a string is a file path (images, sounds), keyed by
    its absolute path, size and modification time, or the content itself (texts).
    """
    from PIL import Image

    if isinstance(item, (str, os.PathLike)) and (
        str_is_path or not isinstance(item, str)
    ):
        try:
            stat = os.stat(item)
        except OSError:
            return None  # a missing file: let the encoder report it
        return fingerprint(
            "path", os.path.abspath(item), stat.st_size, stat.st_mtime_ns
        )
    if isinstance(item, str):
        return fingerprint("text", item)
    if isinstance(item, np.ndarray):
        return fingerprint(item)
    if isinstance(item, Image.Image):
        return fingerprint("pil", item.mode, item.size, item.tobytes())
    return None


class EmbeddingCache:
    """Read and write per-item embeddings of one fitted encoder.

    Parameters
    ----------
    memory : str, path or joblib.Memory
        Where the cache lives.
    namespace : str
        The encoder's fingerprint.
    """

    def __init__(self, memory, namespace):
        location = _location(memory)
        self.folder = (
            None if location is None else location / "skmm_embeddings" / namespace
        )

    def _path(self, key):
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, keys, out):
        """Fill ``out[i]`` for each cached ``keys[i]``; return the mask of hits."""
        hits = np.zeros(len(keys), dtype=bool)
        if self.folder is None:
            return hits
        for i, key in enumerate(keys):
            if key is None:
                continue
            try:
                value = np.load(self._path(key), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue  # absent (or unreadable): recompute it
            if value.shape == out.shape[1:]:
                out[i] = value
                hits[i] = True
        return hits

    def save(self, keys, values):
        """Store ``values[i]`` under ``keys[i]`` (atomically, one file per item)."""
        if self.folder is None:
            return
        for key, value in zip(keys, values):
            if key is None:
                continue
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, value, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                os.remove(tmp)
                raise
