"""The small nets trained from scratch: ``"cnn"`` (images, spectrograms), ``"lstm"``/``"gru"``.

They have no pretrained weights (only a weights file of their own): the architecture
comes from the encoder's parameters and what it learnt from the training items (the
image channels, the vocabulary, the spectrogram statistics).
"""

import torch

from .._mel import LogMelSpectrogram
from ._base import Backbone, FreezableMixin, masked_pool


def small_cnn(in_channels):
    """A small CNN for small images (28x28 to 96x96): 3 conv blocks, 128 features."""

    def block(cin, cout, pool):
        layers = [
            torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(inplace=True),
        ]
        # ceil_mode keeps tiny inputs (a few spectrogram frames) from vanishing.
        return layers + ([torch.nn.MaxPool2d(2, ceil_mode=True)] if pool else [])

    return torch.nn.Sequential(
        *block(in_channels, 32, True),
        *block(32, 64, True),
        *block(64, 128, False),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


class TextTower(FreezableMixin, torch.nn.Module):
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
        return masked_pool(states, mask, self.pooling)


class _Standardize(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, x):
        return (x - self.mean) / self.std


def utterance_normalize(log_mel, floor_db=40.0, eps=1e-3):
    """Cepstral mean and variance normalisation, per sound and mel band.

    Each band of each spectrogram ``(n, n_mels, frames)``, in dB, is centred and
    scaled over the sound's frames that are within ``floor_db`` of its loudest one:
    a voice's or a microphone's fixed colouring (a constant offset per band in
    log-mel) is removed, which is what lets a model trained on a few voices carry to
    others. The quieter frames (silence, and the zero padding up to ``duration``)
    would dominate the statistics of a short word; they are set to 0, the mean.
    """
    level = log_mel.amax(dim=1, keepdim=True)
    voiced = (level > level.amax(dim=2, keepdim=True) - floor_db).to(log_mel.dtype)
    count = voiced.sum(dim=2, keepdim=True).clamp_min(1.0)
    mean = (log_mel * voiced).sum(dim=2, keepdim=True) / count
    var = (((log_mel - mean) * voiced) ** 2).sum(dim=2, keepdim=True) / count
    return (log_mel - mean) / (var.sqrt() + eps) * voiced


class LogMelFeatures(torch.nn.Module):
    """Waveforms (n, samples) -> normalised log-mel spectrograms (n, n_mels, frames).

    ``normalize="utterance"`` standardises each sound's bands over time (cepstral
    mean and variance normalisation), ``"global"`` with the training set's mean and
    standard deviation (the ``standardize`` buffers).
    """

    def __init__(self, sample_rate, n_fft, hop_length, n_mels, normalize="global"):
        super().__init__()
        self.log_mel = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels)
        self.standardize = _Standardize()
        self.per_utterance = normalize == "utterance"

    def forward(self, waveform):
        spec = self.log_mel(waveform)
        if self.per_utterance:
            return utterance_normalize(spec)
        return self.standardize(spec)


class AudioTower(FreezableMixin, torch.nn.Module):
    """Waveform batch (n, samples) -> log-mel -> normalise -> small CNN -> 128 features.

    Also takes spectrograms (n, n_mels, frames) that went through ``features``
    already: the training augmentation masks them (SpecAugment) before the CNN.
    """

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.cnn = small_cnn(1)
        self.out_features = 128

    def forward(self, x):
        spec = self.features(x) if x.ndim == 2 else x
        return self.cnn(spec.unsqueeze(1))


class ScratchBackbone(Backbone):
    """The nets trained from scratch: ``"cnn"`` (images, audio), ``"lstm"``, ``"gru"``."""

    hub = "built-in"
    modalities = frozenset({"image", "text", "audio"})
    poolings = ("mean", "max", "last")
    uses_vocabulary = True

    def image_backbone(self, encoder, pretrained):
        cnn = small_cnn(encoder.n_channels_)
        if pretrained and self.from_file:
            self.load_file(cnn)
        return cnn, 128

    def text_tower(self, encoder, pretrained):
        tower = TextTower(
            len(encoder.vocabulary_),
            encoder.embedding_dim,
            self.name,
            encoder.hidden_size,
            encoder.bidirectional,
            encoder.num_layers,
            encoder.pooling,
        )
        if pretrained and self.from_file:
            self.load_file(tower)
        return tower

    def audio_features(self, encoder):
        features = LogMelFeatures(
            encoder.sample_rate,
            encoder._n_fft(),
            encoder._hop_length(),
            encoder._n_mels(),
            normalize=encoder.normalize,
        )
        features.standardize.mean.fill_(encoder.spectrogram_mean_)
        features.standardize.std.fill_(encoder.spectrogram_std_)
        return features

    def audio_tower(self, encoder, pretrained):
        tower = AudioTower(self.audio_features(encoder))
        if pretrained and self.from_file:
            # A fitted encoder's module_ (with its standardisation), or the CNN's own.
            whole = "features.standardize.mean" in self.file_state()
            self.load_file(tower if whole else tower.cnn)
        return tower
