"""What every torch-backed skmm estimator shares.

`TorchEstimatorMixin` holds the device, seeding, atomic fit and pickling logic (the one
place it lives); `TorchEncoderMixin` adds what modality encoders share on top of it: the
column-of-items input, training a tower with a linear head on ``y``, batched inference
and feature names.
"""

import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from .utils._cache import EmbeddingCache, fingerprint, item_key
from .utils._composition import fit_atomic, is_fitted_attribute
from .utils._sklearn_compat import (
    HasMethods,
    Hidden,
    Interval,
    StrOptions,
    _fit_context,
)
from .utils._torch import (
    available_device,
    batch_norm_recalibration,
    load_state_dict,
    resolve_device,
    seed_from,
    state_dict_to_bytes,
    torch_seed,
)
from .utils._validation import check_column

__all__ = ["TorchEncoderMixin", "TorchEstimatorMixin"]


class _SerializedModule:
    """The CPU state dict of a fitted ``module_``, as bytes, inside a pickle."""

    def __init__(self, data):
        self.data = data


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

    def _seed(self):
        """Return the int seed this fit uses for torch, numpy and the data order."""
        return seed_from(self.random_state)

    def __getstate__(self):
        state = dict(super().__getstate__())
        module = state.get("module_")
        if isinstance(module, torch.nn.Module):
            state["module_"] = _SerializedModule(state_dict_to_bytes(module))
        return state

    def __setstate__(self, state):
        serialized = state.get("module_")
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


# Parameters that change how fast features are computed, not what they are.
_RUNTIME_PARAMS = frozenset(
    {"batch_size", "device", "memory", "num_workers", "verbose"}
)
_NOT_IN_FINGERPRINT = frozenset({"module_", "device_", "loss_curve_", "n_iter_"})


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


class TorchEncoderMixin(
    ClassNamePrefixFeaturesOutMixin, TorchEstimatorMixin, TransformerMixin
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
    }

    # -- hooks with defaults ---------------------------------------------------------
    def _augment(self, batch, generator):
        return batch

    def _resolved_max_epochs(self):
        return self.max_epochs

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
        column = self._fit_atomic(type(self)._fit, X, y)
        return self._encode(column)

    def _fit(self, X, y):
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
            self._fit_preprocessing(column, rows)
            module = self._init_module()
            self.loss_curve_ = []
            if n_epochs > 0:
                self._train(module, column, rows, target, n_epochs, seed)
            self.n_iter_ = n_epochs
        self.module_ = module.to(self.device_).eval()
        return column

    def _check_target(self, y, column, rows):
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"This {name} estimator requires y to be passed, but the target y is "
                f"None: with max_epochs > 0 the tower is trained on y. {self._no_y_hint}"
            )
        y = column_or_1d(y, warn=True)
        if len(y) != len(column):
            raise ValueError(
                f"{name}: X has {len(column)} items but y has {len(y)} values."
            )
        y = y[rows]
        kind = type_of_target(y)
        if kind == "continuous":
            y = y.astype(np.float64)
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{name}: y contains NaN or infinity.")
            self.classes_ = None
            scale = y.std() or 1.0
            return torch.as_tensor((y - y.mean()) / scale, dtype=torch.float32)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type: {name} is trained on class labels or real values; "
                f"got a {kind!r} target."
            )
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        return torch.as_tensor(encoder.transform(y), dtype=torch.long)

    _no_y_hint = "Pass max_epochs=0 to use the tower untrained."

    def _train(self, module, column, rows, target, n_epochs, seed):
        """Train ``module`` with a linear head on ``target`` (Adam, full passes)."""
        device = self.device_
        n_out = 1 if self.classes_ is None else len(self.classes_)
        head = torch.nn.Linear(module.out_features, n_out)
        net = torch.nn.Sequential(module, head).to(device)
        loss_fn = (
            torch.nn.MSELoss() if self.classes_ is None else torch.nn.CrossEntropyLoss()
        )
        # The tower's groups say which of its layers train (train_layers).
        groups = self._configure_training(module) + [{"params": head.parameters()}]
        optimizer = torch.optim.Adam(groups, lr=self.lr)
        data = self._load(column, rows)
        generator = torch.Generator().manual_seed(seed)
        epochs = tqdm(
            range(n_epochs), desc=f"{type(self).__name__} fit", disable=not self.verbose
        )
        for _ in epochs:
            net.train()
            total, seen = 0.0, 0
            for index in _batches(len(rows), self.batch_size, generator=generator):
                # A batch of one cannot train batch-norm layers; skip the remainder.
                if len(index) < 2:
                    continue
                batch = self._augment(data[index], generator).to(device)
                out = net(batch)
                out = out[:, 0] if self.classes_ is None else out
                loss = loss_fn(out, target[index].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
                seen += len(index)
            self.loss_curve_.append(total / seen if seen else math.nan)
            epochs.set_postfix(loss=self.loss_curve_[-1])
        # Batch-norm running statistics lag behind fast-moving weights; one pass over
        # the training rows with the final weights makes eval mode match training.
        net.train()
        with batch_norm_recalibration(net) as norms:
            for index in _batches(len(rows), self.batch_size) if norms else ():
                if len(index) >= 2:
                    net(data[index].to(device))

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
        """
        out = np.full((len(column), self._n_features_out), np.nan, dtype=np.float32)
        rows = column.present()
        if not column.batch and all(isinstance(column.items[i], str) for i in rows):
            _, first, inverse = np.unique(
                column.items[rows].astype(str), return_index=True, return_inverse=True
            )
            todo = rows[first]
        else:
            todo, inverse = rows, None
        values = np.empty((len(todo), self._n_features_out), dtype=np.float32)
        cache, keys = None, None
        if self.memory is not None:
            cache = EmbeddingCache(self.memory, self._cache_namespace())
            keys = [self._item_key(column, i) for i in todo]
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

    def _item_key(self, column, i):
        if column.batch:
            return fingerprint(column.items[i])
        return item_key(column.items[i], str_is_path=self._str_items_are_paths)

    def _cache_namespace(self):
        """Fingerprint of everything that decides an item's features."""
        params = {
            k: repr(v)
            for k, v in sorted(self.get_params(deep=False).items())
            if k not in _RUNTIME_PARAMS
        }
        fitted = {
            k: v
            for k, v in sorted(self.__dict__.items())
            if is_fitted_attribute(k) and k not in _NOT_IN_FINGERPRINT
        }
        return f"{type(self).__name__}-" + fingerprint(params, fitted, self.module_)

    @property
    def _n_features_out(self):
        return self.module_.out_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.target_tags.required = False
        return tags
