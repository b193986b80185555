"""skmm: scikit-learn estimators for multimodal learning (images, text, audio, tables).

The one-line API is importable from here (``from skmm import MultimodalClassifier``);
it is imported on first use, so ``import skmm`` stays light (no torch, no skrub).
"""

import importlib

__version__ = "0.1.0.dev0"

# Public name -> the subpackage defining it, imported on first use.
_LAZY = {
    "MultimodalClassifier": "skmm.auto",
    "MultimodalRegressor": "skmm.auto",
    "MultimodalVectorizer": "skmm.auto",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
