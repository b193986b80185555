"""What every torch-backed skmm estimator shares.

`TorchEstimatorMixin` holds the device, seeding, atomic fit and pickling logic (the one
place it lives); `TorchEncoderMixin` adds what modality encoders share on top of it: the
column-of-items input, training a tower with a linear head on ``y``, batched inference
and feature names.
"""

import io
import math
import os
import warnings
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_array
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from .callbacks._callbacks import Callback
from .utils._cache import EmbeddingCache, fingerprint, item_key
from .utils._composition import fit_atomic, is_fitted_attribute
from .utils._dask import DaskMixin, Partitions, is_dask_collection, value_counts
from .utils._sklearn_compat import (
    HasMethods,
    Hidden,
    Interval,
    StrOptions,
    _fit_context,
)
from .utils._torch import (
    TowerNorm,
    available_device,
    batch_norm_recalibration,
    load_state_dict,
    resolve_device,
    seed_from,
    state_dict_to_bytes,
    torch_seed,
)
from .utils._validation import check_column, pool_items, prefix_errors, reject_groups

__all__ = ["Tower", "TorchEncoderMixin", "TorchEstimatorMixin", "TrainingMixin"]


class _SerializedModule:
    """A CPU state dict (``module_``'s, or the kept training state), as bytes."""

    def __init__(self, data):
        self.data = data


# What partial_fit keeps between calls beside the weights: the optimizer's state and
# an encoder's training head, as CPU state dicts.
_KEPT_STATES = ("_optimizer_state_", "_head_state_")


class TorchEstimatorMixin:
    """Device, seeding, failure-safe fit and cross-device pickling for torch estimators.

    Subclasses implement ``_build_module()``, which builds the architecture of
    ``module_`` from the parameters and the fitted attributes alone (no weights loaded,
    no download), so that a pickled estimator can rebuild it and load its weights.

    Pickles hold the weights as the bytes of a CPU state dict; unpickling reads them
    with ``torch.load(..., weights_only=True)`` and moves them to ``device_``, or to the
    CPU with a :class:`~skmm.utils.DeviceWarning` when this machine lacks that device.
    """

    _torch_parameter_constraints = {
        "device": [StrOptions({"auto", "cpu", "cuda"}), str, Hidden(torch.device)],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _fit_atomic(self, fit, *args, **kwargs):
        return fit_atomic(self, fit, *args, **kwargs)

    def _partial_fit_atomic(self, partial_fit, *args):
        """One ``partial_fit`` call; a failed call leaves the estimator as it was.

        The first call learns what ``fit`` learns, on a fresh copy as ``fit`` does;
        ``partial_fit`` itself decodes and checks all the rows of a later call before
        it changes any weight.
        """
        if "module_" not in vars(self):
            return self._fit_atomic(partial_fit, *args)
        return partial_fit(self, *args)

    def _seed(self):
        """Return the int seed this fit uses for torch, numpy and the data order."""
        return seed_from(self.random_state)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_digest_memo", None)  # a weak reference does not pickle
        module = state.get("module_")
        if isinstance(module, torch.nn.Module):
            state["module_"] = _SerializedModule(state_dict_to_bytes(module))
        for name in _KEPT_STATES:
            if state.get(name) is not None:
                buffer = io.BytesIO()
                torch.save(state[name], buffer)  # CPU tensors already (_to_cpu)
                state[name] = _SerializedModule(buffer.getvalue())
        return state

    def __setstate__(self, state):
        serialized = state.get("module_")
        for name in _KEPT_STATES:
            if isinstance(state.get(name), _SerializedModule):
                # Tensors only, as every weight skmm reads.
                state[name] = load_state_dict(state[name].data)
        super().__setstate__(state)
        if isinstance(serialized, _SerializedModule):
            self.device_ = available_device(self.device_, owner=type(self).__name__)
            module = self._build_module()
            module.load_state_dict(load_state_dict(serialized.data))
            self.module_ = module.to(self.device_).eval()


def _batches(n, batch_size, *, generator=None):
    """Yield index tensors of ``batch_size`` rows, shuffled when a generator is given."""
    order = (
        torch.randperm(n, generator=generator)
        if generator is not None
        else (torch.arange(n))
    )
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def validation_split(n, fraction, seed, labels=None):
    """Split ``range(n)`` into sorted training and validation positions.

    Stratified on ``labels`` (integer codes) when every class can appear on both sides.
    """
    from sklearn.model_selection import train_test_split

    n_val = math.ceil(fraction * n)
    if n - n_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} leaves {n - n_val} of the {n} samples for "
            "training; at least 2 are needed. Use more data, a smaller "
            "validation_fraction or early_stopping=False."
        )
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
            stratify = labels
    train, val = train_test_split(
        np.arange(n), test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(val)


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(
                f"callbacks must be skmm.callbacks.Callback objects or callables "
                f"f(estimator, history); got {cb!r}."
            )
    return out


class _FunctionCallback(Callback):
    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        return self.function(estimator, history)


class TrainingMixin:
    """The one training loop of skmm, shaped like skorch's ``fit_loop``.

    :meth:`_fit_loop` runs the epochs: :meth:`_run_single_epoch` draws the batches
    (:meth:`_epoch_batches`, seeded shuffling) and runs :meth:`_train_step` on each
    (forward and loss, written by the estimator; backward and the optimizer step
    here); with a validation split it scores each epoch (:meth:`_validation_step`),
    stops early when the score has not improved for ``n_iter_no_change`` epochs and
    restores the best epoch's weights. It records ``loss_curve_``,
    ``validation_scores_``, ``best_validation_score_`` and ``n_iter_``, shows the
    progress bar and calls the ``callbacks``. Encoders, nets and the matcher all train
    through it.

    An estimator provides ``_train_step(module, data, batch, generator)`` returning
    ``(objective, loss, n)`` (the tensor to minimise, the loss to record and the rows
    it covers); with a validation split ``_validation_step(module, data, val)``
    returning ``(score, loss)`` (higher scores are better), optionally with a dict of
    more entries for the epoch's history record; optionally ``_param_groups(module,
    data)``, ``_train_mode(module, data)``, ``_recalibrate(module, data, train)`` and
    ``_epoch_batches(data, train, generator)``. ``data`` is what the estimator passed
    to :meth:`_fit_loop`.
    """

    # A batch of one cannot train batch-norm layers (nor give in-batch negatives).
    _min_batch = 2

    def _param_groups(self, module, data):
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def _make_optimizer(self, module, data):
        groups = [g for g in self._param_groups(module, data) if g["params"]]
        optimizer = self.optimizer
        if not (
            isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
        ):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer class such as "
                f"torch.optim.Adam; got {optimizer!r}."
            )
        if not groups:
            return None
        return optimizer(groups, lr=self.lr)

    def _train_mode(self, module, data):
        module.train()

    def _recalibrate(self, module, data, train):
        """Re-estimate batch-norm statistics with the current weights, if needed."""

    def _epoch_batches(self, data, train, generator):
        for index in _batches(len(train), self.batch_size, generator=generator):
            if len(index) >= self._min_batch:
                yield train[index.numpy()]

    def _epoch_parts(self, data, train, generator):
        """What one epoch goes through, as ``(data, rows)`` pairs.

        In memory, all of ``data`` at once; a :class:`PartitionStream` (``fit`` on a
        Dask DataFrame) one partition at a time, so memory holds a partition, not
        the data.
        """
        if isinstance(data, PartitionStream):
            return data.parts(generator)
        return [(data, train)]

    def _run_single_epoch(self, module, optimizer, data, train, generator):
        """One pass over ``train``; returns the mean recorded loss."""
        self._train_mode(module, data)
        total, seen = 0.0, 0
        for part, rows in self._epoch_parts(data, train, generator):
            for batch in self._epoch_batches(part, rows, generator):
                objective, loss, n = self._train_step(module, part, batch, generator)
                if optimizer is not None:
                    optimizer.zero_grad()
                    objective.backward()
                    optimizer.step()
                total += float(loss) * n
                seen += n
        return total / seen if seen else math.nan

    def _resume_optimizer(self, optimizer):
        """Load the optimizer state that the previous ``partial_fit`` left.

        The learning rates stay those of the current parameters (``set_params`` may
        have changed ``lr`` between calls, as for sklearn's ``partial_fit``).
        """
        state = getattr(self, "_optimizer_state_", None)
        if optimizer is None or state is None:
            return
        rates = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state)  # moves the state to the parameters' device
        for group, lr in zip(optimizer.param_groups, rates):
            group["lr"] = lr

    def _fit_loop(
        self,
        module,
        data,
        train,
        val=None,
        *,
        max_epochs,
        seed,
        early_stopping,
        resume=False,
    ):
        """Train ``module`` on the rows ``train`` for at most ``max_epochs`` epochs.

        ``data`` is whatever the estimator's steps read the rows from (decoded items,
        targets); it is passed to them as is. ``val`` (rows held out, or None) gives
        each epoch a validation score; with ``early_stopping`` training stops after
        ``n_iter_no_change`` epochs without improvement and the best epoch's weights
        are restored.

        With ``resume`` (``partial_fit``) the optimizer continues from the state the
        previous call kept in ``_optimizer_state_`` (Adam's moments, say), the epochs
        are appended to ``loss_curve_``, ``history_`` and ``n_iter_``, and the new
        state is kept on the CPU, so it pickles and loads on any device.
        """
        module.to(self.device_)
        optimizer = self._make_optimizer(module, data)
        if resume:
            self._resume_optimizer(optimizer)
        callbacks = _check_callbacks(self.callbacks)
        generator = torch.Generator().manual_seed(seed)
        history = list(getattr(self, "history_", [])) if resume else []
        done = len(history)
        self.loss_curve_ = list(getattr(self, "loss_curve_", [])) if resume else []
        self.validation_scores_ = None if val is None else []
        best, best_state, stall = None, None, 0
        for cb in callbacks:
            cb.on_train_begin(self, module=module, optimizer=optimizer)
        epochs = tqdm(
            range(max_epochs),
            desc=f"{type(self).__name__} fit",
            disable=not self.verbose,
        )
        self.n_iter_ = done
        for epoch in epochs:
            self.n_iter_ = done + epoch + 1
            record = {
                "epoch": done + epoch + 1,
                "lr": None if optimizer is None else optimizer.param_groups[0]["lr"],
            }
            record["train_loss"] = self._run_single_epoch(
                module, optimizer, data, train, generator
            )
            self.loss_curve_.append(record["train_loss"])
            stop = False
            if val is not None:
                self._recalibrate(module, data, train)
                module.eval()
                with torch.inference_mode():
                    score, val_loss, *extra = self._validation_step(module, data, val)
                self.validation_scores_.append(score)
                # Best validation score; between equal scores, the lower loss.
                improved = best is None or (score, -val_loss) > best
                record.update(valid_score=score, valid_loss=val_loss, best=improved)
                record.update(*extra)
                if improved:
                    best, stall = (score, -val_loss), 0
                    if early_stopping:
                        best_state = {
                            k: v.detach().clone()
                            for k, v in module.state_dict().items()
                        }
                else:
                    stall += 1
                    stop = early_stopping and stall >= self.n_iter_no_change
            history.append(record)
            epochs.set_postfix(
                {k: v for k, v in record.items() if k in ("train_loss", "valid_score")}
            )
            for cb in callbacks:
                stop = (
                    bool(
                        cb.on_epoch_end(
                            self, module=module, optimizer=optimizer, history=history
                        )
                    )
                    or stop
                )
            if stop:
                break
        for cb in callbacks:
            cb.on_train_end(self, module=module, optimizer=optimizer, history=history)
        if best_state is not None:
            module.load_state_dict(best_state)
        if val is None:
            self._recalibrate(module, data, train)
        elif self.validation_scores_:
            self.best_validation_score_ = (
                best[0] if early_stopping else self.validation_scores_[-1]
            )
        self.history_ = history
        if resume:
            self._optimizer_state_ = (
                None if optimizer is None else _to_cpu(optimizer.state_dict())
            )
        return module


def _to_cpu(state):
    """A copy of an optimizer's state dict with every tensor on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


# Parameters that change how fast features are computed, not what they are.
_RUNTIME_PARAMS = frozenset(
    {"batch_size", "callbacks", "device", "memory", "num_workers", "verbose"}
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


class TorchEncoderMixin(
    DaskMixin,
    ClassNamePrefixFeaturesOutMixin,
    TrainingMixin,
    TorchEstimatorMixin,
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

    The same methods let :mod:`skmm.nn` train an encoder's tower end to end inside a
    larger network: one implementation of each tower.
    """

    _batch_ndim = ()

    _encoder_parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "optimizer": [type],
        "callbacks": [None, list],
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
        y : array-like of shape (n_samples,), default=None
            Targets the tower is trained on (classes, or real values for regression).
            Required when ``max_epochs > 0``.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        self._fit_atomic(type(self)._fit, X, y)
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
        if is_dask_collection(X):
            self._fit_atomic(type(self)._fit, X, y)
            return self.transform(X)
        column = self._fit_atomic(type(self)._fit, X, y)
        return self._encode(column)

    def _fit(self, X, y):
        if is_dask_collection(X):
            return self._fit_stream(X, y)
        column = self._check_input(X, reset=True)
        rows = column.present()
        if len(rows) == 0:
            raise ValueError(
                f"{type(self).__name__}: every item is missing; nothing to fit on."
            )
        n_epochs = self._resolved_max_epochs()
        target = None
        if n_epochs > 0:
            target = self._check_target(y, column, rows)
        elif y is not None:
            column_or_1d(y)
        self.device_ = resolve_device(self.device)
        seed = self._seed()
        with torch_seed(seed):
            self._fit_preprocessing(*column.preprocessing_rows(rows))
            module = self._init_module()
            self.loss_curve_, self.history_, self.n_iter_ = [], [], 0
            if n_epochs > 0:
                self._train(module, column, rows, target, n_epochs, seed)
        self.module_ = module.to(self.device_).eval()
        return column

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train the tower for one pass over the present items of ``X``.

        The first call learns the preprocessing (vocabulary, normalisation
        statistics) on its rows and starts the tower from its initial weights
        (pretrained or random), as :meth:`fit` does; later calls continue from the
        weights, the training head and the optimizer state (Adam's moments, say)
        that the previous call left. A call after :meth:`fit` continues from the
        fitted weights with a fresh head and optimizer. Runs one epoch of the
        training loop, without a validation split.

        Parameters
        ----------
        X : sequence of items, Series, one-column DataFrame or array
            The items of one modality. ``None``/NaN items are missing and are ignored.
        y : array-like of shape (n_samples,)
            Targets the tower is trained on (classes, or real values for regression).
        classes : array-like of shape (n_classes,), default=None
            Every class of the stream, on the first call with class labels (a later
            batch may hold a class the first one lacks); None takes the first call's
            labels. Ignored after the first call.

        Returns
        -------
        self : object
            The encoder, trained one more pass.
        """
        self._partial_fit_atomic(type(self)._partial_fit, X, y, classes)
        return self

    def _partial_fit(self, X, y, classes):
        first = "module_" not in vars(self)
        column = self._check_input(X, reset=first)
        rows = column.present()
        if len(rows) == 0:
            raise ValueError(
                f"{type(self).__name__}: every item is missing; nothing to fit on."
            )
        target = self._check_target(y, column, rows, classes=classes)
        seed = self._seed() + getattr(self, "n_iter_", 0)
        if first:
            self.device_ = resolve_device(self.device)
            with torch_seed(seed):
                self._fit_preprocessing(column, rows)
                self.module_ = self._init_module()
        # Decoded before any weight changes: a bad item leaves the encoder as it was.
        items = self._load(column, rows)
        head = self._head(self.module_)
        if "_head_state_" in vars(self):
            head.load_state_dict(self._head_state_)
        net = torch.nn.Sequential(self.module_, head)
        with torch_seed(seed):
            self._fit_loop(
                net,
                (items, target, self._loss_function()),
                np.arange(len(rows)),
                max_epochs=1,
                seed=seed,
                early_stopping=False,
                resume=True,
            )
        self._head_state_ = _to_cpu(head.state_dict())
        self.module_ = self.module_.to(self.device_).eval()

    def _head(self, module):
        """The training head on ``module``: its output standardised, then linear.

        Standardised (as the nets' heads read their towers), a linear head learns
        as fast as the tower, instead of the tower memorising the training rows
        while the head catches up (hard AV-digits, CNN image tower: 0.565 with a
        bare linear head, 0.72 standardised). The head is dropped after ``fit``.
        """
        n_out = 1 if self.classes_ is None else len(self.classes_)
        width = module.out_features
        return torch.nn.Sequential(TowerNorm(width), torch.nn.Linear(width, n_out))

    def _loss_function(self):
        if self.classes_ is None:
            return torch.nn.MSELoss()
        return torch.nn.CrossEntropyLoss()

    def _fit_stream(self, X, y):
        """``fit`` on a Dask Series or one-column DataFrame, a partition at a time.

        The preprocessing is learned on the first partition, the classes (or the
        targets' mean and scale) from one pass over ``y``; each epoch then reads the
        partitions in a random order, one decoded at a time.
        """
        n_epochs = self._resolved_max_epochs()
        if n_epochs > 0 and y is None:
            self._check_target(None, None, None)
        partitions = Partitions(X, y if n_epochs > 0 else None)
        first, y_first, _ = partitions.compute(0)
        column = self._check_input(first, reset=True)
        if n_epochs > 0:
            import dask

            labels, counts = value_counts(y)
            if type_of_target(labels, input_name="y") == "continuous":
                mean, std = dask.compute(y.mean(), y.std(ddof=0))
                self._target_scale_ = (float(mean), float(std) or 1.0)
                self.classes_ = None
            else:
                # y's distinct labels stand for y: the same checks (a label type,
                # two classes or more) and classes_, without holding y.
                self._check_target(labels, labels, np.arange(len(labels)))
        self.device_ = resolve_device(self.device)
        seed = self._seed()
        with torch_seed(seed):
            self._fit_preprocessing(column, column.present())
            del first, y_first, column
            module = self._init_module()
            self.loss_curve_, self.history_, self.n_iter_ = [], [], 0
            if n_epochs > 0:
                stream = _EncoderStream(self, partitions, counts)
                self._fit_loop(
                    torch.nn.Sequential(module, self._head(module)),
                    stream,
                    None,
                    max_epochs=n_epochs,
                    seed=seed,
                    early_stopping=False,
                )
        self.module_ = module.to(self.device_).eval()

    def _check_target(self, y, column, rows, classes=None):
        """The training targets of ``rows``: class codes, or standardised values.

        On the first fit (or ``partial_fit``) call this sets ``classes_`` (None for
        real values) and, for real values, the scale; a later ``partial_fit`` call
        maps its targets with those.
        """
        name = type(self).__name__
        reject_groups(column, name)
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
        known = "classes_" in vars(self)
        kind = type_of_target(y, input_name="y")
        if (kind == "continuous" and not known) or (known and self.classes_ is None):
            y = y.astype(np.float64)
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{name}: y contains NaN or infinity.")
            self.classes_ = None
            if "_target_scale_" not in vars(self):
                self._target_scale_ = (float(y.mean()), float(y.std() or 1.0))
            mean, scale = self._target_scale_
            return torch.as_tensor((y - mean) / scale, dtype=torch.float32)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type: {name} is trained on class labels or real values; "
                f"got a {kind!r} target."
            )
        if not known:
            # Without classes, partial_fit's first batch names them; a later batch
            # with another label is refused, naming classes=.
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{name} needs samples of at least 2 classes in y to train on, "
                    f"but y contains only one class: {self.classes_[0]!r}."
                )
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ValueError(
                f"{name}: y holds the label(s) {unseen.tolist()}, not in classes_ "
                f"{self.classes_.tolist()}: pass every class as classes= on the "
                "first call to partial_fit."
            )
        return torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)

    _no_y_hint = "Pass max_epochs=0 to use the tower untrained."

    def _train(self, module, column, rows, target, n_epochs, seed):
        """Train ``module`` with a linear head on ``target`` through the training loop."""
        net = torch.nn.Sequential(module, self._head(module))
        data = (self._load(column, rows), target, self._loss_function())
        self._fit_loop(
            net,
            data,
            np.arange(len(rows)),
            max_epochs=n_epochs,
            seed=seed,
            early_stopping=False,
        )

    def _train_step(self, module, data, batch, generator):
        items, target, loss_fn = data
        index = torch.from_numpy(batch)
        x, partner, lam = self._training_batch(items[index], generator)
        out = module(x.to(self.device_))
        out = out[:, 0] if self.classes_ is None else out
        y = target[index].to(self.device_)
        loss = loss_fn(out, y)
        if partner is not None:
            # Mixed items: their targets mixed in the same proportion.
            loss = lam * loss + (1 - lam) * loss_fn(out, y[partner])
        return loss, loss.item(), len(batch)

    def _training_batch(self, batch, generator):
        """The augmented batch of the encoder's own fit, as ``(x, partner, lam)``.

        ``partner`` (None unless items are mixed, as mixup does) gives, for each
        row, the row mixed into it with weight ``1 - lam``.
        """
        return self._augment(batch, generator), None, 1.0

    def _recalibrate(self, module, data, train):
        # Batch-norm running statistics lag behind fast-moving weights; one pass over
        # the training rows with the final weights makes eval mode match training.
        # A stream is read once more, a partition at a time.
        parts = (
            data.every_part() if isinstance(data, PartitionStream) else [(data, train)]
        )
        module.train()
        with batch_norm_recalibration(module) as norms:
            for (items, _, _), rows in parts if norms else ():
                for index in _batches(len(rows), self.batch_size):
                    if len(index) >= 2:
                        module(items[rows[index.numpy()]].to(self.device_))

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
        check_is_fitted(self)
        return self._encode(self._check_input(X, reset=False))

    def _encode(self, column):
        """Run the tower on the present items, ``batch_size`` at a time.

        Each distinct path or text is encoded once (as skrub's TextEncoder does), items
        found in the ``memory`` cache are not encoded at all, and with ``num_workers``
        threads decode the next batches while the model runs on the current one.
        Cells of several items are encoded item by item and averaged (``pool_items``).
        """
        if column.nested:
            return pool_items(column, self._encode)
        out = np.full((len(column), self._n_features_out), np.nan, dtype=np.float32)
        rows = column.present()
        if not column.batch and all(isinstance(column.items[i], str) for i in rows):
            # Hashing the str objects: memory follows the texts' real lengths (a
            # fixed-width str array would be n x the longest text).
            inverse, _ = pd.factorize(column.items[rows])
            todo = rows[np.unique(inverse, return_index=True)[1]]
        else:
            todo, inverse = rows, None
        values = np.empty((len(todo), self._n_features_out), dtype=np.float32)
        cache, keys = None, None
        if self.memory is not None:
            cache = EmbeddingCache(self.memory, self._cache_namespace())
            keys = [self._item_key(column, i, cache.hash_files) for i in todo]
            compute = np.flatnonzero(~cache.load(keys, values))
        else:
            compute = np.arange(len(todo))
        self._forward(column, todo, compute, values)
        if cache is not None:
            cache.save([keys[i] for i in compute], values[compute])
        out[rows] = values if inverse is None else values[inverse]
        return out

    def _forward(self, column, todo, compute, values):
        """Fill ``values[compute]`` with the features of rows ``todo[compute]``."""
        batches = [
            compute[i : i + self.batch_size]
            for i in range(0, len(compute), self.batch_size)
        ]
        module = self.module_.eval()
        progress = tqdm(
            total=len(compute),
            desc=f"{type(self).__name__} transform",
            disable=not self.verbose,
        )

        def load(index):
            return self._load(column, todo[index])

        with torch.inference_mode(), progress:
            if not self.num_workers:
                loaded = ((index, load(index)) for index in batches)
            else:
                loaded = _prefetch(load, batches, self.num_workers)
            for index, batch in loaded:
                values[index] = module(batch.to(self.device_)).float().cpu().numpy()
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
        )

    def _cache_namespace(self):
        """Fingerprint of everything that decides an item's features.

        A frozen tower whose weights can be named (``_weights_identity()``: a hub
        name, a file's path, size and modification time) is identified by that name,
        so no tensor is hashed; other towers hash their weights once per fitted
        module.
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
            identity = self._module_digest()
        return f"{type(self).__name__}-" + fingerprint(params, fitted, identity)

    # Fitted attributes decided by the weights' source, not hashed when it is named.
    _identified_state = frozenset()

    def _weights_identity(self):
        """A name for the weights, or None to hash them (see the backbones)."""
        return None

    def _module_digest(self):
        """The hash of ``module_``'s tensors, computed once per fitted module."""
        memo = self.__dict__.get("_digest_memo")
        if memo is not None and memo[0]() is self.module_:
            return memo[1]
        digest = fingerprint(self.module_)
        self.__dict__["_digest_memo"] = (weakref.ref(self.module_), digest)
        return digest

    @property
    def _n_features_out(self):
        return self.module_.out_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.target_tags.required = False
        return tags


class PartitionStream:
    """Training data read one Dask partition at a time by the training loop.

    ``parts`` (an epoch) reads the partitions in a random order, one in memory while
    the next is computed; ``every_part`` reads them in order (for batch-norm
    statistics). A subclass's ``_load(i, X, y, sample_weight)`` returns what the
    estimator's steps read for partition ``i`` and its training rows; rows it holds
    out for validation are kept undecoded, once, with ``_gather``.
    """

    def __init__(self, partitions, counts=None):
        self.partitions = partitions
        self.last = None
        self.gathered = {}
        # The rows of each class of y, for the check of each partition's mix.
        self.counts = counts
        self.seen = set()

    def _check_mix(self, i, codes):
        """Warn once when a partition's classes are far from the whole ``y``'s.

        Batches are drawn within a partition: partitions that each hold a few
        classes (a table sorted by label, or kept in its original order) train
        badly. The total-variation distance between the partition's class
        frequencies and the data's is compared with what random partitions of its
        size give. ``codes`` are the partition's labels as indices into ``counts``.
        """
        if self.counts is None or i in self.seen:
            return
        self.seen.add(i)
        q = self.counts / self.counts.sum()
        p = np.bincount(codes, minlength=len(q)) / len(codes)
        distance = 0.5 * np.abs(p - q).sum()
        random = 0.4 * np.sqrt(q * (1 - q) / len(codes)).sum()
        if distance > max(0.3, 3 * random):
            warnings.warn(
                f"partition {i} holds {np.count_nonzero(p)} of the {len(q)} classes, "
                f"far from their frequencies in y (total variation {distance:.2f}): "
                "batches are drawn within a partition, so training suffers. Shuffle "
                "the rows before cutting them into partitions "
                "(dask.dataframe.from_pandas sorts by the index: reset it after "
                "shuffling, or pass sort=False).",
                UserWarning,
                stacklevel=2,
            )
            self.counts = None  # once per fit

    def parts(self, generator):
        order = torch.randperm(len(self.partitions), generator=generator).tolist()
        for i, part in self.partitions.iterate(order):
            self.last = self._load(i, *part)
            yield self.last

    def every_part(self):
        for i, part in self.partitions.iterate(range(len(self.partitions))):
            yield self._load(i, *part)

    def _gather(self, i, X, *values):
        """Keep partition ``i``'s held-out rows and their values (arrays or None)."""
        self.gathered.setdefault(i, (X, *values))

    def gathered_rows(self):
        """Every partition's held-out rows: one DataFrame, then each value's array."""
        parts = [self.gathered[i] for i in sorted(self.gathered)]
        columns = list(zip(*parts))
        return pd.concat(columns[0]), *(
            None if values[0] is None else np.concatenate(values)
            for values in columns[1:]
        )


class _EncoderStream(PartitionStream):
    """An encoder's training data read one Dask partition at a time."""

    def __init__(self, encoder, partitions, counts):
        super().__init__(partitions, None if encoder.classes_ is None else counts)
        self.encoder = encoder
        self.loss_fn = encoder._loss_function()

    def _load(self, i, X, y, sample_weight):
        encoder = self.encoder
        with prefix_errors(f"partition {i}"):
            column = encoder._check_input(X, reset=False)
            rows = column.present()
            target = encoder._check_target(y, column, rows)
            if encoder.classes_ is not None:
                self._check_mix(i, target.numpy())
            items = encoder._load(column, rows)
        return (items, target, self.loss_fn), np.arange(len(rows))
