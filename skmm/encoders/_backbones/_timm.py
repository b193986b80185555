"""timm models (``backbone="timm:<name>"``), created without their classifier."""

import math

from ._base import DEFAULT_WEIGHTS, Backbone, offline_hint, optional_import


def _timm(name):
    return optional_import("timm", f"backbone='timm:{name}'", "timm")


def timm_preprocessing(timm, pretrained_cfg):
    """The weights' own preprocessing, from a timm pretrained config (a dict)."""
    cfg = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg)
    size = tuple(cfg["input_size"][1:])
    crop_pct = cfg.get("crop_pct") or 1.0
    # timm's eval transform: resize to floor(size / crop_pct), then centre crop.
    scale = [math.floor(s / crop_pct) for s in size]
    return dict(
        image_size=size,
        resize_size=[scale[0]] if size[0] == size[1] else scale,
        interpolation=cfg.get("interpolation", "bilinear"),
        mean=cfg["mean"],
        std=cfg["std"],
        n_channels=3,
    )


class TimmBackbone(Backbone):
    """``timm.create_model(name, num_classes=0)``; weights a pretrained tag or a file.

    The preprocessing is that of the tag's pretrained config (the architecture's
    default one for random weights or a file).
    """

    hub = "timm"
    modalities = frozenset({"image"})
    weights_names = True

    def _tag(self):
        """The pretrained tag's full name (``name.tag``), or None."""
        if self.source is None or self.from_file:
            return None
        tag = self.source[1]
        return self.name if tag == DEFAULT_WEIGHTS else f"{self.name}.{tag}"

    def _resolve(self, encoder):
        timm = _timm(self.name)
        cfg = timm.models.get_pretrained_cfg(self._tag() or self.name)
        self._preprocessing = timm_preprocessing(timm, cfg.to_dict() if cfg else {})
        if self._tag() is not None:
            self.identity = ["timm", self.name, self.source[1]]

    def image_preprocessing(self):
        return dict(self._preprocessing)

    def image_backbone(self, encoder, pretrained):
        timm = _timm(self.name)
        full = self._tag() if pretrained else None
        try:
            model = timm.create_model(
                full or self.name, pretrained=full is not None, num_classes=0
            )
        except RuntimeError as exc:  # timm's "Unknown model", or a tag it lacks
            named = f", weights={self.source[1]!r}" if full else ""
            raise ValueError(f"backbone='timm:{self.name}'{named}: {exc}") from None
        except OSError as exc:
            raise OSError(
                offline_hint(
                    f"the timm weights {full!r} ({exc})",
                    "save the state dict elsewhere (safetensors.torch.save_file or "
                    "torch.save of model.state_dict()) and pass its path as weights=.",
                )
            ) from exc
        if pretrained and self.from_file:
            self.load_file(model)
        return model, model.num_features
