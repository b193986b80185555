"""The training engine: streamed data (DataLoader workers), precision, host syncs.

Streamed training is checked against training in memory (every item decoded at
once, then indexed): the same seed must give the same weights, whatever the number
of worker processes. Mixed precision is checked against torch run by hand on the
same weights, host syncs by counting the reads of device values in the steps.
"""

import os
import sys
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import skmm.training._sources as sources
from skmm.encoders import ImageEncoder
from skmm.nn import MultimodalMatcher, MultimodalNetClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["dark", "light"] * (n // 2))
    images = rng.random((n, 8, 8, 3)) * 0.5 + (y == "light")[:, None, None, None] / 2
    return list(images.astype("float32")), y


@pytest.fixture
def streamed(monkeypatch):
    """Every training table is streamed (decoded per batch)."""
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)


def _encoder(**params):
    params = {"max_epochs": 2, "batch_size": 16, "augment": "default", **params}
    return ImageEncoder("cnn", random_state=0, device="cpu", **params)


def _net(**params):
    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn", augment="default"), "img"),
            ("num", "passthrough", ["num"]),
        ],
        max_epochs=3,
        batch_size=16,
        random_state=0,
        device="cpu",
        **params,
    )


def _table(n=64, seed=0):
    images, y = _images(n, seed)
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"img": pd.Series(images, dtype=object), "num": rng.normal(size=n)}
    )
    return X, y


def _same_weights(a, b):
    a, b = a.module_.state_dict(), b.module_.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _load_sizes(monkeypatch, cls=ImageEncoder):
    sizes, original = [], cls._load

    def spy(self, column, rows):
        sizes.append(len(rows))
        return original(self, column, rows)

    monkeypatch.setattr(cls, "_load", spy)
    return sizes


# -- streaming ---------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_encoder_fit_equals_the_in_memory_fit(monkeypatch, num_workers):
    images, y = _images(72)
    in_memory = _encoder().fit(images, y)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)
    streamed = _encoder(num_workers=num_workers).fit(images, y)
    # Augmentation and batches are drawn in the main process: the same weights,
    # bit for bit, whether the items come decoded all at once or per batch, and
    # whichever process decodes them.
    assert _same_weights(streamed, in_memory)
    assert streamed.loss_curve_ == in_memory.loss_curve_


def test_streamed_net_fit_equals_the_in_memory_fit(monkeypatch):
    X, y = _table()
    in_memory = _net().fit(X, y)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)
    streamed = _net(num_workers=2).fit(X, y)
    # The held-out rows are decoded per batch too, and score the same.
    assert streamed.history_ == in_memory.history_
    np.testing.assert_array_equal(streamed.predict_proba(X), in_memory.predict_proba(X))


def test_streamed_matcher_fit_equals_the_in_memory_fit(monkeypatch):
    images, _ = _images(96)
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "a": pd.Series(images, dtype=object),
            "b": pd.Series([im[::-1] + rng.normal(0, 0.01, im.shape) for im in images]),
        }
    )
    X["b"] = [np.clip(b, 0, 1).astype("float32") for b in X["b"]]

    def matcher(**params):
        sides = [("a", ImageEncoder("cnn"), "a"), ("b", ImageEncoder("cnn"), "b")]
        return MultimodalMatcher(
            sides, embedding_dim=8, batch_size=16, max_epochs=2, random_state=0,
            device="cpu", **params,
        )  # fmt: skip

    in_memory = matcher().fit(X)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)
    streamed = matcher(num_workers=2).fit(X)
    assert _same_weights(streamed, in_memory)
    assert streamed.threshold_ == in_memory.threshold_


def test_in_memory_or_streamed_by_decoded_size(monkeypatch):
    images, y = _images(64)
    decoded = 64 * 3 * 8 * 8 * 4  # float32 (C, H, W) items
    sizes = _load_sizes(monkeypatch)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", decoded)
    _encoder().fit(images, y)
    # Fits the budget: decoded once, all together (after the rows that measure it).
    assert sizes == [32, 64]
    sizes.clear()
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", decoded - 1)
    _encoder().fit(images, y)
    # Streamed: 2 epochs of 4 batches of 16, decoded one at a time.
    assert sizes == [32] + [16] * 8


def test_streaming_decodes_in_worker_processes(streamed, monkeypatch, tmp_path):
    images, y = _images(64)
    original, log = ImageEncoder._load, tmp_path / "pids"

    def load(self, column, rows):
        with open(log, "a") as f:  # forked workers write here too
            f.write(f"{os.getpid()}\n")
        return original(self, column, rows)

    monkeypatch.setattr(ImageEncoder, "_load", load)
    _encoder(num_workers=2).fit(images, y)
    pids = set(log.read_text().split())
    assert str(os.getpid()) in pids  # the statistics and the size of a row
    assert len(pids - {str(os.getpid())}) >= 1
    log.unlink()
    _encoder(num_workers=0).fit(images, y)
    assert set(log.read_text().split()) == {str(os.getpid())}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_bad_item_names_encoder_column_and_row(streamed, num_workers):
    X, y = _table()
    X.at[41, "img"] = np.full((8, 8, 3), 7.0, dtype="float32")
    net = _net(num_workers=num_workers)
    message = r"^encoder 'img': column 'img', row 41: image array has float values"
    with pytest.raises(ValueError, match=message) as error:
        net.fit(X, y)
    assert "DataLoader" not in str(error.value)
    assert "module_" not in vars(net)


# -- precision ---------------------------------------------------------------------------
def _conv_dtypes(module):
    """Record the output dtype of the first convolution of ``module``."""
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    dtypes = []
    conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    return dtypes


def test_bf16_mixed_trains_and_encodes_under_autocast_on_the_cpu(monkeypatch):
    images, y = _images(48)
    dtypes = []
    original = ImageEncoder._init_module

    def init_module(self):
        module = original(self)
        dtypes.append(_conv_dtypes(module))
        return module

    monkeypatch.setattr(ImageEncoder, "_init_module", init_module)
    enc = _encoder(precision="bf16-mixed", max_epochs=4).fit(images, y)
    assert set(dtypes[0]) == {torch.bfloat16}
    assert enc.loss_curve_[-1] < enc.loss_curve_[0] / 2
    out = enc.transform(images)
    assert out.dtype == np.float32
    with torch.no_grad():
        column = enc._check_input(images, reset=False)
        reference = enc.module_(enc._load(column, np.arange(48))).numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            by_hand = enc.module_(enc._load(column, np.arange(48))).float().numpy()
    # transform ran in bfloat16: what autocast gives by hand, not the float32 forward.
    np.testing.assert_allclose(out, by_hand, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, reference, rtol=0.1, atol=0.05)


def test_16_mixed_scales_the_loss(monkeypatch):
    X, y = _table()
    scaled = []
    original = torch.amp.GradScaler.scale

    def scale(self, outputs):
        scaled.append(float(self.get_scale()))
        return original(self, outputs)

    monkeypatch.setattr(torch.amp.GradScaler, "scale", scale)
    net = _net(precision="16-mixed", early_stopping=False).fit(X, y)
    assert len(scaled) == 3 * 4 and scaled[0] == 2.0**16  # every step, 3 epochs of 4
    assert net.score(X, y) > 0.9
    proba = net.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()


def test_precision_is_validated():
    with pytest.raises(InvalidParameterError, match="'precision' parameter"):
        _encoder(precision="16").fit(*_images(8))
    with pytest.raises(InvalidParameterError, match="'precision' parameter"):
        _net(precision="bf16").fit(*_table())


# -- host syncs --------------------------------------------------------------------------
class _DeviceReads(TorchFunctionMode):
    """Count the host reads of values that live on the device (``item``, ``bool``,
    ``tolist``, a copy to the CPU, a boolean mask): a sync per read on a GPU.

    On the CPU no tensor lives elsewhere, so "on the device" is followed by hand: the
    parameters, what is moved with ``.to(device)``, and whatever is computed from
    them.
    """

    _READS = {
        torch.Tensor.item,
        torch.Tensor.__bool__,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
        torch.Tensor.tolist,
        torch.Tensor.numpy,
        torch.Tensor.cpu,
        torch.Tensor.nonzero,
    }

    def __init__(self, parameters):
        super().__init__()
        # id -> weak reference: a freed tensor's id may be reused by another one.
        self.on_device = {}
        self.reads = []
        for p in parameters:
            self._track(p)

    def _track(self, tensor):
        self.on_device[id(tensor)] = weakref.ref(tensor)

    def _tracked(self, values):
        tensors = [v for v in tree_flatten(values)[0] if isinstance(v, torch.Tensor)]
        return any(
            (ref := self.on_device.get(id(t))) is not None and ref() is t
            for t in tensors
        )

    @staticmethod
    def _in_optimizer():
        # torch's optimizers keep their step counters on the host on purpose.
        frame = sys._getframe(2)
        while frame is not None:
            if f"torch{os.sep}optim{os.sep}" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        return False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tracked = self._tracked((args, kwargs))
        if func in self._READS and tracked and not self._in_optimizer():
            self.reads.append(func.__name__)
        if func is torch.Tensor.__getitem__ and self._tracked(args[1:]):
            index = [
                v for v in tree_flatten(args[1:])[0] if isinstance(v, torch.Tensor)
            ]
            if any(t.dtype == torch.bool for t in index):
                self.reads.append("boolean mask")
        if tracked or func is torch.Tensor.to:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self._track(t)
        return out


@pytest.mark.parametrize("which", ["encoder", "net", "matcher"])
def test_no_host_read_of_device_values_per_step(which, monkeypatch):
    from skmm.training._loop import TrainingMixin

    counts = []
    original = TrainingMixin._run_single_epoch

    def epoch(self, module, optimizer, source, run, context):
        with _DeviceReads(module.parameters()) as reads:
            out = original(self, module, optimizer, source, run, context)
        counts.append(reads.reads)
        return out

    monkeypatch.setattr(TrainingMixin, "_run_single_epoch", epoch)
    X, y = _table(64)
    if which == "encoder":
        _encoder().fit(list(X["img"]), y)
    elif which == "net":
        _net(modality_dropout=0.3, tower_loss_weight=1.0).fit(X, y)
    else:
        sides = [("a", "passthrough", ["num"]), ("b", ImageEncoder("cnn"), "img")]
        MultimodalMatcher(
            sides, batch_size=16, max_epochs=2, random_state=0, device="cpu"
        ).fit(X)
    # Each epoch of 4 steps reads one value: its mean loss, at its end.
    assert counts and all(reads == ["__float__"] for reads in counts), counts
