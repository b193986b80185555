"""Fusion of modalities: feature level (MultimodalFuser) and decision level."""

from ._fuser import MultimodalFuser, make_fuser
from ._late import LateFusionClassifier, LateFusionRegressor
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
    "LateFusionClassifier",
    "LateFusionRegressor",
    "MultimodalFuser",
    "fuse",
    "fuse_concat",
    "fuse_max",
    "fuse_mean",
    "fuse_product",
    "fuse_sum",
    "fuse_tensor",
    "make_fuser",
    "tensor_width",
]
