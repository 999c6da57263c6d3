"""Device names checked against what this machine has: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``."""

from __future__ import annotations

import torch

from hsiseg.errors import HsisegError

DEVICE_FORMS = "cpu, cuda, cuda:N, mps or auto"


def resolve_device(name: str, local_rank: int = 0, parameter: str = "device") -> torch.device:
    """The torch device ``name`` means here (``auto``: CUDA when available, else CPU); one clear error naming
    ``parameter`` when the name is not a device or the machine lacks it."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise HsisegError(f"{parameter} {name!r} is not a device; use {DEVICE_FORMS}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise HsisegError(f"{parameter} {name!r}: hsiseg runs on {DEVICE_FORMS}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HsisegError(f"{parameter} {name!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HsisegError(f"{parameter} {name!r}: this machine has {torch.cuda.device_count()} CUDA devices "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")  # fmt: skip
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HsisegError(f"{parameter} {name!r}: Apple's MPS is not available on this machine; use 'cpu' or 'auto'")
    return device
