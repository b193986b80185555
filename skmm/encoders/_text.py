"""TextEncoder: strings to pooled LSTM/GRU states or pretrained text features."""

import copy
import os
import re
from collections import Counter
from itertools import islice
from numbers import Integral

import torch
from sklearn.base import BaseEstimator

from ..base import TorchEncoderMixin
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions
from . import _hub

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+")


class TextTower(_hub.FreezableMixin, torch.nn.Module):
    """Embedding, a (bi)LSTM or GRU, and pooling over the tokens of each text.

    Takes a batch of token ids ``(n, length)`` padded with 0; the padding never changes
    a text's features (packed sequences, masked pooling).
    """

    def __init__(
        self,
        vocab_size,
        embedding_dim,
        rnn,
        hidden_size,
        bidirectional,
        num_layers,
        pooling,
    ):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        cls = torch.nn.LSTM if rnn == "lstm" else torch.nn.GRU
        self.rnn = cls(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.pooling = pooling
        self.out_features = hidden_size * (2 if bidirectional else 1)

    def forward(self, ids):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        mask = ids != 0
        lengths = mask.sum(1).clamp_min(1)
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, hidden = self.rnn(packed)
        if self.pooling == "last":
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            n_dir = 2 if self.rnn.bidirectional else 1
            return torch.cat(list(hidden[-n_dir:]), dim=1)
        states, _ = pad_packed_sequence(
            states, batch_first=True, total_length=ids.shape[1]
        )
        mask = mask.unsqueeze(2)
        if self.pooling == "max":
            return states.masked_fill(~mask, float("-inf")).amax(1)
        return (states * mask).sum(1) / lengths.unsqueeze(1)


def _masked_pool(states, mask, pooling):
    """Mean (or max) of the token states where ``mask`` is 1."""
    mask = mask.unsqueeze(2).to(states.dtype)
    if pooling == "max":
        return states.masked_fill(mask == 0, float("-inf")).amax(1)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1)


class HFTextTower(_hub.FreezableMixin, torch.nn.Module):
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
        return _masked_pool(out.last_hidden_state, mask, "mean")


class OpenClipTextTower(_hub.FreezableMixin, torch.nn.Module):
    """The text tower of an open_clip model (``encode_text``, unnormalised).

    ``logit_scale`` is the CLIP model's 1 / temperature, which a matcher built on
    its aligned towers starts from.
    """

    def __init__(self, model, out_features):
        super().__init__()
        self.model = model
        self.out_features = out_features
        self.logit_scale = float(model.logit_scale.detach().exp())

    def forward(self, ids):
        return self.model.encode_text(ids)


class WordLlamaTower(_hub.FreezableMixin, torch.nn.Module):
    """A static token embedding (wordllama's), mean- or max-pooled over each text.

    Takes ``(n, 2, length)``: token ids and mask stacked.
    """

    def __init__(self, vocab_size, embedding_dim, pooling):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, embedding_dim)
        self.pooling = pooling
        self.out_features = embedding_dim

    def forward(self, x):
        return _masked_pool(self.embedding(x[:, 0]), x[:, 1], self.pooling)


def _ids_and_mask(sequences, max_length):
    """Stack token-id lists, cut to ``max_length`` and padded with 0, with their mask."""
    sequences = [list(s)[:max_length] or [0] for s in sequences]
    width = max(len(s) for s in sequences)
    out = torch.zeros(len(sequences), 2, width, dtype=torch.long)
    for r, s in enumerate(sequences):
        out[r, 0, : len(s)] = torch.tensor(s)
        out[r, 1, : len(s)] = 1
    return out


class TextEncoder(_hub.BackboneMixin, TorchEncoderMixin, BaseEstimator):
    """Encode texts with an LSTM/GRU trained on labels, or a pretrained text model.

    With ``backbone="lstm"`` or ``"gru"``, :meth:`fit` builds a vocabulary from the
    training texts and trains embedding, RNN and a linear head on ``y``;
    :meth:`transform` returns the pooled hidden states. A pretrained backbone
    (``"wordllama"``, ``"hf:..."``, ``"open_clip:..."``) brings its own tokenizer,
    stored as a fitted attribute, and is a frozen feature extractor by default:
    :meth:`fit` then needs no ``y``.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="lstm"
        - ``"lstm"`` or ``"gru"``: word (or character) embeddings and a recurrent
          layer, trained from scratch;
        - ``"wordllama"``: the pretrained static token embedding (256 wide, 32,000
          tokens) and tokenizer shipped inside the ``wordllama`` package, read from
          its files with no network (extra ``skmm[wordllama]``);
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
        Learning rate of the optimizer for this tower (also inside :mod:`skmm.nn`).
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
    processor_ : object or None
        The tokenizer of a pretrained backbone, else None.
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
    >>> enc = TextEncoder(hidden_size=8, max_epochs=2, random_state=0, device="cpu")
    >>> enc.fit_transform(texts, ["top", "bottom", "top", "bottom"]).shape
    (4, 16)
    >>> enc.vocabulary_["shirt"]
    4

    A pretrained embedding needs no labels:

    >>> enc = TextEncoder("wordllama", device="cpu")  # doctest: +SKIP
    >>> enc.fit_transform(texts).shape  # doctest: +SKIP
    (4, 256)
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
        "for unsupervised text features use a pretrained backbone such as "
        "backbone='wordllama', or sklearn.feature_extraction.text.TfidfVectorizer "
        "(or max_epochs=0 for an untrained network)."
    )

    def __init__(
        self,
        backbone="lstm",
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
    _POOLINGS = {
        "lstm": ("mean", "max", "last"),
        "gru": ("mean", "max", "last"),
        "hf": ("mean", "cls", "pooler"),
        "wordllama": ("mean", "max"),
    }

    # -- what the backbone is --------------------------------------------------------
    def _kind(self):
        return _hub.parse_backbone(self.backbone, "text")

    def _uses_vocabulary(self):
        return self._kind()[0] in ("lstm", "gru", "module")

    def _weights(self):
        kind, _ = self._kind()
        if self.weights == "auto":
            return _hub.DEFAULT_WEIGHTS if kind in ("hf", "wordllama") else None
        if self.weights is None:
            return None
        if _hub.is_weights_path(self.weights) and kind != "hf":
            if not os.path.isfile(self.weights):
                raise ValueError(f"weights file not found: {os.fspath(self.weights)!r}")
            return self.weights
        if self.weights == _hub.DEFAULT_WEIGHTS and kind in ("hf", "wordllama"):
            return self.weights
        if kind == "open_clip":
            return self.weights  # an open_clip pretrained tag, checked by open_clip
        raise ValueError(
            f"weights={self.weights!r} does not apply to backbone={self.backbone!r}: "
            "use 'auto', None or the path of a state dict file (the weights of an "
            "'hf:' backbone come from its model id or folder)."
        )

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

    def _tokens(self, column, rows):
        return [
            self._tokenize(text)[: self.max_length]
            for text in self._texts(column, rows)
        ]

    def _fit_preprocessing(self, column, rows):
        kind, name = self._kind()
        allowed = self._POOLINGS.get(kind)
        if allowed is not None and self.pooling not in allowed:
            raise ValueError(
                f"pooling={self.pooling!r} does not apply to backbone="
                f"{self.backbone!r}; use one of {list(allowed)}."
            )
        if self.tokenizer != "word" and not self._uses_vocabulary():
            raise ValueError(
                f"tokenizer={self.tokenizer!r}: backbone={self.backbone!r} uses its "
                "own tokenizer; leave tokenizer='word'."
            )
        self.vocabulary_ = self.processor_ = self.hub_config_ = None
        if kind == "hf":
            self.hub_config_, self.processor_ = _hub.hf_parts(name, "text")
        elif kind == "open_clip":
            self.processor_ = _hub.open_clip_tokenizer(name)
        elif kind == "wordllama":
            self.processor_ = _hub.wordllama_tokenizer()
        else:
            counts = Counter(t for tokens in self._tokens(column, rows) for t in tokens)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            tokens = [t for t, _ in ranked if t not in (PAD, UNK)][: self.max_features]
            self.vocabulary_ = {
                PAD: 0,
                UNK: 1,
                **{t: i + 2 for i, t in enumerate(tokens)},
            }

    def _load(self, column, rows):
        kind, _ = self._kind()
        if kind == "hf":
            out = self.processor_(
                self._texts(column, rows),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            return torch.stack([out["input_ids"], out["attention_mask"]], dim=1)
        if kind == "open_clip":
            return self.processor_(self._texts(column, rows))
        if kind == "wordllama":
            encoded = self.processor_.encode_batch(
                self._texts(column, rows), add_special_tokens=False
            )
            return _ids_and_mask([e.ids for e in encoded], self.max_length)
        docs = self._tokens(column, rows)
        width = max(1, max(len(d) for d in docs))
        ids = torch.zeros(len(docs), width, dtype=torch.long)
        for r, doc in enumerate(docs):
            # A text with no tokens (punctuation only) reads as one unknown token.
            doc_ids = [self.vocabulary_.get(t, 1) for t in doc] or [1]
            ids[r, : len(doc_ids)] = torch.tensor(doc_ids)
        return ids

    # -- the module ----------------------------------------------------------------------
    def _tower(self, pretrained):
        kind, name = self._kind()
        weights = self._weights() if pretrained else None
        from_file = weights is not None and _hub.is_weights_path(weights)
        if kind == "hf":
            model = _hub.hf_model(
                name, self.hub_config_, pretrained=weights is not None
            )
            return HFTextTower(model, self.pooling, model.config.hidden_size)
        if kind == "open_clip":
            model = _hub.open_clip_model(name, weights)
            model.visual = None  # the text tower only: a smaller pickle
            with torch.no_grad():
                probe = torch.zeros(1, model.context_length, dtype=torch.long)
                width = model.encode_text(probe).shape[1]
            return OpenClipTextTower(model, width)
        if kind == "wordllama":
            tower = WordLlamaTower(
                self.processor_.get_vocab_size(), _hub.WORDLLAMA_DIM, self.pooling
            )
            if weights is not None and not from_file:
                tower.embedding.weight.data.copy_(_hub.wordllama_embedding())
        elif kind == "module":
            backbone = copy.deepcopy(self.backbone)
            token = torch.ones(1, 1, dtype=torch.long)
            tower = _hub.ModuleTower(backbone, _hub.output_width(backbone, token))
        else:
            tower = TextTower(
                len(self.vocabulary_),
                self.embedding_dim,
                kind,
                self.hidden_size,
                self.bidirectional,
                self.num_layers,
                self.pooling,
            )
        if from_file:
            target = tower.backbone if kind == "module" else tower
            _hub.load_into(target, _hub.read_weights_file(weights), weights)
        return tower

    def _build_module(self):
        return self._tower(pretrained=False)

    def _init_module(self):
        return self._tower(pretrained=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
