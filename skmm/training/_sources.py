"""The data a training loop reads: in memory, streamed from files, Dask partitions.

A source is what :meth:`~skmm.training._loop.TrainingMixin._fit_loop` iterates over.
It has four faces, whatever holds the rows:

- ``epoch(generator)``: the parts of one epoch, as ``(data, rows)`` pairs, every
  training row once (in memory or streamed one part; on Dask one per partition, in
  a random order);
- ``batches(data, batches)``: ``(batch data, batch)`` for each batch of rows of a
  part, in order: in memory the whole data and the batch as they are; streamed, the
  batch's own data, its items decoded by DataLoader workers
  (:class:`~skmm.training._streaming.Feeder`), and the batch in positions there;
- ``validation()``: the held-out ``(data, rows)``, or None;
- ``every_part()`` and ``last``: the training parts in order (a statistics pass) and
  the part trained on last (statistics within an epoch).

``data`` is what the estimator's steps read (items, targets, row weights), made by
the estimator's one function for a chunk of rows (``_data``), whose items are lazy
(:class:`~skmm.training._streaming.Lazy`: decoded when indexed). It has a
``labels`` attribute (class codes, or None) for stratified splits and
``take(rows)``: the data of ``rows`` only, their items decoded.

:func:`in_memory_or_streamed` chooses between :class:`InMemory` (everything decoded
once, then indexed) and :class:`Streamed` (decoded per batch, every epoch) by the
decoded size of the training items; Dask partitions are always read per batch.
"""

import warnings

import numpy as np
import pandas as pd
import torch

from ..utils._sklearn_compat import _safe_indexing
from ._streaming import Feeder, located, recording

__all__ = [
    "IN_MEMORY_BYTES",
    "InMemory",
    "NothingToTrain",
    "Partitioned",
    "Streamed",
    "in_memory_or_streamed",
    "validation_split",
]

# Decoded training items up to this size are kept in memory (decoded once, indexed
# every epoch: the fastest for small tables); beyond it they are decoded per batch,
# every epoch. 256 MB is ~430 photos at 224 px in float32, or ~85,000 MNIST digits.
IN_MEMORY_BYTES = 256 * 2**20

# Rows decoded to estimate the decoded size of a row.
_PROBE_ROWS = 32


class NothingToTrain(ValueError):
    """A chunk of rows holds nothing to train on (every item of it is missing).

    In memory it is the error it says; a Dask partition that raises it while
    loaded is skipped, as an empty partition is (:class:`Partitioned`).
    """


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

    def batches(self, data, batches):
        for batch in batches:
            yield data, batch

    def validation(self):
        return None if self.val is None else (self.data, self.val)

    def every_part(self):
        yield self.data, self.train

    @property
    def last(self):
        return self.data, self.train


class Streamed(InMemory):
    """Training rows decoded per batch, every epoch, by a :class:`Feeder`.

    The faces of :class:`InMemory`, with ``data`` holding lazy items: validation and
    statistics read it a batch at a time as well.
    """

    def __init__(self, data, train, val=None, feed=None):
        super().__init__(data, train, val)
        self.feed = Feeder() if feed is None else feed

    def batches(self, data, batches):
        return self.feed(data, batches)


def in_memory_or_streamed(data, train, val=None, feed=None):
    """:class:`InMemory` when the decoded data fits :data:`IN_MEMORY_BYTES`, else
    :class:`Streamed`.

    The size of a row is measured on the first training rows, decoded once for that
    (a table of no more rows than that is decoded once, in memory);
    ``feed`` (a :class:`~skmm.training._streaming.Feeder`) decodes the streamed
    batches.
    """
    if data is None or len(train) == 0:
        return InMemory(data, train, val)
    if len(data) <= _PROBE_ROWS:
        # Decoding the whole table costs no more than the probe would: once.
        return InMemory(data.take(np.arange(len(data))), train, val)
    probe = train[:_PROBE_ROWS]
    with recording() as decoded:
        data.take(probe)
    per_row = sum(t.nbytes for t in decoded if isinstance(t, torch.Tensor))
    per_row /= len(probe)
    if per_row * len(data) <= IN_MEMORY_BYTES:
        return InMemory(data.take(np.arange(len(data))), train, val)
    return Streamed(data, train, val, feed)


class Partitioned:
    """Training rows read one Dask partition at a time, for ``fit`` on Dask input.

    Each epoch reads the partitions in a random order, one in memory while the next
    is computed, and decodes their items a batch at a time (``feed``). A partition
    without rows (common after filtering) or with nothing to train on (``load``
    raises :class:`NothingToTrain`: every item of it missing) is skipped; when
    every partition is, the fit fails saying so.
    ``load(X, y, sample_weight)`` makes the steps' data for a partition (errors,
    then or when an item is decoded, are prefixed with the partition);
    ``split(data, i)`` gives its training and held-out rows (None: no validation).
    The held-out rows are kept undecoded the first time they are read and loaded
    once, together, as the validation set, whose items are decoded a batch at a
    time too.

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
    feed : Feeder or None
        Decodes the batches.
    """

    # Within an epoch, statistics come from the last partition only.
    partial_statistics = True

    def __init__(self, partitions, load, split=None, counts=None, feed=None):
        self.partitions, self.load, self.split = partitions, load, split
        self.counts = counts
        self.feed = Feeder() if feed is None else feed
        self.last = None
        self._held, self._validation, self._seen = {}, None, set()

    def _part(self, i, X, y, weight):
        """The data and training rows of partition ``i``, or None: skipped."""
        if len(X) == 0:
            return None
        with located(f"partition {i}"):
            try:
                data = self.load(X, y, weight)
            except NothingToTrain:
                return None
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
        for found in self._parts(order):
            self.last = found
            yield found

    def _parts(self, order):
        """The partitions of ``order`` that hold rows to train on, as (data, rows)."""
        read = False
        for i, part in self.partitions.iterate(order):
            found = self._part(i, *part)
            if found is not None:
                read = True
                yield found
        if not read:
            raise ValueError(
                f"none of the {len(self.partitions)} partitions holds a row to train "
                "on: each is empty, or every item of it is missing."
            )

    def batches(self, data, batches):
        return self.feed(data, batches)

    def every_part(self):
        yield from self._parts(range(len(self.partitions)))

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
            with located("held-out rows"):
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
