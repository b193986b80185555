"""The data a training loop reads: in memory, or one Dask partition at a time.

A source is what :meth:`~skmm.training._loop.TrainingMixin._fit_loop` iterates over.
It has three faces, whatever holds the rows:

- ``epoch(generator)``: the parts of one epoch, as ``(data, rows)`` pairs, every
  training row once (in memory one part; on Dask one per partition, in a random
  order);
- ``validation()``: the held-out ``(data, rows)``, or None;
- ``every_part()`` and ``last``: the training parts in order (a statistics pass) and
  the part trained on last (statistics within an epoch).

``data`` is what the estimator's steps read (decoded items, targets, row weights),
made by the estimator's one function for a chunk of rows, in memory or per
partition; it has a ``labels`` attribute (class codes, or None) for stratified
splits. The streaming file loader of a later version plugs in here.
"""

import warnings

import numpy as np
import pandas as pd
import torch

from ..utils._sklearn_compat import _safe_indexing
from ..utils._validation import prefix_errors

__all__ = ["InMemory", "Partitioned", "validation_split"]


def validation_split(n, fraction, seed, labels=None):
    """Split ``range(n)`` into sorted training and validation positions.

    Stratified on ``labels`` (integer codes) when every class can appear on both sides.
    """
    from sklearn.model_selection import train_test_split

    n_val = int(np.ceil(fraction * n))
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


class InMemory:
    """Every training row in memory: one part per epoch.

    Parameters
    ----------
    data : object
        What the estimator's steps read.
    train : ndarray of int
        The training rows of ``data``.
    val : ndarray of int or None
        The validation rows of ``data``.
    """

    # The statistics of an epoch's last part are those of every training row.
    partial_statistics = False

    def __init__(self, data, train, val=None):
        self.data, self.train, self.val = data, train, val

    def epoch(self, generator):
        yield self.data, self.train

    def validation(self):
        return None if self.val is None else (self.data, self.val)

    def every_part(self):
        yield self.data, self.train

    @property
    def last(self):
        return self.data, self.train


class Partitioned:
    """Training rows read one Dask partition at a time, for ``fit`` on Dask input.

    Each epoch reads the partitions in a random order, one in memory while the next
    is computed. ``load(X, y, sample_weight)`` makes the steps' data for a partition
    (errors are prefixed with the partition); ``split(data, i)`` gives its training
    and held-out rows (None: no validation). The held-out rows are kept undecoded the
    first time they are read and loaded once, together, as the validation set.

    Parameters
    ----------
    partitions : skmm.utils._dask.Partitions
        The partitions of X (and y, sample_weight).
    load : callable
        ``load(X, y, sample_weight) -> data`` for one partition's rows.
    split : callable or None
        ``split(data, i) -> (train, val)`` for partition ``i``.
    counts : ndarray or None
        The rows of each class of y, to warn about partitions far from y's mix.
    """

    # Within an epoch, statistics come from the last partition only.
    partial_statistics = True

    def __init__(self, partitions, load, split=None, counts=None):
        self.partitions, self.load, self.split = partitions, load, split
        self.counts = counts
        self.last = None
        self._held, self._validation, self._seen = {}, None, set()

    def _part(self, i, X, y, weight):
        with prefix_errors(f"partition {i}"):
            data = self.load(X, y, weight)
            if self.split is not None:
                train, val = self.split(data, i)
        self._check_mix(i, data.labels)
        if self.split is None:
            return data, np.arange(len(data))
        if i not in self._held:
            self._held[i] = (
                _safe_indexing(X, val),
                None if y is None else _safe_indexing(np.asarray(y), val),
                None if weight is None else np.asarray(weight)[val],
            )
        return data, train

    def epoch(self, generator):
        order = torch.randperm(len(self.partitions), generator=generator).tolist()
        for i, part in self.partitions.iterate(order):
            self.last = self._part(i, *part)
            yield self.last

    def every_part(self):
        for i, part in self.partitions.iterate(range(len(self.partitions))):
            yield self._part(i, *part)

    def validation(self):
        """Every partition's held-out rows, loaded once, together."""
        if self.split is None:
            return None
        if self._validation is None:
            parts = [self._held[i] for i in sorted(self._held)]
            X = pd.concat([p[0] for p in parts])
            y, weight = (
                None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
                for k in (1, 2)
            )
            with prefix_errors("held-out rows"):
                data = self.load(X, y, weight)
            self._validation = (data, np.arange(len(data)))
        return self._validation

    def _check_mix(self, i, codes):
        """Warn once when a partition's classes are far from the whole ``y``'s.

        Batches are drawn within a partition: partitions that each hold a few
        classes (a table sorted by label, or kept in its original order) train
        badly. The total-variation distance between the partition's class
        frequencies and the data's is compared with what random partitions of its
        size give.
        """
        if self.counts is None or codes is None or i in self._seen:
            return
        self._seen.add(i)
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
