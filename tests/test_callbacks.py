"""The one training loop's callbacks and optimizer, on a net, an encoder and a matcher."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from torch.optim.lr_scheduler import StepLR

from skmm.callbacks import Callback, Checkpoint, LRScheduler
from skmm.encoders import AudioEncoder
from skmm.nn import MultimodalMatcher, MultimodalNetClassifier
from skmm.utils._torch import load_state_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 2] + rng.normal(0, 0.7, n) > 0).astype(int)
    return X, y


def _net(**params):
    return MultimodalNetClassifier(
        [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
        **{"device": "cpu", "random_state": 0, "lr": 3e-2, **params},
    )


class _Snapshots(Callback):
    """Keeps a copy of the weights after every epoch."""

    def on_train_begin(self, estimator, *, module, optimizer):
        self.states = []

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        self.states.append({k: v.clone() for k, v in module.state_dict().items()})


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_holds_the_best_epoch_and_loads_back(tmp_path):
    X, y = _data()
    path = tmp_path / "best.pt"
    checkpoint, snapshots = Checkpoint(path), _Snapshots()
    net = _net(
        max_epochs=40, n_iter_no_change=4, callbacks=[checkpoint, snapshots]
    ).fit(X, y)
    best = [record["epoch"] for record in net.history_ if record["best"]][-1]
    # Early stopping ran past the best epoch, so the last weights are not the best.
    assert net.n_iter_ == best + 4 < 40
    assert checkpoint.best_epoch_ == best
    saved = load_state_dict(path)
    assert _equal_states(saved, snapshots.states[best - 1])
    assert not _equal_states(saved, snapshots.states[-1])
    assert _equal_states(saved, net.module_.state_dict())  # the restored best epoch
    # An estimator fitted with the same parameters takes the file back.
    other = clone(net).set_params(callbacks=None, max_epochs=1).fit(X, y)
    assert not np.allclose(other.predict_proba(X), net.predict_proba(X))
    other.module_.load_state_dict(load_state_dict(path))
    assert_allclose(other.predict_proba(X), net.predict_proba(X))


def test_checkpoint_without_validation_monitors_the_training_loss(tmp_path):
    X, y = _data()
    checkpoint = Checkpoint(tmp_path / "w.pt")
    net = _net(max_epochs=5, early_stopping=False, callbacks=[checkpoint]).fit(X, y)
    assert checkpoint.best_epoch_ == int(np.argmin(net.loss_curve_)) + 1
    with pytest.raises(ValueError, match="needs a validation split"):
        _net(
            max_epochs=2,
            early_stopping=False,
            callbacks=[Checkpoint(tmp_path / "v.pt", monitor="valid_score")],
        ).fit(X, y)


def test_step_scheduler_changes_the_learning_rate_on_schedule():
    X, y = _data()
    scheduler = LRScheduler(StepLR, step_size=2, gamma=0.5)
    net = _net(max_epochs=6, lr=0.04, early_stopping=False, callbacks=[scheduler]).fit(
        X, y
    )
    lrs = [record["lr"] for record in net.history_]
    assert_allclose(lrs, [0.04, 0.04, 0.02, 0.02, 0.01, 0.01])
    # The scheduler (which references the optimizer) is not kept after fit.
    assert not hasattr(net.callbacks[0], "scheduler_")


def test_encoder_trains_through_the_same_loop():
    rng = np.random.default_rng(0)
    waves = rng.normal(size=(24, 400)).astype(np.float32)
    y = np.arange(24) % 2
    seen = []
    enc = AudioEncoder(
        sample_rate=1000,
        n_fft=64,
        n_mels=8,
        max_epochs=4,
        batch_size=8,
        lr=0.1,
        optimizer=torch.optim.SGD,
        callbacks=[
            LRScheduler(StepLR, step_size=1, gamma=0.1),
            lambda est, history: seen.append(history[-1]["epoch"]),
        ],
        device="cpu",
        random_state=0,
    ).fit(waves, y)
    assert seen == [1, 2, 3, 4] and enc.n_iter_ == 4
    assert_allclose([r["lr"] for r in enc.history_], [0.1, 0.01, 1e-3, 1e-4])


def test_a_callable_can_stop_training_and_the_optimizer_is_chosen():
    X, y = _data()
    kinds = []

    class Kind(Callback):
        def on_train_begin(self, estimator, *, module, optimizer):
            kinds.append(type(optimizer))

    net = _net(
        max_epochs=20,
        early_stopping=False,
        optimizer=torch.optim.SGD,
        callbacks=[Kind(), lambda est, history: history[-1]["epoch"] == 3],
    ).fit(X, y)
    assert net.n_iter_ == 3 == len(net.loss_curve_)
    assert kinds == [torch.optim.SGD]


def test_matcher_trains_through_the_same_loop():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(120, 3))
    X = np.hstack([latent @ rng.normal(size=(3, 5)), latent @ rng.normal(size=(3, 4))])
    stops = MultimodalMatcher(
        [("a", "passthrough", slice(0, 5)), ("b", "passthrough", slice(5, 9))],
        embedding_dim=4,
        batch_size=16,
        max_epochs=10,
        callbacks=[lambda est, history: history[-1]["epoch"] == 2],
        device="cpu",
        random_state=0,
    ).fit(X)
    assert stops.n_iter_ == 2 == len(stops.validation_scores_)


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"callbacks": ["x"]}, TypeError, "callbacks must be skmm.callbacks.Callback"),
        ({"optimizer": dict}, TypeError, "must be a torch.optim.Optimizer class"),
        ({"tower_lr": {"c": 0.1}}, ValueError, r"tower_lr names \['c'\]"),
    ],
)
def test_bad_training_parameters(params, error, message):
    X, y = _data(40)
    net = _net(max_epochs=1, **params)
    with pytest.raises(error, match=message):
        net.fit(X, y)
    assert not hasattr(net, "module_")


def test_tower_lr_sets_a_learning_rate_per_tower():
    X, y = _data()
    rates = {}

    class Rates(Callback):
        def on_train_begin(self, estimator, *, module, optimizer):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    rates[id(p)] = group["lr"]

    net = _net(max_epochs=1, tower_lr={"a": 0.5}, callbacks=[Rates()]).fit(X, y)
    towers = net.module_.towers
    assert {rates[id(p)] for p in towers[0].parameters()} == {0.5}
    assert {rates[id(p)] for p in towers[1].parameters()} == {3e-2}
    assert {rates[id(p)] for p in net.module_.head.parameters()} == {3e-2}
