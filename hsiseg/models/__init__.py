"""Segmentation networks built by name: ``build_model(name, in_channels, classes, **options)``.

=======================  ===========================================================================
name                     network
=======================  ===========================================================================
``spectral-spatial``     :class:`SpectralSpatialNet`: per-pixel spectral MLP + a named spatial context
                         (``context="guided"``: edge-aware average of the probabilities, the default;
                         ``gaussian``, ``conv``, ``none``); the default model (README, "Segmentation
                         quality")
``pixel``                :class:`PixelNet`: per-pixel spectral MLP (1x1 convolutions), no spatial context
``unet``                 :class:`SpectralUNet`: spectral stem + U-Net (large receptive field; needs dense
                         or plentiful labels)
``smp-<arch>``           a segmentation_models_pytorch architecture (``smp-unet``, ``smp-fpn``...) when
                         that package is installed; options go to its constructor (``encoder_name``,
                         ``encoder_weights=None`` offline)
=======================  ===========================================================================

Every model maps (N, B, H, W) to (N, C, H, W) logits for any H, W: ``build_model`` wraps it in
:class:`AnySize` (pad to the network's ``input_multiple``, crop back). A network with
``pixelwise_training = True`` (receptive field of one pixel while training) is trained on batches of annotated
pixels instead of image crops (:mod:`hsiseg.train`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.models.any_size import AnySize, unwrap
from hsiseg.models.pixel import PixelNet
from hsiseg.models.spectral_spatial import SpectralSpatialNet
from hsiseg.models.unet import SpectralUNet

MODELS: dict[str, type[nn.Module]] = {
    "spectral-spatial": SpectralSpatialNet,
    "pixel": PixelNet,
    "unet": SpectralUNet,
}
DEFAULT_MODEL = "spectral-spatial"

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "AnySize",
    "PixelNet",
    "SpectralSpatialNet",
    "SpectralUNet",
    "build_model",
    "pixelwise_training",
    "smooth_maps",
    "unwrap",
]


def build_model(name: str, in_channels: int, classes: int, **options: Any) -> AnySize:
    """Build a network wrapped in :class:`AnySize`; unknown names and options raise :class:`HsisegError`
    listing the valid ones."""
    if name.startswith("smp-"):
        network = _build_smp(name[4:], in_channels, classes, options)
        return AnySize(network, 2 ** int(options.get("encoder_depth", 5)))
    if name not in MODELS:
        raise HsisegError(f"unknown model {name!r}; choose one of {sorted(MODELS)} or smp-<architecture>")
    cls = MODELS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "in_channels", "classes"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise HsisegError(f"model {name!r} has no option(s) {unknown}; its options are {sorted(accepted)}")
    try:
        network = cls(in_channels=in_channels, classes=classes, **options)
    except (ValueError, TypeError) as error:
        raise HsisegError(f"model {name!r}: {error}") from None
    return AnySize(network, network.input_multiple)


def pixelwise_training(model: nn.Module) -> bool:
    """Whether the network sees one pixel at a time while training (then it trains on annotated pixels)."""
    return bool(getattr(unwrap(model), "pixelwise_training", False))


def smooth_maps(model: nn.Module, maps: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel maps (N, K, H, W) averaged with the network's parameter-free spatial context, if it has one
    (``spectral-spatial`` with ``guided`` or ``gaussian``), guided by its penultimate ``features``."""
    network = unwrap(model)
    if features is None or not hasattr(network, "smooth_maps"):
        return maps
    return network.smooth_maps(maps, features)


def _build_smp(architecture: str, in_channels: int, classes: int, options: dict[str, Any]) -> nn.Module:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise HsisegError(
            "smp-* models need segmentation_models_pytorch: pip install segmentation-models-pytorch"
        ) from None
    options = {"encoder_weights": None, **options}
    try:
        return smp.create_model(architecture, in_channels=in_channels, classes=classes, **options)
    except (KeyError, ValueError, TypeError) as error:
        raise HsisegError(f"model smp-{architecture}: {error}") from None
