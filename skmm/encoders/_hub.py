"""What the three encoders share about backbones: the resolved adapter and training.

:class:`BackboneMixin` looks the encoder's ``backbone=`` up (one registry,
:func:`~skmm.encoders._backbones.get_backbone`), keeps the resolved adapter as the
fitted ``backbone_``, and gives the hooks the nets call: ``max_epochs="auto"``,
``_frozen()`` (reads parameters or fitted state, never files), which layers train
(``train_layers``, ``_configure_training``) and the embedding-cache identity.
"""

from ._backbones import get_backbone
from ._backbones._base import (
    check_finite_weights,
    last_block_parameters,
    mark_frozen,
)


class BackboneMixin:
    """What the encoders share about backbones, weights and training.

    The encoder/tower protocol that :mod:`skmm.nn` calls:

    - ``_frozen()``: True when the tower is used as is (resolved ``max_epochs == 0``);
    - ``_configure_training(module)``: set ``requires_grad=False`` on the parameters
      that ``train_layers`` keeps frozen and return the torch parameter groups that
      train, with this encoder's learning rate.

    A subclass sets ``_modality`` and calls :meth:`_resolve_backbone` first in
    ``_fit_preprocessing``; its ``backbone_`` (a
    :class:`~skmm.encoders._backbones.Backbone`) then builds the tower and gives
    the weights' preprocessing, identity and logit scale.
    """

    _modality = None

    def _backbone(self):
        """The adapter of the last fit, else the one the parameters name (unresolved)."""
        resolved = self.__dict__.get("backbone_")
        if resolved is not None:
            return resolved
        return get_backbone(self.backbone, self._modality, self.weights)

    def _resolve_backbone(self, check=None):
        """Look the backbone up and resolve its weights, once per fit.

        ``check(adapter)`` validates the parameters against it first (before any
        download or file read).
        """
        backbone = get_backbone(self.backbone, self._modality, self.weights)
        if check is not None:
            check(backbone)
        self.backbone_ = backbone.resolve(self)
        return self.backbone_

    @property
    def processor_(self):
        """The tokenizer or feature extractor of the weights (None for the others)."""
        return self.backbone_.processor

    @property
    def hub_config_(self):
        """The Hugging Face config of an ``"hf:"`` backbone, else None."""
        return self.backbone_.config

    def _weights_identity(self):
        """What names the weights for the cache fingerprint (no tensor hashing).

        None when they cannot be named (random weights, a hub model of unknown
        revision): the fingerprint then hashes the module once.
        """
        return self.backbone_.identity

    # The adapter is named by its identity when it has one (never hashed then).
    _identified_state = frozenset({"backbone_"})

    def _resolved_max_epochs(self):
        if self.max_epochs == "auto":
            return 0 if self._backbone().pretrained else 10
        return self.max_epochs

    def _frozen(self):
        """True when the tower is used as is, with no training."""
        return self._resolved_max_epochs() == 0

    def _configure_training(self, module):
        """Freeze what ``train_layers`` keeps fixed; return the groups that train.

        Parameters
        ----------
        module : torch.nn.Module
            The tower built by ``_init_module()``.

        Returns
        -------
        param_groups : list of dict
            ``[{"params": [...], "lr": self.lr}]``, or ``[]`` when the tower is frozen
            or ``train_layers="head"`` (only a head on top of the tower trains).
        """
        if self._frozen() or self.train_layers == "head":
            trainable = []
        elif self.train_layers == "last":
            trainable = last_block_parameters(module)
        else:
            trainable = list(module.parameters())
        keep = {id(p) for p in trainable}
        for p in module.parameters():
            p.requires_grad_(id(p) in keep)
        mark_frozen(module)
        return [{"params": trainable, "lr": self.lr}] if trainable else []

    def _param_groups(self, module, data):
        """The training loop's optimizer groups when the encoder trains on its own.

        ``module`` is the tower followed by its linear head.
        """
        tower, head = module
        return self._configure_training(tower) + [{"params": list(head.parameters())}]

    def _build_module(self):
        return self._tower(pretrained=False)

    def _init_module(self):
        tower = self._tower(pretrained=True)
        if self.backbone_.pretrained:
            check_finite_weights(tower, self.backbone_)
        return tower
