"""The torch graphs that go to ONNX: a tower with its mask, a whole net.

What runs per batch of decoded items is exported: an image tower's normalisation, an
audio tower's log-mel spectrogram and standardisation, a net's towers, fusion and
head (and its softmax, or the regressor's target scale). What makes the batch stays
outside: decoding files, resizing and cropping each image to the tower's size,
padding or cropping each sound to ``duration``, tokenising texts (see
:func:`skmm.export.onnx_inputs`, which does it as skmm does).

A missing item is a row of zeros in its tower's input and ``False`` in the mask: an
encoder's graph outputs NaN for it (as ``transform`` does), a net's graph masks it
out of the fusion (as ``predict`` does).
"""

import torch

__all__ = ["EncoderGraph", "NetGraph", "exportable"]


class _UnpackedRNN(torch.nn.Module):
    """:class:`~skmm.encoders._text.TextTower` without packed sequences.

    torch.export cannot trace ``pack_padded_sequence``. Padding follows each text's
    tokens, so a forward pass over the padded batch gives the real tokens the same
    states; the backward direction of a bidirectional RNN runs on each text reversed
    within its own length, layer by layer, with the tower's own weights.
    """

    def __init__(self, tower):
        super().__init__()
        rnn = tower.rnn
        self.embedding = tower.embedding
        self.pooling = tower.pooling
        self.out_features = tower.out_features
        self.directions = 2 if rnn.bidirectional else 1
        self.layers = torch.nn.ModuleList()
        for layer in range(rnn.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                width = (
                    rnn.input_size if layer == 0 else rnn.hidden_size * self.directions
                )
                one = type(rnn)(width, rnn.hidden_size, batch_first=True)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    value = getattr(rnn, f"{kind}_l{layer}{suffix}")
                    getattr(one, f"{kind}_l0").data.copy_(value.data)
                self.layers.append(one)

    @staticmethod
    def _reverse(x, lengths):
        """Each row's first ``length`` steps in reverse order, the padding in place."""
        steps = torch.arange(x.shape[1], device=x.device)[None]
        last = (lengths - 1)[:, None]
        index = torch.where(steps <= last, last - steps, steps)
        return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))

    def forward(self, ids):
        mask = ids != 0
        lengths = mask.sum(1).clamp_min(1)
        states = self.embedding(ids)
        layers = iter(self.layers)
        for _ in range(len(self.layers) // self.directions):
            out = [next(layers)(states)[0]]
            if self.directions == 2:
                backward = next(layers)(self._reverse(states, lengths))[0]
                out.append(self._reverse(backward, lengths))
            states = torch.cat(out, dim=2)
        if self.pooling == "last":
            width = states.shape[2] // self.directions
            end = (lengths - 1)[:, None, None].expand(-1, 1, width)
            parts = [states[:, :, :width].gather(1, end)[:, 0]]
            if self.directions == 2:
                parts.append(states[:, 0, width:])  # the reverse pass ends at step 0
            return torch.cat(parts, dim=1)
        mask = mask.unsqueeze(2)
        if self.pooling == "max":
            return states.masked_fill(~mask, float("-inf")).amax(1)
        return (states * mask).sum(1) / lengths.unsqueeze(1)


def exportable(tower):
    """``tower``, or a module computing the same that torch.export can trace."""
    # The recurrent text tower (skmm.encoders._text.TextTower), by what it holds.
    if isinstance(getattr(tower, "rnn", None), (torch.nn.LSTM, torch.nn.GRU)):
        return _UnpackedRNN(tower)
    return tower


class EncoderGraph(torch.nn.Module):
    """An encoder's tower on a batch, NaN in the rows whose item is missing."""

    def __init__(self, tower):
        super().__init__()
        self.tower = exportable(tower)

    def forward(self, x, present):
        out = self.tower(x).float()
        return torch.where(present[:, None], out, torch.nan)


class NetGraph(torch.nn.Module):
    """A net's towers, fusion and head on one batch per tower and the mask of the
    modalities present; outputs the class probabilities, or the predictions."""

    def __init__(self, network, *, classifier, y_mean=None, y_scale=None):
        super().__init__()
        self.towers = torch.nn.ModuleList(exportable(t) for t in network.towers)
        self.norms = network.norms
        self.fusion = network.fusion
        self.head = network.head
        self.classifier = classifier
        # A regressor fitted on a 1-D y predicts a 1-D array.
        self.squeeze = not classifier and torch.as_tensor(y_mean).ndim == 0
        if not classifier:
            self.register_buffer("y_mean", torch.as_tensor(y_mean, dtype=torch.float32))
            self.register_buffer(
                "y_scale", torch.as_tensor(y_scale, dtype=torch.float32)
            )

    def forward(self, *inputs):
        *items, available = inputs
        blocks = []
        for m, (x, tower, norm) in enumerate(zip(items, self.towers, self.norms)):
            features = norm(tower(x).float())
            # Where, not a product: a tower's output for a missing row's zeros is
            # never used, even if it is not finite.
            blocks.append(torch.where(available[:, m : m + 1], features, 0.0))
        out = self.head(self.fusion(blocks, available))
        if self.classifier:
            return torch.softmax(out, dim=1)
        out = out * self.y_scale + self.y_mean
        return out[:, 0] if self.squeeze else out
