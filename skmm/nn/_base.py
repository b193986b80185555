"""The base of every estimator made of towers: the nets and the matcher.

One implementation of what they share: the ``(name, encoder, columns)`` triples (the
composition of :mod:`skmm.utils._composition`, as the fuser and the ensembles hold
it), the table check, column selection, the towers a composite builds and OWNS (from
the encoders' specifications: preprocessing and module factory, the
:class:`~skmm.base.Tower` protocol), frozen towers computed through the encoder's
batched and cached encoding with the composite's settings, standalone copies of the
fitted encoders (``named_encoders_``), and the fit template's common hooks.
Training runs through the one loop of :mod:`skmm.training`.
"""

import copy
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import Bunch

from ..base import Runtime, TorchEncoderMixin
from ..training._estimator import TorchEstimatorMixin
from ..training._precision import PRECISION_CONSTRAINT
from ..training._streaming import located
from ..training._template import FitTemplateMixin
from ..utils._composition import ModalityLayout, TriplesComposition, check_table
from ..utils._sklearn_compat import (
    HasMethods,
    Interval,
    _check_sample_weight,
    _fit_context,
)
from ..utils._validation import reject_groups
from ._towers import TabularEncoder

# The training parameters every tower composite has, validated the same way.
TRAINING_CONSTRAINTS = {
    **TorchEstimatorMixin._torch_parameter_constraints,
    "encoders": [list],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "optimizer": [type],
    "callbacks": [None, list],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "tower_lr": [None, dict],
    "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "precision": PRECISION_CONSTRAINT,
}


def naming(name):
    """Prefix a ValueError raised for one encoder with that encoder's name (also
    when its items, read lazily in the block, are decoded later)."""
    return located(f"encoder {name!r}")


def check_weights(sample_weight, n):
    """``sample_weight`` as a float tensor (None stays None)."""
    if sample_weight is None:
        return None
    weight = _check_sample_weight(sample_weight, np.empty((n, 0)), dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(weight))


def weighted_mean(losses, weight, rows):
    """The mean of per-row losses, weighted by the rows' ``weight`` when given."""
    if losses.ndim > 1:
        losses = losses.mean(dim=1)
    if weight is None:
        return losses.mean()
    w = weight[torch.as_tensor(rows)].to(losses.device)
    return (losses * w).sum() / w.sum().clamp_min(1e-12)


class TowerComposite(FitTemplateMixin, TriplesComposition):
    """Towers from ``(name, encoder, columns)`` triples, trained by the one loop.

    The composite owns its towers: it builds them from the fitted encoders'
    specifications into ``module_.towers`` and runs them with its own device, batch
    size and cache (``memory``). ``encoders_`` keeps the fitted specifications
    (preprocessing, no module); ``named_encoders_`` gives standalone copies that
    encode on their own.

    Subclasses set ``_n_sides`` (None for any number of towers, 2 for a matcher) and
    ``_allow_drop``, and implement the fit template's remaining hooks.
    """

    _triples_param = "encoders"
    _n_sides = None
    _allow_drop = True

    # -- composition ---------------------------------------------------------------------
    @property
    def encoders_(self):
        """The fitted ``(name, encoder, columns)`` triples: the encoders'
        specifications (their preprocessing; the towers are in ``module_``)."""
        return self.modalities_.triples()

    @property
    def named_encoders_(self):
        """The fitted encoders by name (a Bunch); dropped ones are ``"drop"``.

        Each is a standalone copy with a copy of its trained tower: it transforms on
        its own, outlives the composite, and changing its weights does not change
        the composite's (nor the reverse). Built at each access.
        """
        towers = iter(self.module_.towers)
        out = {}
        for m in self.modalities_:
            out[m.name] = (
                m.estimator
                if not m.active
                else self._standalone(m.estimator, next(towers))
            )
        return Bunch(**out)

    def _standalone(self, enc, tower):
        copied = copy.deepcopy(enc)
        if isinstance(enc, TorchEncoderMixin):
            copied.module_ = copy.deepcopy(tower).eval()
            copied.device_ = self.device_
        return copied

    def _towers(self):
        """The fitted (name, encoder, columns) triples that have a tower."""
        return [(m.name, m.estimator, m.columns) for m in self.modalities_.active]

    def _check_tower(self, name, enc):
        """The check of the layout: what can become a tower."""
        if isinstance(enc, TorchEncoderMixin) or all(
            hasattr(enc, m) for m in ("fit", "transform")
        ):
            return
        allowed = (
            "'passthrough' or 'drop'"
            if self._allow_drop
            else "or 'passthrough': a matcher needs both sides"
        )
        raise TypeError(
            f"encoder {name!r} must be an skmm encoder (ImageEncoder, TextEncoder, "
            f"AudioEncoder), a scikit-learn transformer, {allowed}; got {enc!r}."
        )

    @staticmethod
    def _spec(enc):
        """The fitted specification of a tower: an unfitted copy of the encoder."""
        if isinstance(enc, TorchEncoderMixin):
            enc = clone(enc)
            enc._validate_params()
            return enc
        if isinstance(enc, str):  # "passthrough": numeric columns
            return TabularEncoder()
        return TabularEncoder(enc)

    # -- input ---------------------------------------------------------------------------
    def _check_X(self, X, *, reset):
        return check_table(self, X, reset=reset)

    def _columns(self, X, *, reset):
        """Each tower's validated ``Column``, in the order of ``_towers()``."""
        columns = []
        for m in self.modalities_.active:
            with naming(m.name):
                items = self.modalities_.select(X, m.name)
                columns.append(m.estimator._check_input(items, reset=reset))
            if not reset:  # at fit, once the tower's backbone is resolved
                self._check_groups(m.estimator, columns[-1])
        return columns

    def _check_groups(self, enc, column):
        """Cells of several items reach a frozen tower only: its features are the
        mean of the items' (the encoders' pooling); a trained tower would need the
        pooling inside the net's forward pass."""
        if not getattr(enc, "_frozen", lambda: False)():
            reject_groups(column, type(self).__name__)

    # -- fit -----------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the encoders' preprocessing, then train the towers and the rest.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The columns selected by ``encoders``; ``None``/NaN marks a missing item.
            A Dask DataFrame is read one partition at a time.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            The targets (see the estimator's description).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the training loss (and the validation loss).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._fit_entry(X, y, sample_weight)
        return self

    def _begin(self, run, X):
        """The checked table, the modality layout (``modalities_``) with the towers'
        specifications, and the towers' columns."""
        X = self._check_X(X, reset=True)
        if X.shape[0] < 2:
            raise ValueError(
                f"n_samples = {X.shape[0]}: {type(self).__name__} needs at least 2 "
                "samples."
            )
        self.modalities_ = ModalityLayout.from_triples(
            self.encoders,
            X,
            owner=self,
            check=self._check_tower,
            strings=("drop", "passthrough") if self._allow_drop else ("passthrough",),
            empty_columns="error",
            n_modalities=self._n_sides,
        )
        for m in self.modalities_.active:
            m.estimator = self._spec(m.estimator)
        self._check_layout()
        run.columns = self._columns(X, reset=True)
        run.n = X.shape[0]

    def _check_layout(self):
        """Checks of the towers that depend on the composite (none by default)."""

    def _targets(self, run, y, sample_weight, classes):
        """The first call's targets: ``classes_`` (or the scale) set, rows mapped."""
        targets = self._chunk_targets(
            y, sample_weight, run.n, first=True, classes=classes, partial=run.partial
        )
        return (run.columns, *targets)

    def _check_chunk(self, X, y, sample_weight, classes=None):
        """A later call's (or a partition's) columns, targets, weights and labels."""
        X = self._check_X(X, reset=False)
        columns = self._columns(X, reset=False)
        return (columns, *self._chunk_targets(y, sample_weight, X.shape[0]))

    def _preprocess(self, run):
        """Each tower's preprocessing, learned on its present training items.

        On the first partition of a Dask fit.
        """
        rows = np.arange(run.n) if run.stream else run.train
        for (name, enc, _), column in zip(self._towers(), run.columns):
            present = np.intersect1d(column.present(), rows)
            if len(present) == 0:
                raise ValueError(
                    f"encoder {name!r}: every training item is missing; nothing to "
                    "fit on."
                )
            with naming(name):
                enc._fit_preprocessing(*column.preprocessing_rows(present))
                self._check_groups(enc, column)

    def _resume(self, run):
        return self.module_

    # -- the towers ----------------------------------------------------------------------
    def _tower_input(self, name, enc, tower, column, rows):
        """The input of one tower for ``rows``: ``(tensor, encoded, present)``.

        Decoded items of the present rows, or, for a frozen tower, its features:
        a frozen tower gives the same output every time, so it is run through the
        encoder's batched encoding (with the ``memory`` cache), not in every epoch.
        ``present`` is the mask of ``rows`` whose item is there.
        """
        with naming(name):
            present = ~column.missing[rows]
            if not present.any():
                return None, False, present
            if enc._frozen():
                if tower.training:  # the fitted (or loaded) net's towers are
                    tower = tower.to(self.device_).eval()  # ready: no walk per call
                part = column.take(np.asarray(rows)[present])
                features = enc._encode(part, module=tower, runtime=Runtime.of(self))
                return torch.from_numpy(features), True, present
            return enc._load(column, np.asarray(rows)[present]), False, present

    def _train_mode(self, module, context):
        module.train()
        for tower, (_, enc, _) in zip(module.towers, self._towers()):
            if enc._frozen():
                tower.eval()  # frozen batch-norm statistics too

    def _param_groups(self, module, context):
        """Each tower's trainable parameters at its learning rate, then the rest.

        Frozen towers get no gradient; ``tower_lr`` sets a tower's learning rate by
        name (the others use ``lr``).
        """
        tower_lr = self.tower_lr or {}
        names = [name for name, _, _ in self._towers()]
        unknown = sorted(set(tower_lr) - set(names))
        if unknown:
            raise ValueError(
                f"tower_lr names {unknown}, which are not towers; the towers are "
                f"{names}."
            )
        groups, in_towers = [], set()
        for name, tower, (_, enc, _) in zip(names, module.towers, self._towers()):
            params = list(tower.parameters())
            in_towers.update(map(id, params))
            if enc._frozen():
                tower.requires_grad_(False)
                continue
            configure = getattr(enc, "_configure_training", None)
            if configure is not None:
                # train_layers: which of a pretrained tower's layers fine-tune.
                params = [p for group in configure(tower) for p in group["params"]]
            groups += self._decay_groups(params, tower_lr.get(name, self.lr))
        rest = [p for p in module.parameters() if id(p) not in in_towers]
        return groups + self._decay_groups(rest, self.lr)

    def _decay_groups(self, params, lr):
        """Weight decay (``alpha``, where the estimator has it) on matrices and kernels."""
        params = [p for p in params if p.requires_grad]
        alpha = getattr(self, "alpha", 0.0)
        return [
            {
                "params": [p for p in params if p.ndim > 1],
                "lr": lr,
                "weight_decay": alpha,
            },
            {
                "params": [p for p in params if p.ndim <= 1],
                "lr": lr,
                "weight_decay": 0.0,
            },
        ]
