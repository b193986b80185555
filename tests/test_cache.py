"""The per-item embedding cache (memory=) and threaded decoding (num_workers=)."""

import io
import os
import pickle
import shutil
import sys
import time
import warnings

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from skmm.encoders import ImageEncoder, TextEncoder


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture
def count_loads(monkeypatch):
    """Count the items each encoder class actually decodes and encodes."""
    counts = {}

    def spy(cls):
        original = cls._load

        def load(self, column, rows):
            counts[cls.__name__] = counts.get(cls.__name__, 0) + len(rows)
            return original(self, column, rows)

        monkeypatch.setattr(cls, "_load", load)

    spy(ImageEncoder)
    spy(TextEncoder)
    return counts


def _entry(path):
    with np.load(path, allow_pickle=False) as entry:
        return dict(entry)


def frozen(**params):
    defaults = dict(backbone="cnn", max_epochs=0, random_state=0, device="cpu")
    return ImageEncoder(**{**defaults, **params})


def _second_call_decodes_nothing(memory, image_files, count_loads):
    """Encode twice through the cache at ``memory``: the second pass decodes none."""
    reference = frozen().fit(image_files).transform(image_files)
    enc = frozen(memory=memory).fit(image_files)
    count_loads.clear()
    first = enc.transform(image_files)
    assert count_loads == {"ImageEncoder": 12}
    second = enc.transform(image_files[::-1])
    assert count_loads == {"ImageEncoder": 12}  # nothing new decoded
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference[::-1])
    return reference


def test_second_call_hits_the_cache(image_files, tmp_path, count_loads):
    _second_call_decodes_nothing(tmp_path / "cache", image_files, count_loads)
    entries = list((tmp_path / "cache" / "skmm_embeddings").rglob("*.npz"))
    assert len(entries) == 12


def test_changed_item_misses(image_files, tmp_path, count_loads):
    enc = frozen(memory=str(tmp_path / "cache")).fit(image_files)
    enc.transform(image_files)
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(image_files[3])
    os.utime(image_files[3], ns=(1, 1))  # a different mtime, whatever the clock
    count_loads.clear()
    out = enc.transform(image_files)
    assert count_loads == {"ImageEncoder": 1}
    fresh = enc.set_params(memory=None).transform([image_files[3]])[0]
    np.testing.assert_array_equal(out[3], fresh)


def test_changed_weights_or_training_misses(image_files, tmp_path, count_loads):
    cache = joblib.Memory(tmp_path / "cache", verbose=0)
    weights = tmp_path / "w.pt"
    base = frozen().fit(image_files)
    torch.save(base.module_.state_dict(), weights)
    frozen(weights=str(weights), memory=cache).fit(image_files).transform(image_files)
    count_loads.clear()
    frozen(weights=str(weights), memory=cache).fit(image_files).transform(image_files)
    assert count_loads == {}  # refit on the same file: every item is a hit
    with torch.no_grad():
        base.module_.backbone[0].weight.mul_(2)
    torch.save(base.module_.state_dict(), weights)
    count_loads.clear()
    frozen(weights=str(weights), memory=cache).fit(image_files).transform(image_files)
    assert count_loads == {"ImageEncoder": 12}  # new weights: every item misses
    trained = frozen(memory=cache, max_epochs=1)
    labels = [0, 1] * 6
    trained.fit(image_files, labels).transform(image_files)
    count_loads.clear()
    trained.set_params(random_state=1).fit(image_files, labels).transform(image_files)
    # Training reads the 12 items, and new weights mean 12 cache misses.
    assert count_loads == {"ImageEncoder": 24}


def test_corrupt_or_unfinished_entries_are_recomputed(image_files, tmp_path):
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    expected = enc.transform(image_files)
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # a truncated entry
    (entries[1].parent / ".tmp-killed.npz").write_bytes(b"PK\x03\x04")  # killed writer
    # The recomputed row runs in a batch of one: equal up to float rounding.
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)
    assert _entry(entries[0])["value"].shape == (128,)


def _encode_in_worker(enc, paths):
    return enc.transform(paths)


def test_concurrent_writers_do_not_corrupt(image_files, tmp_path):
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_encode_in_worker)(enc, image_files) for _ in range(4)
    )
    expected = frozen().fit(image_files).transform(image_files)
    # A worker that finds some entries already written encodes the rest in a
    # smaller batch: equal up to float rounding.
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)
    for entry in (tmp_path / "cache").rglob("*.np*"):
        assert not entry.name.startswith(".tmp-")
        assert _entry(entry)["value"].shape == (128,)


def test_grid_search_folds_share_embeddings(image_files, tmp_path, count_loads):
    """A frozen pretrained encoder is the same in every fold: one encoding per item."""
    weights = tmp_path / "pretrained.pt"
    torch.save(frozen().fit(image_files).module_.state_dict(), weights)
    y = np.array([0, 1] * 6)
    grid = {"svc__C": [0.1, 1.0, 10.0]}
    pipe = make_pipeline(frozen(weights=str(weights), memory=tmp_path / "cache"), SVC())
    search = GridSearchCV(pipe, grid, cv=3).fit(image_files, y)
    assert count_loads == {"ImageEncoder": 12}  # 3 folds x 3 candidates + refit
    uncached = make_pipeline(frozen(weights=str(weights)), SVC())
    reference = GridSearchCV(uncached, grid, cv=3).fit(image_files, y)
    assert count_loads == {"ImageEncoder": 12 + 9 * 12 + 12}
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"]
    )


def test_text_cache_keys_on_content(tmp_path, count_loads):
    texts = ["red shirt", "blue jeans", "red shirt"]
    enc = TextEncoder(
        "lstm", max_epochs=0, random_state=0, device="cpu", memory=tmp_path
    ).fit(texts)
    enc.transform(texts)
    count_loads.clear()
    enc.transform(["blue jeans", "green hat"])
    assert count_loads == {"TextEncoder": 1}


def test_num_workers_gives_the_same_features(image_files, monkeypatch):
    enc = frozen(batch_size=2).fit(image_files)
    expected = enc.transform(image_files)
    threaded = frozen(batch_size=2, num_workers=2).fit(image_files)
    np.testing.assert_array_equal(threaded.transform(image_files), expected)


# -- entries are verified: a wrong vector is never served --------------------------
def _cache_of(enc, tmp_path):
    from skmm.utils._cache import EmbeddingCache

    return EmbeddingCache(tmp_path / "cache", enc._cache_namespace(enc.module_))


def _planted(cache, path, value):
    """Overwrite an entry with ``value`` and a checksum that matches it."""
    key = path.stem
    np.savez(path, value=value, checksum=cache._checksum(key, value))


def test_nan_entries_with_a_valid_checksum_are_recomputed(image_files, tmp_path):
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    expected = enc.transform(image_files)
    cache = _cache_of(enc, tmp_path)
    entries = sorted(cache.folder.rglob("*.npz"))
    assert len(entries) == 12
    for entry in entries[:4]:
        _planted(cache, entry, np.full(128, np.nan, dtype=np.float32))
    out = enc.transform(image_files)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The recomputed entries were written again, and are finite.
    assert all(np.isfinite(_entry(e)["value"]).all() for e in entries[:4])


def test_tampered_or_misplaced_entries_are_recomputed(image_files, tmp_path):
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    expected = enc.transform(image_files)
    entries = sorted(_cache_of(enc, tmp_path).folder.rglob("*.npz"))
    # Other finite values, with the old checksum (bit rot, a partial rewrite).
    stale = _entry(entries[0])
    np.savez(entries[0], value=stale["value"] + 1, checksum=stale["checksum"])
    # A well-formed entry copied under another item's key.
    entries[1].write_bytes(entries[2].read_bytes())
    # A wrong dtype and a wrong width.
    np.savez(entries[3], value=np.zeros(128), checksum=stale["checksum"])
    np.savez(entries[4], value=np.zeros(64, np.float32), checksum=stale["checksum"])
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)


def test_entries_cannot_run_code(image_files, tmp_path):
    """A pickle planted as an entry is a miss: entries load with allow_pickle=False."""
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    expected = enc.transform(image_files)
    entry = sorted(_cache_of(enc, tmp_path).folder.rglob("*.npz"))[0]
    marker = tmp_path / "pwned"
    np.savez(entry, value=np.array([_Payload(str(marker))], dtype=object))
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)
    assert not marker.exists()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_keys_cover_what_changes_the_decoded_item():
    from skmm.utils._cache import item_key

    def key(item):
        return item_key(item, str_is_path=True)

    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) % 4
    gray = Image.fromarray(pixels)
    a = Image.fromarray(pixels).convert("P")
    a.putpalette([255, 0, 0] * 4)
    b = Image.fromarray(pixels).convert("P")
    b.putpalette([0, 0, 255] * 4)
    assert a.tobytes() == b.tobytes()  # the same pixels, only the palettes differ
    keys = [
        key(a),
        key(b),
        key(gray),  # the same bytes, mode L
        key(Image.frombytes("L", (2, 8), gray.tobytes())),  # another size
        key(pixels),
        key(pixels.astype(np.int8)),  # the same bytes, another dtype
        key(pixels.reshape(2, 8)),  # another shape
        key(pixels.astype(">u2")),
        key(pixels.astype("<u2")),
        key(b"abc"),
        key([0.1, 0.2]),
    ]
    assert None not in keys and len(set(keys)) == len(keys)
    # Object arrays hold pointers: no key, never cached.
    assert key(np.array([[1, "a"]], dtype=object)) is None
    assert key([[1, 2], [3]]) is None


def test_palette_images_get_their_own_features(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4
    images = []
    for colours in ([255, 0, 0], [0, 0, 255]):
        image = Image.fromarray(pixels).convert("P")
        image.putpalette(colours * 4 + [0, 0, 0] * 252)
        images.append(image)
    enc = frozen(memory=tmp_path / "cache").fit(images)
    first = enc.transform(images[:1])
    second = enc.transform(images[1:])
    reference = frozen().fit(images).transform(images)
    np.testing.assert_allclose(np.vstack([first, second]), reference, atol=1e-6)
    assert not np.allclose(first, second)


def _only_warning(record):
    messages = [str(w.message) for w in record if "embedding cache" in str(w.message)]
    assert len(messages) == 1, messages
    return messages[0]


def test_a_cache_that_cannot_be_written_degrades_with_one_warning(
    image_files, tmp_path, monkeypatch
):
    expected = frozen().fit(image_files).transform(image_files)
    # A file where the cache folder should be: a real OS error (even as root).
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    enc = frozen(memory=blocker).fit(image_files)
    with pytest.warns(UserWarning) as record:
        out = enc.transform(image_files)
    np.testing.assert_array_equal(out, expected)
    assert "cannot be written" in _only_warning(record)
    # A read-only folder: mkstemp raises PermissionError for every entry.
    import skmm.utils._cache as cache_module

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", denied)
    enc = frozen(memory=tmp_path / "ro").fit(image_files)
    with pytest.warns(UserWarning) as record:
        out = enc.transform(image_files)
    np.testing.assert_array_equal(out, expected)
    assert "PermissionError" in _only_warning(record)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into read-only folders",
)
def test_a_read_only_folder_degrades(image_files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        enc = frozen(memory=folder).fit(image_files)
        with pytest.warns(UserWarning, match="cannot be written"):
            out = enc.transform(image_files)
    finally:
        folder.chmod(0o700)
    np.testing.assert_array_equal(out, frozen().fit(image_files).transform(image_files))


def test_content_hash_mode(image_files, tmp_path, count_loads):
    from skmm.utils import EmbeddingMemory

    memory = EmbeddingMemory(tmp_path / "cache", hash_files=True)
    enc = frozen(memory=memory).fit(image_files)
    clone(enc).fit(image_files)  # the option survives cloning
    assert pickle.loads(pickle.dumps(memory)).hash_files is True
    first = enc.transform(image_files)
    # Copies of the same files elsewhere are hits: the key is the content.
    copies = []
    for path in image_files:
        copies.append(str(tmp_path / f"copy_{os.path.basename(path)}"))
        shutil.copy(path, copies[-1])
    count_loads.clear()
    np.testing.assert_array_equal(enc.transform(copies), first)
    assert count_loads == {}
    # New content is a miss, whatever the file's metadata.
    Image.fromarray(np.full((16, 16), 7, dtype=np.uint8)).save(copies[0])
    count_loads.clear()
    out = enc.transform(copies)
    assert count_loads == {"ImageEncoder": 1}
    fresh = frozen().fit(image_files).transform(copies[:1])
    np.testing.assert_allclose(out[:1], fresh, atol=1e-6)
    # By default, copies at other paths are misses (the key is path and metadata).
    plain = frozen(memory=tmp_path / "plain").fit(image_files)
    plain.transform(image_files)
    count_loads.clear()
    plain.transform(copies[1:])
    assert count_loads == {"ImageEncoder": 11}


# -- the cache at an fsspec URL ------------------------------------------------------
@pytest.fixture(params=["memory", "file"])
def url(request, tmp_path, monkeypatch):
    """A fresh cache URL: fsspec's in-process object store, or a file:// folder."""
    fsspec = pytest.importorskip("fsspec")
    # A URL handed to joblib would become a local folder "memory:" or "file:" here.
    monkeypatch.chdir(tmp_path)
    if request.param == "file":
        yield (tmp_path / "cache").as_uri()
    else:
        root = f"/skmm-test-{os.getpid()}-{request.node.name}"
        yield f"memory://{root}"
        # The node's name puts "[" in the root: paths must not be taken for globs.
        fs = fsspec.filesystem("memory")
        for path in fs.find(root):
            fs.rm_file(path)
    assert not {p.name for p in tmp_path.iterdir()} & {"memory:", "file:"}


def _url_entries(url):
    """The paths of every file under the URL, and its file system."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, sorted(fs.find(root))


def _url_entry(fs, path):
    with np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False) as entry:
        return dict(entry)


def _assert_entries_are_rows(fs, paths, expected, atol=1e-6):
    """The entries at ``paths`` hold the rows of ``expected``, one each."""
    values = np.stack([_url_entry(fs, p)["value"] for p in paths])
    gaps = np.abs(values[:, None, :] - expected[None, :, :]).max(axis=2)
    assert np.all(gaps.min(axis=1) <= atol)
    assert sorted(gaps.argmin(axis=1)) == list(range(len(expected)))


def test_url_cache_second_call_decodes_nothing(url, image_files, count_loads):
    reference = _second_call_decodes_nothing(url, image_files, count_loads)
    fs, paths = _url_entries(url)
    assert len(paths) == 12 and all(p.endswith(".npz") for p in paths)
    assert not any("/.tmp-" in p for p in paths)
    assert all("/skmm_embeddings/v2/ImageEncoder-" in p for p in paths)
    _assert_entries_are_rows(fs, paths, reference, atol=0)


def test_url_corrupt_entries_are_recomputed(url, image_files, count_loads):
    from skmm.utils._cache import EmbeddingCache

    enc = frozen(memory=url).fit(image_files)
    expected = enc.transform(image_files)
    fs, paths = _url_entries(url)
    cache = EmbeddingCache(url, enc._cache_namespace(enc.module_))
    key = paths[1].rsplit("/", 1)[1][: -len(".npz")]
    nan = np.full(128, np.nan, dtype=np.float32)
    planted = io.BytesIO()
    np.savez(planted, value=nan, checksum=cache._checksum(key, nan))
    fs.pipe_file(paths[0], fs.cat_file(paths[0])[:20])  # truncated
    fs.pipe_file(paths[1], planted.getvalue())  # NaN with a matching checksum
    fs.pipe_file(paths[2], fs.cat_file(paths[3]))  # another item's entry
    fs.pipe_file(paths[4], b"not an npz archive")
    count_loads.clear()
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)
    assert count_loads == {"ImageEncoder": 4}  # the 4 broken entries, no more
    # They were written again, valid: a third pass decodes nothing.
    count_loads.clear()
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)
    assert count_loads == {}
    assert np.isfinite(_url_entry(fs, paths[1])["value"]).all()


def _transform_in_thread(enc, paths, barrier):
    barrier.wait()  # every thread reads, encodes and writes the same keys together
    return enc.transform(paths)


def test_url_concurrent_threads_leave_valid_entries(url, image_files):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    enc = frozen(memory=url).fit(image_files)
    expected = frozen().fit(image_files).transform(image_files)
    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(_transform_in_thread, enc, image_files, barrier)
            for _ in range(4)
        ]
        results = [f.result() for f in futures]
    # A worker that finds some entries already written encodes the rest in a
    # smaller batch: equal up to float rounding.
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)
    fs, paths = _url_entries(url)
    assert len(paths) == 12 and not any("/.tmp-" in p for p in paths)
    _assert_entries_are_rows(fs, paths, expected)


def test_file_url_concurrent_processes_leave_valid_entries(image_files, tmp_path):
    url = (tmp_path / "cache").as_uri()
    enc = frozen(memory=url).fit(image_files)
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_encode_in_worker)(enc, image_files) for _ in range(4)
    )
    expected = frozen().fit(image_files).transform(image_files)
    # A worker that finds some entries already written encodes the rest in a
    # smaller batch: equal up to float rounding.
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)
    entries = list((tmp_path / "cache").rglob("*"))
    files = [e for e in entries if e.is_file()]
    assert len(files) == 12 and not any(e.name.startswith(".tmp-") for e in files)
    assert all(_entry(e)["value"].shape == (128,) for e in files)


def test_object_store_entries_are_single_puts(image_files, monkeypatch):
    """On an object store each entry is one whole-object PUT, never a rename."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    puts, moves = [], []
    put = MemoryFileSystem.pipe_file
    monkeypatch.setattr(
        MemoryFileSystem,
        "pipe_file",
        lambda self, path, value, **kw: (puts.append(path), put(self, path, value))[1],
    )
    monkeypatch.setattr(MemoryFileSystem, "mv", lambda *a, **k: moves.append(a))
    url = f"memory://skmm-puts-{os.getpid()}"
    try:
        frozen(memory=url).fit(image_files).transform(image_files)
    finally:
        fsspec.filesystem("memory").rm(url[len("memory://") :], recursive=True)
    assert len(puts) == 12 and moves == []
    assert all(p.endswith(".npz") and "/.tmp-" not in p for p in puts)


def test_file_url_interrupted_write_leaves_no_entry(image_files, tmp_path, monkeypatch):
    """A file-system store gets a temporary name moved into place: a write cut off
    half way leaves nothing under the entry's name."""
    pytest.importorskip("fsspec")
    from fsspec.implementations.local import LocalFileSystem

    def half_then_fail(self, path, value, **kwargs):
        with open(path, "wb") as f:
            f.write(value[: len(value) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalFileSystem, "pipe_file", half_then_fail)
    url = (tmp_path / "cache").as_uri()
    enc = frozen(memory=url).fit(image_files)
    with pytest.warns(UserWarning) as record:
        out = enc.transform(image_files)
    assert "No space left on device" in _only_warning(record)
    np.testing.assert_array_equal(out, frozen().fit(image_files).transform(image_files))
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_url_cache_that_cannot_be_written_warns_once(
    image_files, tmp_path, monkeypatch
):
    pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    expected = frozen().fit(image_files).transform(image_files)
    # file://: a file where the cache folder should be.
    (tmp_path / "blocker").write_text("")
    enc = frozen(memory=(tmp_path / "blocker").as_uri()).fit(image_files)
    with pytest.warns(UserWarning) as record:
        np.testing.assert_array_equal(enc.transform(image_files), expected)
    message = _only_warning(record)
    assert f"file://{tmp_path}/blocker/skmm_embeddings" in message
    assert "cannot be written" in message

    # An object store's client raises its own errors, not only OSError.
    class NoCredentialsError(Exception):
        pass

    def refused(self, path, value, **kwargs):
        raise NoCredentialsError("Unable to locate credentials")

    monkeypatch.setattr(MemoryFileSystem, "pipe_file", refused)
    enc = frozen(memory="memory://skmm-refused").fit(image_files)
    with pytest.warns(UserWarning) as record:
        np.testing.assert_array_equal(enc.transform(image_files), expected)
    message = _only_warning(record)
    assert message.startswith("the embedding cache memory://")
    assert "/skmm-refused/skmm_embeddings/v2/ImageEncoder-" in message
    assert "NoCredentialsError: Unable to locate credentials" in message


def test_url_without_fsspec_names_the_extra(image_files, tmp_path, monkeypatch):
    from skmm.utils import EmbeddingMemory

    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec fails
    expected = frozen().fit(image_files).transform(image_files)
    for memory in ("s3://bucket/cache", EmbeddingMemory("s3://bucket/cache")):
        enc = frozen(memory=memory).fit(image_files)
        with pytest.raises(ImportError) as info:
            enc.transform(image_files)
        message = str(info.value)
        assert "memory='s3://bucket/cache' is a URL" in message
        assert 'pip install "skmm[dask]"' in message
    # A local folder never imports fsspec.
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    np.testing.assert_array_equal(enc.transform(image_files), expected)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 12


def test_embedding_memory_at_a_url(image_files, tmp_path, monkeypatch, count_loads):
    fsspec = pytest.importorskip("fsspec")
    from skmm.utils import EmbeddingMemory

    monkeypatch.chdir(tmp_path)
    memory = EmbeddingMemory(
        "memory://skmm-em", hash_files=True, storage_options={"skip_instance_cache": 1}
    )
    # joblib's side is off at a URL: no local folder "memory:" (joblib.Memory with
    # this URL would create ./memory:/skmm-em/joblib), and a pipeline caches nothing.
    assert not (tmp_path / "memory:").exists()
    assert memory.store_backend is None and memory.location == "memory://skmm-em"
    assert repr(memory) == "EmbeddingMemory(location='memory://skmm-em')"
    copy = pickle.loads(pickle.dumps(memory))
    assert (copy.location, copy.hash_files, copy.storage_options) == (
        "memory://skmm-em",
        True,
        {"skip_instance_cache": 1},
    )
    seen = []
    url_to_fs = fsspec.core.url_to_fs
    monkeypatch.setattr(
        fsspec.core,
        "url_to_fs",
        lambda url, **kw: (seen.append((url, kw)), url_to_fs(url, **kw))[1],
    )
    try:
        enc = frozen(memory=memory).fit(image_files)
        clone(enc).fit(image_files)
        first = enc.transform(image_files)
        # hash_files: copies of the files elsewhere are hits.
        copies = [
            str(shutil.copy(path, tmp_path / f"copy_{os.path.basename(path)}"))
            for path in image_files
        ]
        count_loads.clear()
        np.testing.assert_array_equal(enc.transform(copies), first)
        assert count_loads == {}
    finally:
        fsspec.filesystem("memory").rm("/skmm-em", recursive=True)
    assert seen[0] == ("memory://skmm-em", {"skip_instance_cache": 1})


# -- a keyed cache: entries signed with a secret (HMAC) ------------------------------
def _forge(cache, fs_or_none, path, value):
    """Write ``value`` at ``path`` with the checksum a keyless writer gives it."""
    from skmm.utils._cache import EmbeddingCache

    keyless = EmbeddingCache(None, cache.namespace)  # a sha256 checksum, no key
    buffer = io.BytesIO()
    np.savez(buffer, value=value, checksum=keyless._checksum(_stem(path), value))
    if fs_or_none is None:
        path.write_bytes(buffer.getvalue())
    else:
        fs_or_none.pipe_file(path, buffer.getvalue())


def _stem(path):
    return str(path).rsplit("/", 1)[-1][: -len(".npz")]


@pytest.mark.parametrize("where", ["folder", "url"])
def test_keyed_cache_serves_only_entries_signed_with_its_key(
    image_files, tmp_path, monkeypatch, count_loads, where
):
    """Whoever can write to the cache but lacks the key cannot plant features: a
    forged entry (a consistent plain checksum) is recomputed and overwritten, with
    one warning. A keyless cache serves the same forgery."""
    from skmm.utils import EmbeddingMemory

    monkeypatch.delenv("SKMM_CACHE_KEY", raising=False)
    if where == "url":
        fsspec = pytest.importorskip("fsspec")
        location = f"memory://skmm-keyed-{os.getpid()}"
        fs = fsspec.filesystem("memory")
    else:
        location, fs = str(tmp_path / "cache"), None
    reference = frozen().fit(image_files).transform(image_files)
    enc = frozen(memory=EmbeddingMemory(location, key="team secret")).fit(image_files)
    np.testing.assert_array_equal(enc.transform(image_files), reference)
    if fs is None:
        entries = sorted((tmp_path / "cache").rglob("*.npz"))
    else:
        entries = sorted(fs.find(location[len("memory://") :]))
    assert len(entries) == 12
    cache = _cache_of(enc, tmp_path)
    forged = np.full(128, 42.0, dtype=np.float32)
    for entry in entries[:3]:
        _forge(cache, fs, entry, forged)
    count_loads.clear()
    with pytest.warns(UserWarning) as record:
        out = enc.transform(image_files)
    message = _only_warning(record)
    assert message.startswith("3 entries of the embedding cache")
    assert "not signed with its key" in message
    np.testing.assert_array_equal(out, reference)
    assert count_loads == {"ImageEncoder": 3}  # the 3 forged ones, recomputed
    # ... and overwritten with signed entries: served silently next time.
    count_loads.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(enc.transform(image_files), reference)
    assert count_loads == {}
    # The same forgery in a keyless cache is served: what the key protects from.
    plain = frozen(memory=location if fs is None else location + "-plain")
    plain.fit(image_files).transform(image_files)
    if fs is None:
        plain_entries = sorted((tmp_path / "cache").rglob("*.npz"))
    else:
        plain_entries = sorted(fs.find(location[len("memory://") :] + "-plain"))
    for entry in plain_entries[:12]:
        _forge(cache, fs, entry, forged)
    served = plain.transform(image_files)
    assert (served == 42.0).all(axis=1).sum() == 12
    if fs is not None:
        for root in (location, location + "-plain"):
            fs.rm(root[len("memory://") :], recursive=True)


def test_cache_key_from_the_environment(image_files, tmp_path, monkeypatch):
    """SKMM_CACHE_KEY signs a plain memory= location; entries signed with another
    key (another team's, an old key) are recomputed, never served."""
    reference = frozen().fit(image_files).transform(image_files)
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    monkeypatch.setenv("SKMM_CACHE_KEY", "old key")
    enc.transform(image_files)
    monkeypatch.setenv("SKMM_CACHE_KEY", "new key")
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    with pytest.warns(UserWarning, match="12 entries of the embedding cache"):
        np.testing.assert_array_equal(enc.transform(image_files), reference)
    assert sorted((tmp_path / "cache").rglob("*.npz")) == entries  # overwritten
    monkeypatch.delenv("SKMM_CACHE_KEY")
    # Signed entries are no plain checksums either: a keyless reader recomputes
    # them, silently (a keyless cache cannot tell a forgery from an accident).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(enc.transform(image_files), reference)


def test_cache_key_is_checked_and_never_shown(image_files, tmp_path, monkeypatch):
    from skmm.utils import EmbeddingMemory

    memory = EmbeddingMemory(tmp_path / "cache", key="hunter2")
    assert "hunter2" not in repr(memory)
    assert "hunter2" not in repr(frozen(memory=memory))
    enc = frozen(memory=EmbeddingMemory(tmp_path / "cache", key=b"")).fit(image_files)
    with pytest.raises(ValueError, match=r"key \(EmbeddingMemory\(key=\)\) must be"):
        enc.transform(image_files)
    # An empty environment variable is no key.
    monkeypatch.setenv("SKMM_CACHE_KEY", "")
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    assert enc.transform(image_files).shape == (12, 128)


# -- temporary files of killed writers are cleaned, only when stale -------------------
def _plant_tmp(folder, age):
    """A temporary file as a writer leaves it, last written ``age`` seconds ago."""
    path = folder / f".tmp-{age}-{os.urandom(4).hex()}.npz"
    path.write_bytes(b"half an entry")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


@pytest.mark.parametrize("where", ["folder", "file_url"])
def test_stale_temporary_files_are_removed_live_ones_kept(image_files, tmp_path, where):
    from skmm.utils._cache import STALE_TMP_SECONDS

    memory = tmp_path / "cache"
    if where == "file_url":
        pytest.importorskip("fsspec")
        memory = memory.as_uri()
    enc = frozen(memory=memory).fit(image_files)
    enc.transform(image_files)
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    folders = sorted({e.parent for e in entries})
    stale = [_plant_tmp(f, STALE_TMP_SECONDS + 60) for f in folders]
    live = [_plant_tmp(f, 5) for f in folders]
    for entry in entries:
        entry.unlink()  # the next transform writes into every folder again
    reference = frozen().fit(image_files).transform(image_files)
    np.testing.assert_array_equal(enc.transform(image_files), reference)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in live)
    leftovers = {p for p in (tmp_path / "cache").rglob(".tmp-*")}
    assert leftovers == set(live)
