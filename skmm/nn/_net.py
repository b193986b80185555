"""End-to-end multimodal nets: encoder towers trained jointly through a fusion layer."""

from abc import abstractmethod
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.metrics import r2_score
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from ..base import _batches, validation_split
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._torch import batch_norm_recalibration, torch_seed
from ..utils._validation import Column
from ._base import (
    TRAINING_CONSTRAINTS,
    TowerComposite,
    check_weights,
    naming,
    weighted_mean,
)
from ._towers import NET_FUSIONS, TENSOR_WIDTH, MultimodalNetwork

__all__ = ["MultimodalNetClassifier", "MultimodalNetRegressor"]


class _Source(NamedTuple):
    """Where a tower's inputs come from.

    In training, ``data`` holds the present items decoded once (or, for a frozen
    tower, its features: ``encoded``) with ``position`` mapping a row to its index
    there (-1 when missing); in prediction both are None and items are decoded one
    batch at a time.
    """

    name: str
    encoder: object
    column: Column
    data: torch.Tensor | None = None
    position: np.ndarray | None = None
    encoded: bool = False


class _MultimodalNetBase(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, TowerComposite
):
    """What the classifier and the regressor share: the network, batches, training."""

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "fusion": [StrOptions(set(NET_FUSIONS))],
        "projection": [None, Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "modality_dropout": [Interval(Real, 0, 1, closed="left")],
    }

    @abstractmethod
    def __init__(self):
        pass

    def _check_encoders(self):
        entries = super()._check_encoders()
        n_towers = sum(not isinstance(enc, str) for _, enc, _ in entries)
        if self.fusion == "dot" and n_towers < 2:
            raise ValueError(
                f"fusion='dot' takes dot products between towers and needs at least "
                f"2; got {n_towers}."
            )
        sizes = self.hidden_layer_sizes
        if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers; got {sizes!r}."
            )
        return entries

    # -- the network ---------------------------------------------------------------------
    def _network(self, towers):
        projection = self.projection
        if projection is None and self.fusion not in ("concat", "attention"):
            widths = [t.out_features for t in towers]
            projection = TENSOR_WIDTH if self.fusion == "tensor" else min(widths)
        return MultimodalNetwork(
            towers,
            self.fusion,
            projection,
            tuple(self.hidden_layer_sizes),
            self.dropout,
            self._n_outputs(),
        )

    def _build_module(self):
        return self._network([enc._build_module() for _, enc, _ in self._towers()])

    # -- fit -------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight):
        entries, X, seed = self._fit_begin(X)
        n = X.shape[0]
        target, labels = self._check_target(y, n)
        weight = self._row_weights(target, check_weights(sample_weight, n))
        towers = [entry for entry in entries if not isinstance(entry[1], str)]
        columns, selections = self._columns(X, towers, reset=True)
        self._resolve_encoders(entries, selections)
        if self.early_stopping:
            train, val = validation_split(n, self.validation_fraction, seed, labels)
        else:
            train, val = np.arange(n), None
        with torch_seed(seed):
            self._fit_preprocessing(towers, columns, train)
            module = self._network([enc._init_module() for _, enc, _ in towers])
            sources = []
            for (name, enc, _), column, tower in zip(towers, columns, module.towers):
                rows = column.present()
                data, encoded = self._preload(name, enc, tower, column, rows)
                position = np.full(len(column), -1)
                position[rows] = np.arange(len(rows))
                sources.append(_Source(name, enc, column, data, position, encoded))
            data = (sources, target, weight, self._loss_function())
            self._fit_loop(
                module,
                data,
                train,
                val,
                max_epochs=self.max_epochs,
                seed=seed,
                early_stopping=self.early_stopping,
            )
        self.module_ = module.to(self.device_).eval()
        self._link_encoders()

    def _batch(self, sources, rows, generator=None):
        """The towers' inputs for ``rows`` and the mask of the modalities that count.

        With a ``generator`` (training) the items are augmented and whole modalities
        are dropped at random (``modality_dropout``), never all of a row's.
        """
        device = self.device_
        present = np.zeros((len(rows), len(sources)), dtype=bool)
        inputs = []
        for m, (name, enc, column, data, position, encoded) in enumerate(sources):
            if data is None:
                have = ~column.missing[rows]
                with naming(name):
                    x = enc._load(column, rows[have]) if have.any() else None
            else:
                where = position[rows]
                have = where >= 0
                x = data[torch.from_numpy(where[have])] if have.any() else None
            if x is not None and generator is not None and not encoded:
                x = enc._augment(x, generator)
            present[:, m] = have
            local = torch.from_numpy(np.flatnonzero(have)).to(device)
            inputs.append((None if x is None else x.to(device), local, encoded))
        available = present
        if generator is not None and self.modality_dropout > 0:
            keep = torch.rand(present.shape, generator=generator).numpy()
            kept = present & (keep >= self.modality_dropout)
            available = np.where(kept.any(axis=1, keepdims=True), kept, present)
        return inputs, torch.from_numpy(available).to(device)

    # -- the training loop's steps ----------------------------------------------------------
    def _train_step(self, module, data, batch, generator):
        sources, target, weight, loss_fn = data
        out = module(*self._batch(sources, batch, generator))
        loss = weighted_mean(
            loss_fn(out, target[batch].to(self.device_)), weight, batch
        )
        objective = loss
        if self.l1:
            # L1 on weight matrices and kernels, as alpha's weight decay.
            objective = loss + self.l1 * sum(
                p.abs().sum()
                for p in module.parameters()
                if p.requires_grad and p.ndim > 1
            )
        return objective, loss.item(), len(batch)

    def _validation_step(self, module, data, val):
        sources, target, weight, loss_fn = data
        out = torch.cat(
            [
                module(*self._batch(sources, val[index.numpy()]))
                for index in _batches(len(val), self.batch_size)
            ]
        )
        y_val = target[val].to(self.device_)
        loss = weighted_mean(loss_fn(out, y_val), weight, val)
        return self._score_outputs(out, y_val), float(loss)

    def _recalibrate(self, module, data, train):
        """Re-estimate the towers' batch-norm statistics with the current weights.

        With the running averages left to lag behind the weights, a CNN tower can
        score 0.3 in eval mode where its batches score 0.6 (hard AV digits).
        """
        sources = data[0]
        with batch_norm_recalibration(module.towers) as norms:
            if not norms:
                return
            for index in _batches(len(train), self.batch_size):
                if len(index) >= 2:
                    module.blocks(*self._batch(sources, train[index.numpy()]))

    # -- prediction ------------------------------------------------------------------------
    def _forward(self, X, *, embed=False):
        """Run the net on ``X``, ``batch_size`` rows at a time; numpy float32 output."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        towers = self._towers()
        columns, _ = self._columns(X, towers, reset=False)
        sources = [
            _Source(name, enc, column)
            for (name, enc, _), column in zip(towers, columns)
        ]
        module = self.module_.eval()
        out = []
        with torch.inference_mode():
            for index in tqdm(
                list(_batches(X.shape[0], self.batch_size)),
                desc=f"{type(self).__name__} predict",
                disable=not self.verbose,
            ):
                with_rows = self._batch(sources, index.numpy())
                result = module.embed(*with_rows) if embed else module(*with_rows)
                out.append(result.float().cpu().numpy())
        return np.concatenate(out)

    def transform(self, X):
        """Return the fused representation that the head reads.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out)
            The fused features, float32.
        """
        return self._forward(X, embed=True)

    def _row_weights(self, target, weight):
        return weight

    @property
    def _n_features_out(self):
        return self.module_.fusion.out_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN (or None) marks a missing item: its tower's output is zeroed.
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class MultimodalNetClassifier(ClassifierMixin, _MultimodalNetBase):
    """End-to-end multimodal classifier: encoder towers, a fusion layer, an MLP head.

    Each modality goes through a tower: the torch module of an skmm encoder
    (:class:`~skmm.encoders.ImageEncoder` CNN, :class:`~skmm.encoders.TextEncoder`
    LSTM/GRU, :class:`~skmm.encoders.AudioEncoder` spectrogram CNN: one
    implementation, with the encoder's preprocessing and augmentation) or, for numeric
    columns, a 64-unit ReLU layer over the standardised values. The towers' outputs are
    fused and an MLP head reads the fused vector; everything is trained jointly with
    Adam and a cross-entropy loss.

    Parameters
    ----------
    encoders : list of (str, encoder, columns) tuples
        As in :class:`~sklearn.compose.ColumnTransformer`: a name, then an skmm encoder,
        ``"passthrough"`` (numeric columns, a row with a NaN is missing), any
        scikit-learn transformer (its numeric output feeds a tabular tower, such as
        ``OneHotEncoder`` on categories) or ``"drop"``, then the column(s): a name or
        position (one column of items for an encoder), a list, a slice, a boolean mask
        or a callable. The encoders are cloned. Their ``augment`` is used in training;
        their training and runtime parameters (``lr``, ``batch_size``, ``device``,
        ``random_state``, ``memory``, ``num_workers``, ``verbose``) are the net's
        business, and ``max_epochs`` only says whether the tower trains: a tower whose
        encoder would not train (``max_epochs=0``, or pretrained ``weights`` with
        ``max_epochs="auto"``) stays frozen.
    fusion : {"concat", "sum", "mean", "product", "max", "attention", "tensor", \
"dot"}, default="concat"
        How the towers' outputs are combined. ``"concat"`` puts them side by side;
        ``"sum"``, ``"mean"``, ``"product"`` and ``"max"`` are element-wise and
        ``"tensor"`` is the outer product of ``[1, z_m]`` (Tensor Fusion Network), all
        the operators of :class:`~skmm.fusion.MultimodalFuser`; ``"attention"``
        scales each tower's output by a weight learned per sample (a softmax over the
        modalities present, times their number, from an additive attention score) and
        concatenates them; ``"dot"`` is the ReLU of the dot product of each pair of
        towers (for matching pairs such as image and text).
    projection : int or None, default=None
        Width each tower is projected to (a linear layer and a ReLU) before fusion.
        None projects only when the fusion needs a common width: to the narrowest
        tower's width, or to 16 for ``"tensor"`` (its width is ``17 ** n_towers``).
    hidden_layer_sizes : tuple of int, default=(128,)
        Hidden ReLU layers of the head; ``()`` for a linear head.
    dropout : float, default=0.2
        Dropout rate on the fused vector and after each hidden layer, in training.
    alpha : float, default=1e-4
        L2 penalty (Adam weight decay) on the weight matrices and kernels.
    l1 : float, default=0.0
        L1 penalty: ``l1`` times the sum of the absolute weights is added to each
        batch's loss.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    tower_lr : dict of str to float or None, default=None
        Learning rates of some towers by encoder name (a pretrained tower fine-tuned
        gently, say); the others, the fusion and the head use ``lr``.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each epoch with the history: checkpoints, learning-rate
        schedules, custom stops (see :mod:`skmm.callbacks`).
    batch_size : int, default=64
        Rows per batch in training and prediction.
    max_epochs : int, default=30
        Maximum passes over the training data (early stopping may stop sooner).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (stratified when the classes
        allow it), stop when the validation accuracy has not improved for
        ``n_iter_no_change`` epochs and restore the weights of the best epoch (ties go
        to the lower validation loss). False trains on all rows for ``max_epochs``.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    modality_dropout : float, default=0.0
        In training, each modality of each row is zeroed with this probability (never
        all of a row's modalities), so that the net copes with missing ones. A missing
        item (None/NaN) is zeroed the same way, in training and prediction.
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss; ``"balanced"`` is
        ``n_samples / (n_classes * np.bincount(y))``.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the net runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the validation split, the data order, augmentation and
        dropout: the same seed gives the same predictions on the CPU.
    verbose : bool, default=False
        Show a progress bar over the epochs (with the loss and validation score) and
        over the batches in prediction.

    Attributes
    ----------
    encoders_ : list of (str, encoder, columns) tuples
        The fitted encoders (``"passthrough"`` and transformers become tabular
        encoders), with the resolved columns. Each skmm encoder holds its trained tower
        as ``module_``, so it can also encode on its own.
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name.
    module_ : torch.nn.Module
        The network: ``towers``, ``fusion`` and ``head``, on ``device_``.
    device_ : str
        The device used.
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy of each epoch; None without early stopping.
    best_validation_score_ : float
        The best validation accuracy, whose weights were kept; only set with early
        stopping.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``lr`` and, with early
        stopping, ``valid_score``, ``valid_loss`` and ``best``.
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names, when X is a DataFrame with string column names.

    See Also
    --------
    MultimodalNetRegressor : The same for real-valued targets.
    skmm.fusion.MultimodalFuser : Feature-level fusion for any scikit-learn model.
    sklearn.neural_network.MLPClassifier : The head alone, on numeric features.

    Notes
    -----
    :meth:`transform` returns the fused vector, so the jointly trained towers can feed
    another model. ``make_pipeline(net, SVC())`` fits both on the same rows; to train
    the head on other rows than the net, fit the net first and wrap it in
    :class:`~sklearn.frozen.FrozenEstimator`: ``make_pipeline(FrozenEstimator(net),
    SVC()).fit(X_other, y_other)``.

    The training items are decoded once and held in memory (as the encoders do);
    prediction reads ``batch_size`` rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.nn import MultimodalNetClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> y = (X[:, 0] + X[:, 2] > 0).astype(int)
    >>> net = MultimodalNetClassifier(
    ...     [("left", "passthrough", [0, 1]), ("right", "passthrough", [2, 3])],
    ...     fusion="attention", lr=1e-2, max_epochs=10, random_state=0, device="cpu",
    ... ).fit(X, y)
    >>> net.score(X, y) > 0.9
    True
    >>> net.transform(X[:3]).shape
    (3, 128)
    """

    _parameter_constraints = {
        **_MultimodalNetBase._parameter_constraints,
        "class_weight": [None, StrOptions({"balanced"}), dict],
    }

    def __init__(
        self,
        encoders,
        *,
        fusion="concat",
        projection=None,
        hidden_layer_sizes=(128,),
        dropout=0.2,
        alpha=1e-4,
        l1=0.0,
        lr=1e-3,
        tower_lr=None,
        optimizer=torch.optim.Adam,
        callbacks=None,
        batch_size=64,
        max_epochs=30,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=5,
        modality_dropout=0.0,
        class_weight=None,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.encoders = encoders
        self.fusion = fusion
        self.projection = projection
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.alpha = alpha
        self.l1 = l1
        self.lr = lr
        self.tower_lr = tower_lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.modality_dropout = modality_dropout
        self.class_weight = class_weight
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_target(self, y, n):
        cls = type(self).__name__
        if y is None:
            raise ValueError(
                f"{cls} requires y to be passed, but the target y is None."
            )
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n), y)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{cls} needs samples of at least 2 classes in y; got 1 class "
                f"({self.classes_[0]!r})."
            )
        weights = None
        if self.class_weight is not None:
            weights = compute_class_weight(
                self.class_weight, classes=self.classes_, y=y
            )
        self._class_weights_ = weights
        return torch.as_tensor(encoded, dtype=torch.long), encoded

    def _n_outputs(self):
        return len(self.classes_)

    def _loss_function(self):
        return torch.nn.CrossEntropyLoss(reduction="none")

    def _row_weights(self, target, weight):
        """Class weights folded into the rows' weights (as in sklearn's SGD)."""
        if self._class_weights_ is None:
            return weight
        rows = torch.as_tensor(self._class_weights_, dtype=torch.float32)[target]
        return rows if weight is None else rows * weight

    @staticmethod
    def _score_outputs(out, target):
        return float((out.argmax(dim=1) == target).float().mean())

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities of the classes, in the order of ``classes_``.
        """
        logits = torch.from_numpy(self._forward(X))
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predicted classes.
        """
        scores = self._forward(X)
        return self.classes_[scores.argmax(axis=1)]


class MultimodalNetRegressor(RegressorMixin, _MultimodalNetBase):
    """End-to-end multimodal regressor: encoder towers, a fusion layer, an MLP head.

    Each modality goes through a tower: the torch module of an skmm encoder
    (:class:`~skmm.encoders.ImageEncoder` CNN, :class:`~skmm.encoders.TextEncoder`
    LSTM/GRU, :class:`~skmm.encoders.AudioEncoder` spectrogram CNN: one
    implementation, with the encoder's preprocessing and augmentation) or, for numeric
    columns, a 64-unit ReLU layer over the standardised values. The towers' outputs are
    fused and an MLP head reads the fused vector; everything is trained jointly with
    Adam and a squared-error loss on the standardised targets.

    Parameters
    ----------
    encoders : list of (str, encoder, columns) tuples
        As in :class:`~sklearn.compose.ColumnTransformer`; see
        :class:`MultimodalNetClassifier`.
    fusion : {"concat", "sum", "mean", "product", "max", "attention", "tensor", \
"dot"}, default="concat"
        How the towers' outputs are combined; see :class:`MultimodalNetClassifier`.
    projection : int or None, default=None
        Width each tower is projected to before fusion; None projects only when the
        fusion needs a common width (to the narrowest tower, 16 for ``"tensor"``).
    hidden_layer_sizes : tuple of int, default=(128,)
        Hidden ReLU layers of the head; ``()`` for a linear head.
    dropout : float, default=0.2
        Dropout rate on the fused vector and after each hidden layer, in training.
    alpha : float, default=1e-4
        L2 penalty (Adam weight decay) on the weight matrices and kernels.
    l1 : float, default=0.0
        L1 penalty added to each batch's loss, times the sum of the absolute weights.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    tower_lr : dict of str to float or None, default=None
        Learning rates of some towers by encoder name (a pretrained tower fine-tuned
        gently, say); the others, the fusion and the head use ``lr``.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer class, built on the trainable parameters.
    callbacks : list of :class:`skmm.callbacks.Callback` or callables, default=None
        Called after each epoch with the history: checkpoints, learning-rate
        schedules, custom stops (see :mod:`skmm.callbacks`).
    batch_size : int, default=64
        Rows per batch in training and prediction.
    max_epochs : int, default=30
        Maximum passes over the training data (early stopping may stop sooner).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when the validation R² has
        not improved for ``n_iter_no_change`` epochs and restore the best epoch's
        weights. False trains on all rows for ``max_epochs``.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    modality_dropout : float, default=0.0
        In training, each modality of each row is zeroed with this probability (never
        all of a row's); missing items are zeroed the same way.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the net runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, validation split, data order, augmentation and dropout.
    verbose : bool, default=False
        Show progress bars over the epochs and the prediction batches.

    Attributes
    ----------
    encoders_ : list of (str, encoder, columns) tuples
        The fitted encoders with the resolved columns; each skmm encoder holds its
        trained tower as ``module_``.
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name.
    module_ : torch.nn.Module
        The network: ``towers``, ``fusion`` and ``head``, on ``device_``.
    device_ : str
        The device used.
    n_outputs_ : int
        Number of targets.
    y_mean_, y_scale_ : ndarray
        Mean and standard deviation the targets were standardised with.
    loss_curve_ : list of float
        Mean training loss (on standardised targets) of each epoch.
    validation_scores_ : list of float or None
        Validation R² of each epoch; None without early stopping.
    best_validation_score_ : float
        The best validation R², whose weights were kept; only set with early stopping.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``lr`` and, with early
        stopping, ``valid_score``, ``valid_loss`` and ``best``.
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names, when X is a DataFrame with string column names.

    See Also
    --------
    MultimodalNetClassifier : The same for class labels.
    sklearn.neural_network.MLPRegressor : The head alone, on numeric features.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.nn import MultimodalNetRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> y = X[:, 0] - 2 * X[:, 3]
    >>> net = MultimodalNetRegressor(
    ...     [("a", "passthrough", [0, 1]), ("b", "passthrough", [2, 3])],
    ...     lr=1e-2, max_epochs=10, random_state=0, device="cpu",
    ... ).fit(X, y)
    >>> net.score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        encoders,
        *,
        fusion="concat",
        projection=None,
        hidden_layer_sizes=(128,),
        dropout=0.2,
        alpha=1e-4,
        l1=0.0,
        lr=1e-3,
        tower_lr=None,
        optimizer=torch.optim.Adam,
        callbacks=None,
        batch_size=64,
        max_epochs=30,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=5,
        modality_dropout=0.0,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.encoders = encoders
        self.fusion = fusion
        self.projection = projection
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.alpha = alpha
        self.l1 = l1
        self.lr = lr
        self.tower_lr = tower_lr
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.modality_dropout = modality_dropout
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_target(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is "
                "None."
            )
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
        check_consistent_length(np.empty(n), y)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        # Standardised targets keep the loss on one scale whatever the units of y.
        self.y_mean_ = y.mean(axis=0)
        scale = y.std(axis=0)
        self.y_scale_ = np.where(scale > 0, scale, 1.0)
        standard = ((y - self.y_mean_) / self.y_scale_).reshape(n, -1)
        return torch.as_tensor(standard, dtype=torch.float32), None

    def _n_outputs(self):
        return self.n_outputs_

    def _loss_function(self):
        return torch.nn.MSELoss(reduction="none")

    @staticmethod
    def _score_outputs(out, target):
        return float(r2_score(target.cpu().numpy(), out.float().cpu().numpy()))

    def predict(self, X):
        """Predict the targets.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, 1-D when ``y`` was 1-D in :meth:`fit`.
        """
        out = self._forward(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return out[:, 0] if np.ndim(self.y_mean_) == 0 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
