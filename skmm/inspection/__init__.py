"""Inspection of multimodal models: which modality decided, and how robust they are."""

from ._importance import modality_importance
from ._plot import (
    plot_modality_importance,
    plot_modality_shapley,
    plot_modality_waterfall,
)
from ._robustness import RobustnessDisplay, make_robustness_scorer, robustness_curve
from ._shapley import modality_shapley

__all__ = [
    "RobustnessDisplay",
    "make_robustness_scorer",
    "modality_importance",
    "modality_shapley",
    "plot_modality_importance",
    "plot_modality_shapley",
    "plot_modality_waterfall",
    "robustness_curve",
]
