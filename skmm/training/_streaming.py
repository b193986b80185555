"""Training items decoded per batch, by a torch DataLoader with worker processes.

An estimator's training data (``_data``) holds its items as :class:`Lazy` objects:
``lazy[positions]`` decodes those items (the encoder's ``_load``). Everything else
in the data (targets, row weights, a frozen tower's features) is small and held as
is. Each data class has ``take(rows)``: the same class for ``rows`` only, its lazy
items decoded; the estimators' steps read either the whole decoded data (in memory)
or one batch's (streamed), the same way.

Streaming (the sources ``Streamed`` and ``Partitioned`` of :mod:`._sources`)
decodes each batch in a
:class:`torch.utils.data.DataLoader` worker process (:class:`Feeder`): the worker
runs ``take`` and sends back only the decoded tensors (:func:`recording`); the main
process runs ``take`` again, which reads them back instead of decoding
(:func:`replaying`). Batches, augmentation and dropout are drawn in the main
process, so the model does not depend on ``num_workers``.
"""

import contextlib
import random
from collections import deque
from contextvars import ContextVar

import numpy as np
import torch

from ..utils._validation import prefix_errors

__all__ = [
    "Feeder",
    "Lazy",
    "flatten",
    "located",
    "recording",
    "replaying",
    "take_rows",
]

# Where the data being built comes from ("partition 3", "encoder 'img'"): a lazy
# item keeps it, so an error raised when it is decoded later says where.
_WHERE = ContextVar("skmm_where", default=())
# In a DataLoader worker, the tensors decoded by ``take``; in the main process, the
# tensors a worker sent back, read instead of decoding.
_RECORD = ContextVar("skmm_record", default=None)
_REPLAY = ContextVar("skmm_replay", default=None)


@contextlib.contextmanager
def located(prefix):
    """Prefix a ValueError raised in the block, and later by its lazy items."""
    token = _WHERE.set(_WHERE.get() + (prefix,))
    try:
        with prefix_errors(prefix):
            yield
    finally:
        _WHERE.reset(token)


class Lazy:
    """Items decoded when indexed: ``lazy[positions]`` is ``load(column, rows[positions])``.

    Parameters
    ----------
    load : callable
        ``load(column, rows) -> Tensor``: an encoder's ``_load``.
    column : Column
        The items.
    rows : array-like of int
        The rows of ``column`` that the positions index.
    """

    def __init__(self, load, column, rows):
        self.load, self.column = load, column
        self.rows = np.asarray(rows, dtype=np.intp)
        self.where = _WHERE.get()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, positions):
        replay = _REPLAY.get()
        if replay is not None:
            return replay.popleft()
        rows = self.rows[np.asarray(positions, dtype=np.intp)]
        with contextlib.ExitStack() as stack:
            for prefix in self.where:
                stack.enter_context(prefix_errors(prefix))
            out = self.load(self.column, rows)
        record = _RECORD.get()
        if record is not None:
            record.append(out)
        return out


def take_rows(value, rows):
    """``value`` at ``rows``: a tensor or array indexed, lazy items decoded."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[torch.from_numpy(np.asarray(rows, dtype=np.int64))]
    return value[rows]


@contextlib.contextmanager
def recording():
    """The tensors decoded by lazy items in the block, in order."""
    decoded = []
    token = _RECORD.set(decoded)
    try:
        yield decoded
    finally:
        _RECORD.reset(token)


@contextlib.contextmanager
def replaying(decoded):
    """Lazy items indexed in the block return ``decoded``, in order."""
    token = _REPLAY.set(deque(decoded))
    try:
        yield
    finally:
        _REPLAY.reset(token)


def flatten(batch):
    """The rows of a batch and the batch in positions among them.

    A batch is an array of rows, or a tuple of arrays (a matcher's pairs and its
    extra non-matching rows).
    """
    if isinstance(batch, tuple):
        rows = np.concatenate(batch)
        ends = np.cumsum([len(part) for part in batch])
        return rows, tuple(
            np.arange(end - len(part), end) for part, end in zip(batch, ends)
        )
    rows = np.asarray(batch)
    return rows, np.arange(len(rows))


class _Failure:
    """A ValueError raised in a worker (a broken item), re-raised in the main process
    with its message as is."""

    def __init__(self, message):
        self.message = message


class _Batches(torch.utils.data.Dataset):
    """The batches of one part: item ``i`` is the tensors batch ``i`` decodes to."""

    def __init__(self, data, batches):
        self.data, self.batches = data, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        rows, _ = flatten(self.batches[i])
        with recording() as decoded:
            try:
                self.data.take(rows)
            except ValueError as exc:
                return _Failure(str(exc))
        return decoded


def _seed_worker(worker_id):
    # torch seeds each worker from the loader's generator; numpy's and Python's global
    # generators follow (the recipe of torch.utils.data's documentation on randomness
    # in workers), else every forked worker would draw the same numbers.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (the global generator is the one to seed)
    random.seed(seed)


class Feeder:
    """Decode the batches of a part: ``feeder(data, batches)`` yields ``(batch data,
    batch in positions)`` in order.

    With ``num_workers`` worker processes, up to ``2 * num_workers`` batches are
    decoded ahead (the DataLoader's prefetching); ``pin_memory`` pins them for fast,
    non-blocking copies to a GPU.

    Parameters
    ----------
    num_workers : int, default=0
        Worker processes; 0 decodes in the main process.
    pin_memory : bool, default=False
        Pin the decoded tensors (for a CUDA device).
    seed : int, default=0
        Seeds the workers (their numpy, random and torch generators).
    """

    def __init__(self, num_workers=0, pin_memory=False, seed=0):
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed

    def __call__(self, data, batches):
        batches = list(batches)
        if not self.num_workers and not self.pin_memory:
            for batch in batches:
                rows, local = flatten(batch)
                yield data.take(rows), local
            return
        loader = torch.utils.data.DataLoader(
            _Batches(data, batches),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=_seed_worker if self.num_workers else None,
            # The workers' base seed; without a generator the loader would draw it
            # from the global torch generator and change the dropout that follows.
            generator=torch.Generator().manual_seed(self.seed),
        )
        for batch, decoded in zip(batches, loader):
            if isinstance(decoded, _Failure):
                raise ValueError(decoded.message)
            rows, local = flatten(batch)
            with replaying(decoded):
                yield data.take(rows), local
