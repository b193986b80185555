"""End-to-end multimodal networks: encoder towers trained jointly through a fusion layer."""

from ._matcher import MultimodalMatcher
from ._net import MultimodalNetClassifier, MultimodalNetRegressor

__all__ = ["MultimodalMatcher", "MultimodalNetClassifier", "MultimodalNetRegressor"]
