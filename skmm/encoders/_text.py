"""TextEncoder: strings to pooled LSTM/GRU states or pretrained text features."""

import os
import re
from collections import Counter
from itertools import islice
from numbers import Integral

import torch
from sklearn.base import BaseEstimator

from ..base import TorchEncoderMixin
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions
from ._hub import BackboneMixin

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+")


class TextEncoder(BackboneMixin, TorchEncoderMixin, BaseEstimator):
    """Encode texts with a pretrained text model, or an LSTM/GRU trained on labels.

    By default the tower is wordllama's pretrained token embedding (shipped with
    skmm, so it works offline), frozen: :meth:`fit` needs no ``y`` and
    :meth:`transform` returns the mean of each text's 256-wide token embeddings. A
    pretrained backbone (``"wordllama"``, ``"hf:..."``, ``"open_clip:..."``) brings
    its own tokenizer, stored as a fitted attribute, and is a frozen feature
    extractor by default. With ``backbone="lstm"`` or ``"gru"``, :meth:`fit` builds a
    vocabulary from the training texts and trains embedding, RNN and a linear head
    on ``y``; :meth:`transform` returns the pooled hidden states.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="wordllama"
        - ``"wordllama"``: the pretrained static token embedding (256 wide, 32,000
          tokens, distilled from LLaMA 2) and tokenizer shipped inside the
          ``wordllama`` package (a dependency of skmm), read from its files with no
          network; the tokenizer is case-sensitive;
        - ``"lstm"`` or ``"gru"``: word (or character) embeddings and a recurrent
          layer, trained from scratch;
        - ``"hf:<model id or local folder>"``: a Hugging Face ``AutoModel`` and its
          ``AutoTokenizer`` (extra ``skmm[hf]``);
        - ``"open_clip:<architecture>"``: the text tower of an open_clip model and
          its tokenizer, pooled as the model does (extra ``skmm[clip]``);
        - a module mapping token ids ``(n, length)`` of the word vocabulary, padded
          with 0, to features.
    tokenizer : {"word", "char"} or callable, default="word"
        For ``"lstm"``, ``"gru"`` and module backbones: ``"word"`` lowercases and
        splits on runs of letters and digits (``\\w+``), ``"char"`` takes lowercase
        characters; a callable maps a string to a list of tokens. Pretrained
        backbones use their own tokenizer.
    max_features : int, default=20000
        Vocabulary size, keeping the most frequent tokens (ties in alphabetical order);
        other tokens map to ``"<unk>"``.
    max_length : int, default=64
        Texts are cut to their first ``max_length`` tokens (an open_clip tokenizer
        uses its model's fixed context length).
    embedding_dim : int, default=64
        Width of the token embeddings (``"lstm"``, ``"gru"``).
    hidden_size : int, default=64
        Hidden units of the RNN per direction.
    bidirectional : bool, default=True
        Read the texts in both directions (doubles the feature width).
    num_layers : int, default=1
        Stacked RNN layers.
    pooling : {"mean", "max", "last", "cls", "pooler"}, default="mean"
        How the states of a text's tokens become one vector: their (masked) mean or
        maximum; ``"last"``, the final hidden state of each RNN direction;
        ``"cls"``, an ``"hf:"`` model's first token; ``"pooler"``, its
        ``pooler_output``. ``"lstm"``/``"gru"`` take mean, max or last; ``"hf:"``
        mean, cls or pooler; ``"wordllama"`` mean or max. open_clip and module
        backbones pool themselves.
    weights : "auto", "DEFAULT", path or None, default="auto"
        ``"auto"``: the pretrained weights that ``"wordllama"`` and ``"hf:"`` name,
        random weights for the others. ``None``: random weights (an ``"hf:"``
        architecture from its config). ``"DEFAULT"`` or an open_clip pretrained
        tag: downloaded by open_clip. A path: a state dict (``.safetensors`` or a
        ``torch.save`` file read with ``weights_only=True``).
    max_epochs : int or "auto", default="auto"
        Passes over the training items with ``y`` (as in the nets and the matcher, which
        may stop sooner); 0 uses the tower as it is (frozen). ``"auto"`` is 0 (a frozen
        feature extractor) when the tower starts from pretrained weights, and 10
        otherwise; 0 with random weights gives untrained (random) features.
    train_layers : {"all", "last", "head"}, default="all"
        What trains when ``max_epochs > 0``: the whole tower (with ``"wordllama"``,
        the embedding matrix itself), its last block and what follows it (a
        transformer's last layer), or none of it (only the head on top).
    batch_size : int, default=32
        Texts per batch in training and in :meth:`transform`.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or ``joblib.Memory``) caching each item's features on disk, keyed by
        the text's hash and by a fingerprint of the fitted encoder: its parameters and
        its weights, identified by their source for a frozen pretrained tower, else
        by a hash of the tensors computed once per fit. Entries carry a checksum, and
        a folder that cannot be written warns once and is not used. Cross-validation
        folds and grid-search candidates that share a frozen encoder then encode each
        item once; a retrained encoder has new weights, hence new keys.
    num_workers : int, default=0
        Threads tokenizing the next batches while the model runs on the current one
        in :meth:`transform`; 0 tokenizes in the main thread. At most
        ``num_workers + 1`` batches are in memory at once.
        When :meth:`fit` streams the training items (more than 256 MB decoded),
        worker processes decoding the next batches (a torch ``DataLoader``); the
        model is the same whatever their number.
    lr : float, default=1e-3
        Learning rate of the optimizer for this tower when the encoder trains
        alone (inside :mod:`skmm.nn`, the composite's ``lr``/``tower_lr`` apply).
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
        Seeds weight initialisation and data order.
    verbose : bool, default=False
        Show progress bars while training and encoding.

    Attributes
    ----------
    vocabulary_ : dict of str to int or None
        Token ids of the word vocabulary (``"<pad>"`` is 0 and ``"<unk>"`` is 1);
        None for a pretrained backbone.
    backbone_ : Backbone
        The resolved backbone: where the weights come from (``backbone_.source``),
        what names them in the cache (``backbone_.identity``) and, for CLIP's text
        tower, its ``backbone_.logit_scale``.
    processor_ : object or None
        The tokenizer of a pretrained backbone (``backbone_.processor``), else None.
    hub_config_ : object or None
        The Hugging Face config of an ``"hf:"`` backbone, else None.
    module_ : torch.nn.Module
        The fitted tower, on ``device_``.
    device_ : str
        The device used.
    classes_ : ndarray or None
        Classes of ``y`` (None for a real-valued ``y``); set when ``max_epochs > 0``.
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
    sklearn.feature_extraction.text.TfidfVectorizer : Unsupervised text features.
    ImageEncoder : The same for images.

    Examples
    --------
    >>> from skmm.encoders import TextEncoder
    >>> texts = ["red cotton shirt", "blue denim jeans", "red silk shirt", "black jeans"]

    The default embedding is pretrained and frozen: ``fit`` needs no labels.

    >>> enc = TextEncoder(device="cpu")
    >>> enc.fit_transform(texts).shape
    (4, 256)

    An LSTM trained on labels:

    >>> enc = TextEncoder("lstm", hidden_size=8, max_epochs=2, random_state=0,
    ...                   device="cpu")
    >>> enc.fit_transform(texts, ["top", "bottom", "top", "bottom"]).shape
    (4, 16)
    >>> enc.vocabulary_["shirt"]
    4
    """

    _parameter_constraints = {
        **TorchEncoderMixin._encoder_parameter_constraints,
        "backbone": [str, HasMethods(["forward"])],
        "tokenizer": [StrOptions({"word", "char"}), callable],
        "max_features": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"mean", "max", "last", "cls", "pooler"})],
        "weights": [None, str, os.PathLike],
        "max_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "train_layers": [StrOptions({"all", "last", "head"})],
    }

    _no_y_hint = (
        "A TextEncoder without pretrained weights learns its features from labels; "
        "for unsupervised text features use a pretrained backbone such as the "
        "default backbone='wordllama', or "
        "sklearn.feature_extraction.text.TfidfVectorizer (or max_epochs=0 for an "
        "untrained network)."
    )

    def __init__(
        self,
        backbone="wordllama",
        *,
        tokenizer="word",
        max_features=20000,
        max_length=64,
        embedding_dim=64,
        hidden_size=64,
        bidirectional=True,
        num_layers=1,
        pooling="mean",
        weights="auto",
        max_epochs="auto",
        train_layers="all",
        batch_size=32,
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
        self.tokenizer = tokenizer
        self.max_features = max_features
        self.max_length = max_length
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.pooling = pooling
        self.weights = weights
        self.max_epochs = max_epochs
        self.train_layers = train_layers
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

    _str_items_are_paths = False
    _modality = "text"

    # -- preprocessing -------------------------------------------------------------------
    def _tokenize(self, text):
        # Only the first max_length tokens are kept: a huge text never becomes a
        # huge list of tokens.
        if self.tokenizer == "word":
            matches = islice(_WORD.finditer(text.lower()), self.max_length)
            return [m.group() for m in matches]
        if self.tokenizer == "char":
            return list(islice(text.lower(), self.max_length))
        return list(islice(self.tokenizer(text), self.max_length))

    def _texts(self, column, rows):
        out = []
        for i in rows:
            text = column.items[i]
            if not isinstance(text, str):
                raise ValueError(
                    f"{column.where(i)}: expected a string, got {type(text).__name__} "
                    f"{text!r}"
                )
            if not text.strip():
                raise ValueError(f"{column.where(i)}: empty text")
            out.append(text)
        return out

    def _check_backbone(self, backbone):
        if backbone.poolings is not None and self.pooling not in backbone.poolings:
            raise ValueError(
                f"pooling={self.pooling!r} does not apply to backbone="
                f"{self.backbone!r}; use one of {list(backbone.poolings)}."
            )
        if self.tokenizer != "word" and not backbone.uses_vocabulary:
            raise ValueError(
                f"tokenizer={self.tokenizer!r}: backbone={self.backbone!r} uses its "
                "own tokenizer; leave tokenizer='word'."
            )

    def _fit_preprocessing(self, column, rows):
        backbone = self._resolve_backbone(check=self._check_backbone)
        self.vocabulary_ = None
        if backbone.uses_vocabulary:
            texts = self._texts(column, rows)
            counts = Counter(t for text in texts for t in self._tokenize(text))
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            tokens = [t for t, _ in ranked if t not in (PAD, UNK)][: self.max_features]
            self.vocabulary_ = {
                PAD: 0,
                UNK: 1,
                **{t: i + 2 for i, t in enumerate(tokens)},
            }

    def _vocabulary_ids(self, texts):
        """Token ids ``(n, length)`` of the word vocabulary, padded with 0."""
        docs = [self._tokenize(text) for text in texts]
        width = max(1, max(len(d) for d in docs))
        ids = torch.zeros(len(docs), width, dtype=torch.long)
        for r, doc in enumerate(docs):
            # A text with no tokens (punctuation only) reads as one unknown token.
            doc_ids = [self.vocabulary_.get(t, 1) for t in doc] or [1]
            ids[r, : len(doc_ids)] = torch.tensor(doc_ids)
        return ids

    def _load(self, column, rows):
        return self.backbone_.text_input(self, self._texts(column, rows))

    # -- the module ----------------------------------------------------------------------
    def _tower(self, pretrained):
        return self.backbone_.text_tower(self, pretrained)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
