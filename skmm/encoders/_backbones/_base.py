"""What every backbone adapter shares: the weights rule, weights files, tower helpers.

A :class:`Backbone` is one hub's answer, for one modality, to: which weights the tower
starts from (resolved once per fit), the preprocessing those weights bring, how the
module is built (the architecture alone, to unpickle; or with its initial weights),
what identifies the weights for the embedding cache, whether they are pretrained, and
the logit scale of aligned (CLIP) towers.

Every weights file skmm reads itself is read as tensors only (safetensors, or
``torch.load(..., weights_only=True)``); hub libraries are called with their safe
options (``trust_remote_code=False``, ``weights_only=True``).
"""

import importlib
import os
import pickle

import torch

from ..._persistence import portable_state, restored_state

# The "weights" value meaning "the backbone's own pretrained weights".
DEFAULT_WEIGHTS = "DEFAULT"
# The normalisation of backbones pretrained on ImageNet.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def optional_import(module, what, extra=None):
    """Import a hub library, or say how to install it: its extra of skmm, or skmm.

    ``extra`` names the optional extra that installs ``module``; None for a library
    skmm depends on (one whose absence means a broken install).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        if extra is None:
            how = "a dependency of skmm, which is not installed: reinstall skmm"
        else:
            how = f"which is not installed: pip install 'skmm[{extra}]'"
        kind = "optional package" if extra else "package"
        raise ImportError(f"{what} needs the {kind} {module!r}, {how}") from None


def offline_hint(what, how):
    return (
        f"could not get {what}, and this machine may have no internet access. "
        f"To work offline, {how}"
    )


def is_weights_path(weights):
    """True when ``weights`` names a local file or folder rather than a weights name."""
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        os.path.sep in weights
        or os.path.exists(weights)
        or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


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


def check_finite_weights(module, backbone):
    """Refuse initial weights holding NaN or infinity (a damaged file, a diverged
    training): their features would be all-NaN rows, which look exactly like the
    rows of missing items. Every saved float tensor is checked (not the buffers a
    model builds itself, such as an attention mask of -inf)."""
    bad = [
        name
        for name, tensor in module.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        source = backbone.source
        what = (
            f"weights file {source[1]!r}"
            if source is not None and source[0] == "file"
            else f"weights {backbone.weights!r} of {backbone.hub}:{backbone.name}"
        )
        raise ValueError(
            f"the {what} hold NaN or infinite values in {len(bad)} tensor(s) "
            f"({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}): the file is "
            "damaged or was saved from a training that diverged; its features would "
            "be NaN, which skmm reads as missing items."
        )
    return module


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


def package_identity(distribution, path):
    """Weights shipped in an installed package: its name, version and file size.

    The same on every machine with that version installed, wherever it is (a cache
    shared at a URL serves them all), unlike a file's path and modification time.
    """
    from importlib.metadata import version

    return [distribution, version(distribution), os.path.getsize(path)]


# -- tower helpers -----------------------------------------------------------------------
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


def masked_pool(states, mask, pooling):
    """Mean (or max) of the token states ``(n, length, width)`` where ``mask`` is 1."""
    mask = mask.unsqueeze(2).to(states.dtype)
    if pooling == "max":
        return states.masked_fill(mask == 0, float("-inf")).amax(1)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1)


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


class FreezableMixin:
    """A tower whose frozen parts stay in eval mode (batch-norm statistics, dropout).

    :func:`mark_frozen` records the submodules whose parameters are all frozen;
    ``train()`` leaves them in eval mode.
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


# -- the adapter -------------------------------------------------------------------------
class Backbone:
    """Where a tower comes from: one hub's model for one modality.

    :func:`~skmm.encoders._backbones.get_backbone` makes it from an encoder's
    ``backbone`` and ``weights`` with no I/O (:attr:`pretrained` needs nothing
    more); :meth:`resolve` then checks the weights and reads what they decide, once
    per fit, and the encoder keeps the result as its fitted ``backbone_``. Reading a
    resolved adapter (``pretrained``, ``identity``, ``logit_scale``, ``processor``)
    does no I/O.

    A subclass (one per hub) sets the class attributes below, fetches what its
    weights bring in ``_resolve(encoder)`` and implements, for each modality it
    serves, the builder the encoder calls:

    - images: ``image_preprocessing()`` -> dict of what the weights fix among
      ``image_size``, ``resize_size``, ``interpolation``, ``mean``, ``std`` and
      ``n_channels`` (the encoder learns the rest from the training images), and
      ``image_backbone(encoder, pretrained)`` -> ``(module, width)``;
    - text: ``text_tower(encoder, pretrained)`` and ``text_input(encoder, texts)``
      (the token batch the tower reads);
    - audio: ``audio_tower(encoder, pretrained)``, ``audio_input(encoder, waves)``
      and ``audio_features(encoder)`` (the log-mel front end, for a tower that
      starts from one, else None).

    ``pretrained=False`` builds the architecture alone, from the parameters and the
    fitted attributes, reading nothing (as unpickling needs); ``pretrained=True``
    adds the initial weights: a weights file read at :meth:`resolve` is handed over
    to the first build (and read again by a later one), so a fit reads it once.

    Attributes (resolved)
    ---------------------
    source : None or tuple
        None for random weights, ``("file", path)`` or ``("name", name)``.
    identity : list or None
        What names the weights for the embedding cache (a hub name and revision, an
        installed package's name and version, or a file's path, size and
        modification time); None when they cannot be named.
    logit_scale : float or None
        1 / temperature of the aligned towers the weights come from (CLIP).
    processor : object or None
        The tokenizer or feature extractor that belongs to the weights.
    config : object or None
        A Hugging Face model config (the architecture, so a pickle rebuilds it).
    """

    #: name in messages
    hub = ""
    #: the modalities this hub serves
    modalities = frozenset()
    #: what weights="auto" means: None (random) or DEFAULT_WEIGHTS
    default_weights = None
    #: whether names of weights sets other than DEFAULT apply (torchvision, timm tags)
    weights_names = False
    #: whether a local state dict file applies
    weights_files = True
    #: text: the poolings the tower offers (None: the model pools itself)
    poolings = None
    #: text: whether the tower reads ids of a vocabulary learned from the texts
    uses_vocabulary = False

    def __init__(self, name, weights, modality):
        self.name = name
        self.weights = weights
        self.modality = modality
        self.source = None
        self.identity = None
        self.logit_scale = None
        self.processor = None
        self.config = None

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, weights={self.weights!r})"

    def __getstate__(self):
        state = self.__dict__.copy()
        # Weights read at fit for the first build: never pickled, nor deep-copied.
        state.pop("_state", None)
        state.pop("_model", None)
        # The processor and config as data, rebuilt by their libraries' parsers on
        # load: pickles and skops files hold no library object.
        return portable_state(state)

    def __setstate__(self, state):
        self.__dict__.update(restored_state(state))

    @property
    def pretrained(self):
        """Whether the tower starts from pretrained weights (from the parameters)."""
        weights = self.default_weights if self.weights == "auto" else self.weights
        return weights is not None

    # -- resolution ----------------------------------------------------------------------
    def _weights_source(self):
        """The one rule for ``weights=``, the same for every encoder and hub."""
        weights = self.default_weights if self.weights == "auto" else self.weights
        if weights is None:
            return None
        if is_weights_path(weights):
            if not self.weights_files:
                raise ValueError(
                    f"weights={weights!r}: the weights of an 'hf:' backbone come from "
                    "its model id or folder (backbone='hf:<id or folder>'); use "
                    "weights='auto' or None."
                )
            if not os.path.isfile(weights):
                raise ValueError(f"weights file not found: {os.fspath(weights)!r}")
            return ("file", os.fspath(weights))
        if self.weights_names or (weights == DEFAULT_WEIGHTS == self.default_weights):
            return ("name", weights)
        named = "" if self.default_weights is None else " and 'DEFAULT'"
        raise ValueError(
            f"weights={weights!r} is not a file, and {self.hub} backbones take no "
            f"weights names; use 'auto', None{named} or the path of a state dict file "
            "(weights names only apply to torchvision, timm and open_clip backbones)."
        )

    def resolve(self, encoder):
        """Check the weights and fetch what they decide; return ``self``.

        A weights file is read here (its tensors are kept for the first build, never
        pickled): a file that cannot be read fails the fit before any data is decoded.
        """
        self.source = self._weights_source()
        if self.from_file:
            path = self.source[1]
            self._state = read_weights_file(path)
            self.identity = [repr(encoder.backbone), file_identity(path)]
        self._resolve(encoder)
        return self

    def _resolve(self, encoder):
        """Fetch what the hub's weights bring (config, tokenizer, identity...)."""

    @property
    def from_file(self):
        return self.source is not None and self.source[0] == "file"

    def file_state(self):
        """The weights file's state dict (read at :meth:`resolve`), or None."""
        if not self.from_file:
            return None
        if "_state" not in self.__dict__:
            self._state = read_weights_file(self.source[1])
        return self._state

    def take_file_state(self):
        """The weights file's state dict, handed over: a later call reads it again."""
        state = self.file_state()
        self.__dict__.pop("_state", None)
        return state

    def load_file(self, module):
        """Load the weights file into ``module`` (the part of the tower it is for)."""
        load_into(module, self.take_file_state(), self.source[1])

    # -- defaults shared by the hubs -----------------------------------------------------
    def image_preprocessing(self):
        return {}

    def text_input(self, encoder, texts):
        return encoder._vocabulary_ids(texts)

    def audio_input(self, encoder, waves):
        return torch.from_numpy(waves)

    def audio_features(self, encoder):
        return None
