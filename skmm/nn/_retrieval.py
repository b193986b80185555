"""Retrieval over a matcher's embeddings: an index computed once, the top-k merge.

:meth:`~skmm.nn.MultimodalMatcher.kneighbors` embeds the queries, then reads the
candidates a chunk at a time (from an :class:`EmbeddingIndex`, or embedded on the
fly) and keeps each query's best ones: memory is bounded by the queries and a chunk,
not by the catalogue.
"""

import mmap

import numpy as np

__all__ = ["EmbeddedChunks", "EmbeddingIndex", "nearest"]

# Candidates embedded (or read from an index) per chunk in kneighbors, and the largest
# block of similarities computed at once: 2**21 float32 values, 8 MB (with the
# argpartition indices and the merge, about 40 MB at peak), whatever the catalogue.
_CHUNK_SIZE = 8192
_BLOCK_SIZE = 2**21


class EmbeddingIndex:
    """Embeddings of one side's items, computed once and searched many times.

    :meth:`~skmm.nn.MultimodalMatcher.kneighbors` takes it in place of the items: a
    catalogue's titles (or photos) are then embedded once, not at every search.

    Parameters
    ----------
    embeddings : array-like of shape (n_items, n_embedding)
        L2-normalised embeddings, as :meth:`~skmm.nn.MultimodalMatcher.embed` returns them.
        A ``numpy.memmap`` (from ``np.save`` then ``np.load(..., mmap_mode="r")``)
        is read a chunk at a time, so a catalogue larger than memory can be searched.
    side : str
        Name of the matcher's encoder that embedded them.

    Attributes
    ----------
    embeddings : ndarray or memmap of shape (n_items, n_embedding)
        The embeddings, as given (not copied).
    side : str
        The encoder's name.

    See Also
    --------
    MultimodalMatcher.embed : Compute the embeddings.
    MultimodalMatcher.kneighbors : Search them.

    Notes
    -----
    Each chunk's rows are checked to have unit norm when searched: raw tower
    features or embeddings of another matcher of another width are refused, but
    embeddings of another matcher with the same width cannot be told apart.

    A memory-mapped file that shrinks after it was mapped (truncated, or rewritten
    by a writer that truncates first) would kill the process when a row past its
    end is read (SIGBUS). The index checks, when built and before reading each
    chunk, that the file still holds the rows it maps, and raises a ``ValueError``
    otherwise. What cannot be checked: a file that shrinks between that check and
    the read (a writer working at the same time), and a file rewritten in place
    with the same size (its rows change under the index; the norm check catches
    only rows that are no longer embeddings). Write a new index to a new file and
    rename it over the old one: a reader keeps the file it mapped.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.nn import EmbeddingIndex, MultimodalMatcher
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(300, 3))
    >>> X = np.hstack([latent @ rng.normal(size=(3, 5)), latent @ rng.normal(size=(3, 4))])
    >>> matcher = MultimodalMatcher(
    ...     [("a", "passthrough", slice(0, 5)), ("b", "passthrough", slice(5, 9))],
    ...     embedding_dim=8, batch_size=32, max_epochs=5, random_state=0,
    ...     device="cpu",
    ... ).fit(X)
    >>> index = EmbeddingIndex(matcher.embed(X[:, 5:], side="b"), side="b")
    >>> matcher.kneighbors(X[:2, :5], index, n_neighbors=3).shape
    (2, 3)
    """

    def __init__(self, embeddings, side):
        if not hasattr(embeddings, "shape") or not hasattr(embeddings, "dtype"):
            embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
            raise ValueError(
                "EmbeddingIndex takes a 2-D float array of embeddings (one row per "
                f"item); got shape {embeddings.shape} and dtype {embeddings.dtype}."
            )
        if len(embeddings) == 0:
            raise ValueError("EmbeddingIndex got 0 embeddings; at least one is needed.")
        if not isinstance(side, str):
            raise TypeError(
                f"side must be the name of the encoder (a str); got {side!r}."
            )
        self.embeddings = embeddings
        self.side = side
        self._check_mapped(embeddings)

    def __len__(self):
        return len(self.embeddings)

    def __repr__(self):
        n, d = self.embeddings.shape
        return f"EmbeddingIndex(<{n} x {d} embeddings>, side={self.side!r})"

    def _check_mapped(self, rows):
        """Raise if ``rows`` lie past the end of the file they are mapped from."""
        mapped = _mapped_file(rows)
        if mapped is None:
            return
        filename, size, needed = mapped
        if size < needed:
            raise ValueError(
                f"the EmbeddingIndex of {self.side!r} is memory-mapped from "
                f"{filename!r}, which now holds {size} bytes where the index "
                f"needs {needed}: the file shrank after it was mapped (truncated "
                "or being rewritten), and reading past its end would kill the "
                "process. Load the index again once the file is complete."
            )

    def _chunks(self):
        for start in range(0, len(self), _CHUNK_SIZE):
            rows = self.embeddings[start : start + _CHUNK_SIZE]
            self._check_mapped(rows)
            chunk = np.asarray(rows, dtype=np.float32)
            norms = np.linalg.norm(chunk, axis=1)
            bad = np.flatnonzero(~(np.abs(norms - 1) <= 1e-3))
            if len(bad):
                raise ValueError(
                    f"row {start + bad[0]} of the EmbeddingIndex of {self.side!r} has "
                    f"norm {norms[bad[0]]:.4g}, not 1: build the index from "
                    "MultimodalMatcher.embed, which L2-normalises the embeddings."
                )
            yield start, chunk


def _mapped_file(array):
    """``(file name, file size, bytes the array needs)`` for a view of a
    ``numpy.memmap`` (as ``np.load(..., mmap_mode="r")`` returns), else None."""
    root = array
    while isinstance(root, np.ndarray) and isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or not isinstance(root.base, mmap.mmap):
        return None
    if array.size == 0:
        return None
    # The file offset of the array's last byte, from the root's first byte (at
    # file offset root.offset); the mapping's own size is that of the file now.
    start = root.__array_interface__["data"][0]
    end = array.__array_interface__["data"][0] + array.itemsize
    end += sum((n - 1) * s for n, s in zip(array.shape, array.strides) if s > 0)
    try:
        size = root.base.size()
    except (OSError, ValueError):  # a closed mapping: nothing to check against
        return None
    return root.filename, size, root.offset + (end - start)


class EmbeddedChunks:
    """A validated column of one side's items, embedded a chunk at a time by
    ``embed(column, rows)``."""

    def __init__(self, embed, column):
        self.embed, self.column = embed, column

    def __len__(self):
        return len(self.column)

    def _chunks(self):
        for start in range(0, len(self), _CHUNK_SIZE):
            rows = np.arange(start, min(start + _CHUNK_SIZE, len(self)))
            yield start, self.embed(self.column, rows)


def top_k(block, k):
    """Column positions of each row's ``k`` largest values (unordered).

    ``np.argpartition`` (linear time) instead of a full sort; in the rare rows where
    values tied with the k-th straddle the cut, a stable sort keeps the first ones,
    so the result is that of sorting the whole row.
    """
    if k >= block.shape[1]:
        return np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
    best = np.argpartition(-block, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(block, best, 1).min(axis=1)
    tied = (block >= kth[:, None]).sum(axis=1) > k
    if tied.any():
        best[tied] = np.argsort(-block[tied], axis=1, kind="stable")[:, :k]
    return best


def nearest(zq, source, n_neighbors):
    """Each query's ``n_neighbors`` most similar candidates of ``source``.

    Parameters
    ----------
    zq : ndarray of shape (n_queries, n_embedding)
        The queries' embeddings.
    source : EmbeddingIndex or EmbeddedChunks
        The candidates, read a chunk at a time.
    n_neighbors : int
        Candidates kept per query.

    Returns
    -------
    similarity, indices : ndarray of shape (n_queries, n_neighbors)
        Best first; between equal similarities, the first candidate first.
    """
    similarity = np.full((len(zq), n_neighbors), -np.inf, dtype=np.float32)
    indices = np.zeros((len(zq), n_neighbors), dtype=np.intp)
    for start, zc in source._chunks():
        # A block of queries at a time bounds the similarity matrix in memory.
        step = max(1, _BLOCK_SIZE // len(zc))
        for q in range(0, len(zq), step):
            block = zq[q : q + step] @ zc.T
            best = top_k(block, min(n_neighbors, block.shape[1]))
            merged_sim = np.hstack(
                [similarity[q : q + step], np.take_along_axis(block, best, 1)]
            )
            merged_idx = np.hstack([indices[q : q + step], best + start])
            # Best first; between equal similarities, the first candidate.
            order = np.lexsort((merged_idx, -merged_sim), axis=1)[:, :n_neighbors]
            similarity[q : q + step] = np.take_along_axis(merged_sim, order, 1)
            indices[q : q + step] = np.take_along_axis(merged_idx, order, 1)
    return similarity, indices
