"""A user's ``torch.nn.Module`` as the backbone of any encoder."""

import copy

import torch

from ._base import IMAGENET_MEAN, IMAGENET_STD, Backbone, ModuleTower, output_width


class ModuleBackbone(Backbone):
    """A module passed as ``backbone=``: copied at each build, its output flattened.

    The module stays the encoder's parameter (the adapter keeps no reference to it);
    its weights are its own, or those of a state dict file. An image module with a
    weights file is taken as pretrained on ImageNet (its normalisation).
    """

    hub = "module"
    modalities = frozenset({"image", "text", "audio"})
    uses_vocabulary = True

    def image_preprocessing(self):
        if not self.pretrained:
            return {}
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "n_channels": 3}

    def _copy(self, encoder, pretrained):
        module = copy.deepcopy(encoder.backbone)
        if pretrained and self.from_file:
            self.load_file(module)
        return module

    def image_backbone(self, encoder, pretrained):
        module = self._copy(encoder, pretrained)
        blank = torch.zeros(1, encoder.n_channels_, *encoder.image_size_)
        return module, output_width(module, blank)

    def text_tower(self, encoder, pretrained):
        module = self._copy(encoder, pretrained)
        token = torch.ones(1, 1, dtype=torch.long)
        return ModuleTower(module, output_width(module, token))

    def audio_tower(self, encoder, pretrained):
        module = self._copy(encoder, pretrained)
        silence = torch.zeros(1, encoder._n_samples())
        return ModuleTower(module, output_width(module, silence))
