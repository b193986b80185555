"""Items behind URLs: fsspec's memory:// store and a local HTTP server of the test's own.

The reference is the same item read from a local file (or bytes): a URL must give
exactly its features. Failures must name the row, the column and the URL without its
credentials; transient failures are retried a bounded number of times, stalls time
out; the embedding cache keys a URL by the object's current content.
"""

import http.server
import io
import pickle
import threading
import time

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from PIL import Image
from scipy.io import wavfile

from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder
from skmm.fusion import MultimodalFuser
from skmm.utils import _remote
from skmm.utils._cache import item_key

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 6
SECRET = "s3cr3t-t0ken"


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _wav(wave):
    buffer = io.BytesIO()
    wavfile.write(buffer, 8000, (wave * 32767).astype(np.int16))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files():
    """name -> bytes: PNG photos and WAV sounds."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(N):
        out[f"img{i}.png"] = _png(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        out[f"snd{i}.wav"] = _wav(0.5 * np.sin(np.arange(4000) * (i + 1) / 20))
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; the behaviours a test asks for by path prefix."""

    def log_message(self, *args):
        pass

    def _answer(self, body):
        path = self.path.split("?")[0].lstrip("/")
        server = self.server
        server.requests.append((self.command, path))
        if path.startswith("private/") and (
            self.headers.get("Authorization") != f"Bearer {SECRET}"
        ):
            return self.send_error(403)
        if path.startswith("flaky/") and server.failures.get(path, 0) > 0:
            server.failures[path] -= 1
            return self.send_error(503)
        if path.startswith("slow/"):
            time.sleep(server.delay)
        data = server.files.get(path.split("/")[-1])
        if data is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hash(data)}"')
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)


@pytest.fixture(scope="module")
def server(files):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.failures, httpd.delay = dict(files), [], {}, 0
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()


@pytest.fixture(scope="module")
def memory(files):
    fs = fsspec.filesystem("memory")
    for name, data in files.items():
        fs.pipe(f"/skmm-test-urls/{name}", data)
    yield "memory://skmm-test-urls"
    fs.rm("/skmm-test-urls", recursive=True)


@pytest.fixture
def quick(monkeypatch):
    """Short back-off and stall time-out, so that failing tests end quickly."""
    monkeypatch.setattr(_remote, "BACKOFF", 0.01)
    monkeypatch.setattr(_remote, "TIMEOUT", 0.5)


def _image_encoder(**params):
    return ImageEncoder("cnn", max_epochs=0, device="cpu", random_state=0, **params)


def _images(files, prefix):
    return pd.Series([f"{prefix}/img{i}.png" for i in range(N)], name="photo")


@pytest.mark.parametrize("store", ["memory", "server"])
def test_url_items_equal_the_same_bytes(store, files, request):
    root = request.getfixturevalue(store)
    root = root if isinstance(root, str) else root.url
    images = [files[f"img{i}.png"] for i in range(N)]
    enc = _image_encoder().fit(images)
    assert_array_equal(enc.transform(_images(files, root)), enc.transform(images))
    sounds = [files[f"snd{i}.wav"] for i in range(N)]
    urls = [f"{root}/snd{i}.wav" for i in range(N)]
    audio = AudioEncoder(8000, duration=0.5, max_epochs=0, device="cpu").fit(sounds)
    assert_array_equal(audio.transform(urls), audio.transform(sounds))
    mfcc = AudioFeatures(8000).fit(sounds)
    assert_array_equal(mfcc.transform(urls), mfcc.transform(sounds))


def test_storage_options_reach_the_store_through_the_fuser(files, server):
    X = pd.DataFrame({"photo": [f"{server.url}/private/img{i}.png" for i in range(N)]})
    images = [files[f"img{i}.png"] for i in range(N)]
    fuser = MultimodalFuser([("img", _image_encoder(), "photo")], normalize=None)
    with pytest.raises(ValueError) as info:
        fuser.fit(X)
    message = str(info.value)
    assert "column 'photo', row 0" in message and "/private/img0.png" in message
    assert "403" in message
    headers = {"headers": {"Authorization": f"Bearer {SECRET}"}}
    fuser.set_params(img__storage_options=headers).fit(X)
    expected = _image_encoder().fit(images).transform(images)
    assert_array_equal(fuser.transform(X), expected)
    # The fitted encoder keeps its options (for Dask workers, pickles).
    loaded = pickle.loads(pickle.dumps(fuser))
    assert_array_equal(loaded.transform(X), expected)


def test_errors_name_row_column_and_url_without_credentials(files, server, quick):
    enc = _image_encoder().fit([files["img0.png"]])
    url = f"http://user:{SECRET}@127.0.0.1:{server.server_address[1]}/nope.png"
    signed = f"{server.url}/missing.png?X-Amz-Signature={SECRET}"
    for bad, shown in [
        (url, f"http://***@127.0.0.1:{server.server_address[1]}/nope.png"),
        (signed, f"{server.url}/missing.png?***"),
    ]:
        X = pd.Series([f"{server.url}/img0.png", bad], name="photo")
        with pytest.raises(ValueError) as info:
            enc.transform(X)
        message = str(info.value)
        assert message.startswith("column 'photo', row 1: not found: ")
        assert shown in message
        assert SECRET not in message
    refused = "http://127.0.0.1:1/x.png"  # nothing listens on port 1
    with pytest.raises(
        ValueError, match=r"row 0: cannot read .*x.png after 3 attempts"
    ):
        enc.transform([refused])


def test_transient_failures_are_retried_a_bounded_number_of_times(files, server, quick):
    enc = _image_encoder().fit([files["img1.png"]])
    server.failures["flaky/img1.png"] = 2  # two 503 answers, then the file
    server.requests.clear()
    out = enc.transform([f"{server.url}/flaky/img1.png"])
    assert_array_equal(out, enc.transform([files["img1.png"]]))
    assert server.failures["flaky/img1.png"] == 0
    # One GET per attempt: no request for the size before the read.
    assert server.requests == [("GET", "flaky/img1.png")] * 3
    server.failures["flaky/img1.png"] = 10  # more failures than attempts
    with pytest.raises(ValueError, match="after 3 attempts"):
        enc.transform([f"{server.url}/flaky/img1.png"])
    # One failed request per attempt, then no more.
    assert server.failures["flaky/img1.png"] == 10 - _remote.ATTEMPTS
    server.failures.clear()


def test_a_stalled_read_times_out(files, server, quick):
    enc = _image_encoder().fit([files["img2.png"]])
    server.delay = 3.0
    start = time.perf_counter()
    with pytest.raises(ValueError, match="slow/img2.png after 3 attempts .*Timeout"):
        enc.transform([f"{server.url}/slow/img2.png"])
    server.delay = 0
    # Three attempts that each give up after 0.5 s without progress, not 3 x 3 s.
    assert time.perf_counter() - start < 6


def test_the_cache_keys_urls_by_their_content(files, memory, tmp_path, monkeypatch):
    fs = fsspec.filesystem("memory")
    url = f"{memory}/cached.png"
    fs.pipe("/skmm-test-urls/cached.png", files["img3.png"])
    enc = _image_encoder(memory=tmp_path).fit([files["img3.png"]])
    first = enc.transform([url])
    loads = []
    original = ImageEncoder._load
    monkeypatch.setattr(
        ImageEncoder,
        "_load",
        lambda self, column, rows: (
            loads.append(len(rows)) or original(self, column, rows)
        ),
    )
    assert_array_equal(enc.transform([url]), first)
    assert loads == []  # from the cache, without reading the object
    fs.pipe("/skmm-test-urls/cached.png", files["img4.png"])  # rewritten
    assert_array_equal(enc.transform([url]), enc.transform([files["img4.png"]]))
    assert loads == [1, 1]  # recomputed, not served the old features


def test_item_keys_follow_the_validator(files, server):
    url = f"{server.url}/img5.png"
    key = item_key(url, str_is_path=True)
    assert key == item_key(url, str_is_path=True)
    server.files["img5.png"] = files["img0.png"]  # another ETag (and size)
    try:
        assert item_key(url, str_is_path=True) != key
    finally:
        server.files["img5.png"] = files["img5.png"]
    assert item_key(f"{server.url}/absent.png", str_is_path=True) is None
    # Another endpoint for the same bucket and key is another object.
    options = {"client_kwargs": {"endpoint_url": "http://elsewhere"}}
    assert item_key(url, str_is_path=True, storage_options=options) != key


def test_dask_workers_read_urls(files, server):
    dd = pytest.importorskip("dask.dataframe")
    import dask

    images = [files[f"img{i}.png"] for i in range(N)]
    enc = _image_encoder().fit(images)
    frame = pd.DataFrame({"photo": [f"{server.url}/img{i}.png" for i in range(N)]})
    lazy = enc.transform(dd.from_pandas(frame, npartitions=2)["photo"])
    # Worker processes: each unpickles the encoder and reads over HTTP.
    out = dask.compute(lazy, scheduler="processes", num_workers=1)[0]
    assert_array_equal(np.asarray(out), enc.transform(images))
