"""The fusion operators against small examples computed by hand, on numpy and torch."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose

from skmm.fusion import (
    ELEMENTWISE,
    FUSION_OPERATORS,
    fuse,
    fuse_concat,
    fuse_max,
    fuse_mean,
    fuse_product,
    fuse_sum,
    fuse_tensor,
    tensor_width,
)

# Two samples, two modalities of width 2: a = [[1, 2], [3, 4]], b = [[5, -1], [0, 2]].
A = [[1.0, 2.0], [3.0, 4.0]]
B = [[5.0, -1.0], [0.0, 2.0]]

# Each case: operator, weights, the result worked out by hand.
CASES = [
    (fuse_concat, None, [[1, 2, 5, -1], [3, 4, 0, 2]]),
    (fuse_concat, [2.0, 0.5], [[2, 4, 2.5, -0.5], [6, 8, 0, 1]]),
    (fuse_sum, None, [[6, 1], [3, 6]]),
    # 2 * a + 0.5 * b
    (fuse_sum, [2.0, 0.5], [[4.5, 3.5], [6, 9]]),
    (fuse_mean, None, [[3, 0.5], [1.5, 3]]),
    # (3 * a + 1 * b) / 4
    (fuse_mean, [3.0, 1.0], [[2, 1.25], [2.25, 3.5]]),
    (fuse_product, None, [[5, -2], [0, 8]]),
    (fuse_max, None, [[5, 2], [3, 4]]),
]


def _to(kind, rows):
    array = np.asarray(rows, dtype=np.float64)
    return torch.from_numpy(array) if kind == "torch" else array


def _np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize(
    "operator, weights, expected",
    CASES,
    ids=[f"{op.__name__}-{w}" for op, w, _ in CASES],
)
def test_operator_by_hand(kind, operator, weights, expected):
    out = operator([_to(kind, A), _to(kind, B)], weights)
    assert isinstance(out, torch.Tensor if kind == "torch" else np.ndarray)
    assert_allclose(_np(out), expected)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_tensor_fusion_by_hand(kind):
    # [1, z1] outer [1, z2], flattened row-major: 1, z2 ..., z1, z1 * z2 ...
    a = _to(kind, [[2.0], [-1.0]])
    b = _to(kind, [[3.0, 5.0], [4.0, 0.5]])
    expected = [[1, 3, 5, 2, 6, 10], [1, 4, 0.5, -1, -4, -0.5]]
    assert_allclose(_np(fuse_tensor([a, b])), expected)
    # Weights scale each z before the product: z1 -> 2 z1, z2 -> 0.5 z2.
    weighted = [[1, 1.5, 2.5, 4, 6, 10], [1, 2, 0.25, -2, -4, -0.5]]
    assert_allclose(_np(fuse_tensor([a, b], [2.0, 0.5])), weighted)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_tensor_fusion_three_blocks(kind):
    a, b, c = _to(kind, [[2.0]]), _to(kind, [[3.0]]), _to(kind, [[5.0]])
    # [1, a] x [1, b] x [1, c]: 1, c, b, bc, a, ac, ab, abc
    assert_allclose(_np(fuse_tensor([a, b, c])), [[1, 5, 3, 15, 2, 10, 6, 30]])
    assert tensor_width([1, 1, 1]) == 8
    assert tensor_width([8, 8]) == 81
    assert tensor_width([2, 3, 4]) == 3 * 4 * 5


def test_tensor_width_matches_output():
    blocks = [np.ones((4, w)) for w in (2, 3, 1)]
    assert fuse_tensor(blocks).shape == (4, tensor_width([2, 3, 1]))


# fuse(name) on A and B with weights 2 and 0.5, each worked out by hand (product and
# max take no weights).
BY_NAME = {
    "concat": [[2, 4, 2.5, -0.5], [6, 8, 0, 1]],
    "sum": [[4.5, 3.5], [6, 9]],
    "weighted": [[4.5, 3.5], [6, 9]],
    "mean": [[1.8, 1.4], [2.4, 3.6]],
    "product": [[5, -2], [0, 8]],
    "max": [[5, 2], [3, 4]],
    # [1, 2a] outer [1, 0.5b], flattened: row 0 is [1, 2, 4] x [1, 2.5, -0.5].
    "tensor": [[1, 2.5, -0.5, 2, 5, -1, 4, 10, -2], [1, 0, 1, 6, 0, 6, 8, 0, 8]],
}


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("fusion", sorted(FUSION_OPERATORS))
def test_fuse_by_name_by_hand(fusion, kind):
    assert set(BY_NAME) == set(FUSION_OPERATORS)
    a, b = _to(kind, A), _to(kind, B)
    weights = None if fusion in ("product", "max") else [2.0, 0.5]
    out = fuse([a, b], fusion, weights)
    assert type(out) is type(a)
    assert_allclose(np.asarray(out), BY_NAME[fusion])


def test_weighted_is_the_weighted_sum():
    a, b = np.asarray(A), np.asarray(B)
    assert_allclose(fuse([a, b], "weighted", [2.0, 0.5]), [[4.5, 3.5], [6, 9]])
    assert ELEMENTWISE == {"sum", "mean", "weighted", "product", "max"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fusion", sorted(FUSION_OPERATORS))
def test_numpy_dtype_is_kept(fusion, dtype):
    blocks = [np.asarray(A, dtype=dtype), np.asarray(B, dtype=dtype)]
    assert fuse(blocks, fusion).dtype == dtype


@pytest.mark.parametrize("fusion", sorted(FUSION_OPERATORS))
def test_torch_gradients_flow(fusion):
    a = torch.tensor(A, requires_grad=True)
    b = torch.tensor(B, requires_grad=True)
    fuse([a, b], fusion).sum().backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad.shape == a.shape


def test_torch_gradient_of_product_by_hand():
    a = torch.tensor(A, requires_grad=True)
    b = torch.tensor(B, requires_grad=True)
    fuse_product([a, b]).sum().backward()
    # d(sum a * b)/da = b and d/db = a.
    assert_allclose(a.grad.numpy(), B)
    assert_allclose(b.grad.numpy(), A)


def test_single_block():
    a = np.asarray(A)
    for fusion in ("concat", "sum", "mean", "product", "max"):
        assert_allclose(fuse([a], fusion), a)
    assert_allclose(fuse_tensor([a]), [[1, 1, 2], [1, 3, 4]])


def test_concat_of_sparse_blocks_is_sparse():
    a = sp.csr_matrix(np.asarray([[0.0, 2.0], [1.0, 0.0]]))
    b = np.asarray([[5.0], [6.0]])
    out = fuse_concat([a, b], [3.0, 1.0])
    assert sp.issparse(out) and out.format == "csr"
    assert_allclose(out.toarray(), [[0, 6, 5], [3, 0, 6]])


def test_concat_widths_may_differ_elementwise_may_not():
    a, c = np.ones((2, 2)), np.ones((2, 3))
    assert fuse_concat([a, c]).shape == (2, 5)
    for fusion in sorted(ELEMENTWISE):
        with pytest.raises(ValueError, match=r"one width; got widths \[2, 3\]"):
            fuse([a, c], fusion)


def test_block_checks():
    with pytest.raises(ValueError, match="at least one block"):
        fuse_sum([])
    with pytest.raises(ValueError, match=r"block 1 has shape \(3, 2\)"):
        fuse_concat([np.ones((2, 2)), np.ones((3, 2))])
    with pytest.raises(ValueError, match=r"2-D with 2 rows; block 1 has shape \(2,\)"):
        fuse_concat([np.ones((2, 2)), np.ones(2)])
    with pytest.raises(ValueError, match="got 1 weights for 2 blocks"):
        fuse_sum([np.ones((2, 2))] * 2, [1.0])
    with pytest.raises(ValueError, match="weights sum to zero"):
        fuse_mean([np.ones((2, 2))] * 2, [0.0, 0.0])
    with pytest.raises(ValueError, match="unknown fusion 'attention'"):
        fuse([np.ones((2, 2))], "attention")
