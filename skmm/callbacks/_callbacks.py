"""Callbacks of the one training loop (:mod:`skmm.training._loop`).

As in skorch (``skorch/callbacks``), what is added to training is a callback: the
loop calls ``on_train_begin`` once, ``on_epoch_end`` after every epoch with the
history so far, and ``on_train_end`` once. A plain callable ``f(estimator, history)``
is called per epoch; returning True stops training. The estimators' own early
stopping is :class:`EarlyStopping`, added after the user's callbacks. A callback's
``state_dict`` is what a resumed fit restores (:mod:`._checkpoint`).
"""

import torch


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

    def state_dict(self):
        """What the callback has gathered during training, for a resumed fit.

        A dict of tensors and plain values (numbers, strings, lists, dicts, None),
        written by :class:`~skmm.callbacks.Checkpoint` ``(state=)`` after every
        epoch; empty by default (nothing to keep).
        """
        return {}

    def load_state_dict(self, state):
        """Take back what :meth:`state_dict` gave, after ``on_train_begin``."""


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

    def state_dict(self):
        return {
            "best_epoch": self.best_epoch_,
            "stall": self._stall,
            "best": self._state,
        }

    def load_state_dict(self, state):
        self.best_epoch_, self._stall = state["best_epoch"], state["stall"]
        self._state = state["best"]


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

    def state_dict(self):
        return {"scheduler": self.scheduler_.state_dict()}

    def load_state_dict(self, state):
        self.scheduler_.load_state_dict(state["scheduler"])
