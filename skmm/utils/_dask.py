"""Partition-wise inference on Dask collections (dask-ml's ``ParallelPostFit`` idea).

A fitted estimator's ``transform``, ``predict``, ``predict_proba``,
``decision_function`` (and the matcher's ``embed``) given a Dask DataFrame, Series or
Array return the matching lazy Dask collection: each partition goes through the
in-memory method on a worker. The output's ``meta`` (columns, dtypes) is derived from
the fitted estimator, so nothing is computed to build it.

The model travels to each worker once: when the scheduler in effect is a
``distributed`` client, it is pickled once in the client into one node of the graph,
``pickle.loads(model bytes)``, which one worker computes and the others fetch from
it (the scheduler holds bytes only, so it needs neither torch nor skmm). A worker
lost with the model is then recovered as any lost result is: the scheduler computes
the node again from its bytes (a scattered model would be lost with the last worker
holding it, and every partition waiting for it would fail). With Dask's local
schedulers it is one ``dask.delayed`` node shared by every partition. The result
is meant to be computed under the scheduler in effect when it was built. On the
worker, torch estimators with ``device="auto"`` move to the worker's GPU when it has
one.

Dask is imported only when the input is a Dask collection: ``import skmm`` does not
import it.
"""

import contextlib
import functools
import pickle
import sys
import threading
import uuid
import weakref

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin, is_classifier
from sklearn.utils.validation import check_is_fitted

from ._validation import prefix_errors

__all__ = [
    "DaskMixin",
    "Partitions",
    "is_dask_collection",
    "map_partitions",
    "value_counts",
]

_METHODS = ("transform", "predict", "predict_proba", "decision_function", "embed")


def is_dask_collection(X):
    """True when ``X`` is a Dask collection (DataFrame, Series, Array...).

    Dask is not imported for the check: an object cannot come from Dask unless Dask
    is already imported.
    """
    if "dask" not in sys.modules:
        return False
    import dask

    return dask.is_dask_collection(X)


def map_partitions(estimator, X, method="predict", **kwargs):
    """Apply a fitted estimator's method to each partition of a Dask collection.

    Works for any fitted scikit-learn estimator, a :class:`~sklearn.pipeline.Pipeline`
    ending in a classifier for instance; skmm's estimators call it themselves when
    they are given a Dask collection.

    Parameters
    ----------
    estimator : fitted estimator
        It is sent to each worker once.
    X : dask DataFrame, Series or Array
        The rows; each partition (or block of rows) is passed to ``method`` as a
        pandas object (or NumPy array). An Array is rechunked to whole rows.
    method : {"transform", "predict", "predict_proba", "decision_function", \
"embed"}, default="predict"
        The method to apply.
    **kwargs : dict
        Keyword arguments of the method (``side=`` of ``embed``).

    Returns
    -------
    result : dask DataFrame, Series or Array
        Lazy; a DataFrame with the feature names (``transform``, ``embed``) or the
        classes (``predict_proba``, multiclass ``decision_function``) as columns, or a
        Series, indexed as ``X``. From an Array, an Array with as many rows per block.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skmm.utils import map_partitions
    >>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    >>> clf = LogisticRegression().fit(X, [0, 0, 1, 1])
    >>> proba = map_partitions(clf, dd.from_pandas(X, npartitions=2), "predict_proba")
    >>> list(proba.columns), proba.npartitions
    ([0, 1], 2)
    >>> bool((proba.compute().to_numpy() == clf.predict_proba(X)).all())
    True
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}; got {method!r}.")
    check_is_fitted(estimator)
    # Raises AttributeError now, in the client, for a method the estimator lacks
    # (predict_proba with hard voting, for instance).
    getattr(estimator, method)
    columns, dtype = _output_meta(estimator, method, kwargs)
    shared = _shared(estimator)
    import dask.array as da

    if isinstance(X, da.Array):
        return _map_blocks(shared, X, method, kwargs, columns, dtype)
    import dask.dataframe as dd

    if not isinstance(X, (dd.DataFrame, dd.Series)):
        raise TypeError(
            f"{type(estimator).__name__}.{method} takes a Dask DataFrame, Series or "
            f"Array; got {type(X).__name__}."
        )
    meta = _empty_frame(columns, dtype, X._meta.index)
    return X.map_partitions(
        _apply_partition,
        shared,
        method,
        kwargs,
        meta,
        meta=meta,
        align_dataframes=False,
    )


def _output_meta(estimator, method, kwargs):
    """The output's columns (None for one column) and dtype, without computing."""
    hook = getattr(estimator, "_dask_meta", None)
    if hook is not None:
        return hook(method, **kwargs)
    return default_meta(estimator, method)


def default_meta(estimator, method):
    """Columns and dtype of a method's output, from the fitted estimator alone.

    ``transform``: the feature names, in the dtype the transformer declares it
    preserves (float32 for skmm's encoders); ``predict``: the classes' dtype, or
    float64 for a regressor; ``predict_proba``: one float64 column per class;
    ``decision_function``: likewise, or one column for two classes.
    """
    if method == "transform":
        tags = estimator.__sklearn_tags__().transformer_tags
        dtype = tags.preserves_dtype[0] if tags and tags.preserves_dtype else "float64"
        return list(estimator.get_feature_names_out()), np.dtype(dtype)
    if method == "predict":
        if is_classifier(estimator):
            return None, np.asarray(estimator.classes_).dtype
        return None, np.dtype("float64")
    if method == "predict_proba":
        return list(estimator.classes_), np.dtype("float64")
    if method == "decision_function":
        classes = list(estimator.classes_)
        return (None if len(classes) == 2 else classes), np.dtype("float64")
    raise ValueError(
        f"{type(estimator).__name__} does not describe the output of {method!r}."
    )


def _empty_frame(columns, dtype, index):
    if columns is None:
        return pd.Series(np.empty(0, dtype=dtype), index=index)
    return pd.DataFrame(
        np.empty((0, len(columns)), dtype=dtype), columns=columns, index=index
    )


def _shared(estimator):
    """The estimator as one object of the graph, sent once to each worker."""
    import dask
    from dask.base import get_scheduler

    # The scheduler that computes the result when nothing else is said: a
    # distributed client's ``get``, or a local scheduler (even if a client exists,
    # under ``dask.config.set(scheduler="sync")`` for instance).
    client = getattr(get_scheduler(), "__self__", None)
    if type(client).__name__ == "Client" and hasattr(client, "scatter"):
        import cloudpickle

        # Bytes in the graph, recomputable when the worker holding the model is
        # lost; a name of our own: no tokenizing of the weights.
        blob = cloudpickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
        name = f"{type(estimator).__name__}-model-{uuid.uuid4().hex}"
        return dask.delayed(pickle.loads, pure=True)(blob, dask_key_name=name)
    return dask.delayed(estimator, pure=False, traverse=False)


def _apply_partition(part, estimator, method, kwargs, meta, partition_info=None):
    if len(part) == 0:
        # The in-memory methods reject 0 rows, as scikit-learn's do.
        return meta
    # Dask passes the partition's number to a function with this keyword.
    where = (
        contextlib.nullcontext()
        if partition_info is None
        else prefix_errors(f"partition {partition_info['number']}")
    )
    with where:
        out = getattr(on_worker_device(estimator), method)(part, **kwargs)
    if isinstance(meta, pd.Series):
        return pd.Series(np.asarray(out), index=part.index, name=meta.name)
    return pd.DataFrame(np.asarray(out), index=part.index, columns=meta.columns)


def _map_blocks(shared, X, method, kwargs, columns, dtype):
    import dask
    import dask.array as da

    X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    tail = () if columns is None else (len(columns),)
    blocks = [
        da.from_delayed(
            dask.delayed(_apply_block)(block, shared, method, kwargs, i),
            shape=(n, *tail),
            dtype=dtype,
        )
        for i, (block, n) in enumerate(zip(X.to_delayed().ravel(), X.chunks[0]))
    ]
    if not blocks:
        return da.empty((0, *tail), dtype=dtype)
    return da.concatenate(blocks)


def _apply_block(block, estimator, method, kwargs, i):
    with prefix_errors(f"block {i}"):
        out = getattr(on_worker_device(estimator), method)(block, **kwargs)
    return np.asarray(out)


_ready = weakref.WeakSet()
_lock = threading.Lock()


def on_worker_device(estimator):
    """Move the torch estimators inside ``estimator`` that have ``device="auto"`` to
    the best device of this machine, once per estimator object.

    A model fitted on a CPU machine runs on a GPU worker; a model fitted on a GPU
    already loads on a CPU worker (its pickle maps it there, with a DeviceWarning).
    """
    with _lock:
        if estimator not in _ready:
            _resolve_auto_devices(estimator, set())
            _ready.add(estimator)
    return estimator


def _resolve_auto_devices(obj, seen):
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        children = obj
    elif isinstance(obj, dict):
        children = obj.values()
    elif hasattr(obj, "get_params"):
        children = vars(obj).values()
        module = getattr(obj, "module_", None)
        if getattr(obj, "device", None) == "auto" and module is not None:
            from ._torch import resolve_device

            device = resolve_device("auto")
            if device != obj.device_:
                obj.module_ = module.to(device)
                obj.device_ = device
    else:
        return
    for child in children:
        _resolve_auto_devices(child, seen)


def _dispatch(function):
    """Route a Dask collection to :func:`map_partitions`, anything else to
    ``function`` unchanged."""

    @functools.wraps(function)
    def method(self, X, *args, **kwargs):
        if is_dask_collection(X) and not args:
            return map_partitions(self, X, function.__name__, **kwargs)
        return function(self, X, *args, **kwargs)

    method.__skmm_dask__ = True
    return method


class DaskMixin:
    """Let a fitted estimator's inference methods take Dask collections.

    Put it leftmost among the bases: its ``__init_subclass__`` wraps the inference
    methods each class defines (``transform``, ``predict``, ``predict_proba``,
    ``decision_function``, ``embed``) after scikit-learn's ``set_output`` wrapper, so a
    Dask input never reaches that wrapper. A class may define ``_dask_meta(method,
    **kwargs)`` to describe an output that :func:`default_meta` cannot.
    """

    def __init_subclass__(cls, **kwargs):
        mro = cls.__mro__
        if TransformerMixin in mro and mro.index(TransformerMixin) < mro.index(
            DaskMixin
        ):
            raise TypeError(
                f"{cls.__name__}: DaskMixin must come before TransformerMixin among "
                "the bases, or set_output's wrapper would receive Dask collections."
            )
        super().__init_subclass__(**kwargs)
        for name in _METHODS:
            attr = cls.__dict__.get(name)
            if attr is None:
                continue
            fn = getattr(attr, "fn", attr)  # inside an @available_if descriptor
            if getattr(fn, "__skmm_dask__", False) or not callable(fn):
                continue
            if fn is attr:
                setattr(cls, name, _dispatch(fn))
            else:
                setattr(
                    cls,
                    name,
                    type(attr)(_dispatch(fn), attr.check, attr.attribute_name),
                )


def value_counts(y):
    """The distinct values of a Dask Series or Array and their counts, sorted."""
    import dask

    if hasattr(y, "value_counts"):
        counts = y.value_counts().compute()
        labels, counts = counts.index.to_numpy(), counts.to_numpy()
    else:
        import dask.array as da

        labels, counts = dask.compute(*da.unique(y, return_counts=True))
    order = np.argsort(labels)
    return labels[order], counts[order]


class Partitions:
    """The partitions of a Dask DataFrame and its targets, computed one at a time.

    Streaming training reads them: ``X`` a Dask DataFrame (or Series), ``y`` and
    ``sample_weight`` Dask Series, DataFrames or Arrays split like ``X``, or None.

    X and its targets are paired by position, partition by partition, as
    scikit-learn pairs in-memory rows and as dask-ml's wrappers pair blocks;
    aligning them on the index instead would need a shuffle of the whole table. So
    a ``y`` (or ``sample_weight``) with an index is checked, when its partition is
    computed, to hold the labels of X's partition in the same order: a ``y`` sorted
    or filtered apart from X is refused, naming the partition and the first row
    that differs, never silently paired with other rows.
    """

    def __init__(self, X, y=None, sample_weight=None):
        if not hasattr(X, "npartitions"):
            raise TypeError(
                f"streaming training takes a Dask DataFrame; got {type(X).__name__}."
            )
        self.blocks = [list(X.to_delayed())]
        for name, other in (("y", y), ("sample_weight", sample_weight)):
            if other is None:
                self.blocks.append(None)
                continue
            if not is_dask_collection(other):
                raise TypeError(
                    f"X is a Dask DataFrame, so {name} must be a Dask Series or "
                    f"Array split like it; got {type(other).__name__}."
                )
            blocks = other.to_delayed()
            # A Dask Array gives an ndarray of blocks (one column of them).
            blocks = list(
                np.ravel(blocks) if isinstance(blocks, np.ndarray) else blocks
            )
            if len(blocks) != len(self.blocks[0]):
                raise ValueError(
                    f"{name} has {len(blocks)} partitions and X has "
                    f"{len(self.blocks[0])}: they must be split alike (take y as a "
                    "column of the same Dask DataFrame)."
                )
            self.blocks.append(blocks)

    def __len__(self):
        return len(self.blocks[0])

    def compute(self, i):
        """Partition ``i`` in memory: ``(X, y, sample_weight)``, None where absent."""
        import dask

        parts = dask.compute(*[b[i] for b in self.blocks if b is not None])
        parts = iter(parts)
        out = [None if b is None else next(parts) for b in self.blocks]
        for name, part in zip(("y", "sample_weight"), out[1:]):
            if part is None:
                continue
            if len(part) != len(out[0]):
                raise ValueError(
                    f"partition {i}: X has {len(out[0])} rows but {name} has "
                    f"{len(part)}; they must be split alike."
                )
            _check_same_index(i, name, out[0], part)
        return tuple(out)

    def first(self):
        """X's first partition to learn the layout and the preprocessing from.

        The first one with rows where every column has an item (a filtered table
        may begin with empty partitions, or with one whose column is all missing),
        else the first one with rows. Partitions are computed in order until then.
        """
        fallback = None
        for i in range(len(self)):
            import dask

            (X,) = dask.compute(self.blocks[0][i])
            if len(X) == 0:
                continue
            if fallback is None:
                fallback = X
            frame = X.to_frame() if isinstance(X, pd.Series) else X
            if bool(frame.notna().any().all()):
                return X
        if fallback is None:
            raise ValueError(
                f"every partition of X ({len(self)}) is empty: nothing to fit on."
            )
        return fallback

    def iterate(self, order):
        """Yield ``(i, partition)`` in ``order``, computing the next one meanwhile.

        At most two partitions are in memory: the one being trained on and the next.
        """
        from concurrent.futures import ThreadPoolExecutor

        order = list(order)
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(self.compute, order[0]) if order else None
            for k, i in enumerate(order):
                part = ahead.result()
                ahead = (
                    pool.submit(self.compute, order[k + 1])
                    if k + 1 < len(order)
                    else None
                )
                yield i, part


def _check_same_index(i, name, X, part):
    """Refuse a partition of ``y`` (or weights) whose index is not X's, in order."""
    index = getattr(part, "index", None)
    if index is None or index.equals(X.index):
        return
    differs = np.flatnonzero(np.asarray(index) != np.asarray(X.index))
    k = int(differs[0]) if len(differs) else 0
    ours, theirs = (
        label.item() if isinstance(label, np.generic) else label
        for label in (X.index[k], index[k])
    )
    raise ValueError(
        f"partition {i}: the index of {name} is not X's (position {k}: X's row "
        f"{ours!r}, {name}'s row {theirs!r}). X and {name} are paired by "
        "position, so they must hold the same rows in the same order: take "
        f"{name} as a column of the same Dask DataFrame as X, align it first "
        "(X.join(y)), or pass it as a Dask Array to pair by position."
    )
