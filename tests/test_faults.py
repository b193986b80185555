"""Faults during long work: a fit killed with SIGKILL resumes from its Checkpoint's
state file and ends with the model of an uninterrupted run; killed cache writers'
temporary files are cleaned, never a live writer's; a Dask worker lost during a
partition fit or prediction loses and duplicates no row."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from skmm.callbacks import Checkpoint
from skmm.nn import MultimodalNetClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A fit in a child process: a staged net with a trained image tower (augmentation
# and dropout draw random numbers), early stopping in each stage, a step schedule of
# the learning rate. It prints each epoch as it ends; once done, it saves its
# weights, predictions and history.
FIT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd, torch
    from torch.optim.lr_scheduler import StepLR
    from skmm.callbacks import Callback, Checkpoint, LRScheduler
    from skmm.encoders import ImageEncoder
    from skmm.nn import MultimodalNetClassifier

    torch.set_num_threads(1)
    folder, kind = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    y = np.arange(160) % 2
    images = rng.random((160, 12, 12, 3)) * 0.6 + 0.4 * y[:, None, None, None]
    X = pd.DataFrame({
        "img": pd.Series(list(images.astype("float32")), dtype=object),
        "n": rng.normal(size=160) + 0.5 * y,
    })

    class Report(Callback):
        def on_epoch_end(self, estimator, *, module, optimizer, history):
            print(json.dumps({"epoch": history[-1]["epoch"]}), flush=True)

    checkpoint = Checkpoint(f"{folder}/best.pt", state=f"{folder}/state.pt")
    callbacks = [Report(), LRScheduler(StepLR, step_size=2, gamma=0.7), checkpoint]
    if kind == "net":
        model = MultimodalNetClassifier(
            [("img", ImageEncoder("cnn", augment="default"), "img"),
             ("n", "passthrough", ["n"])],
            schedule="staged", max_epochs=6, n_iter_no_change=3, dropout=0.3,
            batch_size=16, lr=1e-2, random_state=0, device="cpu",
            callbacks=callbacks,
        ).fit(X, y)
        out = model.predict_proba(X)
    else:
        model = ImageEncoder(
            "cnn", augment="default", max_epochs=12, batch_size=16,
            random_state=0, device="cpu", callbacks=callbacks,
        ).fit(X[["img"]], y)
        out = model.transform(X[["img"]])
    torch.save({"weights": model.module_.state_dict(), "out": torch.as_tensor(out)},
               f"{folder}/result.pt")
    with open(f"{folder}/result.json", "w") as f:
        json.dump({"history": model.history_, "resumed": checkpoint.resumed_from_},
                  f, default=float)
    """
)


def _child(folder, kind):
    script = folder / "fit.py"
    script.write_text(FIT)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(folder), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _run(folder, kind):
    proc = _child(folder, kind)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return [json.loads(line)["epoch"] for line in out.splitlines()]


def _epochs_in_state(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not there yet, or being replaced
        return 0
    return len(json.loads(state["history"]))


def _result(folder):
    result = torch.load(folder / "result.pt", weights_only=True)
    with open(folder / "result.json") as f:
        return result, json.load(f)


@pytest.mark.slow  # three processes: ~45 s each on a loaded 2-core machine
@pytest.mark.parametrize(
    "kind, kill_after", [("net", 9), ("encoder", 5)], ids=["net-later-stage", "encoder"]
)
def test_a_fit_killed_mid_way_resumes_to_the_uninterrupted_model(
    tmp_path, kind, kill_after, record_measure
):
    (reference := tmp_path / "reference").mkdir()
    (killed := tmp_path / "killed").mkdir()
    epochs = _run(reference, kind)
    assert not (reference / "state.pt").exists()  # removed when the fit ended
    assert len(epochs) > kill_after + 2

    # Killed (SIGKILL: no handler, no clean-up runs) once the state file holds
    # ``kill_after`` epochs, wherever the fit is then.
    proc = _child(killed, kind)
    deadline = time.monotonic() + 300
    while _epochs_in_state(killed / "state.pt") < kill_after:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ran = [json.loads(line)["epoch"] for line in out.splitlines()]
    saved = _epochs_in_state(killed / "state.pt")
    assert not (killed / "result.pt").exists()
    assert saved >= kill_after and ran[-1] >= saved

    # Resumed: the same script, the same arguments.
    resumed_epochs = _run(killed, kind)
    (expected, expected_info), (got, got_info) = _result(reference), _result(killed)
    assert got_info["resumed"] == saved
    assert resumed_epochs == epochs[saved:]  # only the epochs not in the file
    # Epochs run twice: those the killed process finished after the last state
    # it wrote (0 or 1: the state is written at every epoch's end).
    lost = ran[-1] - saved
    record_measure(f"{kind}: epochs lost on resume (killed after {ran[-1]})", -lost, -1)
    # The same model as the uninterrupted run, to the bit.
    assert got_info["history"] == expected_info["history"]
    assert got["weights"].keys() == expected["weights"].keys()
    for name, tensor in expected["weights"].items():
        assert torch.equal(got["weights"][name], tensor), name
    assert torch.equal(got["out"], expected["out"])
    assert not (killed / "state.pt").exists()


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    return X, (X["a"] + X["c"] > 0).astype(int).to_numpy()


def _net(tmp_path, **params):
    return MultimodalNetClassifier(
        [("l", "passthrough", ["a", "b"]), ("r", "passthrough", ["c", "d"])],
        **{"lr": 1e-2, "batch_size": 16, "random_state": 0, "device": "cpu"},
        **params,
    )


def test_a_state_file_of_another_fit_is_not_resumed(tmp_path):
    X, y = _table()
    state = tmp_path / "state.pt"
    net = _net(tmp_path, max_epochs=3, dropout=0.2)
    reference = net.fit(X, y).predict_proba(X)
    # A state file from a fit with other parameters (as a killed run leaves it).
    other = _net(tmp_path, max_epochs=3, dropout=0.2, alpha=1e-3)
    checkpoint = Checkpoint(tmp_path / "b.pt", state=state)
    other.set_params(callbacks=[checkpoint, _Kill(2)])
    with pytest.raises(_Killed):
        other.fit(X, y)
    assert state.exists()
    net.set_params(callbacks=[Checkpoint(tmp_path / "b.pt", state=state)])
    with pytest.warns(UserWarning, match="written by a fit with other parameters"):
        np.testing.assert_array_equal(net.fit(X, y).predict_proba(X), reference)
    assert net.callbacks[0].resumed_from_ is None
    # A file that is no state file at all.
    state.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="cannot be read"):
        np.testing.assert_array_equal(net.fit(X, y).predict_proba(X), reference)


class _Killed(Exception):
    pass


class _Kill:
    """A callable callback that fails after ``epochs`` epochs (a crash, in process)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, estimator, history):
        if len(history) == self.epochs:
            raise _Killed


@pytest.mark.parametrize(
    "schedule, fail_at", [("joint", 4), ("staged", 3), ("staged", 10)]
)
def test_a_fit_that_failed_resumes_in_process(tmp_path, schedule, fail_at):
    """A fit that raised mid-way (a bad item, a failing callback) leaves its state:
    fit again and it resumes, within the stage it was in, to the same model."""
    from torch.optim.lr_scheduler import StepLR

    from skmm.callbacks import LRScheduler

    X, y = _table()
    params = dict(max_epochs=6, dropout=0.2, schedule=schedule, n_iter_no_change=4)

    def callbacks():
        return [LRScheduler(StepLR, step_size=2, gamma=0.5)]

    reference = _net(tmp_path, **params, callbacks=callbacks()).fit(X, y)
    assert len(reference.history_) > fail_at
    checkpoint = Checkpoint(tmp_path / "b.pt", state=tmp_path / "state.pt")
    net = _net(tmp_path, **params, callbacks=[*callbacks(), checkpoint, _Kill(fail_at)])
    with pytest.raises(_Killed):
        net.fit(X, y)
    assert "module_" not in vars(net)
    net.set_params(callbacks=[*callbacks(), checkpoint])
    net.fit(X, y)
    # The failing epoch raised before its state was written.
    assert checkpoint.resumed_from_ == fail_at - 1
    assert not (tmp_path / "state.pt").exists()
    np.testing.assert_array_equal(net.predict_proba(X), reference.predict_proba(X))
    assert net.history_ == reference.history_
    for name, tensor in reference.module_.state_dict().items():
        assert torch.equal(net.module_.state_dict()[name], tensor), name


# -- a Dask worker lost during a partition fit or prediction --------------------------
def _slow_partition(part, folder, seconds):
    """On a worker: note "<partition's first row> <pid>" in ``folder``, then take
    ``seconds``; a task killed in the meantime is noted again when it is rerun."""
    first = int(part.index[0]) if len(part) else -1
    with open(os.path.join(folder, f"{first}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    time.sleep(seconds)
    return part


def _kill_the_model_holders(client, killed):
    """Kill (SIGKILL) every worker process that holds the model, once it is there."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        holders = {
            address
            for key, where in client.who_has().items()
            if "-model-" in str(key)
            for address in where
        }
        if holders:
            pids = client.run(os.getpid, workers=list(holders))
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids.values())
            return
        time.sleep(0.02)


def _kill_a_busy_worker(folder, client, killed):
    """Kill (SIGKILL) the worker process that starts a task first."""
    workers = set(client.run(os.getpid).values())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for name in os.listdir(folder):
            pid = int(name.split("-")[1])
            if pid in workers:
                os.kill(pid, signal.SIGKILL)
                killed.append((int(name.split("-")[0]), pid))
                return
        time.sleep(0.02)


@pytest.mark.slow  # a LocalCluster of two processes, killed: ~2 min, loaded machine
def test_a_worker_lost_mid_partition_loses_and_duplicates_no_row(tmp_path):
    import threading

    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")

    X, y = _table(n=160)
    frame = dd.from_pandas(X.assign(target=y), npartitions=4)

    def slowed(folder):
        return frame.map_partitions(_slow_partition, str(folder), 1.0, meta=frame._meta)

    reference = _net(tmp_path, max_epochs=1)
    reference.fit(frame[list("abcd")], frame["target"])  # the local scheduler

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT},
    )
    try:
        with cluster, distributed.Client(cluster) as client:
            # fit: the partitions are computed on the workers, one is lost.
            (fit_notes := tmp_path / "fit").mkdir()
            table, killed = slowed(fit_notes), []
            killer = threading.Thread(
                target=_kill_a_busy_worker, args=(str(fit_notes), client, killed)
            )
            killer.start()
            net = _net(tmp_path, max_epochs=1)
            net.fit(table[list("abcd")], table["target"])
            killer.join()
            assert killed, "no worker was killed"
            notes = [n.split("-")[0] for n in os.listdir(fit_notes)]
            # The lost partition was computed again, on a live worker.
            assert notes.count(str(killed[0][0])) >= 2
            np.testing.assert_array_equal(
                net.predict_proba(X), reference.predict_proba(X)
            )
            assert net.loss_curve_ == reference.loss_curve_

            # predict: the workers holding the model are killed mid-way; every
            # row comes once, in order, equal to the in-memory prediction.
            client.wait_for_workers(2, timeout=120)
            (predict_notes := tmp_path / "predict").mkdir()
            killed = []
            killer = threading.Thread(
                target=_kill_the_model_holders, args=(client, killed)
            )
            killer.start()
            proba = net.predict_proba(slowed(predict_notes)[list("abcd")]).compute()
            killer.join()
            assert killed, "no worker was killed"
            pd.testing.assert_index_equal(proba.index, X.index)
            np.testing.assert_allclose(
                proba.to_numpy(), net.predict_proba(X), rtol=0, atol=1e-6
            )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# -- cache writers killed mid-write ---------------------------------------------------
KEY = "ab" * 20  # every entry of this test goes to the folder "ab"


def _stuck_writer(folder, ready):
    """In a child: write an entry whose rename into place never comes."""
    import skmm.utils._cache as cache_module

    def stuck(src, dst):
        ready.set()
        time.sleep(600)

    cache_module.os.replace = stuck  # this child's os module only
    cache = cache_module.EmbeddingCache(folder, "ns")
    cache.save([KEY], np.ones((1, 4), dtype=np.float32))


def test_killed_cache_writers_leave_files_that_only_stale_ones_clean(tmp_path):
    import multiprocessing

    from skmm.utils._cache import STALE_TMP_SECONDS, EmbeddingCache

    fork = multiprocessing.get_context("fork")
    writers = []
    for _ in range(2):
        ready = fork.Event()
        writer = fork.Process(target=_stuck_writer, args=(tmp_path, ready))
        writer.start()
        assert ready.wait(60)
        writers.append(writer)
    folder = tmp_path / "skmm_embeddings" / "v2" / "ns" / "ab"
    dead, live = sorted(folder.glob(".tmp-*"), key=os.path.getctime)
    # The first writer is killed mid-write (SIGKILL: no clean-up runs), and its
    # file is left an hour old; the second is alive, in the middle of its write.
    os.kill(writers[0].pid, signal.SIGKILL)
    writers[0].join()
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(dead, (old, old))
    try:
        cache = EmbeddingCache(tmp_path, "ns")
        cache.save([KEY], np.full((1, 4), 2.0, dtype=np.float32))
        assert not dead.exists()
        assert live.exists()  # a live writer's file is never taken
        out = np.zeros((1, 4), dtype=np.float32)
        assert cache.load([KEY], out).all() and (out == 2.0).all()
    finally:
        writers[1].kill()
        writers[1].join()
