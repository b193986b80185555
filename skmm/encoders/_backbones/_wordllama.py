"""wordllama (``backbone="wordllama"``): a static token embedding shipped in its wheel."""

import importlib.util
import os

import numpy as np
import torch

from ._base import (
    DEFAULT_WEIGHTS,
    Backbone,
    FreezableMixin,
    masked_pool,
    optional_import,
    package_identity,
)

WORDLLAMA_DIM = 256
_FILES = (
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
    paths = [os.path.join(root, f) for f in _FILES]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(
                f"backbone='wordllama': {path!r} is missing from the installed "
                "wordllama package; reinstall it (pip install wordllama)."
            )
    return paths


def ids_and_mask(sequences, max_length):
    """Stack token-id lists, cut to ``max_length`` and padded with 0, with their mask."""
    sequences = [list(s)[:max_length] or [0] for s in sequences]
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    # Filled in numpy, one tensor at the end: a torch tensor per text cost more
    # than the embedding's forward pass.
    out = np.zeros((len(sequences), 2, int(lengths.max())), dtype=np.int64)
    for r, s in enumerate(sequences):
        out[r, 0, : len(s)] = s
    out[:, 1] = np.arange(out.shape[2]) < lengths[:, None]
    return torch.from_numpy(out)


class WordLlamaTower(FreezableMixin, torch.nn.Module):
    """A static token embedding (wordllama's), mean- or max-pooled over each text.

    Takes ``(n, 2, length)``: token ids and mask stacked.
    """

    def __init__(self, vocab_size, embedding_dim, pooling):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, embedding_dim)
        self.pooling = pooling
        self.out_features = embedding_dim

    def forward(self, x):
        return masked_pool(self.embedding(x[:, 0]), x[:, 1], self.pooling)


class WordLlamaBackbone(Backbone):
    """wordllama's 32,000-token, 256-wide embedding and tokenizer, read from its files.

    No network and no import of wordllama itself: the tokenizer goes through
    ``tokenizers``, the embedding matrix through safetensors.
    """

    hub = "wordllama"
    modalities = frozenset({"text"})
    default_weights = DEFAULT_WEIGHTS
    poolings = ("mean", "max")

    def _resolve(self, encoder):
        from tokenizers import Tokenizer

        tokenizer_file, embedding_file = wordllama_files()
        self.processor = Tokenizer.from_file(tokenizer_file)
        if self.source is not None and not self.from_file:
            self.identity = package_identity("wordllama", embedding_file)

    def text_tower(self, encoder, pretrained):
        tower = WordLlamaTower(
            self.processor.get_vocab_size(), WORDLLAMA_DIM, encoder.pooling
        )
        if pretrained and self.from_file:
            self.load_file(tower)
        elif pretrained and self.source is not None:
            from safetensors.torch import load_file

            embedding = load_file(wordllama_files()[1])["embedding.weight"].float()
            tower.embedding.weight.data.copy_(embedding)
        return tower

    def text_input(self, encoder, texts):
        if len(texts) == 1:
            # The batch encoder spreads texts over its thread pool: for one text,
            # only the hand-off to a pool thread (which waits for a core on a busy
            # machine).
            encoded = [self.processor.encode(texts[0], add_special_tokens=False)]
        else:
            encoded = self.processor.encode_batch(texts, add_special_tokens=False)
        return ids_and_mask([e.ids for e in encoded], encoder.max_length)
