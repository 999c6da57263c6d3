"""A spectral-spatial network: a per-pixel spectral network, then a small, named amount of spatial context.

Sparse scribbles are thin strokes inside class regions; a network with a large receptive field learns the
shapes of the strokes instead of the spectra (a U-Net's training loss falls to ~0 while held-out pixels stay
wrong). Here the spectral part (:class:`~hsiseg.models.pixel.PixelNet`) sees one pixel, and the spatial
context is an explicit option with a small footprint:

=============  ================================================================================================
``context``    what it adds
=============  ================================================================================================
``gaussian``   a fixed (not learned) Gaussian average of the class probabilities over ``sigma`` pixels, applied
               when the network predicts (``eval()``): neighbouring pixels tend to share a class. It has no
               parameters, so it cannot memorise strokes, and the spectral part trains on annotated pixels
               alone. The output keeps each pixel's own log-partition: ``softmax`` of the output is the smoothed
               probability map and the energy score ``logsumexp`` is the spectral part's. Measured best (README).
``conv``       a learned residual block (depthwise 3x3 and 1x1 convolutions) on the spectral features:
               receptive field 3 x 3, trained on crops.
``none``       no context: the per-pixel network alone.
=============  ================================================================================================

Input (N, B, H, W) float, output (N, C, H, W) logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hsiseg.models.pixel import PixelNet

CONTEXTS = ("gaussian", "conv", "none")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian average of every channel of (N, C, H, W), kernel radius ceil(3 sigma), reflect border
    (replicate when the image is smaller than the radius)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    for dim in (-1, -2):
        size = x.shape[dim]
        mode = "reflect" if size > radius else "replicate"
        padding = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        weight = kernel.view(1, 1, 1, -1) if dim == -1 else kernel.view(1, 1, -1, 1)
        x = F.conv2d(F.pad(x, padding, mode=mode), weight.expand(channels, 1, *weight.shape[2:]), groups=channels)
    return x


class SpectralSpatialNet(nn.Module):
    """Per-pixel spectral network followed by a named spatial context (see module docstring).

    Parameters
    ----------
    in_channels: number of spectral bands B.
    classes: number of output channels C (leaves).
    width, depth, dropout: of the spectral part (:class:`PixelNet`).
    context: ``gaussian``, ``conv`` or ``none``.
    sigma: standard deviation in pixels of the ``gaussian`` context.
    """

    input_multiple = 1

    def __init__(
        self,
        in_channels: int,
        classes: int,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.2,
        context: str = "gaussian",
        sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.context, self.sigma = context, float(sigma)
        self.spectral = PixelNet(in_channels, classes, width, depth, dropout)
        if context == "conv":
            self.spatial = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, groups=width, padding_mode="reflect"),
                nn.SiLU(inplace=True),
                nn.Conv2d(width, width, 1),
            )

    def fit_input_statistics(self, spectra: torch.Tensor) -> None:
        """Set the spectral part's input standardisation from training spectra (P, B)."""
        self.spectral.fit_input_statistics(spectra)

    @property
    def pixelwise_training(self) -> bool:
        """True when training sees one pixel at a time (the context has no parameters)."""
        return self.context != "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.spectral.features(x)
        if self.context == "conv":
            features = features + self.spatial(features)
        logits = self.spectral.head(features)
        if self.context != "gaussian" or self.training:
            return logits
        partition = torch.logsumexp(logits.float(), 1, keepdim=True)
        smoothed = gaussian_blur(torch.softmax(logits.float(), 1), self.sigma)
        return (torch.log(smoothed.clamp_min(1e-30)) + partition).to(logits.dtype)
