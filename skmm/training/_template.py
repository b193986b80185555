"""The one fit template of skmm's trainable estimators.

Encoders, nets and the matcher train through :meth:`FitTemplateMixin._fit_entry`,
whatever the entry: ``fit`` in memory, ``fit`` on a Dask DataFrame, ``partial_fit``.
It runs the same steps in the same order, each a hook of the estimator:

1. **begin** (``_begin``): validate the input, resolve the layout, the device;
2. **targets** (``_targets``; ``_stream_targets`` from one pass over a Dask ``y``);
3. **preprocessing** (``_preprocess``), on the first call only, on the training rows;
4. **build or resume** (``_build``: initial weights; ``_resume``: the fitted ones);
5. **loop** (``_train``): the one training loop over a data source made by the one
   function for a chunk of rows (``_data``, whose items are decoded when read): the
   rows decoded once and kept in memory, or decoded per batch by DataLoader workers
   when they would take more than ``IN_MEMORY_BYTES``, or one Dask partition at a
   time (``_check_chunk`` validating a later chunk, as a later ``partial_fit``
   call is validated);
6. **finish** (``_finish``): the fitted attributes.

A failed call leaves the estimator as it was: the first call runs on a fresh copy
(:func:`~skmm.utils._composition.fit_atomic`); a later ``partial_fit`` call trains a
copy of the weights and adopts them only at the end.
"""

import copy
from types import SimpleNamespace

from ..callbacks._checkpoint import fit_finished
from ..utils._composition import fit_atomic
from ..utils._dask import Partitions, is_dask_collection
from ..utils._torch import resolve_device, torch_seed
from ._distributed import local_device
from ._estimator import TorchEstimatorMixin, to_cpu
from ._loop import TrainingMixin
from ._sources import Partitioned, in_memory_or_streamed
from ._streaming import Feeder

__all__ = ["FitTemplateMixin", "PARTIAL_FIT_CLASSES"]

# The one meaning of ``partial_fit(classes=)`` (scikit-learn's), in every docstring.
PARTIAL_FIT_CLASSES = """\
        classes : array-like of shape (n_classes,), default=None
            Every class label of the stream. Required on the first call when ``y``
            holds class labels (a later batch may hold a class this one lacks), as
            for scikit-learn's classifiers; ignored after the first call."""


class FitTemplateMixin(TrainingMixin, TorchEstimatorMixin):
    """The fit template; see the module's docstring for the hooks."""

    def _trained(self):
        return "module_" in vars(self)

    def _fit_entry(self, X, y=None, sample_weight=None, classes=None, partial=False):
        """``fit`` (``partial=False``) or ``partial_fit``, atomic."""
        if partial and is_dask_collection(X):
            raise TypeError(
                f"{type(self).__name__}.partial_fit takes in-memory rows; to train on "
                "a Dask DataFrame, one partition at a time, call fit."
            )
        if partial and self._trained():
            # Train copies of the weights (and of the kept state): a bad item or a
            # failing callback leaves the estimator as it was.
            work = object.__new__(type(self))
            work.__dict__.update(self.__dict__)
            work.module_ = copy.deepcopy(self.module_)
            # The optimizer loads its state without copying tensors already on
            # the device, and steps them in place: the kept state is copied too.
            if "_optimizer_state_" in vars(self):
                work._optimizer_state_ = copy.deepcopy(self._optimizer_state_)
            work._run(X, y, sample_weight, classes, True, False)
            self.__dict__.clear()
            self.__dict__.update(work.__dict__)
            return None
        return fit_atomic(
            self, type(self)._run, X, y, sample_weight, classes, partial, True
        )

    def _run(self, X, y, sample_weight, classes, partial, first):
        stream = is_dask_collection(X)
        run = SimpleNamespace(partial=partial, first=first, stream=stream)
        run.seed = self._seed() + (0 if first else self.n_iter_)
        if stream:
            run.partitions = Partitions(X, y, sample_weight)
            X = run.partitions.first()
        if first:
            self.device_ = local_device(resolve_device(self.device), self.device)
            self._begin(run, X)
            if stream:
                run.counts = self._stream_targets(run, y)
            else:
                run.chunk = self._targets(run, y, sample_weight, classes)
        else:
            run.chunk = self._check_chunk(X, y, sample_weight, classes)
        del X  # on Dask, the loop reads the first partition again
        if not stream:
            run.train, run.val = self._split(run)
        with torch_seed(run.seed):
            if first:
                self._preprocess(run)
                module = self._build(run)
            else:
                module = self._resume(run)
            feed = Feeder(
                num_workers=getattr(self, "num_workers", 0),
                pin_memory=str(self.device_).startswith("cuda"),
                seed=run.seed,
            )
            if stream:
                source = Partitioned(
                    run.partitions,
                    lambda X, y, w: self._data(
                        run, module, *self._check_chunk(X, y, w)
                    ),
                    split=self._stream_split(run),
                    counts=run.counts,
                    feed=feed,
                )
            else:
                source = in_memory_or_streamed(
                    self._data(run, module, *run.chunk), run.train, run.val, feed
                )
            history, optimizer = self._train(run, module, source)
        self._finish(run, module, source, history)
        # A Checkpoint's training state is done with.
        fit_finished(getattr(self, "callbacks", None))
        if partial:
            self._optimizer_state_ = (
                None if optimizer is None else to_cpu(optimizer.state_dict())
            )
        return run

    def _stream_split(self, run):
        """``split(data, i)`` for the partitions of a Dask fit; None: no validation."""
        return None

    # -- what the estimators share between the hooks ------------------------------
    def _history_attributes(self, history, new, early_stopping):
        """Set ``history_``, ``loss_curve_``, ``validation_scores_``, ``n_iter_`` and
        ``best_validation_score_`` from ``history``; ``new`` are this call's records.
        """
        self.history_ = list(history)
        self.loss_curve_ = [r["train_loss"] for r in history]
        self.n_iter_ = len(history)
        scores = [r["valid_score"] for r in new if "valid_score" in r]
        self.validation_scores_ = scores or None
        if scores:
            stage = new[-1].get("stage")
            last = [r["valid_score"] for r in new if r.get("stage") == stage]
            self.best_validation_score_ = max(last) if early_stopping else last[-1]
