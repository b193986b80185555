"""Hugging Face models (``backbone="hf:<model id or local folder>"``), any modality."""

import os
import pickle
import socket
from urllib.parse import urlparse

import torch

from ...utils._torch_compat import hf_commit_hash
from ._base import (
    DEFAULT_WEIGHTS,
    Backbone,
    FreezableMixin,
    file_identity,
    masked_pool,
    offline_hint,
    optional_import,
    output_width,
)

# The preprocessor that belongs to a checkpoint, per modality.
_PROCESSORS = {
    "text": "AutoTokenizer",
    "image": "AutoImageProcessor",
    "audio": "AutoFeatureExtractor",
    "video": "AutoImageProcessor",
}


def _hf_hint(name):
    return offline_hint(
        f"the Hugging Face model {name!r}",
        "save it where internet works (AutoModel.from_pretrained(id)."
        "save_pretrained(folder), and the same for its tokenizer or processor), copy "
        "the folder here and pass backbone='hf:<folder>'.",
    )


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


def hf_call(load, name, **kwargs):
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


def _weights_files(name):
    """The weights files of a local model folder, for messages (else the model id)."""
    if not os.path.isdir(name):
        return f"(of the model {name!r})"
    files = sorted(
        f for f in os.listdir(name) if f.endswith((".safetensors", ".bin", ".pt"))
    )
    return ", ".join(repr(os.path.join(name, f)) for f in files) or "(none found)"


def _interpolation_name(resample):
    """A PIL resampling code (or torchvision mode) as a torchvision mode name."""
    value = getattr(resample, "value", resample)
    return {
        0: "nearest",
        2: "bilinear",
        "nearest": "nearest",
        "bilinear": "bilinear",
    }.get(value, "bicubic")


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
        n_channels=3,
    )


class HFImageBackbone(torch.nn.Module):
    """A Hugging Face vision model: ``pooler_output`` if it has one, else mean of tokens."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        # Convolutional models give (n, C, H, W) maps, transformers (n, tokens, C).
        return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)


class HFTextTower(FreezableMixin, torch.nn.Module):
    """A Hugging Face text model pooled into one vector per text.

    Takes ``(n, 2, length)``: token ids and attention mask stacked. ``"mean"`` is the
    attention-masked mean of ``last_hidden_state``, ``"cls"`` its first token,
    ``"pooler"`` the model's ``pooler_output``.
    """

    def __init__(self, model, pooling, out_features):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.out_features = out_features

    def forward(self, x):
        ids, mask = x[:, 0], x[:, 1]
        out = self.model(input_ids=ids, attention_mask=mask)
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        return masked_pool(out.last_hidden_state, mask, "mean")


class HFAudioTower(FreezableMixin, torch.nn.Module):
    """A Hugging Face audio model (wav2vec2, HuBERT ...): mean of its frames' states.

    Takes what the model's feature extractor made of the waveforms (``input_values``).
    """

    def __init__(self, model, out_features):
        super().__init__()
        self.model = model
        self.out_features = out_features

    def forward(self, x):
        return self.model(x).last_hidden_state.mean(dim=1)


class HFBackbone(Backbone):
    """An ``AutoModel`` and the preprocessor of its checkpoint, from the hub or a folder.

    The weights are the checkpoint's (``weights="auto"`` or ``"DEFAULT"``) or random
    ones from its config (``None``). The config and the preprocessor (tokenizer, image
    processor, feature extractor) are read at fit and pickled, so a pickle rebuilds the
    model with no download.
    """

    hub = "hf"
    modalities = frozenset({"image", "text", "audio"})
    default_weights = DEFAULT_WEIGHTS
    weights_files = False
    poolings = ("mean", "cls", "pooler")

    def _transformers(self):
        return optional_import("transformers", f"backbone='hf:{self.name}'", "hf")

    def _resolve(self, encoder):
        transformers = self._transformers()
        self.config = hf_call(transformers.AutoConfig.from_pretrained, self.name)
        processor = getattr(transformers, _PROCESSORS[self.modality])
        self.processor = hf_call(processor.from_pretrained, self.name)
        if self.modality == "audio":
            rate = getattr(self.processor, "sampling_rate", encoder.sample_rate)
            if rate != encoder.sample_rate:
                raise ValueError(
                    f"backbone='hf:{self.name}' was trained on sounds at {rate} Hz; "
                    f"pass sample_rate={rate} (got {encoder.sample_rate})."
                )
        if self.source is None:
            return
        if os.path.isdir(self.name):
            self.identity = ["hf", file_identity(self.name)]
        else:
            commit = hf_commit_hash(self.config)
            self.identity = ["hf", self.name, commit] if commit else None

    def _model(self, pretrained):
        """``AutoModel`` with the checkpoint's weights, or random ones from the config."""
        transformers = self._transformers()
        if not (pretrained and self.source is not None):
            return transformers.AutoModel.from_config(self.config)
        from safetensors import SafetensorError

        try:
            return hf_call(transformers.AutoModel.from_pretrained, self.name)
        except pickle.UnpicklingError:
            raise ValueError(
                f"backbone='hf:{self.name}': its weights file holds pickled Python "
                "objects, and skmm never unpickles code from a file. Save the model "
                "as safetensors (save_pretrained does by default)."
            ) from None
        except (SafetensorError, EOFError, RuntimeError) as exc:
            # A truncated or damaged weights file: name it, not only the model.
            raise ValueError(
                f"backbone='hf:{self.name}': cannot read its weights file "
                f"{_weights_files(self.name)}: {exc}. The file may be truncated (an "
                "interrupted copy or download); save the model again."
            ) from None

    # -- images ----------------------------------------------------------------------------
    def image_preprocessing(self):
        return hf_image_preprocessing(self.processor)

    def image_backbone(self, encoder, pretrained):
        backbone = HFImageBackbone(self._model(pretrained))
        blank = torch.zeros(1, encoder.n_channels_, *encoder.image_size_)
        return backbone, output_width(backbone, blank)

    # -- text ------------------------------------------------------------------------------
    def text_tower(self, encoder, pretrained):
        model = self._model(pretrained)
        return HFTextTower(model, encoder.pooling, model.config.hidden_size)

    def text_input(self, encoder, texts):
        out = self.processor(
            texts,
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_tensors="pt",
        )
        return torch.stack([out["input_ids"], out["attention_mask"]], dim=1)

    # -- audio -----------------------------------------------------------------------------
    def audio_tower(self, encoder, pretrained):
        model = self._model(pretrained)
        return HFAudioTower(model, model.config.hidden_size)

    def audio_input(self, encoder, waves):
        out = self.processor(
            list(waves), sampling_rate=encoder.sample_rate, return_tensors="pt"
        )
        return out["input_values"] if "input_values" in out else out["input_features"]
