"""Fusion operators, written once for numpy arrays and torch tensors.

Each operator takes a list of 2-D blocks, one per modality, of shape
``(n_samples, width_m)`` (all numpy arrays or all torch tensors) and returns one 2-D
block of the same kind. :class:`~skmm.fusion.MultimodalFuser` calls them on arrays and
:mod:`skmm.nn` on tensors inside the network, so both fuse in exactly the same way.

The element-wise operators (``sum``, ``mean``, ``weighted``, ``product``, ``max``)
need blocks of one width.
"""

import numpy as np
import scipy.sparse as sp


def _is_torch(blocks):
    return type(blocks[0]).__module__.startswith("torch")


def _xp(blocks):
    """The array namespace of the blocks: numpy, or torch."""
    if _is_torch(blocks):
        import torch

        return torch
    return np


def _check_blocks(blocks, same_width):
    if len(blocks) == 0:
        raise ValueError("fusion needs at least one block.")
    n = blocks[0].shape[0]
    for i, block in enumerate(blocks):
        if block.ndim != 2 or block.shape[0] != n:
            raise ValueError(
                f"fusion blocks must be 2-D with {n} rows; block {i} has shape "
                f"{tuple(block.shape)}."
            )
    if same_width:
        widths = [int(b.shape[1]) for b in blocks]
        if len(set(widths)) > 1:
            raise ValueError(
                f"element-wise fusion needs blocks of one width; got widths {widths}. "
                "Project them to a common width first."
            )


def _weights(blocks, weights):
    if weights is None:
        return [1.0] * len(blocks)
    if len(weights) != len(blocks):
        raise ValueError(f"got {len(weights)} weights for {len(blocks)} blocks.")
    return weights


def fuse_concat(blocks, weights=None):
    """Concatenate the blocks side by side, each scaled by its weight.

    Numpy blocks may include scipy sparse matrices (``TfidfVectorizer`` output): the
    result is then a sparse CSR matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_concat
    >>> fuse_concat([np.array([[1.0, 2.0]]), np.array([[3.0]])], weights=[1.0, 2.0])
    array([[1., 2., 6.]])
    """
    _check_blocks(blocks, same_width=False)
    xp = _xp(blocks)
    scaled = [b * w for b, w in zip(blocks, _weights(blocks, weights))]
    if any(sp.issparse(b) for b in scaled):
        return sp.hstack(scaled, format="csr")
    return xp.concatenate(scaled, 1) if xp is np else xp.cat(scaled, 1)


def fuse_sum(blocks, weights=None):
    """Element-wise (weighted) sum of blocks of one width.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_sum
    >>> fuse_sum([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])], weights=[1.0, 0.5])
    array([[2.5, 4. ]])
    """
    _check_blocks(blocks, same_width=True)
    out = blocks[0] * 0
    for block, weight in zip(blocks, _weights(blocks, weights)):
        out = out + block * weight
    return out


def fuse_mean(blocks, weights=None):
    """Element-wise mean (weighted mean, with weights) of blocks of one width.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_mean
    >>> fuse_mean([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])])
    array([[2., 3.]])
    """
    weights = _weights(blocks, weights)
    total = float(sum(weights))
    if total == 0:
        raise ValueError("the fusion weights sum to zero.")
    return fuse_sum(blocks, [w / total for w in weights])


def fuse_product(blocks, weights=None):
    """Element-wise product of blocks of one width (weights are ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_product
    >>> fuse_product([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])])
    array([[3., 8.]])
    """
    _check_blocks(blocks, same_width=True)
    out = blocks[0]
    for block in blocks[1:]:
        out = out * block
    return out


def fuse_max(blocks, weights=None):
    """Element-wise maximum of blocks of one width (weights are ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_max
    >>> fuse_max([np.array([[1.0, 5.0]]), np.array([[3.0, 4.0]])])
    array([[3., 5.]])
    """
    _check_blocks(blocks, same_width=True)
    xp = _xp(blocks)
    out = blocks[0]
    for block in blocks[1:]:
        out = xp.maximum(out, block)
    return out


def fuse_tensor(blocks, weights=None):
    """Tensor Fusion Network outer product of ``[1, z_m]`` over the modalities.

    Each block ``z_m`` of width ``d_m`` is extended with a constant 1, and the outer
    product of the extended blocks is flattened: the output width is
    ``prod(d_m + 1)``, so it keeps every single-modality feature, every pairwise
    product and so on (Zadeh et al., 2017). The width grows multiplicatively: project
    the blocks to a few dimensions first (3 blocks of 8 give 729 features). Weights
    scale each ``z_m`` before the product.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.fusion import fuse_tensor
    >>> fuse_tensor([np.array([[2.0]]), np.array([[3.0, 5.0]])])
    array([[ 1.,  3.,  5.,  2.,  6., 10.]])
    """
    _check_blocks(blocks, same_width=False)
    xp = _xp(blocks)
    out = None
    for block, weight in zip(blocks, _weights(blocks, weights)):
        n = block.shape[0]
        if xp is np:
            ext = np.concatenate(
                [np.ones((n, 1), dtype=block.dtype), block * weight], 1
            )
        else:
            ext = xp.cat([block.new_ones((n, 1)), block * weight], 1)
        out = ext if out is None else (out[:, :, None] * ext[:, None, :]).reshape(n, -1)
    return out


def tensor_width(widths):
    """Output width of :func:`fuse_tensor` for blocks of the given widths.

    Examples
    --------
    >>> from skmm.fusion import tensor_width
    >>> tensor_width([8, 8, 8])
    729
    """
    return int(np.prod([w + 1 for w in widths]))


FUSION_OPERATORS = {
    "concat": fuse_concat,
    "sum": fuse_sum,
    "mean": fuse_mean,
    "weighted": fuse_sum,
    "product": fuse_product,
    "max": fuse_max,
    "tensor": fuse_tensor,
}
"""Fusion name -> operator. ``"weighted"`` is the weighted sum; the names are those of
``MultimodalFuser(fusion=...)`` and ``skmm.nn`` (which adds learned ones)."""

ELEMENTWISE = frozenset({"sum", "mean", "weighted", "product", "max"})
"""Fusions that need blocks of one width."""


def fuse(blocks, fusion, weights=None):
    """Fuse blocks with the operator named ``fusion`` (a key of ``FUSION_OPERATORS``).

    Examples
    --------
    >>> import torch
    >>> from skmm.fusion import fuse
    >>> fuse([torch.ones(2, 3), torch.full((2, 3), 2.0)], "product")
    tensor([[2., 2., 2.],
            [2., 2., 2.]])
    """
    try:
        operator = FUSION_OPERATORS[fusion]
    except KeyError:
        raise ValueError(
            f"unknown fusion {fusion!r}; choose from {sorted(FUSION_OPERATORS)}."
        ) from None
    return operator(blocks, weights)
