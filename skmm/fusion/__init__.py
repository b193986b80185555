"""Fusion of modalities: feature level (MultimodalFuser) and decision level."""

from ._ops import (
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

__all__ = [
    "ELEMENTWISE",
    "FUSION_OPERATORS",
    "fuse",
    "fuse_concat",
    "fuse_max",
    "fuse_mean",
    "fuse_product",
    "fuse_sum",
    "fuse_tensor",
    "tensor_width",
]
