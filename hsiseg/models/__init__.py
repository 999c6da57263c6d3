"""Segmentation networks built by name: ``build_model(name, in_channels, classes, **options)``.

========================  ==================================================================
name                      network
========================  ==================================================================
``unet``                  :class:`SpectralUNet`: spectral stem + U-Net, GroupNorm, any input size
``smp-<arch>``            a segmentation_models_pytorch architecture (``smp-unet``, ``smp-fpn``...)
                          when that package is installed; options go to its constructor
                          (``encoder_name``, ``encoder_weights=None`` offline)
========================  ==================================================================

Every model maps (N, B, H, W) to (N, C, H, W) logits. ``model_config(model)`` is the JSON that rebuilds it.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.models.unet import SpectralUNet

MODELS: dict[str, type[nn.Module]] = {"unet": SpectralUNet}

__all__ = ["MODELS", "SpectralUNet", "build_model"]


def build_model(name: str, in_channels: int, classes: int, **options: Any) -> nn.Module:
    """Build a network; unknown names and options raise :class:`HsisegError` listing the valid ones."""
    if name.startswith("smp-"):
        return _build_smp(name[4:], in_channels, classes, options)
    if name not in MODELS:
        raise HsisegError(f"unknown model {name!r}; choose one of {sorted(MODELS)} or smp-<architecture>")
    cls = MODELS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "in_channels", "classes"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise HsisegError(f"model {name!r} has no option(s) {unknown}; its options are {sorted(accepted)}")
    try:
        return cls(in_channels=in_channels, classes=classes, **options)
    except (ValueError, TypeError) as error:
        raise HsisegError(f"model {name!r}: {error}") from None


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
