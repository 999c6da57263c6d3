"""Networks built by name and options: hsiseg's own (:data:`MODELS`) and ``smp-<architecture>``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.models.any_size import AnySize
from hsiseg.models.network import MODELS, Network, network_of

DEFAULT_MODEL = "spectral-spatial"
SMP_PREFIX = "smp-"


def check_model(name: str, options: dict[str, Any]) -> None:
    """Validate a model name and its options without building it (``smp-*``: that the package is there)."""
    if name.startswith(SMP_PREFIX):
        _smp()
        return
    try:
        MODELS.check(name, options)
    except HsisegError as error:
        raise HsisegError(f"{error} (or smp-<architecture>)") from None


def build_model(name: str, in_channels: int, classes: int, **options: Any) -> AnySize:
    """Build a network wrapped in :class:`AnySize`; unknown names and options raise :class:`HsisegError`
    with the closest valid one."""
    if name.startswith(SMP_PREFIX):
        network = _build_smp(name[len(SMP_PREFIX) :], in_channels, classes, options)
        return AnySize(network, 2 ** int(options.get("encoder_depth", 5)))
    check_model(name, options)
    try:
        built: Network = MODELS[name](in_channels=in_channels, classes=classes, **options)
    except (ValueError, TypeError) as error:
        raise HsisegError(f"model {name!r}: {error}") from None
    return AnySize(built, built.input_multiple)


def pixelwise_training(model: nn.Module) -> bool:
    """Whether the network sees one pixel at a time while training (then it trains on annotated pixels)."""
    return bool(network_of(model).pixelwise_training)


def smooth_maps(model: nn.Module, maps: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel maps (N, K, H, W) averaged with the network's parameter-free spatial context, if it has one
    (``spectral-spatial`` with ``guided`` or ``gaussian``), guided by its penultimate ``features``."""
    if features is None:
        return maps
    return network_of(model).smooth_maps(maps, features)


def _smp() -> Any:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise HsisegError(
            "smp-* models need segmentation_models_pytorch: pip install segmentation-models-pytorch"
        ) from None
    return smp


def _build_smp(architecture: str, in_channels: int, classes: int, options: dict[str, Any]) -> nn.Module:
    smp = _smp()
    options = {"encoder_weights": None, **options}
    try:
        return smp.create_model(architecture, in_channels=in_channels, classes=classes, **options)
    except (KeyError, ValueError, TypeError) as error:
        raise HsisegError(f"model smp-{architecture}: {error}") from None
