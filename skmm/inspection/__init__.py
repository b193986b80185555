"""Inspection of multimodal models: how much each modality matters."""

from ._importance import modality_importance
from ._plot import plot_modality_importance

__all__ = ["modality_importance", "plot_modality_importance"]
