"""Utilities shared by skmm's estimators."""

from ._torch import DeviceWarning, available_device, resolve_device

__all__ = ["DeviceWarning", "available_device", "resolve_device"]
