"""Device resolution, cross-device loading and seeding: the torch plumbing in one place."""

import contextlib
import io
import warnings

import numpy as np
import torch

from ._torch_compat import batch_norm_layer_types


class DeviceWarning(UserWarning):
    """Warning raised when a fitted model is loaded on a device it was not fitted on.

    Examples
    --------
    >>> import warnings
    >>> from skmm.utils import DeviceWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeviceWarning)  # accept CPU fallbacks
    """


def _cuda_index(device):
    """Return the CUDA index asked for by ``device`` (0 for plain ``'cuda'``)."""
    return 0 if device.index is None else device.index


def resolve_device(device):
    """Turn the ``device`` parameter into a concrete device string.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or str or torch.device
        ``"auto"`` picks CUDA when it is available, else the CPU. ``"cuda:N"`` asks for a
        given GPU.

    Returns
    -------
    device : str
        ``"cpu"`` or ``"cuda:N"``.

    Raises
    ------
    ValueError
        If the device is not understood or is a GPU that this machine does not have.

    Examples
    --------
    >>> from skmm.utils import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if isinstance(device, str) and device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid device; use 'auto', 'cpu', 'cuda' "
            "or 'cuda:N'."
        ) from exc
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError(
            f"device={device!r}: skmm runs on 'cpu' or 'cuda' devices, not {dev.type!r}."
        )
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='auto' or 'cpu'."
        )
    index = _cuda_index(dev)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
            "device(s)."
        )
    return f"cuda:{index}"


def available_device(fitted_device, owner="estimator"):
    """Return ``fitted_device`` if this machine has it, else ``'cpu'`` with a warning.

    Used when a fitted estimator is unpickled: a model fitted on a GPU must load on a
    machine without one.

    Parameters
    ----------
    fitted_device : str
        The device the estimator was fitted on (its ``device_``).
    owner : str, default="estimator"
        Name used in the warning.

    Returns
    -------
    device : str

    Examples
    --------
    >>> from skmm.utils import available_device
    >>> available_device("cpu")
    'cpu'
    """
    dev = torch.device(fitted_device)
    if dev.type == "cpu":
        return "cpu"
    if torch.cuda.is_available() and _cuda_index(dev) < torch.cuda.device_count():
        return f"cuda:{_cuda_index(dev)}"
    warnings.warn(
        f"{owner} was fitted on {fitted_device!r}, which this machine does not have; "
        "its weights are loaded on 'cpu'.",
        DeviceWarning,
        stacklevel=3,
    )
    return "cpu"


def state_dict_to_bytes(module):
    """Serialise the CPU copy of ``module``'s state dict to bytes."""
    buffer = io.BytesIO()
    state = {k: v.detach().to("cpu") for k, v in module.state_dict().items()}
    torch.save(state, buffer)
    return buffer.getvalue()


def load_state_dict(source, map_location="cpu"):
    """Read a state dict from a path, a file object or bytes, safely.

    Tensors are read with ``weights_only=True`` (no arbitrary code runs) and mapped to
    ``map_location``.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    state = torch.load(source, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(
            f"expected a state dict (a mapping of names to tensors), got {type(state).__name__}."
        )
    return state


def seed_from(random_state):
    """Draw an int seed from a ``random_state`` parameter (int, RandomState or None)."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def torch_seed(seed):
    """Seed torch inside the block without changing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def batch_norm_recalibration(module):
    """Recompute the running statistics of ``module``'s batch-norm layers in the block.

    Inside the block the statistics of the batch-norm layers in training mode are
    reset and re-estimated as an equal-weight average over the forward passes run
    there (under ``torch.no_grad``); layers in eval mode (frozen towers) are left
    alone. The block receives the list of layers being recalibrated (empty when there
    are none, and the forward passes can be skipped). Running statistics that follow fast-moving weights with momentum 0.1 lag
    behind them, and a net then predicts much worse in eval mode than it trains;
    a pass over the training data with the final weights fixes that (as
    ``torch.optim.swa_utils.update_bn`` does for averaged weights).
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, batch_norm_layer_types())
        and m.track_running_stats
        and m.training
    ]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    try:
        with torch.no_grad():
            yield norms
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


class TowerNorm(torch.nn.BatchNorm1d):
    """Each feature of a tower's output standardised, with no learned scale or shift.

    Batch statistics in training, running ones in evaluation, as batch norm does.
    The heads then read features on one scale, whatever the tower: the pooled ReLU
    features of a CNN are small and positive, and a linear head on them learns
    slowly, while the tower keeps receiving large gradients and memorises the
    training rows before the head reads it well (docs/user_guide.rst has the
    measurement; the fuser standardises before its model for the same reason). A
    training batch with a single present row, and
    prediction, use the running statistics (recalibrated on the training rows).
    """

    def __init__(self, width):
        super().__init__(width, affine=False)

    def forward(self, x):
        if self.training and x.shape[0] >= 2:
            return super().forward(x)
        # Element-wise, so a row's output does not depend on the batch it is in
        # (torch's batch norm kernels round differently for different batch sizes).
        return (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
