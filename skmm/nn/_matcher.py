"""MultimodalMatcher: two towers trained contrastively to tell matching pairs."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from ..base import _batches
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._torch import torch_seed
from ._base import TRAINING_CONSTRAINTS, TowerComposite, check_weights, naming
from ._contrastive import (
    TwoTowerNetwork,
    contrastive_loss,
    generated_negatives,
    item_groups,
)
from ._towers import TabularEncoder

__all__ = ["MultimodalMatcher"]


class MultimodalMatcher(ClassifierMixin, TransformerMixin, TowerComposite):
    """Tell whether two items belong together: a two-tower matcher.

    Each row of ``X`` is a pair of items of two modalities: a product photo and its
    title, a picture and its caption. Each side goes through a tower (the torch
    module of an skmm encoder: :class:`~skmm.encoders.ImageEncoder` CNN,
    :class:`~skmm.encoders.TextEncoder` LSTM/GRU, :class:`~skmm.encoders.AudioEncoder`,
    or a ReLU layer over numeric columns) and a linear projection to an L2-normalised
    embedding; the similarity of a pair is the dot product of its two embeddings
    (their cosine). A pair matches when its similarity reaches ``threshold_``.

    The towers are trained contrastively, as CLIP is: in each batch of matching
    pairs, every item must pick its own partner among all the batch's items of the
    other side (a symmetric cross-entropy over the batch's similarity matrix, with a
    learned temperature), so each pair meets ``batch_size - 1`` negatives at every
    step. Binary cross-entropy on pairs labelled 1/0 through the same dot product
    does not learn from random towers (issue 9 measured the loss stuck at ln 2 for
    10 epochs on fashion titles), hence this recipe.

    Parameters
    ----------
    encoders : list of two (str, encoder, columns) tuples
        The two sides, as in :class:`~sklearn.compose.ColumnTransformer`: a name, an
        skmm encoder (cloned; its tower, preprocessing and ``augment`` are used, its
        own ``max_epochs``, ``lr`` and ``batch_size`` are the matcher's business,
        except that a tower whose encoder would not train, with ``max_epochs=0`` or
        pretrained ``weights``, stays frozen), ``"passthrough"`` for numeric columns,
        or a scikit-learn transformer whose numeric output feeds a tabular tower;
        then the column(s): a name or position (one column of items for an skmm
        encoder), a list, a slice, a boolean mask or a callable.
    embedding_dim : int, default=64
        Width of the shared embedding space.
    temperature : "learned" or float, default="learned"
        Temperature of the softmax in the loss: learned, starting at 0.07 (as in
        CLIP), or fixed.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    tower_lr : dict of str to float or None, default=None
        Learning rates of some towers by encoder name; the others and the
        projections use ``lr``.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each epoch with the history (see :mod:`skmm.callbacks`).
    batch_size : int, default=128
        Matching pairs per training batch (the in-batch negatives: larger batches
        give each pair more of them), and rows per batch in prediction.
    max_epochs : int, default=10
        Maximum passes over the training pairs.
    early_stopping : bool, default=True
        Stop when the ROC AUC on the held-out pairs has not improved for
        ``n_iter_no_change`` epochs and restore the weights of the best epoch. False
        trains for ``max_epochs``.
    validation_fraction : float, default=0.1
        Share of the rows held out (at least 2 matching pairs) to choose
        ``threshold_``, calibrate :meth:`predict_proba` and, with ``early_stopping``,
        stop training. Each held-out matching pair ``(a_i, b_i)`` is scored along with
        a generated non-matching one ``(a_i, b_j)``.
    n_iter_no_change : int, default=3
        Epochs without improvement before stopping.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the towers run; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the held-out split, the data order, the augmentation and
        the generated non-matching pairs.
    verbose : bool, default=False
        Show a progress bar over the epochs (with the loss and held-out ROC AUC) and
        over the batches in prediction.

    Attributes
    ----------
    encoders_ : list of (str, encoder, columns) tuples
        The fitted encoders (``"passthrough"`` and transformers become tabular
        encoders) with the resolved columns. Each skmm encoder holds its trained
        tower as ``module_``, so it can also encode on its own.
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name.
    module_ : torch.nn.Module
        The network: ``towers``, ``heads`` (the projections) and the log of the
        logit scale, on ``device_``.
    device_ : str
        The device used.
    classes_ : ndarray of shape (2,)
        The labels of ``y`` (``[0, 1]`` without y); the second one is a match.
    threshold_ : float
        The similarity from which a pair is predicted to match, chosen to maximise
        F1 on the held-out pairs.
    temperature_ : float
        The softmax temperature at the end of training (learned or fixed).
    calibrator_ : Pipeline
        Platt scaling (a logistic regression on the standardised similarity) fitted
        on the held-out pairs, used by :meth:`predict_proba`.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float
        ROC AUC of each epoch on the held-out pairs.
    best_validation_score_ : float
        ROC AUC on the held-out pairs of the weights kept.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``lr``, ``valid_score``,
        ``valid_loss``, ``best``.
    score_seed_ : int
        Seed of the non-matching pairs that :meth:`score` generates without ``y``
        (drawn from ``random_state`` at fit, so every call scores the same pairs).
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names, when X is a DataFrame with string column names.

    See Also
    --------
    skmm.nn.MultimodalNetClassifier : Towers fused into one classifier of the rows.
    sklearn.neighbors.NearestNeighbors : Retrieval on fixed features.

    Notes
    -----
    ``y`` is optional: without it every row is a matching pair. With ``y``, rows
    with ``y = 0`` add their items to their batch's candidates as extra negatives (as
    DPR adds hard negatives). A candidate identical to a pair's own item (the same
    title on two products, say) is left out of that pair's softmax: it is no
    negative.

    :meth:`predict_proba` is calibrated on held-out pairs with about as many
    non-matching as matching ones; with other proportions, rescale the odds.
    :meth:`predict` thresholds the similarity at ``threshold_`` (which maximises F1),
    not the probability at 0.5.

    The training items are decoded once and held in memory; prediction reads
    ``batch_size`` rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.nn import MultimodalMatcher
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(400, 3))
    >>> X = np.hstack([latent @ rng.normal(size=(3, 5)), latent @ rng.normal(size=(3, 4))])
    >>> matcher = MultimodalMatcher(
    ...     [("a", "passthrough", slice(0, 5)), ("b", "passthrough", slice(5, 9))],
    ...     embedding_dim=8, batch_size=32, max_epochs=5, random_state=0,
    ...     device="cpu",
    ... ).fit(X[:300])
    >>> matcher.score(X[300:]) > 0.8
    True
    >>> matcher.kneighbors(X[300:302, :5], X[300:, 5:], n_neighbors=3).shape
    (2, 3)
    """

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [
            StrOptions({"learned"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
    }
    _n_sides = 2
    _allow_drop = False

    def __init__(
        self,
        encoders,
        *,
        embedding_dim=64,
        temperature="learned",
        lr=1e-3,
        tower_lr=None,
        optimizer=torch.optim.Adam,
        callbacks=None,
        batch_size=128,
        max_epochs=10,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=3,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.encoders = encoders
        self.embedding_dim = embedding_dim
        self.temperature = temperature
        self.lr = lr
        self.tower_lr = tower_lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- input -----------------------------------------------------------------------
    def _check_target(self, y, n):
        """Set ``classes_`` and return the mask of the matching pairs.

        As for scikit-learn's binary classifiers, the greater of two labels (1, True)
        is the positive class: a match. Without y, or with y all 1, every row is a
        matching pair.
        """
        if y is None:
            self.classes_ = np.array([0, 1])
            return np.ones(n, dtype=bool)
        y = column_or_1d(
            check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True
        )
        check_consistent_length(np.empty(n), y)
        kind = type_of_target(y, input_name="y")
        if kind == "multiclass":
            raise ValueError(
                "Only binary classification is supported. The type of the target is "
                "'multiclass': y must be 1 for matching pairs and 0 for the others."
            )
        if kind != "binary":
            raise ValueError(
                f"Unknown label type: y must be 1 for matching pairs and 0 for the "
                f"others; got a {kind!r} target."
            )
        self.classes_ = np.unique(y)
        if len(self.classes_) == 1:
            if self.classes_[0] != 1:
                raise ValueError(
                    f"y has the single class {self.classes_.tolist()[0]!r}: the "
                    "matcher needs matching pairs, labelled 1 (pass y=None when "
                    "every row is one)."
                )
            self.classes_ = np.array([0, 1])
        return y == self.classes_[1]

    def _pair_columns(self, X, entries, *, reset):
        """The two sides' validated ``Column``s; a missing item is an error."""
        columns, selections = self._columns(X, entries, reset=reset)
        for (name, _, _), column in zip(entries, columns):
            self._check_present(name, column)
        return columns, selections

    def _check_present(self, name, column):
        if column.missing.any():
            where = column.where(np.flatnonzero(column.missing)[0])
            raise ValueError(
                f"encoder {name!r}: {where}: the item is missing (None/NaN); each row "
                f"of a {type(self).__name__} is a pair of two items."
            )

    # -- fit -------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight):
        entries, X, seed = self._fit_begin(X)
        n = X.shape[0]
        match = self._check_target(y, n)
        weight = check_weights(sample_weight, n)
        columns, selections = self._pair_columns(X, entries, reset=True)
        self._resolve_encoders(entries, selections)
        groups = [item_groups(column) for column in columns]
        train, val = self._split(match, seed)
        held_out = self._held_out_pairs(match[val], [g[val] for g in groups], seed)
        with torch_seed(seed):
            self._fit_preprocessing(entries, columns, train)
            module = self._build_network([enc._init_module() for _, enc, _ in entries])
            every = np.arange(n)
            items = [
                self._preload(name, enc, tower, column, every)
                for (name, enc, _), column, tower in zip(
                    entries, columns, module.towers
                )
            ]
            self._fit_loop(
                module,
                (items, match, groups, weight, held_out),
                train,
                val,
                max_epochs=self.max_epochs,
                seed=seed,
                early_stopping=self.early_stopping,
            )
        self.module_ = module.to(self.device_).eval()
        self.temperature_ = 1 / float(self.module_.logit_scale().detach())
        scores, labels = self._held_out_scores(module, items, val, held_out)
        self._fit_threshold(scores, labels)
        # The non-matching pairs score(X) generates come from the fit's seed: the
        # same at every call (and for every candidate of a grid search).
        self.score_seed_ = seed
        self._link_encoders()

    def _split(self, match, seed):
        """Hold out ``validation_fraction`` of the matching pairs and of the others."""
        rng = np.random.default_rng(seed)
        pairs, others = np.flatnonzero(match), np.flatnonzero(~match)
        n_val = max(2, math.ceil(self.validation_fraction * len(pairs)))
        if len(pairs) - n_val < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 4 matching pairs, 2 to train on "
                f"and 2 held out (validation_fraction={self.validation_fraction}) to "
                f"choose threshold_; got {len(pairs)}."
            )
        val = np.concatenate(
            [
                rng.permutation(pairs)[:n_val],
                rng.permutation(others)[
                    : round(self.validation_fraction * len(others))
                ],
            ]
        )
        return np.setdiff1d(np.arange(len(match)), val), np.sort(val)

    def _held_out_pairs(self, match, groups, seed):
        """Pairs scored on the held-out rows: (first rows, second rows, labels).

        Positions are within the held-out rows: their pairs as labelled, plus one
        generated non-matching pair per matching pair.
        """
        pairs = np.flatnonzero(match)
        rows, partners = generated_negatives(groups[0][pairs], groups[1][pairs], seed)
        every = np.arange(len(match))
        out = (
            np.concatenate([every, pairs[rows]]),
            np.concatenate([every, pairs[partners]]),
            np.concatenate([match, np.zeros(len(rows), dtype=bool)]),
        )
        if out[2].all():
            raise ValueError(
                "the held-out matching pairs all share their items, so no "
                "non-matching pair can be made to choose threshold_; pass more varied "
                "pairs or a larger validation_fraction."
            )
        return out

    def _build_network(self, towers):
        return TwoTowerNetwork(towers, self.embedding_dim, self.temperature)

    def _build_module(self):
        return self._build_network(
            [enc._build_module() for _, enc, _ in self.encoders_]
        )

    # -- the training loop's steps ----------------------------------------------------
    def _epoch_batches(self, data, train, generator):
        """Batches of matching pairs, each with its share of the known non-matches."""
        match = data[1]
        pairs, others = train[match[train]], train[~match[train]]
        n_batches = math.ceil(len(pairs) / self.batch_size)
        extra = np.array_split(
            torch.randperm(len(others), generator=generator).numpy(), n_batches
        )
        for index, chunk in zip(
            _batches(len(pairs), self.batch_size, generator=generator), extra
        ):
            # One pair alone has no in-batch negative to learn from.
            if len(index) >= 2:
                yield pairs[index.numpy()], others[chunk]

    def _train_step(self, module, data, batch, generator):
        items, _, groups, weight, _ = data
        pairs, others = batch
        rows = np.concatenate([pairs, others])
        encoders = [enc for _, enc, _ in self.encoders_]
        z = []
        for m, (enc, (x, encoded)) in enumerate(zip(encoders, items)):
            x = x[rows] if encoded else enc._augment(x[rows], generator)
            z.append(module.embed(m, x.to(self.device_), encoded=encoded))
        # Where a candidate is the same item as a pair's own (a title shared by two
        # products): no negative, left out of the softmax.
        same = [
            torch.from_numpy(g[pairs, None] == g[rows]).to(self.device_) for g in groups
        ]
        pair_weight = None if weight is None else weight[pairs].to(self.device_)
        loss = contrastive_loss(
            *z, len(pairs), module.logit_scale(), *same, weight=pair_weight
        )
        return loss, loss.item(), len(pairs)

    def _validation_step(self, module, data, val):
        items, _, _, _, held_out = data
        scores, labels = self._held_out_scores(module, items, val, held_out)
        return roc_auc_score(labels, scores), 0.0

    def _embed_rows(self, module, side, items, rows):
        """Embeddings of preloaded ``rows``, ``batch_size`` at a time, in eval mode."""
        x, encoded = items
        module.eval()
        with torch.inference_mode():
            return torch.cat(
                [
                    module.embed(
                        side, x[rows[index.numpy()]].to(self.device_), encoded=encoded
                    ).cpu()
                    for index in _batches(len(rows), self.batch_size)
                ]
            ).numpy()

    def _held_out_scores(self, module, data, val, held_out):
        za, zb = (self._embed_rows(module, m, d, val) for m, d in enumerate(data))
        first, second, labels = held_out
        return _similarity(za[first], zb[second]), labels

    def _fit_threshold(self, scores, labels):
        """The F1-maximising threshold and Platt scaling, on the held-out pairs."""
        precision, recall, thresholds = precision_recall_curve(labels, scores)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1[:-1]))
        # Halfway to the next lower held-out score (or to -1, the lowest cosine): the
        # same predictions on the held-out pairs, with a margin on either side.
        lower = thresholds[best - 1] if best > 0 else -1.0
        self.threshold_ = float(thresholds[best] + lower) / 2
        self.calibrator_ = make_pipeline(StandardScaler(), LogisticRegression()).fit(
            scores[:, None], labels
        )

    # -- prediction ------------------------------------------------------------------
    def _embed_column(self, side, column):
        """Embeddings of a validated column, ``batch_size`` rows at a time."""
        name, enc, _ = self.encoders_[side]
        module = self.module_.eval()
        out = np.empty((len(column), module.out_features), dtype=np.float32)
        with torch.inference_mode():
            for index in tqdm(
                list(_batches(len(column), self.batch_size)),
                desc=f"{type(self).__name__} {name}",
                disable=not self.verbose,
            ):
                rows = index.numpy()
                with naming(name):
                    batch = enc._load(column, rows)
                out[rows] = module.embed(side, batch.to(self.device_)).cpu().numpy()
        return out

    def _embed_pairs(self, X):
        """Both sides' embeddings of the pairs in ``X``, and their validated columns."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        columns, _ = self._pair_columns(X, self.encoders_, reset=False)
        return [self._embed_column(m, c) for m, c in enumerate(columns)], columns

    def decision_function(self, X):
        """Similarity of each row's pair: the cosine of the two embeddings.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, with the columns used in :meth:`fit`.

        Returns
        -------
        similarity : ndarray of shape (n_samples,)
            In [-1, 1]; a pair matches from ``threshold_`` on.
        """
        (za, zb), _ = self._embed_pairs(X)
        return _similarity(za, zb)

    def predict(self, X):
        """Predict whether each row's pair matches (1) or not (0).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, with the columns used in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            1 where the similarity reaches ``threshold_``, else 0.
        """
        match = self.decision_function(X) >= self.threshold_
        return self.classes_[match.astype(int)]

    def predict_proba(self, X):
        """Calibrated probability that each row's pair matches.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, with the columns used in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            Probabilities of no match and of a match (Platt scaling of the
            similarity, fitted on held-out pairs with as many non-matching ones).
        """
        similarity = self.decision_function(X)
        return self.calibrator_.predict_proba(similarity[:, None])

    def score(self, X, y=None):
        """F1 score of the match predictions.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, with the columns used in :meth:`fit`.
        y : array-like of shape (n_samples,), default=None
            1 (``classes_[1]``) for a matching pair, 0 for another. None: every row is a matching pair,
            and as many non-matching pairs are scored with them, made by pairing each
            row's first item with another row's second item (the same ones at every
            call).

        Returns
        -------
        score : float
            F1 of the predictions, 1 being the matching class.
        """
        if y is not None:
            return f1_score(y, self.predict(X), pos_label=self.classes_[1])
        (za, zb), columns = self._embed_pairs(X)
        rows, partners = generated_negatives(
            *(item_groups(c) for c in columns), self.score_seed_
        )
        similarity = np.concatenate(
            [_similarity(za, zb), _similarity(za[rows], zb[partners])]
        )
        truth = np.r_[np.ones(len(za)), np.zeros(len(rows))]
        return f1_score(truth, (similarity >= self.threshold_).astype(int))

    def transform(self, X):
        """The embeddings of both sides of each pair, side by side.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, with the columns used in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, 2 * embedding_dim)
            The first side's L2-normalised embedding, then the second's; float32.
        """
        (za, zb), _ = self._embed_pairs(X)
        return np.hstack([za, zb])

    def get_feature_names_out(self, input_features=None):
        """Names of the embedding features: ``<name>__embedding<i>`` for each side.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Unused: the names come from the encoders' names.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        width = self.module_.out_features
        return np.asarray(
            [
                f"{name}__embedding{i}"
                for name, _, _ in self.encoders_
                for i in range(width)
            ],
            dtype=object,
        )

    def kneighbors(
        self, queries, candidates, n_neighbors=5, *, query=None, return_similarity=False
    ):
        """Retrieve the candidates most similar to each query.

        Parameters
        ----------
        queries : sequence of items or array-like
            Items of one side (images, say), given as its encoder takes them: a
            list, Series or one-column DataFrame of items, or an array of the numeric
            columns of a ``"passthrough"`` side.
        candidates : sequence of items or array-like
            Items of the other side (titles, say), in the same way.
        n_neighbors : int, default=5
            Number of candidates returned per query.
        query : str, default=None
            Name of the encoder whose items are the queries; None is the first one.
        return_similarity : bool, default=False
            Also return the similarities of the retrieved candidates.

        Returns
        -------
        similarity : ndarray of shape (n_queries, n_neighbors)
            The similarities, best first; only with ``return_similarity=True``.
        indices : ndarray of shape (n_queries, n_neighbors)
            Positions in ``candidates`` of each query's best candidates, best first.
        """
        check_is_fitted(self)
        names = [name for name, _, _ in self.encoders_]
        if query is None:
            query = names[0]
        if query not in names:
            raise ValueError(
                f"query={query!r} is not the name of an encoder; use one of {names}."
            )
        side = names.index(query)
        zq, zc = (
            self._embed_items(m, items)
            for m, items in ((side, queries), (1 - side, candidates))
        )
        if not isinstance(n_neighbors, Integral) or not 1 <= n_neighbors <= len(zc):
            raise ValueError(
                f"Expected 1 <= n_neighbors <= n_candidates, but n_neighbors = "
                f"{n_neighbors!r}, n_candidates = {len(zc)}."
            )
        similarity = np.empty((len(zq), n_neighbors), dtype=np.float32)
        indices = np.empty((len(zq), n_neighbors), dtype=np.intp)
        # A block of queries at a time keeps the similarity matrix within batch_size rows.
        for index in _batches(len(zq), self.batch_size):
            rows = index.numpy()
            block = zq[rows] @ zc.T
            best = np.argsort(-block, axis=1, kind="stable")[:, :n_neighbors]
            indices[rows] = best
            similarity[rows] = np.take_along_axis(block, best, axis=1)
        return (similarity, indices) if return_similarity else indices

    def _embed_items(self, side, items):
        name, enc, _ = self.encoders_[side]
        with naming(name):
            column = enc._check_input(items, reset=False)
        self._check_present(name, column)
        if isinstance(enc, TabularEncoder) and enc._passthrough():
            width = column.items.shape[1]
            if width != enc.n_features_:
                raise ValueError(
                    f"encoder {name!r}: the items have {width} features, but the "
                    f"tower was fitted on {enc.n_features_}."
                )
        return self._embed_column(side, column)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.classifier_tags.multi_class = False
        # A matcher scores how well a row's two sides go together; on data whose
        # labels say something else (sklearn's blobs) it has no reason to score well.
        tags.classifier_tags.poor_score = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _similarity(za, zb):
    """Row-wise dot product of L2-normalised embeddings, in float64."""
    return np.einsum("ij,ij->i", za.astype(np.float64), zb.astype(np.float64))
