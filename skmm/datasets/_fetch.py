"""Downloading the full data sets: checksums, a cache folder, atomic writes."""

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ._av_digits import _NAME, read_idx

FSDD_URL = (
    "https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/"
    "26eb9aaf76e81b692f806f9140c2d2777410d7a1/recordings/"
)
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# (algorithm, digest). The test files' sha256 were computed on the canonical files;
# the training files carry the md5 torchvision publishes for them.
MNIST_FILES = {
    "test": {
        "t10k-images-idx3-ubyte.gz": (
            "sha256",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "sha256",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "train": {
        "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
    },
}


def get_data_home(data_home=None):
    """Return the folder skmm caches downloads in, creating it.

    ``data_home`` if given, else the ``SKMM_DATA`` environment variable, else
    ``~/skmm_data``.

    Parameters
    ----------
    data_home : str or path, default=None
        The folder.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> from skmm.datasets import get_data_home
    >>> get_data_home(tempfile.gettempdir()).is_dir()
    True
    """
    home = data_home or os.environ.get("SKMM_DATA") or Path("~/skmm_data")
    home = Path(home).expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(home, exc) from exc
    return home


def _unwritable(folder, exc):
    """The error for a data folder that cannot be created or written to."""
    return type(exc)(
        exc.errno,
        f"cannot write to the data folder {folder} ({exc.strerror or exc}); pass "
        "data_home= or set the SKMM_DATA environment variable to a writable folder",
    )


def _digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_file(url, path, checksum, *, timeout=30):
    """Download ``url`` to ``path`` unless a verified copy is there.

    The file is written to a temporary name beside ``path``, checked, then renamed,
    so an interrupted or corrupt download never leaves a file at ``path``.

    Parameters
    ----------
    url : str
        Where to download from (``https://``, ``http://`` or ``file://``).
    path : path
        Where to store it.
    checksum : tuple of (str, str)
        ``(algorithm, hex digest)``, e.g. ``("sha256", "8d42...")``.
    timeout : float, default=30
        Seconds to wait for the server.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import hashlib, pathlib, tempfile
    >>> from skmm.datasets import fetch_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "src.txt").write_text("hello")
    5
    >>> digest = hashlib.sha256(b"hello").hexdigest()
    >>> fetch_file((folder / "src.txt").as_uri(), folder / "copy.txt", ("sha256", digest)).name
    'copy.txt'
    """
    path = Path(path)
    algorithm, expected = checksum
    if path.is_file() and _digest(path, algorithm) == expected:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise _unwritable(path.parent, exc) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise OSError(
                    f"could not download {url}: {reason}. Check the internet "
                    f"connection, or put a verified copy of the file at {path}."
                ) from exc
        actual = _digest(tmp, algorithm)
        if actual != expected:
            raise OSError(
                f"{url} downloaded with {algorithm} {actual}, expected {expected}: "
                "the file is corrupt or has changed upstream; nothing was saved."
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _fsdd_manifest():
    raw = (
        resources.files(__package__).joinpath("data", "fsdd_sha256.txt.gz").read_bytes()
    )
    lines = gzip.decompress(raw).decode().split()
    return dict(zip(lines[::2], lines[1::2]))


def fetch_fsdd(data_home=None, *, base_url=FSDD_URL, download_if_missing=True):
    """Download the Free Spoken Digit Dataset (3,000 WAV files, 8 kHz; 14 MB).

    Each file is checked against its sha256 and cached in ``data_home/fsdd``. FSDD is
    by Zohar Jackson et al., licensed CC BY-SA 4.0.

    Parameters
    ----------
    data_home : str or path, default=None
        Cache folder; see :func:`get_data_home`.
    base_url : str, default=FSDD_URL
        Folder URL the recordings are downloaded from (the upstream repository at a
        fixed commit); a mirror or a ``file://`` folder may be given.
    download_if_missing : bool, default=True
        If False, raise ``OSError`` instead of downloading missing files.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``frame`` with columns ``path``, ``digit``, ``speaker``, ``take`` and
        ``split`` (FSDD's official split: takes 0-4 are ``"test"``); ``data`` (the
        paths), ``target`` (the digits), ``DESCR``.

    Examples
    --------
    >>> from skmm.datasets import fetch_fsdd
    >>> fsdd = fetch_fsdd()  # doctest: +SKIP
    >>> fsdd.frame.shape  # doctest: +SKIP
    (3000, 5)
    """
    folder = get_data_home(data_home) / "fsdd"
    rows = []
    for name, digest in sorted(_fsdd_manifest().items()):
        path = folder / name
        if not path.is_file() and not download_if_missing:
            raise OSError(f"{path} is missing and download_if_missing=False.")
        fetch_file(base_url + name, path, ("sha256", digest))
        digit, speaker, take = _NAME.match(name).groups()
        rows.append((str(path), int(digit), speaker, int(take)))
    frame = pd.DataFrame(rows, columns=["path", "digit", "speaker", "take"])
    frame["split"] = np.where(frame["take"] < 5, "test", "train")
    return Bunch(
        frame=frame,
        data=frame["path"],
        target=frame["digit"],
        DESCR="Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, "
        "CC BY-SA 4.0): 6 speakers x 10 digits x 50 takes, 8 kHz mono WAV.",
    )


def fetch_mnist(data_home=None, *, subset="test", base_url=MNIST_URL):
    """Download MNIST handwritten digits (28x28 uint8), checked and cached.

    Parameters
    ----------
    data_home : str or path, default=None
        Cache folder; see :func:`get_data_home`. Files go to ``data_home/mnist``.
    subset : {"test", "train", "all"}, default="test"
        The 10,000 test images, the 60,000 training images, or both (train first).
    base_url : str, default=MNIST_URL
        Folder URL of the IDX files (torchvision's mirror); a ``file://`` folder may
        be given.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` (n, 28, 28) uint8, ``target`` (n,) uint8, ``files`` (the cached
        paths), ``DESCR``.

    Examples
    --------
    >>> from skmm.datasets import fetch_mnist
    >>> mnist = fetch_mnist()  # doctest: +SKIP
    >>> mnist.images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    if subset not in ("test", "train", "all"):
        raise ValueError(f"subset must be 'test', 'train' or 'all', got {subset!r}.")
    folder = get_data_home(data_home) / "mnist"
    images, labels, files = [], [], []
    for part in ("train", "test") if subset == "all" else (subset,):
        (image_file, image_sum), (label_file, label_sum) = MNIST_FILES[part].items()
        image_path = fetch_file(base_url + image_file, folder / image_file, image_sum)
        label_path = fetch_file(base_url + label_file, folder / label_file, label_sum)
        images.append(read_idx(image_path))
        labels.append(read_idx(label_path))
        files += [image_path, label_path]
    return Bunch(
        images=np.concatenate(images),
        target=np.concatenate(labels),
        files=files,
        DESCR="MNIST handwritten digits (LeCun, Cortes and Burges), 28x28 grayscale.",
    )
