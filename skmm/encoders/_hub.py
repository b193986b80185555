"""Where a tower comes from: every hub and weights source, resolved in one place.

A ``backbone=`` is a small built-in net (``"cnn"``, ``"lstm"``, ``"gru"``), a torchvision
model name, ``"timm:<name>"``, ``"hf:<id or folder>"``, ``"open_clip:<architecture>"``,
``"wordllama"`` or a ``torch.nn.Module``. Each hub library is imported only when used
(an optional extra of skmm). Every weights file skmm reads itself is read as tensors
only (safetensors, or ``torch.load(..., weights_only=True)``); hub libraries are called
with their safe options (``trust_remote_code=False``, ``weights_only=True``).

This module also holds :class:`BackboneMixin`, what the three encoders share about
backbones: ``max_epochs="auto"``, which layers train (``train_layers``), the hooks the
nets call (``_frozen``, ``_configure_training``) and the embedding-cache fingerprint.
"""

import importlib
import importlib.util
import math
import os
import pickle
import socket
from urllib.parse import urlparse

import torch

# backbone prefix -> (module imported, extra that installs it)
_HUBS = {
    "timm": ("timm", "timm"),
    "hf": ("transformers", "hf"),
    "open_clip": ("open_clip", "clip"),
    "wordllama": ("wordllama", "wordllama"),
}
_PREFIXES = ("timm", "hf", "open_clip")
# What a backbone name means per modality (the torchvision names are images only).
_KINDS = {
    "image": {"cnn", "torchvision", "timm", "hf", "open_clip", "module"},
    "text": {"lstm", "gru", "hf", "open_clip", "wordllama", "module"},
    "audio": {"cnn", "hf", "module"},
}
# "weights" values that mean "the backbone's own pretrained weights".
DEFAULT_WEIGHTS = "DEFAULT"


def optional_import(kind, what):
    """Import the library of hub ``kind``, or say which extra installs it."""
    module, extra = _HUBS[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{what} needs the optional package {module!r}, which is not installed: "
            f"pip install 'skmm[{extra}]'"
        ) from None


def parse_backbone(backbone, modality):
    """Split ``backbone`` into ``(kind, name)``; raise if the modality cannot use it."""
    if isinstance(backbone, torch.nn.Module):
        return "module", backbone
    kind, name = backbone, None
    for prefix in _PREFIXES:
        if backbone.startswith(prefix + ":"):
            kind, name = prefix, backbone[len(prefix) + 1 :]
            if not name:
                raise ValueError(
                    f"backbone={backbone!r} names no model after {prefix + ':'!r}."
                )
    if kind not in _KINDS[modality] and modality == "image":
        kind, name = "torchvision", backbone
    if kind not in _KINDS[modality]:
        choices = sorted(_KINDS[modality] - {"module", "torchvision"})
        article = "an" if modality == "image" or modality == "audio" else "a"
        raise ValueError(
            f"backbone={backbone!r} is not {article} {modality} backbone; use one of "
            f"{choices} (prefixes 'timm:', 'hf:', 'open_clip:' followed by a model "
            "name), or a torch.nn.Module."
        )
    return kind, name


def is_weights_path(weights):
    """True when ``weights`` names a local file or folder rather than a weights name."""
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        os.path.sep in weights
        or os.path.exists(weights)
        or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


# -- reading weights files -------------------------------------------------------------
def read_weights_file(path):
    """Read a state dict from ``path`` as tensors only, never as code.

    A ``.safetensors`` file goes through safetensors; anything else through
    ``torch.load(..., weights_only=True)``. A file holding pickled Python objects (a
    whole ``nn.Module``, a malicious payload) raises ``ValueError``, unexecuted.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"weights file not found: {path!r}")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError) as exc:
            raise ValueError(
                f"cannot read weights file {path!r} as safetensors: {exc}"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"weights file {path!r} is not a plain state dict: it holds pickled "
                "Python objects (such as a whole torch.nn.Module), and skmm never "
                "unpickles code from a file. Save the tensors only: "
                "torch.save(model.state_dict(), path), or safetensors."
            ) from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise ValueError(f"cannot read weights file {path!r}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint (open_clip, Lightning)
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"weights file {path!r} does not hold a state dict (a mapping of names to "
            "tensors)."
        )
    # Checkpoints saved from DataParallel prefix every name with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_into(module, state, source):
    """Load ``state`` into ``module``; keys of a removed classifier are ignored."""
    expected = set(module.state_dict())
    extra = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(
            f"weights {os.fspath(source)!r} do not fit the backbone: missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{extra[:5]}{'...' if len(extra) > 5 else ''}."
        )
    try:
        module.load_state_dict({k: state[k] for k in expected})
    except RuntimeError as exc:
        raise ValueError(
            f"weights {os.fspath(source)!r} do not fit the backbone: {exc}"
        ) from None


def _offline_hint(what, how):
    return (
        f"could not get {what}, and this machine may have no internet access. "
        f"To work offline, {how}"
    )


# -- torchvision -------------------------------------------------------------------------
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
        match = torch.hub.HASH_REGEX.search(os.path.basename(path))
        try:
            torch.hub.download_url_to_file(
                weights.url, path, match.group(1) if match else None, progress=False
            )
        except (OSError, RuntimeError) as exc:
            raise OSError(
                _offline_hint(
                    f"the {weights} weights from {weights.url} ({exc})",
                    f"download that file elsewhere and put it at {path!r}, or "
                    "pass its path as weights=.",
                )
            ) from exc
    return read_weights_file(path)


def output_width(backbone, probe):
    """A backbone's output width: its ``out_features``, or that of its output on
    ``probe`` (one forward pass in eval mode, without gradients)."""
    width = getattr(backbone, "out_features", None)
    if width is None:
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            width = backbone(probe).flatten(1).shape[1]
        backbone.train(was_training)
    return int(width)


def strip_classifier(model, name):
    """Replace the last ``nn.Linear`` of a model by an identity; return its input width."""
    last = None
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = (path, module)
    if last is None:
        raise ValueError(
            f"backbone={name!r} has no final nn.Linear classifier to remove; pass the "
            "feature-extracting torch.nn.Module itself as backbone."
        )
    path, linear = last
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, torch.nn.Identity())
    return linear.in_features


# -- timm --------------------------------------------------------------------------------
def timm_model(name, weights):
    """A timm model without classifier: random, from a named tag, or from a file."""
    timm = optional_import("timm", f"backbone='timm:{name}'")
    if weights is None or is_weights_path(weights):
        try:
            model = timm.create_model(name, pretrained=False, num_classes=0)
        except RuntimeError as exc:  # timm's "Unknown model"
            raise ValueError(f"backbone='timm:{name}': {exc}") from None
        if weights is not None:
            load_into(model, read_weights_file(weights), weights)
        return model
    full = name if weights == DEFAULT_WEIGHTS else f"{name}.{weights}"
    try:
        return timm.create_model(full, pretrained=True, num_classes=0)
    except RuntimeError as exc:
        raise ValueError(
            f"backbone='timm:{name}', weights={weights!r}: {exc}"
        ) from None
    except OSError as exc:
        raise OSError(
            _offline_hint(
                f"the timm weights {full!r} ({exc})",
                "save the state dict elsewhere (safetensors.torch.save_file or "
                "torch.save of model.state_dict()) and pass its path as weights=.",
            )
        ) from exc


def timm_preprocessing(pretrained_cfg):
    """The weights' own preprocessing, from a timm pretrained config (a dict)."""
    timm = optional_import("timm", "a 'timm:' backbone")
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
    )


# -- Hugging Face ------------------------------------------------------------------------
def _hf_hint(name):
    return _offline_hint(
        f"the Hugging Face model {name!r}",
        "save it where internet works (AutoModel.from_pretrained(id)."
        "save_pretrained(folder), and the same for its tokenizer or processor), copy "
        "the folder here and pass backbone='hf:<folder>'.",
    )


def _hf_call(load, name, **kwargs):
    """``load(name, ...)``: a folder with no network; a hub id from the cache first."""
    local = os.path.isdir(name)
    if not local and (os.path.isabs(name) or name.startswith((".", "~"))):
        raise ValueError(f"backbone='hf:{name}': no such folder.")
    kwargs = dict(kwargs, trust_remote_code=False)
    try:
        return load(name, local_files_only=True, **kwargs)
    except OSError as exc:
        if local:
            raise ValueError(f"backbone='hf:{name}': {exc}") from None
    if not _hf_hub_reachable():
        raise OSError(f"{_hf_hint(name)} (the hub is unreachable or HF_HUB_OFFLINE)")
    try:
        return load(name, local_files_only=False, **kwargs)
    except OSError as exc:
        raise OSError(f"{_hf_hint(name)} ({exc})") from exc


def _hf_hub_reachable():
    """Whether the Hugging Face hub answers, checked in at most a few seconds.

    huggingface_hub retries a failed request five times with backoff (23 s): a
    machine with no network should hear so at once.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        host = urlparse(constants.ENDPOINT).hostname
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


_HF_PROCESSORS = {
    "text": "AutoTokenizer",
    "image": "AutoImageProcessor",
    "audio": "AutoFeatureExtractor",
}


def hf_parts(name, modality):
    """The config and the preprocessor (tokenizer, image processor, feature extractor)."""
    transformers = optional_import("hf", f"backbone='hf:{name}'")
    config = _hf_call(transformers.AutoConfig.from_pretrained, name)
    processor = _hf_call(
        getattr(transformers, _HF_PROCESSORS[modality]).from_pretrained, name
    )
    return config, processor


def hf_model(name, config, pretrained):
    """``AutoModel`` with the checkpoint's weights, or random ones from ``config``."""
    transformers = optional_import("hf", f"backbone='hf:{name}'")
    if not pretrained:
        return transformers.AutoModel.from_config(config)
    try:
        return _hf_call(transformers.AutoModel.from_pretrained, name)
    except pickle.UnpicklingError:
        raise ValueError(
            f"backbone='hf:{name}': its weights file holds pickled Python objects, "
            "and skmm never unpickles code from a file. Save the model as "
            "safetensors (save_pretrained does by default)."
        ) from None


def hf_image_preprocessing(processor):
    """Size, crop, interpolation and normalisation of a Hugging Face image processor."""
    size = dict(getattr(processor, "size", None) or {})
    crop = getattr(processor, "crop_size", None) if processor.do_center_crop else None
    if "height" in size:
        resize = [size["height"], size["width"]]
        image_size = tuple(resize)
    else:
        edge = size.get("shortest_edge", 224)
        crop_pct = getattr(processor, "crop_pct", None)
        resize = [int(edge / crop_pct) if crop_pct else edge]
        image_size = (crop["height"], crop["width"]) if crop else (edge, edge)
    if not processor.do_resize:
        resize = None
    if crop and "height" in size:
        image_size = (crop["height"], crop["width"])
    mean = processor.image_mean if processor.do_normalize else (0.0, 0.0, 0.0)
    std = processor.image_std if processor.do_normalize else (1.0, 1.0, 1.0)
    return dict(
        image_size=image_size,
        resize_size=resize,
        interpolation=_interpolation_name(getattr(processor, "resample", 2)),
        mean=mean,
        std=std,
    )


def _interpolation_name(resample):
    """A PIL resampling code (or torchvision mode) as a torchvision mode name."""
    value = getattr(resample, "value", resample)
    return {
        0: "nearest",
        2: "bilinear",
        "nearest": "nearest",
        "bilinear": "bilinear",
    }.get(value, "bicubic")


# -- open_clip ---------------------------------------------------------------------------
def open_clip_model(name, weights):
    """An open_clip model: random, an open_clip pretrained tag, or a local file."""
    open_clip = optional_import("open_clip", f"backbone='open_clip:{name}'")
    if name not in open_clip.list_models():
        raise ValueError(
            f"backbone='open_clip:{name}' is not an open_clip architecture; see "
            "open_clip.list_models()."
        )
    if weights is None or is_weights_path(weights):
        model = open_clip.create_model(name, pretrained=None)
        if weights is not None:
            load_into(model, read_weights_file(weights), weights)
        return model
    tags = [tag for arch, tag in open_clip.list_pretrained() if arch == name]
    tag = tags[0] if weights == DEFAULT_WEIGHTS and tags else weights
    if tag not in tags:
        raise ValueError(
            f"weights={weights!r} is neither a file nor an open_clip pretrained tag of "
            f"{name!r}; available tags: {tags}."
        )
    try:
        return open_clip.create_model(
            name, pretrained=tag, weights_only=True, require_pretrained=True
        )
    except (OSError, RuntimeError) as exc:
        raise OSError(
            _offline_hint(
                f"the open_clip weights {name!r}/{tag!r} ({exc})",
                "copy the checkpoint file here and pass its path as weights=.",
            )
        ) from exc


def open_clip_preprocessing(name, tag):
    """Size, interpolation and normalisation of an open_clip image tower.

    Merged as ``open_clip.create_model`` does: defaults, then the architecture's
    config, then the pretrained tag's; no model is built and nothing downloaded.
    """
    from dataclasses import asdict

    open_clip = optional_import("open_clip", f"backbone='open_clip:{name}'")
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    model_cfg = open_clip.get_model_config(name) or {}
    cfg = merge_preprocess_dict(
        asdict(PreprocessCfg()), model_cfg.get("preprocess_cfg", {})
    )
    if tag is not None:
        tags = [t for arch, t in open_clip.list_pretrained() if arch == name]
        tag = tags[0] if tag == DEFAULT_WEIGHTS and tags else tag
        cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(name, tag))
    size = model_cfg.get("vision_cfg", {}).get("image_size", cfg["size"])
    size = (size, size) if isinstance(size, int) else tuple(size)
    squash = cfg.get("resize_mode") == "squash"
    return dict(
        image_size=size,
        resize_size=list(size) if squash else [min(size)],
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=cfg["mean"],
        std=cfg["std"],
    )


def open_clip_tokenizer(name):
    open_clip = optional_import("open_clip", f"backbone='open_clip:{name}'")
    return open_clip.get_tokenizer(name)


# -- wordllama ---------------------------------------------------------------------------
WORDLLAMA_DIM = 256
_WORDLLAMA_FILES = (
    "tokenizers/l2_supercat_tokenizer_config.json",
    "weights/l2_supercat_256.safetensors",
)


def wordllama_files():
    """The tokenizer file and embedding matrix inside the installed wordllama wheel.

    Located without importing wordllama (nor downloading anything).
    """
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        optional_import("wordllama", "backbone='wordllama'")  # raises the hint
    root = list(spec.submodule_search_locations)[0]
    paths = [os.path.join(root, f) for f in _WORDLLAMA_FILES]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(
                f"backbone='wordllama': {path!r} is missing from the installed "
                "wordllama package; reinstall it (pip install 'skmm[wordllama]')."
            )
    return paths


def wordllama_tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(wordllama_files()[0])


def wordllama_embedding():
    """The (vocabulary, 256) embedding matrix, as float32."""
    from safetensors.torch import load_file

    return load_file(wordllama_files()[1])["embedding.weight"].float()


# -- weights identity (for the embedding cache) ---------------------------------------
def file_identity(path):
    """Path, size and modification time of a file, or of every file of a folder."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return [
            (f, os.stat(os.path.join(path, f)).st_size)
            + (os.stat(os.path.join(path, f)).st_mtime_ns,)
            for f in sorted(os.listdir(path))
            if os.path.isfile(os.path.join(path, f))
        ] + [path]
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


# -- the parameters that train ---------------------------------------------------------
def _holds_parameters(module):
    return any(True for _ in module.parameters())


def last_block_parameters(module):
    """The parameters of the last block of ``module`` and of all that follows it.

    The blocks are the children of the largest ``ModuleList``/``Sequential`` (by
    parameter count) with at least two children holding parameters: a ResNet's last
    stage, a transformer's last layer. A module with no such stack trains entirely.
    """
    stacks = [
        m
        for m in module.modules()
        if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential))
        and sum(_holds_parameters(c) for c in m.children()) >= 2
    ]
    params = list(module.parameters())
    if not stacks:
        return params
    trunk = max(stacks, key=lambda m: sum(p.numel() for p in m.parameters()))
    last = [c for c in trunk.children() if _holds_parameters(c)][-1]
    first = next(last.parameters())
    start = next(i for i, p in enumerate(params) if p is first)
    return params[start:]


class FreezableMixin:
    """A tower whose frozen parts stay in eval mode (batch-norm statistics, dropout).

    :meth:`BackboneMixin._configure_training` records the submodules whose parameters
    are all frozen; ``train()`` leaves them in eval mode.
    """

    def train(self, mode=True):
        super().train(mode)
        if mode:
            for module in getattr(self, "_frozen_modules", ()):
                module.eval()
        return self


class ModuleTower(FreezableMixin, torch.nn.Module):
    """A user's module as a tower: a batch (images, token ids or waveforms) to
    features, flattened to ``(n, out_features)``."""

    def __init__(self, backbone, out_features):
        super().__init__()
        self.backbone = backbone
        self.out_features = out_features

    def forward(self, x):
        return self.backbone(x).flatten(1)


def mark_frozen(module):
    """Record on ``module`` the submodules with parameters, all of them frozen."""
    frozen = [
        m
        for m in module.modules()
        if m is not module
        and _holds_parameters(m)
        and not any(p.requires_grad for p in m.parameters())
    ]
    # A plain attribute (not registered): the state dict is unchanged.
    object.__setattr__(module, "_frozen_modules", frozen)


class BackboneMixin:
    """What the encoders share about backbones, weights and training.

    The encoder/tower protocol that :mod:`skmm.nn` calls:

    - ``_frozen()``: True when the tower is used as is (resolved ``max_epochs == 0``);
    - ``_configure_training(module)``: set ``requires_grad=False`` on the parameters
      that ``train_layers`` keeps frozen and return the torch parameter groups that
      train, with this encoder's learning rate.

    Subclasses resolve ``weights`` (``_weights()``) and the backbone's kind
    (``_kind()``); whether the weights are pretrained and, for the embedding cache,
    what identifies them are decided here for all three.
    """

    def _pretrained(self):
        return self._weights() is not None

    def _weights_identity(self):
        """Where the weights come from, for the cache fingerprint (no tensor hashing).

        None when they cannot be named (random weights, or a hub model without a
        known revision): the fingerprint then hashes the module once.
        """
        weights = self._weights()
        kind, name = self._kind()
        if weights is None:
            return None
        if is_weights_path(weights):
            return [repr(self.backbone), file_identity(weights)]
        if kind == "wordllama":
            return [kind, file_identity(wordllama_files()[1])]
        if kind == "hf":
            if os.path.isdir(name):
                return [kind, file_identity(name)]
            commit = getattr(self.hub_config_, "_commit_hash", None)
            return [kind, name, commit] if commit else None
        return [kind, name, weights]

    def _resolved_max_epochs(self):
        if self.max_epochs == "auto":
            return 0 if self._pretrained() else 10
        return self.max_epochs

    def _frozen(self):
        """True when the tower is used as is, with no training."""
        return self._resolved_max_epochs() == 0

    def _configure_training(self, module):
        """Freeze what ``train_layers`` keeps fixed; return the groups that train.

        Parameters
        ----------
        module : torch.nn.Module
            The tower built by ``_init_module()``.

        Returns
        -------
        param_groups : list of dict
            ``[{"params": [...], "lr": self.lr}]``, or ``[]`` when the tower is frozen
            or ``train_layers="head"`` (only a head on top of the tower trains).
        """
        if self._frozen() or self.train_layers == "head":
            trainable = []
        elif self.train_layers == "last":
            trainable = last_block_parameters(module)
        else:
            trainable = list(module.parameters())
        keep = {id(p) for p in trainable}
        for p in module.parameters():
            p.requires_grad_(id(p) in keep)
        mark_frozen(module)
        return [{"params": trainable, "lr": self.lr}] if trainable else []

    def _param_groups(self, module, data):
        """The training loop's optimizer groups when the encoder trains on its own.

        ``module`` is the tower followed by its linear head.
        """
        tower, head = module
        return self._configure_training(tower) + [{"params": list(head.parameters())}]

    # Fitted attributes decided by the weights' source (not hashed when it is named).
    _identified_state = frozenset({"hub_config_", "processor_"})
