"""open_clip models (``backbone="open_clip:<architecture>"``): CLIP's image and text towers."""

import torch

from ...utils._torch_compat import open_clip_architecture, open_clip_preprocess_cfg
from ._base import (
    DEFAULT_WEIGHTS,
    Backbone,
    FreezableMixin,
    offline_hint,
    optional_import,
    output_width,
)


class OpenClipTextTower(FreezableMixin, torch.nn.Module):
    """The text tower of an open_clip model (``encode_text``, unnormalised)."""

    def __init__(self, model, out_features):
        super().__init__()
        self.model = model
        self.out_features = out_features

    def forward(self, ids):
        return self.model.encode_text(ids)


class OpenClipBackbone(Backbone):
    """One tower of an open_clip model; weights an open_clip pretrained tag or a file.

    A tag's weights are read at :meth:`resolve` (by open_clip, with
    ``weights_only=True``) and handed to the first build; its config decides the
    preprocessing and the activation (QuickGELU for OpenAI's weights). The model's
    ``logit_scale`` (CLIP's 1 / temperature) is kept as :attr:`logit_scale`, which a
    matcher on the two aligned towers starts from.
    """

    hub = "open_clip"
    modalities = frozenset({"image", "text"})
    weights_names = True

    def __init__(self, name, weights, modality):
        super().__init__(name, weights, modality)
        self.tag = None
        self.quick_gelu = False

    def _open_clip(self):
        return optional_import("open_clip", f"backbone='open_clip:{self.name}'", "clip")

    def _resolve(self, encoder):
        open_clip = self._open_clip()
        if self.name not in open_clip.list_models():
            raise ValueError(
                f"backbone='open_clip:{self.name}' is not an open_clip architecture; "
                "see open_clip.list_models()."
            )
        tag_cfg = None
        if self.from_file:
            scale = self.file_state().get("logit_scale")
            self.logit_scale = None if scale is None else float(scale.exp())
        elif self.source is not None:
            tags = [t for arch, t in open_clip.list_pretrained() if arch == self.name]
            weights = self.source[1]
            self.tag = tags[0] if weights == DEFAULT_WEIGHTS and tags else weights
            if self.tag not in tags:
                raise ValueError(
                    f"weights={weights!r} is neither a file nor an open_clip "
                    f"pretrained tag of {self.name!r}; available tags: {tags}."
                )
            tag_cfg = open_clip.get_pretrained_cfg(self.name, self.tag)
            self.quick_gelu = bool(tag_cfg.get("quick_gelu", False))
            self.identity = ["open_clip", self.name, self.tag]
            self._model = self._pretrained_model(open_clip)
            self.logit_scale = float(self._model.logit_scale.detach().exp())
        model_cfg, cfg = open_clip_preprocess_cfg(open_clip, self.name, tag_cfg)
        if self.modality == "text":
            self.processor = open_clip.get_tokenizer(self.name)
            return
        size = model_cfg.get("vision_cfg", {}).get("image_size", cfg["size"])
        size = (size, size) if isinstance(size, int) else tuple(size)
        squash = cfg.get("resize_mode") == "squash"
        self._preprocessing = dict(
            image_size=size,
            resize_size=list(size) if squash else [min(size)],
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=cfg["mean"],
            std=cfg["std"],
            n_channels=3,
        )

    def _pretrained_model(self, open_clip):
        try:
            return open_clip.create_model(
                self.name,
                pretrained=self.tag,
                weights_only=True,
                require_pretrained=True,
                force_quick_gelu=self.quick_gelu,
            )
        except (OSError, RuntimeError) as exc:
            raise OSError(
                offline_hint(
                    f"the open_clip weights {self.name!r}/{self.tag!r} ({exc})",
                    "copy the checkpoint file here and pass its path as weights=.",
                )
            ) from exc

    def _clip(self, pretrained):
        """The whole CLIP model: the architecture, or with its initial weights."""
        if pretrained and self.tag is not None:
            model = self.__dict__.pop("_model", None)
            return self._pretrained_model(self._open_clip()) if model is None else model
        model = open_clip_architecture(self._open_clip(), self.name, self.quick_gelu)
        if pretrained and self.from_file:
            self.load_file(model)
        return model

    def image_preprocessing(self):
        return dict(self._preprocessing)

    def image_backbone(self, encoder, pretrained):
        visual = self._clip(pretrained).visual
        blank = torch.zeros(1, encoder.n_channels_, *encoder.image_size_)
        return visual, output_width(visual, blank)

    def text_tower(self, encoder, pretrained):
        model = self._clip(pretrained)
        model.visual = None  # the text tower only: a smaller pickle
        with torch.no_grad():
            probe = torch.zeros(1, model.context_length, dtype=torch.long)
            width = model.encode_text(probe).shape[1]
        return OpenClipTextTower(model, width)

    def text_input(self, encoder, texts):
        return self.processor(texts)
