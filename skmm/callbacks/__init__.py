"""Callbacks of the training loop shared by the encoders, the nets and the matcher."""

from ._callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "LRScheduler"]
