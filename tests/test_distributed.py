"""Data-parallel training: 2 processes (torchrun, gloo on the CPU) against one.

The same scenarios run twice: under ``torchrun --nproc_per_node=2``, where each
process trains on its half of every batch, and here, in one process, with the same
global batch. With SGD (whose steps follow the gradients linearly; Adam divides by
their running scale, which turns float rounding into visible differences on
near-zero gradients), no dropout and no augmentation, the two must agree to float
rounding: the gradients are all-reduced, the batch-norm statistics are those of
the whole batch, and each process's loss counts its share of it.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import skmm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCENARIOS = '''
import numpy as np
import pandas as pd
import torch

from skmm.callbacks import Checkpoint
from skmm.encoders import ImageEncoder
from skmm.nn import MultimodalNetClassifier


def table(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["dark", "light"] * (n // 2))
    images = rng.random((n, 8, 8, 3)) * 0.6 + (y == "light")[:, None, None, None] * 0.4
    X = pd.DataFrame({
        "img": pd.Series(list(images.astype("float32")), dtype=object),
        "num": rng.normal(size=n) + (y == "light"),
    })
    return X, y


def net(**params):
    encoders = [("img", ImageEncoder("cnn"), "img"), ("num", "passthrough", ["num"])]
    # Batches of 25: shares of 13 and 12 rows, which must count as such.
    params = {"max_epochs": 3, "batch_size": 25, "dropout": 0.0, "lr": 0.05,
              "optimizer": torch.optim.SGD, "random_state": 0, "device": "cpu",
              **params}
    return MultimodalNetClassifier(encoders, **params)


class Killed(Exception):
    pass


def fits(folder):
    """The fitted estimators of every scenario, by name."""
    import dask
    import dask.dataframe as dd

    X, y = table()
    out = {}
    out["net"] = net(callbacks=[Checkpoint(f"{folder}/best.pt")]).fit(X, y)
    out["encoder"] = ImageEncoder(
        "cnn", max_epochs=2, batch_size=25, lr=0.05, optimizer=torch.optim.SGD,
        random_state=0, device="cpu",
    ).fit(list(X["img"]), y)
    with dask.config.set({"dataframe.convert-string": False}):  # arrays stay
        frame = dd.from_pandas(X.assign(y=y), npartitions=3, sort=False)
        out["dask"] = net(early_stopping=False).fit(frame[["img", "num"]], frame["y"])
    chunked = net()
    for rows in (slice(0, 64), slice(64, 96)):
        chunked.partial_fit(X.iloc[rows], y[rows], classes=["dark", "light"])
    out["partial_fit"] = chunked
    # Killed after its second epoch, fitted again: it resumes from the state file.
    # With dropout, which each rank draws on its own generator.
    params = {"dropout": 0.3, "max_epochs": 4, "early_stopping": False}
    out["uninterrupted"] = net(**params).fit(X, y)
    checkpoint = Checkpoint(f"{folder}/again.pt", state=f"{folder}/state.pt")

    def kill(estimator, history):
        if len(history) == 2:
            raise Killed

    resumed = net(**params, callbacks=[checkpoint, kill])
    try:
        resumed.fit(X, y)
    except Killed:
        pass
    resumed.set_params(callbacks=[checkpoint]).fit(X, y)
    out["resumed"], out["resumed_from"] = resumed, checkpoint.resumed_from_
    missing = X.copy()
    missing.at[5, "img"] = None
    try:
        net().fit(missing, y)
        out["missing"] = "fitted"
    except ValueError as exc:
        out["missing"] = str(exc)
    return out
'''

MAIN = """
import os, pickle, sys
import torch

torch.set_num_threads(1)
folder = sys.argv[1]
fitted = fits(folder)
with open(f"{folder}/rank{os.environ['RANK']}.pkl", "wb") as f:
    pickle.dump(fitted, f)
"""


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The scenarios fitted by 2 gloo processes: each rank's pickled estimators."""
    pytest.importorskip("dask.dataframe")
    folder = tmp_path_factory.mktemp("ddp")
    script = folder / "fit.py"
    script.write_text(SCENARIOS + MAIN)
    root = str(Path(skmm.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(script), str(folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = []
    for rank in (0, 1):
        with open(folder / f"rank{rank}.pkl", "rb") as f:  # in a plain process
            ranks.append(pickle.load(f))
    return folder, ranks


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    namespace = {}
    exec(SCENARIOS, namespace)
    folder = tmp_path_factory.mktemp("one")
    return namespace, namespace["fits"](folder)


def _states(estimator):
    return estimator.module_.state_dict()


def test_every_rank_returns_rank_0s_estimator(two_processes):
    _, (rank0, rank1) = two_processes
    for name in ("net", "encoder", "dask", "partial_fit"):
        a, b = _states(rank0[name]), _states(rank1[name])
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert rank0[name].history_ == rank1[name].history_


@pytest.mark.parametrize("name", ["net", "dask", "partial_fit"])
def test_two_processes_match_one_with_the_same_global_batch(
    two_processes, one_process, name
):
    _, (fitted, _) = two_processes
    namespace, reference = one_process
    X, _ = namespace["table"]()
    theirs, ours = fitted[name], reference[name]
    assert [r["epoch"] for r in theirs.history_] == [r["epoch"] for r in ours.history_]
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(
            [r.get(key, 0) for r in theirs.history_],
            [r.get(key, 0) for r in ours.history_],
            rtol=1e-5,
        )
    a, b = _states(theirs), _states(ours)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    # Loaded in this plain process (no process group): it predicts as the other.
    np.testing.assert_allclose(
        theirs.predict_proba(X), ours.predict_proba(X), rtol=1e-4, atol=1e-5
    )


def test_two_processes_train_an_encoder_as_one(two_processes, one_process):
    _, (fitted, _) = two_processes
    namespace, reference = one_process
    X, _ = namespace["table"]()
    images = list(X["img"])
    np.testing.assert_allclose(
        fitted["encoder"].transform(images),
        reference["encoder"].transform(images),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        fitted["encoder"].loss_curve_, reference["encoder"].loss_curve_, rtol=1e-5
    )


def test_rank_0_writes_the_checkpoint(two_processes):
    folder, (fitted, _) = two_processes
    saved = torch.load(folder / "best.pt", weights_only=True)
    best = fitted["net"].module_.state_dict()
    assert all(torch.equal(saved[k], best[k]) for k in best)


def test_a_killed_run_resumes_to_the_uninterrupted_model(two_processes):
    # Every rank restores its own generators: rank 0's on rank 1 would draw rank 0's
    # dropout masks there, and the all-reduced steps would part from the
    # uninterrupted run's.
    _, ranks = two_processes
    for fitted in ranks:
        assert fitted["resumed_from"] == 1
        a, b = _states(fitted["resumed"]), _states(fitted["uninterrupted"])
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert fitted["resumed"].history_ == fitted["uninterrupted"].history_


def test_missing_items_are_refused_on_several_processes(two_processes, one_process):
    _, (fitted, _) = two_processes
    assert fitted["missing"].startswith("encoder 'img': column 'img', row 5 is missing")
    assert "one process" in fitted["missing"]
    assert one_process[1]["missing"] == "fitted"
