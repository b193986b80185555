"""TextEncoder: strings to pooled LSTM/GRU states, trained on labels."""

import re
from collections import Counter
from itertools import islice
from numbers import Integral

import torch
from sklearn.base import BaseEstimator

from ..base import TorchEncoderMixin
from ..utils._sklearn_compat import Interval, StrOptions

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+")


class TextTower(torch.nn.Module):
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


class TextEncoder(TorchEncoderMixin, BaseEstimator):
    """Encode texts with word (or character) embeddings and an LSTM/GRU.

    :meth:`fit` builds a vocabulary from the training texts and trains embedding, RNN
    and a linear head on ``y``; :meth:`transform` returns the pooled hidden states. For
    features that need no labels, use :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.

    Parameters
    ----------
    tokenizer : {"word", "char"} or callable, default="word"
        ``"word"`` lowercases and splits on runs of letters and digits (``\\w+``),
        ``"char"`` takes lowercase characters; a callable maps a string to a list of
        tokens.
    max_features : int, default=20000
        Vocabulary size, keeping the most frequent tokens (ties in alphabetical order);
        other tokens map to ``"<unk>"``.
    max_length : int, default=64
        Texts are cut to their first ``max_length`` tokens.
    embedding_dim : int, default=64
        Width of the token embeddings.
    rnn : {"lstm", "gru"}, default="lstm"
        The recurrent layer.
    hidden_size : int, default=64
        Hidden units of the RNN per direction.
    bidirectional : bool, default=True
        Read the texts in both directions (doubles the feature width).
    num_layers : int, default=1
        Stacked RNN layers.
    pooling : {"mean", "max", "last"}, default="mean"
        How the states of a text's tokens become one vector: their mean or maximum, or
        the final hidden state of each direction.
    max_epochs : int, default=10
        Training epochs on ``y``; 0 leaves the network untrained (random features).
    batch_size : int, default=32
        Texts per batch in training and in :meth:`transform`.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or ``joblib.Memory``) caching each item's features on disk, keyed by
        the text's hash and by a fingerprint of the fitted encoder (parameters and
        weights); entries carry a checksum, and a folder that cannot be written
        warns once and is not used. Cross-validation folds and grid-search candidates that share a
        frozen encoder (pretrained, or ``max_epochs=0``) then encode each item once; a
        retrained encoder has new weights, hence new keys, and never reads stale rows.
    num_workers : int, default=0
        Threads decoding the next batches while the model runs on the current one in
        :meth:`transform`; 0 decodes in the main thread. At most
        ``num_workers + 1`` batches are in memory at once.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters with ``lr``.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each training epoch with the history (see
        :mod:`skmm.callbacks`: checkpoints, learning-rate schedules, custom stops).
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the model runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and data order.
    verbose : bool, default=False
        Show progress bars while training and encoding.

    Attributes
    ----------
    vocabulary_ : dict of str to int
        Token ids; ``"<pad>"`` is 0 and ``"<unk>"`` is 1.
    module_ : torch.nn.Module
        The fitted :class:`TextTower`, on ``device_``.
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
    """

    _parameter_constraints = {
        **TorchEncoderMixin._encoder_parameter_constraints,
        "tokenizer": [StrOptions({"word", "char"}), callable],
        "max_features": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "rnn": [StrOptions({"lstm", "gru"})],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"mean", "max", "last"})],
    }

    _no_y_hint = (
        "TextEncoder learns its features from labels; for unsupervised text features "
        "use sklearn.feature_extraction.text.TfidfVectorizer (or max_epochs=0 for an "
        "untrained network)."
    )

    def __init__(
        self,
        tokenizer="word",
        *,
        max_features=20000,
        max_length=64,
        embedding_dim=64,
        rnn="lstm",
        hidden_size=64,
        bidirectional=True,
        num_layers=1,
        pooling="mean",
        max_epochs=10,
        batch_size=32,
        memory=None,
        num_workers=0,
        lr=1e-3,
        optimizer=torch.optim.Adam,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.tokenizer = tokenizer
        self.max_features = max_features
        self.max_length = max_length
        self.embedding_dim = embedding_dim
        self.rnn = rnn
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.pooling = pooling
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.memory = memory
        self.num_workers = num_workers
        self.lr = lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    _str_items_are_paths = False

    def _tokenize(self, text):
        # Only the first max_length tokens are kept: a huge text never becomes a
        # huge list of tokens.
        if self.tokenizer == "word":
            matches = islice(_WORD.finditer(text.lower()), self.max_length)
            return [m.group() for m in matches]
        if self.tokenizer == "char":
            return list(islice(text.lower(), self.max_length))
        return list(islice(self.tokenizer(text), self.max_length))

    def _tokens(self, column, rows):
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
            out.append(self._tokenize(text)[: self.max_length])
        return out

    def _fit_preprocessing(self, column, rows):
        counts = Counter(t for tokens in self._tokens(column, rows) for t in tokens)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        tokens = [t for t, _ in ranked if t not in (PAD, UNK)][: self.max_features]
        self.vocabulary_ = {PAD: 0, UNK: 1, **{t: i + 2 for i, t in enumerate(tokens)}}

    def _load(self, column, rows):
        docs = self._tokens(column, rows)
        width = max(1, max(len(d) for d in docs))
        ids = torch.zeros(len(docs), width, dtype=torch.long)
        for r, doc in enumerate(docs):
            # A text with no tokens (punctuation only) reads as one unknown token.
            doc_ids = [self.vocabulary_.get(t, 1) for t in doc] or [1]
            ids[r, : len(doc_ids)] = torch.tensor(doc_ids)
        return ids

    def _build_module(self):
        return TextTower(
            len(self.vocabulary_),
            self.embedding_dim,
            self.rnn,
            self.hidden_size,
            self.bidirectional,
            self.num_layers,
            self.pooling,
        )

    _init_module = _build_module

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
