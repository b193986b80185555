"""Utilities shared by skmm's estimators.

The device helpers need torch; they are imported on first use, so that importing the
torch-free parts of skmm (``skmm.fusion``, ``skmm.inspection``) does not import torch.
"""

import importlib

# Public name -> the private module defining it, imported on first use.
_MODULES = {
    "DeviceWarning": "._torch",
    "EmbeddingMemory": "._cache",
    "Modality": "._composition",
    "ModalityLayout": "._composition",
    "available_device": "._torch",
    "map_partitions": "._dask",
    "resolve_device": "._torch",
}
__all__ = sorted(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
