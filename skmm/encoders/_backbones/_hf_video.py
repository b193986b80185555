"""Hugging Face video models (``VideoEncoder("hf:<id or folder>")``): VideoMAE-style.

A checkpoint whose config has ``num_frames`` (VideoMAE, TimeSformer, ViViT) takes a
whole clip; any other one is an image model, whose frames go through
:class:`~skmm.encoders.ImageEncoder`'s ``"hf:"`` adapter. See
:mod:`._torchvision_video` for what a video adapter gives.
"""

import torch

from ._base import FreezableMixin
from ._hf import HFBackbone, HFImageBackbone, hf_image_preprocessing


class HFVideoTower(FreezableMixin, torch.nn.Module):
    """A Hugging Face video model over clips ``(n, C, T, H, W)``.

    The model takes ``(n, T, C, H, W)``; features are its ``pooler_output`` when it
    has one, else the mean of ``last_hidden_state`` over the tokens.
    """

    def __init__(self, model, out_features):
        super().__init__()
        self.backbone = HFImageBackbone(model)
        self.out_features = out_features

    def forward(self, x):
        return self.backbone(x.transpose(1, 2))


class HFVideoBackbone(HFBackbone):
    """An ``AutoModel`` of a video checkpoint and its image processor's preprocessing.

    The weights rule is :class:`HFBackbone`'s (the checkpoint's, or random ones from
    its config with ``weights=None``); the model takes exactly its config's
    ``num_frames`` frames.
    """

    modalities = frozenset({"video"})

    def video_preprocessing(self):
        n_frames = getattr(self.config, "num_frames", None)
        if n_frames is None:
            return None
        return dict(
            hf_image_preprocessing(self.processor),
            n_frames=n_frames,
            exact_frames=True,
            min_size=(1, 1),
        )

    def video_tower(self, encoder, pretrained):
        model = self._model(pretrained)
        return HFVideoTower(model, model.config.hidden_size)
