"""torchvision's video models by name (``VideoEncoder("r3d_18")``), classifier removed.

The video adapters serve :class:`~skmm.encoders.VideoEncoder`'s clip models, which
take a whole clip ``(n, C, T, H, W)`` rather than one frame at a time, with:

- ``video_preprocessing()`` -> dict: the frame preprocessing the weights fix
  (``image_size``, ``resize_size``, ``interpolation``, ``mean``, ``std``), the clip
  length the model takes (``n_frames``, ``exact_frames``: exactly or at least) and
  its smallest frame (``min_size``); None when the model turns out to be an image
  model (an ``"hf:"`` checkpoint without ``num_frames``), whose frames go through
  :class:`~skmm.encoders.ImageEncoder`'s adapter instead;
- ``video_tower(encoder, pretrained)`` -> a module with ``out_features``.
"""

import functools

import torch

from ._base import Backbone, ModuleTower, load_into, strip_classifier
from ._torchvision import torchvision_state_dict, torchvision_weights


@functools.cache
def torchvision_video_models():
    """The names of torchvision's video models (r3d_18, s3d, mvit_v2_s, swin3d_t...)."""
    from torchvision import models

    return frozenset(models.list_models(module=models.video))


def _strip_video_classifier(model, name):
    """Remove a torchvision video model's classifier; return its feature width."""
    if name == "s3d":
        # S3D classifies with a 1x1x1 convolution, then averages over time and space.
        width = model.classifier[-1].in_channels
        model.classifier = torch.nn.Identity()
        return width
    return strip_classifier(model, name)


class TorchvisionVideoBackbone(Backbone):
    """A torchvision video model; ``weights`` a torchvision weights name or a file.

    The names are architectures: ``weights="auto"`` is random, ``"DEFAULT"`` or a
    name such as ``"KINETICS400_V1"`` the pretrained set. The frames are prepared as
    the weights' ``transforms()`` prepares them; random or file weights keep the
    architecture's (its default weights') preprocessing. A weights file holds the
    model's state dict or a fitted encoder's whole ``module_``.
    """

    hub = "torchvision"
    modalities = frozenset({"video"})
    weights_names = True

    def _resolve(self, encoder):
        from torchvision.models import get_model_weights

        if self.name not in torchvision_video_models():
            raise ValueError(
                f"backbone={self.name!r} is not a torchvision video model; see "
                "torchvision.models.list_models(module=torchvision.models.video)."
            )
        named = self.source is not None and not self.from_file
        if named:
            preset = torchvision_weights(self.name, self.source[1])
            self.identity = ["torchvision", self.name, self.source[1]]
        else:
            preset = get_model_weights(self.name).DEFAULT
        transform = preset.transforms()
        self._preprocessing = dict(
            image_size=tuple(transform.crop_size),
            resize_size=list(transform.resize_size),
            interpolation=transform.interpolation.value,
            mean=transform.mean,
            std=transform.std,
            n_frames=preset.meta.get("min_temporal_size", 1),
            # MViT's position embeddings fix its clip length.
            exact_frames=self.name.startswith("mvit"),
            min_size=tuple(preset.meta.get("min_size", (1, 1))),
        )

    def video_preprocessing(self):
        return dict(self._preprocessing)

    def video_tower(self, encoder, pretrained):
        from torchvision.models import get_model

        model = get_model(self.name, weights=None)
        # A video model over whole clips (n, C, T, H, W), its output flattened.
        tower = ModuleTower(model, _strip_video_classifier(model, self.name))
        if pretrained and self.from_file:
            state = self.take_file_state()
            # A fitted encoder's module_, or the model's own state dict.
            whole = any(k.startswith("backbone.") for k in state)
            load_into(tower if whole else model, state, self.source[1])
        elif pretrained and self.source is not None:
            weights = self.source[1]
            state = torchvision_state_dict(torchvision_weights(self.name, weights))
            load_into(model, state, weights)
        return tower
