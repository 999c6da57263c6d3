"""Segmentation networks built by name: ``build_model(name, in_channels, classes, **options)``.

=======================  ===========================================================================
name                     network
=======================  ===========================================================================
``spectral-spatial``     :class:`SpectralSpatialNet`: per-pixel spectral MLP + a named spatial context
                         (``context="guided"``: edge-aware average of the probabilities, the default;
                         ``gaussian``, ``conv``, ``none``); the default model (docs/quality.md)
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
pixels instead of image crops (:mod:`hsiseg.training`).
"""

from __future__ import annotations

from hsiseg.models import kernel, pixel, spectral_spatial, unet  # noqa: F401 - registering is importing
from hsiseg.models.any_size import AnySize
from hsiseg.models.factory import DEFAULT_MODEL, build_model, check_model, pixelwise_training, smooth_maps
from hsiseg.models.network import MODELS, ForeignNetwork, Network, network_of, unwrap
from hsiseg.models.pixel import PixelNet
from hsiseg.models.spectral_spatial import SpectralSpatialNet
from hsiseg.models.unet import SpectralUNet

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "AnySize",
    "ForeignNetwork",
    "Network",
    "PixelNet",
    "SpectralSpatialNet",
    "SpectralUNet",
    "build_model",
    "check_model",
    "network_of",
    "pixelwise_training",
    "smooth_maps",
    "unwrap",
]
