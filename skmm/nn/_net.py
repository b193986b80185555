"""End-to-end multimodal nets: encoder towers trained jointly through a fusion layer."""

from abc import abstractmethod
from dataclasses import dataclass
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
from sklearn.utils.validation import column_or_1d
from tqdm.auto import tqdm

from ..callbacks._callbacks import Callback, EarlyStopping
from ..training._distributed import world
from ..training._loop import History, batches
from ..training._precision import autocast
from ..training._sources import validation_split
from ..training._streaming import Lazy, take_rows
from ..training._targets import check_classes, encode_labels
from ..training._template import PARTIAL_FIT_CLASSES
from ..utils._composition import target_type
from ..utils._dask import DaskMixin, value_counts
from ..utils._docs import fill_doc
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._torch import batch_norm_recalibration
from ..utils._validation import Column, check_fitted
from ._base import (
    TRAINING_CONSTRAINTS,
    TowerComposite,
    check_weights,
    naming,
    weighted_mean,
)
from ._towers import NET_FUSIONS, MultimodalNetwork

__all__ = ["MultimodalNetClassifier", "MultimodalNetRegressor"]


class _Source(NamedTuple):
    """Where a tower's inputs come from.

    In training, ``data`` holds the present items (lazy: decoded when read, see
    :mod:`skmm.training._streaming`; or, for a frozen tower, its features:
    ``encoded``) with ``position`` mapping a row to its index there (-1 when
    missing); in prediction both are None and each batch's items are decoded (or
    encoded, for a frozen tower) when it is read.
    """

    name: str
    encoder: object
    column: Column
    data: torch.Tensor | None = None
    position: np.ndarray | None = None
    encoded: bool = False


@dataclass
class _NetData:
    """The rows the training loop's steps read: each tower's source, the targets,
    the rows' weights and their class codes (None for a regressor)."""

    sources: list
    target: torch.Tensor
    weight: torch.Tensor | None
    labels: np.ndarray | None

    def __len__(self):
        return len(self.target)

    def take(self, rows):
        sources = []
        for source in self.sources:
            where = source.position[rows]
            have = where >= 0
            position = np.full(len(rows), -1)
            position[have] = np.arange(int(have.sum()))
            if source.data is None or not have.any():
                # Nothing to decode: the batch's own (missing) items say so.
                source = source._replace(column=source.column.take(rows), data=None)
            else:
                source = source._replace(data=take_rows(source.data, where[have]))
            sources.append(source._replace(position=position))
        labels = None if self.labels is None else self.labels[rows]
        return _NetData(
            sources,
            take_rows(self.target, rows),
            take_rows(self.weight, rows),
            labels,
        )


@dataclass
class _Objective:
    """What the steps optimise beside the data: the loss, each tower's loss weight
    (updated by :class:`_TowerBlending`) and the stage of ``schedule="staged"``."""

    loss_fn: object
    tower_weights: np.ndarray
    stage: str = "joint"


class _TowerBlending(Callback):
    """``tower_loss_weight="auto"``: each tower's loss weighed by how it generalises.

    After each validated epoch, each tower's weight becomes its validation score
    above chance relative to the best tower's (in the spirit of gradient blending,
    Wang et al., CVPR 2020): a tower that only memorises its training rows gets
    little weight.
    """

    def __init__(self, objective, names):
        self.objective, self.names = objective, names

    def on_epoch_end(self, estimator, *, module, optimizer, history):
        scores = history[-1].get("tower_scores")
        if not scores:
            return
        scores = [scores.get(name, np.nan) for name in self.names]
        excess = np.nan_to_num(np.asarray(scores, dtype=float) - estimator._chance())
        excess = np.clip(excess, 0, None)
        self.objective.tower_weights[:] = (
            excess / excess.max() if excess.max() > 0 else np.ones_like(excess)
        )

    def state_dict(self):
        return {"tower_weights": self.objective.tower_weights.tolist()}

    def load_state_dict(self, state):
        self.objective.tower_weights[:] = state["tower_weights"]


class _MultimodalNetBase(
    DaskMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, TowerComposite
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
        "tower_loss_weight": [
            Interval(Real, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "schedule": [StrOptions({"joint", "staged"})],
    }

    @abstractmethod
    def __init__(self):
        pass

    def _check_layout(self):
        n_towers = len(self.modalities_.active)
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

    # -- the network ---------------------------------------------------------------------
    def _network(self, towers):
        return MultimodalNetwork(
            towers,
            self.fusion,
            self.projection,
            tuple(self.hidden_layer_sizes),
            self.dropout,
            self._n_outputs(),
        )

    def _build_module(self):
        return self._network([enc._build_module() for _, enc, _ in self._towers()])

    # -- the fit template's hooks ----------------------------------------------------------
    def _targets(self, run, y, sample_weight, classes):
        if run.partial and self.schedule != "joint":
            raise ValueError(
                f"partial_fit trains the towers and the head jointly; "
                f"schedule={self.schedule!r} needs fit, which sees every stage."
            )
        return super()._targets(run, y, sample_weight, classes)

    def _chunk_targets(self, y, sample_weight, n, *, first=False, **kwargs):
        """The rows' targets, weights (class weights folded in) and class codes."""
        target, labels = self._check_target(y, n, first=first, **kwargs)
        weight = self._row_weights(target, check_weights(sample_weight, n))
        return target, weight, labels

    def _split(self, run):
        n = len(run.chunk[1])
        if run.partial or not self.early_stopping:
            return np.arange(n), None
        return validation_split(n, self.validation_fraction, run.seed, run.chunk[3])

    def _stream_split(self, run):
        if not self.early_stopping:
            return None
        fraction, seed = self.validation_fraction, run.seed
        # The same held-out rows of partition i at every epoch.
        return lambda data, i: validation_split(
            len(data), fraction, seed + i, data.labels
        )

    def _build(self, run):
        return self._network([enc._init_module() for _, enc, _ in self._towers()])

    def _data(self, run, module, columns, target, weight, labels):
        """The rows' training data: each trainable tower's present items (decoded
        when read), each frozen tower's features (computed once, through the cache).
        """
        sources = []
        for (name, enc, _), column, tower in zip(
            self._towers(), columns, module.towers
        ):
            present = ~column.missing
            if enc._frozen():
                data, encoded, present = self._tower_input(
                    name, enc, tower, column, np.arange(len(column))
                )
            else:
                with naming(name):
                    data, encoded = Lazy(enc._load, column, column.present()), False
            if not present.all() and world()[1] > 1:
                raise ValueError(
                    f"encoder {name!r}: {column.where(np.flatnonzero(~present)[0])} is "
                    "missing; training on several processes needs every item of a "
                    "trainable tower present (a process whose share of a batch had "
                    "none would stall the others): drop or fill those rows, or train "
                    "in one process."
                )
            position = np.full(len(column), -1)
            position[present] = np.arange(int(present.sum()))
            sources.append(_Source(name, enc, column, data, position, encoded))
        return _NetData(sources, target, weight, labels)

    def _train(self, run, module, source):
        """The loop once, or once per stage of ``schedule="staged"``.

        The stages: the towers alone on their own heads (nothing fused yet), then
        the fusion and the head on the trained towers, then everything at a tenth
        of the learning rate; each stage stops early on its own validation score.
        """
        names = [name for name, _, _ in self._towers()]
        weight = 1.0 if self.tower_loss_weight == "auto" else self.tower_loss_weight
        objective = _Objective(
            self._loss_function(), np.full(len(names), float(weight))
        )
        history = History(self.history_ if run.partial and not run.first else [])
        run.new_from = len(history)
        stages = ["joint"] if self.schedule == "joint" else ["towers", "head", "tune"]
        optimizer = None
        for stage in stages:
            objective.stage = stage
            callbacks = []
            if not run.partial and self.early_stopping:
                if self.tower_loss_weight == "auto":
                    callbacks.append(_TowerBlending(objective, names))
                callbacks.append(EarlyStopping(self.n_iter_no_change))
            history, optimizer = self._fit_loop(
                module,
                source,
                max_epochs=1 if run.partial else self.max_epochs,
                seed=run.seed + len(history) - run.new_from,
                context=objective,
                callbacks=callbacks,
                history=history,
                stage=stage,
                optimizer_state=getattr(self, "_optimizer_state_", None)
                if run.partial
                else None,
            )
        return history, optimizer

    def _finish(self, run, module, source, history):
        self.module_ = module.to(self.device_).eval()
        early = self.early_stopping and not run.partial
        self._history_attributes(history, history[run.new_from :], early)

    # -- batches ---------------------------------------------------------------------------
    def _batch(self, module, sources, rows, generator=None):
        """The towers' inputs for ``rows`` and the mask of the modalities that count.

        With a ``generator`` (training) the items are augmented and whole modalities
        are dropped at random (``modality_dropout``), never all of a row's.
        """
        device = self.device_
        present = np.zeros((len(rows), len(sources)), dtype=bool)
        inputs = []
        for m, (name, enc, column, data, position, encoded) in enumerate(sources):
            if data is None:
                x, encoded, have = self._tower_input(
                    name, enc, module.towers[m], column, rows
                )
            else:
                where = position[rows]
                have = where >= 0
                x = data[torch.from_numpy(where[have])] if have.any() else None
            if x is not None and generator is not None and not encoded:
                x = enc._augment(x, generator)
            present[:, m] = have
            local = torch.from_numpy(np.flatnonzero(have)).to(device, non_blocking=True)
            if x is not None:
                x = x.to(device, non_blocking=True)
            inputs.append((x, local, encoded))
        available = present
        if generator is not None and self.modality_dropout > 0:
            keep = torch.rand(present.shape, generator=generator).numpy()
            kept = present & (keep >= self.modality_dropout)
            available = np.where(kept.any(axis=1, keepdims=True), kept, present)
        return inputs, torch.from_numpy(available).to(device, non_blocking=True)

    # -- the training loop's steps ----------------------------------------------------------
    def _param_groups(self, module, objective):
        """The parameters that the current stage trains."""
        groups = super()._param_groups(module, objective)
        fused = {id(p) for m in (module.fusion, module.head) for p in m.parameters()}
        towers = {id(p) for m in module.towers for p in m.parameters()}
        stage = objective.stage
        keep = {
            "joint": lambda p: True,
            "tune": lambda p: True,
            "towers": lambda p: id(p) not in fused,
            "head": lambda p: id(p) in fused,
        }[stage]
        lr_scale = 0.1 if stage == "tune" else 1.0
        out = []
        for group in groups:
            params = [p for p in group["params"] if keep(p)]
            if stage == "head" and towers.intersection(map(id, params)):
                params = [p for p in params if id(p) not in towers]
            out.append({**group, "params": params, "lr": group["lr"] * lr_scale})
        return out

    def _train_mode(self, module, objective):
        super()._train_mode(module, objective)
        if objective.stage == "head":
            # Trained already: their batch-norm statistics too, and their outputs'.
            module.towers.eval()
            module.norms.eval()

    def _losses(self, module, data, rows, loss_fn, generator=None):
        """The fused loss, each tower's loss (on its present rows) and the outputs."""
        inputs, available = self._batch(module, data.sources, rows, generator)
        fused, per_tower = module.forward_all(inputs, available)
        y = data.target[rows].to(self.device_, non_blocking=True)
        fused_loss = weighted_mean(loss_fn(fused, y), data.weight, rows)
        weight = None
        if data.weight is not None:
            weight = data.weight[torch.as_tensor(rows)].to(
                self.device_, non_blocking=True
            )
        tower_losses = []
        for m, out in enumerate(per_tower):
            # The mean over the rows where the modality counts, as a masked mean on
            # the device: choosing those rows on the host would wait for the GPU.
            mask = available[:, m].float()
            mask = mask if weight is None else mask * weight
            losses = loss_fn(out, y)
            losses = losses.mean(dim=1) if losses.ndim > 1 else losses
            tower_losses.append((losses * mask).sum() / mask.sum().clamp_min(1e-12))
        return fused_loss, tower_losses, fused, per_tower, available

    def _train_step(self, module, data, batch, generator, objective):
        fused_loss, tower_losses, *_ = self._losses(
            module, data, batch, objective.loss_fn, generator
        )
        towers = sum(
            w * loss
            for w, loss in zip(objective.tower_weights.tolist(), tower_losses)
            if loss is not None and w > 0
        )
        if objective.stage == "towers":
            loss = recorded = sum(t for t in tower_losses if t is not None)
        elif objective.stage == "head":
            loss = recorded = fused_loss
        else:
            loss, recorded = fused_loss + towers, fused_loss
        if self.l1:
            # L1 on weight matrices and kernels, as alpha's weight decay.
            loss = loss + self.l1 * sum(
                p.abs().sum()
                for p in module.parameters()
                if p.requires_grad and p.ndim > 1
            )
        return loss, recorded, len(batch)

    def _validation_step(self, module, data, rows, objective):
        outs, towers, present = [], [], []
        for index in batches(len(rows), self.batch_size):
            inputs, available = self._batch(module, data.sources, rows[index.numpy()])
            fused, per_tower = module.forward_all(inputs, available)
            outs.append(fused)
            towers.append(per_tower)
            present.append(available)
        out, present = torch.cat(outs), torch.cat(present)
        y_val = data.target[rows].to(self.device_)
        loss = float(weighted_mean(objective.loss_fn(out, y_val), data.weight, rows))
        tower_scores = {}
        for m, source in enumerate(data.sources):
            have = present[:, m]
            if bool(have.any()):
                tower_out = torch.cat([t[m] for t in towers])[have]
                tower_scores[source.name] = self._score_outputs(tower_out, y_val[have])
        score = self._score_outputs(out, y_val)
        if objective.stage == "towers":
            # Nothing is fused yet: the towers' mean score decides early stopping.
            score = float(np.mean(list(tower_scores.values())))
        return score, loss, {"tower_scores": tower_scores}

    def _recalibrate(self, module, parts, objective):
        """Re-estimate the towers' batch-norm statistics with the current weights.

        The towers' batch norms and the standardisation of their outputs, averaged
        over every ``(data, rows)`` of ``parts``. With the running averages left to
        lag behind the weights, a CNN tower can score far lower in eval mode than
        its training batches do (docs/user_guide.rst).
        """
        if objective.stage == "head":
            return  # the towers do not change in this stage
        self._train_mode(module, objective)
        towers = torch.nn.ModuleList([module.towers, module.norms])
        with batch_norm_recalibration(towers) as norms:
            for data, rows in parts if norms else ():
                for index in batches(len(rows), self.batch_size):
                    if len(index) >= 2:
                        rows_ = rows[index.numpy()]
                        module.blocks(*self._batch(module, data.sources, rows_))

    # -- prediction ------------------------------------------------------------------------
    def _forward(self, X, *, output="head"):
        """Run the net on ``X``, ``batch_size`` rows at a time; numpy float32 output.

        ``output`` is ``"head"`` (the fused head's output), ``"embed"`` (the fused
        vector), ``"towers"`` (each tower head's output, NaN where the modality is
        missing) or ``"weights"`` (the learned modality weights).
        """
        check_fitted(self)
        X = self._check_X(X, reset=False)
        columns = self._columns(X, reset=False)
        sources = [
            _Source(name, enc, column)
            for (name, enc, _), column in zip(self._towers(), columns)
        ]
        module = self.module_
        if module.training:  # in eval mode since fit or loading: no walk per call
            module.eval()
        out = []
        parts = list(batches(X.shape[0], self.batch_size))
        if self.verbose:  # no bar object per call unless one is shown
            parts = tqdm(parts, desc=f"{type(self).__name__} predict")
        with torch.inference_mode(), autocast(self.device_, self.precision):
            for index in parts:
                inputs, available = self._batch(module, sources, index.numpy())
                if output == "head":
                    result = module(inputs, available)
                elif output == "embed":
                    result = module.embed(inputs, available)
                elif output == "weights":
                    blocks = module.blocks(inputs, available)
                    result = module.fusion.modality_weights(blocks, available)
                else:
                    _, per_tower = module.forward_all(inputs, available)
                    result = torch.stack(per_tower, dim=1).float()
                    result[~available] = torch.nan
                out.append(result.float().cpu().numpy())
        return np.concatenate(out)

    def modality_weights(self, X):
        """How much each modality counts in each row's fused vector.

        For ``fusion="attention"`` the learned per-row gates; for
        ``fusion="transformer"`` the attention of the summary token to each
        modality's token in the last layer (mean over heads). A missing modality
        gets 0.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        weights : ndarray of shape (n_samples, n_towers)
            Rows sum to 1 (0 for a row with no modality present); columns in the
            order of the towers (``encoders_`` without the dropped ones).
        """
        if self.fusion not in ("attention", "transformer"):
            raise ValueError(
                f"fusion={self.fusion!r} learns no modality weights; use "
                "'attention' or 'transformer', or skmm.inspection for any model."
            )
        return self._forward(X, output="weights")

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
        return self._forward(X, output="embed")

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


# The parameters and attributes the classifier and the regressor share.
_PARTIAL_FIT_DOCS = {
    "partial_fit": """\
        The first call learns the towers' preprocessing on its rows and starts the
        towers from their initial weights, as :meth:`fit` does; later calls continue
        from the weights and the optimizer state (Adam's moments, say) that the
        previous call left, which pickles with the net. A call after :meth:`fit`
        continues from the fitted weights with a fresh optimizer. One epoch of the
        training loop, without a validation split (no early stopping), trained
        jointly (``schedule="joint"``); ``tower_loss_weight="auto"`` weighs every
        tower 1, having no validation score to go by.""",
    "partial_fit_X": """\
        X : DataFrame or array-like of shape (n_samples, n_features)
            The columns selected by ``encoders``; ``None``/NaN marks a missing item.""",
    "partial_fit_weight": """\
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the training loss.""",
    "partial_fit_returns": """\
        self : object
            The net, trained one more pass.""",
}

_NET_TOP = """\
    encoders : list of (str, encoder, columns) tuples
        As in :class:`~sklearn.compose.ColumnTransformer`: a name, then an skmm encoder,
        ``"passthrough"`` (numeric columns: a row whose every value is NaN is
        missing, a NaN among present values is imputed with the training mean), any
        scikit-learn transformer (its numeric output feeds a tabular tower, such as
        ``OneHotEncoder`` on categories) or ``"drop"``, then the column(s): a name or
        position (one column of items for an encoder), a list, a slice, a boolean mask
        or a callable. An encoder here is a specification: the net clones it, fits
        its preprocessing, and builds and owns its tower (weights, ``augment``,
        ``train_layers``); the encoder's ``max_epochs`` only says whether the tower
        trains (one that would not, with ``max_epochs=0`` or pretrained weights and
        ``max_epochs="auto"``, stays frozen). Its training and runtime parameters
        (``lr``, ``optimizer``, ``callbacks``, ``batch_size``, ``device``,
        ``random_state``, ``memory``, ``num_workers``, ``precision``, ``verbose``) do
        not apply: the net's own do (``tower_lr`` sets a tower's learning rate).
    fusion : {"concat", "sum", "mean", "product", "max", "tensor", "attention", \
"transformer", "dot"}, default="concat"
        How the towers' outputs are combined. ``"concat"`` puts them side by side;
        ``"sum"``, ``"mean"``, ``"product"`` and ``"max"`` are element-wise and
        ``"tensor"`` is the outer product of ``[1, z_m]`` (Tensor Fusion Network), all
        the operators of :class:`~skmm.fusion.MultimodalFuser`; ``"attention"``
        scales each tower's output by a weight learned per sample (a softmax over the
        modalities present, times their number, from an additive attention score) and
        concatenates them; ``"transformer"`` makes each tower's output a token (plus
        a learned modality embedding) and runs a small transformer encoder over the
        tokens, whose summary token is the fused vector, with missing modalities
        masked out of attention; ``"dot"`` is DLRM's interaction layer: the towers'
        outputs side by side with the ReLU of the dot product of each pair of towers
        (the signal of matching pairs such as image and text).
    projection : int or None, default=None
        Width each tower is projected to (a linear layer and a ReLU) before fusion.
        None projects only when the fusion needs a common width: to the narrowest
        tower's width, to 16 for ``"tensor"`` (its width is ``17 ** n_towers``) and
        to 64 for ``"transformer"``.
    hidden_layer_sizes : tuple of int, default=(128,)
        Hidden ReLU layers of the head; ``()`` for a linear head.
    dropout : float, default=0.2
        Dropout rate on the fused vector and after each hidden layer, in training.
    alpha : float, default=1e-4
        L2 penalty (Adam weight decay) on the weight matrices and kernels.
    l1 : float, default=0.0
        L1 penalty: ``l1`` times the sum of the absolute weights is added to each
        batch's loss.
"""
_NET_TRAINING = """\
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
        Hold out ``validation_fraction`` of the rows (stratified by class for the
        classifier), stop when the validation score (accuracy, or R² for the
        regressor) has not improved for ``n_iter_no_change`` epochs and restore the
        weights of the best epoch (ties go to the lower validation loss). False
        trains on all rows for ``max_epochs``.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    modality_dropout : float, default=0.0
        In training, each modality of each row is zeroed with this probability (never
        all of a row's modalities), so that the net copes with missing ones. A missing
        item (None/NaN) is zeroed the same way, in training and prediction.
    tower_loss_weight : float or "auto", default="auto"
        Each tower also has a linear head of its own, trained on the target beside
        the fused head: the loss is the fused head's plus ``tower_loss_weight`` times
        each tower's (on the rows where its modality is present). It keeps every
        tower learning when another modality fits faster (the failure of joint
        training that Wang et al., CVPR 2020, describe). ``"auto"`` weighs each tower
        by how it generalises, in the spirit of their gradient blending: its
        validation score above chance relative to the best tower's, updated every
        epoch (1 for all without early stopping); 0 trains the fused head alone.
    schedule : {"joint", "staged"}, default="joint"
        ``"joint"`` trains everything together. ``"staged"`` trains the towers
        alone on their own heads first, then the fusion and the head on the trained
        (fixed) towers, then everything at a tenth of the learning rate; each stage
        runs up to ``max_epochs`` and stops early on its own.
"""
_NET_RUNTIME = """\
    memory : str, path-like, fsspec URL, joblib.Memory or None, default=None
        Cache of the features of frozen towers (an encoder that does not train:
        pretrained weights with ``max_epochs="auto"``, or ``max_epochs=0``), read
        at fit and at prediction, as the encoders' ``memory``: a second fit on the
        same items does not run those towers again.
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
        Where the net runs; ``"auto"`` is CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the validation split, the data order, augmentation and
        dropout: the same seed gives the same predictions on the CPU.
    verbose : bool, default=False
        Show a progress bar over the epochs (with the loss and validation score) and
        over the batches in prediction.
"""
_NET_ATTRIBUTES = """\
    encoders_ : list of (str, encoder, columns) tuples
        The fitted encoders' specifications (``"passthrough"`` and transformers
        become tabular encoders), with the resolved columns: their preprocessing,
        without a tower (the towers are in ``module_``).
    named_encoders_ : :class:`~sklearn.utils.Bunch`
        The fitted encoders by name, each a standalone copy holding a copy of its
        trained tower: it encodes on its own and outlives the net.
    module_ : torch.nn.Module
        The network: ``towers``, ``fusion`` and ``head``, on ``device_``.
    device_ : str
        The device used.
"""
_NET_HISTORY = """\
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``lr``, ``stage`` and, with
        early stopping, ``valid_score``, ``valid_loss``, ``best`` and
        ``tower_scores`` (each tower head's validation score, by name).
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names, when X is a DataFrame with string column names.
"""


@fill_doc(
    net_top=_NET_TOP,
    net_training=_NET_TRAINING,
    net_runtime=_NET_RUNTIME,
    net_attributes=_NET_ATTRIBUTES,
    net_history=_NET_HISTORY,
)
class MultimodalNetClassifier(ClassifierMixin, _MultimodalNetBase):
    """End-to-end multimodal classifier: encoder towers, a fusion layer, an MLP head.

    Each modality goes through a tower: the torch module of an skmm encoder
    (:class:`~skmm.encoders.ImageEncoder` CNN, :class:`~skmm.encoders.TextEncoder`
    LSTM/GRU, :class:`~skmm.encoders.AudioEncoder` spectrogram CNN: one
    implementation, with the encoder's preprocessing and augmentation) or, for numeric
    columns, a 64-unit ReLU layer over the standardised values. The towers' outputs are
    standardised (each feature over the training rows, as the feature-level fuser does),
    fused and an MLP head reads the fused vector; everything is trained jointly with
    Adam and a cross-entropy loss.

    Parameters
    ----------
    {net_top}
    {net_training}
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss; ``"balanced"`` is
        ``n_samples / (n_classes * np.bincount(y))``.
    {net_runtime}

    Attributes
    ----------
    {net_attributes}
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy of each epoch; None without early stopping.
    best_validation_score_ : float
        The best validation accuracy, whose weights were kept; only set with early
        stopping.
    {net_history}
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
        tower_loss_weight="auto",
        schedule="joint",
        class_weight=None,
        memory=None,
        num_workers=0,
        precision="32",
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
        self.tower_loss_weight = tower_loss_weight
        self.schedule = schedule
        self.class_weight = class_weight
        self.memory = memory
        self.num_workers = num_workers
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_target(self, y, n, *, first=False, classes=None, partial=False):
        """Class codes of ``y`` (and the codes as numpy); the first call sets
        ``classes_`` and the class weights."""
        cls = type(self).__name__
        if y is None:
            raise ValueError(
                f"{cls} requires y to be passed, but the target y is None."
            )
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n), y)
        target_type(y, cls)  # missing or mixed labels named
        check_classification_targets(y)
        if first:
            classes = check_classes(y, classes, owner=cls, required=partial)
            counts = None
            if not partial:
                counts = np.bincount(
                    np.searchsorted(classes, y), minlength=len(classes)
                )
            self._set_classes(classes, counts)
        encoded = encode_labels(y, self.classes_, owner=cls)
        return torch.as_tensor(encoded, dtype=torch.long), encoded

    def _set_classes(self, classes, counts=None):
        """Set ``classes_`` and the class weights; ``counts`` are the classes' rows."""
        self.classes_ = classes
        weights = None
        if isinstance(self.class_weight, str):
            if counts is None:
                raise ValueError(
                    "class_weight='balanced' needs the number of rows of every class, "
                    "which partial_fit does not see; use fit, or pass the weights as "
                    "a dict (sklearn.utils.class_weight.compute_class_weight gives "
                    "them)."
                )
            # "balanced", as sklearn's compute_class_weight: n / (n_classes * count).
            weights = counts.sum() / (len(classes) * np.asarray(counts, dtype=float))
        elif self.class_weight is not None:
            weights = compute_class_weight(
                self.class_weight, classes=classes, y=classes
            )
        self._class_weights_ = weights

    def _stream_targets(self, run, y):
        """``classes_`` and class weights from one pass over a Dask ``y``.

        Returns the number of rows of each class.
        """
        if y is None:
            self._check_target(None, 0)
        labels, counts = value_counts(y)
        check_classification_targets(labels)
        self._set_classes(check_classes(labels, owner=type(self).__name__), counts)
        return counts

    @fill_doc(**_PARTIAL_FIT_DOCS, classes=PARTIAL_FIT_CLASSES)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one pass over the rows of ``X``, continuing from the last call.

        {partial_fit}

        Parameters
        ----------
        {partial_fit_X}
        y : array-like of shape (n_samples,)
            The class labels.
        {classes}
        {partial_fit_weight}

        Returns
        -------
        {partial_fit_returns}
        """
        self._fit_entry(X, y, sample_weight, classes, partial=True)
        return self

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

    def _chance(self):
        return 1 / len(self.classes_)

    def tower_predict_proba(self, X):
        """Class probabilities of each tower's own head: one modality at a time.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        proba : dict of str to ndarray of shape (n_samples, n_classes)
            By tower name; rows where the modality is missing are NaN. Averaging them
            (over the present modalities) is a late fusion of the towers.
        """
        logits = torch.from_numpy(self._forward(X, output="towers")).double()
        names = [name for name, _, _ in self._towers()]
        return {
            name: torch.softmax(logits[:, m], dim=1).numpy()
            for m, name in enumerate(names)
        }

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


@fill_doc(
    net_top=_NET_TOP,
    net_training=_NET_TRAINING,
    net_runtime=_NET_RUNTIME,
    net_attributes=_NET_ATTRIBUTES,
    net_history=_NET_HISTORY,
)
class MultimodalNetRegressor(RegressorMixin, _MultimodalNetBase):
    """End-to-end multimodal regressor: encoder towers, a fusion layer, an MLP head.

    Each modality goes through a tower: the torch module of an skmm encoder
    (:class:`~skmm.encoders.ImageEncoder` CNN, :class:`~skmm.encoders.TextEncoder`
    LSTM/GRU, :class:`~skmm.encoders.AudioEncoder` spectrogram CNN: one
    implementation, with the encoder's preprocessing and augmentation) or, for numeric
    columns, a 64-unit ReLU layer over the standardised values. The towers' outputs are
    standardised (each feature over the training rows, as the feature-level fuser does),
    fused and an MLP head reads the fused vector; everything is trained jointly with
    Adam and a squared-error loss on the standardised targets.

    Parameters
    ----------
    {net_top}
    {net_training}
    {net_runtime}

    Attributes
    ----------
    {net_attributes}
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
    {net_history}
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
        tower_loss_weight="auto",
        schedule="joint",
        memory=None,
        num_workers=0,
        precision="32",
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
        self.tower_loss_weight = tower_loss_weight
        self.schedule = schedule
        self.memory = memory
        self.num_workers = num_workers
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_target(self, y, n, *, first=False, classes=None, partial=False):
        """Standardised targets (and None for the labels); the first call sets
        their scale."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is "
                "None."
            )
        try:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        except ValueError as exc:
            if "could not convert" not in str(exc):
                raise
            raise ValueError(
                f"{type(self).__name__} is trained on real values; y holds values "
                f"that are not numbers ({exc})."
            ) from None
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
        check_consistent_length(np.empty(n), y)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self._set_scale(n_outputs, y.mean(axis=0), y.std(axis=0))
        elif n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} output(s); the first call to partial_fit had "
                f"{self.n_outputs_}."
            )
        standard = ((y - self.y_mean_) / self.y_scale_).reshape(n, -1)
        return torch.as_tensor(standard, dtype=torch.float32), None

    def _set_scale(self, n_outputs, mean, std):
        # Standardised targets keep the loss on one scale whatever the units of y.
        self.n_outputs_ = n_outputs
        self.y_mean_ = np.asarray(mean, dtype=np.float64)
        self.y_scale_ = np.where(std > 0, std, 1.0)

    def _stream_targets(self, run, y):
        """The targets' mean and scale from one pass over a Dask ``y``; None."""
        import dask

        mean, std = dask.compute(y.mean(axis=0), y.std(axis=0, ddof=0))
        self._set_scale(1 if y.ndim == 1 else y.shape[1], mean, np.asarray(std))
        return None

    @fill_doc(**_PARTIAL_FIT_DOCS)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one pass over the rows of ``X``, continuing from the last call.

        {partial_fit}

        Parameters
        ----------
        {partial_fit_X}
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets; their mean and scale are learned on the first call.
        {partial_fit_weight}

        Returns
        -------
        {partial_fit_returns}
        """
        self._fit_entry(X, y, sample_weight, partial=True)
        return self

    def _n_outputs(self):
        return self.n_outputs_

    def _loss_function(self):
        return torch.nn.MSELoss(reduction="none")

    @staticmethod
    def _score_outputs(out, target):
        return float(r2_score(target.cpu().numpy(), out.float().cpu().numpy()))

    def _chance(self):
        return 0.0  # R² of predicting the mean

    def tower_predict(self, X):
        """Predictions of each tower's own head: one modality at a time.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in :meth:`fit`.

        Returns
        -------
        y_pred : dict of str to ndarray of shape (n_samples,) or (n_samples, n_outputs)
            By tower name; rows where the modality is missing are NaN.
        """
        out = self._forward(X, output="towers").astype(np.float64)
        out = out * self.y_scale_ + self.y_mean_
        names = [name for name, _, _ in self._towers()]
        squeeze = np.ndim(self.y_mean_) == 0
        return {
            name: out[:, m, 0] if squeeze else out[:, m] for m, name in enumerate(names)
        }

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
