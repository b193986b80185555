"""Column kinds decided from values: every kind of the documented rules, and the errors.

Each column is built so that its kind follows from one rule of
``MultimodalVectorizer``'s docstring; the names of the columns say nothing (the
detection never reads them: the same values under another name get the same kind).
"""

import io
import os
import wave

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skmm.auto._kinds import MIN_WAVEFORM_LENGTH, detect_kind


def _png(path, value=0):
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)
    return str(path)


def _wav(path, n=400):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(n, dtype="<i2").tobytes())
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    pngs = [_png(root / f"{i}.png", 20 * i) for i in range(6)]
    fake = root / "fake.png"
    fake.write_text("this is a text file with an image's extension")
    return {
        "pngs": pngs,
        "wavs": [_wav(root / f"{i}.wav", 400 + i) for i in range(6)],
        "fake": str(fake),
        "missing": [str(root / f"absent{i}.jpg") for i in range(6)],
    }


def _png_bytes(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _columns(files):
    rng = np.random.default_rng(0)
    pngs = files["pngs"]
    return {
        # name: (values, expected kind, expected form)
        "paths": (pngs + [None, pngs[0]], "image", "path"),
        "lists of paths": (
            [[pngs[0], pngs[1]], [pngs[2]], [], None, [None, pngs[3]], (pngs[4],)],
            "image",
            "list of path",
        ),
        "urls": (
            ["https://example.org/a.jpg?size=2", "s3://bucket/b.PNG", None] * 2,
            "image",
            "url",
        ),
        "png path to a text file": ([files["fake"]] * 5 + [None], "categorical", None),
        "image bytes": ([_png_bytes(v) for v in range(6)], "image", "bytes"),
        "PIL images": ([Image.new("L", (4, 4), v) for v in range(6)], "image", "pil"),
        "2-D arrays": ([rng.random((4, 5)) for _ in range(6)], "image", "array"),
        "3-D arrays": (
            [rng.integers(0, 255, (4, 4, 3), dtype=np.uint8) for _ in range(6)],
            "image",
            "array",
        ),
        "waveforms of several lengths": (
            [rng.normal(size=900 + i).astype(np.float32) for i in range(6)],
            "audio",
            "array",
        ),
        "long waveforms of one length": (
            [rng.normal(size=MIN_WAVEFORM_LENGTH) for _ in range(6)],
            "audio",
            "array",
        ),
        "vectors": ([rng.normal(size=16) for _ in range(6)], "numeric", "vector"),
        "wav paths": (files["wavs"], "audio", "path"),
        "titles": (
            [f"Nike Men Black Running Shoes {i}" for i in range(6)],
            "text",
            "string",
        ),
        "lists of words": ([["red", "cotton"], ["blue"]] * 3, "text", "list of string"),
        "colours": (
            ["Navy Blue", "Red", "Red", None, "Green", "Red"],
            "categorical",
            None,
        ),
        "numbers in strings": (
            ["1.5", "2", None, "-3e2", "4", "5"],
            "numeric",
            "string",
        ),
        "dates in strings": (
            [f"2024-01-0{i}" for i in range(1, 7)],
            "datetime",
            "string",
        ),
        "Python numbers": ([1, 2.5, None, 4, 5, 6], "numeric", "number"),
        "booleans": ([True, False, True, False, True, True], "numeric", "number"),
        "constant": (["same"] * 6, "drop", None),
        "empty": ([None, np.nan, None, None, pd.NA, None], "drop", None),
        "empty lists": ([[], [], None, [None], [], []], "drop", None),
    }


def _case_ids():
    return list(
        _columns({"pngs": ["x"] * 6, "wavs": ["x"] * 6, "fake": "", "missing": []})
    )


@pytest.mark.parametrize("case", _case_ids())
def test_kind_of_each_documented_rule(files, case):
    values, kind, form = _columns(files)[case]
    column = pd.Series(values, dtype=object)
    detected = detect_kind(column, "x")
    assert detected.kind == kind, detected
    if form is not None:
        assert detected.form == form
    # The name is never read: any other name gives the same kind.
    assert detect_kind(column.rename("photo"), "photo").kind == kind


@pytest.mark.parametrize(
    "values, kind",
    [
        (pd.Series([1, 2, 3, 4]), "numeric"),
        (pd.Series([True, False, True, False]), "numeric"),
        (pd.Series([1.0, np.nan, 3.0]), "numeric"),
        (pd.Series(pd.date_range("2020", periods=4)), "datetime"),
        (pd.Series(pd.Categorical(["a", "b", "a", "a"])), "categorical"),
        (pd.Series(pd.array(["x", "y", None, "x"], dtype="string")), "categorical"),
        (pd.Series([7, 7, 7]), "drop"),
        (pd.Series([np.nan] * 3), "drop"),
    ],
)
def test_kind_from_dtype(values, kind):
    assert detect_kind(values, "x").kind == kind


def test_text_or_categorical_by_words_and_distinct_values():
    # 30 distinct titles of 4 words: text; the same 30 values of 2 words, or only 2
    # distinct 4-word values among 30 rows (< min(20, 10% of 30) = 3): categorical.
    titles = pd.Series([f"soft cotton shirt {i}" for i in range(30)])
    assert detect_kind(titles, "x").kind == "text"
    assert detect_kind(pd.Series([f"shirt {i}" for i in range(30)]), "x").kind == (
        "categorical"
    )
    few = pd.Series(["soft cotton shirt one", "hard leather shoe two"] * 15)
    assert detect_kind(few, "x").kind == "categorical"


def test_a_constant_column_with_missing_cells_is_kept():
    # Missing or not is information (skrub's rule): one value and None is a category.
    assert detect_kind(pd.Series(["a", None, "a"]), "x").kind == "categorical"


def test_missing_files_are_an_error_naming_the_column(files):
    with pytest.raises(ValueError, match="column 'photo' holds paths of image files"):
        detect_kind(pd.Series(files["missing"]), "photo")


@pytest.mark.parametrize(
    "values, match",
    [
        (["a", 1, "b"], "cannot tell its kind from values of types number"),
        ([{"a": 1}, {"b": 2}], "types dict"),
        (
            [b"\x00\x01\x02", b"\x03\x04"],
            "bytes that are not image, audio or video files",
        ),
        (
            [np.zeros(3, dtype=np.int64), np.zeros(4, dtype=np.int64)],
            "vectors must all have one length",
        ),
        ([[1.0, 2.0], ["x.png"]], "cannot tell its kind"),
    ],
)
def test_undecidable_columns_are_errors_naming_the_column(values, match):
    with pytest.raises(ValueError, match=f"column 'weird'.*{match}"):
        detect_kind(pd.Series(values, dtype=object), "weird")


def test_only_a_few_files_are_opened(files, monkeypatch):
    # AutoGluon's way: a sample is opened, not every file of a large column.
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    paths = pd.Series(files["pngs"] * 50)
    assert detect_kind(paths, "x").kind == "image"
    assert 0 < len([p for p in opened if str(p).endswith(".png")]) <= 5


def test_relative_paths_are_read_from_the_working_directory(files, monkeypatch):
    monkeypatch.chdir(os.path.dirname(files["pngs"][0]))
    names = pd.Series([os.path.basename(p) for p in files["pngs"]])
    assert detect_kind(names, "x").kind == "image"
