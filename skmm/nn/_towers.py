"""The torch modules of the end-to-end nets: tabular tower, fusion layer, whole network.

The image, text and audio towers are the encoders' own modules (built through their
``_init_module``/``_build_module`` hooks); this file adds the MLP tower for numeric
columns, the layer that fuses the towers' outputs and the network that ties them to an
MLP head. The fixed fusion operators are those of :mod:`skmm.fusion._ops`, shared with
:class:`~skmm.fusion.MultimodalFuser`; only the learned ``"attention"`` weights and the
``"dot"`` interaction are added here.
"""

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_array

from ..fusion._ops import FUSION_OPERATORS, fuse, tensor_width
from ..utils._sklearn_compat import _safe_indexing
from ..utils._torch import TowerNorm
from ..utils._validation import Column

# The fusions the nets offer: the fixed operators of the one registry shared with the
# fuser (``weighted`` is replaced by learned weights, ``attention``), then the fusions
# with parameters of their own.
LEARNED_FUSIONS = ("attention", "transformer", "dot")
# Width of the modality tokens of "transformer" fusion when ``projection`` is None.
TOKEN_WIDTH = 64
NET_FUSIONS = (
    *(name for name in FUSION_OPERATORS if name != "weighted"),
    *LEARNED_FUSIONS,
)
# Width each tower is projected to for "tensor" fusion when ``projection`` is None: the
# fused width is (16 + 1) ** n_towers (289 for two towers, 4,913 for three).
TENSOR_WIDTH = 16
# Units of the hidden layer of the tower that reads numeric columns.
TABULAR_WIDTH = 64


class TabularTower(torch.nn.Module):
    """Standardised numeric features, then one ReLU layer of ``width`` units."""

    def __init__(self, n_features, width=TABULAR_WIDTH):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.linear = torch.nn.Linear(n_features, width)
        self.out_features = width

    def forward(self, x):
        return torch.relu(self.linear((x - self.mean) / self.scale))


class TabularEncoder(BaseEstimator):
    """Numeric columns (or a scikit-learn transformer's output) for a TabularTower.

    It implements the :class:`~skmm.base.Tower` protocol that the nets use, so that
    numeric columns are one more tower.
    With ``"passthrough"`` a row whose every value is NaN is missing for this tower
    (the one meaning of a missing modality); a NaN among present values is imputed
    with the training mean (0 once standardised); a transformer
    (``OneHotEncoder``, ``TfidfVectorizer`` ...) is fitted (without ``y``) on the
    training rows and its output, made dense, feeds the tower.

    Parameters
    ----------
    transformer : "passthrough" or transformer, default="passthrough"
        What turns the selected columns into numbers.
    """

    def __init__(self, transformer="passthrough"):
        self.transformer = transformer

    def _passthrough(self):
        return isinstance(self.transformer, str) and self.transformer == "passthrough"

    def _check_input(self, X, *, reset):
        if not self._passthrough():
            return Column(X, np.zeros(_n_rows(X), dtype=bool), batch=True)
        array = check_array(
            X,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            ensure_2d=False,
        )
        if array.ndim == 1:
            array = array[:, None]
        return Column(array, np.isnan(array).all(axis=1), batch=True)

    def _features(self, column, rows):
        rows = np.asarray(rows)
        if self._passthrough():
            out = np.asarray(column.items[rows], dtype=np.float32)
            if "mean_" in vars(self):
                out = np.where(np.isnan(out), self.mean_.astype(np.float32), out)
            return out
        out = self.transformer_.transform(_safe_indexing(column.items, rows))
        out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
        try:
            out = out.astype(np.float32).reshape(len(rows), -1)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{type(self.transformer_).__name__} must output numbers: {exc}"
            ) from None
        if not np.all(np.isfinite(out)):
            raise ValueError(
                f"{type(self.transformer_).__name__} output NaN or infinite values."
            )
        return out

    def _fit_preprocessing(self, column, rows):
        if not self._passthrough():
            self.transformer_ = clone(self.transformer).fit(
                _safe_indexing(column.items, rows)
            )
        features = self._features(column, rows)
        self.n_features_ = features.shape[1]
        if self.n_features_ == 0:
            raise ValueError(
                f"{type(self.transformer_).__name__} output no features; the tower "
                "needs at least one."
            )
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            # A column NaN in every present row: mean 0, scale 1.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, scale = np.nanmean(features, axis=0), np.nanstd(features, axis=0)
        self.mean_ = np.nan_to_num(mean).astype(np.float32)
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)

    def _load(self, column, rows):
        return torch.from_numpy(self._features(column, rows))

    def _augment(self, batch, generator):
        return batch

    def _frozen(self):
        # A small layer over the user's own columns: always trained with the net.
        return False

    def _build_module(self):
        return TabularTower(self.n_features_)

    def _init_module(self):
        tower = self._build_module()
        tower.mean.copy_(torch.from_numpy(self.mean_))
        tower.scale.copy_(torch.from_numpy(self.scale_))
        return tower


def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


class _TokenLayer(torch.nn.Module):
    """A pre-norm transformer encoder layer that also returns its attention."""

    def __init__(self, width, n_heads, dropout):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(
            width, n_heads, dropout=dropout, batch_first=True
        )
        self.norm2 = torch.nn.LayerNorm(width)
        self.ff = torch.nn.Sequential(
            torch.nn.Linear(width, 2 * width),
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(2 * width, width),
        )
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x, padding):
        h = self.norm1(x)
        out, weights = self.attn(
            h,
            h,
            h,
            key_padding_mask=padding,
            need_weights=True,
            average_attn_weights=True,
        )
        x = x + self.dropout(out)
        return x + self.dropout(self.ff(self.norm2(x))), weights


class ModalityTokens(torch.nn.Module):
    """Token fusion: one token per modality through a small transformer encoder.

    Each tower's (projected) output is a token; a learned modality embedding tells
    the tokens apart, and a learned summary token (as BERT's CLS) gathers them: its
    output is the fused vector. A missing or dropped modality is masked out of
    attention, not zero-filled, so it cannot pull the summary towards zero.

    ``forward(blocks, available)`` returns the fused ``(n, width)`` vector and the
    summary token's attention over the modalities in the last layer ``(n, M)``.
    """

    def __init__(self, width, n_modalities, n_layers=2, dropout=0.1):
        super().__init__()
        # Up to 4 heads of at least 16 dimensions each.
        n_heads = max(
            [h for h in (2, 4) if width % h == 0 and width // h >= 16], default=1
        )
        self.modality = torch.nn.Parameter(torch.randn(n_modalities, width) * 0.02)
        self.summary = torch.nn.Parameter(torch.zeros(1, 1, width))
        self.layers = torch.nn.ModuleList(
            _TokenLayer(width, n_heads, dropout) for _ in range(n_layers)
        )
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, blocks, available):
        tokens = torch.stack(blocks, dim=1) + self.modality
        n = tokens.shape[0]
        x = torch.cat([self.summary.expand(n, -1, -1), tokens], dim=1)
        # The summary token is never masked, so a row with nothing present still
        # attends to something (itself) and stays finite.
        padding = torch.cat(
            [available.new_zeros((n, 1), dtype=torch.bool), ~available], dim=1
        )
        for layer in self.layers:
            x, weights = layer(x, padding)
        return self.norm(x[:, 0]), weights[:, 0, 1:]


class FusionLayer(torch.nn.Module):
    """Project the towers' outputs (when the fusion needs it) and fuse them.

    ``forward(blocks, available)`` takes one ``(n, width_m)`` block per tower, whose
    rows are zero where the modality is missing or dropped, and the ``(n, n_towers)``
    boolean mask of the modalities present in each row.

    Parameters
    ----------
    fusion : str
        One of ``NET_FUSIONS``.
    widths : list of int
        Output width of each tower.
    projection : int or None
        Width each tower is projected to (a linear layer and a ReLU); None keeps the
        towers' widths, which only ``"concat"`` and ``"attention"`` allow.
    """

    def __init__(self, fusion, widths, projection):
        super().__init__()
        self.fusion = fusion
        if projection is None:
            self.projections = None
            widths = list(widths)
        else:
            self.projections = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.Linear(w, projection), torch.nn.ReLU())
                for w in widths
            )
            widths = [projection] * len(widths)
        if fusion == "attention":
            # Additive attention (Bahdanau style): one score per modality and sample.
            self.scores = torch.nn.ModuleList(
                torch.nn.Sequential(
                    torch.nn.Linear(w, w),
                    torch.nn.Tanh(),
                    torch.nn.Linear(w, 1, bias=False),
                )
                for w in widths
            )
        if fusion == "transformer":
            self.tokens = ModalityTokens(widths[0], len(widths))
        if fusion in ("concat", "attention"):
            self.out_features = sum(widths)
        elif fusion == "tensor":
            self.out_features = tensor_width(widths)
        elif fusion == "dot":
            self.out_features = sum(widths) + len(widths) * (len(widths) - 1) // 2
        else:  # element-wise and "transformer": one token width
            self.out_features = widths[0]

    def project(self, blocks):
        """The blocks the fusion operator sees: projected when the fusion needs it."""
        if self.projections is None:
            return list(blocks)
        return [p(b) for p, b in zip(self.projections, blocks)]

    def attention(self, blocks, available):
        """Per-sample weights of the modalities, shape (n, n_towers).

        A softmax over the available modalities of each row, times their number: equal
        scores leave every block as it is, and a missing modality gets weight 0 (a row
        with none available gets all zeros).
        """
        scores = torch.cat([s(b) for s, b in zip(self.scores, blocks)], dim=1)
        # A very negative score, not -inf: a row with nothing available must give
        # finite (then zeroed) weights, not NaN through the softmax.
        scores = scores.masked_fill(~available, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * available
        return weights * available.sum(dim=1, keepdim=True)

    def modality_weights(self, blocks, available):
        """Per-row weights of the modalities, summing to 1 over those present.

        For ``"attention"`` the learned gates; for ``"transformer"`` the attention of
        the summary token to each modality token in the last layer (mean over heads).
        """
        blocks = self.project(blocks)
        if self.fusion == "attention":
            weights = self.attention(blocks, available)
        elif self.fusion == "transformer":
            weights = self.tokens(blocks, available)[1]
        else:
            raise ValueError(
                f"fusion={self.fusion!r} has no modality weights; 'attention' and "
                "'transformer' learn them."
            )
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, blocks, available):
        blocks = self.project(blocks)
        if self.fusion == "transformer":
            return self.tokens(blocks, available)[0]
        if self.fusion == "attention":
            # The weighted blocks stay side by side: the weights gate the modalities
            # of each sample without mixing their features.
            weights = self.attention(blocks, available)
            return fuse(blocks, "concat", weights=list(weights.T.unsqueeze(2)))
        if self.fusion == "dot":
            # DLRM's interaction layer: the blocks side by side, then the ReLU of the
            # dot product of each pair (the whole signal for matching pairs; a scalar
            # alone cannot tell ten classes apart).
            pairs = [
                fuse([blocks[i], blocks[j]], "product").sum(dim=1, keepdim=True)
                for i in range(len(blocks))
                for j in range(i + 1, len(blocks))
            ]
            return torch.cat([*blocks, torch.relu(torch.cat(pairs, dim=1))], dim=1)
        return fuse(blocks, self.fusion)


def mlp_head(in_features, hidden_layer_sizes, dropout, n_outputs):
    """Dropout on the fused input, ReLU layers each followed by dropout, a linear output."""
    layers = [torch.nn.Dropout(dropout)]
    width = in_features
    for size in hidden_layer_sizes:
        layers += [
            torch.nn.Linear(width, size),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
        ]
        width = size
    layers.append(torch.nn.Linear(width, n_outputs))
    return torch.nn.Sequential(*layers)


class MultimodalNetwork(torch.nn.Module):
    """Towers, a fusion layer and an MLP head.

    ``forward(inputs, available)`` takes, for each tower, a triple ``(x, rows,
    encoded)``: the batch of the items present in ``rows`` (positions in the batch;
    ``x`` is None when no item is present), or with ``encoded`` the frozen tower's
    precomputed output for them; and the ``(n, n_towers)`` mask of the modalities
    that count.
    Each tower's output is standardised (``norms``, see :class:`TowerNorm`), then is
    zero in the rows where its modality is missing or masked, the same in training
    (modality dropout) and prediction (missing items).

    Each tower also has a linear head of its own (``tower_heads``): trained on the
    target beside the fused head, it keeps every tower learning even when another
    modality fits faster, and it predicts from that modality alone.
    """

    def __init__(self, towers, fusion, projection, hidden_layer_sizes, dropout, n_out):
        super().__init__()
        self.towers = torch.nn.ModuleList(towers)
        self.norms = torch.nn.ModuleList(TowerNorm(t.out_features) for t in towers)
        widths = [t.out_features for t in towers]
        if projection is None and fusion not in ("concat", "attention"):
            # The fusion needs one width: the narrowest tower's, or a fixed one.
            projection = {"tensor": TENSOR_WIDTH, "transformer": TOKEN_WIDTH}.get(
                fusion, min(widths)
            )
        self.fusion = FusionLayer(fusion, widths, projection)
        self.head = mlp_head(
            self.fusion.out_features, hidden_layer_sizes, dropout, n_out
        )
        self.tower_heads = torch.nn.ModuleList(
            mlp_head(t.out_features, (), dropout, n_out) for t in towers
        )

    def blocks(self, inputs, available):
        """The towers' standardised outputs, zero where the modality does not count."""
        n = available.shape[0]
        out = []
        parts = zip(inputs, self.towers, self.norms)
        for m, ((x, rows, encoded), tower, norm) in enumerate(parts):
            block = available.new_zeros((n, tower.out_features), dtype=torch.float32)
            if x is not None:
                features = norm((x if encoded else tower(x)).float())
                block = block.index_copy(0, rows, features)
            out.append(block * available[:, m : m + 1])
        return out

    def embed(self, inputs, available):
        """The fused representation the head reads."""
        return self.fusion(self.blocks(inputs, available), available)

    def forward(self, inputs, available):
        return self.head(self.embed(inputs, available))

    def forward_all(self, inputs, available):
        """The fused head's output and each tower head's, from one pass of the towers."""
        blocks = self.blocks(inputs, available)
        fused = self.head(self.fusion(blocks, available))
        return fused, [head(b) for head, b in zip(self.tower_heads, blocks)]
