"""The torch plumbing every estimator shares: devices, seeding, weights on disk."""

import io
import pickle
import warnings

import numpy as np
import pytest
import torch

from skmm.encoders import ImageEncoder
from skmm.utils import DeviceWarning, available_device, resolve_device
from skmm.utils._torch import load_state_dict, state_dict_to_bytes, torch_seed


def test_resolve_device_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not a valid device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="'cpu' or 'cuda' devices, not 'meta'"):
        resolve_device("meta")


def test_resolve_device_with_fake_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda:0"
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    assert available_device("cuda:1") == "cuda:1"


def test_available_device_falls_back_to_cpu_with_one_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceWarning, match="fitted on 'cuda:0'.*loaded on 'cpu'"):
        assert available_device("cuda:0", owner="ImageEncoder") == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert available_device("cpu") == "cpu"


def test_state_dict_bytes_round_trip_maps_to_cpu():
    module = torch.nn.Linear(3, 2)
    data = state_dict_to_bytes(module)
    state = load_state_dict(data, map_location="cpu")
    assert set(state) == {"weight", "bias"}
    assert all(t.device.type == "cpu" for t in state.values())
    torch.testing.assert_close(state["weight"], module.weight.detach())


def test_load_state_dict_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "obj": object()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(path)
    buffer = io.BytesIO()
    torch.save([torch.zeros(1)], buffer)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_state_dict(buffer.getvalue())


def test_torch_seed_is_reproducible_and_leaves_global_state_alone():
    before = torch.get_rng_state()
    with torch_seed(3):
        a = torch.rand(4)
    with torch_seed(3):
        b = torch.rand(4)
    torch.testing.assert_close(a, b)
    assert torch.equal(torch.get_rng_state(), before)


def test_fitted_on_gpu_loads_on_cpu(monkeypatch):
    """A model pickled from a GPU machine loads here, on the CPU, with one warning."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(6, 12, 12), dtype=np.uint8)
    enc = ImageEncoder("cnn", max_epochs=0, random_state=0, device="cpu").fit(images)
    expected = enc.transform(images)
    # What __getstate__ sees on a GPU machine: device_ names the GPU. The weights are
    # stored as CPU tensors either way.
    enc.device_ = "cuda:0"
    blob = pickle.dumps(enc)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(blob)
    assert [w.category for w in caught] == [DeviceWarning]
    assert loaded.device_ == "cpu"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.transform(images), expected)


@pytest.mark.parametrize(
    "y, message",
    [
        ([0, 1] * 9 + [None, 1], "Unknown label type"),
        ([0.0, 1.0] * 9 + [np.nan, 1.0], "y contains NaN"),
        ([1] * 20, "at least 2 classes in y"),
    ],
    ids=["None", "NaN", "one class"],
)
def test_bad_targets_are_named(y, message):
    # Issue 14 (targets): checked once, with scikit-learn's wording where its checks
    # expect it, in the encoders and in the nets alike.
    from skmm.encoders import AudioEncoder
    from skmm.nn import MultimodalNetClassifier

    X = np.random.default_rng(0).normal(size=(20, 4))
    net = MultimodalNetClassifier(
        [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
        max_epochs=1,
        device="cpu",
    )
    enc = AudioEncoder(
        sample_rate=100, n_fft=16, n_mels=4, duration=0.04, max_epochs=1, device="cpu"
    )
    for estimator in (net, enc):
        with pytest.raises(ValueError, match=message):
            estimator.fit(X, y)
        assert not hasattr(estimator, "module_")


def test_fusion_and_inspection_do_not_import_torch():
    # Issue 12: the fuser, the ensembles and the inspection tools need no torch; an
    # import must not pay for it (nor for matplotlib or dask).
    import subprocess
    import sys

    code = (
        "import sys, skmm, skmm.fusion, skmm.inspection, skmm.utils; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'dask') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
    # And the device helpers are still there, imported on first use.
    code = (
        "import sys, skmm.utils as u; u.resolve_device; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"
