"""Per-item embedding cache: each item's features stored once, under a content key.

Keys are content fingerprints: a file path with its size, modification and change
times and inode (or, with ``EmbeddingMemory(hash_files=True)``, a sha256 of the
file's bytes), or a hash of an array, the bytes of a file held in memory, a PIL
image (mode, size, pixels and palette) or a text. Entries live in
``<location>/skmm_embeddings/<layout>/<encoder fingerprint>/<key[:2]>/<key>.npz``,
where the encoder fingerprint hashes the encoder's parameters, fitted attributes and
weights: a retrained encoder gets a new folder and never serves stale rows.

Each entry holds the vector and a checksum of the encoder fingerprint, the key and
the vector: a sha256, or, when the cache has a secret key (``EmbeddingMemory(key=)``
or the ``SKMM_CACHE_KEY`` environment variable), an HMAC-SHA256 under that key. An
entry is served only when it is a finite float32 vector of the expected width whose
checksum matches; a truncated, corrupt, NaN-filled or misplaced entry (one copied
under another key or encoder) is recomputed and overwritten. A plain checksum detects
accidents, not forgery: whoever can write into the cache folder can write a
consistent entry. With a key, only those who hold it can: an entry that is well
formed but not signed with the key (planted, or written without the key or with
another) is recomputed and overwritten, with one warning per transform. Entries are
read with ``allow_pickle=False``: a file there can never run code.

Entries are written to a temporary file and renamed into place, so concurrent workers
and killed processes never leave a half-written entry. A killed writer leaves its
temporary ``.tmp-`` file behind: a writer removes those it finds in the folders it
writes to once they are older than :data:`STALE_TMP_SECONDS` (a live writer's
temporary file lives for the milliseconds of one write). A cache that cannot be
written (read-only folder, full disk, a file where the folder should be) warns once
per transform and the features are computed without it.

A location that is a URL (``s3://bucket/cache``, ``gs://``, ``file://``,
``memory://``: a string with ``://``) is reached through fsspec, imported only then.
On object stores (S3, GCS, Azure, ``memory://``) an entry is one PUT of the whole
object, which the store makes visible whole or never (zarr's fsspec store relies on
the same); a rename there would be a copy and a delete, two more requests and no more
safety. On other fsspec file systems (``file://``, SFTP, HDFS...) an entry is written
under a unique temporary name and moved into place. Either way concurrent writers of
one key write equivalent entries and the last one wins, and every read is verified
as above.
"""

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import tempfile
import time
import uuid
import warnings
from datetime import timezone
from pathlib import Path

import joblib
import numpy as np

from ._remote import is_url, url_validator

# Bumped when entries or the decoding of items change: old entries are never read.
_LAYOUT = "v2"
# Chunk size for hashing file contents.
_CHUNK = 1 << 20
# Entries fetched or stored per call at a URL: asynchronous stores (s3fs, gcsfs,
# adlfs) run a call's requests concurrently; the bytes in flight stay bounded.
_URL_BATCH = 512
# The environment variable holding the cache's secret key, when memory= gives none.
KEY_ENVIRONMENT_VARIABLE = "SKMM_CACHE_KEY"
# A temporary file older than this is a killed writer's, and is removed. One write
# takes milliseconds; the margin covers slow network file systems and the clock
# skew between a file server and its clients.
STALE_TMP_SECONDS = 3600
# fsspec protocols of object stores: one PUT writes a whole object atomically.
_ONE_PUT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "memory"}
)


class EmbeddingMemory(joblib.Memory):
    """A cache location for encoders' ``memory=``, optionally keying files by content.

    By default (and with a plain path or ``joblib.Memory``) a file item is keyed by
    its absolute path, size, modification time, change time and inode: nothing is
    read to look an item up, but a file rewritten in place with the same size within
    the file system's timestamp resolution (up to 2 s on FAT, 1 s on some network
    file systems), or whose times were restored by a copy tool on a file system that
    reuses inodes, can be served its old features. ``hash_files=True`` keys each file
    by a sha256 of its bytes instead: every lookup reads the whole file (far cheaper
    than decoding it and running the model, but not free), and identical files share
    one entry wherever they are.

    It is a :class:`joblib.Memory`, so with a local folder it also serves as a
    pipeline's ``memory``. At a URL only the encoders' per-item cache is kept:
    joblib stores in local folders only, so its side is off (a pipeline given this
    object caches nothing), and no local folder named after the URL is created, as
    ``joblib.Memory("s3://bucket/cache")`` would create ``./s3:/bucket/cache``.

    Parameters
    ----------
    location : str or path
        The cache folder, or an fsspec URL (``"s3://bucket/cache"``, ``"gs://..."``,
        ``"file:///shared/cache"``), which needs fsspec (``pip install
        "skmm[dask]"``) and the store's own package (s3fs, gcsfs, adlfs...).
    hash_files : bool, default=False
        Key file items by their content instead of their path and file-system
        metadata.
    storage_options : dict, default=None
        Options of the fsspec file system of a URL location (``endpoint_url``,
        ``profile``...); unused for a local folder. They travel inside the
        pickled encoder to Dask workers: prefer credentials the workers find
        themselves (environment variables, instance roles) to secrets here.
    key : str or bytes, default=None
        A secret that signs the entries (HMAC-SHA256): the cache then serves only
        entries written with this key, and recomputes (with a warning) any other,
        so a cache on shared storage cannot be fed features by those who can
        write there but do not hold the key. None: the ``SKMM_CACHE_KEY``
        environment variable where the cache is used, if set, else entries carry
        a plain checksum. A key given here travels inside the pickled encoder
        (to Dask workers, in ``joblib.dump`` files): prefer the environment
        variable, set on every machine that uses the cache.
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

    At an fsspec URL, here fsspec's in-process ``memory://`` file system:

    >>> enc = enc.set_params(memory=EmbeddingMemory("memory://skmm-doctest"))
    >>> enc.transform(images).shape
    (2, 128)
    """

    def __init__(
        self,
        location,
        *,
        hash_files=False,
        storage_options=None,
        key=None,
        verbose=0,
    ):
        # joblib would make a local folder of a URL: "s3:/bucket/cache/joblib".
        super().__init__(None if _is_url(location) else location, verbose=verbose)
        self.location = location
        self.hash_files = hash_files
        self.storage_options = storage_options
        self.key = key

    def __repr__(self):
        return f"{type(self).__name__}(location={self.location!r})"


def _is_url(location):
    return isinstance(location, str) and "://" in location


def _location(memory):
    """Where ``memory`` stores: a local Path, a URL str, or None (disabled)."""
    if not isinstance(memory, (str, os.PathLike)):
        memory = getattr(memory, "location", None)
    if memory is None or _is_url(memory):
        return memory
    return Path(memory)


def _secret(memory):
    """The cache's secret key as bytes: ``memory.key``, else ``SKMM_CACHE_KEY``, else
    None (entries carry a plain checksum)."""
    key = getattr(memory, "key", None)
    if key is None:
        key = os.environ.get(KEY_ENVIRONMENT_VARIABLE) or None
        where = f"the {KEY_ENVIRONMENT_VARIABLE} environment variable"
    else:
        where = "EmbeddingMemory(key=)"
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError(
            f"the embedding cache's key ({where}) must be a non-empty str or bytes; "
            f"got {type(key).__name__}."
        )
    return bytes(key)


def _filesystem(url, storage_options):
    """The fsspec file system of ``url``, and the path of ``url`` on it."""
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            f"memory={url!r} is a URL, which the embedding cache reaches through "
            'fsspec, and fsspec is not installed: pip install "skmm[dask]" (or '
            "fsspec and the store's package, such as s3fs), or give memory= a "
            "local folder."
        ) from exc
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ValueError as exc:  # "Protocol not known: nosuch", say
        raise ValueError(f"memory={url!r}: {exc}.") from exc


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


def item_key(item, *, str_is_path, hash_files=False, storage_options=None):
    """The content key of one item, or None if it cannot be fingerprinted.

    ``str_is_path`` says whether a string is a file path (images, sounds) or the
    content itself (texts). A file is keyed by its absolute path, size, times and
    inode, or by a hash of its bytes with ``hash_files`` (its extension is kept in
    the key: it chooses the decoder). A URL is keyed by itself and what the store
    says of the object's current content (size, ETag, checksums, modification time:
    one metadata request, with ``storage_options``; ``hash_files`` does not apply),
    or gets no key when the store gives no validator of its content (a size alone
    is none: a rewrite of the same length keeps it). Items whose bytes do not say what
    they decode to (object arrays, whose bytes are pointers) get no key and are
    never cached.
    """
    from PIL import Image

    if str_is_path and is_url(item):
        validator = url_validator(item, storage_options)
        if validator is None:
            return None
        endpoint = _endpoint(storage_options)
        return fingerprint("url", item, endpoint, validator)
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


def _endpoint(storage_options):
    """Where a URL's store is, when the options say (one bucket name, two stores)."""
    options = storage_options or {}
    client = options.get("client_kwargs") or {}
    return options.get("endpoint_url") or client.get("endpoint_url")


class EmbeddingCache:
    """Read and write per-item embeddings of one fitted encoder.

    Parameters
    ----------
    memory : str, path or joblib.Memory
        Where the cache lives, a local folder or an fsspec URL; an
        :class:`EmbeddingMemory` may ask for file keys by content and give the
        URL's storage options.
    namespace : str
        The encoder's fingerprint.
    """

    def __init__(self, memory, namespace):
        location = _location(memory)
        self.namespace = namespace
        self.hash_files = bool(getattr(memory, "hash_files", False))
        self._secret = None if location is None else _secret(memory)
        self._unsigned = 0  # well-formed entries not signed with the key
        self._warned_unsigned = False
        self._writable = True
        self._swept = set()  # folders cleared of stale temporary files
        self._fs = None
        if location is None:
            self.folder = None
        elif isinstance(location, Path):
            self.folder = location / "skmm_embeddings" / _LAYOUT / namespace
        else:
            options = getattr(memory, "storage_options", None)
            self._fs, root = _filesystem(location, options)
            self.folder = f"{root.rstrip('/')}/skmm_embeddings/{_LAYOUT}/{namespace}"
            protocols = self._fs.protocol
            protocols = {protocols} if isinstance(protocols, str) else set(protocols)
            self._one_put = bool(protocols & _ONE_PUT_STORES)
            self._made = set()  # folders known to exist, on stores that have them

    def _path(self, key):
        if self._fs is not None:
            return f"{self.folder}/{key[:2]}/{key}.npz"
        return self.folder / key[:2] / f"{key}.npz"

    def _checksum(self, key, value):
        """sha256 of the entry's place and vector; HMAC-SHA256 with a secret key."""
        if self._secret is None:
            h = hashlib.sha256()
        else:
            h = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (_LAYOUT, self.namespace, key, value.dtype.str, str(value.shape)):
            h.update(part.encode() + b"\0")
        h.update(np.ascontiguousarray(value).tobytes())
        return np.frombuffer(h.digest(), dtype=np.uint8)

    def _verified(self, key, f, shape):
        """The entry in the open file ``f`` if it is one of ``key``, else None."""
        try:
            with np.load(f, allow_pickle=False) as z:
                value, checksum = z["value"], z["checksum"]
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - not a valid entry: a miss
            return None
        if not (
            value.dtype == np.float32
            and value.shape == shape
            and np.all(np.isfinite(value))
        ):
            return None
        # Compared in constant time: a signature is not guessed byte by byte.
        if hmac.compare_digest(
            np.asarray(checksum, dtype=np.uint8).tobytes(),
            self._checksum(key, value).tobytes(),
        ):
            return value
        if self._secret is not None:
            self._unsigned += 1
        return None

    def _read(self, key, shape):
        """The entry of ``key`` if it is there and verified, else None."""
        try:
            # Our own handle: closed even when the entry is not a valid archive.
            with open(self._path(key), "rb") as f:
                return self._verified(key, f, shape)
        except OSError:  # absent or unreadable: a miss
            return None

    def _read_url(self, keys, shape):
        """The verified entries of ``keys`` at the URL (None where there is none)."""
        paths = [self._path(key) for key in keys]
        # One call per batch: concurrent requests on asynchronous stores, and no glob
        # expansion of the paths (cat would expand a "[" in the user's location). A
        # missing or unreadable entry comes back as an exception: a miss. Explicit
        # start and end lists: fsspec 2023.1 mishandles a single None.
        ends = [None] * len(paths)
        blobs = self._fs.cat_ranges(paths, ends, ends, on_error="return")
        return [
            self._verified(key, io.BytesIO(blob), shape)
            if isinstance(blob, bytes)
            else None
            for key, blob in zip(keys, blobs)
        ]

    def load(self, keys, out):
        """Fill ``out[i]`` for each cached ``keys[i]``; return the mask of hits."""
        hits = np.zeros(len(keys), dtype=bool)
        if self.folder is None:
            return hits
        rows = [i for i, key in enumerate(keys) if key is not None]
        if self._fs is None:
            values = (self._read(keys[i], out.shape[1:]) for i in rows)
        else:
            values = (
                value
                for start in range(0, len(rows), _URL_BATCH)
                for value in self._read_url(
                    [keys[i] for i in rows[start : start + _URL_BATCH]], out.shape[1:]
                )
            )
        for i, value in zip(rows, values):
            if value is not None:
                out[i] = value
                hits[i] = True
        if self._unsigned and not self._warned_unsigned:
            self._warned_unsigned = True
            warnings.warn(
                f"{self._unsigned} entries of the embedding cache {self._where()} "
                "are not signed with its key (planted, or written without the key "
                "or with another one): they are recomputed and overwritten.",
                UserWarning,
                stacklevel=3,
            )
        return hits

    def _where(self):
        if self._fs is None:
            return str(self.folder)
        return self._fs.unstrip_protocol(self.folder)

    def _entry_bytes(self, key, value):
        """One entry, as the bytes of an ``.npz``: the vector and its checksum."""
        buffer = io.BytesIO()
        np.savez(buffer, value=value, checksum=self._checksum(key, value))
        return buffer.getvalue()

    def _sweep(self, folder, listing, age, remove):
        """Remove the stale temporary files of ``folder``, once per cache object.

        ``listing()`` gives the folder's paths, ``age(path)`` a file's age in
        seconds. Only files older than :data:`STALE_TMP_SECONDS` go: a live writer's
        is seconds old at most. Another cleaner may remove one first: no error.
        """
        if folder in self._swept:
            return
        self._swept.add(folder)
        for path in listing():
            if not str(path).rsplit("/", 1)[-1].startswith(".tmp-"):
                continue
            with contextlib.suppress(FileNotFoundError, NotImplementedError):
                if age(path) > STALE_TMP_SECONDS:
                    remove(path)

    def _sweep_local(self, folder):
        now = time.time()
        self._sweep(
            folder,
            lambda: [os.path.join(folder, name) for name in os.listdir(folder)],
            lambda path: now - os.stat(path).st_mtime,
            os.remove,
        )

    def _sweep_url(self, folder):
        def age(path):
            modified = self._fs.modified(path)  # a datetime, naive in UTC or aware
            if modified.tzinfo is None:
                return time.time() - modified.replace(tzinfo=timezone.utc).timestamp()
            return time.time() - modified.timestamp()

        self._sweep(
            folder, lambda: self._fs.ls(folder, detail=False), age, self._fs.rm_file
        )

    def _write(self, key, value):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_local(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._entry_bytes(key, value))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass  # the original error is the one to report
            raise

    def _write_url(self, entries):
        """Store ``(key, value)`` pairs at the URL, each entry whole or not at all."""
        if self._one_put:
            # An object store makes each PUT visible whole, never in part.
            blobs = {self._path(k): self._entry_bytes(k, v) for k, v in entries}
            self._fs.pipe(blobs)
            return
        for key, value in entries:
            path = self._path(key)
            folder = path.rsplit("/", 1)[0]
            if folder not in self._made:
                self._fs.makedirs(folder, exist_ok=True)
                self._made.add(folder)
                self._sweep_url(folder)
            tmp = f"{folder}/.tmp-{uuid.uuid4().hex}.npz"
            try:
                self._fs.pipe_file(tmp, self._entry_bytes(key, value))
                self._fs.mv(tmp, path)
            except BaseException:
                # The write's error is the one to report, not the clean-up's.
                with contextlib.suppress(Exception):
                    self._fs.rm_file(tmp)
                raise

    def save(self, keys, values):
        """Store ``values[i]`` under ``keys[i]`` (atomically, one file per item).

        Non-finite vectors are never stored. If the location cannot be written, warn
        once and stop trying: the features are already computed.
        """
        if self.folder is None or not self._writable:
            return
        entries = [
            (key, np.asarray(value, dtype=np.float32))
            for key, value in zip(keys, values)
            if key is not None and np.all(np.isfinite(value))
        ]
        # A local folder fails with an OSError; remote stores also raise their
        # client's own errors (a missing credential, a refused request).
        if self._fs is None:
            failures, where = OSError, self.folder
        else:
            failures, where = Exception, self._fs.unstrip_protocol(self.folder)
        try:
            if self._fs is None:
                for key, value in entries:
                    self._write(key, value)
            else:
                for start in range(0, len(entries), _URL_BATCH):
                    self._write_url(entries[start : start + _URL_BATCH])
        except MemoryError:
            raise
        except failures as exc:
            self._writable = False
            warnings.warn(
                f"the embedding cache {where} cannot be written "
                f"({type(exc).__name__}: {exc}); features are computed without "
                "it. Give memory= a writable location, or memory=None.",
                UserWarning,
                stacklevel=2,
            )
