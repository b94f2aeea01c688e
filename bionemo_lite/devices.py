"""Checking a requested device before any weights are read."""

from __future__ import annotations

from .errors import DeviceUnavailableError


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, naming what is available.

    Raises:
        DeviceUnavailableError: e.g. ``cuda`` on a CPU-only torch build.
    """
    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise DeviceUnavailableError(f"device {device!r}: {why}; use cpu")
        if index and (not index.isdigit() or int(index) >= count):
            raise DeviceUnavailableError(f"device {device!r}: this machine has cuda:0..cuda:{count - 1}")
        return
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise DeviceUnavailableError("device 'mps' is not available on this machine; use cpu")
        return
    raise DeviceUnavailableError(f"device {device!r}: expected cpu, cuda, cuda:N or mps")
