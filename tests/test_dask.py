"""Partition-wise inference on Dask collections, locally and on a 2-process cluster."""

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skmm.datasets import load_av_digits
from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder
from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.nn import MultimodalMatcher, MultimodalNetClassifier, ZeroShotClassifier
from skmm.utils import map_partitions

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Torch's CPU kernels round float32 differently for different batch sizes: the Dask
# results are bit-identical to the in-memory ones when each partition is whole
# batches, as here (partitions of 16 rows), and equal to float32 rounding otherwise.
BATCH = 16


@pytest.fixture(scope="module", autouse=True)
def object_columns_stay_objects():
    # Dask turns object columns into pyarrow strings by default; AV-digits holds
    # arrays (images, waveforms) in its object columns.
    with dask.config.set({"dataframe.convert-string": False}):
        yield


@pytest.fixture(scope="module")
def data():
    X, y = load_av_digits(return_X_y=True)
    rows = np.arange(0, 1200, 15)  # 80 rows, all ten digits
    return X.iloc[rows].reset_index(drop=True), y.iloc[rows].to_numpy()


@pytest.fixture(scope="module")
def models(data):
    X, y = data

    def image():
        return ImageEncoder("cnn", max_epochs=0, batch_size=BATCH, random_state=0)

    def audio():
        return AudioEncoder(max_epochs=0, batch_size=BATCH, random_state=0)

    fuser = MultimodalFuser([("img", image(), "image"), ("snd", audio(), "audio")])
    late = LateFusionClassifier(
        [
            ("img", make_pipeline(image(), LogisticRegression(max_iter=300)), "image"),
            ("snd", make_pipeline(audio(), LogisticRegression(max_iter=300)), "audio"),
        ]
    )
    net = MultimodalNetClassifier(
        [("img", ImageEncoder("cnn"), "image"), ("snd", AudioEncoder(), "audio")],
        max_epochs=1,
        batch_size=BATCH,
        random_state=0,
        device="auto",
    )
    return {
        "encoder": image().fit(X[["image"]]),
        "pipeline": make_pipeline(fuser, LogisticRegression(max_iter=300)).fit(X, y),
        "late": late.fit(X, y),
        "net": net.fit(X, y),
    }


def _cases(models, X):
    """(name, fitted estimator, method, in-memory input) for every checked output."""
    image = X[["image"]]
    return [
        ("encoder", models["encoder"], "transform", image),
        ("fuser", models["pipeline"][0], "transform", X),
        ("late", models["late"], "predict", X),
        ("late", models["late"], "predict_proba", X),
        ("late", models["late"], "transform", X),
        ("net", models["net"], "predict", X),
        ("net", models["net"], "predict_proba", X),
        ("net", models["net"], "transform", X),
    ]


def _check_same(lazy, expected, index):
    """The Dask result, computed, is the in-memory one to the bit, indexed as X."""
    got = lazy.compute()
    if expected.dtype.kind == "U":
        # pandas holds text labels as str or object, not fixed-width unicode.
        assert got.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(got.to_numpy(), expected, strict=True)
    pd.testing.assert_index_equal(got.index, index)


def test_dask_results_equal_in_memory_with_the_local_scheduler(models, data):
    X, _ = data
    ddf = dd.from_pandas(X, chunksize=BATCH)
    with dask.config.set(scheduler="sync"):
        for _name, est, method, Xin in _cases(models, X):
            part = ddf[list(Xin.columns)]
            _check_same(getattr(est, method)(part), getattr(est, method)(Xin), X.index)
        # A Series of items is a column too.
        enc = models["encoder"]
        _check_same(enc.transform(ddf["image"]), enc.transform(X["image"]), X.index)
        pipe = models["pipeline"]
        _check_same(
            map_partitions(pipe, ddf, "predict_proba"), pipe.predict_proba(X), X.index
        )


def test_partitions_cutting_batches_agree_to_float32_rounding(models, data):
    X, _ = data
    ddf = dd.from_pandas(X, npartitions=3)  # 27, 27 and 26 rows
    with dask.config.set(scheduler="sync"):
        for _name, est, method, Xin in _cases(models, X):
            got = getattr(est, method)(ddf[list(Xin.columns)]).compute().to_numpy()
            expected = getattr(est, method)(Xin)
            if expected.dtype.kind == "f":
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            else:
                assert (got == expected).mean() > 0.95


def test_meta_and_feature_names_need_no_compute(models, data):
    X, _ = data

    def boom():
        raise AssertionError("a partition was computed")

    ddf = dd.from_delayed([dask.delayed(boom)()] * 2, meta=X.iloc[:0])
    enc, net, late = models["encoder"], models["net"], models["late"]
    out = enc.transform(ddf[["image"]])
    assert list(out.columns) == list(enc.get_feature_names_out())
    assert set(out.dtypes) == {np.dtype("float32")}
    out = net.transform(ddf)
    assert list(out.columns) == list(net.get_feature_names_out())
    assert set(out.dtypes) == {np.dtype("float32")}
    proba = late.predict_proba(ddf)
    assert list(proba.columns) == list(late.classes_)
    assert set(proba.dtypes) == {np.dtype("float64")}
    pred = net.predict(ddf)
    assert isinstance(pred, dd.Series) and pred.dtype == net.classes_.dtype
    assert pred.npartitions == 2
    # The declared meta is what the in-memory methods give, name for name.
    for _, est, method, Xin in _cases(models, X):
        lazy = getattr(est, method)(ddf[list(Xin.columns)])
        expected = getattr(est, method)(Xin.iloc[:3])
        dtypes = [lazy.dtype] if lazy.ndim == 1 else set(lazy.dtypes)
        assert list(dtypes) == [expected.dtype], (est, method)
        assert lazy.ndim == expected.ndim


def test_dask_array_input_keeps_row_blocks(models, data):
    X, _ = data
    enc = models["encoder"]
    images = np.stack(X["image"])
    arr = da.from_array(images, chunks=(30, 14, 28))
    with dask.config.set(scheduler="sync"):
        out = enc.transform(arr)
        assert out.chunks == ((30, 30, 20), (enc.module_.out_features,))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.compute(), enc.transform(images), strict=True)
    waves = np.stack([w[:2000] for w in X["audio"] if len(w) >= 2000])
    feats = AudioFeatures().fit(waves)
    with dask.config.set(scheduler="sync"):
        got = feats.transform(da.from_array(waves, chunks=(7, 500))).compute()
    np.testing.assert_array_equal(got, feats.transform(waves), strict=True)


def _pairs(n, seed):
    colours = np.array(["blue", "green", "red"])
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=n)
    pairs = pd.DataFrame(
        rng.normal(size=(n, 3)) + 3 * np.eye(3)[label], columns=["x0", "x1", "x2"]
    )
    pairs["title"] = [f"colour_{c} thing" for c in colours[label]]
    return pairs, colours[label]


def test_matcher_and_zero_shot_on_dask(data):
    pairs, _ = _pairs(120, 0)
    matcher = MultimodalMatcher(
        [
            ("point", "passthrough", ["x0", "x1", "x2"]),
            ("title", CountVectorizer(), "title"),
        ],
        embedding_dim=8,
        max_epochs=2,
        random_state=0,
        device="cpu",
    ).fit(pairs)
    zero = ZeroShotClassifier(
        matcher, classes=["blue", "green", "red"], template="colour_{}"
    ).fit(pairs[["x0", "x1", "x2"]])
    ddf = dd.from_pandas(pairs, npartitions=4)
    points = ddf[["x0", "x1", "x2"]]
    with dask.config.set(scheduler="sync"):
        for method in ("transform", "decision_function", "predict", "predict_proba"):
            lazy = getattr(matcher, method)(ddf)
            _check_same(lazy, getattr(matcher, method)(pairs), pairs.index)
        titles = matcher.embed(ddf["title"], side="title")
        assert list(titles.columns) == [f"title__embedding{i}" for i in range(8)]
        _check_same(titles, matcher.embed(pairs["title"], side="title"), pairs.index)
        for method in ("decision_function", "predict", "predict_proba"):
            lazy = getattr(zero, method)(points)
            _check_same(
                lazy, getattr(zero, method)(pairs[["x0", "x1", "x2"]]), pairs.index
            )


def test_errors_are_raised_in_the_client(models, data):
    X, _ = data
    ddf = dd.from_pandas(X, npartitions=2)
    hard = models["late"].set_params(voting="hard")
    try:
        with pytest.raises(AttributeError, match="predict_proba"):
            hard.predict_proba(ddf)
    finally:
        hard.set_params(voting="soft")
    with pytest.raises(ValueError, match="method must be one of"):
        map_partitions(models["encoder"], ddf, "fit")
    with pytest.raises(TypeError, match=r"takes a Dask DataFrame, Series or Array"):
        map_partitions(models["encoder"], X, "transform")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ImageEncoder("cnn").transform(ddf[["image"]])


def test_device_auto_is_resolved_on_the_worker(models):
    from skmm.utils._dask import on_worker_device

    net = pickle_copy(models["net"])
    # As if fitted on another device: the worker puts "auto" models on its best one.
    net.device_ = "cuda:7"
    assert on_worker_device(net) is net
    assert net.device_ == "cpu"
    enc = pickle_copy(models["encoder"]).set_params(device="cpu")
    enc.device_ = "cuda:7"
    on_worker_device(enc)
    assert enc.device_ == "cuda:7"  # an explicit device is the user's choice


def test_a_cpu_net_keeps_its_towers_on_a_gpu_worker(models, data, monkeypatch):
    """The worker's device choice moves only what has ``device="auto"``: a net
    fitted with ``device="cpu"`` owns its towers, whatever its encoders say."""
    from skmm.utils import _torch
    from skmm.utils._dask import on_worker_device

    X, _ = data
    net = pickle_copy(models["net"]).set_params(device="cpu")
    assert all(e.device == "auto" for _, e, _ in net.encoders_)
    expected = net.predict_proba(X)
    # A GPU worker's choice, simulated on the CPU: "meta" tensors hold no data, so a
    # tower moved there cannot run.
    monkeypatch.setattr(
        _torch, "resolve_device", lambda d: "meta" if d == "auto" else d
    )
    on_worker_device(net)
    assert {p.device.type for p in net.module_.parameters()} == {"cpu"}
    np.testing.assert_array_equal(net.predict_proba(X), expected)
    # The same choice does move a model that asked for it.
    encoder = pickle_copy(models["encoder"])
    on_worker_device(encoder)
    assert encoder.device_ == "meta"


def pickle_copy(est):
    import pickle

    return pickle.loads(pickle.dumps(est))


def test_import_skmm_does_not_import_dask():
    code = "import sys, skmm, skmm.fusion, skmm.nn, skmm.encoders; print('dask' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# -- on a LocalCluster of two worker processes ------------------------------------------
def _count_setstate(path):
    """On a worker: append "<pid> <class>" to ``path`` each time a fitted skmm model
    arrives over the network (is unpickled by distributed's protocol)."""
    import traceback

    from skmm.training._estimator import TorchEstimatorMixin

    setstate = TorchEstimatorMixin.__setstate__

    def counted(self, state):
        # Unpickled by the model's task (pickle.loads in the graph), or received
        # from another worker; not a copy made on the worker.
        caller = traceback.extract_stack()[-2]
        from_wire = (
            caller.filename.endswith(os.path.join("protocol", "pickle.py"))
            and caller.name == "loads"
        ) or caller.filename.endswith("_task_spec.py")
        if from_wire and "module_" in state:  # fitted weights, not a parameter
            with open(path, "a") as f:
                f.write(f"{os.getpid()} {type(self).__name__}\n")
        setstate(self, state)

    TorchEstimatorMixin.__setstate__ = counted


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # The worker-side helpers of this module are pickled by value: the workers cannot
    # import the test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Dask's active memory manager drops replicas no queued task needs, to free
    # memory; a later partition on that worker then fetches the model again. Off here,
    # so that the count below is deterministic.
    amm = dask.config.set({"distributed.scheduler.active-memory-manager.start": False})
    amm.__enter__()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    with cluster, distributed.Client(cluster) as client:
        yield client
    amm.__exit__(None, None, None)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_cluster_results_equal_in_memory_and_model_sent_once(
    client, models, data, tmp_path
):
    X, _ = data
    log = tmp_path / "setstate.log"
    client.run(_count_setstate, str(log))
    pids = set(client.run(os.getpid).values())
    ddf = dd.from_pandas(X, chunksize=BATCH)
    # One output per model (the local-scheduler test above checks every method).
    cases = [c for c in _cases(models, X) if c[2] in ("transform", "predict_proba")]
    cases = [c for c in cases if c[0] in ("encoder", "fuser") or c[2] != "transform"]
    for name, est, method, Xin in cases:
        log.unlink(missing_ok=True)
        lazy = getattr(est, method)(ddf[list(Xin.columns)])
        _check_same(lazy, getattr(est, method)(Xin), X.index)
        # The 5 partitions ran on both workers; each received the model (each torch
        # model inside it) once.
        lines = [line.split() for line in log.read_text().splitlines()]
        per_worker = {int(pid): Counter() for pid in pids}
        for pid, cls in lines:
            per_worker[int(pid)][cls] += 1
        expected = {
            "encoder": {"ImageEncoder": 1},
            "fuser": {"ImageEncoder": 1, "AudioEncoder": 1},
            "late": {"ImageEncoder": 1, "AudioEncoder": 1},
            "net": {"MultimodalNetClassifier": 1},
        }[name]
        assert per_worker == dict.fromkeys(pids, Counter(expected)), (name, method)


def _count_decodes(path):
    """On a worker: append the number of items each ImageEncoder batch decodes."""
    from skmm.encoders import ImageEncoder

    load = ImageEncoder._load

    def counted(self, column, rows):
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {len(rows)}\n")
        return load(self, column, rows)

    ImageEncoder._load = counted


@pytest.mark.parametrize("where", ["folder", "file URL"])
def test_shared_cache_second_pass_decodes_nothing(client, data, tmp_path, where):
    X, _ = data
    # A file:// URL goes through fsspec, as s3:// or gs:// would.
    memory = tmp_path / "cache" if where == "folder" else (tmp_path / "cache").as_uri()
    enc = ImageEncoder(
        "cnn", max_epochs=0, batch_size=BATCH, memory=memory, random_state=0
    ).fit(X[["image"]])
    log = tmp_path / "decodes.log"
    client.run(_count_decodes, str(log))
    ddf = dd.from_pandas(X[["image"]], chunksize=BATCH)
    first = enc.transform(ddf).compute()
    decoded = [line.split() for line in log.read_text().splitlines()]
    # Both workers decoded their partitions, every item once, into the shared folder.
    assert len({pid for pid, _ in decoded}) == 2
    assert sum(int(n) for _, n in decoded) == len(X)
    log.unlink()
    second = enc.transform(ddf).compute()
    assert not log.exists()  # nothing decoded: every row came from the cache
    np.testing.assert_array_equal(second.to_numpy(), first.to_numpy(), strict=True)
    np.testing.assert_array_equal(first.to_numpy(), enc.transform(X[["image"]]))


def test_set_output_pandas_is_bypassed_for_dask_inputs(models, data):
    X, _ = data
    enc = pickle_copy(models["encoder"]).set_output(transform="pandas")
    ddf = dd.from_pandas(X[["image"]], chunksize=BATCH)
    with dask.config.set(scheduler="sync"):
        out = enc.transform(ddf)
        assert isinstance(out, dd.DataFrame)
        pd.testing.assert_frame_equal(out.compute(), enc.transform(X[["image"]]))


def test_dask_mixin_must_precede_transformer_mixin():
    from sklearn.base import BaseEstimator, TransformerMixin

    from skmm.utils._dask import DaskMixin

    with pytest.raises(TypeError, match="DaskMixin must come before TransformerMixin"):

        class Wrong(TransformerMixin, DaskMixin, BaseEstimator):
            def transform(self, X):
                return X
