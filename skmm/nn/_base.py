"""The base of every estimator made of towers: the nets and the matcher.

One implementation of what they share: the ``(name, encoder, columns)`` triples (the
composition of :mod:`skmm.utils._composition`, as the fuser and the ensembles hold
it), the table check, column selection, building towers from the encoders (the
:class:`~skmm.base.Tower` protocol), frozen towers computed once per fit, the link
from the fitted encoders to their trained towers, pickling, and the fit preamble
(device, seed, failure-safe fit). Training runs through the one loop of
:class:`~skmm.base.TrainingMixin`.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import Bunch

from ..base import TorchEncoderMixin, TorchEstimatorMixin, TrainingMixin
from ..utils._composition import TriplesComposition, check_table, is_drop
from ..utils._sklearn_compat import (
    Interval,
    _check_sample_weight,
    _fit_context,
    _get_column_indices,
    _safe_indexing,
)
from ..utils._torch import resolve_device
from ..utils._validation import prefix_errors, reject_groups
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
}


def naming(name):
    """Prefix a ValueError raised for one encoder with that encoder's name."""
    return prefix_errors(f"encoder {name!r}")


def _without_module(encoder):
    """A shallow copy of a fitted encoder without its ``module_`` (held by the net)."""
    if isinstance(encoder, str) or "module_" not in vars(encoder):
        return encoder
    # Not copy.copy: that pickles the encoder's state (its module's weights) to copy it.
    light = object.__new__(type(encoder))
    light.__dict__.update({k: v for k, v in vars(encoder).items() if k != "module_"})
    return light


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


class TowerComposite(TrainingMixin, TorchEstimatorMixin, TriplesComposition):
    """Towers from ``(name, encoder, columns)`` triples, trained by the one loop.

    Subclasses set ``_n_sides`` (None for any number of towers, 2 for a matcher) and
    ``_allow_drop``, and implement ``_fit(X, y)`` with the helpers here.
    """

    _triples_param = "encoders"
    _n_sides = None
    _allow_drop = True

    # -- composition ---------------------------------------------------------------------
    @property
    def named_encoders_(self):
        """The fitted encoders by name (a Bunch); dropped ones are ``"drop"``."""
        return Bunch(**{name: enc for name, enc, _ in self.encoders_})

    def _towers(self):
        """The fitted (name, encoder, columns) triples that have a tower."""
        return [entry for entry in self.encoders_ if not isinstance(entry[1], str)]

    def _check_encoders(self):
        """Validate the triples and return them with unfitted copies of the encoders."""
        cls = type(self).__name__
        triples = self.encoders
        well_formed = (
            isinstance(triples, list)
            and len(triples) > 0
            and all(isinstance(e, (tuple, list)) and len(e) == 3 for e in triples)
        )
        if self._n_sides is not None and well_formed:
            well_formed = len(triples) == self._n_sides
        if not well_formed:
            count = "a non-empty list of" if self._n_sides is None else "a list of two"
            raise ValueError(
                f"{cls}: encoders must be {count} (name, encoder, columns) triples"
                f"{'' if self._n_sides is None else ', one per side'}; got "
                f"{triples!r}."
            )
        names, encoders, _ = zip(*triples)
        self._validate_names(names)
        self._check_estimators_are_instances(encoders)
        out = []
        for name, enc, columns in triples:
            if isinstance(enc, TorchEncoderMixin):
                enc = clone(enc)
                enc._validate_params()
            elif isinstance(enc, str) and enc == "passthrough":
                enc = TabularEncoder()
            elif is_drop(enc) and self._allow_drop:
                pass
            elif not isinstance(enc, str) and all(
                hasattr(enc, m) for m in ("fit", "transform")
            ):
                enc = TabularEncoder(enc)
            else:
                allowed = (
                    "'passthrough' or 'drop'"
                    if self._allow_drop
                    else "or 'passthrough': a matcher needs both sides"
                )
                raise TypeError(
                    f"encoder {name!r} must be an skmm encoder (ImageEncoder, "
                    f"TextEncoder, AudioEncoder), a scikit-learn transformer, "
                    f"{allowed}; got {enc!r}."
                )
            out.append((name, enc, columns))
        if all(isinstance(enc, str) for _, enc, _ in out):
            raise ValueError(f"every encoder is 'drop'; {cls} needs at least one.")
        return out

    # -- input ---------------------------------------------------------------------------
    def _check_X(self, X, *, reset):
        return check_table(self, X, reset=reset)

    def _columns(self, X, entries, *, reset):
        """Each tower's validated ``Column``, and the resolved column selections.

        Callables are resolved at fit and the result reused afterwards, as in
        ColumnTransformer.
        """
        columns, selections = [], []
        for name, enc, cols in entries:
            if reset:
                if callable(cols):
                    cols = cols(X)
                if len(_get_column_indices(X, cols)) == 0:
                    raise ValueError(
                        f"encoder {name!r} selects no column; X has {X.shape[1]} "
                        "feature(s)."
                    )
            with naming(name):
                columns.append(
                    enc._check_input(_safe_indexing(X, cols, axis=1), reset=reset)
                )
            reject_groups(columns[-1], type(self).__name__)
            selections.append(cols)
        return columns, selections

    def _resolve_encoders(self, entries, selections):
        """Set ``encoders_``: the checked entries with their resolved columns."""
        resolved = iter(selections)
        self.encoders_ = [
            (name, enc, cols if isinstance(enc, str) else next(resolved))
            for name, enc, cols in entries
        ]

    # -- fit -----------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the encoders' preprocessing, then train the towers and the rest.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The columns selected by ``encoders``; ``None``/NaN marks a missing item.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            The targets (see the estimator's description).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the training loss (and the validation loss).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._fit_atomic(type(self)._fit, X, y, sample_weight)
        return self

    def _fit_begin(self, X):
        """The fit preamble: checked triples, table, device and seed."""
        entries = self._check_encoders()
        X = self._check_X(X, reset=True)
        if X.shape[0] < 2:
            raise ValueError(
                f"n_samples = {X.shape[0]}: {type(self).__name__} needs at least 2 "
                "samples."
            )
        self.device_ = resolve_device(self.device)
        return entries, X, self._seed()

    def _fit_preprocessing(self, towers, columns, rows):
        """Each tower's preprocessing, learned on its present items among ``rows``."""
        for (name, enc, _), column in zip(towers, columns):
            present = np.intersect1d(column.present(), rows)
            if len(present) == 0:
                raise ValueError(
                    f"encoder {name!r}: every training item is missing; nothing to "
                    "fit on."
                )
            with naming(name):
                enc._fit_preprocessing(column, present)

    def _preload(self, name, enc, tower, column, rows):
        """The training input of one tower for ``rows`` (present items only).

        Decoded items, or the tower's features when it is frozen.

        A frozen tower gives the same output at every epoch, so its features are
        computed once per fit, through the encoder's own batched (and, with
        ``memory``, cached) encoding, instead of running it in every epoch. The
        encoder lends its ``module_`` slot for that and gets back what it held, even
        when an item is bad (a fitted net's encoder holds its trained tower).
        Returns ``(data, encoded)``.
        """
        with naming(name):
            if enc._frozen():
                held = {
                    k: vars(enc).pop(k)
                    for k in ("module_", "device_")
                    if k in vars(enc)
                }
                enc.module_, enc.device_ = tower.to(self.device_).eval(), self.device_
                try:
                    features = enc._encode(column)[rows]
                finally:
                    del enc.module_, enc.device_
                    vars(enc).update(held)
                return torch.from_numpy(features), True
            return enc._load(column, rows), False

    def _train_mode(self, module, data):
        module.train()
        for tower, (_, enc, _) in zip(module.towers, self._towers()):
            if enc._frozen():
                tower.eval()  # frozen batch-norm statistics too

    def _param_groups(self, module, data):
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

    # -- the fitted encoders and their towers --------------------------------------------
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
