"""Checkpoints: the best epoch's weights, and the whole training state to resume a fit.

:class:`Checkpoint` writes the best weights so far (``path``) and, with ``state=``,
the state of the loop after every epoch: the weights, the optimizer's state, the
gradient scaler's, the history (the epoch counter), the random generators (the data
order's, and torch's global one, which dropout draws from) and every callback's
:meth:`~skmm.callbacks.Callback.state_dict`. A fit that finds that file picks up
where it was: a fit killed mid-way (out of memory, a preempted machine, SIGKILL),
called again with the same parameters and data, ends with the model an uninterrupted
run gives, to the bit. :class:`Resume` is the loop's side of it.

The file is written under a temporary name and renamed into place, so a kill while
it is written leaves the previous epoch's state whole; it is read with
``weights_only=True`` (tensors and plain values: a planted file cannot run code).
"""

import contextlib
import io
import json
import os
import re
import tempfile
import warnings

import numpy as np
import torch

from ..training._distributed import is_main_process
from ..utils._torch import state_dict_to_bytes
from ._callbacks import Callback

__all__ = ["Checkpoint", "Resume"]

# Bumped when the state file's contents change: an older file is not resumed from.
_FORMAT = 2
# Parameters that do not change what a fit computes.
_NOT_IN_FINGERPRINT = frozenset({"callbacks", "verbose", "num_workers", "memory"})


class Checkpoint(Callback):
    """Write the best epoch's weights to a file, and optionally the training state.

    The file at ``path`` holds the CPU state dict of the trained module (``module_``
    once the fit ends) and is written with :func:`torch.save` after each epoch that
    improves on the monitored value; read it back with
    ``torch.load(path, weights_only=True)`` into the ``module_`` of an estimator
    fitted with the same parameters.

    With ``state``, the whole training state is written there after every epoch,
    and a fit that finds it resumes from it: killed mid-way, ``fit`` called again
    with the same parameters and data continues after the last epoch written and
    ends with the model of an uninterrupted run with the same ``random_state``. The
    state file is removed when the fit ends.

    Parameters
    ----------
    path : str or path-like
        File written with the best weights.
    monitor : {"auto", "valid_score", "train_loss"}, default="auto"
        What decides the best epoch: the validation score (higher is better, ties to
        the lower validation loss, as early stopping decides) when there is a
        validation split (``"auto"``), else the training loss (lower is better).
    state : str or path-like, default=None
        File of the training state, to resume a fit that was killed. It belongs to
        one fit: the estimator's class, its parameters and the shapes of its weights
        are checked when resuming (a mismatch warns and starts afresh), the data is
        not; delete the file to start a fit over. The state of a callable callback,
        and of a :class:`Callback` without :meth:`~Callback.state_dict`, is not
        kept. In a distributed run rank 0 writes it, with every rank's random
        generators; a run resumed on as many processes restores each rank's own
        (on another number of processes, rank 0's on every rank: the batches are
        shared out anew, so the run cannot be the uninterrupted one anyway).

    Attributes
    ----------
    best_epoch_ : int or None
        The epoch (from 1) whose weights the file holds, after a fit.
    resumed_from_ : int or None
        The epochs that a resumed fit found done in the state file (over every
        stage), or None when the fit started afresh.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.callbacks import Checkpoint
    >>> from skmm.nn import MultimodalNetClassifier
    >>> X = np.random.default_rng(0).normal(size=(60, 4))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> checkpoint = Checkpoint("best.pt", state="training.pt")  # doctest: +SKIP
    >>> net = MultimodalNetClassifier(
    ...     [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
    ...     max_epochs=3, callbacks=[checkpoint], device="cpu", random_state=0,
    ... ).fit(X, y)  # doctest: +SKIP
    """

    def __init__(self, path, monitor="auto", state=None):
        self.path = path
        self.monitor = monitor
        self.state = state

    def on_train_begin(self, estimator, *, module, optimizer):
        if self.monitor not in ("auto", "valid_score", "train_loss"):
            raise ValueError(
                f"Checkpoint(monitor={self.monitor!r}): use 'auto', 'valid_score' or "
                "'train_loss'."
            )
        self.best_epoch_ = None
        self._best = None
        if self.state is None:
            self.resumed_from_ = None  # else set by the first run of the loop

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
                _write_atomic(self.path, state_dict_to_bytes(module))

    def state_dict(self):
        return {"best_epoch": self.best_epoch_, "best": self._best}

    def load_state_dict(self, state):
        self.best_epoch_, self._best = state["best_epoch"], state["best"]

    def _fit_finished(self):
        """The fit ended: its training state is no longer needed."""
        if self.state is not None and is_main_process():
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.fspath(self.state))


def _write_atomic(path, data):
    """Write ``data`` to ``path`` whole or not at all (a kill leaves the old file)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _plain(value):
    """JSON for the history's NumPy values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot keep {type(value).__name__} in a training state file")


def fit_finished(callbacks):
    """Tell the checkpoints among ``callbacks`` that the fit ended."""
    for cb in callbacks or ():
        if isinstance(cb, Checkpoint):
            cb._fit_finished()


class Resume:
    """The loop's side of :class:`Checkpoint` ``(state=)``, for one run of the loop.

    A fit runs the loop once, or once per stage: a run is known by its ``stage``
    and the length of the history when it begins. :meth:`restore`, after the
    callbacks' ``on_train_begin``, finds in the state file whether this run is the
    one that was under way (its weights, optimizer, generators, callbacks and
    history are restored, and the loop runs the epochs left), one that had ended
    before (the loop is skipped: a later run restores the weights), or none of
    them (a fresh start). :meth:`save` writes the state after each epoch.

    Parameters
    ----------
    estimator : estimator
        Being fitted.
    callbacks : list of Callback
        Every callback of the run, in order.
    module, optimizer, precision, parallel :
        The run's module, optimizer (or None), ``Precision`` and ``DataParallel``.
    history : History
        The history, restored in place.
    stage : str or None
        The run's stage.
    """

    def __init__(
        self,
        estimator,
        callbacks,
        module,
        optimizer,
        precision,
        parallel,
        history,
        stage,
    ):
        self.checkpoint = next(
            (
                cb
                for cb in callbacks
                if isinstance(cb, Checkpoint) and cb.state is not None
            ),
            None,
        )
        self.estimator, self.callbacks = estimator, callbacks
        self.module, self.optimizer = module, optimizer
        self.precision, self.parallel = precision, parallel
        self.history, self.stage, self.start = history, stage, len(history)

    def _generators(self):
        order, steps = self.parallel.order, self.parallel.steps
        return [order] if steps is order else [order, steps]

    def _fingerprint(self):
        if getattr(self, "_print", None) is None:
            self._print = self._compute_fingerprint()
        return self._print

    def _compute_fingerprint(self):
        params = {
            k: re.sub(r" at 0x[0-9a-f]+", "", repr(v))
            for k, v in sorted(self.estimator.get_params(deep=False).items())
            if k not in _NOT_IN_FINGERPRINT
        }
        weights = {k: list(v.shape) for k, v in self.module.state_dict().items()}
        return json.dumps(
            {
                "class": type(self.estimator).__name__,
                "params": params,
                "weights": weights,
            },
            sort_keys=True,
        )

    def restore(self):
        """Restore the run from the state file: ``(epochs done, stopped)``, or None
        when this run had ended before (the loop is skipped)."""
        if self.checkpoint is None:
            return 0, False
        if self.start == 0:  # the first run of a fit (later ones keep what it found)
            self.checkpoint.resumed_from_ = None
        path = os.fspath(self.checkpoint.state)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return 0, False
        except Exception as exc:  # noqa: BLE001 - an unreadable file: start afresh
            return self._afresh(path, f"it cannot be read ({type(exc).__name__})")
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            return self._afresh(path, "it is not a state file of this skmm version")
        if saved["fingerprint"] != self._fingerprint():
            return self._afresh(
                path, "it was written by a fit with other parameters or weights"
            )
        records = json.loads(saved["history"])
        start = saved["start"]
        if start < self.start:
            # Written by an earlier run of this fit (the stage before): this run
            # had not begun.
            return 0, False
        if (
            start > self.start
            and self.stage is not None
            and records[self.start].get("stage") == self.stage
        ):
            # A later run was under way: this one had ended. Its records are those
            # of its stage from where it began.
            end = self.start
            while end < start and records[end].get("stage") == self.stage:
                end += 1
            self.history[:] = records[:end]
            self.checkpoint.resumed_from_ = len(records)
            return None
        if start != self.start or saved["stage"] != self.stage:
            return self._afresh(path, "it belongs to another run of the loop")
        stateful = self._stateful()
        if [name for name, _ in saved["callbacks"]] != [
            type(cb).__name__ for cb in stateful
        ]:
            return self._afresh(path, "it was written with other callbacks")
        self.history[:] = records
        self.module.load_state_dict(saved["module"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
        if self.precision.scaler is not None and saved["scaler"] is not None:
            self.precision.scaler.load_state_dict(saved["scaler"])
        ranks = saved["random"]
        mine = (
            ranks[self.parallel.rank] if len(ranks) == self.parallel.size else ranks[0]
        )
        for generator, state in zip(self._generators(), mine["generators"]):
            generator.set_state(state)
        torch.set_rng_state(mine["torch_rng"])
        if torch.cuda.is_available() and mine["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(mine["cuda_rng"])
        for cb, (_, state) in zip(stateful, saved["callbacks"]):
            cb.load_state_dict(state)
        self.checkpoint.resumed_from_ = len(records)
        return len(records) - self.start, bool(saved["stopped"])

    def _stateful(self):
        """The callbacks that keep a state (a non-empty ``state_dict``), in order."""
        return [cb for cb in self.callbacks if cb.state_dict()]

    def _afresh(self, path, why):
        warnings.warn(
            f"Checkpoint(state={path!r}): not resuming from it, {why}; the fit starts "
            "afresh and overwrites it.",
            UserWarning,
            stacklevel=4,
        )
        return 0, False

    def save(self, stopped):
        """Write the state after an epoch (``stopped``: a callback stopped the run)."""
        if self.checkpoint is None:
            return
        ranks = self._random_states()  # a collective: every rank takes part
        if not is_main_process():
            return
        state = {
            "format": _FORMAT,
            "fingerprint": self._fingerprint(),
            "stage": self.stage,
            "start": self.start,
            "stopped": bool(stopped),
            "history": json.dumps(list(self.history), default=_plain),
            "module": {
                k: v.detach().cpu() for k, v in self.module.state_dict().items()
            },
            "optimizer": None
            if self.optimizer is None
            else self.optimizer.state_dict(),
            "scaler": None
            if self.precision.scaler is None
            else self.precision.scaler.state_dict(),
            "random": ranks,
            "callbacks": [
                (type(cb).__name__, cb.state_dict()) for cb in self._stateful()
            ],
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        _write_atomic(self.checkpoint.state, buffer.getvalue())

    def _random_states(self):
        """Every rank's random generators (the data order's, the steps', torch's
        global one that dropout draws from), by rank: each rank draws its own
        augmentation and dropout, which a resumed run must draw on."""
        mine = {
            "generators": [g.get_state() for g in self._generators()],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all()
            if torch.cuda.is_available()
            else None,
        }
        if self.parallel.size == 1:
            return [mine]
        ranks = [None] * self.parallel.size
        torch.distributed.all_gather_object(ranks, mine)
        return ranks
