"""Items behind URLs: fsspec's memory:// store and a local HTTP server of the test's own.

The reference is the same item read from a local file (or bytes): a URL must give
exactly its features. Failures must name the row, the column and the URL without its
credentials; transient failures are retried a bounded number of times, stalls time
out; the embedding cache keys a URL by the object's current content.
"""

import hashlib
import http.server
import io
import pickle
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from PIL import Image
from scipy.io import wavfile

from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder
from skmm.encoders._audio import read_audio
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


HTML = b"\n<!DOCTYPE html>\n<html><body>Please sign in</body></html>"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; the behaviours a test asks for by path prefix:
    ``private/`` needs the bearer token, ``flaky/`` fails ``server.failures[path]``
    times, ``slow/`` waits ``server.delay``, ``html/`` answers an HTML page with
    status 200, ``plain/`` sends no ETag (only Content-Length), ``bare/`` neither
    (the body ends when the connection closes)."""

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
        if path.startswith("html/"):
            data = HTML
        if data is None:
            return self.send_error(404)
        self.send_response(200)
        if not path.startswith("bare/"):
            self.send_header("Content-Length", str(len(data)))
        if not path.startswith(("plain/", "bare/")):
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
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
    # A client that gave up (the stall test) breaks the pipe of a late answer: no
    # traceback printed on stderr for it.
    httpd.handle_error = lambda request, address: None
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


def test_the_cache_keys_urls_by_their_content(
    files, memory, tmp_path, monkeypatch, count_loads
):
    fs = fsspec.filesystem("memory")
    url = f"{memory}/cached.png"
    fs.pipe("/skmm-test-urls/cached.png", files["img3.png"])
    enc = _image_encoder(memory=tmp_path).fit([files["img3.png"]])
    first = enc.transform([url])
    loads = count_loads(ImageEncoder)
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


def test_an_html_page_behind_a_media_url_is_an_error_never_missing(files, server):
    # A sign-in or error page answered with status 200 in place of the file.
    X = pd.DataFrame(
        {
            "photo": [f"{server.url}/img0.png", f"{server.url}/html/1.png?t={SECRET}"],
            "sound": [f"{server.url}/snd0.wav", f"{server.url}/html/1.wav?t={SECRET}"],
        }
    )
    images = [files["img0.png"], files["img1.png"]]
    for column, encoder, name in [
        ("photo", _image_encoder().fit(images), "1.png"),
        ("sound", AudioFeatures(8000).fit([files["snd0.wav"]]), "1.wav"),
    ]:
        # Not a missing item, even where the fuser fills missing ones.
        fuser = MultimodalFuser([("e", encoder, column)], missing="zero")
        for call, data in [(encoder.transform, X[column]), (fuser.fit, X[[column]])]:
            with pytest.raises(ValueError) as info:
                call(data)
            assert str(info.value) == (
                f"column {column!r}, row 1: {server.url}/html/{name}?*** is an HTML "
                "page, not a media file (a sign-in or error page answered as if it "
                "were the file?)"
            )


# -- video files on the audio side -----------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory, server):
    """A clip with a soundtrack and a silent one: local files, on the test's HTTP
    server (also under names without an extension) and in memory://."""
    pytest.importorskip("av")
    from skmm.datasets._video_digits import write_mp4

    folder = tmp_path_factory.mktemp("clips")
    frames = np.zeros((4, 16, 16), np.uint8)
    wave = np.random.default_rng(1).normal(0, 2000, 4000).astype(np.int16)
    write_mp4(folder / "voice.mp4", frames, 10, audio=wave)
    write_mp4(folder / "silent.mp4", frames, 10)
    fs = fsspec.filesystem("memory")
    for name in ("voice", "silent"):
        data = (folder / f"{name}.mp4").read_bytes()
        server.files[f"{name}.mp4"] = server.files[name] = data
        fs.pipe(f"/skmm-test-clips/{name}.mp4", data)
    yield folder
    fs.rm("/skmm-test-clips", recursive=True)


def _transform_warnings(encoder, items):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = encoder.transform(pd.Series(items, name="a"))
    return out, [str(w.message) for w in caught]


def test_a_video_url_gives_its_soundtrack_and_a_silent_one_is_missing(clips, server):
    local = [str(clips / "voice.mp4"), str(clips / "silent.mp4")]
    mfcc = AudioFeatures(8000).fit(local[:1])
    cnn = AudioEncoder(8000, duration=0.5, max_epochs=0, device="cpu").fit(local[:1])
    expected = {enc: _transform_warnings(enc, local) for enc in (mfcc, cnn)}
    out, caught = expected[mfcc]
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    assert caught == [
        "AudioFeatures: 1 video file(s) of column 'a' have no audio stream and are "
        "missing for the audio side (NaN features): rows 1."
    ]
    # The extension is the URL path's: a pre-signed URL's query string is not in it.
    signed = f"?X-Amz-Signature={SECRET}"
    for urls in [
        [f"{server.url}/voice.mp4{signed}", f"{server.url}/silent.mp4{signed}"],
        ["memory://skmm-test-clips/voice.mp4", "memory://skmm-test-clips/silent.mp4"],
    ]:
        assert_array_equal(read_audio(urls[0], 8000), read_audio(local[0], 8000))
        for enc in (mfcc, cnn):
            out, caught = _transform_warnings(enc, urls)
            assert_array_equal(out, expected[enc][0])
            assert caught == expected[enc][1]
    # Without an extension a video is known by its bytes, when its soundtrack is
    # read: too late to count a silent one missing, it is an error naming the row.
    bare = [f"{server.url}/voice", f"{server.url}/silent"]
    assert_array_equal(mfcc.transform(bare[:1]), expected[mfcc][0][:1])
    with pytest.raises(ValueError, match=r"row 1: .*/silent has no audio stream"):
        mfcc.transform(bare)


# -- on a distributed cluster ----------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    """One worker process. The items are on the test's HTTP server: a memory://
    file system lives in one process, and the worker's would be empty."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    import dask

    # URL columns stay object columns (not pyarrow strings), as the local frames.
    with (
        dask.config.set({"dataframe.convert-string": False}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.slow  # the worker process: ~13 s to start, import torch, stop
def test_a_cluster_worker_predicts_from_urls_with_storage_options(
    files, server, client, tmp_path
):
    import dask.dataframe as dd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skmm.utils import map_partitions

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rows = range(N)
    local = pd.DataFrame(
        {
            "photo": [str(tmp_path / f"img{i}.png") for i in rows],
            "sound": [str(tmp_path / f"snd{i}.wav") for i in rows],
        }
    )
    urls = pd.DataFrame(
        {
            "photo": [f"{server.url}/private/img{i}.png" for i in rows],
            "sound": [f"{server.url}/snd{i}.wav" for i in rows],
        }
    )
    auth = {"headers": {"Authorization": f"Bearer {SECRET}"}}
    # Batches of 3 rows, as the partitions: the towers' features are bit-identical
    # (torch rounds alike); the head rounds 3 rows and 6 rows differently (float32
    # probabilities: up to a few units of their last place).
    fuser = MultimodalFuser(
        [
            ("img", _image_encoder(storage_options=auth, batch_size=3), "photo"),
            (
                "snd",
                AudioEncoder(8000, duration=0.5, max_epochs=0, batch_size=3),
                "sound",
            ),
        ]
    )
    model = make_pipeline(fuser, LogisticRegression()).fit(local, np.arange(N) % 2)
    lazy = map_partitions(model, dd.from_pandas(urls, npartitions=2), "predict_proba")
    server.requests.clear()
    out = client.compute(lazy).result()
    np.testing.assert_allclose(out.to_numpy(), model.predict_proba(local), atol=1e-6)
    # The worker read each item once, the private ones with the token that the
    # encoder's storage_options carried to it (else: 403, an error).
    expected = [("GET", f"private/img{i}.png") for i in rows]
    assert sorted(server.requests) == expected + [("GET", f"snd{i}.wav") for i in rows]
    lazy = fuser.transform(dd.from_pandas(urls, npartitions=2))
    assert_array_equal(client.compute(lazy).result(), fuser.transform(local))


@pytest.mark.slow  # the worker process: ~13 s to start, import torch, stop
def test_the_cache_follows_a_changed_url_across_processes(
    files, server, client, tmp_path, monkeypatch, count_loads
):
    import dask.dataframe as dd

    url = f"{server.url}/live.png"
    server.files["live.png"] = files["img0.png"]
    enc = _image_encoder(memory=tmp_path / "cache").fit([files["img0.png"]])
    reference = {n: enc.transform([files[n]]) for n in ("img0.png", "img1.png")}
    lazy = enc.transform(dd.from_pandas(pd.Series([url], name="photo"), npartitions=1))
    assert_array_equal(client.compute(lazy).result(), reference["img0.png"])
    loads = count_loads(ImageEncoder)
    # The worker's entry serves this process: same URL, same ETag.
    assert_array_equal(enc.transform([url]), reference["img0.png"])
    assert loads == []
    # New bytes behind the URL, with a new ETag: the worker recomputes.
    server.files["live.png"] = files["img1.png"]
    assert_array_equal(client.compute(lazy).result(), reference["img1.png"])
    assert_array_equal(enc.transform([url]), reference["img1.png"])
    assert loads == []  # the worker's new entry


@pytest.mark.parametrize("prefix", ["plain", "bare"])
def test_a_url_without_validator_is_never_cached(
    files, server, tmp_path, monkeypatch, prefix, count_loads
):
    # plain/: a Content-Length only; bare/: nothing. Two sounds of one length: a
    # cache keyed by the URL and its size would serve the first one's features.
    assert len(files["snd0.wav"]) == len(files["snd1.wav"])
    url = f"{server.url}/{prefix}/changing.wav"
    assert item_key(url, str_is_path=True) is None
    server.files["changing.wav"] = files["snd0.wav"]
    enc = AudioEncoder(8000, duration=0.5, max_epochs=0, device="cpu", memory=tmp_path)
    enc.fit([files["snd0.wav"]])
    reference = {n: enc.transform([files[n]]) for n in ("snd0.wav", "snd1.wav")}
    loads = count_loads(AudioEncoder)
    assert_array_equal(enc.transform([url]), reference["snd0.wav"])
    server.files["changing.wav"] = files["snd1.wav"]
    assert_array_equal(enc.transform([url]), reference["snd1.wav"])
    assert loads == [1, 1]  # read each time, never served from the cache
    # The cache holds the two references' entries (keyed by their bytes) only.
    assert len(list(tmp_path.rglob("*.npz"))) == 2
