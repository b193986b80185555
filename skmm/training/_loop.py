"""The one training loop of skmm, shaped like skorch's ``fit_loop``, and its history."""

import functools

import torch
from tqdm.auto import tqdm

from ..callbacks._callbacks import Callback
from ..callbacks._checkpoint import Resume
from ._distributed import DataParallel
from ._precision import Precision

__all__ = ["History", "TrainingMixin", "batches"]


def batches(n, batch_size, *, generator=None):
    """Yield index tensors of ``batch_size`` rows, shuffled when a generator is given."""
    order = (
        torch.randperm(n, generator=generator)
        if generator is not None
        else torch.arange(n)
    )
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class History(list):
    """The records of the epochs run: one dict per epoch, in order.

    Each record has ``epoch`` (from 1, over every stage and every ``partial_fit``
    call), ``train_loss``, ``lr`` (of the first parameter group), ``stage`` when
    the estimator trains in stages and, with a validation set, ``valid_score``,
    ``valid_loss`` and ``best`` (whether it is the best epoch of its stage so far:
    the higher score, ties to the lower loss), plus what the estimator adds.
    """

    def add(self, record):
        record = {"epoch": len(self) + 1, **record}
        if "valid_score" in record:
            key = (record["valid_score"], -record["valid_loss"])
            stage = [
                (r["valid_score"], -r["valid_loss"])
                for r in self
                if "valid_score" in r and r.get("stage") == record.get("stage")
            ]
            record["best"] = not stage or key > max(stage)
        self.append(record)
        return record

    def values(self, key):
        """The values of ``key`` over the epochs that have it."""
        return [r[key] for r in self if key in r]


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
    """The one training loop of skmm (skorch's ``fit_loop``, ``run_single_epoch``,
    ``train_step``).

    :meth:`_fit_loop` runs the epochs over a data source (:mod:`._sources`): the
    batches of each part (:meth:`_epoch_batches`, seeded shuffling) are read through
    the source (decoded per batch by DataLoader workers when it streams) and go
    through :meth:`_train_step` (forward and loss, written by the estimator, under
    ``torch.autocast`` at the estimator's ``precision``; backward and the optimizer
    step here, with a gradient scaler for ``"16-mixed"``); with a validation set
    each epoch is scored (:meth:`_validation_step`). On several processes
    (:mod:`._distributed`) each takes its share of every batch. Everything else is a
    callback: early stopping, the nets' tower-loss blending, checkpoints, schedules.
    The loop writes no fitted attribute: it returns the :class:`History`, which the
    fit template turns into ``history_``, ``loss_curve_``, ``validation_scores_`` and
    ``n_iter_``.

    A batch is an array of rows of the part's data, or a tuple of such arrays whose
    first one holds the rows it covers (a matcher's pairs, then its extra
    non-matching rows).

    An estimator provides ``_train_step(module, data, batch, generator, context)``
    returning ``(objective, loss, n)`` (the tensor to minimise, the loss to record
    as a tensor, and the rows it covers) and, with validation,
    ``_validation_step(module, data, rows, context)`` returning ``(score, loss,
    extra)`` (higher scores are better; ``extra`` a dict added to the epoch's
    record); optionally ``_param_groups``, ``_train_mode``, ``_recalibrate`` and
    ``_epoch_batches``. ``context`` is what the estimator passes to the loop for its
    steps (the loss function, the stage, the tower weights), as is.
    """

    # A batch of one cannot train batch-norm layers (nor give in-batch negatives).
    _min_batch = 2
    # Whether every trainable parameter gets a gradient at every step (else data-
    # parallel training looks for those that do not, at some cost per step).
    _every_parameter_used = False

    def _param_groups(self, module, context):
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def _make_optimizer(self, module, context):
        groups = [g for g in self._param_groups(module, context) if g["params"]]
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

    def _train_mode(self, module, context):
        module.train()

    def _recalibrate(self, module, parts, context):
        """Re-estimate batch-norm statistics over ``parts`` with the current weights."""

    def _epoch_batches(self, data, rows, generator):
        for index in batches(len(rows), self.batch_size, generator=generator):
            if len(index) >= self._min_batch:
                yield rows[index.numpy()]

    def _run_single_epoch(self, module, optimizer, source, run, context):
        """One pass over the source's training rows; returns the mean recorded loss.

        The batches of each part are drawn first (the data order's generator), then
        read through the source (decoded by DataLoader workers when streamed), each
        rank's share of them when distributed. Losses add up on the device and are
        read once per epoch: no host sync per step.
        """
        self._train_mode(module, context)
        total, seen = 0.0, 0
        parallel, precision = run
        n_rows, n_batches = 0, 0
        for data, rows in source.epoch(parallel.order):
            shares = list(
                parallel.shard(
                    self._epoch_batches(data, rows, parallel.order), self._min_batch
                )
            )
            n_rows, n_batches = n_rows + len(rows), n_batches + len(shares)
            fed = source.batches(data, [share for share, _ in shares])
            for (batch_data, batch), (_, count) in zip(fed, shares):
                with precision.autocast():
                    objective, loss, n = parallel.step(
                        batch_data, batch, context, count
                    )
                if optimizer is not None:
                    precision.step(objective, optimizer)
                total = total + loss.detach().float() * n
                seen += n
        if not n_batches:
            # Every batch (on every process alike) was too small to train on: no
            # step, and no loss to record (0 / 0) nor statistics to estimate.
            raise ValueError(
                f"{type(self).__name__}: no training batch of at least "
                f"{self._min_batch * parallel.size} rows in {n_rows} training row(s): "
                "a batch of one cannot train batch-norm layers (nor give in-batch "
                "negatives). Pass more rows per call (partial_fit), or more rows "
                "than the validation split keeps (fit)."
            )
        return parallel.mean(total, seen)

    def _statistics(self, source, parts):
        """``parts`` for a statistics pass (``_recalibrate``): a streamed part comes
        one decoded batch at a time, as a part of its own."""
        for data, rows in parts:
            chunks = [
                rows[index.numpy()]
                for index in batches(len(rows), self.batch_size)
                if len(index) >= self._min_batch
            ]
            yield from source.batches(data, chunks)

    def _validate(self, module, source, held, context, precision):
        """The validation step on the held-out rows, with the current weights'
        statistics (of the part trained on last)."""
        with precision.autocast():
            self._recalibrate(module, self._statistics(source, [source.last]), context)
            module.eval()
            with torch.inference_mode():
                return self._validation_step(module, *held, context)

    def _fit_loop(
        self,
        module,
        source,
        *,
        max_epochs,
        seed,
        context=None,
        callbacks=(),
        history=None,
        stage=None,
        optimizer_state=None,
    ):
        """Train ``module`` on ``source`` for at most ``max_epochs`` epochs.

        Parameters
        ----------
        module : torch.nn.Module
            What trains, on ``device_``.
        source : data source
            The training (and validation) rows, see :mod:`._sources`.
        max_epochs : int
            Epochs to run, unless a callback stops training.
        seed : int
            Seeds the data order and augmentation of this call.
        context : object, default=None
            Passed to the estimator's steps as is.
        callbacks : list of Callback, default=()
            The estimator's own callbacks (early stopping, say), run after the
            user's ``callbacks`` parameter.
        history : History, default=None
            Appended to (a later stage, a later ``partial_fit`` call); new if None.
        stage : str, default=None
            Recorded in each epoch's record.
        optimizer_state : dict, default=None
            The optimizer's state to continue from (``partial_fit``); the learning
            rates stay those of the parameters.

        Returns
        -------
        history : History
        optimizer : torch.optim.Optimizer or None
        """
        module.to(self.device_)
        optimizer = self._make_optimizer(module, context)
        if optimizer is not None and optimizer_state is not None:
            rates = [group["lr"] for group in optimizer.param_groups]
            optimizer.load_state_dict(optimizer_state)  # to the parameters' device
            for group, lr in zip(optimizer.param_groups, rates):
                group["lr"] = lr
        callbacks = _check_callbacks(self.callbacks) + list(callbacks)
        precision = Precision(getattr(self, "precision", "32"), self.device_)
        parallel = DataParallel(self, module, optimizer, seed)
        history = History() if history is None else history
        hooks = {"module": module, "optimizer": optimizer}
        for cb in callbacks:
            cb.on_train_begin(self, **hooks)
        # A fit killed mid-way resumes from a Checkpoint's state file: this run goes
        # on after the epochs it had done, or is skipped if it had ended.
        resume = Resume(
            self, callbacks, module, optimizer, precision, parallel, history, stage
        )
        resumed = resume.restore()
        if resumed is None:
            for cb in callbacks:
                cb.on_train_end(self, history=history, **hooks)
            parallel.finish()
            return history, optimizer
        done, stopped = resumed
        validated = done > 0 and "valid_score" in history[-1]
        epochs = tqdm(
            range(done, max_epochs if not stopped else done),
            desc=f"{type(self).__name__} fit",
            disable=not self.verbose or not parallel.rank == 0,
        )
        for _ in epochs:
            record = {} if stage is None else {"stage": stage}
            record["lr"] = (
                None if optimizer is None else optimizer.param_groups[0]["lr"]
            )
            record["train_loss"] = self._run_single_epoch(
                module, optimizer, source, (parallel, precision), context
            )
            held = source.validation()
            if held is not None:
                validated = True
                score, loss, extra = parallel.on_main(
                    functools.partial(
                        self._validate, module, source, held, context, precision
                    )
                )
                record.update(valid_score=score, valid_loss=loss, **extra)
            record = history.add(record)
            epochs.set_postfix(
                {k: v for k, v in record.items() if k in ("train_loss", "valid_score")}
            )
            stop = False
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(self, history=history, **hooks)) or stop
            resume.save(stop)
            if stop:
                break
        for cb in callbacks:
            cb.on_train_end(self, history=history, **hooks)
        if max_epochs > 0 and (not validated or source.partial_statistics):
            # The kept weights' statistics from every training row (within an
            # epoch they came from the last part only, or were not needed).
            def recalibrate():
                with precision.autocast():
                    parts = self._statistics(source, source.every_part())
                    self._recalibrate(module, parts, context)

            parallel.on_main(recalibrate)
        parallel.finish()
        module.eval()
        return history, optimizer
