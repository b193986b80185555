"""End-to-end multimodal networks: encoder towers trained jointly through a fusion layer."""

from ._matcher import MultimodalMatcher
from ._net import MultimodalNetClassifier, MultimodalNetRegressor
from ._retrieval import EmbeddingIndex
from ._zeroshot import ZeroShotClassifier

__all__ = [
    "EmbeddingIndex",
    "MultimodalMatcher",
    "MultimodalNetClassifier",
    "MultimodalNetRegressor",
    "ZeroShotClassifier",
]
