"""Bad items, as an attacker or a careless user would pass them, at every entry point.

One table of defects per kind of item (image, sound, text), each with the message it
must raise, crossed with the five ways an item enters skmm: an encoder's transform,
the feature-level fuser, late fusion, the end-to-end net and the matcher. Every case
must raise the stated error type with a message naming the column, the row and the
problem: a present but broken item is never treated as missing, and no raw error
escapes from a decoder.
"""

import io
import struct

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import wavfile
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder, TextEncoder
from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.nn import MultimodalMatcher, MultimodalNetClassifier

N_ROWS, BAD_ROW = 6, 3
INDEX = [f"r{i}" for i in range(N_ROWS)]
RATE = 100  # Hz: tiny sounds, tiny spectrograms


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- good items and tiny encoders ------------------------------------------------------
def _good(kind, i):
    rng = np.random.default_rng(i)
    if kind == "image":
        return rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    if kind == "audio":
        return rng.uniform(-0.5, 0.5, 20).astype(np.float32)
    return ["red shirt", "blue jeans", "black shoes"][i % 3]


def _encoder(kind):
    if kind == "image":
        return ImageEncoder("cnn", image_size=8, max_epochs=0, device="cpu")
    if kind == "audio":
        return AudioEncoder(
            sample_rate=RATE, duration=0.2, n_fft=16, n_mels=4, max_epochs=0
        ).set_params(device="cpu")
    return TextEncoder(
        "lstm", embedding_dim=4, hidden_size=4, max_epochs=0, device="cpu"
    )


# -- the defects -----------------------------------------------------------------------
def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(side=100_000):
    """A PNG whose header claims side x side pixels (10 GB), with a few bytes of data."""
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)


def _jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _wav(samples, rate=RATE):
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, samples)
    return buffer.getvalue()


def _pil(mode, array):
    return Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


_INT16 = (np.sin(np.arange(40)) * 10000).astype(np.int16)
_RNG = np.random.default_rng(0)
_GOOD_WAV = _wav(_INT16)


def _with_rate(rate):
    """The good WAV with another sample rate (and byte rate) in its header."""
    return _GOOD_WAV[:24] + struct.pack("<II", rate, 2 * rate) + _GOOD_WAV[32:]


# (case, factory(tmp_path) -> bad item, regex of the problem). Marked "issue" are the
# cases of issue 14; the others were added as an attacker or a careless user would try.
IMAGE_DEFECTS = [
    ("issue: NaN in a float array", lambda p: np.full((8, 8), np.nan), "NaN or inf"),
    (
        "issue: float in 0..255",
        lambda p: np.full((8, 8), 200.0),
        r"must lie in \[0, 1\]",
    ),
    ("issue: int64 above 255", lambda p: np.full((8, 8), 256), r"8-bit, in \[0, 255\]"),
    ("inf in a float array", lambda p: np.full((8, 8), np.inf), "NaN or infinity"),
    ("float64 overflowing float32", lambda p: np.full((8, 8), 1e300), "NaN or inf"),
    ("negative float", lambda p: -np.ones((8, 8)), r"must lie in \[0, 1\]"),
    ("negative int", lambda p: -np.ones((8, 8), dtype=int), r"8-bit"),
    ("complex array", lambda p: np.ones((8, 8), complex), "not a number"),
    ("0x0 array", lambda p: np.zeros((0, 0), np.uint8), "empty image"),
    ("2 channels", lambda p: np.zeros((8, 8, 2), np.uint8), "expected an image array"),
    ("1-D array", lambda p: np.zeros(8, np.uint8), "expected an image array"),
    ("ragged nested list", lambda p: [[1, 2], [3]], "different lengths"),
    ("strings in a list", lambda p: [["a", "b"], ["c", "d"]], "must be numbers"),
    ("None in a nested list", lambda p: [[1, None], [3, 4]], "must be numbers"),
    ("an int", lambda p: 3, "expected an image file path"),
    ("a dict", lambda p: {"path": "x.png"}, "expected an image file path"),
    ("nonexistent path", lambda p: str(p / "nope.png"), "file not found"),
    ("directory as path", lambda p: str(p), "is a directory"),
    ("empty file", lambda p: _write(p, "e.png", b""), "empty file"),
    ("text named .png", lambda p: _write(p, "t.png", b"meow"), r"\(not an image\)"),
    (
        "truncated PNG",
        lambda p: _write(p, "t.png", _png(np.zeros((64, 64), np.uint8))[:60]),
        "cannot decode",
    ),
    (
        "truncated JPEG",
        lambda p: _write(p, "t.jpg", _jpeg(np.zeros((64, 64, 3), np.uint8))[:200]),
        "cannot decode",
    ),
    ("garbage bytes", lambda p: b"\x89PNG garbage", r"\(not an image\)"),
    (
        "PNG header claiming 100000x100000",
        lambda p: _write(p, "bomb.png", _png_bomb()),
        "refusing to decode .*decompression bomb",
    ),
    ("empty bytes", lambda p: b"", "empty bytes"),
    (
        "PIL mode F above 1",
        lambda p: _pil("F", np.full((8, 8), 255, np.float32)),
        r"must lie in \[0, 1\]",
    ),
    (
        "PIL mode I above 65535",
        lambda p: _pil(None, np.full((8, 8), 70000, np.int32)),
        r"16-bit images must lie in \[0, 65535\]",
    ),
    (
        "PIL image of 0 pixels",
        lambda p: Image.new("RGB", (0, 4)),
        "empty image",
    ),
]

AUDIO_DEFECTS = [
    (
        "issue: WAV with a NaN sample",
        lambda p: _write(p, "n.wav", _wav(np.array([0.1, np.nan] * 20, np.float32))),
        "NaN or infinity",
    ),
    (
        "issue: WAV with an inf sample",
        lambda p: _write(p, "i.wav", _wav(np.array([0.1, np.inf] * 20, np.float32))),
        "NaN or infinity",
    ),
    (
        "issue: header then random bytes",
        lambda p: _write(p, "r.wav", _GOOD_WAV[:44] + _RNG.bytes(30)),
        "cannot read .* as WAV",
    ),
    (
        "issue: RIFF....WAVE then junk",
        lambda p: _write(p, "j.wav", b"RIFF\x00\x10\x00\x00WAVE" + b"junk" * 5),
        "cannot read .* as WAV",
    ),
    (
        "issue: truncated in the samples",
        lambda p: _write(p, "t.wav", _GOOD_WAV[:60]),
        "cannot read .* as WAV",
    ),
    (
        "issue: int64 list beyond 16 bits",
        lambda p: [40000, -3, 5] * 7,
        r"16-bit PCM and must lie in \[-32768, 32767\]",
    ),
    (
        "truncated in the header",
        lambda p: _write(p, "h.wav", _GOOD_WAV[:30]),
        "cannot read .* as WAV",
    ),
    ("empty file", lambda p: _write(p, "e.wav", b""), "empty file"),
    ("directory as path", lambda p: str(p), "is a directory"),
    ("nonexistent path", lambda p: str(p / "nope.wav"), "file not found"),
    (
        "zero-length WAV",
        lambda p: _write(p, "z.wav", _wav(np.zeros(0, np.int16))),
        "holds no samples",
    ),
    (
        "sample rate 0 in the header",
        lambda p: _write(p, "r0.wav", _with_rate(0)),
        "sample rate of 0 Hz",
    ),
    (
        "absurd sample rate (a resampling filter of any size)",
        lambda p: _write(p, "r9.wav", _with_rate(2_000_000_000)),
        "sample rate of 2000000000 Hz",
    ),
    ("garbage bytes", lambda p: b"not a wav at all", "cannot read .* as WAV"),
    ("empty waveform", lambda p: np.zeros(0, np.float32), "empty waveform"),
    ("NaN in a waveform", lambda p: np.array([0.1, np.nan] * 10), "NaN or infinity"),
    ("inf in a waveform", lambda p: np.array([0.1, -np.inf] * 10), "NaN or infinity"),
    ("float64 overflowing float32", lambda p: np.full(20, 1e300), "NaN or infinity"),
    ("amplitude of 1e30", lambda p: np.full(20, 1e30), "beyond any PCM scale"),
    ("2-D item", lambda p: np.zeros((4, 5)), "expected a 1-D waveform"),
    ("ragged nested list", lambda p: [[0.1, 0.2], [0.3]], "different lengths"),
    ("None inside a list", lambda p: [0.1, None, 0.2], "must be numbers"),
    # (A list of strings only is a cell of several items, paths; a number among them
    # makes the list one waveform.)
    ("strings inside a list", lambda p: ["0.1", 0.2], "not real numbers"),
    ("complex array", lambda p: np.ones(20, complex), "not real numbers"),
    ("bool array", lambda p: np.ones(20, bool), "not real numbers"),
    ("an int", lambda p: 7, "expected an audio file path"),
]

TEXT_DEFECTS = [
    ("bytes", lambda p: b"red shirt", "expected a string, got bytes"),
    ("an int", lambda p: 42, "expected a string, got int"),
    ("infinity", lambda p: float("inf"), "expected a string, got float"),
    # A list of texts is a cell of several items; a number among them makes the list
    # one item, which is not a text.
    ("a word and a number", lambda p: ["red", 3], "expected a string, got list"),
    ("empty string", lambda p: "", "empty text"),
    ("whitespace only", lambda p: " \t\n", "empty text"),
]

CASES = [
    pytest.param(kind, make, message, id=f"{kind}: {case}")
    for kind, table in (
        ("image", IMAGE_DEFECTS),
        ("audio", AUDIO_DEFECTS),
        ("text", TEXT_DEFECTS),
    )
    for case, make, message in table
]


# -- the entry points ------------------------------------------------------------------
def _frame(kind, bad):
    items = np.empty(N_ROWS, dtype=object)
    items[:] = [_good(kind, i) for i in range(N_ROWS)]
    items[BAD_ROW] = bad
    number = np.arange(N_ROWS, dtype=float)
    return pd.DataFrame({"item": items, "number": number}, index=INDEX)


def _encoder_transform(kind, X, y):
    good = [_good(kind, i) for i in range(N_ROWS)]
    _encoder(kind).fit(good).transform(X["item"])


def _fuser(kind, X, y):
    MultimodalFuser(
        [("m", _encoder(kind), "item"), ("n", "passthrough", ["number"])]
    ).fit_transform(X)


def _late(kind, X, y):
    LateFusionClassifier(
        [
            ("m", make_pipeline(_encoder(kind), LogisticRegression()), "item"),
            ("n", LogisticRegression(), ["number"]),
        ]
    ).fit(X, y)


def _net(kind, X, y):
    MultimodalNetClassifier(
        [("m", _encoder(kind), "item"), ("n", "passthrough", ["number"])],
        max_epochs=1,
        batch_size=4,
        device="cpu",
        random_state=0,
    ).fit(X, y)


def _matcher(kind, X, y):
    MultimodalMatcher(
        [("m", _encoder(kind), "item"), ("n", "passthrough", ["number"])],
        embedding_dim=2,
        max_epochs=1,
        batch_size=4,
        device="cpu",
        random_state=0,
    ).fit(X)


ENTRY_POINTS = {
    "encoder": _encoder_transform,
    "fuser": _fuser,
    "late fusion": _late,
    "net": _net,
    "matcher": _matcher,
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("kind, make, message", CASES)
def test_bad_item_names_column_and_row(kind, make, message, entry, tmp_path):
    X = _frame(kind, make(tmp_path))
    y = np.array([0, 1] * (N_ROWS // 2))
    pattern = rf"column 'item', row 'r{BAD_ROW}': (.*){message}"
    with pytest.raises(ValueError, match=pattern):
        ENTRY_POINTS[entry](kind, X, y)


def test_the_matrix_has_the_issue_cases_and_more():
    """At least as many cases of our own as the issue listed."""
    ours = [c for c in CASES if not c.id.split(": ", 1)[1].startswith("issue")]
    assert len(ours) >= len(CASES) - len(ours)
    assert len(CASES) * len(ENTRY_POINTS) >= 250


# -- batches: a dense numeric array has no column; the row is named --------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_row_of_an_image_batch(value):
    batch = np.random.default_rng(0).uniform(size=(5, 8, 8))
    enc = _encoder("image").fit(batch)
    batch[3, 2, 2] = value
    with pytest.raises(ValueError, match=r"row 3 of the batch array contains NaN"):
        enc.transform(batch)
    with pytest.raises(ValueError, match=r"row 3 of the batch array contains NaN"):
        enc.transform(batch[..., None].repeat(3, axis=3))


def test_out_of_range_row_of_an_image_batch():
    batch = np.random.default_rng(0).uniform(size=(5, 8, 8))
    enc = _encoder("image").fit(batch)
    batch[2, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"^row 2: image has float values in"):
        enc.transform(batch)


@pytest.mark.parametrize("encoder", ["AudioEncoder", "AudioFeatures"])
def test_non_finite_row_of_a_waveform_batch(encoder):
    batch = np.random.default_rng(0).uniform(-0.5, 0.5, size=(5, 40))
    enc = (
        _encoder("audio")
        if encoder == "AudioEncoder"
        else AudioFeatures(sample_rate=RATE, n_fft=16, n_mels=4, n_mfcc=2)
    ).fit(batch)
    batch[4, 7] = np.nan
    with pytest.raises(ValueError, match=rf"{encoder}: row 4 of the batch array"):
        enc.transform(batch)
    frame = pd.DataFrame(batch, index=[f"s{i}" for i in range(5)])
    with pytest.raises(ValueError, match=r"row 's4' of the batch array"):
        enc.fit(frame)


def test_integer_waveform_batches_are_scaled_like_items():
    """int16 batch == int16 items == float items / 32768; int64 lists read as 16-bit."""
    enc = AudioFeatures(sample_rate=RATE, n_fft=16, n_mels=4, n_mfcc=2)
    ints = (np.random.default_rng(0).uniform(-1, 1, (4, 40)) * 20000).astype(np.int16)
    expected = enc.fit(ints / 32768.0).transform(ints / 32768.0)
    for X in (ints, list(ints), [list(map(int, row)) for row in ints]):
        np.testing.assert_allclose(enc.fit(X).transform(X), expected, atol=1e-5)


# -- DataFrames from other libraries ---------------------------------------------------
class _ForeignSeries:
    """The duck type of a polars Series: a name, ``__array__``, ``__len__``."""

    def __init__(self, name, values):
        self.name, self._values = name, values

    def __len__(self):
        return len(self._values)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(len(self._values), dtype=object)
        out[:] = self._values
        return out


class _ForeignFrame:
    """The duck type of a polars DataFrame: ``columns`` and ``frame[name]``."""

    def __init__(self, data):
        self._data = data
        self.columns = list(data)
        self.shape = (len(next(iter(data.values()))), len(data))

    def __getitem__(self, name):
        return _ForeignSeries(name, self._data[name])


def test_foreign_frames_name_the_column():
    waves = [_good("audio", i) for i in range(4)]
    images = [[[0.0, 0.5], [0.5, 1.0]]] * 4  # nested lists, as list columns hold
    enc = _encoder("audio")
    assert enc.fit_transform(_ForeignFrame({"snd": waves})).shape == (4, 128)
    assert list(enc.feature_names_in_) == ["snd"]
    broken = waves[:2] + [[0.1, float("nan")], waves[3]]
    with pytest.raises(ValueError, match=r"column 'snd', row 2: waveform samples"):
        enc.transform(_ForeignFrame({"snd": broken}))
    with pytest.raises(ValueError, match="feature names should match"):
        enc.transform(_ForeignFrame({"other": waves}))
    with pytest.raises(ValueError, match=r"encodes one column; got a _ForeignFrame"):
        enc.transform(_ForeignFrame({"a": waves, "b": waves}))
    image_enc = ImageEncoder("cnn", max_epochs=0, device="cpu")
    assert image_enc.fit_transform(_ForeignSeries("img", images)).shape == (4, 128)
    ragged = images[:3] + [[[0.0, 0.5], [0.5]]]
    with pytest.raises(ValueError, match=r"column 'img', row 3: .*different lengths"):
        image_enc.transform(_ForeignSeries("img", ragged))


def test_polars_list_columns():
    pl = pytest.importorskip("polars")
    waves = [list(map(float, _good("audio", i))) for i in range(4)]
    frame = pl.DataFrame({"snd": waves[:3] + [[0.1, float("nan")] * 10]})
    enc = _encoder("audio").fit(pl.DataFrame({"snd": waves}))
    with pytest.raises(ValueError, match=r"column 'snd', row 3: waveform samples"):
        enc.transform(frame)
    fuser = MultimodalFuser([("a", _encoder("audio"), "snd")])
    with pytest.raises(ValueError, match=r"column 'snd', row 3"):
        fuser.fit_transform(frame)
    images = pl.DataFrame({"img": [[[0, 255], [255, 0]]] * 3 + [[[0, 256], [1, 2]]]})
    with pytest.raises(ValueError, match=r"column 'img', row 3: .*\[0, 256\]"):
        ImageEncoder("cnn", max_epochs=0, device="cpu").fit(images)


# -- what is not an error: documented choices ------------------------------------------
def test_image_scaling_is_by_dtype():
    """One rule by dtype: the same picture gives the same features in every form."""
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    enc = ImageEncoder("cnn", max_epochs=0, device="cpu").fit(u8)
    expected = enc.transform(u8)
    forms = {
        "float in [0, 1]": u8 / 255.0,
        "int64": u8.astype(np.int64),
        "uint16 (x 257 = the same fraction of 65535)": u8.astype(np.uint16) * 257,
        "16-bit PIL images": [Image.fromarray(im.astype(np.uint16) * 257) for im in u8],
        "nested lists": [im.tolist() for im in u8],
    }
    for name, X in forms.items():
        np.testing.assert_allclose(enc.transform(X), expected, atol=1e-5, err_msg=name)
    # A dark 16-bit image stays dark: divided by 65535, not by its own maximum.
    dark = np.full((1, 8, 8), 1000, dtype=np.uint16)
    np.testing.assert_allclose(
        enc.transform(dark), enc.transform(np.full((1, 8, 8), 1000 / 65535)), atol=1e-6
    )
    # A uint16 array of 255s is 255/65535, not 1.0.
    assert not np.allclose(
        enc.transform(np.full((1, 8, 8), 255, np.uint16)),
        enc.transform(np.ones((1, 8, 8))),
    )


def test_16_bit_png_files_are_divided_by_65535(tmp_path):
    from skmm.encoders._image import read_image

    for value in (1000, 65535):
        path = tmp_path / f"{value}.png"
        Image.fromarray(np.full((4, 4), value, np.uint16)).save(path)
        np.testing.assert_allclose(read_image(str(path)), value / 65535, rtol=1e-6)


@pytest.mark.parametrize(
    "mode, colour",
    [
        ("CMYK", (0, 0, 0, 0)),
        ("LA", (100, 7)),
        ("P", None),
        ("RGBA", (10, 20, 30, 0)),
        ("YCbCr", (128, 128, 128)),
        ("I;16", 1000),
    ],
)
def test_every_pillow_mode_decodes(mode, colour):
    from skmm.encoders._image import read_image

    image = Image.new(mode, (6, 4), colour)
    array = read_image(image)
    assert array.shape[:2] == (4, 6) and array.shape[2] in (1, 3)
    assert array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 1
    if mode == "I;16":
        np.testing.assert_allclose(array, 1000 / 65535, rtol=1e-6)
    else:
        expected = np.asarray(image.convert("RGB" if array.shape[2] == 3 else "L"))
        expected = expected.reshape(array.shape)
        np.testing.assert_allclose(array, expected / 255, atol=1e-6)


def test_animated_gif_uses_its_first_frame(tmp_path):
    from skmm.encoders._image import read_image

    frames = [Image.new("L", (4, 4), value) for value in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    np.testing.assert_allclose(read_image(str(path)), 10 / 255, atol=1e-6)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 x 1000
    enc = ImageEncoder("cnn", max_epochs=0, device="cpu").fit([np.zeros((8, 8))])
    with pytest.raises(ValueError, match=r"row 0: refusing to decode .*bomb\.png"):
        enc.transform([str(path)])


def test_huge_images_are_decoded_reduced(tmp_path):
    """JPEG decodes in draft mode, other files shrink by an integer box reduction."""
    from skmm.encoders._image import read_image

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(400, 320, 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG"):
        path = tmp_path / f"big.{fmt.lower()}"
        Image.fromarray(photo).save(path, format=fmt)
        full = read_image(str(path))
        small = read_image(str(path), (40, 32))
        assert full.shape == (400, 320, 3)
        # Shrunk by 8 (JPEG's smallest draft scale) or 10 (the box reduction), with
        # both sides still at least the size asked for.
        assert small.shape == ((50, 40, 3) if fmt == "JPEG" else (40, 32, 3))
        # A faithful reduction: within the JPEG noise of a full-size box average.
        box = full[: small.shape[0] * 8, : small.shape[1] * 8]
        if fmt == "PNG":
            box = full.reshape(40, 10, 32, 10, 3).mean(axis=(1, 3))
            np.testing.assert_allclose(small, box, atol=1 / 255)
        else:
            box = box.reshape(50, 8, 40, 8, 3).mean(axis=(1, 3))
            assert np.abs(small - box).mean() < 0.05
    # An encoder passes its input size: features of a reduced decode.
    enc = ImageEncoder("cnn", image_size=32, max_epochs=0, device="cpu")
    enc.fit([str(tmp_path / "big.png")])
    assert enc._decode_size() == (32, 32)


def test_text_dedup_memory_follows_the_content():
    """300 short titles and one long text: no n x longest fixed-width array."""
    import tracemalloc

    texts = [f"title {i}" for i in range(300)] + ["word " * 200_000]
    enc = TextEncoder(
        "lstm", embedding_dim=4, hidden_size=4, max_epochs=0, device="cpu"
    )
    enc.fit(texts[:300])
    tracemalloc.start()
    out = enc.transform(texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (301, 8) and np.isfinite(out).all()
    # The fixed-width array alone would be 301 x 1e6 characters x 4 bytes = 1.2 GB.
    assert peak < 100e6, peak
