"""The base of skmm's modality encoders, and the tower protocol the nets use.

:class:`TorchEncoderMixin` is what the image, text and audio encoders share: the
column-of-items input, training a tower with a standardised linear head on ``y``
through the one fit template (:mod:`skmm.training`), batched and cached inference
and feature names. :class:`Tower` is what a composite (:mod:`skmm.nn`) asks of an
encoder to build, train and run the encoder's tower itself.
"""

import contextlib
import os
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_array
from sklearn.utils.validation import column_or_1d
from tqdm.auto import tqdm

from .training._estimator import TorchEstimatorMixin, to_cpu
from .training._loop import History
from .training._precision import PRECISION_CONSTRAINT, autocast
from .training._sources import NothingToTrain
from .training._streaming import Lazy, take_rows
from .training._targets import check_classes, encode_labels
from .training._template import PARTIAL_FIT_CLASSES, FitTemplateMixin
from .utils._cache import EmbeddingCache, fingerprint, item_key
from .utils._composition import is_fitted_attribute, target_type
from .utils._dask import DaskMixin, value_counts
from .utils._docs import fill_doc
from .utils._sklearn_compat import HasMethods, Interval, _fit_context
from .utils._torch import TowerNorm
from .utils._validation import check_column, check_fitted, pool_items

__all__ = ["Runtime", "Tower", "TorchEncoderMixin"]


class Runtime(NamedTuple):
    """How a tower runs: on which device, in batches of what size, with what cache.

    An encoder runs its own tower with its own settings; a composite runs the
    towers it owns with its settings (:meth:`TorchEncoderMixin._encode`).
    """

    device: object
    batch_size: int
    memory: object = None
    num_workers: int = 0
    verbose: bool = False
    precision: str = "32"

    @classmethod
    def of(cls, estimator):
        """The runtime an encoder or a composite sets by its fitted device and params."""
        return cls(
            estimator.device_,
            estimator.batch_size,
            estimator.memory,
            estimator.num_workers,
            estimator.verbose,
            estimator.precision,
        )


# Parameters that change how fast features are computed, not what they are.
_RUNTIME_PARAMS = frozenset(
    {
        "batch_size",
        "callbacks",
        "device",
        "memory",
        "num_workers",
        "precision",
        "verbose",
    }
)
_NOT_IN_FINGERPRINT = frozenset(
    {
        "module_",
        "device_",
        "loss_curve_",
        "n_iter_",
        "history_",
        "validation_scores_",
        "_optimizer_state_",
        "_head_state_",
        "_target_scale_",
    }
)


def _prefetch(load, batches, num_workers):
    """Yield ``(batch, load(batch))`` in order, loading up to ``num_workers`` ahead.

    Decoding (PIL, scipy, resizing) runs in threads while the caller runs the model,
    and at most ``num_workers + 1`` batches are held in memory at once.
    """
    with ThreadPoolExecutor(num_workers) as pool:
        pending = deque()
        remaining = iter(batches)
        for index in remaining:
            pending.append((index, pool.submit(load, index)))
            if len(pending) > num_workers:
                break
        while pending:
            index, future = pending.popleft()
            batch = future.result()
            following = next(remaining, None)
            if following is not None:
                pending.append((following, pool.submit(load, following)))
            yield index, batch


class Tower(Protocol):
    """What a composite (:mod:`skmm.nn`) asks of an encoder to make it a tower.

    :class:`TorchEncoderMixin` implements it for the image, text and audio encoders
    and ``skmm.nn._towers.TabularEncoder`` for numeric columns and scikit-learn
    transformers. The nets and the matcher call nothing else.

    - ``_check_input(X, reset)`` -> ``Column``: validate one modality's items.
    - ``_fit_preprocessing(column, rows)``: learn what decoding needs from the rows
      (vocabulary, image size, normalisation) as fitted attributes.
    - ``_load(column, rows)`` -> Tensor: decode the items at ``rows`` into a batch,
      raising ``ValueError`` naming the row for a bad item.
    - ``_augment(batch, generator)`` -> Tensor: training-time augmentation.
    - ``_build_module()`` -> Module: the architecture alone, from fitted attributes
      (used to unpickle); it has an ``out_features`` attribute.
    - ``_init_module()`` -> Module: the same with its initial (pretrained or random)
      weights; no side effect on the encoder.
    - ``_frozen()`` -> bool: the tower is used as is (resolved ``max_epochs == 0``);
      its outputs are computed once per fit and it stays in eval mode.
    - ``_encode(column, module=, runtime=)`` -> ndarray: run a tower (the encoder's
      own, or one a composite owns) on a column, batched and through the
      ``runtime.memory`` cache; a frozen tower's features in a composite come from
      here, at fit and at prediction.
    - ``_configure_training(module)`` -> list of dict (optional): for a tower that
      trains, sets ``requires_grad=False`` on the parameters that ``train_layers``
      keeps frozen and returns the parameter groups that train; the tower's
      ``train()`` keeps its frozen submodules in eval mode.
    """

    def _check_input(self, X, *, reset): ...

    def _fit_preprocessing(self, column, rows): ...

    def _load(self, column, rows): ...

    def _augment(self, batch, generator): ...

    def _build_module(self): ...

    def _init_module(self): ...

    def _frozen(self): ...


class _EncoderData(NamedTuple):
    """An encoder's training rows: present items (lazy, or decoded) and their targets."""

    items: object
    target: torch.Tensor
    labels: np.ndarray | None

    def __len__(self):
        return len(self.target)

    def take(self, rows):
        labels = None if self.labels is None else self.labels[rows]
        return _EncoderData(
            take_rows(self.items, rows), take_rows(self.target, rows), labels
        )


class TorchEncoderMixin(
    DaskMixin,
    ClassNamePrefixFeaturesOutMixin,
    FitTemplateMixin,
    TransformerMixin,
):
    """Base of the modality encoders: a column of items in, a feature matrix out.

    A subclass describes its modality with:

    - ``_batch_ndim``: numbers of dimensions of a numeric array taken as a batch;
    - ``_fit_preprocessing(column, rows)``: learn what preprocessing needs (vocabulary,
      image size, normalisation statistics) and set it as fitted attributes;
    - ``_load(column, rows)``: decode and preprocess the items at ``rows`` into one
      tensor, raising ``ValueError`` that names the row for a bad item;
    - ``_build_module()``: the tower, a module with an ``out_features`` attribute;
    - ``_init_module()``: the tower with its initial weights (pretrained or random);
    - ``_augment(batch, generator)``: random training-time augmentation (optional).

    The same methods let :mod:`skmm.nn` build and train an encoder's tower end to
    end inside a larger network: one implementation of each tower.
    """

    _batch_ndim = ()
    _every_parameter_used = True  # a tower and its linear head

    _encoder_parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "optimizer": [type],
        "callbacks": [None, list],
        "precision": PRECISION_CONSTRAINT,
    }

    # -- hooks with defaults ---------------------------------------------------------
    def _augment(self, batch, generator):
        return batch

    def _resolved_max_epochs(self):
        return self.max_epochs

    def _frozen(self):
        """True when the tower is used as is: ``max_epochs`` resolves to 0."""
        return self._resolved_max_epochs() == 0

    def _check_input(self, X, *, reset):
        return check_column(self, X, batch_ndim=self._batch_ndim, reset=reset)

    # -- fit ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the preprocessing and, when ``max_epochs > 0``, train on ``y``.

        Parameters
        ----------
        X : sequence of items, Series, one-column DataFrame or array
            The items of one modality. ``None``/NaN items are missing and are ignored.
            A Dask Series (or one-column DataFrame) is read one partition at a time.
        y : array-like of shape (n_samples,), default=None
            Targets the tower is trained on (classes, or real values for regression).
            Required when ``max_epochs > 0``.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        self._fit_entry(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit on ``X`` (and ``y``), then encode ``X``; the input is validated once.

        Parameters
        ----------
        X : sequence of items, Series, one-column DataFrame or array
            The items of one modality.
        y : array-like of shape (n_samples,), default=None
            Training targets, see :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out)
            The features, float32; rows of missing items are NaN.
        """
        run = self._fit_entry(X, y)
        if run.stream:
            return self.transform(X)
        return self._encode(run.column)

    @fill_doc(classes=PARTIAL_FIT_CLASSES)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train the tower for one pass over the present items of ``X``.

        The first call learns the preprocessing (vocabulary, normalisation
        statistics) on its rows and starts the tower from its initial weights
        (pretrained or random), as :meth:`fit` does; later calls continue from the
        weights, the training head and the optimizer state (Adam's moments, say)
        that the previous call left. A call after :meth:`fit` continues from the
        fitted weights with a fresh head and optimizer. Runs one epoch of the
        training loop, without a validation split. A failed call leaves the
        encoder as it was.

        Parameters
        ----------
        X : sequence of items, Series, one-column DataFrame or array
            The items of one modality. ``None``/NaN items are missing and are ignored.
        y : array-like of shape (n_samples,)
            Targets the tower is trained on (classes, or real values for regression).
        {classes}

        Returns
        -------
        self : object
            The encoder, trained one more pass.
        """
        self._fit_entry(X, y, None, classes, partial=True)
        return self

    # -- the fit template's hooks ------------------------------------------------------
    def _begin(self, run, X):
        run.column = self._check_present(self._check_input(X, reset=True))

    def _epochs(self, run):
        """Epochs of this call: one for ``partial_fit``, else the resolved number."""
        return 1 if run.partial else self._resolved_max_epochs()

    def _check_present(self, column):
        if len(column.present()) == 0:
            raise NothingToTrain(
                f"{type(self).__name__}: every item is missing; nothing to fit on."
            )
        return column

    def _targets(self, run, y, sample_weight, classes):
        column = run.column
        if self._epochs(run) == 0:
            if y is not None:
                column_or_1d(y)
            return column, None
        items, rows = column.training_items()
        return items, self._check_target(
            y, column, rows, classes, first=True, partial=run.partial
        )

    def _check_chunk(self, X, y, sample_weight, classes=None):
        """A later ``partial_fit`` call's items, or a partition's: checked, mapped.

        After a ``fit`` that trained nothing (a frozen tower), the first
        ``partial_fit`` call sets the targets' classes (or scale).
        """
        column = self._check_present(self._check_input(X, reset=False))
        first = "classes_" not in vars(self)
        items, rows = column.training_items()
        target = self._check_target(
            y, column, rows, classes, first=first, partial=first
        )
        return items, target

    def _stream_targets(self, run, y):
        """``classes_`` (or the targets' scale) from one pass over a Dask ``y``."""
        if self._epochs(run) == 0:
            return None
        if y is None:
            self._check_target(None, None, None)
        labels, counts = value_counts(y)
        if target_type(labels, type(self).__name__) == "continuous":
            import dask

            mean, std = dask.compute(y.mean(), y.std(ddof=0))
            self._target_scale_ = (float(mean), float(std) or 1.0)
            self.classes_ = None
            return None
        # y's distinct labels stand for y: the same checks (a label type, two
        # classes or more) and classes_, without holding y.
        self._check_target(labels, labels, np.arange(len(labels)), first=True)
        return counts

    def _split(self, run):
        return np.arange(len(run.chunk[0].present())), None

    def _preprocess(self, run):
        self._fit_preprocessing(*run.column.preprocessing_rows(run.column.present()))

    def _build(self, run):
        return self._init_module()

    def _resume(self, run):
        return self.module_

    def _data(self, run, module, column, target):
        if self._epochs(run) == 0:
            return None
        labels = None if self.classes_ is None else target.numpy()
        return _EncoderData(Lazy(self._load, column, column.present()), target, labels)

    def _train(self, run, module, source):
        history = History(getattr(self, "history_", []) if run.partial else [])
        run.new_from = len(history)
        if self._epochs(run) == 0:
            return history, None
        # No batch-norm recalibration after training (the nets and the matcher have
        # one): the head that read batch statistics is dropped, and the features
        # feed a model fitted on them as transform gives them. Recalibrating changed
        # the features, not a linear model's accuracy on them, for a pass costing
        # a tenth of 3 epochs (benchmarks/bench_training.py, part recalibration).
        run.head = self._head(module)
        if run.partial and "_head_state_" in vars(self):
            run.head.load_state_dict(self._head_state_)
        return self._fit_loop(
            torch.nn.Sequential(module, run.head),
            source,
            max_epochs=self._epochs(run),
            seed=run.seed,
            context=self._loss_function(),
            history=history,
            optimizer_state=getattr(self, "_optimizer_state_", None)
            if run.partial
            else None,
        )

    def _finish(self, run, module, source, history):
        self.module_ = module.to(self.device_).eval()
        self._history_attributes(history, history[run.new_from :], False)
        if run.partial:
            self._head_state_ = to_cpu(run.head.state_dict())

    def _check_target(
        self, y, column, rows, classes=None, *, first=False, partial=False
    ):
        """The training targets of ``rows``: class codes, or standardised values.

        ``rows`` may repeat a row: each item of a cell of several items gets its
        row's target (:meth:`~skmm.utils._validation.Column.training_items`). The
        first call (``first``) sets ``classes_`` (None for real values) and, for
        real values, the scale; later calls map their targets with those.
        """
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"This {name} estimator requires y to be passed, but the target y is "
                f"None: with max_epochs > 0 the tower is trained on y. {self._no_y_hint}"
            )
        y = column_or_1d(
            check_array(
                y, ensure_2d=False, dtype=None, ensure_all_finite=False, input_name="y"
            ),
            warn=True,
        )
        if len(y) != len(column):
            raise ValueError(
                f"{name}: X has {len(column)} items but y has {len(y)} values."
            )
        y = y[rows]
        kind = target_type(y, name)
        if first:
            if kind == "continuous":
                self.classes_ = None
            elif kind in ("binary", "multiclass"):
                self.classes_ = check_classes(y, classes, owner=name, required=partial)
            else:
                raise ValueError(
                    f"Unknown label type: {name} is trained on class labels or real "
                    f"values; got a {kind!r} target."
                )
        if self.classes_ is None:
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{name} is trained on real values; y holds {kind} labels."
                ) from None
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{name}: y contains NaN or infinity.")
            if first:
                self._target_scale_ = (float(y.mean()), float(y.std() or 1.0))
            mean, scale = self._target_scale_
            return torch.as_tensor((y - mean) / scale, dtype=torch.float32)
        return torch.as_tensor(
            encode_labels(y, self.classes_, owner=name), dtype=torch.long
        )

    _no_y_hint = "Pass max_epochs=0 to use the tower untrained."

    def _head(self, module):
        """The training head on ``module``: its output standardised, then linear.

        Standardised (as the nets' heads read their towers), a linear head learns
        as fast as the tower, instead of the tower memorising the training rows
        while the head catches up (docs/user_guide.rst has the measurement). The
        head is dropped after ``fit``.
        """
        n_out = 1 if self.classes_ is None else len(self.classes_)
        width = module.out_features
        return torch.nn.Sequential(TowerNorm(width), torch.nn.Linear(width, n_out))

    def _loss_function(self):
        if self.classes_ is None:
            return torch.nn.MSELoss()
        return torch.nn.CrossEntropyLoss()

    def _train_step(self, module, data, batch, generator, loss_fn):
        index = torch.from_numpy(batch)
        x, partner, lam = self._training_batch(data.items[index], generator)
        out = module(x.to(self.device_, non_blocking=True))
        out = out[:, 0] if self.classes_ is None else out
        y = data.target[index].to(self.device_, non_blocking=True)
        loss = loss_fn(out, y)
        if partner is not None:
            # Mixed items: their targets mixed in the same proportion.
            loss = lam * loss + (1 - lam) * loss_fn(out, y[partner])
        return loss, loss, len(batch)

    def _training_batch(self, batch, generator):
        """The augmented batch of the encoder's own fit, as ``(x, partner, lam)``.

        ``partner`` (None unless items are mixed, as mixup does) gives, for each
        row, the row mixed into it with weight ``1 - lam``.
        """
        return self._augment(batch, generator), None, 1.0

    # -- transform ---------------------------------------------------------------------
    def transform(self, X):
        """Encode each item into a feature vector.

        Parameters
        ----------
        X : sequence of items, Series, one-column DataFrame or array
            The items of one modality, as in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out)
            The features, float32; rows of missing items are NaN.
        """
        check_fitted(self)
        return self._encode(self._check_input(X, reset=False))

    def _encode(self, column, module=None, runtime=None):
        """Run a tower on the present items, ``batch_size`` at a time.

        ``module`` and ``runtime`` are the encoder's own by default; a composite
        passes the tower it owns and its own settings. Each distinct path or text
        is encoded once (as skrub's TextEncoder does), items found in the
        ``memory`` cache are not encoded at all, and with ``num_workers`` threads
        decode the next batches while the model runs on the current one. Cells of
        several items are encoded item by item and averaged (``pool_items``).
        """
        module = self.module_ if module is None else module
        runtime = Runtime.of(self) if runtime is None else runtime
        if column.nested:
            return pool_items(column, lambda flat: self._encode(flat, module, runtime))
        width = module.out_features
        out = np.full((len(column), width), np.nan, dtype=np.float32)
        rows = column.present()
        if (
            not column.batch
            and len(rows) > 1  # one item has no duplicate (one-row latency)
            and all(isinstance(column.items[i], str) for i in rows)
        ):
            # Hashing the str objects: memory follows the texts' real lengths (a
            # fixed-width str array would be n x the longest text).
            inverse, _ = pd.factorize(column.items[rows])
            todo = rows[np.unique(inverse, return_index=True)[1]]
        else:
            todo, inverse = rows, None
        values = np.empty((len(todo), width), dtype=np.float32)
        cache, keys = None, None
        if runtime.memory is not None:
            namespace = self._cache_namespace(module)
            if runtime.precision != "32":  # features computed at another precision
                namespace += f"-{runtime.precision}"
            cache = EmbeddingCache(runtime.memory, namespace)
            keys = [self._item_key(column, i, cache.hash_files) for i in todo]
            compute = np.flatnonzero(~cache.load(keys, values))
        else:
            compute = np.arange(len(todo))
        self._forward(column, todo, compute, values, module, runtime)
        if cache is not None:
            cache.save([keys[i] for i in compute], values[compute])
        out[rows] = values if inverse is None else values[inverse]
        return out

    def _forward(self, column, todo, compute, values, module, runtime):
        """Fill ``values[compute]`` with the features of rows ``todo[compute]``."""
        size = runtime.batch_size
        parts = [compute[i : i + size] for i in range(0, len(compute), size)]
        if module.training:  # fitted and loaded towers are in eval mode already:
            module.eval()  # no walk over every submodule per call
        # No bar object unless one is shown: a hidden tqdm still registers itself
        # and locks on every call (one-row latency).
        progress = (
            tqdm(total=len(compute), desc=f"{type(self).__name__} transform")
            if runtime.verbose
            else None
        )

        def load(index):
            return self._load(column, todo[index])

        with (
            torch.inference_mode(),
            autocast(runtime.device, runtime.precision),
            progress or contextlib.nullcontext(),
        ):
            if not runtime.num_workers:
                loaded = ((index, load(index)) for index in parts)
            else:
                loaded = _prefetch(load, parts, runtime.num_workers)
            for index, batch in loaded:
                out = module(batch.to(runtime.device))
                values[index] = out.float().cpu().numpy()
                if progress is not None:
                    progress.update(len(index))

    # -- the embedding cache -----------------------------------------------------------
    _str_items_are_paths = True

    def _item_key(self, column, i, hash_files=False):
        if column.batch:
            return fingerprint(column.items[i])
        return item_key(
            column.items[i],
            str_is_path=self._str_items_are_paths,
            hash_files=hash_files,
            storage_options=getattr(self, "storage_options", None),
        )

    def _cache_namespace(self, module=None):
        """Fingerprint of everything that decides an item's features.

        A frozen tower whose weights can be named (``_weights_identity()``: a hub
        name, a file's path, size and modification time) is identified by that name,
        so no tensor is hashed; other towers hash their weights once per module.
        """
        params = {
            k: repr(v)
            for k, v in sorted(self.get_params(deep=False).items())
            if k not in _RUNTIME_PARAMS
        }
        identity = self._weights_identity() if self._frozen() else None
        skip = _NOT_IN_FINGERPRINT | (self._identified_state if identity else set())
        fitted = {
            k: v
            for k, v in sorted(self.__dict__.items())
            if is_fitted_attribute(k) and k not in skip
        }
        if identity is None:
            identity = self._module_digest(self.module_ if module is None else module)
        return f"{type(self).__name__}-" + fingerprint(params, fitted, identity)

    # Fitted attributes decided by the weights' source, not hashed when it is named.
    _identified_state = frozenset()

    def _weights_identity(self):
        """A name for the weights, or None to hash them (see the backbones)."""
        return None

    def _module_digest(self, module):
        """The hash of ``module``'s tensors, computed once per module object."""
        memo = self.__dict__.get("_digest_memo")
        if memo is not None and memo[0]() is module:
            return memo[1]
        digest = fingerprint(module)
        self.__dict__["_digest_memo"] = (weakref.ref(module), digest)
        return digest

    @property
    def _n_features_out(self):
        return self.module_.out_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.target_tags.required = False
        return tags
