"""skmm: scikit-learn estimators for multimodal learning (images, text, audio, tables)."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
