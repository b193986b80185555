"""torchvision models by name (``backbone="resnet18"``), their classifier removed."""

import os
from urllib.parse import urlparse

import torch

from ...utils._torch_compat import torch_hub_hash_prefix
from ._base import (
    DEFAULT_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    load_into,
    offline_hint,
    read_weights_file,
    strip_classifier,
)


def torchvision_weights(name, weights):
    """The torchvision weights enum member ``weights`` of model ``name``."""
    from torchvision.models import get_model_weights, get_weight

    enum = get_model_weights(name)
    try:
        if "." in weights:
            return get_weight(weights)
        return enum[weights]
    except (KeyError, ValueError):
        names = [DEFAULT_WEIGHTS] + [m.name for m in enum]
        raise ValueError(
            f"weights={weights!r} is neither a file nor a weights name of {name!r}; "
            f"available names: {names}."
        ) from None


def torchvision_state_dict(weights):
    """Download ``weights`` with torch.hub (if not cached) and read them as tensors.

    torchvision's own ``get_state_dict`` unpickles the file with torch.hub's
    ``load_state_dict_from_url``; here the file is only downloaded by torch.hub and
    read by :func:`read_weights_file`.
    """
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, os.path.basename(urlparse(weights.url).path))
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        try:
            torch.hub.download_url_to_file(
                weights.url,
                path,
                torch_hub_hash_prefix(os.path.basename(path)),
                progress=False,
            )
        except (OSError, RuntimeError) as exc:
            raise OSError(
                offline_hint(
                    f"the {weights} weights from {weights.url} ({exc})",
                    f"download that file elsewhere and put it at {path!r}, or "
                    "pass its path as weights=.",
                )
            ) from exc
    return read_weights_file(path)


class TorchvisionBackbone(Backbone):
    """A torchvision model name; ``weights`` a torchvision weights name or a file.

    Named weights bring their own preprocessing (``weights.transforms()``); a
    weights file is taken as pretrained on ImageNet (its normalisation).
    """

    hub = "torchvision"
    modalities = frozenset({"image"})
    weights_names = True

    def _resolve(self, encoder):
        from torchvision.models import list_models

        if self.name not in list_models():
            raise ValueError(
                f"backbone={self.name!r} is not a torchvision model name; see "
                "torchvision.models.list_models(), or use 'cnn', "
                "'efficientnet_lite0', 'timm:', 'hf:' or 'open_clip:' backbones."
            )
        self._preprocessing = {"n_channels": 3}
        if self.from_file:
            self._preprocessing.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        elif self.source is not None:
            preset = torchvision_weights(self.name, self.source[1]).transforms()
            crop = list(preset.crop_size)
            self._preprocessing.update(
                image_size=tuple(crop * (2 // len(crop))),
                resize_size=list(preset.resize_size),
                interpolation=preset.interpolation.value,
                mean=preset.mean,
                std=preset.std,
            )
            self.identity = ["torchvision", self.name, self.source[1]]

    def image_preprocessing(self):
        return dict(self._preprocessing)

    def image_backbone(self, encoder, pretrained):
        from torchvision.models import get_model

        model = get_model(self.name, weights=None)
        width = strip_classifier(model, self.name)
        if pretrained and self.from_file:
            self.load_file(model)
        elif pretrained and self.source is not None:
            weights = self.source[1]
            state = torchvision_state_dict(torchvision_weights(self.name, weights))
            load_into(model, state, weights)
        return model, width
