"""Items behind URLs: reads through fsspec with a timeout and bounded retries.

An image or sound item may be a URL that fsspec reaches (``s3://``, ``gs://``,
``https://``, ``memory://``...), with the encoder's ``storage_options``. Each read
fetches the whole object in one request (fsspec's ``cat_file``: one GET, where
opening it as a file first asks for its size, then reads it in ranges), stops an
attempt that makes no progress for ``TIMEOUT`` seconds (a timeout given to the
store's client: aiohttp for HTTP, botocore for S3), and retries transient failures (time-outs, dropped connections,
5xx, 408 and 429 answers) up to ``ATTEMPTS`` times with exponential back-off; a
missing object or a refused request fails at once.

The objects are media files: an HTML page (what a sign-in or error page answered with
status 200 sends) is refused with an error, never decoded or taken for missing.

Errors name the URL without its credentials: the user and password of the URL and
its query string (which holds the signature of a pre-signed URL) are replaced by
``***``; ``storage_options`` never appear.
"""

import os
import re
import time
from urllib.parse import urlsplit, urlunsplit

# Seconds an attempt may go without progress (connecting, or between two reads).
TIMEOUT = 30.0
# Attempts per item: the first, then two retries.
ATTEMPTS = 3
# First back-off, doubled at each retry.
BACKOFF = 0.5

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# How an HTML page starts (after blanks and a byte order mark), lower-cased.
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")
# HTTP statuses worth another attempt.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}

# The ``storage_options`` parameter of the encoders that read items (filled into
# their docstrings by ``fill_doc``).
STORAGE_OPTIONS_DOC = """\
storage_options : dict, default=None
    Options of the fsspec file system of items that are URLs (``s3://``,
    ``gs://``, ``https://``, ``memory://``...): ``endpoint_url``, ``anon``,
    ``client_kwargs``... URLs need fsspec (``pip install 'skmm[urls]'``) and
    the store's package (s3fs, gcsfs). Each item is read in one request, an attempt
    that stalls for 30 s fails, transient errors are retried twice; errors name
    the row, the column and the URL without its credentials. Options travel
    inside the fitted encoder (pickles, skops files, Dask workers): prefer
    credentials the machine finds itself (environment, instance roles)."""


def is_url(item):
    """True for a string that names a URL (``scheme://...``), not a local path."""
    return isinstance(item, str) and _SCHEME.match(item) is not None


def extension(item):
    """The lower-case extension of a path or URL. A URL's is its path's: the query
    string (a pre-signed URL's ``?X-Amz-Signature=...``) and the fragment are not
    part of it."""
    text = os.fspath(item)
    if is_url(text):
        text = urlsplit(text).path
    return os.path.splitext(text)[1].lower()


def redact(url):
    """``url`` without its credentials: user, password and query string hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text):
    """Every URL in ``text`` redacted (error messages of store clients quote them)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group()), str(text))


def _with_timeouts(protocol, options):
    """``options`` with a stall timeout for the stores whose clients take one."""
    options = dict(options or {})
    if protocol in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        if "timeout" not in client:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(
                total=None, sock_connect=TIMEOUT, sock_read=TIMEOUT
            )
        options["client_kwargs"] = client
    elif protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", TIMEOUT)
        config.setdefault("read_timeout", TIMEOUT)
        options["config_kwargs"] = config
    return options


def filesystem(url, storage_options=None):
    """The fsspec file system of ``url`` (with timeouts), and the path on it."""
    try:
        import fsspec
    except ImportError:
        raise ImportError(
            f"the item {redact(url)} is a URL, which skmm reads through fsspec, and "
            "fsspec is not installed: pip install 'skmm[urls]' (and the store's "
            "package, such as s3fs or gcsfs)."
        ) from None
    protocol = urlsplit(url).scheme.lower()
    try:
        return fsspec.core.url_to_fs(url, **_with_timeouts(protocol, storage_options))
    except ImportError as exc:
        raise ImportError(f"cannot read {redact(url)}: {redact_text(exc)}") from None
    except ValueError as exc:  # an unknown protocol
        raise ValueError(f"cannot read {redact(url)}: {redact_text(exc)}") from None


def _cause(exc):
    """The error behind ``exc``: fsspec's HTTP file system reports any failure of
    its metadata request (a refused connection, a time-out) as FileNotFoundError."""
    if isinstance(exc, FileNotFoundError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _status(exc):
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    return status if isinstance(status, int) else None


def _transient(exc):
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) or (
        type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "fsspec")
    )


def _is_html(data):
    head = data[:512].lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(_HTML_STARTS)


def read_url(url, storage_options=None):
    """The bytes of the media object at ``url``; ValueError naming the (redacted)
    URL, for an empty object or an HTML page too."""
    fs, path = filesystem(url, storage_options)
    name = redact(url)
    for attempt in range(ATTEMPTS):
        try:
            data = fs.cat_file(path)
            if not data:
                raise ValueError(f"{name} is an empty object")
            if _is_html(data):
                raise ValueError(
                    f"{name} is an HTML page, not a media file (a sign-in or error "
                    "page answered as if it were the file?)"
                )
            return data
        except (ValueError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - the store's client's own errors
            exc = _cause(exc)
            if isinstance(exc, FileNotFoundError) or _status(exc) in (404, 410):
                raise ValueError(f"not found: {name}") from None
            if not _transient(exc):
                raise ValueError(
                    f"cannot read {name} ({type(exc).__name__}: {redact_text(exc)})"
                ) from None
            if attempt + 1 == ATTEMPTS:
                raise ValueError(
                    f"cannot read {name} after {ATTEMPTS} attempts "
                    f"({type(exc).__name__}: {redact_text(exc)})"
                ) from None
            time.sleep(BACKOFF * 2**attempt)


# Fields of fsspec's ``info`` that change when an object is rewritten (``blob_id``:
# the git blob hash of a file on the Hugging Face hub, ``hf://``).
_VALIDATORS = (
    "etag",
    "blob_id",
    "content-md5",
    "md5",
    "md5hash",
    "crc32c",
    "generation",
    "version_id",
    "versionid",
    "last-modified",
    "lastmodified",
    "last_modified",
    "mtime",
    "updated",
    "created",
)


def url_validator(url, storage_options=None):
    """What identifies the object's current content: its size and the store's
    validators (ETag, checksums, modification time), or None when the store gives
    none of them (the item is then not cached). A size alone is not enough: a
    rewrite of the same length (a WAV of the same duration) keeps it."""
    try:
        fs, path = filesystem(url, storage_options)
        info = fs.info(path)
    except Exception:  # noqa: BLE001 - the read reports the error
        return None
    fields = {str(k).lower(): v for k, v in info.items()}
    found = sorted((k, str(fields[k])) for k in _VALIDATORS if k in fields)
    if not found:
        return None
    return [("size", fields.get("size")), *found]
