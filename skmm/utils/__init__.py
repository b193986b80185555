"""Utilities shared by skmm's estimators.

The device helpers need torch; they are imported on first use, so that importing the
torch-free parts of skmm (``skmm.fusion``, ``skmm.inspection``) does not import torch.
"""

import importlib

__all__ = ["DeviceWarning", "available_device", "resolve_device"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("._torch", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
