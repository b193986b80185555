"""From a table to a model in one line: column kinds detected from the values, the
vectorizer that encodes every modality, and the learners built on it."""

from ._learner import MultimodalClassifier, MultimodalRegressor
from ._vectorizer import MultimodalVectorizer

__all__ = ["MultimodalClassifier", "MultimodalRegressor", "MultimodalVectorizer"]
