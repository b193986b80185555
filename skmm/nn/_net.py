"""End-to-end multimodal nets: encoder towers trained jointly through a fusion layer."""

import copy
import math
from abc import abstractmethod
from contextlib import contextmanager
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    clone,
)
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_array, check_consistent_length
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from ..base import TorchEncoderMixin, TorchEstimatorMixin, _batches
from ..utils._sklearn_compat import (
    Interval,
    StrOptions,
    _BaseComposition,
    _check_feature_names,
    _check_n_features,
    _fit_context,
    _get_column_indices,
    _safe_indexing,
)
from ..utils._torch import batch_norm_recalibration, resolve_device, torch_seed
from ..utils._validation import Column
from ._towers import FUSIONS, TENSOR_WIDTH, MultimodalNetwork, TabularEncoder

__all__ = ["MultimodalNetClassifier", "MultimodalNetRegressor"]


@contextmanager
def _naming(name):
    """Prefix a ValueError raised for one encoder with that encoder's name."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"encoder {name!r}: {exc}") from exc


def _without_module(encoder):
    """A shallow copy of a fitted encoder without its ``module_`` (held by the net)."""
    if isinstance(encoder, str) or "module_" not in vars(encoder):
        return encoder
    encoder = copy.copy(encoder)
    del encoder.module_
    return encoder


class _Source(NamedTuple):
    """Where a tower's items come from.

    ``data`` holds the decoded present items (training) with ``position`` mapping a
    row to its index there (-1 when missing); in prediction both are None and items
    are decoded one batch at a time.
    """

    name: str
    encoder: object
    column: Column
    data: torch.Tensor | None
    position: np.ndarray | None


def _validation_split(n, fraction, seed, labels):
    """Split ``range(n)`` into sorted training and validation positions.

    Stratified on ``labels`` when every class can appear on both sides.
    """
    n_val = math.ceil(fraction * n)
    if n - n_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} leaves {n - n_val} of the {n} samples for "
            "training; at least 2 are needed. Use more data, a smaller "
            "validation_fraction or early_stopping=False."
        )
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
            stratify = labels
    train, val = train_test_split(
        np.arange(n), test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(val)


class _MultimodalNetBase(
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    TorchEstimatorMixin,
    _BaseComposition,
):
    """What the classifier and the regressor share: towers, fusion, training loop."""

    _parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "encoders": [list],
        "fusion": [StrOptions(set(FUSIONS))],
        "projection": [None, Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "modality_dropout": [Interval(Real, 0, 1, closed="left")],
    }

    @abstractmethod
    def __init__(self):
        pass

    # -- composition: (name, encoder, columns) triples as in ColumnTransformer ----------
    @property
    def _encoders(self):
        """(name, encoder) pairs, for ``_BaseComposition``'s get_params/set_params."""
        try:
            return [(name, enc) for name, enc, _ in self.encoders]
        except (TypeError, ValueError):
            return self.encoders

    @_encoders.setter
    def _encoders(self, value):
        try:
            self.encoders = [
                (name, enc, cols)
                for (name, enc), (_, _, cols) in zip(value, self.encoders)
            ]
        except (TypeError, ValueError):
            self.encoders = value

    def get_params(self, deep=True):
        """Get the parameters, including the encoders' as ``name__param``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of the encoders.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("_encoders", deep=deep)

    def set_params(self, **params):
        """Set the parameters; ``name=`` replaces an encoder, ``name__param=`` sets one.

        Parameters
        ----------
        **params : dict
            Parameters of the net and of its encoders.

        Returns
        -------
        self : estimator instance
            The net.
        """
        self._set_params("_encoders", **params)
        return self

    @property
    def named_encoders_(self):
        """The fitted encoders by name (a Bunch); dropped ones are ``"drop"``."""
        return Bunch(**{name: enc for name, enc, _ in self.encoders_})

    def _towers(self):
        """The fitted (name, encoder, columns) triples that have a tower."""
        return [entry for entry in self.encoders_ if not isinstance(entry[1], str)]

    def _check_encoders(self):
        """Validate the triples and return unfitted copies of the encoders."""
        if not self.encoders or not all(
            isinstance(e, (tuple, list)) and len(e) == 3 for e in self.encoders
        ):
            raise ValueError(
                "encoders must be a non-empty list of (name, encoder, columns) triples; "
                f"got {self.encoders!r}."
            )
        names, encoders, _ = zip(*self.encoders)
        self._validate_names(names)
        self._check_estimators_are_instances(encoders)
        out = []
        for name, enc, columns in self.encoders:
            if isinstance(enc, str) and enc in ("drop", "passthrough"):
                enc = enc if enc == "drop" else TabularEncoder()
            elif isinstance(enc, TorchEncoderMixin):
                enc = clone(enc)
                enc._validate_params()
            elif hasattr(enc, "fit") and hasattr(enc, "transform"):
                enc = TabularEncoder(enc)
            else:
                raise TypeError(
                    f"encoder {name!r} must be an skmm encoder (ImageEncoder, "
                    "TextEncoder, AudioEncoder), a scikit-learn transformer, "
                    f"'passthrough' or 'drop'; got {enc!r}."
                )
            out.append((name, enc, columns))
        n_towers = sum(not isinstance(enc, str) for _, enc, _ in out)
        if n_towers == 0:
            raise ValueError("every encoder is 'drop'; the net needs at least one.")
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
        return out

    # -- input ---------------------------------------------------------------------------
    def _check_X(self, X, *, reset):
        """Check the table: a DataFrame, or a 2-D array whose columns are selected."""
        cls = type(self).__name__
        if sp.issparse(X):
            raise TypeError(
                f"{cls} does not take sparse input; pass a dense array or a DataFrame."
            )
        if isinstance(X, pd.DataFrame):
            if X.shape[0] == 0 or X.shape[1] == 0:
                raise ValueError(
                    f"{cls} got a DataFrame of shape {X.shape}; at least one row and "
                    "one column are required."
                )
        else:
            # NaN marks missing values; the towers check their own columns.
            X = check_array(X, dtype=None, ensure_all_finite=False, input_name="X")
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)
        return X

    def _select(self, X, name, columns, *, reset):
        """The columns of one encoder: resolved at fit, reused as fitted later."""
        if reset:
            if callable(columns):
                columns = columns(X)
            if len(_get_column_indices(X, columns)) == 0:
                raise ValueError(
                    f"encoder {name!r} selects no column; X has {X.shape[1]} "
                    "feature(s)."
                )
        return _safe_indexing(X, columns, axis=1), columns

    def _columns(self, X, entries, *, reset):
        """Each tower's validated ``Column``, and the resolved column selections."""
        columns, selections = [], []
        for name, enc, cols in entries:
            selected, cols = self._select(X, name, cols, reset=reset)
            with _naming(name):
                columns.append(enc._check_input(selected, reset=reset))
            selections.append(cols)
        return columns, selections

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

    @staticmethod
    def _is_frozen(encoder):
        """A tower its encoder would use as is (``max_epochs=0`` or pretrained)."""
        return (
            isinstance(encoder, TorchEncoderMixin)
            and encoder._resolved_max_epochs() == 0
        )

    def _link_encoders(self):
        """Give each fitted encoder its trained tower, so it can encode on its own."""
        for (_, enc, _), tower in zip(self._towers(), self.module_.towers):
            if isinstance(enc, TorchEncoderMixin):
                enc.module_ = tower
                enc.device_ = self.device_

    def __getstate__(self):
        state = super().__getstate__()
        if "encoders_" in state:
            # The towers' weights are pickled once, inside module_.
            state["encoders_"] = [
                (name, _without_module(enc), cols)
                for name, enc, cols in state["encoders_"]
            ]
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "module_" in self.__dict__:
            self._link_encoders()

    # -- fit -------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the encoders' preprocessing, then train towers, fusion and head jointly.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            One column per modality (images, texts, sounds) and numeric columns, as
            selected by ``encoders``. ``None``/NaN marks a missing item.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets: class labels for the classifier, real values for the regressor.

        Returns
        -------
        self : object
            The fitted net.
        """
        self._fit_atomic(type(self)._fit, X, y)
        return self

    def _fit(self, X, y):
        entries = self._check_encoders()
        X = self._check_X(X, reset=True)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"n_samples = {n}: {type(self).__name__} needs at least 2 samples."
            )
        target, labels = self._check_target(y, n)
        self.device_ = resolve_device(self.device)
        seed = self._seed()
        towers = [entry for entry in entries if not isinstance(entry[1], str)]
        columns, selections = self._columns(X, towers, reset=True)
        resolved = iter(selections)
        self.encoders_ = [
            (name, enc, cols if isinstance(enc, str) else next(resolved))
            for name, enc, cols in entries
        ]
        if self.early_stopping:
            train, val = _validation_split(n, self.validation_fraction, seed, labels)
        else:
            train, val = np.arange(n), None
        with torch_seed(seed):
            for (name, enc, _), column in zip(towers, columns):
                rows = np.intersect1d(column.present(), train)
                if len(rows) == 0:
                    raise ValueError(
                        f"encoder {name!r}: every training item is missing; nothing "
                        "to fit on."
                    )
                with _naming(name):
                    enc._fit_preprocessing(column, rows)
            module = self._network([enc._init_module() for _, enc, _ in towers])
            sources = self._preload(towers, columns)
            self._train(module, sources, target, train, val, seed)
        self.module_ = module.to(self.device_).eval()
        self._link_encoders()

    def _preload(self, towers, columns):
        """Decode every present item once, for training."""
        sources = []
        for (name, enc, _), column in zip(towers, columns):
            rows = column.present()
            with _naming(name):
                data = enc._load(column, rows)
            position = np.full(len(column), -1)
            position[rows] = np.arange(len(rows))
            sources.append(_Source(name, enc, column, data, position))
        return sources

    def _batch(self, sources, rows, generator=None):
        """The towers' inputs for ``rows`` and the mask of the modalities that count.

        With a ``generator`` (training) the items are augmented and whole modalities
        are dropped at random (``modality_dropout``), never all of a row's.
        """
        device = self.device_
        present = np.zeros((len(rows), len(sources)), dtype=bool)
        inputs = []
        for m, (name, enc, column, data, position) in enumerate(sources):
            if data is None:
                have = ~column.missing[rows]
                with _naming(name):
                    x = enc._load(column, rows[have]) if have.any() else None
            else:
                where = position[rows]
                have = where >= 0
                x = data[torch.from_numpy(where[have])] if have.any() else None
            if x is not None and generator is not None:
                x = enc._augment(x, generator)
            present[:, m] = have
            local = torch.from_numpy(np.flatnonzero(have)).to(device)
            inputs.append((None if x is None else x.to(device), local))
        available = present
        if generator is not None and self.modality_dropout > 0:
            keep = torch.rand(present.shape, generator=generator).numpy()
            kept = present & (keep >= self.modality_dropout)
            available = np.where(kept.any(axis=1, keepdims=True), kept, present)
        return inputs, torch.from_numpy(available).to(device)

    def _train(self, module, sources, target, train, val, seed):
        """Adam on the training rows; early stopping keeps the best validation epoch."""
        module.to(self.device_)
        for tower, source in zip(module.towers, sources):
            if self._is_frozen(source.encoder):
                tower.requires_grad_(False)
        params = [p for p in module.parameters() if p.requires_grad]
        # Penalties apply to weight matrices and kernels, not to biases and norms.
        weights = [p for p in params if p.ndim > 1]
        optimizer = torch.optim.Adam(
            [
                {"params": weights, "weight_decay": self.alpha},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
            ],
            lr=self.lr,
        )
        loss_fn = self._loss_function()
        generator = torch.Generator().manual_seed(seed)
        self.loss_curve_ = []
        self.validation_scores_ = None if val is None else []
        best, best_state, stall = None, None, 0
        epochs = tqdm(
            range(self.max_epochs),
            desc=f"{type(self).__name__} fit",
            disable=not self.verbose,
        )
        self.n_iter_ = 0
        for _ in epochs:
            self.n_iter_ += 1
            module.train()
            for tower, source in zip(module.towers, sources):
                if self._is_frozen(source.encoder):
                    tower.eval()  # frozen batch-norm statistics too
            total, seen = 0.0, 0
            for index in _batches(len(train), self.batch_size, generator=generator):
                # A batch of one cannot train batch-norm layers; skip the remainder.
                if len(index) < 2:
                    continue
                rows = train[index.numpy()]
                out = module(*self._batch(sources, rows, generator))
                loss = loss_fn(out, target[rows].to(self.device_))
                penalty = (
                    self.l1 * sum(p.abs().sum() for p in weights) if self.l1 else 0.0
                )
                optimizer.zero_grad()
                (loss + penalty).backward()
                optimizer.step()
                total += loss.item() * len(rows)
                seen += len(rows)
            self.loss_curve_.append(total / seen if seen else math.nan)
            if val is None:
                epochs.set_postfix(loss=self.loss_curve_[-1])
                continue
            self._recalibrate(module, sources, train)
            score, val_loss = self._evaluate(module, sources, target, val, loss_fn)
            self.validation_scores_.append(score)
            epochs.set_postfix(loss=self.loss_curve_[-1], val_score=score)
            # Best validation score; between equal scores, the lower validation loss.
            if best is None or (score, -val_loss) > best:
                best, stall = (score, -val_loss), 0
                best_state = {
                    k: v.detach().clone() for k, v in module.state_dict().items()
                }
            else:
                stall += 1
                if stall >= self.n_iter_no_change:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
            self.best_validation_score_ = best[0]
        else:
            self._recalibrate(module, sources, train)

    def _recalibrate(self, module, sources, train):
        """Re-estimate the towers' batch-norm statistics with the current weights.

        With the running averages left to lag behind the weights, a CNN tower can
        score 0.3 in eval mode where its batches score 0.6 (hard AV digits).
        """
        with batch_norm_recalibration(module.towers) as norms:
            if not norms:
                return
            for index in _batches(len(train), self.batch_size):
                if len(index) >= 2:
                    module.blocks(*self._batch(sources, train[index.numpy()]))

    def _evaluate(self, module, sources, target, val, loss_fn):
        module.eval()
        with torch.inference_mode():
            out = torch.cat(
                [
                    module(*self._batch(sources, val[index.numpy()]))
                    for index in _batches(len(val), self.batch_size)
                ]
            )
            y_val = target[val].to(self.device_)
            return self._score_outputs(out, y_val), float(loss_fn(out, y_val))

    # -- prediction ------------------------------------------------------------------------
    def _forward(self, X, *, embed=False):
        """Run the net on ``X``, ``batch_size`` rows at a time; numpy float32 output."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        towers = self._towers()
        columns, _ = self._columns(X, towers, reset=False)
        sources = [
            _Source(name, enc, column, None, None)
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
        Learning rate of Adam.
    batch_size : int, default=64
        Rows per batch in training and prediction.
    max_epochs : int, default=30
        Maximum passes over the training data.
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
        weight = self._class_weights_
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32, device=self.device_)
        return torch.nn.CrossEntropyLoss(weight=weight)

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
        Learning rate of Adam.
    batch_size : int, default=64
        Rows per batch in training and prediction.
    max_epochs : int, default=30
        Maximum passes over the training data.
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
        return torch.nn.MSELoss()

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
