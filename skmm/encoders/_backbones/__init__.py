"""Backbone adapters: one per hub, looked up from an encoder's ``backbone=``.

A ``backbone=`` is a built-in name (``"efficientnet_lite0"``; ``"cnn"``, ``"lstm"``,
``"gru"`` trained from scratch; ``"wordllama"``), a torchvision model name,
``"timm:<name>"``, ``"hf:<id or folder>"``, ``"open_clip:<architecture>"``, or a
``torch.nn.Module``; a clip model (modality ``"video"``) is a torchvision video model
name or ``"hf:<id or folder>"``. :func:`get_backbone` is the one place that maps it
to its :class:`Backbone` adapter; each hub's library is imported only when its adapter
builds or resolves something.
"""

import torch

from ._base import DEFAULT_WEIGHTS, Backbone
from ._efficientnet import EfficientNetLiteBackbone
from ._hf import HFBackbone
from ._hf_video import HFVideoBackbone
from ._module import ModuleBackbone
from ._open_clip import OpenClipBackbone
from ._scratch import ScratchBackbone
from ._timm import TimmBackbone
from ._torchvision import TorchvisionBackbone
from ._torchvision_video import TorchvisionVideoBackbone
from ._wordllama import WordLlamaBackbone

__all__ = ["DEFAULT_WEIGHTS", "Backbone", "get_backbone"]

# Built-in names, per modality.
_NAMES = {
    "image": {"efficientnet_lite0": EfficientNetLiteBackbone, "cnn": ScratchBackbone},
    "text": {
        "wordllama": WordLlamaBackbone,
        "lstm": ScratchBackbone,
        "gru": ScratchBackbone,
    },
    "audio": {"cnn": ScratchBackbone},
    "video": {},
}
# "<prefix>:<model name>" backbones, and a modality's own adapter for a prefix.
_PREFIXES = {"timm": TimmBackbone, "hf": HFBackbone, "open_clip": OpenClipBackbone}
_MODALITY_PREFIXES = {"video": {"hf": HFVideoBackbone}}
# Any other name is a torchvision model's (checked when resolved).
_FALLBACKS = {"image": TorchvisionBackbone, "video": TorchvisionVideoBackbone}


def get_backbone(backbone, modality, weights):
    """The adapter of ``backbone`` for ``modality`` (``"image"``, ``"text"``, ``"audio"``,
    ``"video"``).

    Parsing only: no library is imported and nothing is read. Raises ``ValueError``
    when the modality cannot use the backbone.
    """
    if isinstance(backbone, torch.nn.Module):
        return ModuleBackbone(None, weights, modality)
    prefixes = {**_PREFIXES, **_MODALITY_PREFIXES.get(modality, {})}
    prefix, colon, name = backbone.partition(":")
    if colon and prefix in prefixes:
        if not name:
            raise ValueError(
                f"backbone={backbone!r} names no model after {prefix + ':'!r}."
            )
        cls = prefixes[prefix]
    else:
        fallback = _FALLBACKS.get(modality)
        cls, name = _NAMES[modality].get(backbone, fallback), backbone
    if cls is None or modality not in cls.modalities:
        prefixes = [p for p, c in prefixes.items() if modality in c.modalities]
        article = "an" if modality[0] in "aeiou" else "a"
        raise ValueError(
            f"backbone={backbone!r} is not {article} {modality} backbone; use one of "
            f"{sorted(_NAMES[modality])}, a model name after "
            f"{', '.join(repr(p + ':') for p in prefixes)}, or a torch.nn.Module."
        )
    return cls(name, weights, modality)
