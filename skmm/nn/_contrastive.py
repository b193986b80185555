"""The pieces of contrastive matching: two-tower network, loss and generated negatives.

Why contrastive (measured in issue 9 on the fashion titles): two randomly initialised
towers whose outputs meet in a dot product, trained with binary cross-entropy on pairs
labelled 1/0, stay at the loss of guessing (ln 2) for 10 epochs. Each pair is judged
alone there, on a similarity that starts near 0 for every pair, and a sigmoid of a
cosine cannot leave [0.27, 0.73]. The contrastive loss of CLIP and DPR instead asks
each item to pick its partner among all the items of the batch: a softmax over the
batch's similarity matrix, in both directions, with a learned temperature that
sharpens it as the embeddings separate. Every pair then meets ``batch_size - 1``
negatives per step, and the towers learn from the first epochs.
"""

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# CLIP's initial temperature, and its cap on the logit scale (1 / temperature).
INITIAL_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


class TwoTowerNetwork(torch.nn.Module):
    """Two towers, each followed by a linear projection to L2-normalised embeddings.

    The similarity of two items is the dot product of their embeddings (their cosine).

    Parameters
    ----------
    towers : list of two torch.nn.Module
        The towers, each with an ``out_features`` attribute.
    embedding_dim : int or None
        Width of the shared embedding space. None: no projection (towers that are
        already aligned, such as CLIP's), so both towers must have the same width.
    temperature : "learned" or float
        Softmax temperature of the loss: learned, or fixed.
    initial_temperature : float, default=0.07
        Where a learned temperature starts (CLIP's 0.07, or the towers' own).
    """

    def __init__(
        self,
        towers,
        embedding_dim,
        temperature,
        initial_temperature=INITIAL_TEMPERATURE,
    ):
        super().__init__()
        self.towers = torch.nn.ModuleList(towers)
        widths = [t.out_features for t in towers]
        if embedding_dim is None:
            if len(set(widths)) != 1:
                raise ValueError(
                    f"embedding_dim=None uses the towers' outputs as the embeddings, "
                    f"so both towers must have the same width; they have {widths}. "
                    "Pass an int embedding_dim to project them to one space."
                )
            self.heads = torch.nn.ModuleList(torch.nn.Identity() for _ in towers)
            embedding_dim = widths[0]
        else:
            self.heads = torch.nn.ModuleList(
                torch.nn.Linear(w, embedding_dim) for w in widths
            )
        learned = isinstance(temperature, str)
        init = torch.tensor(
            math.log(1 / (initial_temperature if learned else temperature))
        )
        if learned:
            self.log_scale = torch.nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)
        self.out_features = embedding_dim

    def embed(self, side, x, encoded=False):
        """L2-normalised embeddings of a batch of the items of tower ``side``.

        With ``encoded``, ``x`` is already the tower's output (a frozen tower's
        features, computed once per fit).
        """
        features = x if encoded else self.towers[side](x)
        return F.normalize(self.heads[side](features.float()), dim=1)

    def logit_scale(self):
        """1 / temperature, capped (as in CLIP) so the softmax stays trainable."""
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def contrastive_loss(za, zb, n_pairs, scale, same_a, same_b, weight=None):
    """Symmetric cross-entropy over a batch's similarity matrix (CLIP's loss).

    Parameters
    ----------
    za, zb : Tensor of shape (n, d)
        Embeddings of the batch's first and second items. The first ``n_pairs`` rows
        are matching pairs; the other rows (known non-matching pairs) only add
        candidates, as DPR's hard negatives do.
    n_pairs : int
        Number of matching pairs, at the top of the batch.
    scale : Tensor
        The logit scale (1 / temperature).
    same_a, same_b : bool Tensor of shape (n_pairs, n)
        True where a candidate is the same item as the pair's own (a duplicated title,
        say). Those candidates are not negatives and are left out of the softmax.
    weight : Tensor of shape (n_pairs,) or None
        Weights of the matching pairs (``sample_weight``); None weighs them equally.

    Returns
    -------
    loss : Tensor
        Mean of the a-to-b and b-to-a cross-entropies.
    """
    target = torch.arange(n_pairs, device=za.device)
    own = F.one_hot(target, za.shape[0]).bool()
    loss = 0.0
    for queries, candidates, same in ((za, zb, same_b), (zb, za, same_a)):
        logits = scale * queries[:n_pairs] @ candidates.T
        logits = logits.masked_fill(same & ~own, float("-inf"))
        losses = F.cross_entropy(logits, target, reduction="none")
        if weight is None:
            loss = loss + losses.mean()
        else:
            loss = loss + (losses * weight).sum() / weight.sum().clamp_min(1e-12)
    return loss / 2


def item_groups(column):
    """Label each row of a ``Column`` by its item: equal items get equal labels.

    Texts and paths are compared as strings and numeric rows by value; other items
    (images given as arrays, say) are taken as all different.
    """
    n = len(column)
    items = np.asarray(column.items)
    if column.batch and items.dtype != object:
        flat = np.ascontiguousarray(items).reshape(n, -1)
        return np.unique(flat, axis=0, return_inverse=True)[1].ravel()
    # Texts come as a batch too when a scikit-learn transformer (a vectorizer) reads
    # them for a tabular tower. factorize compares the strings themselves: no
    # n x longest-text array.
    if items.ndim == 1 and all(isinstance(item, str) for item in items):
        return pd.factorize(items)[0]
    return np.arange(n)


def generated_negatives(groups_a, groups_b, random_state):
    """Pair each row's first item with the second item of another row.

    The partner is the next row in a random cyclic order whose items differ from the
    row's own in both columns (a duplicated title or image would make the pair a
    match). Rows with no such partner are left out.

    Returns
    -------
    rows, partners : ndarray of int
        The generated pairs are ``(a[rows], b[partners])``.
    """
    n = len(groups_a)
    order = np.random.default_rng(random_state).permutation(n)
    ga, gb = groups_a[order], groups_b[order]
    partner = np.full(n, -1)
    for shift in range(1, n):
        todo = partner < 0
        if not todo.any():
            break
        other = (np.arange(n) + shift) % n
        ok = todo & (ga != ga[other]) & (gb != gb[other])
        partner[ok] = other[ok]
    found = partner >= 0
    return order[found], order[partner[found]]
