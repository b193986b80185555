import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

from skmm.datasets import (
    fetch_file,
    fetch_fsdd,
    fetch_mnist,
    get_data_home,
    load_av_digits,
    make_av_digits,
)


def test_load_av_digits_clean():
    bunch = load_av_digits()
    assert list(bunch.frame.columns) == ["image", "audio", "speaker", "digit"]
    assert bunch.data.shape == (1200, 2)
    assert np.bincount(bunch.target).tolist() == [120] * 10
    assert pd.Series(bunch.speaker).value_counts().tolist() == [200] * 6
    image, audio = bunch.data.iloc[0]
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    assert "CC BY-SA 4.0" in bunch.DESCR


def test_load_av_digits_hard_is_deterministic_and_degraded():
    clean = load_av_digits()
    hard_a = load_av_digits(variant="hard")
    hard_b = load_av_digits(variant="hard")
    a, b, c = (np.stack(x.data["image"]) for x in (hard_a, hard_b, clean))
    np.testing.assert_array_equal(a, b)
    # Most ink pixels of the clean digits are dropped in the hard variant.
    ink = c > 128
    assert (a[ink] > 128).mean() < 0.6
    wave_clean, wave_hard = clean.data["audio"][0], hard_a.data["audio"][0]
    noise = wave_hard - wave_clean
    snr = 10 * np.log10(np.mean(wave_clean**2) / np.mean(noise**2))
    assert 9 < snr < 11


def test_load_av_digits_return_forms():
    X, y = load_av_digits(return_X_y=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    arr = load_av_digits(as_frame=False)
    assert arr.data.shape == (1200, 2) and arr.frame is None
    with pytest.raises(ValueError, match="variant must be"):
        load_av_digits(variant="noisy")


def test_make_av_digits_reproduces_the_shipped_file(shared_data):
    made = make_av_digits(
        shared_data / "fsdd" / "recordings",
        shared_data / "mnist" / "t10k-images-idx3-ubyte.gz",
        shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz",
    )
    shipped = load_av_digits()
    np.testing.assert_array_equal(made["image"], np.stack(shipped.data["image"]))
    np.testing.assert_array_equal(made["digit"], shipped.target)
    first = made["audio"][made["offsets"][0] : made["offsets"][1]]
    np.testing.assert_array_equal(first / 32768, shipped.data["audio"][0])


@pytest.fixture
def http_folder(tmp_path):
    """Serve a folder on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(
        type(
            "Quiet",
            (http.server.SimpleHTTPRequestHandler,),
            {"log_message": lambda *a: None},
        ),
        directory=str(root),
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_fetch_mnist_over_http_checks_and_caches(shared_data, http_folder, tmp_path):
    root, url = http_folder
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, root / name)
    home = tmp_path / "home"
    mnist = fetch_mnist(home, base_url=url)
    assert mnist.images.shape == (10000, 28, 28)
    assert np.bincount(mnist.target).tolist()[:3] == [980, 1135, 1032]
    # Cached: a second call works with the server's files gone.
    for f in root.iterdir():
        f.unlink()
    assert fetch_mnist(home, base_url=url).images.shape == (10000, 28, 28)


def test_fetch_file_rejects_a_corrupt_download(http_folder, tmp_path):
    root, url = http_folder
    (root / "x.bin").write_bytes(b"not what was expected")
    target = tmp_path / "cache" / "x.bin"
    with pytest.raises(
        OSError, match="sha256 [0-9a-f]{64}, expected 00ff: .*nothing was saved"
    ):
        fetch_file(url + "x.bin", target, ("sha256", "00ff"))
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary file left behind


def test_fetch_offline_error_is_clear(tmp_path):
    with pytest.raises(OSError, match=r"could not download http://127\.0\.0\.1:9/"):
        fetch_mnist(tmp_path, base_url="http://127.0.0.1:9/")


def test_fetch_fsdd_from_a_local_mirror(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SKMM_DATA", str(tmp_path / "env_home"))
    assert get_data_home() == tmp_path / "env_home"
    fsdd = fetch_fsdd(base_url=(shared_data / "fsdd" / "recordings").as_uri() + "/")
    frame = fsdd.frame
    assert frame.shape == (3000, 5)
    assert (frame["split"] == "test").sum() == 300
    assert frame.groupby("speaker").size().tolist() == [500] * 6
    assert (tmp_path / "env_home" / "fsdd" / "7_jackson_32.wav").is_file()
    with pytest.raises(OSError, match="download_if_missing=False"):
        fetch_fsdd(tmp_path / "empty", download_if_missing=False)


def test_unwritable_data_folder_says_which_and_what_to_do(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # A folder that cannot be created (a file is in the way): a real OS error.
    monkeypatch.setenv("SKMM_DATA", str(blocker / "data"))
    with pytest.raises(OSError, match="cannot write to the data folder .*SKMM_DATA"):
        fetch_mnist()
    with pytest.raises(OSError, match=r"cannot write to the data folder .*a_file"):
        get_data_home()
    # A folder that exists but refuses new files (read-only; root ignores chmod).
    import skmm.datasets._fetch as fetch_module

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    home = tmp_path / "home"
    (home / "mnist").mkdir(parents=True)
    monkeypatch.setattr(fetch_module.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError, match=r"data folder .*mnist \(Permission d"):
        fetch_mnist(home, base_url="http://127.0.0.1:9/")
    # A verified copy already there is used without writing anything.
    (home / "x.bin").write_bytes(b"hello")
    digest = ("sha256", hashlib.sha256(b"hello").hexdigest())
    assert fetch_file("http://127.0.0.1:9/x.bin", home / "x.bin", digest).is_file()
