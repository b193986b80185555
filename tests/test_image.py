import gzip
import pickle
from urllib.error import URLError

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from skmm.encoders import ImageEncoder
from skmm.encoders._image import random_affine


@pytest.fixture(scope="module")
def mnist(shared_data):
    def idx(name, header):
        with gzip.open(shared_data / "mnist" / name, "rb") as f:
            dims = np.frombuffer(f.read(header), ">i4")[1:]
            return np.frombuffer(f.read(), np.uint8).reshape(dims)

    return idx("t10k-images-idx3-ubyte.gz", 16), idx("t10k-labels-idx1-ubyte.gz", 8)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 255, size=(10, 16, 16), dtype=np.uint8)


def tiny(**params):
    defaults = dict(backbone="cnn", max_epochs=0, random_state=0, device="cpu")
    return ImageEncoder(**{**defaults, **params})


@pytest.mark.slow
def test_small_cnn_learns_mnist(mnist):
    X, y = mnist
    enc = tiny(max_epochs=3, batch_size=64)
    Z_train = enc.fit_transform(X[:2000], y[:2000])
    Z_test = enc.transform(X[2000:3000])
    assert enc.loss_curve_[-1] < enc.loss_curve_[0]
    accuracy = (
        LogisticRegression(max_iter=1000)
        .fit(Z_train, y[:2000])
        .score(Z_test, y[2000:3000])
    )
    assert accuracy >= 0.9, accuracy


def test_item_forms_give_the_same_features(images, tmp_path):
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    enc = tiny().fit(images)
    expected = enc.transform(images)
    forms = {
        "paths": paths,
        "PIL": [Image.fromarray(im) for im in images],
        "list of arrays": list(images),
        "(H, W, 1) arrays": [im[:, :, None] for im in images],
        "4-D batch": images[:, :, :, None],
        "float arrays": [im / 255.0 for im in images],
        "Series": pd.Series(list(images), name="image"),
        "DataFrame": pd.DataFrame({"image": paths}),
    }
    for name, X in forms.items():
        np.testing.assert_allclose(enc.transform(X), expected, atol=1e-5, err_msg=name)


def test_grayscale_and_rgb_mix(images):
    # Three different channels, so that the luminance weights matter.
    rng = np.random.default_rng(1)
    rgb = list(rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8))
    mixed = rgb + list(images[5:])
    cnn = tiny().fit(mixed)
    assert cnn.n_channels_ == 3
    assert cnn.transform(list(images)).shape == (10, 128)
    # A grayscale-trained small CNN turns colour images into ITU-R 601 luminance,
    # computed here by hand in float and by Pillow (rounded to 8 bits).
    gray = tiny().fit(images)
    assert gray.n_channels_ == 1
    by_hand = [(im / 255.0) @ np.array([0.299, 0.587, 0.114]) for im in rgb]
    np.testing.assert_allclose(gray.transform(rgb), gray.transform(by_hand), atol=1e-5)
    by_pillow = [np.asarray(Image.fromarray(im).convert("L")) for im in rgb]
    np.testing.assert_allclose(
        gray.transform(rgb), gray.transform(by_pillow), atol=0.02
    )
    # The mean of the channels is a different image: the test can tell them apart.
    mean = [im.mean(axis=2) / 255.0 for im in rgb]
    assert np.abs(gray.transform(rgb) - gray.transform(mean)).max() > 0.05
    # torchvision backbones always see three channels.
    resnet = tiny(backbone="resnet18", image_size=32).fit(list(images))
    assert resnet.n_channels_ == 3
    assert resnet.transform(mixed).shape == (10, 512)


def test_bad_items_name_the_row_and_column(images, tmp_path):
    text_file = tmp_path / "cat.png"
    text_file.write_text("meow")
    enc = tiny().fit(images)
    column = pd.Series([images[0], str(text_file), images[1]], name="image")
    with pytest.raises(
        ValueError,
        match=r"column 'image', row 1: cannot decode .*cat\.png.* \(not an image\)",
    ):
        enc.transform(column)
    with pytest.raises(ValueError, match=r"row 2: file not found: 'nope\.jpg'"):
        enc.transform([images[0], images[1], "nope.jpg"])
    with pytest.raises(ValueError, match=r"row 0: expected an image array of shape"):
        enc.transform([np.zeros((4, 4, 7))])
    with pytest.raises(
        ValueError,
        match=r"row 1: expected an image file path, image file bytes, PIL image or "
        r"array; got int",
    ):
        enc.transform([images[0], 3])
    with pytest.raises(ValueError, match="row 0: image array contains NaN"):
        enc.transform([np.full((4, 4), np.inf)])
    with pytest.raises(ValueError, match="Reshape your data"):
        enc.transform(np.zeros(5))
    with pytest.raises(ValueError, match="encodes one column"):
        enc.transform(pd.DataFrame({"a": [1], "b": [2]}))


def test_missing_items_give_nan_rows(images):
    enc = tiny().fit([None, *images, np.nan])
    out = enc.transform(pd.Series([images[0], None, float("nan"), images[1]]))
    assert np.isnan(out[[1, 2]]).all()
    assert np.isfinite(out[[0, 3]]).all()
    with pytest.raises(ValueError, match="every item is missing"):
        tiny().fit([None, None])


def test_failed_fit_leaves_the_estimator_as_it_was(images):
    enc = tiny().fit(images)
    before = enc.transform(images)
    with pytest.raises(ValueError, match="row 3"):
        enc.fit([*images[:3], "missing.png"])
    np.testing.assert_array_equal(enc.transform(images), before)
    fresh = tiny()
    with pytest.raises(ValueError):
        fresh.fit(["missing.png"])
    assert not hasattr(fresh, "module_")


def test_training_is_reproducible_and_augmentation_changes_it(mnist):
    X, y = mnist[0][:64], mnist[1][:64]
    a = tiny(max_epochs=2).fit(X, y).transform(X)
    b = tiny(max_epochs=2).fit(X, y).transform(X)
    np.testing.assert_array_equal(a, b)
    c = tiny(max_epochs=2, augment="default").fit(X, y).transform(X)
    assert not np.allclose(a, c)
    d = tiny(max_epochs=2, random_state=1).fit(X, y).transform(X)
    assert not np.allclose(a, d)


def test_random_affine_is_per_image():
    batch = torch.rand(64, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    same = random_affine(batch, generator, degrees=0, scale=(1, 1), flip=False)
    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0)
    flipped = random_affine(batch, generator, degrees=0, scale=(1, 1), flip=True)
    is_flip = torch.isclose(flipped, batch.flip(-1), atol=1e-5).flatten(1).all(1)
    is_same = torch.isclose(flipped, batch, atol=1e-5).flatten(1).all(1)
    assert (is_flip | is_same).all()
    assert 10 < is_flip.sum() < 54  # each image gets its own coin
    rotated = random_affine(batch, generator)
    assert rotated.shape == batch.shape and not torch.allclose(rotated, batch)


def test_pickle_joblib_clone_and_not_fitted(images, tmp_path):
    enc = tiny(max_epochs=1)
    clone(enc)  # cheap: no module built
    assert not hasattr(clone(enc), "module_")
    with pytest.raises(NotFittedError):
        enc.transform(images)
    enc.fit(images, [0, 1] * 5)
    expected = enc.transform(images)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(enc)).transform(images), expected
    )
    joblib.dump(enc, tmp_path / "enc.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "enc.joblib").transform(images), expected
    )
    assert not hasattr(clone(enc), "module_")


def test_fit_transform_equals_fit_then_transform(images):
    enc = tiny(max_epochs=1)
    y = [0, 1] * 5
    np.testing.assert_allclose(
        enc.fit_transform(images, y),
        clone(enc).fit(images, y).transform(images),
        atol=1e-6,
    )


def test_transform_memory_is_bounded_by_batch_size(images, monkeypatch):
    enc = tiny(batch_size=3).fit(images)
    seen = []
    original = ImageEncoder._load

    def spy(self, column, rows):
        seen.append(len(rows))
        return original(self, column, rows)

    monkeypatch.setattr(ImageEncoder, "_load", spy)
    out = enc.transform(list(images) * 2)
    # Arrays are not deduplicated (only paths and texts are): 20 rows in batches of 3.
    assert max(seen) == 3 and sum(seen) == 20
    np.testing.assert_allclose(out[:10], out[10:], atol=1e-6)


def test_weights_from_a_state_dict_file(images, tmp_path):
    trained = tiny(max_epochs=1).fit(images, [0, 1] * 5)
    path = tmp_path / "cnn.pt"
    torch.save(trained.module_.backbone.state_dict(), path)
    loaded = tiny(weights=str(path)).fit(images)
    assert loaded._resolved_max_epochs() == 0
    np.testing.assert_allclose(
        loaded.transform(images), trained.transform(images), atol=1e-5
    )
    # A fitted encoder's whole module_ brings its normalisation: other rows, same output.
    torch.save(trained.module_.state_dict(), tmp_path / "tower.pt")
    other_rows = tiny(weights=str(tmp_path / "tower.pt")).fit(images[:3] // 2)
    np.testing.assert_allclose(other_rows.mean_, trained.mean_)
    np.testing.assert_allclose(
        other_rows.transform(images), trained.transform(images), atol=1e-5
    )
    # A torchvision backbone's weights file uses ImageNet statistics.
    from torchvision.models import get_model

    torch.save(get_model("resnet18").state_dict(), tmp_path / "resnet18.pt")
    resnet = tiny(backbone="resnet18", weights=str(tmp_path / "resnet18.pt")).fit(
        images
    )
    np.testing.assert_allclose(resnet.std_, [0.229, 0.224, 0.225], atol=1e-6)
    assert resnet.image_size_ == (16, 16)
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit the backbone: missing"):
        tiny(weights=str(tmp_path / "bad.pt")).fit(images)
    with pytest.raises(ValueError, match="weights file not found"):
        tiny(weights=str(tmp_path / "none.pt")).fit(images)


def test_weights_file_is_read_once_and_not_after_fit(images, tmp_path, monkeypatch):
    from skmm.encoders._backbones import _base

    trained = tiny(max_epochs=1).fit(images, [0, 1] * 5)
    reads = []
    read = _base.read_weights_file
    monkeypatch.setattr(
        _base, "read_weights_file", lambda path: reads.append(path) or read(path)
    )
    for name, state in [
        ("cnn.pt", trained.module_.backbone.state_dict()),
        ("tower.pt", trained.module_.state_dict()),
    ]:
        path = tmp_path / name
        torch.save(state, path)
        reads.clear()
        enc = tiny(weights=str(path), memory=tmp_path / "cache").fit(images)
        assert reads == [str(path)]  # once per fit, preprocessing and weights
        # After fit the weights' source is fitted state: no file is looked at.
        path.unlink()
        assert enc._frozen() and enc.backbone_.identity[1][0] == str(path)
        np.testing.assert_allclose(
            enc.transform(images), trained.transform(images), atol=1e-5
        )
    assert reads == [str(tmp_path / "tower.pt")]


def test_torchvision_weights_download_path(images, monkeypatch, tmp_path):
    """torchvision weights: downloaded by torch.hub, read as tensors by skmm."""
    from torchvision.models import ResNet18_Weights, get_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = get_model("resnet18", weights=None).eval()
    downloads = []

    def download(url, path, hash_prefix=None, progress=True):
        downloads.append((url, hash_prefix))
        torch.save(reference.state_dict(), path)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    enc = ImageEncoder("resnet18", weights="DEFAULT", device="cpu").fit(
        list(images[:2])
    )
    assert downloads == [(ResNet18_Weights.DEFAULT.url, "f37072fd")]
    assert (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    assert enc._resolved_max_epochs() == 0
    assert enc.image_size_ == (224, 224)
    np.testing.assert_allclose(enc.mean_, [0.485, 0.456, 0.406], atol=1e-6)
    # Same as torchvision's own preprocessing and forward, without the classifier.
    preprocess = ResNet18_Weights.DEFAULT.transforms()
    x = torch.stack(
        [
            preprocess(torch.from_numpy(im / 255.0).float()[None].expand(3, -1, -1))
            for im in images[:2]
        ]
    )
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(x).numpy()
    np.testing.assert_allclose(enc.transform(list(images[:2])), expected, atol=1e-4)
    # A cached file is not downloaded again.
    ImageEncoder("resnet18", weights="DEFAULT", device="cpu").fit(list(images[:2]))
    assert len(downloads) == 1

    def offline(url, *args, **kwargs):
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(
        OSError, match="could not get .* put it at .*resnet18-f37072fd.pth.* weights="
    ):
        ImageEncoder("resnet18", weights="IMAGENET1K_V1", device="cpu").fit(
            list(images[:2])
        )
    with pytest.raises(
        ValueError, match="available names: \\['DEFAULT', 'IMAGENET1K_V1'\\]"
    ):
        ImageEncoder("resnet18", weights="IMAGENET9K", device="cpu").fit(
            list(images[:2])
        )


def test_backbone_choices(images):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    enc = tiny(backbone=Tiny()).fit(images)
    assert enc.transform(images).shape == (10, 4)
    vgg = tiny(backbone="vgg11", image_size=32).fit(list(images[:2]))
    assert vgg.transform(list(images[:2])).shape == (2, 4096)
    with pytest.raises(ValueError, match="not a torchvision model name"):
        tiny(backbone="resnet9000").fit(images)
    with pytest.raises(ValueError, match="requires y to be passed"):
        tiny(max_epochs=1).fit(images)


def test_feature_names_and_pandas_output(images):
    enc = tiny().fit(pd.DataFrame({"img": list(images)}))
    names = enc.get_feature_names_out()
    assert names[0] == "imageencoder0" and len(names) == 128
    out = enc.set_output(transform="pandas").transform(
        pd.DataFrame({"img": list(images)})
    )
    assert list(out.columns) == list(names)
    with pytest.raises(ValueError, match="feature names should match"):
        enc.transform(pd.DataFrame({"other": list(images)}))


def test_features_do_not_depend_on_the_batch(images):
    enc = tiny(max_epochs=1).fit(images, [0, 1] * 5)
    together = enc.transform(images)
    alone = np.vstack([enc.set_params(batch_size=1).transform([im]) for im in images])
    np.testing.assert_allclose(alone, together, atol=1e-5)
