"""Device, seeding, failure-safe fits and cross-device pickling of torch estimators."""

import torch

from .._persistence import TensorState, portable_state, restored_state
from ..utils._composition import fit_atomic
from ..utils._sklearn_compat import Hidden, StrOptions
from ..utils._torch import available_device, seed_from

__all__ = ["TorchEstimatorMixin", "to_cpu"]


# What partial_fit keeps between calls beside the weights: the optimizer's state and
# an encoder's training head, as CPU state dicts.
_KEPT_STATES = ("_optimizer_state_", "_head_state_")


def to_cpu(state):
    """A copy of a (nested) state dict with every tensor on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(v) for v in state)
    return state


class TorchEstimatorMixin:
    """Device, seeding, failure-safe fit and cross-device pickling for torch estimators.

    Subclasses implement ``_build_module()``, which builds the architecture of
    ``module_`` from the parameters and the fitted attributes alone (no weights loaded,
    no download), so that a pickled estimator can rebuild it and load its weights.

    Pickles and skops files hold the weights as safetensors bytes of a CPU state dict
    (``skmm._persistence``), and library objects (tokenizers, configs, the optimizer
    class) as data; loading moves the weights to ``device_``, or to the CPU with a
    :class:`~skmm.utils.DeviceWarning` when this machine lacks that device.
    """

    _torch_parameter_constraints = {
        "device": [StrOptions({"auto", "cpu", "cuda"}), str, Hidden(torch.device)],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _fit_atomic(self, fit, *args, **kwargs):
        return fit_atomic(self, fit, *args, **kwargs)

    def _seed(self):
        """Return the int seed this fit uses for torch, numpy and the data order."""
        return seed_from(self.random_state)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_digest_memo", None)  # a weak reference does not pickle
        owner = type(self).__name__
        module = state.get("module_")
        if isinstance(module, torch.nn.Module):
            state["module_"] = TensorState.from_state(
                module.state_dict(), f"{owner}.module_"
            )
        for name in _KEPT_STATES:
            if state.get(name) is not None:  # CPU tensors already (to_cpu)
                state[name] = TensorState.from_state(state[name], f"{owner}.{name}")
        return portable_state(state)

    def __setstate__(self, state):
        state = restored_state(state)
        serialized = state.get("module_")
        for name in _KEPT_STATES:
            if isinstance(state.get(name), TensorState):
                state[name] = state[name].restore()
        super().__setstate__(state)
        if isinstance(serialized, TensorState):
            self.device_ = available_device(self.device_, owner=type(self).__name__)
            module = self._build_module()
            module.load_state_dict(serialized.restore())
            self.module_ = module.to(self.device_).eval()
