"""Callbacks of the training loop shared by the encoders, the nets and the matcher."""

from ._callbacks import Callback, EarlyStopping, LRScheduler
from ._checkpoint import Checkpoint

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "LRScheduler"]
