"""Mixed precision: ``precision=`` through ``torch.autocast``, in training and inference.

The names are Lightning's: ``"32"`` (float32), ``"bf16-mixed"`` (bfloat16 where
autocast allows it, float32 weights), ``"16-mixed"`` (float16 likewise, with a
gradient scaler so that small gradients do not underflow).
"""

import contextlib

import torch

from ..utils._sklearn_compat import StrOptions

__all__ = ["PRECISION_CONSTRAINT", "Precision", "autocast"]

_DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}

PRECISION_CONSTRAINT = [StrOptions(set(_DTYPES))]


def _device_type(device):
    return torch.device(device).type


def check_precision(precision, device):
    """Raise a clear error for a precision this device cannot run."""
    if precision == "bf16-mixed" and _device_type(device) == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"precision='bf16-mixed': the GPU {device!r} has no bfloat16 support; "
                "use '16-mixed' or '32'."
            )


def autocast(device, precision="32"):
    """``torch.autocast`` on ``device``'s type at ``precision`` (nothing for "32")."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(_device_type(device), dtype=dtype)


class Precision:
    """How the loop runs a step at ``precision``: autocast, backward and the step.

    With ``"16-mixed"`` the loss is scaled before ``backward`` and the optimizer
    step skipped when the gradients overflow (``torch.amp.GradScaler``; it reads one
    flag per step from the device, the one host sync that precision needs).
    """

    def __init__(self, precision, device):
        check_precision(precision, device)
        self.precision, self.device = precision, device
        self.scaler = (
            torch.amp.GradScaler(_device_type(device))
            if precision == "16-mixed"
            else None
        )

    def autocast(self):
        return autocast(self.device, self.precision)

    def step(self, objective, optimizer):
        """Backward pass and optimizer step from ``objective``."""
        optimizer.zero_grad()
        if self.scaler is None:
            objective.backward()
            optimizer.step()
        else:
            self.scaler.scale(objective).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
