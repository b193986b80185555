"""Modality encoders: scikit-learn transformers backed by PyTorch."""

from ._audio import AudioEncoder
from ._features import AudioFeatures
from ._image import ImageEncoder
from ._text import TextEncoder
from ._video import VideoEncoder

__all__ = [
    "AudioEncoder",
    "AudioFeatures",
    "ImageEncoder",
    "TextEncoder",
    "VideoEncoder",
]
