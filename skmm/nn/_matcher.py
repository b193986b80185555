"""MultimodalMatcher: two towers trained contrastively to tell matching pairs."""

import math
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from ..callbacks._callbacks import EarlyStopping
from ..training._loop import History, batches
from ..training._precision import autocast
from ..training._streaming import Lazy, take_rows
from ..training._targets import check_classes, encode_labels
from ..training._template import PARTIAL_FIT_CLASSES
from ..utils._composition import target_type
from ..utils._dask import DaskMixin, default_meta, value_counts
from ..utils._docs import fill_doc
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._torch import batch_norm_recalibration
from ._base import TRAINING_CONSTRAINTS, TowerComposite, check_weights, naming
from ._contrastive import (
    INITIAL_TEMPERATURE,
    TwoTowerNetwork,
    contrastive_loss,
    generated_negatives,
    item_groups,
)
from ._retrieval import EmbeddedChunks, EmbeddingIndex, nearest
from ._towers import TabularEncoder

__all__ = ["EmbeddingIndex", "MultimodalMatcher"]


class MultimodalMatcher(DaskMixin, ClassifierMixin, TransformerMixin, TowerComposite):
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
        skmm encoder, ``"passthrough"`` for numeric columns, or a scikit-learn
        transformer whose numeric output feeds a tabular tower; then the column(s):
        a name or position (one column of items for an skmm encoder), a list, a
        slice, a boolean mask or a callable. An encoder here is a specification, as
        in :class:`MultimodalNetClassifier`: the matcher builds and owns its tower
        (preprocessing, weights, ``augment``, ``train_layers``; the encoder's
        ``max_epochs`` only says whether it trains), and the matcher's own training
        and runtime parameters apply, not the encoder's.
    embedding_dim : int or None, default=64
        Width of the shared embedding space: each tower is followed by a linear
        projection to it. None: no projection, the towers' outputs are the
        embeddings, for towers that are already aligned (the image and text towers
        of one CLIP model); both towers must then have the same width.
    temperature : "learned" or float, default="learned"
        Temperature of the softmax in the loss: learned, or fixed. A learned
        temperature starts at the towers' own when their encoders provide one (a
        fitted ``logit_scale_``, 1 / temperature, as CLIP towers do), else at 0.07
        (as in CLIP).
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
        Maximum passes over the training pairs. 0 trains nothing: with aligned
        pretrained towers and ``embedding_dim=None`` the matcher is usable as is
        (``fit`` then only fits the preprocessing, ``threshold_`` and the
        calibration on the held-out pairs).
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
    memory : str, path-like, fsspec URL, joblib.Memory or None, default=None
        Cache of the features of frozen towers (pretrained weights with
        ``max_epochs="auto"``, or ``max_epochs=0``), read at fit and at prediction,
        as the encoders' ``memory``.
    num_workers : int, default=0
        Worker processes decoding the next batches of training items when they are
        streamed (more than 256 MB decoded; a torch ``DataLoader``, the same model
        whatever their number), and threads decoding ahead in the frozen towers'
        encoding.
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        Numerical precision of training and prediction: float32, or mixed precision
        through ``torch.autocast`` (bfloat16 or float16 where it is safe, float32
        weights; ``"16-mixed"`` scales the loss so that small gradients do not
        underflow).
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
        The fitted encoders' specifications (``"passthrough"`` and transformers
        become tabular encoders) with the resolved columns, without a tower (the
        towers are in ``module_``).
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name, each a standalone copy holding a copy of its
        trained tower: it encodes on its own and outlives the matcher.
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
        The softmax temperature at the end of training (learned, fixed, or the
        towers' own with ``max_epochs=0``).
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
    skmm.nn.ZeroShotClassifier : Classify one side's items by prompts embedded by
        the other side.
    skmm.nn.EmbeddingIndex : Candidate embeddings computed once, for
        :meth:`kneighbors`.
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
    ``batch_size`` rows at a time. :meth:`kneighbors` embeds the candidates a chunk
    at a time and keeps only each query's best ones, so its memory does not grow
    with the number of candidates; :meth:`embed` computes a catalogue's embeddings
    once, to reuse them through an :class:`EmbeddingIndex`.

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
        "embedding_dim": [None, Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
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
        memory=None,
        num_workers=0,
        precision="32",
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
        self.memory = memory
        self.num_workers = num_workers
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- input -----------------------------------------------------------------------
    def _check_target(self, y, n, *, first=False, classes=None, partial=False):
        """The mask of the matching pairs; the first call sets ``classes_``.

        As for scikit-learn's binary classifiers, the greater of two labels (1, True)
        is the positive class: a match. Without y every row is a matching pair
        (``classes_`` is ``[0, 1]``); with y all 1 too. ``classes`` (the first
        ``partial_fit`` call's) names both labels when the batch may lack one.
        """
        cls = type(self).__name__
        if y is None:
            if first:
                self.classes_ = np.array([0, 1])
            return np.ones(n, dtype=bool)
        y = column_or_1d(
            check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True
        )
        check_consistent_length(np.empty(n), y)
        kind = target_type(y, cls)
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
        if first:
            if classes is not None or partial:
                self.classes_ = check_classes(y, classes, owner=cls, required=partial)
                if len(self.classes_) != 2:
                    raise ValueError(
                        f"a matcher has two classes (no match, match); got classes="
                        f"{self.classes_.tolist()}."
                    )
            else:
                self.classes_ = np.unique(y)
                if len(self.classes_) == 1:
                    if self.classes_[0] != 1:
                        raise ValueError(
                            f"y has the single class {self.classes_.tolist()[0]!r}: "
                            "the matcher needs matching pairs, labelled 1 (pass "
                            "y=None when every row is one)."
                        )
                    self.classes_ = np.array([0, 1])
        return encode_labels(y, self.classes_, owner=cls) == 1

    def _chunk_targets(self, y, sample_weight, n, *, first=False, **kwargs):
        match = self._check_target(y, n, first=first, **kwargs)
        return match, check_weights(sample_weight, n), None

    def _columns(self, X, *, reset):
        """The two sides' validated ``Column``s; a missing item is an error."""
        columns = super()._columns(X, reset=reset)
        for (name, _, _), column in zip(self._towers(), columns):
            self._check_present(name, column)
        return columns

    def _check_present(self, name, column):
        if column.missing.any():
            where = column.where(np.flatnonzero(column.missing)[0])
            raise ValueError(
                f"encoder {name!r}: {where}: the item is missing (None/NaN); each row "
                f"of a {type(self).__name__} is a pair of two items."
            )

    @fill_doc(classes=PARTIAL_FIT_CLASSES)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """Train for one pass over the pairs of ``X``, continuing from the last call.

        The first call learns the towers' preprocessing on its rows and starts the
        towers from their initial weights, as :meth:`fit` does; later calls continue
        from the weights and the optimizer state (Adam's moments, say) that the
        previous call left, which pickles with the matcher. A call after :meth:`fit`
        continues from the fitted weights with a fresh optimizer. One epoch of the
        training loop without a validation split; ``threshold_`` and the
        calibration are then chosen again on this call's pairs (with generated
        non-matching pairs), which the matcher has just trained on: on a stream they
        follow the model, but sit on seen pairs, where :meth:`fit` uses held-out ones.
        A failed call leaves the matcher as it was.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One pair per row, as in :meth:`fit`.
        y : array-like of shape (n_samples,), default=None
            The two labels of the pairs (the greater one is a match: 1 for a matching
            pair, 0 for another); None when every row matches (``classes_`` is then
            ``[0, 1]``).
        {classes}
            With ``y``, the two labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the matching pairs in the contrastive loss.

        Returns
        -------
        self : object
            The matcher, trained one more pass.
        """
        self._fit_entry(X, y, sample_weight, classes, partial=True)
        return self

    # -- the fit template's hooks ----------------------------------------------------
    def _stream_targets(self, run, y):
        if y is not None:
            labels, _ = value_counts(y)
            self._check_target(labels, len(labels), first=True)
        else:
            self._check_target(None, 0, first=True)
        return None

    def _split(self, run):
        match = run.chunk[1]
        if run.partial:
            return np.arange(len(match)), None
        return self._split_pairs(match, run.seed)

    def _stream_split(self, run):
        return lambda data, i: self._split_pairs(data.match, run.seed + i)

    def _build(self, run):
        return self._build_network([enc._init_module() for _, enc, _ in self._towers()])

    def _data(self, run, module, columns, match, weight, labels):
        items = []
        for (name, enc, _), column, tower in zip(
            self.encoders_, columns, module.towers
        ):
            if enc._frozen():
                x, encoded, _ = self._tower_input(
                    name, enc, tower, column, np.arange(len(column))
                )
            else:  # every item is present (checked): decoded when read
                with naming(name):
                    x, encoded = Lazy(enc._load, column, np.arange(len(column))), False
            items.append((x, encoded))
        groups = [item_groups(column) for column in columns]
        return _PairData(items, match, groups, weight)

    def _train(self, run, module, source):
        history = History(self.history_ if run.partial and not run.first else [])
        run.new_from = len(history)
        callbacks = []
        if self.early_stopping and not run.partial:
            callbacks.append(EarlyStopping(self.n_iter_no_change))
        return self._fit_loop(
            module,
            source,
            max_epochs=1 if run.partial else self.max_epochs,
            seed=run.seed,
            context=_HeldOut(run.seed),
            callbacks=callbacks,
            history=history,
            optimizer_state=getattr(self, "_optimizer_state_", None)
            if run.partial
            else None,
        )

    def _finish(self, run, module, source, history):
        """The fitted attributes that follow the trained towers: ``threshold_`` and
        the calibration on the held-out pairs (this call's pairs for
        ``partial_fit``)."""
        self.module_ = module.to(self.device_).eval()
        self.temperature_ = 1 / float(self.module_.logit_scale().detach())
        held = source.validation() or source.last
        scores, labels = _HeldOut(run.seed).scores(self, module, *held)
        self._fit_threshold(scores, labels)
        if run.first:
            # The non-matching pairs score(X) generates come from the fit's seed:
            # the same at every call (and for every candidate of a grid search).
            self.score_seed_ = run.seed
        early = self.early_stopping and not run.partial
        self._history_attributes(history, history[run.new_from :], early)

    def _split_pairs(self, match, seed):
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

    def _build_network(self, towers):
        return TwoTowerNetwork(
            towers,
            self.embedding_dim,
            self.temperature,
            initial_temperature=self._towers_temperature(),
        )

    def _towers_temperature(self):
        """The temperature the towers come with (1 / their logit scale), or 0.07.

        Aligned pretrained towers (CLIP's) were trained at a temperature of their own:
        an skmm encoder's resolved backbone gives it as ``backbone_.logit_scale``,
        another encoder may give it as a fitted ``logit_scale_``.
        """
        scales = {}
        for name, enc, _ in self.encoders_:
            scale = getattr(getattr(enc, "backbone_", None), "logit_scale", None)
            if scale is None:
                scale = getattr(enc, "logit_scale_", None)
            if isinstance(scale, (int, float)):
                scales[name] = float(scale)
        if not scales:
            return INITIAL_TEMPERATURE
        if len(set(scales.values())) > 1:
            raise ValueError(
                f"the towers come with different logit scales {scales}: they were not "
                "trained together. Pass a float temperature."
            )
        return 1 / next(iter(scales.values()))

    def _build_module(self):
        return self._build_network(
            [enc._build_module() for _, enc, _ in self.encoders_]
        )

    # -- the training loop's steps ----------------------------------------------------
    def _epoch_batches(self, data, rows, generator):
        """Batches of matching pairs, each with its share of the known non-matches."""
        match = data.match
        pairs, others = rows[match[rows]], rows[~match[rows]]
        n_batches = math.ceil(len(pairs) / self.batch_size)
        extra = np.array_split(
            torch.randperm(len(others), generator=generator).numpy(), n_batches
        )
        for index, chunk in zip(
            batches(len(pairs), self.batch_size, generator=generator), extra
        ):
            # One pair alone has no in-batch negative to learn from.
            if len(index) >= 2:
                yield pairs[index.numpy()], others[chunk]

    def _train_step(self, module, data, batch, generator, held_out):
        pairs, others = batch
        rows = np.concatenate([pairs, others])
        encoders = [enc for _, enc, _ in self.encoders_]
        z = []
        for m, (enc, (x, encoded)) in enumerate(zip(encoders, data.items)):
            x = x[rows] if encoded else enc._augment(x[rows], generator)
            x = x.to(self.device_, non_blocking=True)
            z.append(module.embed(m, x, encoded=encoded))
        # Where a candidate is the same item as a pair's own (a title shared by two
        # products): no negative, left out of the softmax.
        same = [
            torch.from_numpy(g[pairs, None] == g[rows]).to(
                self.device_, non_blocking=True
            )
            for g in data.groups
        ]
        weight = (
            None
            if data.weight is None
            else data.weight[pairs].to(self.device_, non_blocking=True)
        )
        loss = contrastive_loss(
            *z, len(pairs), module.logit_scale(), *same, weight=weight
        )
        return loss, loss, len(pairs)

    def _validation_step(self, module, data, rows, held_out):
        scores, labels = held_out.scores(self, module, data, rows)
        return roc_auc_score(labels, scores), 0.0, {}

    def _recalibrate(self, module, parts, context):
        """Re-estimate the towers' batch-norm statistics with the current weights
        (the encoders and nets do it for the same reason: running statistics lag
        behind weights that move fast)."""
        self._train_mode(module, context)
        with batch_norm_recalibration(module.towers) as norms:
            for data, rows in parts if norms else ():
                for m, (x, encoded) in enumerate(data.items):
                    if encoded:
                        continue
                    for index in batches(len(rows), self.batch_size):
                        if len(index) >= 2:
                            batch = x[rows[index.numpy()]].to(self.device_)
                            module.embed(m, batch)

    def _embed_rows(self, module, side, items, rows):
        """Embeddings of preloaded ``rows``, ``batch_size`` at a time, in eval mode."""
        x, encoded = items
        module.eval()
        with torch.inference_mode(), autocast(self.device_, self.precision):
            return torch.cat(
                [
                    module.embed(
                        side, x[rows[index.numpy()]].to(self.device_), encoded=encoded
                    )
                    .float()
                    .cpu()
                    for index in batches(len(rows), self.batch_size)
                ]
            ).numpy()

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
    def _embed_column(self, side, column, rows=None):
        """Embeddings of a validated column (or of its ``rows``), in batches.

        A frozen tower's features come through its encoder's cached encoding.
        """
        name, enc, _ = self.encoders_[side]
        rows = np.arange(len(column)) if rows is None else rows
        module = self.module_.eval()
        tower = module.towers[side]
        out = np.empty((len(rows), module.out_features), dtype=np.float32)
        with torch.inference_mode(), autocast(self.device_, self.precision):
            for index in tqdm(
                list(batches(len(rows), self.batch_size)),
                desc=f"{type(self).__name__} {name}",
                disable=not self.verbose,
            ):
                index = index.numpy()
                x, encoded, _ = self._tower_input(name, enc, tower, column, rows[index])
                z = module.embed(side, x.to(self.device_), encoded=encoded)
                out[index] = z.float().cpu().numpy()
        return out

    def _embed_pairs(self, X):
        """Both sides' embeddings of the pairs in ``X``, and their validated columns."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        columns = self._columns(X, reset=False)
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

    def _side(self, name):
        """The position (0 or 1) of the encoder called ``name``; None is the first."""
        names = [n for n, _, _ in self.encoders_]
        if name is None:
            return 0
        if not isinstance(name, str) or name not in names:
            raise ValueError(
                f"side {name!r} is not the name of an encoder; use one of {names}."
            )
        return names.index(name)

    def embed(self, items, *, side=None):
        """The L2-normalised embeddings of one side's items.

        Compute a catalogue's embeddings once, then search them many times: wrap them
        in an :class:`EmbeddingIndex` for :meth:`kneighbors`, or use them directly
        (the similarity of two items of different sides is the dot product of their
        embeddings).

        Parameters
        ----------
        items : sequence of items, array-like or DataFrame
            Items of the side, as its encoder takes them: a list, Series or
            one-column DataFrame of items, or an array of the numeric columns of a
            ``"passthrough"`` side. A DataFrame holding the side's columns by name
            (the table given to :meth:`fit`, say) has them selected.
        side : str, default=None
            Name of the encoder whose items these are; None is the first one.

        Returns
        -------
        embeddings : ndarray of shape (n_items, n_embedding)
            One L2-normalised row per item, float32; ``batch_size`` items are run
            at a time.
        """
        check_is_fitted(self)
        m = self._side(side)
        return self._embed_column(m, self._items_column(m, items))

    def _dask_meta(self, method, side=None):
        """Columns and dtype of ``method``'s output on a Dask collection."""
        if method != "embed":
            return default_meta(self, method)
        name = self.encoders_[self._side(side)][0]
        width = self.module_.out_features
        return [f"{name}__embedding{i}" for i in range(width)], np.dtype("float32")

    def _select_side(self, items, side):
        """The side's columns of a DataFrame that holds them by name (and others)."""
        columns = self.encoders_[side][2]
        if (
            hasattr(items, "columns")
            and items.shape[1] > 1
            and isinstance(columns, (str, list))
            and set(np.atleast_1d(columns)) <= set(items.columns)
        ):
            return items[columns]
        return items

    def _items_column(self, side, items):
        """The validated ``Column`` of one side's items (no missing item allowed)."""
        name, enc, _ = self.encoders_[side]
        items = self._select_side(items, side)
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
        return column

    def kneighbors(
        self, queries, candidates, n_neighbors=5, *, query=None, return_similarity=False
    ):
        """Retrieve the candidates most similar to each query.

        The candidates are embedded (or, from an :class:`EmbeddingIndex`, read)
        ``8192`` at a time, and each chunk's best candidates are merged into each
        query's running best: memory is bounded by the number of queries and the
        chunk, not by the number of candidates (100,000 titles, say).

        Parameters
        ----------
        queries : sequence of items, array-like or EmbeddingIndex
            Items of one side (images, say), given as :meth:`embed` takes them, or
            their precomputed embeddings in an :class:`EmbeddingIndex`.
        candidates : sequence of items, array-like or EmbeddingIndex
            Items of the other side (titles, say), in the same way. Embed a
            catalogue once with :meth:`embed` and pass its :class:`EmbeddingIndex`
            to every search.
        n_neighbors : int, default=5
            Number of candidates returned per query.
        query : str, default=None
            Name of the encoder whose items are the queries. None: the side of
            ``queries`` when it is an :class:`EmbeddingIndex`, else the other side of
            ``candidates`` when that is one, else the first encoder.
        return_similarity : bool, default=False
            Also return the similarities of the retrieved candidates.

        Returns
        -------
        similarity : ndarray of shape (n_queries, n_neighbors)
            The similarities, best first; only with ``return_similarity=True``.
        indices : ndarray of shape (n_queries, n_neighbors)
            Positions in ``candidates`` of each query's best candidates, best first
            (between equal similarities, the first candidate first).
        """
        check_is_fitted(self)
        names = [name for name, _, _ in self.encoders_]
        if query is None:
            if isinstance(queries, EmbeddingIndex):
                query = queries.side
            elif isinstance(candidates, EmbeddingIndex) and candidates.side in names:
                query = names[1 - names.index(candidates.side)]
        if query is not None and query not in names:
            raise ValueError(
                f"query={query!r} is not the name of an encoder; use one of {names}."
            )
        side = self._side(query)
        try:
            zq = np.concatenate(
                [chunk for _, chunk in self._source(queries, side, "queries")._chunks()]
            )
        except ValueError as exc:
            if not isinstance(queries, EmbeddingIndex) and isinstance(
                candidates, EmbeddingIndex
            ):
                # The queries' side was taken from the candidates' index: say so,
                # in case that index is of the wrong side.
                raise ValueError(
                    f"{exc} (the queries were read as items of "
                    f"{names[side]!r}, the other side of the candidates' "
                    f"EmbeddingIndex of {candidates.side!r}; pass query= to say "
                    "which side the queries are, and an index of the other side "
                    "as candidates)"
                ) from exc
            raise
        source = self._source(candidates, 1 - side, "candidates")
        if (
            not isinstance(n_neighbors, Integral)
            or isinstance(n_neighbors, bool)
            or not 1 <= n_neighbors <= len(source)
        ):
            raise ValueError(
                f"Expected 1 <= n_neighbors <= n_candidates, but n_neighbors = "
                f"{n_neighbors!r}, n_candidates = {len(source)}."
            )
        similarity, indices = nearest(zq, source, n_neighbors)
        return (similarity, indices) if return_similarity else indices

    def _source(self, items, side, what):
        """Chunks of the embeddings of ``items`` (or of an EmbeddingIndex)."""
        name = self.encoders_[side][0]
        width = self.module_.out_features
        if isinstance(items, EmbeddingIndex):
            if items.side != name:
                raise ValueError(
                    f"the {what} are an EmbeddingIndex of side {items.side!r}, but "
                    f"the {what} must be items of {name!r} here."
                )
            if items.embeddings.shape[1] != width:
                raise ValueError(
                    f"the {what}' EmbeddingIndex has embeddings of width "
                    f"{items.embeddings.shape[1]}, but this matcher embeds into "
                    f"{width} dimensions."
                )
            return items
        column = self._items_column(side, items)
        return EmbeddedChunks(
            lambda column, rows: self._embed_column(side, column, rows), column
        )

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


class _PairData(NamedTuple):
    """The pairs the training loop's steps read: each side's decoded items (or a
    frozen tower's features) with ``encoded``, the match mask, each side's item
    groups (equal items share one) and the pairs' weights."""

    items: list
    match: np.ndarray
    groups: list
    weight: torch.Tensor | None

    @property
    def labels(self):
        return None  # the held-out split is the matcher's own, by pairs

    def __len__(self):
        return len(self.match)

    def take(self, rows):
        return _PairData(
            [(take_rows(x, rows), encoded) for x, encoded in self.items],
            self.match[rows],
            [g[rows] for g in self.groups],
            take_rows(self.weight, rows),
        )


class _HeldOut:
    """The pairs scored on held-out rows, seeded: their labelled pairs, plus one
    generated non-matching pair per matching pair."""

    def __init__(self, seed):
        self.seed = seed

    def pairs(self, data, rows):
        """(first rows, second rows, labels), as positions within ``rows``."""
        match = data.match[rows]
        pairs = np.flatnonzero(match)
        groups = [g[rows][pairs] for g in data.groups]
        generated, partners = generated_negatives(*groups, self.seed)
        every = np.arange(len(match))
        out = (
            np.concatenate([every, pairs[generated]]),
            np.concatenate([every, pairs[partners]]),
            np.concatenate([match, np.zeros(len(generated), dtype=bool)]),
        )
        if out[2].all():
            raise ValueError(
                "the held-out matching pairs all share their items, so no "
                "non-matching pair can be made to choose threshold_; pass more "
                "varied pairs or a larger validation_fraction."
            )
        return out

    def scores(self, matcher, module, data, rows):
        """The similarities of the held-out pairs, and their labels."""
        first, second, labels = self.pairs(data, rows)
        za, zb = (
            matcher._embed_rows(module, m, items, rows)
            for m, items in enumerate(data.items)
        )
        return _similarity(za[first], zb[second]), labels
