"""Callbacks of the one training loop (:mod:`skmm.training._loop`).

As in skorch (``skorch/callbacks``), what is added to training is a callback: the
loop calls ``on_train_begin`` once, ``on_epoch_end`` after every epoch with the
history so far, and ``on_train_end`` once. A plain callable ``f(estimator, history)``
is called per epoch; returning True stops training. The estimators' own early
stopping is :class:`EarlyStopping`, added after the user's callbacks.
"""

import os

import torch

from ..training._distributed import is_main_process
from ..utils._torch import state_dict_to_bytes


class Callback:
    """Base class of the training callbacks; every hook does nothing by default.

    The hooks receive the estimator being fitted (its fitted attributes are not set
    yet), the torch ``module`` being trained and its ``optimizer``. ``history`` is a
    list with one dict per epoch run so far: ``epoch`` (from 1), ``train_loss``,
    ``lr`` (of the first parameter group) and, with a validation split,
    ``valid_score``, ``valid_loss`` and ``best`` (whether this epoch is the best so
    far, whose weights early stopping would restore).

    Examples
    --------
    >>> from skmm.callbacks import Callback
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, estimator, *, module, optimizer, history):
    ...         print(round(history[-1]["train_loss"], 1))
    """

    def on_train_begin(self, estimator, *, module, optimizer):
        """Called once before the first epoch."""

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        """Called after each epoch; return True to stop training."""

    def on_train_end(self, estimator, *, module, optimizer, history):
        """Called once after the last epoch (before the best weights are restored)."""


class EarlyStopping(Callback):
    """Stop when the validation score has not improved for ``patience`` epochs.

    The best epoch is the one with the highest validation score, ties going to the
    lower validation loss (the ``best`` entry of the history). When training ends,
    the weights of the best epoch are restored. The estimators add one when
    ``early_stopping=True`` (with ``patience=n_iter_no_change``), after the
    ``callbacks`` they are given: those see the last epoch's weights in
    ``on_train_end``.

    Parameters
    ----------
    patience : int, default=5
        Epochs without improvement before stopping.
    restore_best : bool, default=True
        Load the best epoch's weights into the module when training ends.

    Attributes
    ----------
    best_epoch_ : int or None
        The epoch (from 1) whose weights are kept, after training.

    Examples
    --------
    >>> from skmm.callbacks import EarlyStopping
    >>> stop = EarlyStopping(patience=3)
    """

    def __init__(self, patience=5, restore_best=True):
        self.patience = patience
        self.restore_best = restore_best

    def on_train_begin(self, estimator, *, module, optimizer):
        self.best_epoch_, self._state, self._stall = None, None, 0

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        last = history[-1]
        if "valid_score" not in last:
            raise ValueError(
                "EarlyStopping needs a validation score at each epoch: the estimator "
                "holds no validation rows (early_stopping=False?)."
            )
        if last["best"]:
            self.best_epoch_, self._stall = last["epoch"], 0
            if self.restore_best:
                self._state = {
                    k: v.detach().clone() for k, v in module.state_dict().items()
                }
        else:
            self._stall += 1
        return self._stall >= self.patience

    def on_train_end(self, estimator, *, module, optimizer, history):
        if self._state is not None:
            module.load_state_dict(self._state)
        self._state = None  # the weights are not kept in the callback


class Checkpoint(Callback):
    """Write the weights of the best epoch so far to a file.

    The file holds the CPU state dict of the trained module (``module_`` once the
    fit ends) and is written with :func:`torch.save` after each epoch that improves
    on the monitored value; read it back with
    ``torch.load(path, weights_only=True)`` into the ``module_`` of an estimator
    fitted with the same parameters.

    Parameters
    ----------
    path : str or path-like
        File written.
    monitor : {"auto", "valid_score", "train_loss"}, default="auto"
        What decides the best epoch: the validation score (higher is better, ties to
        the lower validation loss, as early stopping decides) when there is a
        validation split (``"auto"``), else the training loss (lower is better).

    Attributes
    ----------
    best_epoch_ : int or None
        The epoch (from 1) whose weights the file holds, after a fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.callbacks import Checkpoint
    >>> from skmm.nn import MultimodalNetClassifier
    >>> X = np.random.default_rng(0).normal(size=(60, 4))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> checkpoint = Checkpoint("best.pt")  # doctest: +SKIP
    >>> net = MultimodalNetClassifier(
    ...     [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
    ...     max_epochs=3, callbacks=[checkpoint], device="cpu", random_state=0,
    ... ).fit(X, y)  # doctest: +SKIP
    """

    def __init__(self, path, monitor="auto"):
        self.path = path
        self.monitor = monitor

    def on_train_begin(self, estimator, *, module, optimizer):
        if self.monitor not in ("auto", "valid_score", "train_loss"):
            raise ValueError(
                f"Checkpoint(monitor={self.monitor!r}): use 'auto', 'valid_score' or "
                "'train_loss'."
            )
        self.best_epoch_ = None
        self._best = None

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        last = history[-1]
        monitor = self.monitor
        if monitor == "auto":
            monitor = "valid_score" if "valid_score" in last else "train_loss"
        if monitor == "valid_score":
            if "valid_score" not in last:
                raise ValueError(
                    "Checkpoint(monitor='valid_score') needs a validation split "
                    "(early_stopping=True)."
                )
            improved = last["best"]
        else:
            improved = self._best is None or last["train_loss"] < self._best
            if improved:
                self._best = last["train_loss"]
        if improved:
            self.best_epoch_ = last["epoch"]
            if is_main_process():  # one writer when training on several processes
                with open(os.fspath(self.path), "wb") as f:
                    f.write(state_dict_to_bytes(module))


class LRScheduler(Callback):
    """Step a ``torch.optim.lr_scheduler`` once per epoch.

    Parameters
    ----------
    policy : type
        A scheduler class of :mod:`torch.optim.lr_scheduler` (``StepLR``,
        ``CosineAnnealingLR``, ``ReduceLROnPlateau`` ...), built on the optimizer
        when training begins.
    **kwargs
        Passed to ``policy``. ``ReduceLROnPlateau`` is stepped with the validation
        loss (or the training loss without a validation split).

    Examples
    --------
    >>> from torch.optim.lr_scheduler import StepLR
    >>> from skmm.callbacks import LRScheduler
    >>> scheduler = LRScheduler(StepLR, step_size=5, gamma=0.1)
    """

    def __init__(self, policy, **kwargs):
        self.policy = policy
        self.kwargs = kwargs

    def on_train_begin(self, estimator, *, module, optimizer):
        self.scheduler_ = self.policy(optimizer, **self.kwargs)

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        if isinstance(self.scheduler_, torch.optim.lr_scheduler.ReduceLROnPlateau):
            last = history[-1]
            self.scheduler_.step(last.get("valid_loss", last["train_loss"]))
        else:
            self.scheduler_.step()

    def on_train_end(self, estimator, *, module, optimizer, history):
        # The scheduler references the optimizer: do not keep it in the estimator.
        del self.scheduler_
