"""The per-item embedding cache (memory=) and threaded decoding (num_workers=)."""

import os

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
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


def frozen(**params):
    defaults = dict(backbone="cnn", max_epochs=0, random_state=0, device="cpu")
    return ImageEncoder(**{**defaults, **params})


def test_second_call_hits_the_cache(image_files, tmp_path, count_loads):
    reference = frozen().fit(image_files).transform(image_files)
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    count_loads.clear()
    first = enc.transform(image_files)
    assert count_loads == {"ImageEncoder": 12}
    second = enc.transform(image_files[::-1])
    assert count_loads == {"ImageEncoder": 12}  # nothing new encoded
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference[::-1])
    entries = list((tmp_path / "cache" / "skmm_embeddings").rglob("*.npy"))
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
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # a truncated entry
    (entries[1].parent / ".tmp-killed.npy").write_bytes(b"\x93NUMPY")  # a killed writer
    # The recomputed row runs in a batch of one: equal up to float rounding.
    np.testing.assert_allclose(enc.transform(image_files), expected, atol=1e-6)
    assert np.load(entries[0]).shape == (128,)


def _encode_in_worker(enc, paths):
    return enc.transform(paths)


def test_concurrent_writers_do_not_corrupt(image_files, tmp_path):
    enc = frozen(memory=tmp_path / "cache").fit(image_files)
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_encode_in_worker)(enc, image_files) for _ in range(4)
    )
    expected = frozen().fit(image_files).transform(image_files)
    for result in results:
        np.testing.assert_array_equal(result, expected)
    for entry in (tmp_path / "cache").rglob("*.npy"):
        assert not entry.name.startswith(".tmp-")
        assert np.load(entry).shape == (128,)


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
    enc = TextEncoder(max_epochs=0, random_state=0, device="cpu", memory=tmp_path).fit(
        texts
    )
    enc.transform(texts)
    count_loads.clear()
    enc.transform(["blue jeans", "green hat"])
    assert count_loads == {"TextEncoder": 1}


def test_num_workers_gives_the_same_features(image_files, monkeypatch):
    enc = frozen(batch_size=2).fit(image_files)
    expected = enc.transform(image_files)
    threaded = frozen(batch_size=2, num_workers=2).fit(image_files)
    np.testing.assert_array_equal(threaded.transform(image_files), expected)
