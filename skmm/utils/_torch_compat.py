"""The unexported parts of torch and the hub libraries that skmm relies on, in one place.

Each is used because no public API gives the same thing; when a library moves one,
this module is the only one to change. The hub libraries are imported only inside the
functions that need them (they are optional extras).
"""

import torch


def batch_norm_layer_types():
    """The base class of every batch-norm layer (1d, 2d, 3d, lazy, synchronised).

    torch exports the concrete classes only; the private base also covers third-party
    subclasses of it.
    """
    return (torch.nn.modules.batchnorm._BatchNorm,)


def torch_hub_hash_prefix(filename):
    """The hash prefix torch.hub reads from a checkpoint's file name, or None.

    torchvision names its weight files ``<name>-<first hex digits of sha256>.pth``;
    ``torch.hub.HASH_REGEX`` (undocumented) is the pattern torch.hub checks them by.
    """
    match = torch.hub.HASH_REGEX.search(filename)
    return match.group(1) if match else None


def hf_commit_hash(config):
    """The hub revision a Hugging Face config was loaded from, or None.

    transformers records it in the private ``_commit_hash`` (None for a local folder).
    """
    return getattr(config, "_commit_hash", None)


def open_clip_preprocess_cfg(open_clip, name, tag_cfg):
    """An open_clip architecture's image preprocessing, merged as ``create_model`` does.

    Defaults, then the architecture's config, then the pretrained tag's config
    (``tag_cfg``, a dict, or None), without building a model or downloading anything:
    open_clip exports no function for it (``get_model_preprocess_cfg`` needs a model),
    so its ``transform`` module's ``PreprocessCfg`` and ``merge_preprocess_dict`` are
    used.
    """
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    model_cfg = open_clip.get_model_config(name) or {}
    cfg = merge_preprocess_dict(
        asdict(PreprocessCfg()), model_cfg.get("preprocess_cfg", {})
    )
    if tag_cfg:
        cfg = merge_preprocess_dict(cfg, tag_cfg)
    return model_cfg, cfg


def open_clip_architecture(open_clip, name, quick_gelu):
    """An open_clip model with random weights, built with no download.

    ``create_model(name, pretrained=None)`` still fetches the pretrained text model of
    architectures with a Hugging Face text tower unless told not to: the keyword is
    ``pretrained_hf`` up to open_clip 2.x and is still accepted (as an alias of
    ``pretrained_text``) by 3.x.
    """
    return open_clip.create_model(
        name, pretrained=None, force_quick_gelu=quick_gelu, pretrained_hf=False
    )
