"""VideoEncoder: clips (video files or frame arrays) to pooled frame or clip features."""

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..base import TorchEncoderMixin
from ..utils._composition import is_fitted_attribute
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions
from ..utils._validation import Column
from ._backbones import get_backbone
from ._backbones._base import FreezableMixin
from ._backbones._torchvision_video import torchvision_video_models
from ._hub import BackboneMixin
from ._image import ImageEncoder, random_affine, read_image
from ._video_io import read_video

# Frames per clip when n_frames="auto": 8 through an image tower; torchvision's video
# models were trained on clips of 16 (MViT takes exactly 16).
_FRAMES = 8
_CLIP_FRAMES = 16
# Units of the GRU that pools time when the tower trains.
_GRU_WIDTH = 256
# Frames decoded to fit the image tower's preprocessing (its size and normalisation
# statistics), and the pixels they may hold at most.
_STATS_FRAMES = 256
_STATS_PIXELS = 1 << 24


class VideoTower(FreezableMixin, torch.nn.Module):
    """Frames ``(n, T, C, H, W)`` through an image tower, then pooled over time.

    Frames past a clip's end are NaN (clips sampled at a given ``fps`` may have
    fewer than ``T`` frames): they go through no layer and count in no pooling.
    ``pooling`` is ``"mean"`` or ``"max"`` over the frames' features, or ``"gru"``:
    the last state of a GRU run over them in order.
    """

    def __init__(self, frames, pooling, width=_GRU_WIDTH):
        super().__init__()
        self.frames = frames
        self.pooling = pooling
        self.temporal = None
        self.out_features = frames.out_features
        if pooling == "gru":
            self.temporal = torch.nn.GRU(frames.out_features, width, batch_first=True)
            self.out_features = width

    def forward(self, x):
        present = ~torch.isnan(x.flatten(2)[..., 0])
        features = self.frames(x[present])
        sequence = features.new_zeros(*present.shape, features.shape[1])
        sequence[present] = features
        lengths = present.sum(1)
        if self.pooling == "mean":
            return sequence.sum(1) / lengths[:, None]
        if self.pooling == "max":
            return sequence.masked_fill(~present[..., None], -torch.inf).amax(1)
        from torch.nn.utils.rnn import pack_padded_sequence

        packed = pack_padded_sequence(
            sequence, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.temporal(packed)
        return hidden[-1]


def _decode_size(image_size, resize_size):
    """The smallest (height, width) a decoded frame may shrink to before resizing."""
    if resize_size is None:
        return tuple(image_size)
    if len(resize_size) == 1:  # the shorter side is resized to this
        return (resize_size[0],) * 2
    return tuple(resize_size)


class VideoEncoder(BackboneMixin, TorchEncoderMixin, BaseEstimator):
    """Encode video clips: frames sampled over each clip, an image tower, time pooled.

    Each clip is decoded on its own (PyAV, the optional extra ``skmm[video]``) and
    ``n_frames`` frames are sampled uniformly over its duration, or at ``fps`` frames
    per second. Each frame goes through an image tower, any backbone of
    :class:`ImageEncoder` (its default one unless told otherwise; a pretrained tower
    is frozen, so a video column needs no labels), and the frames' features are
    pooled over time: their mean or maximum, or a GRU
    over them in order when the tower trains. A video-native backbone (torchvision's
    video models by name, a Hugging Face VideoMAE-style model) takes the sampled
    frames as one clip tensor instead.

    Parameters
    ----------
    backbone : str, torch.nn.Module or None, default=None
        The image tower applied to each frame, as :class:`ImageEncoder`'s
        ``backbone`` (``"cnn"``, a torchvision image model name, ``"timm:"``,
        ``"hf:"`` image models, ``"open_clip:"``, or a module mapping ``(n, C, H,
        W)`` frames to features); None is :class:`ImageEncoder`'s default backbone.
        Video-native backbones take the whole clip:

        - a torchvision video model name (``"r3d_18"``, ``"mc3_18"``,
          ``"r2plus1d_18"``, ``"s3d"``, ``"mvit_v1_b"``, ``"mvit_v2_s"``,
          ``"swin3d_t"``...), its classifier removed, its frames preprocessed by its
          weights' ``transforms()`` (resize, centre crop, normalisation);
        - ``"hf:<model id or local folder>"`` of a video model, one whose config has
          ``num_frames`` (VideoMAE, TimeSformer, ViViT): ``AutoModel`` and its image
          processor's size, crop and normalisation; features are ``pooler_output``
          when the model has one, else the mean of ``last_hidden_state`` (extra
          ``skmm[hf]``).
    weights : "auto", "DEFAULT", str, path or None, default="auto"
        As :class:`ImageEncoder`'s: a named pretrained set (``"DEFAULT"``, or a
        torchvision weights name such as ``"KINETICS400_V1"``), a local state dict
        file (of the backbone or of a fitted encoder's ``module_``), None for random
        weights, or ``"auto"``: the checkpoint an ``"hf:"`` backbone names, the
        default of :class:`ImageEncoder` for the frame backbones, random weights
        for torchvision's video models (whose names are architectures).
    n_frames : int or "auto", default="auto"
        Frames sampled from each clip: the frame shown at the middle of each of
        ``n_frames`` equal spans of its duration (frames repeat in a clip that has
        fewer), or with ``fps`` the most taken. ``"auto"`` is 8 for an image tower,
        16 for torchvision's video models (MViT takes exactly 16) and the model's
        ``num_frames`` for a Hugging Face one (which takes exactly that many).
    fps : float or None, default=None
        Take frames at this rate from the start of each clip (the frames shown at
        ``0, 1/fps, 2/fps...`` seconds), at most ``n_frames`` of them: shorter clips
        give fewer frames, which pooling averages over. An array clip is taken as
        already at this rate. Video-native backbones see ``n_frames`` frames
        always: a short clip's last frame is repeated. None samples ``n_frames``
        over the whole clip.
    pooling : {"auto", "mean", "max", "gru"}, default="auto"
        How frames' features become the clip's: their mean or element-wise
        maximum, or the last state of a one-layer GRU (256 units) run over them in
        order, a temporal model trained with the tower (so ``max_epochs > 0``).
        ``"auto"`` is ``"mean"`` for a frozen tower and ``"gru"`` for one that
        trains. Video-native backbones pool time themselves ("auto" only).
    image_size : int, tuple of (int, int) or None, default=None
        Size every frame is resized to; None keeps the size of the first training
        clip's frames, or the size the pretrained weights expect.
    max_epochs : int or "auto", default="auto"
        Passes over the training clips with ``y``; 0 uses the tower as it is
        (frozen). ``"auto"`` is 0 (:meth:`fit` needs no ``y``) when the tower starts
        from pretrained weights, and 10 otherwise.
    train_layers : {"all", "last", "head"}, default="all"
        What trains when ``max_epochs > 0``: the whole tower, its last block (and
        what follows it), or none of the frame or clip model: with ``"head"`` the
        image tower stays frozen and only the GRU (``pooling="gru"``) and the head
        on top train.
    augment : {"default"} or callable or None, default=None
        Training-time augmentation. ``"default"`` rotates by up to 30 degrees,
        scales by 0.8-1.2 and flips horizontally, each clip by its own random
        amount and all of its frames alike. A callable is applied to each ``(C, H,
        W)`` frame.
    batch_size : int, default=8
        Clips per batch in training and in :meth:`transform` (each ``n_frames``
        frames); memory is bounded by it.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or :class:`~skmm.utils.EmbeddingMemory`) caching each clip's
        features on disk, keyed as :class:`ImageEncoder`'s items are: a file by its
        path, size, times and inode (or its bytes' hash with ``hash_files=True``),
        an array by its hash; and by the fitted encoder's fingerprint.
    num_workers : int, default=0
        Threads decoding the next batches of clips while the model runs on the
        current one in :meth:`transform`.
    lr : float, default=1e-3
        Learning rate of the optimizer for this tower.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each training epoch with the history.
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        Numerical precision of training and inference: float32, or mixed precision
        through ``torch.autocast`` (bfloat16 or float16 where it is safe, float32
        weights; ``"16-mixed"`` scales the loss so that small gradients do not
        underflow). Features computed at another precision are cached apart.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the model runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the frames sampled for normalisation
        statistics, augmentation and data order.
    verbose : bool, default=False
        Show progress bars while training and encoding.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted tower (:class:`VideoTower` over frames, or the video model's),
        on ``device_``.
    device_ : str
        The device used.
    n_frames_ : int
        Frames sampled per clip.
    pooling_ : str or None
        The pooling over frames (None for a video-native backbone).
    backbone_ : Backbone
        The resolved backbone: the image side's (the same as
        ``frame_encoder_.backbone_``) or the video model's, with where its weights
        come from (``backbone_.source``) and what names them in the embedding cache
        (``backbone_.identity``).
    frame_encoder_ : ImageEncoder or None
        The image side, its preprocessing fitted on the training clips' frames (its
        ``image_size_``, ``mean_``...); None for a video-native backbone.
    image_size_, resize_size_, interpolation_, mean_, std_ : object
        A video-native backbone's frame preprocessing, as :class:`ImageEncoder`'s
        attributes of the same names.
    hub_config_ : object or None
        The Hugging Face config of an ``"hf:"`` backbone, else None.
    classes_ : ndarray or None
        Classes of ``y`` the tower was trained on; only set when ``max_epochs > 0``.
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
    ImageEncoder : The image tower each frame goes through.
    AudioEncoder : Reads a video file's soundtrack, for the same column.

    Notes
    -----
    An item is a video file path (any container FFmpeg reads: MP4, WebM, MKV, AVI,
    MOV...), the bytes of a video file, or an array (or nested list) of frames
    ``(T, H, W)`` or ``(T, H, W, C)``, its values scaled by dtype as
    :class:`ImageEncoder`'s arrays; a 4-D or 5-D numeric array is a batch of such
    clips, one per row. ``None``/NaN items are missing (NaN rows).

    Frames are picked by their timestamps, so variable frame rates are followed:
    the frame shown at an instant is the last one stamped at or before it. Each
    clip is decoded on its own, frame by frame, keeping only the sampled frames,
    each shrunk while it is converted (by an integer factor, keeping both sides at
    least the tower's input size); past the first interval between two keyframes,
    the decoder seeks to the keyframe before the next sampled instant instead of
    decoding the frames in between. Memory is bounded by ``batch_size`` clips of
    ``n_frames`` frames, never by a clip's length.

    A file that is not a readable video raises ``ValueError`` naming the column and
    row: a corrupt or truncated container, an empty file, a clip with no frames, a
    file with no video stream (an audio file in the video column), a still image,
    or frames larger than 8K UHD (7680 x 4320 pixels, checked on the header before
    any frame is decoded). The soundtrack is ignored here; give the same column to
    :class:`AudioEncoder` or :class:`AudioFeatures` to encode it.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.encoders import VideoEncoder
    >>> rng = np.random.default_rng(0)
    >>> clips = rng.integers(0, 255, size=(4, 6, 16, 16), dtype=np.uint8)
    >>> enc = VideoEncoder("cnn", n_frames=4, max_epochs=1, random_state=0,
    ...                    device="cpu")
    >>> enc.fit_transform(clips, [0, 1, 0, 1]).shape
    (4, 256)
    >>> enc.pooling_
    'gru'

    A pretrained image tower is frozen: ``fit`` needs no labels, and video files
    are read through PyAV.

    >>> enc = VideoEncoder("resnet18", weights="DEFAULT")  # doctest: +SKIP
    >>> enc.fit_transform(["clip.mp4", "other.webm"]).shape  # doctest: +SKIP
    (2, 512)
    """

    _batch_ndim = (4, 5)

    _parameter_constraints = {
        **TorchEncoderMixin._encoder_parameter_constraints,
        "backbone": [None, str, HasMethods(["forward"])],
        "weights": [None, str, os.PathLike],
        "n_frames": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "fps": [None, Interval(Real, 0, None, closed="neither")],
        "pooling": [StrOptions({"auto", "mean", "max", "gru"})],
        "image_size": [None, Interval(Integral, 1, None, closed="left"), tuple],
        "max_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "train_layers": [StrOptions({"all", "last", "head"})],
        "augment": [None, StrOptions({"default"}), callable],
    }

    def __init__(
        self,
        backbone=None,
        *,
        weights="auto",
        n_frames="auto",
        fps=None,
        pooling="auto",
        image_size=None,
        max_epochs="auto",
        train_layers="all",
        augment=None,
        batch_size=8,
        memory=None,
        num_workers=0,
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
        self.n_frames = n_frames
        self.fps = fps
        self.pooling = pooling
        self.image_size = image_size
        self.max_epochs = max_epochs
        self.train_layers = train_layers
        self.augment = augment
        self.batch_size = batch_size
        self.memory = memory
        self.num_workers = num_workers
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    _no_y_hint = "Pass pretrained weights, or max_epochs=0 for an untrained backbone."

    # -- what the backbone is --------------------------------------------------------
    def _clip_backbone(self):
        """The adapter of a video-native backbone candidate (unresolved), or None.

        A torchvision video model's name, or any ``"hf:"`` checkpoint: whether it is
        a video model (its config has ``num_frames``) is found out at fit; any
        other backbone is an image tower over the frames.
        """
        backbone = self.backbone
        if isinstance(backbone, str) and (
            backbone.startswith("hf:") or backbone in torchvision_video_models()
        ):
            return get_backbone(backbone, "video", self.weights)
        return None

    def _backbone(self):
        """The adapter of the last fit, else the one the parameters name: the clip
        model's, or the image side's."""
        resolved = self.__dict__.get("backbone_")
        if resolved is not None:
            return resolved
        clip = self._clip_backbone()
        return clip if clip is not None else self._frame_encoder()._backbone()

    def _frame_encoder(self):
        """The image side: an unfitted ImageEncoder holding this encoder's settings."""
        own = dict(
            weights=self.weights,
            image_size=self.image_size,
            max_epochs=self.max_epochs,
            train_layers=self.train_layers,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            precision=self.precision,
            device=self.device,
            random_state=self.random_state,
        )
        if self.backbone is not None:
            own["backbone"] = self.backbone
        return ImageEncoder(**own)

    @property
    def frame_encoder_(self):
        """The image side: an ImageEncoder with this encoder's settings, its resolved
        ``backbone_`` and the preprocessing fitted on the training clips' frames;
        None for a video model.

        Rebuilt from the parameters and ``_frame_state_`` (the image side's fitted
        attributes but its adapter, which is this encoder's ``backbone_``), so that
        the embedding cache's fingerprint hashes the fitted state, not the pickle of
        a module backbone (which differs between clones).
        """
        state = self.__dict__.get("_frame_state_", False)
        if state is False:
            raise AttributeError("frame_encoder_")  # not fitted: hasattr is False
        if state is None:
            return None
        frames = self._frame_encoder()
        frames.__dict__.update(state, backbone_=self.backbone_)
        return frames

    def _uses_frames(self):
        """Whether frames go through an image tower (else the clip through a video
        model); decided at fit for an ``"hf:"`` backbone."""
        if "_frame_state_" in vars(self):
            return self._frame_state_ is not None
        return self._clip_backbone() is None

    # -- preprocessing -------------------------------------------------------------------
    def _fit_preprocessing(self, column, rows):
        self.pooling_ = None
        clip = self._clip_backbone()
        spec = None if clip is None else clip.resolve(self).video_preprocessing()
        if spec is None:  # an image tower (an "hf:" image model, say)
            self._fit_frames(column, rows)
            return
        if self.pooling != "auto":
            raise ValueError(
                f"pooling={self.pooling!r}: the video model {self.backbone!r} pools "
                "time itself; use pooling='auto'."
            )
        self.backbone_ = clip
        self.n_frames_ = self._clip_frames(spec["n_frames"], spec["exact_frames"])
        self._check_min_size(spec["min_size"], spec)
        self._set_clip_preprocessing(spec)
        self._frame_state_ = None

    def _clip_frames(self, native, exact):
        """``n_frames`` resolved for a video model taking ``native`` frames."""
        if self.n_frames == "auto":
            return native if exact else max(_CLIP_FRAMES, native)
        if exact and self.n_frames != native:
            raise ValueError(
                f"backbone={self.backbone!r} takes clips of exactly {native} frames; "
                f"pass n_frames={native} or 'auto' (got {self.n_frames})."
            )
        if self.n_frames < native:
            raise ValueError(
                f"backbone={self.backbone!r} takes clips of at least {native} frames; "
                f"got n_frames={self.n_frames}."
            )
        return self.n_frames

    def _check_min_size(self, min_size, spec):
        size = self.image_size
        size = spec["image_size"] if size is None else size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] < min_size[0] or size[1] < min_size[1]:
            raise ValueError(
                f"backbone={self.backbone!r} takes frames of at least {min_size[0]} x "
                f"{min_size[1]} pixels; got image_size={self.image_size!r}."
            )

    def _set_clip_preprocessing(self, spec):
        self.interpolation_ = spec["interpolation"]
        self.mean_ = np.asarray(spec["mean"], dtype=np.float32)
        self.std_ = np.asarray(spec["std"], dtype=np.float32)
        if self.image_size is None:
            self.image_size_ = tuple(spec["image_size"])
            self.resize_size_ = spec["resize_size"]
        else:
            size = self.image_size
            self.image_size_ = (size, size) if isinstance(size, int) else tuple(size)
            if len(self.image_size_) != 2 or min(self.image_size_) < 1:
                raise ValueError(
                    f"image_size must be an int or a (height, width) pair, got {size!r}."
                )
            # An explicit size replaces the weights' own resize and crop.
            self.resize_size_ = None

    def _fit_frames(self, column, rows):
        """Fit the image side's preprocessing on frames of a sample of the clips."""
        if self.n_frames == "auto":
            self.n_frames_ = _FRAMES
        else:
            self.n_frames_ = self.n_frames
        pooling = self.pooling
        if pooling == "auto":
            pooling = "mean" if self._frozen() else "gru"
        elif pooling == "gru" and self._frozen():
            raise ValueError(
                "pooling='gru' is a temporal model trained with the tower; it needs "
                "max_epochs > 0 (the tower is frozen here). Use pooling='mean' or "
                "'max' for a frozen tower."
            )
        self.pooling_ = pooling
        frames = self._frame_encoder()
        size = self.image_size
        min_size = (size, size) if isinstance(size, int) else size
        # The first clip first (the image side takes its frame size from it), then
        # a random sample; memory is bounded by a number of frames and of pixels.
        rng = np.random.default_rng(self._seed())
        sample, pixels = [], 0
        for i in np.concatenate([rows[:1], rng.permutation(rows[1:])]):
            clip = self._read(column, i, min_size)
            sample += clip
            pixels += sum(frame.shape[0] * frame.shape[1] for frame in clip)
            if len(sample) >= _STATS_FRAMES or pixels >= _STATS_PIXELS:
                break
        frames._fit_preprocessing(_frames_column(sample), np.arange(len(sample)))
        self.backbone_ = frames.backbone_
        self._frame_state_ = {
            k: v
            for k, v in vars(frames).items()
            if is_fitted_attribute(k) and k != "backbone_"
        }

    # -- decoding -------------------------------------------------------------------------
    def _read(self, column, i, min_size):
        """The sampled frames of row ``i``: uint8 RGB from files, float32 from arrays."""
        item = column.items[i]
        try:
            frames = read_video(item, self.n_frames_, self.fps, min_size)
            if isinstance(item, (np.ndarray, list, tuple)):
                frames = [_checked(frame, j) for j, frame in enumerate(frames)]
        except ValueError as exc:
            raise ValueError(f"{column.where(i)}: {exc}") from None
        return frames

    def _decode_size(self):
        if self._uses_frames():
            frames = self.frame_encoder_
            return _decode_size(frames.image_size_, frames.resize_size_)
        return _decode_size(self.image_size_, self.resize_size_)

    def _load(self, column, rows):
        size = self._decode_size()
        clips = [self._read(column, i, size) for i in rows]
        if self._uses_frames():
            return self._frames_batch(clips)
        return self._clip_batch(clips)

    def _frames_batch(self, clips):
        """``(n, T, C, H, W)`` frames prepared by the image side; NaN past a clip's end."""
        lengths = [len(clip) for clip in clips]
        flat = [frame for clip in clips for frame in clip]
        images = self.frame_encoder_._load(_frames_column(flat), np.arange(len(flat)))
        out = images.new_full((len(clips), max(lengths), *images.shape[1:]), torch.nan)
        start = 0
        for row, length in enumerate(lengths):
            out[row, :length] = images[start : start + length]
            start += length
        return out

    def _clip_batch(self, clips):
        """``(n, C, T, H, W)`` clips preprocessed by the video weights' transform."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms._presets import VideoClassification

        transform = VideoClassification(
            crop_size=self.image_size_,
            resize_size=self.resize_size_ or self.image_size_,
            mean=self.mean_.tolist(),
            std=self.std_.tolist(),
            interpolation=InterpolationMode(self.interpolation_),
        )
        out = []
        for clip in clips:
            # A short clip (taken at fps) repeats its last frame: the model's length.
            clip = clip + clip[-1:] * (self.n_frames_ - len(clip))
            # Decoded uint8 frames go through the transform as torchvision's own
            # video reading gives them; array clips as their float images.
            # Frame by frame: a stream may change its frame size midway.
            frames = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in clip]
            out.append(
                torch.cat([transform(f.expand(-1, 3, -1, -1)) for f in frames], 1)
            )
        return torch.stack(out)

    def _augment(self, batch, generator):
        if self.augment is None:
            return batch
        if self.augment == "default":
            # Time folded into the channels: one transform for all of a clip's frames.
            return random_affine(batch.flatten(1, 2), generator).view_as(batch)
        out = batch.clone()
        if self._uses_frames():
            present = ~torch.isnan(batch.flatten(2)[..., 0])
            for i, t in present.nonzero().tolist():
                out[i, t] = self.augment(batch[i, t])
        else:
            for t in range(batch.shape[2]):
                out[:, :, t] = torch.stack(
                    [self.augment(clip) for clip in batch[:, :, t]]
                )
        return out

    # -- the module ----------------------------------------------------------------------
    def _tower(self, pretrained):
        if self._uses_frames():
            frames = self.frame_encoder_
            image = frames._init_module() if pretrained else frames._build_module()
            return VideoTower(image, self.pooling_)
        return self.backbone_.video_tower(self, pretrained)

    def _configure_training(self, module):
        """Freeze what ``train_layers`` keeps fixed; return the groups that train.

        Over frames, the image side follows ``train_layers`` and the GRU trains
        whenever the tower does.
        """
        if not isinstance(module, VideoTower):
            return super()._configure_training(module)
        groups = self.frame_encoder_._configure_training(module.frames)
        if module.temporal is None:
            return groups
        temporal = list(module.temporal.parameters())
        for p in temporal:
            p.requires_grad_(not self._frozen())
        if self._frozen():
            return groups
        return groups + [{"params": temporal, "lr": self.lr}]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def _frames_column(frames):
    """A list of frames as a column of image items for the image side."""
    items = np.empty(len(frames), dtype=object)
    for k, frame in enumerate(frames):  # one by one: equal shapes would broadcast
        items[k] = frame
    return Column(items, np.zeros(len(frames), dtype=bool))


def _checked(frame, j):
    """An array clip's frame checked and scaled as an image, or the error naming it."""
    try:
        return read_image(frame)
    except ValueError as exc:
        raise ValueError(f"frame {j}: {exc}") from None
